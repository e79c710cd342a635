//! The reference verifier written in C: compiled here with `cc`, it must export only
//! `ca_plugin_init_v1` and run its flow through the host in both isolation modes.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;
use std::sync::Arc;

use common::{build_reference_c, worker_options};
use plugin_abi::doc::{Applicant, ChallengeKind, Event, Outcome, Status};
use plugin_host::{
    Egress, EgressOptions, Isolation, MemoryStore, Plugin, PluginError, PluginSpec, RunnerOptions,
    VerificationRunner,
};

#[test]
fn exports_only_the_entry_symbol() {
    let dir = tempfile::tempdir().unwrap();
    let so = build_reference_c(dir.path());
    let out = Command::new("nm")
        .args(["-D", "--defined-only"])
        .arg(&so)
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let symbols: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2))
        .collect();
    assert_eq!(symbols, vec!["ca_plugin_init_v1"], "{text}");
}

async fn runner(
    so: &std::path::Path,
    iso: Isolation,
    config: serde_json::Value,
) -> VerificationRunner<MemoryStore> {
    let mut spec = PluginSpec::new("static-code", so, plugin_host::sha256_file(so).unwrap());
    spec.isolation = iso;
    spec.config = config;
    let plugin = Arc::new(Plugin::load_with(spec, worker_options()).await.unwrap());
    VerificationRunner::new(
        plugin,
        Arc::new(MemoryStore::new()),
        Egress::new(EgressOptions::default()).unwrap(),
        RunnerOptions {
            perform_inline: true,
            clock: Arc::new(|| time::macros::datetime!(2026-11-24 12:00:00.25 UTC)),
        },
    )
}

fn code(data: &str) -> Event {
    Event::UserInput {
        challenge: ChallengeKind::SmsCode,
        data: data.into(),
    }
}

#[tokio::test]
async fn c_plugin_flow_in_both_modes() {
    let dir = tempfile::tempdir().unwrap();
    let so = build_reference_c(dir.path());
    let applicant = Applicant {
        phone: Some("13800138000".into()),
        ..Default::default()
    };
    for iso in [Isolation::InProcess, Isolation::Worker] {
        let r = runner(
            &so,
            iso,
            serde_json::json!({"code": "246810", "max_attempts": 2}),
        )
        .await;
        assert_eq!(r.plugin().manifest().name, "static-code");

        let v = r.start("vrf_c1", &applicant).await.unwrap();
        assert_eq!(v.status, Status::AwaitingUser, "{iso:?}");
        assert_eq!(v.challenges.len(), 1);
        assert_eq!(v.challenges[0].kind, ChallengeKind::SmsCode);
        // The C plugin reads no clock: it echoes the host's (fake) `now`.
        assert_eq!(v.challenges[0].expires_at, "2026-11-24T12:00:00Z");

        let v = r.deliver("vrf_c1", code("000000")).await.unwrap();
        assert_eq!(v.status, Status::AwaitingUser);
        assert_eq!(v.result.unwrap().outcome, Outcome::OtpWrong);
        assert_eq!(
            v.challenges.len(),
            1,
            "challenge stays open while attempts remain"
        );

        let v = r.deliver("vrf_c1", code("246810")).await.unwrap();
        assert_eq!(v.status, Status::Succeeded);
        assert_eq!(v.result.unwrap().outcome, Outcome::Verified);

        // Too many wrong codes.
        r.start("vrf_c2", &applicant).await.unwrap();
        r.deliver("vrf_c2", code("111111")).await.unwrap();
        let v = r.deliver("vrf_c2", code("222222")).await.unwrap();
        assert_eq!(v.status, Status::Failed);
        assert_eq!(v.result.unwrap().outcome, Outcome::OtpAttemptsExceeded);

        // Cancel.
        r.start("vrf_c3", &applicant).await.unwrap();
        let v = r.deliver("vrf_c3", Event::Cancel).await.unwrap();
        assert_eq!(v.result.unwrap().outcome, Outcome::Cancelled);
    }
}

#[tokio::test]
async fn c_plugin_rejects_bad_config() {
    let dir = tempfile::tempdir().unwrap();
    let so = build_reference_c(dir.path());
    for iso in [Isolation::InProcess, Isolation::Worker] {
        let mut spec = PluginSpec::new("static-code", &so, plugin_host::sha256_file(&so).unwrap());
        spec.isolation = iso;
        spec.config = serde_json::json!({"code": "12"});
        let e = Plugin::load_with(spec, worker_options()).await.unwrap_err();
        assert!(matches!(e, PluginError::Config(_)), "{iso:?}: {e:?}");
    }
}

#[tokio::test]
async fn steps_of_one_verification_run_one_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let so = build_reference_c(dir.path());
    let r = Arc::new(
        runner(
            &so,
            Isolation::Worker,
            serde_json::json!({"code": "246810", "max_attempts": 9}),
        )
        .await,
    );
    let applicant = Applicant {
        phone: Some("13800138000".into()),
        ..Default::default()
    };
    r.start("vrf_serial", &applicant).await.unwrap();
    // Eight concurrent wrong codes: without per-id serialisation the store's revision check
    // would refuse lost updates; with it every one is applied in turn.
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let r = Arc::clone(&r);
            tokio::spawn(async move { r.deliver("vrf_serial", code("000000")).await })
        })
        .collect();
    for t in tasks {
        let v = t.await.unwrap().unwrap();
        assert_eq!(v.result.unwrap().outcome, Outcome::OtpWrong);
    }
    // The ninth wrong code is the last attempt.
    let v = r.deliver("vrf_serial", code("000000")).await.unwrap();
    assert_eq!(v.status, Status::Failed);
    assert_eq!(v.result.unwrap().outcome, Outcome::OtpAttemptsExceeded);
}

/// Two different libraries in-process in one process must each run their own code (regression:
/// a reused `/proc/self/fd/N` name made glibc's dlopen return the first library again).
#[tokio::test]
async fn two_different_libraries_in_process_stay_distinct() {
    let dir = tempfile::tempdir().unwrap();
    let so = build_reference_c(dir.path());
    for _ in 0..2 {
        let c = runner(
            &so,
            Isolation::InProcess,
            serde_json::json!({"code": "246810"}),
        )
        .await;
        let m = Plugin::load_with(
            common::misbehaving("ok", Isolation::InProcess),
            worker_options(),
        )
        .await
        .unwrap();
        assert_eq!(c.plugin().manifest().name, "static-code");
        assert_eq!(m.manifest().name, "misbehaving");
        let v = c
            .start(
                "vrf_two",
                &Applicant {
                    phone: Some("13800138000".into()),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(v.status, Status::AwaitingUser);
        assert_eq!(
            m.step(&common::start_input("vrf_m")).await.unwrap().status,
            Status::Succeeded
        );
    }
}
