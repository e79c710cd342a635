//! End to end on PostgreSQL: `init --demo --database-url` and the real `ca-appliance serve`
//! issue, revoke, answer OCSP and publish CRLs with every row in the PostgreSQL database
//! (tests/src/postgres.rs; PostgreSQL missing fails).

#![allow(clippy::unwrap_used)] // tests fail loudly

use std::process::Command;
use std::time::{Duration, Instant};

use system_tests::postgres::PgDatabase;
use system_tests::*;

/// Issues a personal certificate as the operator; writes `{stem}.pem`; returns its serial.
async fn issue(demo: &DemoDir, stem: &str) -> String {
    let csr = openssl_csr(demo.path(), stem, "ec:P-256");
    let body = issue_body("personal", &csr, serde_json::json!({"name": "Li Si"}));
    let (status, resp) = api_request(
        demo.api,
        demo.client_tls("operator"),
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

/// `openssl ocsp` for `{stem}.pem` against the public listener: stdout + stderr.
fn ocsp(demo: &DemoDir, stem: &str) -> String {
    let url = format!("http://{}/ocsp", demo.public);
    let (ok, out, err) = run(Command::new("openssl")
        .current_dir(demo.path())
        .args(["ocsp", "-url", &url, "-CAfile", "ca/root.pem"])
        .args([
            "-issuer",
            "ca/personal.pem",
            "-cert",
            &format!("{stem}.pem"),
        ]));
    assert!(ok, "{out}{err}");
    format!("{out}{err}")
}

/// The text dump of `/crl/personal.crl`, once it verifies against the issuing CA.
async fn personal_crl(demo: &DemoDir) -> String {
    let (status, _, body) = public_get(demo.public, "/crl/personal.crl").await;
    assert_eq!(status, 200);
    let der = demo.path().join("fetched.crl");
    std::fs::write(&der, &body).unwrap();
    let (ok, text, err) = run(Command::new("openssl")
        .current_dir(demo.path())
        .args([
            "crl",
            "-inform",
            "DER",
            "-text",
            "-verify",
            "-CAfile",
            "ca/personal.pem",
            "-noout",
            "-in",
        ])
        .arg(&der));
    assert!(ok && err.contains("verify OK"), "{text}{err}");
    text
}

#[tokio::test]
async fn a_node_on_postgresql_issues_revokes_and_answers_ocsp_and_crls_from_it() {
    let db = PgDatabase::create();
    let demo = DemoDir::create_with(&["--database-url", &db.url()]);
    let config = std::fs::read_to_string(demo.config()).unwrap();
    assert!(
        config.contains(&format!("url = \"{}\"", db.url())),
        "{config}"
    );
    let _server = demo.serve();

    let s1 = issue(&demo, "ee1").await;
    let s2 = issue(&demo, "ee2").await;
    // The rows are in PostgreSQL, and there is no SQLite file.
    assert_eq!(
        db.psql(&format!(
            "SELECT status FROM certificates WHERE serial IN ('{s1}', '{s2}') ORDER BY serial"
        )),
        "valid\nvalid"
    );
    assert!(!demo.path().join("data/appliance.db").exists());
    let out = ocsp(&demo, "ee1");
    assert!(
        out.contains("Response verify OK") && out.contains("ee1.pem: good"),
        "{out}"
    );

    let (status, resp) = api_request(
        demo.api,
        demo.client_tls("operator"),
        "POST",
        &format!("/api/v1/certificates/{s1}/revoke"),
        Some(serde_json::to_vec(&serde_json::json!({"reason": "keyCompromise"})).unwrap()),
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&resp));
    let out = ocsp(&demo, "ee1");
    assert!(
        out.contains("ee1.pem: revoked") && out.contains("Reason: keyCompromise"),
        "{out}"
    );
    assert!(ocsp(&demo, "ee2").contains("ee2.pem: good"));

    // The CRL regenerated from PostgreSQL lists ee1 and not ee2.
    let start = Instant::now();
    let upper = s1.to_uppercase();
    loop {
        let text = personal_crl(&demo).await;
        if text.contains(&upper) {
            assert!(!text.contains(&s2.to_uppercase()), "{text}");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "CRL never listed {s1}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(
        db.psql(&format!(
            "SELECT status FROM certificates WHERE serial = '{s1}'"
        )),
        "revoked"
    );
    let audit: i64 = db.psql("SELECT count(*) FROM audit_log").parse().unwrap();
    assert!(audit >= 4, "{audit} audit rows");
}

#[test]
fn init_refuses_a_database_url_with_a_password_or_an_unknown_scheme_and_creates_nothing() {
    for (url, says) in [
        ("postgres://ca:secret@127.0.0.1/ca", "password"),
        ("postgres://ca@127.0.0.1/ca?password=secret", "password"),
        ("mysql://ca@127.0.0.1/ca", "unsupported database URL scheme"),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("node");
        let (ok, out, err) = run(Command::new(appliance_bin())
            .args(["init", "--demo", "--dir"])
            .arg(&dir)
            .args(["--database-url", url]));
        assert!(!ok, "{url} accepted: {out}");
        assert!(err.contains(says), "{url}: {err}");
        assert!(!err.contains("secret"), "the password is echoed: {err}");
        assert!(!dir.exists(), "{url}: {} was created", dir.display());
    }
}
