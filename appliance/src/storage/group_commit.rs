//! The group-commit writer for rows that must be durable before their caller is answered
//! (issued certificates, the signing ledger): one task per table commits everything waiting, up
//! to [`MAX_BATCH`] rows, in one transaction (one fsync), then answers each caller. A failed
//! batch is retried row by row, so one bad row (a duplicate serial) fails alone.

use futures_util::future::BoxFuture;
use sqlx::AnyPool;
use tokio::sync::{mpsc, oneshot};

use super::StorageError;

/// Largest number of rows committed in one transaction.
pub const MAX_BATCH: usize = 256;

/// Commits `rows` in one transaction (all or nothing).
pub type CommitFn<T> = for<'a> fn(&'a AnyPool, &'a [T]) -> BoxFuture<'a, Result<(), StorageError>>;

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
    /// Spawns the writer task committing with `commit`.
    pub fn start(pool: AnyPool, commit: CommitFn<T>) -> Self {
        let (writer, inbox) = mpsc::channel(4 * MAX_BATCH);
        tokio::spawn(run(pool, inbox, commit));
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

async fn run<T>(pool: AnyPool, mut inbox: mpsc::Receiver<(T, Done)>, commit: CommitFn<T>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while inbox.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let (rows, done): (Vec<T>, Vec<Done>) = std::mem::take(&mut batch).into_iter().unzip();
        match commit(&pool, &rows).await {
            Ok(()) => {
                for d in done {
                    let _ = d.send(Ok(()));
                }
            }
            // One bad row must not fail its neighbours: retry them alone.
            Err(_) if rows.len() > 1 => {
                for (row, d) in rows.iter().zip(done) {
                    let _ = d.send(commit(&pool, std::slice::from_ref(row)).await);
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
