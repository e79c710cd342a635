//! Hostile plugins inside the real appliance: a demo directory (`init --demo`, real SoftHSM2
//! token, real SQLite), a malicious C verifier (theft in its library constructor and in `step`)
//! and the Rust `misbehaving` plugin's `hostile` behaviour, both with `isolation = "worker"`,
//! aimed at the HSM user PIN file, the database (holding the personal-data keys, wrapped by the
//! HSM) and the token files. Each
//! attempt (read + drop a copy, socket, io_uring, fork, SIGKILL the parent, overwrite its own
//! library, read the parent's memory) must fail: nothing secret in what the plugin hands the
//! channel, nothing dropped, library files unchanged, and the appliance keeps serving (healthz,
//! an issuance, the plugin itself).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap: a failure is the test failing

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};
use system_tests::*;

fn client(demo: &DemoDir, stem: &str) -> std::sync::Arc<rustls::ClientConfig> {
    let tls = demo.path().join("tls");
    tls_client(
        &tls.join("ca.pem"),
        Identity::Files(
            &tls.join(format!("{stem}.pem")),
            &tls.join(format!("{stem}.key")),
        ),
    )
}

async fn call(
    demo: &DemoDir,
    who: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let (status, bytes) = api_request(
        demo.api,
        client(demo, who),
        method,
        path,
        body.map(|b| serde_json::to_vec(&b).unwrap()),
    )
    .await
    .expect("an HTTP answer");
    (status, json(&bytes))
}

/// The appliance's secrets the plugins go after: PIN, database (wrapped data keys), token files.
fn secrets(demo: &DemoDir) -> Vec<PathBuf> {
    let dir = demo.path();
    let mut files = vec![
        dir.join("secrets/hsm-user.pin"),
        dir.join("data/appliance.db"),
    ];
    for token in std::fs::read_dir(dir.join("tokens")).unwrap() {
        let token = token.unwrap().path();
        if token.is_dir() {
            let object = std::fs::read_dir(&token)
                .unwrap()
                .map(|e| e.unwrap().path())
                .find(|p| p.extension().is_some_and(|e| e == "object"))
                .expect("a token object file");
            files.push(object);
        }
    }
    for f in &files {
        assert!(f.is_file(), "{} exists", f.display());
    }
    files
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().take(64).map(|b| format!("{b:02x}")).collect()
}

/// Nothing of any secret in the report (as text, or as the hex the plugins encode loot in).
#[track_caller]
fn assert_no_secret(report: &Value, secrets: &[PathBuf]) {
    let text = report.to_string();
    for s in secrets {
        let bytes = std::fs::read(s).unwrap();
        assert!(
            !text.contains(&hex(&bytes[..bytes.len().min(16)])),
            "{} leaked: {text}",
            s.display()
        );
        if s.extension().is_some_and(|e| e == "pin" || e == "key") {
            let t = String::from_utf8_lossy(&bytes);
            assert!(!text.contains(t.trim()), "{} leaked: {text}", s.display());
        }
    }
}

#[track_caller]
fn failed(report: &Value, what: &str) {
    let v = report
        .pointer(what)
        .unwrap_or_else(|| panic!("{what} in {report}"));
    assert!(
        v.get("error").is_some(),
        "{what} succeeded: {v}\nin {report}"
    );
}

fn build_hostile_c(dir: &Path, targets: &[PathBuf], drop_dir: &Path) -> PathBuf {
    let out = dir.join("libhostile_c.so");
    let list: Vec<String> = targets.iter().map(|p| p.display().to_string()).collect();
    let (ok, _, err) = run(Command::new("cc")
        .args([
            "-std=gnu11",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-O2",
            "-shared",
            "-fPIC",
        ])
        .arg("-fvisibility=hidden")
        .arg(format!("-DHOSTILE_TARGETS=\"{}\"", list.join(":")))
        .arg(format!("-DHOSTILE_DROP_DIR=\"{}\"", drop_dir.display()))
        .arg(format!("-DHOSTILE_LIBRARY=\"{}\"", out.display()))
        .arg("-I")
        .arg(workspace_root().join("plugins/abi/include"))
        .arg(workspace_root().join("plugins/reference-c/hostile.c"))
        .arg("-o")
        .arg(&out));
    assert!(ok, "cc hostile.c: {err}");
    out
}

fn plugin_entry(name: &str, lib: &Path, config: &str) -> String {
    let sha = plugin_host::sha256_file(lib).unwrap();
    format!(
        "\n[[plugin]]\nname = \"{name}\"\npath = \"{}\"\nsha256 = \"{sha}\"\nisolation = \"worker\"\nconfig = {config}\n",
        lib.display()
    )
}

/// Starts a verification with `plugin` as the operator; returns the challenge payload.
async fn attack(demo: &DemoDir, plugin: &str) -> Value {
    let (status, v) = call(
        demo,
        "operator",
        "POST",
        "/api/v1/verifications",
        Some(json!({"plugin": plugin, "applicant": {"name": "Mallory"}})),
    )
    .await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["status"], "awaiting_user", "{v}");
    v["challenges"][0]["payload"].clone()
}

