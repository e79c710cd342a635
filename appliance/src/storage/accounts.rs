//! Accounts per realm and the phone each is bound to (keyed hashes only).

use sqlx::Row;

use super::applications::ApplicationRows;
use super::audit::{append_in, AuditEntry};
use super::{unix_now, StorageError};

/// An account to create or update when an application completes.
#[derive(Debug, Clone)]
pub struct AccountBinding {
    /// Realm name.
    pub realm: String,
    /// `personal` or `organisation`.
    pub kind: &'static str,
    /// The subject's keyed hash under the active data key.
    pub subject_hash: String,
    /// The bound phone's keyed hash under the same key.
    pub phone_hash: String,
    /// `L1`..`L3`.
    pub level: Option<String>,
    /// Methods and levels that proved it (JSON, no personal data).
    pub evidence: String,
}

impl ApplicationRows {
    /// How many accounts of `kind` in `realm` other than the subject's (any of
    /// `subject_hashes`) hold the phone (any of `phone_hashes`).
    pub async fn phone_bound_elsewhere(
        &self,
        realm: &str,
        kind: &str,
        phone_hashes: &[String],
        subject_hashes: &[String],
    ) -> Result<i64, StorageError> {
        let mut count = 0;
        for phone in phone_hashes {
            let rows = sqlx::query(
                "SELECT subject_hash FROM accounts WHERE realm = $1 AND kind = $2 AND phone_hash = $3",
            )
            .bind(realm)
            .bind(kind)
            .bind(phone)
            .fetch_all(&self.pool)
            .await?;
            for r in rows {
                let subject: String = r.try_get("subject_hash")?;
                if !subject_hashes.contains(&subject) {
                    count += 1;
                }
            }
        }
        Ok(count)
    }

    /// Creates the subject's account in the realm or rebinds its phone; the level only rises.
    pub async fn bind_account(
        &self,
        b: &AccountBinding,
        audit: &AuditEntry,
    ) -> Result<(), StorageError> {
        let now = unix_now();
        let mut tx = self.pool.begin().await?;
        let mut id = [0u8; 16];
        rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut id);
        sqlx::query(
            "INSERT INTO accounts (id, realm, kind, subject_hash, phone_hash, level, evidence, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (realm, kind, subject_hash) DO UPDATE SET phone_hash = excluded.phone_hash, \
             level = CASE WHEN accounts.level IS NULL OR excluded.level > accounts.level \
                          THEN excluded.level ELSE accounts.level END, \
             evidence = excluded.evidence, updated_at = excluded.updated_at",
        )
        .bind(format!("acct_{}", hex::encode(id)))
        .bind(&b.realm)
        .bind(b.kind)
        .bind(&b.subject_hash)
        .bind(&b.phone_hash)
        .bind(&b.level)
        .bind(&b.evidence)
        .bind(now)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        append_in(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }
}
