//! Prometheus metrics: the counters and histograms the request paths update (one call each),
//! the gauges computed at scrape time from the running services, and the `/metrics` router
//! served on the separate `[metrics] addr` listener (default loopback).
//!
//! Everything lives in the process's default registry, so crates below the appliance (`hsm`)
//! register their own metrics and this listener exports them too.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, TextEncoder,
};

use crate::api::AppState;
use crate::ca::issuance::IssuanceError;
use crate::status::OcspReply;
use crate::storage::unix_now;

/// Latency buckets for requests and issuances, seconds.
const LATENCY: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

fn register<C: prometheus::core::Collector + Clone + 'static>(c: C) -> C {
    // Registered once per process (LazyLock); a duplicate would only mean a second registry user.
    let _ = prometheus::default_registry().register(Box::new(c.clone()));
    c
}

fn counter_vec(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    register(IntCounterVec::new(Opts::new(name, help), labels).expect("static metric options"))
}

fn gauge_vec(name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    register(IntGaugeVec::new(Opts::new(name, help), labels).expect("static metric options"))
}

fn histogram_vec(name: &str, help: &str, labels: &[&str], buckets: &[f64]) -> HistogramVec {
    register(
        HistogramVec::new(
            HistogramOpts::new(name, help).buckets(buckets.to_vec()),
            labels,
        )
        .expect("static metric options"),
    )
}

static ISSUANCES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "ca_issuances_total",
        "Certificate issuance requests that reached the issuer, by profile and outcome",
        &["profile", "outcome"],
    )
});
static ISSUANCE_SECONDS: LazyLock<HistogramVec> = LazyLock::new(|| {
    histogram_vec(
        "ca_issuance_duration_seconds",
        "Issuance latency (CSR checks, lint, HSM signature, durable commit), seconds",
        &["profile"],
        LATENCY,
    )
});
static OCSP_ANSWERS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "ca_ocsp_responses_total",
        "OCSP answers by source (presigned, live, error) and OCSPResponseStatus",
        &["source", "status"],
    )
});
static DB_COMMIT_SECONDS: LazyLock<Histogram> = LazyLock::new(|| {
    register(
        Histogram::with_opts(
            HistogramOpts::new(
                "ca_db_commit_duration_seconds",
                "Group-commit transaction latency of the issuance path (signing records and issued certificates), seconds",
            )
            .buckets(LATENCY.to_vec()),
        )
        .expect("static metric options"),
    )
});
static DB_COMMIT_BATCH: LazyLock<Histogram> = LazyLock::new(|| {
    register(
        Histogram::with_opts(
            HistogramOpts::new(
                "ca_db_commit_batch_size",
                "Rows (signing records and issued certificates) committed per group-commit transaction",
            )
            .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0]),
        )
        .expect("static metric options"),
    )
});
static DB_COMMIT_ERRORS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "ca_db_commit_errors_total",
        "Failed group-commit transactions",
        &["store"],
    )
});
static HTTP_REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "ca_http_requests_total",
        "HTTP requests by listener, route template and status code",
        &["listener", "route", "code"],
    )
});
static HTTP_SECONDS: LazyLock<HistogramVec> = LazyLock::new(|| {
    histogram_vec(
        "ca_http_request_duration_seconds",
        "HTTP request latency by listener and route template, seconds",
        &["listener", "route"],
        LATENCY,
    )
});
static VERIFICATIONS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "ca_verifications_finished_total",
        "Verifications that reached a final status, by owner (channel or operator), plugin (method) and status",
        &["owner", "method", "status"],
    )
});
static APPLICATIONS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "ca_applications_finished_total",
        "Certificate applications that reached an outcome, by channel, method and outcome",
        &["channel", "method", "outcome"],
    )
});
static CRL_AGE: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    gauge_vec(
        "ca_crl_age_seconds",
        "Seconds since thisUpdate of the published CRL, per CA and kind (full, delta)",
        &["ca", "kind"],
    )
});
static CRL_NEXT_UPDATE: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    gauge_vec(
        "ca_crl_next_update_seconds",
        "Seconds until nextUpdate of the published CRL (negative: expired), per CA and kind",
        &["ca", "kind"],
    )
});
static CRL_NUMBER: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    gauge_vec(
        "ca_crl_number",
        "CRLNumber of the published CRL, per CA and kind",
        &["ca", "kind"],
    )
});
static OCSP_OLDEST: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    gauge_vec(
        "ca_ocsp_oldest_presigned_age_seconds",
        "Seconds since thisUpdate of the oldest pre-signed OCSP response held, per issuing CA",
        &["ca"],
    )
});
static OCSP_PRESIGNED: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    gauge_vec(
        "ca_ocsp_presigned_responses",
        "Pre-signed OCSP responses held in memory, per issuing CA",
        &["ca"],
    )
});
static CERT_EXPIRY_DAYS: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    gauge_vec(
        "ca_certificate_expiry_days",
        "Days until notAfter of each CA certificate and OCSP responder certificate",
        &["ca", "role"],
    )
});
static PLUGIN_RESTARTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "ca_plugin_worker_restarts_total",
        "Worker processes started after the first, per plugin (crashes, hangs, kills)",
        &["plugin"],
    )
});
static PLUGIN_FAILURES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "ca_plugin_failures_total",
        "Failures counted against a worker-mode plugin by its circuit breaker",
        &["plugin"],
    )
});
static PLUGIN_CIRCUIT: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    gauge_vec(
        "ca_plugin_circuit_open",
        "1 while a plugin's circuit breaker is open, else 0",
        &["plugin"],
    )
});
static PLUGIN_UP: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    gauge_vec(
        "ca_plugin_available",
        "1 when a configured plugin loaded, 0 when it was refused at start-up",
        &["plugin"],
    )
});
static READY: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    gauge_vec(
        "ca_ready",
        "1 when the last readiness check of this component passed (hsm, database, crl, ocsp)",
        &["check"],
    )
});
static START_TIME: LazyLock<IntGauge> = LazyLock::new(|| {
    register(
        IntGauge::new(
            "ca_start_time_seconds",
            "Unix time the server started (a restart resets counters)",
        )
        .expect("static metric options"),
    )
});

