//! Issued certificates, written by a group-commit writer.
//!
//! Concurrent issuances hand their rows to one writer task, which commits everything waiting in a
//! single transaction (certificate rows and their audit rows together) and only then answers each
//! caller. One fsync then covers many certificates, and no certificate is returned before it is
//! durable.

use futures_util::future::BoxFuture;
use sqlx::{AnyConnection, AnyPool, Connection, Row};

use super::audit::{self, AuditEntry, ChainTail};
use super::dialect::{self, Backend};
use super::group_commit::GroupCommit;
use super::{unix_now, StorageError};

/// A signed certificate to store.
#[derive(Debug, Clone)]
pub struct NewCertificate {
    /// Serial as lowercase hex of the DER INTEGER content (no leading zero byte).
    pub serial: String,
    /// Issuing CA row id.
    pub ca_id: i64,
    /// Profile name.
    pub profile: String,
    /// Channel that requested it, if any.
    pub channel: Option<String>,
    /// Subject DN (RFC 4514).
    pub subject_dn: String,
    /// notBefore, unix seconds.
    pub not_before: i64,
    /// notAfter, unix seconds.
    pub not_after: i64,
    /// The certificate DER.
    pub der: Vec<u8>,
    /// The CRL shard its CRL distribution point names (a `crl_shards` profile), else `None`.
    pub crl_shard: Option<i64>,
}

/// A stored certificate and its status.
#[derive(Debug, Clone)]
pub struct CertificateRecord {
    /// Serial (hex).
    pub serial: String,
    /// Issuing CA row id.
    pub ca_id: i64,
    /// Profile name.
    pub profile: String,
    /// Requesting channel.
    pub channel: Option<String>,
    /// notAfter, unix seconds.
    pub not_after: i64,
    /// DER.
    pub der: Vec<u8>,
    /// `valid`, `revoked` or `hold`.
    pub status: String,
    /// When revoked, unix seconds.
    pub revoked_at: Option<i64>,
    /// RFC 5280 CRLReason code.
    pub revocation_reason: Option<i64>,
}

type Pending = (NewCertificate, AuditEntry);

/// Writes and reads issued certificates.
#[derive(Clone)]
pub struct CertificateStore {
    pool: AnyPool,
    writer: GroupCommit<Pending>,
}

impl CertificateStore {
    pub(super) fn new(pool: AnyPool, backend: Backend) -> Self {
        let writer = GroupCommit::start(pool.clone(), backend == Backend::Sqlite, commit_boxed);
        Self { pool, writer }
    }

    /// Stores `cert` and its audit entry durably; returns once committed.
    pub async fn insert(
        &self,
        cert: NewCertificate,
        audit: AuditEntry,
    ) -> Result<(), StorageError> {
        self.writer.write((cert, audit)).await
    }

    /// Looks a certificate up by serial (lowercase hex).
    pub async fn get(&self, serial: &str) -> Result<Option<CertificateRecord>, StorageError> {
        let row = sqlx::query(
            "SELECT serial, ca_id, profile, channel, not_after, der, status, revoked_at, revocation_reason
             FROM certificates WHERE serial = $1",
        )
        .bind(serial)
        .fetch_optional(&self.pool)
        .await?;
        let Some(r) = row else { return Ok(None) };
        Ok(Some(CertificateRecord {
            serial: r.try_get("serial")?,
            ca_id: r.try_get("ca_id")?,
            profile: r.try_get("profile")?,
            channel: r.try_get("channel")?,
            not_after: r.try_get("not_after")?,
            der: r.try_get("der")?,
            status: r.try_get("status")?,
            revoked_at: r.try_get("revoked_at")?,
            revocation_reason: r.try_get("revocation_reason")?,
        }))
    }
}

fn commit_boxed<'a>(
    conn: &'a mut AnyConnection,
    rows: &'a [Pending],
) -> BoxFuture<'a, Result<(), StorageError>> {
    Box::pin(commit_batch(conn, rows))
}

