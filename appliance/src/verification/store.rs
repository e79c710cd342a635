//! [`SqlVerificationStore`]: the runner's [`VerificationStore`] over the `verifications` table.
//! Every personal value (applicant, plugin state, outbox, challenges, result with its evidence,
//! idempotency key) is sealed with the active data key of the [`Keyring`] before it reaches
//! storage; the idempotency key is looked up by its keyed MAC. Audit rows for start and
//! completion commit with the step. A write that finds its data key superseded by a rotation
//! reloads the keyring and re-seals the whole row under the new key.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use plugin_abi::doc::{Applicant, Challenge, HttpAction, Status, VerificationResult};
use plugin_host::{PendingTimer, StoreError, VerificationRecord, VerificationStore};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::keyring::Keyring;
use super::seal::{DataKey, Field, KeySet, SealError};
use crate::storage::{
    unix_now, AuditEntry, Leases, StorageError, VerificationRow, VerificationRows,
};

/// How often a write retries after finding its data key superseded or a key unknown.
const KEY_RETRIES: usize = 4;

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
    /// The caller's idempotency key (None once purged).
    pub reference: Option<String>,
    /// The applicant as submitted (mask before showing); empty once purged.
    pub applicant: Applicant,
    /// True once the retention purge removed its personal data.
    pub purged: bool,
}

/// The SQL-backed store.
pub struct SqlVerificationStore {
    rows: VerificationRows,
    keyring: Arc<Keyring>,
    intents: Mutex<HashMap<String, StartIntent>>,
    /// Several nodes on one database: a verification's timers and outbox are driven by the node
    /// holding its claim (lease `verification:<id>`).
    claims: Option<Leases>,
}

/// How long a node's claim on driving one verification's timers and outbox lasts; renewed
/// whenever it drives them, taken by a survivor once a dead node's claim expires.
const CLAIM_SECS: i64 = 60;

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

/// A row's personal columns, opened.
struct Opened {
    reference: Option<Zeroizing<String>>,
    applicant: Option<Zeroizing<Vec<u8>>>,
}

fn open_opt(
    keys: &KeySet,
    id: &str,
    field: Field,
    sealed: Option<&[u8]>,
) -> Result<Option<Zeroizing<Vec<u8>>>, SealError> {
    sealed.map(|b| keys.open(id, field, b)).transpose()
}

impl SqlVerificationStore {
    /// A store over `rows`, sealing with the keyring's active key.
    pub fn new(rows: VerificationRows, keyring: Arc<Keyring>) -> Self {
        Self {
            rows,
            keyring,
            intents: Mutex::new(HashMap::new()),
            claims: None,
        }
    }

    /// Shares the background work with other nodes on the same database (see `claims`).
    pub fn claimed_through(mut self, claims: Option<Leases>) -> Self {
        self.claims = claims;
        self
    }

    /// Whether this node drives verification `id`'s background work now (always, alone).
    async fn claimed(&self, id: &str) -> bool {
        let Some(claims) = &self.claims else {
            return true;
        };
        match claims
            .take(&format!("verification:{id}"), unix_now(), CLAIM_SECS)
            .await
        {
            Ok(held) => held,
            Err(e) => {
                tracing::warn!(verification = %id, error = %e, "verification not claimed");
                false
            }
        }
    }

    fn intents(&self) -> std::sync::MutexGuard<'_, HashMap<String, StartIntent>> {
        self.intents.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The data keys this store seals with (shared with `notify`).
    pub fn keyring(&self) -> &Arc<Keyring> {
        &self.keyring
    }

    /// Registers who starts verification `id` (call right before `runner.start`).
    pub fn register_intent(&self, id: &str, intent: StartIntent) {
        self.intents().insert(id.to_owned(), intent);
    }

    /// Forgets an intent (after `runner.start` returned, whatever the outcome).
    pub fn forget_intent(&self, id: &str) {
        self.intents().remove(id);
    }

    /// Runs `f` with the current keys; once more with reloaded keys if a value names a key this
    /// process does not hold yet (a rotation added it).
    async fn with_keys<T>(
        &self,
        mut f: impl FnMut(&KeySet) -> Result<T, SealError>,
    ) -> Result<T, StoreError> {
        let keys = self.keyring.current();
        match f(&keys) {
            Err(SealError::UnknownKey(_)) => {
                let keys = self.keyring.reload(&keys).await.map_err(backend)?;
                f(&keys).map_err(backend)
            }
            other => other.map_err(backend),
        }
    }

