//! The one path by which a CA key signs anything: prepare -> lint -> record -> sign -> verify.
//!
//! [`CaSigner`] is the capability: only `ca` can construct one, and it is the only code that
//! hands a CA key to the HSM. End-entity, OCSP responder and CA certificates and CRLs all pass
//! through it: the TBS is linted ([`super::lint`]), its serial and SHA-256 are recorded durably
//! with an audit row ([`SigningLedger`]), the HSM signs, and the signature is verified with the
//! issuer's public key before anything is returned for storage. A signature that fails its
//! verification is discarded and nothing is stored.

use der::Encode;
use sha2::{Digest, Sha256};
use spki::SubjectPublicKeyInfoOwned;
use x509_cert::TbsCertificate;

use super::lint::{self, CertificateKind, IssuerFacts, LintError};
use super::tbs::{self, BuildError};
use super::CertificateAuthority;
use crate::storage::{AuditEntry, SigningLedger, SigningRecord, Storage, StorageError};

/// Why a signature was not produced. Nothing signed was returned or stored.
#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    /// The TBS breaks a lint rule: never signed.
    #[error("pre-signing check failed: {0}")]
    Lint(#[from] LintError),
    /// The TBS could not be encoded.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// The HSM failed.
    #[error(transparent)]
    Hsm(#[from] hsm::HsmError),
    /// The record (or its audit row) could not be written: not signed (fail closed).
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The HSM's signature does not verify under the issuer's public key: discarded.
    #[error("the signature does not verify with the issuer's public key: {0}")]
    BadSignature(String),
}

/// The key that signs: a stored CA generation, or (root ceremony) a fresh self-signing key.
pub(in crate::ca) struct SigningKey<'a> {
    pub(in crate::ca) name: &'a str,
    pub(in crate::ca) generation: i64,
    pub(in crate::ca) key: &'a hsm::KeyUri,
    pub(in crate::ca) algorithm: hsm::SignatureAlgorithm,
    pub(in crate::ca) public_key: &'a SubjectPublicKeyInfoOwned,
    pub(in crate::ca) facts: IssuerFacts,
}

impl<'a> SigningKey<'a> {
    /// The key of a stored CA generation.
    pub(in crate::ca) fn of(ca: &'a CertificateAuthority) -> Self {
        let (nb, na) = ca.validity();
        SigningKey {
            name: &ca.name,
            generation: ca.generation,
            key: &ca.key,
            algorithm: ca.signature_algorithm,
            public_key: &ca.certificate.tbs_certificate.subject_public_key_info,
            facts: IssuerFacts {
                subject: ca.certificate.tbs_certificate.subject.clone(),
                key_id: ca.subject_key_id.clone(),
                validity: (nb, na),
                algorithm: ca.signature_algorithm,
            },
        }
    }
}

/// The capability to make a CA key sign. Cheap to clone; constructed only inside `ca`.
#[derive(Clone)]
pub struct CaSigner {
    hsm: hsm::Hsm,
    root: Option<hsm::Hsm>,
    ledger: SigningLedger,
}

impl std::fmt::Debug for CaSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CaSigner")
    }
}

/// A CRL's fixed fields, linted before it is signed.
#[derive(Debug, Clone)]
pub struct CrlToSign<'a> {
    /// The issuer name DER the CRL carries.
    pub issuer_name_der: &'a [u8],
    /// Its authorityKeyIdentifier.
    pub authority_key_id: &'a [u8],
    /// Its signature algorithm.
    pub algorithm: &'a spki::AlgorithmIdentifierOwned,
    /// CRLNumber.
    pub number: i64,
    /// Base CRL number for a delta.
    pub base: Option<i64>,
    /// thisUpdate, unix seconds.
    pub this_update: i64,
    /// nextUpdate, unix seconds.
    pub next_update: i64,
    /// The digest of the TBSCertList the CA key signs.
    pub digest: &'a [u8],
}

