//! Certificates issued per second through the mTLS API, beside the raw SoftHSM2 P-256 signature
//! rate measured in the same run on the same token.
//!
//! `cargo run --release -p benches --bin bench-issuance [-- --seconds N --rounds R]`
//!
//! It builds the release `ca-appliance`, creates a demo appliance (SoftHSM2 token, SQLite, EC P-256
//! issuing CA), starts `serve`, then for R rounds measures: raw `C_Sign` rate with 1 and 2
//! threads (the token's pool has 2 sessions, the machine reference has 2 cores), and issuance
//! over keep-alive mTLS connections at concurrency 1 and 4 (and 32, to show group commit). It prints the median of the rounds.
//!
//! Beside the rates: the server's CPU time per issued certificate (from `/proc/PID/stat` around
//! the concurrency-32 run) against the cost of its unavoidable cryptography measured in the same
//! run on the same token (CSR self-signature verification as the server does it, plus two
//! P-256 signatures: the certificate and its pre-signed OCSP response), and the time of one
//! `fdatasync` of the database's directory (what concurrency 1 waits for per certificate).

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use benches::{cpu_seconds, median};
use ca_appliance::config::ApplianceConfig;
use hsm::{Hsm, KeyKind, KeyUri, SignatureAlgorithm};
use system_tests::{issue_body, openssl_csr, tls_client, ApiConnection, DemoDir, Identity};

/// Signatures per second with `threads` threads signing with one P-256 key for `run`.
fn raw_sign_rate(hsm: &Hsm, key: &KeyUri, threads: u64, run: Duration) -> Result<f64, String> {
    raw_sign_count(hsm, key, threads, run).map(|(rate, _)| rate)
}

/// Like [`raw_sign_rate`], also returning how many signatures were made.
fn raw_sign_count(
    hsm: &Hsm,
    key: &KeyUri,
    threads: u64,
    run: Duration,
) -> Result<(f64, u64), String> {
    benches::raw_sign_count(hsm, key, SignatureAlgorithm::EcdsaSha256, threads, run)
}

/// CPU seconds of one CSR self-signature verification, as the server does it (PEM to verified key).
fn csr_verify_cpu(csr: &str, run: Duration) -> Result<f64, String> {
    let (cpu0, start) = (cpu_seconds("self")?, Instant::now());
    let mut n = 0u64;
    while start.elapsed() < run {
        for _ in 0..100 {
            ca_appliance::ca::csr::verify_pem(csr).map_err(|e| e.to_string())?;
        }
        n += 100;
    }
    Ok((cpu_seconds("self")? - cpu0) / n as f64)
}

/// Median seconds of a 4 KiB append plus `fdatasync` in `dir` (the database's directory).
fn fsync_seconds(dir: &Path) -> Result<f64, String> {
    let path = dir.join("bench-fsync.tmp");
    let mut f = std::fs::File::create(&path).map_err(|e| e.to_string())?;
    let mut times = Vec::new();
    for _ in 0..100 {
        let t = Instant::now();
        f.write_all(&[0u8; 4096]).map_err(|e| e.to_string())?;
        f.sync_data().map_err(|e| e.to_string())?;
        times.push(t.elapsed().as_secs_f64());
    }
    let _ = std::fs::remove_file(&path);
    Ok(median(times))
}

/// Certificates per second issued over `concurrency` keep-alive mTLS connections for `run`.
async fn issuance_rate(
    demo: &DemoDir,
    body: &[u8],
    concurrency: usize,
    run: Duration,
) -> Result<f64, String> {
    issuance_count(demo, body, concurrency, run)
        .await
        .map(|(rate, _)| rate)
}

/// Like [`issuance_rate`], also returning how many certificates were issued.
async fn issuance_count(
    demo: &DemoDir,
    body: &[u8],
    concurrency: usize,
    run: Duration,
) -> Result<(f64, u64), String> {
    let tls = demo.path().join("tls");
    let client = tls_client(
        &tls.join("ca.pem"),
        Identity::Files(&tls.join("operator.pem"), &tls.join("operator.key")),
    );
    let mut connections = Vec::new();
    for _ in 0..concurrency {
        connections.push(
            ApiConnection::connect(demo.api, client.clone())
                .await
                .map_err(|e| e.0)?,
        );
    }
    let start = Instant::now();
    let tasks: Vec<_> = connections
        .into_iter()
        .map(|conn| {
            let body = body.to_vec();
            tokio::spawn(benches::issue_until(conn, body, start, run))
        })
        .collect();
    let mut total = 0;
    for task in tasks {
        total += task.await.map_err(|e| e.to_string())??;
    }
    Ok((total as f64 / start.elapsed().as_secs_f64(), total))
}

