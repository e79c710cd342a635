//! `backup` during an issuance load and `restore` elsewhere: the restored appliance holds a
//! consistent prefix of what was issued (same DER, same audit chain), answers OCSP as the
//! original did, publishes the same revocations, and continues the CRL numbers.

#![allow(clippy::unwrap_used)] // tests may unwrap: a failure is the test failing

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use system_tests::*;

/// `openssl ocsp` against the running appliance for the certificate in `pem` (in `dir`);
/// returns `good`, `revoked` or the output when neither.
fn ocsp_status(dir: &Path, public: std::net::SocketAddr, pem: &str) -> String {
    let (_, out, err) = run(Command::new("openssl").current_dir(dir).args([
        "ocsp",
        "-url",
        &format!("http://{public}/ocsp"),
        "-CAfile",
        "ca/root.pem",
        "-issuer",
        "ca/personal.pem",
        "-cert",
        pem,
        "-no_nonce",
    ]));
    let text = format!("{out}{err}");
    for status in ["good", "revoked"] {
        if text.contains(&format!("{pem}: {status}")) && text.contains("Response verify OK") {
            return status.to_owned();
        }
    }
    text
}

/// Rows of a table through Python's sqlite3 (independent of the appliance's storage code).
fn sql(db: &Path, query: &str) -> Vec<Vec<String>> {
    let (ok, out, err) = run(Command::new("python3").args([
        "-c",
        "import sqlite3,sys,json\nfor r in sqlite3.connect(sys.argv[1]).execute(sys.argv[2]): print(json.dumps([x.hex() if isinstance(x, bytes) else str(x) for x in r]))",
        db.to_str().unwrap(),
        query,
    ]));
    assert!(ok, "{err}");
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The revocations published for the personal CA (full and delta CRL together) and the
/// highest CRL number of the two.
async fn published(public: std::net::SocketAddr, dir: &Path) -> (u64, BTreeSet<String>) {
    let (full, mut revoked) = crl(public, dir, "personal.crl").await;
    let (delta, more) = crl(public, dir, "personal-delta.crl").await;
    revoked.extend(more);
    (full.max(delta), revoked)
}

/// The CRL at `/crl/{file}`: its number and revoked serials (upper-case hex), read by openssl.
async fn crl(public: std::net::SocketAddr, dir: &Path, file: &str) -> (u64, BTreeSet<String>) {
    let (status, _, body) = public_get(public, &format!("/crl/{file}")).await;
    assert_eq!(status, 200);
    let path = dir.join(format!("fetched-{file}"));
    std::fs::write(&path, body).unwrap();
    let (ok, out, err) = run(Command::new("openssl").args([
        "crl",
        "-inform",
        "DER",
        "-noout",
        "-text",
        "-in",
        path.to_str().unwrap(),
    ]));
    assert!(ok, "{err}");
    let mut number = None;
    let mut serials = BTreeSet::new();
    let mut lines = out.lines().map(str::trim).peekable();
    while let Some(line) = lines.next() {
        if line.starts_with("X509v3 CRL Number") {
            let n = lines.next().unwrap().trim();
            number =
                Some(n.parse::<u64>().unwrap_or_else(|_| {
                    u64::from_str_radix(n.trim_start_matches("0x"), 16).unwrap()
                }));
        }
        if let Some(s) = line.strip_prefix("Serial Number: ") {
            serials.insert(upper(s));
        }
    }
    (number.expect("CRL number"), serials)
}

fn upper(serial: &str) -> String {
    serial.trim_start_matches('0').to_ascii_uppercase()
}

async fn revoke(demo: &DemoDir, serial: &str) {
    let (status, resp) = api_request(
        demo.api,
        demo.client_tls("operator"),
        "POST",
        &format!("/api/v1/certificates/{serial}/revoke"),
        Some(br#"{"reason": "keyCompromise"}"#.to_vec()),
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&resp));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_under_load_restores_the_same_certificates_ocsp_and_crl_numbers() {
    let demo = DemoDir::create();
    let dir = demo.path().to_owned();
    let mut server = demo.serve();
    let csr = openssl_csr(&dir, "ee", "ec:P-256");

    // Before the backup: five certificates, two revoked.
    let mut before = Vec::new();
    for i in 0..5 {
        let issued = demo.issue_personal("operator", &csr).await;
        let pem = format!("pre{i}.pem");
        std::fs::write(dir.join(&pem), issued["certificate"].as_str().unwrap()).unwrap();
        before.push((issued["serial"].as_str().unwrap().to_owned(), pem));
    }
    revoke(&demo, &before[0].0).await;
    revoke(&demo, &before[1].0).await;

    // Issuance load (two clients) while the backup runs.
    let stop = Arc::new(AtomicBool::new(false));
    let during: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut clients = Vec::new();
    for _ in 0..2 {
        let (api, tls, stop, during) = (
            demo.api,
            demo.client_tls("operator"),
            stop.clone(),
            during.clone(),
        );
        let body = issue_body("personal", &csr, serde_json::json!({"name": "Load"}));
        clients.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let (status, resp) = api_request(
                    api,
                    tls.clone(),
                    "POST",
                    "/api/v1/certificates",
                    Some(body.clone()),
                )
                .await
                .unwrap();
                assert_eq!(status, 201, "{}", String::from_utf8_lossy(&resp));
                let serial = json(&resp)["serial"].as_str().unwrap().to_owned();
                during.lock().unwrap().push(serial);
            }
        }));
    }
    let until = Instant::now() + Duration::from_secs(60);
    while during.lock().unwrap().len() < 5 {
        assert!(Instant::now() < until, "the load issues nothing");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let backup_dir = dir.join("backup");
    let (ok, out, err) = tokio::task::block_in_place(|| {
        run(Command::new(appliance_bin()).args([
            "backup",
            "--config",
            demo.config().to_str().unwrap(),
            "--out",
            backup_dir.to_str().unwrap(),
        ]))
    });
    assert!(ok, "backup failed:\n{out}\n{err}");
    let issued_while_backing_up = during.lock().unwrap().len();
    // Keep the load on a little after the snapshot, so the original moves past it.
    while during.lock().unwrap().len() < issued_while_backing_up + 3 {
        assert!(Instant::now() < until, "the load stopped");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }

    // The manifest: digests of everything, and no key material or secret at all.
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(backup_dir.join("manifest.json")).unwrap()).unwrap();
    let files: Vec<&str> = manifest["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    for expected in [
        "appliance.toml",
        "data/appliance.db",
        "profiles/personal.toml",
        "ca/root.pem",
        "tls/server.pem",
        "tls/client-ca.pem",
    ] {
        assert!(files.contains(&expected), "{expected} missing: {files:?}");
    }
    assert!(
        files.iter().all(|f| !f.starts_with("tokens/")
            && !f.starts_with("secrets/")
            && !f.ends_with(".key")
            && !f.ends_with(".pin")),
        "key material or secrets in the backup: {files:?}"
    );
    let pin = std::fs::read_to_string(dir.join("secrets/hsm-user.pin")).unwrap();
    for f in &files {
        let bytes = std::fs::read(backup_dir.join(f)).unwrap();
        assert!(
            !bytes
                .windows(pin.trim().len())
                .any(|w| w == pin.trim().as_bytes()),
            "the PIN is in {f}"
        );
    }
    let snapshot_crl_number = manifest["crl_number"].as_u64().unwrap();

    // The original's answers, then it stops (the restored one takes its addresses).
    let mut original_ocsp = BTreeMap::new();
    for (serial, pem) in &before {
        original_ocsp.insert(serial.clone(), ocsp_status(&dir, demo.public, pem));
    }
    assert_eq!(original_ocsp[&before[0].0], "revoked");
    assert_eq!(original_ocsp[&before[2].0], "good");
    let until = Instant::now() + Duration::from_secs(30);
    let original_revoked = loop {
        let (_, revoked) = published(demo.public, &dir).await;
        if revoked.contains(&upper(&before[0].0)) && revoked.contains(&upper(&before[1].0)) {
            break revoked;
        }
        assert!(
            Instant::now() < until,
            "the original never published its revocations"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    server.stop_with("TERM", Duration::from_secs(15));

    // A damaged backup is refused before anything is written.
    let damaged = dir.join("damaged");
    copy_tree(&backup_dir, &damaged);
    let mut profile = std::fs::read_to_string(damaged.join("profiles/personal.toml")).unwrap();
    profile.push_str("\n# edited\n");
    std::fs::write(damaged.join("profiles/personal.toml"), profile).unwrap();
    let refused_dir = dir.join("refused");
    let (ok, out, err) = run(Command::new(appliance_bin()).args([
        "restore",
        "--from",
        damaged.to_str().unwrap(),
        "--dir",
        refused_dir.to_str().unwrap(),
    ]));
    assert!(!ok, "{out}");
    assert!(
        err.contains("profiles/personal.toml does not match its digest"),
        "{err}"
    );
    assert!(
        !refused_dir.exists(),
        "restore wrote into the target anyway"
    );

    let restored = tempfile::tempdir().unwrap();
    let target = restored.path().join("appliance");
    let (ok, out, err) = run(Command::new(appliance_bin()).args([
        "restore",
        "--from",
        backup_dir.to_str().unwrap(),
        "--dir",
        target.to_str().unwrap(),
    ]));
    assert!(ok, "restore failed:\n{out}\n{err}");
    assert!(out.contains("(chain verified)"), "{out}");

    // Certificates: the restored set is a prefix of what the original issued, byte for byte,
    // holding everything issued before the backup started.
    let original_db = dir.join("data/appliance.db");
    let restored_db = target.join("data/appliance.db");
    let certs = |db: &Path| -> BTreeMap<String, String> {
        sql(db, "SELECT serial, der FROM certificates")
            .into_iter()
            .map(|r| (r[0].clone(), r[1].clone()))
            .collect()
    };
    let (orig_certs, rest_certs) = (certs(&original_db), certs(&restored_db));
    assert_eq!(
        rest_certs.len() as u64,
        manifest["certificates"].as_u64().unwrap()
    );
    for (serial, der) in &rest_certs {
        assert_eq!(orig_certs.get(serial), Some(der), "{serial} differs");
    }
    for (serial, _) in &before {
        assert!(rest_certs.contains_key(serial), "{serial} lost");
    }
    assert!(
        rest_certs.len() < orig_certs.len(),
        "the load went on after the snapshot"
    );
    // The audit chain: the restored rows are the original's first rows, hashes included.
    let audit = |db: &Path| sql(db, "SELECT seq, hash FROM audit_log ORDER BY seq");
    let (orig_audit, rest_audit) = (audit(&original_db), audit(&restored_db));
    assert_eq!(
        rest_audit.len() as u64,
        manifest["audit_rows"].as_u64().unwrap()
    );
    assert_eq!(rest_audit[..], orig_audit[..rest_audit.len()]);

    // The restored appliance: same OCSP answers, same revocations on the CRL, and the next
    // CRL number above every number the snapshot had allocated.
    let _restored_server = Server::start(&target.join("appliance.toml"));
    for (serial, pem) in &before {
        assert_eq!(
            &ocsp_status(&dir, demo.public, pem),
            &original_ocsp[serial],
            "OCSP for {serial}"
        );
    }
    let (_, restored_revoked) = published(demo.public, &dir).await;
    assert_eq!(restored_revoked, original_revoked);
    assert!(restored_revoked.contains(&upper(&before[0].0)));
    // The client identities are the original demo's (the TLS client CA was backed up).
    let (status, resp) = api_request(
        demo.api,
        demo.client_tls("operator"),
        "POST",
        &format!("/api/v1/certificates/{}/revoke", before[2].0),
        Some(br#"{"reason": "superseded"}"#.to_vec()),
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&resp));
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let (number, revoked) = published(demo.public, &dir).await;
        if revoked.contains(&upper(&before[2].0)) {
            assert!(
                number > snapshot_crl_number,
                "CRL number {number} does not continue after {snapshot_crl_number}"
            );
            break;
        }
        assert!(
            Instant::now() < until,
            "the restored appliance published no new CRL"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(ocsp_status(&dir, demo.public, &before[2].1), "revoked");
    drop(restored);
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), dest).unwrap();
        }
    }
}
