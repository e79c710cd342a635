//! Operations on the database as a whole: the readiness write probe and the online backup.

use std::path::Path;

use super::{connect, unix_now, Backend, Storage, StorageError};

impl Storage {
    /// Readiness: commits a one-row write (the database is writable, its disk takes a durable
    /// commit, and no writer holds the lock beyond the busy timeout).
    pub async fn probe_write(&self) -> Result<(), StorageError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("UPDATE ops_probe SET probed_at = $1 WHERE id = 1")
            .bind(unix_now())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Writes a consistent copy of the whole database to `dest` (which must not exist) while
    /// others keep reading and writing: SQLite's `VACUUM INTO` reads one snapshot (SQLite only;
    /// a PostgreSQL database is backed up with its own tools, `pg_dump` or base backups).
    pub async fn backup_into(&self, dest: &Path) -> Result<(), StorageError> {
        if self.backend != Backend::Sqlite {
            return Err(StorageError::Database(
                "backup copies SQLite databases only; back PostgreSQL up with pg_dump".into(),
            ));
        }
        let dest = dest
            .to_str()
            .ok_or_else(|| StorageError::Open(format!("{} is not UTF-8", dest.display())))?;
        sqlx::query("VACUUM INTO $1")
            .bind(dest)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Counts used by `backup` to describe what it copied: certificates, audit rows and the
    /// last CRL number allocated.
    pub async fn backup_summary(&self) -> Result<(i64, i64, i64), StorageError> {
        let certificates: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM certificates")
            .fetch_one(&self.pool)
            .await?;
        let audit: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_log")
            .fetch_one(&self.pool)
            .await?;
        let crl: i64 = sqlx::query_scalar("SELECT value FROM counters WHERE name = 'crl_number'")
            .fetch_one(&self.pool)
            .await?;
        Ok((certificates, audit, crl))
    }
}

impl Storage {
    /// Opens a backup copy read-only and immutable (no lock, no WAL or shm file created, no
    /// migration), to check it without changing a byte of it.
    pub async fn open_snapshot(path: &Path) -> Result<Self, StorageError> {
        let path = path
            .to_str()
            .ok_or_else(|| StorageError::Open(format!("{} is not UTF-8", path.display())))?;
        let pool = connect(&format!("sqlite://{path}?mode=ro&immutable=true"), 1, false).await?;
        Ok(Self {
            pool,
            backend: Backend::Sqlite,
            postgres_url: None,
            node_id: super::new_node_id(),
            issuance: Default::default(),
        })
    }

    /// Closes every connection (checkpointing the WAL into the database file).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}
