//! The `ca-softtoken` PKCS#11 module driven exactly like SoftHSM2: through the `hsm` crate
//! (cryptoki), and from outside by `pkcs11-tool` and the openssl CLI.
#![allow(clippy::unwrap_used)] // tests may unwrap

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use cryptoki::object::{Attribute, AttributeInfo, AttributeType, ObjectClass};
use hsm::{Hsm, HsmConfig, HsmError, KeyKind, PinSource, SignatureAlgorithm, Sm2Mechanisms};
use p256::ecdsa::signature::Verifier;
use spki::DecodePublicKey;

const USER_PIN: &str = "user-pin-1234";
const SO_PIN: &str = "so-pin-5678";

struct Fixture {
    module: PathBuf,
    dir: PathBuf,
}

/// Build the module once, and point CA_SOFTTOKEN_DIR at a fresh directory before the first
/// C_Initialize in this process.
fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let status = Command::new(env!("CARGO"))
            // The invocation every test uses (tests/src/lib.rs): one build of the workspace.
            .args(["build", "--quiet", "--workspace", "--lib", "--bins"])
            .status()
            .unwrap();
        assert!(status.success(), "cargo build failed");
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
        let module = target.join("debug/libca_softtoken.so");
        assert!(module.exists(), "{} missing", module.display());
        let dir = tempfile::Builder::new()
            .prefix("softtoken-test-")
            .tempdir()
            .unwrap()
            .keep();
        std::env::set_var("CA_SOFTTOKEN_DIR", dir.join("tokens"));
        Fixture { module, dir }
    })
}

/// A freshly initialised token `label` and a config for it with `sm2`.
fn token(label: &str, sm2: Option<Sm2Mechanisms>) -> HsmConfig {
    let f = fixture();
    hsm::init_token(&f.module, label, SO_PIN, USER_PIN).unwrap();
    config(label, sm2)
}

