//! OCSP request parsing: requests made by `openssl ocsp` and Python `cryptography`, the
//! RFC 5019 GET encoding, and malformed input (each with its typed error, never a panic).

#![allow(clippy::unwrap_used)] // tests fail loudly on broken fixtures

mod common;

use ca_status::ocsp::{
    decode_get_path, CertId, HashAlgorithm, OcspErrorStatus, OcspRequest, OcspRequestError,
};
use ca_status::DerError;
use common::{openssl, python_check, run_ok, Pki};
use rand::{Rng, SeedableRng};
use std::path::PathBuf;
use std::process::Command;

/// A request for `ee` made by `openssl ocsp` with extra flags; returns (path, DER).
fn openssl_request(
    pki: &Pki,
    name: &str,
    flags: &[&str],
    certs: &[&PathBuf],
) -> (PathBuf, Vec<u8>) {
    let out = pki.path(name);
    let mut cmd = openssl();
    cmd.arg("ocsp").args(flags).arg("-issuer").arg(&pki.ca.pem);
    for c in certs {
        cmd.arg("-cert").arg(c);
    }
    run_ok(cmd.arg("-reqout").arg(&out));
    let der = std::fs::read(&out).unwrap();
    (out, der)
}

#[test]
fn openssl_request_without_nonce() {
    let pki = Pki::new();
    let ee = pki.issue("ee", "0x00f1e2d3c4b5a6978877", "v3_ee", None);
    let (_, der) = openssl_request(&pki, "req.der", &["-no_nonce"], &[&ee.pem]);
    let req = OcspRequest::parse(&der).unwrap();
    assert_eq!(req.nonce, None);
    assert_eq!(req.cert_ids.len(), 1);
    let id = &req.cert_ids[0];
    assert_eq!(id.hash_algorithm(), HashAlgorithm::Sha1);
    assert_eq!(id.serial(), ee.serial.as_slice());
    assert_eq!(id.serial(), hex::decode("00f1e2d3c4b5a6978877").unwrap());
    let hashes = pki.ca_hashes();
    assert!(hashes.matches(id));
    // Our canonical CertID for pre-signing is byte-identical to what openssl sends.
    let ours = CertId::new(HashAlgorithm::Sha1, &hashes, &ee.serial).unwrap();
    assert_eq!(ours.der(), id.der());
    // And openssl agrees on the hashes it printed.
    let text = run_ok(
        openssl()
            .args(["ocsp", "-reqin"])
            .arg(pki.path("req.der"))
            .arg("-req_text"),
    );
    let name_hash = hex::encode_upper(id.issuer_name_hash());
    let key_hash = hex::encode_upper(id.issuer_key_hash());
    assert!(
        text.contains(&name_hash) && text.contains(&key_hash),
        "{text}"
    );
}

#[test]
fn openssl_request_with_nonce_and_sha256_and_two_certs() {
    let pki = Pki::new();
    let ee1 = pki.issue("ee1", "0x0101", "v3_ee", None);
    let ee2 = pki.issue("ee2", "0x0202", "v3_ee", None);
    let (path, der) = openssl_request(
        &pki,
        "req.der",
        &["-nonce", "-sha256"],
        &[&ee1.pem, &ee2.pem],
    );
    let req = OcspRequest::parse(&der).unwrap();
    let nonce = req.nonce.clone().unwrap();
    assert_eq!(nonce.as_bytes().len(), 16);
    let text = run_ok(
        openssl()
            .args(["ocsp", "-reqin"])
            .arg(&path)
            .arg("-req_text"),
    );
    let printed = text.replace([' ', '\n', ':'], "").to_uppercase();
    assert!(
        printed.contains(&hex::encode_upper(nonce.as_bytes())),
        "{text}"
    );
    let serials: Vec<&[u8]> = req.cert_ids.iter().map(|c| c.serial()).collect();
    assert_eq!(serials, [&[0x01, 0x01][..], &[0x02, 0x02][..]]);
    let hashes = pki.ca_hashes();
    for id in &req.cert_ids {
        assert_eq!(id.hash_algorithm(), HashAlgorithm::Sha256);
        assert_eq!(id.issuer_key_hash(), hashes.sha256_key);
        assert!(hashes.matches(id));
    }
    // Another issuer does not match.
    let other = Pki::new().ca_hashes();
    assert!(!other.matches(&req.cert_ids[0]));
}

