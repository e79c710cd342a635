//! The group-commit writer for rows that must be durable before their caller is answered
//! (the issuance path's: see [`super::issuance_writer`]): one task commits everything waiting,
//! up to [`MAX_BATCH`] rows, in one transaction (one fsync), then answers each caller. A failed
//! batch is retried row by row, so one bad row (a duplicate serial) fails alone.
//!
//! On SQLite the task keeps one dedicated connection (taken from the pool once and detached
//! from it), so a batch costs no pool acquisition and no liveness ping; on PostgreSQL it takes
//! a pooled connection per batch. The commit function owns the whole transaction on it.

use futures_util::future::BoxFuture;
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AnyPool};
use tokio::sync::{mpsc, oneshot};

use super::StorageError;

/// Largest number of rows committed in one transaction.
pub const MAX_BATCH: usize = 256;

/// How long rows that can wait (see [`GroupCommit::start`]) wait for an urgent one to share
/// its commit, when nothing urgent is queued: at concurrency 1 the next issuance's ledger
/// record comes within it, and the pre-signed responses of the last one ride on its commit
/// instead of costing a commit (an fsync) of their own.
pub const SHARE_WAIT: std::time::Duration = std::time::Duration::from_millis(3);

/// Whether a row must be committed as soon as possible (`true`) or can wait [`SHARE_WAIT`].
pub type UrgentFn<T> = fn(&T) -> bool;

/// Commits `rows` in one transaction it begins and ends on the connection (all or nothing; on
/// failure the transaction is rolled back before it returns); an answer per row, in order.
pub type CommitFn<T, R> =
    for<'a> fn(&'a mut AnyConnection, &'a [T]) -> BoxFuture<'a, Result<Vec<R>, StorageError>>;

type Done<R> = oneshot::Sender<Result<R, StorageError>>;

/// A handle to a writer task committing rows of type `T`, answering each with an `R`.
pub struct GroupCommit<T, R> {
    writer: mpsc::Sender<(T, Done<R>)>,
}

impl<T, R> Clone for GroupCommit<T, R> {
    fn clone(&self) -> Self {
        Self {
            writer: self.writer.clone(),
        }
    }
}

impl<T: Send + Sync + 'static, R: Send + 'static> GroupCommit<T, R> {
    /// Spawns the writer task committing with `commit`; `dedicated`: keep one connection for
    /// the task's lifetime (SQLite) instead of a pooled one per batch (PostgreSQL); `urgent`
    /// says which rows cannot wait for company.
    pub fn start(
        pool: AnyPool,
        dedicated: bool,
        commit: CommitFn<T, R>,
        urgent: UrgentFn<T>,
    ) -> Self {
        let (writer, inbox) = mpsc::channel(4 * MAX_BATCH);
        let conn = if dedicated {
            Writer::Dedicated(pool, None)
        } else {
            Writer::Pooled(pool)
        };
        tokio::spawn(run(conn, inbox, commit, urgent));
        Self { writer }
    }

    /// Queues `row`; returns its answer once it is committed (or refused).
    pub async fn write(&self, row: T) -> Result<R, StorageError> {
        let (done, wait) = oneshot::channel();
        self.writer
            .send((row, done))
            .await
            .map_err(|_| StorageError::WriterStopped)?;
        wait.await.map_err(|_| StorageError::WriterStopped)?
    }
}

/// Where the writer's connection comes from.
enum Writer {
    /// A pooled connection per batch.
    Pooled(AnyPool),
    /// One connection detached from the pool, opened on first use and reopened after a failure.
    Dedicated(AnyPool, Option<AnyConnection>),
}

/// A connection for one commit.
enum Lease<'a> {
    Pooled(PoolConnection<Any>),
    Dedicated(&'a mut AnyConnection),
}

impl Writer {
    async fn lease(&mut self) -> Result<Lease<'_>, StorageError> {
        match self {
            Writer::Pooled(pool) => Ok(Lease::Pooled(pool.acquire().await?)),
            Writer::Dedicated(pool, slot) => {
                let conn = match slot {
                    Some(conn) => conn,
                    None => slot.insert(pool.acquire().await?.detach()),
                };
                Ok(Lease::Dedicated(conn))
            }
        }
    }

    /// Commits `rows` with `commit`; a failed commit drops a dedicated connection (it is
    /// reopened for the next batch), so no half-finished state outlives the failure.
    async fn commit<T, R>(
        &mut self,
        commit: CommitFn<T, R>,
        rows: &[T],
    ) -> Result<Vec<R>, StorageError> {
        let result = match self.lease().await? {
            Lease::Pooled(mut conn) => commit(&mut conn, rows).await,
            Lease::Dedicated(conn) => commit(conn, rows).await,
        };
        if result.is_err() {
            if let Writer::Dedicated(_, slot) = self {
                *slot = None;
            }
        }
        result
    }
}

async fn run<T, R>(
    mut conn: Writer,
    mut inbox: mpsc::Receiver<(T, Done<R>)>,
    commit: CommitFn<T, R>,
    urgent: UrgentFn<T>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while inbox.recv_many(&mut batch, MAX_BATCH).await > 0 {
        if !batch.iter().any(|(row, _)| urgent(row)) {
            // Cancel-safe: a row received before the timeout is in `batch`.
            let room = MAX_BATCH - batch.len();
            let more = inbox.recv_many(&mut batch, room);
            let _ = tokio::time::timeout(SHARE_WAIT, more).await;
        }
        let (rows, done): (Vec<T>, Vec<Done<R>>) = std::mem::take(&mut batch).into_iter().unzip();
        match conn.commit(commit, &rows).await {
            Ok(answers) if answers.len() == done.len() => {
                for (d, answer) in done.into_iter().zip(answers) {
                    let _ = d.send(Ok(answer));
                }
            }
            Ok(_) => {
                for d in done {
                    let _ = d.send(Err(StorageError::Database(
                        "the writer's commit answered a different number of rows".into(),
                    )));
                }
            }
            // One bad row must not fail its neighbours: retry them alone.
            Err(_) if rows.len() > 1 => {
                for (row, d) in rows.iter().zip(done) {
                    let alone = conn.commit(commit, std::slice::from_ref(row)).await;
                    let _ = d.send(alone.and_then(|mut answers| {
                        answers.pop().ok_or_else(|| {
                            StorageError::Database("the writer's commit answered no row".into())
                        })
                    }));
                }
            }
            Err(e) => {
                for d in done {
                    let _ = d.send(Err(StorageError::Database(e.to_string())));
                }
            }
        }
    }
}