fn config(label: &str, sm2: Option<Sm2Mechanisms>) -> HsmConfig {
    let f = fixture();
    let pin = f.dir.join(format!("{label}.pin"));
    std::fs::write(&pin, USER_PIN).unwrap();
    std::os::unix::fs::PermissionsExt::set_mode(
        &mut std::fs::metadata(&pin).unwrap().permissions(),
        0o600,
    );
    std::fs::set_permissions(&pin, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    HsmConfig {
        module: f.module.clone(),
        token_label: label.to_owned(),
        pin: PinSource::File(pin),
        pool_size: 4,
        sm2,
        sm2_signer_id: None,
    }
}

/// Verify an SM3withSM2 DER signature over `data` with the openssl CLI (an independent SM2).
fn openssl_sm2_verify(spki_der: &[u8], signer_id: &str, data: &[u8], sig: &[u8]) -> bool {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key.der");
    let msg = dir.path().join("msg");
    let sig_path = dir.path().join("sig");
    std::fs::write(&key, spki_der).unwrap();
    std::fs::write(&msg, data).unwrap();
    std::fs::write(&sig_path, sig).unwrap();
    let out = Command::new("openssl")
        .args(["pkeyutl", "-verify", "-pubin", "-keyform", "DER", "-inkey"])
        .arg(&key)
        .args(["-rawin", "-digest", "sm3", "-pkeyopt"])
        .arg(format!("distid:{signer_id}"))
        .arg("-in")
        .arg(&msg)
        .arg("-sigfile")
        .arg(&sig_path)
        .output()
        .unwrap();
    out.status.success()
}

#[tokio::test]
async fn p256_and_sm2_keys_sign_through_the_hsm_crate_like_softhsm2() {
    let hsm = Hsm::open(&token("drive", Some(Sm2Mechanisms::CA_SOFTTOKEN)))
        .await
        .unwrap();
    let ec = hsm.generate_key_pair("ec", KeyKind::EcP256).await.unwrap();
    let sm2 = hsm.generate_key_pair("sm2", KeyKind::Sm2).await.unwrap();
    assert_eq!(hsm.key_kind(&ec).await.unwrap(), KeyKind::EcP256);
    assert_eq!(hsm.key_kind(&sm2).await.unwrap(), KeyKind::Sm2);

    let tbs = b"a TBSCertificate";
    let sig = hsm
        .sign(&ec, SignatureAlgorithm::EcdsaSha256, tbs)
        .await
        .unwrap();
    let key =
        p256::ecdsa::VerifyingKey::from_public_key_der(&hsm.public_key_der(&ec).await.unwrap())
            .unwrap();
    key.verify(tbs, &p256::ecdsa::Signature::from_der(&sig).unwrap())
        .unwrap();

    let spki = hsm.public_key_der(&sm2).await.unwrap();
    let text = Command::new("openssl")
        .args(["pkey", "-pubin", "-inform", "DER", "-noout", "-text"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(&spki)?;
            child.wait_with_output()
        })
        .unwrap();
    assert!(String::from_utf8_lossy(&text.stdout).contains("SM2"));

    // Default signer ID through `sign`, another through `sign_sm2`: openssl agrees with both,
    // and refuses a signature checked under the wrong ID or data.
    let sig = hsm
        .sign(&sm2, SignatureAlgorithm::Sm2Sm3, tbs)
        .await
        .unwrap();
    assert!(openssl_sm2_verify(&spki, hsm::DEFAULT_SIGNER_ID, tbs, &sig));
    assert!(!openssl_sm2_verify(&spki, "ALICE123@YAHOO.COM", tbs, &sig));
    let sig = hsm.sign_sm2(&sm2, "ALICE123@YAHOO.COM", tbs).await.unwrap();
    assert!(openssl_sm2_verify(&spki, "ALICE123@YAHOO.COM", tbs, &sig));
    assert!(!openssl_sm2_verify(
        &spki,
        "ALICE123@YAHOO.COM",
        b"other",
        &sig
    ));

    // A mismatched algorithm is a typed error, not a signature.
    assert!(matches!(
        hsm.sign(&sm2, SignatureAlgorithm::EcdsaSha256, tbs).await,
        Err(HsmError::UnsupportedAlgorithm { .. })
    ));
    assert!(matches!(
        hsm.sign(&ec, SignatureAlgorithm::Sm2Sm3, tbs).await,
        Err(HsmError::UnsupportedAlgorithm { .. })
    ));
}

#[tokio::test]
async fn a_token_that_hashes_sm2_itself_signs_messages_and_refuses_digests() {
    token("token-hash", None);
    let hsm = Hsm::open(&config(
        "token-hash",
        Some(Sm2Mechanisms::CA_SOFTTOKEN_TOKEN_HASH),
    ))
    .await
    .unwrap();
    let sm2 = hsm.generate_key_pair("sm2", KeyKind::Sm2).await.unwrap();
    let spki = hsm.public_key_der(&sm2).await.unwrap();
    let sig = hsm
        .sign(&sm2, SignatureAlgorithm::Sm2Sm3, b"data")
        .await
        .unwrap();
    assert!(openssl_sm2_verify(
        &spki,
        hsm::DEFAULT_SIGNER_ID,
        b"data",
        &sig
    ));
    assert!(matches!(
        hsm.sign_digest(&sm2, SignatureAlgorithm::Sm2Sm3, &[0u8; 32])
            .await,
        Err(HsmError::InvalidArgument { .. })
    ));
    assert!(matches!(
        hsm.sign_sm2(&sm2, "another-id", b"data").await,
        Err(HsmError::InvalidArgument { .. })
    ));
    // Without a table, SM2 is refused before the token is asked.
    let plain = Hsm::open(&config("token-hash", None)).await.unwrap();
    assert!(matches!(
        plain.generate_key_pair("sm2-2", KeyKind::Sm2).await,
        Err(HsmError::InvalidArgument { .. })
    ));
}

#[tokio::test]
async fn private_keys_are_sensitive_and_never_extractable() {
    let config = token("secrets", Some(Sm2Mechanisms::CA_SOFTTOKEN));
    let hsm = Hsm::open(&config).await.unwrap();
    hsm.generate_key_pair("sm2", KeyKind::Sm2).await.unwrap();
    hsm.generate_key_pair("ec", KeyKind::EcP256).await.unwrap();

    let ctx = hsm::raw_context(&config.module).unwrap();
    let slot = ctx
        .get_slots_with_token()
        .unwrap()
        .into_iter()
        .find(|s| ctx.get_token_info(*s).unwrap().label().trim_end() == "secrets")
        .unwrap();
    let session = ctx.open_rw_session(slot).unwrap(); // the token is logged in (per application)
    let privates = session
        .find_objects(&[Attribute::Class(ObjectClass::PRIVATE_KEY)])
        .unwrap();
    assert_eq!(privates.len(), 2);
    for key in privates {
        let info = session
            .get_attribute_info(key, &[AttributeType::Value])
            .unwrap();
        assert!(matches!(info[0], AttributeInfo::Sensitive), "{info:?}");
        let flags = session
            .get_attributes(
                key,
                &[
                    AttributeType::Sensitive,
                    AttributeType::Extractable,
                    AttributeType::NeverExtractable,
                ],
            )
            .unwrap();
        assert!(flags.contains(&Attribute::Sensitive(true)));
        assert!(flags.contains(&Attribute::Extractable(false)));
        assert!(flags.contains(&Attribute::NeverExtractable(true)));
    }
    // Asking for an extractable or non-sensitive key is refused outright.
    let public = [
        Attribute::Token(true),
        Attribute::EcParams(vec![
            0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07,
        ]),
    ];
    for bad in [Attribute::Extractable(true), Attribute::Sensitive(false)] {
        let err = session
            .generate_key_pair(
                &cryptoki::mechanism::Mechanism::EccKeyPairGen,
                &public,
                &[Attribute::Token(true), bad],
            )
            .unwrap_err();
        assert!(
            matches!(
                err,
                cryptoki::error::Error::Pkcs11(cryptoki::error::RvError::AttributeValueInvalid, _)
            ),
            "{err}"
        );
    }
    // The scalar on disk is sealed: no object file holds a 32-byte plaintext field.
    let dir = std::path::PathBuf::from(std::env::var_os("CA_SOFTTOKEN_DIR").unwrap());
    let mut private_files = 0;
    for token in std::fs::read_dir(&dir).unwrap() {
        for object in std::fs::read_dir(token.unwrap().path().join("objects")).unwrap() {
            let text = std::fs::read_to_string(object.unwrap().path()).unwrap();
            if text.contains("\"secret\": {") {
                private_files += 1;
                assert!(text.contains("\"sealed\""));
            }
        }
    }
    assert!(private_files >= 2);
}

#[tokio::test]
async fn a_configured_signer_id_is_the_one_sm2_signs_with() {
    let mut config = token("signer-id", Some(Sm2Mechanisms::CA_SOFTTOKEN));
    config.sm2_signer_id = Some("ca@example.cn".into());
    let hsm = Hsm::open(&config).await.unwrap();
    assert_eq!(hsm.sm2_signer_id(), "ca@example.cn");
    let key = hsm.generate_key_pair("sm2", KeyKind::Sm2).await.unwrap();
    let spki = hsm.public_key_der(&key).await.unwrap();
    let sig = hsm
        .sign(&key, SignatureAlgorithm::Sm2Sm3, b"tbs")
        .await
        .unwrap();
    assert!(openssl_sm2_verify(&spki, "ca@example.cn", b"tbs", &sig));
    assert!(!openssl_sm2_verify(
        &spki,
        hsm::DEFAULT_SIGNER_ID,
        b"tbs",
        &sig
    ));
    // A token that hashes itself cannot take another ID: refused when opening.
    config.sm2 = Some(Sm2Mechanisms::CA_SOFTTOKEN_TOKEN_HASH);
    assert!(matches!(
        Hsm::open(&config).await,
        Err(HsmError::InvalidArgument { .. })
    ));
}

#[tokio::test]
async fn aes_wrapping_keys_seal_data_keys_as_on_softhsm2() {
    let hsm = Hsm::open(&token("wrap", None)).await.unwrap();
    let key = hsm.generate_wrapping_key("data-wrap").await.unwrap();
    assert!(hsm.wrapping_key_exists(&key).await.unwrap());
    let wrapped = hsm
        .wrap_secret(&key, b"a 32-byte personal-data key.....", b"key-id-1")
        .await
        .unwrap();
    let plain = hsm
        .unwrap_secret(&key, &wrapped, b"key-id-1")
        .await
        .unwrap();
    assert_eq!(plain.as_slice(), b"a 32-byte personal-data key.....");
    assert!(matches!(
        hsm.unwrap_secret(&key, &wrapped, b"key-id-2").await,
        Err(HsmError::UnwrapFailed { .. })
    ));
    let mut tampered = wrapped.clone();
    tampered.ciphertext[0] ^= 1;
    assert!(hsm
        .unwrap_secret(&key, &tampered, b"key-id-1")
        .await
        .is_err());
}

#[tokio::test]
async fn a_wrong_pin_is_refused() {
    let mut config = token("wrong-pin", None);
    let bad = fixture().dir.join("bad.pin");
    std::fs::write(&bad, "not-the-pin").unwrap();
    std::fs::set_permissions(&bad, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    config.pin = PinSource::File(bad);
    assert!(matches!(Hsm::open(&config).await, Err(HsmError::WrongPin)));
}

#[test]
fn concurrent_signing_from_several_threads() {
    let config = token("threads", Some(Sm2Mechanisms::CA_SOFTTOKEN));
    let hsm = Hsm::open_blocking(&config).unwrap();
    let ec = hsm
        .generate_key_pair_blocking("ec", KeyKind::EcP256)
        .unwrap();
    let sm2 = hsm.generate_key_pair_blocking("sm2", KeyKind::Sm2).unwrap();
    let ec_key =
        p256::ecdsa::VerifyingKey::from_public_key_der(&hsm.public_key_der_blocking(&ec).unwrap())
            .unwrap();
    let sm2_point = hsm::sm2_point(&hsm.public_key_der_blocking(&sm2).unwrap()).unwrap();
    let sm2_key =
        sm2::dsa::VerifyingKey::from_sec1_bytes(hsm::DEFAULT_SIGNER_ID, &sm2_point).unwrap();
    std::thread::scope(|scope| {
        for thread in 0..8 {
            let (hsm, ec, sm2, ec_key, sm2_key) = (&hsm, &ec, &sm2, &ec_key, &sm2_key);
            scope.spawn(move || {
                for i in 0..25 {
                    let data = format!("thread {thread} message {i}");
                    let sig = hsm
                        .sign_blocking(ec, SignatureAlgorithm::EcdsaSha256, data.as_bytes())
                        .unwrap();
                    ec_key
                        .verify(
                            data.as_bytes(),
                            &p256::ecdsa::Signature::from_der(&sig).unwrap(),
                        )
                        .unwrap();
                    let sig = hsm
                        .sign_blocking(sm2, SignatureAlgorithm::Sm2Sm3, data.as_bytes())
                        .unwrap();
                    let sig = sm2_signature(&sig);
                    sm2_key.verify(data.as_bytes(), &sig).unwrap();
                }
            });
        }
    });
}

/// SM2Signature DER (SEQUENCE { r, s }) to the sm2 crate's fixed r || s form.
fn sm2_signature(der_sig: &[u8]) -> sm2::dsa::Signature {
    use der::Decode;
    #[derive(der::Sequence)]
    struct Sm2Sig<'a> {
        r: der::asn1::UintRef<'a>,
        s: der::asn1::UintRef<'a>,
    }
    let sig = Sm2Sig::from_der(der_sig).unwrap();
    let mut raw = [0u8; 64];
    let (r, s) = (sig.r.as_bytes(), sig.s.as_bytes());
    raw[32 - r.len()..32].copy_from_slice(r);
    raw[64 - s.len()..].copy_from_slice(s);
    sm2::dsa::Signature::from_slice(&raw).unwrap()
}

/// The hex CKA_ID of the private key labelled `label` on the token of `config`.
fn key_id(config: &HsmConfig, label: &str) -> String {
    let ctx = hsm::raw_context(&config.module).unwrap();
    let slot = ctx
        .get_slots_with_token()
        .unwrap()
        .into_iter()
        .find(|s| ctx.get_token_info(*s).unwrap().label().trim_end() == config.token_label)
        .unwrap();
    let session = ctx.open_ro_session(slot).unwrap();
    let key = session
        .find_objects(&[
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::Label(label.as_bytes().to_vec()),
        ])
        .unwrap()[0];
    match &session.get_attributes(key, &[AttributeType::Id]).unwrap()[0] {
        Attribute::Id(id) => id.iter().map(|b| format!("{b:02x}")).collect(),
        other => panic!("{other:?}"),
    }
}

fn pkcs11_tool(args: &[&str]) -> std::process::Output {
    Command::new("pkcs11-tool")
        .arg("--module")
        .arg(&fixture().module)
        .args(args)
        .output()
        .unwrap()
}

/// [`pkcs11_tool`], asserting that it succeeded (its standard error shown if not).
fn pkcs11_tool_ok(args: &[&str]) {
    let out = pkcs11_tool(args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn pkcs11_tool_drives_the_token_and_sees_our_keys() {
    // Another process reading the same state directory: persistence and the C ABI as OpenSC uses it.
    let config = token("tool", Some(Sm2Mechanisms::CA_SOFTTOKEN));
    let hsm = Hsm::open(&config).await.unwrap();
    let sm2 = hsm.generate_key_pair("sm2", KeyKind::Sm2).await.unwrap();
    let login = ["--token-label", "tool", "--login", "--pin", USER_PIN];

    let out = pkcs11_tool(&["--list-mechanisms", "--token-label", "tool"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("ECDSA-SHA256") && text.contains("0x80534D02"),
        "{text}"
    );

    pkcs11_tool_ok(
        &[
            &login[..],
            &[
                "--keypairgen",
                "--key-type",
                "EC:prime256v1",
                "--label",
                "ec-tool",
                "--id",
                "0e",
            ],
        ]
        .concat(),
    );

    // Without login only public objects show; with login the private halves too.
    let public_only = pkcs11_tool(&["--token-label", "tool", "--list-objects"]);
    let text = String::from_utf8_lossy(&public_only.stdout);
    assert!(
        text.contains("Public Key Object") && !text.contains("Private Key Object"),
        "{text}"
    );
    let all = pkcs11_tool(&[&login[..], &["--list-objects"]].concat());
    assert!(String::from_utf8_lossy(&all.stdout).contains("Private Key Object"));

    // ECDSA through pkcs11-tool, checked by openssl.
    let dir = tempfile::tempdir().unwrap();
    let msg = dir.path().join("msg");
    std::fs::write(&msg, b"signed by pkcs11-tool").unwrap();
    let (sig, pubkey) = (dir.path().join("sig"), dir.path().join("pub.der"));
    let p = |p: &Path| p.to_str().unwrap().to_owned();
    pkcs11_tool_ok(
        &[
            &login[..],
            &[
                "--sign",
                "-m",
                "ECDSA-SHA256",
                "--id",
                "0e",
                "--signature-format",
                "openssl",
                "-i",
                &p(&msg),
                "-o",
                &p(&sig),
            ],
        ]
        .concat(),
    );
    pkcs11_tool_ok(&[
        "--token-label",
        "tool",
        "--read-object",
        "--type",
        "pubkey",
        "--id",
        "0e",
        "-o",
        &p(&pubkey),
    ]);
    let verified = Command::new("openssl")
        .args([
            "dgst",
            "-sha256",
            "-keyform",
            "DER",
            "-verify",
            &p(&pubkey),
            "-signature",
            &p(&sig),
            &p(&msg),
        ])
        .output()
        .unwrap();
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stderr)
    );

    // SM3withSM2 by the token (vendor mechanism) over a key this process made: r || s raw.
    // (pkcs11-tool picks keys by CKA_ID; the hsm crate gave the pair a random one.)
    let id = key_id(&config, "sm2");
    pkcs11_tool_ok(
        &[
            &login[..],
            &[
                "--sign",
                "-m",
                "0x80534D02",
                "--id",
                &id,
                "-i",
                &p(&msg),
                "-o",
                &p(&sig),
            ],
        ]
        .concat(),
    );
    let raw = std::fs::read(&sig).unwrap();
    let point = hsm::sm2_point(&hsm.public_key_der(&sm2).await.unwrap()).unwrap();
    let key = sm2::dsa::VerifyingKey::from_sec1_bytes(hsm::DEFAULT_SIGNER_ID, &point).unwrap();
    key.verify(
        b"signed by pkcs11-tool",
        &sm2::dsa::Signature::from_slice(&raw).unwrap(),
    )
    .unwrap();

    // The private key cannot be read out.
    let out = pkcs11_tool(
        &[
            &login[..],
            &[
                "--read-object",
                "--type",
                "privkey",
                "--id",
                &id,
                "-o",
                &p(&dir.path().join("k")),
            ],
        ]
        .concat(),
    );
    let leaked = std::fs::read(dir.path().join("k")).unwrap_or_default();
    assert!(
        leaked.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // pkcs11-tool's own self-test finds no error in what the token supports.
    let out = pkcs11_tool(&[&login[..], &["--test"]].concat());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("No errors"), "{text}");
}
