//! Crash containment: misbehaving plugins cost only their worker; the host lives, other plugins
//! answer meanwhile, the bad one is restarted and then circuit-broken. In-process panics are
//! caught by the SDK. Malformed output is rejected in both modes. Hash mismatches are refused.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{misbehaving, start_input, worker_options};
use plugin_abi::doc::Status;
use plugin_host::{Isolation, Plugin, PluginError, PluginSpec, WorkerOptions};

async fn load(behaviour: &str, isolation: Isolation, opts: WorkerOptions) -> Plugin {
    Plugin::load_with(misbehaving(behaviour, isolation), opts)
        .await
        .unwrap()
}

#[tokio::test]
async fn healthy_plugin_works_in_both_modes() {
    for iso in [Isolation::InProcess, Isolation::Worker] {
        let p = load("ok", iso, worker_options()).await;
        assert_eq!(p.manifest().name, "misbehaving");
        let out = p.step(&start_input("vrf_ok")).await.unwrap();
        assert_eq!(out.status, Status::Succeeded, "{iso:?}");
    }
}

async fn assert_contained(behaviour: &str, check: fn(&PluginError) -> bool) {
    let bad = load(behaviour, Isolation::Worker, worker_options()).await;
    let good = load("ok", Isolation::Worker, worker_options()).await;
    let bad_call = tokio::spawn(async move {
        let r = bad.step(&start_input("vrf_bad")).await;
        (bad, r)
    });
    // While the bad call is in progress (or already failed), the healthy plugin answers.
    let out = good.step(&start_input("vrf_good")).await.unwrap();
    assert_eq!(out.status, Status::Succeeded);
    let (bad, r) = bad_call.await.unwrap();
    let err = r.unwrap_err();
    assert!(check(&err), "{behaviour}: unexpected {err:?}");
    let h = bad.health().await.unwrap();
    assert_eq!(
        (h.spawns, h.failures, h.running),
        (1, 1, false),
        "{behaviour}: {h:?}"
    );
    // The next call restarts the worker (and fails again: the plugin is still bad).
    let err2 = bad.step(&start_input("vrf_bad2")).await.unwrap_err();
    assert!(check(&err2), "{behaviour}: unexpected {err2:?}");
    assert_eq!(
        bad.health().await.unwrap().spawns,
        2,
        "{behaviour}: restarted"
    );
    // The host process is alive and the healthy plugin still answers.
    assert!(good.step(&start_input("vrf_good2")).await.is_ok());
}

#[tokio::test]
async fn segfault_costs_only_the_worker() {
    assert_contained(
        "segfault",
        |e| matches!(e, PluginError::WorkerCrashed { reason } if reason.contains("SIGSEGV")),
    )
    .await;
}

#[tokio::test]
async fn abort_costs_only_the_worker() {
    assert_contained(
        "abort",
        |e| matches!(e, PluginError::WorkerCrashed { reason } if reason.contains("SIGABRT")),
    )
    .await;
}

#[tokio::test]
async fn panic_in_worker_fails_the_call_and_replaces_the_worker() {
    assert_contained("panic", |e| matches!(e, PluginError::Panicked)).await;
}

#[tokio::test]
async fn hang_is_killed_at_the_deadline() {
    let started = Instant::now();
    assert_contained("hang", |e| matches!(e, PluginError::Timeout { .. })).await;
    // two deadlines of 2 s, not a hang
    assert!(started.elapsed() < Duration::from_secs(15));
}

