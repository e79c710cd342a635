//! Certificate download to a phone: for an application whose steps all passed and that awaits
//! only its CSR, a code goes by SMS to the verified phone; the phone app sends the code with a
//! CSR made on the phone (the key and its PIN never leave it) and receives the certificate. The
//! code is keyed by the application (so its resend cooldown holds across downloads); a download
//! completes once.

use serde_json::{json, Value};

use super::{channel_of, AppError, ApplicationService, Cursor, Failure, Status, Who};
use crate::contact::{CodeError, CodePurpose};
use crate::storage::{unix_now, DownloadRow};

/// `POST /api/v1/downloads`: exactly one of `application`, or `account` with `profile`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DownloadRequest {
    /// The application (`app_...`) awaiting its CSR.
    #[serde(default)]
    pub application: Option<String>,
    /// An L3 account (`acct_...`) of the channel's realm, without an application.
    #[serde(default)]
    pub account: Option<String>,
    /// The profile of an account download.
    #[serde(default)]
    pub profile: Option<String>,
}

/// `POST /api/v1/downloads/{id}/complete`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DownloadCompletion {
    /// The code the phone received.
    pub code: String,
    /// PEM CSR made on the phone.
    pub csr: String,
}

pub(super) fn new_download_id() -> String {
    use rand::RngCore;
    let mut b = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut b);
    format!("dl_{}", hex::encode(b))
}

/// The application codes of a code check.
pub(super) fn code_error(e: CodeError) -> AppError {
    match e {
        CodeError::Wrong { attempts_left } => AppError::OtpWrong { attempts_left },
        CodeError::Expired => AppError::OtpExpired,
        CodeError::AttemptsExceeded | CodeError::NoCode => AppError::OtpAttemptsExceeded,
        CodeError::ResendTooSoon { retry_after } => AppError::ResendTooSoon(retry_after),
        other => {
            tracing::warn!(error = %other, "one-time code failed");
            AppError::Unavailable("one-time codes")
        }
    }
}

impl ApplicationService {
    /// Starts a download: the code goes to the application's verified phone (or, for an
    /// account, to its bound phone).
    pub async fn start_download(&self, who: &Who, req: DownloadRequest) -> Result<Value, AppError> {
        let channel = channel_of(who, "download certificates")?;
        let application = match (req.application, req.account, req.profile) {
            (Some(a), None, None) => a,
            (None, Some(account), Some(profile)) => {
                return self.start_account_download(who, &account, &profile).await
            }
            _ => {
                return Err(AppError::FieldNotExpected(
                    "give either application, or account with profile".into(),
                ))
            }
        };
        let app = self.load(who, &application).await?;
        let p = &app.doc.progress;
        if app.status != Status::AwaitingApplicant || p.cursor != Cursor::NeedsCsr {
            return Err(AppError::DownloadNotAvailable(format!(
                "application {} is {}: a download needs every step passed and no CSR yet",
                app.row.id,
                app.status.name()
            )));
        }
        let phone = p
            .confirmed_phone
            .clone()
            .or_else(|| p.verified("phone").map(str::to_owned))
            .filter(|_| !p.is_organisation())
            .ok_or(AppError::PhoneNotVerified)?;
        let codes = self
            .codes
            .clone()
            .ok_or(AppError::Unavailable("one-time codes"))?;
        let sent = codes
            .send(&channel.name, &app.row.id, CodePurpose::Download, &phone)
            .await
            .map_err(code_error)?;
        let id = new_download_id();
        self.rows
            .put_download(
                &DownloadRow {
                    id: id.clone(),
                    channel: channel.name.clone(),
                    application_id: app.row.id.clone(),
                    status: "open".into(),
                    expires_at: sent.expires_at,
                    profile: None,
                },
                unix_now(),
            )
            .await?;
        tracing::info!(download = %id, application = %app.row.id, "download code sent");
        Ok(json!({
            "id": id,
            "application": app.row.id,
            "code_sent_to": identifiers::mask::mask_phone(&phone),
            "expires_at": sent.expires_at,
        }))
    }

    /// Completes a download: a well-formed CSR first, then the code, then issuance (the
    /// application's answer, with its certificate).
    pub async fn complete_download(
        &self,
        who: &Who,
        id: &str,
        req: DownloadCompletion,
    ) -> Result<Value, Failure> {
        let channel = channel_of(who, "download certificates")?;
        let not_found = || AppError::NotFound(id.chars().take(40).collect());
        if !id.starts_with("dl_") || id.len() > 80 {
            return Err(not_found().into());
        }
        let d = self
            .rows
            .download(id)
            .await
            .map_err(AppError::from)?
            .filter(|d| d.channel == channel.name)
            .ok_or_else(not_found)?;
        if d.status != "open" {
            return Err(AppError::AlreadyUsed("download").into());
        }
        if d.profile.is_some() {
            return Ok(self.complete_account_download(who, &d, req).await?);
        }
        let app = self.load(who, &d.application_id).await?;
        if app.status != Status::AwaitingApplicant || app.doc.progress.cursor != Cursor::NeedsCsr {
            return Err(AppError::DownloadNotAvailable(format!(
                "application {} is {}",
                app.row.id,
                app.status.name()
            ))
            .into());
        }
        // A bad CSR costs no attempt and leaves the code usable.
        self.check_csr(&app.row.profile, &req.csr)?;
        let codes = self
            .codes
            .clone()
            .ok_or(AppError::Unavailable("one-time codes"))?;
        codes
            .check(&app.row.id, CodePurpose::Download, req.code.trim())
            .await
            .map_err(code_error)?;
        if !self
            .rows
            .use_download(id, unix_now())
            .await
            .map_err(AppError::from)?
        {
            return Err(AppError::AlreadyUsed("download").into());
        }
        tracing::info!(download = %id, application = %app.row.id, "download code accepted");
        self.csr(who, &app.row.id, &req.csr).await
    }
}
