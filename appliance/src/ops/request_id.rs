//! A request id for every HTTP request: taken from a well-formed `X-Request-Id` or made up,
//! carried by the tracing span every log line of the request is written in, returned in the
//! `X-Request-Id` header and added to every JSON error body as `request_id`. The same layer
//! counts the request in the metrics by route template.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::Response;
use rand::RngCore;
use tracing::Instrument;

use super::metrics::RouteMeter;

/// The header carrying the id, both ways.
pub const HEADER: &str = "x-request-id";

/// Largest JSON error body rewritten to carry the id (error bodies are a few hundred bytes).
const MAX_ERROR_BODY: usize = 64 * 1024;

/// The caller's `X-Request-Id` if it is 1..=64 characters of `[A-Za-z0-9._-]` (nothing to
/// inject into a log line).
fn given(headers: &HeaderMap) -> Option<&HeaderValue> {
    headers.get(HEADER).filter(|v| {
        let b = v.as_bytes();
        (1..=64).contains(&b.len())
            && b.iter()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    })
}

/// 16 random hex digits.
fn fresh() -> [u8; 16] {
    let mut bytes = [0u8; 8];
    rand::thread_rng().fill_bytes(&mut bytes);
    let mut out = [0u8; 16];
    // Cannot fail: the output is exactly twice the input.
    let _ = hex::encode_to_slice(bytes, &mut out);
    out
}

/// A caller's id if it is well-formed (see [`given`]), else a fresh random one.
pub fn request_id(headers: &HeaderMap) -> String {
    match given(headers).and_then(|v| v.to_str().ok()) {
        Some(id) => id.to_owned(),
        None => String::from_utf8_lossy(&fresh()).into_owned(),
    }
}

/// [`request_id`] as a header value (the caller's value reused, not copied).
pub fn request_id_value(headers: &HeaderMap) -> HeaderValue {
    match given(headers) {
        Some(v) => v.clone(),
        None => HeaderValue::from_bytes(&fresh())
            .unwrap_or_else(|_| HeaderValue::from_static("0000000000000000")),
    }
}

/// Middleware (`from_fn_with_state(listener_name, track)`): id, span, metrics, error body.
pub async fn track(State(listener): State<&'static str>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = request_id(req.headers());
    // MatchedPath is a shared string: cloned, not copied, per request.
    let matched = req.extensions().get::<MatchedPath>().cloned();
    let route = matched.as_ref().map_or("unmatched", MatchedPath::as_str);
    let span =
        tracing::info_span!("request", request_id = %id, method = %req.method(), route = %route);
    let response = next.run(req).instrument(span.clone()).await;
    let code = response.status();
    crate::ops::metrics::http_request(listener, route, code, started.elapsed());
    if code.is_server_error() {
        span.in_scope(|| tracing::warn!(status = code.as_u16(), "request failed"));
    } else {
        span.in_scope(|| tracing::debug!(status = code.as_u16(), "request answered"));
    }
    with_id(response, &id).await
}

/// [`track`]'s work for a request answered ahead of the router (the public listener's OCSP
/// routes, whose answers are never JSON errors): the id header, the route's metrics, and the
/// span, made only when asked for (a live-signed answer) or for the debug line.
pub struct Tracked {
    started: Instant,
    id: HeaderValue,
    method: Method,
    meter: Arc<RouteMeter>,
}

impl Tracked {
    /// Starts tracking a request on `meter`'s route.
    pub fn start(meter: Arc<RouteMeter>, method: &Method, headers: &HeaderMap) -> Self {
        Self {
            started: Instant::now(),
            id: request_id_value(headers),
            method: method.clone(),
            meter,
        }
    }

    /// The request's span, as [`track`] makes it.
    pub fn span(&self) -> tracing::Span {
        let id = self.id.to_str().unwrap_or_default();
        tracing::info_span!("request", request_id = %id, method = %self.method, route = %self.meter.route())
    }

    /// Records the answer and adds the id header.
    pub fn finish(self, mut response: Response) -> Response {
        let code = response.status();
        self.meter.record(code, self.started.elapsed());
        if code.is_server_error() {
            self.span()
                .in_scope(|| tracing::warn!(status = code.as_u16(), "request failed"));
        } else if tracing::enabled!(tracing::Level::DEBUG) {
            self.span()
                .in_scope(|| tracing::debug!(status = code.as_u16(), "request answered"));
        }
        response.headers_mut().insert(HEADER, self.id);
        response
    }
}

/// Adds the header, and `request_id` to a JSON error body.
async fn with_id(response: Response, id: &str) -> Response {
    let (mut parts, body) = response.into_parts();
    if let Ok(value) = HeaderValue::from_str(id) {
        parts.headers.insert(HEADER, value);
    }
    let is_json = parts
        .headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(parts.status.is_client_error() || parts.status.is_server_error()) || !is_json {
        return Response::from_parts(parts, body);
    }
    let bytes = match axum::body::to_bytes(body, MAX_ERROR_BODY).await {
        Ok(b) => b,
        Err(_) => return Response::from_parts(parts, Body::empty()),
    };
    let rewritten = match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Ok(serde_json::Value::Object(mut map)) => {
            map.insert("request_id".into(), id.into());
            serde_json::to_vec(&map).ok()
        }
        _ => None,
    };
    match rewritten {
        Some(body) => {
            parts.headers.remove(header::CONTENT_LENGTH);
            Response::from_parts(parts, Body::from(body))
        }
        None => Response::from_parts(parts, Body::from(bytes)),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn with(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(HEADER, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn well_formed_caller_ids_are_kept_others_replaced() {
        assert_eq!(request_id(&with("lb-42.a_b")), "lb-42.a_b");
        for bad in ["a b", "x\"y", "{}", &"a".repeat(65), ""] {
            let id = request_id(&with(bad));
            assert_ne!(id, bad);
            assert_eq!(id.len(), 16);
            assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
        }
        assert_ne!(request_id(&HeaderMap::new()), request_id(&HeaderMap::new()));
    }
}
