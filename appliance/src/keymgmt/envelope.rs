//! The GM/T 0009 / 0010 digital envelope that delivers an encryption private key to the holder
//! of an SM2 signing key: a fresh SM4 key encrypts the private scalar (SM4-ECB, two blocks, no
//! padding), and SM2 public-key encryption (GB/T 32918.4) carries the SM4 key to the recipient.
//!
//! ```text
//! SM2EnvelopedKey ::= SEQUENCE {
//!   symAlgID               AlgorithmIdentifier,  -- sm4-ecb 1.2.156.10197.1.104.1, no parameters
//!   symEncryptedKey        SM2Cipher,            -- the 16-byte SM4 key, to the recipient
//!   sm2PublicKey           BIT STRING,           -- 04 || x || y of the encryption key
//!   sm2EncryptedPrivateKey BIT STRING }          -- SM4-ECB(the 32-byte private scalar)
//! SM2Cipher ::= SEQUENCE {
//!   XCoordinate INTEGER, YCoordinate INTEGER,    -- C1 = [k]G
//!   HASH OCTET STRING (32),                      -- C3 = SM3(x2 || M || y2)
//!   CipherText OCTET STRING }                    -- C2 = M xor KDF(x2 || y2, len M)
//! ```

use const_oid::ObjectIdentifier;
use der::asn1::{BitString, OctetString, Uint};
use der::Encode;
use sm2::elliptic_curve::sec1::ToEncodedPoint;
use sm3::{Digest, Sm3};
use sm4::cipher::{BlockEncrypt, KeyInit};
use spki::AlgorithmIdentifierOwned;
use zeroize::Zeroizing;

/// sm4-ecb (1.2.156.10197.1.104.1), the envelope's symmetric algorithm.
pub const SM4_ECB: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.156.10197.1.104.1");

/// Why an envelope could not be made.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    /// The recipient's key is not an SM2 point.
    #[error("the recipient key is not an SM2 public key")]
    Recipient,
    /// DER encoding failed.
    #[error("envelope encoding: {0}")]
    Encoding(String),
}

#[derive(der::Sequence)]
struct Sm2Cipher {
    x: Uint,
    y: Uint,
    hash: OctetString,
    ciphertext: OctetString,
}

#[derive(der::Sequence)]
struct Sm2EnvelopedKey {
    sym_alg_id: AlgorithmIdentifierOwned,
    sym_encrypted_key: Sm2Cipher,
    sm2_public_key: BitString,
    sm2_encrypted_private_key: BitString,
}

fn enc(e: der::Error) -> EnvelopeError {
    EnvelopeError::Encoding(e.to_string())
}

/// KDF of GB/T 32918.4: SM3(z || counter) blocks, counter from 1, truncated to `len`.
fn kdf(z: &[u8], len: usize) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(len + 32));
    let mut counter: u32 = 1;
    while out.len() < len {
        let mut h = Sm3::new();
        h.update(z);
        h.update(counter.to_be_bytes());
        out.extend_from_slice(&h.finalize());
        counter = counter.wrapping_add(1);
    }
    out.truncate(len);
    out
}

/// SM2 public-key encryption of `message` to the uncompressed point `recipient`.
fn sm2_encrypt(recipient: &sm2::PublicKey, message: &[u8]) -> Result<Sm2Cipher, EnvelopeError> {
    loop {
        let k = sm2::NonZeroScalar::random(&mut rand::rngs::OsRng);
        let c1 = (sm2::ProjectivePoint::GENERATOR * *k)
            .to_affine()
            .to_encoded_point(false);
        let shared = (recipient.to_projective() * *k)
            .to_affine()
            .to_encoded_point(false);
        let (Some(x1), Some(y1), Some(x2), Some(y2)) = (c1.x(), c1.y(), shared.x(), shared.y())
        else {
            return Err(EnvelopeError::Recipient);
        };
        let mut z = Zeroizing::new(x2.to_vec());
        z.extend_from_slice(y2);
        let t = kdf(&z, message.len());
        if t.iter().all(|b| *b == 0) {
            continue; // GB/T 32918.4: choose another k
        }
        let c2: Vec<u8> = message.iter().zip(t.iter()).map(|(m, t)| m ^ t).collect();
        let mut h = Sm3::new();
        h.update(x2);
        h.update(message);
        h.update(y2);
        return Ok(Sm2Cipher {
            x: Uint::new(x1).map_err(enc)?,
            y: Uint::new(y1).map_err(enc)?,
            hash: OctetString::new(h.finalize().to_vec()).map_err(enc)?,
            ciphertext: OctetString::new(c2).map_err(enc)?,
        });
    }
}

/// The DER `SM2EnvelopedKey` delivering the private scalar `secret` (of the key whose point is
/// `public_point`) to the holder of the SM2 key `recipient_point` (uncompressed, 65 bytes).
pub fn seal(
    secret: &[u8; 32],
    public_point: &[u8],
    recipient_point: &[u8],
) -> Result<Vec<u8>, EnvelopeError> {
    let recipient =
        sm2::PublicKey::from_sec1_bytes(recipient_point).map_err(|_| EnvelopeError::Recipient)?;
    let mut sym_key = Zeroizing::new([0u8; 16]);
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, sym_key.as_mut());
    let cipher = sm4::Sm4::new(&(*sym_key).into());
    let mut blocks = Zeroizing::new(*secret);
    for block in blocks.chunks_exact_mut(16) {
        cipher.encrypt_block(block.into());
    }
    let envelope = Sm2EnvelopedKey {
        sym_alg_id: AlgorithmIdentifierOwned {
            oid: SM4_ECB,
            parameters: None,
        },
        sym_encrypted_key: sm2_encrypt(&recipient, sym_key.as_ref())?,
        sm2_public_key: BitString::from_bytes(public_point).map_err(enc)?,
        sm2_encrypted_private_key: BitString::from_bytes(blocks.as_ref()).map_err(enc)?,
    };
    envelope.to_der().map_err(enc)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn kdf_matches_the_standard_counter_construction() {
        let z = [7u8; 64];
        let t = kdf(&z, 40);
        let mut first = Sm3::new();
        first.update(z);
        first.update(1u32.to_be_bytes());
        assert_eq!(t[..32], first.finalize()[..]);
        assert_eq!(t.len(), 40);
    }

    #[test]
    fn a_key_that_is_not_sm2_is_refused() {
        assert!(matches!(
            seal(&[1; 32], &[4; 65], &[4; 65]),
            Err(EnvelopeError::Recipient)
        ));
    }
}
