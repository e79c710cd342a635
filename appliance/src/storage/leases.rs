//! Leases: one node at a time holds a named job (a CA's CRL generation) until its lease
//! expires; taken and renewed by one portable atomic upsert.

use sqlx::AnyPool;

use super::StorageError;

/// The leases table, as seen by one node (`holder`: its node id).
#[derive(Clone)]
pub struct Leases {
    pool: AnyPool,
    holder: String,
}

impl Leases {
    pub(super) fn new(pool: AnyPool, holder: String) -> Self {
        Self { pool, holder }
    }

    /// This node's id, the holder written into the leases it takes.
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// Takes or renews lease `name` until `now + ttl_secs`; true when this node holds it
    /// (it was free, expired, or already ours), false when another live node holds it.
    pub async fn take(&self, name: &str, now: i64, ttl_secs: i64) -> Result<bool, StorageError> {
        // The conflict branch only fires for an expired lease or our own: otherwise no row is
        // written and none returned. One statement, so two nodes cannot both win.
        let won: Option<String> = sqlx::query_scalar(
            "INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
             WHERE leases.expires_at <= $4 OR leases.holder = excluded.holder
             RETURNING holder",
        )
        .bind(name)
        .bind(&self.holder)
        .bind(now.saturating_add(ttl_secs))
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        Ok(won.is_some())
    }

    /// Gives lease `name` up if this node holds it (a clean shutdown), so another node takes
    /// it at once instead of after expiry.
    pub async fn release(&self, name: &str) -> Result<(), StorageError> {
        sqlx::query("DELETE FROM leases WHERE name = $1 AND holder = $2")
            .bind(name)
            .bind(&self.holder)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Deletes leases that expired before `before` (per-row claims pile up otherwise).
    pub async fn purge_expired(&self, before: i64) -> Result<u64, StorageError> {
        Ok(sqlx::query("DELETE FROM leases WHERE expires_at < $1")
            .bind(before)
            .execute(&self.pool)
            .await?
            .rows_affected())
    }

    /// The current holder of lease `name` and its expiry, if any.
    pub async fn holder_of(&self, name: &str) -> Result<Option<(String, i64)>, StorageError> {
        Ok(
            sqlx::query_as("SELECT holder, expires_at FROM leases WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.pool)
                .await?,
        )
    }
}
