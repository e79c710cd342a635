//! Account actions of channels: certificate download to the bound phone
//! (`POST /api/v1/downloads`, `.../{id}/complete`) and phone-code login
//! (`POST /api/v1/code-logins`, `.../{id}/complete`).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Extension;

use super::applications::{body, channel, ok, service};
use super::mtls::Caller;
use super::{ApiError, AppState};
use crate::application::service::{
    CodeLoginCompletion, CodeLoginRequest, DownloadCompletion, DownloadRequest,
};
use crate::application::Failure;

/// `POST /api/v1/downloads`: a code to the verified phone of an application awaiting its CSR.
pub async fn start_download(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let who = channel(&caller)?;
    let svc = service(&state)?;
    let b: DownloadRequest = body(raw)?;
    Ok(ok(
        StatusCode::CREATED,
        svc.start_download(&who, b).await.map_err(Failure::from),
    ))
}

/// `POST /api/v1/downloads/{id}/complete`: the code and the phone's CSR -> the certificate.
pub async fn complete_download(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let who = channel(&caller)?;
    let svc = service(&state)?;
    let b: DownloadCompletion = body(raw)?;
    Ok(ok(
        StatusCode::OK,
        svc.complete_download(&who, &id, b).await,
    ))
}

/// `POST /api/v1/code-logins`: a code to the phone's account in the channel's realm.
pub async fn start_code_login(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let who = channel(&caller)?;
    let svc = service(&state)?;
    let b: CodeLoginRequest = body(raw)?;
    Ok(ok(
        StatusCode::CREATED,
        svc.start_code_login(&who, b).await.map_err(Failure::from),
    ))
}

/// `POST /api/v1/code-logins/{id}/complete`: the code -> the account.
pub async fn complete_code_login(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let who = channel(&caller)?;
    let svc = service(&state)?;
    let b: CodeLoginCompletion = body(raw)?;
    Ok(ok(
        StatusCode::OK,
        svc.complete_code_login(&who, &id, b)
            .await
            .map_err(Failure::from),
    ))
}
