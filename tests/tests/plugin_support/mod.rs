//! Shared harness for the `plugin_*.rs` system tests: builds the plugin libraries, the vendor
//! simulator and the worker binary once; starts `vendor-sim`; loads a plugin through the real host
//! (`plugin_host::Plugin` + `VerificationRunner` + `Egress`) with a fake clock; receives vendor
//! callbacks. One test file per plugin (`plugin_<name>.rs`).

// Shared by several test crates; each uses a subset of it.
#![allow(dead_code, unused_imports)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
pub use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, OnceLock};

pub use plugin_abi::doc::{Applicant, ApplicantField, ChallengeKind, Event, Outcome, Status};
pub use plugin_host::{
    Egress, EgressOptions, Isolation, MemoryStore, Plugin, PluginSpec, RunnerOptions, Secret,
    VerificationRunner, VerificationView,
};
pub use serde_json::{json, Value};
use time::OffsetDateTime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The API key the simulator demands and the specs inject as every `*_api_key` secret.
pub const API_KEY: &str = "sim-test-key";
/// 2026-11-24T12:00:00Z, where every fake clock starts.
pub const T0: i64 = 1_795_521_600;
/// The matching test identity (张三).
pub const ZHANG_ID: &str = "11010519491231002X";
/// 张三's phone, also the reserved phone of his cards.
pub const ZHANG_PHONE: &str = "13800138000";

/// Builds the plugin libraries, the simulator and the worker binary once per process.
pub fn built() -> PathBuf {
    system_tests::binaries()
}

/// A running `vendor-sim` process (killed on drop).
pub struct Sim {
    pub child: Child,
    pub addr: String,
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request over a fresh connection; returns (status, body).
pub async fn http(addr: &str, method: &str, path: &str, body: Option<&Value>) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let payload = body.map(Value::to_string).unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{payload}",
        payload.len()
    );
    s.write_all(req.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.expect("read");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("http response");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status code");
    (status, body.to_owned())
}

impl Sim {
    pub fn start() -> Sim {
        let bin = built().join("vendor-sim");
        let mut child = Command::new(bin)
            .args(["--addr", "127.0.0.1:0", "--api-key", API_KEY])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("vendor-sim starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("listening line");
        let v: Value = serde_json::from_str(&line).expect("JSON line");
        let addr = v["listening"].as_str().expect("listening").to_owned();
        Sim { child, addr }
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub async fn get(&self, path: &str) -> Value {
        let (status, body) = http(&self.addr, "GET", path, None).await;
        assert_eq!(status, 200, "{path}: {body}");
        serde_json::from_str(&body).expect("JSON")
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, String) {
        http(&self.addr, "POST", path, Some(&body)).await
    }

    /// The next `count` calls to `api` answer with `status`.
    pub async fn fail_next(&self, api: &str, count: u32, status: u16) {
        let body = json!({"api": api, "count": count, "kind": "status", "status": status});
        assert_eq!(self.post("/_sim/faults", body).await.0, 200);
    }

    /// The next `count` calls to `api` are delayed by `delay_ms`.
    pub async fn delay_next(&self, api: &str, count: u32, delay_ms: u64) {
        let body = json!({"api": api, "count": count, "kind": "delay", "delay_ms": delay_ms});
        assert_eq!(self.post("/_sim/faults", body).await.0, 200);
    }

    /// The latest code "sent" to `phone`, and by whom.
    pub async fn latest_code(&self, phone: &str) -> (String, String) {
        let v = self.get(&format!("/_sim/sms?phone={phone}")).await;
        let last = v["messages"]
            .as_array()
            .and_then(|m| m.last())
            .expect("a code was sent")
            .clone();
        (
            last["code"].as_str().expect("code").to_owned(),
            last["sender"].as_str().expect("sender").to_owned(),
        )
    }

    /// What the applicant reads on the statement of `account` and types back: the amount and
    /// the verification code from the remark (`0.37 004711`), and the amount in fen.
    pub async fn deposit(&self, account: &str) -> (String, u64) {
        let v = self.get(&format!("/_sim/deposits?account={account}")).await;
        let last = v["deposits"]
            .as_array()
            .and_then(|d| d.last())
            .expect("a deposit was paid")
            .clone();
        (
            format!(
                "{} {}",
                last["amount"].as_str().expect("amount"),
                last["code"].as_str().expect("code")
            ),
            last["amount_fen"].as_u64().expect("fen"),
        )
    }

    pub async fn calls(&self, api: &str) -> u64 {
        self.get("/_sim/calls").await[api].as_u64().unwrap_or(0)
    }
}

/// Receives vendor callbacks (one JSON body per request) on a loopback port.
pub struct Inbox {
    pub url: String,
    pub rx: tokio::sync::mpsc::UnboundedReceiver<Value>,
}

pub async fn read_request(s: &mut TcpStream) -> Option<Value> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        while buf.len() < end + 4 + len {
            let n = s.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        return serde_json::from_slice(&buf[end + 4..end + 4 + len]).ok();
    }
}

impl Inbox {
    pub async fn start() -> Inbox {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!(
            "http://{}/cb/{{verification_id}}",
            listener.local_addr().unwrap()
        );
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let tx = tx.clone();
                tokio::spawn(async move {
                    if let Some(v) = read_request(&mut s).await {
                        let _ = tx.send(v);
                    }
                    let _ = s
                        .write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                        )
                        .await;
                });
            }
        });
        Inbox { url, rx }
    }

    pub async fn next(&mut self) -> Value {
        tokio::time::timeout(std::time::Duration::from_secs(10), self.rx.recv())
            .await
            .expect("a callback within 10 s")
            .expect("inbox open")
    }
}

