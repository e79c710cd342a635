//! Key-pair generation and the signature math (RustCrypto `p256` and `sm2`).

use p256::ecdsa::signature::hazmat::{PrehashSigner, PrehashVerifier};
use p256::ecdsa::signature::{Signer, Verifier};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use rand_core::OsRng;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::vendor::DEFAULT_SIGNER_ID;

/// The kinds of key this token makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) enum KeyAlg {
    /// NIST P-256, CKK_EC.
    P256,
    /// SM2 (GM/T 0003), CKK_SM2.
    Sm2,
    /// AES-256 secret keys (CKK_AES) for CKM_AES_GCM: the appliance wraps its data keys with them.
    Aes256,
}

/// What a signing operation computes; the mechanism decides it at C_SignInit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SignScheme {
    /// CKM_ECDSA: the input is the digest.
    EcdsaPrehashed,
    /// CKM_ECDSA_SHA256: the token hashes.
    EcdsaSha256,
    /// CKM_SM2: the input is e = SM3(Z || M).
    Sm2Prehashed,
    /// CKM_SM3_SM2: the token computes Z with this signer ID, then e.
    Sm3WithSm2 { signer_id: String },
}

/// Why a signature could not be made or checked.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum MathError {
    /// The input has a length the mechanism does not take.
    DataLen,
    /// The signature does not verify (or is malformed).
    Invalid,
}

/// A private or secret key, decrypted in memory only while its token is logged in.
pub(crate) enum PrivateKey {
    P256(p256::ecdsa::SigningKey),
    Sm2(sm2::SecretKey),
    Aes(Zeroizing<[u8; 32]>),
}

/// AES-256-GCM with a 12-byte IV and a 128-bit tag (the only GCM shape this token offers).
pub(crate) struct GcmParams {
    pub iv: [u8; 12],
    pub aad: Vec<u8>,
}

impl PrivateKey {
    /// A fresh random key on `curve`.
    pub(crate) fn generate(curve: KeyAlg) -> PrivateKey {
        match curve {
            KeyAlg::P256 => PrivateKey::P256(p256::ecdsa::SigningKey::random(&mut OsRng)),
            KeyAlg::Sm2 => PrivateKey::Sm2(sm2::SecretKey::random(&mut OsRng)),
            KeyAlg::Aes256 => {
                let mut key = Zeroizing::new([0u8; 32]);
                rand_core::RngCore::fill_bytes(&mut OsRng, key.as_mut());
                PrivateKey::Aes(key)
            }
        }
    }

    /// The 32-byte big-endian scalar, for sealing.
    pub(crate) fn scalar_bytes(&self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(match self {
            PrivateKey::P256(k) => k.to_bytes().to_vec(),
            PrivateKey::Sm2(k) => k.to_bytes().to_vec(),
            PrivateKey::Aes(k) => k.to_vec(),
        })
    }

    /// Rebuild from an unsealed scalar.
    pub(crate) fn from_scalar(curve: KeyAlg, scalar: &[u8]) -> Option<PrivateKey> {
        match curve {
            KeyAlg::P256 => p256::ecdsa::SigningKey::from_slice(scalar)
                .ok()
                .map(PrivateKey::P256),
            KeyAlg::Sm2 => sm2::SecretKey::from_slice(scalar).ok().map(PrivateKey::Sm2),
            KeyAlg::Aes256 => <[u8; 32]>::try_from(scalar)
                .ok()
                .map(|k| PrivateKey::Aes(Zeroizing::new(k))),
        }
    }

    /// The uncompressed public point 04 || x || y.
    pub(crate) fn public_point(&self) -> Vec<u8> {
        match self {
            PrivateKey::P256(k) => k
                .verifying_key()
                .to_encoded_point(false)
                .as_bytes()
                .to_vec(),
            PrivateKey::Sm2(k) => k.public_key().to_encoded_point(false).as_bytes().to_vec(),
            PrivateKey::Aes(_) => Vec::new(),
        }
    }

    /// The signature r || s (64 bytes) over `data` under `scheme`.
    pub(crate) fn sign(&self, scheme: &SignScheme, data: &[u8]) -> Result<Vec<u8>, MathError> {
        match (self, scheme) {
            (PrivateKey::P256(k), SignScheme::EcdsaPrehashed) => {
                if data.len() < 16 {
                    return Err(MathError::DataLen);
                }
                let sig: p256::ecdsa::Signature =
                    k.sign_prehash(data).map_err(|_| MathError::DataLen)?;
                Ok(sig.to_bytes().to_vec())
            }
            (PrivateKey::P256(k), SignScheme::EcdsaSha256) => {
                let sig: p256::ecdsa::Signature = k.sign(data);
                Ok(sig.to_bytes().to_vec())
            }
            (PrivateKey::Sm2(k), SignScheme::Sm2Prehashed) => {
                if data.len() != 32 {
                    return Err(MathError::DataLen);
                }
                let signer = sm2::dsa::SigningKey::new(DEFAULT_SIGNER_ID, k)
                    .map_err(|_| MathError::Invalid)?;
                let sig: sm2::dsa::Signature =
                    signer.sign_prehash(data).map_err(|_| MathError::DataLen)?;
                Ok(sig.to_bytes().to_vec())
            }
            (PrivateKey::Sm2(k), SignScheme::Sm3WithSm2 { signer_id }) => {
                let signer =
                    sm2::dsa::SigningKey::new(signer_id, k).map_err(|_| MathError::Invalid)?;
                let sig: sm2::dsa::Signature =
                    signer.try_sign(data).map_err(|_| MathError::Invalid)?;
                Ok(sig.to_bytes().to_vec())
            }
            _ => Err(MathError::Invalid),
        }
    }
}

