//! Connection limits on both listeners, against the real binary: connections that never send a
//! request, send their head or body too slowly, sit idle on keep-alive, or never finish the TLS
//! handshake are closed after their timeouts; connections over the cap never lock out `/healthz`
//! or OCSP; a 512-descriptor limit is not exhausted by held connections; no other process can
//! bind the public port beside the appliance. Throughout, `/healthz` on both listeners and OCSP
//! on the public one keep answering.
#![allow(clippy::unwrap_used)] // tests may unwrap: a failure is the test failing

use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls_pki_types::ServerName;
use system_tests::*;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

/// Short timeouts so the test can watch them fire.
const SHORT: &str = "header_read_timeout_secs = 1\nbody_read_timeout_secs = 2\nidle_timeout_secs = 2\ntls_handshake_timeout_secs = 1";
/// How long a test waits for a close that is due after at most 2 s.
const CLOSE_DEADLINE: Duration = Duration::from_secs(15);

const SLOW_HEAD: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: test\r\n";
const HEADER_LINE: &[u8] = b"X-Slow: 1\r\n";
const HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n";
const SLOW_BODY_HEAD: &[u8] = b"POST /ocsp HTTP/1.1\r\nHost: test\r\nContent-Type: application/ocsp-request\r\nContent-Length: 1000\r\n\r\n";

fn channel(demo: &DemoDir) -> Arc<rustls::ClientConfig> {
    let tls = demo.path().join("tls");
    tls_client(
        &tls.join("ca.pem"),
        Identity::Files(&tls.join("channel-demo.pem"), &tls.join("channel-demo.key")),
    )
}

/// A DER OCSP request (SHA-1 CertID, no nonce) for a serial of the personal CA, by openssl.
fn ocsp_request(demo: &DemoDir) -> Vec<u8> {
    let out = demo.path().join("probe.ocsp-req");
    let (ok, _, err) = run(Command::new("openssl")
        .current_dir(demo.path())
        .args(["ocsp", "-issuer", "ca/personal.pem", "-serial", "0x1234"])
        .args(["-no_nonce", "-reqout", out.to_str().unwrap()]));
    assert!(ok, "openssl ocsp -reqout: {err}");
    std::fs::read(out).unwrap()
}

/// Whether `der` is an OCSPResponse with responseStatus successful (0).
fn ocsp_successful(der: &[u8]) -> bool {
    if der.len() < 5 || der[0] != 0x30 {
        return false;
    }
    let skip = if der[1] < 0x80 {
        2
    } else {
        2 + usize::from(der[1] & 0x7f)
    };
    der.get(skip..skip + 3) == Some(&[0x0a, 0x01, 0x00][..])
}

/// Checks `/healthz` on both listeners and OCSP on the public one, over and over, until stopped.
struct Monitor {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<usize>,
}

impl Monitor {
    fn start(demo: &DemoDir) -> Monitor {
        let (public, api, client, request) =
            (demo.public, demo.api, channel(demo), ocsp_request(demo));
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let mut rounds = 0;
            while !flag.load(Ordering::Acquire) {
                check_service(public, api, client.clone(), request.clone()).await;
                rounds += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            rounds
        });
        Monitor { stop, task }
    }

    /// Stops the checks; panics if any failed (or none ran).
    async fn finish(self) {
        self.stop.store(true, Ordering::Release);
        let rounds = self.task.await.expect("every check answered");
        assert!(rounds > 0, "no check completed");
    }
}

async fn check_service(
    public: SocketAddr,
    api: SocketAddr,
    client: Arc<rustls::ClientConfig>,
    ocsp: Vec<u8>,
) {
    let limit = Duration::from_secs(5);
    let (status, _, _) = tokio::time::timeout(limit, public_get(public, "/healthz"))
        .await
        .expect("public /healthz answers");
    assert_eq!(status, 200, "public /healthz");
    let (status, _, body) = tokio::time::timeout(
        limit,
        public_request(
            public,
            "POST",
            "/ocsp",
            &[("content-type", "application/ocsp-request")],
            ocsp,
        ),
    )
    .await
    .expect("OCSP answers");
    assert_eq!(status, 200, "OCSP");
    assert!(ocsp_successful(&body), "OCSP response not successful");
    let (status, _) =
        tokio::time::timeout(limit, api_request(api, client, "GET", "/healthz", None))
            .await
            .expect("API /healthz answers")
            .expect("API /healthz transport");
    assert_eq!(status, 200, "API /healthz");
}

