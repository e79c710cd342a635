//! Plugins inside the appliance, end to end with real parts: the real `ca-appliance` binary made
//! by `init --demo` (wired to the verifier plugins), the plugin cdylibs in `ca-plugin-worker`
//! processes, `vendor-sim` as the vendors, mTLS clients. Covers: phone-real-name success and a
//! wrong code over the API, a failed verification's specific code, sealed personal data at rest,
//! a channel kept from another's verification, kill -9 mid-flow (an unperformed outbox action and
//! a pending challenge) then restart, a crashing worker plugin not taking the server down,
//! `plugin check` exit codes, and `check-config` refusing a wrong hash or a readable secret file.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap: a failure is the test failing

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use system_tests::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ZHANG: (&str, &str, &str) = ("张三", "11010519491231002X", "13800138000");

/// Builds the appliance, the plugins, the worker binary and vendor-sim once.
fn built() -> PathBuf {
    binaries()
}

/// A running vendor-sim; killed on drop.
struct Sim {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Sim {
    fn start(addr: SocketAddr, api_key: &str) -> Sim {
        let mut child = Command::new(built().join("vendor-sim"))
            .args(["--addr", &addr.to_string(), "--api-key", api_key])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("vendor-sim starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.contains("listening"), "vendor-sim: {line}");
        Sim { child, addr }
    }

    async fn http(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut s = tokio::net::TcpStream::connect(self.addr).await.unwrap();
        let payload = body.map(|b| b.to_string()).unwrap_or_default();
        let req = format!(
            "{method} {path} HTTP/1.1\r\nhost: {}\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{payload}",
            self.addr,
            payload.len()
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).await.unwrap();
        let text = String::from_utf8_lossy(&raw).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
        (status, serde_json::from_str(body).unwrap_or(Value::Null))
    }

    async fn latest_code(&self, phone: &str) -> String {
        let (status, v) = self
            .http("GET", &format!("/_sim/sms?phone={phone}"), None)
            .await;
        assert_eq!(status, 200);
        v["latest"].as_str().expect("a code was sent").to_owned()
    }

    async fn carrier_calls(&self) -> u64 {
        let (_, v) = self.http("GET", "/_sim/calls", None).await;
        v["carrier"].as_u64().unwrap_or(0)
    }
}

/// A demo appliance wired to a vendor-sim that runs with the demo's API key.
struct Setup {
    demo: DemoDir,
    sim: Sim,
}

impl Setup {
    fn new() -> Setup {
        let bin = built().join("ca-appliance");
        let tmp = tempfile::tempdir().unwrap();
        let (api, public, sim_addr) = (free_addr(), free_addr(), free_addr());
        let (ok, out, err) = run(Command::new(&bin).args([
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
        ]));
        assert!(ok, "init --demo failed:\n{out}\n{err}");
        assert!(out.contains("phone-real-name"), "{out}");
        let key = std::fs::read_to_string(tmp.path().join("secrets/vendor-sim-api-key")).unwrap();
        let sim = Sim::start(sim_addr, key.trim());
        Setup {
            demo: DemoDir { tmp, api, public },
            sim,
        }
    }

    fn client(&self, stem: &str) -> Arc<rustls::ClientConfig> {
        let tls = self.demo.path().join("tls");
        tls_client(
            &tls.join("ca.pem"),
            Identity::Files(
                &tls.join(format!("{stem}.pem")),
                &tls.join(format!("{stem}.key")),
            ),
        )
    }

    async fn call(&self, who: &str, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let (status, bytes) = api_request(
            self.demo.api,
            self.client(who),
            method,
            path,
            body.map(|b| serde_json::to_vec(&b).unwrap()),
        )
        .await
        .expect("an HTTP answer");
        (status, json(&bytes))
    }

    async fn start(&self, who: &str, plugin: &str, applicant: Value) -> (u16, Value) {
        self.call(
            who,
            "POST",
            "/api/v1/verifications",
            Some(json!({"plugin": plugin, "applicant": applicant})),
        )
        .await
    }