#[tokio::test]
async fn repeated_crashes_open_the_circuit_then_a_trial_after_cooldown() {
    let opts = WorkerOptions {
        failure_threshold: 3,
        cooldown: Duration::from_millis(800),
        ..worker_options()
    };
    let bad = load("abort", Isolation::Worker, opts).await;
    for i in 1..=3 {
        let e = bad.step(&start_input("vrf_cb")).await.unwrap_err();
        assert!(
            matches!(e, PluginError::WorkerCrashed { .. }),
            "call {i}: {e:?}"
        );
    }
    let h = bad.health().await.unwrap();
    assert!(h.circuit_open, "{h:?}");
    assert_eq!(h.spawns, 3);
    let e = bad.step(&start_input("vrf_cb")).await.unwrap_err();
    assert!(matches!(e, PluginError::CircuitOpen { .. }), "{e:?}");
    assert!(e.to_string().contains("circuit breaker open"));
    assert_eq!(bad.health().await.unwrap().spawns, 3, "no spawn while open");
    tokio::time::sleep(Duration::from_millis(900)).await;
    // Half-open: one trial call gets a fresh worker; it crashes, so the circuit opens again.
    let e = bad.step(&start_input("vrf_cb")).await.unwrap_err();
    assert!(matches!(e, PluginError::WorkerCrashed { .. }), "{e:?}");
    assert_eq!(bad.health().await.unwrap().spawns, 4);
    let e = bad.step(&start_input("vrf_cb")).await.unwrap_err();
    assert!(matches!(e, PluginError::CircuitOpen { .. }), "{e:?}");
}

#[tokio::test]
async fn in_process_panic_is_caught_and_poisons_the_instance() {
    let p = load("panic", Isolation::InProcess, worker_options()).await;
    for _ in 0..2 {
        let e = p.step(&start_input("vrf_p")).await.unwrap_err();
        assert!(matches!(e, PluginError::Panicked), "{e:?}");
    }
    // The host process is alive: another in-process plugin instance works.
    let ok = load("ok", Isolation::InProcess, worker_options()).await;
    assert!(ok.step(&start_input("vrf_ok")).await.is_ok());
}

#[tokio::test]
async fn malformed_output_is_rejected_in_both_modes() {
    for iso in [Isolation::InProcess, Isolation::Worker] {
        for (behaviour, needle) in [
            ("huge_output", "cap"),
            ("bad_json", "not valid JSON"),
            ("unknown_action", "unknown type"),
        ] {
            let p = load(behaviour, iso, worker_options()).await;
            match p.step(&start_input("vrf_bad")).await {
                Err(PluginError::BadOutput { reason }) => {
                    assert!(reason.contains(needle), "{iso:?} {behaviour}: {reason}")
                }
                other => panic!("{iso:?} {behaviour}: expected BadOutput, got {other:?}"),
            }
            if let Some(h) = p.health().await {
                assert_eq!(h.failures, 1, "{behaviour}: counted against the plugin");
            }
        }
    }
}

#[tokio::test]
async fn hash_mismatch_is_refused_with_a_clear_error() {
    for iso in [Isolation::InProcess, Isolation::Worker] {
        let mut spec = misbehaving("ok", iso);
        let actual = spec.sha256.clone();
        spec.sha256 = "00".repeat(32);
        let e = Plugin::load_with(spec, worker_options()).await.unwrap_err();
        match &e {
            PluginError::HashMismatch {
                expected,
                actual: got,
            } => {
                assert_eq!(expected, &"00".repeat(32));
                assert_eq!(got, &actual);
            }
            other => panic!("expected HashMismatch, got {other:?}"),
        }
        let msg = e.to_string();
        assert!(
            msg.contains("hash mismatch") && msg.contains("refusing to load"),
            "{msg}"
        );
    }
}

#[tokio::test]
async fn symlinked_plugin_path_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("lib.so");
    let mut spec = misbehaving("ok", Isolation::InProcess);
    std::os::unix::fs::symlink(&spec.path, &link).unwrap();
    spec.path = link;
    let e = Plugin::load_with(spec, worker_options()).await.unwrap_err();
    assert!(matches!(e, PluginError::Open { .. }), "{e:?}");
}

