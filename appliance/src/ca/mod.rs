//! The certificate authority: the only module that asks the HSM to sign.
//!
//! [`Hierarchy`] holds the current generation of every CA. Issuance is two phases
//! ([`issuance`]): `prepare` builds and lints the TBS certificate, `sign` redeems the prepared
//! certificate once, signs it in the HSM and stores it before anyone sees it.

pub mod ceremony;
pub mod csr;
pub mod issuance;
pub mod lint;
pub mod offline;
pub mod signing;
pub mod sm2;
pub mod tbs;

use std::collections::BTreeMap;
use std::sync::Arc;

use der::Decode;
use x509_cert::Certificate;

use crate::storage::{CaRecord, StorageError};

/// Errors loading the hierarchy.
#[derive(Debug, thiserror::Error)]
pub enum HierarchyError {
    /// The database failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A stored CA certificate or key URI is unusable.
    #[error("CA {name}: {reason}")]
    Corrupt {
        /// CA name.
        name: String,
        /// What is wrong.
        reason: String,
    },
}

/// One CA generation, parsed once and shared.
#[derive(Debug)]
pub struct CertificateAuthority {
    /// Database row id.
    pub id: i64,
    /// Name (`root`, `personal`, ...).
    pub name: String,
    /// Generation number.
    pub generation: i64,
    /// Where its key lives: only `ca` (the signing path) may use it.
    pub(in crate::ca) key: hsm::KeyUri,
    /// How it signs.
    pub signature_algorithm: hsm::SignatureAlgorithm,
    /// Its certificate, DER.
    pub certificate_der: Vec<u8>,
    /// Its certificate, parsed.
    pub certificate: Certificate,
    /// Its subject key identifier (copied into issued certificates' AKI).
    pub subject_key_id: Vec<u8>,
    /// Its parent's name; `None` for a root.
    pub parent: Option<String>,
    /// Its parent's row id (the exact generation that signed it); `None` for a root.
    pub parent_id: Option<i64>,
    /// When this generation was revoked (it issues nothing more).
    pub revoked_at: Option<i64>,
}

impl CertificateAuthority {
    /// Checks that its key is on `hsm`'s token, without signing (readiness).
    pub async fn probe_key(&self, hsm: &hsm::Hsm) -> Result<(), hsm::HsmError> {
        hsm.probe_key(&self.key).await
    }

    /// The certificate as PEM.
    pub fn certificate_pem(&self) -> String {
        pem_rfc7468_encode("CERTIFICATE", &self.certificate_der)
    }

    /// The file stem of this generation's CRL and of end-entity URLs under it: `name` for
    /// generation 1 (the URLs written before generations existed), `name-gN` after.
    pub fn stem(&self) -> String {
        if self.generation == 1 {
            self.name.clone()
        } else {
            format!("{}-g{}", self.name, self.generation)
        }
    }

    /// The generation-specific file stem for its certificate (`/ca/{name}-gN.crt`).
    pub fn generation_stem(&self) -> String {
        format!("{}-g{}", self.name, self.generation)
    }

    /// notBefore/notAfter as unix seconds.
    pub fn validity(&self) -> (i64, i64) {
        let v = &self.certificate.tbs_certificate.validity;
        (
            v.not_before.to_unix_duration().as_secs() as i64,
            v.not_after.to_unix_duration().as_secs() as i64,
        )
    }
}

/// Every CA generation, and the newest generation of each CA by name.
#[derive(Debug, Default)]
pub struct Hierarchy {
    cas: BTreeMap<String, Arc<CertificateAuthority>>,
    generations: Vec<Arc<CertificateAuthority>>,
}

