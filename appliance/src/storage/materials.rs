//! The `application_materials` table (migration 0011): uploaded materials, sealed, with their
//! digest; each insert commits with its audit row.

use sqlx::{AnyPool, Row};

use super::audit::{append_in, AuditEntry};
use super::StorageError;

/// One stored material.
#[derive(Debug, Clone)]
pub struct MaterialRow {
    /// `mat_...`.
    pub id: String,
    /// The application it belongs to.
    pub application_id: String,
    /// `business_licence`, `id_front`, `id_back`, `authorisation_letter`.
    pub kind: String,
    /// `image/jpeg`, `image/png`, `application/pdf` (read from the content).
    pub media_type: String,
    /// Bytes of the plain content.
    pub size: i64,
    /// SHA-256 of the plain content (hex).
    pub sha256: String,
    /// Data key sealing `sealed`.
    pub key_id: u32,
    /// The sealed content (absent from listings).
    pub sealed: Vec<u8>,
    /// Unix seconds.
    pub created_at: i64,
}

/// The materials table.
#[derive(Clone)]
pub struct MaterialRows {
    pool: AnyPool,
}

fn row_of(r: &sqlx::any::AnyRow, with_content: bool) -> Result<MaterialRow, StorageError> {
    let key_id: i64 = r.try_get("key_id")?;
    Ok(MaterialRow {
        id: r.try_get("id")?,
        application_id: r.try_get("application_id")?,
        kind: r.try_get("kind")?,
        media_type: r.try_get("media_type")?,
        size: r.try_get("size")?,
        sha256: r.try_get("sha256")?,
        key_id: u32::try_from(key_id)
            .map_err(|_| StorageError::Database(format!("key id {key_id} out of range")))?,
        sealed: if with_content {
            r.try_get("sealed")?
        } else {
            Vec::new()
        },
        created_at: r.try_get("created_at")?,
    })
}

impl MaterialRows {
    pub(super) fn new(pool: AnyPool) -> Self {
        Self { pool }
    }

    /// Stores a material with its audit row.
    pub async fn insert(&self, m: &MaterialRow, audit: &AuditEntry) -> Result<(), StorageError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO application_materials (id, application_id, kind, media_type, size, \
             sha256, key_id, sealed, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&m.id)
        .bind(&m.application_id)
        .bind(&m.kind)
        .bind(&m.media_type)
        .bind(m.size)
        .bind(&m.sha256)
        .bind(i64::from(m.key_id))
        .bind(&m.sealed)
        .bind(m.created_at)
        .execute(&mut *tx)
        .await?;
        append_in(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    /// An application's materials without their content, oldest first.
    pub async fn list(&self, application_id: &str) -> Result<Vec<MaterialRow>, StorageError> {
        let rows = sqlx::query(
            "SELECT id, application_id, kind, media_type, size, sha256, key_id, created_at \
             FROM application_materials WHERE application_id = $1 ORDER BY created_at, id",
        )
        .bind(application_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| row_of(r, false)).collect()
    }

    /// One material of an application, with its sealed content.
    pub async fn get(
        &self,
        application_id: &str,
        id: &str,
    ) -> Result<Option<MaterialRow>, StorageError> {
        let row = sqlx::query(
            "SELECT id, application_id, kind, media_type, size, sha256, key_id, sealed, \
             created_at FROM application_materials WHERE application_id = $1 AND id = $2",
        )
        .bind(application_id)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(|r| row_of(r, true)).transpose()
    }
}
