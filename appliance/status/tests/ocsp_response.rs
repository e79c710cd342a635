//! OCSP responses built by ca-status, signed with a software P-256 key, checked by
//! `openssl ocsp`, Python `cryptography` and the x509-ocsp parser.

#![allow(clippy::unwrap_used)] // tests fail loudly on broken fixtures

mod common;

use ca_status::ocsp::{
    assemble, error_response, CertId, CertStatus, HashAlgorithm, IssuerKeyHashes, OcspErrorStatus,
    OcspRequest, ResponseData, ResponseError, SingleResponse,
};
use ca_status::Reason;
use common::{ecdsa_sha256, openssl, python_check, run_ok, run_text, sign, Issued, Pki};
use der::Decode;
use p256::ecdsa::SigningKey;
use std::path::Path;
use time::{Duration, OffsetDateTime};

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

fn single(cert_id: CertId, status: CertStatus) -> SingleResponse {
    SingleResponse {
        cert_id,
        status,
        this_update: now() - Duration::hours(1),
        next_update: now() + Duration::days(3),
    }
}

/// Signs `data` with `key` and returns the full OCSPResponse DER.
fn signed(data: &ResponseData, key: &SigningKey, certs: &[&[u8]]) -> Vec<u8> {
    let tbs = data.tbs_der().unwrap();
    let sig = sign(key, &tbs);
    assemble(&tbs, &ecdsa_sha256(), &sig, certs).unwrap()
}

/// `openssl ocsp -respin` verification; returns its text output (asserting success).
fn openssl_check(pki: &Pki, resp: &Path, certs: &[&Issued], extra: &[&str]) -> String {
    let mut cmd = openssl();
    cmd.args(["ocsp", "-respin"])
        .arg(resp)
        .arg("-issuer")
        .arg(&pki.ca.pem);
    cmd.args(extra); // digest options must precede -cert
    for c in certs {
        cmd.arg("-cert").arg(&c.pem);
    }
    cmd.arg("-CAfile").arg(&pki.ca.pem).arg("-resp_text");
    let text = run_ok(&mut cmd);
    assert!(text.contains("Response verify OK"), "{text}");
    text
}

fn write(pki: &Pki, name: &str, data: &[u8]) -> std::path::PathBuf {
    let p = pki.path(name);
    std::fs::write(&p, data).unwrap();
    p
}

#[test]
fn good_revoked_unknown_verify_with_openssl_and_python() {
    let pki = Pki::new();
    let ee = pki.issue("ee", "0x5eed0123456789abcdef", "v3_ee", None);
    let hashes = pki.ca_hashes();
    let id = CertId::new(HashAlgorithm::Sha1, &hashes, &ee.serial).unwrap();
    let revoked_at = now() - Duration::days(2);
    let cases = [
        (CertStatus::Good, "good", "-", None),
        (
            CertStatus::Revoked {
                time: revoked_at,
                reason: Some(Reason::KeyCompromise),
            },
            "revoked",
            "key_compromise",
            Some("Reason: keyCompromise"),
        ),
        (
            CertStatus::Revoked {
                time: revoked_at,
                reason: None,
            },
            "revoked",
            "-",
            None,
        ),
        (CertStatus::Unknown, "unknown", "-", None),
    ];
    for (i, (status, word, py_reason, extra_text)) in cases.into_iter().enumerate() {
        let data =
            ResponseData::new(hashes.sha1_key, now()).with_response(single(id.clone(), status));
        let der = signed(&data, &pki.ca_key, &[]);
        let path = write(&pki, &format!("resp{i}.der"), &der);
        let text = openssl_check(&pki, &path, &[&ee], &[]);
        assert!(text.contains(&format!(": {word}")), "{word}: {text}");
        if let Some(t) = extra_text {
            assert!(text.contains(t), "{text}");
        }
        let py = python_check(&[
            "ocsp",
            path.to_str().unwrap(),
            pki.ca.pem.to_str().unwrap(),
            word,
            py_reason,
            "-",
        ]);
        assert!(py.contains("PY OCSP OK"), "{py}");
        // Third opinion: the RustCrypto parser reads it back with the same status.
        let parsed = x509_ocsp::OcspResponse::from_der(&der).unwrap();
        assert_eq!(
            parsed.response_status,
            x509_ocsp::OcspResponseStatus::Successful
        );
    }
}

