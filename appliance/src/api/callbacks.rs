//! `POST /callbacks/{plugin}/{verification}` on the public listener: signed vendor notifications
//! (see `verification::callbacks`). 200 `{"status": "delivered" | "already_finished"}`; a refused
//! callback answers 401 (`callback_unauthenticated`: signature, headers, timestamp window), 409
//! (`callback_replayed`), 400 (`malformed_json`) or 404, and changes nothing.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde_json::{json, Value};

use super::verifications::verification_error;
use super::{ApiError, AppState};
use crate::verification::callbacks::{CallbackError, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use crate::verification::service::{CallbackFailure, CallbackOutcome};

/// Receives one vendor callback.
pub async fn receive(
    State(state): State<Arc<AppState>>,
    Path((plugin, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let outcome = state
        .verifications
        .callback(
            &plugin,
            &id,
            header(TIMESTAMP_HEADER),
            header(SIGNATURE_HEADER),
            &body,
        )
        .await
        .map_err(|e| callback_error(&plugin, e))?;
    let status = match outcome {
        CallbackOutcome::Delivered => "delivered",
        CallbackOutcome::AlreadyFinished => "already_finished",
    };
    Ok(Json(json!({ "status": status })))
}

fn callback_error(plugin: &str, e: CallbackFailure) -> ApiError {
    use StatusCode as S;
    let msg = e.to_string();
    match e {
        CallbackFailure::Refused(r) => {
            tracing::warn!(%plugin, error = %r, "vendor callback refused");
            match r {
                CallbackError::NotAccepted(_) => ApiError::not_found(msg),
                CallbackError::MissingHeader(_)
                | CallbackError::BadSignature
                | CallbackError::Stale => {
                    ApiError::new(S::UNAUTHORIZED, "callback_unauthenticated", msg)
                }
                CallbackError::Replayed => ApiError::new(S::CONFLICT, "callback_replayed", msg),
                CallbackError::BadBody => ApiError::bad_request("malformed_json", msg),
                CallbackError::Storage(_) => ApiError::new(
                    S::SERVICE_UNAVAILABLE,
                    "storage_unavailable",
                    "the database is unavailable; retry later",
                ),
            }
        }
        CallbackFailure::Verification(v) => verification_error(v),
    }
}
