//! HTTP routes: one module per simulated vendor, plus the test-only `/_sim/` endpoints.

pub mod bank;
pub mod carrier;
pub mod face;
pub mod mail;
pub mod partner;
pub mod payout;
pub mod registry;
pub mod sim;
pub mod sms;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use crate::state::{Api, FaultKind, Sim};

/// Header carrying the vendor API key (the host injects it from `{{secret:api_key}}`).
pub const API_KEY_HEADER: &str = "x-api-key";

/// An error answer from a simulated vendor.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Missing or wrong API key.
    #[error("unauthorized")]
    Unauthorized,
    /// A required field is missing or malformed.
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    /// Unknown token / id.
    #[error("not found")]
    NotFound,
    /// A fault injected through `/_sim/faults`.
    #[error("injected fault")]
    Injected(StatusCode),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::Injected(s) => *s,
        };
        (status, Json(json!({"error": self.to_string()}))).into_response()
    }
}

/// Checks the API key, counts the call and applies any injected fault.
async fn vendor_gate(State(sim): State<Arc<Sim>>, req: Request, next: Next) -> Response {
    let key_ok = req
        .headers()
        .get(API_KEY_HEADER)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == sim.config.api_key);
    if !key_ok {
        return ApiError::Unauthorized.into_response();
    }
    {
        let endpoint = format!("{} {}", req.method(), req.uri().path());
        *sim.lock().paths.entry(endpoint).or_default() += 1;
    }
    if let Some(api) = Api::from_path(req.uri().path()) {
        match sim.on_call(api) {
            Some(FaultKind::Status { status }) => {
                let code = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
                return ApiError::Injected(code).into_response();
            }
            Some(FaultKind::Delay { delay_ms }) => {
                tokio::time::sleep(Duration::from_millis(delay_ms)).await;
            }
            None => {}
        }
    }
    next.run(req).await
}

/// All routes.
pub fn router(sim: Arc<Sim>) -> Router {
    let vendor = Router::new()
        .route("/carrier/v1/verify", post(carrier::verify))
        .route("/sms/v1/send", post(sms::send))
        .route("/sms/v1/verify", post(sms::verify))
        .route("/sms/v1/message", post(sms::message))
        .route("/mail/v1/send", post(mail::send))
        .route("/bank/v1/auth/init", post(bank::init))
        .route("/bank/v1/auth/confirm", post(bank::confirm))
        .route("/face/v1/sessions", post(face::start))
        .route("/face/v1/result", post(face::result))
        .route("/payout/v1/transfers", post(payout::create))
        .route("/payout/v1/transfers/query", post(payout::query))
        .route("/registry/v1/verify", post(registry::verify))
        .route_layer(middleware::from_fn_with_state(sim.clone(), vendor_gate));
    let public = Router::new()
        .route("/face/page/{token}", get(face::page))
        .route("/face/page/{token}/complete", post(face::complete))
        .route("/face/page/{token}/cancel", post(face::cancel))
        .route("/partner/{name}", post(partner::receive))
        .route("/_sim/sms", get(sim::sms))
        .route("/_sim/mail", get(sim::mail))
        .route("/_sim/webhooks", get(sim::webhooks))
        .route("/_sim/deposits", get(sim::deposits))
        .route("/_sim/faults", post(sim::faults))
        .route("/_sim/calls", get(sim::calls))
        .route("/_sim/paths", get(sim::paths))
        .route("/_sim/face/expire", post(sim::face_expire))
        .route("/_sim/reset", post(sim::reset))
        .route("/healthz", get(|| async { "ok" }));
    vendor.merge(public).with_state(sim)
}

/// A required non-empty string field.
pub(crate) fn required(v: &str, what: &'static str) -> Result<(), ApiError> {
    if v.trim().is_empty() {
        Err(ApiError::BadRequest(what))
    } else {
        Ok(())
    }
}
