//! Accounts per realm and the phone each is bound to (keyed hashes only).

use sqlx::{AnyConnection, Row};

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
    /// The realm binds one account of this kind per phone: the `phone_bindings` claim becomes
    /// the account's (and its old phone's claim is released).
    pub exclusive: bool,
}

/// A phone declared by an application, claimed for its subject in a realm where a phone binds
/// one account of the kind.
#[derive(Debug, Clone)]
pub struct PhoneClaim {
    /// Realm name.
    pub realm: String,
    /// `personal` or `organisation`.
    pub kind: &'static str,
    /// The phone's keyed hash.
    pub phone_hash: String,
    /// The claiming subject's keyed hash (same data key).
    pub subject_hash: String,
}

/// An account as a phone-code login finds it.
#[derive(Debug, Clone)]
pub struct AccountRow {
    /// `acct_<hex>`.
    pub id: String,
    /// The subject's keyed hash.
    pub subject_hash: String,
    /// `L1`..`L3` (None: registered only).
    pub level: Option<String>,
}

/// An account as a download to its phone reads it.
#[derive(Debug, Clone)]
pub struct AccountDetail {
    /// `acct_<hex>`.
    pub id: String,
    /// Its realm.
    pub realm: String,
    /// `personal` or `organisation`.
    pub kind: String,
    /// The subject's keyed hash.
    pub subject_hash: String,
    /// The bound phone's keyed hash.
    pub phone_hash: String,
    /// `L1`..`L3` (None: registered only).
    pub level: Option<String>,
}

/// Application statuses that end without an account: their unbound claims may be taken over.
const RELEASED: &str = "('rejected', 'cancelled', 'expired', 'failed')";

/// Claims `c` for application `application_id` inside the caller's transaction; false when
/// another subject holds the phone (bound to its account, or declared by its open application).
pub(super) async fn claim_in(
    conn: &mut AnyConnection,
    c: &PhoneClaim,
    application_id: &str,
    now: i64,
) -> Result<bool, StorageError> {
    let done = sqlx::query(&format!(
        "INSERT INTO phone_bindings (realm, kind, phone_hash, subject_hash, application_id, bound, created_at) \
         VALUES ($1, $2, $3, $4, $5, 0, $6) \
         ON CONFLICT (realm, kind, phone_hash) DO UPDATE SET \
           bound = CASE WHEN phone_bindings.subject_hash = excluded.subject_hash \
                        THEN phone_bindings.bound ELSE 0 END, \
           subject_hash = excluded.subject_hash, \
           application_id = excluded.application_id, created_at = excluded.created_at \
         WHERE phone_bindings.subject_hash = excluded.subject_hash \
            OR (phone_bindings.bound = 0 AND NOT EXISTS (SELECT 1 FROM applications a \
                WHERE a.id = phone_bindings.application_id AND a.status NOT IN {RELEASED}))"
    ))
    .bind(&c.realm)
    .bind(c.kind)
    .bind(&c.phone_hash)
    .bind(&c.subject_hash)
    .bind(application_id)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() == 1)
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
        if b.exclusive {
            sqlx::query(
                "DELETE FROM phone_bindings WHERE realm = $1 AND kind = $2 AND subject_hash = $3 \
                 AND phone_hash <> $4",
            )
            .bind(&b.realm)
            .bind(b.kind)
            .bind(&b.subject_hash)
            .bind(&b.phone_hash)
            .execute(&mut *tx)
            .await?;
            let claim = PhoneClaim {
                realm: b.realm.clone(),
                kind: b.kind,
                phone_hash: b.phone_hash.clone(),
                subject_hash: b.subject_hash.clone(),
            };
            if !claim_in(&mut tx, &claim, "", now).await? {
                return Err(StorageError::Duplicate(
                    "the phone is bound to another account in the realm".into(),
                ));
            }
            sqlx::query(
                "UPDATE phone_bindings SET bound = 1, application_id = NULL \
                 WHERE realm = $1 AND kind = $2 AND phone_hash = $3",
            )
            .bind(&b.realm)
            .bind(b.kind)
            .bind(&b.phone_hash)
            .execute(&mut *tx)
            .await?;
        }
        append_in(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }
}

impl ApplicationRows {
    /// The accounts of `kind` in `realm` bound to the phone (any of `phone_hashes`).
    pub async fn accounts_by_phone(
        &self,
        realm: &str,
        kind: &str,
        phone_hashes: &[String],
    ) -> Result<Vec<AccountRow>, StorageError> {
        let mut out: Vec<AccountRow> = Vec::new();
        for phone in phone_hashes {
            let rows = sqlx::query(
                "SELECT id, subject_hash, level FROM accounts \
                 WHERE realm = $1 AND kind = $2 AND phone_hash = $3",
            )
            .bind(realm)
            .bind(kind)
            .bind(phone)
            .fetch_all(&self.pool)
            .await?;
            for r in rows {
                let id: String = r.try_get("id")?;
                if !out.iter().any(|a| a.id == id) {
                    out.push(AccountRow {
                        id,
                        subject_hash: r.try_get("subject_hash")?,
                        level: r.try_get("level")?,
                    });
                }
            }
        }
        Ok(out)
    }
}

impl ApplicationRows {
    /// The account `id`, if any.
    pub async fn account(&self, id: &str) -> Result<Option<AccountDetail>, StorageError> {
        let row = sqlx::query(
            "SELECT id, realm, kind, subject_hash, phone_hash, level FROM accounts WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(AccountDetail {
                id: r.try_get("id")?,
                realm: r.try_get("realm")?,
                kind: r.try_get("kind")?,
                subject_hash: r.try_get("subject_hash")?,
                phone_hash: r.try_get("phone_hash")?,
                level: r.try_get("level")?,
            })
        })
        .transpose()
    }

    /// Whether the subject (any of `subject_hashes`) holds an account of `kind` in `realm`.
    pub async fn account_exists(
        &self,
        realm: &str,
        kind: &str,
        subject_hashes: &[String],
    ) -> Result<bool, StorageError> {
        for subject in subject_hashes {
            let found: Option<String> = sqlx::query_scalar(
                "SELECT id FROM accounts WHERE realm = $1 AND kind = $2 AND subject_hash = $3",
            )
            .bind(realm)
            .bind(kind)
            .bind(subject)
            .fetch_optional(&self.pool)
            .await?;
            if found.is_some() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Raises the subject's account to `level` (never lowers it), with its evidence.
    pub async fn raise_account(
        &self,
        realm: &str,
        kind: &str,
        subject_hashes: &[String],
        level: &str,
        evidence: &str,
        audit: &AuditEntry,
    ) -> Result<(), StorageError> {
        let mut tx = self.pool.begin().await?;
        for subject in subject_hashes {
            sqlx::query(
                "UPDATE accounts SET level = $1, evidence = $2, updated_at = $3 \
                 WHERE realm = $4 AND kind = $5 AND subject_hash = $6 \
                 AND (level IS NULL OR level < $1)",
            )
            .bind(level)
            .bind(evidence)
            .bind(unix_now())
            .bind(realm)
            .bind(kind)
            .bind(subject)
            .execute(&mut *tx)
            .await?;
        }
        append_in(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }
}
