//! Graceful shutdown of the real binary: SIGTERM during an issuance load answers every request
//! the server accepted, stores every 201, exits 0 and leaves no plugin worker; stopping
//! `quickstart.sh` by its PID (SIGTERM) or with Ctrl-C (SIGINT) leaves no process behind and the
//! next run binds the same ports.
#![allow(clippy::unwrap_used)] // tests may unwrap: a failure is the test failing

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use system_tests::*;
use tokio::sync::Mutex;

fn channel(demo: &DemoDir) -> Arc<rustls::ClientConfig> {
    let tls = demo.path().join("tls");
    tls_client(
        &tls.join("ca.pem"),
        Identity::Files(&tls.join("operator.pem"), &tls.join("operator.key")),
    )
}

fn operator(demo: &DemoDir) -> Arc<rustls::ClientConfig> {
    let tls = demo.path().join("tls");
    tls_client(
        &tls.join("ca.pem"),
        Identity::Files(&tls.join("operator.pem"), &tls.join("operator.key")),
    )
}

fn stored_serials(demo: &DemoDir) -> Vec<String> {
    let db = demo.path().join("data/appliance.db");
    let (ok, out, err) = run(Command::new("python3").args([
        "-c",
        "import sqlite3,sys\nfor (s,) in sqlite3.connect(sys.argv[1]).execute('select serial from certificates'): print(s)",
        db.to_str().unwrap(),
    ]));
    assert!(ok, "{err}");
    out.lines().map(str::to_owned).collect()
}

/// Polls `cond` every 50 ms until it holds; panics with `what` after `deadline`.
fn await_condition(what: &str, deadline: Duration, mut cond: impl FnMut() -> bool) {
    let until = Instant::now() + deadline;
    while !cond() {
        assert!(Instant::now() < until, "{what} (after {deadline:?})");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What one client saw.
#[derive(Default)]
struct Outcome {
    /// Serials of the 201 answers.
    issued: Vec<String>,
    /// 201 answers received after SIGTERM was delivered.
    issued_after_signal: usize,
    /// Answers other than 201 (status, body).
    other: Vec<(u16, String)>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_during_issuance_answers_and_stores_every_accepted_request() {
    let demo = DemoDir::create();
    let mut server = demo.serve();
    let pid = server.pid();
    assert!(
        !plugin_workers_of(pid).is_empty(),
        "the demo runs its plugins in workers"
    );
    let before = stored_serials(&demo).len();
    let csr = openssl_csr(demo.path(), "load", "ec:P-256");
    let body = issue_body("personal", &csr, serde_json::json!({"name": "Load Test"}));
    let outcome = Arc::new(Mutex::new(Outcome::default()));
    let signalled = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (addr, config, body) = (demo.api, channel(&demo), body.clone());
        let (outcome, signalled) = (outcome.clone(), signalled.clone());
        clients.spawn(async move {
            // Keep issuing, reconnecting when a connection closes, until the server is gone.
            'connections: loop {
                let Ok(mut conn) = ApiConnection::connect(addr, config.clone()).await else {
                    return;
                };
                loop {
                    match conn
                        .request("POST", "/api/v1/certificates", Some(body.clone()))
                        .await
                    {
                        Ok((201, resp)) => {
                            let serial = json(&resp)["serial"].as_str().unwrap().to_owned();
                            let after_signal = signalled.load(std::sync::atomic::Ordering::Acquire);
                            let mut o = outcome.lock().await;
                            o.issued.push(serial);
                            if after_signal {
                                o.issued_after_signal += 1;
                            }
                        }
                        Ok((status, resp)) => outcome
                            .lock()
                            .await
                            .other
                            .push((status, String::from_utf8_lossy(&resp).into_owned())),
                        // Closed without an answer: a request the server did not accept.
                        Err(_) => continue 'connections,
                    }
                }
            }
        });
    }
    tokio::task::block_in_place(|| {
        await_condition("issuance under way", Duration::from_secs(120), || {
            outcome
                .try_lock()
                .map(|o| o.issued.len() >= 24)
                .unwrap_or(false)
        })
    });
    signal_process(pid, "TERM");
    // Set once kill(1) has returned: a 201 seen afterwards was answered after the signal.
    signalled.store(true, std::sync::atomic::Ordering::Release);
    let code = tokio::task::block_in_place(|| server.wait(Duration::from_secs(30)));
    assert_eq!(code, Some(0), "exit status\n{}", server.log_text());
    clients.join_all().await;
    let o = outcome.lock().await;
    assert!(o.other.is_empty(), "answers other than 201: {:?}", o.other);
    assert!(
        o.issued_after_signal > 0,
        "no request was in flight at SIGTERM; the test proved nothing"
    );
    // Every accepted request was answered: exactly the certificates the clients were told about
    // are stored, none signed and stored without an answer.
    let mut stored = stored_serials(&demo);
    stored.sort();
    let mut issued = o.issued.clone();
    issued.sort();
    assert_eq!(stored.len(), before + issued.len(), "stored vs answered");
    for serial in &issued {
        assert!(stored.binary_search(serial).is_ok(), "{serial} not stored");
    }
    tokio::task::block_in_place(|| {
        await_condition("plugin workers stopped", Duration::from_secs(10), || {
            plugin_workers_of(pid).is_empty()
        })
    });
    let log = server.log_text();
    assert!(log.contains("shutting down"), "{log}");

    // And after a restart, each is served by the API.
    let _server = demo.serve();
    for serial in issued.iter().take(40) {
        let (status, _) = api_request(
            demo.api,
            operator(&demo),
            "GET",
            &format!("/api/v1/certificates/{serial}"),
            None,
        )
        .await
        .unwrap();
        assert_eq!(status, 200, "{serial}");
    }
}

/// `quickstart.sh` on the already-built debug binaries (no package install, no release build).
fn quickstart(
    dir: &std::path::Path,
    api: SocketAddr,
    public: SocketAddr,
    sim: SocketAddr,
) -> std::process::Child {
    Command::new("bash")
        .arg(workspace_root().join("quickstart.sh"))
        .arg(dir)
        .env("QUICKSTART_BIN_DIR", binaries())
        .env("API_ADDR", api.to_string())
        .env("PUBLIC_ADDR", public.to_string())
        .env("VENDOR_SIM_ADDR", sim.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.with_extension("log")).unwrap())
        .spawn()
        .unwrap()
}

