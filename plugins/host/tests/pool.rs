//! Worker pool supervision: a hung call does not make later callers queue behind it (each call
//! ends within its own deadline), a hung worker is killed and replaced, concurrency is bounded,
//! and repeated invalid output opens the circuit like a crash does.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{misbehaving, start_input, worker_options};
use plugin_abi::doc::Status;
use plugin_host::{Isolation, Plugin, PluginError, WorkerOptions};

const DEADLINE: Duration = Duration::from_millis(1500);

async fn load(behaviour: &str, opts: WorkerOptions) -> Arc<Plugin> {
    let mut spec = misbehaving(behaviour, Isolation::Worker);
    spec.step_deadline = DEADLINE;
    Arc::new(Plugin::load_with(spec, opts).await.unwrap())
}

/// Runs `n` calls at once; returns each call's result and how long it took.
async fn concurrent(p: &Arc<Plugin>, n: usize) -> Vec<(Result<Status, PluginError>, Duration)> {
    let calls: Vec<_> = (0..n)
        .map(|i| {
            let p = Arc::clone(p);
            tokio::spawn(async move {
                let t = Instant::now();
                let r = p.step(&start_input(&format!("vrf_{i}"))).await;
                (r.map(|o| o.status), t.elapsed())
            })
        })
        .collect();
    let mut out = Vec::new();
    for c in calls {
        out.push(c.await.unwrap());
    }
    out
}

#[tokio::test]
async fn three_hung_calls_each_end_at_their_own_deadline() {
    // The measurement: three concurrent calls to one hung plugin took 5, 10 and 15 s.
    let p = load("hang", worker_options()).await;
    let results = concurrent(&p, 3).await;
    for (r, took) in &results {
        assert!(matches!(r, Err(PluginError::Timeout { .. })), "{r:?}");
        assert!(
            *took < DEADLINE * 2,
            "a call waited behind another hung call: {took:?} (deadline {DEADLINE:?})"
        );
    }
    let h = p.health().await.unwrap();
    assert_eq!((h.failures, h.running, h.busy), (3, false, 0), "{h:?}");
}

#[tokio::test]
async fn a_hung_worker_does_not_delay_the_others_and_is_replaced() {
    let p = load("ok", worker_options()).await;
    // Warm the pool up to three idle workers.
    for _ in 0..50 {
        if p.idle_worker_pids().len() >= 3 {
            break;
        }
        // More callers than workers wanted, so calls overlap even when each one is quick.
        for (r, _) in concurrent(&p, 8).await {
            assert_eq!(r.unwrap(), Status::Succeeded);
        }
    }
    assert!(
        p.idle_worker_pids().len() >= 3,
        "{:?}",
        p.idle_worker_pids()
    );
    // Freeze the worker the next call will get: from the host's side it hangs.
    let hung = p.health().await.unwrap().pid.unwrap();
    let stopped = std::process::Command::new("kill")
        .args(["-STOP", &hung.to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());

    let results = concurrent(&p, 3).await;
    let timeouts = results
        .iter()
        .filter(|(r, _)| matches!(r, Err(PluginError::Timeout { .. })))
        .count();
    assert_eq!(timeouts, 1, "exactly the frozen worker's call: {results:?}");
    for (r, took) in &results {
        match r {
            Ok(status) => {
                assert_eq!(*status, Status::Succeeded);
                assert!(*took < DEADLINE, "queued behind the hung call: {took:?}");
            }
            Err(_) => assert!(*took < DEADLINE * 2, "{took:?}"),
        }
    }
    // The frozen worker was killed and reaped; the pool carries on with fresh calls.
    assert!(
        !std::path::Path::new(&format!("/proc/{hung}")).exists(),
        "the hung worker {hung} is gone"
    );
    assert!(!p.idle_worker_pids().contains(&hung));
    let out = p.step(&start_input("vrf_after")).await.unwrap();
    assert_eq!(out.status, Status::Succeeded);
}

#[tokio::test]
async fn concurrency_is_bounded_and_the_wait_counts_against_the_deadline() {
    let opts = WorkerOptions {
        max_workers: 1,
        ..worker_options()
    };
    let p = load("hang", opts).await;
    let results = concurrent(&p, 2).await;
    for (r, took) in &results {
        assert!(matches!(r, Err(PluginError::Timeout { .. })), "{r:?}");
        assert!(*took < DEADLINE * 2, "{took:?}");
    }
    // Only one worker ever ran at a time: the waiting call never spawned a second one.
    let h = p.health().await.unwrap();
    assert_eq!(h.spawns, 1, "{h:?}");
    assert_eq!(
        h.failures, 1,
        "the call that only waited is not the plugin's fault"
    );
}

#[tokio::test]
async fn repeated_invalid_output_opens_the_circuit() {
    for behaviour in ["bad_json", "unknown_action"] {
        let opts = WorkerOptions {
            failure_threshold: 3,
            cooldown: Duration::from_secs(60),
            ..worker_options()
        };
        let p = load(behaviour, opts).await;
        for i in 1..=3 {
            let e = p.step(&start_input("vrf_bad")).await.unwrap_err();
            assert!(
                matches!(e, PluginError::BadOutput { .. }),
                "{behaviour} call {i}: {e:?}"
            );
        }
        let h = p.health().await.unwrap();
        assert!(h.circuit_open, "{behaviour}: {h:?}");
        let e = p.step(&start_input("vrf_bad")).await.unwrap_err();
        assert!(
            matches!(e, PluginError::CircuitOpen { .. }),
            "{behaviour}: {e:?}"
        );
    }
}
