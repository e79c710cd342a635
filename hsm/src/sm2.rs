//! SM2 on vendor tokens: the per-token mechanism table and the host-side digest e = SM3(Z || M).
//!
//! PKCS#11 defines no SM2 constants, so each vendor picks its own key type and mechanisms, and
//! tokens differ in who hashes: some take the message (and the signer ID) and compute
//! e = SM3(Z || M) themselves, others sign a 32-byte e the host computed. `Sm2Mechanisms` says
//! which, per token, in configuration; presets name the known tokens.

use std::fmt;
use std::str::FromStr;

use der::Decode;
use sm3::{Digest, Sm3};
use spki::SubjectPublicKeyInfoRef;

use crate::error::HsmError;

/// The GM/T 0009 default signer ID (user identity) that enters Z.
pub const DEFAULT_SIGNER_ID: &str = "1234567812345678";

/// Who computes e = SM3(Z || M).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sm2Hashing {
    /// The host computes e and the sign mechanism signs those 32 bytes (any signer ID, and huge
    /// CRLs are hashed as they stream).
    Host,
    /// The sign mechanism takes the message and hashes with the default signer ID itself.
    Token,
}

/// A token's SM2 constants: key type, key-generation and signing mechanisms, who hashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sm2Mechanisms {
    /// CKA_KEY_TYPE of SM2 keys (vendor-defined, or CKK_EC for tokens that use EC with SM2 params).
    pub key_type: u64,
    /// The key-pair generation mechanism.
    pub keygen_mechanism: u64,
    /// The signing mechanism (over e with `Host`, over the message with `Token`).
    pub sign_mechanism: u64,
    /// Who computes e.
    pub hashing: Sm2Hashing,
}

impl Sm2Mechanisms {
    /// `ca-softtoken`, host hashing: CKK_SM2 0x80534D32, CKM_SM2_KEY_PAIR_GEN 0x80534D00, CKM_SM2 0x80534D01.
    pub const CA_SOFTTOKEN: Sm2Mechanisms = Sm2Mechanisms {
        key_type: 0x8053_4D32,
        keygen_mechanism: 0x8053_4D00,
        sign_mechanism: 0x8053_4D01,
        hashing: Sm2Hashing::Host,
    };
    /// `ca-softtoken-token-hash`: the same token, signing with CKM_SM3_SM2 0x80534D02 (token hashes).
    pub const CA_SOFTTOKEN_TOKEN_HASH: Sm2Mechanisms = Sm2Mechanisms {
        sign_mechanism: 0x8053_4D02,
        hashing: Sm2Hashing::Token,
        ..Sm2Mechanisms::CA_SOFTTOKEN
    };

    /// The preset called `name` (`ca-softtoken`, `ca-softtoken-token-hash`).
    pub fn preset(name: &str) -> Result<Sm2Mechanisms, HsmError> {
        match name {
            "ca-softtoken" => Ok(Sm2Mechanisms::CA_SOFTTOKEN),
            "ca-softtoken-token-hash" => Ok(Sm2Mechanisms::CA_SOFTTOKEN_TOKEN_HASH),
            other => Err(HsmError::InvalidArgument {
                what: "SM2 mechanism preset",
                reason: format!("{other:?} is not one of ca-softtoken, ca-softtoken-token-hash"),
            }),
        }
    }
}

impl fmt::Display for Sm2Hashing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Sm2Hashing::Host => "host",
            Sm2Hashing::Token => "token",
        })
    }
}

impl FromStr for Sm2Hashing {
    type Err = HsmError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "host" => Ok(Sm2Hashing::Host),
            "token" => Ok(Sm2Hashing::Token),
            other => Err(HsmError::InvalidArgument {
                what: "SM2 hashing",
                reason: format!("{other:?} is not host or token"),
            }),
        }
    }
}

/// SM2 curve parameters a, b, xG, yG (GM/T 0003.5), as they enter Z.
const CURVE: [u8; 128] = hex_literal(concat!(
    "FFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFC",
    "28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93",
    "32C4AE2C1F1981195F9904466A39C9948FE30BBFF2660BE1715A4589334C74C7",
    "BC3736A2F4F6779C59BDCEE36B692153D0A9877CC62A474002DF32E52139F0A0",
));

