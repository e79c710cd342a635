//! The JSON documents that cross the ABI (manifest, StepInput, StepOutput), every one with `"v": 1`.
//!
//! These types are the single Rust definition of the wire format in `include/ca_plugin.h`'s
//! companion spec; the host and the Rust SDK both (de)serialise through them, so a field rename
//! here is an ABI change.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The document version every JSON document carries as `"v"`.
pub const DOC_VERSION: u32 = 1;

/// Largest reply (StepOutput / manifest) a host accepts, in bytes.
pub const MAX_OUTPUT_BYTES: usize = 1024 * 1024;
/// Largest serialised opaque `state` inside a StepOutput, in bytes.
pub const MAX_STATE_BYTES: usize = 64 * 1024;
/// Largest StepInput a plugin accepts, in bytes (an HTTP body of up to 1 MiB, escaped, plus state).
pub const MAX_INPUT_BYTES: usize = 4 * 1024 * 1024;

fn v1() -> u32 {
    DOC_VERSION
}

/// What kind of plugin a manifest describes.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum PluginKind {
    /// An identity verifier: drives verifications with `step`.
    Verifier,
    /// A channel plugin: turns application events and SMS / e-mail requests into HTTP actions
    /// (`crate::channel`; ABI 1.1).
    Channel,
}

/// An applicant attribute a plugin may ask for (data minimisation: the host passes only these).
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "snake_case")]
pub enum ApplicantField {
    /// Person's name.
    Name,
    /// Resident ID number.
    IdNumber,
    /// Mobile phone number.
    Phone,
    /// Bank card number.
    BankCard,
    /// Organisation name.
    OrgName,
    /// Unified social credit code.
    Uscc,
    /// Legal representative's name.
    LegalRepName,
    /// Legal representative's ID number.
    LegalRepId,
    /// Corporate bank account number.
    BankAccount,
    /// Corporate bank account's bank name.
    BankName,
}

/// The manifest `describe()` returns; the operator approves a plugin by its hash and this.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Document version, always 1.
    #[serde(default = "v1")]
    pub v: u32,
    /// Plugin name, e.g. `phone-real-name`.
    pub name: String,
    /// Plugin version (semver).
    pub version: String,
    /// Plugin kind.
    pub kind: PluginKind,
    /// Verification methods it implements, e.g. `phone_real_name`.
    pub methods: Vec<String>,
    /// JSON Schema of its config object; secret fields carry `"x-secret": true`.
    pub config_schema: Value,
    /// Default production egress hosts as `host:port`; deployment config may override.
    pub egress_hosts: Vec<String>,
    /// Applicant fields it needs; the host passes only these.
    pub applicant_fields: Vec<ApplicantField>,
}

/// Applicant data given with the `start` event. `Debug` masks every value (personal data).
#[derive(Serialize, Deserialize, Clone, Default, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Applicant {
    /// Person's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Resident ID number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_number: Option<String>,
    /// Mobile phone number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    /// Bank card number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bank_card: Option<String>,
    /// Organisation name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org_name: Option<String>,
    /// Unified social credit code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uscc: Option<String>,
    /// Legal representative's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub legal_rep_name: Option<String>,
    /// Legal representative's ID number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub legal_rep_id: Option<String>,
    /// Corporate bank account number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bank_account: Option<String>,
    /// Corporate account's bank name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bank_name: Option<String>,
}

impl Applicant {
    /// The value of one field, if present.
    pub fn get(&self, field: ApplicantField) -> Option<&str> {
        self.slot(field).as_deref()
    }

    fn slot(&self, field: ApplicantField) -> &Option<String> {
        match field {
            ApplicantField::Name => &self.name,
            ApplicantField::IdNumber => &self.id_number,
            ApplicantField::Phone => &self.phone,
            ApplicantField::BankCard => &self.bank_card,
            ApplicantField::OrgName => &self.org_name,
            ApplicantField::Uscc => &self.uscc,
            ApplicantField::LegalRepName => &self.legal_rep_name,
            ApplicantField::LegalRepId => &self.legal_rep_id,
            ApplicantField::BankAccount => &self.bank_account,
            ApplicantField::BankName => &self.bank_name,
        }
    }

    /// A copy holding only `fields` (what the host passes to a plugin: data minimisation).
    pub fn only(&self, fields: &[ApplicantField]) -> Applicant {
        let keep = |f: ApplicantField| {
            if fields.contains(&f) {
                self.slot(f).clone()
            } else {
                None
            }
        };
        Applicant {
            name: keep(ApplicantField::Name),
            id_number: keep(ApplicantField::IdNumber),
            phone: keep(ApplicantField::Phone),
            bank_card: keep(ApplicantField::BankCard),
            org_name: keep(ApplicantField::OrgName),
            uscc: keep(ApplicantField::Uscc),
            legal_rep_name: keep(ApplicantField::LegalRepName),
            legal_rep_id: keep(ApplicantField::LegalRepId),
            bank_account: keep(ApplicantField::BankAccount),
            bank_name: keep(ApplicantField::BankName),
        }
    }
}

