//! SM2 end to end: `init --demo --sm2` (ca-softtoken), an SM2 certificate issued by an operator
//! for an openssl-made SM2 CSR, its chain checked by `openssl verify`, the SM2 CRL and the OCSP
//! response checked by gmssl (an independent SM2 implementation) and by openssl.
#![allow(clippy::unwrap_used)] // tests may unwrap: a failure is the test failing

mod vendor_setup;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;
use system_tests::*;
use vendor_setup::Setup;

/// GM/T 0009's default signer ID; Debian's OpenSSL 3.0 sets no default, so it is passed.
const DISTID: &str = "distid:1234567812345678";

fn openssl(dir: &Path, args: &[&str]) -> (bool, String) {
    let (ok, out, err) = run(Command::new("openssl").current_dir(dir).args(args));
    (ok, format!("{out}{err}"))
}

fn gmssl_verify(dir: &Path, args: &[&str]) -> (bool, String) {
    let script = workspace_root().join("tests/python/sm2_verify.py");
    let (ok, out, err) = run(Command::new("python3")
        .current_dir(dir)
        .arg(script)
        .args(args));
    (ok, format!("{out}{err}"))
}

/// An SM2 key and a CSR signed with SM3withSM2 under the default signer ID, by openssl.
fn sm2_csr(dir: &Path, stem: &str) -> String {
    let key = format!("{stem}.key");
    let csr = format!("{stem}.csr");
    let (ok, out) = openssl(
        dir,
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:SM2",
            "-out",
            &key,
        ],
    );
    assert!(ok, "{out}");
    let (ok, out) = openssl(
        dir,
        &[
            "req",
            "-new",
            "-key",
            &key,
            "-sm3",
            "-sigopt",
            DISTID,
            "-subj",
            "/CN=ignored",
            "-out",
            &csr,
        ],
    );
    assert!(ok, "{out}");
    std::fs::read_to_string(dir.join(csr)).unwrap()
}

