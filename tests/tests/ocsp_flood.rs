//! A flood of requests that need a live signature (nonces, never-issued serials, SHA-256
//! CertIDs) cannot make the HSM sign beyond the live-signing budget, and cannot delay issuance
//! or the re-signing of revocations. A test of its own, so nothing else shares the cores.

#![allow(clippy::unwrap_used)] // tests fail loudly

use std::collections::HashSet;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use system_tests::*;

const TRY_LATER: [u8; 5] = [0x30, 0x03, 0x0a, 0x01, 0x03];
/// The budget configured below.
const LIVE_PER_SECOND: u64 = 40;

/// Sends `bodies` round-robin as OCSP POSTs on one keep-alive connection, paced at `per_second`,
/// until `stop`; returns every answer body.
async fn flood(
    addr: SocketAddr,
    bodies: Arc<Vec<Vec<u8>>>,
    per_second: u64,
    stop: Arc<AtomicBool>,
) -> Vec<Vec<u8>> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / per_second));
    let mut answers = Vec::new();
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let req = hyper::Request::builder()
            .method("POST")
            .uri("/ocsp")
            .header("host", addr.to_string())
            .header("content-type", "application/ocsp-request")
            .body(Full::new(Bytes::from(bodies[i % bodies.len()].clone())))
            .unwrap();
        i += 1;
        sender.ready().await.unwrap();
        let resp = sender.send_request(req).await.unwrap();
        answers.push(
            resp.into_body()
                .collect()
                .await
                .unwrap()
                .to_bytes()
                .to_vec(),
        );
    }
    answers
}

/// Issues certificates on `clients` connections for `secs`; returns how many.
async fn issuance_count(demo: &DemoDir, csr: &str, clients: usize, secs: u64) -> usize {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let config = demo.client_tls("operator");
            let api = demo.api;
            let body = issue_body("personal", csr, serde_json::json!({"name": "Flood Test"}));
            tokio::spawn(async move {
                let mut conn = ApiConnection::connect(api, config).await.unwrap();
                let mut n = 0;
                while Instant::now() < deadline {
                    let (status, _) = conn
                        .request("POST", "/api/v1/certificates", Some(body.clone()))
                        .await
                        .unwrap();
                    assert_eq!(status, 201);
                    n += 1;
                }
                n
            })
        })
        .collect();
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_live_signing_flood_stays_within_budget_and_never_delays_revocation() {
    let demo = DemoDir::create();
    append_config(
        &demo,
        &format!(
            "\n[status]\nocsp_nonce = true\nocsp_live_concurrency = 1\nocsp_live_per_second = {LIVE_PER_SECOND}\n"
        ),
    );
    let _server = demo.serve();
    let csr = openssl_csr(demo.path(), "ee", "ec:P-256");

    // A known certificate with a pre-signed answer, for nonce requests.
    let resp = demo.issue_personal("operator", &csr).await;
    std::fs::write(
        demo.path().join("known.pem"),
        resp["certificate"].as_str().unwrap(),
    )
    .unwrap();
    let mut bodies = vec![demo.openssl_ocsp_request(&["-cert", "known.pem"], "nonce.der")];
    for i in 0..16 {
        let serial = format!("0x{:x}", 0x5eed_0000u64 + i);
        bodies.push(
            demo.openssl_ocsp_request(&["-serial", &serial, "-no_nonce"], &format!("u{i}.der")),
        );
        bodies.push(demo.openssl_ocsp_request(
            &["-sha256", "-serial", &serial, "-no_nonce"],
            &format!("s{i}.der"),
        ));
    }
    let bodies = Arc::new(bodies);

    let unloaded = issuance_count(&demo, &csr, 4, 3).await;

    // The flood: 4 connections at 500 requests/s each, 50x the live budget.
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let flooders: Vec<_> = (0..4)
        .map(|_| tokio::spawn(flood(demo.public, bodies.clone(), 500, stop.clone())))
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let loaded = issuance_count(&demo, &csr, 4, 3).await;

    // Revocations during the flood are re-signed at once: the next query says revoked.
    let config = demo.client_tls("operator");
    for i in 0..10 {
        let resp = demo.issue_personal("operator", &csr).await;
        let serial = resp["serial"].as_str().unwrap().to_owned();
        let (status, _) = api_request(
            demo.api,
            config.clone(),
            "POST",
            &format!("/api/v1/certificates/{serial}/revoke"),
            Some(br#"{"reason":"superseded"}"#.to_vec()),
        )
        .await
        .unwrap();
        assert_eq!(status, 200);
        let url = format!("http://{}/ocsp", demo.public);
        let (_, out, err) = run(Command::new("openssl")
            .current_dir(demo.path())
            .args(["ocsp", "-url", &url, "-CAfile", "ca/root.pem", "-no_nonce"])
            .args([
                "-issuer",
                "ca/personal.pem",
                "-serial",
                &format!("0x{serial}"),
            ]));
        assert!(
            out.contains(": revoked") && out.contains("superseded"),
            "revocation {i} during the flood: {out}{err}"
        );
    }

    stop.store(true, Ordering::Relaxed);
    let mut answers = Vec::new();
    for f in flooders {
        answers.extend(f.await.unwrap());
    }
    let elapsed = started.elapsed().as_secs_f64();
    let try_later = answers.iter().filter(|a| a.as_slice() == TRY_LATER).count();
    // Every live signature is a distinct body (fresh time, randomised ECDSA); pre-signed
    // answers repeat. So distinct successful bodies bound the live signatures from above.
    let distinct: HashSet<&Vec<u8>> = answers
        .iter()
        .filter(|a| a.as_slice() != TRY_LATER)
        .collect();
    let budget = (LIVE_PER_SECOND as f64 * (elapsed + 1.0)).ceil() as usize + 5;
    println!(
        "flood: {} requests in {elapsed:.1} s, {try_later} tryLater, {} distinct signed answers \
         (budget {budget}); issuance {unloaded} unloaded vs {loaded} under the flood ({:.2}x)",
        answers.len(),
        distinct.len(),
        loaded as f64 / unloaded as f64
    );
    assert!(answers.len() > 2000, "the flood ran: {}", answers.len());
    assert!(
        try_later > answers.len() / 2,
        "most of the flood is over budget"
    );
    assert!(
        distinct.len() <= budget,
        "live signatures beyond the budget: {} > {budget}",
        distinct.len()
    );
    assert!(
        loaded * 2 >= unloaded,
        "issuance collapsed under the flood: {loaded} vs {unloaded} unloaded"
    );
}
