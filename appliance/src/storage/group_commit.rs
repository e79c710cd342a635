//! The group-commit writer for rows that must be durable before their caller is answered
//! (issued certificates, the signing ledger): one task per table commits everything waiting, up
//! to [`MAX_BATCH`] rows, in one transaction (one fsync), then answers each caller. A failed
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

/// Commits `rows` in one transaction it begins and ends on the connection (all or nothing; on
/// failure the transaction is rolled back before it returns).
pub type CommitFn<T> =
    for<'a> fn(&'a mut AnyConnection, &'a [T]) -> BoxFuture<'a, Result<(), StorageError>>;

type Done = oneshot::Sender<Result<(), StorageError>>;

/// A handle to one table's writer task.
pub struct GroupCommit<T> {
    writer: mpsc::Sender<(T, Done)>,
}

impl<T> Clone for GroupCommit<T> {
    fn clone(&self) -> Self {
        Self {
            writer: self.writer.clone(),
        }
    }
}

impl<T: Send + Sync + 'static> GroupCommit<T> {
    /// Spawns the writer task committing with `commit`; `dedicated`: keep one connection for
    /// the task's lifetime (SQLite) instead of a pooled one per batch (PostgreSQL).
    pub fn start(pool: AnyPool, dedicated: bool, commit: CommitFn<T>) -> Self {
        let (writer, inbox) = mpsc::channel(4 * MAX_BATCH);
        let conn = if dedicated {
            Writer::Dedicated(pool, None)
        } else {
            Writer::Pooled(pool)
        };
        tokio::spawn(run(conn, inbox, commit));
        Self { writer }
    }

    /// Queues `row`; returns once it is committed (or refused).
    pub async fn write(&self, row: T) -> Result<(), StorageError> {
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
    async fn commit<T>(&mut self, commit: CommitFn<T>, rows: &[T]) -> Result<(), StorageError> {
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

async fn run<T>(mut conn: Writer, mut inbox: mpsc::Receiver<(T, Done)>, commit: CommitFn<T>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while inbox.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let (rows, done): (Vec<T>, Vec<Done>) = std::mem::take(&mut batch).into_iter().unzip();
        match conn.commit(commit, &rows).await {
            Ok(()) => {
                for d in done {
                    let _ = d.send(Ok(()));
                }
            }
            // One bad row must not fail its neighbours: retry them alone.
            Err(_) if rows.len() > 1 => {
                for (row, d) in rows.iter().zip(done) {
                    let _ = d.send(conn.commit(commit, std::slice::from_ref(row)).await);
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