#[test]
fn answers_an_openssl_request_echoing_certid_and_nonce() {
    let pki = Pki::new();
    let ee = pki.issue("ee", "0x0badc0ffee", "v3_ee", None);
    let req_path = pki.path("req.der");
    run_ok(
        openssl()
            .args(["ocsp", "-issuer"])
            .arg(&pki.ca.pem)
            .arg("-cert")
            .arg(&ee.pem)
            .args(["-nonce", "-reqout"])
            .arg(&req_path),
    );
    let req = OcspRequest::parse(&std::fs::read(&req_path).unwrap()).unwrap();
    let nonce = req.nonce.clone().unwrap();
    let hashes = pki.ca_hashes();
    assert!(hashes.matches(&req.cert_ids[0]));
    let mut data = ResponseData::new(hashes.sha1_key, now())
        .with_response(single(req.cert_ids[0].clone(), CertStatus::Good));
    data.nonce = Some(nonce.clone());
    let der = signed(&data, &pki.ca_key, &[&pki.ca.der]);
    assert!(
        der.windows(req.cert_ids[0].der().len())
            .any(|w| w == req.cert_ids[0].der()),
        "CertID echoed byte for byte"
    );
    let path = write(&pki, "resp.der", &der);
    let text = openssl_check(&pki, &path, &[&ee], &["-no_nonce"]);
    assert!(text.contains("ee.pem: good"), "{text}");
    // openssl compares the nonce of the original request with the response's.
    let check_nonce = |resp: &Path| {
        run_text(
            openssl()
                .args(["ocsp", "-reqin"])
                .arg(&req_path)
                .arg("-respin")
                .arg(resp)
                .arg("-CAfile")
                .arg(&pki.ca.pem),
        )
    };
    let (ok, text) = check_nonce(&path);
    assert!(ok && text.contains("Response verify OK"), "{text}");
    assert!(!text.contains("WARNING"), "{text}");
    data.nonce = Some(ca_status::ocsp::Nonce::new(&[9; 16]).unwrap());
    let wrong = write(&pki, "wrong-nonce.der", &signed(&data, &pki.ca_key, &[]));
    let (ok, text) = check_nonce(&wrong);
    assert!(!ok && text.contains("Nonce Verify error"), "{text}");
    let py = python_check(&[
        "ocsp",
        path.to_str().unwrap(),
        pki.ca.pem.to_str().unwrap(),
        "good",
        "-",
        &hex::encode(nonce.as_bytes()),
    ]);
    assert!(py.contains("certs=1"), "{py}");
}

#[test]
fn sha256_certids_and_several_certificates_in_one_response() {
    let pki = Pki::new();
    let ee1 = pki.issue("ee1", "0x1111", "v3_ee", None);
    let ee2 = pki.issue("ee2", "0x2222", "v3_ee", None);
    let req_path = pki.path("req.der");
    run_ok(
        openssl()
            .args(["ocsp", "-sha256", "-issuer"])
            .arg(&pki.ca.pem)
            .arg("-cert")
            .arg(&ee1.pem)
            .arg("-cert")
            .arg(&ee2.pem)
            .args(["-no_nonce", "-reqout"])
            .arg(&req_path),
    );
    let req = OcspRequest::parse(&std::fs::read(&req_path).unwrap()).unwrap();
    assert_eq!(req.cert_ids.len(), 2);
    let hashes = pki.ca_hashes();
    let mut data = ResponseData::new(hashes.sha1_key, now());
    for id in &req.cert_ids {
        assert_eq!(id.hash_algorithm(), HashAlgorithm::Sha256);
        assert!(hashes.matches(id));
        data = data.with_response(single(id.clone(), CertStatus::Good));
    }
    let der = signed(&data, &pki.ca_key, &[]);
    let path = write(&pki, "resp.der", &der);
    let text = openssl_check(&pki, &path, &[&ee1, &ee2], &["-sha256"]);
    assert!(
        text.contains("ee1.pem: good") && text.contains("ee2.pem: good"),
        "{text}"
    );
    let py = python_check(&[
        "ocsp",
        path.to_str().unwrap(),
        pki.ca.pem.to_str().unwrap(),
        "good",
        "-",
        "-",
    ]);
    assert_eq!(py.matches("single serial=").count(), 2, "{py}");
}