impl CaSigner {
    /// The capability over `hsm`, recording in `storage`'s ledger.
    pub(in crate::ca) fn new(hsm: hsm::Hsm, storage: &Storage) -> Self {
        Self {
            hsm,
            root: None,
            ledger: storage.signing_ledger(),
        }
    }

    /// Also signs with keys on the offline root token `root` (ceremony and root commands).
    pub(in crate::ca) fn with_root(mut self, root: Option<hsm::Hsm>) -> Self {
        self.root = root;
        self
    }

    /// The GM/T 0009 signer ID SM2 CA keys sign with (`[hsm.sm2] signer_id`, or the default).
    pub fn sm2_signer_id(&self) -> &str {
        self.hsm.sm2_signer_id()
    }

    /// Lints, records, signs and verifies a certificate `ca` issues; returns the certificate DER.
    pub async fn sign_certificate(
        &self,
        ca: &CertificateAuthority,
        tbs: TbsCertificate,
        kind: CertificateKind<'_>,
        actor: &str,
    ) -> Result<Vec<u8>, SigningError> {
        self.sign_with(SigningKey::of(ca), tbs, kind, actor).await
    }

    /// The path itself, for any [`SigningKey`] (the root's self-signature included).
    pub(in crate::ca) async fn sign_with(
        &self,
        key: SigningKey<'_>,
        tbs: TbsCertificate,
        kind: CertificateKind<'_>,
        actor: &str,
    ) -> Result<Vec<u8>, SigningError> {
        lint::certificate(&tbs, &key.facts, kind)?;
        let tbs_der = tbs
            .to_der()
            .map_err(|e| BuildError::Encoding(e.to_string()))?;
        let serial = hex::encode(tbs.serial_number.as_bytes());
        let tbs_sha256 = Sha256::digest(&tbs_der).to_vec();
        self.record(&key, kind.name(), &serial, tbs_sha256, actor)
            .await?;
        let digest = signed_digest(&key, self.sm2_signer_id(), &tbs_der)?;
        let signature = self.hsm_sign(&key, &digest).await?;
        verify(key.public_key, key.algorithm, &digest, &signature)?;
        Ok(tbs::assemble(
            tbs,
            key.algorithm.algorithm_identifier(),
            &signature,
        )?)
    }

    /// Lints, records, signs and verifies a CRL of `ca`; returns the signature.
    pub async fn sign_crl(
        &self,
        ca: &CertificateAuthority,
        crl: CrlToSign<'_>,
        actor: &str,
    ) -> Result<Vec<u8>, SigningError> {
        let key = SigningKey::of(ca);
        lint::crl(
            &key.facts,
            crl.issuer_name_der,
            crl.authority_key_id,
            crl.algorithm,
            crl.number,
            crl.base,
            crl.this_update,
            crl.next_update,
        )?;
        if crl.digest.len() != key.algorithm.hash_len() {
            return Err(SigningError::Build(BuildError::Encoding(
                "CRL digest length does not match the CA key's algorithm".into(),
            )));
        }
        let tbs_sha256 = Sha256::digest(crl.digest).to_vec();
        self.record(&key, "crl", &crl.number.to_string(), tbs_sha256, actor)
            .await?;
        let signature = self.hsm_sign(&key, crl.digest).await?;
        verify(key.public_key, key.algorithm, crl.digest, &signature)?;
        Ok(signature)
    }

    async fn record(
        &self,
        key: &SigningKey<'_>,
        kind: &str,
        serial: &str,
        tbs_sha256: Vec<u8>,
        actor: &str,
    ) -> Result<(), SigningError> {
        let audit = AuditEntry {
            actor: actor.to_owned(),
            action: format!("sign.{kind}"),
            target: serial.to_owned(),
            detail: serde_json::json!({
                "ca": key.name,
                "generation": key.generation,
                "tbs_sha256": hex::encode(&tbs_sha256),
            }),
        };
        self.ledger
            .record(
                SigningRecord {
                    ca_name: key.name.to_owned(),
                    ca_generation: key.generation,
                    kind: kind.to_owned(),
                    serial: serial.to_owned(),
                    tbs_sha256,
                },
                audit,
            )
            .await?;
        Ok(())
    }

