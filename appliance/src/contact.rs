//! The seams between applications and the ways the appliance reaches people and partners:
//! channel notifications (channel plugins), the appliance's own one-time codes, and picture
//! captchas. `application` drives them through these traits; `notify` implements them.

use futures_util::future::BoxFuture;

/// Something that happened to an application that its channel's plugins may act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApplicationEventKind {
    /// The application was created.
    Created,
    /// A step waits for the applicant (a code, a face session, a deposit amount).
    NeedsApplicant,
    /// The applicant must choose one of several methods.
    ChoiceOffered,
    /// Waiting for an RA officer.
    AwaitingReview,
    /// A certificate was issued.
    Issued,
    /// Refused (a verification failed, or a reviewer rejected it).
    Rejected,
    /// Unfinished past its deadline.
    Expired,
    /// Cancelled by the channel.
    Cancelled,
}

/// An application event as a channel plugin receives it. Carries no personal data in clear
/// beyond what the channel's notifier needs to reach the applicant (`phone`, `email`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ApplicationEvent {
    /// Channel name.
    pub channel: String,
    /// Application id (`app_...`).
    pub application_id: String,
    /// Application kind (`new`, `renewal`, ...).
    pub application_kind: String,
    /// What happened.
    pub event: ApplicationEventKind,
    /// The application's status after it.
    pub status: String,
    /// The channel's own reference, if it gave one.
    pub reference: Option<String>,
    /// The issued certificate's serial (`issued`).
    pub certificate_serial: Option<String>,
    /// The failure code (`rejected`, `expired`).
    pub failure_code: Option<String>,
    /// The applicant's verified (or, before verification, declared) phone, for SMS.
    pub phone: Option<String>,
    /// The applicant's e-mail, if given.
    pub email: Option<String>,
    /// Unix seconds.
    pub at: i64,
}

/// Why a notification could not be queued.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// The channel has no notifier plugin able to send an SMS.
    #[error("channel {0} has no SMS notifier")]
    NoSmsNotifier(String),
    /// The database failed; nothing was queued.
    #[error("notification could not be stored: {0}")]
    Storage(String),
}

/// Delivers application events and the appliance's own SMS to a channel's plugins. Durable:
/// a call returns once the notification is committed; delivery and retries happen after.
pub trait ChannelNotifier: Send + Sync {
    /// Queues `event` for every channel plugin of `event.channel`.
    fn application_event<'a>(
        &'a self,
        event: &'a ApplicationEvent,
    ) -> BoxFuture<'a, Result<(), NotifyError>>;

    /// Queues an SMS with `text` to `phone` through `channel`'s notifier plugin.
    fn send_sms<'a>(
        &'a self,
        channel: &'a str,
        phone: &'a str,
        text: &'a str,
    ) -> BoxFuture<'a, Result<(), NotifyError>>;
}

/// What a one-time code proves (one open code per application and purpose).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CodePurpose {
    /// Possession of the phone that becomes the certificate's verified phone.
    ConfirmPhone,
    /// The applicant's SMS-confirmed application signature.
    ApplicationSignature,
    /// Possession of a new phone (`phone_change`).
    NewPhone,
    /// The legal representative authorises the agent online (organisation materials).
    Authorisation,
    /// Re-verification before an order lookup (keyed by the lookup id).
    Lookup,
    /// The main agent confirms a change of the organisation's agents (keyed by the change id).
    AgentChange,
    /// Certificate download to the bound phone (keyed by the download id).
    Download,
    /// Phone-code login to an account (keyed by the login id).
    CodeLogin,
}

/// A code that was sent.
#[derive(Debug, Clone)]
pub struct SentCode {
    /// Unix seconds after which the code is refused (`otp_expired`).
    pub expires_at: i64,
    /// Unix seconds before which no new code is sent (`resend_too_soon`).
    pub resend_after: i64,
}

/// Why a code was not sent or not accepted. The messages never say whether a phone exists.
#[derive(Debug, thiserror::Error)]
pub enum CodeError {
    /// The code does not match; `attempts_left` more tries.
    #[error("the code is wrong")]
    Wrong {
        /// Tries left before the code is void.
        attempts_left: u32,
    },
    /// The code is past its expiry.
    #[error("the code has expired")]
    Expired,
    /// Too many wrong tries: the code is void and the step fails.
    #[error("too many wrong codes")]
    AttemptsExceeded,
    /// No code was sent for this purpose (or it was already used).
    #[error("no code is open for this step")]
    NoCode,
    /// A code was sent too recently.
    #[error("a code was sent recently; retry after {retry_after}")]
    ResendTooSoon {
        /// Unix seconds.
        retry_after: i64,
    },
    /// The notifier could not queue the SMS.
    #[error(transparent)]
    Notify(#[from] NotifyError),
    /// The database failed.
    #[error("code store failed: {0}")]
    Storage(String),
}

/// The appliance's own one-time codes: 6 digits, stored keyed-hashed, expiry, resend
/// cooldown, limited attempts; sent through the channel's notifier.
pub trait OneTimeCodes: Send + Sync {
    /// Makes a new code for (`application_id`, `purpose`), replacing an open one, and sends it
    /// to `phone` through `channel`'s notifier.
    fn send<'a>(
        &'a self,
        channel: &'a str,
        application_id: &'a str,
        purpose: CodePurpose,
        phone: &'a str,
    ) -> BoxFuture<'a, Result<SentCode, CodeError>>;

    /// Checks `code`; on success the code is consumed.
    fn check<'a>(
        &'a self,
        application_id: &'a str,
        purpose: CodePurpose,
        code: &'a str,
    ) -> BoxFuture<'a, Result<(), CodeError>>;
}

/// A picture captcha to show the applicant.
#[derive(Debug, Clone)]
pub struct Captcha {
    /// Its id (`cap_...`).
    pub id: String,
    /// PNG image of 4 digits.
    pub png: Vec<u8>,
    /// Unix seconds.
    pub expires_at: i64,
}

/// Why a captcha answer was refused (the captcha is used up either way).
#[derive(Debug, thiserror::Error)]
pub enum CaptchaError {
    /// Wrong digits.
    #[error("the captcha answer is wrong")]
    Wrong,
    /// Unknown, already used, or expired.
    #[error("the captcha is unknown, used or expired")]
    Unknown,
    /// The database failed.
    #[error("captcha store failed: {0}")]
    Storage(String),
}

/// Picture captchas: 4 digits, PNG, one use, short expiry, bound to what they guard.
pub trait Captchas: Send + Sync {
    /// A new captcha guarding `subject` (an application id).
    fn issue<'a>(&'a self, subject: &'a str) -> BoxFuture<'a, Result<Captcha, CaptchaError>>;

    /// Redeems the captcha `id` for `subject` with `answer`; consumed whatever the result.
    fn redeem<'a>(
        &'a self,
        subject: &'a str,
        id: &'a str,
        answer: &'a str,
    ) -> BoxFuture<'a, Result<(), CaptchaError>>;
}
