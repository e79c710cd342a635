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
        let text = demo.personal_crl_text().await;
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

/// Polls `openssl ocsp` on `demo` for `{stem}.pem` until it says `want`, for at most `within`.
fn ocsp_until(demo: &DemoDir, stem: &str, want: &str, within: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let out = ocsp(demo, stem);
        if out.contains(&format!("{stem}.pem: {want}")) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "{stem} not {want} within {within:?} on {}:\n{out}",
            demo.public
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn a_revocation_on_one_node_is_answered_revoked_by_the_other_and_a_missed_notification_is_caught_up(
) {
    let db = PgDatabase::create();
    let a = DemoDir::create_with(&["--database-url", &db.url()]);
    let b = a.join();
    assert!(b.path().join("appliance.toml").exists());
    let _node_a = a.serve();
    let _node_b = b.serve();

    // Both nodes issue into the one database; each answers for the other's certificates.
    let s1 = issue(&a, "ee1").await;
    let s2 = issue(&b, "ee2").await;
    std::fs::copy(a.path().join("ee1.pem"), b.path().join("ee1.pem")).unwrap();
    std::fs::copy(b.path().join("ee2.pem"), a.path().join("ee2.pem")).unwrap();
    for node in [&a, &b] {
        for stem in ["ee1", "ee2"] {
            ocsp_until(node, stem, "good", Duration::from_secs(10));
        }
    }

    // Revoked on A: B (which holds a `good` answer) says revoked within a second.
    let (status, resp) = api_request(
        a.api,
        a.client_tls("operator"),
        "POST",
        &format!("/api/v1/certificates/{s1}/revoke"),
        Some(serde_json::to_vec(&serde_json::json!({"reason": "keyCompromise"})).unwrap()),
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&resp));
    ocsp_until(&b, "ee1", "revoked", Duration::from_secs(1));
    assert!(ocsp(&a, "ee1").contains("ee1.pem: revoked"));

    // A change committed without its notification (as if it were lost): the periodic catch-up
    // repairs it on both nodes.
    db.psql(&format!(
        "BEGIN; UPDATE counters SET value = value + 1 WHERE name = 'status_seq'; \
         UPDATE certificates SET status = 'revoked', revocation_reason = 1, \
           revoked_at = extract(epoch from now())::bigint, \
           status_changed_at = extract(epoch from now())::bigint, \
           status_seq = (SELECT value FROM counters WHERE name = 'status_seq') \
         WHERE serial = '{s2}'; COMMIT;"
    ));
    ocsp_until(&a, "ee2", "revoked", Duration::from_secs(5));
    ocsp_until(&b, "ee2", "revoked", Duration::from_secs(5));

    // Each node's CRL comes to list both, numbered from the one shared counter.
    let mut numbers = Vec::new();
    for node in [&a, &b] {
        let start = Instant::now();
        loop {
            let text = node.personal_crl_text().await;
            if text.contains(&s1.to_uppercase()) && text.contains(&s2.to_uppercase()) {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "CRL of {}:\n{text}",
                node.public
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    let rows = db.psql("SELECT number FROM crls ORDER BY number");
    for n in rows.lines() {
        numbers.push(n.parse::<i64>().unwrap());
    }
    let distinct: std::collections::BTreeSet<_> = numbers.iter().collect();
    assert_eq!(
        distinct.len(),
        numbers.len(),
        "CRL numbers reused: {numbers:?}"
    );
}

/// Revokes `serial` through `demo`'s API as the operator (keyCompromise).
async fn revoke(demo: &DemoDir, serial: &str) {
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
}

/// The CRL Number in `openssl crl -text` output.
fn crl_number(text: &str) -> u64 {
    let after = text.split("X509v3 CRL Number:").nth(1).expect("CRL Number");
    after.split_whitespace().next().unwrap().parse().unwrap()
}

#[tokio::test]
async fn one_node_generates_a_cas_crls_the_other_serves_the_same_bytes_and_takes_over_when_it_dies()
{
    let db = PgDatabase::create();
    let a = DemoDir::create_with(&["--database-url", &db.url()]);
    let b = a.join();
    let nodes = [&a, &b];
    let mut servers = [Some(a.serve()), Some(b.serve())];

    // A revocation on A: both nodes come to serve one and the same signed CRL listing it
    // (two generators would each sign their own, with different numbers).
    let s1 = issue(&a, "ee1").await;
    revoke(&a, &s1).await;
    let start = Instant::now();
    loop {
        let text_a = a.personal_crl_text().await;
        let (_, _, bytes_a) = public_get(a.public, "/crl/personal.crl").await;
        let (_, _, bytes_b) = public_get(b.public, "/crl/personal.crl").await;
        if text_a.contains(&s1.to_uppercase()) && bytes_a == bytes_b {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the nodes never served the same CRL listing {s1}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let before = crl_number(&b.personal_crl_text().await);

    // One holder for every CA's CRL lease; it is one of the two nodes (by its logged id).
    let holders = db.psql("SELECT DISTINCT holder FROM leases WHERE name LIKE 'crl:%'");
    assert_eq!(holders.lines().count(), 1, "holders: {holders}");
    let holder = holders.trim().to_owned();
    let held_by = servers
        .iter()
        .position(|s| s.as_ref().unwrap().log_text().contains(&holder))
        .expect("the holder's id is in one node's log");
    let survivor = nodes[1 - held_by];
    // Periodic OCSP pre-signing is divided the same way: one holder per CA.
    let presigners = db.psql("SELECT DISTINCT holder FROM leases WHERE name LIKE 'ocsp:%'");
    assert_eq!(presigners.lines().count(), 1, "pre-signers: {presigners}");

    // kill -9 the holder; a revocation on the survivor still reaches its CRL, which the
    // survivor now generates itself (lease expiry 30 s + one 5 s pass, with margin).
    drop(servers[held_by].take());
    let s2 = issue(survivor, "ee2").await;
    revoke(survivor, &s2).await;
    let start = Instant::now();
    let text = loop {
        let text = survivor.personal_crl_text().await;
        if text.contains(&s2.to_uppercase()) {
            break text;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the survivor never published a CRL listing {s2}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(text.contains(&s1.to_uppercase()), "{text}");
    assert!(crl_number(&text) > before, "{text}");
    let now_held = db.psql("SELECT DISTINCT holder FROM leases WHERE name LIKE 'crl:%'");
    assert!(
        !now_held.contains(&holder),
        "the dead node still holds a lease: {now_held}"
    );
}