#[tokio::test]
async fn bad_config_is_a_config_error() {
    let mut spec = misbehaving("ok", Isolation::Worker);
    spec.config = serde_json::json!({"behaviour": "fly"});
    let e = Plugin::load_with(spec, worker_options()).await.unwrap_err();
    assert!(matches!(e, PluginError::Config(_)), "{e:?}");
}

#[tokio::test]
async fn worker_seccomp_denies_sockets() {
    let p = load("socket", Isolation::Worker, worker_options()).await;
    let out = p.step(&start_input("vrf_sock")).await.unwrap();
    let evidence = &out.result.unwrap().evidence;
    assert_eq!(evidence["socket"], "denied", "{evidence}");
    // In-process (no seccomp) the same call is not denied: proves the filter made the difference.
    let p = load("socket", Isolation::InProcess, worker_options()).await;
    let out = p.step(&start_input("vrf_sock")).await.unwrap();
    assert_ne!(out.result.unwrap().evidence["socket"], "denied");
}

#[tokio::test]
async fn worker_runs_confined() {
    let p = load("ok", Isolation::Worker, worker_options()).await;
    let pid = p.health().await.unwrap().pid.unwrap();
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = |name: &str| {
        limits
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name} in {limits}"))
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    let d = plugin_host::sandbox::Limits::default();
    assert!(
        line("Max address space").contains(&d.address_space.to_string()),
        "{limits}"
    );
    assert!(
        line("Max cpu time").contains(&d.cpu_seconds.to_string()),
        "{limits}"
    );
    assert!(
        line("Max open files").contains(&d.open_files.to_string()),
        "{limits}"
    );
    assert!(line("Max core file size").contains(" 0 0 "), "{limits}");
    assert!(line("Max processes").contains(" 0 0 "), "{limits}");
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    assert!(environ.is_empty(), "empty environment");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_owned())
            .unwrap_or_default()
    };
    assert_eq!(field("Seccomp:"), "2", "seccomp filter mode");
    assert_eq!(field("NoNewPrivs:"), "1");
    // clone3 -> ENOSYS, the allow-list, and (after configure) no file opens.
    assert_eq!(field("Seccomp_filters:"), "3");
    // Nothing inherited beyond the protocol pipes, stderr and the sealed library.
    let fds: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .map(|t| t.display().to_string())
        .collect();
    assert!(
        fds.iter().all(|t| t.starts_with("pipe:")
            || t.starts_with("/memfd:ca-plugin")
            || t == "/dev/null"
            || !t.starts_with('/')),
        "{fds:?}"
    );
}

#[test]
fn worker_dies_with_its_parent() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    let worker = env!("CARGO_BIN_EXE_ca-plugin-worker");
    // A shell starts the worker in the background (as its parent), prints its pid, and exits
    // once the test has seen the worker running (the flag file), however loaded the machine.
    let dir = tempfile::tempdir().unwrap();
    let flag = dir.path().join("seen");
    let mut sh = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "'{worker}' --parent-pid $$ & echo $!; while [ ! -e '{}' ]; do sleep 0.01; done",
            flag.display()
        ))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(sh.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let pid: u32 = line.trim().parse().unwrap();
    let alive = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    assert!(
        !alive.rsplit(')').next().unwrap().trim().starts_with('Z'),
        "running while sh lives"
    );
    std::fs::write(&flag, b"").unwrap();
    assert!(sh.wait().unwrap().success());
    // The worker's stdin (our pipe) is still open, so only the death signal can end it.
    let gone = (0..100).any(|_| {
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| s.rsplit(')').next().map(|r| r.trim().chars().next()))
            .flatten();
        if matches!(state, None | Some('Z') | Some('X')) {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
        false
    });
    assert!(gone, "worker {pid} outlived its parent");
    drop(sh.stdin.take());
}

#[test]
fn worker_refuses_to_start_orphaned() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ca-plugin-worker"))
        .args(["--parent-pid", "1"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("parent process already exited"));
}

