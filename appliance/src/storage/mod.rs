//! Durable state: the only module that names sqlx.
//!
//! Consumers get narrow views: [`CaStore`] for the hierarchy, [`CertificateStore`] for issued
//! certificates (with group commit), [`AuditLog`] for the tamper-evident log.

mod accounts;
mod agents;
mod applications;
mod audit;
mod authorities;
mod certificates;
mod console;
mod crl;
mod crl_documents;
mod data_keys;
mod dialect;
mod escrow;
mod grants;
mod group_commit;
mod issuance_writer;
mod leases;
mod limits;
mod login;
mod materials;
mod notify;
mod ocsp;
mod ops;
mod revocation;
mod signing;
mod status_feed;
mod verifications;

use std::sync::{Arc, OnceLock};

use sqlx::any::AnyPoolOptions;
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, Executor};

pub use accounts::{AccountBinding, AccountDetail, AccountRow, PhoneClaim};
pub use agents::{AgentChange, AgentRow, AgentRows};
pub use applications::{ApplicationRow, ApplicationRows, Inserted, ReusableVerification, Updated};
pub use audit::{AuditCheckpoint, AuditEntry, AuditKeyRecord, AuditLog, AuditRow};
pub use authorities::{CaRecord, CaStore, NewCa};
pub use certificates::{CertificateRecord, CertificateStore, NewCertificate};
pub use console::{CertificateQuery, CertificateSummary, ConsoleRows, PAGE_ROWS};
pub use crl::{CrlRecord, CrlRow, CrlStore};
pub use crl_documents::CrlDocuments;
pub use data_keys::{DataKeyRecord, DataKeyRows};
pub use dialect::Backend;
pub use escrow::{EscrowRow, EscrowRows, RecoveryRow};
pub use grants::{CodeLoginRow, DownloadRow};
pub use leases::Leases;
pub use limits::{LimitRows, WindowCount};
pub use login::{Answer, Answered, ChallengeRow, LoginRows, NewChallenge};
pub use materials::{MaterialRow, MaterialRows};
pub use notify::{CodeRow, NewCode, NewNotification, NotificationRow, NotifyRows};
pub use ocsp::{CertStatusRow, OcspStore, ResponderRecord, StoredResponse};
pub use revocation::{Revocation, RevocationError, RevocationStore, StatusChange};
pub use signing::{SigningLedger, SigningRecord};
pub use status_feed::{ChangedStatus, StatusFeed, StatusWaker};
pub use verifications::{VerificationRow, VerificationRows};

use issuance_writer::IssuanceWriter;

/// Errors from the database.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The database could not be opened or migrated.
    #[error("cannot open database: {0}")]
    Open(String),
    /// A uniqueness rule was violated (e.g. a serial number collision).
    #[error("duplicate: {0}")]
    Duplicate(String),
    /// Any other database failure.
    #[error("database error: {0}")]
    Database(String),
    /// The batch writer is gone (the server is shutting down).
    #[error("storage writer stopped")]
    WriterStopped,
}

impl From<sqlx::Error> for StorageError {
    fn from(e: sqlx::Error) -> Self {
        if let sqlx::Error::Database(db) = &e {
            if db.is_unique_violation() {
                return StorageError::Duplicate(db.message().to_owned());
            }
        }
        StorageError::Database(e.to_string())
    }
}

/// The opened database (SQLite file or PostgreSQL server, see [`Backend`]); cheap to clone.
#[derive(Clone)]
pub struct Storage {
    pool: AnyPool,
    backend: Backend,
    /// The PostgreSQL URL, for connections outside the pool (LISTEN); none on SQLite.
    postgres_url: Option<String>,
    /// This process's node id (random per start): the holder of the leases it takes.
    node_id: String,
    /// The issuance path's writer (signing records, certificates, pre-signed OCSP responses),
    /// started at first use.
    issuance: Arc<OnceLock<IssuanceWriter>>,
}

/// SQLite settings applied to every connection: durable WAL commits, foreign keys, and a
/// writer waiting up to 10 s for another one's lock.
const SQLITE_PRAGMAS: &str = "PRAGMA busy_timeout = 10000; PRAGMA journal_mode = WAL; \
    PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;";

impl Storage {
    /// Opens (creating if missing) and migrates the database at `url`: `sqlite://PATH` (the
    /// embedded default) or `postgres://USER@HOST/DB` (several nodes sharing one database).
    pub async fn open(url: &str) -> Result<Self, StorageError> {
        let backend = Backend::of_url(url)?;
        let pool = match backend {
            Backend::Sqlite => connect(&dialect::sqlite_url(url, "mode=rwc"), 4, true).await?,
            Backend::Postgres => connect(url, 8, false).await?,
        };
        let migrated = match backend {
            Backend::Sqlite => dialect::SQLITE_MIGRATIONS.run(&pool).await,
            Backend::Postgres => match Migrator::new(dialect::PostgresMigrations).await {
                Ok(migrator) => migrator.run(&pool).await,
                Err(e) => Err(e),
            },
        };
        migrated.map_err(|e| StorageError::Open(format!("migration failed: {e}")))?;
        let postgres_url = (backend == Backend::Postgres).then(|| url.to_owned());
        Ok(Self {
            pool,
            backend,
            postgres_url,
            node_id: new_node_id(),
            issuance: Arc::default(),
        })
    }

