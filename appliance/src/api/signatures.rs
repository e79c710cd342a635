//! `POST /api/v1/signatures/verify`: a relying party asks whether a CMS SignedData was made
//! with one of our certificates, valid at the signing time.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::{Extension, Json};
use base64::Engine as _;
use serde::Deserialize;

use super::certificates::json_body;
use super::mtls::Caller;
use super::{ApiError, AppState};
use crate::relying::cms::{CmsError, Verdict};

/// Body of a verification.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyBody {
    /// DER ContentInfo (SignedData), base64.
    pub cms: String,
    /// The signed content of a detached signature, base64.
    #[serde(default)]
    pub content: Option<String>,
}

/// Verifies a CMS signature; an unparseable one is 400, a parseable one gets a verdict.
pub async fn verify(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Verdict>, ApiError> {
    match &caller {
        Caller::RelyingParty { .. } | Caller::Operator { .. } => {}
        Caller::Unknown { .. } => {
            return Err(ApiError::forbidden(
                "unknown_client",
                "the client certificate is not registered with this appliance",
            ))
        }
        other => return Err(ApiError::role_not_allowed(other)),
    }
    let body: VerifyBody = json_body(body)?;
    let b64 = base64::engine::general_purpose::STANDARD;
    let cms = b64
        .decode(body.cms.trim())
        .map_err(|e| ApiError::bad_request("malformed_cms", format!("cms is not base64: {e}")))?;
    let content = match &body.content {
        None => None,
        Some(c) => Some(b64.decode(c.trim()).map_err(|e| {
            ApiError::bad_request("malformed_content", format!("content is not base64: {e}"))
        })?),
    };
    let verdict = state
        .relying
        .cms
        .verify(&cms, content.as_deref())
        .await
        .map_err(|e| match e {
            CmsError::Malformed(_) => ApiError::bad_request("malformed_cms", e.to_string()),
            CmsError::ContentMissing => ApiError::bad_request("content_missing", e.to_string()),
            CmsError::Storage(s) => super::error::storage_error(&s),
        })?;
    Ok(Json(verdict))
}
