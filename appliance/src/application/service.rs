//! [`ApplicationService`]: creates applications and drives them through their policy's steps.
//!
//! Verifications run through the [`VerificationService`] (started with a reference derived from
//! the application and step, so a retry after a crash finds the same verification instead of
//! starting another); the appliance's own codes and captchas through the `contact` seams. Every
//! change of the progress document is sealed and committed, with its audit row, before the
//! caller sees it; the background task advances applications waiting on a vendor (face) or on
//! issuance after a restart, and expires unfinished ones.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use const_oid::ObjectIdentifier;
use plugin_abi::doc::{Applicant, ApplicantField, ChallengeKind, Status as VStatus};
use rand::RngCore;
use serde_json::{json, Value};

use super::machine::{CodeSent, Cursor, Evidence, Progress, Status};
use super::organisation::{self as org, Delivery};
use super::policy::{self, Kind, Person, Step, SubjectType};
use super::subject::{subject_hash, SubjectError, SubjectInput};
use crate::ca::issuance::{IssuanceError, IssuanceRequest, Issuer};
use crate::config::{ApplicationSettings, ChannelConfig};
use crate::contact::{
    ApplicationEvent, ApplicationEventKind, CaptchaError, Captchas, ChannelNotifier, CodeError,
    CodePurpose, OneTimeCodes,
};
use crate::status::StatusService;
use crate::storage::{
    unix_now, ApplicationRow, ApplicationRows, AuditEntry, CertificateStore, Inserted,
    ReusableVerification, Revocation, RevocationError, StorageError, Updated,
};
use crate::verification::seal::Field;
use crate::verification::service::subject_key;
use crate::verification::{KeySet, Keyring, Requester, VerificationError, VerificationService};

#[path = "account_download.rs"]
mod account_download;
#[path = "agents.rs"]
mod agents;
#[path = "code_login.rs"]
mod code_login;
#[path = "downloads.rs"]
mod downloads;
#[path = "lookup.rs"]
mod lookup;
#[path = "materials.rs"]
mod materials;
#[path = "review.rs"]
mod review;

pub use agents::{AgentChangeRequest, AgentConfirmRequest};
pub use code_login::{CodeLoginCompletion, CodeLoginRequest};
pub use downloads::{DownloadCompletion, DownloadRequest};
pub use lookup::{LookupRequest, VerifyRequest as LookupVerifyRequest};

pub use materials::{sniff, Upload, MAX_MATERIAL_BYTES};

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

/// Who asks.
#[derive(Debug, Clone)]
pub enum Who {
    /// An operator: sees and cancels any application.
    Operator(String),
    /// A channel: its own applications only.
    Channel(Arc<ChannelConfig>),
    /// The appliance itself (background task).
    System,
    /// An RA officer: reads the review queue and materials, decides reviews.
    Officer(String),
    /// An auditor: reads the review queue.
    Auditor(String),
}

impl Who {
    fn actor(&self) -> String {
        match self {
            Who::Operator(n) => format!("operator:{n}"),
            Who::Channel(c) => format!("channel:{}", c.name),
            Who::System => "system:applications".into(),
            Who::Officer(n) => format!("ra_officer:{n}"),
            Who::Auditor(n) => format!("auditor:{n}"),
        }
    }
}

/// `POST /api/v1/applications`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateRequest {
    /// Kind name.
    pub kind: String,
    /// Profile name.
    pub profile: String,
    /// The subject as declared (input to verification, never to the certificate).
    pub subject: SubjectInput,
    /// PEM CSR (kinds that issue; may come later by `/csr`).
    #[serde(default)]
    pub csr: Option<String>,
    /// Serial of the certificate acted on (every kind but `new`).
    #[serde(default)]
    pub certificate: Option<String>,
    /// Revocation reason (`revocation`): unspecified, keyCompromise, affiliationChanged,
    /// superseded, cessationOfOperation.
    #[serde(default)]
    pub reason: Option<String>,
    /// The channel's own reference (not personal data).
    #[serde(default)]
    pub reference: Option<String>,
}

/// Revocation reasons a subscriber may give.
const SUBSCRIBER_REASONS: [(&str, i64); 5] = [
    ("unspecified", 0),
    ("keyCompromise", 1),
    ("affiliationChanged", 3),
    ("superseded", 4),
    ("cessationOfOperation", 5),
];

/// The document sealed in `applications.sealed_doc`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Doc {
    progress: Progress,
    reference: Option<String>,
    holds_certificate: bool,
    /// The current step's challenge (face URL, SMS code prompt), as the plugin gave it.
    challenge: Option<Value>,
}

/// A loaded application.
#[derive(Debug, Clone)]
struct App {
    row: ApplicationRow,
    status: Status,
    kind: Kind,
    doc: Doc,
}

/// The application service.
pub struct ApplicationService {
    rows: ApplicationRows,
    keyring: Arc<Keyring>,
    verifications: Arc<VerificationService>,
    issuer: Issuer,
    status: Arc<StatusService>,
    certificates: CertificateStore,
    settings: ApplicationSettings,
    assurance_oids: BTreeMap<String, ObjectIdentifier>,
    codes: Option<Arc<dyn OneTimeCodes>>,
    captchas: Option<Arc<dyn Captchas>>,
    notifier: Option<Arc<dyn ChannelNotifier>>,
    materials: Option<crate::storage::MaterialRows>,
    agents: Option<crate::storage::AgentRows>,
    pending_agent_changes: agents::PendingChanges,
    lookups: lookup::Lookups,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl std::fmt::Debug for ApplicationService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApplicationService").finish_non_exhaustive()
    }
}

fn new_id() -> String {
    let mut b = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut b);
    format!("app_{}", hex::encode(b))
}

fn sealed(e: impl std::fmt::Display) -> AppError {
    AppError::Sealed(e.to_string())
}

/// The API name of an applicant field.
fn field_name(f: ApplicantField) -> &'static str {
    subject_key(f)
}