/// Registers every metric so a scrape shows them (at zero) before the first event.
pub fn register_all() {
    hsm::register_metrics();
    LazyLock::force(&ISSUANCES);
    LazyLock::force(&ISSUANCE_SECONDS);
    LazyLock::force(&DB_COMMIT_SECONDS);
    LazyLock::force(&DB_COMMIT_BATCH);
    LazyLock::force(&DB_COMMIT_ERRORS);
    LazyLock::force(&HTTP_REQUESTS);
    LazyLock::force(&HTTP_SECONDS);
    LazyLock::force(&VERIFICATIONS);
    LazyLock::force(&APPLICATIONS);
    for source in ["presigned", "live"] {
        OCSP_ANSWERS.with_label_values(&[source, "successful"]);
    }
    START_TIME.set(unix_now());
}

/// One issuance request handed to the issuer: its latency and outcome (`issued`, `refused`
/// for a request the CA declined, `failed` for HSM, database or set-up trouble).
pub fn issuance<T>(profile: &str, elapsed: Duration, result: &Result<T, IssuanceError>) {
    let outcome = match result {
        Ok(_) => "issued",
        Err(
            IssuanceError::Hsm(_) | IssuanceError::Storage(_) | IssuanceError::IssuerMissing(_),
        ) => "failed",
        Err(_) => "refused",
    };
    ISSUANCES.with_label_values(&[profile, outcome]).inc();
    ISSUANCE_SECONDS
        .with_label_values(&[profile])
        .observe(elapsed.as_secs_f64());
}

/// The counter of pre-signed answers, resolved once (it is counted on every cached answer).
static OCSP_PRESIGNED_ANSWERS: LazyLock<IntCounter> =
    LazyLock::new(|| OCSP_ANSWERS.with_label_values(&["presigned", "successful"]));