async fn assert_still_serving(demo: &DemoDir, server: &mut Server) {
    assert!(server.is_running(), "the appliance is alive");
    let (status, _, _) = public_get(demo.public, "/healthz").await;
    assert_eq!(status, 200);
    let csr = openssl_csr(demo.path(), "after-attack", "ec:P-256");
    let body = issue_body("personal", &csr, json!({"name": "张三"}));
    let (status, resp) = api_request(
        demo.api,
        client(demo, "operator"),
        "POST",
        "/api/v1/certificates",
        Some(body),
    )
    .await
    .unwrap();
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&resp));
}

#[tokio::test]
async fn hostile_plugins_in_workers_get_no_secret_and_the_appliance_keeps_serving() {
    let demo = DemoDir::create();
    let secrets = secrets(&demo);
    let work = tempfile::tempdir().unwrap();
    let drop_dir = work.path().join("drop");
    std::fs::create_dir(&drop_dir).unwrap();

    let c_lib = build_hostile_c(work.path(), &secrets, &drop_dir);
    let rust_lib = work.path().join("libplugin_misbehaving.so");
    std::fs::copy(binaries().join("libplugin_misbehaving.so"), &rust_lib).unwrap();
    let hashes = [c_lib.clone(), rust_lib.clone()].map(|l| plugin_host::sha256_file(&l).unwrap());
    let paths: Vec<String> = secrets
        .iter()
        .map(|p| format!("{:?}", p.display().to_string()))
        .collect();
    append_config(
        &demo,
        &plugin_entry(
            "hostile-c",
            &c_lib,
            "{ attacks = \"read socket io_uring fork kill_parent write_library vm_read\" }",
        ),
    );
    append_config(
        &demo,
        &plugin_entry(
            "misbehaving",
            &rust_lib,
            &format!(
                "{{ behaviour = \"hostile\", targets = {{ paths = [{}], drop_dir = {:?}, library = {:?} }} }}",
                paths.join(", "),
                drop_dir.display().to_string(),
                rust_lib.display().to_string()
            ),
        ),
    );
    let mut server = demo.serve();

    // The C plugin: theft in its constructor and in step, then every other attack.
    let r = attack(&demo, "hostile-c").await;
    assert_eq!(
        r["at_load"]["seccomp"], 2,
        "filtered before the constructor ran: {r}"
    );
    for i in 0..secrets.len() {
        assert!(
            r["at_load"]["steal"][i]["error"].is_string(),
            "constructor read {i}: {r}"
        );
        assert!(r["at_load"]["steal"][i]["drop_error"].is_string(), "{r}");
        assert!(
            r["in_step"]["steal"][i]["error"].is_string(),
            "step read {i}: {r}"
        );
    }
    for what in [
        "socket",
        "io_uring_setup",
        "kill_parent",
        "write_original",
        "write_image",
        "process_vm_readv",
    ] {
        failed(&r, &format!("/in_step/{what}"));
    }
    assert_eq!(r["in_step"]["fork"]["started"], 0, "{r}");
    assert_no_secret(&r, &secrets);
    assert_still_serving(&demo, &mut server).await;

    // The Rust plugin: the same goals, plus the parent's command line, environment and memory.
    let r = attack(&demo, "misbehaving").await;
    assert_eq!(r["at_load"]["seccomp"], 2, "{r}");
    failed(&r, "/at_load/parent_cmdline");
    failed(&r, "/at_load/parent_environ");
    for i in 0..secrets.len() {
        failed(&r, &format!("/steal/{i}/read"));
        failed(&r, &format!("/steal/{i}/dropped"));
    }
    for what in [
        "/network/socket",
        "/network/connect",
        "/network/io_uring_setup",
        "/signal_parent/kill",
        "/signal_parent/tgkill",
        "/write_library/original",
        "/write_library/image/write",
        "/parent_memory/process_vm_readv",
        "/parent_memory/ptrace_attach",
        "/parent_memory/proc_mem",
        "/parent_memory/proc_environ",
    ] {
        failed(&r, what);
    }
    assert_eq!(r["fork"]["processes_started"], 0, "{r}");
    assert_no_secret(&r, &secrets);
    assert_still_serving(&demo, &mut server).await;

    // Nothing dropped anywhere, the libraries unchanged, the workers still up and unfaulted.
    let dropped: Vec<_> = std::fs::read_dir(&drop_dir).unwrap().collect();
    assert!(dropped.is_empty(), "{dropped:?}");
    for (lib, sha) in [c_lib, rust_lib].iter().zip(&hashes) {
        assert_eq!(
            &plugin_host::sha256_file(lib).unwrap(),
            sha,
            "{} unchanged",
            lib.display()
        );
    }
    let (status, v) = call(&demo, "operator", "GET", "/api/v1/plugins", None).await;
    assert_eq!(status, 200, "{v}");
    for name in ["hostile-c", "misbehaving"] {
        let p = v["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap();
        assert_eq!(p["status"], "ready", "{p}");
        assert_eq!(p["worker"]["failures"], 0, "{p}");
    }
    // And the log carries no secret either (the plugins' stderr goes there).
    let log = server.log_text();
    let pin = std::fs::read_to_string(demo.path().join("secrets/hsm-user.pin")).unwrap();
    assert!(!log.contains(pin.trim()), "PIN in the log");
}
