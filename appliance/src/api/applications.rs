//! `POST /api/v1/applications`, `GET /api/v1/applications/{id}` and the applicant's actions on
//! an application: `input`, `choose`, `confirm`, `csr`, `cancel`.
//!
//! A channel creates and acts on its own applications only (another's answers 404, as if it did
//! not exist); an operator may read and cancel any. Personal data is masked in every answer.
//! An error that leaves an application behind (a wrong code, a rejection) carries it as
//! `application` next to `error` and `message`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{json, Value};

use super::mtls::Caller;
use super::{ApiError, AppState};
use crate::application::subject::SubjectInput;
use crate::application::{AppError, CreateRequest, Failure, Who};

/// Body of `POST .../{id}/input`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputBody {
    /// `captcha`, `sms_code`, `deposit_amount`, `face_url`.
    pub kind: String,
    /// What the applicant entered.
    pub value: String,
}

/// Body of `POST .../{id}/choose`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChooseBody {
    /// The method (verifier plugin name).
    pub method: String,
    /// Extra fields the method needs (bank card, bank-reserved phone).
    #[serde(default)]
    pub subject: Option<SubjectInput>,
    /// Face only: `on_the_spot` (default: the channel shows the URL as a QR code) or
    /// `sms_link` (the appliance sends it to the person's phone).
    #[serde(default)]
    pub delivery: Option<String>,
}

/// Body of `POST .../{id}/confirm`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfirmBody {
    /// The verified phone, as the applicant confirms it.
    pub phone: String,
}

/// Body of `POST .../{id}/csr`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CsrBody {
    /// PEM CSR.
    pub csr: String,
}

/// A channel caller as the service's `Who`; any other role is refused (403).
pub(super) fn channel(caller: &Caller) -> Result<Who, ApiError> {
    match caller {
        Caller::Channel { channel } => Ok(Who::Channel(channel.clone())),
        other => Err(ApiError::role_not_allowed(other)),
    }
}

fn who(caller: &Caller) -> Result<Who, ApiError> {
    match caller {
        Caller::Operator { name } => Ok(Who::Operator(name.clone())),
        Caller::Channel { channel } => Ok(Who::Channel(channel.clone())),
        Caller::Unknown { .. } => Err(ApiError::forbidden(
            "unknown_client",
            "the client certificate is not registered with this appliance",
        )),
        other => Err(ApiError::role_not_allowed(other)),
    }
}

pub(super) fn service(
    state: &AppState,
) -> Result<&Arc<crate::application::ApplicationService>, ApiError> {
    state.applications.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "applications_unavailable",
            "applications need verification plugins and a personal-data key",
        )
    })
}

/// Parses a body without echoing any input value in the error.
pub(super) fn body<T: serde::de::DeserializeOwned>(
    b: Result<Bytes, BytesRejection>,
) -> Result<T, ApiError> {
    let bytes = super::error::read_body(b)?;
    serde_json::from_slice(&bytes).map_err(|e| {
        // serde names unknown fields and variants without quoting values: keep those words.
        let text = e.to_string();
        let detail = if text.starts_with("unknown field") || text.starts_with("unknown variant") {
            text.split(" at line").next().unwrap_or_default().to_owned()
        } else {
            match e.classify() {
                serde_json::error::Category::Data => {
                    "does not match the expected fields and types".to_owned()
                }
                _ => "is not valid JSON".to_owned(),
            }
        };
        ApiError::bad_request(
            "malformed_json",
            format!(
                "request body: {detail} (line {}, column {})",
                e.line(),
                e.column()
            ),
        )
    })
}