#[test]
fn delegated_responder_certificate_is_carried_and_verifies() {
    let pki = Pki::new();
    let ee = pki.issue("ee", "0x7777", "v3_ee", None);
    let responder_key = SigningKey::random(&mut rand::rngs::OsRng);
    let responder = pki.issue("responder", "0x0c5b", "v3_ocsp", Some(&responder_key));
    let responder_hash = IssuerKeyHashes::from_cert_der(&responder.der)
        .unwrap()
        .sha1_key;
    let id = CertId::new(HashAlgorithm::Sha1, &pki.ca_hashes(), &ee.serial).unwrap();
    let data = ResponseData::new(responder_hash, now()).with_response(single(
        id,
        CertStatus::Revoked {
            time: now() - Duration::hours(5),
            reason: Some(Reason::Superseded),
        },
    ));
    let der = signed(&data, &responder_key, &[&responder.der]);
    let path = write(&pki, "resp.der", &der);
    let text = openssl_check(&pki, &path, &[&ee], &[]);
    assert!(
        text.contains("ee.pem: revoked") && text.contains("superseded"),
        "{text}"
    );
    let py = python_check(&[
        "ocsp",
        path.to_str().unwrap(),
        responder.pem.to_str().unwrap(),
        "revoked",
        "superseded",
        "-",
    ]);
    let want = format!("responder_key_hash={}", hex::encode(responder_hash));
    assert!(py.contains(&want) && py.contains("certs=1"), "{py}");

    // Signed by the wrong key: openssl must refuse it (the check above can fail).
    let forged = signed(&data, &pki.ca_key, &[&responder.der]);
    let path = write(&pki, "forged.der", &forged);
    let (ok, text) = run_text(
        openssl()
            .args(["ocsp", "-respin"])
            .arg(&path)
            .arg("-issuer")
            .arg(&pki.ca.pem)
            .arg("-cert")
            .arg(&ee.pem)
            .arg("-CAfile")
            .arg(&pki.ca.pem),
    );
    assert!(!text.contains("Response verify OK"), "ok={ok} {text}");
}

#[test]
fn never_issued_serial_is_revoked_with_extended_revoke() {
    let pki = Pki::new();
    let hashes = pki.ca_hashes();
    let id = CertId::new(HashAlgorithm::Sha1, &hashes, &[0x42, 0x42, 0x42]).unwrap();
    let mut data = ResponseData::new(hashes.sha1_key, now())
        .with_response(single(id, CertStatus::never_issued_revoked()));
    data.extended_revoke = true;
    let der = signed(&data, &pki.ca_key, &[]);
    let path = write(&pki, "resp.der", &der);
    let text = run_ok(
        openssl()
            .args(["ocsp", "-respin"])
            .arg(&path)
            .arg("-issuer")
            .arg(&pki.ca.pem)
            .args(["-serial", "0x424242", "-CAfile"])
            .arg(&pki.ca.pem)
            .arg("-resp_text"),
    );
    assert!(text.contains("Response verify OK"), "{text}");
    assert!(text.contains("0x424242: revoked"), "{text}");
    assert!(text.contains("certificateHold"), "{text}");
    assert!(text.contains("Jan  1 00:00:00 1970 GMT"), "{text}");
    let py = python_check(&[
        "ocsp",
        path.to_str().unwrap(),
        pki.ca.pem.to_str().unwrap(),
        "revoked",
        "certificate_hold",
        "-",
    ]);
    assert!(py.contains("PY OCSP OK"));
    // The extension is really there, non-critical.
    let resp = x509_ocsp::OcspResponse::from_der(&der).unwrap();
    let basic =
        x509_ocsp::BasicOcspResponse::from_der(resp.response_bytes.unwrap().response.as_bytes())
            .unwrap();
    let exts = basic.tbs_response_data.response_extensions.unwrap();
    assert!(exts
        .iter()
        .any(|e| e.extn_id == const_oid::db::rfc6960::ID_PKIX_OCSP_EXTENDED_REVOKE && !e.critical));
}

