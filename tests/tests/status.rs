//! End to end: revocation over mTLS, the OCSP responder (POST and RFC 5019 GET) and the CRLs,
//! checked by `openssl ocsp`, `openssl crl`, `openssl verify` and Python `cryptography`.

#![allow(clippy::unwrap_used)] // tests fail loudly

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine;
use rand::RngCore;
use system_tests::*;

/// Checks one OCSP response with pyca/cryptography: successful, signed by the delegated
/// responder certificate it carries, which the issuing CA issued with OCSPSigning only,
/// ocsp-nocheck, critical digitalSignature and cA false; each SingleResponse has the wanted
/// status (`good`, `unknown`, `revoked:<ReasonFlags name or ->`), comma-separated in order.
const CHECK_OCSP: &str = r#"
import sys
from cryptography import x509
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

resp_path, ca_pem, wants = sys.argv[1], sys.argv[2], sys.argv[3].split(",")
resp = ocsp.load_der_ocsp_response(open(resp_path, "rb").read())
assert resp.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL, resp.response_status
assert len(resp.certificates) == 1, "responder certificate included"
signer = resp.certificates[0]
ca = x509.load_pem_x509_certificate(open(ca_pem, "rb").read())
signer.verify_directly_issued_by(ca)
eku = signer.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
assert list(eku.value) == [ExtendedKeyUsageOID.OCSP_SIGNING], eku
signer.extensions.get_extension_for_class(x509.OCSPNoCheck)
ku = signer.extensions.get_extension_for_class(x509.KeyUsage)
assert ku.critical and ku.value.digital_signature and not ku.value.key_cert_sign
assert not signer.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
try:
    signer.extensions.get_extension_for_class(x509.CRLDistributionPoints)
    raise AssertionError("responder certificate must not carry a CRLDP")
except x509.ExtensionNotFound:
    pass
assert isinstance(signer.public_key(), ec.EllipticCurvePublicKey)
assert signer.public_key().curve.name == "secp256r1"
signer.public_key().verify(resp.signature, resp.tbs_response_bytes,
                           ec.ECDSA(resp.signature_hash_algorithm))
spki = signer.public_key().public_bytes(serialization.Encoding.X962,
                                        serialization.PublicFormat.UncompressedPoint)
h = hashes.Hash(hashes.SHA1()); h.update(spki)
assert resp.responder_key_hash == h.finalize(), "ResponderID byKey"
singles = list(resp.responses)
assert len(singles) == len(wants), (len(singles), wants)
for single, want in zip(singles, wants):
    assert single.next_update_utc is not None and single.next_update_utc > single.this_update_utc
    status, _, reason = want.partition(":")
    assert single.certificate_status.name.lower() == status, (single.certificate_status, want)
    if status == "revoked":
        got = single.revocation_reason
        assert got == (None if reason == "-" else x509.ReasonFlags[reason]), (got, reason)
    print(f"{single.serial_number:x} {single.certificate_status.name}")
"#;

/// Issues a personal certificate as `who`; writes `{stem}.pem`; returns its serial.
async fn issue(demo: &DemoDir, who: &str, stem: &str) -> String {
    let csr = openssl_csr(demo.path(), stem, "ec:P-256");
    let body = issue_body("personal", &csr, serde_json::json!({"name": "Li Si"}));
    let (status, resp) = api_request(
        demo.api,
        demo.client_tls(who),
        "POST",
        "/api/v1/certificates",
        Some(body),
    )
    .await
    .unwrap();
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&resp));
    let resp = json(&resp);
    std::fs::write(
        demo.path().join(format!("{stem}.pem")),
        resp["certificate"].as_str().unwrap(),
    )
    .unwrap();
    resp["serial"].as_str().unwrap().to_owned()
}

