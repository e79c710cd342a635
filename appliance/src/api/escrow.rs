//! Dual certificates (GM/T 0034) over the `keymgmt` service:
//! `POST /api/v1/certificates/{serial}/encryption` issues the encryption certificate beside an
//! SM2 signing certificate whose profile names an `encryption_profile` (its key pair made and
//! escrowed by key management, the private key returned enveloped to the signing key);
//! `POST /api/v1/escrow/{id}/recoveries` (one RA officer) and
//! `POST /api/v1/recoveries/{id}/approve` (another) recover an escrowed key.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use base64::Engine;
use der::{Decode, DecodePem};
use serde::{Deserialize, Serialize};

use super::certificates::{json_body, normalise_serial};
use super::mtls::Caller;
use super::{ApiError, AppState};
use crate::ca::issuance::IssuanceRequest;
use crate::ca::pem_rfc7468_encode;
use crate::keymgmt::{KeyMgmtError, RecoveryRequest};

/// Answer to a dual issuance.
#[derive(Debug, Serialize)]
pub struct EncryptionIssued {
    /// The encryption certificate's serial.
    pub serial: String,
    /// The encryption certificate, PEM.
    pub certificate: String,
    /// Issuing CA then its ancestors, PEM.
    pub chain: Vec<String>,
    /// The escrow record of its private key.
    pub escrow_id: String,
    /// The private key: a GM/T 0009 `SM2EnvelopedKey` (DER, base64) to the signing key.
    pub envelope: String,
}

/// Body of a recovery request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecoveryBody {
    /// Why the key is recovered (kept with the request).
    pub reason: String,
    /// The SM2 certificate (PEM) whose key receives the recovered key.
    pub deliver_to: String,
}

fn keymgmt_error(e: KeyMgmtError) -> ApiError {
    match e {
        KeyMgmtError::AlreadyIssued(_) => {
            ApiError::new(StatusCode::CONFLICT, "already_issued", e.to_string())
        }
        KeyMgmtError::NotFound(m) => ApiError::not_found(m),
        KeyMgmtError::SameOfficer(_) => {
            ApiError::forbidden("second_officer_required", e.to_string())
        }
        KeyMgmtError::AlreadyApproved(_) => {
            ApiError::new(StatusCode::CONFLICT, "already_approved", e.to_string())
        }
        KeyMgmtError::NotSm2(_) | KeyMgmtError::Envelope(_) => {
            ApiError::bad_request("not_sm2_key", e.to_string())
        }
        KeyMgmtError::Hsm(h) => super::error::hsm_error(&h),
        KeyMgmtError::Storage(s) => super::error::storage_error(&s),
    }
}

fn officer(caller: &Caller) -> Result<String, ApiError> {
    match caller {
        Caller::RaOfficer { .. } => Ok(caller.actor()),
        other => Err(ApiError::role_not_allowed(other)),
    }
}

/// Issues the encryption certificate beside an SM2 signing certificate of a dual profile.
pub async fn issue_encryption(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(serial): Path<String>,
) -> Result<(StatusCode, Json<EncryptionIssued>), ApiError> {
    let serial = normalise_serial(&serial)?;
    let record = state
        .certificates
        .get(&serial)
        .await
        .map_err(|e| super::error::storage_error(&e))?;
    let channel = match &caller {
        Caller::Operator { .. } => None,
        Caller::Channel { channel } => Some(channel.name.clone()),
        other => return Err(ApiError::role_not_allowed(other)),
    };
    // A channel sees only its own certificates.
    let record = record
        .filter(|r| channel.is_none() || r.channel == channel)
        .ok_or_else(|| ApiError::not_found(format!("no certificate with serial {serial}")))?;
    if record.status != "valid" || record.not_after < crate::storage::unix_now() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_valid",
            format!("certificate {serial} is {}", record.status),
        ));
    }
    let enc_profile = state
        .issuer
        .profiles()
        .get(&record.profile)
        .and_then(|p| p.encryption_profile.clone())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::CONFLICT,
                "not_dual",
                format!("profile {} has no encryption_profile", record.profile),
            )
        })?;
    let cert = x509_cert::Certificate::from_der(&record.der).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "stored_certificate",
            e.to_string(),
        )
    })?;
    let tbs = cert.tbs_certificate;
    let actor = caller.actor();
    let pair = state
        .keymgmt
        .generate(&serial, &tbs.subject_public_key_info, &actor)
        .await
        .map_err(keymgmt_error)?;
    let request = IssuanceRequest {
        profile: enc_profile,
        csr_pem: String::new(),
        subject: Default::default(),
        channel: record.channel.clone(),
        actor,
        extra_policies: Vec::new(),
        application: None,
    };
    let prepared = state
        .issuer
        .prepare_for_key(request, tbs.subject, pair.public_key.clone())?;
    let issued = state.issuer.sign(prepared).await?;
    state
        .keymgmt
        .certified(&pair.escrow_id, &issued.serial)
        .await
        .map_err(keymgmt_error)?;
    state
        .status
        .certificate_issued(issued.ca_id, &issued.serial);
    Ok((
        StatusCode::CREATED,
        Json(EncryptionIssued {
            serial: issued.serial,
            certificate: pem_rfc7468_encode("CERTIFICATE", &issued.der),
            chain: issued.chain.iter().map(|c| c.certificate_pem()).collect(),
            escrow_id: pair.escrow_id,
            envelope: base64::engine::general_purpose::STANDARD.encode(pair.envelope),
        }),
    ))
}

/// An RA officer asks to recover an escrowed key (a second officer must approve).
pub async fn request_recovery(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(escrow_id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let officer = officer(&caller)?;
    let body: RecoveryBody = json_body(body)?;
    if body.reason.trim().is_empty() || body.reason.chars().count() > 500 {
        return Err(ApiError::bad_request(
            "invalid_reason",
            "reason must be 1 to 500 characters",
        ));
    }
    let cert = x509_cert::Certificate::from_pem(body.deliver_to.as_bytes())
        .map_err(|e| ApiError::bad_request("invalid_certificate", format!("deliver_to: {e}")))?;
    let id = state
        .keymgmt
        .request_recovery(RecoveryRequest {
            escrow_id: escrow_id.clone(),
            officer: officer.clone(),
            reason: body.reason,
            deliver_to: cert.tbs_certificate.subject_public_key_info,
        })
        .await
        .map_err(keymgmt_error)?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({
            "id": id,
            "escrow_id": escrow_id,
            "requested_by": officer,
            "status": "awaiting_approval",
        })),
    ))
}

/// A second RA officer approves a recovery; the answer carries the key enveloped to the
/// request's `deliver_to` certificate.
pub async fn approve_recovery(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let officer = officer(&caller)?;
    let envelope = state
        .keymgmt
        .approve_recovery(&id, &officer)
        .await
        .map_err(keymgmt_error)?;
    Ok(Json(serde_json::json!({
        "id": id,
        "approved_by": officer,
        "status": "approved",
        "envelope": base64::engine::general_purpose::STANDARD.encode(envelope),
    })))
}
