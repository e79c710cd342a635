//! Login challenges of relying parties: created, answered once (approved or refused) or
//! expired with a callback, read.

use sqlx::{AnyPool, Row};

use super::audit::{append_in, AuditEntry};
use super::notify::{insert_in, NewNotification};
use super::StorageError;

/// A new challenge.
#[derive(Debug, Clone)]
pub struct NewChallenge {
    /// `lc_` + 32 hex.
    pub id: String,
    /// The relying party it is bound to.
    pub relying_party: String,
    /// The exact text the phone signs.
    pub payload: String,
    /// The level asked for.
    pub min_level: Option<String>,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub expires_at: i64,
    /// Where the result is POSTed (checked against the relying party's allowlist).
    pub callback: Option<String>,
}

/// A stored challenge.
#[derive(Debug, Clone)]
pub struct ChallengeRow {
    /// Id.
    pub id: String,
    /// Bound relying party.
    pub relying_party: String,
    /// Signed text.
    pub payload: String,
    /// Level asked for.
    pub min_level: Option<String>,
    /// `pending`, `approved` or `refused`.
    pub status: String,
    /// Why refused.
    pub reason: Option<String>,
    /// Serial of the certificate that answered.
    pub serial: Option<String>,
    /// Its level.
    pub level: Option<String>,
    /// Its masked subject (JSON).
    pub subject: Option<String>,
    /// Unix seconds.
    pub expires_at: i64,
    /// Where the result is POSTed.
    pub callback: Option<String>,
}

/// What [`LoginRows::answer`] came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answered {
    /// Recorded (with its callback delivery, if any).
    Yes,
    /// Nothing written: no longer pending, expired, or the certificate changed status.
    Lost,
    /// Nothing written: the callback was sealed under a key no longer active.
    KeyChanged,
}

/// How a challenge was answered.
#[derive(Debug, Clone)]
pub struct Answer {
    /// `approved` or `refused`.
    pub status: &'static str,
    /// Refusal reason.
    pub reason: Option<String>,
    /// Certificate serial.
    pub serial: Option<String>,
    /// Its level.
    pub level: Option<String>,
    /// Masked subject JSON.
    pub subject: Option<String>,
    /// The channel that posted it.
    pub channel: String,
}

/// The columns of a [`ChallengeRow`], in the order [`challenge_row`] reads them.
const CHALLENGE_COLUMNS: &str = "id, relying_party, payload, min_level, status, reason, serial, \
     level, subject, expires_at, callback";

fn challenge_row(r: &sqlx::any::AnyRow) -> Result<ChallengeRow, StorageError> {
    Ok(ChallengeRow {
        id: r.try_get("id")?,
        relying_party: r.try_get("relying_party")?,
        payload: r.try_get("payload")?,
        min_level: r.try_get("min_level")?,
        status: r.try_get("status")?,
        reason: r.try_get("reason")?,
        serial: r.try_get("serial")?,
        level: r.try_get("level")?,
        subject: r.try_get("subject")?,
        expires_at: r.try_get("expires_at")?,
        callback: r.try_get("callback")?,
    })
}

/// Reads and writes login challenges.
#[derive(Clone)]
pub struct LoginRows {
    pool: AnyPool,
}

impl LoginRows {
    pub(super) fn new(pool: AnyPool) -> Self {
        Self { pool }
    }

    /// Stores a new challenge with its audit row; drops challenges expired for over a day.
    pub async fn insert(&self, c: &NewChallenge, audit: &AuditEntry) -> Result<(), StorageError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO login_challenges (id, relying_party, payload, min_level, status, created_at, expires_at, callback) \
             VALUES ($1, $2, $3, $4, 'pending', $5, $6, $7)",
        )
        .bind(&c.id)
        .bind(&c.relying_party)
        .bind(&c.payload)
        .bind(&c.min_level)
        .bind(c.created_at)
        .bind(c.expires_at)
        .bind(&c.callback)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM login_challenges WHERE expires_at < $1")
            .bind(c.created_at - 86_400)
            .execute(&mut *tx)
            .await?;
        append_in(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The challenge `id`.
    pub async fn get(&self, id: &str) -> Result<Option<ChallengeRow>, StorageError> {
        let row = sqlx::query(&format!(
            "SELECT {CHALLENGE_COLUMNS} FROM login_challenges WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(challenge_row).transpose()
    }

    /// Up to `limit` pending challenges with a callback whose lifetime ended by `now`, the
    /// oldest first.
    pub async fn expired_with_callback(
        &self,
        now: i64,
        limit: i64,
    ) -> Result<Vec<ChallengeRow>, StorageError> {
        let rows = sqlx::query(&format!(
            "SELECT {CHALLENGE_COLUMNS} FROM login_challenges \
             WHERE status = 'pending' AND callback IS NOT NULL AND expires_at <= $1 \
             ORDER BY expires_at LIMIT $2"
        ))
        .bind(now)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(challenge_row).collect()
    }

    /// Marks a pending challenge whose lifetime ended by `now` as `expired`, with its callback
    /// delivery and its audit row in the same transaction; [`Answered::Lost`] when it was
    /// answered (or expired) meanwhile.
    pub async fn expire(
        &self,
        id: &str,
        now: i64,
        audit: &AuditEntry,
        callback: &NewNotification,
    ) -> Result<Answered, StorageError> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE login_challenges SET status = 'expired', answered_at = $1 \
             WHERE id = $2 AND status = 'pending' AND expires_at <= $3",
        )
        .bind(now)
        .bind(id)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if done == 0 {
            return Ok(Answered::Lost);
        }
        if !insert_in(&mut tx, callback).await? {
            return Ok(Answered::KeyChanged);
        }
        append_in(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(Answered::Yes)
    }

    /// Records the answer if the challenge is still pending and unexpired at `now` and, for an
    /// approval, the certificate is still `valid` in the same transaction (so a revocation
    /// committed meanwhile is never approved), with its callback delivery (`callback`, queued in
    /// the same transaction so a decided challenge always has its delivery).
    pub async fn answer(
        &self,
        id: &str,
        now: i64,
        answer: &Answer,
        audit: &AuditEntry,
        callback: Option<&NewNotification>,
    ) -> Result<Answered, StorageError> {
        let mut tx = self.pool.begin().await?;
        let approve = answer.status == "approved";
        let done = sqlx::query(
            "UPDATE login_challenges SET status = $1, reason = $2, serial = $3, level = $4, subject = $5, \
             channel = $6, answered_at = $7 \
             WHERE id = $8 AND status = 'pending' AND expires_at > $9 \
             AND ($10 = 0 OR EXISTS (SELECT 1 FROM certificates WHERE serial = $11 AND status = 'valid'))",
        )
        .bind(answer.status)
        .bind(&answer.reason)
        .bind(&answer.serial)
        .bind(&answer.level)
        .bind(&answer.subject)
        .bind(&answer.channel)
        .bind(now)
        .bind(id)
        .bind(now)
        .bind(i64::from(approve))
        .bind(&answer.serial)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if done == 0 {
            return Ok(Answered::Lost);
        }
        if let Some(n) = callback {
            if !insert_in(&mut tx, n).await? {
                return Ok(Answered::KeyChanged);
            }
        }
        append_in(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(Answered::Yes)
    }
}
