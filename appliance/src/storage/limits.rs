//! Limit counters and callback replay records: events per (scope, class) with their time, the
//! scopes each verification counts against, and the signatures of accepted vendor callbacks.
//! Scopes arrive here already keyed (no subject in clear).

use sqlx::{AnyPool, Row};

use super::StorageError;

/// How many events of one class a scope had since a time, and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WindowCount {
    /// Events at or after `since`.
    pub count: u32,
    /// The latest event's time (any age), unix seconds.
    pub latest: Option<i64>,
}

/// Limit counters and callback replay records.
#[derive(Clone)]
pub struct LimitRows {
    pool: AnyPool,
}

impl LimitRows {
    pub(super) fn new(pool: AnyPool) -> Self {
        Self { pool }
    }

    /// Events of `class` in `scope` at or after `since`, and the latest event's time.
    pub async fn count_since(
        &self,
        scope: &str,
        class: &str,
        since: i64,
    ) -> Result<WindowCount, StorageError> {
        let row = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM limit_events WHERE scope = $1 AND class = $2 AND at >= $3), \
                    (SELECT MAX(at) FROM limit_events WHERE scope = $1 AND class = $2)",
        )
        .bind(scope)
        .bind(class)
        .bind(since)
        .fetch_one(&self.pool)
        .await?;
        let count: i64 = row.try_get(0)?;
        Ok(WindowCount {
            count: u32::try_from(count).unwrap_or(u32::MAX),
            latest: row.try_get(1)?,
        })
    }

    /// The time of the `nth` (0-based) event of `class` in `scope` at or after `since`, oldest
    /// first: when the window frees a slot again.
    pub async fn nth_since(
        &self,
        scope: &str,
        class: &str,
        since: i64,
        nth: u32,
    ) -> Result<Option<i64>, StorageError> {
        let at = sqlx::query_scalar(
            "SELECT at FROM limit_events WHERE scope = $1 AND class = $2 AND at >= $3 \
             ORDER BY at LIMIT 1 OFFSET $4",
        )
        .bind(scope)
        .bind(class)
        .bind(since)
        .bind(i64::from(nth))
        .fetch_optional(&self.pool)
        .await?;
        Ok(at)
    }

    /// Records one event per (scope, class) at `at` in one transaction, and forgets events older
    /// than `forget_before`.
    pub async fn record(
        &self,
        events: &[(String, &'static str)],
        at: i64,
        forget_before: i64,
    ) -> Result<(), StorageError> {
        let mut tx = self.pool.begin().await?;
        for (scope, class) in events {
            sqlx::query("INSERT INTO limit_events (scope, class, at) VALUES ($1, $2, $3)")
                .bind(scope)
                .bind(*class)
                .bind(at)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("DELETE FROM limit_events WHERE at < $1")
            .bind(forget_before)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Fixes the scopes verification `id` counts against.
    pub async fn save_scopes(
        &self,
        id: &str,
        scopes: &[String],
        at: i64,
    ) -> Result<(), StorageError> {
        let json = serde_json::to_string(scopes)
            .map_err(|e| StorageError::Database(format!("scopes not serialisable: {e}")))?;
        sqlx::query(
            "INSERT INTO verification_scopes (verification_id, scopes, created_at) \
             VALUES ($1, $2, $3) ON CONFLICT (verification_id) \
             DO UPDATE SET scopes = excluded.scopes, created_at = excluded.created_at",
        )
        .bind(id)
        .bind(json)
        .bind(at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The scopes of verification `id` (`None`: started before limits existed).
    pub async fn scopes(&self, id: &str) -> Result<Option<Vec<String>>, StorageError> {
        let json: Option<String> =
            sqlx::query_scalar("SELECT scopes FROM verification_scopes WHERE verification_id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        json.map(|j| {
            serde_json::from_str(&j)
                .map_err(|e| StorageError::Database(format!("stored scopes unreadable: {e}")))
        })
        .transpose()
    }

    /// Forgets the scopes of a verification that never started.
    pub async fn delete_scopes(&self, id: &str) -> Result<(), StorageError> {
        sqlx::query("DELETE FROM verification_scopes WHERE verification_id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Records an accepted callback signature; `false` if it was seen before (a replay).
    /// Forgets signatures older than `forget_before` (outside any timestamp window).
    pub async fn remember_signature(
        &self,
        signature: &str,
        at: i64,
        forget_before: i64,
    ) -> Result<bool, StorageError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM callback_signatures WHERE at < $1")
            .bind(forget_before)
            .execute(&mut *tx)
            .await?;
        let inserted = sqlx::query(
            "INSERT INTO callback_signatures (signature, at) VALUES ($1, $2) \
                 ON CONFLICT (signature) DO NOTHING",
        )
        .bind(signature)
        .bind(at)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(inserted == 1)
    }
}