fn answers_healthz(public: SocketAddr) -> bool {
    let Ok(mut s) = std::net::TcpStream::connect(public) else {
        return false;
    };
    use std::io::{Read, Write};
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    if s.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.starts_with("HTTP/1.1 200")
}

/// Starts quickstart, waits until it serves, stops it with `signal`, and checks that the
/// server, vendor-sim and the plugin workers are all gone.
fn run_and_stop_quickstart(
    dir: &std::path::Path,
    addrs: (SocketAddr, SocketAddr, SocketAddr),
    signal: &str,
) {
    let (api, public, sim) = addrs;
    let mut script = quickstart(dir, api, public, sim);
    let pid = script.id();
    let log = dir.with_extension("log");
    await_condition(
        &format!(
            "quickstart serves: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        ),
        Duration::from_secs(180),
        || answers_healthz(public),
    );
    // The script's PID is now the server's (exec).
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    assert!(
        exe.ends_with("ca-appliance"),
        "{pid} runs {exe:?}, not the server"
    );
    let sim_pids = processes_with_args(&["--addr", &sim.to_string()]);
    assert_eq!(sim_pids.len(), 1, "one vendor-sim: {sim_pids:?}");
    let workers = plugin_workers_of(pid);
    assert!(!workers.is_empty(), "the demo's plugin workers run");

    signal_process(pid, signal);
    let code = wait_exit(&mut script, Duration::from_secs(30));
    assert_eq!(code, Some(0), "server exit status");
    for p in sim_pids.iter().chain(&workers) {
        await_condition(
            &format!("process {p} left behind"),
            Duration::from_secs(10),
            || !process_alive(*p),
        );
    }
    assert!(processes_with_args(&["--addr", &sim.to_string()]).is_empty());
}

#[test]
fn stopping_quickstart_leaves_no_process_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    let addrs = (free_addr(), free_addr(), free_addr());
    // Stopped by its PID, as a service manager or `kill` would.
    run_and_stop_quickstart(&dir, addrs, "TERM");
    // Run again on the same ports (nothing left holding them), stopped as Ctrl-C would.
    run_and_stop_quickstart(&dir, addrs, "INT");
}