#[test]
fn get_path_accepts_base64_cli_output_and_percent_encoding() {
    let pki = Pki::new();
    let ee = pki.issue("ee", "0x3e3e", "v3_ee", None);
    // Several nonces so the base64 text exercises '+', '/' and '=' across runs.
    let mut seen_special = false;
    for i in 0..12 {
        let (path, der) = openssl_request(&pki, &format!("req{i}.der"), &["-nonce"], &[&ee.pem]);
        let b64 = run_ok(Command::new("base64").arg("-w0").arg(&path))
            .trim()
            .to_string();
        seen_special |= b64.contains('+') || b64.contains('/');
        let pct = b64
            .replace('+', "%2B")
            .replace('/', "%2F")
            .replace('=', "%3D");
        let url_safe = b64
            .replace('+', "-")
            .replace('/', "_")
            .trim_end_matches('=')
            .to_string();
        for form in [
            &b64,
            &pct,
            &url_safe,
            &b64.trim_end_matches('=').to_string(),
        ] {
            let decoded = decode_get_path(form).unwrap();
            assert_eq!(decoded, der, "{form}");
            OcspRequest::parse(&decoded).unwrap();
        }
        // A '+' turned into a space (form decoding) must not be accepted silently.
        if b64.contains('+') {
            assert!(decode_get_path(&b64.replace('+', " ")).is_err());
        }
    }
    assert!(seen_special, "no run produced '+' or '/'");
}

#[test]
fn nonce_lengths_from_python_cryptography() {
    let pki = Pki::new();
    let ee = pki.issue("ee", "0x4444", "v3_ee", None);
    for (len, ok) in [
        (1, true),
        (32, true),
        (128, true),
        (129, false),
        (0, false),
        (200, false),
    ] {
        let out = pki.path(&format!("req{len}.der"));
        python_check(&[
            "make-req",
            pki.ca.pem.to_str().unwrap(),
            ee.pem.to_str().unwrap(),
            &len.to_string(),
            out.to_str().unwrap(),
        ]);
        let res = OcspRequest::parse(&std::fs::read(&out).unwrap());
        if ok {
            assert_eq!(res.unwrap().nonce.unwrap().as_bytes().len(), len);
        } else {
            let err = res.unwrap_err();
            assert_eq!(err, OcspRequestError::InvalidNonce { len });
            assert_eq!(err.response_status(), OcspErrorStatus::MalformedRequest);
        }
    }
}

// ---- hand-built requests for the grammar corners no CLI produces ----

fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else if len < 0x100 {
        out.extend([0x81, len as u8]);
    } else {
        out.extend([0x82, (len >> 8) as u8, len as u8]);
    }
    out.extend_from_slice(content);
    out
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

const NONCE_OID: &[u8] = &[
    0x06, 0x09, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01, 0x02,
];
const OTHER_OID: &[u8] = &[0x06, 0x03, 0x2a, 0x03, 0x04];

fn ext(oid: &[u8], critical: bool, value: &[u8]) -> Vec<u8> {
    let crit: &[u8] = if critical { &[0x01, 0x01, 0xff] } else { &[] };
    tlv(0x30, &cat(&[oid, crit, &tlv(0x04, value)]))
}