/// How a held connection ended.
#[derive(Debug)]
struct Closed {
    /// Time from the first write (or connect) to the close.
    after: Duration,
    /// What the server sent before closing.
    received: Vec<u8>,
}

impl Closed {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.received).into_owned()
    }
}

/// Writes `first`, then `dribble` every 300 ms (if not empty), reading whatever comes back,
/// until the server closes the connection (`Some`) or `deadline` passes (`None`).
async fn hold<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    first: &[u8],
    dribble: &[u8],
    deadline: Duration,
) -> Option<Closed> {
    let start = Instant::now();
    let until = tokio::time::Instant::now() + deadline;
    let mut writable =
        first.is_empty() || (stream.write_all(first).await.is_ok() && stream.flush().await.is_ok());
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    let mut tick = tokio::time::interval(Duration::from_millis(300));
    tick.tick().await;
    loop {
        tokio::select! {
            read = stream.read(&mut buf) => match read {
                Ok(0) | Err(_) => return Some(Closed { after: start.elapsed(), received }),
                Ok(n) => received.extend_from_slice(&buf[..n]),
            },
            _ = tick.tick(), if writable && !dribble.is_empty() => {
                writable = stream.write_all(dribble).await.is_ok() && stream.flush().await.is_ok();
            }
            () = tokio::time::sleep_until(until) => return None,
        }
    }
}

async fn tcp(addr: SocketAddr) -> TcpStream {
    TcpStream::connect(addr).await.unwrap()
}

async fn tls(addr: SocketAddr, config: Arc<rustls::ClientConfig>) -> impl AsyncRead + AsyncWrite {
    let connector = tokio_rustls::TlsConnector::from(config);
    connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp(addr).await)
        .await
        .unwrap()
}