impl fmt::Debug for Applicant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const ALL: [ApplicantField; 10] = [
            ApplicantField::Name,
            ApplicantField::IdNumber,
            ApplicantField::Phone,
            ApplicantField::BankCard,
            ApplicantField::OrgName,
            ApplicantField::Uscc,
            ApplicantField::LegalRepName,
            ApplicantField::LegalRepId,
            ApplicantField::BankAccount,
            ApplicantField::BankName,
        ];
        let present: Vec<ApplicantField> = ALL
            .into_iter()
            .filter(|x| self.slot(*x).is_some())
            .collect();
        f.debug_struct("Applicant")
            .field("present", &present)
            .finish_non_exhaustive()
    }
}

/// The document passed to `step`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StepInput {
    /// Document version, always 1.
    pub v: u32,
    /// The verification's id (`vrf_...`); plugins pass it to vendors as an idempotency key.
    pub verification_id: String,
    /// The host's current time, RFC 3339 UTC. Plugins read no clock of their own.
    pub now: String,
    /// The opaque state the plugin returned last time; `null` on `start`.
    pub state: Option<Value>,
    /// What happened.
    pub event: Event,
}

/// Why the host could not perform an HTTP action.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum HttpErrorKind {
    /// No response within the action's timeout.
    Timeout,
    /// Could not connect (DNS, refused, reset).
    Connect,
    /// TLS handshake or certificate verification failed.
    Tls,
    /// The response exceeded the host's size cap.
    TooLarge,
    /// The host is not on the plugin's approved egress allowlist (or plain http was refused).
    RefusedHost,
}

/// Kind of user challenge (what the user is asked to do or enter).
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ChallengeKind {
    /// A one-time code sent by SMS.
    SmsCode,
    /// A URL / QR token for a liveness session.
    FaceUrl,
    /// The amount of a micro-deposit.
    DepositAmount,
}

/// One event fed to `step`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Event {
    /// A new verification with the applicant fields the manifest asked for.
    Start {
        /// Applicant data (masked in Debug).
        applicant: Applicant,
    },
    /// The response to an HTTP action the host performed.
    HttpResponse {
        /// The action's id.
        id: String,
        /// HTTP status code.
        status: u16,
        /// Response body as UTF-8 (lossy).
        body: String,
    },
    /// An HTTP action the host could not perform.
    HttpError {
        /// The action's id.
        id: String,
        /// What went wrong.
        error: HttpErrorKind,
    },
    /// What the user entered for a challenge.
    UserInput {
        /// Which challenge.
        challenge: ChallengeKind,
        /// What the user entered.
        data: String,
    },
    /// A vendor's asynchronous notification, as JSON.
    Callback {
        /// The notification body.
        body: Value,
    },
    /// A timer the plugin set has fired.
    Timer {
        /// The timer's id.
        id: String,
    },
    /// The verification was cancelled by the user or operator.
    Cancel,
}

/// Where a verification stands after a step.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Waiting on the host (HTTP, timer, callback).
    Pending,
    /// Waiting on the user (a challenge).
    AwaitingUser,
    /// Finished: verified.
    Succeeded,
    /// Finished: not verified.
    Failed,
}

impl Status {
    /// True for `succeeded` and `failed`.
    pub fn is_final(self) -> bool {
        matches!(self, Status::Succeeded | Status::Failed)
    }
}

/// HTTP method of an action.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpMethod {
    /// GET
    GET,
    /// POST
    POST,
    /// PUT
    PUT,
    /// PATCH
    PATCH,
    /// DELETE
    DELETE,
}

impl HttpMethod {
    /// The method name.
    pub fn as_str(self) -> &'static str {
        match self {
            HttpMethod::GET => "GET",
            HttpMethod::POST => "POST",
            HttpMethod::PUT => "PUT",
            HttpMethod::PATCH => "PATCH",
            HttpMethod::DELETE => "DELETE",
        }
    }
}

fn default_timeout_ms() -> u32 {
    5000
}

/// An HTTP request the host performs for the plugin; `{{secret:NAME}}` in header values or body
/// is replaced by the operator's secret at send time.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HttpAction {
    /// Id echoed in the `http_response` / `http_error` event.
    pub id: String,
    /// HTTP method.
    pub method: HttpMethod,
    /// Absolute https URL on an allowlisted host.
    pub url: String,
    /// Request headers.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Request body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Timeout in milliseconds (default 5000; the host caps it).
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u32,
}

/// Something the user must do or enter.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Challenge {
    /// Challenge kind.
    pub kind: ChallengeKind,
    /// Data for the UI (e.g. a face URL, masked phone); never a secret or the expected answer.
    #[serde(default)]
    pub payload: Value,
    /// When the challenge expires, RFC 3339.
    pub expires_at: String,
}