/// One OCSP answer, by where it came from and its response status.
pub fn ocsp_answer(reply: &OcspReply) {
    let (source, status) = match reply {
        // The hot path: one atomic increment, no label lookup.
        OcspReply::Cached(_) => return OCSP_PRESIGNED_ANSWERS.inc(),
        OcspReply::Live { .. } => ("live", "successful"),
        OcspReply::Error(e) => ("error", ocsp_status_name(*e)),
    };
    OCSP_ANSWERS.with_label_values(&[source, status]).inc();
}

fn ocsp_status_name(status: ca_status::ocsp::OcspErrorStatus) -> &'static str {
    use ca_status::ocsp::OcspErrorStatus as S;
    match status {
        S::MalformedRequest => "malformedRequest",
        S::InternalError => "internalError",
        S::TryLater => "tryLater",
        S::SigRequired => "sigRequired",
        S::Unauthorized => "unauthorized",
    }
}

/// One group-commit transaction of the issuance path (`rows` signing records and certificates),
/// and whether it committed.
pub fn db_commit(rows: usize, elapsed: Duration, ok: bool) {
    DB_COMMIT_SECONDS.observe(elapsed.as_secs_f64());
    DB_COMMIT_BATCH.observe(rows as f64);
    if !ok {
        DB_COMMIT_ERRORS.with_label_values(&["issuance"]).inc();
    }
}

/// One answered HTTP request (the route template, never the raw path: bounded labels).
pub fn http_request(listener: &str, route: &str, code: StatusCode, elapsed: Duration) {
    HTTP_REQUESTS
        .with_label_values(&[listener, route, code.as_str()])
        .inc();
    HTTP_SECONDS
        .with_label_values(&[listener, route])
        .observe(elapsed.as_secs_f64());
}

/// One route's request metrics with the labels of a 200 resolved once, so recording one is two
/// atomic updates and no label lookup (for the public listener's OCSP routes).
pub struct RouteMeter {
    listener: &'static str,
    route: &'static str,
    ok: IntCounter,
    seconds: Histogram,
}

impl RouteMeter {
    /// The metrics of `route` (its template) on `listener`.
    pub fn new(listener: &'static str, route: &'static str) -> Self {
        Self {
            listener,
            route,
            ok: HTTP_REQUESTS.with_label_values(&[listener, route, StatusCode::OK.as_str()]),
            seconds: HTTP_SECONDS.with_label_values(&[listener, route]),
        }
    }

    /// The route template.
    pub fn route(&self) -> &'static str {
        self.route
    }

    /// One answered request, as [`http_request`] records it.
    pub fn record(&self, code: StatusCode, elapsed: Duration) {
        if code == StatusCode::OK {
            self.ok.inc();
        } else {
            HTTP_REQUESTS
                .with_label_values(&[self.listener, self.route, code.as_str()])
                .inc();
        }
        self.seconds.observe(elapsed.as_secs_f64());
    }
}

/// A verification reached a final status (`owner` is the channel or operator actor name).
pub fn verification_finished(owner: &str, method: &str, status: &str) {
    VERIFICATIONS
        .with_label_values(&[owner, method, status])
        .inc();
}

/// A certificate application reached an outcome (for the applications module).
pub fn application_finished(channel: &str, method: &str, outcome: &str) {
    APPLICATIONS
        .with_label_values(&[channel, method, outcome])
        .inc();
}

/// The result of one readiness check, for alerting on flapping readiness.
pub fn readiness(check: &str, ok: bool) {
    READY.with_label_values(&[check]).set(i64::from(ok));
}

