//! A real headless Chromium (Debian's `chromium` + `chromium-driver`), driven over the W3C
//! WebDriver protocol (plain HTTP + JSON to `chromedriver`). A fresh profile per browser;
//! chromedriver and the browser it starts run in their own process group, killed on drop.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};

/// A chromedriver session with one headless Chromium.
pub struct Browser {
    driver: Child,
    base: String,
    http: reqwest::Client,
    _profile: tempfile::TempDir,
}

/// Where `.ci/run` installs `tests/chromium/policy.json`.
pub const POLICY: &str = "/etc/chromium/policies/managed/ca-appliance-tests.json";

/// `$HOME/.pki/nssdb` (Chromium's certificate store on Linux) holding `who`'s certificate and
/// key, with the demo TLS CA trusted for servers.
fn client_nss_db(home: &Path, tls: &Path, who: &str) {
    let db = home.join(".pki/nssdb");
    std::fs::create_dir_all(&db).expect("nssdb dir");
    let sql = format!("sql:{}", db.display());
    let p12 = home.join(format!("{who}.p12"));
    let steps: [Vec<String>; 4] = [
        vec![
            "certutil".into(),
            "-N".into(),
            "-d".into(),
            sql.clone(),
            "--empty-password".into(),
        ],
        vec![
            "openssl".into(),
            "pkcs12".into(),
            "-export".into(),
            "-in".into(),
            tls.join(format!("{who}.pem")).display().to_string(),
            "-inkey".into(),
            tls.join(format!("{who}.key")).display().to_string(),
            "-name".into(),
            who.into(),
            "-passout".into(),
            "pass:".into(),
            "-out".into(),
            p12.display().to_string(),
        ],
        vec![
            "pk12util".into(),
            "-i".into(),
            p12.display().to_string(),
            "-d".into(),
            sql.clone(),
            "-W".into(),
            String::new(),
        ],
        vec![
            "certutil".into(),
            "-A".into(),
            "-d".into(),
            sql,
            "-n".into(),
            "demo-tls-ca".into(),
            "-t".into(),
            "C,,".into(),
            "-i".into(),
            tls.join("ca.pem").display().to_string(),
        ],
    ];
    for step in steps {
        let (ok, out, err) = crate::run(Command::new(&step[0]).args(&step[1..]));
        assert!(
            ok,
            "{}: {out}{err} (apt-get install libnss3-tools)",
            step.join(" ")
        );
    }
}

/// Where screenshots go: `target/screenshots/` (artefacts for a person, never compared).
pub fn screenshot_dir() -> PathBuf {
    crate::target_dir().join("screenshots")
}

impl Browser {
    /// Starts chromedriver and a headless Chromium with a fresh profile directory.
    pub async fn start() -> Browser {
        Browser::launch(None, "420,900").await
    }

    /// A browser that presents the client certificate `tls/{who}.pem` of a demo directory and
    /// trusts its TLS CA: an NSS database (`certutil`, `pk12util`) in a fresh home, and the
    /// `AutoSelectCertificateForUrls` policy of `tests/chromium/policy.json` (installed under
    /// `/etc/chromium/policies/managed/` by `.ci/run`) picks it for `https://localhost:*`.
    pub async fn start_as(tls_dir: &Path, who: &str) -> Browser {
        assert!(
            Path::new(POLICY).exists(),
            "{POLICY} is missing: install tests/chromium/policy.json there (see .ci/run)"
        );
        Browser::launch(Some((tls_dir, who)), "1280,900").await
    }

