//! [`VerificationStore`]: where the runner persists each verification (state + outbox + timers)
//! before performing any action. The appliance implements it over SQLite; [`MemoryStore`] is an
//! in-memory implementation FOR TESTS ONLY (nothing survives the process).

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;

use plugin_abi::doc::{Challenge, HttpAction, Status, VerificationResult};
use serde::{Deserialize, Serialize};

/// A timer the plugin asked for, with its absolute due time.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct PendingTimer {
    /// The timer's id (echoed in the `timer` event).
    pub id: String,
    /// When it fires, RFC 3339 UTC.
    pub due_at: String,
    /// The same as Unix seconds, for indexing.
    pub due_unix: i64,
}

/// One verification as persisted. `Debug` shows no personal data: the plugin's state is opaque
/// and is not printed.
#[derive(Serialize, Deserialize, Clone, PartialEq)]
pub struct VerificationRecord {
    /// Verification id (`vrf_...`).
    pub id: String,
    /// Name of the plugin driving it.
    pub plugin: String,
    /// Where it stands.
    pub status: Status,
    /// The plugin's opaque state; `null` before the first step committed.
    pub state: serde_json::Value,
    /// The result once set (also a non-final `otp_wrong` while awaiting the user).
    pub result: Option<VerificationResult>,
    /// Challenges currently shown to the user (replaced by every step).
    pub challenges: Vec<Challenge>,
    /// HTTP actions committed but not yet answered (performed at least once, in order).
    pub outbox: Vec<HttpAction>,
    /// Timers set and not yet fired.
    pub timers: Vec<PendingTimer>,
    /// Number of committed steps; a store may use it for optimistic concurrency.
    pub revision: u64,
    /// When the last step was committed, RFC 3339 UTC.
    pub updated_at: String,
}

impl std::fmt::Debug for VerificationRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerificationRecord")
            .field("id", &self.id)
            .field("plugin", &self.plugin)
            .field("status", &self.status)
            .field("outcome", &self.result.as_ref().map(|r| r.outcome))
            .field("outbox", &self.outbox.len())
            .field("timers", &self.timers.len())
            .field("revision", &self.revision)
            .finish_non_exhaustive()
    }
}

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A record with this id already exists (on create) or the revision moved (on save).
    #[error("conflict on verification {0}")]
    Conflict(String),
    /// The backing store failed.
    #[error("verification store failure: {0}")]
    Backend(String),
}

/// Persistence for verifications. Every method is one atomic operation.
pub trait VerificationStore: Send + Sync + 'static {
    /// Inserts a new record; `Conflict` if the id exists.
    fn create(
        &self,
        record: &VerificationRecord,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Loads a record.
    fn load(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<VerificationRecord>, StoreError>> + Send;
    /// Replaces a record in ONE transaction (state, status, result, challenges, outbox, timers).
    /// `record.revision` is the previous revision + 1; a store should refuse (`Conflict`) if the
    /// stored revision is not `record.revision - 1`.
    fn save(
        &self,
        record: &VerificationRecord,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Ids of this plugin's records with a non-empty outbox (to resume after a restart).
    fn with_outbox(
        &self,
        plugin: &str,
    ) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send;
    /// `(verification id, timer id)` of this plugin's timers due at or before `now_unix`.
    fn due_timers(
        &self,
        plugin: &str,
        now_unix: i64,
    ) -> impl Future<Output = Result<Vec<(String, String)>, StoreError>> + Send;
}

/// In-memory [`VerificationStore`] for tests and examples ONLY: it loses everything when dropped.
#[derive(Debug, Default)]
pub struct MemoryStore {
    records: Mutex<HashMap<String, VerificationRecord>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        MemoryStore::default()
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, VerificationRecord>> {
        self.records.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl VerificationStore for MemoryStore {
    async fn create(&self, record: &VerificationRecord) -> Result<(), StoreError> {
        let mut map = self.map();
        if map.contains_key(&record.id) {
            return Err(StoreError::Conflict(record.id.clone()));
        }
        map.insert(record.id.clone(), record.clone());
        Ok(())
    }

    async fn load(&self, id: &str) -> Result<Option<VerificationRecord>, StoreError> {
        Ok(self.map().get(id).cloned())
    }

    async fn save(&self, record: &VerificationRecord) -> Result<(), StoreError> {
        let mut map = self.map();
        match map.get(&record.id) {
            Some(old) if old.revision + 1 == record.revision => {
                map.insert(record.id.clone(), record.clone());
                Ok(())
            }
            _ => Err(StoreError::Conflict(record.id.clone())),
        }
    }

    async fn with_outbox(&self, plugin: &str) -> Result<Vec<String>, StoreError> {
        let mut ids: Vec<String> = self
            .map()
            .values()
            .filter(|r| r.plugin == plugin && !r.outbox.is_empty())
            .map(|r| r.id.clone())
            .collect();
        ids.sort();
        Ok(ids)
    }

    async fn due_timers(
        &self,
        plugin: &str,
        now_unix: i64,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let mut due: Vec<(String, String)> = self
            .map()
            .values()
            .filter(|r| r.plugin == plugin && !r.status.is_final())
            .flat_map(|r| {
                r.timers
                    .iter()
                    .filter(|t| t.due_unix <= now_unix)
                    .map(|t| (r.id.clone(), t.id.clone()))
            })
            .collect();
        due.sort();
        Ok(due)
    }
}