    /// Which database engine this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// This process's node id (random per start, logged by `serve`).
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// Named leases held by this node (one node at a time per job).
    pub fn leases(&self) -> Leases {
        Leases::new(self.pool.clone(), self.node_id.clone())
    }

    /// Signed CRLs shared between nodes.
    pub fn crl_documents(&self) -> CrlDocuments {
        CrlDocuments::new(self.pool.clone())
    }

    /// The CA hierarchy view.
    pub fn authorities(&self) -> CaStore {
        CaStore::new(self.pool.clone())
    }

    /// The issued-certificates view (writes through the issuance path's one writer).
    pub fn certificates(&self) -> CertificateStore {
        CertificateStore::new(self.pool.clone(), self.issuance_writer())
    }

    /// The audit log view.
    pub fn audit(&self) -> AuditLog {
        AuditLog::new(self.pool.clone())
    }

    /// Revocation and unhold.
    pub fn revocations(&self) -> RevocationStore {
        RevocationStore::new(self.pool.clone())
    }

    /// CRL numbering, history and entry streams.
    pub fn crls(&self) -> CrlStore {
        CrlStore::new(self.pool.clone(), self.backend)
    }

    /// Status changes committed by any node, after a cursor (multi-node OCSP and CRLs).
    pub fn status_feed(&self) -> StatusFeed {
        StatusFeed::new(self.pool.clone(), self.postgres_url.clone())
    }

    /// OCSP responder certificates and pre-signed responses.
    pub fn ocsp(&self) -> OcspStore {
        OcspStore::new(self.pool.clone(), self.backend, self.issuance_writer())
    }

    /// Plugin-driven identity verifications.
    pub fn verifications(&self) -> VerificationRows {
        VerificationRows::new(self.pool.clone())
    }

    /// The wrapped data keys sealing personal data.
    pub fn data_keys(&self) -> DataKeyRows {
        DataKeyRows::new(self.pool.clone())
    }

    /// The signing ledger (record before sign; the issuance path's one writer).
    pub fn signing_ledger(&self) -> SigningLedger {
        SigningLedger::new(self.issuance_writer())
    }

    /// The issuance path's group-commit writer, started on the current runtime at first use and
    /// shared by every clone of this `Storage`.
    fn issuance_writer(&self) -> IssuanceWriter {
        self.issuance
            .get_or_init(|| IssuanceWriter::start(self.pool.clone(), self.backend))
            .clone()
    }

    /// The operator console's read queries.
    pub fn console(&self) -> ConsoleRows {
        ConsoleRows::new(self.pool.clone())
    }

    /// Applications, subjects and reusable verifications.
    pub fn applications(&self) -> ApplicationRows {
        ApplicationRows::new(self.pool.clone())
    }

    /// Materials uploaded for applications.
    pub fn materials(&self) -> MaterialRows {
        MaterialRows::new(self.pool.clone())
    }

    /// Organisations' agents.
    pub fn agents(&self) -> AgentRows {
        AgentRows::new(self.pool.clone())
    }

    /// Escrowed encryption keys and their recoveries (dual certificates).
    pub fn escrow(&self) -> EscrowRows {
        EscrowRows::new(self.pool.clone())
    }

    /// Limit counters and vendor callback replay records.
    pub fn limits(&self) -> LimitRows {
        LimitRows::new(self.pool.clone())
    }

    /// Channel-plugin deliveries, one-time codes and captchas.
    pub fn notify(&self) -> NotifyRows {
        NotifyRows::new(self.pool.clone())
    }

    /// Relying parties' login challenges.
    pub fn login(&self) -> LoginRows {
        LoginRows::new(self.pool.clone())
    }
}

/// Opens a pool of at most `max` connections to `url` (SQLite ones set up by [`SQLITE_PRAGMAS`]).
async fn connect(url: &str, max: u32, sqlite: bool) -> Result<AnyPool, StorageError> {
    dialect::install_drivers();
    let mut options = AnyPoolOptions::new().max_connections(max);
    if sqlite {
        // A SQLite connection is a file handle in this process: no liveness ping before each
        // use (it is a round trip to the connection's thread).
        options = options.test_before_acquire(false).after_connect(|conn, _| {
            Box::pin(async move { conn.execute(SQLITE_PRAGMAS).await.map(|_| ()) })
        });
    }
    options
        .connect(url)
        .await
        .map_err(|e| StorageError::Open(e.to_string()))
}

/// A random node id (16 hex digits) for this process.
fn new_node_id() -> String {
    let mut bytes = [0u8; 8];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes);
    hex::encode(bytes)
}

/// Seconds since the Unix epoch, as stored in every time column.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
