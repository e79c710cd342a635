//! The signing ledger: every signature a CA key is asked for, recorded durably with its audit
//! row before the HSM signs. Group-committed like issued certificates (one fsync, many rows).

use futures_util::future::BoxFuture;
use sqlx::AnyPool;

use super::audit::{AuditEntry, ChainTail};
use super::group_commit::GroupCommit;
use super::{unix_now, StorageError};

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

type Pending = (SigningRecord, AuditEntry);

/// Writes signing records.
#[derive(Clone)]
pub struct SigningLedger {
    writer: GroupCommit<Pending>,
}

impl SigningLedger {
    pub(super) fn new(pool: AnyPool) -> Self {
        Self {
            writer: GroupCommit::start(pool, commit_boxed),
        }
    }

    /// Records `record` and its audit row durably; returns once committed. A duplicate
    /// (same CA, kind and serial) is refused.
    pub async fn record(
        &self,
        record: SigningRecord,
        audit: AuditEntry,
    ) -> Result<(), StorageError> {
        self.writer.write((record, audit)).await
    }
}

fn commit_boxed<'a>(
    pool: &'a AnyPool,
    rows: &'a [Pending],
) -> BoxFuture<'a, Result<(), StorageError>> {
    Box::pin(commit_batch(pool, rows))
}

async fn commit_batch(pool: &AnyPool, rows: &[Pending]) -> Result<(), StorageError> {
    let mut tx = pool.begin().await?;
    let now = unix_now();
    let mut chain = ChainTail::open(&mut tx).await?;
    // A few multi-row statements per batch (each one round trip to the database).
    for slice in super::dialect::insert_slices(rows.len()) {
        let part = &rows[slice];
        let sql = format!(
            "INSERT INTO signing_records (ca_name, ca_generation, kind, serial, tbs_sha256, recorded_at)
             VALUES {}",
            super::dialect::value_rows(part.len(), 6)
        );
        let mut q = sqlx::query(&sql);
        for (r, _) in part {
            q = q
                .bind(&r.ca_name)
                .bind(r.ca_generation)
                .bind(&r.kind)
                .bind(&r.serial)
                .bind(&r.tbs_sha256)
                .bind(now);
        }
        q.execute(&mut *tx).await?;
    }
    let audits: Vec<&AuditEntry> = rows.iter().map(|(_, a)| a).collect();
    chain.append_all(&mut tx, &audits).await?;
    tx.commit().await?;
    Ok(())
}
