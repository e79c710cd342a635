//! Certificate signing requests: decode, and verify the self-signature (proof of possession).
//!
//! Only the public key is taken from a CSR. Its subject and requested extensions are ignored:
//! the profile and the verified attributes decide what is certified.

use const_oid::db::rfc5912;
use der::{Decode, Encode};
use spki::SubjectPublicKeyInfoOwned;
use x509_cert::request::CertReq;

use super::tbs::{key_kind_of, BuildError};

/// Largest CSR PEM accepted (an RSA-4096 CSR is about 1.7 KB).
pub const MAX_CSR_PEM: usize = 16 * 1024;

/// Why a CSR was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CsrError {
    /// Not a PEM `CERTIFICATE REQUEST`, or the DER inside does not parse.
    #[error("malformed CSR: {0}")]
    Malformed(String),
    /// The self-signature does not verify with the CSR's own key.
    #[error("the CSR's signature does not verify with its public key")]
    BadSignature,
    /// The CSR is signed with an algorithm we do not accept.
    #[error("unsupported CSR signature algorithm {0}")]
    UnsupportedSignatureAlgorithm(String),
    /// An RSA key shorter than 2048 bits.
    #[error("RSA key of {0} bits is too small (minimum 2048)")]
    KeyTooSmall(usize),
    /// The key type or size is not acceptable.
    #[error("{0}")]
    UnsupportedKey(String),
}

/// A CSR whose signature verified.
#[derive(Debug, Clone)]
pub struct VerifiedCsr {
    /// The subject public key to certify.
    pub public_key: SubjectPublicKeyInfoOwned,
    /// Its type.
    pub key_kind: hsm::KeyKind,
}

/// Decodes a PEM CSR and verifies its self-signature.
pub fn verify_pem(pem: &str) -> Result<VerifiedCsr, CsrError> {
    if pem.len() > MAX_CSR_PEM {
        return Err(CsrError::Malformed(format!(
            "larger than {MAX_CSR_PEM} bytes"
        )));
    }
    let (label, der) = pem_rfc7468::decode_vec(pem.trim().as_bytes())
        .map_err(|e| CsrError::Malformed(format!("PEM: {e}")))?;
    if label != "CERTIFICATE REQUEST" && label != "NEW CERTIFICATE REQUEST" {
        return Err(CsrError::Malformed(format!(
            "PEM label is {label:?}, expected \"CERTIFICATE REQUEST\""
        )));
    }
    verify_der(&der)
}

/// Decodes a DER CSR and verifies its self-signature.
pub fn verify_der(der: &[u8]) -> Result<VerifiedCsr, CsrError> {
    let csr = CertReq::from_der(der).map_err(|e| CsrError::Malformed(format!("DER: {e}")))?;
    let key_kind = key_kind_of(&csr.info.public_key).map_err(|e| match e {
        BuildError::UnsupportedKey(m) => CsrError::UnsupportedKey(m),
        BuildError::KeyTooSmall(bits) => CsrError::KeyTooSmall(bits),
        other => CsrError::Malformed(other.to_string()),
    })?;
    let signed = csr
        .info
        .to_der()
        .map_err(|e| CsrError::Malformed(e.to_string()))?;
    let signature = csr
        .signature
        .as_bytes()
        .ok_or_else(|| CsrError::Malformed("signature has unused bits".into()))?;
    let public_key = csr
        .info
        .public_key
        .subject_public_key
        .as_bytes()
        .ok_or_else(|| CsrError::Malformed("public key has unused bits".into()))?;
    if key_kind == hsm::KeyKind::Sm2 || csr.algorithm.oid == super::sm2::SM2_WITH_SM3 {
        if (key_kind, csr.algorithm.oid) != (hsm::KeyKind::Sm2, super::sm2::SM2_WITH_SM3) {
            return Err(CsrError::UnsupportedSignatureAlgorithm(format!(
                "{} with a {key_kind} key",
                csr.algorithm.oid
            )));
        }
        // Proof of possession with the GM/T 0009 default signer ID, as GM/T 0015 CSRs carry it.
        super::sm2::verify_message(public_key, hsm::DEFAULT_SIGNER_ID, &signed, signature)
            .map_err(|_| CsrError::BadSignature)?;
    } else {
        verify_signature(&csr.algorithm.oid, key_kind, public_key, &signed, signature)?;
    }
    Ok(VerifiedCsr {
        public_key: csr.info.public_key,
        key_kind,
    })
}

/// Verifies the CSR's self-signature with `ring` (the same code rustls trusts for TLS, and
/// several times faster than a pure-Rust verifier: this is on every issuance's hot path).
fn verify_signature(
    alg: &const_oid::ObjectIdentifier,
    kind: hsm::KeyKind,
    public_key: &[u8],
    message: &[u8],
    signature: &[u8],
) -> Result<(), CsrError> {
    use hsm::KeyKind as K;
    use ring::signature as sig;
    let algorithm: &'static dyn sig::VerificationAlgorithm = match (*alg, kind) {
        (rfc5912::ECDSA_WITH_SHA_256, K::EcP256) => &sig::ECDSA_P256_SHA256_ASN1,
        (rfc5912::ECDSA_WITH_SHA_384, K::EcP256) => &sig::ECDSA_P256_SHA384_ASN1,
        (rfc5912::ECDSA_WITH_SHA_256, K::EcP384) => &sig::ECDSA_P384_SHA256_ASN1,
        (rfc5912::ECDSA_WITH_SHA_384, K::EcP384) => &sig::ECDSA_P384_SHA384_ASN1,
        (rfc5912::SHA_256_WITH_RSA_ENCRYPTION, K::Rsa2048 | K::Rsa3072 | K::Rsa4096) => {
            &sig::RSA_PKCS1_2048_8192_SHA256
        }
        (rfc5912::SHA_384_WITH_RSA_ENCRYPTION, K::Rsa2048 | K::Rsa3072 | K::Rsa4096) => {
            &sig::RSA_PKCS1_2048_8192_SHA384
        }
        (rfc5912::SHA_512_WITH_RSA_ENCRYPTION, K::Rsa2048 | K::Rsa3072 | K::Rsa4096) => {
            &sig::RSA_PKCS1_2048_8192_SHA512
        }
        (other, _) => {
            return Err(CsrError::UnsupportedSignatureAlgorithm(format!(
                "{other} with a {kind} key"
            )))
        }
    };
    sig::UnparsedPublicKey::new(algorithm, public_key)
        .verify(message, signature)
        .map_err(|_| CsrError::BadSignature)
}