impl PrivateKey {
    /// AES-256-GCM: ciphertext || tag when encrypting, plaintext when decrypting.
    pub(crate) fn gcm(
        &self,
        encrypt: bool,
        params: &GcmParams,
        data: &[u8],
    ) -> Result<Vec<u8>, MathError> {
        use aes_gcm::aead::{Aead, KeyInit, Payload};
        let PrivateKey::Aes(key) = self else {
            return Err(MathError::Invalid);
        };
        let cipher =
            aes_gcm::Aes256Gcm::new_from_slice(key.as_ref()).map_err(|_| MathError::Invalid)?;
        let nonce = aes_gcm::Nonce::from(params.iv);
        let payload = Payload {
            msg: data,
            aad: &params.aad,
        };
        if encrypt {
            cipher
                .encrypt(&nonce, payload)
                .map_err(|_| MathError::DataLen)
        } else {
            cipher
                .decrypt(&nonce, payload)
                .map_err(|_| MathError::Invalid)
        }
    }
}

/// Check r || s over `data` with the public point `point` (04 || x || y) under `scheme`.
pub(crate) fn verify(
    curve: KeyAlg,
    point: &[u8],
    scheme: &SignScheme,
    data: &[u8],
    signature: &[u8],
) -> Result<(), MathError> {
    match (curve, scheme) {
        (KeyAlg::P256, SignScheme::EcdsaPrehashed | SignScheme::EcdsaSha256) => {
            let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(point)
                .map_err(|_| MathError::Invalid)?;
            let sig =
                p256::ecdsa::Signature::from_slice(signature).map_err(|_| MathError::Invalid)?;
            let digest = match scheme {
                SignScheme::EcdsaSha256 => Sha256::digest(data).to_vec(),
                _ => data.to_vec(),
            };
            key.verify_prehash(&digest, &sig)
                .map_err(|_| MathError::Invalid)
        }
        (KeyAlg::Sm2, SignScheme::Sm2Prehashed | SignScheme::Sm3WithSm2 { .. }) => {
            let id = match scheme {
                SignScheme::Sm3WithSm2 { signer_id } => signer_id.as_str(),
                _ => DEFAULT_SIGNER_ID,
            };
            let key = sm2::dsa::VerifyingKey::from_sec1_bytes(id, point)
                .map_err(|_| MathError::Invalid)?;
            let sig = sm2::dsa::Signature::from_slice(signature).map_err(|_| MathError::Invalid)?;
            match scheme {
                SignScheme::Sm2Prehashed => key.verify_prehash(data, &sig),
                _ => key.verify(data, &sig),
            }
            .map_err(|_| MathError::Invalid)
        }
        _ => Err(MathError::Invalid),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    #[test]
    fn sm2_sign_verify_round_trip_with_and_without_token_hashing() {
        let key = PrivateKey::generate(KeyAlg::Sm2);
        let point = key.public_point();
        let scheme = SignScheme::Sm3WithSm2 {
            signer_id: "ALICE123@YAHOO.COM".into(),
        };
        let sig = key.sign(&scheme, b"message").unwrap();
        verify(KeyAlg::Sm2, &point, &scheme, b"message", &sig).unwrap();
        assert_eq!(
            verify(KeyAlg::Sm2, &point, &scheme, b"massage", &sig),
            Err(MathError::Invalid)
        );
        let e = [7u8; 32];
        let sig = key.sign(&SignScheme::Sm2Prehashed, &e).unwrap();
        verify(KeyAlg::Sm2, &point, &SignScheme::Sm2Prehashed, &e, &sig).unwrap();
        assert_eq!(
            key.sign(&SignScheme::Sm2Prehashed, &[0u8; 31]).err(),
            Some(MathError::DataLen)
        );
    }

    #[test]
    fn scalar_round_trips_and_schemes_do_not_cross_curves() {
        let key = PrivateKey::generate(KeyAlg::P256);
        let again = PrivateKey::from_scalar(KeyAlg::P256, &key.scalar_bytes()).unwrap();
        assert_eq!(key.public_point(), again.public_point());
        assert_eq!(
            key.sign(&SignScheme::Sm2Prehashed, &[1u8; 32]).err(),
            Some(MathError::Invalid)
        );
    }
}