    /// The id of `owner`'s verification with `reference`.
    pub async fn find_reference(
        &self,
        owner: &str,
        reference: &str,
    ) -> Result<Option<String>, StorageError> {
        // During a rotation rows carry MACs under the old or the new key: ask for both.
        let macs: Vec<Vec<u8>> = self
            .keyring
            .current()
            .all()
            .map(|k| k.reference_mac(owner, reference))
            .collect();
        self.rows.find_reference(owner, &macs).await
    }

    /// Loads a verification with owner and opened applicant.
    pub async fn load_full(&self, id: &str) -> Result<Option<StoredVerification>, StoreError> {
        let Some(row) = self.rows.get(id).await.map_err(backend)? else {
            return Ok(None);
        };
        let (record, opened) = self
            .with_keys(|keys| Ok((record_of(keys, &row)?, open_personal(keys, &row)?)))
            .await?;
        let record = record?;
        let applicant: Applicant = match &opened.applicant {
            Some(bytes) => serde_json::from_slice(bytes)
                .map_err(|_| backend("stored applicant document is not valid"))?,
            None => Applicant::default(),
        };
        Ok(Some(StoredVerification {
            record,
            owner: row.owner.clone(),
            reference: opened.reference.map(|r| r.as_str().to_owned()),
            applicant,
            purged: row.purged_at.is_some(),
        }))
    }

    /// Re-seals every personal column of row `id` under the active key, if another key sealed
    /// it (a key rotation). Returns true if this call re-sealed it; false if it already was under
    /// the active key or changed meanwhile (look again).
    pub async fn reseal(&self, id: &str) -> Result<bool, StoreError> {
        let Some(row) = self.rows.get(id).await.map_err(backend)? else {
            return Ok(false);
        };
        let keys = self.keyring.current();
        let active = keys.active().map_err(backend)?.clone();
        if row.key_id == active.id() {
            return Ok(false);
        }
        let next = self
            .with_keys(|keys| reseal_row(keys, &active, &row))
            .await?;
        self.rows
            .update(&next, row.revision, row.key_id, None)
            .await
            .map_err(backend)
    }

    /// Purges personal data of verifications finished at or before `cutoff` (see
    /// [`VerificationRows::purge_finished`]).
    pub async fn purge_finished(
        &self,
        cutoff: i64,
        actor: &str,
        detail: serde_json::Value,
    ) -> Result<Vec<String>, StorageError> {
        self.rows
            .purge_finished(cutoff, unix_now(), actor, detail)
            .await
    }
}

fn open_personal(keys: &KeySet, row: &VerificationRow) -> Result<Opened, SealError> {
    let reference = open_opt(
        keys,
        &row.id,
        Field::Reference,
        row.sealed_reference.as_deref(),
    )?
    .map(|b| Zeroizing::new(String::from_utf8_lossy(&b).into_owned()));
    let applicant = open_opt(
        keys,
        &row.id,
        Field::Applicant,
        row.sealed_applicant.as_deref(),
    )?;
    Ok(Opened {
        reference,
        applicant,
    })
}

/// The runner's record of a row (plugin state empty once purged). The outer error is a key
/// problem (retry with reloaded keys), the inner one a malformed row.
fn record_of(
    keys: &KeySet,
    row: &VerificationRow,
) -> Result<Result<VerificationRecord, StoreError>, SealError> {
    let state = open_opt(keys, &row.id, Field::State, row.sealed_state.as_deref())?;
    let result = open_opt(keys, &row.id, Field::Result, row.sealed_result.as_deref())?;
    Ok((|| {
        let sealed: SealedState = match &state {
            Some(bytes) => serde_json::from_slice(bytes)
                .map_err(|_| backend("stored verification state is not valid"))?,
            None => SealedState {
                state: serde_json::Value::Null,
                outbox: Vec::new(),
                challenges: Vec::new(),
            },
        };
        let timers: Vec<PendingTimer> = serde_json::from_str(&row.timers)
            .map_err(|_| backend("stored timers are not valid"))?;
        let result: Option<VerificationResult> = result
            .as_deref()
            .map(|b| serde_json::from_slice(b))
            .transpose()
            .map_err(|_| backend("stored result is not valid"))?;
        Ok(VerificationRecord {
            status: parse_status(&row.status)?,
            id: row.id.clone(),
            plugin: row.plugin.clone(),
            state: sealed.state,
            result,
            challenges: sealed.challenges,
            outbox: sealed.outbox,
            timers,
            revision: u64::try_from(row.revision).map_err(backend)?,
            updated_at: row.updated_at.clone(),
        })
    })())
}

