//! The one group-commit writer of the issuance path: signing-ledger records (durable before the
//! HSM is asked) and issued certificates (durable before the caller is answered), each with its
//! audit row.
//!
//! Both kinds share one writer task, one connection and one transaction per batch: while some
//! requests wait for their ledger record, others wait for their certificate row, and one commit
//! (one fsync, one read of the audit chain's tail) answers both. Two writers, one per table, cost
//! twice the commits and, on SQLite, each connection's page cache was discarded whenever the
//! other had written (the issuance profile showed it as re-reads of the same pages).

use futures_util::future::BoxFuture;
use sqlx::{AnyConnection, AnyPool, Connection};

use super::audit::{self, AuditEntry, ChainTail};
use super::certificates::{self, NewCertificate};
use super::dialect::{self, Backend};
use super::group_commit::GroupCommit;
use super::signing::{self, SigningRecord};
use super::{unix_now, StorageError};

/// A row of the issuance path that must be durable before its caller goes on.
#[derive(Debug)]
pub(super) enum IssuanceRow {
    /// A signature about to be asked of a CA key.
    Signing(SigningRecord),
    /// A signed certificate about to be returned.
    Certificate(NewCertificate),
}

type Pending = (IssuanceRow, AuditEntry);

/// A handle to the issuance path's writer task. Cheap to clone.
#[derive(Clone)]
pub(super) struct IssuanceWriter {
    writer: GroupCommit<Pending>,
}

impl IssuanceWriter {
    /// Spawns the writer task on the current runtime (SQLite: one dedicated connection).
    pub(super) fn start(pool: AnyPool, backend: Backend) -> Self {
        Self {
            writer: GroupCommit::start(pool, backend == Backend::Sqlite, commit_boxed),
        }
    }

    /// Queues `row` with its audit entry; returns once both are committed (or refused).
    pub(super) async fn write(
        &self,
        row: IssuanceRow,
        audit: AuditEntry,
    ) -> Result<(), StorageError> {
        self.writer.write((row, audit)).await
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
    let batch = Batch::of(rows);
    let result = if conn.backend_name() == "PostgreSQL" {
        commit_postgres(conn, &batch).await
    } else {
        commit_sqlite(conn, &batch).await
    };
    crate::ops::metrics::db_commit(rows.len(), started.elapsed(), result.is_ok());
    result
}

/// A batch split by table; audit entries stay in arrival order.
struct Batch<'a> {
    signing: Vec<&'a SigningRecord>,
    certificates: Vec<&'a NewCertificate>,
    audits: Vec<&'a AuditEntry>,
}

impl<'a> Batch<'a> {
    fn of(rows: &'a [Pending]) -> Self {
        let mut batch = Batch {
            signing: Vec::new(),
            certificates: Vec::new(),
            audits: Vec::with_capacity(rows.len()),
        };
        for (row, audit) in rows {
            match row {
                IssuanceRow::Signing(r) => batch.signing.push(r),
                IssuanceRow::Certificate(c) => batch.certificates.push(c),
            }
            batch.audits.push(audit);
        }
        batch
    }
}

/// SQLite, on the writer's dedicated connection: two round trips to the connection's thread
/// per batch (begin and read the audit tail; every insert and the commit in one text).
async fn commit_sqlite(conn: &mut AnyConnection, batch: &Batch<'_>) -> Result<(), StorageError> {
    let mut chain = audit::sqlite_begin_tail(conn).await?;
    let audits = chain.chain(&batch.audits);
    let (mut sql, next) = signing::insert_sql(batch.signing.len(), 1);
    let (certificate_sql, next) = certificates::insert_sql(batch.certificates.len(), next);
    sql.push_str(&certificate_sql);
    sql.push_str(&audits.sql(next));
    sql.push_str("COMMIT;");
    let now = unix_now();
    let mut q = sqlx::query(&sql);
    for r in &batch.signing {
        q = signing::bind_record(q, r, now);
    }
    for c in &batch.certificates {
        q = certificates::bind_certificate(q, c, now);
    }
    audit::sqlite_finish(conn, audits.bind(q)).await
}

/// PostgreSQL: one transaction, a few multi-row statements per table (each a round trip).
async fn commit_postgres(conn: &mut AnyConnection, batch: &Batch<'_>) -> Result<(), StorageError> {
    let mut tx = conn.begin().await?;
    let now = unix_now();
    let mut chain = ChainTail::open(&mut tx).await?;
    insert_postgres(
        &mut tx,
        &batch.signing,
        now,
        signing::insert_sql,
        signing::bind_record,
    )
    .await?;
    insert_postgres(
        &mut tx,
        &batch.certificates,
        now,
        certificates::insert_sql,
        certificates::bind_certificate,
    )
    .await?;
    chain.append_all(&mut tx, &batch.audits).await?;
    tx.commit().await?;
    Ok(())
}

/// Inserts one table's rows of a batch on PostgreSQL: a multi-row INSERT per slice.
async fn insert_postgres<T>(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    rows: &[&T],
    now: i64,
    insert_sql: fn(usize, usize) -> (String, usize),
    bind: for<'q> fn(dialect::AnyQuery<'q>, &'q T, i64) -> dialect::AnyQuery<'q>,
) -> Result<(), StorageError> {
    for slice in dialect::insert_slices(rows.len()) {
        let part = &rows[slice];
        let (sql, _) = insert_sql(part.len(), 1);
        let mut q = sqlx::query(sql.trim_end_matches(';'));
        for row in part {
            q = bind(q, row, now);
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}