/// One plugin loaded through the host, with a runner on an in-memory store and a fake clock.
pub struct Flow {
    pub runner: VerificationRunner<MemoryStore>,
    pub clock: Arc<AtomicI64>,
}

/// The spec for plugin `name` (library `libplugin_<lib>.so`) against `sim`.
pub fn spec(sim: &Sim, name: &str, lib: &str, isolation: Isolation, config: Value) -> PluginSpec {
    let path = built().join(format!("libplugin_{lib}.so"));
    let sha = plugin_host::sha256_file(&path).expect("hash the plugin");
    let mut spec = PluginSpec::new(name, path, sha);
    spec.isolation = isolation;
    spec.config = config;
    spec.egress_hosts = vec![sim.addr.clone()];
    spec.allow_plain_http = true;
    for secret in [
        "carrier_api_key",
        "sms_api_key",
        "bank_api_key",
        "face_api_key",
        "payout_api_key",
        "registry_api_key",
    ] {
        spec.secrets.insert(secret.into(), Secret::new(API_KEY));
    }
    spec
}

impl Flow {
    pub async fn load(spec: PluginSpec) -> Flow {
        let plugin = Plugin::load(spec).await.expect("plugin loads");
        let clock = Arc::new(AtomicI64::new(T0));
        let c = clock.clone();
        let options = RunnerOptions {
            perform_inline: true,
            clock: Arc::new(move || {
                OffsetDateTime::from_unix_timestamp(c.load(Ordering::SeqCst)).expect("valid time")
            }),
        };
        let egress = Egress::new(EgressOptions::default()).expect("egress client");
        let runner = VerificationRunner::new(
            Arc::new(plugin),
            Arc::new(MemoryStore::new()),
            egress,
            options,
        );
        Flow { runner, clock }
    }

    pub async fn start(&self, id: &str, applicant: Value) -> VerificationView {
        let applicant: Applicant = serde_json::from_value(applicant).expect("applicant");
        self.runner.start(id, &applicant).await.expect("start")
    }

    pub async fn input(&self, id: &str, challenge: ChallengeKind, data: &str) -> VerificationView {
        let ev = Event::UserInput {
            challenge,
            data: data.into(),
        };
        self.runner.deliver(id, ev).await.expect("user input")
    }

    pub async fn deliver(&self, id: &str, event: Event) -> VerificationView {
        self.runner.deliver(id, event).await.expect("deliver")
    }

    /// Moves the clock on and fires whatever timers are due.
    pub async fn advance(&self, secs: i64) -> usize {
        self.clock.fetch_add(secs, Ordering::SeqCst);
        self.runner.fire_due_timers().await.expect("timers")
    }

    /// Advances in steps until `id` is final (bounded).
    pub async fn run_out(&self, id: &str, step_secs: i64) -> VerificationView {
        for _ in 0..50 {
            let v = self.runner.view(id).await.expect("view");
            if v.status.is_final() {
                return v;
            }
            self.advance(step_secs).await;
        }
        panic!("{id} did not finish");
    }
}

pub fn outcome(v: &VerificationView) -> Option<Outcome> {
    v.result.as_ref().map(|r| r.outcome)
}

#[track_caller]
pub fn assert_failed(v: &VerificationView, want: Outcome) {
    assert_eq!(v.status, Status::Failed, "{v:?}");
    assert_eq!(outcome(v), Some(want), "{v:?}");
    assert!(v.challenges.is_empty() && v.timers.is_empty() && v.pending_actions == 0);
}

#[track_caller]
pub fn assert_verified(v: &VerificationView, level: &str, fields: &[ApplicantField]) {
    assert_eq!(v.status, Status::Succeeded, "{v:?}");
    let r = v.result.as_ref().expect("result");
    assert_eq!(r.outcome, Outcome::Verified);
    assert_eq!(r.assurance.as_deref(), Some(level));
    assert_eq!(r.verified_attributes, fields);
}

pub fn challenge(v: &VerificationView, kind: ChallengeKind) -> Value {
    assert_eq!(v.status, Status::AwaitingUser, "{v:?}");
    let c = v
        .challenges
        .iter()
        .find(|c| c.kind == kind)
        .unwrap_or_else(|| panic!("a {kind:?} challenge in {v:?}"));
    c.payload.clone()
}
