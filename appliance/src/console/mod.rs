//! The operator console (`/console/` on the mTLS API listener): server-rendered HTML for
//! operators, RA officers and auditors, who log in with their client certificate.
//!
//! Every change goes through the JSON API's own handler (same authorisation, same audit rows);
//! every form carries a CSRF token bound to the caller (a keyed hash of the caller under a
//! per-process key), checked before anything else; a strict Content-Security-Policy allows no
//! script at all; subjects are masked.

pub mod html;
mod pages;
mod review;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::api::mtls::Caller;
use crate::api::ApiError;
use crate::storage::{ConsoleRows, Storage};

pub use pages::{audit, certificate, certificates, change_status, overview, stylesheet};
pub use review::{decide, material, review, review_application};

/// The console's Content-Security-Policy: no script, own stylesheet, forms to itself only.
pub const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; \
     form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// What the console reads beyond the API's services.
pub struct ConsoleState {
    rows: ConsoleRows,
    storage: Storage,
    hsm: hsm::Hsm,
    csrf_key: [u8; 32],
}

impl ConsoleState {
    /// The console over `storage` (queries, audit verification with `hsm`); a fresh CSRF key.
    pub fn new(storage: &Storage, hsm: hsm::Hsm) -> ConsoleState {
        let mut csrf_key = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut csrf_key);
        ConsoleState {
            rows: storage.console(),
            storage: storage.clone(),
            hsm,
            csrf_key,
        }
    }

    /// The caller's CSRF token: SHA-256 over the key and the caller's audit name.
    fn csrf_token(&self, caller: &Caller) -> String {
        let mut h = Sha256::new();
        h.update(b"ca-appliance console csrf v1\0");
        h.update(self.csrf_key);
        h.update(caller.actor().as_bytes());
        hex::encode(h.finalize())
    }

    /// Whether `token` is this caller's (constant-time comparison).
    fn csrf_ok(&self, caller: &Caller, token: Option<&str>) -> bool {
        let Some(token) = token else { return false };
        let want = self.csrf_token(caller);
        want.len() == token.len()
            && want
                .bytes()
                .zip(token.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }
}

/// Who may open the console: operators, RA officers, auditors (name, role).
fn staff(caller: &Caller) -> Result<(String, &'static str), ApiError> {
    match caller {
        Caller::Operator { name } | Caller::RaOfficer { name } | Caller::Auditor { name } => {
            Ok((name.clone(), caller.role()))
        }
        Caller::Unknown { .. } => Err(ApiError::forbidden(
            "unknown_client",
            "the client certificate is not registered with this appliance",
        )),
        other => Err(ApiError::role_not_allowed(other)),
    }
}

/// An HTML answer with the console's headers.
fn html(status: StatusCode, body: String) -> Response {
    let resp = (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body,
    )
        .into_response();
    crate::enroll::harden(resp, CSP)
}

/// An error as a console page (status and code kept, so scripts can tell).
fn error_page(who: &str, role: &str, e: &ApiError) -> Response {
    refused(who, role, e.status, e.code, &e.message)
}

/// A refusal page from its parts (an error answer of a JSON handler carries its code as text).
fn refused(who: &str, role: &str, status: StatusCode, code: &str, message: &str) -> Response {
    let body = format!(
        "<p class=\"error\" id=\"error\" data-code=\"{c}\">{m}</p><p>code: <code>{c}</code></p>",
        c = html::esc(code),
        m = html::esc(message)
    );
    html(status, html::page("Refused", who, role, "", &body))
}

/// A form body (`application/x-www-form-urlencoded`) as pairs; unreadable → 400.
fn form(raw: Result<Bytes, BytesRejection>) -> Result<Vec<(String, String)>, ApiError> {
    let bytes = crate::api::error::read_body(raw)?;
    serde_urlencoded::from_bytes(&bytes)
        .map_err(|_| ApiError::bad_request("malformed_form", "the form body is not URL-encoded"))
}

fn field<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Shared by the pages: the console state of the app.
fn console(state: &crate::api::AppState) -> &Arc<ConsoleState> {
    &state.console
}
