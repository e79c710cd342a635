//! Status services: revocation, the OCSP responder with pre-signed responses, CRL publication.
//!
//! A revocation is committed (with its audit row) before anything else happens; then the
//! certificate's OCSP response is re-signed at once and its CA's CRLs are regenerated a few
//! seconds later. The OCSP responder answers from memory; the database holds the same
//! responses so a restart does not re-sign everything.

pub mod cache;
pub mod crl;
pub mod follow;
pub mod live_budget;
pub mod ocsp;
pub mod responder;

use std::sync::Arc;

use ca_status::crl::CrlError;
use ca_status::ocsp::{OcspErrorStatus, ResponseError};

use crate::ca::signing::CaSigner;
use crate::ca::Hierarchy;
use crate::config::ApplianceConfig;
use crate::storage::{
    Revocation, RevocationError, RevocationStore, StatusChange, Storage, StorageError,
};

pub use self::crl::CrlPublisher;
pub use self::ocsp::{OcspReply, OcspResponder};

/// Why a status operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// The HSM failed (unavailable: answer tryLater).
    #[error("HSM: {0}")]
    Hsm(#[from] hsm::HsmError),
    /// The database failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// An OCSP response could not be encoded.
    #[error("OCSP response: {0}")]
    Response(#[from] ResponseError),
    /// A CRL could not be built or written.
    #[error("CRL: {0}")]
    Crl(#[from] CrlError),
    /// A certificate or value could not be built.
    #[error("build: {0}")]
    Build(String),
    /// Publication directory I/O.
    #[error("I/O: {0}")]
    Io(String),
    /// A timestamp out of range.
    #[error("timestamp out of range")]
    Time,
}

impl StatusError {
    /// The OCSP status for a request this error stopped: tryLater when the HSM (or the
    /// responder key in it) or the database is unreachable, internalError otherwise.
    pub fn ocsp_status(&self) -> OcspErrorStatus {
        match self {
            StatusError::Hsm(h) if h.is_unavailable() => OcspErrorStatus::TryLater,
            // The responder key was resolved at start: gone now means the token went away.
            StatusError::Hsm(hsm::HsmError::KeyNotFound { .. }) => OcspErrorStatus::TryLater,
            StatusError::Storage(_) => OcspErrorStatus::TryLater,
            _ => OcspErrorStatus::InternalError,
        }
    }
}

/// Serial hex (as stored) to the DER INTEGER content octets; `None` if not hex.
pub fn serial_bytes(hex_serial: &str) -> Option<Vec<u8>> {
    let mut bytes = hex::decode(hex_serial).ok()?;
    if bytes.is_empty() {
        return None;
    }
    if bytes[0] & 0x80 != 0 {
        bytes.insert(0, 0);
    }
    Some(bytes)
}

/// The status services of one node.
pub struct StatusService {
    /// The OCSP responder.
    pub ocsp: Arc<OcspResponder>,
    /// The CRL publisher.
    pub crls: Arc<CrlPublisher>,
    revocations: RevocationStore,
}

impl StatusService {
    /// Sets up responders (creating responder certificates if needed), loads pre-signed
    /// responses, and starts the pre-signer and CRL publisher in the background.
    pub async fn start(
        hsm: hsm::Hsm,
        signer: CaSigner,
        storage: &Storage,
        hierarchy: &Hierarchy,
        config: &ApplianceConfig,
    ) -> Result<Arc<StatusService>, StatusError> {
        let service = Self::new(hsm, signer, storage, hierarchy, config).await?;
        tokio::spawn(service.ocsp.clone().run());
        tokio::spawn(service.crls.clone().run());
        if storage.backend() == crate::storage::Backend::Postgres {
            // Other nodes may share the database: follow their status changes.
            tokio::spawn(follow::run(service.clone(), storage.status_feed()));
        }
        Ok(service)
    }

    /// Like [`StatusService::start`] without the background tasks (benchmarks, tools).
    pub async fn new(
        hsm: hsm::Hsm,
        signer: CaSigner,
        storage: &Storage,
        hierarchy: &Hierarchy,
        config: &ApplianceConfig,
    ) -> Result<Arc<StatusService>, StatusError> {
        let ocsp = OcspResponder::start(
            hsm,
            signer.clone(),
            storage.ocsp(),
            hierarchy,
            &config.status,
            config.hsm.pool_size * 2,
        )
        .await?;
        let ocsp = if storage.backend() == crate::storage::Backend::Postgres {
            ocsp.shared_through(storage.leases())
        } else {
            ocsp
        };
        let crls = CrlPublisher::new(
            signer,
            storage.crls(),
            hierarchy,
            &config.status,
            &config.server.public_url,
        )
        .await?
        .with_sharded_profiles(
            config
                .load_profiles()
                .map_err(|e| StatusError::Build(e.to_string()))?
                .values(),
        )
        .await?;
        let crls = if storage.backend() == crate::storage::Backend::Postgres {
            crls.shared_through(storage.leases(), storage.crl_documents())
        } else {
            crls
        };
        Ok(Arc::new(StatusService {
            ocsp: Arc::new(ocsp),
            crls: Arc::new(crls),
            revocations: storage.revocations(),
        }))
    }

    /// Revokes durably, then re-signs the OCSP response and schedules the CRLs.
    pub async fn revoke(
        &self,
        revocation: &Revocation,
        actor: &str,
    ) -> Result<StatusChange, RevocationError> {
        let change = self.revocations.revoke(revocation, actor).await?;
        crate::fault::crash_point("after-revocation-commit");
        self.after_change(&change).await;
        Ok(change)
    }

    /// Lifts a hold durably, then re-signs and schedules like [`StatusService::revoke`].
    pub async fn unhold(&self, serial: &str, actor: &str) -> Result<StatusChange, RevocationError> {
        let change = self.revocations.unhold(serial, actor).await?;
        self.after_change(&change).await;
        Ok(change)
    }

    async fn after_change(&self, change: &StatusChange) {
        if let Err(e) = self
            .ocsp
            .on_status_change(change.ca_id, &change.serial, change.status_seq)
            .await
        {
            tracing::warn!(error = %e, "OCSP re-signing after a status change failed; answered live until the pre-signer catches up");
        }
        self.crls.mark_dirty(change.ca_id);
    }

    /// Tells the pre-signer a certificate was just issued (it signs that one response, no scan).
    pub fn certificate_issued(&self, ca_id: i64, serial: &str) {
        self.ocsp.certificate_issued(ca_id, serial);
    }

    /// As [`Self::certificate_issued`] for a certificate just stored `valid` with `not_after`:
    /// signed from what the issuer knows, without reading its status back.
    pub fn certificate_issued_valid(&self, ca_id: i64, serial: &str, not_after: i64) {
        self.ocsp.certificate_issued_valid(ca_id, serial, not_after);
    }
}
