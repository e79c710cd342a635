//! SM2 beside P-256 in one run on the same soft token (`init --demo --sm2`, ca-softtoken):
//! raw signatures per second through the `hsm` crate, certificates issued per second through
//! the mTLS API (`sm2-personal` vs `personal`), and OCSP answers per second for a certificate
//! of each hierarchy (SHA-1 CertIDs: pre-signed responses; nonce requests: signed live).
//!
//! `cargo run --release -p benches --bin bench-sm2 [-- --seconds N --rounds R]`
//! It prints the median of the rounds.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use benches::median;
use ca_appliance::config::ApplianceConfig;
use hsm::{Hsm, KeyKind, KeyUri, SignatureAlgorithm};
use system_tests::{
    issue_body, json, openssl_csr, public_request, tls_client, ApiConnection, DemoDir, Identity,
};

/// Signatures per second with 2 threads signing 400-byte TBS stand-ins with `key` for `run`.
fn raw_sign_rate(
    hsm: &Hsm,
    key: &KeyUri,
    alg: SignatureAlgorithm,
    run: Duration,
) -> Result<f64, String> {
    benches::raw_sign_count(hsm, key, alg, 2, run).map(|(rate, _)| rate)
}

/// Certificates per second issued over 4 keep-alive mTLS connections for `run`.
async fn issuance_rate(demo: &DemoDir, body: &[u8], run: Duration) -> Result<f64, String> {
    let tls = demo.path().join("tls");
    let client = tls_client(
        &tls.join("ca.pem"),
        Identity::Files(&tls.join("operator.pem"), &tls.join("operator.key")),
    );
    let mut tasks = Vec::new();
    let start = Instant::now();
    for _ in 0..4 {
        let conn = ApiConnection::connect(demo.api, client.clone())
            .await
            .map_err(|e| e.0)?;
        let body = body.to_vec();
        tasks.push(tokio::spawn(benches::issue_until(conn, body, start, run)));
    }
    let mut total = 0;
    for task in tasks {
        total += task.await.map_err(|e| e.to_string())??;
    }
    Ok(total as f64 / start.elapsed().as_secs_f64())
}

/// OCSP answers per second for `request` POSTed by 4 clients for `run`.
async fn ocsp_rate(demo: &DemoDir, request: &[u8], run: Duration) -> Result<f64, String> {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (addr, request) = (demo.public, request.to_vec());
        tasks.push(tokio::spawn(async move {
            let mut answered = 0u64;
            while start.elapsed() < run {
                let (status, _, body) = public_request(
                    addr,
                    "POST",
                    "/ocsp",
                    &[("content-type", "application/ocsp-request")],
                    request.clone(),
                )
                .await;
                // A successful OCSPResponse is SEQUENCE { 0a 01 00 (successful), ... }; its
                // length takes 1 octet, or 1 + n in the long form (0x8n).
                let at = 2 + usize::from(body.get(1).map_or(0, |l| {
                    if l & 0x80 != 0 {
                        l & 0x7f
                    } else {
                        0
                    }
                }));
                if status != 200 || body.get(at..at + 3) != Some(&[0x0a, 0x01, 0x00][..]) {
                    return Err(format!("OCSP answered {status} / {:02x?}", body.get(..8)));
                }
                answered += 1;
            }
            Ok::<u64, String>(answered)
        }));
    }
    let mut total = 0;
    for task in tasks {
        total += task.await.map_err(|e| e.to_string())??;
    }
    Ok(total as f64 / start.elapsed().as_secs_f64())
}

