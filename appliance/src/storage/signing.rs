//! The signing ledger: every signature a CA key is asked for, recorded durably with its audit
//! row before the HSM signs. Group-committed like issued certificates (one fsync, many rows).

use futures_util::future::BoxFuture;
use sqlx::{AnyConnection, AnyPool, Connection};

use super::audit::{self, AuditEntry, ChainTail};
use super::dialect::{self, Backend};
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
    pub(super) fn new(pool: AnyPool, backend: Backend) -> Self {
        Self {
            writer: GroupCommit::start(pool, backend == Backend::Sqlite, commit_boxed),
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
    conn: &'a mut AnyConnection,
    rows: &'a [Pending],
) -> BoxFuture<'a, Result<(), StorageError>> {
    if conn.backend_name() == "PostgreSQL" {
        Box::pin(commit_batch(conn, rows))
    } else {
        Box::pin(commit_batch_sqlite(conn, rows))
    }
}

/// Columns per signing record.
const WIDTH: usize = 6;

/// SQLite, on the writer's dedicated connection: two round trips to the connection's thread
/// per batch (begin and read the audit tail; every insert and the commit in one text).
async fn commit_batch_sqlite(
    conn: &mut AnyConnection,
    rows: &[Pending],
) -> Result<(), StorageError> {
    let mut chain = audit::sqlite_begin_tail(conn).await?;
    let entries: Vec<&AuditEntry> = rows.iter().map(|(_, a)| a).collect();
    let audits = chain.chain(&entries);
    let mut sql = String::new();
    let mut next = 1;
    for slice in dialect::insert_slices(rows.len()) {
        sql.push_str(
            "INSERT INTO signing_records (ca_name, ca_generation, kind, serial, tbs_sha256, recorded_at) VALUES ",
        );
        sql.push_str(&dialect::value_rows_from(next, slice.len(), WIDTH));
        sql.push(';');
        next += slice.len() * WIDTH;
    }
    sql.push_str(&audits.sql(next));
    sql.push_str("COMMIT;");
    let now = unix_now();
    let mut q = sqlx::query(&sql);
    for (r, _) in rows {
        q = bind_record(q, r, now);
    }
    audit::sqlite_finish(conn, audits.bind(q)).await
}

/// Binds one signing record's values, in the column order of the INSERTs.
fn bind_record<'q>(
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

async fn commit_batch(conn: &mut AnyConnection, rows: &[Pending]) -> Result<(), StorageError> {
    let mut tx = conn.begin().await?;
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
            q = bind_record(q, r, now);
        }
        q.execute(&mut *tx).await?;
    }
    let audits: Vec<&AuditEntry> = rows.iter().map(|(_, a)| a).collect();
    chain.append_all(&mut tx, &audits).await?;
    tx.commit().await?;
    Ok(())
}