impl ApplicationService {
    /// A service over its stores and the services it drives.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        rows: ApplicationRows,
        keyring: Arc<Keyring>,
        verifications: Arc<VerificationService>,
        issuer: Issuer,
        status: Arc<StatusService>,
        certificates: CertificateStore,
        settings: ApplicationSettings,
    ) -> Self {
        let assurance_oids = settings
            .assurance_policy_oids
            .iter()
            .filter_map(|(l, o)| ObjectIdentifier::new(o).ok().map(|o| (l.clone(), o)))
            .collect();
        Self {
            rows,
            keyring,
            verifications,
            issuer,
            status,
            certificates,
            settings,
            assurance_oids,
            codes: None,
            captchas: None,
            notifier: None,
            materials: None,
            agents: None,
            pending_agent_changes: agents::PendingChanges::default(),
            lookups: lookup::Lookups::default(),
            locks: Mutex::new(HashMap::new()),
        }
    }

    /// Wires the appliance's one-time codes, captchas and channel notifier.
    pub fn with_contact(
        mut self,
        codes: Option<Arc<dyn OneTimeCodes>>,
        captchas: Option<Arc<dyn Captchas>>,
        notifier: Option<Arc<dyn ChannelNotifier>>,
    ) -> Self {
        self.codes = codes;
        self.captchas = captchas;
        self.notifier = notifier;
        self
    }

    /// Wires the materials store (uploads, the review step).
    pub fn with_materials(mut self, materials: crate::storage::MaterialRows) -> Self {
        self.materials = Some(materials);
        self
    }

    fn lock_for(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > 10_000 {
            map.retain(|_, l| Arc::strong_count(l) > 1);
        }
        map.entry(id.to_owned()).or_default().clone()
    }

    fn keys(&self) -> Arc<KeySet> {
        self.keyring.current()
    }

    /// The subject's hash under every key held (look-ups), the active key's first.
    fn hashes(&self, keys: &KeySet, id_type: &str, id_number: &str) -> Vec<String> {
        let mut out = Vec::new();
        if let Ok(k) = keys.active() {
            out.push(subject_hash(k, id_type, id_number));
        }
        for k in keys.all() {
            let h = subject_hash(k, id_type, id_number);
            if !out.contains(&h) {
                out.push(h);
            }
        }
        out
    }

    // ---------------------------------------------------------------- loading and saving

    async fn load(&self, who: &Who, id: &str) -> Result<App, AppError> {
        let not_found = || AppError::NotFound(id.to_owned());
        if !id.starts_with("app_") || id.len() > 80 {
            return Err(not_found());
        }
        let row = self.rows.get(id).await?.ok_or_else(not_found)?;
        if let Who::Channel(c) = who {
            if c.name != row.channel {
                return Err(not_found());
            }
        }
        let mut keys = self.keys();
        let plain = match keys.open(&row.id, Field::State, &row.sealed_doc) {
            Ok(p) => p,
            Err(_) => {
                keys = self.keyring.reload(&keys).await.map_err(sealed)?;
                keys.open(&row.id, Field::State, &row.sealed_doc)
                    .map_err(sealed)?
            }
        };
        let doc: Doc = serde_json::from_slice(&plain).map_err(sealed)?;
        let status = Status::parse(&row.status).ok_or_else(|| sealed("unknown status"))?;
        let kind = Kind::parse(&row.kind).ok_or_else(|| sealed("unknown kind"))?;
        Ok(App {
            row,
            status,
            kind,
            doc,
        })
    }

    /// Seals and commits `app` (revision + 1) with an audit row naming the transition.
    async fn save(&self, app: &mut App, from: Status, actor: &str) -> Result<(), AppError> {
        if from != app.status && !from.may_become(app.status) {
            return Err(sealed(format!(
                "transition {} -> {} is not in the state machine",
                from.name(),
                app.status.name()
            )));
        }
        let plain = serde_json::to_vec(&app.doc).map_err(sealed)?;
        let mut keys = self.keys();
        for _ in 0..3 {
            let key = keys.active().map_err(sealed)?;
            let mut row = app.row.clone();
            row.sealed_doc = key.seal(&row.id, Field::State, &plain).map_err(sealed)?;
            row.key_id = key.id();
            row.status = app.status.name().to_owned();
            row.revision = app.row.revision + 1;
            row.updated_at = unix_now();
            if !app.status.is_open() {
                row.open_slot = None;
            }
            row.failure_code = if app.status.is_open() {
                None
            } else {
                app.doc.progress.failure.as_ref().map(|f| f.0.clone())
            };
            let audit = AuditEntry {
                actor: actor.to_owned(),
                action: if from == app.status {
                    "application.step".into()
                } else {
                    format!("application.{}", app.status.name())
                },
                target: row.id.clone(),
                detail: json!({
                    "from": from.name(),
                    "to": app.status.name(),
                    "step": app.doc.progress.step,
                    "at": cursor_name(&app.doc.progress.cursor),
                    "failure_code": row.failure_code,
                    "issued_serial": row.issued_serial,
                }),
            };
            match self.rows.update(&row, Some(&audit)).await? {
                Updated::Yes => {
                    app.row = row;
                    return Ok(());
                }
                Updated::StaleKey => {
                    keys = self.keyring.reload(&keys).await.map_err(sealed)?;
                }
                Updated::Conflict => return Err(AppError::Conflict),
            }
        }
        Err(sealed("the active data key kept changing"))
    }

    // ---------------------------------------------------------------- create

    /// Creates an application and runs it as far as it goes without the applicant.
    pub async fn create(&self, who: &Who, req: CreateRequest) -> Result<Value, Failure> {
        let Who::Channel(channel) = who else {
            return Err(AppError::ChannelOnly("create applications").into());
        };
        let kind = Kind::parse(&req.kind).ok_or_else(|| AppError::UnknownKind(req.kind.clone()))?;
        if !self.issuer.profiles().contains_key(&req.profile) {
            return Err(AppError::UnknownProfile(req.profile.clone()).into());
        }
        if !channel.profiles.contains(&req.profile) {
            return Err(AppError::ProfileNotAllowed {
                channel: channel.name.clone(),
                profile: req.profile.clone(),
            }
            .into());
        }
        let mut subject = req.subject.clone().normalise()?;
        if subject.bank_card.is_some() {
            return Err(AppError::FieldNotExpected(
                "subject.bank_card is given with the bank-card method's choice, not here".into(),
            )
            .into());
        }
        let id_type = subject
            .id_type
            .clone()
            .unwrap_or_else(|| policy::RESIDENT_ID.to_owned());
        let reviewed_person = |p: Option<&SubjectInput>| {
            p.and_then(|p| p.id_type.as_deref())
                .is_some_and(|t| t != policy::RESIDENT_ID)
        };
        if subject.kind() == SubjectType::Organisation
            && (reviewed_person(subject.legal_rep.as_deref())
                || reviewed_person(subject.agent.as_deref()))
        {
            return Err(AppError::IdTypeNotVerifiable(
                "the legal representative and the agent of an organisation need a resident ID: \
                 the organisation steps' vendors (carrier, bank, face) check no other document"
                    .into(),
            )
            .into());
        }
        let policy = match policy::find_for(&channel.policies, kind, subject.kind(), &id_type) {
            Some(p) => p.clone(),
            None if id_type != policy::RESIDENT_ID => {
                return Err(AppError::IdTypeNotVerifiable(format!(
                    "no vendor checks a {id_type} (carrier, bank, face): channel {} offers no \
                     {} application by materials and review for it",
                    channel.name,
                    kind.name()
                ))
                .into())
            }
            None => {
                return Err(AppError::KindNotOffered {
                    channel: channel.name.clone(),
                    kind: kind.name(),
                }
                .into())
            }
        };
        match subject.kind() {
            SubjectType::Person => subject.require_person()?,
            SubjectType::Organisation => subject.require_organisation()?,
        }
        if let Some(r) = &req.reference {
            if r.is_empty() || r.len() > 128 || r.chars().any(char::is_control) {
                return Err(AppError::FieldNotExpected(
                    "reference must be 1 to 128 printable characters".into(),
                )
                .into());
            }
        }
        if let Some(csr) = &req.csr {
            if !kind.issues() {
                return Err(AppError::FieldNotExpected(format!(
                    "a {} application takes no CSR",
                    kind.name()
                ))
                .into());
            }
            self.check_csr(&req.profile, csr)?;
        }
        let reason = match (&req.reason, kind) {
            (None, Kind::Revocation) => Some("unspecified".to_owned()),
            (Some(r), Kind::Revocation) => {
                if !SUBSCRIBER_REASONS.iter().any(|(n, _)| n == r) {
                    return Err(AppError::FieldNotExpected(format!(
                        "unknown revocation reason {r:?} (accepted: {})",
                        SUBSCRIBER_REASONS.map(|x| x.0).join(", ")
                    ))
                    .into());
                }
                Some(r.clone())
            }
            (Some(_), _) => {
                return Err(AppError::FieldNotExpected(
                    "reason belongs to revocation applications".into(),
                )
                .into())
            }
            (None, _) => None,
        };
        let keys = self.keys();
        let active = keys
            .active()
            .map_err(|_| AppError::Unavailable("personal-data sealing"))?;
        let (id_type, id_number) = subject.identity();
        let (id_type, id_number) = (id_type.as_str(), id_number.as_str());
        let hashes = self.hashes(&keys, id_type, id_number);
        let (realm, limit) = crate::account::realm_of(&self.settings.realms, &channel.name);
        // Claimed in the insert's transaction where a phone binds one account of the kind.
        let (account_kind, claimed_phone) = match subject.kind() {
            SubjectType::Person => ("personal", subject.phone.clone().filter(|_| limit == 1)),
            SubjectType::Organisation => ("organisation", {
                let rule =
                    crate::account::organisation_phone_of(&self.settings.realms, &channel.name);
                let person = match rule {
                    crate::account::OrganisationPhone::Agent => subject.agent.as_deref(),
                    crate::account::OrganisationPhone::LegalRep => subject.legal_rep.as_deref(),
                };
                person.and_then(|p| p.phone.clone())
            }),
        };
        if let (Some(phone), "organisation") = (&claimed_phone, account_kind) {
            let phones = self.hashes(&keys, "phone", phone);
            if self
                .rows
                .phone_bound_elsewhere(&realm, account_kind, &phones, &hashes)
                .await?
                > 0
            {
                return Err(AppError::PhoneBound(realm).into());
            }
        }
        if let Some(phone) = subject
            .phone
            .as_ref()
            .filter(|_| account_kind == "personal")
        {
            let phones = self.hashes(&keys, "phone", phone);
            let others = self
                .rows
                .phone_bound_elsewhere(&realm, "personal", &phones, &hashes)
                .await?;
            if others >= i64::from(limit) {
                return Err(AppError::PhoneBound(realm).into());
            }
        }
        if kind == Kind::LevelUp
            && !self
                .rows
                .account_exists(&realm, "personal", &hashes)
                .await?
        {
            return Err(AppError::AccountNotFound(realm).into());
        }
        let now = unix_now();
        let target = match (kind.needs_certificate(), &req.certificate) {
            (false, Some(_)) => return Err(AppError::CertificateNotExpected.into()),
            (false, None) => None,
            (true, None) => return Err(AppError::CertificateRequired(kind.name()).into()),
            (true, Some(serial)) => Some(
                self.check_target(channel, kind, serial, &hashes, now)
                    .await?,
            ),
        };
        let slots: Vec<String> = hashes
            .iter()
            .map(|h| format!("{}:{h}", channel.name))
            .collect();
        if let Some(open) = self.rows.find_open(&slots).await? {
            return Err(AppError::Open(open).into());
        }
        let holds_certificate = self.rows.holds_certificate(&hashes, now).await?;
        let mut progress = Progress::new(subject, policy, req.csr.clone());
        progress.revocation_reason = reason;
        let id = new_id();
        let doc = Doc {
            progress,
            reference: req.reference.clone(),
            holds_certificate,
            challenge: None,
        };
        let hash = subject_hash(active, id_type, id_number);
        let mut keys = keys.clone();
        let mut inserted = None;
        for _ in 0..3 {
            let key = keys.active().map_err(sealed)?;
            let plain = serde_json::to_vec(&doc).map_err(sealed)?;
            let row = ApplicationRow {
                id: id.clone(),
                channel: channel.name.clone(),
                kind: kind.name().to_owned(),
                profile: req.profile.clone(),
                status: Status::Verifying.name().to_owned(),
                subject_hash: subject_hash(key, id_type, id_number),
                open_slot: Some(format!(
                    "{}:{}",
                    channel.name,
                    subject_hash(key, id_type, id_number)
                )),
                target_serial: target.clone(),
                issued_serial: None,
                failure_code: None,
                key_id: key.id(),
                sealed_doc: key.seal(&id, Field::State, &plain).map_err(sealed)?,
                revision: 1,
                created_at: now,
                updated_at: now,
                expires_at: now + self.settings.expire_after_secs as i64,
            };
            let audit = AuditEntry {
                actor: who.actor(),
                action: "application.create".into(),
                target: id.clone(),
                detail: json!({
                    "kind": kind.name(),
                    "profile": req.profile,
                    "certificate": target,
                }),
            };
            let claim = claimed_phone
                .as_ref()
                .map(|phone| crate::storage::PhoneClaim {
                    realm: realm.clone(),
                    kind: account_kind,
                    phone_hash: subject_hash(key, "phone", phone),
                    subject_hash: row.subject_hash.clone(),
                });
            match self
                .rows
                .insert_claiming(&row, &audit, claim.as_ref())
                .await?
            {
                Inserted::Yes => {
                    inserted = Some(row);
                    break;
                }
                Inserted::Open(open) => return Err(AppError::Open(open).into()),
                Inserted::PhoneBound => return Err(AppError::PhoneBound(realm).into()),
                Inserted::StaleKey => keys = self.keyring.reload(&keys).await.map_err(sealed)?,
            }
        }
        let _ = hash;
        let row = inserted.ok_or_else(|| sealed("the active data key kept changing"))?;
        tracing::info!(application = %id, channel = %channel.name, kind = kind.name(), "application created");
        let mut app = App {
            row,
            status: Status::Verifying,
            kind,
            doc,
        };
        self.notify(&app, ApplicationEventKind::Created).await;
        let lock = self.lock_for(&id);
        let _guard = lock.lock().await;
        let result = self.drive(&mut app, who).await;
        self.answer(app, Status::Verifying, result).await
    }

    fn check_csr(&self, profile: &str, csr: &str) -> Result<(), AppError> {
        let verified = crate::ca::csr::verify_pem(csr).map_err(IssuanceError::Csr)?;
        let p = self
            .issuer
            .profiles()
            .get(profile)
            .ok_or_else(|| AppError::UnknownProfile(profile.to_owned()))?;
        if !p.key_types.contains(&verified.key_kind) {
            return Err(
                IssuanceError::Csr(crate::ca::csr::CsrError::UnsupportedKey(format!(
                    "key type {} is not allowed by profile {}",
                    verified.key_kind, p.name
                )))
                .into(),
            );
        }
        Ok(())
    }

    /// The certificate a renewal/change/reissue/revocation/phone change acts on: issued through
    /// this channel by an application of the same subject, still valid; renewals in the window.
    async fn check_target(
        &self,
        channel: &ChannelConfig,
        kind: Kind,
        serial: &str,
        hashes: &[String],
        now: i64,
    ) -> Result<String, AppError> {
        let serial = normalise_serial(serial)
            .ok_or_else(|| AppError::CertificateNotFound(serial.chars().take(42).collect()))?;
        let not_found = || AppError::CertificateNotFound(serial.clone());
        let cert = self
            .certificates
            .get(&serial)
            .await?
            .ok_or_else(not_found)?;
        if cert.channel.as_deref() != Some(channel.name.as_str()) {
            return Err(not_found());
        }
        let origin = self
            .rows
            .by_issued_serial(&serial)
            .await?
            .ok_or_else(not_found)?;
        if !hashes.contains(&origin.subject_hash) {
            return Err(not_found());
        }
        if cert.status != "valid" || cert.not_after <= now {
            return Err(AppError::CertificateNotValid(serial));
        }
        if kind == Kind::Renewal {
            let window = i64::from(self.settings.renewal_window_days) * 86_400;
            if cert.not_after - now > window {
                return Err(AppError::RenewalNotAllowed {
                    window_days: self.settings.renewal_window_days,
                    from: cert.not_after - window,
                });
            }
        }
        Ok(serial)
    }

    // ---------------------------------------------------------------- requests on an application

    /// The application, advanced first if it waits on a vendor.
    pub async fn get(&self, who: &Who, id: &str) -> Result<Value, Failure> {
        let lock = self.lock_for(id);
        let _guard = lock.lock().await;
        let mut app = self.load(who, id).await?;
        let found = app.status;
        let result = if app.status.is_open() {
            self.drive(&mut app, who).await
        } else {
            Ok(())
        };
        self.answer(app, found, result).await
    }

    /// The applicant's input for the current step: `captcha`, `sms_code`, `deposit_amount`, ...
    pub async fn input(
        &self,
        who: &Who,
        id: &str,
        kind: &str,
        value: &str,
    ) -> Result<Value, Failure> {
        let channel = channel_of(who, "give input")?;
        let lock = self.lock_for(id);
        let _guard = lock.lock().await;
        let mut app = self.load(who, id).await?;
        let found = app.status;
        let result = self
            .input_locked(&mut app, who, &channel, kind, value)
            .await;
        self.answer(app, found, result).await
    }

    async fn input_locked(
        &self,
        app: &mut App,
        who: &Who,
        channel: &ChannelConfig,
        kind: &str,
        value: &str,
    ) -> Result<(), AppError> {
        open_or_finished(app)?;
        let from = app.status;
        if kind == "captcha" {
            let Some((cap_id, _, _)) = app.doc.progress.captcha.clone() else {
                return Err(AppError::InputNotExpected(
                    "no captcha is shown at this step".into(),
                ));
            };
            let captchas = self
                .captchas
                .clone()
                .ok_or(AppError::Unavailable("captcha"))?;
            let outcome = captchas.redeem(&app.row.id, &cap_id, value.trim()).await;
            app.doc.progress.captcha = None;
            match outcome {
                Ok(()) => {
                    app.doc.progress.captcha_solved = true;
                    self.save(app, from, &who.actor()).await?;
                    return self.drive(app, who).await;
                }
                Err(e) => {
                    // The captcha is used up either way: show a new one.
                    self.show_captcha(app).await?;
                    self.save(app, from, &who.actor()).await?;
                    return Err(match e {
                        CaptchaError::Wrong => AppError::CaptchaWrong,
                        CaptchaError::Unknown => AppError::CaptchaExpired,
                        CaptchaError::Storage(m) => AppError::Storage(StorageError::Database(m)),
                    });
                }
            }
        }
        if app.doc.progress.captcha.is_some() {
            return Err(AppError::CaptchaRequired);
        }
        let challenge: ChallengeKind = serde_json::from_value(Value::String(kind.to_owned()))
            .map_err(|_| {
                AppError::InputNotExpected(format!(
                    "unknown input kind {kind:?} (captcha, sms_code, deposit_amount, face_url)"
                ))
            })?;
        match app.doc.progress.cursor.clone() {
            Cursor::Materials { .. } if challenge == ChallengeKind::SmsCode => {
                self.check_authorisation(app, who, value.trim()).await
            }
            Cursor::CodeSent { .. } => {
                if challenge != ChallengeKind::SmsCode {
                    return Err(AppError::InputNotExpected(
                        "this step takes the SMS code (kind sms_code)".into(),
                    ));
                }
                let purpose = self.code_purpose(app);
                let codes = self
                    .codes
                    .clone()
                    .ok_or(AppError::Unavailable("one-time codes"))?;
                match codes.check(&app.row.id, purpose, value.trim()).await {
                    Ok(()) => {
                        if purpose == CodePurpose::ConfirmPhone {
                            app.doc.progress.evidence.push(Evidence {
                                method: "confirm_phone".into(),
                                verification: String::new(),
                                outcome: "verified".into(),
                                assurance: None,
                                reused: false,
                                at: unix_now(),
                            });
                        }
                        app.doc.progress.failure = None;
                        next_step(&mut app.doc.progress);
                        self.save(app, from, &who.actor()).await?;
                        self.drive(app, who).await
                    }
                    Err(CodeError::Wrong { attempts_left }) => {
                        app.doc.progress.failure = Some((
                            "otp_wrong".into(),
                            format!("the code is wrong; {attempts_left} attempts left"),
                        ));
                        self.save(app, from, &who.actor()).await?;
                        Err(AppError::OtpWrong { attempts_left })
                    }
                    Err(CodeError::Expired) => Err(AppError::OtpExpired),
                    Err(CodeError::AttemptsExceeded | CodeError::NoCode) => {
                        self.reject(app, "otp_attempts_exceeded", "too many wrong codes", who)
                            .await?;
                        Err(AppError::OtpAttemptsExceeded)
                    }
                    Err(CodeError::ResendTooSoon { retry_after }) => {
                        Err(AppError::ResendTooSoon(retry_after))
                    }
                    Err(CodeError::Notify(e)) => {
                        Err(AppError::Storage(StorageError::Database(e.to_string())))
                    }
                    Err(CodeError::Storage(m)) => Err(AppError::Storage(StorageError::Database(m))),
                }
            }
            Cursor::Verifying {
                method,
                verification,
            } => {
                if org::window_passed(&app.doc.progress, unix_now()) {
                    self.expire_verification(app, &method, &verification).await;
                    self.save(app, from, &who.actor()).await?;
                    self.drive(app, who).await?;
                    return Err(AppError::DepositExpired(method));
                }
                let requester = Requester::Channel {
                    name: &channel.name,
                    allowed: &channel.verifications,
                };
                let info = self
                    .verifications
                    .input(&requester, &verification, challenge, value.to_owned())
                    .await?;
                let wrong = info
                    .view
                    .result
                    .as_ref()
                    .filter(|_| info.view.status != VStatus::Failed)
                    .and_then(|r| {
                        crate::verification::service::failure_code(Some(r)).map(|c| {
                            let left = r.evidence.get("attempts_left").and_then(Value::as_u64);
                            (c, left)
                        })
                    });
                let _ = method;
                self.drive(app, who).await?;
                if let Some((code, left)) = wrong {
                    if code == "otp_wrong" && app.status.is_open() {
                        return Err(AppError::OtpWrong {
                            attempts_left: left.unwrap_or(0) as u32,
                        });
                    }
                }
                Ok(())
            }
            // The window passed (seen by the background task first): the deposit is void.
            _ if challenge == ChallengeKind::DepositAmount
                && app.doc.progress.failure.as_ref().map(|f| f.0.as_str())
                    == Some(org::DEPOSIT_EXPIRED) =>
            {
                Err(AppError::DepositExpired("corporate-transfer".into()))
            }
            _ => Err(AppError::InputNotExpected(format!(
                "the current step ({}) takes no {kind} input",
                cursor_name(&app.doc.progress.cursor)
            ))),
        }
    }

    /// The applicant chooses a method (with the extra fields it needs).
    pub async fn choose(
        &self,
        who: &Who,
        id: &str,
        method: &str,
        extra: Option<SubjectInput>,
        delivery: Option<&str>,
    ) -> Result<Value, Failure> {
        channel_of(who, "choose methods")?;
        let delivery = match delivery {
            None => Delivery::OnTheSpot,
            Some(d) => Delivery::parse(d).ok_or_else(|| {
                AppError::FieldNotExpected(
                    "delivery must be \"on_the_spot\" or \"sms_link\"".into(),
                )
            })?,
        };
        if delivery == Delivery::SmsLink && method != "face" {
            return Err(AppError::FieldNotExpected(
                "delivery \"sms_link\" belongs to the face method".into(),
            )
            .into());
        }
        let lock = self.lock_for(id);
        let _guard = lock.lock().await;
        let mut app = self.load(who, id).await?;
        let found = app.status;
        let result = self
            .choose_locked(&mut app, who, method, extra, delivery)
            .await;
        self.answer(app, found, result).await
    }

    async fn choose_locked(
        &self,
        app: &mut App,
        who: &Who,
        method: &str,
        extra: Option<SubjectInput>,
        delivery: Delivery,
    ) -> Result<(), AppError> {
        open_or_finished(app)?;
        let from = app.status;
        let offered = match &app.doc.progress.cursor {
            Cursor::Choose { options } => options.clone(),
            Cursor::Needs { method, .. } => vec![method.clone()],
            _ => {
                return Err(AppError::InputNotExpected(
                    "no method is to be chosen at this step".into(),
                ))
            }
        };
        if !offered.iter().any(|m| m == method) {
            return Err(AppError::MethodNotAllowed(method.to_owned()));
        }
        let fields = self.method_fields(method)?;
        if let Some(extra) = extra {
            if extra.subject_type.is_some() || extra.id_type.is_some() {
                return Err(AppError::FieldNotExpected(
                    "a choice's subject takes only the fields the method needs".into(),
                ));
            }
            for f in extra.present() {
                let allowed = fields.iter().any(|x| x == f)
                    && !["name", "id_number", "uscc", "organisation"].contains(&f);
                if !allowed {
                    return Err(AppError::FieldNotExpected(format!(
                        "subject.{f} is not expected by method {method}"
                    )));
                }
            }
            let extra = extra.normalise()?;
            let key = org::extra_key(app.doc.progress.person(), method);
            app.doc.progress.extra.insert(key, extra);
        }
        app.doc.progress.face_by_sms = delivery == Delivery::SmsLink;
        app.doc.progress.cursor = Cursor::Ready {
            method: method.to_owned(),
        };
        self.prepare(app, method)?;
        self.save(app, from, &who.actor()).await?;
        self.drive(app, who).await
    }

    /// The applicant confirms the verified phone (a code is then sent to it), or asks for the
    /// code again.
    pub async fn confirm(&self, who: &Who, id: &str, phone: &str) -> Result<Value, Failure> {
        channel_of(who, "confirm phones")?;
        let lock = self.lock_for(id);
        let _guard = lock.lock().await;
        let mut app = self.load(who, id).await?;
        let found = app.status;
        let result = self.confirm_locked(&mut app, who, phone).await;
        self.answer(app, found, result).await
    }

    async fn confirm_locked(&self, app: &mut App, who: &Who, phone: &str) -> Result<(), AppError> {
        open_or_finished(app)?;
        let from = app.status;
        let at_code_step = matches!(
            app.doc.progress.policy.steps.get(app.doc.progress.step),
            Some(Step::ConfirmPhone | Step::SignBySms)
        ) && app.doc.progress.queued.is_empty();
        let ok_cursor = matches!(
            app.doc.progress.cursor,
            Cursor::ConfirmPhone | Cursor::CodeSent { .. } | Cursor::SendCode
        );
        if !at_code_step || !ok_cursor {
            return Err(AppError::InputNotExpected(
                "no phone is to be confirmed at this step".into(),
            ));
        }
        let phone = SubjectInput {
            phone: Some(phone.to_owned()),
            ..Default::default()
        }
        .normalise()?
        .phone
        .unwrap_or_default();
        if app.doc.progress.verified("phone") != Some(phone.as_str()) {
            return Err(AppError::PhoneNotVerified);
        }
        app.doc.progress.confirmed_phone = Some(phone);
        let previous = app.doc.progress.cursor.clone();
        app.doc.progress.cursor = Cursor::SendCode;
        self.save(app, from, &who.actor()).await?;
        match self.drive(app, who).await {
            Err(AppError::ResendTooSoon(at)) => {
                if matches!(previous, Cursor::CodeSent { .. }) {
                    // The code out there stays valid.
                    let now = app.status;
                    app.doc.progress.cursor = previous;
                    self.save(app, now, &who.actor()).await?;
                }
                Err(AppError::ResendTooSoon(at))
            }
            other => other,
        }
    }

    /// The applicant's CSR (when not given at creation).
    pub async fn csr(&self, who: &Who, id: &str, csr: &str) -> Result<Value, Failure> {
        channel_of(who, "send CSRs")?;
        let lock = self.lock_for(id);
        let _guard = lock.lock().await;
        let mut app = self.load(who, id).await?;
        let found = app.status;
        let result = async {
            open_or_finished(&app)?;
            if !app.kind.issues() {
                return Err(AppError::FieldNotExpected(format!(
                    "a {} application takes no CSR",
                    app.kind.name()
                )));
            }
            if app.status == Status::Approved {
                return Err(AppError::InputNotExpected(
                    "the application is approved; its CSR is fixed".into(),
                ));
            }
            self.check_csr(&app.row.profile, csr)?;
            let from = app.status;
            app.doc.progress.csr = Some(csr.to_owned());
            if app.doc.progress.cursor == Cursor::NeedsCsr {
                app.doc.progress.cursor = Cursor::Done;
            }
            self.save(&mut app, from, &who.actor()).await?;
            self.drive(&mut app, who).await
        }
        .await;
        self.answer(app, found, result).await
    }

    /// Cancels an open application (not once approved).
    pub async fn cancel(&self, who: &Who, id: &str) -> Result<Value, Failure> {
        if matches!(who, Who::System | Who::Officer(_) | Who::Auditor(_)) {
            return Err(AppError::ChannelOnly("cancel").into());
        }
        let lock = self.lock_for(id);
        let _guard = lock.lock().await;
        let mut app = self.load(who, id).await?;
        let found = app.status;
        let result = async {
            open_or_finished(&app)?;
            if app.status == Status::Approved {
                return Err(AppError::InputNotExpected(
                    "the application is approved and being carried out".into(),
                ));
            }
            self.close(&mut app, Status::Cancelled, None, who).await
        }
        .await;
        self.answer(app, found, result).await
    }

    // ---------------------------------------------------------------- the engine

    /// Runs the application forward until it needs the applicant (or finishes), saving every
    /// change.
    async fn drive(&self, app: &mut App, who: &Who) -> Result<(), AppError> {
        for _ in 0..32 {
            if !app.status.is_open() {
                return Ok(());
            }
            let from = app.status;
            let before = serde_json::to_vec(&app.doc).map_err(sealed)?;
            let revision = app.row.revision;
            let more = self.advance(app, who).await?;
            let changed =
                from != app.status || before != serde_json::to_vec(&app.doc).map_err(sealed)?;
            // A step that committed itself (issuance) has saved and announced already.
            if changed && app.row.revision == revision {
                self.save(app, from, &who.actor()).await?;
                self.announce(app, from).await;
            }
            if !more {
                return Ok(());
            }
        }
        Ok(())
    }

    /// One move of the machine; true when it may move again at once.
    async fn advance(&self, app: &mut App, who: &Who) -> Result<bool, AppError> {
        let p = &mut app.doc.progress;
        match p.cursor.clone() {
            Cursor::Enter => {
                if !p.queued.is_empty() {
                    let method = p.queued.remove(0);
                    p.cursor = Cursor::Ready {
                        method: method.clone(),
                    };
                    self.prepare(app, &method)?;
                    return Ok(true);
                }
                let Some(step) = p.policy.steps.get(p.step).cloned() else {
                    p.cursor = if app.kind.issues() && p.csr.is_none() {
                        app.status = Status::AwaitingApplicant;
                        Cursor::NeedsCsr
                    } else {
                        Cursor::Done
                    };
                    return Ok(true);
                };
                match step {
                    Step::Verify {
                        methods,
                        reuse_days,
                        ..
                    } => {
                        if org::reuse_legal_rep(p) {
                            tracing::info!(application = %app.row.id, "the legal representative's verified data reused for the agent");
                            return Ok(true);
                        }
                        if reuse_days > 0 && self.reuse(app, &methods, reuse_days).await? {
                            return Ok(true);
                        }
                        let p = &mut app.doc.progress;
                        if methods.len() == 1 {
                            p.cursor = Cursor::Ready {
                                method: methods[0].clone(),
                            };
                            self.prepare(app, &methods[0])?;
                            Ok(true)
                        } else {
                            p.cursor = Cursor::Choose { options: methods };
                            app.status = Status::AwaitingChoice;
                            Ok(false)
                        }
                    }
                    Step::ConfirmPhone => {
                        p.cursor = Cursor::ConfirmPhone;
                        app.status = Status::AwaitingApplicant;
                        Ok(false)
                    }
                    Step::SignBySms => {
                        p.confirmed_phone = p.applicant_phone();
                        p.cursor = Cursor::SendCode;
                        Ok(true)
                    }
                    Step::Materials { .. } => {
                        p.cursor = Cursor::Materials {
                            missing: Vec::new(),
                        };
                        Ok(true)
                    }
                    Step::Review { .. } => {
                        p.cursor = Cursor::Review;
                        app.status = Status::AwaitingReview;
                        Ok(false)
                    }
                }
            }
            Cursor::Ready { method } => {
                let sends_sms = self.method_fields(&method)?.iter().any(|f| f == "phone");
                if sends_sms && !self.captcha_passed(app).await? {
                    return Ok(false);
                }
                self.start_verification(app, &method).await?;
                Ok(true)
            }
            Cursor::Verifying {
                method,
                verification,
            } => self.observe(app, &method, &verification, who).await,
            Cursor::SendCode => {
                self.send_code(app).await?;
                Ok(false)
            }
            Cursor::Choose { .. } => {
                app.status = Status::AwaitingChoice;
                Ok(false)
            }
            Cursor::Materials { .. } => self.check_materials(app).await,
            Cursor::Review => {
                app.status = Status::AwaitingReview;
                Ok(false)
            }
            Cursor::Needs { .. }
            | Cursor::ConfirmPhone
            | Cursor::CodeSent { .. }
            | Cursor::NeedsCsr => {
                app.status = Status::AwaitingApplicant;
                Ok(false)
            }
            Cursor::Done => {
                if app.status != Status::Approved {
                    if let Some((code, message)) = self.level_too_low(app) {
                        self.reject(app, code, &message, who).await?;
                        return Ok(false);
                    }
                    app.status = Status::Approved;
                    return Ok(true);
                }
                self.carry_out(app, who).await?;
                Ok(false)
            }
        }
    }

    /// `level_too_low` when an issuing application's verifications stayed below its profile's
    /// `min_level` (checked before approval, so nothing is issued).
    fn level_too_low(&self, app: &App) -> Option<(&'static str, String)> {
        if !matches!(
            app.kind,
            Kind::New | Kind::Renewal | Kind::Change | Kind::Reissue
        ) {
            return None;
        }
        let need = self.issuer.profiles().get(&app.row.profile)?.min_level?;
        let have = app.doc.progress.assurance();
        let have_level = have.as_deref().and_then(crate::relying::Level::parse);
        if have_level.is_some_and(|h| h >= need) {
            return None;
        }
        Some((
            "level_too_low",
            format!(
                "profile {} needs assurance level {}; the verifications reached {}",
                app.row.profile,
                need.as_str(),
                have.as_deref().unwrap_or("none")
            ),
        ))
    }

    /// Fields (API names) a method's plugin needs.
    fn method_fields(&self, method: &str) -> Result<Vec<String>, AppError> {
        match self.verifications.registry().get(method) {
            Some(crate::verification::PluginSlot::Ready(r)) => Ok(r
                .plugin()
                .manifest()
                .applicant_fields
                .iter()
                .map(|f| field_name(*f).to_owned())
                .collect()),
            Some(crate::verification::PluginSlot::Unavailable(reason)) => {
                Err(VerificationError::Unavailable {
                    plugin: method.to_owned(),
                    reason: reason.clone(),
                }
                .into())
            }
            None => Err(VerificationError::UnknownPlugin(method.to_owned()).into()),
        }
    }

    /// The subject a method is given: the declared one with the method's extra fields on top.
    fn subject_for(&self, p: &Progress, method: &str) -> SubjectInput {
        let person = p.person();
        let base = p.subject.acting(person);
        match p.extra.get(&org::extra_key(person, method)) {
            Some(extra) => base.overlaid(extra),
            None => base,
        }
    }

    /// Whose identity `method` proves at the current step: the step's person for a method on
    /// a person (name, ID), the organisation itself for the registry and the corporate
    /// transfer.
    fn acting_for(&self, p: &Progress, method: &str) -> SubjectInput {
        let personal = self
            .method_fields(method)
            .map(|f| f.iter().any(|x| x == "name" || x == "id_number"))
            .unwrap_or(true);
        if personal {
            p.subject.acting(p.person())
        } else {
            p.subject.acting(Person::Subject)
        }
    }

    /// With the cursor at `Ready { method }`: waits for missing fields instead, if any.
    fn prepare(&self, app: &mut App, method: &str) -> Result<(), AppError> {
        let fields = self.method_fields(method)?;
        let subject = self.subject_for(&app.doc.progress, method);
        let missing: Vec<String> = fields
            .into_iter()
            .filter(|f| subject.get(f).is_none())
            .collect();
        if !missing.is_empty() {
            app.doc.progress.cursor = Cursor::Needs {
                method: method.to_owned(),
                fields: missing,
            };
            app.status = Status::AwaitingApplicant;
        } else {
            app.status = Status::Verifying;
        }
        Ok(())
    }

    /// Reuses a recent verification of the same subject by one of `methods`; true if it did.
    async fn reuse(&self, app: &mut App, methods: &[String], days: u32) -> Result<bool, AppError> {
        let keys = self.keys();
        let since = unix_now() - i64::from(days) * 86_400;
        for method in methods {
            let p = &app.doc.progress;
            let person = p.person();
            let acting = self.acting_for(p, method);
            let (id_type, id_number) = acting.identity();
            let hashes = self.hashes(&keys, &id_type, &id_number);
            // The name that must match: a person's, or the organisation's own.
            let (name_field, name) = if acting.id_number.is_none() && acting.organisation.is_some()
            {
                ("organisation", acting.organisation.clone())
            } else {
                ("name", acting.name.clone())
            };
            let Some(found) = self.rows.find_reusable(&hashes, method, since).await? else {
                continue;
            };
            let Ok(plain) = keys.open(
                &found.verification_id,
                Field::Result,
                &found.sealed_attributes,
            ) else {
                continue;
            };
            let attrs: Vec<(String, String)> = serde_json::from_slice(&plain).map_err(sealed)?;
            // Reuse only what proves this application's declared person.
            let same_name = attrs
                .iter()
                .any(|(f, v)| f == name_field && Some(v.as_str()) == name.as_deref());
            if !same_name {
                continue;
            }
            let p = &mut app.doc.progress;
            let attrs: Vec<(String, String)> = attrs
                .into_iter()
                .map(|(f, v)| (Progress::attribute(person, &f), v))
                .collect();
            p.record_verified(method, &found.verification_id, &attrs);
            p.evidence.push(Evidence {
                method: method.clone(),
                verification: found.verification_id.clone(),
                outcome: "verified".into(),
                assurance: found.assurance.clone(),
                reused: true,
                at: unix_now(),
            });
            next_step(p);
            tracing::info!(application = %app.row.id, %method, "recent verification reused");
            return Ok(true);
        }
        Ok(false)
    }

    /// True when no captcha is needed for the next SMS or one was solved (and is now spent);
    /// otherwise shows one and waits.
    async fn captcha_passed(&self, app: &mut App) -> Result<bool, AppError> {
        if !app.doc.progress.policy.captcha {
            return Ok(true);
        }
        if app.doc.progress.captcha_solved {
            app.doc.progress.captcha_solved = false;
            return Ok(true);
        }
        if app.doc.progress.captcha.is_none() {
            self.show_captcha(app).await?;
        }
        app.status = Status::AwaitingApplicant;
        Ok(false)
    }

    async fn show_captcha(&self, app: &mut App) -> Result<(), AppError> {
        use base64::Engine;
        let captchas = self
            .captchas
            .clone()
            .ok_or(AppError::Unavailable("captcha"))?;
        let c = captchas.issue(&app.row.id).await.map_err(|e| match e {
            CaptchaError::Storage(m) => AppError::Storage(StorageError::Database(m)),
            other => AppError::Sealed(other.to_string()),
        })?;
        let png = base64::engine::general_purpose::STANDARD.encode(&c.png);
        app.doc.progress.captcha = Some((c.id, png, c.expires_at));
        app.status = Status::AwaitingApplicant;
        Ok(())
    }

    fn code_purpose(&self, app: &App) -> CodePurpose {
        match app.doc.progress.policy.steps.get(app.doc.progress.step) {
            Some(Step::SignBySms) => CodePurpose::ApplicationSignature,
            _ if app.kind == Kind::PhoneChange => CodePurpose::NewPhone,
            _ => CodePurpose::ConfirmPhone,
        }
    }

    /// Sends the step's code to the confirmed phone (after a captcha if the policy says so).
    async fn send_code(&self, app: &mut App) -> Result<(), AppError> {
        if !self.captcha_passed(app).await? {
            return Ok(());
        }
        let phone = app
            .doc
            .progress
            .confirmed_phone
            .clone()
            .ok_or(AppError::PhoneNotVerified)?;
        let codes = self
            .codes
            .clone()
            .ok_or(AppError::Unavailable("one-time codes"))?;
        let purpose = self.code_purpose(app);
        match codes
            .send(&app.row.channel, &app.row.id, purpose, &phone)
            .await
        {
            Ok(sent) => {
                app.doc.progress.cursor = Cursor::CodeSent {
                    sent: CodeSent {
                        expires_at: sent.expires_at,
                        resend_after: sent.resend_after,
                    },
                };
                app.status = Status::AwaitingApplicant;
                Ok(())
            }
            Err(CodeError::ResendTooSoon { retry_after }) => {
                // A code is out already (sent before a restart, or a quick repeat).
                if !matches!(app.doc.progress.cursor, Cursor::CodeSent { .. }) {
                    app.doc.progress.cursor = Cursor::CodeSent {
                        sent: CodeSent {
                            expires_at: retry_after + 240,
                            resend_after: retry_after,
                        },
                    };
                    app.status = Status::AwaitingApplicant;
                }
                Err(AppError::ResendTooSoon(retry_after))
            }
            Err(CodeError::Storage(m)) => Err(AppError::Storage(StorageError::Database(m))),
            Err(e) => Err(AppError::Unavailable(match e {
                CodeError::Notify(_) => "the channel's SMS notifier",
                _ => "one-time codes",
            }))
            .inspect_err(|_| tracing::warn!(error = %e, "code not sent")),
        }
    }

    /// Starts (or, after a crash, finds again) the verification of `method` for this step.
    async fn start_verification(&self, app: &mut App, method: &str) -> Result<(), AppError> {
        let p = &app.doc.progress;
        let subject = self.subject_for(p, method);
        let applicant = Applicant {
            name: subject.name.clone(),
            id_number: subject.id_number.clone(),
            phone: subject.phone.clone(),
            bank_card: subject.bank_card.clone(),
            org_name: subject.organisation.clone(),
            uscc: subject.uscc.clone(),
            legal_rep_name: subject.get("legal_rep_name").map(str::to_owned),
            legal_rep_id: subject.get("legal_rep_id").map(str::to_owned),
            bank_account: subject.bank_account.clone(),
            bank_name: subject.bank_name.clone(),
        };
        // One reference per (application, step, fallback, queue position, method): a retry finds
        // the verification it started before.
        let reference = format!(
            "{}/{}/{}/{}/{}/{}",
            app.row.id,
            p.step,
            p.fallbacks_taken,
            p.queued.len(),
            method,
            p.evidence.len()
        );
        let allowed = p.policy.methods();
        let requester = Requester::Channel {
            name: &app.row.channel,
            allowed: &allowed,
        };
        let info = self
            .verifications
            .start(&requester, method, applicant, Some(reference))
            .await?;
        app.doc.progress.cursor = Cursor::Verifying {
            method: method.to_owned(),
            verification: info.view.id.clone(),
        };
        app.doc.progress.started_at = Some(unix_now());
        app.status = Status::Verifying;
        Ok(())
    }

    /// Looks at the running verification; moves on when it finished.
    async fn observe(
        &self,
        app: &mut App,
        method: &str,
        verification: &str,
        _who: &Who,
    ) -> Result<bool, AppError> {
        let info = self
            .verifications
            .get(&Requester::Operator("applications"), verification)
            .await?;
        let view = &info.view;
        if view.status != VStatus::Succeeded && org::window_passed(&app.doc.progress, unix_now()) {
            self.expire_verification(app, method, verification).await;
            return Ok(true);
        }
        match view.status {
            VStatus::Pending | VStatus::AwaitingUser => {
                app.doc.challenge = view
                    .challenges
                    .first()
                    .map(|c| serde_json::to_value(c).unwrap_or(Value::Null));
                self.send_face_link(app, verification).await?;
                app.status = if view.challenges.is_empty() {
                    Status::Verifying
                } else {
                    Status::AwaitingApplicant
                };
                Ok(false)
            }
            VStatus::Succeeded => {
                let result =
                    view.result
                        .clone()
                        .unwrap_or_else(|| plugin_abi::doc::VerificationResult {
                            outcome: plugin_abi::doc::Outcome::Verified,
                            verified_attributes: Vec::new(),
                            assurance: None,
                            evidence: Value::Null,
                        });
                let attrs: Vec<(String, String)> = result
                    .verified_attributes
                    .iter()
                    .filter_map(|f| {
                        info.applicant
                            .get(*f)
                            .map(|v| (field_name(*f).to_owned(), v.to_owned()))
                    })
                    .collect();
                let p = &mut app.doc.progress;
                let person = p.person();
                let recorded: Vec<(String, String)> = attrs
                    .iter()
                    .map(|(f, v)| (Progress::attribute(person, f), v.clone()))
                    .collect();
                p.record_verified(method, verification, &recorded);
                p.started_at = None;
                p.evidence.push(Evidence {
                    method: method.to_owned(),
                    verification: verification.to_owned(),
                    outcome: "verified".into(),
                    assurance: result.assurance.clone(),
                    reused: false,
                    at: unix_now(),
                });
                p.failure = None;
                app.doc.challenge = None;
                self.remember(app, method, verification, &attrs, result.assurance.clone())
                    .await;
                let p = &mut app.doc.progress;
                if p.queued.is_empty() {
                    next_step(p);
                } else {
                    p.cursor = Cursor::Enter;
                }
                app.status = Status::Verifying;
                Ok(true)
            }
            VStatus::Failed => {
                let code = crate::verification::service::failure_code(view.result.as_ref())
                    .unwrap_or_else(|| "verification_failed".into());
                let code = org::failure_code(method, code);
                if code == org::DEPOSIT_EXPIRED {
                    org::choose_again(&mut app.doc.progress, method, verification);
                    app.doc.challenge = None;
                    app.status = Status::Verifying;
                    return Ok(true);
                }
                let p = &mut app.doc.progress;
                p.evidence.push(Evidence {
                    method: method.to_owned(),
                    verification: verification.to_owned(),
                    outcome: code.clone(),
                    assurance: None,
                    reused: false,
                    at: unix_now(),
                });
                app.doc.challenge = None;
                let fallbacks = match p.policy.steps.get(p.step) {
                    Some(Step::Verify { fallback, .. }) => fallback.clone(),
                    _ => Vec::new(),
                };
                let taken = p.fallbacks_taken;
                let next = fallbacks
                    .iter()
                    .enumerate()
                    .skip(taken)
                    .find(|(_, f)| f.on.contains(&code));
                if let Some((i, f)) = next {
                    p.fallbacks_taken = i + 1;
                    p.queued = f.then.clone();
                    p.failure = Some((
                        code.clone(),
                        format!("{method} failed: {code}; falling back"),
                    ));
                    if f.verify.len() == 1 {
                        p.cursor = Cursor::Ready {
                            method: f.verify[0].clone(),
                        };
                        self.prepare(app, &f.verify[0])?;
                    } else {
                        p.cursor = Cursor::Choose {
                            options: f.verify.clone(),
                        };
                        app.status = Status::AwaitingChoice;
                    }
                    tracing::info!(application = %app.row.id, %method, %code, "falling back");
                    return Ok(true);
                }
                let message = format!("verification by {method} failed: {code}");
                app.doc.progress.failure = Some((code, message));
                app.status = Status::Rejected;
                Ok(false)
            }
        }
    }

    /// The running verification outlived its step's window: cancel it, record
    /// `deposit_expired`, and start the step again (the method is chosen again).
    async fn expire_verification(&self, app: &mut App, method: &str, verification: &str) {
        let requester = Requester::Operator("applications");
        if let Err(e) = self.verifications.cancel(&requester, verification).await {
            tracing::debug!(error = %e, "verification not cancelled (finished already?)");
        }
        org::choose_again(&mut app.doc.progress, method, verification);
        app.doc.challenge = None;
        app.status = Status::Verifying;
        tracing::info!(application = %app.row.id, %method, "verification window passed");
    }

    /// Face by SMS link: sends the face URL of `verification` to the person's phone once.
    async fn send_face_link(&self, app: &mut App, verification: &str) -> Result<(), AppError> {
        let p = &app.doc.progress;
        if !p.face_by_sms || p.link_sent.as_deref() == Some(verification) {
            return Ok(());
        }
        let Some(url) = app
            .doc
            .challenge
            .as_ref()
            .filter(|c| c.get("kind") == Some(&json!("face_url")))
            .and_then(|c| c.get("payload")?.get("url")?.as_str().map(str::to_owned))
        else {
            return Ok(());
        };
        let phone = org::link_phone(p).ok_or(AppError::PhoneNotVerified)?;
        let notifier = self
            .notifier
            .clone()
            .ok_or(AppError::Unavailable("the channel's SMS notifier"))?;
        notifier
            .send_sms(&app.row.channel, &phone, &org::link_text(&url))
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "face link not sent");
                AppError::Unavailable("the channel's SMS notifier")
            })?;
        app.doc.progress.link_sent = Some(verification.to_owned());
        Ok(())
    }

    /// Keeps a successful verification for reuse by later applications of the same person.
    async fn remember(
        &self,
        app: &App,
        method: &str,
        verification: &str,
        attrs: &[(String, String)],
        assurance: Option<String>,
    ) {
        let keys = self.keys();
        let Ok(key) = keys.active() else { return };
        let (id_type, id_number) = self.acting_for(&app.doc.progress, method).identity();
        let hash = subject_hash(key, &id_type, &id_number);
        let Ok(plain) = serde_json::to_vec(attrs) else {
            return;
        };
        let Ok(sealed_attributes) = key.seal(verification, Field::Result, &plain) else {
            return;
        };
        let v = ReusableVerification {
            verification_id: verification.to_owned(),
            application_id: app.row.id.clone(),
            assurance,
            key_id: key.id(),
            sealed_attributes,
            verified_at: unix_now(),
        };
        if let Err(e) = self.rows.add_reusable(&hash, method, &v).await {
            tracing::warn!(error = %e, "verification not kept for reuse");
        }
    }

    /// Every step passed and the application is approved (committed): issue, revoke or change
    /// the phone.
    async fn carry_out(&self, app: &mut App, who: &Who) -> Result<(), AppError> {
        let from = app.status;
        let actor = format!("channel:{}", app.row.channel);
        let p = app.doc.progress.clone();
        // An organisation's certificate carries no person's phone.
        let verified_phone = p
            .confirmed_phone
            .clone()
            .or_else(|| p.verified("phone").map(str::to_owned))
            .filter(|_| !p.is_organisation());
        match app.kind {
            Kind::New | Kind::Renewal | Kind::Change | Kind::Reissue => {
                let subject = p.certificate_subject();
                let mut extra = Vec::new();
                if let Some(oid) = p.assurance().and_then(|l| self.assurance_oids.get(&l)) {
                    extra.push(*oid);
                }
                // Issued before a crash, but the application not yet marked: take that one.
                if let Some(serial) = self.rows.issued_for(&app.row.id).await? {
                    tracing::warn!(application = %app.row.id, %serial, "issuance found after a restart; not issuing again");
                    app.row.issued_serial = Some(serial);
                    app.status = Status::Issued;
                    self.save(app, from, &actor).await?;
                    self.announce(app, from).await;
                    return Ok(());
                }
                let issued = self
                    .issuer
                    .issue(IssuanceRequest {
                        profile: app.row.profile.clone(),
                        csr_pem: p.csr.clone().unwrap_or_default(),
                        subject,
                        channel: Some(app.row.channel.clone()),
                        actor: actor.clone(),
                        extra_policies: extra,
                        application: Some(app.row.id.clone()),
                    })
                    .await;
                let issued = match issued {
                    Ok(i) => i,
                    Err(IssuanceError::Hsm(h)) if h.is_unavailable() => {
                        // Stays approved: the background task retries.
                        return Err(IssuanceError::Hsm(h).into());
                    }
                    Err(IssuanceError::Storage(s)) => return Err(s.into()),
                    Err(e) => {
                        tracing::warn!(application = %app.row.id, error = %e, "issuance failed");
                        app.doc.progress.failure = Some(("issuance_failed".into(), e.to_string()));
                        app.status = Status::Failed;
                        return Ok(());
                    }
                };
                crate::fault::crash_point("after-application-issuance");
                self.status.certificate_issued(issued.ca_id, &issued.serial);
                app.row.issued_serial = Some(issued.serial.clone());
                app.status = Status::Issued;
                self.save(app, from, &actor).await?;
                self.record_agent(app).await;
                if let (Some(old), Kind::Change | Kind::Reissue) =
                    (&app.row.target_serial, app.kind)
                {
                    let reason = if app.kind == Kind::Reissue { 1 } else { 4 };
                    self.revoke(old, reason, &actor).await;
                }
            }
            Kind::Revocation => {
                let reason = SUBSCRIBER_REASONS
                    .iter()
                    .find(|(n, _)| Some(*n) == p.revocation_reason.as_deref())
                    .map_or(0, |(_, c)| *c);
                if let Some(old) = &app.row.target_serial {
                    self.revoke(old, reason, &actor).await;
                }
                app.status = Status::Completed;
                self.save(app, from, &actor).await?;
            }
            Kind::PhoneChange | Kind::LevelUp => {
                app.status = Status::Completed;
                self.save(app, from, &actor).await?;
            }
        }
        if app.kind == Kind::LevelUp && app.status == Status::Completed {
            self.raise_account(app, &actor).await;
        }
        if let Some(phone) = verified_phone {
            self.set_subject_phone(app, &phone, &actor).await;
            if matches!(app.status, Status::Issued | Status::Completed) {
                self.bind_account(app, &phone, &actor).await;
            }
        }
        if p.is_organisation() && app.status == Status::Issued {
            let rule =
                crate::account::organisation_phone_of(&self.settings.realms, &app.row.channel);
            let phone = match rule {
                crate::account::OrganisationPhone::Agent => p.applicant_phone(),
                crate::account::OrganisationPhone::LegalRep => {
                    p.verified("legal_rep.phone").map(str::to_owned)
                }
            };
            match phone {
                Some(phone) => self.bind_account(app, &phone, &actor).await,
                None => {
                    tracing::info!(application = %app.row.id, "no verified phone for the organisation's account")
                }
            }
        }
        self.announce(app, from).await;
        let _ = who;
        Ok(())
    }

    async fn revoke(&self, serial: &str, reason: i64, actor: &str) {
        let r = Revocation {
            serial: serial.to_owned(),
            reason,
            invalidity_date: None,
        };
        match self.status.revoke(&r, actor).await {
            Ok(_) | Err(RevocationError::AlreadyRevoked) => {}
            Err(e) => tracing::error!(%serial, error = %e, "revocation by an application failed"),
        }
    }

    /// Creates the person's account in the channel's realm, or rebinds it to the verified phone
    /// (recovery by face through a phone change), with the level this application reached.
    async fn bind_account(&self, app: &App, phone: &str, actor: &str) {
        let keys = self.keys();
        let Ok(key) = keys.active() else { return };
        let p = &app.doc.progress;
        let (realm, limit) = crate::account::realm_of(&self.settings.realms, &app.row.channel);
        let evidence: Vec<Value> = p
            .evidence
            .iter()
            .filter(|e| e.outcome == "verified")
            .map(|e| json!({"method": e.method, "assurance": e.assurance, "at": e.at}))
            .collect();
        let (id_type, id_number) = p.subject.identity();
        let organisation = p.is_organisation();
        let binding = crate::storage::AccountBinding {
            realm: realm.clone(),
            kind: if organisation {
                "organisation"
            } else {
                "personal"
            },
            subject_hash: subject_hash(key, &id_type, &id_number),
            phone_hash: subject_hash(key, "phone", phone),
            level: p.assurance(),
            evidence: Value::Array(evidence).to_string(),
            exclusive: organisation || limit == 1,
        };
        let audit = AuditEntry {
            actor: actor.to_owned(),
            action: "account.bind".into(),
            target: binding.subject_hash.clone(),
            detail: json!({ "realm": realm, "kind": binding.kind, "level": binding.level, "application": app.row.id }),
        };
        if let Err(e) = self.rows.bind_account(&binding, &audit).await {
            tracing::warn!(error = %e, "account not bound");
        }
    }

    /// A completed `level_up`: the subject's account takes the level the application reached
    /// (the level only rises; the phone stays).
    async fn raise_account(&self, app: &App, actor: &str) {
        let p = &app.doc.progress;
        let Some(level) = p.assurance() else { return };
        let keys = self.keys();
        let (id_type, id_number) = (
            p.subject.id_type.as_deref().unwrap_or("resident_id"),
            p.subject.id_number.as_deref().unwrap_or_default(),
        );
        let hashes = self.hashes(&keys, id_type, id_number);
        let (realm, _) = crate::account::realm_of(&self.settings.realms, &app.row.channel);
        let evidence: Vec<Value> = p
            .evidence
            .iter()
            .filter(|e| e.outcome == "verified")
            .map(|e| json!({"method": e.method, "assurance": e.assurance, "at": e.at}))
            .collect();
        let audit = AuditEntry {
            actor: actor.to_owned(),
            action: "account.level_up".into(),
            target: app.row.subject_hash.clone(),
            detail: json!({ "realm": realm, "level": level, "application": app.row.id }),
        };
        if let Err(e) = self
            .rows
            .raise_account(
                &realm,
                "personal",
                &hashes,
                &level,
                &Value::Array(evidence).to_string(),
                &audit,
            )
            .await
        {
            tracing::warn!(error = %e, "account level not raised");
        }
    }

    async fn set_subject_phone(&self, app: &App, phone: &str, actor: &str) {
        let keys = self.keys();
        let Ok(key) = keys.active() else { return };
        let p = &app.doc.progress;
        let hash = subject_hash(
            key,
            p.subject.id_type.as_deref().unwrap_or("resident_id"),
            p.subject.id_number.as_deref().unwrap_or_default(),
        );
        let Ok(sealed_phone) = key.seal(&hash, Field::Applicant, phone.as_bytes()) else {
            return;
        };
        let audit = AuditEntry {
            actor: actor.to_owned(),
            action: "subject.verified_phone".into(),
            target: hash.clone(),
            detail: json!({ "application": app.row.id }),
        };
        if let Err(e) = self
            .rows
            .set_phone(&hash, key.id(), &sealed_phone, unix_now(), &audit)
            .await
        {
            tracing::warn!(error = %e, "verified phone not stored");
        }
    }

    async fn reject(
        &self,
        app: &mut App,
        code: &str,
        message: &str,
        who: &Who,
    ) -> Result<(), AppError> {
        let from = app.status;
        app.doc.progress.failure = Some((code.to_owned(), message.to_owned()));
        app.status = Status::Rejected;
        self.save(app, from, &who.actor()).await?;
        self.announce(app, from).await;
        Ok(())
    }

    /// Cancels or expires an open application (its running verification is cancelled too).
    async fn close(
        &self,
        app: &mut App,
        to: Status,
        failure: Option<(&str, &str)>,
        who: &Who,
    ) -> Result<(), AppError> {
        let from = app.status;
        if let Cursor::Verifying { verification, .. } = &app.doc.progress.cursor {
            let requester = Requester::Operator("applications");
            if let Err(e) = self.verifications.cancel(&requester, verification).await {
                tracing::debug!(error = %e, "verification not cancelled (finished already?)");
            }
        }
        if let Some((c, m)) = failure {
            app.doc.progress.failure = Some((c.to_owned(), m.to_owned()));
        }
        app.doc.challenge = None;
        app.status = to;
        self.save(app, from, &who.actor()).await?;
        self.announce(app, from).await;
        Ok(())
    }

    // ---------------------------------------------------------------- events and answers

    async fn announce(&self, app: &App, from: Status) {
        let kind = match app.status {
            s if s == from && s != Status::AwaitingApplicant => return,
            Status::AwaitingApplicant => ApplicationEventKind::NeedsApplicant,
            Status::AwaitingChoice => ApplicationEventKind::ChoiceOffered,
            Status::AwaitingReview => ApplicationEventKind::AwaitingReview,
            Status::Issued | Status::Completed => ApplicationEventKind::Issued,
            Status::Rejected | Status::Failed => ApplicationEventKind::Rejected,
            Status::Expired => ApplicationEventKind::Expired,
            Status::Cancelled => ApplicationEventKind::Cancelled,
            Status::Verifying | Status::Approved => return,
        };
        if app.status == from {
            return;
        }
        if !app.status.is_open() {
            let method = app.doc.progress.verified.first().map(|a| a.method.as_str());
            crate::ops::metrics::application_finished(
                &app.row.channel,
                method.unwrap_or("none"),
                app.status.name(),
            );
        }
        self.notify(app, kind).await;
    }

    async fn notify(&self, app: &App, event: ApplicationEventKind) {
        let Some(notifier) = &self.notifier else {
            return;
        };
        let p = &app.doc.progress;
        let e = ApplicationEvent {
            channel: app.row.channel.clone(),
            application_id: app.row.id.clone(),
            application_kind: app.kind.name().to_owned(),
            event,
            status: app.status.name().to_owned(),
            reference: app.doc.reference.clone(),
            certificate_serial: app.row.issued_serial.clone(),
            failure_code: p.failure.as_ref().map(|f| f.0.clone()),
            phone: p
                .confirmed_phone
                .clone()
                .or_else(|| p.applicant_phone())
                .or_else(|| p.subject.phone.clone()),
            email: p.applicant_email(),
            at: unix_now(),
        };
        if let Err(err) = notifier.application_event(&e).await {
            tracing::warn!(application = %app.row.id, error = %err, "application event not queued");
        }
    }

    /// The answer to a request that found the application in `from`: a rejection that happened
    /// during the request is an error (422 with the plugin's code), as is any error.
    async fn answer(
        &self,
        app: App,
        from: Status,
        result: Result<(), AppError>,
    ) -> Result<Value, Failure> {
        let view = self.view(&app).await;
        match result {
            Ok(()) => match (&app.status, &app.doc.progress.failure) {
                (Status::Rejected, Some((code, _))) if from != Status::Rejected => Err(Failure {
                    error: AppError::Rejected(code.clone()),
                    application: Some(view),
                }),
                _ => Ok(view),
            },
            Err(error) => Err(Failure {
                error,
                application: Some(view),
            }),
        }
    }

    /// The application as the API shows it (personal data masked).
    async fn view(&self, app: &App) -> Value {
        let p = &app.doc.progress;
        let certificate = match &app.row.issued_serial {
            Some(serial) => match self.certificates.get(serial).await {
                Ok(Some(c)) => json!({
                    "serial": serial,
                    "pem": crate::ca::pem_rfc7468_encode("CERTIFICATE", &c.der),
                    "not_after": c.not_after,
                }),
                _ => json!({ "serial": serial }),
            },
            None => Value::Null,
        };
        let mut out = json!({
            "id": app.row.id,
            "kind": app.kind.name(),
            "status": app.status.name(),
            "channel": app.row.channel,
            "profile": app.row.profile,
            "reference": app.doc.reference,
            "subject": p.subject.masked(),
            "subject_holds_certificate": app.doc.holds_certificate,
            "step": if app.status.is_open() { self.step_view(app) } else { Value::Null },
            "verified": p.verified.iter().map(|a| json!({
                "field": a.field,
                "method": a.method,
                "value": mask_field(&a.field, &a.value),
            })).collect::<Vec<_>>(),
            "created_at": app.row.created_at,
            "expires_at": app.row.expires_at,
        });
        if let Some((code, message)) = &p.failure {
            out["failure"] = json!({ "code": code, "message": message });
        }
        if let Some(level) = p.assurance() {
            out["assurance_level"] = json!(level);
        }
        if !certificate.is_null() {
            out["certificate"] = certificate;
        }
        if let Some(t) = &app.row.target_serial {
            out["target_certificate"] = json!(t);
        }
        out
    }

    fn step_view(&self, app: &App) -> Value {
        let p = &app.doc.progress;
        let captcha = p.captcha.as_ref().map(|(id, png, exp)| {
            json!({"kind": "captcha", "id": id, "image_png_base64": png, "expires_at": exp})
        });
        let step_name = match p.policy.steps.get(p.step) {
            Some(Step::ConfirmPhone) if p.queued.is_empty() => "confirm_phone",
            Some(Step::SignBySms) if p.queued.is_empty() => "sign",
            _ => "verify",
        };
        let mut s = match &p.cursor {
            Cursor::Enter => json!({"name": step_name}),
            Cursor::Choose { options } => {
                let needs: BTreeMap<&String, Vec<String>> = options
                    .iter()
                    .map(|m| {
                        let subject = self.subject_for(p, m);
                        let missing = self
                            .method_fields(m)
                            .unwrap_or_default()
                            .into_iter()
                            .filter(|f| subject.get(f).is_none())
                            .collect();
                        (m, missing)
                    })
                    .collect();
                json!({"name": "verify", "options": options, "needs": needs})
            }
            Cursor::Needs { method, fields } => {
                json!({"name": "verify", "method": method, "needs": fields})
            }
            Cursor::Ready { method } => json!({"name": "verify", "method": method}),
            Cursor::Verifying {
                method,
                verification,
            } => {
                let mut v =
                    json!({"name": "verify", "method": method, "verification": verification});
                if let Some(c) = &app.doc.challenge {
                    let mut ch = json!({"kind": c.get("kind")});
                    if let Some(Value::Object(payload)) = c.get("payload") {
                        for (k, val) in payload {
                            ch[k] = val.clone();
                        }
                    }
                    if let Some(e) = c.get("expires_at") {
                        ch["expires_at"] = e.clone();
                    }
                    if p.face_by_sms && c.get("kind") == Some(&json!("face_url")) {
                        // Sent to the person's phone: the channel shows no QR.
                        if let Value::Object(o) = &mut ch {
                            o.remove("url");
                            o.remove("qr");
                            o.remove("biz_token");
                        }
                        ch["delivery"] = json!("sms_link");
                        ch["sent_to"] =
                            json!(org::link_phone(p).map(|x| identifiers::mask::mask_phone(&x)));
                    }
                    v["challenge"] = ch;
                }
                v
            }
            Cursor::ConfirmPhone => json!({
                "name": "confirm_phone",
                "needs": ["phone"],
                "phone": p.verified("phone").map(identifiers::mask::mask_phone),
            }),
            Cursor::SendCode => json!({"name": step_name}),
            Cursor::CodeSent { sent } => json!({
                "name": step_name,
                "challenge": {
                    "kind": "sms_code",
                    "phone": p.confirmed_phone.as_deref().map(identifiers::mask::mask_phone),
                    "expires_at": sent.expires_at,
                    "resend_after": sent.resend_after,
                },
            }),
            Cursor::Materials { missing } => {
                let mut s = json!({"name": "materials", "needs": missing});
                if missing.iter().any(|k| k == "authorisation_letter") {
                    // Or online: POST .../authorise sends a code to the legal representative.
                    s["authorisation"] = json!(["authorisation_letter", "online"]);
                }
                if p.authorised_online == Some(false) {
                    s["challenge"] = json!({"kind": "sms_code", "to": "legal_rep"});
                }
                s
            }
            Cursor::Review => json!({"name": "review"}),
            Cursor::NeedsCsr => json!({"name": "csr", "needs": ["csr"]}),
            Cursor::Done => json!({"name": "issue"}),
        };
        if let Some(c) = captcha {
            s["challenge"] = c;
        }
        if app.status == Status::AwaitingReview {
            s = json!({"name": "review"});
        }
        s
    }

    // ---------------------------------------------------------------- background

    /// Advances applications waiting on a vendor or on issuance, and expires those past their
    /// deadline. One pass.
    pub async fn tick(&self) {
        let now = unix_now();
        match self.rows.due_for_expiry(now).await {
            Ok(ids) => {
                for id in ids {
                    let lock = self.lock_for(&id);
                    let _guard = lock.lock().await;
                    let Ok(mut app) = self.load(&Who::System, &id).await else {
                        continue;
                    };
                    // Approved is carried out; a review waits for officers (days, by design).
                    if !app.status.is_open()
                        || matches!(app.status, Status::Approved | Status::AwaitingReview)
                    {
                        continue;
                    }
                    if let Err(e) = self
                        .close(
                            &mut app,
                            Status::Expired,
                            Some(("expired", "the application was not finished in time")),
                            &Who::System,
                        )
                        .await
                    {
                        tracing::warn!(application = %id, error = %e, "expiry failed");
                    } else {
                        tracing::info!(application = %id, "application expired");
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "expiry scan failed"),
        }
        let waiting = self
            .rows
            .ids_with_status(&["verifying", "awaiting_applicant", "approved"])
            .await;
        match waiting {
            Ok(ids) => {
                for id in ids {
                    let lock = self.lock_for(&id);
                    let Ok(_guard) = lock.try_lock() else {
                        continue;
                    };
                    let Ok(mut app) = self.load(&Who::System, &id).await else {
                        continue;
                    };
                    let waits = matches!(
                        app.doc.progress.cursor,
                        Cursor::Verifying { .. }
                            | Cursor::Done
                            | Cursor::Enter
                            | Cursor::Ready { .. }
                    );
                    if !waits || app.doc.progress.captcha.is_some() {
                        continue;
                    }
                    if let Err(e) = self.drive(&mut app, &Who::System).await {
                        tracing::debug!(application = %id, error = %e, "application not advanced");
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "application scan failed"),
        }
    }

    /// Spawns the background task (every `tick_secs`).
    pub fn spawn_background(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let mut interval =
                tokio::time::interval(Duration::from_secs(u64::from(this.settings.tick_secs)));
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                interval.tick().await;
                this.tick().await;
            }
        })
    }
}

