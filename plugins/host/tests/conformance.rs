//! The conformance suite (`ca-appliance plugin check PATH`) against plugins known to pass and fail.
#![allow(clippy::unwrap_used)]

mod common;

use common::{build_reference_c, misbehaving_so, worker_options};
use plugin_host::conformance;
use plugin_host::Isolation;
use serde_json::json;

#[tokio::test]
async fn reference_c_plugin_passes_every_check() {
    let dir = tempfile::tempdir().unwrap();
    let so = build_reference_c(dir.path());
    let report = conformance::check_with(
        &so,
        json!({"code": "123456"}),
        Isolation::Worker,
        worker_options(),
    )
    .await;
    let text = report.to_string();
    println!("{text}");
    assert!(report.passed(), "{text}");
    for name in [
        "load+describe",
        "secrets-marked",
        "bad-config",
        "garbage-input",
        "start",
        "deterministic",
        "state-round-trip",
        "corrupt-state",
        "no-crash",
    ] {
        assert!(report.get(name).is_some_and(|c| c.passed), "{name}: {text}");
    }
    assert!(
        text.contains("PASS corrupt-state") && text.contains("RESULT: PASS"),
        "{text}"
    );
}

#[tokio::test]
async fn plugin_ignoring_corrupt_state_fails_that_check() {
    let report = conformance::check_with(
        &misbehaving_so(),
        json!({"behaviour": "ok"}),
        Isolation::Worker,
        worker_options(),
    )
    .await;
    let text = report.to_string();
    println!("{text}");
    assert!(!report.passed());
    assert!(!report.get("corrupt-state").unwrap().passed, "{text}");
    assert!(report.get("bad-config").unwrap().passed, "{text}");
    assert!(report.get("garbage-input").unwrap().passed, "{text}");
    assert!(text.contains("FAIL corrupt-state"), "{text}");
}

#[tokio::test]
async fn crashing_plugin_is_reported_not_fatal() {
    let report = conformance::check_with(
        &misbehaving_so(),
        json!({"behaviour": "segfault"}),
        Isolation::Worker,
        worker_options(),
    )
    .await;
    let text = report.to_string();
    println!("{text}");
    assert!(!report.get("start").unwrap().passed, "{text}");
    assert!(!report.get("no-crash").unwrap().passed, "{text}");
    assert!(text.contains("RESULT: FAIL"));
}

#[tokio::test]
async fn missing_file_is_one_fail_line() {
    let report = conformance::check(
        std::path::Path::new("/nonexistent/libnothing.so"),
        json!({}),
    )
    .await;
    assert!(!report.passed());
    assert_eq!(report.checks.len(), 1);
    assert!(report.to_string().contains("FAIL open"));
}