/// OCSPRequest with `version` (raw, may be empty), the given CertIDs and request extensions.
fn request(version: &[u8], cert_ids: &[Vec<u8>], exts: &[Vec<u8>]) -> Vec<u8> {
    let list: Vec<u8> = cert_ids.iter().flat_map(|c| tlv(0x30, c)).collect();
    let mut tbs = cat(&[version, &tlv(0x30, &list)]);
    if !exts.is_empty() {
        tbs.extend(tlv(0xa2, &tlv(0x30, &exts.concat())));
    }
    tlv(0x30, &tlv(0x30, &tbs))
}

fn cert_id() -> Vec<u8> {
    let hashes = ca_status::ocsp::IssuerKeyHashes {
        sha1_name: [1; 20],
        sha1_key: [2; 20],
        sha256_name: [3; 32],
        sha256_key: [4; 32],
        sm3_name: [5; 32],
        sm3_key: [6; 32],
    };
    CertId::new(HashAlgorithm::Sha1, &hashes, &[0x12, 0x34])
        .unwrap()
        .der()
        .to_vec()
}

fn nonce_ext(n: &[u8]) -> Vec<u8> {
    ext(NONCE_OID, false, &tlv(0x04, n))
}

#[test]
fn grammar_corners_get_specific_errors() {
    let id = cert_id();
    let good = request(&[], std::slice::from_ref(&id), &[nonce_ext(&[7; 8])]);
    let parsed = OcspRequest::parse(&good).unwrap();
    assert_eq!(parsed.nonce.unwrap().as_bytes(), [7; 8]);
    assert_eq!(parsed.cert_ids[0].der(), id.as_slice());

    let v1 = tlv(0xa0, &[0x02, 0x01, 0x00]);
    let v2 = tlv(0xa0, &[0x02, 0x01, 0x01]);
    assert!(OcspRequest::parse(&request(&v1, std::slice::from_ref(&id), &[])).is_ok());
    assert_eq!(
        OcspRequest::parse(&request(&v2, std::slice::from_ref(&id), &[])),
        Err(OcspRequestError::UnsupportedVersion)
    );
    assert_eq!(
        OcspRequest::parse(&request(&[], &[], &[])),
        Err(OcspRequestError::NoRequests)
    );
    // Unknown extensions: ignored when non-critical, refused when critical.
    assert!(OcspRequest::parse(&request(
        &[],
        std::slice::from_ref(&id),
        &[ext(OTHER_OID, false, &[5, 0])]
    ))
    .is_ok());
    assert_eq!(
        OcspRequest::parse(&request(
            &[],
            std::slice::from_ref(&id),
            &[ext(OTHER_OID, true, &[5, 0])]
        )),
        Err(OcspRequestError::UnsupportedCriticalExtension)
    );
    assert_eq!(
        OcspRequest::parse(&request(
            &[],
            std::slice::from_ref(&id),
            &[nonce_ext(&[1]), nonce_ext(&[2])]
        )),
        Err(OcspRequestError::DuplicateExtension)
    );
    // A nonce that is not an OCTET STRING inside the extension value.
    assert_eq!(
        OcspRequest::parse(&request(
            &[],
            std::slice::from_ref(&id),
            &[ext(NONCE_OID, false, &[1, 2, 3])]
        )),
        Err(OcspRequestError::InvalidNonce { len: 0 })
    );
    // Unsupported CertID hash algorithm (SHA-384) -> unauthorized.
    let sha384 = [
        0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02,
    ];
    let odd_id = tlv(
        0x30,
        &cat(&[
            &tlv(0x30, &cat(&[&sha384, &[0x05, 0x00]])),
            &tlv(0x04, &[1; 48]),
            &tlv(0x04, &[2; 48]),
            &[0x02, 0x01, 0x05],
        ]),
    );
    let err = OcspRequest::parse(&request(&[], &[odd_id], &[])).unwrap_err();
    assert_eq!(err, OcspRequestError::UnsupportedHashAlgorithm);
    assert_eq!(err.response_status(), OcspErrorStatus::Unauthorized);
    // SHA-1 with a 32-octet hash.
    let sha1 = [0x06, 0x05, 0x2b, 0x0e, 0x03, 0x02, 0x1a];
    let bad_len = tlv(
        0x30,
        &cat(&[
            &tlv(0x30, &sha1),
            &tlv(0x04, &[1; 32]),
            &tlv(0x04, &[2; 20]),
            &[0x02, 0x01, 0x05],
        ]),
    );
    assert_eq!(
        OcspRequest::parse(&request(&[], &[bad_len], &[])),
        Err(OcspRequestError::HashLengthMismatch)
    );
    // Non-minimal serial INTEGER.
    let bad_serial = tlv(
        0x30,
        &cat(&[
            &tlv(0x30, &sha1),
            &tlv(0x04, &[1; 20]),
            &tlv(0x04, &[2; 20]),
            &[0x02, 0x02, 0x00, 0x05],
        ]),
    );
    assert_eq!(
        OcspRequest::parse(&request(&[], &[bad_serial], &[])),
        Err(OcspRequestError::Malformed(DerError::BadInteger))
    );
}

