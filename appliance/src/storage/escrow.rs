//! The `escrowed_keys` and `escrow_recoveries` tables (migration 0016): encryption private keys
//! of dual certificates, sealed under the HSM's escrow key, and their two-officer recoveries.
//! Every change commits with its audit row.

use sqlx::{AnyPool, Row};

use super::audit::{append_in, AuditEntry};
use super::StorageError;

/// An escrowed key still without its certificate this long after it was made is an
/// interrupted issuance, replaced by the next attempt (sooner, it is one in progress).
const ORPHAN_AFTER_SECS: i64 = 300;

/// One escrowed key.
#[derive(Debug, Clone)]
pub struct EscrowRow {
    /// `esc_...`.
    pub id: String,
    /// The signing certificate the encryption pair was made for (one pair each).
    pub signing_serial: String,
    /// The encryption certificate, once issued.
    pub encryption_serial: Option<String>,
    /// The encryption public key, SubjectPublicKeyInfo DER.
    pub public_key: Vec<u8>,
    /// The escrow key's URI on the HSM.
    pub wrapping_key: String,
    /// AES-GCM IV.
    pub iv: Vec<u8>,
    /// The private scalar sealed under `wrapping_key`, bound to `id`.
    pub sealed: Vec<u8>,
    /// Unix seconds.
    pub created_at: i64,
}

/// One recovery request.
#[derive(Debug, Clone)]
pub struct RecoveryRow {
    /// `rec_...`.
    pub id: String,
    /// The escrowed key.
    pub escrow_id: String,
    /// The requesting officer's actor string.
    pub requested_by: String,
    /// Why (free text from the officer).
    pub reason: String,
    /// The SM2 SubjectPublicKeyInfo (DER) the key is delivered to.
    pub deliver_to: Vec<u8>,
    /// Unix seconds.
    pub requested_at: i64,
    /// The approving officer, once approved.
    pub approved_by: Option<String>,
}

/// The escrow tables.
#[derive(Clone)]
pub struct EscrowRows {
    pool: AnyPool,
}

fn escrow_of(r: &sqlx::any::AnyRow) -> Result<EscrowRow, StorageError> {
    Ok(EscrowRow {
        id: r.try_get("id")?,
        signing_serial: r.try_get("signing_serial")?,
        encryption_serial: r.try_get("encryption_serial")?,
        public_key: r.try_get("public_key")?,
        wrapping_key: r.try_get("wrapping_key")?,
        iv: r.try_get("iv")?,
        sealed: r.try_get("sealed")?,
        created_at: r.try_get("created_at")?,
    })
}

fn recovery_of(r: &sqlx::any::AnyRow) -> Result<RecoveryRow, StorageError> {
    Ok(RecoveryRow {
        id: r.try_get("id")?,
        escrow_id: r.try_get("escrow_id")?,
        requested_by: r.try_get("requested_by")?,
        reason: r.try_get("reason")?,
        deliver_to: r.try_get("deliver_to")?,
        requested_at: r.try_get("requested_at")?,
        approved_by: r.try_get("approved_by")?,
    })
}

impl EscrowRows {
    pub(super) fn new(pool: AnyPool) -> Self {
        Self { pool }
    }

    /// The escrow row of a signing certificate, if any.
    pub async fn for_signing(&self, serial: &str) -> Result<Option<EscrowRow>, StorageError> {
        sqlx::query("SELECT * FROM escrowed_keys WHERE signing_serial = $1")
            .bind(serial)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(escrow_of)
            .transpose()
    }

    /// One escrow row.
    pub async fn get(&self, id: &str) -> Result<Option<EscrowRow>, StorageError> {
        sqlx::query("SELECT * FROM escrowed_keys WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(escrow_of)
            .transpose()
    }

    /// Stores a new escrowed key with its audit row, replacing one of the same signing
    /// certificate that never got its certificate within `ORPHAN_AFTER_SECS` (an interrupted
    /// issuance); `false` when the signing certificate has its encryption certificate or one
    /// is being issued.
    pub async fn insert(&self, row: &EscrowRow, audit: &AuditEntry) -> Result<bool, StorageError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "DELETE FROM escrowed_keys WHERE signing_serial = $1 AND encryption_serial IS NULL \
             AND created_at < $2 \
             AND NOT EXISTS (SELECT 1 FROM escrow_recoveries r WHERE r.escrow_id = escrowed_keys.id)",
        )
        .bind(&row.signing_serial)
        .bind(row.created_at - ORPHAN_AFTER_SECS)
        .execute(&mut *tx)
        .await?;
        let done = sqlx::query(
            "INSERT INTO escrowed_keys (id, signing_serial, encryption_serial, public_key, \
             wrapping_key, iv, sealed, created_at) VALUES ($1, $2, NULL, $3, $4, $5, $6, $7) \
             ON CONFLICT (signing_serial) DO NOTHING",
        )
        .bind(&row.id)
        .bind(&row.signing_serial)
        .bind(&row.public_key)
        .bind(&row.wrapping_key)
        .bind(&row.iv)
        .bind(&row.sealed)
        .bind(row.created_at)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        append_in(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Names the encryption certificate issued for an escrowed key.
    pub async fn set_certificate(&self, id: &str, serial: &str) -> Result<(), StorageError> {
        sqlx::query("UPDATE escrowed_keys SET encryption_serial = $1 WHERE id = $2")
            .bind(serial)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Stores a recovery request with its audit row.
    pub async fn request(&self, row: &RecoveryRow, audit: &AuditEntry) -> Result<(), StorageError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO escrow_recoveries (id, escrow_id, requested_by, reason, deliver_to, \
             requested_at, approved_by, approved_at) VALUES ($1, $2, $3, $4, $5, $6, NULL, NULL)",
        )
        .bind(&row.id)
        .bind(&row.escrow_id)
        .bind(&row.requested_by)
        .bind(&row.reason)
        .bind(&row.deliver_to)
        .bind(row.requested_at)
        .execute(&mut *tx)
        .await?;
        append_in(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    /// One recovery request.
    pub async fn recovery(&self, id: &str) -> Result<Option<RecoveryRow>, StorageError> {
        sqlx::query("SELECT * FROM escrow_recoveries WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(recovery_of)
            .transpose()
    }

    /// Records the approval by `officer` with its audit row; `false` (nothing written) when it
    /// is already approved or `officer` requested it.
    pub async fn approve(
        &self,
        id: &str,
        officer: &str,
        at: i64,
        audit: &AuditEntry,
    ) -> Result<bool, StorageError> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE escrow_recoveries SET approved_by = $1, approved_at = $2 \
             WHERE id = $3 AND approved_by IS NULL AND requested_by <> $1",
        )
        .bind(officer)
        .bind(at)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        append_in(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(true)
    }
}
