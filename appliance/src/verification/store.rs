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

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use plugin_abi::doc::{HttpMethod, Outcome};

    use super::*;
    use crate::storage::Storage;

    async fn store(dir: &tempfile::TempDir) -> (Storage, SqlVerificationStore) {
        let url = format!("sqlite://{}", dir.path().join("v.db").display());
        let storage = Storage::open(&url).await.unwrap();
        let key = DataKey::from_hex(&DataKey::generate_hex()).unwrap();
        let s = SqlVerificationStore::new(storage.verifications(), key);
        (storage, s)
    }

    fn record(id: &str) -> VerificationRecord {
        VerificationRecord {
            id: id.into(),
            plugin: "phone-real-name".into(),
            status: Status::Pending,
            state: serde_json::json!({"phone": "13800138000"}),
            result: None,
            challenges: Vec::new(),
            outbox: vec![HttpAction {
                id: "carrier".into(),
                method: HttpMethod::POST,
                url: "https://carrier.example.cn/v1".into(),
                headers: Default::default(),
                body: Some(r#"{"id_number":"11010519491231002X"}"#.into()),
                timeout_ms: 1000,
            }],
            timers: vec![PendingTimer {
                id: "retry".into(),
                due_at: "2026-01-01T00:00:10Z".into(),
                due_unix: 10,
            }],
            revision: 1,
            updated_at: "2026-01-01T00:00:00Z".into(),
        }
    }

    fn intent() -> StartIntent {
        StartIntent {
            owner: "channel:demo".into(),
            reference: Some("order-1".into()),
            applicant: serde_json::from_value(
                serde_json::json!({"name": "张三", "id_number": "11010519491231002X"}),
            )
            .unwrap(),
        }
    }

    #[tokio::test]
    async fn create_load_save_with_revision_check_outbox_timers_and_audit() {
        let dir = tempfile::tempdir().unwrap();
        let (storage, s) = store(&dir).await;
        let rec = record("vrf_1");
        // No owner registered: refused, nothing stored.
        assert!(matches!(s.create(&rec).await, Err(StoreError::Backend(_))));
        s.register_intent("vrf_1", intent());
        s.create(&rec).await.unwrap();
        assert!(matches!(s.create(&rec).await, Err(StoreError::Conflict(_))));
        let full = s.load_full("vrf_1").await.unwrap().unwrap();
        assert_eq!(full.record, rec);
        assert_eq!(full.owner, "channel:demo");
        assert_eq!(
            full.applicant.id_number.as_deref(),
            Some("11010519491231002X")
        );
        assert_eq!(
            s.find_reference("channel:demo", "order-1").await.unwrap(),
            Some("vrf_1".into())
        );
        assert_eq!(s.with_outbox("phone-real-name").await.unwrap(), ["vrf_1"]);
        assert!(s.with_outbox("face").await.unwrap().is_empty());
        assert!(s.due_timers("phone-real-name", 9).await.unwrap().is_empty());
        assert_eq!(
            s.due_timers("phone-real-name", 10).await.unwrap(),
            [("vrf_1".to_owned(), "retry".to_owned())]
        );

        // A save must follow the stored revision.
        let mut next = rec.clone();
        next.revision = 3;
        assert!(matches!(s.save(&next).await, Err(StoreError::Conflict(_))));
        next.revision = 2;
        next.status = Status::Succeeded;
        next.outbox.clear();
        next.timers.clear();
        next.result = Some(VerificationResult {
            outcome: Outcome::Verified,
            verified_attributes: Vec::new(),
            assurance: Some("L2".into()),
            evidence: serde_json::Value::Null,
        });
        s.save(&next).await.unwrap();
        assert_eq!(s.load("vrf_1").await.unwrap().unwrap(), next);
        assert!(s.with_outbox("phone-real-name").await.unwrap().is_empty());
        assert!(s
            .due_timers("phone-real-name", 100)
            .await
            .unwrap()
            .is_empty());
        // start + complete audit rows, chain intact.
        assert_eq!(storage.audit().verify().await.unwrap(), Ok(2));

        // Nothing personal is stored in the clear.
        drop(s);
        drop(storage);
        for f in ["v.db", "v.db-wal"] {
            let bytes = std::fs::read(dir.path().join(f)).unwrap_or_default();
            for needle in ["11010519491231002X", "13800138000", "张三"] {
                assert!(
                    !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                    "{needle} in {f}"
                );
            }
        }
    }

    #[tokio::test]
    async fn a_row_sealed_under_another_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (storage, s) = store(&dir).await;
        s.register_intent("vrf_2", intent());
        s.create(&record("vrf_2")).await.unwrap();
        let other = SqlVerificationStore::new(
            storage.verifications(),
            DataKey::from_hex(&DataKey::generate_hex()).unwrap(),
        );
        assert!(matches!(
            other.load("vrf_2").await,
            Err(StoreError::Backend(_))
        ));
    }
}