#[tokio::test]
async fn oversized_input_is_refused_before_the_plugin_sees_it() {
    let p = load("ok", Isolation::Worker, worker_options()).await;
    let huge = vec![b' '; plugin_abi::doc::MAX_INPUT_BYTES + 1];
    let e = p.step_bytes(huge).await.unwrap_err();
    assert!(
        matches!(
            e,
            PluginError::Status {
                status: plugin_abi::StatusCode::InvalidArgument,
                ..
            }
        ),
        "{e:?}"
    );
    let h = p.health().await.unwrap();
    assert_eq!(
        (h.spawns, h.failures),
        (1, 0),
        "the worker was not involved"
    );
}

#[tokio::test]
async fn plugin_printing_to_stdout_cannot_corrupt_the_protocol() {
    let p = load("chatty", Isolation::Worker, worker_options()).await;
    for i in 0..3 {
        let out = p.step(&start_input("vrf_chatty")).await.unwrap();
        assert_eq!(out.status, Status::Succeeded, "call {i}");
    }
    let h = p.health().await.unwrap();
    assert_eq!((h.spawns, h.failures), (1, 0));
}

#[test]
fn in_process_hang_times_out_and_later_calls_fail_fast() {
    // Own runtime: the hung blocking thread never ends, so shut down without waiting for it.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut spec = misbehaving("hang", Isolation::InProcess);
        spec.step_deadline = Duration::from_millis(500);
        let p = Plugin::load_with(spec, worker_options()).await.unwrap();
        let t = Instant::now();
        let e = p.step(&start_input("vrf_hang")).await.unwrap_err();
        assert!(matches!(e, PluginError::Timeout { .. }), "{e:?}");
        assert!(t.elapsed() >= Duration::from_millis(500));
        let t = Instant::now();
        let e = p.step(&start_input("vrf_hang")).await.unwrap_err();
        assert!(matches!(e, PluginError::Timeout { .. }), "{e:?}");
        assert!(
            t.elapsed() < Duration::from_millis(100),
            "fails fast while the first call hangs"
        );
    });
    rt.shutdown_background();
}

/// The challenge payload of a hostile plugin's start reply: its report of what it got.
async fn hostile_report(p: &Plugin) -> serde_json::Value {
    let out = p.step(&start_input("vrf_hostile")).await.unwrap();
    assert_eq!(out.status, Status::AwaitingUser);
    match &out.actions[..] {
        [plugin_abi::doc::Action::Challenge(c)] => c.payload.clone(),
        other => panic!("expected one challenge, got {other:?}"),
    }
}

/// Secret files the hostile plugins go after, a drop directory, and what must not come back.
struct Loot {
    dir: tempfile::TempDir,
    secrets: Vec<std::path::PathBuf>,
}

impl Loot {
    fn new() -> Loot {
        let dir = tempfile::tempdir().unwrap();
        let mut secrets = Vec::new();
        for (name, text) in [
            ("hsm-user.pin", "31415926"),
            ("data.key", "k3y-b1t5-never-leave"),
        ] {
            let p = dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            secrets.push(p);
        }
        std::fs::create_dir(dir.path().join("drop")).unwrap();
        Loot { dir, secrets }
    }

    fn drop_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("drop")
    }

    /// Nothing secret in the report (as text or hex), nothing dropped.
    #[track_caller]
    fn assert_nothing_leaked(&self, report: &serde_json::Value) {
        let text = report.to_string();
        for s in &self.secrets {
            let secret = std::fs::read(s).unwrap();
            let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
            assert!(
                !text.contains(&hex),
                "secret {} leaked: {text}",
                s.display()
            );
            assert!(
                !text.contains(std::str::from_utf8(&secret).unwrap()),
                "{text}"
            );
        }
        let dropped: Vec<_> = std::fs::read_dir(self.drop_dir()).unwrap().collect();
        assert!(dropped.is_empty(), "files dropped: {dropped:?}");
    }
}