fn openssl(dir: &Path, args: &[&str]) -> Result<(), String> {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

/// Issue one certificate with `body` and write the OCSP requests for it (SHA-1 CertID, with
/// and without nonce).
async fn ocsp_requests(
    demo: &DemoDir,
    body: &[u8],
    issuer: &str,
    stem: &str,
) -> Result<(Vec<u8>, Vec<u8>), String> {
    let tls = demo.path().join("tls");
    let client = tls_client(
        &tls.join("ca.pem"),
        Identity::Files(&tls.join("operator.pem"), &tls.join("operator.key")),
    );
    let mut conn = ApiConnection::connect(demo.api, client)
        .await
        .map_err(|e| e.0)?;
    let (status, resp) = conn
        .request("POST", "/api/v1/certificates", Some(body.to_vec()))
        .await
        .map_err(|e| e.0)?;
    if status != 201 {
        return Err(format!("issuance answered {status}"));
    }
    let cert = format!("{stem}.pem");
    std::fs::write(
        demo.path().join(&cert),
        json(&resp)["certificate"].as_str().unwrap_or_default(),
    )
    .map_err(|e| e.to_string())?;
    let (plain, nonce) = (format!("{stem}-req.der"), format!("{stem}-nonce-req.der"));
    openssl(
        demo.path(),
        &[
            "ocsp",
            "-no_nonce",
            "-issuer",
            issuer,
            "-cert",
            &cert,
            "-reqout",
            &plain,
        ],
    )?;
    openssl(
        demo.path(),
        &[
            "ocsp", "-nonce", "-issuer", issuer, "-cert", &cert, "-reqout", &nonce,
        ],
    )?;
    let read = |f: &str| std::fs::read(demo.path().join(f)).map_err(|e| e.to_string());
    Ok((read(&plain)?, read(&nonce)?))
}

fn sm2_csr(dir: &Path) -> Result<String, String> {
    openssl(
        dir,
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:SM2",
            "-out",
            "sm2.key",
        ],
    )?;
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-key",
            "sm2.key",
            "-sm3",
            "-sigopt",
            "distid:1234567812345678",
            "-subj",
            "/CN=x",
            "-out",
            "sm2.csr",
        ],
    )?;
    std::fs::read_to_string(dir.join("sm2.csr")).map_err(|e| e.to_string())
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let opts = benches::options(3.0)?;
    let run = Duration::from_secs_f64(opts.seconds);
    system_tests::use_release_build();
    let demo = DemoDir::create_with(&["--sm2"]);
    let _server = demo.serve();
    let p256_body = issue_body(
        "personal",
        &openssl_csr(demo.path(), "p256", "ec:P-256"),
        serde_json::json!({"name": "Bench"}),
    );
    let sm2_body = issue_body(
        "sm2-personal",
        &sm2_csr(demo.path())?,
        serde_json::json!({"name": "Bench"}),
    );

    let config = ApplianceConfig::load(&demo.config()).map_err(|e| e.to_string())?;
    if let Some(conf) = &config.hsm.softhsm2_conf {
        std::env::set_var("CA_SOFTTOKEN_CONF", conf);
    }
    let hsm = Hsm::open_blocking(&config.hsm_config()).map_err(|e| e.to_string())?;
    let p256 = hsm
        .generate_key_pair_blocking("bench-p256", KeyKind::EcP256)
        .map_err(|e| e.to_string())?;
    let sm2 = hsm
        .generate_key_pair_blocking("bench-sm2", KeyKind::Sm2)
        .map_err(|e| e.to_string())?;
    let (p256_ocsp, p256_nonce) =
        ocsp_requests(&demo, &p256_body, "ca/personal.pem", "p256-ee").await?;
    let (sm2_ocsp, sm2_nonce) =
        ocsp_requests(&demo, &sm2_body, "ca/sm2-personal.pem", "sm2-ee").await?;

    let names = [
        "raw C_Sign P-256 (2 threads)      signatures/s",
        "raw C_Sign SM2, host e (2 threads) signatures/s",
        "issuance P-256 (c4)               certificates/s",
        "issuance SM2 (c4)                 certificates/s",
        "OCSP P-256, pre-signed (c4)       answers/s",
        "OCSP SM2, pre-signed (c4)         answers/s",
        "OCSP P-256, nonce: live (c4)      answers/s",
        "OCSP SM2, nonce: live (c4)        answers/s",
    ];
    let mut results: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    for round in 1..=opts.rounds {
        let row = [
            raw_sign_rate(&hsm, &p256, SignatureAlgorithm::EcdsaSha256, run)?,
            raw_sign_rate(&hsm, &sm2, SignatureAlgorithm::Sm2Sm3, run)?,
            issuance_rate(&demo, &p256_body, run).await?,
            issuance_rate(&demo, &sm2_body, run).await?,
            ocsp_rate(&demo, &p256_ocsp, run).await?,
            ocsp_rate(&demo, &sm2_ocsp, run).await?,
            ocsp_rate(&demo, &p256_nonce, run).await?,
            ocsp_rate(&demo, &sm2_nonce, run).await?,
        ];
        eprintln!("round {round}: {:?}", row.map(|r| r.round()));
        for (all, r) in results.iter_mut().zip(row) {
            all.push(r);
        }
    }
    println!(
        "bench-sm2: median of {} rounds of {:.1} s on ca-softtoken, {} cores",
        opts.rounds,
        opts.seconds,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    for (name, all) in names.iter().zip(results) {
        println!("{name}  {:>8.0}", median(all));
    }
    Ok(())
}