fn open_token(config_path: &Path) -> Result<Hsm, String> {
    let config = ApplianceConfig::load(config_path).map_err(|e| e.to_string())?;
    if let Some(conf) = &config.hsm.softhsm2_conf {
        std::env::set_var("SOFTHSM2_CONF", conf);
    }
    Hsm::open_blocking(&config.hsm_config()).map_err(|e| e.to_string())
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let opts = benches::options(4.0)?;
    let run = Duration::from_secs_f64(opts.seconds);
    system_tests::use_release_build();
    let demo = DemoDir::create();
    let _server = demo.serve();
    let csr = openssl_csr(demo.path(), "bench", "ec:P-256");
    let body = issue_body("personal", &csr, serde_json::json!({"name": "Bench User"}));

    let hsm = open_token(&demo.config())?;
    let key = hsm
        .generate_key_pair_blocking("bench-raw-p256", KeyKind::EcP256)
        .map_err(|e| e.to_string())?;

    // Warm up both paths (session pools, TLS, SQLite pages) before measuring.
    raw_sign_rate(&hsm, &key, 1, Duration::from_millis(300))?;
    issuance_rate(&demo, &body, 1, Duration::from_millis(300)).await?;

    let server_pid = _server.pid().to_string();
    let (mut raw1, mut raw2, mut iss1, mut iss4, mut iss32) =
        (vec![], vec![], vec![], vec![], vec![]);
    let (mut sign_cpu, mut verify_cpu, mut cpu_per_cert, mut cpu_per_cert1, mut fsync) =
        (vec![], vec![], vec![], vec![], vec![]);
    let data_dir = demo.path().join("data");
    for round in 1..=opts.rounds {
        let cpu0 = cpu_seconds("self")?;
        let (rate, n) = raw_sign_count(&hsm, &key, 1, run)?;
        sign_cpu.push((cpu_seconds("self")? - cpu0) / n.max(1) as f64);
        raw1.push(rate);
        raw2.push(raw_sign_rate(&hsm, &key, 2, run)?);
        verify_cpu.push(csr_verify_cpu(&csr, Duration::from_secs(1))?);
        fsync.push(fsync_seconds(&data_dir)?);
        let cpu0 = cpu_seconds(&server_pid)?;
        let (rate, n) = issuance_count(&demo, &body, 1, run).await?;
        cpu_per_cert1.push((cpu_seconds(&server_pid)? - cpu0) / n.max(1) as f64);
        iss1.push(rate);
        iss4.push(issuance_rate(&demo, &body, 4, run).await?);
        let cpu0 = cpu_seconds(&server_pid)?;
        let (rate, n) = issuance_count(&demo, &body, 32, run).await?;
        cpu_per_cert.push((cpu_seconds(&server_pid)? - cpu0) / n.max(1) as f64);
        iss32.push(rate);
        eprintln!(
            "round {round}: raw 1t {:.0}/s, raw 2t {:.0}/s, issuance c1 {:.0}/s, c4 {:.0}/s, c32 {:.0}/s; \
             server CPU/cert c32 {:.0} us, c1 {:.0} us; sign {:.0} us, CSR verify {:.0} us, fsync {:.2} ms",
            raw1[round - 1],
            raw2[round - 1],
            iss1[round - 1],
            iss4[round - 1],
            iss32[round - 1],
            cpu_per_cert[round - 1] * 1e6,
            cpu_per_cert1[round - 1] * 1e6,
            sign_cpu[round - 1] * 1e6,
            verify_cpu[round - 1] * 1e6,
            fsync[round - 1] * 1e3
        );
    }
    let (raw1, raw2) = (median(raw1), median(raw2));
    let (iss1, iss4, iss32) = (median(iss1), median(iss4), median(iss32));
    let raw = raw1.max(raw2);
    println!(
        "bench-issuance: median of {} rounds of {:.1} s, {} cores",
        opts.rounds,
        opts.seconds,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("raw SoftHSM2 P-256 C_Sign, 1 thread    {raw1:>8.0} signatures/s");
    println!("raw SoftHSM2 P-256 C_Sign, 2 threads   {raw2:>8.0} signatures/s");
    println!(
        "issuance over mTLS API, concurrency 1  {iss1:>8.0} certificates/s  ({:.2} x raw)",
        iss1 / raw
    );
    println!(
        "issuance over mTLS API, concurrency 4  {iss4:>8.0} certificates/s  ({:.2} x raw)",
        iss4 / raw
    );
    println!(
        "issuance over mTLS API, concurrency 32 {iss32:>8.0} certificates/s  ({:.2} x raw; group commit amortises fsync)",
        iss32 / raw
    );
    let (sign_cpu, verify_cpu, fsync) = (median(sign_cpu), median(verify_cpu), median(fsync));
    let (cpu_per_cert, cpu_per_cert1) = (median(cpu_per_cert), median(cpu_per_cert1));
    let crypto = verify_cpu + 2.0 * sign_cpu;
    println!(
        "unavoidable cryptography per certificate {:>6.0} us CPU  (CSR verify {:.0} us + 2 x P-256 sign {:.0} us: certificate, OCSP pre-signature)",
        crypto * 1e6,
        verify_cpu * 1e6,
        sign_cpu * 1e6
    );
    println!(
        "server CPU per certificate, c32         {:>6.0} us  ({:.2} x its cryptography; goal <= 1.5)",
        cpu_per_cert * 1e6,
        cpu_per_cert / crypto
    );
    println!(
        "server CPU per certificate, c1          {:>6.0} us  ({:.2} x its cryptography)",
        cpu_per_cert1 * 1e6,
        cpu_per_cert1 / crypto
    );
    println!(
        "fdatasync of 4 KiB in the data dir       {:>6.2} ms  (c1 bound: 1/fsync = {:.0}/s; c1 reached {:.2} of it)",
        fsync * 1e3,
        1.0 / fsync,
        iss1 * fsync
    );
    println!(
        "goals (issue 17): c32 / raw 2-thread sign {:.2} (>= 0.35); CPU/cert {:.2} x crypto (<= 1.5)",
        iss32 / raw2,
        cpu_per_cert / crypto
    );
    Ok(())
}
