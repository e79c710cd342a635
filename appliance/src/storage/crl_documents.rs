//! The newest signed CRL of each published file, shared through the database so every node
//! serves what the lease holder generated.

use sqlx::AnyPool;

use super::StorageError;

/// Signed CRL documents by file name.
#[derive(Clone)]
pub struct CrlDocuments {
    pool: AnyPool,
}

impl CrlDocuments {
    pub(super) fn new(pool: AnyPool) -> Self {
        Self { pool }
    }

    /// Stores `der` as file `file`'s CRL number `number`, unless a newer one is stored.
    pub async fn put(&self, file: &str, number: i64, der: &[u8]) -> Result<(), StorageError> {
        sqlx::query(
            "INSERT INTO crl_documents (file, number, der) VALUES ($1, $2, $3)
             ON CONFLICT (file) DO UPDATE SET number = excluded.number, der = excluded.der
             WHERE crl_documents.number < excluded.number",
        )
        .bind(file)
        .bind(number)
        .bind(der)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The number of file `file`'s stored CRL, if any (a cheap freshness check).
    pub async fn number(&self, file: &str) -> Result<Option<i64>, StorageError> {
        Ok(
            sqlx::query_scalar("SELECT number FROM crl_documents WHERE file = $1")
                .bind(file)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// File `file`'s stored CRL: (number, DER).
    pub async fn get(&self, file: &str) -> Result<Option<(i64, Vec<u8>)>, StorageError> {
        Ok(
            sqlx::query_as("SELECT number, der FROM crl_documents WHERE file = $1")
                .bind(file)
                .fetch_optional(&self.pool)
                .await?,
        )
    }
}
