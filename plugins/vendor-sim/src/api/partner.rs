//! A partner platform's webhook receiver: records every call (headers that matter, body,
//! whether the `x-ca-signature` checks out under the partner secret) for `/_sim/webhooks`.
//! Faults injected for API `partner` apply (a 503 is recorded too, then answered).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde_json::{json, Value};

use crate::callback::sign;
use crate::state::{Api, FaultKind, ReceivedHook, Sim};

/// `POST /partner/{name}`: 401 for a bad signature when a partner secret is set, else 200.
pub async fn receive(
    State(sim): State<Arc<Sim>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, Json<Value>) {
    let header = |h: &str| {
        headers
            .get(h)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let timestamp = header("x-ca-timestamp");
    let signature = header("x-ca-signature");
    let signature_valid =
        sim.config
            .partner_secret
            .as_deref()
            .map(|secret| match (&timestamp, &signature) {
                (Some(t), Some(s)) => sign(secret, t, &body).eq_ignore_ascii_case(s),
                _ => false,
            });
    let mut status = match signature_valid {
        Some(false) => StatusCode::UNAUTHORIZED,
        _ => StatusCode::OK,
    };
    match sim.on_call(Api::Partner) {
        Some(FaultKind::Status { status: s }) => {
            status = StatusCode::from_u16(s).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        }
        Some(FaultKind::Delay { delay_ms }) => {
            tokio::time::sleep(std::time::Duration::from_millis(delay_ms)).await;
        }
        None => {}
    }
    let hook = ReceivedHook {
        timestamp,
        signature,
        signature_valid,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        answered: status.as_u16(),
    };
    sim.lock().hooks.entry(name).or_default().push(hook);
    (status, Json(json!({"ok": status.is_success()})))
}
