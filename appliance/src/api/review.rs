//! Materials, manual review and the offline path over the API: channels upload materials and
//! switch to paper; RA officers read the queue and materials and decide; auditors read the
//! queue.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;

use super::applications::{body, channel, failure_response, ok, service};
use super::mtls::Caller;
use super::multipart;
use super::{ApiError, AppState};
use crate::application::{Failure, Upload, Who};

/// Largest materials request body (the file limit plus the form around it).
pub const MATERIAL_BODY_LIMIT: usize = crate::application::service::MAX_MATERIAL_BYTES + 64 * 1024;

/// Body of `POST .../{id}/review`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReviewBody {
    /// `approve` or `reject`.
    pub decision: String,
    /// Why (required to reject; the applicant sees it).
    #[serde(default)]
    pub reason: Option<String>,
}

fn officer(caller: &Caller) -> Result<Who, ApiError> {
    match caller {
        Caller::RaOfficer { name } => Ok(Who::Officer(name.clone())),
        other => Err(ApiError::role_not_allowed(other)),
    }
}

/// The callers who read the review queue: RA officers, auditors, operators.
fn queue_reader(caller: &Caller) -> Result<Who, ApiError> {
    match caller {
        Caller::RaOfficer { name } => Ok(Who::Officer(name.clone())),
        Caller::Auditor { name } => Ok(Who::Auditor(name.clone())),
        Caller::Operator { name } => Ok(Who::Operator(name.clone())),
        other => Err(ApiError::role_not_allowed(other)),
    }
}

/// `GET /api/v1/review-queue`: applications awaiting review, oldest first (RA officers;
/// auditors and operators read it).
pub async fn queue(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
) -> Result<Response, ApiError> {
    let who = queue_reader(&caller)?;
    let svc = service(&state)?;
    Ok(match svc.review_queue(&who).await {
        Ok(v) => (StatusCode::OK, Json(v)).into_response(),
        Err(e) => failure_response(Failure::from(e)),
    })
}

/// `GET /api/v1/review-queue/{id}`: one application awaiting review, as the queue shows it
/// (404 `not_found` otherwise); the same readers as the queue.
pub async fn queue_entry(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let who = queue_reader(&caller)?;
    let svc = service(&state)?;
    Ok(match svc.review_entry(&who, &id).await {
        Ok(v) => (StatusCode::OK, Json(v)).into_response(),
        Err(e) => failure_response(Failure::from(e)),
    })
}

/// `POST /api/v1/applications/{id}/review`: an RA officer's decision.
pub async fn decide(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let who = officer(&caller)?;
    let svc = service(&state)?;
    let b: ReviewBody = body(raw)?;
    Ok(ok(
        StatusCode::OK,
        svc.review(&who, &id, &b.decision, b.reason.as_deref())
            .await,
    ))
}

/// `POST /api/v1/applications/{id}/offline`: the applicant switches to the paper path.
pub async fn offline(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let who = channel(&caller)?;
    let svc = service(&state)?;
    Ok(ok(StatusCode::OK, svc.offline(&who, &id).await))
}

/// `POST /api/v1/lookups`: a subject's agents (masked) by ID number or USCC.
pub async fn lookup(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let who = channel(&caller)?;
    let svc = service(&state)?;
    let b: crate::application::service::LookupRequest = body(raw)?;
    Ok(match svc.lookup(&who, b).await {
        Ok(v) => (StatusCode::CREATED, Json(v)).into_response(),
        Err(e) => failure_response(Failure::from(e)),
    })
}

/// `POST /api/v1/lookups/{id}/verify`: sends the code (no `code`) or checks it and lists the
/// orders.
pub async fn verify_lookup(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let who = channel(&caller)?;
    let svc = service(&state)?;
    let b: crate::application::service::LookupVerifyRequest = body(raw)?;
    Ok(match svc.verify_lookup(&who, &id, b).await {
        Ok(v) => (StatusCode::OK, Json(v)).into_response(),
        Err(e) => failure_response(Failure::from(e)),
    })
}

/// `POST /api/v1/applications/{id}/authorise`: a code to the legal representative instead of
/// an authorisation letter.
pub async fn authorise(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let who = channel(&caller)?;
    let svc = service(&state)?;
    Ok(ok(StatusCode::OK, svc.authorise(&who, &id).await))
}

/// `POST /api/v1/applications/{id}/materials` (multipart `kind`, `file`).
pub async fn upload(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let who = channel(&caller)?;
    let svc = service(&state)?;
    let bytes = super::error::read_body(raw)?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let bad =
        |e: multipart::MultipartError| ApiError::bad_request("malformed_multipart", e.to_string());
    let boundary = multipart::boundary(content_type).map_err(bad)?;
    let parts = multipart::parse(&bytes, &boundary).map_err(bad)?;
    let mut kind = None;
    let mut file = None;
    for p in parts {
        match p.name.as_str() {
            "kind" => {
                kind = Some(String::from_utf8(p.data).map_err(|_| {
                    ApiError::bad_request("malformed_multipart", "kind is not UTF-8")
                })?)
            }
            "file" => file = Some((p.content_type, p.data)),
            _ => {
                return Err(ApiError::bad_request(
                    "malformed_multipart",
                    "the form takes the fields kind and file only",
                ))
            }
        }
    }
    let (Some(kind), Some((declared_type, content))) = (kind, file) else {
        return Err(ApiError::bad_request(
            "malformed_multipart",
            "the form needs the fields kind and file",
        ));
    };
    let upload = Upload {
        kind: kind.trim().to_owned(),
        declared_type,
        content,
    };
    Ok(ok(
        StatusCode::CREATED,
        svc.add_material(&who, &id, upload).await,
    ))
}

/// `GET /api/v1/applications/{id}/materials/{material_id}`: the content, for RA officers.
pub async fn material(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path((id, material_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let who = officer(&caller)?;
    let svc = service(&state)?;
    Ok(match svc.material(&who, &id, &material_id).await {
        Ok((media_type, content)) => (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, media_type),
                (header::CACHE_CONTROL, "no-store".to_owned()),
            ],
            content,
        )
            .into_response(),
        Err(e) => failure_response(Failure::from(e)),
    })
}