/// The stable code and HTTP status of each application error.
pub fn code_of(e: &AppError) -> (StatusCode, &'static str) {
    use StatusCode as S;
    match e {
        AppError::ChannelOnly(_) => (S::FORBIDDEN, "channel_only"),
        AppError::UnknownKind(_) => (S::BAD_REQUEST, "unknown_kind"),
        AppError::UnknownProfile(_) => (S::BAD_REQUEST, "unknown_profile"),
        AppError::ProfileNotAllowed { .. } => (S::FORBIDDEN, "profile_not_allowed"),
        AppError::KindNotOffered { .. } => (S::FORBIDDEN, "kind_not_offered"),
        AppError::Subject(s) => match s {
            crate::application::subject::SubjectError::Missing(_) => {
                (S::BAD_REQUEST, "missing_field")
            }
            crate::application::subject::SubjectError::IdNumber(_) => {
                (S::BAD_REQUEST, "invalid_id_number")
            }
            crate::application::subject::SubjectError::IdType => {
                (S::BAD_REQUEST, "unsupported_id_type")
            }
            crate::application::subject::SubjectError::Phone => (S::BAD_REQUEST, "invalid_phone"),
            crate::application::subject::SubjectError::BankCard => (S::BAD_REQUEST, "invalid_card"),
            crate::application::subject::SubjectError::Malformed(_) => {
                (S::BAD_REQUEST, "invalid_subject")
            }
            crate::application::subject::SubjectError::Uscc => (S::BAD_REQUEST, "invalid_uscc"),
            crate::application::subject::SubjectError::NotForType(_) => {
                (S::BAD_REQUEST, "field_not_expected")
            }
            crate::application::subject::SubjectError::IdCountry => {
                (S::BAD_REQUEST, "invalid_id_country")
            }
        },
        AppError::FieldNotExpected(_) => (S::BAD_REQUEST, "field_not_expected"),
        AppError::CertificateRequired(_) => (S::BAD_REQUEST, "certificate_required"),
        AppError::CertificateNotExpected => (S::BAD_REQUEST, "field_not_expected"),
        AppError::CertificateNotFound(_) => (S::NOT_FOUND, "certificate_not_found"),
        AppError::CertificateNotValid(_) => (S::CONFLICT, "certificate_not_valid"),
        AppError::RenewalNotAllowed { .. } => (S::CONFLICT, "renewal_not_allowed"),
        AppError::Open(_) => (S::CONFLICT, "application_open"),
        AppError::NotFound(_) => (S::NOT_FOUND, "not_found"),
        AppError::Finished(_) => (S::CONFLICT, "application_finished"),
        AppError::InputNotExpected(_) => (S::CONFLICT, "input_not_expected"),
        AppError::MethodNotAllowed(_) => (S::BAD_REQUEST, "method_not_allowed"),
        AppError::CaptchaRequired => (S::CONFLICT, "captcha_required"),
        AppError::CaptchaWrong => (S::UNPROCESSABLE_ENTITY, "captcha_wrong"),
        AppError::CaptchaExpired => (S::UNPROCESSABLE_ENTITY, "captcha_expired"),
        AppError::OtpWrong { .. } => (S::UNPROCESSABLE_ENTITY, "otp_wrong"),
        AppError::OtpExpired => (S::UNPROCESSABLE_ENTITY, "otp_expired"),
        AppError::OtpAttemptsExceeded => (S::UNPROCESSABLE_ENTITY, "otp_attempts_exceeded"),
        AppError::ResendTooSoon(_) => (S::TOO_MANY_REQUESTS, "resend_too_soon"),
        AppError::PhoneNotVerified => (S::UNPROCESSABLE_ENTITY, "phone_not_verified"),
        AppError::DepositExpired(_) => (S::UNPROCESSABLE_ENTITY, "deposit_expired"),
        AppError::Rejected(c) if c == "level_too_low" => (S::UNPROCESSABLE_ENTITY, "level_too_low"),
        AppError::Rejected(_) => (S::UNPROCESSABLE_ENTITY, "verification_failed"),
        AppError::PhoneBound(_) => (S::CONFLICT, "phone_bound_to_other_account"),
        AppError::Unavailable(_) => (S::SERVICE_UNAVAILABLE, "service_unavailable"),
        AppError::Storage(_) | AppError::Sealed(_) => {
            (S::SERVICE_UNAVAILABLE, "storage_unavailable")
        }
        AppError::Conflict => (S::CONFLICT, "conflict"),
        AppError::Issuance(_) | AppError::Verification(_) => (S::INTERNAL_SERVER_ERROR, "error"),
        AppError::OfficerOnly(_) => (S::FORBIDDEN, "role_not_allowed"),
        AppError::MaterialKind(_) => (S::BAD_REQUEST, "unknown_material_kind"),
        AppError::MaterialTooLarge(_) => (S::PAYLOAD_TOO_LARGE, "material_too_large"),
        AppError::MaterialType(_) => (S::UNSUPPORTED_MEDIA_TYPE, "material_type_invalid"),
        AppError::MaterialNotFound(_) => (S::NOT_FOUND, "not_found"),
        AppError::NotAwaitingReview(_) => (S::CONFLICT, "not_awaiting_review"),
        AppError::AlreadyReviewed(_) => (S::CONFLICT, "already_reviewed"),
        AppError::OrganisationUnknown => (S::NOT_FOUND, "organisation_not_found"),
        AppError::UnknownAgent(_) => (S::NOT_FOUND, "unknown_agent"),
        AppError::CannotRemoveMainAgent => (S::CONFLICT, "cannot_remove_main_agent"),
        AppError::AgentExists => (S::CONFLICT, "agent_exists"),
        AppError::ChangeOfAnotherOrganisation => (S::CONFLICT, "change_not_for_organisation"),
        AppError::DecisionInvalid(_) => (S::BAD_REQUEST, "invalid_decision"),
        AppError::AccountNotFound(_) => (S::NOT_FOUND, "account_not_found"),
        AppError::DownloadNotAvailable(_) => (S::CONFLICT, "download_not_available"),
        AppError::AlreadyUsed(_) => (S::CONFLICT, "already_used"),
        AppError::PhoneSharedByIds(_) => (S::CONFLICT, "phone_bound_to_several_ids"),
        AppError::IdTypeNotVerifiable(_) => (S::UNPROCESSABLE_ENTITY, "id_type_not_verifiable"),
    }
}