    async fn input(&self, who: &str, id: &str, code: &str) -> (u16, Value) {
        self.call(
            who,
            "POST",
            &format!("/api/v1/verifications/{id}/input"),
            Some(json!({"kind": "sms_code", "value": code})),
        )
        .await
    }

    /// Polls GET until the verification has `status` (bounded).
    async fn wait_for(&self, id: &str, status: &str) -> Value {
        for _ in 0..100 {
            let (code, v) = self
                .call(
                    "channel-demo",
                    "GET",
                    &format!("/api/v1/verifications/{id}"),
                    None,
                )
                .await;
            assert_eq!(code, 200, "{v}");
            if v["status"] == status {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{id} never reached {status}");
    }

    /// Adds a second channel `other` with its own client certificate (made with openssl).
    fn add_other_channel(&self) {
        openssl_leaf(
            &self.demo.path().join("tls"),
            "channel-other",
            "/O=Demo CA Operator/CN=channel-other",
            "ca",
            "keyUsage=digitalSignature\nextendedKeyUsage=clientAuth\n",
        );
        append_config(
            &self.demo,
            "\n[[client]]\ncommon_name = \"channel-other\"\nrole = \"channel\"\nchannel = \"other\"\n\n[[channel]]\nname = \"other\"\nprofiles = [\"personal\"]\nverifications = [\"phone-real-name\"]\n",
        );
    }
}

fn person(p: (&str, &str, &str)) -> Value {
    json!({"name": p.0, "id_number": p.1, "phone": p.2})
}

fn file_contains(path: &Path, needle: &str) -> bool {
    std::fs::read(path)
        .map(|b| b.windows(needle.len()).any(|w| w == needle.as_bytes()))
        .unwrap_or(false)
}

#[tokio::test]
async fn phone_real_name_end_to_end_with_wrong_code_failure_and_channel_isolation() {
    let s = Setup::new();
    s.add_other_channel();
    let mut server = s.demo.serve();

    // Start: carrier check then an SMS code; the answer shows only masked personal data.
    let (status, v) = s
        .start("channel-demo", "phone-real-name", person(ZHANG))
        .await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["status"], "awaiting_user");
    assert_eq!(v["challenges"][0]["kind"], "sms_code");
    assert_eq!(v["challenges"][0]["payload"]["phone_masked"], "138****8000");
    assert_eq!(v["applicant"]["id_number"], "110***********002X");
    assert_eq!(v["applicant"]["phone"], "138****8000");
    assert!(!v.to_string().contains(ZHANG.1) && !v.to_string().contains(ZHANG.2));
    let id = v["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("vrf_"));

    // A wrong code: the specific failure, still awaiting the user.
    let (status, v) = s.input("channel-demo", &id, "000000").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["status"], "awaiting_user");
    assert_eq!(v["failure_code"], "otp_wrong");

    // Another channel cannot see, drive or guess it; an operator can see it.
    let path = format!("/api/v1/verifications/{id}");
    let (status, v) = s.call("channel-other", "GET", &path, None).await;
    assert_eq!(
        (status, v["error"].as_str()),
        (404, Some("not_found")),
        "{v}"
    );
    let (status, _) = s.input("channel-other", &id, "123456").await;
    assert_eq!(status, 404);
    let (status, v) = s.call("operator", "GET", &path, None).await;
    assert_eq!((status, v["status"].as_str()), (200, Some("awaiting_user")));
    // ... nor use a plugin its channel does not list.
    let (status, v) = s.start("channel-other", "bank-card", person(ZHANG)).await;
    assert_eq!(
        (status, v["error"].as_str()),
        (403, Some("plugin_not_allowed")),
        "{v}"
    );

    // The right code (read from vendor-sim's test endpoint) succeeds.
    let code = s.sim.latest_code(ZHANG.2).await;
    let (status, v) = s.input("channel-demo", &id, &code).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["status"], "succeeded");
    assert_eq!(v["outcome"], "verified");
    assert_eq!(v["assurance"], "L2");
    assert_eq!(
        v["verified_attributes"],
        json!(["name", "id_number", "phone"])
    );
    let (status, v) = s.call("channel-demo", "GET", &path, None).await;
    assert_eq!((status, v["status"].as_str()), (200, Some("succeeded")));
    // Finished: more input is refused with a specific error.
    let (status, v) = s.input("channel-demo", &id, &code).await;
    assert_eq!(
        (status, v["error"].as_str()),
        (409, Some("verification_finished"))
    );

