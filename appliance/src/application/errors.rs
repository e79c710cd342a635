//! [`AppError`]: why an application request failed, one stable API code each; [`Failure`]: the
//! error with the application as it stands after it.

use serde_json::Value;

use crate::application::subject::SubjectError;
use crate::ca::issuance::IssuanceError;
use crate::storage::StorageError;
use crate::verification::VerificationError;

/// Why an application request failed. Each maps to one stable API code; none carries personal
/// data.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// Only a channel may do this.
    #[error("only a channel may {0}")]
    ChannelOnly(&'static str),
    /// Unknown application kind.
    #[error(
        "unknown application kind {0:?} (new, renewal, change, reissue, revocation, phone_change, level_up)"
    )]
    UnknownKind(String),
    /// Unknown profile.
    #[error("unknown profile {0:?}")]
    UnknownProfile(String),
    /// The channel may not use the profile.
    #[error("channel {channel} may not use profile {profile:?}")]
    ProfileNotAllowed {
        /// Channel.
        channel: String,
        /// Profile.
        profile: String,
    },
    /// The channel's policies do not offer this kind for this subject type.
    #[error("channel {channel} offers no {kind} applications for this subject type")]
    KindNotOffered {
        /// Channel.
        channel: String,
        /// Kind.
        kind: &'static str,
    },
    /// A subject field is missing or invalid.
    #[error(transparent)]
    Subject(#[from] SubjectError),
    /// A field the policy does not expect here.
    #[error("{0}")]
    FieldNotExpected(String),
    /// The kind acts on a certificate, and none was named.
    #[error("kind {0} needs \"certificate\": the serial of the certificate it acts on")]
    CertificateRequired(&'static str),
    /// `certificate` given for a new application.
    #[error("a new application names no certificate")]
    CertificateNotExpected,
    /// No such certificate issued through this channel to this subject.
    #[error("no certificate {0} of this subject issued through this channel")]
    CertificateNotFound(String),
    /// The certificate is revoked or expired.
    #[error("certificate {0} is no longer valid")]
    CertificateNotValid(String),
    /// Renewal outside the window.
    #[error(
        "renewal is allowed from {window_days} days before expiry, i.e. from unix time {from}"
    )]
    RenewalNotAllowed {
        /// Window.
        window_days: u32,
        /// Unix seconds from when.
        from: i64,
    },
    /// Another application of this subject is open in this channel.
    #[error("application {0} of this subject is still open in this channel; cancel it first")]
    Open(String),
    /// No such application visible to the caller.
    #[error("no application {0}")]
    NotFound(String),
    /// The application is finished.
    #[error("application is {0}; it takes no more input")]
    Finished(&'static str),
    /// The current step does not take this.
    #[error("{0}")]
    InputNotExpected(String),
    /// The method is not offered here.
    #[error("method {0:?} is not offered at this step")]
    MethodNotAllowed(String),
    /// A captcha must be solved first.
    #[error("solve the captcha shown in the step first")]
    CaptchaRequired,
    /// Wrong captcha answer (a new captcha is shown).
    #[error("the captcha answer is wrong; a new captcha is shown")]
    CaptchaWrong,
    /// Captcha unknown, used or expired (a new captcha is shown).
    #[error("the captcha expired; a new captcha is shown")]
    CaptchaExpired,
    /// A wrong one-time code.
    #[error("the code is wrong; {attempts_left} attempts left")]
    OtpWrong {
        /// Attempts left.
        attempts_left: u32,
    },
    /// The code expired.
    #[error("the code has expired; ask for a new one")]
    OtpExpired,
    /// Too many wrong codes: the application is rejected.
    #[error("too many wrong codes")]
    OtpAttemptsExceeded,
    /// A code was sent too recently.
    #[error("a code was sent recently; retry after unix time {0}")]
    ResendTooSoon(i64),
    /// The phone to confirm is not the verified one.
    #[error("the phone is not the one the verification proved")]
    PhoneNotVerified,
    /// A verification outlived its step's window (the corporate transfer's deposit): the
    /// method is to be chosen again.
    #[error("the {0} window has passed; choose the method again")]
    DepositExpired(String),
    /// The application ended with a verification failure (the plugin's code).
    #[error("verification failed: {0}")]
    Rejected(String),
    /// The phone already binds as many other accounts of the kind in the realm as allowed.
    #[error("this phone is already bound to another account of this kind in realm {0}")]
    PhoneBound(String),
    /// The CSR was refused.
    #[error(transparent)]
    Issuance(#[from] IssuanceError),
    /// A verification error (plugin unavailable, limits...).
    #[error(transparent)]
    Verification(#[from] VerificationError),
    /// Codes, captchas or the data keys are not available.
    #[error("{0} is not available on this appliance")]
    Unavailable(&'static str),
    /// The database failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// Sealed data could not be opened or written.
    #[error("sealed application data is unusable: {0}")]
    Sealed(String),
    /// Another request changed the application at the same time; retry.
    #[error("the application changed concurrently; retry")]
    Conflict,
    /// Only an RA officer may do this.
    #[error("only an RA officer may {0}")]
    OfficerOnly(&'static str),
    /// Not a material kind the appliance knows.
    #[error(
        "unknown material kind {0:?} (business_licence, id_front, id_back, authorisation_letter)"
    )]
    MaterialKind(String),
    /// The material is larger than the limit.
    #[error("the file is larger than {0} bytes")]
    MaterialTooLarge(usize),
    /// The content is not a JPEG, PNG or PDF, or not the type declared.
    #[error("{0}")]
    MaterialType(String),
    /// No such material of this application.
    #[error("no material {0} of this application")]
    MaterialNotFound(String),
    /// The application does not wait for a review decision.
    #[error("the application is {0}, not awaiting review")]
    NotAwaitingReview(&'static str),
    /// This officer decided on this application already.
    #[error("officer {0} has already reviewed this application")]
    AlreadyReviewed(String),
    /// The decision or its reason is malformed.
    #[error("{0}")]
    DecisionInvalid(String),
    /// An ID document no vendor checks (Taiwan permit, passport) where the channel offers no
    /// materials-and-review policy for the kind (e.g. L3 by face).
    #[error("{0}")]
    IdTypeNotVerifiable(String),
    /// A `level_up` application for a subject with no account in the channel's realm.
    #[error("this person has no account in realm {0}")]
    AccountNotFound(String),
    /// The application does not await a certificate download (not approved, or issued).
    #[error("{0}")]
    DownloadNotAvailable(String),
    /// The download or code login was completed already.
    #[error("this {0} was completed already; start a new one")]
    AlreadyUsed(&'static str),
    /// The phone is bound to accounts of several ID numbers in the realm (the Beijing rule).
    #[error("this phone is bound to several ID numbers in realm {0}; code login is not allowed")]
    PhoneSharedByIds(String),
    /// The organisation has no agents on record in this channel.
    #[error("no agents of this organisation in this channel")]
    OrganisationUnknown,
    /// No such agent of the organisation.
    #[error("no agent {0:?} of this organisation")]
    UnknownAgent(String),
    /// The main agent is handed over, not removed.
    #[error("the main agent cannot be removed; hand the main role over first")]
    CannotRemoveMainAgent,
    /// The agent is on record already.
    #[error("this person is already an agent of the organisation")]
    AgentExists,
    /// The change was asked for another organisation.
    #[error("this change belongs to another organisation")]
    ChangeOfAnotherOrganisation,
}

/// An error with the application as it stands after it (when there is one).
#[derive(Debug)]
pub struct Failure {
    /// What went wrong.
    pub error: AppError,
    /// The application, masked.
    pub application: Option<Value>,
}

impl<E: Into<AppError>> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure {
            error: e.into(),
            application: None,
        }
    }
}