pub(super) fn failure_response(f: Failure) -> Response {
    let Failure { error, application } = f;
    let (status, code, message, mut extra) = match error {
        AppError::Issuance(e) => {
            let api = ApiError::from(e);
            (api.status, api.code, api.message, json!({}))
        }
        AppError::Verification(e) => {
            // Limits answer 429 with Retry-After; everything else as the verification API does.
            let resp = super::verifications::error_response(e);
            if application.is_none() {
                return resp;
            }
            let status = resp.status();
            return (
                status,
                Json(json!({
                    "error": if status == StatusCode::TOO_MANY_REQUESTS { "rate_limited" } else { "verification_error" },
                    "message": "the verification could not proceed",
                    "application": application,
                })),
            )
                .into_response();
        }
        other => {
            let (status, code) = code_of(&other);
            let extra = match &other {
                AppError::Open(id) => json!({"application_id": id}),
                AppError::OtpWrong { attempts_left } => json!({"attempts_left": attempts_left}),
                AppError::ResendTooSoon(at) => json!({"retry_at": at}),
                AppError::RenewalNotAllowed { from, .. } => json!({"renewal_from": from}),
                AppError::Rejected(c) => json!({"failure_code": c}),
                _ => json!({}),
            };
            if matches!(other, AppError::Storage(_) | AppError::Sealed(_)) {
                tracing::error!(error = %other, "application storage failed");
                (
                    status,
                    code,
                    "the database is unavailable; retry later".to_owned(),
                    extra,
                )
            } else {
                (status, code, other.to_string(), extra)
            }
        }
    };
    // A verification failure is named by the plugin's own code.
    if let Some(c) = extra.get("failure_code").and_then(Value::as_str) {
        let c = c.to_owned();
        extra["error_detail"] = json!(c);
    }
    let mut body = json!({"error": code, "message": message});
    if let (Value::Object(b), Value::Object(x)) = (&mut body, extra) {
        b.extend(x);
    }
    if let Some(app) = application {
        body["application"] = app;
    }
    (status, Json(body)).into_response()
}

pub(super) fn ok(status: StatusCode, v: Result<Value, Failure>) -> Response {
    match v {
        Ok(v) => (status, Json(v)).into_response(),
        Err(f) => failure_response(f),
    }
}

/// Creates an application.
pub async fn create(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let who = who(&caller)?;
    let svc = service(&state)?;
    let req: CreateRequest = body(raw)?;
    Ok(ok(StatusCode::CREATED, svc.create(&who, req).await))
}

/// The application (advanced first if it waits on a vendor).
pub async fn get(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let who = who(&caller)?;
    let svc = service(&state)?;
    Ok(ok(StatusCode::OK, svc.get(&who, &id).await))
}

/// Input for the current step.
pub async fn input(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let who = who(&caller)?;
    let svc = service(&state)?;
    let b: InputBody = body(raw)?;
    if b.value.len() > 256 || b.kind.len() > 32 {
        return Err(ApiError::bad_request(
            "invalid_input",
            "value is longer than 256 bytes",
        ));
    }
    Ok(ok(
        StatusCode::OK,
        svc.input(&who, &id, &b.kind, &b.value).await,
    ))
}

/// The applicant's choice of method.
pub async fn choose(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let who = who(&caller)?;
    let svc = service(&state)?;
    let b: ChooseBody = body(raw)?;
    Ok(ok(
        StatusCode::OK,
        svc.choose(&who, &id, &b.method, b.subject, b.delivery.as_deref())
            .await,
    ))
}

/// The applicant confirms the verified phone (or asks for the code again).
pub async fn confirm(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let who = who(&caller)?;
    let svc = service(&state)?;
    let b: ConfirmBody = body(raw)?;
    Ok(ok(StatusCode::OK, svc.confirm(&who, &id, &b.phone).await))
}

/// The applicant's CSR.
pub async fn csr(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let who = who(&caller)?;
    let svc = service(&state)?;
    let b: CsrBody = body(raw)?;
    Ok(ok(StatusCode::OK, svc.csr(&who, &id, &b.csr).await))
}

/// Cancels an open application.
pub async fn cancel(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let who = who(&caller)?;
    let svc = service(&state)?;
    Ok(ok(StatusCode::OK, svc.cancel(&who, &id).await))
}
