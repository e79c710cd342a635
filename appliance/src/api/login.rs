//! QR login challenges: created and read by a relying party, answered by a channel (the
//! phone app's platform). See `relying::login` for what is signed and checked.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::Deserialize;

use super::certificates::json_body;
use super::mtls::Caller;
use super::{ApiError, AppState};
use crate::relying::login::Created;
use crate::relying::{LoginError, LoginView};

/// Body of `POST /api/v1/login-challenges`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    /// `L1`, `L2` or `L3`: the least level the certificate must carry.
    #[serde(default)]
    pub min_level: Option<String>,
    /// URL the result is POSTed to when decided (under the relying party's `callback_urls`).
    #[serde(default)]
    pub callback: Option<String>,
}

/// Body of `POST /api/v1/login-challenges/{id}/response`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResponseBody {
    /// The signer's certificate, PEM.
    pub certificate: String,
    /// The signature over the challenge's `qr` text, base64.
    pub signature: String,
    /// `ecdsa-sha256`, `rsa-pss-sha256`, ...; default: the key's natural scheme.
    #[serde(default)]
    pub algorithm: Option<String>,
}

fn relying_party(caller: &Caller) -> Result<&str, ApiError> {
    match caller {
        Caller::RelyingParty { name } => Ok(name),
        Caller::Unknown { .. } => Err(ApiError::forbidden(
            "unknown_client",
            "the client certificate is not registered with this appliance",
        )),
        other => Err(ApiError::role_not_allowed(other)),
    }
}

/// Creates a challenge for the calling relying party.
pub async fn create(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Created>), ApiError> {
    let rp = relying_party(&caller)?;
    let body: CreateBody = json_body(body)?;
    let created = state
        .relying
        .login
        .create(
            rp,
            body.min_level.as_deref(),
            body.callback.as_deref(),
            &caller.actor(),
        )
        .await
        .map_err(login_error)?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// Reads a challenge (only the relying party that created it).
pub async fn get(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<LoginView>, ApiError> {
    let rp = relying_party(&caller)?;
    let view = state
        .relying
        .login
        .view(&id, rp)
        .await
        .map_err(login_error)?;
    Ok(Json(view))
}

/// The phone's signed answer, posted by its channel.
pub async fn respond(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<LoginView>, ApiError> {
    let channel = match &caller {
        Caller::Channel { channel } => channel.name.clone(),
        Caller::Unknown { .. } => {
            return Err(ApiError::forbidden(
                "unknown_client",
                "the client certificate is not registered with this appliance",
            ))
        }
        other => return Err(ApiError::role_not_allowed(other)),
    };
    let body: ResponseBody = json_body(body)?;
    let view = state
        .relying
        .login
        .answer(
            &id,
            &channel,
            &body.certificate,
            &body.signature,
            body.algorithm.as_deref(),
        )
        .await
        .map_err(login_error)?;
    Ok(Json(view))
}

/// Each login error's status and stable code.
fn login_error(e: LoginError) -> ApiError {
    use StatusCode as S;
    let msg = e.to_string();
    match e {
        LoginError::InvalidLevel => ApiError::bad_request("invalid_level", msg),
        LoginError::CallbackRefused(_) => ApiError::bad_request("callback_not_allowed", msg),
        LoginError::Callback(_) => {
            ApiError::new(S::SERVICE_UNAVAILABLE, "storage_unavailable", msg)
        }
        LoginError::NotFound => ApiError::not_found(msg),
        LoginError::Used => ApiError::new(S::CONFLICT, "challenge_used", msg),
        LoginError::Expired => ApiError::new(S::GONE, "challenge_expired", msg),
        LoginError::MalformedCertificate(_) => ApiError::bad_request("malformed_certificate", msg),
        LoginError::MalformedSignature(_) => ApiError::bad_request("malformed_signature", msg),
        LoginError::Unsupported(_) => ApiError::bad_request("unsupported_algorithm", msg),
        LoginError::SignatureInvalid => {
            ApiError::new(S::UNPROCESSABLE_ENTITY, "signature_invalid", msg)
        }
        LoginError::Refused(r) => ApiError::new(S::UNPROCESSABLE_ENTITY, r.code(), msg),
        LoginError::Storage(s) => super::error::storage_error(&s),
    }
}
