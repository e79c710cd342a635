//! Short-lived grants opened by a one-time code to a bound phone: certificate downloads
//! (`downloads`) and phone-code logins (`code_logins`). Each is used at most once (a
//! conditional UPDATE from `open`).

use sqlx::Row;

use super::applications::ApplicationRows;
use super::audit::{append_in, AuditEntry};
use super::StorageError;

/// A certificate download to a phone.
#[derive(Debug, Clone)]
pub struct DownloadRow {
    /// `dl_<hex>`.
    pub id: String,
    /// The channel that asked.
    pub channel: String,
    /// The application whose certificate is downloaded.
    pub application_id: String,
    /// `open` or `used`.
    pub status: String,
    /// Unix seconds after which it cannot be completed.
    pub expires_at: i64,
    /// For an account download (`application_id` is then the account id): the profile.
    pub profile: Option<String>,
}

/// A phone-code login.
#[derive(Debug, Clone)]
pub struct CodeLoginRow {
    /// `cl_<hex>`.
    pub id: String,
    /// The channel that asked.
    pub channel: String,
    /// The channel's realm.
    pub realm: String,
    /// The account the phone is bound to (None: none, no code was sent).
    pub account_id: Option<String>,
    /// `open` or `used`.
    pub status: String,
    /// Unix seconds after which it cannot be completed.
    pub expires_at: i64,
}

impl ApplicationRows {
    /// Stores a new open download.
    pub async fn put_download(&self, d: &DownloadRow, now: i64) -> Result<(), StorageError> {
        sqlx::query(
            "INSERT INTO downloads (id, channel, application_id, status, created_at, expires_at, profile) \
             VALUES ($1, $2, $3, 'open', $4, $5, $6)",
        )
        .bind(&d.id)
        .bind(&d.channel)
        .bind(&d.application_id)
        .bind(now)
        .bind(d.expires_at)
        .bind(&d.profile)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The download `id`, if any.
    pub async fn download(&self, id: &str) -> Result<Option<DownloadRow>, StorageError> {
        let row = sqlx::query(
            "SELECT id, channel, application_id, status, expires_at, profile FROM downloads WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(DownloadRow {
                id: r.try_get("id")?,
                channel: r.try_get("channel")?,
                application_id: r.try_get("application_id")?,
                status: r.try_get("status")?,
                expires_at: r.try_get("expires_at")?,
                profile: r.try_get("profile")?,
            })
        })
        .transpose()
    }

    /// Marks an open download used; false when it was not open any more.
    pub async fn use_download(&self, id: &str, now: i64) -> Result<bool, StorageError> {
        let done = sqlx::query(
            "UPDATE downloads SET status = 'used', finished_at = $1 WHERE id = $2 AND status = 'open'",
        )
        .bind(now)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Stores a new open code login.
    pub async fn put_code_login(&self, c: &CodeLoginRow, now: i64) -> Result<(), StorageError> {
        sqlx::query(
            "INSERT INTO code_logins (id, channel, realm, account_id, status, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, 'open', $5, $6)",
        )
        .bind(&c.id)
        .bind(&c.channel)
        .bind(&c.realm)
        .bind(&c.account_id)
        .bind(now)
        .bind(c.expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The code login `id`, if any.
    pub async fn code_login(&self, id: &str) -> Result<Option<CodeLoginRow>, StorageError> {
        let row = sqlx::query(
            "SELECT id, channel, realm, account_id, status, expires_at FROM code_logins WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(CodeLoginRow {
                id: r.try_get("id")?,
                channel: r.try_get("channel")?,
                realm: r.try_get("realm")?,
                account_id: r.try_get("account_id")?,
                status: r.try_get("status")?,
                expires_at: r.try_get("expires_at")?,
            })
        })
        .transpose()
    }

    /// Marks an open code login used, with its audit row in the same transaction; false (and
    /// nothing written) when it was not open any more.
    pub async fn use_code_login(
        &self,
        id: &str,
        now: i64,
        audit: &AuditEntry,
    ) -> Result<bool, StorageError> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE code_logins SET status = 'used', finished_at = $1 WHERE id = $2 AND status = 'open'",
        )
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        append_in(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// The level of account `id` (None: registered only or no such account).
    pub async fn account_level(&self, id: &str) -> Result<Option<String>, StorageError> {
        let level: Option<Option<String>> =
            sqlx::query_scalar("SELECT level FROM accounts WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(level.flatten())
    }
}
