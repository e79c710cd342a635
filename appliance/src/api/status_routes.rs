//! `POST /ocsp`, `GET /ocsp/{request}`, `GET /crl/{ca}.crl`, `GET /crl/{ca}-delta.crl`: on the
//! public listener and the mTLS one. OCSP always answers HTTP 200 with an OCSP status
//! (RFC 6960), with RFC 5019 caching headers on successful responses.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use ca_status::ocsp::{decode_get_path, error_response, OcspErrorStatus};
use sha2::{Digest, Sha256};
use tracing::Instrument;

use super::{ApiError, AppState};
use crate::listener::{Home, LocalAnswer};
use crate::ops::metrics::RouteMeter;
use crate::ops::request_id::Tracked;
use crate::status::cache::{cache_control, http_date, parse_http_date};
use crate::status::OcspReply;
use crate::storage::unix_now;

const OCSP_RESPONSE: HeaderValue = HeaderValue::from_static("application/ocsp-response");

fn ocsp_error(status: OcspErrorStatus) -> Response {
    crate::ops::metrics::ocsp_answer(&OcspReply::Error(status));
    let mut r = Response::new(axum::body::Body::from(error_response(status)));
    r.headers_mut().insert(header::CONTENT_TYPE, OCSP_RESPONSE);
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=0, no-store"),
    );
    r
}

/// Longest `/ocsp/{request}` path segment accepted: a one-CertID request with a nonce is well
/// under 300 characters even %-encoded; anything longer is not a request we answer.
const MAX_GET_SEGMENT: usize = 1024;

/// Whether a conditional GET (RFC 9110 13.1) can be answered 304 for a representation with
/// `etag` last modified at `last_modified`: If-None-Match wins when present.
fn not_modified(headers: &HeaderMap, etag: &HeaderValue, last_modified: i64) -> bool {
    let mut tags = headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .peekable();
    if tags.peek().is_some() {
        return tags.any(|t| {
            let t = t.trim();
            t == "*" || t.trim_start_matches("W/").as_bytes() == etag.as_bytes()
        });
    }
    headers
        .get(header::IF_MODIFIED_SINCE)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_http_date)
        .is_some_and(|since| last_modified <= since)
}

/// The headers of a cacheable OCSP answer; a 304 carries them too (RFC 9110 15.4.5).
struct Validators {
    cache_control: HeaderValue,
    etag: HeaderValue,
    last_modified: HeaderValue,
    expires: HeaderValue,
}

impl Validators {
    fn apply(self, h: &mut HeaderMap) {
        h.insert(header::CACHE_CONTROL, self.cache_control);
        h.insert(header::ETAG, self.etag);
        h.insert(header::LAST_MODIFIED, self.last_modified);
        h.insert(header::EXPIRES, self.expires);
    }
}

fn date_header(unix: i64) -> HeaderValue {
    HeaderValue::from_str(&http_date(unix)).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// How a request arrived: only a GET may be answered 304 (a POST is not a cache lookup).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Method {
    Get,
    Post,
}

fn reply(reply: OcspReply, method: Method, headers: &HeaderMap) -> Response {
    if !matches!(reply, OcspReply::Error(_)) {
        crate::ops::metrics::ocsp_answer(&reply);
    }
    let now = unix_now();
    let (der, validators, this_update) = match reply {
        OcspReply::Error(status) => return ocsp_error(status),
        OcspReply::Cached(c) => (
            c.der.clone(),
            Validators {
                cache_control: c.cache_control(now),
                etag: c.etag.clone(),
                last_modified: c.last_modified.clone(),
                expires: c.expires.clone(),
            },
            c.this_update,
        ),
        OcspReply::Live {
            der,
            this_update,
            next_update,
            private,
        } => {
            let etag = format!("\"{}\"", hex::encode(Sha256::digest(&der)));
            let cache_control = if private {
                HeaderValue::from_static("private, max-age=0, no-transform")
            } else {
                cache_control(now, next_update)
            };
            (
                Bytes::from(der),
                Validators {
                    cache_control,
                    etag: HeaderValue::from_str(&etag)
                        .unwrap_or_else(|_| HeaderValue::from_static("\"\"")),
                    last_modified: date_header(this_update),
                    expires: date_header(next_update),
                },
                this_update,
            )
        }
    };
    if method == Method::Get && not_modified(headers, &validators.etag, this_update) {
        let mut r = StatusCode::NOT_MODIFIED.into_response();
        validators.apply(r.headers_mut());
        return r;
    }
    let mut r = Response::new(axum::body::Body::from(der));
    r.headers_mut().insert(header::CONTENT_TYPE, OCSP_RESPONSE);
    validators.apply(r.headers_mut());
    r
}

