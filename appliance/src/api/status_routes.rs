//! `POST /ocsp`, `GET /ocsp/{request}`, `GET /crl/{ca}.crl`, `GET /crl/{ca}-delta.crl`: on the
//! public listener and the mTLS one. OCSP always answers HTTP 200 with an OCSP status
//! (RFC 6960), with RFC 5019 caching headers on successful responses.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use ca_status::ocsp::{decode_get_path, error_response, OcspErrorStatus};

use super::{ApiError, AppState};
use crate::status::cache::{cache_control, http_date};
use crate::status::OcspReply;
use crate::storage::unix_now;

const OCSP_RESPONSE: HeaderValue = HeaderValue::from_static("application/ocsp-response");

/// The status routes, to merge into both routers.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/ocsp", post(ocsp_post))
        .route("/ocsp/", get(ocsp_get))
        .route("/ocsp/{*request}", get(ocsp_get))
        .route("/crl/{file}", get(crl))
}

fn ocsp_error(status: OcspErrorStatus) -> Response {
    let mut r = Response::new(axum::body::Body::from(error_response(status)));
    r.headers_mut().insert(header::CONTENT_TYPE, OCSP_RESPONSE);
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=0, no-store"),
    );
    r
}

fn if_none_match(headers: &HeaderMap, etag: &HeaderValue) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| {
            let t = t.trim();
            t == "*" || t.trim_start_matches("W/").as_bytes() == etag.as_bytes()
        })
}

fn reply(reply: OcspReply, headers: &HeaderMap) -> Response {
    let now = unix_now();
    match reply {
        OcspReply::Error(status) => ocsp_error(status),
        OcspReply::Cached(c) => {
            if if_none_match(headers, &c.etag) {
                let mut r = StatusCode::NOT_MODIFIED.into_response();
                r.headers_mut().insert(header::ETAG, c.etag.clone());
                r.headers_mut()
                    .insert(header::CACHE_CONTROL, c.cache_control(now));
                return r;
            }
            let mut r = Response::new(axum::body::Body::from(c.der.clone()));
            let h = r.headers_mut();
            h.insert(header::CONTENT_TYPE, OCSP_RESPONSE);
            h.insert(header::CACHE_CONTROL, c.cache_control(now));
            h.insert(header::ETAG, c.etag.clone());
            h.insert(header::LAST_MODIFIED, c.last_modified.clone());
            h.insert(header::EXPIRES, c.expires.clone());
            r
        }
        OcspReply::Live {
            der,
            this_update,
            next_update,
            nonce,
        } => {
            let mut r = Response::new(axum::body::Body::from(der));
            let h = r.headers_mut();
            h.insert(header::CONTENT_TYPE, OCSP_RESPONSE);
            if nonce {
                h.insert(
                    header::CACHE_CONTROL,
                    HeaderValue::from_static("private, max-age=0, no-transform"),
                );
            } else {
                h.insert(header::CACHE_CONTROL, cache_control(now, next_update));
            }
            for (name, t) in [
                (header::LAST_MODIFIED, this_update),
                (header::EXPIRES, next_update),
            ] {
                if let Ok(v) = HeaderValue::from_str(&http_date(t)) {
                    h.insert(name, v);
                }
            }
            r
        }
    }
}

/// `POST /ocsp` with a DER `OCSPRequest` body.
pub async fn ocsp_post(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let Ok(body) = body else {
        // Over the body limit or unreadable: not a request we can parse.
        return ocsp_error(OcspErrorStatus::MalformedRequest);
    };
    reply(state.status.ocsp.answer(&body).await, &headers)
}

/// `GET /ocsp/{base64 DER}` (RFC 5019): the raw path, since base64 contains `/`.
pub async fn ocsp_get(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let segment = uri.path().strip_prefix("/ocsp/").unwrap_or_default();
    match decode_get_path(segment) {
        Ok(der) => reply(state.status.ocsp.answer(&der).await, &headers),
        Err(_) => ocsp_error(OcspErrorStatus::MalformedRequest),
    }
}

/// `GET /crl/{ca}.crl` and `GET /crl/{ca}-delta.crl`: the published DER file.
pub async fn crl(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(file): Path<String>,
) -> Result<Response, ApiError> {
    let published = state
        .status
        .crls
        .get(&file)
        .ok_or_else(|| ApiError::not_found(format!("no CRL named {file:?}")))?;
    let now = unix_now();
    // Short max-age so a regenerated CRL is picked up soon; never beyond nextUpdate.
    let max_age = (published.next_update - now - 1).clamp(0, 60);
    let cache = HeaderValue::from_str(&format!(
        "max-age={max_age}, public, no-transform, must-revalidate"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("max-age=0"));
    let etag =
        HeaderValue::from_str(&published.etag).unwrap_or_else(|_| HeaderValue::from_static("\"\""));
    if if_none_match(&headers, &etag) {
        let mut r = StatusCode::NOT_MODIFIED.into_response();
        r.headers_mut().insert(header::ETAG, etag);
        r.headers_mut().insert(header::CACHE_CONTROL, cache);
        return Ok(r);
    }
    let body = tokio::fs::read(&published.path).await.map_err(|e| {
        tracing::error!(error = %e, file = %file, "published CRL unreadable");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "crl_unavailable",
            "the CRL is being republished; retry later",
        )
    })?;
    let mut r = Response::new(axum::body::Body::from(body));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/pkix-crl"),
    );
    h.insert(header::CACHE_CONTROL, cache);
    h.insert(header::ETAG, etag);
    h.insert(header::LAST_MODIFIED, published.last_modified());
    h.insert(header::EXPIRES, published.expires());
    Ok(r)
}