#[test]
fn truncation_trailing_bytes_and_wrong_tags_are_malformed() {
    let pki = Pki::new();
    let ee = pki.issue("ee", "0x5555", "v3_ee", None);
    let (_, der) = openssl_request(&pki, "req.der", &["-nonce"], &[&ee.pem]);
    assert_eq!(
        OcspRequest::parse(&[]),
        Err(OcspRequestError::Malformed(DerError::Missing {
            expected: 0x30
        }))
    );
    for cut in 1..der.len() {
        assert_eq!(
            OcspRequest::parse(&der[..cut]),
            Err(OcspRequestError::Malformed(DerError::Truncated)),
            "cut at {cut}"
        );
    }
    let mut trailing = der.clone();
    trailing.push(0);
    assert_eq!(
        OcspRequest::parse(&trailing),
        Err(OcspRequestError::Malformed(DerError::TrailingData))
    );
    let mut wrong = der.clone();
    wrong[0] = 0x31;
    assert_eq!(
        OcspRequest::parse(&wrong),
        Err(OcspRequestError::Malformed(DerError::UnexpectedTag {
            expected: 0x30,
            found: 0x31
        }))
    );
    // Every error maps to malformedRequest.
    assert_eq!(
        OcspRequest::parse(&wrong).unwrap_err().response_status(),
        OcspErrorStatus::MalformedRequest
    );
}

#[test]
fn random_and_mutated_inputs_never_panic() {
    let pki = Pki::new();
    let ee = pki.issue("ee", "0x6666", "v3_ee", None);
    let (_, der) = openssl_request(&pki, "req.der", &["-nonce"], &[&ee.pem]);
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x0c5b);
    for _ in 0..5000 {
        let len = rng.gen_range(0..400);
        let mut bytes: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
        if rng.gen_bool(0.5) && bytes.len() > 2 {
            // Plausible outer header so parsing gets past the first TLV.
            bytes[0] = 0x30;
            bytes[1] = (bytes.len() - 2).min(0x7f) as u8;
        }
        assert!(OcspRequest::parse(&bytes).is_err());
        let text: String = bytes.iter().map(|b| char::from(b % 128)).collect();
        let _ = decode_get_path(&text);
    }
    let mut accepted = 0;
    for _ in 0..5000 {
        let mut bytes = der.clone();
        for _ in 0..rng.gen_range(1..4) {
            let i = rng.gen_range(0..bytes.len());
            bytes[i] = rng.gen();
        }
        if let Ok(req) = OcspRequest::parse(&bytes) {
            assert!(!req.cert_ids.is_empty());
            accepted += 1;
        }
    }
    // Flips inside hashes and the nonce stay valid; structure flips must not.
    assert!(accepted > 0 && accepted < 5000, "accepted {accepted}");
}