fn channel_of(who: &Who, what: &'static str) -> Result<Arc<ChannelConfig>, AppError> {
    match who {
        Who::Channel(c) => Ok(c.clone()),
        _ => Err(AppError::ChannelOnly(what)),
    }
}

fn open_or_finished(app: &App) -> Result<(), AppError> {
    if app.status.is_open() {
        Ok(())
    } else {
        Err(AppError::Finished(app.status.name()))
    }
}

/// The policy step after the current one.
pub(super) fn next_step(p: &mut Progress) {
    p.step += 1;
    p.fallbacks_taken = 0;
    p.queued.clear();
    p.cursor = Cursor::Enter;
}

fn cursor_name(c: &Cursor) -> &'static str {
    match c {
        Cursor::Enter => "enter",
        Cursor::Choose { .. } => "choose",
        Cursor::Needs { .. } => "needs",
        Cursor::Ready { .. } => "ready",
        Cursor::Verifying { .. } => "verifying",
        Cursor::ConfirmPhone => "confirm_phone",
        Cursor::SendCode => "send_code",
        Cursor::CodeSent { .. } => "code_sent",
        Cursor::Materials { .. } => "materials",
        Cursor::Review => "review",
        Cursor::NeedsCsr => "csr",
        Cursor::Done => "done",
    }
}

fn mask_field(field: &str, value: &str) -> String {
    let field = field.rsplit('.').next().unwrap_or(field);
    match field {
        // An organisation's registered name and code are public.
        "organisation" | "uscc" => value.to_owned(),
        "name" => crate::verification::mask::mask_name(value),
        "id_number" => identifiers::mask::mask_id_number(value),
        "phone" => identifiers::mask::mask_phone(value),
        "bank_card" => identifiers::mask::mask_card(value),
        _ => identifiers::mask::mask_middle(value, 1, 1),
    }
}

fn normalise_serial(raw: &str) -> Option<String> {
    let s: String = raw
        .trim_start_matches("0x")
        .chars()
        .filter(|c| *c != ':')
        .collect::<String>()
        .to_ascii_lowercase();
    if s.is_empty() || s.len() > 42 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut s = if s.len() % 2 == 1 { format!("0{s}") } else { s };
    while s.len() > 2 && s.starts_with("00") {
        s.drain(..2);
    }
    Some(s)
}
