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
mod data_keys;
mod escrow;
mod grants;
mod group_commit;
mod limits;
mod login;
mod materials;
mod notify;
mod ocsp;
mod ops;
mod revocation;
mod signing;
mod verifications;

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;

pub use accounts::{AccountBinding, AccountRow, PhoneClaim};
pub use agents::{AgentChange, AgentRow, AgentRows};
pub use applications::{ApplicationRow, ApplicationRows, Inserted, ReusableVerification, Updated};
pub use audit::{AuditCheckpoint, AuditEntry, AuditKeyRecord, AuditLog, AuditRow};
pub use authorities::{CaRecord, CaStore, NewCa};
pub use certificates::{CertificateRecord, CertificateStore, NewCertificate};
pub use console::{CertificateQuery, CertificateSummary, ConsoleRows, PAGE_ROWS};
pub use crl::{CrlRecord, CrlRow, CrlStore};
pub use data_keys::{DataKeyRecord, DataKeyRows};
pub use escrow::{EscrowRow, EscrowRows, RecoveryRow};
pub use grants::{CodeLoginRow, DownloadRow};
pub use limits::{LimitRows, WindowCount};
pub use login::{Answer, ChallengeRow, LoginRows, NewChallenge};
pub use materials::{MaterialRow, MaterialRows};
pub use notify::{CodeRow, NewCode, NewNotification, NotificationRow, NotifyRows};
pub use ocsp::{CertStatusRow, OcspStore, ResponderRecord, StoredResponse};
pub use revocation::{Revocation, RevocationError, RevocationStore, StatusChange};
pub use signing::{SigningLedger, SigningRecord};
pub use verifications::{VerificationRow, VerificationRows};

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

/// The opened database; cheap to clone.
#[derive(Clone)]
pub struct Storage {
    pool: SqlitePool,
}

impl Storage {
    /// Opens (creating if missing) and migrates the database at `url` (`sqlite://PATH`).
    pub async fn open(url: &str) -> Result<Self, StorageError> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| StorageError::Open(e.to_string()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(|e| StorageError::Open(e.to_string()))?;
        sqlx::migrate!("./migrations")
            .run(&pool)
            .await
            .map_err(|e| StorageError::Open(format!("migration failed: {e}")))?;
        Ok(Self { pool })
    }

    /// The CA hierarchy view.
    pub fn authorities(&self) -> CaStore {
        CaStore::new(self.pool.clone())
    }

    /// The issued-certificates view; starts its group-commit writer on the current runtime.
    pub fn certificates(&self) -> CertificateStore {
        CertificateStore::new(self.pool.clone())
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
        CrlStore::new(self.pool.clone())
    }

    /// OCSP responder certificates and pre-signed responses.
    pub fn ocsp(&self) -> OcspStore {
        OcspStore::new(self.pool.clone())
    }

    /// Plugin-driven identity verifications.
    pub fn verifications(&self) -> VerificationRows {
        VerificationRows::new(self.pool.clone())
    }

    /// The wrapped data keys sealing personal data.
    pub fn data_keys(&self) -> DataKeyRows {
        DataKeyRows::new(self.pool.clone())
    }

    /// The signing ledger (record before sign); starts its group-commit writer.
    pub fn signing_ledger(&self) -> SigningLedger {
        SigningLedger::new(self.pool.clone())
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

/// Seconds since the Unix epoch, as stored in every time column.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