    // A carrier mismatch (张三's ID with another registered phone) fails with its code.
    let (status, v) = s
        .start(
            "channel-demo",
            "phone-real-name",
            person(("张三", ZHANG.1, "13800138003")),
        )
        .await;
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["error"], "verification_failed");
    assert_eq!(v["failure_code"], "mismatch");
    assert_eq!(v["verification"]["status"], "failed");

    // A one-step plugin (organisation registry) succeeds in the start call itself.
    let org = json!({"org_name": "示例科技有限公司", "uscc": "91350100M000100Y43",
        "legal_rep_name": "张三", "legal_rep_id": ZHANG.1});
    let (status, v) = s.start("channel-demo", "org-registry", org).await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["status"], "succeeded");
    assert_eq!(v["applicant"]["legal_rep_id"], "110***********002X");
    assert_eq!(v["applicant"]["org_name"], "示例科技有限公司");

    // Bad requests get specific errors.
    let (status, v) = s
        .start("channel-demo", "no-such-plugin", person(ZHANG))
        .await;
    assert_eq!((status, v["error"].as_str()), (400, Some("unknown_plugin")));
    let (status, v) = s
        .call(
            "channel-demo",
            "POST",
            "/api/v1/verifications",
            Some(json!({"plugin": 1})),
        )
        .await;
    assert_eq!((status, v["error"].as_str()), (400, Some("malformed_json")));
    // ... without echoing what was sent (an ID number typed as a JSON number).
    let (status, v) = s
        .call(
            "channel-demo",
            "POST",
            "/api/v1/verifications",
            Some(json!({"plugin": "phone-real-name", "applicant": {"id_number": 110105194912310020_u64}})),
        )
        .await;
    assert_eq!((status, v["error"].as_str()), (400, Some("malformed_json")));
    assert!(!v.to_string().contains("110105194912310020"), "{v}");

    // Personal data is sealed at rest and never logged.
    assert!(server.is_running());
    drop(server);
    let data = s.demo.path().join("data");
    for file in ["appliance.db", "appliance.db-wal"] {
        for needle in [ZHANG.1, ZHANG.2, "13800138003"] {
            assert!(
                !file_contains(&data.join(file), needle),
                "{needle} in {file}"
            );
        }
    }
    let log = std::fs::read_to_string(s.demo.path().join("serve.log")).unwrap();
    assert!(!log.contains(ZHANG.1) && !log.contains(ZHANG.2));
    // The audit log records start and completion.
    let (ok, out, err) = run(Command::new("python3").args([
        "-c",
        "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute(\"select count(*) from audit_log where action like 'verification.%' and target = ?\", (sys.argv[2],)).fetchone()[0])",
        data.join("appliance.db").to_str().unwrap(),
        &id,
    ]));
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "2", "start + complete audit rows");
}

#[tokio::test]
async fn kill_9_mid_flow_then_restart_completes_the_verification() {
    let s = Setup::new();
    let server = s.demo.serve();
    // The carrier answers after 3 s: the appliance is killed while that action is in flight,
    // after the start step (with the action in its outbox) was committed.
    let (status, _) = s
        .sim
        .http(
            "POST",
            "/_sim/faults",
            Some(json!({"api": "carrier", "count": 1, "kind": "delay", "delay_ms": 3000})),
        )
        .await;
    assert_eq!(status, 200);
    let body =
        json!({"plugin": "phone-real-name", "applicant": person(ZHANG), "reference": "order-1"});
    let (api, client) = (s.demo.api, s.client("channel-demo"));
    let inflight = tokio::spawn(async move {
        api_request(
            api,
            client,
            "POST",
            "/api/v1/verifications",
            Some(serde_json::to_vec(&body).unwrap()),
        )
        .await
    });
    for _ in 0..50 {
        if s.sim.carrier_calls().await >= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        s.sim.carrier_calls().await,
        1,
        "the carrier check is in flight"
    );
    drop(server); // SIGKILL
    assert!(
        inflight.await.unwrap().is_err(),
        "the client saw the connection die"
    );

    // Restart: the committed-but-unanswered carrier action is performed again, then the SMS.
    let server = s.demo.serve();
    let (status, v) = s
        .call(
            "channel-demo",
            "POST",
            "/api/v1/verifications",
            Some(json!({"plugin": "phone-real-name", "applicant": person(ZHANG), "reference": "order-1"})),
        )
        .await;
    assert_eq!(
        status, 200,
        "the same reference returns the existing verification: {v}"
    );
    let id = v["id"].as_str().unwrap().to_owned();
    let v = s.wait_for(&id, "awaiting_user").await;
    assert_eq!(v["challenges"][0]["kind"], "sms_code");
    assert!(
        s.sim.carrier_calls().await >= 2,
        "the action was performed again"
    );

    // Killed again while awaiting the user: the code still completes it after a restart.
    drop(server);
    let _server = s.demo.serve();
    let code = s.sim.latest_code(ZHANG.2).await;
    let (status, v) = s.input("channel-demo", &id, &code).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["status"], "succeeded");
    assert_eq!(v["reference"], "order-1");
}