impl Hierarchy {
    /// Parses stored CA records (any generations; the highest of each name is its newest).
    pub fn from_records(records: Vec<CaRecord>) -> Result<Self, HierarchyError> {
        let names: BTreeMap<i64, String> = records.iter().map(|r| (r.id, r.name.clone())).collect();
        let mut cas = BTreeMap::new();
        let mut generations = Vec::new();
        for r in records {
            let corrupt = |reason: String| HierarchyError::Corrupt {
                name: r.name.clone(),
                reason,
            };
            let certificate =
                Certificate::from_der(&r.certificate).map_err(|e| corrupt(e.to_string()))?;
            let key: hsm::KeyUri = r
                .key_uri
                .parse()
                .map_err(|_| corrupt("bad key URI".into()))?;
            let spki = &certificate.tbs_certificate.subject_public_key_info;
            let kind = tbs::key_kind_of(spki).map_err(|e| corrupt(e.to_string()))?;
            let subject_key_id = tbs::subject_key_id(spki);
            let ca = CertificateAuthority {
                id: r.id,
                name: r.name.clone(),
                generation: r.generation,
                key,
                signature_algorithm: tbs::signature_algorithm_for(kind),
                certificate_der: r.certificate,
                certificate,
                subject_key_id,
                parent: r.parent_id.and_then(|p| names.get(&p).cloned()),
                parent_id: r.parent_id,
                revoked_at: r.revoked_at,
            };
            let ca = Arc::new(ca);
            generations.push(ca.clone());
            let newer = cas
                .get(&r.name)
                .is_none_or(|c: &Arc<CertificateAuthority>| c.generation < ca.generation);
            if newer {
                cas.insert(r.name, ca);
            }
        }
        Ok(Self { cas, generations })
    }

    /// Every generation of every CA, in creation order.
    pub fn generations(&self) -> impl Iterator<Item = &Arc<CertificateAuthority>> {
        self.generations.iter()
    }

    /// Generations whose certificate has not expired at `now`.
    pub fn unexpired(&self, now: i64) -> impl Iterator<Item = &Arc<CertificateAuthority>> {
        self.generations
            .iter()
            .filter(move |c| c.validity().1 > now)
    }

    /// The CA generation served under file stem `stem` (`name`: newest; `name-gN`: generation N).
    pub fn by_stem(&self, stem: &str) -> Option<&Arc<CertificateAuthority>> {
        if let Some(ca) = self.cas.get(stem) {
            return Some(ca);
        }
        let (name, generation) = stem.rsplit_once("-g")?;
        let generation: i64 = generation.parse().ok()?;
        self.generations
            .iter()
            .find(|c| c.name == name && c.generation == generation)
    }

    /// The CA called `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<CertificateAuthority>> {
        self.cas.get(name)
    }

    /// The CA whose row id is `id` (any loaded generation).
    pub fn by_id(&self, id: i64) -> Option<&Arc<CertificateAuthority>> {
        self.generations.iter().find(|c| c.id == id)
    }

    /// All CAs, by name.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<CertificateAuthority>> {
        self.cas.values()
    }

    /// The chain above the newest `name`, nearest first, including it and the root.
    pub fn chain(&self, name: &str) -> Vec<Arc<CertificateAuthority>> {
        self.cas
            .get(name)
            .map(|ca| self.chain_of(ca))
            .unwrap_or_default()
    }

    /// The chain above `ca` through the exact generations that signed each (by row id, which
    /// is by key identifier: each generation has its own key), nearest first.
    pub fn chain_of(&self, ca: &Arc<CertificateAuthority>) -> Vec<Arc<CertificateAuthority>> {
        let mut out = vec![ca.clone()];
        let mut next = ca.parent_id.and_then(|p| self.by_id(p));
        while let Some(ca) = next {
            if out.len() > 8 {
                break; // a loop in stored parents; never expected
            }
            out.push(ca.clone());
            next = ca.parent_id.and_then(|p| self.by_id(p));
        }
        out
    }
}

/// PEM-encodes `der` with `label`.
pub fn pem_rfc7468_encode(label: &str, der: &[u8]) -> String {
    der::pem::encode_string(label, der::pem::LineEnding::LF, der).unwrap_or_else(|_| String::new())
}
