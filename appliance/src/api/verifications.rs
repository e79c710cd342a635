//! `GET /api/v1/plugins` (operators), `POST /api/v1/verifications`, `GET /api/v1/verifications/{id}`,
//! `POST /api/v1/verifications/{id}/input` and `POST /api/v1/verifications/{id}/cancel`.
//!
//! A channel may start only the plugins its `verifications` list names and sees only its own
//! verifications (another's answers 404, as if it did not exist); an operator may do anything.
//! Applicant data is masked in every answer. A verification that ends `failed` answers 422
//! `verification_failed` with the plugin's `failure_code` and the verification itself. A request
//! over a channel or subject limit answers 429 `rate_limited` with `Retry-After` (seconds), the
//! limit's class and scope, and changes nothing.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use plugin_abi::doc::{Applicant, ChallengeKind, Status};
use plugin_host::{GateError, PluginError, RunnerError};
use serde::Deserialize;
use serde_json::{json, Value};

use super::mtls::Caller;
use super::{ApiError, AppState};
use crate::verification::limits::LimitError;
use crate::verification::mask::masked_applicant;
use crate::verification::service::{failure_code, timers_json};
use crate::verification::store::status_name;
use crate::verification::{Requester, VerificationError, VerificationInfo};

/// Body of `POST /api/v1/verifications`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartBody {
    /// The `[[plugin]]` name (e.g. `phone-real-name`).
    pub plugin: String,
    /// The applicant's fields (name, id_number, phone, bank_card, org_name, uscc, ...).
    pub applicant: Applicant,
    /// The caller's own idempotency key: repeating it returns the same verification.
    #[serde(default)]
    pub reference: Option<String>,
}

/// Body of `POST /api/v1/verifications/{id}/input`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputBody {
    /// Which challenge: `sms_code`, `deposit_amount`, `face_url`.
    pub kind: ChallengeKind,
    /// What the user entered.
    pub value: String,
}

/// Parses a body like `json_body`, but the error never echoes the input: serde's messages may
/// quote a value (an ID number sent as a JSON number would come back in the error text).
fn private_json_body<T: serde::de::DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
) -> Result<T, ApiError> {
    let bytes = super::error::read_body(body)?;
    serde_json::from_slice(&bytes).map_err(|e| {
        let what = match e.classify() {
            serde_json::error::Category::Data => "does not match the expected fields and types",
            _ => "is not valid JSON",
        };
        ApiError::bad_request(
            "malformed_json",
            format!(
                "request body {what} (line {}, column {})",
                e.line(),
                e.column()
            ),
        )
    })
}

fn requester(caller: &Caller) -> Result<Requester<'_>, ApiError> {
    match caller {
        Caller::Operator { name } => Ok(Requester::Operator(name)),
        Caller::Channel { channel } => Ok(Requester::Channel {
            name: &channel.name,
            allowed: &channel.verifications,
        }),
        Caller::Unknown { .. } => Err(ApiError::forbidden(
            "unknown_client",
            "the client certificate is not registered with this appliance",
        )),
        other => Err(ApiError::role_not_allowed(other)),
    }
}

/// The JSON of a verification (applicant masked, no plugin state).
pub fn view_json(info: &VerificationInfo) -> Value {
    let v = &info.view;
    let result = v.result.as_ref();
    json!({
        "id": v.id,
        "plugin": info.plugin,
        "reference": info.reference,
        "status": status_name(v.status),
        "challenges": v.challenges,
        "outcome": result.map(|r| r.outcome),
        "failure_code": failure_code(result),
        "verified_attributes": result.map(|r| r.verified_attributes.clone()).unwrap_or_default(),
        "assurance": result.and_then(|r| r.assurance.clone()),
        "evidence": result.map(|r| r.evidence.clone()),
        "pending_actions": v.pending_actions,
        "timers": timers_json(&v.timers),
        "applicant": masked_applicant(&info.applicant),
    })
}

fn answer(info: &VerificationInfo, ok: StatusCode) -> Response {
    let body = view_json(info);
    if info.view.status == Status::Failed {
        let code = failure_code(info.view.result.as_ref()).unwrap_or_else(|| "failed".into());
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({
                "error": "verification_failed",
                "message": format!("verification failed: {code}"),
                "failure_code": code,
                "verification": body,
            })),
        )
            .into_response();
    }
    (ok, Json(body)).into_response()
}

/// 429 `rate_limited` with `Retry-After`, naming the limit's class and scope (never a subject).
fn rate_limited(class: &str, scope: &str, retry_after: std::time::Duration) -> Response {
    let secs = retry_after.as_secs().max(1);
    let mut resp = (
        StatusCode::TOO_MANY_REQUESTS,
        Json(json!({
            "error": "rate_limited",
            "message": format!("the {scope} limit on {class} is reached; retry after {secs} s"),
            "limit": class,
            "scope": scope,
            "retry_after_secs": secs,
        })),
    )
        .into_response();
    resp.headers_mut().insert(
        axum::http::header::RETRY_AFTER,
        axum::http::HeaderValue::from(secs),
    );
    resp
}

/// The answer for a service error: 429 with `Retry-After` for a limit, else the JSON error.
pub fn error_response(e: VerificationError) -> Response {
    match e {
        VerificationError::Limited(LimitError::Limited {
            class,
            scope,
            retry_after,
        }) => rate_limited(class.name(), scope, retry_after),
        VerificationError::Runner {
            source:
                RunnerError::Limited(GateError::Limited {
                    class,
                    scope,
                    retry_after,
                }),
            ..
        } => rate_limited(&class, &scope, retry_after),
        other => verification_error(other).into_response(),
    }
}

