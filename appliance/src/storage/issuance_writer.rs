//! The one group-commit writer of the issuance path: signing-ledger records (durable before the
//! HSM is asked) and issued certificates (durable before the caller is answered), each with its
//! audit row, and on SQLite the pre-signed OCSP responses (see [`super::OcspStore::save_responses`]).
//!
//! All three share one writer task, one connection and one transaction per batch: while some
//! requests wait for their ledger record, others wait for their certificate row and the
//! pre-signer for its responses, and one commit (one fsync, one read of the audit chain's tail)
//! answers them all. Two writers, one per table, cost twice the commits and, on SQLite, each
//! connection's page cache was discarded whenever the other had written (the issuance profile
//! showed it as re-reads of the same pages). When the OCSP saves had their own connection, the
//! loser of each race for SQLite's one write lock waited in its busy handler, which sleeps 1 ms
//! and more: at concurrency 1, 0.4 ms per ledger record and 4 ms per save on average, and a
//! third commit per certificate.

use futures_util::future::BoxFuture;
use sqlx::{AnyConnection, AnyPool, Connection};

use super::audit::{self, AuditEntry, ChainTail};
use super::certificates::{self, NewCertificate};
use super::dialect::{self, Backend};
use super::group_commit::GroupCommit;
use super::ocsp::{self, StoredResponse};
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

/// What the writer is asked to commit.
#[derive(Debug)]
// The large variant is the common one (a row per signature and per certificate): boxing it
// would cost an allocation per row to save queue space.
#[allow(clippy::large_enum_variant)]
enum Pending {
    /// A row with its audit entry.
    Row(IssuanceRow, AuditEntry),
    /// Pre-signed OCSP responses (conditional upserts, no audit row).
    Responses(Vec<StoredResponse>),
}

/// The writer's answer to one [`Pending`].
#[derive(Debug)]
enum Committed {
    /// The row and its audit entry are durable.
    Row,
    /// Which of the responses were kept (see [`super::OcspStore::save_responses`]).
    Responses(Vec<bool>),
}

/// A handle to the issuance path's writer task. Cheap to clone.
#[derive(Clone)]
pub(super) struct IssuanceWriter {
    writer: GroupCommit<Pending, Committed>,
}

impl IssuanceWriter {
    /// Spawns the writer task on the current runtime (SQLite: one dedicated connection).
    pub(super) fn start(pool: AnyPool, backend: Backend) -> Self {
        Self {
            writer: GroupCommit::start(pool, backend == Backend::Sqlite, commit_boxed, urgent),
        }
    }

    /// Queues `row` with its audit entry; returns once both are committed (or refused).
    pub(super) async fn write(
        &self,
        row: IssuanceRow,
        audit: AuditEntry,
    ) -> Result<(), StorageError> {
        self.writer
            .write(Pending::Row(row, audit))
            .await
            .map(|_| ())
    }

    /// Queues pre-signed responses (SQLite's path; either engine's commit takes them); returns
    /// which were kept once committed.
    pub(super) async fn save_responses(
        &self,
        responses: Vec<StoredResponse>,
    ) -> Result<Vec<bool>, StorageError> {
        let count = responses.len();
        match self.writer.write(Pending::Responses(responses)).await? {
            Committed::Responses(kept) if kept.len() == count => Ok(kept),
            _ => Err(StorageError::Database(
                "the writer answered a save with a different number of responses".into(),
            )),
        }
    }
}

/// Rows are urgent (a caller waits to sign or to answer); responses can wait for a row's
/// commit (until saved they are signed live on request, see `status::ocsp`).
fn urgent(pending: &Pending) -> bool {
    matches!(pending, Pending::Row(..))
}

fn commit_boxed<'a>(
    conn: &'a mut AnyConnection,
    rows: &'a [Pending],
) -> BoxFuture<'a, Result<Vec<Committed>, StorageError>> {
    Box::pin(commit_batch(conn, rows))
}

