//! Shared by `applications.rs` and `applications_codes.rs`: the `Apps` harness over a demo
//! appliance and its vendor-sim (each file adds its own constructor and walks), the test
//! identities, the channels, and the certificate check.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod captcha_reader;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use system_tests::*;

use crate::vendor_setup::Setup;

pub const ZHANG: (&str, &str, &str) = ("张三", "11010519491231002X", "13800138000");
pub const LI: (&str, &str, &str) = ("李四", "110105198001010016", "13800138001");

pub const SHECA: &str = "channel-sheca-personal";
pub const BJCA: &str = "channel-bjca-personal";
pub const L3_OID: &str = "1.3.6.1.4.1.61992.1.9.3";

/// A demo appliance with its vendor-sim, spoken to as the channels and the operator.
pub struct Apps {
    pub s: Setup,
}

impl Apps {
    /// Uploads a material (`kind`, declared content type, bytes) to application `id` as `who`,
    /// as a `multipart/form-data` form: the status and the JSON answer.
    pub async fn upload_material(
        &self,
        who: &str,
        id: &str,
        kind: &str,
        declared: &str,
        content: &[u8],
    ) -> (u16, Value) {
        let boundary = "----apptest7MA4YWxkTrZu0gW";
        let mut body = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"kind\"\r\n\r\n{kind}\r\n\
             --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f\"\r\n\
             Content-Type: {declared}\r\n\r\n"
        )
        .into_bytes();
        body.extend_from_slice(content);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let (status, _, answer) = self
            .s
            .raw(
                who,
                "POST",
                &format!("/api/v1/applications/{id}/materials"),
                &format!("multipart/form-data; boundary={boundary}"),
                body,
            )
            .await;
        (
            status,
            serde_json::from_slice(&answer).unwrap_or(Value::Null),
        )
    }

    /// Wraps a prepared setup (each test file writes its own channel files first).
    pub fn from_setup(s: Setup) -> Apps {
        Apps { s }
    }

    pub fn dir(&self) -> &Path {
        self.s.demo.path()
    }

    pub async fn call(
        &self,
        who: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let (status, _, v) = self.s.call(who, method, path, body).await;
        (status, v)
    }

    pub async fn create(&self, who: &str, body: Value) -> (u16, Value) {
        self.call(who, "POST", "/api/v1/applications", Some(body))
            .await
    }

    pub async fn act(&self, who: &str, id: &str, action: &str, body: Value) -> (u16, Value) {
        self.call(
            who,
            "POST",
            &format!("/api/v1/applications/{id}/{action}"),
            Some(body),
        )
        .await
    }

    /// Answers the application's SMS code step with `code`.
    pub async fn input_code(&self, who: &str, id: &str, code: &str) -> (u16, Value) {
        self.act(who, id, "input", json!({"kind": "sms_code", "value": code}))
            .await
    }

    pub async fn get(&self, who: &str, id: &str) -> (u16, Value) {
        self.call(who, "GET", &format!("/api/v1/applications/{id}"), None)
            .await
    }

    /// Polls GET (bounded) until `done` holds.
    pub async fn wait(
        &self,
        who: &str,
        id: &str,
        what: &str,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (_, v) = self.get(who, id).await;
            if done(&v) {
                return v;
            }
            assert!(Instant::now() < deadline, "{id} never {what}: {v}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub fn csr(&self, stem: &str) -> String {
        openssl_csr(self.dir(), stem, "ec:P-256")
    }

    /// Completes the face session whose URL the application's step shows.
    pub async fn complete_face(&self, app: &Value) {
        let url = app["step"]["challenge"]["url"]
            .as_str()
            .unwrap_or_else(|| panic!("a face URL: {app}"));
        let page = format!("/face/page/{}", url.split_once("/face/page/").unwrap().1);
        let (status, v) = self
            .s
            .sim
            .http("POST", &format!("{page}/complete"), Some(json!({})))
            .await;
        assert_eq!(status, 200, "{v}");
    }

    pub fn sql(&self, query: &str) -> String {
        let db = self.dir().join("data/appliance.db");
        let (ok, out, err) = run(Command::new("python3").args([
            "-c",
            "import sqlite3,sys\nfor r in sqlite3.connect(sys.argv[1]).execute(sys.argv[2]): print('|'.join(str(x) for x in r))",
            db.to_str().unwrap(),
            query,
        ]));
        assert!(ok, "{err}");
        out.trim().to_owned()
    }
}

/// Checks `pem` with `openssl verify` against the demo chain and with Python `cryptography`:
/// returns (subject RFC 4514 string, policy OIDs, SAN present).
pub fn check_certificate(dir: &Path, pem: &str, stem: &str) -> (String, Vec<String>, bool) {
    let file = dir.join(format!("{stem}.pem"));
    std::fs::write(&file, pem).unwrap();
    let (ok, out, err) = run(Command::new("openssl").current_dir(dir).args([
        "verify",
        "-CAfile",
        "ca/root.pem",
        "-untrusted",
        "ca/personal.pem",
        file.to_str().unwrap(),
    ]));
    assert!(ok && out.contains(": OK"), "openssl verify: {out}{err}");
    let script = r#"
import sys
from cryptography import x509
c = x509.load_pem_x509_certificate(open(sys.argv[1], 'rb').read())
print(c.subject.rfc4514_string())
pol = c.extensions.get_extension_for_class(x509.CertificatePolicies).value
print(' '.join(p.policy_identifier.dotted_string for p in pol))
try:
    c.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    print('san')
except x509.ExtensionNotFound:
    print('nosan')
"#;
    let (ok, out, err) = run(Command::new("python3").arg("-c").arg(script).arg(&file));
    assert!(ok, "python: {err}");
    let lines: Vec<&str> = out.lines().collect();
    (
        lines[0].to_owned(),
        lines[1].split_whitespace().map(str::to_owned).collect(),
        lines[2] == "san",
    )
}
