//! OCSP never contradicts a revocation: issue-then-revoke races at scale, a crash between the
//! revocation commit and its re-sign, and the HTTP caching details of RFC 5019 / RFC 9110.
//! Answers are checked by Python `cryptography` (an independent OCSP client: it builds the
//! requests, verifies every signature and reads every status) and `openssl ocsp`.

#![allow(clippy::unwrap_used)] // tests fail loudly

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use system_tests::*;

/// Asks the responder about every serial in a file, over POST and GET, with SHA-1 and SHA-256
/// CertIDs, and checks each answer: successful, signed by the responder certificate it carries
/// (issued by the CA), CertID echoed, and the status wanted. Prints one summary line.
const CHECK_ALL: &str = r#"
import base64, sys, urllib.request
from cryptography import x509
from cryptography.x509 import ocsp
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

base, ca_pem, serial_file, want = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
ca = x509.load_pem_x509_certificate(open(ca_pem, "rb").read())
spki = ca.public_key().public_bytes(serialization.Encoding.DER,
                                    serialization.PublicFormat.SubjectPublicKeyInfo)

def tlv(b, i):
    tag, n = b[i], b[i + 1]; i += 2
    if n & 0x80:
        k = n & 0x7f; n = int.from_bytes(b[i:i + k], "big"); i += k
    return tag, i, i + n

_, body, _ = tlv(spki, 0)          # SubjectPublicKeyInfo
_, _, after_alg = tlv(spki, body)  # AlgorithmIdentifier
_, bits, end = tlv(spki, after_alg)
key_bits = spki[bits + 1:end]      # BIT STRING without the unused-bits octet
name_der = ca.subject.public_bytes()

def digest(alg, data):
    h = hashes.Hash(alg); h.update(data); return h.finalize()

counts = {}
serials = [int(s, 16) for s in open(serial_file).read().split()]
for serial in serials:
    for alg in (hashes.SHA1(), hashes.SHA256()):
        req = ocsp.OCSPRequestBuilder().add_certificate_by_hash(
            digest(alg, name_der), digest(alg, key_bits), serial, alg).build()
        der = req.public_bytes(serialization.Encoding.DER)
        for method in ("POST", "GET"):
            if method == "POST":
                r = urllib.request.Request(base + "/ocsp", data=der,
                                           headers={"Content-Type": "application/ocsp-request"})
            else:
                r = urllib.request.Request(base + "/ocsp/" + base64.b64encode(der).decode())
            body = urllib.request.urlopen(r, timeout=10).read()
            resp = ocsp.load_der_ocsp_response(body)
            where = f"{serial:x} {alg.name} {method}"
            assert resp.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL, (where, resp.response_status)
            signer = resp.certificates[0]
            signer.verify_directly_issued_by(ca)
            signer.public_key().verify(resp.signature, resp.tbs_response_bytes,
                                       ec.ECDSA(resp.signature_hash_algorithm))
            assert resp.serial_number == serial, where
            assert resp.hash_algorithm.name == alg.name, where
            got = resp.certificate_status.name.lower()
            counts[got] = counts.get(got, 0) + 1
            assert got == want, (where, got)
print(f"checked {len(serials)} serials, answers {counts}")
"#;

/// Runs [`CHECK_ALL`] for `serials`; panics with its output unless every answer is `want`.
fn check_all(demo: &DemoDir, serials: &[String], want: &str) -> String {
    let file = demo.path().join(format!("serials-{want}.txt"));
    std::fs::write(&file, serials.join("\n")).unwrap();
    let (ok, out, err) = run(Command::new("python3").args([
        "-c",
        CHECK_ALL,
        &format!("http://{}", demo.public),
        demo.path().join("ca/personal.pem").to_str().unwrap(),
        file.to_str().unwrap(),
        want,
    ]));
    assert!(ok, "OCSP check ({want}) failed:\n{out}{err}");
    out
}

