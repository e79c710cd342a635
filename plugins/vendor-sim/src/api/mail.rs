//! Mail gateway: send a plain-text e-mail (recorded, readable through `/_sim/mail`).

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{required, ApiError};
use crate::state::{SentMail, Sim};

/// `POST /mail/v1/send` body.
#[derive(Debug, Deserialize)]
pub struct SendRequest {
    /// Idempotency key: the same key sends nothing new.
    pub request_id: String,
    /// Sender.
    #[serde(default)]
    pub from: Option<String>,
    /// Recipient.
    pub to: String,
    /// Subject.
    pub subject: String,
    /// Plain-text body.
    pub text: String,
}

/// Records the e-mail once per request id.
pub async fn send(
    State(sim): State<Arc<Sim>>,
    Json(req): Json<SendRequest>,
) -> Result<Json<Value>, ApiError> {
    required(&req.request_id, "request_id")?;
    required(&req.to, "to")?;
    if !req.to.contains('@') {
        return Err(ApiError::BadRequest("to"));
    }
    let mut inner = sim.lock();
    if inner.mail_requests.insert(req.request_id) {
        inner.mail.entry(req.to).or_default().push(SentMail {
            from: req.from,
            subject: req.subject,
            text: req.text,
        });
    }
    Ok(Json(json!({"accepted": true})))
}