/// `report[key]` is an `{"error": ...}` object (the attempt failed).
#[track_caller]
fn failed(report: &serde_json::Value, what: &str) {
    let v = report
        .pointer(what)
        .unwrap_or_else(|| panic!("{what} in {report}"));
    assert!(
        v.get("error").is_some(),
        "{what} succeeded: {v} in {report}"
    );
}

#[tokio::test]
async fn hostile_rust_plugin_gets_nothing_in_a_worker() {
    let loot = Loot::new();
    // A private copy of the library, so that a successful overwrite would not hurt other tests.
    let library = loot.dir.path().join("libplugin_misbehaving.so");
    std::fs::copy(common::misbehaving_so(), &library).unwrap();
    let before = plugin_host::sha256_file(&library).unwrap();
    let mut spec = misbehaving("hostile", Isolation::Worker);
    spec.path = library.clone();
    spec.sha256 = before.clone();
    spec.config = serde_json::json!({"behaviour": "hostile", "targets": {
        "paths": loot.secrets, "drop_dir": loot.drop_dir(), "library": library}});
    let p = Plugin::load_with(spec, worker_options()).await.unwrap();
    let r = hostile_report(&p).await;

    // The filter was already on when the library's constructor ran.
    assert_eq!(r["at_load"]["seccomp"], 2, "{r}");
    assert_eq!(r["at_load"]["no_new_privs"], 1, "{r}");
    failed(&r, "/at_load/parent_cmdline");
    failed(&r, "/at_load/parent_environ");
    for i in 0..loot.secrets.len() {
        failed(&r, &format!("/steal/{i}/read"));
        failed(&r, &format!("/steal/{i}/dropped"));
    }
    loot.assert_nothing_leaked(&r);
    failed(&r, "/network/socket");
    failed(&r, "/network/connect");
    failed(&r, "/network/io_uring_setup");
    assert_eq!(r["fork"]["processes_started"], 0, "{r}");
    failed(&r, "/signal_parent/kill");
    failed(&r, "/signal_parent/tgkill");
    failed(&r, "/write_library/original");
    failed(&r, "/write_library/image/write");
    assert_eq!(plugin_host::sha256_file(&library).unwrap(), before);
    failed(&r, "/parent_memory/process_vm_readv");
    failed(&r, "/parent_memory/ptrace_attach");
    failed(&r, "/parent_memory/proc_mem");
    failed(&r, "/parent_memory/proc_environ");
    // The worker survived its own attacks and still answers.
    let h = p.health().await.unwrap();
    assert_eq!((h.spawns, h.failures, h.running), (1, 0, true), "{h:?}");
    hostile_report(&p).await;
}

