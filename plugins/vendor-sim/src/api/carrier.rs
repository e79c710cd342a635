//! Carrier 3-element check: name + ID number + phone.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};

use super::{required, ApiError};
use crate::people::person_by_phone;
use crate::state::Sim;

/// `POST /carrier/v1/verify` body.
#[derive(Debug, Deserialize)]
pub struct VerifyRequest {
    /// Caller's idempotency key.
    pub request_id: String,
    /// Name.
    pub name: String,
    /// Resident ID number.
    pub id_number: String,
    /// Mobile number (11 digits).
    pub phone: String,
}

/// The verdict.
#[derive(Debug, Serialize)]
pub struct VerifyResponse {
    /// Echo of the caller's key.
    pub request_id: String,
    /// `match | mismatch | no_record | not_real_name | phone_invalid`.
    pub result: &'static str,
    /// `normal` for every simulated phone.
    pub phone_status: &'static str,
    /// Carrier's own id for the check (evidence).
    pub carrier_request_id: String,
}

/// Looks the phone up and compares name and ID number.
pub async fn verify(
    State(sim): State<Arc<Sim>>,
    Json(req): Json<VerifyRequest>,
) -> Result<Json<VerifyResponse>, ApiError> {
    required(&req.request_id, "request_id")?;
    let result = if req.phone.len() != 11 || !req.phone.bytes().all(|c| c.is_ascii_digit()) {
        "phone_invalid"
    } else {
        match person_by_phone(&req.phone) {
            None => "no_record",
            Some(p) if !p.phone_real_name => "not_real_name",
            Some(p) if p.name == req.name && p.id_number.eq_ignore_ascii_case(&req.id_number) => {
                "match"
            }
            Some(_) => "mismatch",
        }
    };
    let carrier_request_id = sim.lock().new_id("cr");
    Ok(Json(VerifyResponse {
        request_id: req.request_id,
        result,
        phone_status: "normal",
        carrier_request_id,
    }))
}