#[tokio::test]
async fn sm2_hierarchy_issues_certificates_crls_and_ocsp_that_independent_sm2_verifies() {
    let demo = DemoDir::create_with(&["--sm2"]);
    let _server = demo.serve();
    let dir = demo.path();

    // Operator issuance (direct): the SM2 CSR's proof of possession is checked with the ID.
    let resp = demo
        .issue(
            "operator",
            "sm2-personal",
            &sm2_csr(dir, "ee"),
            serde_json::json!({"name": "张三"}),
        )
        .await;
    let serial = resp["serial"].as_str().unwrap().to_owned();
    std::fs::write(dir.join("ee.pem"), resp["certificate"].as_str().unwrap()).unwrap();
    assert_eq!(
        resp["chain"].as_array().unwrap().len(),
        2,
        "issuing CA then SM2 root"
    );

    // The chain: SM2-with-SM3 throughout, accepted by openssl; not by the ECDSA root.
    let (ok, text) = openssl(dir, &["x509", "-in", "ee.pem", "-noout", "-text"]);
    assert!(
        ok && text.contains("Signature Algorithm: SM2-with-SM3") && text.contains("ASN1 OID: SM2"),
        "{text}"
    );
    // Debian's OpenSSL 3.0 applies -vfyopt to the first link only (openssl/openssl#23471), so
    // the chain is checked link by link: the issuing CA under the SM2 root, the leaf under the
    // issuing CA (-partial_chain trusts it as the anchor).
    let link = |anchor: &str, cert: &str| {
        openssl(
            dir,
            &[
                "verify",
                "-vfyopt",
                DISTID,
                "-partial_chain",
                "-CAfile",
                anchor,
                cert,
            ],
        )
    };
    let (ok, out) = link("ca/sm2-root.pem", "ca/sm2-personal.pem");
    assert!(ok && out.contains(": OK"), "{out}");
    let (ok, out) = link("ca/sm2-personal.pem", "ee.pem");
    assert!(ok && out.contains("ee.pem: OK"), "{out}");
    assert!(
        !link("ca/sm2-root.pem", "ee.pem").0,
        "the leaf is not the root's"
    );
    assert!(
        !link("ca/root.pem", "ca/sm2-personal.pem").0,
        "nor is the SM2 CA the ECDSA root's"
    );
    for (cert, issuer) in [
        ("ee.pem", "ca/sm2-personal.pem"),
        ("ca/sm2-personal.pem", "ca/sm2-root.pem"),
    ] {
        let (cert_der, issuer_der) = (format!("{cert}.der"), format!("{issuer}.der"));
        openssl(
            dir,
            &["x509", "-in", cert, "-outform", "DER", "-out", &cert_der],
        );
        openssl(
            dir,
            &[
                "x509",
                "-in",
                issuer,
                "-outform",
                "DER",
                "-out",
                &issuer_der,
            ],
        );
        let (ok, out) = gmssl_verify(dir, &["cert", &cert_der, &issuer_der]);
        assert!(ok, "gmssl: {cert}: {out}");
    }

    // A wrong PoP (a CSR whose signature is over other bytes) is refused.
    let mut bad = pem_rfc7468_der(&std::fs::read_to_string(dir.join("ee.csr")).unwrap());
    let last = bad.len() - 3;
    bad[last] ^= 1;
    let body = serde_json::json!({
        "profile": "sm2-personal",
        "csr": pem(&bad, "CERTIFICATE REQUEST"),
        "subject": {"name": "张三"},
    });
    let (status, resp) = api_request(
        demo.api,
        demo.client_tls("operator"),
        "POST",
        "/api/v1/certificates",
        Some(serde_json::to_vec(&body).unwrap()),
    )
    .await
    .unwrap();
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&resp));

    // Revoke; the SM2 CRL lists it within seconds and its signature verifies.
    let (status, resp) = api_request(
        demo.api,
        demo.client_tls("operator"),
        "POST",
        &format!("/api/v1/certificates/{serial}/revoke"),
        Some(serde_json::to_vec(&serde_json::json!({"reason": "keyCompromise"})).unwrap()),
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&resp));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, _, body) = public_get(demo.public, "/crl/sm2-personal.crl").await;
        assert_eq!(status, 200);
        std::fs::write(dir.join("sm2.crl"), &body).unwrap();
        let (_, text) = openssl(
            dir,
            &["crl", "-inform", "DER", "-in", "sm2.crl", "-noout", "-text"],
        );
        if text.to_ascii_lowercase().replace(':', "").contains(&serial) {
            assert!(text.contains("Signature Algorithm: SM2-with-SM3"), "{text}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the SM2 CRL never listed {serial}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (ok, out) = gmssl_verify(dir, &["crl", "sm2.crl", "ca/sm2-personal.pem.der"]);
    assert!(ok, "gmssl: CRL: {out}");
    let (ok, _) = gmssl_verify(dir, &["crl", "sm2.crl", "ca/sm2-root.pem.der"]);
    assert!(!ok, "a CRL verifying under the wrong CA key");
    // openssl checks the CRL's signature field by field (its `crl -verify` sets no signer ID).
    let (tbs, sig) = crl_tbs_and_signature(&std::fs::read(dir.join("sm2.crl")).unwrap());
    std::fs::write(dir.join("crl.tbs"), tbs).unwrap();
    std::fs::write(dir.join("crl.sig"), sig).unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-in",
            "ca/sm2-personal.pem",
            "-pubkey",
            "-noout",
            "-out",
            "ca-pub.pem",
        ],
    );
    let (ok, out) = openssl(
        dir,
        &[
            "pkeyutl",
            "-verify",
            "-pubin",
            "-inkey",
            "ca-pub.pem",
            "-rawin",
            "-digest",
            "sm3",
            "-pkeyopt",
            DISTID,
            "-in",
            "crl.tbs",
            "-sigfile",
            "crl.sig",
        ],
    );
    assert!(
        ok && out.contains("Signature Verified Successfully"),
        "{out}"
    );

    // OCSP with an SM3 CertID: revoked, signed by an SM2 responder; gmssl verifies it.
    let url = format!("http://{}/ocsp", demo.public);
    let (ok, out) = openssl(
        dir,
        &[
            "ocsp",
            "-sm3",
            "-no_nonce",
            "-issuer",
            "ca/sm2-personal.pem",
            "-cert",
            "ee.pem",
            "-url",
            &url,
            "-noverify",
            "-respout",
            "ocsp.der",
            "-resp_text",
        ],
    );
    assert!(ok && out.contains("ee.pem: revoked"), "{out}");
    assert!(
        out.contains("Hash Algorithm: sm3") && out.contains("Signature Algorithm: SM2-with-SM3"),
        "{out}"
    );
    let (ok, out) = gmssl_verify(dir, &["ocsp", "ocsp.der"]);
    assert!(ok, "gmssl: OCSP: {out}");
}

