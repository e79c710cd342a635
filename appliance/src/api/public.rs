//! Relying-party endpoints on the public listener: health and CA certificates.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::{ApiError, AppState};

/// `GET /healthz`: the process is up and serving.
pub async fn healthz() -> &'static str {
    "ok\n"
}

/// `GET /ca/{name}.crt` (DER) and `GET /ca/{name}.pem`: the newest generation;
/// `/ca/{name}-gN.crt`/`.pem`: generation N.
pub async fn ca_certificate(
    State(state): State<Arc<AppState>>,
    Path(file): Path<String>,
) -> Result<Response, ApiError> {
    let (name, pem) = if let Some(name) = file.strip_suffix(".pem") {
        (name, true)
    } else if let Some(name) = file.strip_suffix(".crt") {
        (name, false)
    } else {
        return Err(ApiError::not_found(
            "CA certificates are served as {name}.crt or {name}.pem",
        ));
    };
    let ca = state
        .hierarchy
        .by_stem(name)
        .ok_or_else(|| ApiError::not_found(format!("no CA named {name:?}")))?;
    let cache = (header::CACHE_CONTROL, "public, max-age=3600");
    Ok(if pem {
        (
            [(header::CONTENT_TYPE, "application/x-pem-file"), cache],
            ca.certificate_pem(),
        )
            .into_response()
    } else {
        (
            [(header::CONTENT_TYPE, "application/pkix-cert"), cache],
            ca.certificate_der.clone(),
        )
            .into_response()
    })
}
