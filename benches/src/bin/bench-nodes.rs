//! Issuance and OCSP on the embedded SQLite, on PostgreSQL with one node, and on PostgreSQL
//! with two nodes sharing one database, in one run (issue 15).
//!
//! `target/release/bench-nodes [--seconds N --rounds R]` (needs the PostgreSQL server and the
//! role `ca_test` that `.ci/run` sets up). Each set-up is a demo appliance (`init --demo`, with
//! `--database-url` and `--join` for PostgreSQL). Per round and set-up: issuance at concurrency
//! 32 over keep-alive mTLS connections spread evenly over the nodes (certificates/s, and the
//! servers' CPU per certificate summed over the nodes), then OCSP POST for one certificate with
//! `wrk` keep-alive, 8 connections spread over the nodes (responses/s). Nodes, the database
//! server and the load generators all share this machine's cores: the two-node figures say what
//! a second node costs here, not what a second machine would add.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use benches::{cpu_seconds, median};
use system_tests::postgres::PgDatabase;
use system_tests::{issue_body, openssl_csr, ApiConnection, DemoDir, Server};

/// One way of running the appliance, started.
struct Setup {
    name: &'static str,
    /// Dropped (killed) first, before their directories and database go.
    servers: Vec<Server>,
    nodes: Vec<DemoDir>,
    _database: Option<PgDatabase>,
}

impl Setup {
    /// The embedded default: one node on a SQLite file.
    fn sqlite() -> Setup {
        Setup::start("SQLite, one node", vec![DemoDir::create()], None)
    }

    /// `nodes` nodes on a fresh PostgreSQL database (the first made by `init --database-url`,
    /// the others by `init --join`).
    fn postgres(name: &'static str, nodes: usize) -> Setup {
        let database = PgDatabase::create();
        let mut dirs = vec![DemoDir::create_with(&["--database-url", &database.url()])];
        for _ in 1..nodes {
            let next = dirs[0].join();
            dirs.push(next);
        }
        Setup::start(name, dirs, Some(database))
    }

    fn start(name: &'static str, nodes: Vec<DemoDir>, database: Option<PgDatabase>) -> Setup {
        let servers = nodes.iter().map(DemoDir::serve).collect();
        Setup {
            name,
            servers,
            nodes,
            _database: database,
        }
    }

    /// CPU seconds used so far by all the nodes' servers.
    fn server_cpu(&self) -> Result<f64, String> {
        self.servers
            .iter()
            .map(|s| cpu_seconds(&s.pid().to_string()))
            .sum()
    }
}

/// Certificates issued per second over `concurrency` keep-alive connections spread over the
/// nodes, and how many were issued.
async fn issuance(
    setup: &Setup,
    body: &[u8],
    concurrency: usize,
    run: Duration,
) -> Result<(f64, u64), String> {
    let mut connections = Vec::new();
    for i in 0..concurrency {
        let node = &setup.nodes[i % setup.nodes.len()];
        let connection = ApiConnection::connect(node.api, node.client_tls("operator"))
            .await
            .map_err(|e| e.0)?;
        connections.push(connection);
    }
    let start = Instant::now();
    let tasks: Vec<_> = connections
        .into_iter()
        .map(|c| tokio::spawn(benches::issue_until(c, body.to_vec(), start, run)))
        .collect();
    let mut total = 0;
    for task in tasks {
        total += task.await.map_err(|e| e.to_string())??;
    }
    Ok((total as f64 / start.elapsed().as_secs_f64(), total))
}

/// A wrk script POSTing one OCSP request (every byte as a Lua decimal escape).
fn wrk_script(dir: &Path, request: &[u8]) -> Result<PathBuf, String> {
    let body: String = request.iter().map(|b| format!("\\{b}")).collect();
    let script = format!(
        "wrk.method = \"POST\"\nwrk.headers[\"Content-Type\"] = \"application/ocsp-request\"\n\
         wrk.body = \"{body}\"\n"
    );
    let path = dir.join("bench-nodes-post.lua");
    std::fs::File::create(&path)
        .and_then(|mut f| f.write_all(script.as_bytes()))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path)
}

