//! The change feed of certificate statuses between nodes sharing one PostgreSQL database: each
//! committed revocation or unhold bumps the `status_seq` counter and (PostgreSQL) sends a
//! `NOTIFY ca_status`; a node follows with a cursor on `status_seq`, woken by the notification
//! and by a periodic catch-up that repairs a missed one. The counter row's lock makes sequence
//! numbers commit in order, so a cursor never skips an uncommitted change.

use sqlx::postgres::PgListener;
use sqlx::{AnyPool, Row};

use super::dialect::STATUS_CHANNEL;
use super::StorageError;

/// A certificate whose status changed.
#[derive(Debug, Clone)]
pub struct ChangedStatus {
    /// Its `status_seq` (the cursor moves to the largest seen).
    pub status_seq: i64,
    /// Issuing CA row id.
    pub ca_id: i64,
    /// Serial (lowercase hex).
    pub serial: String,
}

/// Reads status changes after a cursor.
#[derive(Clone)]
pub struct StatusFeed {
    pool: AnyPool,
    /// The PostgreSQL URL to LISTEN on (none on SQLite).
    listen_url: Option<String>,
}

/// Wakes a follower when another node commits a status change.
pub struct StatusWaker {
    listener: PgListener,
}

impl StatusFeed {
    pub(super) fn new(pool: AnyPool, listen_url: Option<String>) -> Self {
        Self { pool, listen_url }
    }

    /// The current `status_seq` counter (where a new follower starts).
    pub async fn current(&self) -> Result<i64, StorageError> {
        Ok(
            sqlx::query_scalar("SELECT value FROM counters WHERE name = 'status_seq'")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// Up to `limit` certificates of `ca_id` changed after `cursor`, oldest change first.
    pub async fn changes_after(
        &self,
        ca_id: i64,
        cursor: i64,
        limit: i64,
    ) -> Result<Vec<ChangedStatus>, StorageError> {
        let rows = sqlx::query(
            "SELECT status_seq, ca_id, serial FROM certificates \
             WHERE ca_id = $1 AND status_seq > $2 ORDER BY status_seq LIMIT $3",
        )
        .bind(ca_id)
        .bind(cursor)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ChangedStatus {
                    status_seq: r.try_get(0)?,
                    ca_id: r.try_get(1)?,
                    serial: r.try_get(2)?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StorageError::from)
    }

    /// A listener for other nodes' changes: `None` on SQLite (one node, nothing to hear).
    pub async fn listen(&self) -> Result<Option<StatusWaker>, StorageError> {
        let Some(url) = &self.listen_url else {
            return Ok(None);
        };
        let mut listener = PgListener::connect(url)
            .await
            .map_err(|e| StorageError::Open(e.to_string()))?;
        listener.listen(STATUS_CHANNEL).await?;
        Ok(Some(StatusWaker { listener }))
    }
}

impl StatusWaker {
    /// Waits for the next notification. After an error the connection is re-established by the
    /// next call, and notifications sent meanwhile are lost (the catch-up repairs that).
    pub async fn notified(&mut self) -> Result<(), StorageError> {
        self.listener.recv().await?;
        Ok(())
    }
}
