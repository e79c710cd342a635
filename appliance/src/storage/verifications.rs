//! Verification rows: one per plugin-driven identity verification. Each committed step replaces
//! the row in ONE transaction (sealed state + outbox + timers + status, with its audit row when
//! the verification starts or finishes). Personal data arrives here already sealed.

use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqlitePool};

use super::audit::{append_in, AuditEntry};
use super::StorageError;

/// One verification row as stored.
#[derive(Clone)]
pub struct VerificationRow {
    /// `vrf_...`.
    pub id: String,
    /// `channel:<name>` or `operator:<cn>`: who may see it.
    pub owner: String,
    /// The caller's own idempotency key, unique per owner.
    pub reference: Option<String>,
    /// Plugin name.
    pub plugin: String,
    /// `pending`, `awaiting_user`, `succeeded`, `failed`.
    pub status: String,
    /// Committed steps.
    pub revision: i64,
    /// The applicant document, sealed.
    pub sealed_applicant: Vec<u8>,
    /// `{state, outbox, challenges}`, sealed.
    pub sealed_state: Vec<u8>,
    /// HTTP actions committed and not yet answered.
    pub outbox_len: i64,
    /// Pending timers as JSON (ids and due times only).
    pub timers: String,
    /// Earliest timer due, unix seconds.
    pub next_due: Option<i64>,
    /// The result as JSON (outcome, attributes, evidence; no personal data).
    pub result: Option<String>,
    /// Creation time, unix seconds.
    pub created_at: i64,
    /// RFC 3339 time of the last committed step.
    pub updated_at: String,
}

impl std::fmt::Debug for VerificationRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerificationRow")
            .field("id", &self.id)
            .field("owner", &self.owner)
            .field("plugin", &self.plugin)
            .field("status", &self.status)
            .field("revision", &self.revision)
            .finish_non_exhaustive()
    }
}

const COLUMNS: &str = "id, owner, reference, plugin, status, revision, sealed_applicant, \
    sealed_state, outbox_len, timers, next_due, result, created_at, updated_at";

fn row_of(r: &SqliteRow) -> Result<VerificationRow, sqlx::Error> {
    Ok(VerificationRow {
        id: r.try_get("id")?,
        owner: r.try_get("owner")?,
        reference: r.try_get("reference")?,
        plugin: r.try_get("plugin")?,
        status: r.try_get("status")?,
        revision: r.try_get("revision")?,
        sealed_applicant: r.try_get("sealed_applicant")?,
        sealed_state: r.try_get("sealed_state")?,
        outbox_len: r.try_get("outbox_len")?,
        timers: r.try_get("timers")?,
        next_due: r.try_get("next_due")?,
        result: r.try_get("result")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

/// The verifications table.
#[derive(Clone)]
pub struct VerificationRows {
    pool: SqlitePool,
}

impl VerificationRows {
    pub(super) fn new(pool: SqlitePool) -> Self {
        Self { pool }
    }

    /// Inserts a new row with its audit entries; `Duplicate` if the id or (owner, reference)
    /// exists.
    pub async fn insert(
        &self,
        row: &VerificationRow,
        audit: &[AuditEntry],
    ) -> Result<(), StorageError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(&format!(
            "INSERT INTO verifications ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        ))
        .bind(&row.id)
        .bind(&row.owner)
        .bind(&row.reference)
        .bind(&row.plugin)
        .bind(&row.status)
        .bind(row.revision)
        .bind(&row.sealed_applicant)
        .bind(&row.sealed_state)
        .bind(row.outbox_len)
        .bind(&row.timers)
        .bind(row.next_due)
        .bind(&row.result)
        .bind(row.created_at)
        .bind(&row.updated_at)
        .execute(&mut *tx)
        .await?;
        for entry in audit {
            append_in(&mut tx, entry).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Replaces the step-driven columns if the stored revision is `row.revision - 1`; returns
    /// false (nothing written) when it is not. `audit` is appended in the same transaction.
    pub async fn update(
        &self,
        row: &VerificationRow,
        audit: Option<&AuditEntry>,
    ) -> Result<bool, StorageError> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE verifications SET status = ?, revision = ?, sealed_state = ?, outbox_len = ?, \
             timers = ?, next_due = ?, result = ?, updated_at = ? WHERE id = ? AND revision = ?",
        )
        .bind(&row.status)
        .bind(row.revision)
        .bind(&row.sealed_state)
        .bind(row.outbox_len)
        .bind(&row.timers)
        .bind(row.next_due)
        .bind(&row.result)
        .bind(&row.updated_at)
        .bind(&row.id)
        .bind(row.revision - 1)
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
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM verifications WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(row_of).transpose()?)
    }

    /// The id of `owner`'s verification with this reference, if any.
    pub async fn find_reference(
        &self,
        owner: &str,
        reference: &str,
    ) -> Result<Option<String>, StorageError> {
        Ok(
            sqlx::query_scalar("SELECT id FROM verifications WHERE owner = ? AND reference = ?")
                .bind(owner)
                .bind(reference)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// Ids of this plugin's rows with committed, unanswered HTTP actions, oldest first.
    pub async fn with_outbox(&self, plugin: &str) -> Result<Vec<String>, StorageError> {
        Ok(sqlx::query_scalar(
            "SELECT id FROM verifications WHERE plugin = ? AND outbox_len > 0 \
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
            "SELECT id, timers FROM verifications WHERE plugin = ? AND next_due <= ? \
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