/// The answer to a DER request: at once when pre-signed (on the connection's thread); else read
/// and signed, on the main runtime when served from a listener thread (see [`Home`]), inside
/// the request's span (`span` is only called then).
async fn answer(
    state: &AppState,
    home: Option<&Home>,
    der: Bytes,
    span: impl FnOnce() -> tracing::Span,
) -> OcspReply {
    if let Some(ready) = state.status.ocsp.answer_ready(&der) {
        return ready;
    }
    let Some(home) = home else {
        return state.status.ocsp.answer(&der).await;
    };
    let ocsp = state.status.ocsp.clone();
    let span = span();
    let live = async move { ocsp.answer(&der).await }.instrument(span.clone());
    match home.run(live).await {
        Ok(reply) => reply,
        Err(e) => {
            span.in_scope(|| tracing::error!(error = %e, "OCSP answer failed"));
            OcspReply::Error(OcspErrorStatus::InternalError)
        }
    }
}

/// The answer to `POST /ocsp` with `body` (`None`: over the body limit or unreadable).
async fn post_answer(
    state: &AppState,
    home: Option<&Home>,
    headers: &HeaderMap,
    body: Option<Bytes>,
    span: impl FnOnce() -> tracing::Span,
) -> Response {
    let Some(body) = body else {
        // Not a request we can parse.
        return ocsp_error(OcspErrorStatus::MalformedRequest);
    };
    reply(answer(state, home, body, span).await, Method::Post, headers)
}

/// The answer to `GET /ocsp/{request}` for the raw request `path`.
async fn get_answer(
    state: &AppState,
    home: Option<&Home>,
    headers: &HeaderMap,
    path: &str,
    span: impl FnOnce() -> tracing::Span,
) -> Response {
    let segment = path.strip_prefix("/ocsp/").unwrap_or_default();
    if segment.len() > MAX_GET_SEGMENT {
        return ocsp_error(OcspErrorStatus::MalformedRequest);
    }
    match decode_get_path(segment) {
        Ok(der) => reply(
            answer(state, home, Bytes::from(der), span).await,
            Method::Get,
            headers,
        ),
        Err(_) => ocsp_error(OcspErrorStatus::MalformedRequest),
    }
}

/// `POST /ocsp` with a DER `OCSPRequest` body.
pub async fn ocsp_post(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    post_answer(&state, None, &headers, body.ok(), tracing::Span::current).await
}

/// `GET /ocsp/{base64 DER}` (RFC 5019): the raw path, since base64 contains `/`.
pub async fn ocsp_get(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    get_answer(&state, None, &headers, uri.path(), tracing::Span::current).await
}

/// The public listener's OCSP routes, answered on the connection's thread ahead of its router
/// (see [`crate::listener::Local`]) with what the router's handlers and middleware do: the
/// same replies, body limit, request id and route metrics; the span is made only when the
/// answer is signed live, or for the debug line.
pub struct PublicOcsp {
    state: Arc<AppState>,
    max_body: usize,
    post: Arc<RouteMeter>,
    get: Arc<RouteMeter>,
    get_empty: Arc<RouteMeter>,
}

impl PublicOcsp {
    /// The OCSP routes of listener `listener`, with request bodies up to `max_body` bytes.
    pub fn new(state: Arc<AppState>, listener: &'static str, max_body: usize) -> Self {
        Self {
            state,
            max_body,
            post: Arc::new(RouteMeter::new(listener, "/ocsp")),
            get: Arc::new(RouteMeter::new(listener, "/ocsp/{*request}")),
            get_empty: Arc::new(RouteMeter::new(listener, "/ocsp/")),
        }
    }
}

impl crate::listener::Local for PublicOcsp {
    fn answer(&self, req: Request, home: &Home) -> Result<LocalAnswer, Request> {
        let (meter, method) = match (req.method(), req.uri().path()) {
            (&axum::http::Method::POST, "/ocsp") => (&self.post, Method::Post),
            (&axum::http::Method::GET, "/ocsp/") => (&self.get_empty, Method::Get),
            (&axum::http::Method::GET, p) if p.starts_with("/ocsp/") => (&self.get, Method::Get),
            _ => return Err(req),
        };
        let tracked = Tracked::start(meter.clone(), req.method(), req.headers());
        let (state, home, max_body) = (self.state.clone(), home.clone(), self.max_body);
        Ok(Box::pin(async move {
            let (parts, body) = req.into_parts();
            let span = || tracked.span();
            let response = match method {
                Method::Post => {
                    let body = axum::body::to_bytes(body, max_body).await.ok();
                    post_answer(&state, Some(&home), &parts.headers, body, span).await
                }
                Method::Get => {
                    get_answer(&state, Some(&home), &parts.headers, parts.uri.path(), span).await
                }
            };
            tracked.finish(response)
        }))
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
    if not_modified(&headers, &etag, published.this_update) {
        let mut r = StatusCode::NOT_MODIFIED.into_response();
        let h = r.headers_mut();
        h.insert(header::ETAG, etag);
        h.insert(header::CACHE_CONTROL, cache);
        h.insert(header::LAST_MODIFIED, published.last_modified());
        h.insert(header::EXPIRES, published.expires());
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