    async fn hsm_sign(&self, key: &SigningKey<'_>, digest: &[u8]) -> Result<Vec<u8>, SigningError> {
        let hsm = match &self.root {
            Some(root) if root.token_label() == key.key.token => root,
            _ => &self.hsm,
        };
        let mut signature = hsm.sign_digest(key.key, key.algorithm, digest).await?;
        // Test hook: a signature the issuer's key did not make (the verification must catch it).
        if crate::fault::active("corrupt-signature") {
            if let Some(last) = signature.last_mut() {
                *last ^= 0x01;
            }
        }
        Ok(signature)
    }
}

/// The digest the CA key signs over `data`: the algorithm's hash, or for SM2 e = SM3(Z || M)
/// with the configured GM/T 0009 signer ID.
fn signed_digest(
    key: &SigningKey<'_>,
    signer_id: &str,
    data: &[u8],
) -> Result<Vec<u8>, SigningError> {
    if key.algorithm.is_sm2() {
        return super::sm2::digest(key.public_key, signer_id, data)
            .map_err(|e| SigningError::BadSignature(e.to_string()));
    }
    Ok(key.algorithm.digest(data))
}

/// Verifies `signature` over `digest` with `public_key` for `algorithm`.
pub fn verify(
    public_key: &SubjectPublicKeyInfoOwned,
    algorithm: hsm::SignatureAlgorithm,
    digest: &[u8],
    signature: &[u8],
) -> Result<(), SigningError> {
    use signature::hazmat::PrehashVerifier;
    use spki::DecodePublicKey;
    let bad = |e: String| SigningError::BadSignature(e);
    let spki_der = public_key
        .to_der()
        .map_err(|e| bad(format!("issuer key: {e}")))?;
    match algorithm {
        hsm::SignatureAlgorithm::EcdsaSha256 => {
            let key = p256::ecdsa::VerifyingKey::from_public_key_der(&spki_der)
                .map_err(|e| bad(format!("issuer key: {e}")))?;
            let sig =
                p256::ecdsa::Signature::from_der(signature).map_err(|e| bad(e.to_string()))?;
            key.verify_prehash(digest, &sig)
                .map_err(|e| bad(e.to_string()))
        }
        hsm::SignatureAlgorithm::EcdsaSha384 => {
            let key = p384::ecdsa::VerifyingKey::from_public_key_der(&spki_der)
                .map_err(|e| bad(format!("issuer key: {e}")))?;
            let sig =
                p384::ecdsa::Signature::from_der(signature).map_err(|e| bad(e.to_string()))?;
            key.verify_prehash(digest, &sig)
                .map_err(|e| bad(e.to_string()))
        }
        hsm::SignatureAlgorithm::RsaPkcs1Sha256 | hsm::SignatureAlgorithm::RsaPkcs1Sha384 => {
            let key = rsa::RsaPublicKey::from_public_key_der(&spki_der)
                .map_err(|e| bad(format!("issuer key: {e}")))?;
            let scheme = if algorithm == hsm::SignatureAlgorithm::RsaPkcs1Sha256 {
                rsa::Pkcs1v15Sign::new::<Sha256>()
            } else {
                rsa::Pkcs1v15Sign::new::<sha2::Sha384>()
            };
            key.verify(scheme, digest, signature)
                .map_err(|e| bad(e.to_string()))
        }
        hsm::SignatureAlgorithm::Sm2Sm3 => {
            super::sm2::verify_digest(public_key, digest, signature).map_err(|e| bad(e.to_string()))
        }
        other => Err(bad(format!("CA keys do not sign with {other}"))),
    }
}