async fn api_post(
    demo: &DemoDir,
    who: &str,
    path: &str,
    body: serde_json::Value,
) -> (u16, serde_json::Value) {
    let (status, resp) = api_request(
        demo.api,
        demo.client_tls(who),
        "POST",
        path,
        Some(serde_json::to_vec(&body).unwrap()),
    )
    .await
    .unwrap();
    (status, json(&resp))
}

/// `openssl ocsp` against the public listener; returns (success, stdout + stderr).
fn openssl_ocsp(demo: &DemoDir, args: &[&str]) -> (bool, String) {
    let url = format!("http://{}/ocsp", demo.public);
    let (ok, out, err) = run(Command::new("openssl")
        .current_dir(demo.path())
        .args(["ocsp", "-url", &url, "-CAfile", "ca/root.pem"])
        .args(args));
    (ok, format!("{out}{err}"))
}

fn python_check(demo: &DemoDir, resp: &str, wants: &str) {
    let (ok, out, err) = run(Command::new("python3").current_dir(demo.path()).args([
        "-c",
        CHECK_OCSP,
        resp,
        "ca/personal.pem",
        wants,
    ]));
    assert!(ok, "python check of {resp} ({wants}) failed:\n{out}{err}");
}

/// Fetches `/crl/{file}` over HTTP, checks its headers, writes `{file}.pem`; returns its text dump.
async fn fetch_crl(demo: &DemoDir, file: &str) -> String {
    let published = demo.path().join("crl").join(file);
    // The file read before and after the GET: when a regeneration replaced it in between, the
    // two differ and the fetch is repeated, so the comparison below is with a stable file.
    let (mut before, (mut status, mut headers, mut body)) = (
        std::fs::read(&published).unwrap_or_default(),
        public_get(demo.public, &format!("/crl/{file}")).await,
    );
    for _ in 0..10 {
        let after = std::fs::read(&published).unwrap_or_default();
        if after == before {
            break;
        }
        before = after;
        (status, headers, body) = public_get(demo.public, &format!("/crl/{file}")).await;
    }
    assert_eq!(status, 200, "GET /crl/{file}");
    assert_eq!(headers["content-type"], "application/pkix-crl");
    for h in ["etag", "last-modified", "expires"] {
        assert!(headers.contains_key(h), "{h} on {file}");
    }
    assert!(headers["cache-control"]
        .to_str()
        .unwrap()
        .starts_with("max-age="));
    let der = demo.path().join(file);
    std::fs::write(&der, &body).unwrap();
    // Byte-identical to the published file.
    assert_eq!(before, body);
    let pem = demo.path().join(format!("{file}.pem"));
    let (ok, _, err) = run(Command::new("openssl")
        .args(["crl", "-inform", "DER", "-in"])
        .arg(&der)
        .arg("-out")
        .arg(&pem));
    assert!(ok, "{err}");
    let (ok, text, err) = run(Command::new("openssl")
        .args(["crl", "-noout", "-text", "-in"])
        .arg(&pem));
    assert!(ok, "{err}");
    text
}

