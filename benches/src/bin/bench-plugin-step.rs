//! Per-call overhead of one plugin `step`: in-process (a direct C-ABI call) versus in a
//! `ca-plugin-worker` process (a pipe round trip), through plugin-host's `Plugin::step` as the
//! appliance calls it (JSON in, validated JSON out).
//!
//! `cargo run --release -p benches --bin bench-plugin-step [-- --calls N]`
//!
//! It builds the release plugins and worker, then for each of two plugins — `misbehaving` in its
//! `ok` mode (a step that does nothing: pure overhead) and `phone-real-name` (a real start step
//! that validates the applicant and emits the carrier HTTP action) — times N sequential calls in
//! each isolation mode after a warm-up, and prints median, p99 and mean nanoseconds per call.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use plugin_abi::doc::{Applicant, Event, StepInput, DOC_VERSION};
use plugin_host::{Isolation, Plugin, PluginSpec, WorkerOptions};
use serde_json::json;
use system_tests::{target_dir, workspace_root};

fn calls() -> Result<usize, String> {
    let mut n = 20_000;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next().ok_or(format!("{arg} needs a value"))?;
        match arg.as_str() {
            "--calls" => n = value.parse().map_err(|e| format!("--calls: {e}"))?,
            other => return Err(format!("unknown option {other}")),
        }
    }
    if n == 0 {
        return Err("--calls must be positive".into());
    }
    Ok(n)
}

fn build() -> Result<PathBuf, String> {
    let status = Command::new(env!("CARGO"))
        .args(["build", "--release", "--quiet", "-p", "plugin-host"])
        .args(["-p", "plugin-misbehaving", "-p", "plugin-phone-real-name"])
        .current_dir(workspace_root())
        .status()
        .map_err(|e| format!("cargo: {e}"))?;
    if !status.success() {
        return Err("building the release plugins failed".into());
    }
    Ok(target_dir().join("release"))
}

struct Stats {
    median: u128,
    p99: u128,
    mean: u128,
}

fn stats(mut ns: Vec<u128>) -> Stats {
    ns.sort_unstable();
    let n = ns.len();
    Stats {
        median: ns[n / 2],
        p99: ns[(n * 99 / 100).min(n - 1)],
        mean: ns.iter().sum::<u128>() / n as u128,
    }
}

async fn measure(
    dir: &Path,
    name: &str,
    lib: &str,
    config: serde_json::Value,
    input: &StepInput,
    isolation: Isolation,
    calls: usize,
) -> Result<Stats, String> {
    let path = dir.join(format!("libplugin_{lib}.so"));
    let sha = plugin_host::sha256_file(&path).map_err(|e| e.to_string())?;
    let mut spec = PluginSpec::new(name, &path, sha);
    spec.isolation = isolation;
    spec.config = config;
    let options = WorkerOptions {
        worker_path: Some(dir.join("ca-plugin-worker")),
        ..WorkerOptions::default()
    };
    let plugin = Plugin::load_with(spec, options)
        .await
        .map_err(|e| format!("{name}: {e}"))?;
    for _ in 0..calls.min(1000) {
        plugin.step(input).await.map_err(|e| e.to_string())?;
    }
    let mut ns = Vec::with_capacity(calls);
    for _ in 0..calls {
        let t = Instant::now();
        plugin.step(input).await.map_err(|e| e.to_string())?;
        ns.push(t.elapsed().as_nanos());
    }
    Ok(stats(ns))
}

async fn run() -> Result<(), String> {
    let calls = calls()?;
    let dir = build()?;
    let start = |applicant: serde_json::Value| -> Result<StepInput, String> {
        let applicant: Applicant = serde_json::from_value(applicant).map_err(|e| e.to_string())?;
        Ok(StepInput {
            v: DOC_VERSION,
            verification_id: "vrf_bench".into(),
            now: "2026-11-24T12:00:00Z".into(),
            state: None,
            event: Event::Start { applicant },
        })
    };
    let cases = [
        (
            "misbehaving",
            "misbehaving",
            json!({"behaviour": "ok"}),
            start(json!({}))?,
        ),
        (
            "phone-real-name",
            "phone_real_name",
            json!({"carrier_url": "https://carrier.example.cn", "sms_url": "https://sms.example.cn"}),
            start(
                json!({"name": "张三", "id_number": "11010519491231002X", "phone": "13800138000"}),
            )?,
        ),
    ];
    println!("plugin step overhead, {calls} sequential calls per row (release build)");
    println!(
        "{:<17} {:<11} {:>12} {:>12} {:>12}",
        "plugin", "isolation", "median ns", "p99 ns", "mean ns"
    );
    for (name, lib, config, input) in &cases {
        for isolation in [Isolation::InProcess, Isolation::Worker] {
            let s = measure(&dir, name, lib, config.clone(), input, isolation, calls).await?;
            println!(
                "{name:<17} {:<11} {:>12} {:>12} {:>12}",
                format!("{isolation:?}"),
                s.median,
                s.p99,
                s.mean
            );
        }
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
