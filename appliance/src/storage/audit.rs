//! The tamper-evident audit log: every privileged action, hash-chained row to row.
//!
//! Each row's hash is SHA-256 over the previous row's hash and the row's own fields (each
//! length-prefixed), so editing or deleting a row breaks every hash after it ([`AuditLog::verify`]).

use sha2::{Digest, Sha256};
use sqlx::{Row, SqliteConnection, SqlitePool};

use super::{unix_now, StorageError};

/// One audit event, before it is chained. Never carries PINs or personal numbers.
#[derive(Debug, Clone)]
pub struct AuditEntry {
    /// Who: `operator:<cn>`, `channel:<name>`, `cli:<command>`.
    pub actor: String,
    /// What: `ceremony.create_ca`, `certificate.issue`, ...
    pub action: String,
    /// On what: a CA name, a serial.
    pub target: String,
    /// Extra facts as JSON (profile, issuer...).
    pub detail: serde_json::Value,
}

/// Appends to and verifies the audit log.
#[derive(Clone)]
pub struct AuditLog {
    pool: SqlitePool,
}

impl AuditLog {
    pub(super) fn new(pool: SqlitePool) -> Self {
        Self { pool }
    }

    /// Appends one entry in its own transaction.
    pub async fn append(&self, entry: &AuditEntry) -> Result<(), StorageError> {
        let mut tx = self.pool.begin().await?;
        append_in(&mut tx, entry).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Recomputes the chain; returns the number of rows, or the first broken sequence number.
    pub async fn verify(&self) -> Result<Result<u64, i64>, StorageError> {
        let rows = sqlx::query(
            "SELECT seq, at, actor, action, target, detail, prev_hash, hash FROM audit_log ORDER BY seq",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut prev = vec![0u8; 32];
        for row in &rows {
            let seq: i64 = row.try_get("seq")?;
            let stored_prev: Vec<u8> = row.try_get("prev_hash")?;
            let hash: Vec<u8> = row.try_get("hash")?;
            let expect = chain_hash(
                &prev,
                row.try_get("at")?,
                row.try_get("actor")?,
                row.try_get("action")?,
                row.try_get("target")?,
                row.try_get("detail")?,
            );
            if stored_prev != prev || hash != expect {
                return Ok(Err(seq));
            }
            prev = hash;
        }
        Ok(Ok(rows.len() as u64))
    }
}

/// Appends `entry` inside the caller's transaction, so the action and its record commit together.
pub(super) async fn append_in(
    conn: &mut SqliteConnection,
    entry: &AuditEntry,
) -> Result<(), StorageError> {
    let prev: Option<Vec<u8>> =
        sqlx::query_scalar("SELECT hash FROM audit_log ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&mut *conn)
            .await?;
    let prev = prev.unwrap_or_else(|| vec![0u8; 32]);
    let at = unix_now();
    let detail = entry.detail.to_string();
    let hash = chain_hash(
        &prev,
        at,
        &entry.actor,
        &entry.action,
        &entry.target,
        &detail,
    );
    sqlx::query(
        "INSERT INTO audit_log (at, actor, action, target, detail, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(at)
    .bind(&entry.actor)
    .bind(&entry.action)
    .bind(&entry.target)
    .bind(&detail)
    .bind(&prev)
    .bind(&hash)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

fn chain_hash(
    prev: &[u8],
    at: i64,
    actor: &str,
    action: &str,
    target: &str,
    detail: &str,
) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(at.to_be_bytes());
    for field in [actor, action, target, detail] {
        h.update((field.len() as u64).to_be_bytes());
        h.update(field.as_bytes());
    }
    h.finalize().to_vec()
}
