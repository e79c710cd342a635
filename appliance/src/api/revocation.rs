//! `POST /api/v1/certificates/{serial}/revoke` and `POST /api/v1/certificates/{serial}/unhold`.
//!
//! An operator may act on any certificate, a channel only on certificates issued through it.
//! The change is durable (with its audit row) before the reply, and the OCSP response has
//! already been re-signed by then.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};

use super::certificates::{json_body, normalise_serial};
use super::error::storage_error;
use super::mtls::Caller;
use super::{ApiError, AppState};
use crate::storage::{Revocation, RevocationError, StatusChange};

/// Body of a revocation request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeBody {
    /// RFC 5280 reason name (`keyCompromise`, `superseded`, `certificateHold`, ...).
    pub reason: String,
    /// When the key is known or suspected to have been compromised (RFC 3339).
    #[serde(default)]
    pub invalidity_date: Option<String>,
}

/// The certificate's status after the change.
#[derive(Debug, Serialize)]
pub struct StatusBody {
    /// Serial, lowercase hex.
    pub serial: String,
    /// `valid`, `revoked` or `hold`.
    pub status: String,
    /// revocationTime, unix seconds.
    pub revoked_at: Option<i64>,
    /// RFC 5280 reason name.
    pub reason: Option<&'static str>,
    /// invalidityDate, unix seconds.
    pub invalidity_date: Option<i64>,
}

/// RFC 5280 reason names a caller may use (removeFromCRL is ours to write, 7 is unassigned).
const REASONS: &[(&str, i64)] = &[
    ("unspecified", 0),
    ("keyCompromise", 1),
    ("cACompromise", 2),
    ("affiliationChanged", 3),
    ("superseded", 4),
    ("cessationOfOperation", 5),
    ("certificateHold", 6),
    ("privilegeWithdrawn", 9),
    ("aACompromise", 10),
];

/// Reasons a channel (a subscriber's agent) may give; CA-level reasons are the operator's.
/// certificateHold (6) additionally needs a profile that allows it.
const SUBSCRIBER_REASONS: &[i64] = &[0, 1, 3, 4, 5, 6];

fn reason_name(code: i64) -> Option<&'static str> {
    REASONS.iter().find(|(_, c)| *c == code).map(|(n, _)| *n)
}

fn body_of(c: StatusChange) -> StatusBody {
    StatusBody {
        serial: c.serial,
        status: c.status,
        revoked_at: c.revoked_at,
        reason: c.revocation_reason.and_then(reason_name),
        invalidity_date: c.invalidity_date,
    }
}

fn revocation_error(e: RevocationError, serial: &str) -> ApiError {
    match e {
        RevocationError::NotFound => {
            ApiError::not_found(format!("no certificate with serial {serial}"))
        }
        RevocationError::AlreadyRevoked => ApiError::new(
            StatusCode::CONFLICT,
            "already_revoked",
            "the certificate is already revoked (only an upgrade to keyCompromise is allowed)",
        ),
        RevocationError::NotOnHold => ApiError::new(
            StatusCode::CONFLICT,
            "not_on_hold",
            "the certificate is not on hold",
        ),
        RevocationError::HeldByOperator => ApiError::forbidden(
            "hold_by_operator",
            "an operator placed this hold; only an operator can lift it",
        ),
        RevocationError::Storage(s) => storage_error(&s),
    }
}

/// Checks the caller may act on `serial`; returns the record's profile.
async fn authorise(state: &AppState, caller: &Caller, serial: &str) -> Result<String, ApiError> {
    match caller {
        Caller::Operator { .. } | Caller::Channel { .. } => {}
        Caller::Unknown { .. } => {
            return Err(ApiError::forbidden(
                "unknown_client",
                "the client certificate is not registered with this appliance",
            ))
        }
        other => return Err(ApiError::role_not_allowed(other)),
    }
    let record = state
        .certificates
        .get(serial)
        .await
        .map_err(|e| storage_error(&e))?
        .ok_or_else(|| ApiError::not_found(format!("no certificate with serial {serial}")))?;
    if let Caller::Channel { channel } = caller {
        if record.channel.as_deref() != Some(channel.name.as_str()) {
            return Err(ApiError::forbidden(
                "not_your_certificate",
                format!(
                    "channel {} did not issue certificate {serial}",
                    channel.name
                ),
            ));
        }
    }
    Ok(record.profile)
}

/// Revokes a certificate, or puts it on hold (`certificateHold`, if its profile allows).
pub async fn revoke(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(serial): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<StatusBody>, ApiError> {
    let serial = normalise_serial(&serial)?;
    let body: RevokeBody = json_body(body)?;
    let reason = REASONS
        .iter()
        .find(|(n, _)| *n == body.reason)
        .map(|(_, c)| *c)
        .ok_or_else(|| {
            ApiError::bad_request(
                "invalid_reason",
                format!(
                    "unknown revocation reason {:?} (accepted: {})",
                    body.reason,
                    REASONS
                        .iter()
                        .map(|(n, _)| *n)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
        })?;
    let invalidity_date = body
        .invalidity_date
        .as_deref()
        .map(|s| {
            time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                .map(|t| t.unix_timestamp())
                .map_err(|_| {
                    ApiError::bad_request("invalid_date", "invalidity_date must be RFC 3339")
                })
        })
        .transpose()?;
    if matches!(caller, Caller::Channel { .. }) && !SUBSCRIBER_REASONS.contains(&reason) {
        return Err(ApiError::forbidden(
            "reason_not_allowed",
            format!(
                "a channel may revoke only with a subscriber reason (unspecified, keyCompromise, \
                 affiliationChanged, superseded, cessationOfOperation, certificateHold), not {}",
                body.reason
            ),
        ));
    }
    let profile = authorise(&state, &caller, &serial).await?;
    if reason == 6 {
        let allowed = state
            .issuer
            .profiles()
            .get(&profile)
            .is_some_and(|p| p.allow_certificate_hold);
        if !allowed {
            return Err(ApiError::bad_request(
                "hold_not_allowed",
                format!("profile {profile} does not allow certificateHold"),
            ));
        }
    }
    let change = state
        .status
        .revoke(
            &Revocation {
                serial: serial.clone(),
                reason,
                invalidity_date,
            },
            &caller.actor(),
        )
        .await
        .map_err(|e| revocation_error(e, &serial))?;
    tracing::info!(serial = %serial, reason = reason, status = %change.status, "certificate status changed");
    Ok(Json(body_of(change)))
}

/// Lifts a certificateHold.
pub async fn unhold(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(serial): Path<String>,
) -> Result<Json<StatusBody>, ApiError> {
    let serial = normalise_serial(&serial)?;
    authorise(&state, &caller, &serial).await?;
    let change = state
        .status
        .unhold(&serial, &caller.actor())
        .await
        .map_err(|e| revocation_error(e, &serial))?;
    tracing::info!(serial = %serial, "certificate hold lifted");
    Ok(Json(body_of(change)))
}