async fn commit_batch(
    conn: &mut AnyConnection,
    rows: &[Pending],
) -> Result<Vec<Committed>, StorageError> {
    let started = std::time::Instant::now();
    let batch = Batch::of(rows);
    let kept = if conn.backend_name() == "PostgreSQL" {
        commit_postgres(conn, &batch).await
    } else {
        commit_sqlite(conn, &batch).await
    };
    crate::ops::metrics::db_commit(rows.len(), started.elapsed(), kept.is_ok());
    Ok(answers(rows, kept?))
}

/// An answer per row of a batch, given which of its responses (in order) were kept.
fn answers(rows: &[Pending], kept: Vec<bool>) -> Vec<Committed> {
    let mut kept = kept.into_iter();
    rows.iter()
        .map(|pending| match pending {
            Pending::Row(..) => Committed::Row,
            Pending::Responses(responses) => {
                Committed::Responses(kept.by_ref().take(responses.len()).collect())
            }
        })
        .collect()
}

/// A batch split by table; audit entries stay in arrival order, responses too.
struct Batch<'a> {
    signing: Vec<&'a SigningRecord>,
    certificates: Vec<&'a NewCertificate>,
    audits: Vec<&'a AuditEntry>,
    responses: Vec<&'a StoredResponse>,
}

impl<'a> Batch<'a> {
    fn of(rows: &'a [Pending]) -> Self {
        let mut batch = Batch {
            signing: Vec::new(),
            certificates: Vec::new(),
            audits: Vec::with_capacity(rows.len()),
            responses: Vec::new(),
        };
        for pending in rows {
            match pending {
                Pending::Row(IssuanceRow::Signing(r), audit) => {
                    batch.signing.push(r);
                    batch.audits.push(audit);
                }
                Pending::Row(IssuanceRow::Certificate(c), audit) => {
                    batch.certificates.push(c);
                    batch.audits.push(audit);
                }
                Pending::Responses(responses) => batch.responses.extend(responses),
            }
        }
        batch
    }
}

/// SQLite, on the writer's dedicated connection: two round trips to the connection's thread
/// per batch (begin and read the audit tail; every insert and the commit in one text), and a
/// round trip per slice of responses if there are any (the last one commits); which of the
/// responses were kept. The responses come last, so one for a certificate of the same batch
/// finds its row.
async fn commit_sqlite(
    conn: &mut AnyConnection,
    batch: &Batch<'_>,
) -> Result<Vec<bool>, StorageError> {
    let mut chain = audit::sqlite_begin_tail(conn).await?;
    let audits = chain.chain(&batch.audits);
    let (mut sql, next) = signing::insert_sql(batch.signing.len(), 1);
    let (certificate_sql, next) = certificates::insert_sql(batch.certificates.len(), next);
    sql.push_str(&certificate_sql);
    sql.push_str(&audits.sql(next));
    if batch.responses.is_empty() {
        sql.push_str("COMMIT;");
    }
    let now = unix_now();
    let mut q = sqlx::query(&sql);
    for r in &batch.signing {
        q = signing::bind_record(q, r, now);
    }
    for c in &batch.certificates {
        q = certificates::bind_certificate(q, c, now);
    }
    audit::sqlite_finish(conn, audits.bind(q)).await?;
    if batch.responses.is_empty() {
        return Ok(Vec::new());
    }
    ocsp::sqlite_save_and_commit(conn, &batch.responses).await
}

/// PostgreSQL: one transaction, a few multi-row statements per table and a statement per
/// response (each a round trip); which of the responses were kept.
async fn commit_postgres(
    conn: &mut AnyConnection,
    batch: &Batch<'_>,
) -> Result<Vec<bool>, StorageError> {
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
    let kept = ocsp::postgres_save(&mut tx, &batch.responses).await?;
    tx.commit().await?;
    Ok(kept)
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
