//! The signing ledger: every signature a CA key is asked for, recorded durably with its audit
//! row before the HSM signs. Group-committed with issued certificates by the issuance path's one
//! writer ([`super::issuance_writer`]).

use super::audit::AuditEntry;
use super::dialect;
use super::issuance_writer::{IssuanceRow, IssuanceWriter};
use super::StorageError;

/// What is about to be signed.
#[derive(Debug, Clone)]
pub struct SigningRecord {
    /// The signing CA's name.
    pub ca_name: String,
    /// Its generation.
    pub ca_generation: i64,
    /// `end_entity`, `ocsp_responder`, `ca`, `root`, `crl`.
    pub kind: String,
    /// Certificate serial (hex) or CRL number.
    pub serial: String,
    /// SHA-256 of the TBS DER (for a CRL: of the digest the CA key signs).
    pub tbs_sha256: Vec<u8>,
}

/// Writes signing records.
#[derive(Clone)]
pub struct SigningLedger {
    writer: IssuanceWriter,
}

impl SigningLedger {
    pub(super) fn new(writer: IssuanceWriter) -> Self {
        Self { writer }
    }

    /// Records `record` and its audit row durably; returns once committed. A duplicate
    /// (same CA, kind and serial) is refused.
    pub async fn record(
        &self,
        record: SigningRecord,
        audit: AuditEntry,
    ) -> Result<(), StorageError> {
        self.writer.write(IssuanceRow::Signing(record), audit).await
    }
}

/// Columns per signing record.
const WIDTH: usize = 6;

/// The signing-record INSERT statements (each ending in `;`) for `rows`, placeholders numbered
/// from `$first`; returns the text and the next free placeholder number.
pub(super) fn insert_sql(rows: usize, first: usize) -> (String, usize) {
    let mut sql = String::new();
    let mut next = first;
    for slice in dialect::insert_slices(rows) {
        sql.push_str(
            "INSERT INTO signing_records (ca_name, ca_generation, kind, serial, tbs_sha256, recorded_at) VALUES ",
        );
        sql.push_str(&dialect::value_rows_from(next, slice.len(), WIDTH));
        sql.push(';');
        next += slice.len() * WIDTH;
    }
    (sql, next)
}

/// Binds one signing record's values, in the column order of the INSERTs.
pub(super) fn bind_record<'q>(
    q: dialect::AnyQuery<'q>,
    r: &'q SigningRecord,
    now: i64,
) -> dialect::AnyQuery<'q> {
    q.bind(&r.ca_name)
        .bind(r.ca_generation)
        .bind(&r.kind)
        .bind(&r.serial)
        .bind(&r.tbs_sha256)
        .bind(now)
}
