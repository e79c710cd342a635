//! The CA hierarchy: one row per CA generation (key URI + certificate).

use sqlx::{AnyPool, Row};

use super::audit::{append_in, AuditEntry};
use super::{unix_now, StorageError};

/// A CA generation as stored.
#[derive(Debug, Clone)]
pub struct CaRecord {
    /// Row id (referenced by issued certificates).
    pub id: i64,
    /// CA name.
    pub name: String,
    /// Generation, 1 for the first ceremony.
    pub generation: i64,
    /// Parent row id; `None` for a root.
    pub parent_id: Option<i64>,
    /// RFC 7512 URI of the key in the HSM.
    pub key_uri: String,
    /// The CA certificate (DER).
    pub certificate: Vec<u8>,
    /// When it was revoked, unix seconds.
    pub revoked_at: Option<i64>,
}

/// A CA generation to store.
#[derive(Debug, Clone)]
pub struct NewCa<'a> {
    /// CA name.
    pub name: &'a str,
    /// Generation number.
    pub generation: i64,
    /// Parent row id.
    pub parent_id: Option<i64>,
    /// Key URI.
    pub key_uri: &'a str,
    /// Certificate DER.
    pub certificate: &'a [u8],
    /// notBefore, unix seconds.
    pub not_before: i64,
    /// notAfter, unix seconds.
    pub not_after: i64,
}

/// Reads and writes CA generations.
#[derive(Clone)]
pub struct CaStore {
    pool: AnyPool,
}

impl CaStore {
    pub(super) fn new(pool: AnyPool) -> Self {
        Self { pool }
    }

    /// Stores a new CA generation and its audit record in one transaction; returns its row id.
    pub async fn insert(&self, ca: &NewCa<'_>, audit: &AuditEntry) -> Result<i64, StorageError> {
        let mut tx = self.pool.begin().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO certificate_authorities (name, generation, parent_id, key_uri, certificate, not_before, not_after, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
        )
        .bind(ca.name)
        .bind(ca.generation)
        .bind(ca.parent_id)
        .bind(ca.key_uri)
        .bind(ca.certificate)
        .bind(ca.not_before)
        .bind(ca.not_after)
        .bind(unix_now())
        .fetch_one(&mut *tx)
        .await?;
        append_in(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(id)
    }

    /// Every generation of every CA, oldest first.
    pub async fn all(&self) -> Result<Vec<CaRecord>, StorageError> {
        let rows = sqlx::query(
            "SELECT id, name, generation, parent_id, key_uri, certificate, revoked_at FROM certificate_authorities
             ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(CaRecord {
                    id: r.try_get("id")?,
                    name: r.try_get("name")?,
                    generation: r.try_get("generation")?,
                    parent_id: r.try_get("parent_id")?,
                    key_uri: r.try_get("key_uri")?,
                    certificate: r.try_get("certificate")?,
                    revoked_at: r.try_get("revoked_at")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StorageError::from)
    }

    /// Revokes generation `generation` of CA `name` (reason: RFC 5280 code), with its audit row.
    pub async fn revoke(
        &self,
        name: &str,
        generation: i64,
        reason: i64,
        actor: &str,
    ) -> Result<(), super::RevocationError> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(
            "SELECT id, revoked_at FROM certificate_authorities WHERE name = $1 AND generation = $2",
        )
        .bind(name)
        .bind(generation)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(super::RevocationError::NotFound)?;
        let revoked_at: Option<i64> = row.try_get("revoked_at")?;
        if revoked_at.is_some() {
            return Err(super::RevocationError::AlreadyRevoked);
        }
        let id: i64 = row.try_get("id")?;
        sqlx::query(
            "UPDATE certificate_authorities SET revoked_at = $1, revocation_reason = $2 WHERE id = $3",
        )
        .bind(unix_now())
        .bind((reason != 0).then_some(reason))
        .bind(id)
        .execute(&mut *tx)
        .await?;
        append_in(
            &mut tx,
            &AuditEntry {
                actor: actor.to_owned(),
                action: "ca.revoke".into(),
                target: name.to_owned(),
                detail: serde_json::json!({ "generation": generation, "reason": reason }),
            },
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Revoked CA generations signed by CA row `parent_id`: (certificate DER, revoked at,
    /// reason).
    pub async fn revoked_children(
        &self,
        parent_id: i64,
    ) -> Result<Vec<(Vec<u8>, i64, Option<i64>)>, StorageError> {
        let rows = sqlx::query(
            "SELECT certificate, revoked_at, revocation_reason FROM certificate_authorities
             WHERE parent_id = $1 AND revoked_at IS NOT NULL ORDER BY id",
        )
        .bind(parent_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("certificate")?,
                    r.try_get("revoked_at")?,
                    r.try_get("revocation_reason")?,
                ))
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StorageError::from)
    }

    /// The newest generation of each CA.
    pub async fn current(&self) -> Result<Vec<CaRecord>, StorageError> {
        let rows = sqlx::query(
            "SELECT id, name, generation, parent_id, key_uri, certificate, revoked_at FROM certificate_authorities c
             WHERE generation = (SELECT MAX(generation) FROM certificate_authorities d WHERE d.name = c.name)
             ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(CaRecord {
                    id: r.try_get("id")?,
                    name: r.try_get("name")?,
                    generation: r.try_get("generation")?,
                    parent_id: r.try_get("parent_id")?,
                    key_uri: r.try_get("key_uri")?,
                    certificate: r.try_get("certificate")?,
                    revoked_at: r.try_get("revoked_at")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StorageError::from)
    }
}
