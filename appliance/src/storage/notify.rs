//! SQL of `notify`: the outbox of channel-plugin deliveries (sealed request and actions, written
//! only under the active data key), one-time codes (keyed hashes only) and captchas (keyed
//! hashes, deleted when redeemed). Nothing here sees a phone, code or address in clear.

use sqlx::{AnyPool, Row};

use super::StorageError;

/// Only write when the row's key is the active data key (see `verifications.rs`).
const WHEN_KEY_ACTIVE: &str = "(SELECT id FROM data_keys WHERE state = 'active')";

/// A new delivery to queue.
#[derive(Debug, Clone)]
pub struct NewNotification {
    /// `ntf_...`
    pub id: String,
    /// Channel name.
    pub channel: String,
    /// Channel plugin name.
    pub plugin: String,
    /// `event | sms | email | callback`.
    pub kind: &'static str,
    /// Data key that sealed `sealed_request`.
    pub key_id: u32,
    /// The sealed ChannelRequest.
    pub sealed_request: Vec<u8>,
    /// Unix seconds.
    pub now: i64,
}

/// A pending delivery as stored.
#[derive(Debug, Clone)]
pub struct NotificationRow {
    /// `ntf_...`
    pub id: String,
    /// Channel name.
    pub channel: String,
    /// Channel plugin name.
    pub plugin: String,
    /// `event | sms | email`.
    pub kind: String,
    /// Data key of the sealed columns.
    pub key_id: Option<u32>,
    /// The sealed ChannelRequest.
    pub sealed_request: Option<Vec<u8>>,
    /// The sealed actions, once the plugin was asked.
    pub sealed_actions: Option<Vec<u8>>,
    /// Ids of actions already delivered (JSON array).
    pub done_actions: String,
    /// `pending | delivered | failed`.
    pub status: String,
    /// Attempts so far.
    pub attempts: u32,
    /// Unix seconds.
    pub next_attempt_at: i64,
    /// Last failure (no personal data).
    pub last_error: Option<String>,
    /// Unix seconds.
    pub created_at: i64,
}

/// A stored one-time code.
#[derive(Debug, Clone)]
pub struct CodeRow {
    /// Data key its MACs are keyed with.
    pub key_id: u32,
    /// MAC of the code.
    pub code_mac: Vec<u8>,
    /// Wrong tries so far.
    pub attempts: u32,
    /// `open | used | void`.
    pub state: String,
    /// Unix seconds.
    pub expires_at: i64,
    /// Unix seconds.
    pub resend_after: i64,
}

/// A new or replacing one-time code.
#[derive(Debug, Clone)]
pub struct NewCode<'a> {
    /// Application id.
    pub application_id: &'a str,
    /// Purpose name.
    pub purpose: &'a str,
    /// Data key of the MACs.
    pub key_id: u32,
    /// MAC of the code.
    pub code_mac: &'a [u8],
    /// MAC of the phone.
    pub phone_mac: &'a [u8],
    /// Unix seconds.
    pub expires_at: i64,
    /// Unix seconds.
    pub resend_after: i64,
    /// Unix seconds.
    pub now: i64,
}

/// The notify tables.
#[derive(Clone)]
pub struct NotifyRows {
    pool: AnyPool,
}

fn u32_of(v: i64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

fn row_of(r: &sqlx::any::AnyRow) -> Result<NotificationRow, StorageError> {
    let key_id: Option<i64> = r.try_get("key_id")?;
    Ok(NotificationRow {
        id: r.try_get("id")?,
        channel: r.try_get("channel")?,
        plugin: r.try_get("plugin")?,
        kind: r.try_get("kind")?,
        key_id: key_id.map(u32_of),
        sealed_request: r.try_get("sealed_request")?,
        sealed_actions: r.try_get("sealed_actions")?,
        done_actions: r.try_get("done_actions")?,
        status: r.try_get("status")?,
        attempts: u32_of(r.try_get("attempts")?),
        next_attempt_at: r.try_get("next_attempt_at")?,
        last_error: r.try_get("last_error")?,
        created_at: r.try_get("created_at")?,
    })
}

/// Inserts one delivery inside the caller's transaction (e.g. a login answer and its callback),
/// only if its `key_id` is the active data key: false (nothing written) otherwise.
pub(super) async fn insert_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    n: &NewNotification,
) -> Result<bool, StorageError> {
    let done = sqlx::query(&format!(
        "INSERT INTO notifications (id, channel, plugin, kind, key_id, sealed_request, \
         status, next_attempt_at, created_at) \
         SELECT $1, $2, $3, $4, $5, $6, 'pending', $7, $8 WHERE $9 = {WHEN_KEY_ACTIVE}"
    ))
    .bind(&n.id)
    .bind(&n.channel)
    .bind(&n.plugin)
    .bind(n.kind)
    .bind(i64::from(n.key_id))
    .bind(&n.sealed_request)
    .bind(n.now)
    .bind(n.now)
    .bind(i64::from(n.key_id))
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(done == 1)
}

