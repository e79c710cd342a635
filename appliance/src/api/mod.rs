//! HTTP only: routes, the caller's role, and error -> response. Logic lives in `ca` and `storage`.
//!
//! Two listeners: the mTLS API ([`api_router`], handshake [`mtls::MtlsHandshake`]) for operators and
//! channels, and the plain-HTTP public listener ([`public_router`]) for relying parties.

pub mod applications;
pub mod callbacks;
pub mod certificates;
pub mod error;
pub mod mtls;
pub mod public;
pub mod revocation;
pub mod status_routes;
pub mod verifications;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
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
}

/// The mTLS API routes.
pub fn api_router(state: Arc<AppState>, max_body_bytes: usize) -> Router {
    Router::new()
        .route("/healthz", get(crate::ops::health::healthz))
        .route("/readyz", get(crate::ops::health::readyz))
        .route("/api/v1/certificates", post(certificates::issue))
        .route("/api/v1/certificates/{serial}", get(certificates::get))
        .route(
            "/api/v1/certificates/{serial}/revoke",
            post(revocation::revoke),
        )
        .route(
            "/api/v1/certificates/{serial}/unhold",
            post(revocation::unhold),
        )
        .merge(status_routes::routes())
        .route("/api/v1/plugins", get(verifications::plugins))
        .route("/api/v1/verifications", post(verifications::start))
        .route("/api/v1/verifications/{id}", get(verifications::get))
        .route(
            "/api/v1/verifications/{id}/input",
            post(verifications::input),
        )
        .route(
            "/api/v1/verifications/{id}/cancel",
            post(verifications::cancel),
        )
        .route("/api/v1/applications", post(applications::create))
        .route("/api/v1/applications/{id}", get(applications::get))
        .route("/api/v1/applications/{id}/input", post(applications::input))
        .route(
            "/api/v1/applications/{id}/choose",
            post(applications::choose),
        )
        .route(
            "/api/v1/applications/{id}/confirm",
            post(applications::confirm),
        )
        .route("/api/v1/applications/{id}/csr", post(applications::csr))
        .route(
            "/api/v1/applications/{id}/cancel",
            post(applications::cancel),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(
            "api",
            crate::ops::request_id::track,
        ))
        .with_state(state)
}

/// The public plain-HTTP routes for relying parties.
pub fn public_router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/healthz", get(crate::ops::health::healthz))
        .route("/readyz", get(crate::ops::health::readyz))
        .route("/ca/{file}", get(public::ca_certificate))
        .route("/callbacks/{plugin}/{id}", post(callbacks::receive))
        .merge(status_routes::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(16 * 1024))
        .layer(axum::middleware::from_fn_with_state(
            "public",
            crate::ops::request_id::track,
        ))
        .with_state(state)
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
