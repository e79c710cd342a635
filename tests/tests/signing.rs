//! End to end (issue 11): who a caller is, what a channel may do to a status, the one CA signing
//! path (lint, record before sign, verified signature, validity clipped to the issuer), and the
//! verifiable audit log (checkpoints, `audit verify` against four kinds of tampering).

#![allow(clippy::unwrap_used)] // tests fail loudly

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use system_tests::*;

/// Issues a client certificate from the demo TLS CA: `subj` as for `openssl req`, `ext` the
/// extension lines. Returns the client TLS configuration.
fn client_cert(
    demo: &DemoDir,
    stem: &str,
    subj: &str,
    ext: &str,
) -> std::sync::Arc<rustls::ClientConfig> {
    openssl_leaf(&demo.path().join("tls"), stem, subj, "ca", ext);
    demo.client_tls(stem)
}

fn cert_hex(demo: &DemoDir, file: &str, what: &[&str]) -> String {
    let (ok, out, err) = run(Command::new("openssl")
        .current_dir(demo.path())
        .args(["x509", "-noout"])
        .args(what)
        .args(["-in", file]));
    assert!(ok, "{err}");
    out.trim()
        .split_once('=')
        .unwrap()
        .1
        .replace(':', "")
        .to_ascii_lowercase()
}

const CLIENT_CRL: &str = r#"
import sys, datetime
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
ca = x509.load_pem_x509_certificate(open("tls/ca.pem", "rb").read())
key = serialization.load_pem_private_key(open("tls/ca.key", "rb").read(), None)
now = datetime.datetime.now(datetime.timezone.utc)
b = (x509.CertificateRevocationListBuilder().issuer_name(ca.subject)
     .last_update(now - datetime.timedelta(hours=1)).next_update(now + datetime.timedelta(days=1))
     .add_extension(x509.CRLNumber(1), False))
for s in sys.argv[2:]:
    b = b.add_revoked_certificate(x509.RevokedCertificateBuilder().serial_number(int(s, 16))
                                  .revocation_date(now).build())
open(sys.argv[1], "wb").write(b.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))
"#;

