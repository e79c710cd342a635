//! Signatures from a real SoftHSM2 token, checked with RustCrypto and the openssl CLI.
#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use std::process::Command;

use hsm::{HsmError, KeyKind, SignatureAlgorithm};
use rsa::{Pkcs1v15Sign, Pss, RsaPublicKey};
use sha2::{Sha256, Sha384};
use signature::hazmat::PrehashVerifier;
use signature::Verifier;
use spki::DecodePublicKey;

const TBS: &[u8] = b"a TBSCertificate stand-in: any bytes the CA wants signed";

/// Verify `sig` over `data` with the RustCrypto implementation matching `alg`.
fn verify(spki: &[u8], alg: SignatureAlgorithm, data: &[u8], sig: &[u8]) {
    let digest = alg.digest(data);
    match alg {
        SignatureAlgorithm::EcdsaSha256 => {
            let key = p256::ecdsa::VerifyingKey::from_public_key_der(spki).unwrap();
            let sig = p256::ecdsa::Signature::from_der(sig).unwrap();
            key.verify(data, &sig).unwrap();
            key.verify_prehash(&digest, &sig).unwrap();
        }
        SignatureAlgorithm::EcdsaSha384 => {
            let key = p384::ecdsa::VerifyingKey::from_public_key_der(spki).unwrap();
            let sig = p384::ecdsa::Signature::from_der(sig).unwrap();
            key.verify(data, &sig).unwrap();
        }
        _ => {
            let key = RsaPublicKey::from_public_key_der(spki).unwrap();
            let scheme_result = match alg {
                SignatureAlgorithm::RsaPkcs1Sha256 => {
                    key.verify(Pkcs1v15Sign::new::<Sha256>(), &digest, sig)
                }
                SignatureAlgorithm::RsaPkcs1Sha384 => {
                    key.verify(Pkcs1v15Sign::new::<Sha384>(), &digest, sig)
                }
                SignatureAlgorithm::RsaPssSha256 => {
                    key.verify(Pss::new_with_salt::<Sha256>(32), &digest, sig)
                }
                SignatureAlgorithm::RsaPssSha384 => {
                    key.verify(Pss::new_with_salt::<Sha384>(48), &digest, sig)
                }
                _ => unreachable!(),
            };
            scheme_result.unwrap();
        }
    }
}

#[tokio::test]
async fn every_algorithm_signs_and_verifies_with_rustcrypto() {
    let hsm = common::open("sign-all").await;
    let ec256 = hsm
        .generate_key_pair("p256", KeyKind::EcP256)
        .await
        .unwrap();
    let ec384 = hsm
        .generate_key_pair("p384", KeyKind::EcP384)
        .await
        .unwrap();
    let rsa = hsm
        .generate_key_pair("rsa", KeyKind::Rsa2048)
        .await
        .unwrap();
    let cases = [
        (&ec256, SignatureAlgorithm::EcdsaSha256),
        (&ec384, SignatureAlgorithm::EcdsaSha384),
        (&rsa, SignatureAlgorithm::RsaPkcs1Sha256),
        (&rsa, SignatureAlgorithm::RsaPkcs1Sha384),
        (&rsa, SignatureAlgorithm::RsaPssSha256),
        (&rsa, SignatureAlgorithm::RsaPssSha384),
    ];
    for (key, alg) in cases {
        let spki = hsm.public_key_der(key).await.unwrap();
        let sig = hsm.sign(key, alg, TBS).await.unwrap();
        verify(&spki, alg, TBS, &sig);
        let sig = hsm.sign_digest(key, alg, &alg.digest(TBS)).await.unwrap();
        verify(&spki, alg, TBS, &sig);
        let sig = hsm.sign_blocking(key, alg, TBS).unwrap();
        verify(&spki, alg, TBS, &sig);
        if alg.is_ecdsa() {
            assert_eq!(sig[0], 0x30, "{alg}: DER SEQUENCE, not raw r||s");
        } else {
            assert_eq!(sig.len(), 256, "{alg}: raw RSA signature");
        }
    }
}

#[tokio::test]
async fn a_signature_over_other_data_does_not_verify() {
    let hsm = common::open("sign-neg").await;
    let key = hsm
        .generate_key_pair("p256", KeyKind::EcP256)
        .await
        .unwrap();
    let spki = hsm.public_key_der(&key).await.unwrap();
    let sig = hsm
        .sign(&key, SignatureAlgorithm::EcdsaSha256, TBS)
        .await
        .unwrap();
    let vk = p256::ecdsa::VerifyingKey::from_public_key_der(&spki).unwrap();
    let sig = p256::ecdsa::Signature::from_der(&sig).unwrap();
    assert!(vk.verify(b"something else", &sig).is_err());
}

