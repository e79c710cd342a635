//! The reference enrollment page (`/enroll/` on the public listener): a static mobile page
//! (Chinese UI) and a small backend route that acts as one configured channel on the
//! applications API, in process, so the channel's credentials never reach the browser.
//!
//! The page generates the applicant's key with WebCrypto (non-extractable) and only a CSR
//! leaves the browser. The application id (128 random bits) is the applicant's handle.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use serde::Deserialize;

use crate::api::mtls::Caller;
use crate::api::{applications, ApiError, AppState};
use crate::config::ChannelConfig;

/// `[enroll]`: which channel the reference enrollment page acts as.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollConfig {
    /// A channel (from `[[channel]]` or `channels_dir`) whose policies the page follows.
    pub channel: String,
}

/// The page's Content-Security-Policy: own scripts and styles only, no inline code.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; \
     frame-ancestors 'none'";

/// The static files of the page (name, content type, text).
const ASSETS: [(&str, &str, &str); 3] = [
    (
        "enroll.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web/enroll/enroll.js"),
    ),
    (
        "pkcs10.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web/enroll/pkcs10.js"),
    ),
    (
        "enroll.css",
        "text/css; charset=utf-8",
        include_str!("../../web/enroll/enroll.css"),
    ),
];

const INDEX: &str = include_str!("../../web/enroll/index.html");

/// Adds the security headers every page answer carries.
pub fn harden(mut resp: Response, csp: &'static str) -> Response {
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(csp),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

fn enabled(state: &AppState) -> Result<Caller, ApiError> {
    state
        .enroll
        .as_ref()
        .map(|c: &Arc<ChannelConfig>| Caller::Channel { channel: c.clone() })
        .ok_or_else(|| ApiError::not_found("the enrollment page is not configured ([enroll])"))
}

/// `GET /enroll/`: the page.
pub async fn page(State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
    enabled(&state)?;
    let resp = ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], INDEX).into_response();
    Ok(harden(resp, CSP))
}

/// `GET /enroll/{file}`: the page's scripts and style.
pub async fn asset(
    State(state): State<Arc<AppState>>,
    Path(file): Path<String>,
) -> Result<Response, ApiError> {
    enabled(&state)?;
    let (_, kind, text) = ASSETS
        .iter()
        .find(|(name, _, _)| *name == file)
        .ok_or_else(|| ApiError::not_found(format!("no file {file:?} under /enroll/")))?;
    Ok(harden(
        ([(header::CONTENT_TYPE, *kind)], *text).into_response(),
        CSP,
    ))
}

/// `POST /enroll/api/applications`: starts an application as the page's channel.
pub async fn create(
    State(state): State<Arc<AppState>>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let caller = enabled(&state)?;
    let resp = applications::create(State(state), Extension(caller), raw).await?;
    Ok(harden(resp, CSP))
}

/// `GET /enroll/api/applications/{id}`: the application (masked), advanced if it waits.
pub async fn get(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let caller = enabled(&state)?;
    let resp = applications::get(State(state), Extension(caller), Path(id)).await?;
    Ok(harden(resp, CSP))
}

/// `POST /enroll/api/applications/{id}/{action}`: `input`, `choose`, `confirm`, `csr`, `cancel`.
pub async fn act(
    State(state): State<Arc<AppState>>,
    Path((id, action)): Path<(String, String)>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let caller = enabled(&state)?;
    let (s, c, p) = (State(state), Extension(caller), Path(id));
    let resp = match action.as_str() {
        "input" => applications::input(s, c, p, raw).await?,
        "choose" => applications::choose(s, c, p, raw).await?,
        "confirm" => applications::confirm(s, c, p, raw).await?,
        "csr" => applications::csr(s, c, p, raw).await?,
        "cancel" => applications::cancel(s, c, p).await?,
        other => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no action {other:?} (input, choose, confirm, csr, cancel)"),
            ))
        }
    };
    Ok(harden(resp, CSP))
}
