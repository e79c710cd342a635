//! Per-call overhead of one plugin step, in-process vs through the worker (pipe round trip).
//! Uses the misbehaving plugin's `ok` behaviour (a trivial step), so the figure is the host's
//! cost: serialise StepInput, call (or frame + pipe + worker + frame), validate StepOutput.
//!
//! Run (release): `cargo run --release -p plugin-host --example step_overhead [CALLS]`
//! (builds `plugin-misbehaving` and finds `ca-plugin-worker` in the same target dir).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark driver, not production code

use std::path::PathBuf;
use std::time::Instant;

use plugin_abi::doc::{Applicant, Event, StepInput};
use plugin_host::{Isolation, Plugin, PluginSpec, WorkerOptions};

fn target_profile_dir() -> PathBuf {
    // target/<profile>/examples/step_overhead -> target/<profile>
    let exe = std::env::current_exe().unwrap();
    exe.parent().and_then(|p| p.parent()).unwrap().to_path_buf()
}

async fn measure(plugin: &Plugin, calls: usize) -> (u128, u128, u128) {
    let input = StepInput {
        v: 1,
        verification_id: "vrf_bench".into(),
        now: "2026-11-24T12:00:00Z".into(),
        state: None,
        event: Event::Start {
            applicant: Applicant {
                name: Some("Bench".into()),
                ..Default::default()
            },
        },
    };
    for _ in 0..1000 {
        plugin.step(&input).await.unwrap();
    }
    let mut ns = Vec::with_capacity(calls);
    for _ in 0..calls {
        let t = Instant::now();
        plugin.step(&input).await.unwrap();
        ns.push(t.elapsed().as_nanos());
    }
    ns.sort_unstable();
    (
        ns[ns.len() / 2],
        ns[ns.len() * 99 / 100],
        ns.iter().sum::<u128>() / ns.len() as u128,
    )
}

#[tokio::main]
async fn main() {
    let calls: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_000);
    let dir = target_profile_dir();
    let profile = if dir.ends_with("release") {
        vec!["--release"]
    } else {
        vec![]
    };
    for args in [
        &["build", "-q", "-p", "plugin-misbehaving"][..],
        &[
            "build",
            "-q",
            "-p",
            "plugin-host",
            "--bin",
            "ca-plugin-worker",
        ][..],
    ] {
        let status = std::process::Command::new(env!("CARGO"))
            .args(args)
            .args(&profile)
            .status()
            .unwrap();
        assert!(status.success(), "cargo {args:?}");
    }
    let so = dir.join("libplugin_misbehaving.so");
    let sha = plugin_host::sha256_file(&so).unwrap();
    println!("{calls} calls per mode, build dir {}", dir.display());
    {
        // The bare ABI call (no tokio hand-off, no validation): the floor under both modes.
        let table = plugin_host::load::load_verified(&so, &sha).unwrap();
        let mut inst = table.configure(br#"{"behaviour":"ok"}"#).unwrap();
        let input = br#"{"v":1,"verification_id":"vrf_bench","now":"2026-11-24T12:00:00Z","state":null,"event":{"type":"start","applicant":{"name":"Bench"}}}"#;
        let mut ns = Vec::with_capacity(calls);
        for _ in 0..calls {
            let t = Instant::now();
            inst.step(input).unwrap();
            ns.push(t.elapsed().as_nanos());
        }
        ns.sort_unstable();
        println!(
            "raw ABI call: median {} ns, p99 {} ns",
            ns[ns.len() / 2],
            ns[ns.len() * 99 / 100]
        );
    }
    for iso in [Isolation::InProcess, Isolation::Worker] {
        let mut spec = PluginSpec::new("misbehaving", &so, &sha);
        spec.isolation = iso;
        spec.config = serde_json::json!({"behaviour": "ok"});
        let t = Instant::now();
        let plugin = Plugin::load_with(
            spec,
            WorkerOptions {
                worker_path: Some(dir.join("ca-plugin-worker")),
                ..WorkerOptions::default()
            },
        )
        .await
        .unwrap();
        let load = t.elapsed();
        let (median, p99, mean) = measure(&plugin, calls).await;
        println!("{iso:?}: load {load:?}; step median {median} ns, p99 {p99} ns, mean {mean} ns");
    }
}
