//! SM2 for the CA (GM/T 0003 / 0009 / 0015): the identifiers, the digest an SM2 CA key signs
//! (e = SM3(Z || M), Z from the key and the signer ID), and verification of SM2 signatures
//! the HSM made and of SM2 CSRs' proof of possession.

use const_oid::ObjectIdentifier;
use der::Encode;
use sm2::dsa::signature::hazmat::PrehashVerifier;
use sm2::dsa::signature::Verifier;
use spki::SubjectPublicKeyInfoOwned;

/// The SM2 curve sm2p256v1 (1.2.156.10197.1.301), as id-ecPublicKey's namedCurve.
pub const SM2_CURVE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.156.10197.1.301");
/// SM2-with-SM3 (1.2.156.10197.1.501), the signature algorithm of SM2 certificates and CRLs.
pub const SM2_WITH_SM3: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.156.10197.1.501");
/// SM3 (1.2.156.10197.1.401), e.g. as an OCSP CertID hash.
pub const SM3: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.156.10197.1.401");

/// Why an SM2 operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Sm2Error {
    /// The key is not an SM2 point.
    #[error("SM2 key: {0}")]
    Key(String),
    /// The signature is malformed or does not verify.
    #[error("SM2 signature does not verify")]
    BadSignature,
}

/// The uncompressed point of an SM2 SubjectPublicKeyInfo.
pub fn point(spki: &SubjectPublicKeyInfoOwned) -> Result<Vec<u8>, Sm2Error> {
    let der = spki.to_der().map_err(|e| Sm2Error::Key(e.to_string()))?;
    hsm::sm2_point(&der).map_err(|e| Sm2Error::Key(e.to_string()))
}

/// e = SM3(Z || `data`) for the key `spki` and `signer_id`: what the HSM signs.
pub fn digest(
    spki: &SubjectPublicKeyInfoOwned,
    signer_id: &str,
    data: &[u8],
) -> Result<Vec<u8>, Sm2Error> {
    hsm::sm2_digest(&point(spki)?, signer_id.as_bytes(), data)
        .map(|e| e.to_vec())
        .map_err(|e| Sm2Error::Key(e.to_string()))
}

/// Z alone (SM3 of the signer ID, curve and key), for hashing a CRL as it streams.
pub fn z(spki: &SubjectPublicKeyInfoOwned, signer_id: &str) -> Result<[u8; 32], Sm2Error> {
    hsm::sm2_z(&point(spki)?, signer_id.as_bytes()).map_err(|e| Sm2Error::Key(e.to_string()))
}

/// `SM2Signature ::= SEQUENCE { r INTEGER, s INTEGER }` (GM/T 0009).
#[derive(der::Sequence)]
struct Sm2Signature<'a> {
    r: der::asn1::UintRef<'a>,
    s: der::asn1::UintRef<'a>,
}

fn signature(der_sig: &[u8]) -> Result<sm2::dsa::Signature, Sm2Error> {
    use der::Decode;
    let sig = Sm2Signature::from_der(der_sig).map_err(|_| Sm2Error::BadSignature)?;
    let (r, s) = (sig.r.as_bytes(), sig.s.as_bytes());
    if r.len() > 32 || s.len() > 32 {
        return Err(Sm2Error::BadSignature);
    }
    let mut raw = [0u8; 64];
    raw[32 - r.len()..32].copy_from_slice(r);
    raw[64 - s.len()..].copy_from_slice(s);
    sm2::dsa::Signature::from_slice(&raw).map_err(|_| Sm2Error::BadSignature)
}

/// Verify a DER SM2 signature over the digest `e` (any signer ID: it is inside e).
pub fn verify_digest(
    spki: &SubjectPublicKeyInfoOwned,
    e: &[u8],
    der_sig: &[u8],
) -> Result<(), Sm2Error> {
    let point = point(spki)?;
    let key = sm2::dsa::VerifyingKey::from_sec1_bytes(hsm::DEFAULT_SIGNER_ID, &point)
        .map_err(|e| Sm2Error::Key(e.to_string()))?;
    key.verify_prehash(e, &signature(der_sig)?)
        .map_err(|_| Sm2Error::BadSignature)
}

/// Verify a DER SM3withSM2 signature over `message` by the key `point` with `signer_id`
/// (an SM2 CSR's proof of possession).
pub fn verify_message(
    point: &[u8],
    signer_id: &str,
    message: &[u8],
    der_sig: &[u8],
) -> Result<(), Sm2Error> {
    let key = sm2::dsa::VerifyingKey::from_sec1_bytes(signer_id, point)
        .map_err(|e| Sm2Error::Key(e.to_string()))?;
    key.verify(message, &signature(der_sig)?)
        .map_err(|_| Sm2Error::BadSignature)
}