/// Row `row` with every sealed column re-sealed under `active`.
fn reseal_row(
    keys: &KeySet,
    active: &DataKey,
    row: &VerificationRow,
) -> Result<VerificationRow, SealError> {
    let mut next = row.clone();
    next.key_id = active.id();
    let again = |field: Field, sealed: &Option<Vec<u8>>| -> Result<Option<Vec<u8>>, SealError> {
        sealed
            .as_deref()
            .map(|b| {
                let plain = keys.open(&row.id, field, b)?;
                active.seal(&row.id, field, &plain)
            })
            .transpose()
    };
    next.sealed_applicant = again(Field::Applicant, &row.sealed_applicant)?;
    next.sealed_state = again(Field::State, &row.sealed_state)?;
    next.sealed_result = again(Field::Result, &row.sealed_result)?;
    next.sealed_reference = again(Field::Reference, &row.sealed_reference)?;
    if let Some(b) = row.sealed_reference.as_deref() {
        let reference = keys.open(&row.id, Field::Reference, b)?;
        next.reference_mac =
            Some(active.reference_mac(&row.owner, &String::from_utf8_lossy(&reference)));
    }
    Ok(next)
}

/// The step-driven columns of `record` sealed under `key` (owner, applicant and reference are
/// filled by the caller).
fn row_of(key: &DataKey, record: &VerificationRecord) -> Result<VerificationRow, StoreError> {
    let sealed = Zeroizing::new(
        serde_json::to_vec(&SealedState {
            state: record.state.clone(),
            outbox: record.outbox.clone(),
            challenges: record.challenges.clone(),
        })
        .map_err(backend)?,
    );
    let result = record
        .result
        .as_ref()
        .map(|r| serde_json::to_vec(r).map(Zeroizing::new))
        .transpose()
        .map_err(backend)?;
    Ok(VerificationRow {
        id: record.id.clone(),
        owner: String::new(),
        reference_mac: None,
        sealed_reference: None,
        plugin: record.plugin.clone(),
        status: status_name(record.status).to_owned(),
        revision: i64::try_from(record.revision).map_err(backend)?,
        key_id: key.id(),
        sealed_applicant: None,
        sealed_state: Some(
            key.seal(&record.id, Field::State, &sealed)
                .map_err(backend)?,
        ),
        outbox_len: record.outbox.len() as i64,
        timers: serde_json::to_string(&record.timers).map_err(backend)?,
        next_due: record.timers.iter().map(|t| t.due_unix).min(),
        sealed_result: result
            .map(|r| key.seal(&record.id, Field::Result, &r))
            .transpose()
            .map_err(backend)?,
        created_at: unix_now(),
        updated_at: record.updated_at.clone(),
        finished_at: record.status.is_final().then(unix_now),
        purged_at: None,
    })
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

/// Counts a verification that just reached its final status (metrics).
fn finished_metric(owner: &str, record: &VerificationRecord) {
    if record.status.is_final() {
        crate::ops::metrics::verification_finished(
            owner,
            &record.plugin,
            status_name(record.status),
        );
    }
}

impl VerificationStore for SqlVerificationStore {
    async fn create(&self, record: &VerificationRecord) -> Result<(), StoreError> {
        let intent = self
            .intents()
            .get(&record.id)
            .cloned()
            .ok_or_else(|| backend("verification started without an owner"))?;
        let applicant = Zeroizing::new(serde_json::to_vec(&intent.applicant).map_err(backend)?);
        let start = AuditEntry {
            actor: intent.owner.clone(),
            action: "verification.start".into(),
            target: record.id.clone(),
            // The reference itself is the caller's data: only whether there is one.
            detail: serde_json::json!({
                "plugin": record.plugin,
                "has_reference": intent.reference.is_some(),
                "status": status_name(record.status),
            }),
        };
        // A verification may finish in its first step (e.g. an invalid ID number).
        let mut audit = vec![start];
        audit.extend(completion_audit(&intent.owner, record));
        let mut keys = self.keyring.current();
        for _ in 0..KEY_RETRIES {
            let key = keys.active().map_err(backend)?;
            let mut row = row_of(key, record)?;
            row.owner = intent.owner.clone();
            if let Some(reference) = &intent.reference {
                row.reference_mac = Some(key.reference_mac(&intent.owner, reference));
                row.sealed_reference = Some(
                    key.seal(&record.id, Field::Reference, reference.as_bytes())
                        .map_err(backend)?,
                );
            }
            row.sealed_applicant = Some(
                key.seal(&record.id, Field::Applicant, &applicant)
                    .map_err(backend)?,
            );
            match self.rows.insert(&row, &audit).await {
                Ok(true) => {
                    finished_metric(&intent.owner, record);
                    return Ok(());
                }
                // A rotation made another key active: reload and seal again.
                Ok(false) => keys = self.keyring.reload(&keys).await.map_err(backend)?,
                Err(StorageError::Duplicate(_)) => {
                    return Err(StoreError::Conflict(record.id.clone()))
                }
                Err(e) => return Err(backend(e)),
            }
        }
        Err(backend("the personal-data key kept changing; try again"))
    }

    async fn load(&self, id: &str) -> Result<Option<VerificationRecord>, StoreError> {
        Ok(self.load_full(id).await?.map(|v| v.record))
    }

    async fn save(&self, record: &VerificationRecord) -> Result<(), StoreError> {
        let expected = i64::try_from(record.revision).map_err(backend)? - 1;
        let mut keys = self.keyring.current();
        for _ in 0..KEY_RETRIES {
            let stored = self
                .rows
                .get(&record.id)
                .await
                .map_err(backend)?
                .ok_or_else(|| StoreError::Conflict(record.id.clone()))?;
            if stored.revision != expected {
                return Err(StoreError::Conflict(record.id.clone()));
            }
            let key = keys.active().map_err(backend)?.clone();
            let mut row = row_of(&key, record)?;
            row.owner = stored.owner.clone();
            row.created_at = stored.created_at;
            if stored.key_id == key.id() {
                row.sealed_applicant = stored.sealed_applicant.clone();
                row.sealed_reference = stored.sealed_reference.clone();
                row.reference_mac = stored.reference_mac.clone();
            } else {
                // Sealed under a key being retired: carry the personal columns over re-sealed.
                let moved = match reseal_row(&keys, &key, &stored) {
                    Err(SealError::UnknownKey(_)) => {
                        keys = self.keyring.reload(&keys).await.map_err(backend)?;
                        continue;
                    }
                    other => other.map_err(backend)?,
                };
                row.sealed_applicant = moved.sealed_applicant;
                row.sealed_reference = moved.sealed_reference;
                row.reference_mac = moved.reference_mac;
            }
            let audit = completion_audit(&stored.owner, record);
            if self
                .rows
                .update(&row, expected, stored.key_id, audit.as_ref())
                .await
                .map_err(backend)?
            {
                finished_metric(&stored.owner, record);
                return Ok(());
            }
            // Not written: the revision moved (next round says Conflict), a rotation re-sealed
            // the row, or made another key active: reload the keys and try again.
            keys = self.keyring.reload(&keys).await.map_err(backend)?;
        }
        Err(backend("the personal-data key kept changing; try again"))
    }

    async fn with_outbox(&self, plugin: &str) -> Result<Vec<String>, StoreError> {
        let ids = self.rows.with_outbox(plugin).await.map_err(backend)?;
        let mut mine = Vec::with_capacity(ids.len());
        for id in ids {
            if self.claimed(&id).await {
                mine.push(id);
            }
        }
        Ok(mine)
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
            if !self.claimed(&id).await {
                continue;
            }
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

    /// A new active data key in the database (its wrapped form is a stand-in: these tests hold
    /// the clear key in a fixed keyring) and the key itself.
    async fn new_key(storage: &Storage) -> DataKey {
        let id = storage
            .data_keys()
            .add_active("pkcs11:token=t;object=w", &[0; 12], &[0; 48], "test")
            .await
            .unwrap();
        DataKey::from_bytes(id, &DataKey::generate())
    }

    fn store_with(storage: &Storage, keys: Vec<DataKey>, active: u32) -> SqlVerificationStore {
        SqlVerificationStore::new(
            storage.verifications(),
            Arc::new(Keyring::fixed(KeySet::new(keys, Some(active)))),
        )
    }

    async fn store(dir: &tempfile::TempDir) -> (Storage, SqlVerificationStore) {
        let url = format!("sqlite://{}", dir.path().join("v.db").display());
        let storage = Storage::open(&url).await.unwrap();
        let key = new_key(&storage).await;
        let id = key.id();
        let s = store_with(&storage, vec![key], id);
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
    async fn two_nodes_drive_a_verifications_timers_and_outbox_one_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let (storage, plain) = store(&dir).await;
        plain.register_intent("vrf_1", intent());
        plain.create(&record("vrf_1")).await.unwrap();
        // Two nodes: two handles on one database, each with its own node id.
        let other = Storage::open(&format!("sqlite://{}", dir.path().join("v.db").display()))
            .await
            .unwrap();
        let keys = plain.keyring().clone();
        let a = SqlVerificationStore::new(storage.verifications(), keys.clone())
            .claimed_through(Some(storage.leases()));
        let b = SqlVerificationStore::new(other.verifications(), keys)
            .claimed_through(Some(other.leases()));
        assert_eq!(a.with_outbox("phone-real-name").await.unwrap(), ["vrf_1"]);
        assert!(b.with_outbox("phone-real-name").await.unwrap().is_empty());
        assert_eq!(a.due_timers("phone-real-name", 10).await.unwrap().len(), 1);
        assert!(b
            .due_timers("phone-real-name", 10)
            .await
            .unwrap()
            .is_empty());
        // Once A's claim has expired (A died), B takes the verification over and A no longer
        // drives it.
        let later = unix_now() + CLAIM_SECS;
        assert!(other
            .leases()
            .take("verification:vrf_1", later, CLAIM_SECS)
            .await
            .unwrap());
        assert_eq!(b.with_outbox("phone-real-name").await.unwrap(), ["vrf_1"]);
        assert_eq!(b.due_timers("phone-real-name", 10).await.unwrap().len(), 1);
        assert!(a.with_outbox("phone-real-name").await.unwrap().is_empty());
        assert!(a
            .due_timers("phone-real-name", 10)
            .await
            .unwrap()
            .is_empty());
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
            evidence: serde_json::json!({"similarity": 96.5, "vendor_request_id": "fc_1"}),
        });
        s.save(&next).await.unwrap();
        assert_eq!(s.load("vrf_1").await.unwrap().unwrap(), next);
        assert!(s.with_outbox("phone-real-name").await.unwrap().is_empty());
        assert!(s
            .due_timers("phone-real-name", 100)
            .await
            .unwrap()
            .is_empty());
        // data key + start + complete audit rows, chain intact.
        assert_eq!(storage.audit().verify().await.unwrap(), Ok(3));

        // Nothing personal is stored in the clear.
        drop(s);
        drop(storage);
        for f in ["v.db", "v.db-wal"] {
            let bytes = std::fs::read(dir.path().join(f)).unwrap_or_default();
            for needle in [
                "11010519491231002X",
                "13800138000",
                "张三",
                "order-1",
                "96.5",
            ] {
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
        let other = store_with(
            &storage,
            vec![DataKey::from_bytes(1, &DataKey::generate())],
            1,
        );
        assert!(matches!(
            other.load("vrf_2").await,
            Err(StoreError::Backend(_))
        ));
    }

    #[tokio::test]
    async fn a_write_under_a_superseded_key_is_refused_and_reseal_moves_rows_to_the_new_key() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("v.db").display());
        let storage = Storage::open(&url).await.unwrap();
        let k1 = new_key(&storage).await;
        let old = store_with(&storage, vec![k1.clone()], k1.id());
        old.register_intent("vrf_3", intent());
        old.create(&record("vrf_3")).await.unwrap();
        let k2 = new_key(&storage).await;
        // The old store still seals with k1: its writes are refused (nothing written).
        old.register_intent("vrf_4", intent());
        assert!(old.create(&record("vrf_4")).await.is_err());
        assert!(storage
            .verifications()
            .get("vrf_4")
            .await
            .unwrap()
            .is_none());
        let mut next = record("vrf_3");
        next.revision = 2;
        assert!(old.save(&next).await.is_err());

        let both = store_with(&storage, vec![k1.clone(), k2.clone()], k2.id());
        assert!(both.reseal("vrf_3").await.unwrap());
        assert!(!both.reseal("vrf_3").await.unwrap(), "already under k2");
        let row = storage.verifications().get("vrf_3").await.unwrap().unwrap();
        assert_eq!(row.key_id, k2.id());
        for sealed in [
            &row.sealed_applicant,
            &row.sealed_state,
            &row.sealed_reference,
        ] {
            let b = sealed.as_deref().unwrap();
            assert!(k1.open("vrf_3", Field::Applicant, b).is_err());
            assert!(k1.open("vrf_3", Field::State, b).is_err());
            assert!(k1.open("vrf_3", Field::Reference, b).is_err());
        }
        // Readable with k2 alone, reference still found.
        let new = store_with(&storage, vec![k2.clone()], k2.id());
        let full = new.load_full("vrf_3").await.unwrap().unwrap();
        assert_eq!(full.reference.as_deref(), Some("order-1"));
        assert_eq!(
            new.find_reference("channel:demo", "order-1").await.unwrap(),
            Some("vrf_3".into())
        );
        // And a step through the new store writes under k2.
        new.save(&next).await.unwrap();
        let (destroyed, left) = storage
            .data_keys()
            .destroy_unused_retiring("test")
            .await
            .unwrap();
        assert_eq!((destroyed, left), (vec![k1.id()], 0));
    }

    #[tokio::test]
    async fn purge_removes_personal_data_of_old_finished_rows_only_and_is_audited() {
        let dir = tempfile::tempdir().unwrap();
        let (storage, s) = store(&dir).await;
        for id in ["vrf_done", "vrf_open"] {
            let mut i = intent();
            i.reference = Some(format!("ref-{id}"));
            s.register_intent(id, i);
            s.create(&record(id)).await.unwrap();
        }
        let mut done = record("vrf_done");
        done.revision = 2;
        done.status = Status::Failed;
        done.outbox.clear();
        done.timers.clear();
        done.result = Some(VerificationResult {
            outcome: Outcome::Mismatch,
            verified_attributes: Vec::new(),
            assurance: None,
            evidence: serde_json::json!({"vendor_request_id": "cr_1"}),
        });
        s.save(&done).await.unwrap();
        // Finished just now: a cutoff in the past purges nothing.
        let none = s
            .purge_finished(unix_now() - 3600, "system:retention", serde_json::json!({}))
            .await
            .unwrap();
        assert!(none.is_empty());
        let audited = storage.audit().verify().await.unwrap().unwrap();
        let purged = s
            .purge_finished(unix_now() + 1, "system:retention", serde_json::json!({}))
            .await
            .unwrap();
        assert_eq!(purged, ["vrf_done"]);
        assert_eq!(storage.audit().verify().await.unwrap(), Ok(audited + 1));
        let gone = s.load_full("vrf_done").await.unwrap().unwrap();
        assert!(gone.purged);
        assert!(gone.applicant.id_number.is_none() && gone.reference.is_none());
        let evidence = gone.record.result.unwrap().evidence;
        assert_eq!(evidence["vendor_request_id"], "cr_1");
        let open = s.load_full("vrf_open").await.unwrap().unwrap();
        assert!(!open.purged);
        assert_eq!(
            open.applicant.id_number.as_deref(),
            Some("11010519491231002X")
        );
        // A second pass finds nothing more.
        assert!(s
            .purge_finished(unix_now() + 1, "system:retention", serde_json::json!({}))
            .await
            .unwrap()
            .is_empty());
    }
}
