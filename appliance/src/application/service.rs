//! [`ApplicationService`]: creates applications and drives them through their policy's steps.
//!
//! Verifications run through the [`VerificationService`] (started with a reference derived from
//! the application and step, so a retry after a crash finds the same verification instead of
//! starting another); the appliance's own codes and captchas through the `contact` seams. Every
//! change of the progress document is sealed and committed, with its audit row, before the
//! caller sees it; the background task advances applications waiting on a vendor (face) or on
//! issuance after a restart, and expires unfinished ones.
//!
//! This file holds the service, loading and saving, and the background task; the rest is split
//! by what it does: `create`, `requests` (on an open application), `engine` (the step loop),
//! `verifying` (captchas, codes, verifier sessions), `outcome` (issue, revoke, bind, reject),
//! `answers` (events and the masked view), `errors`; and the other kinds of request: downloads,
//! code login, agents, lookups, materials, review.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use const_oid::ObjectIdentifier;
use plugin_abi::doc::ApplicantField;
use rand::RngCore;
use serde_json::{json, Value};

use super::machine::{Cursor, Progress, Status};
use super::policy::{Kind, SubjectType};
use super::subject::{document_identity, subject_hash, SubjectError, SubjectInput};
use crate::ca::issuance::Issuer;
use crate::config::{ApplicationSettings, ChannelConfig};
use crate::contact::{Captchas, ChannelNotifier, OneTimeCodes};
use crate::status::StatusService;
use crate::storage::{
    unix_now, ApplicationRow, ApplicationRows, AuditEntry, CertificateStore, Updated,
};
use crate::verification::seal::Field;
use crate::verification::service::subject_key;
use crate::verification::{KeySet, Keyring, VerificationService};

#[path = "account_download.rs"]
mod account_download;
#[path = "agents.rs"]
mod agents;
#[path = "answers.rs"]
mod answers;
#[path = "code_login.rs"]
mod code_login;
#[path = "create.rs"]
mod create;
#[path = "downloads.rs"]
mod downloads;
#[path = "engine.rs"]
mod engine;
#[path = "errors.rs"]
mod errors;
#[path = "lookup.rs"]
mod lookup;
#[path = "materials.rs"]
mod materials;
#[path = "outcome.rs"]
mod outcome;
#[path = "requests.rs"]
mod requests;
#[path = "review.rs"]
mod review;
#[path = "verifying.rs"]
mod verifying;

pub use agents::{AgentChangeRequest, AgentConfirmRequest};
pub use code_login::{CodeLoginCompletion, CodeLoginRequest};
pub use downloads::{DownloadCompletion, DownloadRequest};
pub use errors::{AppError, Failure};
pub use lookup::{LookupRequest, VerifyRequest as LookupVerifyRequest};

pub use materials::{sniff, Upload, MAX_MATERIAL_BYTES};

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
