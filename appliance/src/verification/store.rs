//! [`SqlVerificationStore`]: the runner's [`VerificationStore`] over the `verifications` table.
//! Personal data (applicant, plugin state, outbox, challenges) is sealed with the [`DataKey`]
//! before it reaches storage; audit rows for start and completion commit with the step.

use std::collections::HashMap;
use std::sync::Mutex;

use plugin_abi::doc::{Applicant, Challenge, HttpAction, Status, VerificationResult};
use plugin_host::{PendingTimer, StoreError, VerificationRecord, VerificationStore};
use serde::{Deserialize, Serialize};

use super::seal::DataKey;
use crate::storage::{unix_now, AuditEntry, StorageError, VerificationRow, VerificationRows};

/// Who starts a verification and with what; handed to the store just before the runner's first
/// commit (the runner's `create` knows only the plugin's record).
#[derive(Clone)]
pub struct StartIntent {
    /// `channel:<name>` or `operator:<cn>`.
    pub owner: String,
    /// The caller's idempotency key.
    pub reference: Option<String>,
    /// The full applicant document as submitted.
    pub applicant: Applicant,
}

/// What is sealed in `sealed_state`.
#[derive(Serialize, Deserialize)]
struct SealedState {
    state: serde_json::Value,
    outbox: Vec<HttpAction>,
    challenges: Vec<Challenge>,
}

/// A stored verification with its owner and (opened) applicant.
#[derive(Clone)]
pub struct StoredVerification {
    /// The runner's record.
    pub record: VerificationRecord,
    /// Who may see it.
    pub owner: String,
    /// The caller's idempotency key.
    pub reference: Option<String>,
    /// The applicant as submitted (mask before showing).
    pub applicant: Applicant,
}

/// The SQL-backed store.
pub struct SqlVerificationStore {
    rows: VerificationRows,
    key: DataKey,
    intents: Mutex<HashMap<String, StartIntent>>,
}

impl std::fmt::Debug for SqlVerificationStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlVerificationStore")
            .finish_non_exhaustive()
    }
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// `pending`, `awaiting_user`, ... as stored.
pub fn status_name(status: Status) -> &'static str {
    match status {
        Status::Pending => "pending",
        Status::AwaitingUser => "awaiting_user",
        Status::Succeeded => "succeeded",
        Status::Failed => "failed",
    }
}

fn parse_status(s: &str) -> Result<Status, StoreError> {
    Ok(match s {
        "pending" => Status::Pending,
        "awaiting_user" => Status::AwaitingUser,
        "succeeded" => Status::Succeeded,
        "failed" => Status::Failed,
        other => return Err(backend(format!("unknown stored status {other:?}"))),
    })
}

impl SqlVerificationStore {
    /// A store over `rows`, sealing with `key`.
    pub fn new(rows: VerificationRows, key: DataKey) -> Self {
        Self {
            rows,
            key,
            intents: Mutex::new(HashMap::new()),
        }
    }

    fn intents(&self) -> std::sync::MutexGuard<'_, HashMap<String, StartIntent>> {
        self.intents.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers who starts verification `id` (call right before `runner.start`).
    pub fn register_intent(&self, id: &str, intent: StartIntent) {
        self.intents().insert(id.to_owned(), intent);
    }

    /// Forgets an intent (after `runner.start` returned, whatever the outcome).
    pub fn forget_intent(&self, id: &str) {
        self.intents().remove(id);
    }

    /// The id of `owner`'s verification with `reference`.
    pub async fn find_reference(
        &self,
        owner: &str,
        reference: &str,
    ) -> Result<Option<String>, StorageError> {
        self.rows.find_reference(owner, reference).await
    }

    /// Loads a verification with owner and opened applicant.
    pub async fn load_full(&self, id: &str) -> Result<Option<StoredVerification>, StoreError> {
        let Some(row) = self.rows.get(id).await.map_err(backend)? else {
            return Ok(None);
        };
        let applicant_bytes = self
            .key
            .open(&row.id, &row.sealed_applicant)
            .map_err(backend)?;
        let applicant: Applicant = serde_json::from_slice(&applicant_bytes)
            .map_err(|_| backend("stored applicant document is not valid"))?;
        let owner = row.owner.clone();
        let reference = row.reference.clone();
        Ok(Some(StoredVerification {
            record: self.record_of(row)?,
            owner,
            reference,
            applicant,
        }))
    }

    fn record_of(&self, row: VerificationRow) -> Result<VerificationRecord, StoreError> {
        let opened = self.key.open(&row.id, &row.sealed_state).map_err(backend)?;
        let sealed: SealedState = serde_json::from_slice(&opened)
            .map_err(|_| backend("stored verification state is not valid"))?;
        let timers: Vec<PendingTimer> = serde_json::from_str(&row.timers)
            .map_err(|_| backend("stored timers are not valid"))?;
        let result: Option<VerificationResult> = row
            .result
            .as_deref()
            .map(serde_json::from_str)
            .transpose()
            .map_err(|_| backend("stored result is not valid"))?;
        Ok(VerificationRecord {
            status: parse_status(&row.status)?,
            id: row.id,
            plugin: row.plugin,
            state: sealed.state,
            result,
            challenges: sealed.challenges,
            outbox: sealed.outbox,
            timers,
            revision: u64::try_from(row.revision).map_err(backend)?,
            updated_at: row.updated_at,
        })
    }

