//! Three `ca-appliance serve` nodes on one PostgreSQL database (`init --demo --join`): issuance
//! through all three, a revocation seen by the other two within a second, the same CRL from
//! each, and a node killed (SIGKILL) during an issuance and revocation load losing no
//! acknowledged write, and a killed node's pending verification timer fired by a survivor
//! (tests/src/postgres.rs; PostgreSQL missing fails).

#![allow(clippy::unwrap_used)] // tests fail loudly

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use system_tests::postgres::PgDatabase;
use system_tests::*;

/// Issues a personal certificate on `demo` for a new key `{stem}.key` in `dir`; writes
/// `{dir}/{stem}.pem`; the serial, or `None` if the issuance was not acknowledged.
async fn try_issue(demo: &DemoDir, dir: &std::path::Path, stem: &str) -> Option<String> {
    let csr = openssl_csr(dir, stem, "ec:P-256");
    let body = issue_body("personal", &csr, serde_json::json!({"name": "Li Si"}));
    let (status, resp) = api_request(
        demo.api,
        demo.client_tls("operator"),
        "POST",
        "/api/v1/certificates",
        Some(body),
    )
    .await
    .ok()?;
    if status != 201 {
        return None;
    }
    let resp = json(&resp);
    std::fs::write(
        dir.join(format!("{stem}.pem")),
        resp["certificate"].as_str()?,
    )
    .ok()?;
    Some(resp["serial"].as_str()?.to_owned())
}

/// Revokes `serial` on `demo`; whether it was acknowledged (2xx).
async fn try_revoke(demo: &DemoDir, serial: &str) -> bool {
    let body = serde_json::to_vec(&serde_json::json!({"reason": "keyCompromise"})).unwrap();
    matches!(
        api_request(
            demo.api,
            demo.client_tls("operator"),
            "POST",
            &format!("/api/v1/certificates/{serial}/revoke"),
            Some(body),
        )
        .await,
        Ok((200..=299, _))
    )
}

/// `openssl ocsp` on `demo` for `{dir}/{stem}.pem`: stdout + stderr.
fn ocsp(demo: &DemoDir, dir: &std::path::Path, stem: &str) -> String {
    let url = format!("http://{}/ocsp", demo.public);
    let ca = demo.path().join("ca");
    let (_, out, err) = run(Command::new("openssl")
        .args(["ocsp", "-url", &url, "-CAfile"])
        .arg(ca.join("root.pem"))
        .arg("-issuer")
        .arg(ca.join("personal.pem"))
        .arg("-cert")
        .arg(dir.join(format!("{stem}.pem"))));
    format!("{out}{err}")
}

