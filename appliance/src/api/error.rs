//! The one place internal errors become HTTP responses: `{"error": "<stable_code>", "message": "..."}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::ca::csr::CsrError;
use crate::ca::issuance::IssuanceError;
use crate::ca::tbs::BuildError;
use crate::storage::StorageError;

/// An API error with a stable machine-readable code.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable code for programs (`malformed_csr`, `unknown_profile`...).
    pub code: &'static str,
    /// Human-readable detail; never secrets, never personal numbers.
    pub message: String,
}

impl ApiError {
    /// A new error.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    /// 403 with `code`.
    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, code, message)
    }

    /// 403 `role_not_allowed`: the caller's role may not use this route.
    pub fn role_not_allowed(caller: &super::mtls::Caller) -> Self {
        Self::forbidden(
            "role_not_allowed",
            format!("a {} client cannot use this route", caller.role()),
        )
    }

    /// 400 with `code`.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 404 `not_found`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }
}

/// Reads a request body: over `max_body_bytes` is 413 `body_too_large`, anything else that
/// stops the read is 400 `unreadable_body`. The one place every JSON route reads its body.
pub fn read_body(
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<axum::body::Bytes, ApiError> {
    body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                e.body_text(),
            )
        } else {
            ApiError::bad_request("unreadable_body", e.body_text())
        }
    })
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(serde_json::json!({ "error": self.code, "message": self.message }));
        (self.status, body).into_response()
    }
}

impl From<IssuanceError> for ApiError {
    fn from(e: IssuanceError) -> Self {
        use StatusCode as S;
        let msg = e.to_string();
        match e {
            IssuanceError::UnknownProfile(_) => Self::new(S::BAD_REQUEST, "unknown_profile", msg),
            IssuanceError::IssuerMissing(_) => {
                Self::new(S::SERVICE_UNAVAILABLE, "issuer_not_ready", msg)
            }
            IssuanceError::Csr(c) => match c {
                CsrError::Malformed(_) => Self::new(S::BAD_REQUEST, "malformed_csr", msg),
                CsrError::BadSignature => Self::new(S::BAD_REQUEST, "csr_signature_invalid", msg),
                CsrError::UnsupportedSignatureAlgorithm(_) => {
                    Self::new(S::BAD_REQUEST, "unsupported_signature_algorithm", msg)
                }
                CsrError::KeyTooSmall(_) => Self::new(S::BAD_REQUEST, "key_too_small", msg),
                CsrError::UnsupportedKey(_) => Self::new(S::BAD_REQUEST, "unsupported_key", msg),
            },
            IssuanceError::Subject(_) => Self::new(S::BAD_REQUEST, "invalid_subject", msg),
            IssuanceError::Build(b) => match b {
                BuildError::MissingSubjectAttribute(_) => {
                    Self::new(S::BAD_REQUEST, "missing_subject_attribute", msg)
                }
                BuildError::InvalidSubjectAttribute { .. } => {
                    Self::new(S::BAD_REQUEST, "invalid_subject", msg)
                }
                BuildError::UnsupportedKey(_) => Self::new(S::BAD_REQUEST, "unsupported_key", msg),
                BuildError::KeyTooSmall(_) => Self::new(S::BAD_REQUEST, "key_too_small", msg),
                BuildError::Encoding(_) => Self::new(S::BAD_REQUEST, "invalid_request", msg),
            },
            IssuanceError::Lint(_) => {
                Self::new(S::UNPROCESSABLE_ENTITY, "certificate_lint_failed", msg)
            }
            IssuanceError::Hsm(h) => hsm_error(&h),
            IssuanceError::Storage(s) => storage_error(&s),
            IssuanceError::BadSignature(m) => {
                tracing::error!(error = %m, "CA signature failed its verification; discarded");
                Self::new(
                    S::INTERNAL_SERVER_ERROR,
                    "signature_invalid",
                    "the CA signature failed its verification; nothing was issued",
                )
            }
        }
    }
}

/// HSM failures: 503 when the token is unreachable (retry later), 500 otherwise; details logged.
pub fn hsm_error(e: &hsm::HsmError) -> ApiError {
    tracing::error!(error = %e, "HSM operation failed");
    if let hsm::HsmError::KeyNotFound { .. } = e {
        // The CA's key was there at start-up: the token lost it (or was swapped). Retryable once
        // the operator restores the token; nothing was signed or stored.
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "ca_key_unavailable",
            "the CA key is not available on the HSM; retry later",
        );
    }
    if e.is_unavailable() {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "hsm_unavailable",
            "the HSM is unavailable; retry later",
        )
    } else {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "hsm_error",
            "the HSM refused the operation",
        )
    }
}

/// Storage failures: details logged, a generic message returned.
pub fn storage_error(e: &StorageError) -> ApiError {
    tracing::error!(error = %e, "storage operation failed");
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "storage_unavailable",
        "the database is unavailable; retry later",
    )
}
