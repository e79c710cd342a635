//! Personal data lifecycle, end to end with real parts: the `ca-appliance` binary from
//! `init --demo` (data keys wrapped by the SoftHSM2 token), every verifier plugin in worker
//! processes against `vendor-sim`, a careless C plugin that puts the applicant's numbers into its
//! log line, stderr, stdout and error message, mTLS clients, the SQLite file read back with Python.
//! Covers: no ID, phone or card number and no face score in clear in the database, its WAL or
//! the log after every plugin ran (failures with plugin error text included); an online
//! `data-key rotate` under load that loses nothing and leaves nothing readable under the old key
//! (checked by decrypting with the old key, unwrapped from the HSM, in Python); the retention
//! purge removing applicant data of finished verifications only, keeping evidence, audited.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap: a failure is the test failing

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use system_tests::*;

const ZHANG_NAME: &str = "张三";
const ZHANG_ID: &str = "11010519491231002X";
const ZHANG_PHONE: &str = "13800138000";
const ZHANG_CARD: &str = "6222020000000000018";
const ORG: &str = "示例科技有限公司";
const USCC: &str = "91350100M000100Y43";
const ACCOUNT: &str = "110060000000001";
const REFERENCE: &str = "order-13800138000";

use system_tests::VendorSim as Sim;

/// A demo appliance wired to a vendor-sim that runs with the demo's API key.
struct Setup {
    demo: DemoDir,
    sim: Sim,
}