const fn hex_literal(text: &str) -> [u8; 128] {
    const fn nibble(c: u8) -> u8 {
        match c {
            b'0'..=b'9' => c - b'0',
            b'A'..=b'F' => c - b'A' + 10,
            _ => panic!("not upper-case hex"),
        }
    }
    let bytes = text.as_bytes();
    let mut out = [0u8; 128];
    let mut i = 0;
    while i < 128 {
        out[i] = (nibble(bytes[2 * i]) << 4) | nibble(bytes[2 * i + 1]);
        i += 1;
    }
    out
}

/// Z = SM3(ENTL || ID || a || b || xG || yG || xA || yA) for the uncompressed point `point`.
pub fn sm2_z(point: &[u8], signer_id: &[u8]) -> Result<[u8; 32], HsmError> {
    if point.len() != 65 || point[0] != 0x04 {
        return Err(HsmError::InvalidArgument {
            what: "SM2 public key",
            reason: "not an uncompressed 256-bit point".into(),
        });
    }
    let bits = signer_id.len().checked_mul(8).filter(|b| *b <= 0xffff);
    let Some(bits) = bits else {
        return Err(HsmError::InvalidArgument {
            what: "SM2 signer ID",
            reason: "longer than 8191 bytes".into(),
        });
    };
    let mut hasher = Sm3::new();
    hasher.update((bits as u16).to_be_bytes());
    hasher.update(signer_id);
    hasher.update(CURVE);
    hasher.update(&point[1..]);
    Ok(hasher.finalize().into())
}

/// The SM3 hasher with Z already absorbed: feed M, then `finalize` gives e (for streamed CRLs).
pub fn sm2_hasher(point: &[u8], signer_id: &[u8]) -> Result<Sm3, HsmError> {
    let mut hasher = Sm3::new();
    hasher.update(sm2_z(point, signer_id)?);
    Ok(hasher)
}

/// e = SM3(Z || M): what SM2 signs for `data` under the key `point` and `signer_id`.
pub fn sm2_digest(point: &[u8], signer_id: &[u8], data: &[u8]) -> Result<[u8; 32], HsmError> {
    let mut hasher = sm2_hasher(point, signer_id)?;
    hasher.update(data);
    Ok(hasher.finalize().into())
}

/// The uncompressed point inside an SM2 SubjectPublicKeyInfo DER.
pub fn sm2_point(spki_der: &[u8]) -> Result<Vec<u8>, HsmError> {
    let spki = SubjectPublicKeyInfoRef::from_der(spki_der)
        .map_err(|e| HsmError::Malformed(format!("SM2 public key: {e}")))?;
    Ok(spki.subject_public_key.raw_bytes().to_vec())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;
    use sm2::dsa::signature::hazmat::PrehashSigner;
    use sm2::dsa::signature::Verifier;
    use sm2::elliptic_curve::sec1::ToEncodedPoint;

    #[test]
    fn host_digest_matches_an_independent_sm2_implementation() {
        let secret = sm2::SecretKey::random(&mut rand_core::OsRng);
        let point = secret.public_key().to_encoded_point(false);
        for id in [DEFAULT_SIGNER_ID, "ALICE123@YAHOO.COM"] {
            let e = sm2_digest(point.as_bytes(), id.as_bytes(), b"the TBS").unwrap();
            // Sign our e; the sm2 crate's verifier computes Z || M itself.
            let signer = sm2::dsa::SigningKey::new(id, &secret).unwrap();
            let sig: sm2::dsa::Signature = signer.sign_prehash(&e).unwrap();
            let verifier = sm2::dsa::VerifyingKey::new(id, secret.public_key()).unwrap();
            verifier.verify(b"the TBS", &sig).unwrap();
            assert!(verifier.verify(b"another TBS", &sig).is_err());
        }
    }

    #[test]
    fn presets_and_bad_points_are_typed() {
        assert_eq!(
            Sm2Mechanisms::preset("ca-softtoken").unwrap().hashing,
            Sm2Hashing::Host
        );
        assert!(Sm2Mechanisms::preset("acme-hsm").is_err());
        assert!(sm2_z(&[4u8; 33], b"id").is_err());
    }
}