    /// The step-driven columns of `record` (applicant and owner are filled by the caller).
    fn row_of(&self, record: &VerificationRecord) -> Result<VerificationRow, StoreError> {
        let sealed = serde_json::to_vec(&SealedState {
            state: record.state.clone(),
            outbox: record.outbox.clone(),
            challenges: record.challenges.clone(),
        })
        .map_err(backend)?;
        Ok(VerificationRow {
            id: record.id.clone(),
            owner: String::new(),
            reference: None,
            plugin: record.plugin.clone(),
            status: status_name(record.status).to_owned(),
            revision: i64::try_from(record.revision).map_err(backend)?,
            sealed_applicant: Vec::new(),
            sealed_state: self.key.seal(&record.id, &sealed).map_err(backend)?,
            outbox_len: record.outbox.len() as i64,
            timers: serde_json::to_string(&record.timers).map_err(backend)?,
            next_due: record.timers.iter().map(|t| t.due_unix).min(),
            result: record
                .result
                .as_ref()
                .map(serde_json::to_string)
                .transpose()
                .map_err(backend)?,
            created_at: unix_now(),
            updated_at: record.updated_at.clone(),
        })
    }
}

fn completion_audit(owner: &str, record: &VerificationRecord) -> Option<AuditEntry> {
    if !record.status.is_final() {
        return None;
    }
    Some(AuditEntry {
        actor: owner.to_owned(),
        action: "verification.complete".into(),
        target: record.id.clone(),
        detail: serde_json::json!({
            "plugin": record.plugin,
            "status": status_name(record.status),
            "outcome": record.result.as_ref().map(|r| r.outcome),
            "assurance": record.result.as_ref().and_then(|r| r.assurance.clone()),
        }),
    })
}

impl VerificationStore for SqlVerificationStore {
    async fn create(&self, record: &VerificationRecord) -> Result<(), StoreError> {
        let intent = self
            .intents()
            .get(&record.id)
            .cloned()
            .ok_or_else(|| backend("verification started without an owner"))?;
        let mut row = self.row_of(record)?;
        row.owner = intent.owner.clone();
        row.reference = intent.reference.clone();
        let applicant = serde_json::to_vec(&intent.applicant).map_err(backend)?;
        row.sealed_applicant = self.key.seal(&record.id, &applicant).map_err(backend)?;
        let start = AuditEntry {
            actor: intent.owner.clone(),
            action: "verification.start".into(),
            target: record.id.clone(),
            detail: serde_json::json!({
                "plugin": record.plugin,
                "reference": intent.reference,
                "status": status_name(record.status),
            }),
        };
        // A verification may finish in its first step (e.g. an invalid ID number).
        let mut audit = vec![start];
        audit.extend(completion_audit(&intent.owner, record));
        match self.rows.insert(&row, &audit).await {
            Ok(()) => Ok(()),
            Err(StorageError::Duplicate(_)) => Err(StoreError::Conflict(record.id.clone())),
            Err(e) => Err(backend(e)),
        }
    }

    async fn load(&self, id: &str) -> Result<Option<VerificationRecord>, StoreError> {
        Ok(self.load_full(id).await?.map(|v| v.record))
    }

    async fn save(&self, record: &VerificationRecord) -> Result<(), StoreError> {
        let row = self.row_of(record)?;
        let audit = if record.status.is_final() {
            let owner = self
                .rows
                .get(&record.id)
                .await
                .map_err(backend)?
                .map(|r| r.owner)
                .unwrap_or_default();
            completion_audit(&owner, record)
        } else {
            None
        };
        match self.rows.update(&row, audit.as_ref()).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(StoreError::Conflict(record.id.clone())),
            Err(e) => Err(backend(e)),
        }
    }

    async fn with_outbox(&self, plugin: &str) -> Result<Vec<String>, StoreError> {
        self.rows.with_outbox(plugin).await.map_err(backend)
    }

    async fn due_timers(
        &self,
        plugin: &str,
        now_unix: i64,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let rows = self
            .rows
            .with_due_timers(plugin, now_unix)
            .await
            .map_err(backend)?;
        let mut due = Vec::new();
        for (id, timers) in rows {
            let timers: Vec<PendingTimer> = serde_json::from_str(&timers)
                .map_err(|_| backend("stored timers are not valid"))?;
            due.extend(
                timers
                    .into_iter()
                    .filter(|t| t.due_unix <= now_unix)
                    .map(|t| (id.clone(), t.id)),
            );
        }
        Ok(due)
    }
}
