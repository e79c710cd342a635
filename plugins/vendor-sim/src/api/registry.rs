//! Organisation registry: name + USCC + legal representative name and ID number.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};

use super::{required, ApiError};
use crate::people::{org, OrgStatus};
use crate::state::Sim;

/// `POST /registry/v1/verify` body.
#[derive(Debug, Deserialize)]
pub struct VerifyRequest {
    /// Idempotency key.
    pub request_id: String,
    /// Organisation name.
    pub name: String,
    /// USCC.
    pub uscc: String,
    /// Legal representative's name.
    pub legal_rep_name: String,
    /// Legal representative's ID number.
    pub legal_rep_id: String,
}

/// The verdict.
#[derive(Debug, Serialize)]
pub struct VerifyResponse {
    /// `match | mismatch | no_record`.
    pub result: &'static str,
    /// `active | deregistered` (absent with `no_record`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<&'static str>,
    /// Which fields differ (with `mismatch`).
    pub mismatch_fields: Vec<&'static str>,
    /// Registry's request id (evidence).
    pub registry_request_id: String,
}

/// Looks the USCC up and compares the other fields.
pub async fn verify(
    State(sim): State<Arc<Sim>>,
    Json(req): Json<VerifyRequest>,
) -> Result<Json<VerifyResponse>, ApiError> {
    required(&req.request_id, "request_id")?;
    let registry_request_id = sim.lock().new_id("reg");
    let Some(o) = org(req.uscc.trim()) else {
        return Ok(Json(VerifyResponse {
            result: "no_record",
            status: None,
            mismatch_fields: vec![],
            registry_request_id,
        }));
    };
    let mut mismatch_fields = Vec::new();
    if o.name != req.name.trim() {
        mismatch_fields.push("name");
    }
    if o.legal_rep_name != req.legal_rep_name.trim() {
        mismatch_fields.push("legal_rep_name");
    }
    if !o.legal_rep_id.eq_ignore_ascii_case(req.legal_rep_id.trim()) {
        mismatch_fields.push("legal_rep_id");
    }
    let result = if mismatch_fields.is_empty() {
        "match"
    } else {
        "mismatch"
    };
    let status = match o.status {
        OrgStatus::Active => "active",
        OrgStatus::Deregistered => "deregistered",
    };
    Ok(Json(VerifyResponse {
        result,
        status: Some(status),
        mismatch_fields,
        registry_request_id,
    }))
}
