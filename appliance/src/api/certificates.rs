//! `POST /api/v1/certificates` (operators only: a direct issuance, audited as such) and
//! `GET /api/v1/certificates/{serial}`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};

use super::mtls::Caller;
use super::{ApiError, AppState};
use crate::ca::issuance::{IssuanceError, IssuanceRequest};
use crate::ca::pem_rfc7468_encode;

/// Body of an issuance request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssueBody {
    /// Profile name.
    pub profile: String,
    /// PEM CSR.
    pub csr: String,
    /// Verified subject attributes.
    #[serde(default)]
    pub subject: BTreeMap<String, String>,
}

/// Answer to an issuance.
#[derive(Debug, Serialize)]
pub struct IssuedBody {
    /// Serial, lowercase hex.
    pub serial: String,
    /// The certificate, PEM.
    pub certificate: String,
    /// Issuing CA then its ancestors up to the root, PEM.
    pub chain: Vec<String>,
}

/// A stored certificate and its status.
#[derive(Debug, Serialize)]
pub struct CertificateBody {
    /// Serial, lowercase hex.
    pub serial: String,
    /// `valid`, `revoked`, `hold` or `expired`.
    pub status: String,
    /// Profile it was issued under.
    pub profile: String,
    /// notAfter, unix seconds.
    pub not_after: i64,
    /// When it was revoked, unix seconds.
    pub revoked_at: Option<i64>,
    /// RFC 5280 reason code.
    pub revocation_reason: Option<i64>,
    /// The certificate, PEM.
    pub certificate: String,
}

/// Parses a JSON body, mapping every failure to a specific error.
pub fn json_body<T: serde::de::DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
) -> Result<T, ApiError> {
    let bytes = super::error::read_body(body)?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request("malformed_json", e.to_string()))
}

/// Issues a certificate from a CSR under a profile.
pub async fn issue(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<IssuedBody>), ApiError> {
    match &caller {
        Caller::Operator { .. } => {}
        Caller::Channel { channel } => {
            return Err(ApiError::forbidden(
                "channel_not_allowed",
                format!(
                    "channel {} cannot issue directly: a channel's certificates come from \
                     applications (POST /api/v1/applications)",
                    channel.name
                ),
            ))
        }
        Caller::Unknown { .. } => {
            return Err(ApiError::forbidden(
                "unknown_client",
                "the client certificate is not registered with this appliance",
            ))
        }
        other => return Err(ApiError::role_not_allowed(other)),
    }
    let body: IssueBody = json_body(body)?;
    if !state.issuer.profiles().contains_key(&body.profile) {
        return Err(IssuanceError::UnknownProfile(body.profile).into());
    }
    // An operator's direct issuance: audited as such (`direct: true`, no application).
    let profile = body.profile.clone();
    let started = std::time::Instant::now();
    let issued = state
        .issuer
        .issue(IssuanceRequest {
            profile: body.profile,
            csr_pem: body.csr,
            subject: body.subject,
            channel: None,
            actor: caller.actor(),
            extra_policies: Vec::new(),
            application: None,
        })
        .await;
    crate::ops::metrics::issuance(&profile, started.elapsed(), &issued);
    let issued = issued?;
    // Pre-sign its OCSP response now (a request before that is answered live).
    state
        .status
        .certificate_issued_valid(issued.ca_id, &issued.serial, issued.not_after);
    Ok((
        StatusCode::CREATED,
        Json(IssuedBody {
            serial: issued.serial,
            certificate: pem_rfc7468_encode("CERTIFICATE", &issued.der),
            chain: issued.chain.iter().map(|c| c.certificate_pem()).collect(),
        }),
    ))
}

/// Normalises a serial from a URL: hex, optional `0x`/colons, case-insensitive, no leading zero bytes.
pub fn normalise_serial(raw: &str) -> Result<String, ApiError> {
    let s: String = raw
        .trim_start_matches("0x")
        .chars()
        .filter(|c| *c != ':')
        .collect::<String>()
        .to_ascii_lowercase();
    if s.is_empty() || s.len() > 42 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::bad_request(
            "invalid_serial",
            "a serial is 1 to 21 bytes of hexadecimal",
        ));
    }
    let mut s = if s.len() % 2 == 1 { format!("0{s}") } else { s };
    while s.len() > 2 && s.starts_with("00") {
        s.drain(..2);
    }
    Ok(s)
}

/// Returns a certificate and its status. A channel sees only certificates issued through it.
pub async fn get(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(serial): Path<String>,
) -> Result<Json<CertificateBody>, ApiError> {
    let serial = normalise_serial(&serial)?;
    let record = state
        .certificates
        .get(&serial)
        .await
        .map_err(|e| super::error::storage_error(&e))?;
    let visible = match (&caller, &record) {
        (Caller::Operator { .. } | Caller::Auditor { .. } | Caller::RaOfficer { .. }, _) => true,
        (Caller::Channel { channel }, Some(r)) => {
            r.channel.as_deref() == Some(channel.name.as_str())
        }
        (Caller::Unknown { .. }, _) => {
            return Err(ApiError::forbidden(
                "unknown_client",
                "the client certificate is not registered with this appliance",
            ))
        }
        (Caller::RelyingParty { .. }, _) => return Err(ApiError::role_not_allowed(&caller)),
        (Caller::Channel { .. }, None) => false,
    };
    let record = record
        .filter(|_| visible)
        .ok_or_else(|| ApiError::not_found(format!("no certificate with serial {serial}")))?;
    let status = if record.status == "valid" && record.not_after < crate::storage::unix_now() {
        "expired".to_owned()
    } else {
        record.status.clone()
    };
    Ok(Json(CertificateBody {
        serial: record.serial,
        status,
        profile: record.profile,
        not_after: record.not_after,
        revoked_at: record.revoked_at,
        revocation_reason: record.revocation_reason,
        certificate: pem_rfc7468_encode("CERTIFICATE", &record.der),
    }))
}