/// Responses per second of `wrk` with `connections` keep-alive connections against `addr`.
fn wrk(addr: SocketAddr, script: &Path, connections: usize, seconds: u64) -> Result<f64, String> {
    let out = Command::new("wrk")
        .args(["-t1", &format!("-c{connections}"), &format!("-d{seconds}s")])
        .arg("-s")
        .arg(script)
        .arg(format!("http://{addr}/ocsp"))
        .output()
        .map_err(|e| format!("wrk does not run ({e}): apt-get install wrk"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if text.contains("Non-2xx") || text.contains("Socket errors") {
        return Err(format!("wrk saw errors:\n{text}"));
    }
    text.lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| format!("no rate in wrk output:\n{text}"))
}

/// OCSP responses per second with 8 connections spread over the nodes (one wrk per node, all
/// at once).
fn ocsp(setup: &Setup, script: &Path, seconds: u64) -> Result<f64, String> {
    let per_node = (8 / setup.nodes.len()).max(1);
    let loads: Vec<_> = setup
        .nodes
        .iter()
        .map(|n| {
            let (addr, script) = (n.public, script.to_path_buf());
            std::thread::spawn(move || wrk(addr, &script, per_node, seconds))
        })
        .collect();
    loads
        .into_iter()
        .map(|l| l.join().map_err(|_| "wrk thread panicked".to_owned())?)
        .sum()
}

/// The figures of one round of one set-up.
struct Round {
    issued_per_s: f64,
    cpu_per_cert: f64,
    ocsp_per_s: f64,
}

async fn round(setup: &Setup, body: &[u8], script: &Path, run: Duration) -> Result<Round, String> {
    let cpu0 = setup.server_cpu()?;
    let (issued_per_s, n) = issuance(setup, body, 32, run).await?;
    let cpu_per_cert = (setup.server_cpu()? - cpu0) / n.max(1) as f64;
    let ocsp_per_s = ocsp(setup, script, run.as_secs().max(1))?;
    Ok(Round {
        issued_per_s,
        cpu_per_cert,
        ocsp_per_s,
    })
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let opts = benches::options(4.0)?;
    let run = Duration::from_secs_f64(opts.seconds);
    system_tests::use_release_build();
    let setups = [
        Setup::sqlite(),
        Setup::postgres("PostgreSQL, one node", 1),
        Setup::postgres("PostgreSQL, two nodes", 2),
    ];

    // One CSR and one OCSP request about a certificate each set-up issued (the same bytes are
    // valid on every node of a set-up: they share the CA).
    let mut inputs = Vec::new();
    for setup in &setups {
        let first = &setup.nodes[0];
        let csr = openssl_csr(first.path(), "bench", "ec:P-256");
        let body = issue_body("personal", &csr, serde_json::json!({"name": "Bench User"}));
        let issued = first
            .issue(
                "operator",
                "personal",
                &csr,
                serde_json::json!({"name": "Bench User"}),
            )
            .await;
        let pem = issued["certificate"]
            .as_str()
            .ok_or("no certificate issued")?;
        std::fs::write(first.path().join("bench-cert.pem"), pem).map_err(|e| e.to_string())?;
        let request =
            first.openssl_ocsp_request(&["-cert", "bench-cert.pem", "-no_nonce"], "bench.der");
        let script = wrk_script(first.path(), &request)?;
        // Warm up: sessions, TLS, caches, and every node knowing the certificate.
        issuance(setup, &body, 2, Duration::from_millis(500)).await?;
        ocsp(setup, &script, 1)?;
        inputs.push((body, script));
    }

    let mut rounds: Vec<Vec<Round>> = setups.iter().map(|_| Vec::new()).collect();
    for r in 1..=opts.rounds {
        for (i, setup) in setups.iter().enumerate() {
            let (body, script) = &inputs[i];
            let fig = round(setup, body, script, run).await?;
            eprintln!(
                "round {r}, {}: issuance c32 {:.0}/s, server CPU/cert {:.0} us, OCSP POST {:.0}/s",
                setup.name,
                fig.issued_per_s,
                fig.cpu_per_cert * 1e6,
                fig.ocsp_per_s
            );
            rounds[i].push(fig);
        }
    }

    println!(
        "bench-nodes: median of {} rounds of {:.1} s, {} cores (nodes, PostgreSQL and load on the same cores)",
        opts.rounds,
        opts.seconds,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "{:<24} {:>16} {:>18} {:>16}",
        "set-up", "issuance c32/s", "server CPU/cert", "OCSP POST/s"
    );
    let mut base: Option<(f64, f64)> = None;
    for (setup, figs) in setups.iter().zip(rounds) {
        let issued = median(figs.iter().map(|f| f.issued_per_s).collect());
        let cpu = median(figs.iter().map(|f| f.cpu_per_cert).collect());
        let ocsp = median(figs.iter().map(|f| f.ocsp_per_s).collect());
        let (b_issued, b_ocsp) = *base.get_or_insert((issued, ocsp));
        println!(
            "{:<24} {:>8.0} ({:.2}x) {:>12.0} us {:>8.0} ({:.2}x)",
            setup.name,
            issued,
            issued / b_issued,
            cpu * 1e6,
            ocsp,
            ocsp / b_ocsp
        );
    }
    Ok(())
}
