//! Shared by `limits.rs` and `callbacks.rs`: a demo appliance (`init --demo`, the real binary and
//! plugin workers) wired to a real `vendor-sim`, with the config edited per test, and an mTLS
//! client that returns headers too.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use serde_json::{json, Value};
use system_tests::*;

/// 张三: name, ID number, phone (a vendor-sim test identity whose face passes).
pub const ZHANG: (&str, &str, &str) = ("张三", "11010519491231002X", "13800138000");

/// The simulator, from the shared harness.
pub use system_tests::VendorSim as Sim;

/// A demo appliance and its vendor-sim.
pub struct Setup {
    pub demo: DemoDir,
    pub sim: Sim,
}

impl Setup {
    /// `init --demo`, then `edit` rewrites `appliance.toml` (given the vendor-sim and public
    /// addresses); vendor-sim signs callbacks with `callback_secret` (a 0600 file under
    /// `secrets/`) when given.
    pub fn new(callback_secret: Option<&str>, edit: impl FnOnce(String, &str) -> String) -> Setup {
        Setup::new_with(&[], callback_secret, edit)
    }

    /// As `new`, with `extra` arguments to `init --demo` (e.g. `--sm2`).
    pub fn new_with(
        extra: &[&str],
        callback_secret: Option<&str>,
        edit: impl FnOnce(String, &str) -> String,
    ) -> Setup {
        let bin = binaries().join("ca-appliance");
        let tmp = tempfile::tempdir().unwrap();
        let (api, public, sim_addr) = (free_addr(), free_addr(), free_addr());
        let (ok, out, err) = run(Command::new(&bin)
            .args([
                "init",
                "--dir",
                tmp.path().to_str().unwrap(),
                "--demo",
                "--api-addr",
                &api.to_string(),
                "--public-addr",
                &public.to_string(),
                "--vendor-sim-addr",
                &sim_addr.to_string(),
            ])
            .args(extra));
        assert!(ok, "init --demo failed:\n{out}\n{err}");
        let secret_file = callback_secret.map(|s| {
            use std::os::unix::fs::PermissionsExt;
            let f = tmp.path().join("secrets/callback-secret");
            std::fs::write(&f, s).unwrap();
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
            f
        });
        let config = tmp.path().join("appliance.toml");
        let text = std::fs::read_to_string(&config).unwrap();
        std::fs::write(&config, edit(text, &public.to_string())).unwrap();
        let key = std::fs::read_to_string(tmp.path().join("secrets/vendor-sim-api-key")).unwrap();
        let sim = Sim::start(sim_addr, key.trim(), secret_file.as_deref());
        Setup {
            demo: DemoDir { tmp, api, public },
            sim,
        }
    }

    /// One mTLS API call as `who` (`channel-demo`, `operator`); returns status, headers, body.
    pub async fn call(
        &self,
        who: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, hyper::HeaderMap, Value) {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let (status, headers, bytes) = self
            .raw(who, method, path, "application/json", body.into_bytes())
            .await;
        (
            status,
            headers,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    /// One mTLS API call as `who` with a raw body of `content_type`; returns status, headers
    /// and the raw answer.
    pub async fn raw(
        &self,
        who: &str,
        method: &str,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> (u16, hyper::HeaderMap, Vec<u8>) {
        let tls = self.demo.path().join("tls");
        let config = tls_client(
            &tls.join("ca.pem"),
            Identity::Files(
                &tls.join(format!("{who}.pem")),
                &tls.join(format!("{who}.key")),
            ),
        );
        let tcp = tokio::net::TcpStream::connect(self.demo.api).await.unwrap();
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        let stream = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .unwrap();
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", self.demo.api.to_string())
            .header("content-type", content_type)
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        let resp = sender.send_request(req).await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (status, headers, bytes.to_vec())
    }

    /// Starts a verification as the demo channel.
    pub async fn start(&self, plugin: &str, applicant: Value) -> (u16, hyper::HeaderMap, Value) {
        self.call(
            "channel-demo",
            "POST",
            "/api/v1/verifications",
            Some(json!({"plugin": plugin, "applicant": applicant})),
        )
        .await
    }

    /// The verification as the demo channel sees it.
    pub async fn get(&self, id: &str) -> Value {
        let (status, _, v) = self
            .call(
                "channel-demo",
                "GET",
                &format!("/api/v1/verifications/{id}"),
                None,
            )
            .await;
        assert_eq!(status, 200, "{v}");
        v
    }

    /// Waits (bounded by `within`) until the verification has `status`.
    pub async fn wait_for(&self, id: &str, status: &str, within: Duration) -> Value {
        let end = Instant::now() + within;
        loop {
            let v = self.get(id).await;
            if v["status"] == status {
                return v;
            }
            assert!(Instant::now() < end, "{id} never reached {status}: {v}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The applicant fields of a person.
pub fn person(p: (&str, &str, &str)) -> Value {
    json!({"name": p.0, "id_number": p.1, "phone": p.2})
}
