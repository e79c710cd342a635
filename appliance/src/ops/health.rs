//! `/healthz` (the process answers) and `/readyz` (it can do its job: HSM logged in with the
//! CA keys visible, database writable, CRLs and pre-signed OCSP responses fresh), each a JSON
//! body naming what is wrong, so a load balancer and an operator read the same answer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

use crate::api::AppState;
use crate::config::StatusConfig;
use crate::storage::{unix_now, Storage};

/// How long one probe may take before it counts as a failure.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
/// A readiness answer is reused this long: a flood of probes costs one HSM look-up per second.
const REUSE: Duration = Duration::from_secs(1);

/// What `/readyz` checks, and the last answer.
pub struct Readiness {
    hsm: hsm::Hsm,
    storage: Storage,
    crl_max_age_secs: i64,
    ocsp_slack_secs: i64,
    offline_root: bool,
    last: tokio::sync::Mutex<Option<(Instant, Arc<Report>)>>,
}

/// The outcome of one readiness check.
#[derive(Debug)]
pub struct Report {
    /// Per component (`hsm`, `database`, `crl`, `ocsp`): `"ok"` or what is wrong.
    pub checks: Map<String, Value>,
    /// Every problem, one sentence each.
    pub problems: Vec<String>,
}

impl Readiness {
    /// Readiness of the services built from `config`'s `[status]` timing.
    pub fn new(hsm: hsm::Hsm, storage: Storage, status: &StatusConfig) -> Readiness {
        let interval = i64::from(status.crl_interval_minutes) * 60;
        Readiness {
            hsm,
            storage,
            // The publisher regenerates at least every interval: two missed rounds is stale.
            crl_max_age_secs: 2 * interval + i64::from(status.crl_delay_secs) + 300,
            // The pre-signer refreshes every presign interval: a few missed passes is stale.
            ocsp_slack_secs: 3 * i64::from(status.presign_interval_secs) + 600,
            offline_root: status.root_offline,
            last: tokio::sync::Mutex::new(None),
        }
    }

    /// Runs the checks (or reuses an answer younger than a second).
    pub async fn check(&self, state: &AppState) -> Arc<Report> {
        let mut last = self.last.lock().await;
        if let Some((at, report)) = last.as_ref() {
            if at.elapsed() < REUSE {
                return report.clone();
            }
        }
        let report = Arc::new(self.run(state).await);
        *last = Some((Instant::now(), report.clone()));
        report
    }

    async fn run(&self, state: &AppState) -> Report {
        let mut report = Report {
            checks: Map::new(),
            problems: Vec::new(),
        };
        let hsm = self.hsm_problems(state).await;
        report.record("hsm", hsm);
        let db = match tokio::time::timeout(PROBE_TIMEOUT, self.storage.probe_write()).await {
            Ok(Ok(())) => Vec::new(),
            Ok(Err(e)) => vec![format!("database: not writable: {e}")],
            Err(_) => vec!["database: a write did not commit within 3 s".to_owned()],
        };
        report.record("database", db);
        report.record("crl", self.crl_problems(state));
        report.record("ocsp", self.ocsp_problems(state));
        report
    }

    async fn hsm_problems(&self, state: &AppState) -> Vec<String> {
        let mut problems = Vec::new();
        for ca in state.hierarchy.iter() {
            if self.offline_root && ca.parent.is_none() {
                continue; // on a token `serve` never opens
            }
            match tokio::time::timeout(PROBE_TIMEOUT, ca.probe_key(&self.hsm)).await {
                Ok(Ok(())) => {}
                Ok(Err(hsm::HsmError::KeyNotFound { .. })) => problems.push(format!(
                    "hsm: the key of CA {} is not on the token (token removed or replaced?)",
                    ca.name
                )),
                Ok(Err(e)) => problems.push(format!("hsm: CA {}: {e}", ca.name)),
                Err(_) => problems.push(format!(
                    "hsm: looking up the key of CA {} took over 3 s",
                    ca.name
                )),
            }
        }
        if state.hierarchy.iter().next().is_none() {
            problems.push("hsm: no CA exists yet; run `ca-appliance ceremony`".to_owned());
        }
        problems
    }

    fn crl_problems(&self, state: &AppState) -> Vec<String> {
        let now = unix_now();
        let mut problems = Vec::new();
        for ca in state.hierarchy.iter().filter(|c| c.parent.is_some()) {
            let file = crate::status::crl::full_name(&ca.stem());
            match state.status.crls.get(&file) {
                None => problems.push(format!("crl: {file} not published yet")),
                Some(crl) if crl.next_update <= now => problems.push(format!(
                    "crl: {file} expired {} s ago (nextUpdate passed)",
                    now - crl.next_update
                )),
                Some(crl) if now - crl.this_update > self.crl_max_age_secs => {
                    problems.push(format!(
                        "crl: {file} is {} s old (regenerated at most every {} s)",
                        now - crl.this_update,
                        self.crl_max_age_secs
                    ))
                }
                Some(_) => {}
            }
        }
        problems
    }

    fn ocsp_problems(&self, state: &AppState) -> Vec<String> {
        let now = unix_now();
        let (validity, refresh) = state.status.ocsp.refresh_window();
        let max_age = validity - refresh + self.ocsp_slack_secs;
        let mut problems = Vec::new();
        for (ca, _, oldest) in state.status.ocsp.presigned_summary() {
            if let Some(oldest) = oldest {
                if now - oldest > max_age {
                    problems.push(format!(
                        "ocsp: the oldest pre-signed response of CA {ca} is {} s old (re-signed by {} s)",
                        now - oldest,
                        max_age
                    ));
                }
            }
        }
        problems
    }
}

impl Report {
    fn record(&mut self, check: &str, problems: Vec<String>) {
        crate::ops::metrics::readiness(check, problems.is_empty());
        let value = if problems.is_empty() {
            Value::from("ok")
        } else {
            Value::from(problems.join("; "))
        };
        self.checks.insert(check.to_owned(), value);
        self.problems.extend(problems);
    }

    /// Whether every check passed.
    pub fn ready(&self) -> bool {
        self.problems.is_empty()
    }
}

/// `GET /healthz`: the process is alive and answering (nothing else is checked).
pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "alive" }))
}

/// `GET /readyz`: 200 `{"status": "ready", ...}` or 503 `{"status": "unready", "problems": [...]}`.
pub async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    let report = state.readiness.check(&state).await;
    let (code, status) = if report.ready() {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "unready")
    };
    let body = json!({ "status": status, "checks": report.checks, "problems": report.problems });
    (code, Json(body)).into_response()
}