    async fn launch(client: Option<(&Path, &str)>, window: &str) -> Browser {
        let profile = tempfile::tempdir().expect("profile dir");
        let home = profile.path().join("home");
        if let Some((tls, who)) = client {
            client_nss_db(&home, tls, who);
        }
        let port = crate::free_addr().port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .env("HOME", &home)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("chromedriver starts (apt-get install chromium chromium-driver)");
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = match http.get(format!("{base}/status")).send().await {
                Ok(r) => r
                    .text()
                    .await
                    .unwrap_or_default()
                    .contains("\"ready\":true"),
                Err(_) => false,
            };
            if ready {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver did not become ready"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut b = Browser {
            driver,
            base,
            http,
            _profile: profile,
        };
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([
            format!("--window-size={window}"),
            format!(
                "--user-data-dir={}",
                b._profile.path().join("profile").display()
            ),
        ])
        .collect::<Vec<_>>();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": args}
        }}});
        let v = b.raw("POST", "/session", Some(caps)).await;
        let id = v["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("a WebDriver session: {v}"))
            .to_owned();
        b.base = format!("{}/session/{id}", b.base);
        b
    }

    async fn raw(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.base);
        let req = match method {
            "GET" => self.http.get(url),
            "DELETE" => self.http.delete(url),
            _ => self
                .http
                .post(url)
                .header("content-type", "application/json")
                .body(body.unwrap_or(json!({})).to_string()),
        };
        let text = req
            .send()
            .await
            .expect("chromedriver answers")
            .text()
            .await
            .expect("chromedriver body");
        serde_json::from_str(&text).unwrap_or_else(|_| json!({"raw": text}))
    }

    /// A WebDriver command; panics on a WebDriver error.
    pub async fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let v = self.raw(method, path, body).await;
        if let Some(e) = v["value"]["error"].as_str() {
            panic!("WebDriver {method} {path}: {e}: {}", v["value"]["message"]);
        }
        v["value"].clone()
    }

    /// Opens `url` in the current window.
    pub async fn goto(&self, url: &str) {
        self.cmd("POST", "/url", Some(json!({"url": url}))).await;
    }

    /// Runs `script` (a function body; `arguments` available) and returns its value.
    pub async fn script(&self, script: &str, args: Value) -> Value {
        self.cmd(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": args})),
        )
        .await
    }

    /// Waits until `predicate` (a JS expression) is truthy; panics naming `what` after 60 s.
    pub async fn wait_for(&self, what: &str, predicate: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let script = format!("return !!({predicate});");
        while self.script(&script, json!([])).await != json!(true) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; page text: {}",
                self.script(
                    "return document.body ? document.body.innerText : ''",
                    json!([])
                )
                .await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn element(&self, css: &str) -> String {
        self.wait_for(
            css,
            &format!(
                "(e => e && e.offsetParent !== null)(document.querySelector({}))",
                json!(css)
            ),
        )
        .await;
        let v = self
            .cmd(
                "POST",
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        // A web element reference is an object with exactly one key (the W3C identifier).
        v.as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("an element reference for {css}: {v}"))
            .to_owned()
    }

    /// Clicks the (visible) element `css`, as a user would.
    pub async fn click(&self, css: &str) {
        let id = self.element(css).await;
        self.cmd("POST", &format!("/element/{id}/click"), Some(json!({})))
            .await;
    }

    /// Types `text` into the (visible) element `css`.
    pub async fn type_into(&self, css: &str, text: &str) {
        let id = self.element(css).await;
        self.cmd(
            "POST",
            &format!("/element/{id}/value"),
            Some(json!({"text": text})),
        )
        .await;
    }

    /// Switches into the frame of the (visible) `<iframe>` element `css`: scripts and
    /// commands then run in the framed document, whatever its origin.
    pub async fn enter_frame(&self, css: &str) {
        let id = self.element(css).await;
        // A W3C web element reference.
        let reference = json!({"element-6066-11e4-a52e-4f735466cecf": id});
        self.cmd("POST", "/frame", Some(json!({"id": reference})))
            .await;
    }

    /// A DevTools protocol command through chromedriver (`goog/cdp/execute`); its result.
    pub async fn cdp(&self, cmd: &str, params: Value) -> Value {
        self.cmd(
            "POST",
            "/goog/cdp/execute",
            Some(json!({"cmd": cmd, "params": params})),
        )
        .await
    }

    /// Switches back to the parent of the current frame.
    pub async fn leave_frame(&self) {
        self.cmd("POST", "/frame/parent", Some(json!({}))).await;
    }

    /// The window handles, in order.
    pub async fn windows(&self) -> Vec<String> {
        let v = self.cmd("GET", "/window/handles", None).await;
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|h| h.as_str().map(str::to_owned))
            .collect()
    }

    /// Switches to window `handle`.
    pub async fn switch_to(&self, handle: &str) {
        self.cmd("POST", "/window", Some(json!({"handle": handle})))
            .await;
    }

    /// Closes the current window.
    pub async fn close_window(&self) {
        self.cmd("DELETE", "/window", None).await;
    }

    /// Writes a PNG of the viewport to `target/screenshots/{name}.png`; returns its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let v = self.cmd("GET", "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().expect("base64 screenshot"))
            .expect("screenshot decodes");
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).expect("screenshot dir");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("screenshot written");
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // chromedriver and the Chromium it started share the process group we gave it.
        let pgid = self.driver.id();
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{pgid}")])
            .status();
        let _ = self.driver.wait();
    }
}
