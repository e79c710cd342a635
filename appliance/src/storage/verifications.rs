//! Verification rows: one per plugin-driven identity verification. Each committed step replaces
//! the row in ONE transaction (sealed state + outbox + timers + status, with its audit row when
//! the verification starts or finishes). Personal data arrives here already sealed, every sealed
//! column of a row by the same data key (`key_id`); a write is refused unless that key is the
//! active one, so after a rotation commits no new value is sealed under an old key. Finished rows
//! lose their personal columns after the retention time ([`VerificationRows::purge_finished`]).

use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};

use super::audit::{append_in, AuditEntry};
use super::StorageError;

/// One verification row as stored.
#[derive(Clone)]
pub struct VerificationRow {
    /// `vrf_...`.
    pub id: String,
    /// `channel:<name>` or `operator:<cn>`: who may see it.
    pub owner: String,
    /// Keyed MAC of the caller's idempotency key (unique per owner), for look-ups.
    pub reference_mac: Option<Vec<u8>>,
    /// The caller's idempotency key, sealed.
    pub sealed_reference: Option<Vec<u8>>,
    /// Plugin name.
    pub plugin: String,
    /// `pending`, `awaiting_user`, `succeeded`, `failed`.
    pub status: String,
    /// Committed steps.
    pub revision: i64,
    /// The data key that sealed every sealed column of this row.
    pub key_id: u32,
    /// The applicant document, sealed (None once purged).
    pub sealed_applicant: Option<Vec<u8>>,
    /// `{state, outbox, challenges}`, sealed (None once purged).
    pub sealed_state: Option<Vec<u8>>,
    /// HTTP actions committed and not yet answered.
    pub outbox_len: i64,
    /// Pending timers as JSON (ids and due times only).
    pub timers: String,
    /// Earliest timer due, unix seconds.
    pub next_due: Option<i64>,
    /// The result (outcome, attributes, evidence), sealed.
    pub sealed_result: Option<Vec<u8>>,
    /// Creation time, unix seconds.
    pub created_at: i64,
    /// RFC 3339 time of the last committed step.
    pub updated_at: String,
    /// When it finished, unix seconds.
    pub finished_at: Option<i64>,
    /// When its personal data was purged, unix seconds.
    pub purged_at: Option<i64>,
}

impl std::fmt::Debug for VerificationRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerificationRow")
            .field("id", &self.id)
            .field("owner", &self.owner)
            .field("plugin", &self.plugin)
            .field("status", &self.status)
            .field("revision", &self.revision)
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

const COLUMNS: &str = "id, owner, reference_mac, sealed_reference, plugin, status, revision, \
    key_id, sealed_applicant, sealed_state, outbox_len, timers, next_due, sealed_result, \
    created_at, updated_at, finished_at, purged_at";

/// The data key of a row.
fn key_id_of(id: i64) -> Result<u32, sqlx::Error> {
    u32::try_from(id).map_err(|e| sqlx::Error::Decode(Box::new(e)))
}

fn row_of(r: &AnyRow) -> Result<VerificationRow, sqlx::Error> {
    Ok(VerificationRow {
        id: r.try_get("id")?,
        owner: r.try_get("owner")?,
        reference_mac: r.try_get("reference_mac")?,
        sealed_reference: r.try_get("sealed_reference")?,
        plugin: r.try_get("plugin")?,
        status: r.try_get("status")?,
        revision: r.try_get("revision")?,
        key_id: key_id_of(r.try_get("key_id")?)?,
        sealed_applicant: r.try_get("sealed_applicant")?,
        sealed_state: r.try_get("sealed_state")?,
        outbox_len: r.try_get("outbox_len")?,
        timers: r.try_get("timers")?,
        next_due: r.try_get("next_due")?,
        sealed_result: r.try_get("sealed_result")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
        finished_at: r.try_get("finished_at")?,
        purged_at: r.try_get("purged_at")?,
    })
}

/// The verifications table.
#[derive(Clone)]
pub struct VerificationRows {
    pool: AnyPool,
}

/// Only write when the row's key is the active data key.
const WHEN_KEY_ACTIVE: &str = "(SELECT id FROM data_keys WHERE state = 'active')";

impl VerificationRows {
    pub(super) fn new(pool: AnyPool) -> Self {
        Self { pool }
    }