async fn commit_batch(conn: &mut AnyConnection, rows: &[Pending]) -> Result<(), StorageError> {
    let started = std::time::Instant::now();
    let result = if conn.backend_name() == "PostgreSQL" {
        commit_rows(conn, rows).await
    } else {
        commit_rows_sqlite(conn, rows).await
    };
    crate::ops::metrics::db_commit(rows.len(), started.elapsed(), result.is_ok());
    result
}

/// Columns per certificate row.
const WIDTH: usize = 10;

/// The certificate INSERT statements (each ending in `;`) for `rows`, numbered from `$1`;
/// returns the text and the number of placeholders used.
fn insert_sql(rows: usize) -> (String, usize) {
    let mut sql = String::new();
    let mut next = 1;
    for slice in dialect::insert_slices(rows) {
        sql.push_str(
            "INSERT INTO certificates (serial, ca_id, profile, channel, subject_dn, not_before, not_after, der, issued_at, crl_shard) VALUES ",
        );
        sql.push_str(&dialect::value_rows_from(next, slice.len(), WIDTH));
        sql.push(';');
        next += slice.len() * WIDTH;
    }
    (sql, next - 1)
}

/// SQLite, on the writer's dedicated connection: two round trips to the connection's thread
/// per batch (begin and read the audit tail; every insert and the commit in one text).
async fn commit_rows_sqlite(
    conn: &mut AnyConnection,
    rows: &[Pending],
) -> Result<(), StorageError> {
    let mut chain = audit::sqlite_begin_tail(conn).await?;
    let entries: Vec<&AuditEntry> = rows.iter().map(|(_, a)| a).collect();
    let audits = chain.chain(&entries);
    let (mut sql, used) = insert_sql(rows.len());
    sql.push_str(&audits.sql(used + 1));
    sql.push_str("COMMIT;");
    let issued_at = unix_now();
    let mut q = sqlx::query(&sql);
    for (cert, _) in rows {
        q = bind_certificate(q, cert, issued_at);
    }
    audit::sqlite_finish(conn, audits.bind(q)).await
}

/// Binds one certificate row's values, in the column order of the INSERTs.
fn bind_certificate<'q>(
    q: dialect::AnyQuery<'q>,
    cert: &'q NewCertificate,
    issued_at: i64,
) -> dialect::AnyQuery<'q> {
    q.bind(&cert.serial)
        .bind(cert.ca_id)
        .bind(&cert.profile)
        .bind(&cert.channel)
        .bind(&cert.subject_dn)
        .bind(cert.not_before)
        .bind(cert.not_after)
        .bind(&cert.der)
        .bind(issued_at)
        .bind(cert.crl_shard)
}

async fn commit_rows(conn: &mut AnyConnection, rows: &[Pending]) -> Result<(), StorageError> {
    let mut tx = conn.begin().await?;
    let issued_at = unix_now();
    let mut chain = ChainTail::open(&mut tx).await?;
    // A few multi-row statements per batch, not two per certificate: each statement is a
    // round trip to SQLite's connection thread (two thread hand-offs).
    for slice in super::dialect::insert_slices(rows.len()) {
        let part = &rows[slice];
        let sql = format!(
            "INSERT INTO certificates (serial, ca_id, profile, channel, subject_dn, not_before, not_after, der, issued_at, crl_shard)
             VALUES {}",
            super::dialect::value_rows(part.len(), 10)
        );
        let mut q = sqlx::query(&sql);
        for (cert, _) in part {
            q = bind_certificate(q, cert, issued_at);
        }
        q.execute(&mut *tx).await?;
    }
    let audits: Vec<&AuditEntry> = rows.iter().map(|(_, a)| a).collect();
    chain.append_all(&mut tx, &audits).await?;
    tx.commit().await?;
    Ok(())
}