/// Maps a service error to its JSON error.
pub fn verification_error(e: VerificationError) -> ApiError {
    use StatusCode as S;
    let msg = e.to_string();
    match e {
        VerificationError::UnknownPlugin(_) => ApiError::bad_request("unknown_plugin", msg),
        VerificationError::NotAllowed { .. } => ApiError::forbidden("plugin_not_allowed", msg),
        VerificationError::Unavailable { .. } => {
            ApiError::new(S::SERVICE_UNAVAILABLE, "plugin_unavailable", msg)
        }
        VerificationError::NotFound(_) => ApiError::not_found(msg),
        VerificationError::NotVerified(_) => {
            ApiError::new(S::CONFLICT, "verification_not_succeeded", msg)
        }
        VerificationError::Runner { plugin, source } => runner_error(&plugin, source),
        VerificationError::Limited(LimitError::Storage(_)) => {
            tracing::error!(error = %msg, "limit counters unavailable");
            ApiError::new(
                S::SERVICE_UNAVAILABLE,
                "storage_unavailable",
                "the database is unavailable; retry later",
            )
        }
        VerificationError::Limited(_) => ApiError::new(S::TOO_MANY_REQUESTS, "rate_limited", msg),
    }
}

fn runner_error(plugin: &str, e: RunnerError) -> ApiError {
    use StatusCode as S;
    let msg = e.to_string();
    match e {
        RunnerError::NotFound(_) => ApiError::not_found(msg),
        RunnerError::AlreadyExists(_) => ApiError::new(S::CONFLICT, "already_exists", msg),
        RunnerError::Finished { .. } => ApiError::new(S::CONFLICT, "verification_finished", msg),
        RunnerError::Event(_) => ApiError::bad_request("input_not_expected", msg),
        RunnerError::WrongPlugin { .. } => ApiError::bad_request("wrong_plugin", msg),
        RunnerError::TooManyRounds(_) => {
            tracing::warn!(%plugin, "plugin exceeded its HTTP rounds");
            ApiError::new(S::BAD_GATEWAY, "plugin_error", msg)
        }
        RunnerError::Store(s) => {
            tracing::error!(error = %s, "verification store failed");
            ApiError::new(
                S::SERVICE_UNAVAILABLE,
                "storage_unavailable",
                "the database is unavailable; retry later",
            )
        }
        RunnerError::Plugin(p) => plugin_error(plugin, p),
        RunnerError::Limited(_) => ApiError::new(S::TOO_MANY_REQUESTS, "rate_limited", msg),
        _ => ApiError::new(S::INTERNAL_SERVER_ERROR, "plugin_error", msg),
    }
}

fn plugin_error(plugin: &str, e: PluginError) -> ApiError {
    use StatusCode as S;
    tracing::warn!(%plugin, error = %e, "plugin call failed");
    let unavailable = |m: String| ApiError::new(S::SERVICE_UNAVAILABLE, "plugin_unavailable", m);
    match e {
        PluginError::CircuitOpen { .. }
        | PluginError::WorkerCrashed { .. }
        | PluginError::Timeout { .. }
        | PluginError::Panicked
        | PluginError::Worker(_) => unavailable(format!("verification plugin {plugin}: {e}")),
        PluginError::Status {
            status: plugin_abi::StatusCode::InvalidArgument,
            ..
        } => ApiError::bad_request(
            "invalid_applicant",
            format!("verification plugin {plugin} refused the input"),
        ),
        PluginError::BadOutput { .. } => ApiError::new(
            S::BAD_GATEWAY,
            "plugin_bad_output",
            format!("verification plugin {plugin}: {e}"),
        ),
        _ => ApiError::new(
            S::BAD_GATEWAY,
            "plugin_error",
            format!("verification plugin {plugin}: {e}"),
        ),
    }
}

/// Starts a verification.
pub async fn start(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let who = requester(&caller)?;
    let body: StartBody = private_json_body(body)?;
    if let Some(r) = &body.reference {
        if r.is_empty() || r.len() > 128 || r.chars().any(char::is_control) {
            return Err(ApiError::bad_request(
                "invalid_reference",
                "reference must be 1 to 128 printable characters",
            ));
        }
    }
    let info = match state
        .verifications
        .start(&who, &body.plugin, body.applicant, body.reference)
        .await
    {
        Ok(info) => info,
        Err(e) => return Ok(error_response(e)),
    };
    let ok = if info.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(answer(&info, ok))
}

/// Delivers the user's input for a challenge.
pub async fn input(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let who = requester(&caller)?;
    let body: InputBody = private_json_body(body)?;
    if body.value.len() > 256 {
        return Err(ApiError::bad_request(
            "invalid_input",
            "value is longer than 256 bytes",
        ));
    }
    let info = match state
        .verifications
        .input(&who, &id, body.kind, body.value)
        .await
    {
        Ok(info) => info,
        Err(e) => return Ok(error_response(e)),
    };
    Ok(answer(&info, StatusCode::OK))
}

/// Cancels a verification.
pub async fn cancel(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let who = requester(&caller)?;
    let info = match state.verifications.cancel(&who, &id).await {
        Ok(info) => info,
        Err(e) => return Ok(error_response(e)),
    };
    Ok((StatusCode::OK, Json(view_json(&info))).into_response())
}

/// The current state of a verification.
pub async fn get(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let who = requester(&caller)?;
    let info = state
        .verifications
        .get(&who, &id)
        .await
        .map_err(verification_error)?;
    Ok(Json(view_json(&info)))
}

/// Every configured plugin with its state and worker health (operators only).
pub async fn plugins(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Value>, ApiError> {
    if !matches!(caller, Caller::Operator { .. }) {
        return Err(ApiError::forbidden(
            "operator_only",
            "only an operator may list plugins",
        ));
    }
    Ok(Json(
        json!({ "plugins": state.verifications.plugins_status().await }),
    ))
}
