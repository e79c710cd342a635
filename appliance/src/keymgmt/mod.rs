//! Key management for dual certificates (GM/T 0034): the encryption key pair of a subject is
//! made here, not by the applicant; its private key leaves only in a GM/T 0009 envelope to the
//! applicant's signing key, and is escrowed sealed under an escrow-only HSM key for recovery by
//! two RA officers. Regulations put this in a separate facility, so the rest of the appliance
//! sees only the narrow [`KeyManagement`] trait; [`local::LocalKeyManagement`] is the in-process
//! implementation.

pub mod envelope;
pub mod local;

use futures_util::future::BoxFuture;
use spki::SubjectPublicKeyInfoOwned;

/// Why a key-management operation failed.
#[derive(Debug, thiserror::Error)]
pub enum KeyMgmtError {
    /// The signing certificate already has its encryption certificate (or one is being issued).
    #[error("the signing certificate {0} already has an encryption certificate (or one is being issued)")]
    AlreadyIssued(String),
    /// No such escrowed key or recovery.
    #[error("{0} not found")]
    NotFound(String),
    /// A recovery approved by the officer who requested it.
    #[error("a recovery needs a second RA officer: {0} requested it and cannot approve it")]
    SameOfficer(String),
    /// A recovery approved twice.
    #[error("recovery {0} is already approved")]
    AlreadyApproved(String),
    /// A key that is not an SM2 public key.
    #[error("not an SM2 public key: {0}")]
    NotSm2(String),
    /// The envelope could not be made.
    #[error(transparent)]
    Envelope(#[from] envelope::EnvelopeError),
    /// The HSM refused or failed.
    #[error("HSM: {0}")]
    Hsm(#[from] hsm::HsmError),
    /// The database failed.
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageError),
}

/// An encryption pair made for a signing certificate.
#[derive(Debug, Clone)]
pub struct GeneratedPair {
    /// The escrow record (`esc_...`).
    pub escrow_id: String,
    /// The encryption public key, for its certificate.
    pub public_key: SubjectPublicKeyInfoOwned,
    /// The private key in a GM/T 0009 `SM2EnvelopedKey` (DER) to the signing key.
    pub envelope: Vec<u8>,
}

/// A recovery request of an escrowed key.
#[derive(Debug, Clone)]
pub struct RecoveryRequest {
    /// The escrowed key.
    pub escrow_id: String,
    /// The requesting RA officer (actor string).
    pub officer: String,
    /// Why.
    pub reason: String,
    /// The SM2 public key the recovered key is delivered to.
    pub deliver_to: SubjectPublicKeyInfoOwned,
}

/// What the rest of the appliance may ask of key management (and nothing more).
pub trait KeyManagement: Send + Sync {
    /// Makes an encryption pair for the signing certificate `signing_serial`, escrows its
    /// private key and returns it enveloped to `signing_key` (audited as `actor`).
    fn generate<'a>(
        &'a self,
        signing_serial: &'a str,
        signing_key: &'a SubjectPublicKeyInfoOwned,
        actor: &'a str,
    ) -> BoxFuture<'a, Result<GeneratedPair, KeyMgmtError>>;

    /// Records the encryption certificate issued for an escrowed key.
    fn certified<'a>(
        &'a self,
        escrow_id: &'a str,
        serial: &'a str,
    ) -> BoxFuture<'a, Result<(), KeyMgmtError>>;

    /// Opens a recovery (first officer); returns its id (`rec_...`).
    fn request_recovery(
        &self,
        request: RecoveryRequest,
    ) -> BoxFuture<'_, Result<String, KeyMgmtError>>;

    /// Approves a recovery (a second, different officer) and returns the escrowed key in an
    /// envelope to the request's `deliver_to` key.
    fn approve_recovery<'a>(
        &'a self,
        recovery_id: &'a str,
        officer: &'a str,
    ) -> BoxFuture<'a, Result<Vec<u8>, KeyMgmtError>>;
}
