//! The `applications`, `subjects` and `subject_verifications` tables (migration 0007). Every
//! application write is conditional on the row's revision and on its data key being the active
//! one, and carries its audit row in the same transaction.

use sqlx::{AnyPool, Row};

use super::audit::{append_in, AuditEntry};
use super::StorageError;

/// Only write when the row's key is the active data key.
const WHEN_KEY_ACTIVE: &str = "(SELECT id FROM data_keys WHERE state = 'active')";

const COLUMNS: &str =
    "id, channel, kind, profile, status, subject_hash, open_slot, target_serial, \
                       issued_serial, failure_code, key_id, sealed_doc, revision, created_at, \
                       updated_at, expires_at";

/// One application row.
#[derive(Debug, Clone)]
pub struct ApplicationRow {
    /// `app_...`.
    pub id: String,
    /// Channel name.
    pub channel: String,
    /// Kind name.
    pub kind: String,
    /// Profile name.
    pub profile: String,
    /// Status name.
    pub status: String,
    /// Keyed hash of the subject (hex).
    pub subject_hash: String,
    /// `channel:subject_hash` while open, else `None`.
    pub open_slot: Option<String>,
    /// The certificate acted on (renewal, change, reissue, revocation, phone_change).
    pub target_serial: Option<String>,
    /// The certificate issued.
    pub issued_serial: Option<String>,
    /// The final failure code.
    pub failure_code: Option<String>,
    /// Data key sealing `sealed_doc` (and under which `subject_hash` was computed).
    pub key_id: u32,
    /// The sealed progress document.
    pub sealed_doc: Vec<u8>,
    /// Bumped by every write.
    pub revision: i64,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub updated_at: i64,
    /// Unix seconds; an open application past it expires.
    pub expires_at: i64,
}

/// What became of an insert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inserted {
    /// Stored.
    Yes,
    /// The data key is no longer the active one: re-seal and retry.
    StaleKey,
    /// Another application is open for the subject in the channel: its id.
    Open(String),
    /// Another subject holds the declared phone in the realm (`phone_bindings`).
    PhoneBound,
}

/// What became of an update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Updated {
    /// Stored.
    Yes,
    /// The data key is no longer the active one: re-seal and retry.
    StaleKey,
    /// The row moved on (another writer): reload.
    Conflict,
}

fn key_id(v: i64) -> Result<u32, StorageError> {
    u32::try_from(v).map_err(|_| StorageError::Database(format!("key id {v} out of range")))
}

fn row_of(r: &sqlx::any::AnyRow) -> Result<ApplicationRow, StorageError> {
    Ok(ApplicationRow {
        id: r.try_get("id")?,
        channel: r.try_get("channel")?,
        kind: r.try_get("kind")?,
        profile: r.try_get("profile")?,
        status: r.try_get("status")?,
        subject_hash: r.try_get("subject_hash")?,
        open_slot: r.try_get("open_slot")?,
        target_serial: r.try_get("target_serial")?,
        issued_serial: r.try_get("issued_serial")?,
        failure_code: r.try_get("failure_code")?,
        key_id: key_id(r.try_get("key_id")?)?,
        sealed_doc: r.try_get("sealed_doc")?,
        revision: r.try_get("revision")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
        expires_at: r.try_get("expires_at")?,
    })
}

/// A reusable verification of a subject.
#[derive(Debug, Clone)]
pub struct ReusableVerification {
    /// Verification id.
    pub verification_id: String,
    /// The application it was made for.
    pub application_id: String,
    /// Assurance level.
    pub assurance: Option<String>,
    /// Key sealing the attributes.
    pub key_id: u32,
    /// Sealed verified attributes.
    pub sealed_attributes: Vec<u8>,
    /// Unix seconds.
    pub verified_at: i64,
}

/// The application tables.
#[derive(Clone)]
pub struct ApplicationRows {
    pub(super) pool: AnyPool,
}