/// A timer the host fires back as a `timer` event after `after_ms`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Timer {
    /// Id echoed in the `timer` event.
    pub id: String,
    /// Delay in milliseconds.
    pub after_ms: u64,
}

/// An action the plugin asks the host to perform.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Action {
    /// Perform an HTTP request.
    Http(HttpAction),
    /// Show a challenge to the user.
    Challenge(Challenge),
    /// Fire a timer later.
    Timer(Timer),
}

/// The outcome of a verification: `verified` or a stable failure code.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Verified.
    Verified,
    /// Resident ID number fails its checksum or format.
    InvalidIdNumber,
    /// Mobile number format invalid.
    InvalidPhone,
    /// USCC fails its checksum or format.
    InvalidUscc,
    /// Card number fails its checksum or format.
    InvalidCard,
    /// Elements do not match the authoritative record.
    Mismatch,
    /// The phone is not registered under the applicant's real name.
    PhoneNotRealName,
    /// No record at the vendor.
    NoRecord,
    /// Wrong one-time code (status stays awaiting_user while attempts remain).
    OtpWrong,
    /// The one-time code expired.
    OtpExpired,
    /// Too many wrong one-time codes.
    OtpAttemptsExceeded,
    /// Card invalid.
    CardInvalid,
    /// Card reported lost.
    CardLost,
    /// Card restricted.
    CardRestricted,
    /// Liveness check failed.
    LivenessFailed,
    /// Face does not match the ID photo.
    NotSamePerson,
    /// Cancelled.
    Cancelled,
    /// The verification window expired.
    Expired,
    /// Wrong deposit amount (awaiting_user while attempts remain).
    WrongAmount,
    /// Too many attempts.
    AttemptsExceeded,
    /// The account is invalid or closed.
    AccountInvalid,
    /// The account name does not match the organisation.
    AccountNameMismatch,
    /// The organisation is deregistered / not active.
    Deregistered,
    /// The vendor could not be reached after the plugin's own retries.
    VendorUnavailable,
}

/// The result part of a StepOutput.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct VerificationResult {
    /// `verified` or a failure code.
    pub outcome: Outcome,
    /// Attributes this verification proves (only with `verified`).
    #[serde(default)]
    pub verified_attributes: Vec<ApplicantField>,
    /// Assurance level, e.g. `L2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assurance: Option<String>,
    /// Evidence to keep (vendor request id, score); no personal data.
    #[serde(default)]
    pub evidence: Value,
}

/// The document `step` returns.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StepOutput {
    /// Document version, always 1.
    pub v: u32,
    /// Where the verification stands.
    pub status: Status,
    /// New opaque state the host stores and returns next time (at most 64 KiB serialised).
    pub state: Value,
    /// Actions for the host, performed after the state is persisted.
    #[serde(default)]
    pub actions: Vec<Action>,
    /// Result: set when final; a non-`verified` outcome may accompany `awaiting_user` (otp_wrong).
    #[serde(default)]
    pub result: Option<VerificationResult>,
}

/// Why a StepOutput breaks the document rules.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutputRuleError {
    /// `"v"` is not 1.
    #[error("document version {0} is not 1")]
    Version(u32),
    /// `succeeded` without a `verified` result, or a `verified` result with another status.
    #[error("status {status:?} is inconsistent with the result")]
    Inconsistent {
        /// The status given.
        status: Status,
    },
    /// An action id or timer id is empty.
    #[error("an action has an empty id")]
    EmptyId,
    /// The state is larger than MAX_STATE_BYTES.
    #[error("state is {0} bytes, over the cap")]
    StateTooLarge(usize),
}

impl StepOutput {
    /// A document with no actions and no result.
    pub fn new(status: Status, state: Value) -> Self {
        StepOutput {
            v: DOC_VERSION,
            status,
            state,
            actions: Vec::new(),
            result: None,
        }
    }

    /// Checks the rules a host enforces: version, status/result consistency, ids, state size.
    pub fn check_rules(&self) -> Result<(), OutputRuleError> {
        if self.v != DOC_VERSION {
            return Err(OutputRuleError::Version(self.v));
        }
        let verified = matches!(&self.result, Some(r) if r.outcome == Outcome::Verified);
        let consistent = match self.status {
            Status::Succeeded => verified,
            Status::Failed => self.result.is_some() && !verified,
            Status::Pending => self.result.is_none(),
            Status::AwaitingUser => !verified,
        };
        if !consistent {
            return Err(OutputRuleError::Inconsistent {
                status: self.status,
            });
        }
        for a in &self.actions {
            let id = match a {
                Action::Http(h) => h.id.as_str(),
                Action::Timer(t) => t.id.as_str(),
                Action::Challenge(_) => "challenge",
            };
            if id.is_empty() {
                return Err(OutputRuleError::EmptyId);
            }
        }
        let state_len = serde_json::to_vec(&self.state)
            .map(|v| v.len())
            .unwrap_or(usize::MAX);
        if state_len > MAX_STATE_BYTES {
            return Err(OutputRuleError::StateTooLarge(state_len));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
