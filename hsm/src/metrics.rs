//! The HSM's Prometheus metrics (sign latency, sign errors, pool wait), registered in the
//! process's default registry so whoever serves `/metrics` exports them.

use std::sync::LazyLock;
use std::time::Duration;

use prometheus::{Histogram, HistogramOpts, IntCounterVec, Opts};

use crate::error::HsmError;

/// Buckets for HSM operations: sub-millisecond software tokens to slow network HSMs.
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

fn histogram(name: &str, help: &str) -> Histogram {
    let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(BUCKETS.to_vec()))
        .expect("static histogram options are valid");
    // A second registration (tests building two handles) is harmless: keep the first.
    let _ = prometheus::default_registry().register(Box::new(h.clone()));
    h
}

static SIGN_SECONDS: LazyLock<Histogram> = LazyLock::new(|| {
    histogram(
        "ca_hsm_sign_duration_seconds",
        "HSM signature latency (pool wait included), seconds",
    )
});

static POOL_WAIT_SECONDS: LazyLock<Histogram> = LazyLock::new(|| {
    histogram(
        "ca_hsm_pool_wait_seconds",
        "Time an HSM operation waited for a free session, seconds",
    )
});

static SIGN_ERRORS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    let c = IntCounterVec::new(
        Opts::new("ca_hsm_sign_errors_total", "Failed HSM signatures by kind"),
        &["kind"],
    )
    .expect("static counter options are valid");
    let _ = prometheus::default_registry().register(Box::new(c.clone()));
    c
});

/// Records one signature attempt and how it ended.
pub(crate) fn sign_finished<T>(elapsed: Duration, result: &Result<T, HsmError>) {
    SIGN_SECONDS.observe(elapsed.as_secs_f64());
    if let Err(e) = result {
        let kind = match e {
            HsmError::KeyNotFound { .. } => "key_not_found",
            e if e.is_unavailable() => "unavailable",
            _ => "other",
        };
        SIGN_ERRORS.with_label_values(&[kind]).inc();
    }
}

/// Records how long a checkout waited for a session.
pub(crate) fn pool_waited(elapsed: Duration) {
    POOL_WAIT_SECONDS.observe(elapsed.as_secs_f64());
}

/// Registers the HSM metrics now, so they are exported (at zero) before the first signature.
pub fn register() {
    LazyLock::force(&SIGN_SECONDS);
    LazyLock::force(&POOL_WAIT_SECONDS);
    for kind in ["key_not_found", "unavailable", "other"] {
        SIGN_ERRORS.with_label_values(&[kind]);
    }
}