fn openssl_verify(dir: &std::path::Path, spki: &[u8], digest: &str, extra: &[&str], sig: &[u8]) {
    let pem = pem_rfc7468::encode_string("PUBLIC KEY", pem_rfc7468::LineEnding::LF, spki).unwrap();
    std::fs::write(dir.join("pub.pem"), pem).unwrap();
    std::fs::write(dir.join("data"), TBS).unwrap();
    std::fs::write(dir.join("sig"), sig).unwrap();
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(["dgst", digest, "-verify", "pub.pem", "-signature", "sig"])
        .args(extra)
        .arg("data")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("Verified OK"),
        "openssl {digest} {extra:?}: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn openssl_cli_verifies_ecdsa_pkcs1_and_pss_signatures() {
    let hsm = common::open("openssl").await;
    let ec = hsm
        .generate_key_pair("p256", KeyKind::EcP256)
        .await
        .unwrap();
    let ec384 = hsm
        .generate_key_pair("p384", KeyKind::EcP384)
        .await
        .unwrap();
    let rsa = hsm
        .generate_key_pair("rsa", KeyKind::Rsa2048)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pss = [
        "-sigopt",
        "rsa_padding_mode:pss",
        "-sigopt",
        "rsa_pss_saltlen:-1",
    ];

    let sig = hsm
        .sign(&ec, SignatureAlgorithm::EcdsaSha256, TBS)
        .await
        .unwrap();
    openssl_verify(
        dir.path(),
        &hsm.public_key_der(&ec).await.unwrap(),
        "-sha256",
        &[],
        &sig,
    );

    let sig = hsm
        .sign_digest(
            &ec384,
            SignatureAlgorithm::EcdsaSha384,
            &SignatureAlgorithm::EcdsaSha384.digest(TBS),
        )
        .await
        .unwrap();
    openssl_verify(
        dir.path(),
        &hsm.public_key_der(&ec384).await.unwrap(),
        "-sha384",
        &[],
        &sig,
    );

    let rsa_spki = hsm.public_key_der(&rsa).await.unwrap();
    let sig = hsm
        .sign(&rsa, SignatureAlgorithm::RsaPkcs1Sha256, TBS)
        .await
        .unwrap();
    openssl_verify(dir.path(), &rsa_spki, "-sha256", &[], &sig);
    let sig = hsm
        .sign(&rsa, SignatureAlgorithm::RsaPssSha384, TBS)
        .await
        .unwrap();
    openssl_verify(dir.path(), &rsa_spki, "-sha384", &pss, &sig);
}

#[tokio::test]
async fn mismatched_algorithm_and_digest_length_are_typed_errors() {
    let hsm = common::open("sign-bad").await;
    let ec = hsm
        .generate_key_pair("p256", KeyKind::EcP256)
        .await
        .unwrap();
    let err = hsm
        .sign(&ec, SignatureAlgorithm::RsaPssSha256, TBS)
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        HsmError::UnsupportedAlgorithm {
            key_kind: KeyKind::EcP256,
            alg: SignatureAlgorithm::RsaPssSha256
        }
    ));
    let err = hsm
        .sign(&ec, SignatureAlgorithm::EcdsaSha384, TBS)
        .await
        .unwrap_err();
    assert!(
        matches!(err, HsmError::UnsupportedAlgorithm { .. }),
        "{err:?}"
    );
    let err = hsm
        .sign_digest(&ec, SignatureAlgorithm::EcdsaSha256, &[0u8; 20])
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        HsmError::DigestLength {
            expected: 32,
            actual: 20,
            ..
        }
    ));
    let missing = hsm.key_uri("missing");
    let err = hsm
        .sign(&missing, SignatureAlgorithm::EcdsaSha256, TBS)
        .await
        .unwrap_err();
    assert!(matches!(err, HsmError::KeyNotFound { .. }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_signatures_from_eight_tasks_all_verify() {
    let hsm = common::open("concurrent").await;
    let key = hsm
        .generate_key_pair("p256", KeyKind::EcP256)
        .await
        .unwrap();
    let vk =
        p256::ecdsa::VerifyingKey::from_public_key_der(&hsm.public_key_der(&key).await.unwrap())
            .unwrap();
    let mut tasks = Vec::new();
    for task in 0..8 {
        let hsm = hsm.clone();
        let key = key.clone();
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            for i in 0..25 {
                let data = format!("task {task} message {i}").into_bytes();
                let sig = hsm
                    .sign(&key, SignatureAlgorithm::EcdsaSha256, &data)
                    .await
                    .unwrap();
                out.push((data, sig));
            }
            out
        }));
    }
    let mut verified = 0;
    for task in tasks {
        for (data, sig) in task.await.unwrap() {
            let sig = p256::ecdsa::Signature::from_der(&sig).unwrap();
            vk.verify(&data, &sig).unwrap();
            verified += 1;
        }
    }
    assert_eq!(verified, 200);
}