#[tokio::test]
async fn a_crashing_worker_plugin_does_not_take_the_server_down() {
    let s = Setup::new();
    let lib = built().join("libplugin_misbehaving.so");
    let sha = plugin_host::sha256_file(&lib).unwrap();
    append_config(
        &s.demo,
        &format!(
            "\n[[plugin]]\nname = \"misbehaving\"\npath = \"{}\"\nsha256 = \"{sha}\"\nisolation = \"worker\"\nconfig = {{ behaviour = \"segfault\" }}\n",
            lib.display()
        ),
    );
    let mut server = s.demo.serve();
    for _ in 0..6 {
        let (status, v) = s.start("operator", "misbehaving", json!({})).await;
        assert_eq!(status, 503, "{v}");
        assert_eq!(v["error"], "plugin_unavailable");
        assert!(
            v["message"].as_str().unwrap().contains("misbehaving"),
            "{v}"
        );
    }
    assert!(
        server.is_running(),
        "the appliance survived the plugin's crashes"
    );
    // The operator sees the crashes and the open circuit; a channel may not look.
    let (status, v) = s.call("operator", "GET", "/api/v1/plugins", None).await;
    assert_eq!(status, 200, "{v}");
    let bad = v["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "misbehaving")
        .unwrap()
        .clone();
    assert_eq!(bad["status"], "ready", "{bad}");
    assert_eq!(bad["isolation"], "worker");
    assert!(bad["worker"]["failures"].as_u64().unwrap() >= 3, "{bad}");
    assert_eq!(bad["worker"]["circuit_open"], true, "{bad}");
    let (status, _) = s.call("channel-demo", "GET", "/api/v1/plugins", None).await;
    assert_eq!(status, 403);
    let (status, _, _) = public_get(s.demo.public, "/healthz").await;
    assert_eq!(status, 200);
    // Other plugins and requests are still served.
    let (status, v) = s
        .start("channel-demo", "phone-real-name", person(ZHANG))
        .await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["status"], "awaiting_user");
    // A channel may not use a plugin its list does not name.
    let (status, v) = s.start("channel-demo", "misbehaving", json!({})).await;
    assert_eq!(
        (status, v["error"].as_str()),
        (403, Some("plugin_not_allowed"))
    );
}

