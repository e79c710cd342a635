//! HTTP only: routes, the caller's role, and error -> response. Logic lives in `ca` and `storage`.
//!
//! Two listeners: the mTLS API ([`api_router`], handshake [`mtls::MtlsHandshake`]) for operators and
//! channels, and the plain-HTTP public listener ([`public_router`]) for relying parties.

pub mod accounts;
pub mod agents;
pub mod applications;
pub mod callbacks;
pub mod certificates;
pub mod error;
pub mod escrow;
pub mod login;
pub mod mtls;
pub mod multipart;
pub mod public;
pub mod review;
pub mod revocation;
pub mod routes;
pub mod signatures;
pub mod status_routes;
pub mod verifications;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::Router;

use crate::ca::issuance::Issuer;
use crate::ca::Hierarchy;
use crate::status::StatusService;
use crate::storage::CertificateStore;

pub use error::ApiError;

/// Everything request handlers need; shared by both listeners.
pub struct AppState {
    /// Issues certificates.
    pub issuer: Issuer,
    /// The loaded CA hierarchy.
    pub hierarchy: Arc<Hierarchy>,
    /// Issued certificates.
    pub certificates: CertificateStore,
    /// Revocation, OCSP and CRLs.
    pub status: Arc<StatusService>,
    /// Identity verification through plugins.
    pub verifications: Arc<crate::verification::VerificationService>,
    /// Applications (absent without a personal-data key).
    pub applications: Option<Arc<crate::application::ApplicationService>>,
    /// What `/readyz` checks (HSM, database, CRL and OCSP freshness).
    pub readiness: Arc<crate::ops::health::Readiness>,
    /// The channel the reference enrollment page acts as (`[enroll]`; absent = no page).
    pub enroll: Option<Arc<crate::config::ChannelConfig>>,
    /// What the operator console reads beyond the services above.
    pub console: Arc<crate::console::ConsoleState>,
    /// QR login challenges and CMS verification for relying parties.
    pub relying: crate::relying::Relying,
    /// Key management for dual certificates (encryption pairs, escrow, recovery).
    pub keymgmt: Arc<dyn crate::keymgmt::KeyManagement>,
}

/// The mTLS API routes.
pub fn api_router(state: Arc<AppState>, max_body_bytes: usize) -> Router {
    routes::router(routes::api())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(
            "api",
            crate::ops::request_id::track,
        ))
        .with_state(state)
}

/// Largest request body on the public listener (OCSP requests are a few hundred bytes).
pub const PUBLIC_MAX_BODY: usize = 16 * 1024;

/// The public plain-HTTP routes for relying parties.
pub fn public_router(state: Arc<AppState>) -> Router {
    routes::router(routes::public())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(PUBLIC_MAX_BODY))
        .layer(axum::middleware::from_fn_with_state(
            "public",
            crate::ops::request_id::track,
        ))
        .with_state(state)
}

/// What the public listener's threads answer themselves, ahead of [`public_router`]: OCSP,
/// whose pre-signed answers need neither the database nor the HSM.
pub fn public_local(state: Arc<AppState>) -> Arc<dyn crate::listener::Local> {
    Arc::new(status_routes::PublicOcsp::new(
        state,
        "public",
        PUBLIC_MAX_BODY,
    ))
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method not allowed on this endpoint",
    )
}
