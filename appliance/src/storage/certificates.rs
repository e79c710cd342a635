//! Issued certificates, written by the issuance path's group-commit writer.
//!
//! Concurrent issuances hand their rows to one writer task ([`super::issuance_writer`]), which
//! commits everything waiting in a single transaction (certificate rows and their audit rows
//! together, with the signing records of other issuances) and only then answers each caller. One
//! fsync then covers many certificates, and no certificate is returned before it is durable.

use sqlx::{AnyPool, Row};

use super::audit::AuditEntry;
use super::dialect;
use super::issuance_writer::{IssuanceRow, IssuanceWriter};
use super::StorageError;

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

/// Writes and reads issued certificates.
#[derive(Clone)]
pub struct CertificateStore {
    pool: AnyPool,
    writer: IssuanceWriter,
}

impl CertificateStore {
    pub(super) fn new(pool: AnyPool, writer: IssuanceWriter) -> Self {
        Self { pool, writer }
    }

    /// Stores `cert` and its audit entry durably; returns once committed.
    pub async fn insert(
        &self,
        cert: NewCertificate,
        audit: AuditEntry,
    ) -> Result<(), StorageError> {
        self.writer
            .write(IssuanceRow::Certificate(cert), audit)
            .await
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

/// Columns per certificate row.
const WIDTH: usize = 10;

/// The certificate INSERT statements (each ending in `;`) for `rows`, placeholders numbered
/// from `$first`; returns the text and the next free placeholder number.
pub(super) fn insert_sql(rows: usize, first: usize) -> (String, usize) {
    let mut sql = String::new();
    let mut next = first;
    for slice in dialect::insert_slices(rows) {
        sql.push_str(
            "INSERT INTO certificates (serial, ca_id, profile, channel, subject_dn, not_before, not_after, der, issued_at, crl_shard) VALUES ",
        );
        sql.push_str(&dialect::value_rows_from(next, slice.len(), WIDTH));
        sql.push(';');
        next += slice.len() * WIDTH;
    }
    (sql, next)
}

/// Binds one certificate row's values, in the column order of the INSERTs.
pub(super) fn bind_certificate<'q>(
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
