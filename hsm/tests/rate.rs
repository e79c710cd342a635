//! Signing throughput through the public API (not a timed test: run by hand, prints rates).
//! cargo test -p hsm --release --test rate -- --ignored --nocapture
#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use std::time::{Duration, Instant};

use hsm::{Hsm, KeyKind, KeyUri, SignatureAlgorithm};

fn rate(hsm: &Hsm, key: &KeyUri, alg: SignatureAlgorithm, threads: usize) -> f64 {
    let run = Duration::from_secs(3);
    let start = Instant::now();
    let total: usize = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                scope.spawn(move || {
                    let mut n = 0usize;
                    while start.elapsed() < run {
                        let data = format!("thread {t} message {n}");
                        hsm.sign_blocking(key, alg, data.as_bytes()).unwrap();
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).sum()
    });
    total as f64 / start.elapsed().as_secs_f64()
}

#[test]
#[ignore = "measurement, run by hand with --ignored --nocapture"]
fn signing_rates() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let hsm = rt.block_on(common::open("rate"));
    for (kind, alg) in [
        (KeyKind::EcP256, SignatureAlgorithm::EcdsaSha256),
        (KeyKind::EcP384, SignatureAlgorithm::EcdsaSha384),
        (KeyKind::Rsa2048, SignatureAlgorithm::RsaPkcs1Sha256),
    ] {
        let key = hsm.generate_key_pair_blocking(kind.as_str(), kind).unwrap();
        for threads in [1, 2, 4] {
            let per_second = rate(&hsm, &key, alg, threads);
            println!("{alg} {threads} thread(s), pool 2: {per_second:.0} signatures/s");
        }
    }
}
