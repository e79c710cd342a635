//! Data keys for personal data at rest, stored only wrapped by an HSM key. Exactly one is
//! `active`; a rotation makes a new one active (the old ones `retiring`), re-seals the rows, then
//! deletes the retiring keys once no row refers to them. Each change commits with its audit row.

use sqlx::{AnyPool, Row};

use super::audit::{append_in, AuditEntry};
use super::{unix_now, StorageError};

/// One stored (wrapped) data key.
#[derive(Clone)]
pub struct DataKeyRecord {
    /// Key id, carried by every value it seals.
    pub id: u32,
    /// RFC 7512 URI of the HSM key that wraps it.
    pub wrapping_key: String,
    /// GCM IV of the wrap.
    pub iv: Vec<u8>,
    /// The wrapped key (ciphertext and tag).
    pub wrapped: Vec<u8>,
    /// True for the key new values are sealed with.
    pub active: bool,
}

impl std::fmt::Debug for DataKeyRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataKeyRecord")
            .field("id", &self.id)
            .field("active", &self.active)
            .finish_non_exhaustive()
    }
}

/// The `data_keys` table.
#[derive(Clone)]
pub struct DataKeyRows {
    pool: AnyPool,
}

fn key_id(id: i64) -> Result<u32, StorageError> {
    u32::try_from(id).map_err(|_| StorageError::Database(format!("data key id {id} out of range")))
}

impl DataKeyRows {
    pub(super) fn new(pool: AnyPool) -> Self {
        Self { pool }
    }

    /// Every stored key, oldest first.
    pub async fn list(&self) -> Result<Vec<DataKeyRecord>, StorageError> {
        let rows =
            sqlx::query("SELECT id, wrapping_key, iv, wrapped, state FROM data_keys ORDER BY id")
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| {
                let state: String = r.try_get("state")?;
                Ok(DataKeyRecord {
                    id: key_id(r.try_get("id")?)?,
                    wrapping_key: r.try_get("wrapping_key")?,
                    iv: r.try_get("iv")?,
                    wrapped: r.try_get("wrapped")?,
                    active: state == "active",
                })
            })
            .collect()
    }

    /// The id of the active key, if any.
    pub async fn active_id(&self) -> Result<Option<u32>, StorageError> {
        let id: Option<i64> = sqlx::query_scalar("SELECT id FROM data_keys WHERE state = 'active'")
            .fetch_optional(&self.pool)
            .await?;
        id.map(key_id).transpose()
    }

    /// Stores a new wrapped key as the active one; the previous active key becomes `retiring`.
    /// Returns the new key's id.
    pub async fn add_active(
        &self,
        wrapping_key: &str,
        iv: &[u8],
        wrapped: &[u8],
        actor: &str,
    ) -> Result<u32, StorageError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("UPDATE data_keys SET state = 'retiring' WHERE state = 'active'")
            .execute(&mut *tx)
            .await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO data_keys (wrapping_key, iv, wrapped, state, created_at) \
             VALUES ($1, $2, $3, 'active', $4) RETURNING id",
        )
        .bind(wrapping_key)
        .bind(iv)
        .bind(wrapped)
        .bind(unix_now())
        .fetch_one(&mut *tx)
        .await?;
        let id = key_id(id)?;
        append_in(
            &mut tx,
            &AuditEntry {
                actor: actor.to_owned(),
                action: "data_key.activate".into(),
                target: format!("data-key:{id}"),
                detail: serde_json::json!({ "wrapping_key": wrapping_key }),
            },
        )
        .await?;
        tx.commit().await?;
        Ok(id)
    }

    /// Deletes (destroys) every retiring key no verification or pending notification refers to; returns the
    /// ids deleted and how many retiring keys are still referenced.
    pub async fn destroy_unused_retiring(
        &self,
        actor: &str,
    ) -> Result<(Vec<u32>, usize), StorageError> {
        let mut tx = self.pool.begin().await?;
        let unused: Vec<i64> = sqlx::query_scalar(
            "DELETE FROM data_keys WHERE state = 'retiring' AND NOT EXISTS \
             (SELECT 1 FROM verifications v WHERE v.key_id = data_keys.id) \
             AND NOT EXISTS (SELECT 1 FROM notifications n WHERE n.key_id = data_keys.id) \
             AND NOT EXISTS (SELECT 1 FROM applications a WHERE a.key_id = data_keys.id) \
             AND NOT EXISTS (SELECT 1 FROM subjects s WHERE s.key_id = data_keys.id) \
             AND NOT EXISTS (SELECT 1 FROM subject_verifications r WHERE r.key_id = data_keys.id) \
             AND NOT EXISTS (SELECT 1 FROM application_materials m WHERE m.key_id = data_keys.id) \
             RETURNING id",
        )
        .fetch_all(&mut *tx)
        .await?;
        let left: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM data_keys WHERE state = 'retiring'")
                .fetch_one(&mut *tx)
                .await?;
        let ids = unused
            .into_iter()
            .map(key_id)
            .collect::<Result<Vec<_>, _>>()?;
        if !ids.is_empty() {
            append_in(
                &mut tx,
                &AuditEntry {
                    actor: actor.to_owned(),
                    action: "data_key.destroy".into(),
                    target: "data-keys".into(),
                    detail: serde_json::json!({ "destroyed": ids }),
                },
            )
            .await?;
        }
        tx.commit().await?;
        Ok((ids, usize::try_from(left).unwrap_or(0)))
    }
}