#[test]
fn plugin_check_passes_a_good_plugin_and_fails_a_bad_one() {
    let bin = built().join("ca-appliance");
    let good = built().join("libplugin_phone_real_name.so");
    let (ok, out, err) = run(Command::new(&bin)
        .args(["plugin", "check"])
        .arg(&good)
        .args([
            "--config-json",
            r#"{"carrier_url": "https://carrier.example.cn", "sms_url": "https://sms.example.cn"}"#,
        ]));
    assert!(ok, "good plugin failed:\n{out}\n{err}");
    assert!(out.contains("RESULT: PASS"), "{out}");
    assert!(!out.contains("FAIL "), "{out}");

    let bad = built().join("libplugin_misbehaving.so");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.json");
    std::fs::write(&config, r#"{"behaviour": "segfault"}"#).unwrap();
    let (ok, out, _) = run(Command::new(&bin)
        .args(["plugin", "check"])
        .arg(&bad)
        .arg("--config")
        .arg(&config));
    assert!(!ok, "a crashing plugin must fail:\n{out}");
    assert!(
        out.contains("FAIL ") && out.contains("RESULT: FAIL"),
        "{out}"
    );

    let (ok, _, err) = run(Command::new(&bin).args(["plugin", "check", "/nonexistent/lib.so"]));
    assert!(!ok, "{err}");
}

#[tokio::test]
async fn check_config_refuses_a_wrong_hash_and_serve_marks_the_plugin_unavailable() {
    let s = Setup::new();
    let bin = built().join("ca-appliance");
    let config = s.demo.config();
    let check = || {
        run(Command::new(&bin)
            .arg("check-config")
            .arg("--config")
            .arg(&config))
    };
    let (ok, out, err) = check();
    assert!(ok, "{out}{err}");
    // The five verifiers and the demo channel's two channel plugins.
    assert!(
        out.contains("7 plugin(s), 2 of them channel plugin(s)"),
        "{out}"
    );

    // Tamper with the approved hash of phone-real-name.
    let text = std::fs::read_to_string(&config).unwrap();
    let start = text.find("name = \"phone-real-name\"").unwrap();
    let sha_at = start + text[start..].find("sha256 = \"").unwrap() + 10;
    let mut tampered = text.clone();
    tampered.replace_range(sha_at..sha_at + 64, &"0".repeat(64));
    std::fs::write(&config, &tampered).unwrap();
    let (ok, _, err) = check();
    assert!(!ok, "a wrong hash must be refused");
    // check-config names the key, the file, the problem and the fix.
    assert!(
        err.contains("refused: [[plugin]] phone-real-name sha256 in ")
            && err.contains("not the approved")
            && err.contains("fix: "),
        "{err}"
    );

    // serve keeps running other services; the refused plugin answers plugin_unavailable.
    let mut server = s.demo.serve();
    let (status, v) = s
        .start("channel-demo", "phone-real-name", person(ZHANG))
        .await;
    assert_eq!(status, 503, "{v}");
    assert_eq!(v["error"], "plugin_unavailable");
    assert!(v["message"].as_str().unwrap().contains("sha256"), "{v}");
    assert!(server.is_running());
    assert!(server.log_text().contains("plugin unavailable"));
    drop(server);

    // A secret file readable by others is refused too, naming the plugin.
    std::fs::write(&config, &text).unwrap();
    let key = s.demo.path().join("secrets/vendor-sim-api-key");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (ok, _, err) = check();
    assert!(!ok);
    assert!(
        err.contains("plugin ") && err.contains("chmod 600"),
        "{err}"
    );
    assert!(!err.contains(std::fs::read_to_string(&key).unwrap().trim()));
}

#[tokio::test]
async fn plugin_timers_fire_in_the_background() {
    let s = Setup::new();
    let lib = built().join("libplugin_misbehaving.so");
    let sha = plugin_host::sha256_file(&lib).unwrap();
    append_config(
        &s.demo,
        &format!(
            "\n[[plugin]]\nname = \"misbehaving\"\npath = \"{}\"\nsha256 = \"{sha}\"\nisolation = \"in_process\"\nconfig = {{ behaviour = \"timer\" }}\n",
            lib.display()
        ),
    );
    let _server = s.demo.serve();
    // The plugin asks for a 1.5 s timer; nobody calls the appliance again, its background task
    // fires the timer and the verification completes.
    let (status, v) = s.start("operator", "misbehaving", json!({})).await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["status"], "pending");
    assert_eq!(v["timers"][0]["id"], "poll");
    let id = v["id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/verifications/{id}");
    let mut last = Value::Null;
    for _ in 0..100 {
        let (code, v) = s.call("operator", "GET", &path, None).await;
        assert_eq!(code, 200, "{v}");
        if v["status"] == "succeeded" {
            assert_eq!(v["timers"], json!([]));
            return;
        }
        last = v;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the timer never fired: {last}");
}
