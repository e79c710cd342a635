//! The signing ledger: every signature a CA key is asked for, recorded durably with its audit
//! row before the HSM signs. Group-committed like issued certificates (one fsync, many rows).

use sqlx::SqlitePool;
use tokio::sync::{mpsc, oneshot};

use super::audit::{append_in, AuditEntry};
use super::{unix_now, StorageError};

/// Largest number of records committed in one transaction.
const MAX_BATCH: usize = 256;

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

type Pending = (
    SigningRecord,
    AuditEntry,
    oneshot::Sender<Result<(), StorageError>>,
);

/// Writes signing records.
#[derive(Clone)]
pub struct SigningLedger {
    writer: mpsc::Sender<Pending>,
}

impl SigningLedger {
    pub(super) fn new(pool: SqlitePool) -> Self {
        let (writer, inbox) = mpsc::channel(4 * MAX_BATCH);
        tokio::spawn(run_writer(pool, inbox));
        Self { writer }
    }

    /// Records `record` and its audit row durably; returns once committed. A duplicate
    /// (same CA, kind and serial) is refused.
    pub async fn record(
        &self,
        record: SigningRecord,
        audit: AuditEntry,
    ) -> Result<(), StorageError> {
        let (done, wait) = oneshot::channel();
        self.writer
            .send((record, audit, done))
            .await
            .map_err(|_| StorageError::WriterStopped)?;
        wait.await.map_err(|_| StorageError::WriterStopped)?
    }
}

async fn run_writer(pool: SqlitePool, mut inbox: mpsc::Receiver<Pending>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while inbox.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let rows = std::mem::take(&mut batch);
        match commit_batch(&pool, &rows).await {
            Ok(()) => {
                for (_, _, done) in rows {
                    let _ = done.send(Ok(()));
                }
            }
            // One bad row must not fail its neighbours: retry them alone.
            Err(_) if rows.len() > 1 => {
                for (record, audit, done) in rows {
                    let one = [(record, audit, oneshot::channel().0)];
                    let _ = done.send(commit_batch(&pool, &one).await);
                }
            }
            Err(e) => {
                for (_, _, done) in rows {
                    let _ = done.send(Err(StorageError::Database(e.to_string())));
                }
            }
        }
    }
}

async fn commit_batch(pool: &SqlitePool, rows: &[Pending]) -> Result<(), StorageError> {
    let mut tx = pool.begin().await?;
    let now = unix_now();
    for (r, audit, _) in rows {
        sqlx::query(
            "INSERT INTO signing_records (ca_name, ca_generation, kind, serial, tbs_sha256, recorded_at)
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(&r.ca_name)
        .bind(r.ca_generation)
        .bind(&r.kind)
        .bind(&r.serial)
        .bind(&r.tbs_sha256)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        append_in(&mut tx, audit).await?;
    }
    tx.commit().await?;
    Ok(())
}