impl Setup {
    fn new() -> Setup {
        let tmp = tempfile::tempdir().unwrap();
        let (api, public, sim_addr) = (free_addr(), free_addr(), free_addr());
        let (ok, out, err) = run(Command::new(appliance_bin()).args([
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
        assert!(out.contains("personal-data key"), "{out}");
        let key = std::fs::read_to_string(tmp.path().join("secrets/vendor-sim-api-key")).unwrap();
        let sim = Sim::start(sim_addr, key.trim(), None);
        Setup {
            demo: DemoDir { tmp, api, public },
            sim,
        }
    }

    fn dir(&self) -> &Path {
        self.demo.path()
    }

    fn db(&self) -> PathBuf {
        self.dir().join("data/appliance.db")
    }

    /// Edits `appliance.toml`: `from` replaced by `to` (must be present).
    fn edit_config(&self, from: &str, to: &str) {
        let text = std::fs::read_to_string(self.demo.config()).unwrap();
        assert!(text.contains(from), "{from:?} not in the config");
        std::fs::write(self.demo.config(), text.replacen(from, to, 1)).unwrap();
    }

    fn client(&self, stem: &str) -> Arc<rustls::ClientConfig> {
        let tls = self.dir().join("tls");
        tls_client(
            &tls.join("ca.pem"),
            Identity::Files(
                &tls.join(format!("{stem}.pem")),
                &tls.join(format!("{stem}.key")),
            ),
        )
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let (status, bytes) = api_request(
            self.demo.api,
            self.client("channel-demo"),
            method,
            path,
            body.map(|b| serde_json::to_vec(&b).unwrap()),
        )
        .await
        .expect("an HTTP answer");
        (status, json(&bytes))
    }

    async fn start(&self, plugin: &str, applicant: Value, reference: Option<&str>) -> (u16, Value) {
        let mut body = json!({"plugin": plugin, "applicant": applicant});
        if let Some(r) = reference {
            body["reference"] = json!(r);
        }
        self.call("POST", "/api/v1/verifications", Some(body)).await
    }

    async fn input(&self, id: &str, kind: &str, value: &str) -> (u16, Value) {
        self.call(
            "POST",
            &format!("/api/v1/verifications/{id}/input"),
            Some(json!({"kind": kind, "value": value})),
        )
        .await
    }

    async fn get(&self, id: &str) -> Value {
        let (code, v) = self
            .call("GET", &format!("/api/v1/verifications/{id}"), None)
            .await;
        assert_eq!(code, 200, "{v}");
        v
    }

    /// Polls GET until `done` holds (bounded).
    async fn wait_until(&self, id: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let v = self.get(id).await;
            if done(&v) {
                return v;
            }
            assert!(Instant::now() < deadline, "{id} never {what}: {v}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn wait_status(&self, id: &str, status: &str) -> Value {
        self.wait_until(id, status, |v| v["status"] == status).await
    }
}

fn zhang() -> Value {
    json!({"name": ZHANG_NAME, "id_number": ZHANG_ID, "phone": ZHANG_PHONE, "bank_card": ZHANG_CARD})
}

fn org() -> Value {
    json!({"org_name": ORG, "uscc": USCC, "legal_rep_name": ZHANG_NAME, "legal_rep_id": ZHANG_ID})
}

/// Every occurrence of any needle in the file's bytes (empty if the file does not exist).
fn found_in(path: &Path, needles: &[&str]) -> Vec<String> {
    let bytes = std::fs::read(path).unwrap_or_default();
    needles
        .iter()
        .filter(|n| bytes.windows(n.len()).any(|w| w == n.as_bytes()))
        .map(|n| format!("{n:?} in {}", path.display()))
        .collect()
}

/// Compiles the careless C plugin into `dir`; returns its path.
fn build_leaky_plugin(dir: &Path) -> PathBuf {
    let root = workspace_root();
    let out = dir.join("libleaky.so");
    let (ok, _, err) = run(Command::new("cc")
        .args(["-std=c11", "-shared", "-fPIC", "-fvisibility=hidden", "-I"])
        .arg(root.join("plugins/abi/include"))
        .arg(root.join("tests/tests/personal_data/leaky_plugin.c"))
        .arg("-o")
        .arg(&out));
    assert!(ok, "cc: {err}");
    out
}

fn python(script: &str, args: &[&str]) -> String {
    let (ok, out, err) = run(Command::new("python3").arg("-c").arg(script).args(args));
    assert!(ok, "python failed:\n{out}\n{err}");
    out
}

#[tokio::test]
async fn no_identity_number_or_face_score_in_clear_in_database_wal_or_log_after_every_plugin() {
    let s = Setup::new();
    let leaky = build_leaky_plugin(s.dir());
    let sha = plugin_host::sha256_file(&leaky).unwrap();
    s.edit_config("verifications = [", "verifications = [\"leaky\", ");
    append_config(
        &s.demo,
        &format!(
            "\n[[plugin]]\nname = \"leaky\"\npath = \"{}\"\nsha256 = \"{sha}\"\nisolation = \"worker\"\n",
            leaky.display()
        ),
    );
    let server = s.demo.serve();

    // phone-real-name: success (with a reference that holds a phone number), then a wrong code.
    let (code, v) = s.start("phone-real-name", zhang(), Some(REFERENCE)).await;
    assert_eq!(code, 201, "{v}");
    let id = v["id"].as_str().unwrap().to_owned();
    let otp = s.sim.latest_code(ZHANG_PHONE).await;
    let (code, v) = s.input(&id, "sms_code", &otp).await;
    assert_eq!(
        (code, v["status"].as_str()),
        (200, Some("succeeded")),
        "{v}"
    );
    let (_, v) = s.start("phone-real-name", zhang(), None).await;
    let id = v["id"].as_str().unwrap().to_owned();
    let (code, v) = s.input(&id, "sms_code", "000000").await;
    assert!(code == 200 || code == 422, "{v}");

    // bank-card: SMS from the bank to the reserved phone.
    let (code, v) = s.start("bank-card", zhang(), None).await;
    assert_eq!(code, 201, "{v}");
    let id = v["id"].as_str().unwrap().to_owned();
    let otp = s.sim.latest_code(ZHANG_PHONE).await;
    let (code, v) = s.input(&id, "sms_code", &otp).await;
    assert_eq!(
        (code, v["status"].as_str()),
        (200, Some("succeeded")),
        "{v}"
    );

    // face: the person completes on the vendor page; the plugin polls by timer; a score results.
    let (code, v) = s.start("face", zhang(), None).await;
    assert_eq!(code, 201, "{v}");
    let id = v["id"].as_str().unwrap().to_owned();
    let url = v["challenges"][0]["payload"]["url"].as_str().unwrap();
    let page = format!("/face/page/{}", url.split_once("/face/page/").unwrap().1);
    assert_eq!(
        s.sim
            .http("POST", &format!("{page}/complete"), Some(json!({})))
            .await
            .0,
        200
    );
    let v = s.wait_status(&id, "succeeded").await;
    assert_eq!(v["evidence"]["similarity"], 96.5, "the score exists: {v}");

    // corporate-transfer: the amount paid into the account.
    let company =
        json!({"org_name": ORG, "bank_account": ACCOUNT, "bank_name": "示例银行", "uscc": USCC});
    let (code, v) = s.start("corporate-transfer", company, None).await;
    assert_eq!(code, 201, "{v}");
    let id = v["id"].as_str().unwrap().to_owned();
    let amount = s.sim.deposit_answer(ACCOUNT).await;
    let (code, v) = s.input(&id, "deposit_amount", &amount).await;
    assert_eq!(
        (code, v["status"].as_str()),
        (200, Some("succeeded")),
        "{v}"
    );

    // org-registry: one step.
    let (code, v) = s.start("org-registry", org(), None).await;
    assert!(code == 201 || code == 200, "{v}");
    assert_eq!(v["status"], "succeeded", "{v}");

    // The careless plugin: its error text quotes the numbers; the answer must not.
    let (code, v) = s.start("leaky", zhang(), None).await;
    assert!(code >= 400, "{v}");
    let answer = v.to_string();
    for n in [ZHANG_ID, ZHANG_PHONE, ZHANG_CARD] {
        assert!(!answer.contains(n), "{n} in the answer {answer}");
    }

    // What the plugin logged and printed reached the log, scrubbed.
    let deadline = Instant::now() + Duration::from_secs(20);
    while server.log_text().matches("LEAK").count() < 3 {
        assert!(
            Instant::now() < deadline,
            "plugin lines missing:\n{}",
            server.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(server.log_text().contains("[number]"));

    let needles = [
        ZHANG_ID,
        ZHANG_PHONE,
        ZHANG_CARD,
        "138 0013 8000",
        ACCOUNT,
        REFERENCE,
        "96.5",
        "similarity",
        ZHANG_NAME,
    ];
    let mut found = Vec::new();
    for f in ["appliance.db", "appliance.db-wal", "appliance.db-shm"] {
        found.extend(found_in(&s.dir().join("data").join(f), &needles));
    }
    found.extend(found_in(&server.log, &needles[..7]));
    assert!(found.is_empty(), "personal data in clear: {found:?}");
    assert!(
        std::fs::metadata(s.dir().join("data/appliance.db-wal")).is_ok_and(|m| m.len() > 0)
            || std::fs::metadata(s.db()).is_ok_and(|m| m.len() > 0),
        "the database was written"
    );
    drop(server);
}

/// Decrypts every sealed value of every row with `key` (hex) as key `key_id`, with Python's
/// `cryptography`; prints `opened failed` counts and the distinct key ids of the rows.
const CHECK_ROWS: &str = r#"
import sqlite3, sys
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
db, key, key_id = sys.argv[1], bytes.fromhex(sys.argv[2]), int(sys.argv[3])
aes = AESGCM(key)
conn = sqlite3.connect(db)
opened = failed = 0
ids = set()
for row in conn.execute("SELECT id, key_id, sealed_applicant, sealed_state, sealed_result, sealed_reference FROM verifications"):
    ids.add(row[1])
    for field, blob in zip(["applicant", "state", "result", "reference"], row[2:]):
        if blob is None:
            continue
        blob_key = int.from_bytes(blob[:4], "big")
        ok = False
        for kid in {key_id, blob_key}:
            aad = row[0].encode() + b"\0" + field.encode() + b"\0" + kid.to_bytes(4, "big")
            try:
                aes.decrypt(blob[4:16], blob[16:], aad)
                ok = True
            except Exception:
                pass
        if ok:
            opened += 1
        else:
            failed += 1
print(opened, failed, ",".join(str(i) for i in sorted(ids)))
"#;

fn check_rows(db: &Path, key: &[u8], key_id: u32) -> (u64, u64, String) {
    let out = python(
        CHECK_ROWS,
        &[db.to_str().unwrap(), &hex::encode(key), &key_id.to_string()],
    );
    let mut it = out.split_whitespace();
    let opened = it.next().unwrap().parse().unwrap();
    let failed = it.next().unwrap().parse().unwrap();
    (opened, failed, it.next().unwrap_or("").to_owned())
}

/// The demo's only data key, unwrapped with the HSM (as the server does at start).
async fn unwrap_current_key(s: &Setup) -> (u32, Vec<u8>) {
    let out = python(
        "import sqlite3,sys\nfor r in sqlite3.connect(sys.argv[1]).execute(\"SELECT id, wrapping_key, hex(iv), hex(wrapped) FROM data_keys WHERE state='active'\"): print(r[0], r[1], r[2], r[3])",
        &[s.db().to_str().unwrap()],
    );
    let f: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(f.len(), 4, "one active key: {out}");
    let config = std::fs::read_to_string(s.demo.config()).unwrap();
    let module = config
        .lines()
        .find_map(|l| l.strip_prefix("module = \""))
        .and_then(|l| l.strip_suffix('"'))
        .unwrap();
    std::env::set_var("SOFTHSM2_CONF", s.dir().join("softhsm2.conf"));
    let hsm = hsm::Hsm::open(&hsm::HsmConfig {
        module: module.into(),
        token_label: "ca-appliance-demo".into(),
        pin: hsm::PinSource::File(s.dir().join("secrets/hsm-user.pin")),
        pool_size: 1,
        sm2: None,
        sm2_signer_id: None,
    })
    .await
    .unwrap();
    let wrapped = hsm::WrappedSecret {
        iv: hex::decode(f[2]).unwrap().try_into().unwrap(),
        ciphertext: hex::decode(f[3]).unwrap(),
    };
    let key = hsm
        .unwrap_secret(
            &f[1].parse().unwrap(),
            &wrapped,
            b"ca-appliance verification data key v1",
        )
        .await
        .unwrap();
    (f[0].parse().unwrap(), key.to_vec())
}

#[tokio::test]
async fn data_key_rotation_under_load_loses_nothing_and_leaves_nothing_under_the_old_key() {
    let s = Arc::new(Setup::new());
    // The load below starts many verifications for the same people: lift their per-subject limits.
    append_config(
        &s.demo,
        "\n[verification.subject_limits]\nstarts = { per_hour = 100000, per_day = 100000 }\n\
         sms = { per_hour = 100000, per_day = 100000 }\ncarrier = { per_hour = 100000, per_day = 100000 }\n",
    );
    let server = s.demo.serve();

    // Open verifications awaiting the user (their plugin state must survive the rotation).
    let mut open = Vec::new();
    for i in 0..3 {
        let (code, v) = s
            .start("phone-real-name", zhang(), Some(&format!("open-{i}")))
            .await;
        assert_eq!(code, 201, "{v}");
        open.push(v["id"].as_str().unwrap().to_owned());
    }
    let (code, v) = s.start("org-registry", org(), Some("before")).await;
    assert!(code < 300, "{v}");
    let mut created = vec![v["id"].as_str().unwrap().to_owned()];

    // The positive control: the old key opens every sealed value before the rotation.
    let (old_id, old_key) = unwrap_current_key(&s).await;
    let (opened, failed, _) = check_rows(&s.db(), &old_key, old_id);
    assert!(
        opened >= 8 && failed == 0,
        "old key before rotation: {opened} {failed}"
    );

    // Load: two clients keep creating verifications while the rotation runs.
    let stop = Arc::new(AtomicBool::new(false));
    let mut loaders = Vec::new();
    for l in 0..2 {
        let (s, stop) = (s.clone(), stop.clone());
        loaders.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) || n < 5 {
                let (code, v) = s
                    .start("org-registry", org(), Some(&format!("load-{l}-{n}")))
                    .await;
                assert!(
                    code < 300,
                    "a verification was refused during the rotation: {v}"
                );
                ids.push((
                    format!("load-{l}-{n}"),
                    v["id"].as_str().unwrap().to_owned(),
                ));
                n += 1;
            }
            ids
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let config = s.demo.config();
    let rotate = tokio::task::spawn_blocking(move || {
        run(Command::new(appliance_bin())
            .args(["data-key", "rotate", "--config"])
            .arg(config))
    })
    .await
    .unwrap();
    assert!(rotate.0, "rotate failed:\n{}\n{}", rotate.1, rotate.2);
    assert!(rotate.1.contains("re-sealed"), "{}", rotate.1);
    stop.store(true, Ordering::SeqCst);
    let mut by_reference = Vec::new();
    for l in loaders {
        by_reference.extend(l.await.unwrap());
    }
    assert!(by_reference.len() >= 10, "load ran: {}", by_reference.len());
    created.extend(by_reference.iter().map(|(_, id)| id.clone()));

    // Nothing is readable under the old key any more; every row is under one new key.
    let (opened, failed, key_ids) = check_rows(&s.db(), &old_key, old_id);
    assert_eq!(
        opened, 0,
        "values still open with the old key ({failed} refused)"
    );
    assert!(failed >= 8 + 2 * by_reference.len() as u64, "{failed}");
    assert_ne!(key_ids, old_id.to_string());
    assert!(!key_ids.contains(','), "one key for every row: {key_ids}");
    let keys = python(
        "import sqlite3,sys\nprint([r for r in sqlite3.connect(sys.argv[1]).execute('SELECT id, state FROM data_keys')])",
        &[s.db().to_str().unwrap()],
    );
    assert!(
        !keys.contains(&format!("({old_id},")),
        "old key destroyed: {keys}"
    );

    // Nothing lost: every verification reads back through the API, references still resolve.
    for id in &created {
        let v = s.get(id).await;
        assert_eq!(v["status"], "succeeded", "{v}");
        assert_eq!(v["applicant"]["legal_rep_id"], "110***********002X", "{v}");
    }
    for (reference, id) in by_reference.iter().take(5) {
        let (_, v) = s.start("org-registry", org(), Some(reference)).await;
        assert_eq!(v["id"], id.as_str(), "idempotent after rotation: {v}");
    }
    // Open verifications continue under the new key.
    let otp = s.sim.latest_code(ZHANG_PHONE).await;
    let (code, v) = s.input(&open[2], "sms_code", &otp).await;
    assert_eq!(
        (code, v["status"].as_str()),
        (200, Some("succeeded")),
        "{v}"
    );

    // A restart holds only the new key and reads everything.
    drop(server);
    let _server = s.demo.serve();
    for id in created.iter().chain(&open) {
        let v = s.get(id).await;
        assert_eq!(
            v["applicant"]["id_number"].is_null(),
            v["plugin"] == "org-registry"
        );
    }
}

#[tokio::test]
async fn retention_purges_applicant_data_of_finished_verifications_keeps_evidence_and_audits() {
    let s = Setup::new();
    s.edit_config(
        "retention_days = 30\n",
        "retention_days = 0\npurge_every_secs = 1\n",
    );
    let server = s.demo.serve();

    let (code, running) = s.start("phone-real-name", zhang(), Some("running")).await;
    assert_eq!(code, 201, "{running}");
    let running = running["id"].as_str().unwrap().to_owned();
    let (code, done) = s.start("org-registry", org(), Some("done")).await;
    assert!(code < 300, "{done}");
    assert_eq!(done["applicant"]["legal_rep_id"], "110***********002X");
    let evidence = done["evidence"].clone();
    assert!(!evidence.is_null(), "{done}");
    let done = done["id"].as_str().unwrap().to_owned();

    let v = s
        .wait_until(&done, "purged", |v| v["applicant"] == json!({}))
        .await;
    assert_eq!(v["status"], "succeeded");
    assert_eq!(v["evidence"], evidence, "evidence kept");
    assert!(v["reference"].is_null());
    // A later pass purges a second finished one; the running one keeps its data throughout.
    let (_, second) = s.start("org-registry", org(), None).await;
    let second = second["id"].as_str().unwrap().to_owned();
    s.wait_until(&second, "purged", |v| v["applicant"] == json!({}))
        .await;
    let v = s.get(&running).await;
    assert_eq!(v["status"], "awaiting_user");
    assert_eq!(v["applicant"]["id_number"], "110***********002X", "{v}");
    // ... and finishes normally, then is purged in its turn.
    let otp = s.sim.latest_code(ZHANG_PHONE).await;
    let (code, v) = s.input(&running, "sms_code", &otp).await;
    assert_eq!(
        (code, v["status"].as_str()),
        (200, Some("succeeded")),
        "{v}"
    );
    s.wait_until(&running, "purged", |v| v["applicant"] == json!({}))
        .await;

    // In the database: personal columns gone, the sealed result kept, the purge audited.
    let out = python(
        r#"
import sqlite3, sys, json
c = sqlite3.connect(sys.argv[1])
for r in c.execute("SELECT id, sealed_applicant IS NULL, sealed_state IS NULL, sealed_reference IS NULL, reference_mac IS NULL, sealed_result IS NOT NULL, purged_at IS NOT NULL FROM verifications ORDER BY id"):
    print("row", r[0], *[int(x) for x in r[1:]])
for (d,) in c.execute("SELECT detail FROM audit_log WHERE action = 'verification.purge' AND actor = 'system:retention'"):
    print("audit", " ".join(json.loads(d)["verifications"]))
"#,
        &[s.db().to_str().unwrap()],
    );
    for id in [&done, &second, &running] {
        assert!(
            out.contains(&format!("row {id} 1 1 1 1 1 1")),
            "{id}:\n{out}"
        );
        assert!(
            out.lines()
                .any(|l| l.starts_with("audit") && l.contains(id.as_str())),
            "purge of {id} audited:\n{out}"
        );
    }
    drop(server);
}

#[test]
fn a_clear_data_key_file_of_earlier_versions_is_refused_with_instructions() {
    let demo = DemoDir::create();
    let key = demo.path().join("secrets/verification-data.key");
    std::fs::write(&key, "00".repeat(32)).unwrap();
    let text = std::fs::read_to_string(demo.config()).unwrap();
    let text = text.replacen(
        "[verification]\n",
        "[verification]\ndata_key = { file = \"secrets/verification-data.key\" }\n",
        1,
    );
    std::fs::write(demo.config(), text).unwrap();
    for command in ["check-config", "serve"] {
        let (ok, out, err) = run(Command::new(appliance_bin())
            .args([command, "--config"])
            .arg(demo.config()));
        assert!(!ok, "{command} accepted a clear data key:\n{out}");
        assert!(
            err.contains("[verification] data_key") && err.contains("data-key rotate"),
            "{command}: {err}"
        );
        assert!(!err.contains(&"00".repeat(32)));
    }
}
