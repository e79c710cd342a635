//! Certificates issued per second through the mTLS API, beside the raw SoftHSM2 P-256 signature
//! rate measured in the same run on the same token.
//!
//! `cargo run --release -p benches --bin bench-issuance [-- --seconds N --rounds R]`
//!
//! It builds the release `ca-appliance`, creates a demo appliance (SoftHSM2 token, SQLite, EC P-256
//! issuing CA), starts `serve`, then for R rounds measures: raw `C_Sign` rate with 1 and 2
//! threads (the token's pool has 2 sessions, the machine reference has 2 cores), and issuance
//! over keep-alive mTLS connections at concurrency 1 and 4 (and 32, to show group commit). It prints the median of the rounds.

use std::path::Path;
use std::time::{Duration, Instant};

use ca_appliance::config::ApplianceConfig;
use hsm::{Hsm, KeyKind, KeyUri, SignatureAlgorithm};
use system_tests::{issue_body, openssl_csr, tls_client, ApiConnection, DemoDir, Identity};

struct Options {
    seconds: f64,
    rounds: usize,
}

fn options() -> Result<Options, String> {
    let mut opts = Options {
        seconds: 4.0,
        rounds: 3,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next().ok_or(format!("{arg} needs a value"))?;
        match arg.as_str() {
            "--seconds" => opts.seconds = value.parse().map_err(|e| format!("--seconds: {e}"))?,
            "--rounds" => opts.rounds = value.parse().map_err(|e| format!("--rounds: {e}"))?,
            other => return Err(format!("unknown option {other}")),
        }
    }
    if opts.rounds == 0 || opts.seconds <= 0.0 {
        return Err("--rounds and --seconds must be positive".into());
    }
    Ok(opts)
}

/// Signatures per second with `threads` threads signing with one P-256 key for `run`.
fn raw_sign_rate(hsm: &Hsm, key: &KeyUri, threads: usize, run: Duration) -> Result<f64, String> {
    let start = Instant::now();
    let total = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                scope.spawn(move || -> Result<u64, String> {
                    let mut n = 0u64;
                    while start.elapsed() < run {
                        // What issuance signs is a ~400-byte TBS; sign a message of that size.
                        let mut tbs = vec![0u8; 400];
                        tbs[..16].copy_from_slice(&(n as u128 ^ (t as u128) << 64).to_be_bytes());
                        hsm.sign_blocking(key, SignatureAlgorithm::EcdsaSha256, &tbs)
                            .map_err(|e| e.to_string())?;
                        n += 1;
                    }
                    Ok(n)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| {
                w.join()
                    .map_err(|_| "signing thread panicked".to_string())?
            })
            .sum::<Result<u64, String>>()
    })?;
    Ok(total as f64 / start.elapsed().as_secs_f64())
}

/// Certificates per second issued over `concurrency` keep-alive mTLS connections for `run`.
async fn issuance_rate(
    demo: &DemoDir,
    body: &[u8],
    concurrency: usize,
    run: Duration,
) -> Result<f64, String> {
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
        .map(|mut conn| {
            let body = body.to_vec();
            tokio::spawn(async move {
                let mut issued = 0u64;
                while start.elapsed() < run {
                    let (status, resp) = conn
                        .request("POST", "/api/v1/certificates", Some(body.clone()))
                        .await
                        .map_err(|e| e.0)?;
                    if status != 201 {
                        return Err(format!(
                            "issuance answered {status}: {}",
                            String::from_utf8_lossy(&resp)
                        ));
                    }
                    issued += 1;
                }
                Ok::<u64, String>(issued)
            })
        })
        .collect();
    let mut total = 0;
    for task in tasks {
        total += task.await.map_err(|e| e.to_string())??;
    }
    Ok(total as f64 / start.elapsed().as_secs_f64())
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
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
    let opts = options()?;
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

    let (mut raw1, mut raw2, mut iss1, mut iss4, mut iss32) =
        (vec![], vec![], vec![], vec![], vec![]);
    for round in 1..=opts.rounds {
        raw1.push(raw_sign_rate(&hsm, &key, 1, run)?);
        raw2.push(raw_sign_rate(&hsm, &key, 2, run)?);
        iss1.push(issuance_rate(&demo, &body, 1, run).await?);
        iss4.push(issuance_rate(&demo, &body, 4, run).await?);
        iss32.push(issuance_rate(&demo, &body, 32, run).await?);
        eprintln!(
            "round {round}: raw 1t {:.0}/s, raw 2t {:.0}/s, issuance c1 {:.0}/s, c4 {:.0}/s, c32 {:.0}/s",
            raw1[round - 1],
            raw2[round - 1],
            iss1[round - 1],
            iss4[round - 1],
            iss32[round - 1]
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
    println!(
        "goal: issuance >= 0.5 x raw signature rate: {}",
        if iss4 / raw >= 0.5 { "met" } else { "NOT met" }
    );
    Ok(())
}