    /// Inserts a new row with its audit entries. Returns false (nothing written) when
    /// `row.key_id` is no longer the active data key; `Duplicate` if the id or
    /// (owner, reference) exists.
    pub async fn insert(
        &self,
        row: &VerificationRow,
        audit: &[AuditEntry],
    ) -> Result<bool, StorageError> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(&format!(
            "INSERT INTO verifications ({COLUMNS}) SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, \
             $14, $15, $16, $17, $18 WHERE $19 = {WHEN_KEY_ACTIVE}"
        ))
        .bind(&row.id)
        .bind(&row.owner)
        .bind(&row.reference_mac)
        .bind(&row.sealed_reference)
        .bind(&row.plugin)
        .bind(&row.status)
        .bind(row.revision)
        .bind(i64::from(row.key_id))
        .bind(&row.sealed_applicant)
        .bind(&row.sealed_state)
        .bind(row.outbox_len)
        .bind(&row.timers)
        .bind(row.next_due)
        .bind(&row.sealed_result)
        .bind(row.created_at)
        .bind(&row.updated_at)
        .bind(row.finished_at)
        .bind(row.purged_at)
        .bind(i64::from(row.key_id))
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        for entry in audit {
            append_in(&mut tx, entry).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Replaces every mutable column if the stored row still has `expected_revision` and
    /// `expected_key`, and `row.key_id` is the active data key; returns false (nothing written)
    /// otherwise. `audit` is appended in the same transaction. A step passes
    /// `row.revision - 1`; a re-seal by a key rotation passes `row.revision`.
    pub async fn update(
        &self,
        row: &VerificationRow,
        expected_revision: i64,
        expected_key: u32,
        audit: Option<&AuditEntry>,
    ) -> Result<bool, StorageError> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(&format!(
            "UPDATE verifications SET status = $1, revision = $2, key_id = $3, reference_mac = $4, \
             sealed_reference = $5, sealed_applicant = $6, sealed_state = $7, outbox_len = $8, \
             timers = $9, next_due = $10, sealed_result = $11, updated_at = $12, finished_at = $13 \
             WHERE id = $14 AND revision = $15 AND key_id = $16 AND $17 = {WHEN_KEY_ACTIVE}"
        ))
        .bind(&row.status)
        .bind(row.revision)
        .bind(i64::from(row.key_id))
        .bind(&row.reference_mac)
        .bind(&row.sealed_reference)
        .bind(&row.sealed_applicant)
        .bind(&row.sealed_state)
        .bind(row.outbox_len)
        .bind(&row.timers)
        .bind(row.next_due)
        .bind(&row.sealed_result)
        .bind(&row.updated_at)
        .bind(row.finished_at)
        .bind(&row.id)
        .bind(expected_revision)
        .bind(i64::from(expected_key))
        .bind(i64::from(row.key_id))
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        if let Some(entry) = audit {
            append_in(&mut tx, entry).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// One row by id.
    pub async fn get(&self, id: &str) -> Result<Option<VerificationRow>, StorageError> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM verifications WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(row_of).transpose()?)
    }

    /// The id of `owner`'s verification whose reference MAC is one of `macs` (one per data key
    /// still in use), if any.
    pub async fn find_reference(
        &self,
        owner: &str,
        macs: &[Vec<u8>],
    ) -> Result<Option<String>, StorageError> {
        if macs.is_empty() {
            return Ok(None);
        }
        let marks = super::dialect::placeholders(2, macs.len());
        let sql =
            format!("SELECT id FROM verifications WHERE owner = $1 AND reference_mac IN ({marks})");
        let mut q = sqlx::query_scalar(&sql).bind(owner);
        for mac in macs {
            q = q.bind(mac);
        }
        Ok(q.fetch_optional(&self.pool).await?)
    }

    /// Up to `limit` ids of rows sealed by a key other than `key_id` (what a rotation re-seals).
    pub async fn sealed_by_other_keys(
        &self,
        key_id: u32,
        limit: i64,
    ) -> Result<Vec<String>, StorageError> {
        Ok(sqlx::query_scalar(
            "SELECT id FROM verifications WHERE key_id <> $1 ORDER BY id LIMIT $2",
        )
        .bind(i64::from(key_id))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Every verification id (for checks and tests).
    pub async fn all_ids(&self) -> Result<Vec<String>, StorageError> {
        Ok(
            sqlx::query_scalar("SELECT id FROM verifications ORDER BY id")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// Purges the personal data of every verification that finished at or before `cutoff`
    /// (applicant, plugin state, idempotency key; the sealed result stays as evidence), with one
    /// audit row naming them, in one transaction. Open verifications are never touched.
    /// Returns the ids purged.
    pub async fn purge_finished(
        &self,
        cutoff: i64,
        now: i64,
        actor: &str,
        detail: serde_json::Value,
    ) -> Result<Vec<String>, StorageError> {
        let mut tx = self.pool.begin().await?;
        let ids: Vec<String> = sqlx::query_scalar(
            "UPDATE verifications SET sealed_applicant = NULL, sealed_state = NULL, \
             sealed_reference = NULL, reference_mac = NULL, purged_at = $1 \
             WHERE status IN ('succeeded', 'failed') AND finished_at IS NOT NULL \
             AND finished_at <= $2 AND purged_at IS NULL RETURNING id",
        )
        .bind(now)
        .bind(cutoff)
        .fetch_all(&mut *tx)
        .await?;
        if ids.is_empty() {
            return Ok(ids);
        }
        let mut ids = ids;
        ids.sort();
        let mut detail = detail;
        if let Some(map) = detail.as_object_mut() {
            map.insert("count".into(), ids.len().into());
            map.insert("verifications".into(), ids.clone().into());
        }
        append_in(
            &mut tx,
            &AuditEntry {
                actor: actor.to_owned(),
                action: "verification.purge".into(),
                target: "verifications".into(),
                detail,
            },
        )
        .await?;
        tx.commit().await?;
        Ok(ids)
    }

    /// Ids of this plugin's rows with committed, unanswered HTTP actions, oldest first.
    pub async fn with_outbox(&self, plugin: &str) -> Result<Vec<String>, StorageError> {
        Ok(sqlx::query_scalar(
            "SELECT id FROM verifications WHERE plugin = $1 AND outbox_len > 0 \
             AND status IN ('pending', 'awaiting_user') ORDER BY created_at, id",
        )
        .bind(plugin)
        .fetch_all(&self.pool)
        .await?)
    }

    /// `(id, timers JSON)` of this plugin's open rows with a timer due at or before `now`.
    pub async fn with_due_timers(
        &self,
        plugin: &str,
        now: i64,
    ) -> Result<Vec<(String, String)>, StorageError> {
        let rows = sqlx::query(
            "SELECT id, timers FROM verifications WHERE plugin = $1 AND next_due <= $2 \
             AND status IN ('pending', 'awaiting_user') ORDER BY next_due, id",
        )
        .bind(plugin)
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("id")?, r.try_get("timers")?)))
            .collect::<Result<Vec<_>, sqlx::Error>>()
            .map_err(Into::into)
    }
}