#[tokio::test]
async fn hostile_c_plugin_gets_nothing_even_from_its_constructor() {
    let loot = Loot::new();
    let so = common::build_hostile_c(
        loot.dir.path(),
        &loot.secrets.iter().map(|p| p.as_path()).collect::<Vec<_>>(),
        &loot.drop_dir(),
    );
    let before = plugin_host::sha256_file(&so).unwrap();
    // Without the sandbox the constructor's theft works (proves the test can fail): in-process,
    // loading alone drops copies of the secrets.
    let mut control = PluginSpec::new("hostile-c", &so, before.clone());
    control.isolation = Isolation::InProcess;
    control.config = serde_json::json!({"attacks": ""});
    Plugin::load_with(control, worker_options()).await.unwrap();
    let dropped: Vec<_> = std::fs::read_dir(loot.drop_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(
        dropped.len(),
        loot.secrets.len(),
        "unconfined constructor: {dropped:?}"
    );
    for d in dropped {
        std::fs::remove_file(d).unwrap();
    }
    let mut spec = PluginSpec::new("hostile-c", &so, before.clone());
    spec.isolation = Isolation::Worker;
    spec.config = serde_json::json!({"attacks": "read socket io_uring fork kill_parent write_library vm_read"});
    let p = Plugin::load_with(spec, worker_options()).await.unwrap();
    let r = hostile_report(&p).await;
    assert_eq!(r["at_load"]["seccomp"], 2, "{r}");
    assert_eq!(r["at_load"]["no_new_privs"], 1, "{r}");
    for i in 0..loot.secrets.len() {
        assert!(r["at_load"]["steal"][i]["error"].is_string(), "{r}");
        assert!(r["at_load"]["steal"][i]["drop_error"].is_string(), "{r}");
        assert!(r["in_step"]["steal"][i]["error"].is_string(), "{r}");
    }
    loot.assert_nothing_leaked(&r);
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
    assert_eq!(plugin_host::sha256_file(&so).unwrap(), before);
    let h = p.health().await.unwrap();
    assert_eq!((h.failures, h.running), (0, true), "{h:?}");
}

#[tokio::test]
async fn library_runs_from_a_sealed_copy_of_the_approved_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let library = dir.path().join("libplugin_misbehaving.so");
    std::fs::copy(common::misbehaving_so(), &library).unwrap();
    let mut spec = misbehaving("ok", Isolation::Worker);
    spec.path = library.clone();
    let worker = Plugin::load_with(spec.clone(), worker_options())
        .await
        .unwrap();
    spec.isolation = Isolation::InProcess;
    let in_process = Plugin::load_with(spec, worker_options()).await.unwrap();
    // Rewrite the file in place (same inode) with zeros: a plain file mapping would now page
    // zeros in as code; the sealed memfd copies are unaffected.
    let len = std::fs::metadata(&library).unwrap().len() as usize;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&library)
        .and_then(|mut f| std::io::Write::write_all(&mut f, &vec![0u8; len]))
        .unwrap();
    for p in [&worker, &in_process] {
        let out = p.step(&start_input("vrf_sealed")).await.unwrap();
        assert_eq!(out.status, Status::Succeeded);
    }
    let pid = worker.health().await.unwrap().pid.unwrap();
    for maps in [
        std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap(),
        std::fs::read_to_string("/proc/self/maps").unwrap(),
    ] {
        assert!(maps.contains("/memfd:ca-plugin"), "{maps}");
        assert!(!maps.contains(library.to_str().unwrap()), "{maps}");
    }
    // The seals hold: the memfd can be neither written nor grown.
    let fd_link = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| e.ok())
        .find(|e| {
            std::fs::read_link(e.path())
                .map(|t| t.to_string_lossy().starts_with("/memfd:ca-plugin"))
                .unwrap_or(false)
        })
        .expect("the worker keeps its memfd open");
    let e = std::fs::OpenOptions::new()
        .write(true)
        .open(fd_link.path())
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"HOSTILE!"))
        .unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EPERM), "{e}");
}

#[tokio::test]
async fn worker_can_run_as_a_separate_user() {
    if running_as_root() {
        let opts = WorkerOptions {
            user: Some(plugin_host::sandbox::WorkerUser {
                uid: 65534,
                gid: 65534,
            }),
            ..worker_options()
        };
        let p = load("hostile", Isolation::Worker, opts).await;
        let pid = p.health().await.unwrap().pid.unwrap();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let line = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
                .unwrap_or_default()
        };
        assert_eq!(line("Uid:"), "65534 65534 65534 65534", "{status}");
        assert_eq!(line("Gid:"), "65534 65534 65534 65534", "{status}");
        assert_eq!(line("Groups:"), "", "{status}");
        let r = hostile_report(&p).await;
        assert_eq!(r["at_load"]["seccomp"], 2, "{r}");
        assert_eq!(r["fork"]["processes_started"], 0, "{r}");
    } else {
        eprintln!("skipped: switching users needs root");
    }
}

/// Whether this test process runs as root (reads /proc, no FFI).
fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}