async fn status_of(
    demo: &DemoDir,
    tls: std::sync::Arc<rustls::ClientConfig>,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let (status, resp) = api_request(
        demo.api,
        tls,
        method,
        path,
        body.map(|b| serde_json::to_vec(&b).unwrap()),
    )
    .await
    .unwrap();
    let value = serde_json::from_slice(&resp).unwrap_or(serde_json::Value::Null);
    (status, value)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_are_identified_by_fingerprint_san_or_single_cn_with_client_auth() {
    let demo = DemoDir::create();
    let two_cns = client_cert(
        &demo,
        "two-cns",
        "/CN=channel-demo/CN=operator",
        "extendedKeyUsage=clientAuth\n",
    );
    let no_eku = client_cert(
        &demo,
        "no-eku",
        "/CN=operator",
        "keyUsage=digitalSignature\n",
    );
    let by_fp = client_cert(&demo, "by-fp", "/CN=fp-op", "extendedKeyUsage=clientAuth\n");
    let by_san = client_cert(
        &demo,
        "by-san",
        "/CN=san-op",
        "extendedKeyUsage=clientAuth\nsubjectAltName=DNS:ops.example\n",
    );
    let fingerprint = cert_hex(&demo, "tls/by-fp.pem", &["-sha256", "-fingerprint"]);
    append_config(
        &demo,
        &format!(
            "\n[[client]]\nfingerprint_sha256 = \"{fingerprint}\"\nrole = \"operator\"\n\n\
             [[client]]\nsan = \"ops.example\"\nrole = \"operator\"\n"
        ),
    );
    // Duplicates are refused by check-config (in a copy of the configuration).
    let base = std::fs::read_to_string(demo.config()).unwrap();
    let dup = demo.path().join("dup.toml");
    std::fs::write(
        &dup,
        format!("{base}\n[[client]]\nsan = \"ops.example\"\nrole = \"operator\"\n"),
    )
    .unwrap();
    let (ok, _, err) = run(Command::new(appliance_bin())
        .args(["check-config", "--config"])
        .arg(&dup));
    assert!(!ok && err.contains("listed twice"), "{err}");
    let (ok, out, err) = run(Command::new(appliance_bin())
        .args(["check-config", "--config"])
        .arg(demo.config()));
    assert!(ok, "{out}{err}");

    let mut server = demo.serve();
    // Operator-only endpoint: 200 for the fingerprint and SAN entries.
    for (who, tls) in [("fingerprint", by_fp.clone()), ("san", by_san.clone())] {
        let (status, body) = status_of(&demo, tls, "GET", "/api/v1/plugins", None).await;
        assert_eq!(status, 200, "{who}: {body}");
    }
    // Several CNs, or no clientAuth EKU: refused at the handshake.
    for (who, tls) in [("two CNs", two_cns), ("no clientAuth", no_eku)] {
        let r = api_request(demo.api, tls, "GET", "/api/v1/plugins", None).await;
        assert!(r.is_err(), "{who} answered: {r:?}");
    }
    assert!(server.is_running());
    server.stop_with("TERM", Duration::from_secs(20));

    // A client CRL listing channel-demo: refused at the handshake; the operator still works.
    let serial = cert_hex(&demo, "tls/channel-demo.pem", &["-serial"]);
    let (ok, _, err) = run(Command::new("python3").current_dir(demo.path()).args([
        "-c",
        CLIENT_CRL,
        "tls/client-crl.pem",
        &serial,
    ]));
    assert!(ok, "{err}");
    server_config(&demo, "client_crl = \"tls/client-crl.pem\"");
    let _server = demo.serve();
    let r = api_request(
        demo.api,
        demo.client_tls("channel-demo"),
        "GET",
        "/api/v1/plugins",
        None,
    )
    .await;
    assert!(r.is_err(), "revoked client answered: {r:?}");
    let (status, body) = status_of(
        &demo,
        demo.client_tls("operator"),
        "GET",
        "/api/v1/plugins",
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

fn sqlite(demo: &DemoDir, sql: &str) -> String {
    let (ok, out, err) = run(Command::new("sqlite3")
        .arg(demo.path().join("data/appliance.db"))
        .arg(sql));
    assert!(ok, "sqlite3 {sql}: {err}");
    out.trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_signing_path_lints_records_verifies_and_clips_validity() {
    let demo = DemoDir::create();
    // A profile granting OCSPSigning to subscribers is refused by check-config.
    let bad_dir = demo.path().join("profiles-bad");
    std::fs::create_dir_all(&bad_dir).unwrap();
    for name in ["personal.toml", "organisation.toml"] {
        let text = std::fs::read_to_string(demo.path().join("profiles").join(name)).unwrap();
        let text = text.replace(
            "\"emailProtection\"]",
            "\"emailProtection\", \"OCSPSigning\"]",
        );
        std::fs::write(bad_dir.join(name), text).unwrap();
    }
    let config = std::fs::read_to_string(demo.config()).unwrap();
    let bad = demo.path().join("bad.toml");
    std::fs::write(
        &bad,
        config.replace(
            "profiles_dir = \"profiles\"",
            "profiles_dir = \"profiles-bad\"",
        ),
    )
    .unwrap();
    let (ok, _, err) = run(Command::new(appliance_bin())
        .args(["check-config", "--config"])
        .arg(&bad));
    assert!(!ok && err.contains("OCSPSigning"), "{err}");

    // Validity clipped to the issuer: a profile as long as its CA still issues.
    let personal = demo.path().join("profiles/personal.toml");
    let text = std::fs::read_to_string(&personal).unwrap();
    std::fs::write(
        &personal,
        text.replace("validity_days = 365", "validity_days = 3650"),
    )
    .unwrap();
    let mut server = demo.serve();
    let csr = openssl_csr(demo.path(), "long", "ec:P-256");
    let issued = demo.issue_personal("operator", &csr).await;
    std::fs::write(
        demo.path().join("long.pem"),
        issued["certificate"].as_str().unwrap(),
    )
    .unwrap();
    let end = |file: &str| {
        let (ok, out, err) = run(Command::new("openssl")
            .current_dir(demo.path())
            .args(["x509", "-noout", "-enddate", "-in", file]));
        assert!(ok, "{err}");
        out
    };
    assert_eq!(end("long.pem"), end("ca/personal.pem"));
    // Recorded before it was signed: the ledger row and its audit row exist.
    let serial = issued["serial"].as_str().unwrap();
    assert_eq!(
        sqlite(
            &demo,
            &format!("SELECT kind FROM signing_records WHERE serial = '{serial}'")
        ),
        "end_entity"
    );
    assert_eq!(
        sqlite(
            &demo,
            &format!("SELECT action FROM audit_log WHERE target = '{serial}' ORDER BY seq")
        ),
        "sign.end_entity\ncertificate.issue"
    );
    server.stop_with("TERM", Duration::from_secs(20));

    // A signature that fails its verification stores nothing.
    let before = sqlite(&demo, "SELECT COUNT(*) FROM certificates");
    let _server = Server::start_under(
        &demo.config(),
        &["env", "CA_APPLIANCE_FAULT=corrupt-signature"],
    );
    let body = issue_body("personal", &csr, serde_json::json!({"name": "Test Person"}));
    let (status, resp) = api_request(
        demo.api,
        demo.client_tls("operator"),
        "POST",
        "/api/v1/certificates",
        Some(body),
    )
    .await
    .unwrap();
    assert_eq!(
        (status, json(&resp)["error"].as_str()),
        (500, Some("signature_invalid"))
    );
    assert_eq!(sqlite(&demo, "SELECT COUNT(*) FROM certificates"), before);
    let recorded: i64 = sqlite(
        &demo,
        "SELECT COUNT(*) FROM signing_records WHERE kind = 'end_entity'",
    )
    .parse()
    .unwrap();
    assert_eq!(
        recorded, 2,
        "the refused signature was recorded before signing"
    );
}

/// Recomputes the whole audit chain after editing row 5, as an attacker with the database would.
const RECOMPUTE: &str = r#"
import sqlite3, hashlib, struct, sys
db = sqlite3.connect(sys.argv[1])
db.execute("UPDATE audit_log SET actor = 'operator:mallory' WHERE seq = 5")
prev = b"\0" * 32
for seq, at, actor, action, target, detail in db.execute(
        "SELECT seq, at, actor, action, target, detail FROM audit_log ORDER BY seq").fetchall():
    h = hashlib.sha256(prev + struct.pack(">q", at))
    for f in (actor, action, target, detail):
        b = f.encode()
        h.update(struct.pack(">Q", len(b)) + b)
    digest = h.digest()
    db.execute("UPDATE audit_log SET prev_hash = ?, hash = ? WHERE seq = ?", (prev, digest, seq))
    prev = digest
db.commit()
"#;

fn audit_verify(demo: &DemoDir) -> (bool, String) {
    let (ok, out, err) = run(Command::new(appliance_bin())
        .args(["audit", "verify", "--config"])
        .arg(demo.config()));
    (ok, format!("{out}{err}"))
}

fn restore(demo: &DemoDir, backup: &Path) {
    let db = demo.path().join("data/appliance.db");
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(db.with_file_name(format!("appliance.db{suffix}")));
    }
    std::fs::copy(backup, &db).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_verify_detects_edits_deletions_truncation_and_recomputed_chains() {
    let demo = DemoDir::create();
    let mut server = demo.serve();
    for i in 0..3 {
        let csr = openssl_csr(demo.path(), &format!("a{i}"), "ec:P-256");
        demo.issue_personal("operator", &csr).await;
    }
    // SIGTERM: the server signs a final checkpoint over everything it wrote.
    assert_eq!(server.stop_with("TERM", Duration::from_secs(20)), Some(0));
    let (ok, text) = audit_verify(&demo);
    assert!(ok, "{text}");
    let last: i64 = sqlite(&demo, "SELECT MAX(seq) FROM audit_log")
        .parse()
        .unwrap();
    assert_eq!(
        sqlite(&demo, "SELECT MAX(seq) FROM audit_checkpoints"),
        last.to_string(),
        "the shutdown checkpoint covers the tail"
    );
    // Export: JSON lines with every row and the checkpoints.
    let (ok, out, err) = run(Command::new(appliance_bin())
        .args(["audit", "export", "--config"])
        .arg(demo.config()));
    assert!(ok, "{err}");
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines.iter().filter(|l| l["type"] == "row").count() as i64,
        last
    );
    assert!(lines
        .iter()
        .any(|l| l["type"] == "checkpoint" && l["seq"] == last));

    let backup = demo.path().join("backup.db");
    sqlite(&demo, &format!(".backup {}", backup.display()));

    // 1. An edited row.
    sqlite(
        &demo,
        "UPDATE audit_log SET target = 'nothing' WHERE seq = 5",
    );
    let (ok, text) = audit_verify(&demo);
    assert!(!ok && text.contains("seq 5:"), "{text}");
    restore(&demo, &backup);
    assert!(audit_verify(&demo).0);

    // 2. A deleted middle row.
    sqlite(&demo, "DELETE FROM audit_log WHERE seq = 7");
    let (ok, text) = audit_verify(&demo);
    assert!(!ok && text.contains("seq 7:"), "{text}");
    restore(&demo, &backup);

    // 3. The last rows deleted: the signed checkpoint points past the end; serve refuses.
    sqlite(
        &demo,
        &format!("DELETE FROM audit_log WHERE seq > {}", last - 3),
    );
    let (ok, text) = audit_verify(&demo);
    assert!(
        !ok && text.contains(&format!("seq {}:", last - 2)),
        "{text}"
    );
    let (ok, _, err) = run(Command::new("timeout")
        .args(["30"])
        .arg(appliance_bin())
        .args(["serve", "--config"])
        .arg(demo.config()));
    assert!(
        !ok && err.contains("audit log"),
        "serve started on a truncated log: {err}"
    );
    restore(&demo, &backup);

    // 4. Row 5 edited and the whole chain recomputed by a script: the signatures catch it.
    let (ok, _, err) = run(Command::new("python3")
        .args(["-c", RECOMPUTE])
        .arg(demo.path().join("data/appliance.db")));
    assert!(ok, "{err}");
    let (ok, text) = audit_verify(&demo);
    assert!(!ok && text.contains("chain recomputed"), "{text}");
}
