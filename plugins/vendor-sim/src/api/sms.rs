//! SMS gateway: send a one-time code to a phone, verify what the user typed.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};

use super::{required, ApiError};
use crate::state::{Api, Sim};

/// `POST /sms/v1/send` body.
#[derive(Debug, Deserialize)]
pub struct SendRequest {
    /// Idempotency key: the same key returns the same code.
    pub request_id: String,
    /// Destination phone.
    pub phone: String,
}

/// `POST /sms/v1/send` answer.
#[derive(Debug, Serialize)]
pub struct SendResponse {
    /// Code id to verify against.
    pub otp_id: String,
    /// Seconds the gateway keeps the code.
    pub expires_in: u32,
}

/// Sends (or re-sends idempotently) a code.
pub async fn send(
    State(sim): State<Arc<Sim>>,
    Json(req): Json<SendRequest>,
) -> Result<Json<SendResponse>, ApiError> {
    required(&req.request_id, "request_id")?;
    required(&req.phone, "phone")?;
    let mut inner = sim.lock();
    let otp_id = match inner.otp_by_request.get(&req.request_id) {
        Some(id) => id.clone(),
        None => {
            let id = inner.send_code(&req.phone, Api::Sms);
            inner.otp_by_request.insert(req.request_id, id.clone());
            id
        }
    };
    Ok(Json(SendResponse {
        otp_id,
        expires_in: 300,
    }))
}

/// `POST /sms/v1/verify` body.
#[derive(Debug, Deserialize)]
pub struct VerifyRequest {
    /// Code id from `send`.
    pub otp_id: String,
    /// What the user typed.
    pub code: String,
}

/// `POST /sms/v1/verify` answer.
#[derive(Debug, Serialize)]
pub struct VerifyResponse {
    /// `ok | wrong | unknown`.
    pub result: &'static str,
}

/// Compares the code; a matching code can be verified again (idempotent).
pub async fn verify(
    State(sim): State<Arc<Sim>>,
    Json(req): Json<VerifyRequest>,
) -> Json<VerifyResponse> {
    let mut inner = sim.lock();
    let result = match inner.otps.get_mut(&req.otp_id) {
        None => "unknown",
        Some(otp) if otp.code == req.code.trim() => {
            otp.used = true;
            "ok"
        }
        Some(_) => "wrong",
    };
    Json(VerifyResponse { result })
}

/// `POST /sms/v1/message` body: a text the caller wrote (the appliance's own one-time codes).
#[derive(Debug, Deserialize)]
pub struct MessageRequest {
    /// Idempotency key: the same key sends nothing new.
    pub request_id: String,
    /// Destination phone.
    pub phone: String,
    /// The text.
    pub text: String,
}

/// `POST /sms/v1/message` answer.
#[derive(Debug, Serialize)]
pub struct MessageResponse {
    /// Gateway message id.
    pub message_id: String,
}

/// Sends (or, for a known request id, does not send again) a text message.
pub async fn message(
    State(sim): State<Arc<Sim>>,
    Json(req): Json<MessageRequest>,
) -> Result<Json<MessageResponse>, ApiError> {
    required(&req.request_id, "request_id")?;
    required(&req.phone, "phone")?;
    required(&req.text, "text")?;
    let mut inner = sim.lock();
    let message_id = match inner.message_by_request.get(&req.request_id) {
        Some(id) => id.clone(),
        None => {
            let id = inner.send_text(&req.phone, &req.text);
            inner.message_by_request.insert(req.request_id, id.clone());
            id
        }
    };
    Ok(Json(MessageResponse { message_id }))
}