fn closed(outcome: Option<Closed>, what: &str) -> Closed {
    outcome.unwrap_or_else(|| panic!("{what}: still open after {CLOSE_DEADLINE:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_and_idle_public_connections_are_closed_after_their_timeouts() {
    let demo = DemoDir::create();
    server_config(&demo, SHORT);
    let _server = demo.serve();
    let monitor = Monitor::start(&demo);
    let addr = demo.public;
    let mut silent = JoinSet::new();
    let mut slow_head = JoinSet::new();
    let mut slow_body = JoinSet::new();
    let mut idle = JoinSet::new();
    for _ in 0..10 {
        let s = tcp(addr).await;
        silent.spawn(async move { hold(s, b"", b"", CLOSE_DEADLINE).await });
        let s = tcp(addr).await;
        slow_head.spawn(async move { hold(s, SLOW_HEAD, HEADER_LINE, CLOSE_DEADLINE).await });
        let s = tcp(addr).await;
        slow_body.spawn(async move { hold(s, SLOW_BODY_HEAD, b"0", CLOSE_DEADLINE).await });
        let s = tcp(addr).await;
        idle.spawn(async move { hold(s, HEALTHZ, b"", CLOSE_DEADLINE).await });
    }
    // Nothing sent: closed by the header timeout (1 s), without an answer.
    for c in silent.join_all().await {
        let c = closed(c, "silent connection");
        assert!(c.received.is_empty(), "{}", c.text());
        assert!(c.after >= Duration::from_millis(900), "{:?}", c.after);
    }
    // A head trickling in forever: the header timeout counts from its first byte, not per byte.
    for c in slow_head.join_all().await {
        let c = closed(c, "slow request head");
        assert!(c.received.is_empty(), "{}", c.text());
        assert!(c.after >= Duration::from_millis(900), "{:?}", c.after);
    }
    // A body trickling in: 408 once the body timeout (2 s) passes, then closed.
    for c in slow_body.join_all().await {
        let c = closed(c, "slow request body");
        assert!(c.text().starts_with("HTTP/1.1 408"), "{}", c.text());
        assert!(c.text().contains("request_timeout"), "{}", c.text());
        assert!(c.after >= Duration::from_millis(1900), "{:?}", c.after);
    }
    // Answered, then idle on keep-alive: closed by the idle timeout (2 s).
    for c in idle.join_all().await {
        let c = closed(c, "idle keep-alive connection");
        assert!(c.text().starts_with("HTTP/1.1 200"), "{}", c.text());
        assert!(c.after >= Duration::from_millis(1900), "{:?}", c.after);
    }
    monitor.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_idle_and_unfinished_tls_api_connections_are_closed_after_their_timeouts() {
    let demo = DemoDir::create();
    server_config(&demo, SHORT);
    let _server = demo.serve();
    let monitor = Monitor::start(&demo);
    let (addr, client) = (demo.api, channel(&demo));
    // A TLS record header and the start of a ClientHello, then one byte at a time.
    let partial_hello: &[u8] = &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc];
    let slow_body_head = b"POST /api/v1/certificates HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n";
    let mut no_handshake = JoinSet::new();
    let mut slow_head = JoinSet::new();
    let mut slow_body = JoinSet::new();
    let mut idle = JoinSet::new();
    for _ in 0..5 {
        let s = tcp(addr).await;
        no_handshake.spawn(async move { hold(s, b"", b"", CLOSE_DEADLINE).await });
        let s = tcp(addr).await;
        no_handshake.spawn(async move { hold(s, partial_hello, b"\x03", CLOSE_DEADLINE).await });
        let s = tls(addr, client.clone()).await;
        slow_head.spawn(async move { hold(s, SLOW_HEAD, HEADER_LINE, CLOSE_DEADLINE).await });
        let s = tls(addr, client.clone()).await;
        slow_body.spawn(async move { hold(s, slow_body_head, b" ", CLOSE_DEADLINE).await });
        let s = tls(addr, client.clone()).await;
        idle.spawn(async move { hold(s, HEALTHZ, b"", CLOSE_DEADLINE).await });
    }
    // TLS handshake never completed (silent, or a ClientHello trickling in): 1 s in all.
    for c in no_handshake.join_all().await {
        let c = closed(c, "unfinished TLS handshake");
        assert!(c.received.is_empty(), "{:?}", c.received);
        assert!(c.after >= Duration::from_millis(900), "{:?}", c.after);
    }
    for c in slow_head.join_all().await {
        let c = closed(c, "slow request head over TLS");
        assert!(c.received.is_empty(), "{}", c.text());
        assert!(c.after >= Duration::from_millis(900), "{:?}", c.after);
    }
    for c in slow_body.join_all().await {
        let c = closed(c, "slow request body over TLS");
        assert!(c.text().starts_with("HTTP/1.1 408"), "{}", c.text());
        assert!(c.text().contains("request_timeout"), "{}", c.text());
        assert!(c.after >= Duration::from_millis(1900), "{:?}", c.after);
    }
    for c in idle.join_all().await {
        let c = closed(c, "idle keep-alive over TLS");
        assert!(c.text().starts_with("HTTP/1.1 200"), "{}", c.text());
        assert!(c.after >= Duration::from_millis(1900), "{:?}", c.after);
    }
    monitor.finish().await;
}

/// Opens `n` connections that send `first` (part of a request), each kept for `hold_for`.
/// Returns once every connection is established, so a check started afterwards is admitted
/// after the whole crowd (a check that connected in the middle of the burst could, rightly,
/// be the oldest connection not yet sending its request when the burst reaches the cap).
async fn crowd(
    addr: SocketAddr,
    first: &'static [u8],
    n: usize,
    hold_for: Duration,
) -> JoinSet<Option<Closed>> {
    let mut held = JoinSet::new();
    for _ in 0..n {
        let s = tcp(addr).await;
        held.spawn(async move { hold(s, first, b"", hold_for).await });
    }
    held
}

/// How many of a crowd's connections the server closed while they were held; none of them
/// may have received anything.
async fn closed_count(held: JoinSet<Option<Closed>>) -> usize {
    let outcomes = held.join_all().await;
    for c in outcomes.iter().flatten() {
        assert!(c.received.is_empty(), "{}", c.text());
    }
    outcomes.iter().filter(|c| c.is_some()).count()
}

/// Tries, from a separate process (python3), to bind `addr` the way a process sharing a port
/// does (`SO_REUSEADDR` and `SO_REUSEPORT`); returns what the bind said.
fn bind_beside(addr: SocketAddr) -> String {
    let script = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
try:
    s.bind((sys.argv[1], int(sys.argv[2])))
    s.listen(16)
    print("bound")
except OSError as e:
    print("refused", e.errno)
"#;
    let out = python(script, &[&addr.ip().to_string(), &addr.port().to_string()]);
    String::from_utf8_lossy(&out).trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn another_process_cannot_bind_the_public_port_to_take_a_share_of_its_connections() {
    let demo = DemoDir::create();
    server_config(&demo, "public_threads = 2");
    let _server = demo.serve();
    // A socket with SO_REUSEPORT beside one without it is refused (EADDRINUSE, 98): the kernel
    // would otherwise hand it part of the appliance's connections.
    assert_eq!(bind_beside(demo.public), "refused 98");
    let (status, _, _) = public_get(demo.public, "/healthz").await;
    assert_eq!(status, 200, "public /healthz after the attempt");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn connections_over_the_cap_never_lock_out_healthz_or_ocsp() {
    let demo = DemoDir::create();
    // Timeouts far beyond the test: every close seen here is the cap's doing. Four public
    // listener threads (one shared socket): the cap is one for all of them.
    server_config(
        &demo,
        "max_connections = 20\nheader_read_timeout_secs = 120\nbody_read_timeout_secs = 120\nidle_timeout_secs = 120\ntls_handshake_timeout_secs = 120\npublic_threads = 4",
    );
    let _server = demo.serve();
    let hold_for = Duration::from_secs(5);
    // Complete heads with bodies that never come (busy requests), and unfinished handshakes.
    let (public, api) = tokio::join!(
        crowd(demo.public, SLOW_BODY_HEAD, 60, hold_for),
        crowd(demo.api, b"", 60, hold_for),
    );
    let monitor = Monitor::start(&demo);
    let (public_closed, api_closed) = tokio::join!(closed_count(public), closed_count(api));
    // 60 attempted against a cap of 20: at least 40 closed at once (more while the monitor's
    // own connections take places), never more than 20 held. The monitor's checks get through
    // although every place is held by a request whose body is still due.
    assert!(public_closed >= 40, "public: {public_closed} of 60 closed");
    assert!(api_closed >= 40, "API: {api_closed} of 60 closed");
    monitor.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn held_connections_do_not_exhaust_a_512_descriptor_limit() {
    let demo = DemoDir::create();
    let mut server = Server::start_under(&demo.config(), &["prlimit", "--nofile=512:512", "--"]);
    let hold_for = Duration::from_secs(5);
    // Default timeouts (10 s): these connections would be held if nothing capped them.
    let (public, api) = tokio::join!(
        crowd(demo.public, SLOW_HEAD, 600, hold_for),
        crowd(demo.api, b"", 200, hold_for),
    );
    let monitor = Monitor::start(&demo);
    let (public_closed, api_closed) = tokio::join!(closed_count(public), closed_count(api));
    monitor.finish().await;
    assert!(server.is_running(), "{}", server.log_text());
    let log = server.log_text();
    assert!(log.contains("lowered per listener"), "{log}");
    assert!(
        !log.contains("accept failed"),
        "descriptors ran out:\n{log}"
    );
    // (512 - 256 reserved) / 2 = 128 places per listener.
    assert!(
        public_closed >= 600 - 128,
        "public: {public_closed} of 600 closed"
    );
    assert!(api_closed >= 200 - 128, "API: {api_closed} of 200 closed");
}

#[test]
fn check_config_refuses_out_of_range_connection_settings() {
    let demo = DemoDir::create();
    let original = std::fs::read_to_string(demo.config()).unwrap();
    for (keys, message) in [
        (
            "idle_timeout_secs = 0",
            "server.idle_timeout_secs must be 1..=3600 seconds",
        ),
        (
            "header_read_timeout_secs = 3601",
            "server.header_read_timeout_secs must be 1..=3600 seconds",
        ),
        (
            "max_connections = 0",
            "server.max_connections must be 1..=1000000",
        ),
        (
            "public_threads = 257",
            "server.public_threads must be 0..=256",
        ),
    ] {
        std::fs::write(demo.config(), &original).unwrap();
        server_config(&demo, keys);
        let (ok, out, err) = run(Command::new(appliance_bin()).args([
            "check-config",
            "--config",
            demo.config().to_str().unwrap(),
        ]));
        assert!(!ok, "{keys} accepted: {out}");
        assert!(err.contains(message), "{keys}: {err}");
    }
    std::fs::write(demo.config(), &original).unwrap();
    server_config(&demo, SHORT);
    let (ok, out, err) = run(Command::new(appliance_bin()).args([
        "check-config",
        "--config",
        demo.config().to_str().unwrap(),
    ]));
    assert!(ok, "{out}{err}");
}