/// Issues a certificate and revokes it the moment its 201 arrives, `count` times on one
/// keep-alive connection; returns the serials whose revocation was acknowledged (200).
async fn issue_and_revoke(
    config: Arc<rustls::ClientConfig>,
    api: std::net::SocketAddr,
    csr: String,
    count: usize,
) -> Vec<String> {
    let mut conn = ApiConnection::connect(api, config).await.unwrap();
    let mut revoked = Vec::with_capacity(count);
    for _ in 0..count {
        let body = issue_body("personal", &csr, serde_json::json!({"name": "Race Test"}));
        let (status, resp) = conn
            .request("POST", "/api/v1/certificates", Some(body))
            .await
            .unwrap();
        assert_eq!(status, 201, "{}", String::from_utf8_lossy(&resp));
        let serial = json(&resp)["serial"].as_str().unwrap().to_owned();
        let (status, resp) = conn
            .request(
                "POST",
                &format!("/api/v1/certificates/{serial}/revoke"),
                Some(br#"{"reason":"keyCompromise"}"#.to_vec()),
            )
            .await
            .unwrap();
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&resp));
        revoked.push(serial);
    }
    revoked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_acknowledged_revocation_is_revoked_at_once_and_after_restart() {
    const CLIENTS: usize = 8;
    const PER_CLIENT: usize = 64; // 512 certificates
    let demo = DemoDir::create();
    // Each serial's first SHA-256 CertID is signed live: lift the live-signing rate so the
    // checker's burst is answered rather than told tryLater (the budget has its own test).
    append_config(&demo, "\n[status]\nocsp_live_per_second = 100000\n");
    let server = demo.serve();
    let csrs: Vec<String> = (0..CLIENTS)
        .map(|i| openssl_csr(demo.path(), &format!("race{i}"), "ec:P-256"))
        .collect();
    let config = demo.client_tls("operator");
    let tasks: Vec<_> = csrs
        .into_iter()
        .map(|csr| tokio::spawn(issue_and_revoke(config.clone(), demo.api, csr, PER_CLIENT)))
        .collect();
    let mut serials = Vec::new();
    for t in tasks {
        serials.extend(t.await.unwrap());
    }
    assert_eq!(serials.len(), CLIENTS * PER_CLIENT);

    // At once: every acknowledged revocation, POST and GET, SHA-1 and SHA-256 CertIDs.
    let out = check_all(&demo, &serials, "revoked");
    assert!(out.contains("'revoked': 2048"), "{out}");

    // Give the pre-signer time to finish whatever it had queued: it must not overwrite.
    let seqs_settled = Instant::now();
    while !all_responses_current(demo.path()) {
        assert!(
            seqs_settled.elapsed() < Duration::from_secs(30),
            "stored responses never caught up with the certificates' status"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    check_all(&demo, &serials, "revoked");

    // After a restart (responses loaded from the database).
    drop(server);
    let _server = demo.serve();
    check_all(&demo, &serials, "revoked");
}

/// Whether every stored OCSP response was signed for its certificate's current status version.
fn all_responses_current(dir: &Path) -> bool {
    let db = dir.join("data/appliance.db");
    let (ok, out, err) = run(Command::new("python3").args([
        "-c",
        "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); print(c.execute('''select count(*) \
         from certificates c left join ocsp_responses o on o.ca_id=c.ca_id and o.serial=c.serial \
         where o.serial is null or o.status_seq <> c.status_seq''').fetchone()[0])",
        db.to_str().unwrap(),
    ]));
    assert!(ok, "{err}");
    out.trim() == "0"
}

/// `openssl ocsp` for the certificate file `cert` (no nonce); returns stdout + stderr.
fn openssl_status(demo: &DemoDir, cert: &str) -> String {
    let url = format!("http://{}/ocsp", demo.public);
    let (_, out, err) = run(Command::new("openssl")
        .current_dir(demo.path())
        .args(["ocsp", "-url", &url, "-CAfile", "ca/root.pem", "-no_nonce"])
        .args(["-issuer", "ca/personal.pem", "-cert", cert]));
    format!("{out}{err}")
}

/// Starts `serve` with extra environment variables; returns the child and its log path.
fn serve_with_env(demo: &DemoDir, env: &[(&str, &str)]) -> (std::process::Child, String) {
    use std::io::{BufRead, BufReader};
    let log = demo.path().join("serve-fault.log");
    let mut child = Command::new(appliance_bin())
        .args(["serve", "--config", demo.config().to_str().unwrap()])
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.contains("\"api\""), "serve did not start: {line}");
    (child, log.display().to_string())
}

#[tokio::test]
async fn a_revocation_committed_before_a_crash_is_published_after_restart_without_client_action() {
    let demo = DemoDir::create();
    let (mut child, log) =
        serve_with_env(&demo, &[("CA_APPLIANCE_FAULT", "after-revocation-commit")]);
    let csr = openssl_csr(demo.path(), "ee", "ec:P-256");
    let config = demo.client_tls("operator");
    let resp = demo.issue_personal("operator", &csr).await;
    let serial = resp["serial"].as_str().unwrap().to_owned();
    std::fs::write(
        demo.path().join("ee.pem"),
        resp["certificate"].as_str().unwrap(),
    )
    .unwrap();
    // Its good answer is pre-signed and stored before the crash.
    let start = Instant::now();
    while !all_responses_current(demo.path()) {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "never pre-signed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(openssl_status(&demo, "ee.pem").contains("ee.pem: good"));

    // The revocation commits, then the process dies before re-signing: no answer reaches us.
    let revoked = api_request(
        demo.api,
        config,
        "POST",
        &format!("/api/v1/certificates/{serial}/revoke"),
        Some(br#"{"reason":"keyCompromise"}"#.to_vec()),
    )
    .await;
    assert!(
        !matches!(revoked, Ok((200, _))),
        "the fault point must stop the reply: {revoked:?}"
    );
    let status = child.wait().unwrap();
    assert!(!status.success(), "aborted at the fault point");
    let log_text = std::fs::read_to_string(&log).unwrap();
    assert!(log_text.contains("CA_APPLIANCE_FAULT"), "{log_text}");
    assert!(
        !all_responses_current(demo.path()),
        "the stored response is the stale good one"
    );

    // Restart with no client action: revoked at once, and the stored response is replaced.
    let _server = demo.serve();
    let out = openssl_status(&demo, "ee.pem");
    assert!(
        out.contains("ee.pem: revoked") && out.contains("keyCompromise"),
        "{out}"
    );
    check_all(&demo, &[serial], "revoked");
    let start = Instant::now();
    while !all_responses_current(demo.path()) {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "the stale response was not re-signed after recovery"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(openssl_status(&demo, "ee.pem").contains("ee.pem: revoked"));
}

/// The GET path of a DER request (standard base64, %-encoded).
fn get_path(der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    format!(
        "/ocsp/{}",
        b64.replace('+', "%2B")
            .replace('/', "%2F")
            .replace('=', "%3D")
    )
}

const MALFORMED: [u8; 5] = [0x30, 0x03, 0x0a, 0x01, 0x01];

#[tokio::test]
async fn conditional_requests_carry_the_cache_headers_and_posts_are_never_304() {
    let demo = DemoDir::create();
    append_config(&demo, "\n[status]\nocsp_max_cert_ids = 2\n");
    let _server = demo.serve();
    let csr = openssl_csr(demo.path(), "ee", "ec:P-256");
    let resp = demo.issue_personal("operator", &csr).await;
    std::fs::write(
        demo.path().join("ee.pem"),
        resp["certificate"].as_str().unwrap(),
    )
    .unwrap();
    let req = demo.openssl_ocsp_request(&["-cert", "ee.pem", "-no_nonce"], "q.der");
    let path = get_path(&req);
    let (status, headers, _) = public_get(demo.public, &path).await;
    assert_eq!(status, 200);
    let etag = headers["etag"].to_str().unwrap().to_owned();
    let last_modified = headers["last-modified"].to_str().unwrap().to_owned();
    for name in ["cache-control", "expires", "last-modified"] {
        assert!(headers.contains_key(name), "200 lacks {name}");
    }

    // If-None-Match and If-Modified-Since: 304 with Expires, Cache-Control, ETag.
    for (name, value) in [
        ("if-none-match", etag.as_str()),
        ("if-modified-since", last_modified.as_str()),
    ] {
        let (status, h, body) =
            public_request(demo.public, "GET", &path, &[(name, value)], Vec::new()).await;
        assert_eq!(status, 304, "{name}");
        assert!(body.is_empty());
        for header in ["expires", "cache-control", "etag"] {
            assert!(h.contains_key(header), "304 after {name} lacks {header}");
        }
        assert_eq!(h["etag"].to_str().unwrap(), etag);
    }
    // Modified since an older date: the full answer.
    let (status, _, body) = public_request(
        demo.public,
        "GET",
        &path,
        &[("if-modified-since", "Sun, 06 Nov 1994 08:49:37 GMT")],
        Vec::new(),
    )
    .await;
    assert_eq!(status, 200);
    assert!(!body.is_empty());
    // A POST is never a cache lookup.
    let (status, _, body) = public_request(
        demo.public,
        "POST",
        "/ocsp",
        &[
            ("content-type", "application/ocsp-request"),
            ("if-none-match", etag.as_str()),
        ],
        req.clone(),
    )
    .await;
    assert_eq!(status, 200);
    assert!(body.len() > 100, "a full response");

    // A live-signed GET answer (never-issued serial) carries an ETag and validators too.
    let unknown = demo.openssl_ocsp_request(&["-serial", "0x4242", "-no_nonce"], "u.der");
    let (status, h, body) = public_get(demo.public, &get_path(&unknown)).await;
    assert_eq!(status, 200);
    assert!(body.len() > 100);
    for header in ["etag", "last-modified", "expires", "cache-control"] {
        assert!(h.contains_key(header), "live GET answer lacks {header}");
    }

    // The CertID cap (2 here): three CertIDs are malformedRequest; two are answered.
    let three = demo.openssl_ocsp_request(
        &[
            "-serial",
            "0x11",
            "-serial",
            "0x12",
            "-serial",
            "0x13",
            "-no_nonce",
        ],
        "three.der",
    );
    let (_, _, body) = public_request(
        demo.public,
        "POST",
        "/ocsp",
        &[("content-type", "application/ocsp-request")],
        three,
    )
    .await;
    assert_eq!(body, MALFORMED);
    let two = demo.openssl_ocsp_request(
        &["-serial", "0x11", "-serial", "0x12", "-no_nonce"],
        "two.der",
    );
    let (_, _, body) = public_request(
        demo.public,
        "POST",
        "/ocsp",
        &[("content-type", "application/ocsp-request")],
        two,
    )
    .await;
    assert!(body.len() > 100, "two CertIDs within the cap are answered");

    // An over-long GET path is refused without decoding.
    let long = format!("/ocsp/{}", "A".repeat(4000));
    let (status, _, body) = public_get(demo.public, &long).await;
    assert_eq!((status, body.as_slice()), (200, MALFORMED.as_slice()));
}