const COLUMNS: &str = "id, channel, plugin, kind, key_id, sealed_request, sealed_actions, \
    done_actions, status, attempts, next_attempt_at, last_error, created_at";

impl NotifyRows {
    pub(super) fn new(pool: AnyPool) -> Self {
        Self { pool }
    }

    /// Queues deliveries in one transaction, only if `key_id` of each is the active data key.
    /// Returns false (nothing written) when a rotation made another key active.
    pub async fn enqueue(&self, rows: &[NewNotification]) -> Result<bool, StorageError> {
        let mut tx = self.pool.begin().await?;
        for n in rows {
            if !insert_in(&mut tx, n).await? {
                return Ok(false);
            }
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Pending deliveries due at `now`, oldest first.
    pub async fn due(&self, now: i64, limit: i64) -> Result<Vec<NotificationRow>, StorageError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM notifications WHERE status = 'pending' AND next_attempt_at <= $1 \
             ORDER BY next_attempt_at, created_at LIMIT $2"
        ))
        .bind(now)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(row_of).collect()
    }

    /// One delivery by id.
    pub async fn get(&self, id: &str) -> Result<Option<NotificationRow>, StorageError> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM notifications WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(row_of).transpose()
    }

    /// Every delivery of a channel, oldest first (status views and tests).
    pub async fn of_channel(&self, channel: &str) -> Result<Vec<NotificationRow>, StorageError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM notifications WHERE channel = $1 ORDER BY created_at, id"
        ))
        .bind(channel)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(row_of).collect()
    }

    /// Stores the plugin's sealed actions for a pending delivery still sealed under `key_id`
    /// (which must be the active key). False if nothing was written.
    pub async fn set_actions(
        &self,
        id: &str,
        key_id: u32,
        sealed_actions: &[u8],
    ) -> Result<bool, StorageError> {
        let n = sqlx::query(&format!(
            "UPDATE notifications SET sealed_actions = $1 WHERE id = $2 AND status = 'pending' \
             AND key_id = $3 AND $4 = {WHEN_KEY_ACTIVE}"
        ))
        .bind(sealed_actions)
        .bind(id)
        .bind(i64::from(key_id))
        .bind(i64::from(key_id))
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// Records an attempt that left work to do: done action ids, the error, the next time.
    pub async fn retry_later(
        &self,
        id: &str,
        done_actions: &str,
        error: &str,
        next_attempt_at: i64,
    ) -> Result<(), StorageError> {
        sqlx::query(
            "UPDATE notifications SET attempts = attempts + 1, done_actions = $1, last_error = $2, \
             next_attempt_at = $3 WHERE id = $4 AND status = 'pending'",
        )
        .bind(done_actions)
        .bind(error)
        .bind(next_attempt_at)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Finishes a delivery (`delivered` or `failed`) and drops its sealed personal data.
    pub async fn finish(
        &self,
        id: &str,
        status: &'static str,
        done_actions: &str,
        error: Option<&str>,
        now: i64,
    ) -> Result<(), StorageError> {
        sqlx::query(
            "UPDATE notifications SET status = $1, attempts = attempts + 1, done_actions = $2, \
             last_error = $3, finished_at = $4, sealed_request = NULL, sealed_actions = NULL, \
             key_id = NULL WHERE id = $5 AND status = 'pending'",
        )
        .bind(status)
        .bind(done_actions)
        .bind(error)
        .bind(now)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Ids of pending deliveries sealed under a key other than `key_id` (a rotation re-seals).
    pub async fn sealed_by_other_keys(
        &self,
        key_id: u32,
        limit: i64,
    ) -> Result<Vec<String>, StorageError> {
        let ids = sqlx::query_scalar(
            "SELECT id FROM notifications WHERE key_id IS NOT NULL AND key_id <> $1 LIMIT $2",
        )
        .bind(i64::from(key_id))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(ids)
    }

    /// Replaces the sealed columns of a delivery still under `old_key` with values sealed under
    /// `new_key` (the active key). False if it changed meanwhile.
    pub async fn reseal(
        &self,
        id: &str,
        old_key: u32,
        new_key: u32,
        sealed_request: &[u8],
        sealed_actions: Option<&[u8]>,
    ) -> Result<bool, StorageError> {
        let n = sqlx::query(&format!(
            "UPDATE notifications SET key_id = $1, sealed_request = $2, sealed_actions = $3 \
             WHERE id = $4 AND key_id = $5 AND $6 = {WHEN_KEY_ACTIVE}"
        ))
        .bind(i64::from(new_key))
        .bind(sealed_request)
        .bind(sealed_actions)
        .bind(id)
        .bind(i64::from(old_key))
        .bind(i64::from(new_key))
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// The code for (application, purpose), if any.
    pub async fn code(
        &self,
        application_id: &str,
        purpose: &str,
    ) -> Result<Option<CodeRow>, StorageError> {
        let row = sqlx::query(
            "SELECT key_id, code_mac, attempts, state, expires_at, resend_after \
             FROM one_time_codes WHERE application_id = $1 AND purpose = $2",
        )
        .bind(application_id)
        .bind(purpose)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(CodeRow {
                key_id: u32_of(r.try_get("key_id")?),
                code_mac: r.try_get("code_mac")?,
                attempts: u32_of(r.try_get("attempts")?),
                state: r.try_get("state")?,
                expires_at: r.try_get("expires_at")?,
                resend_after: r.try_get("resend_after")?,
            })
        })
        .transpose()
    }

    /// Stores a new code for (application, purpose), replacing the previous one, unless the
    /// previous one's resend cooldown has not passed (`resend_after > now`): false then.
    pub async fn put_code(&self, c: &NewCode<'_>) -> Result<bool, StorageError> {
        let n = sqlx::query(
            "INSERT INTO one_time_codes (application_id, purpose, key_id, code_mac, phone_mac, \
             attempts, state, expires_at, resend_after, created_at) \
             VALUES ($1, $2, $3, $4, $5, 0, 'open', $6, $7, $8) \
             ON CONFLICT (application_id, purpose) DO UPDATE SET key_id = excluded.key_id, \
             code_mac = excluded.code_mac, phone_mac = excluded.phone_mac, attempts = 0, \
             state = 'open', expires_at = excluded.expires_at, \
             resend_after = excluded.resend_after, created_at = excluded.created_at \
             WHERE one_time_codes.resend_after <= $9",
        )
        .bind(c.application_id)
        .bind(c.purpose)
        .bind(i64::from(c.key_id))
        .bind(c.code_mac)
        .bind(c.phone_mac)
        .bind(c.expires_at)
        .bind(c.resend_after)
        .bind(c.now)
        .bind(c.now)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// Removes a code (its SMS could not be queued).
    pub async fn delete_code(
        &self,
        application_id: &str,
        purpose: &str,
    ) -> Result<(), StorageError> {
        sqlx::query("DELETE FROM one_time_codes WHERE application_id = $1 AND purpose = $2")
            .bind(application_id)
            .bind(purpose)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Counts a wrong try on an open code seen with `attempts` tries; it becomes `void` at
    /// `max_attempts`. Returns the tries now, or None if the code changed meanwhile.
    pub async fn wrong_try(
        &self,
        application_id: &str,
        purpose: &str,
        attempts: u32,
        max_attempts: u32,
    ) -> Result<Option<u32>, StorageError> {
        let now = attempts.saturating_add(1);
        let state = if now >= max_attempts { "void" } else { "open" };
        let n = sqlx::query(
            "UPDATE one_time_codes SET attempts = $1, state = $2 \
             WHERE application_id = $3 AND purpose = $4 AND state = 'open' AND attempts = $5",
        )
        .bind(i64::from(now))
        .bind(state)
        .bind(application_id)
        .bind(purpose)
        .bind(i64::from(attempts))
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok((n == 1).then_some(now))
    }

    /// Marks an open code used (consumed). False if it was no longer open with `attempts`.
    pub async fn use_code(
        &self,
        application_id: &str,
        purpose: &str,
        attempts: u32,
    ) -> Result<bool, StorageError> {
        let n = sqlx::query(
            "UPDATE one_time_codes SET state = 'used' \
             WHERE application_id = $1 AND purpose = $2 AND state = 'open' AND attempts = $3",
        )
        .bind(application_id)
        .bind(purpose)
        .bind(i64::from(attempts))
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// Stores a captcha's answer MAC; forgets captchas expired before `now`.
    pub async fn put_captcha(
        &self,
        id: &str,
        subject: &str,
        answer_mac: &[u8],
        expires_at: i64,
        now: i64,
    ) -> Result<(), StorageError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM captchas WHERE expires_at < $1")
            .bind(now)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO captchas (id, subject, answer_mac, expires_at, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id)
        .bind(subject)
        .bind(answer_mac)
        .bind(expires_at)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Takes (deletes and returns) captcha `id`: `(subject, answer_mac, expires_at)`.
    pub async fn take_captcha(
        &self,
        id: &str,
    ) -> Result<Option<(String, Vec<u8>, i64)>, StorageError> {
        let row = sqlx::query(
            "DELETE FROM captchas WHERE id = $1 RETURNING subject, answer_mac, expires_at",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok((
                r.try_get("subject")?,
                r.try_get("answer_mac")?,
                r.try_get("expires_at")?,
            ))
        })
        .transpose()
    }
}
