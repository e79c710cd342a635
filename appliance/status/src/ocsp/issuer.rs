//! Issuer hashes: what a CertID is matched against, and the responder's `byKey` id.

use super::cert_id::{CertId, HashAlgorithm};
use crate::der_read::{single, DerError, Reader};
use crate::der_write::{BIT_STRING, INTEGER, SEQUENCE};
use sha1::{Digest, Sha1};
use sha2::Sha256;
use sm3::Sm3;

/// The certificate given is not a parseable X.509 certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CertificateError {
    /// The DER structure is broken.
    #[error("certificate DER malformed: {0}")]
    Malformed(#[from] DerError),
}

/// An issuer's name hash and key hash under SHA-1, SHA-256 and SM3 (RFC 6960 4.1.1).
///
/// Compute once per issuing CA, then match a request's CertID in O(1) by keying a map on
/// `(cert_id.hash_algorithm(), cert_id.issuer_key_hash())` and confirming with
/// [`IssuerKeyHashes::matches`]. Computed from a responder certificate, `sha1_key` is the
/// ResponderID `byKey` value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IssuerKeyHashes {
    /// SHA-1 of the subject DN DER.
    pub sha1_name: [u8; 20],
    /// SHA-1 of the subjectPublicKey BIT STRING value.
    pub sha1_key: [u8; 20],
    /// SHA-256 of the subject DN DER.
    pub sha256_name: [u8; 32],
    /// SHA-256 of the subjectPublicKey BIT STRING value.
    pub sha256_key: [u8; 32],
    /// SM3 of the subject DN DER.
    pub sm3_name: [u8; 32],
    /// SM3 of the subjectPublicKey BIT STRING value.
    pub sm3_key: [u8; 32],
}

impl IssuerKeyHashes {
    /// Hashes the subject and public key of a DER X.509 certificate.
    pub fn from_cert_der(cert: &[u8]) -> Result<Self, CertificateError> {
        let (subject, key) = subject_and_key(cert)?;
        Ok(Self {
            sha1_name: Sha1::digest(subject).into(),
            sha1_key: Sha1::digest(key).into(),
            sha256_name: Sha256::digest(subject).into(),
            sha256_key: Sha256::digest(key).into(),
            sm3_name: Sm3::digest(subject).into(),
            sm3_key: Sm3::digest(key).into(),
        })
    }

    /// The subject-name hash under `alg`.
    pub fn name_hash(&self, alg: HashAlgorithm) -> &[u8] {
        match alg {
            HashAlgorithm::Sha1 => &self.sha1_name,
            HashAlgorithm::Sha256 => &self.sha256_name,
            HashAlgorithm::Sm3 => &self.sm3_name,
        }
    }

    /// The public-key hash under `alg`.
    pub fn key_hash(&self, alg: HashAlgorithm) -> &[u8] {
        match alg {
            HashAlgorithm::Sha1 => &self.sha1_key,
            HashAlgorithm::Sha256 => &self.sha256_key,
            HashAlgorithm::Sm3 => &self.sm3_key,
        }
    }

    /// Whether `id` names this issuer (both hashes equal under its algorithm).
    pub fn matches(&self, id: &CertId) -> bool {
        let alg = id.hash_algorithm();
        id.issuer_name_hash() == self.name_hash(alg) && id.issuer_key_hash() == self.key_hash(alg)
    }
}

/// Returns (subject TLV, subjectPublicKey bits) of a certificate.
fn subject_and_key(cert: &[u8]) -> Result<(&[u8], &[u8]), DerError> {
    let outer = single(cert, SEQUENCE)?;
    let mut r = Reader::new(outer.content);
    let tbs = r.expect(SEQUENCE)?;
    let mut t = Reader::new(tbs.content);
    t.optional(0xa0)?; // version [0] EXPLICIT
    t.expect(INTEGER)?; // serialNumber
    t.expect(SEQUENCE)?; // signature
    t.expect(SEQUENCE)?; // issuer
    t.expect(SEQUENCE)?; // validity
    let subject = t.expect(SEQUENCE)?;
    let spki = t.expect(SEQUENCE)?;
    let mut s = Reader::new(spki.content);
    s.expect(SEQUENCE)?; // algorithm
    let bits = s.expect(BIT_STRING)?;
    s.finish()?;
    match bits.content.split_first() {
        Some((0, key)) => Ok((subject.raw, key)),
        _ => Err(DerError::BadValue),
    }
}
