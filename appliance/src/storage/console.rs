//! The operator console's read queries: certificate search, a certificate's history, the newest
//! audit rows. Read-only; every change goes through the services the JSON API uses.

use sqlx::{AnyPool, Row};

use super::{AuditRow, StorageError};

/// How many rows one console page shows at most.
pub const PAGE_ROWS: i64 = 200;

/// A certificate search (every field optional; all given ones must match).
#[derive(Debug, Default, Clone)]
pub struct CertificateQuery {
    /// Serial or its prefix (lowercase hex).
    pub serial: Option<String>,
    /// Channel name.
    pub channel: Option<String>,
    /// `valid`, `revoked` or `hold`.
    pub status: Option<String>,
    /// Issued at or after (unix seconds).
    pub issued_from: Option<i64>,
    /// Issued before (unix seconds).
    pub issued_to: Option<i64>,
}

/// One certificate in a search result.
#[derive(Debug, Clone)]
pub struct CertificateSummary {
    /// Serial, lowercase hex.
    pub serial: String,
    /// Profile.
    pub profile: String,
    /// Channel that requested it.
    pub channel: Option<String>,
    /// Subject DN as issued (the console masks it).
    pub subject_dn: String,
    /// Unix seconds.
    pub issued_at: i64,
    /// Unix seconds.
    pub not_after: i64,
    /// `valid`, `revoked` or `hold`.
    pub status: String,
    /// RFC 5280 reason code when revoked or held.
    pub revocation_reason: Option<i64>,
}

/// Console queries over the pool.
#[derive(Clone)]
pub struct ConsoleRows {
    pool: AnyPool,
}

impl ConsoleRows {
    pub(super) fn new(pool: AnyPool) -> Self {
        Self { pool }
    }

    /// Certificates matching `q`, newest first, at most [`PAGE_ROWS`].
    pub async fn search(
        &self,
        q: &CertificateQuery,
    ) -> Result<Vec<CertificateSummary>, StorageError> {
        let prefix = q.serial.as_ref().map(|s| format!("{s}%"));
        let rows = sqlx::query(
            "SELECT serial, profile, channel, subject_dn, issued_at, not_after, status,
                    revocation_reason
             FROM certificates
             WHERE ($1 IS NULL OR serial LIKE $1)
               AND ($2 IS NULL OR channel = $2)
               AND ($3 IS NULL OR status = $3)
               AND ($4 IS NULL OR issued_at >= $4)
               AND ($5 IS NULL OR issued_at < $5)
             ORDER BY issued_at DESC, serial LIMIT $6",
        )
        .bind(prefix)
        .bind(&q.channel)
        .bind(&q.status)
        .bind(q.issued_from)
        .bind(q.issued_to)
        .bind(PAGE_ROWS)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(CertificateSummary {
                    serial: r.try_get("serial")?,
                    profile: r.try_get("profile")?,
                    channel: r.try_get("channel")?,
                    subject_dn: r.try_get("subject_dn")?,
                    issued_at: r.try_get("issued_at")?,
                    not_after: r.try_get("not_after")?,
                    status: r.try_get("status")?,
                    revocation_reason: r.try_get("revocation_reason")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StorageError::from)
    }

    /// Audit rows about `target` (a serial), oldest first.
    pub async fn history(&self, target: &str) -> Result<Vec<AuditRow>, StorageError> {
        self.audit_rows(
            "SELECT seq, at, actor, action, target, detail, prev_hash, hash FROM audit_log
             WHERE target = $1 ORDER BY seq LIMIT $2",
            Some(target),
        )
        .await
    }

    /// The newest audit rows, newest first.
    pub async fn recent_audit(&self) -> Result<Vec<AuditRow>, StorageError> {
        self.audit_rows(
            "SELECT seq, at, actor, action, target, detail, prev_hash, hash FROM audit_log
             WHERE $1 IS NULL ORDER BY seq DESC LIMIT $2",
            None,
        )
        .await
    }

    async fn audit_rows(
        &self,
        sql: &str,
        target: Option<&str>,
    ) -> Result<Vec<AuditRow>, StorageError> {
        let rows = sqlx::query(sql)
            .bind(target)
            .bind(PAGE_ROWS)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(AuditRow::from_row)
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StorageError::from)
    }
}