/// `openssl verify` of `cert` under `anchor` alone, with the SM2 signer ID (Debian's OpenSSL
/// 3.0 applies -vfyopt to the first link only, openssl/openssl#23471, hence link by link).
fn verify_link(dir: &Path, anchor: &str, cert: &str) -> (bool, String) {
    openssl(
        dir,
        &[
            "verify",
            "-vfyopt",
            DISTID,
            "-partial_chain",
            "-CAfile",
            anchor,
            cert,
        ],
    )
}

#[tokio::test]
async fn an_application_through_the_example_bjca_channel_ends_in_an_sm2_certificate() {
    const CHANNEL: &str = "channel-bjca-personal";
    const PHONE: &str = "13800138000";
    let s = Setup::new_with(&["--sm2"], None, |config, _| config);
    let _server = s.demo.serve();
    let dir = s.demo.path();
    let channel = std::fs::read_to_string(dir.join("channels/bjca-personal.toml")).unwrap();
    assert!(channel.contains("\"sm2-personal\"") && channel.contains("sign = \"sms\""));

    let body = json!({"kind": "new", "profile": "sm2-personal", "csr": sm2_csr(dir, "app"),
        "subject": {"type": "person", "name": "张三", "id_type": "resident_id",
        "id_number": "11010519491231002X", "phone": PHONE}});
    let (status, _, app) = s
        .call(CHANNEL, "POST", "/api/v1/applications", Some(body))
        .await;
    assert_eq!(status, 201, "{app}");
    assert_eq!(app["status"], "awaiting_choice", "{app}");
    let id = app["id"].as_str().unwrap().to_owned();
    let act = |action: &'static str, body: serde_json::Value| {
        let path = format!("/api/v1/applications/{id}/{action}");
        let s = &s;
        async move { s.call(CHANNEL, "POST", &path, Some(body)).await }
    };
    let sent = s.sim.sms_to(PHONE).await.len();
    let (status, _, v) = act("choose", json!({"method": "phone-real-name"})).await;
    assert_eq!(status, 200, "{v}");
    // The operator's code (phone real-name), then the appliance's own (the SMS signature).
    for n in [sent + 1, sent + 2] {
        let msgs = s.sim.wait_sms(PHONE, n, Duration::from_secs(30)).await;
        let code = msgs[n - 1]["code"].as_str().unwrap().to_owned();
        let (status, _, v) = act("input", json!({"kind": "sms_code", "value": code})).await;
        assert_eq!(status, 200, "{v}");
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let app = loop {
        let (_, _, v) = s
            .call(CHANNEL, "GET", &format!("/api/v1/applications/{id}"), None)
            .await;
        if v["status"] == "issued" {
            break v;
        }
        assert!(Instant::now() < deadline, "never issued: {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    std::fs::write(
        dir.join("app.pem"),
        app["certificate"]["pem"].as_str().unwrap(),
    )
    .unwrap();

    // SM2-with-SM3, issued by the SM2 CA, which the SM2 root issued: openssl accepts both links.
    let (ok, text) = openssl(dir, &["x509", "-in", "app.pem", "-noout", "-text"]);
    assert!(
        ok && text.contains("Signature Algorithm: SM2-with-SM3") && text.contains("ASN1 OID: SM2"),
        "{text}"
    );
    let (_, subject) = openssl(
        dir,
        &[
            "x509",
            "-in",
            "app.pem",
            "-noout",
            "-subject",
            "-nameopt",
            "RFC2253,-esc_msb",
        ],
    );
    assert_eq!(subject.trim(), "subject=CN=张三,C=CN");
    let (ok, out) = verify_link(dir, "ca/sm2-personal.pem", "app.pem");
    assert!(ok && out.contains("app.pem: OK"), "{out}");
    let (ok, out) = verify_link(dir, "ca/sm2-root.pem", "ca/sm2-personal.pem");
    assert!(ok && out.contains(": OK"), "{out}");
    assert!(!verify_link(dir, "ca/personal.pem", "app.pem").0);

    // Its OCSP status (SM3 CertID) is good, signed by the SM2 responder; gmssl verifies it.
    let url = format!("http://{}/ocsp", s.demo.public);
    let (ok, out) = openssl(
        dir,
        &[
            "ocsp",
            "-sm3",
            "-no_nonce",
            "-issuer",
            "ca/sm2-personal.pem",
            "-cert",
            "app.pem",
            "-url",
            &url,
            "-noverify",
            "-respout",
            "app-ocsp.der",
            "-resp_text",
        ],
    );
    assert!(ok && out.contains("app.pem: good"), "{out}");
    assert!(out.contains("Signature Algorithm: SM2-with-SM3"), "{out}");
    let (ok, out) = gmssl_verify(dir, &["ocsp", "app-ocsp.der"]);
    assert!(ok && out.contains("OK"), "gmssl: OCSP: {out}");
}

/// The TBSCertList and the signature BIT STRING's bytes of a DER CRL.
fn crl_tbs_and_signature(der: &[u8]) -> (Vec<u8>, Vec<u8>) {
    use der::{Decode, Encode};
    let crl = x509_cert::crl::CertificateList::from_der(der).unwrap();
    (
        crl.tbs_cert_list.to_der().unwrap(),
        crl.signature.raw_bytes().to_vec(),
    )
}

fn pem_rfc7468_der(text: &str) -> Vec<u8> {
    pem_rfc7468::decode_vec(text.as_bytes()).unwrap().1
}

fn pem(der: &[u8], label: &str) -> String {
    pem_rfc7468::encode_string(label, pem_rfc7468::LineEnding::LF, der).unwrap()
}

/// Opens an envelope with gmssl (`tests/python/sm2_envelope.py`): `Some(d hex)` when it
/// decrypts with `key` and d matches the encryption certificate.
fn open_envelope(dir: &Path, envelope_b64: &str, key: &str, enc_cert_der: &str) -> Option<String> {
    use base64::Engine;
    let der = base64::engine::general_purpose::STANDARD
        .decode(envelope_b64)
        .unwrap();
    std::fs::write(dir.join("envelope.der"), der).unwrap();
    let script = workspace_root().join("tests/python/sm2_envelope.py");
    let (ok, out, err) = run(Command::new("python3").current_dir(dir).arg(script).args([
        "envelope.der",
        key,
        enc_cert_der,
    ]));
    if !ok {
        eprintln!("sm2_envelope.py: {out}{err}");
        return None;
    }
    out.trim().strip_prefix("OK ").map(str::to_owned)
}

#[tokio::test]
async fn a_dual_certificate_delivers_an_escrowed_encryption_key_that_two_officers_recover() {
    let demo = DemoDir::create_with(&["--sm2"]);
    let _server = demo.serve();
    let dir = demo.path();
    let call = |who: &'static str, path: String, body: Option<serde_json::Value>| {
        let tls = demo.client_tls(who);
        let api = demo.api;
        async move {
            let body = body.map(|b| serde_json::to_vec(&b).unwrap());
            let (status, resp) = api_request(api, tls, "POST", &path, body).await.unwrap();
            (
                status,
                serde_json::from_slice::<serde_json::Value>(&resp).unwrap_or_default(),
            )
        }
    };

    // The signing half: the applicant's own SM2 key, from its CSR.
    let signing = demo
        .issue(
            "operator",
            "sm2-personal",
            &sm2_csr(dir, "sig"),
            json!({"name": "张三"}),
        )
        .await;
    let serial = signing["serial"].as_str().unwrap().to_owned();
    std::fs::write(
        dir.join("sig.pem"),
        signing["certificate"].as_str().unwrap(),
    )
    .unwrap();

    // The encryption half: made by key management, issued beside it.
    let (status, enc) = call(
        "operator",
        format!("/api/v1/certificates/{serial}/encryption"),
        None,
    )
    .await;
    assert_eq!(status, 201, "{enc}");
    std::fs::write(dir.join("enc.pem"), enc["certificate"].as_str().unwrap()).unwrap();
    openssl(
        dir,
        &[
            "x509", "-in", "enc.pem", "-outform", "DER", "-out", "enc.der",
        ],
    );
    let (ok, text) = openssl(dir, &["x509", "-in", "enc.pem", "-noout", "-text"]);
    assert!(ok, "{text}");
    assert!(
        text.contains("Key Encipherment, Data Encipherment")
            && !text.contains("Digital Signature")
            && text.contains("ASN1 OID: SM2")
            && text.contains("Signature Algorithm: SM2-with-SM3"),
        "{text}"
    );
    let subject = |f: &str| {
        openssl(
            dir,
            &[
                "x509",
                "-in",
                f,
                "-noout",
                "-subject",
                "-nameopt",
                "RFC2253,-esc_msb",
            ],
        )
        .1
    };
    assert_eq!(subject("enc.pem"), subject("sig.pem"));
    let (ok, out) = verify_link(dir, "ca/sm2-personal.pem", "enc.pem");
    assert!(ok && out.contains("enc.pem: OK"), "{out}");
    assert_ne!(enc["serial"], serial);

    // The applicant opens the envelope with its signing key (gmssl, independent SM2 and SM4),
    // and the pair is the certificate's; another SM2 key cannot open it.
    let envelope = enc["envelope"].as_str().unwrap();
    let d = open_envelope(dir, envelope, "sig.key", "enc.der").expect("the applicant opens it");
    sm2_csr(dir, "other");
    assert_eq!(open_envelope(dir, envelope, "other.key", "enc.der"), None);

    // One encryption certificate per signing certificate.
    let (status, again) = call(
        "operator",
        format!("/api/v1/certificates/{serial}/encryption"),
        None,
    )
    .await;
    assert_eq!(
        (status, again["error"].as_str()),
        (409, Some("already_issued")),
        "{again}"
    );

    // The escrowed key is sealed: its scalar is nowhere in the database.
    let mut db = std::fs::read(dir.join("data/appliance.db")).unwrap();
    db.extend(std::fs::read(dir.join("data/appliance.db-wal")).unwrap_or_default());
    let d_bytes = hex::decode(&d).unwrap();
    assert!(
        !db.windows(32).any(|w| w == d_bytes),
        "the private key in the clear"
    );

    // Recovery: one RA officer asks, the same one cannot approve, a second one does.
    let escrow = enc["escrow_id"].as_str().unwrap();
    let body = json!({"reason": "the subscriber lost the key", "deliver_to": std::fs::read_to_string(dir.join("sig.pem")).unwrap()});
    let (status, v) = call(
        "operator",
        format!("/api/v1/escrow/{escrow}/recoveries"),
        Some(body.clone()),
    )
    .await;
    assert_eq!(
        (status, v["error"].as_str()),
        (403, Some("role_not_allowed")),
        "{v}"
    );
    let (status, rec) = call(
        "ra-officer",
        format!("/api/v1/escrow/{escrow}/recoveries"),
        Some(body),
    )
    .await;
    assert_eq!(status, 201, "{rec}");
    let rec_id = rec["id"].as_str().unwrap().to_owned();
    let (status, v) = call(
        "ra-officer",
        format!("/api/v1/recoveries/{rec_id}/approve"),
        None,
    )
    .await;
    assert_eq!(
        (status, v["error"].as_str()),
        (403, Some("second_officer_required")),
        "{v}"
    );
    assert!(v.get("envelope").is_none());
    let (status, approved) = call(
        "ra-officer-2",
        format!("/api/v1/recoveries/{rec_id}/approve"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{approved}");
    let recovered = open_envelope(
        dir,
        approved["envelope"].as_str().unwrap(),
        "sig.key",
        "enc.der",
    );
    assert_eq!(
        recovered.as_deref(),
        Some(d.as_str()),
        "the same key, recovered"
    );
    let (status, v) = call(
        "ra-officer-2",
        format!("/api/v1/recoveries/{rec_id}/approve"),
        None,
    )
    .await;
    assert_eq!(
        (status, v["error"].as_str()),
        (409, Some("already_approved")),
        "{v}"
    );

    // Each step is an audit row naming its officer.
    let (ok, out, err) = run(Command::new("python3").args([
        "-c",
        "import sqlite3,sys\nfor r in sqlite3.connect(sys.argv[1]).execute(\"SELECT action, actor FROM audit_log WHERE action LIKE 'escrow.%' ORDER BY seq\"): print(*r)",
        dir.join("data/appliance.db").to_str().unwrap(),
    ]));
    assert!(ok, "{err}");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            "escrow.generate operator:operator",
            "escrow.recovery_request ra_officer:ra-officer",
            "escrow.recovery_approve ra_officer:ra-officer-2",
        ],
        "{out}"
    );
}