/// Polls `/crl/{file}` until `pred` holds on its text dump (regeneration follows a revocation
/// by a couple of seconds).
async fn wait_crl(demo: &DemoDir, file: &str, pred: impl Fn(&str) -> bool) -> String {
    let start = Instant::now();
    loop {
        let text = fetch_crl(demo, file).await;
        if pred(&text) {
            return text;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{file} never matched:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// `openssl crl -verify` of every published CRL against its issuer.
fn verify_crls(demo: &DemoDir) {
    for (file, ca) in [
        ("personal.crl", "personal"),
        ("personal-delta.crl", "personal"),
        ("root.crl", "root"),
        ("root-delta.crl", "root"),
    ] {
        let (ok, out, err) = run(Command::new("openssl")
            .current_dir(demo.path())
            .args(["crl", "-noout", "-verify", "-in"])
            .arg(format!("{file}.pem"))
            .arg("-CAfile")
            .arg(format!("ca/{ca}.pem")));
        assert!(ok && err.contains("verify OK"), "{file}: {out}{err}");
    }
}

/// `openssl verify` of `cert` with CRLs; `deltas` adds `-crl_check_all -use_deltas`.
fn verify_with_crls(demo: &DemoDir, cert: &str, deltas: bool) -> (bool, String) {
    let mut cmd = Command::new("openssl");
    cmd.current_dir(demo.path()).args([
        "verify",
        "-CAfile",
        "ca/root.pem",
        "-untrusted",
        "ca/personal.pem",
        "-CRLfile",
        "personal.crl.pem",
    ]);
    if deltas {
        cmd.args([
            "-crl_check_all",
            "-use_deltas",
            "-CRLfile",
            "personal-delta.crl.pem",
            "-CRLfile",
            "root.crl.pem",
            "-CRLfile",
            "root-delta.crl.pem",
        ]);
    } else {
        cmd.arg("-crl_check");
    }
    let (ok, out, err) = run(cmd.arg(cert));
    (ok, format!("{out}{err}"))
}

async fn fetch_all_crls(demo: &DemoDir) {
    for f in [
        "personal.crl",
        "personal-delta.crl",
        "root.crl",
        "root-delta.crl",
    ] {
        fetch_crl(demo, f).await;
    }
}

fn upper(serial: &str) -> String {
    serial.to_ascii_uppercase()
}

/// An OCSP request made by openssl for `serial_hex` of the CA certificate `issuer`.
fn request_for_serial(dir: &Path, issuer: &Path, serial_hex: &str, out: &str) -> Vec<u8> {
    let (ok, _, err) = run(Command::new("openssl")
        .current_dir(dir)
        .args(["ocsp", "-no_nonce", "-issuer"])
        .arg(issuer)
        .args(["-serial", &format!("0x{serial_hex}"), "-reqout", out]));
    assert!(ok, "{err}");
    std::fs::read(dir.join(out)).unwrap()
}

async fn post_ocsp(demo: &DemoDir, body: Vec<u8>) -> Vec<u8> {
    let (status, headers, body) = public_request(
        demo.public,
        "POST",
        "/ocsp",
        &[("content-type", "application/ocsp-request")],
        body,
    )
    .await;
    assert_eq!(status, 200, "OCSP errors are HTTP 200");
    assert_eq!(headers["content-type"], "application/ocsp-response");
    body
}

const MALFORMED: [u8; 5] = [0x30, 0x03, 0x0a, 0x01, 0x01];
const UNAUTHORIZED: [u8; 5] = [0x30, 0x03, 0x0a, 0x01, 0x06];

#[tokio::test]
async fn ocsp_and_crls_follow_revocation_hold_and_unhold() {
    let demo = DemoDir::create();
    // Two CertIDs in one request are asked below (the default cap is RFC 5019's one).
    append_config(&demo, "\n[status]\nocsp_max_cert_ids = 4\n");
    let mut server = demo.serve();
    let dir = demo.path().to_owned();
    let s1 = issue(&demo, "operator", "ee1").await;
    let s2 = issue(&demo, "operator", "ee2").await;
    let s3 = issue(&demo, "operator", "ee3").await;

    // POST: good, checked by openssl and by Python with the responder certificate.
    let (ok, out) = openssl_ocsp(
        &demo,
        &[
            "-issuer",
            "ca/personal.pem",
            "-cert",
            "ee1.pem",
            "-respout",
            "r1.der",
        ],
    );
    assert!(
        ok && out.contains("Response verify OK") && out.contains("ee1.pem: good"),
        "{out}"
    );
    python_check(&demo, "r1.der", "good");

    // GET (RFC 5019): openssl writes the request, we GET its base64 path.
    let (ok, out) = openssl_ocsp(
        &demo,
        &[
            "-issuer",
            "ca/personal.pem",
            "-cert",
            "ee2.pem",
            "-no_nonce",
            "-reqout",
            "q2.der",
        ],
    );
    assert!(ok, "{out}");
    let q2 = std::fs::read(dir.join("q2.der")).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD.encode(&q2);
    let path = format!(
        "/ocsp/{}",
        b64.replace('+', "%2B")
            .replace('/', "%2F")
            .replace('=', "%3D")
    );
    let (status, headers, body) = public_get(demo.public, &path).await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "application/ocsp-response");
    let cc = headers["cache-control"].to_str().unwrap().to_owned();
    assert!(
        cc.contains("public") && cc.contains("no-transform") && !cc.contains("no-cache"),
        "{cc}"
    );
    let max_age: i64 = cc
        .trim_start_matches("max-age=")
        .split(',')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        max_age > 3600,
        "max-age {max_age} bounded by nextUpdate but not tiny"
    );
    for h in ["etag", "last-modified", "expires", "date"] {
        assert!(headers.contains_key(h), "{h} missing: {headers:?}");
    }
    std::fs::write(dir.join("r2.der"), &body).unwrap();
    python_check(&demo, "r2.der", "good");
    // the raw (unescaped) base64 path works too, and If-None-Match gets 304
    let (status, _, raw_body) = public_get(demo.public, &format!("/ocsp/{b64}")).await;
    assert_eq!((status, raw_body.as_slice()), (200, body.as_slice()));
    let etag = headers["etag"].to_str().unwrap().to_owned();
    let (status, _, _) = public_request(
        demo.public,
        "GET",
        &path,
        &[("if-none-match", &etag)],
        vec![],
    )
    .await;
    assert_eq!(status, 304);

    // Several certificates in one request: one response, one answer each.
    let (ok, out) = openssl_ocsp(
        &demo,
        &[
            "-issuer",
            "ca/personal.pem",
            "-cert",
            "ee2.pem",
            "-cert",
            "ee3.pem",
            "-respout",
            "r23.der",
        ],
    );
    assert!(
        ok && out.contains("ee2.pem: good") && out.contains("ee3.pem: good"),
        "{out}"
    );
    python_check(&demo, "r23.der", "good,good");

    // The mTLS listener answers OCSP too.
    let (status, _) = api_request(
        demo.api,
        demo.client_tls("operator"),
        "POST",
        "/ocsp",
        Some(q2.clone()),
    )
    .await
    .unwrap();
    assert_eq!(status, 200);

    // Revoke ee1 (keyCompromise, invalidity date) as an operator (direct issuance is an operator's).
    let (status, resp) = api_post(
        &demo,
        "operator",
        &format!("/api/v1/certificates/{s1}/revoke"),
        serde_json::json!({"reason": "keyCompromise", "invalidity_date": "2026-01-02T03:04:05Z"}),
    )
    .await;
    assert_eq!(status, 200, "{resp}");
    assert_eq!(resp["status"], "revoked");
    // OCSP says revoked at once (the response was re-signed before the reply).
    let (ok, out) = openssl_ocsp(
        &demo,
        &[
            "-issuer",
            "ca/personal.pem",
            "-cert",
            "ee1.pem",
            "-respout",
            "r1b.der",
        ],
    );
    assert!(
        ok && out.contains("ee1.pem: revoked") && out.contains("Reason: keyCompromise"),
        "{out}"
    );
    python_check(&demo, "r1b.der", "revoked:key_compromise");

    // Revocation errors.
    let revoke = |serial: String, who: &'static str, reason: &'static str| {
        let demo = &demo;
        async move {
            api_post(
                demo,
                who,
                &format!("/api/v1/certificates/{serial}/revoke"),
                serde_json::json!({"reason": reason}),
            )
            .await
        }
    };
    let (status, resp) = revoke(s1.clone(), "operator", "superseded").await;
    assert_eq!(
        (status, resp["error"].as_str()),
        (409, Some("already_revoked"))
    );
    let (status, resp) = revoke(s3.clone(), "channel-demo", "superseded").await;
    assert_eq!(
        (status, resp["error"].as_str()),
        (403, Some("not_your_certificate"))
    );
    let (status, resp) = revoke("0badc0ffee".into(), "operator", "superseded").await;
    assert_eq!((status, resp["error"].as_str()), (404, Some("not_found")));
    let (status, resp) = revoke(s2.clone(), "operator", "removeFromCRL").await;
    assert_eq!(
        (status, resp["error"].as_str()),
        (400, Some("invalid_reason"))
    );
    let (status, resp) = revoke(s2.clone(), "operator", "bogus").await;
    assert_eq!(
        (status, resp["error"].as_str()),
        (400, Some("invalid_reason"))
    );
    let (status, resp) = api_post(
        &demo,
        "operator",
        &format!("/api/v1/certificates/{s2}/unhold"),
        serde_json::json!({}),
    )
    .await;
    assert_eq!((status, resp["error"].as_str()), (409, Some("not_on_hold")));
    // still good after the refused calls
    let (_, out) = openssl_ocsp(&demo, &["-issuer", "ca/personal.pem", "-cert", "ee2.pem"]);
    assert!(out.contains("ee2.pem: good"), "{out}");

    // CRLs: the full one lists ee1 with its reason and invalidity date; signatures verify.
    let text = wait_crl(&demo, "personal.crl", |t| t.contains(&upper(&s1))).await;
    assert!(
        text.contains("Key Compromise") && text.contains("Invalidity Date"),
        "{text}"
    );
    assert!(
        text.contains(&format!("http://{}/crl/personal-delta.crl", demo.public)),
        "freshestCRL: {text}"
    );
    fetch_all_crls(&demo).await;
    verify_crls(&demo);
    let (ok, out) = verify_with_crls(&demo, "ee1.pem", false);
    assert!(!ok && out.contains("certificate revoked"), "{out}");
    let (ok, out) = verify_with_crls(&demo, "ee2.pem", false);
    assert!(ok && out.contains("OK"), "{out}");
    let (ok, out) = verify_with_crls(&demo, "ee1.pem", true);
    assert!(!ok && out.contains("certificate revoked"), "{out}");

    // Hold then unhold ee2: revoked (certificateHold), then good; the delta says removeFromCRL.
    let (status, resp) = revoke(s2.clone(), "operator", "certificateHold").await;
    assert_eq!(
        (status, resp["status"].as_str()),
        (200, Some("hold")),
        "{resp}"
    );
    let (_, out) = openssl_ocsp(
        &demo,
        &[
            "-issuer",
            "ca/personal.pem",
            "-cert",
            "ee2.pem",
            "-respout",
            "r2h.der",
        ],
    );
    assert!(
        out.contains("ee2.pem: revoked") && out.contains("Reason: certificateHold"),
        "{out}"
    );
    python_check(&demo, "r2h.der", "revoked:certificate_hold");
    let text = wait_crl(&demo, "personal-delta.crl", |t| t.contains(&upper(&s2))).await;
    assert!(
        text.contains("Delta CRL Indicator") && text.contains("Certificate Hold"),
        "{text}"
    );
    let (status, resp) = api_post(
        &demo,
        "operator",
        &format!("/api/v1/certificates/{s2}/unhold"),
        serde_json::json!({}),
    )
    .await;
    assert_eq!(
        (status, resp["status"].as_str()),
        (200, Some("valid")),
        "{resp}"
    );
    let (_, out) = openssl_ocsp(
        &demo,
        &[
            "-issuer",
            "ca/personal.pem",
            "-cert",
            "ee2.pem",
            "-respout",
            "r2u.der",
        ],
    );
    assert!(out.contains("ee2.pem: good"), "{out}");
    python_check(&demo, "r2u.der", "good");
    wait_crl(&demo, "personal-delta.crl", |t| {
        t.contains("Remove From CRL")
    })
    .await;
    let full = wait_crl(&demo, "personal.crl", |t| !t.contains(&upper(&s2))).await;
    assert!(full.contains(&upper(&s1)), "{full}");
    fetch_all_crls(&demo).await;
    verify_crls(&demo);
    let (ok, out) = verify_with_crls(&demo, "ee2.pem", true);
    assert!(ok, "unheld ee2 with deltas: {out}");
    let (ok, out) = verify_with_crls(&demo, "ee1.pem", true);
    assert!(!ok && out.contains("certificate revoked"), "{out}");

    // keyCompromise upgrade of a plain revocation is allowed once.
    let (status, _) = revoke(s3.clone(), "operator", "superseded").await;
    assert_eq!(status, 200);
    let (status, resp) = revoke(s3.clone(), "operator", "keyCompromise").await;
    assert_eq!(
        (status, resp["reason"].as_str()),
        (200, Some("keyCompromise")),
        "{resp}"
    );
    let (_, out) = openssl_ocsp(&demo, &["-issuer", "ca/personal.pem", "-cert", "ee3.pem"]);
    assert!(out.contains("Reason: keyCompromise"), "{out}");

    // Never-issued serial of a known issuer: unknown (the default), never good.
    let (_, out) = openssl_ocsp(
        &demo,
        &[
            "-issuer",
            "ca/personal.pem",
            "-serial",
            "0x4242424242",
            "-respout",
            "rn.der",
        ],
    );
    assert!(out.contains("unknown"), "{out}");
    python_check(&demo, "rn.der", "unknown");

    // Unknown issuer: unauthorized. Garbage: malformedRequest.
    openssl_self_signed(&dir, "other", "/CN=Other CA", 2);
    let foreign = request_for_serial(&dir, &dir.join("other.pem"), "01", "qf.der");
    assert_eq!(post_ocsp(&demo, foreign).await, UNAUTHORIZED);
    let (ok, out) = openssl_ocsp(&demo, &["-issuer", "other.pem", "-serial", "0x01"]);
    assert!(!ok || out.contains("unauthorized"), "{out}");
    assert!(out.contains("unauthorized"), "{out}");
    assert_eq!(post_ocsp(&demo, b"hello".to_vec()).await, MALFORMED);
    let mut truncated = q2.clone();
    truncated.pop();
    assert_eq!(post_ocsp(&demo, truncated).await, MALFORMED);
    let mut trailing = q2.clone();
    trailing.push(0);
    assert_eq!(post_ocsp(&demo, trailing).await, MALFORMED);
    let (status, _, body) = public_get(demo.public, "/ocsp/%%%not-base64").await;
    assert_eq!((status, body.as_slice()), (200, MALFORMED.as_slice()));

    // Thousands of random byte strings: each gets malformedRequest, the responder stays up.
    let mut rng = rand::thread_rng();
    for i in 0..3000 {
        let mut junk = vec![0u8; 1 + (i % 200)];
        rng.fill_bytes(&mut junk);
        if i % 3 == 0 {
            junk[0] = 0x30; // look like a SEQUENCE to get past the first check
        }
        let answer = post_ocsp(&demo, junk).await;
        assert!(
            answer == MALFORMED || answer == UNAUTHORIZED,
            "{answer:02x?}"
        );
    }
    assert!(server.is_running(), "server died:\n{}", server.log_text());
    let (_, out) = openssl_ocsp(&demo, &["-issuer", "ca/personal.pem", "-cert", "ee2.pem"]);
    assert!(out.contains("ee2.pem: good"), "{out}");
}

#[tokio::test]
async fn nonce_echo_revoked_for_never_issued_and_responses_survive_restart() {
    let demo = DemoDir::create();
    append_config(
        &demo,
        "\n[status]\nocsp_nonce = true\nunknown_serial = \"revoked\"\n",
    );
    let serial = {
        let _server = demo.serve();
        let serial = issue(&demo, "operator", "ee").await;
        // With a nonce: freshly signed, echoing it (openssl checks the echo).
        let (ok, out) = openssl_ocsp(&demo, &["-issuer", "ca/personal.pem", "-cert", "ee.pem"]);
        assert!(
            ok && out.contains("ee.pem: good") && !out.contains("no nonce"),
            "{out}"
        );
        // Never issued: revoked, certificateHold, 1970, extended-revoke.
        let (_, out) = openssl_ocsp(
            &demo,
            &[
                "-issuer",
                "ca/personal.pem",
                "-serial",
                "0x7777",
                "-no_nonce",
                "-respout",
                "rn.der",
                "-resp_text",
            ],
        );
        assert!(
            out.contains("Cert Status: revoked") && out.contains("certificateHold"),
            "{out}"
        );
        assert!(out.contains("Jan  1 00:00:00 1970"), "{out}");
        assert!(
            // OpenSSL names id-pkix-ocsp-extended-revoke (1.3.6.1.5.5.7.48.1.9) "valid"
            out.contains("Response Extensions:") && out.contains("valid:"),
            "{out}"
        );
        python_check(&demo, "rn.der", "revoked:certificate_hold");
        // Wait until the pre-signer stored the new certificate's response.
        let start = Instant::now();
        loop {
            let (_, out) = openssl_ocsp(
                &demo,
                &["-issuer", "ca/personal.pem", "-cert", "ee.pem", "-no_nonce"],
            );
            assert!(out.contains("ee.pem: good"), "{out}");
            if responses_stored(demo.path()) >= 1 {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "no response pre-signed"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        serial
    };
    // Restart: the stored responses are loaded, not re-signed; same bytes served.
    let server = demo.serve();
    let (ok, out) = openssl_ocsp(
        &demo,
        &[
            "-issuer",
            "ca/personal.pem",
            "-cert",
            "ee.pem",
            "-no_nonce",
            "-respout",
            "after.der",
        ],
    );
    assert!(ok && out.contains("ee.pem: good"), "{out}");
    python_check(&demo, "after.der", "good");
    let log = strip_ansi(&server.log_text());
    // The log is not a terminal: JSON lines.
    assert!(
        log.lines().any(|l| l.contains("\"OCSP responses loaded\"")
            && l.contains("\"ca\":\"personal\"")
            && l.contains("\"responses\":1")),
        "{log}"
    );
    assert!(!serial.is_empty());

    // HSM gone: cached responses keep being served; anything needing a signature is tryLater.
    std::fs::rename(demo.path().join("tokens"), demo.path().join("tokens.away")).unwrap();
    let (_, out) = openssl_ocsp(
        &demo,
        &["-issuer", "ca/personal.pem", "-cert", "ee.pem", "-no_nonce"],
    );
    assert!(
        out.contains("ee.pem: good"),
        "cached answer while the HSM is down: {out}"
    );
    let (_, out) = openssl_ocsp(&demo, &["-issuer", "ca/personal.pem", "-cert", "ee.pem"]);
    assert!(
        out.contains("trylater"),
        "nonce needs a live signature: {out}"
    );
    let (_, out) = openssl_ocsp(
        &demo,
        &[
            "-issuer",
            "ca/personal.pem",
            "-serial",
            "0x7778",
            "-no_nonce",
        ],
    );
    assert!(out.contains("trylater"), "{out}");
    std::fs::rename(demo.path().join("tokens.away"), demo.path().join("tokens")).unwrap();
}

fn responses_stored(dir: &Path) -> i64 {
    let db: PathBuf = dir.join("data/appliance.db");
    let (ok, out, err) = run(Command::new("python3").args([
        "-c",
        "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('select count(*) from ocsp_responses').fetchone()[0])",
        db.to_str().unwrap(),
    ]));
    assert!(ok, "{err}");
    out.trim().parse().unwrap()
}

/// The log without terminal colour escapes.
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