#[test]
fn error_responses_have_status_and_no_bytes() {
    let dir = tempfile::tempdir().unwrap();
    for (status, name, py_name) in [
        (
            OcspErrorStatus::MalformedRequest,
            "malformedrequest",
            "MALFORMED_REQUEST",
        ),
        (
            OcspErrorStatus::InternalError,
            "internalerror",
            "INTERNAL_ERROR",
        ),
        (OcspErrorStatus::TryLater, "trylater", "TRY_LATER"),
        (
            OcspErrorStatus::Unauthorized,
            "unauthorized",
            "UNAUTHORIZED",
        ),
    ] {
        let der = error_response(status);
        let parsed = x509_ocsp::OcspResponse::from_der(&der).unwrap();
        assert!(parsed.response_bytes.is_none());
        assert_eq!(parsed.response_status as u8, status.code());
        let path = dir.path().join(format!("{name}.der"));
        std::fs::write(&path, &der).unwrap();
        let (_, text) = run_text(
            openssl()
                .args(["ocsp", "-respin"])
                .arg(&path)
                .arg("-resp_text"),
        );
        assert!(text.to_lowercase().contains(name), "{text}");
        python_check(&["ocsp-error", path.to_str().unwrap(), py_name]);
    }
}

#[test]
fn invalid_response_inputs_are_typed_errors() {
    let hashes = IssuerKeyHashes {
        sha1_name: [1; 20],
        sha1_key: [2; 20],
        sha256_name: [3; 32],
        sha256_key: [4; 32],
        sm3_name: [5; 32],
        sm3_key: [6; 32],
    };
    let id = CertId::new(HashAlgorithm::Sha1, &hashes, &[1]).unwrap();
    let empty = ResponseData::new([0; 20], now());
    assert_eq!(empty.tbs_der(), Err(ResponseError::NoResponses));
    let mut backwards = single(id.clone(), CertStatus::Good);
    backwards.next_update = backwards.this_update;
    let data = ResponseData::new([0; 20], now()).with_response(backwards);
    assert_eq!(
        data.tbs_der(),
        Err(ResponseError::NextUpdateNotAfterThisUpdate)
    );

    let data = ResponseData::new([0; 20], now()).with_response(single(id, CertStatus::Good));
    let tbs = data.tbs_der().unwrap();
    let alg = ecdsa_sha256();
    assert_eq!(
        assemble(&tbs[..tbs.len() - 1], &alg, &[1], &[]),
        Err(ResponseError::MalformedTbs)
    );
    assert_eq!(
        assemble(&tbs, &alg, &[], &[]),
        Err(ResponseError::EmptySignature)
    );
    assert_eq!(
        assemble(&tbs, &alg, &[1], &[&[0x30, 0x00], &[0x31, 0x00]]),
        Err(ResponseError::MalformedCertificate { index: 1 })
    );
    assert!(CertId::new(HashAlgorithm::Sha1, &hashes, &[0x00, 0x01]).is_err());
}