/// Updates the gauges read from the running services; called on every scrape.
pub async fn refresh(state: &AppState) {
    let now = unix_now();
    for ca in state.hierarchy.iter() {
        let (_, not_after) = ca.validity();
        CERT_EXPIRY_DAYS
            .with_label_values(&[&ca.name, "ca"])
            .set((not_after - now).div_euclid(86_400));
        if ca.parent.is_none() {
            continue;
        }
        if let Some(der) = state.status.ocsp.responder_certificate(&ca.name) {
            if let Some(not_after) = not_after_of(&der) {
                CERT_EXPIRY_DAYS
                    .with_label_values(&[&ca.name, "ocsp_responder"])
                    .set((not_after - now).div_euclid(86_400));
            }
        }
        for (kind, file) in [
            ("full", crate::status::crl::full_name(&ca.name)),
            ("delta", crate::status::crl::delta_name(&ca.name)),
        ] {
            if let Some(crl) = state.status.crls.get(&file) {
                CRL_AGE
                    .with_label_values(&[&ca.name, kind])
                    .set(now - crl.this_update);
                CRL_NEXT_UPDATE
                    .with_label_values(&[&ca.name, kind])
                    .set(crl.next_update - now);
                CRL_NUMBER
                    .with_label_values(&[&ca.name, kind])
                    .set(crl.number);
            }
        }
    }
    for (ca, count, oldest) in state.status.ocsp.presigned_summary() {
        OCSP_PRESIGNED.with_label_values(&[&ca]).set(count as i64);
        OCSP_OLDEST
            .with_label_values(&[&ca])
            .set(oldest.map_or(0, |t| now - t));
    }
    refresh_plugins(state).await;
}

/// Worker health read from the plugin host; its running totals become counter increments.
async fn refresh_plugins(state: &AppState) {
    static SEEN: LazyLock<Mutex<HashMap<String, (u64, u64)>>> = LazyLock::new(Default::default);
    let registry = state.verifications.registry();
    let names: Vec<String> = registry.names().map(str::to_owned).collect();
    for name in names {
        let health = match registry.get(&name) {
            Some(crate::verification::registry::PluginSlot::Ready(runner)) => {
                PLUGIN_UP.with_label_values(&[&name]).set(1);
                runner.plugin().health().await
            }
            _ => {
                PLUGIN_UP.with_label_values(&[&name]).set(0);
                None
            }
        };
        let Some(h) = health else { continue };
        PLUGIN_CIRCUIT
            .with_label_values(&[&name])
            .set(i64::from(h.circuit_open));
        let restarts = h.spawns.saturating_sub(1);
        let mut seen = SEEN.lock().unwrap_or_else(|p| p.into_inner());
        let last = seen.entry(name.clone()).or_insert((0, 0));
        PLUGIN_RESTARTS
            .with_label_values(&[&name])
            .inc_by(restarts.saturating_sub(last.0));
        PLUGIN_FAILURES
            .with_label_values(&[&name])
            .inc_by(h.failures.saturating_sub(last.1));
        *last = (last.0.max(restarts), last.1.max(h.failures));
    }
}

/// notAfter of a DER certificate, unix seconds.
fn not_after_of(der: &[u8]) -> Option<i64> {
    use der::Decode;
    let cert = x509_cert::Certificate::from_der(der).ok()?;
    let t = cert.tbs_certificate.validity.not_after.to_unix_duration();
    i64::try_from(t.as_secs()).ok()
}

/// The metrics listener's routes: `GET /metrics` in the Prometheus text format.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .fallback(|| async { (StatusCode::NOT_FOUND, "only /metrics here\n") })
        .with_state(state)
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    refresh(&state).await;
    let families = prometheus::default_registry().gather();
    let encoder = TextEncoder::new();
    let mut body = Vec::new();
    match encoder.encode(&families, &mut body) {
        Ok(()) => (
            [(header::CONTENT_TYPE, encoder.format_type().to_owned())],
            body,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "encoding metrics failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "metrics encoding failed\n",
            )
                .into_response()
        }
    }
}

/// `[metrics]`: the Prometheus listener (absent: none).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Address of the plain-HTTP metrics listener (`GET /metrics`); keep it on loopback or a
    /// management network: it is unauthenticated.
    #[serde(default = "default_metrics_addr")]
    pub addr: std::net::SocketAddr,
}

/// The default metrics address: loopback only.
pub fn default_metrics_addr() -> std::net::SocketAddr {
    std::net::SocketAddr::from(([127, 0, 0, 1], 9466))
}

/// Appends a `[metrics]` table to a written configuration file (`init --metrics-addr`).
pub fn append_to_config(path: &std::path::Path, addr: std::net::SocketAddr) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().append(true).open(path)?;
    write!(
        f,
        "\n# Prometheus metrics (GET /metrics), unauthenticated: keep it on loopback or a management network.\n[metrics]\naddr = \"{addr}\"\n"
    )?;
    f.sync_all()
}