/// Polls OCSP on `demo` until it says `want` for `stem`, for at most `within`.
async fn ocsp_until(
    demo: &DemoDir,
    dir: &std::path::Path,
    stem: &str,
    want: &str,
    within: Duration,
) {
    let start = Instant::now();
    loop {
        let out = ocsp(demo, dir, stem);
        if out.contains(&format!(": {want}")) {
            return;
        }
        assert!(
            start.elapsed() < within,
            "{}: {stem} not {want} within {within:?}:\n{out}",
            demo.public
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `/crl/personal.crl` from `demo`: (CRL number, revoked serials), once it verifies.
async fn crl(demo: &DemoDir) -> (u64, BTreeSet<String>) {
    let text = demo.personal_crl_text().await;
    let number = text
        .split("X509v3 CRL Number:")
        .nth(1)
        .and_then(|t| t.split_whitespace().next())
        .unwrap()
        .parse()
        .unwrap();
    let serials = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Serial Number: "))
        .map(|s| s.trim().to_lowercase())
        .collect();
    (number, serials)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_issue_revoke_publish_alike_and_a_killed_node_loses_no_acknowledged_write() {
    let db = PgDatabase::create();
    let a = DemoDir::create_with(&["--database-url", &db.url()]);
    let b = a.join();
    let c = a.join();
    let certs = tempfile::tempdir().unwrap();
    let dir = certs.path();
    let _server_a = a.serve();
    let server_b = b.serve();
    let mut server_c = Some(c.serve());

    // Issuance through all three; each node answers for every certificate.
    let mut serials = Vec::new();
    for (node, stem) in [(&a, "ea"), (&b, "eb"), (&c, "ec")] {
        serials.push(try_issue(node, dir, stem).await.expect("issued"));
    }
    for node in [&a, &b, &c] {
        for stem in ["ea", "eb", "ec"] {
            ocsp_until(node, dir, stem, "good", Duration::from_secs(10)).await;
        }
    }

    // Revoked on A: B and C answer `revoked` within a second.
    assert!(try_revoke(&a, &serials[0]).await);
    let revoked_at = Instant::now();
    for node in [&b, &c] {
        ocsp_until(node, dir, "ea", "revoked", Duration::from_secs(1)).await;
    }
    assert!(revoked_at.elapsed() < Duration::from_secs(2));
    // B and C adopt the answer stored in the database instead of signing their own.
    for server in [&server_b, server_c.as_ref().unwrap()] {
        let start = Instant::now();
        while !server.log_text().lines().any(|l| {
            l.contains("answer adopted from the database") && l.contains(serials[0].as_str())
        }) {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "no adoption logged:\n{}",
                server.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    // The three nodes' CRLs list the same entries; numbers only grow.
    let mut last = 0;
    let start = Instant::now();
    loop {
        let mut seen = Vec::new();
        for node in [&a, &b, &c] {
            seen.push(crl(node).await);
        }
        let all_list = seen.iter().all(|(_, s)| s.contains(&serials[0]));
        if all_list && seen.iter().all(|(_, s)| s == &seen[0].1) {
            for (n, _) in &seen {
                assert!(*n >= last, "CRL number went back: {seen:?}");
                last = last.max(*n);
            }
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "CRLs differ: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let numbers = db.psql("SELECT number FROM crls ORDER BY this_update, number");
    let numbers: Vec<i64> = numbers.lines().map(|n| n.parse().unwrap()).collect();
    assert!(numbers.windows(2).all(|w| w[0] < w[1]), "{numbers:?}");

    // Load on C (issue, then revoke every other one) while C is killed with SIGKILL.
    let load = async {
        let mut issued = Vec::new();
        let mut revoked = Vec::new();
        for i in 0..200 {
            let stem = format!("load{i}");
            let Some(serial) = try_issue(&c, dir, &stem).await else {
                break;
            };
            issued.push((stem.clone(), serial.clone()));
            if i % 2 == 0 {
                if !try_revoke(&c, &serial).await {
                    break;
                }
                revoked.push(stem);
            }
        }
        (issued, revoked)
    };
    let kill = async {
        // Kill once some writes were acknowledged, in the middle of the load.
        let start = Instant::now();
        loop {
            let n: i64 = db
                .psql("SELECT count(*) FROM certificates")
                .parse()
                .unwrap();
            if n >= 10 {
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(60), "load stalled");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        drop(server_c.take()); // Child::kill: SIGKILL
    };
    let ((issued, revoked), ()) = tokio::join!(load, kill);
    assert!(issued.len() >= 5, "load too short: {issued:?}");

    // Every acknowledged write is in the database, and the survivors answer for it.
    let revoked: BTreeSet<String> = revoked.into_iter().collect();
    for (stem, serial) in &issued {
        let status = db.psql(&format!(
            "SELECT status FROM certificates WHERE serial = '{serial}'"
        ));
        let want = if revoked.contains(stem) {
            "revoked"
        } else {
            "good"
        };
        if want == "revoked" {
            assert_eq!(status, "revoked", "{serial}");
        } else {
            assert!(!status.is_empty(), "acknowledged {serial} missing");
        }
        if want == "revoked" || status == "valid" {
            for node in [&a, &b] {
                ocsp_until(node, dir, stem, want, Duration::from_secs(10)).await;
            }
        }
    }
}

/// A verification whose plugin timer is pending when its node is killed (SIGKILL) is continued
/// by a surviving node: the timer fires there and the verification completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_nodes_pending_verification_timer_fires_on_a_survivor() {
    let db = PgDatabase::create();
    let a = DemoDir::create_with(&["--database-url", &db.url()]);
    let b = a.join();
    // The misbehaving plugin's `timer` behaviour answers `start` with a 1.5 s timer and
    // succeeds when it fires.
    let lib = binaries().join("libplugin_misbehaving.so");
    let sha = plugin_host::sha256_file(&lib).unwrap();
    for node in [&a, &b] {
        append_config(
            node,
            &format!(
                "\n[[plugin]]\nname = \"misbehaving\"\npath = \"{}\"\nsha256 = \"{sha}\"\n\
                 isolation = \"in_process\"\nconfig = {{ behaviour = \"timer\" }}\n",
                lib.display()
            ),
        );
    }
    let _server_a = a.serve();
    let server_b = b.serve();
    let start = serde_json::json!({"plugin": "misbehaving", "applicant": {}});
    let (status, v) = b
        .call_json("operator", "POST", "/api/v1/verifications", Some(start))
        .await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["status"], "pending", "{v}");
    assert_eq!(v["timers"][0]["id"], "poll", "{v}");
    let id = v["id"].as_str().unwrap().to_owned();
    drop(server_b); // SIGKILL, before the timer is due

    // The survivor fires it (once the dead node's claim, 60 s at most, has expired).
    let path = format!("/api/v1/verifications/{id}");
    let killed_at = Instant::now();
    loop {
        let (code, v) = a.call_json("operator", "GET", &path, None).await;
        assert_eq!(code, 200, "{v}");
        if v["status"] == "succeeded" {
            assert_eq!(v["timers"], serde_json::json!([]), "{v}");
            break;
        }
        assert!(
            killed_at.elapsed() < Duration::from_secs(90),
            "the timer never fired on the survivor: {v}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