impl ApplicationRows {
    pub(super) fn new(pool: AnyPool) -> Self {
        Self { pool }
    }

    /// Inserts a new application and its audit row, if its key is active and no application is
    /// open in its slot.
    pub async fn insert(
        &self,
        row: &ApplicationRow,
        audit: &AuditEntry,
    ) -> Result<Inserted, StorageError> {
        self.insert_claiming(row, audit, None).await
    }

    /// Like [`Self::insert`], first claiming the declared phone in its realm in the same
    /// transaction (the UNIQUE constraint of `phone_bindings` decides a race).
    pub async fn insert_claiming(
        &self,
        row: &ApplicationRow,
        audit: &AuditEntry,
        claim: Option<&super::PhoneClaim>,
    ) -> Result<Inserted, StorageError> {
        let mut tx = self.pool.begin().await?;
        if let Some(c) = claim {
            if !super::accounts::claim_in(&mut tx, c, &row.id, row.created_at).await? {
                return Ok(Inserted::PhoneBound);
            }
        }
        let done = sqlx::query(&format!(
            "INSERT INTO applications ({COLUMNS}) SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, \
             $14, $15, $16 WHERE $17 = {WHEN_KEY_ACTIVE}"
        ))
        .bind(&row.id)
        .bind(&row.channel)
        .bind(&row.kind)
        .bind(&row.profile)
        .bind(&row.status)
        .bind(&row.subject_hash)
        .bind(&row.open_slot)
        .bind(&row.target_serial)
        .bind(&row.issued_serial)
        .bind(&row.failure_code)
        .bind(i64::from(row.key_id))
        .bind(&row.sealed_doc)
        .bind(row.revision)
        .bind(row.created_at)
        .bind(row.updated_at)
        .bind(row.expires_at)
        .bind(i64::from(row.key_id))
        .execute(&mut *tx)
        .await;
        let done = match done {
            Ok(d) => d,
            Err(e) => {
                let e = StorageError::from(e);
                if let (StorageError::Duplicate(_), Some(slot)) = (&e, &row.open_slot) {
                    drop(tx);
                    if let Some(id) = self.find_open(std::slice::from_ref(slot)).await? {
                        return Ok(Inserted::Open(id));
                    }
                }
                return Err(e);
            }
        };
        if done.rows_affected() != 1 {
            return Ok(Inserted::StaleKey);
        }
        append_in(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(Inserted::Yes)
    }

    /// Replaces the mutable columns if the stored revision is `row.revision - 1` and the row's
    /// key is active; the audit row (if any) commits with it.
    pub async fn update(
        &self,
        row: &ApplicationRow,
        audit: Option<&AuditEntry>,
    ) -> Result<Updated, StorageError> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(&format!(
            "UPDATE applications SET status = $1, open_slot = $2, issued_serial = $3, \
             failure_code = $4, key_id = $5, sealed_doc = $6, revision = $7, updated_at = $8 \
             WHERE id = $9 AND revision = $10 AND $11 = {WHEN_KEY_ACTIVE}"
        ))
        .bind(&row.status)
        .bind(&row.open_slot)
        .bind(&row.issued_serial)
        .bind(&row.failure_code)
        .bind(i64::from(row.key_id))
        .bind(&row.sealed_doc)
        .bind(row.revision)
        .bind(row.updated_at)
        .bind(&row.id)
        .bind(row.revision - 1)
        .bind(i64::from(row.key_id))
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            drop(tx);
            let stored: Option<i64> =
                sqlx::query_scalar("SELECT revision FROM applications WHERE id = $1")
                    .bind(&row.id)
                    .fetch_optional(&self.pool)
                    .await?;
            return Ok(if stored == Some(row.revision - 1) {
                Updated::StaleKey
            } else {
                Updated::Conflict
            });
        }
        if let Some(entry) = audit {
            append_in(&mut tx, entry).await?;
        }
        tx.commit().await?;
        Ok(Updated::Yes)
    }

    /// One application by id.
    pub async fn get(&self, id: &str) -> Result<Option<ApplicationRow>, StorageError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM applications WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(row_of).transpose()
    }

    /// The open application in any of `slots`, if one exists.
    pub async fn find_open(&self, slots: &[String]) -> Result<Option<String>, StorageError> {
        for slot in slots {
            let id: Option<String> =
                sqlx::query_scalar("SELECT id FROM applications WHERE open_slot = $1")
                    .bind(slot)
                    .fetch_optional(&self.pool)
                    .await?;
            if id.is_some() {
                return Ok(id);
            }
        }
        Ok(None)
    }

    /// Ids of open applications in `statuses`.
    pub async fn ids_with_status(&self, statuses: &[&str]) -> Result<Vec<String>, StorageError> {
        let mut out = Vec::new();
        for s in statuses {
            let ids: Vec<String> = sqlx::query_scalar(
                "SELECT id FROM applications WHERE status = $1 AND open_slot IS NOT NULL ORDER BY created_at",
            )
            .bind(s)
            .fetch_all(&self.pool)
            .await?;
            out.extend(ids);
        }
        Ok(out)
    }

    /// Ids of a channel's applications of a subject (any of `hashes`), oldest first.
    pub async fn ids_for_subject(
        &self,
        channel: &str,
        hashes: &[String],
    ) -> Result<Vec<String>, StorageError> {
        let mut out = Vec::new();
        for h in hashes {
            let ids: Vec<String> = sqlx::query_scalar(
                "SELECT id FROM applications WHERE channel = $1 AND subject_hash = $2 ORDER BY created_at, id",
            )
            .bind(channel)
            .bind(h)
            .fetch_all(&self.pool)
            .await?;
            out.extend(ids);
        }
        Ok(out)
    }

    /// Ids of open applications past their deadline.
    pub async fn due_for_expiry(&self, now: i64) -> Result<Vec<String>, StorageError> {
        Ok(sqlx::query_scalar(
            "SELECT id FROM applications WHERE open_slot IS NOT NULL AND expires_at <= $1 ORDER BY expires_at",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await?)
    }

    /// The application that issued `serial`.
    pub async fn by_issued_serial(
        &self,
        serial: &str,
    ) -> Result<Option<ApplicationRow>, StorageError> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM applications WHERE issued_serial = $1"
        ))
        .bind(serial)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(row_of).transpose()
    }

    /// The certificate already issued for application `id`, found by its issuance audit row
    /// (a crash between the certificate's commit and the application's).
    pub async fn issued_for(&self, id: &str) -> Result<Option<String>, StorageError> {
        let pattern = format!("%\"application\":\"{id}\"%");
        Ok(sqlx::query_scalar(
            "SELECT target FROM audit_log WHERE action = 'certificate.issue' AND detail LIKE $1 \
             ORDER BY seq LIMIT 1",
        )
        .bind(pattern)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Does any of `hashes` hold a valid, unexpired certificate from an application?
    pub async fn holds_certificate(
        &self,
        hashes: &[String],
        now: i64,
    ) -> Result<bool, StorageError> {
        for h in hashes {
            let n: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM applications a JOIN certificates c ON c.serial = a.issued_serial \
                 WHERE a.subject_hash = $1 AND c.status = 'valid' AND c.not_after > $2",
            )
            .bind(h)
            .bind(now)
            .fetch_one(&self.pool)
            .await?;
            if n > 0 {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Sets a subject's verified phone (sealed) with an audit row.
    pub async fn set_phone(
        &self,
        subject_hash: &str,
        key_id: u32,
        sealed_phone: &[u8],
        now: i64,
        audit: &AuditEntry,
    ) -> Result<(), StorageError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO subjects (subject_hash, key_id, sealed_phone, phone_verified_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (subject_hash) DO UPDATE SET key_id = excluded.key_id, \
             sealed_phone = excluded.sealed_phone, phone_verified_at = excluded.phone_verified_at",
        )
        .bind(subject_hash)
        .bind(i64::from(key_id))
        .bind(sealed_phone)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        append_in(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    /// A subject's sealed verified phone: (key id, sealed), under the first hash found.
    pub async fn phone(
        &self,
        hashes: &[String],
    ) -> Result<Option<(String, u32, Vec<u8>)>, StorageError> {
        for h in hashes {
            let row =
                sqlx::query("SELECT key_id, sealed_phone FROM subjects WHERE subject_hash = $1")
                    .bind(h)
                    .fetch_optional(&self.pool)
                    .await?;
            if let Some(r) = row {
                return Ok(Some((
                    h.clone(),
                    key_id(r.try_get("key_id")?)?,
                    r.try_get("sealed_phone")?,
                )));
            }
        }
        Ok(None)
    }

    /// Records a successful verification for reuse.
    pub async fn add_reusable(
        &self,
        subject_hash: &str,
        method: &str,
        v: &ReusableVerification,
    ) -> Result<(), StorageError> {
        sqlx::query(
            "INSERT INTO subject_verifications (verification_id, subject_hash, method, application_id, \
             assurance, key_id, sealed_attributes, verified_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (verification_id) DO NOTHING",
        )
        .bind(&v.verification_id)
        .bind(subject_hash)
        .bind(method)
        .bind(&v.application_id)
        .bind(&v.assurance)
        .bind(i64::from(v.key_id))
        .bind(&v.sealed_attributes)
        .bind(v.verified_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A subject's newest verifications by any method, newest first (at most `limit`).
    pub async fn newest_verifications(
        &self,
        subject_hash: &str,
        limit: i64,
    ) -> Result<Vec<ReusableVerification>, StorageError> {
        let rows = sqlx::query(
            "SELECT verification_id, application_id, assurance, key_id, sealed_attributes, verified_at \
             FROM subject_verifications WHERE subject_hash = $1 ORDER BY verified_at DESC LIMIT $2",
        )
        .bind(subject_hash)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ReusableVerification {
                    verification_id: r.try_get("verification_id")?,
                    application_id: r.try_get("application_id")?,
                    assurance: r.try_get("assurance")?,
                    key_id: key_id(r.try_get("key_id")?)?,
                    sealed_attributes: r.try_get("sealed_attributes")?,
                    verified_at: r.try_get("verified_at")?,
                })
            })
            .collect()
    }

    /// The latest verification of a subject by `method` since `since`.
    pub async fn find_reusable(
        &self,
        hashes: &[String],
        method: &str,
        since: i64,
    ) -> Result<Option<ReusableVerification>, StorageError> {
        let mut best: Option<ReusableVerification> = None;
        for h in hashes {
            let row = sqlx::query(
                "SELECT verification_id, application_id, assurance, key_id, sealed_attributes, verified_at \
                 FROM subject_verifications WHERE subject_hash = $1 AND method = $2 AND verified_at >= $3 \
                 ORDER BY verified_at DESC LIMIT 1",
            )
            .bind(h)
            .bind(method)
            .bind(since)
            .fetch_optional(&self.pool)
            .await?;
            if let Some(r) = row {
                let v = ReusableVerification {
                    verification_id: r.try_get("verification_id")?,
                    application_id: r.try_get("application_id")?,
                    assurance: r.try_get("assurance")?,
                    key_id: key_id(r.try_get("key_id")?)?,
                    sealed_attributes: r.try_get("sealed_attributes")?,
                    verified_at: r.try_get("verified_at")?,
                };
                if best.as_ref().is_none_or(|b| b.verified_at < v.verified_at) {
                    best = Some(v);
                }
            }
        }
        Ok(best)
    }
}
