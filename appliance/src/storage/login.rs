//! Login challenges of relying parties: created, answered once (approved or refused), read.

use sqlx::{AnyPool, Row};

use super::audit::{append_in, AuditEntry};
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
            "INSERT INTO login_challenges (id, relying_party, payload, min_level, status, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, 'pending', $5, $6)",
        )
        .bind(&c.id)
        .bind(&c.relying_party)
        .bind(&c.payload)
        .bind(&c.min_level)
        .bind(c.created_at)
        .bind(c.expires_at)
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
        let row = sqlx::query(
            "SELECT id, relying_party, payload, min_level, status, reason, serial, level, subject, expires_at \
             FROM login_challenges WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(r) = row else { return Ok(None) };
        Ok(Some(ChallengeRow {
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
        }))
    }

    /// Records the answer if the challenge is still pending and unexpired at `now` and, for an
    /// approval, the certificate is still `valid` in the same transaction (so a revocation
    /// committed meanwhile is never approved). False when nothing was written.
    pub async fn answer(
        &self,
        id: &str,
        now: i64,
        answer: &Answer,
        audit: &AuditEntry,
    ) -> Result<bool, StorageError> {
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
            return Ok(false);
        }
        append_in(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(true)
    }
}
