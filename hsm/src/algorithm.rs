//! Key kinds and signature algorithms, with their X.509 identifiers and host-side hashing.

use std::fmt;
use std::str::FromStr;

use der::Decode;
use sha2::{Digest, Sha256, Sha384};
use sm3::Sm3;
use spki::AlgorithmIdentifierOwned;

use crate::error::HsmError;

/// The key types a CA key on the token may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyKind {
    /// ECDSA on NIST P-256 (secp256r1).
    EcP256,
    /// ECDSA on NIST P-384 (secp384r1).
    EcP384,
    /// RSA with a 2048-bit modulus.
    Rsa2048,
    /// RSA with a 3072-bit modulus.
    Rsa3072,
    /// RSA with a 4096-bit modulus.
    Rsa4096,
    /// SM2 (GM/T 0003, curve 1.2.156.10197.1.301); the token's vendor constants come from `Sm2Mechanisms`.
    Sm2,
}

impl KeyKind {
    /// Every kind, for listing in help texts and tests.
    pub const ALL: [KeyKind; 6] = [
        KeyKind::EcP256,
        KeyKind::EcP384,
        KeyKind::Rsa2048,
        KeyKind::Rsa3072,
        KeyKind::Rsa4096,
        KeyKind::Sm2,
    ];

    /// The configuration name, e.g. `ec-p256` or `rsa-3072`.
    pub fn as_str(&self) -> &'static str {
        match self {
            KeyKind::EcP256 => "ec-p256",
            KeyKind::EcP384 => "ec-p384",
            KeyKind::Rsa2048 => "rsa-2048",
            KeyKind::Rsa3072 => "rsa-3072",
            KeyKind::Rsa4096 => "rsa-4096",
            KeyKind::Sm2 => "sm2",
        }
    }

    /// True for the elliptic-curve kinds (SM2 included).
    pub fn is_ec(&self) -> bool {
        matches!(self, KeyKind::EcP256 | KeyKind::EcP384 | KeyKind::Sm2)
    }

    /// RSA modulus size in bits, `None` for EC keys.
    pub fn rsa_bits(&self) -> Option<usize> {
        match self {
            KeyKind::Rsa2048 => Some(2048),
            KeyKind::Rsa3072 => Some(3072),
            KeyKind::Rsa4096 => Some(4096),
            KeyKind::EcP256 | KeyKind::EcP384 | KeyKind::Sm2 => None,
        }
    }

    /// The signature algorithm a CA would normally pair with this key.
    pub fn default_signature_algorithm(&self) -> SignatureAlgorithm {
        match self {
            KeyKind::EcP256 => SignatureAlgorithm::EcdsaSha256,
            KeyKind::EcP384 => SignatureAlgorithm::EcdsaSha384,
            KeyKind::Rsa2048 | KeyKind::Rsa3072 => SignatureAlgorithm::RsaPkcs1Sha256,
            KeyKind::Rsa4096 => SignatureAlgorithm::RsaPkcs1Sha384,
            KeyKind::Sm2 => SignatureAlgorithm::Sm2Sm3,
        }
    }

    /// Whether `alg` may be used with this key. ECDSA follows the CA/Browser Forum pairing
    /// (P-256 with SHA-256, P-384 with SHA-384); RSA keys take any RSA algorithm; SM2 only SM3withSM2.
    pub fn allows(&self, alg: SignatureAlgorithm) -> bool {
        match self {
            KeyKind::EcP256 => alg == SignatureAlgorithm::EcdsaSha256,
            KeyKind::EcP384 => alg == SignatureAlgorithm::EcdsaSha384,
            KeyKind::Rsa2048 | KeyKind::Rsa3072 | KeyKind::Rsa4096 => alg.is_rsa(),
            KeyKind::Sm2 => alg == SignatureAlgorithm::Sm2Sm3,
        }
    }
}

impl fmt::Display for KeyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for KeyKind {
    type Err = HsmError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        KeyKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| HsmError::InvalidArgument {
                what: "key kind",
                reason: format!(
                    "{s:?} is not one of ec-p256, ec-p384, rsa-2048, rsa-3072, rsa-4096, sm2"
                ),
            })
    }
}

/// The signature algorithms the CA signs certificates, CRLs and OCSP responses with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SignatureAlgorithm {
    /// ecdsa-with-SHA256.
    EcdsaSha256,
    /// ecdsa-with-SHA384.
    EcdsaSha384,
    /// sha256WithRSAEncryption (PKCS#1 v1.5).
    RsaPkcs1Sha256,
    /// sha384WithRSAEncryption (PKCS#1 v1.5).
    RsaPkcs1Sha384,
    /// RSASSA-PSS, SHA-256, MGF1-SHA-256, 32-byte salt.
    RsaPssSha256,
    /// RSASSA-PSS, SHA-384, MGF1-SHA-384, 48-byte salt.
    RsaPssSha384,
    /// SM3withSM2 (GM/T 0009): the signed digest is e = SM3(Z || M), Z from the signer ID.
    Sm2Sm3,
}

/// DER of each AlgorithmIdentifier, byte for byte as the CA/Browser Forum Baseline Requirements
/// (7.1.3.2) list them: ECDSA without parameters, PKCS#1 with NULL, PSS with explicit params.
mod encodings {
    pub const ECDSA_SHA256: &[u8] = &[
        0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02,
    ];
    pub const ECDSA_SHA384: &[u8] = &[
        0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03,
    ];
    pub const RSA_PKCS1_SHA256: &[u8] = &[
        0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b, 0x05, 0x00,
    ];
    pub const RSA_PKCS1_SHA384: &[u8] = &[
        0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c, 0x05, 0x00,
    ];
    /// SM2-with-SM3 (1.2.156.10197.1.501), no parameters (GM/T 0015, as OpenSSL writes it).
    pub const SM2_SM3: &[u8] = &[
        0x30, 0x0a, 0x06, 0x08, 0x2a, 0x81, 0x1c, 0xcf, 0x55, 0x01, 0x83, 0x75,
    ];
    /// id-RSASSA-PSS { sha256 NULL, mgf1(sha256 NULL), saltLength 32 }.
    pub const RSA_PSS_SHA256: &[u8] = &[
        0x30, 0x41, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a, 0x30, 0x34,
        0xa0, 0x0f, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01,
        0x05, 0x00, 0xa1, 0x1c, 0x30, 0x1a, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01,
        0x01, 0x08, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01,
        0x05, 0x00, 0xa2, 0x03, 0x02, 0x01, 0x20,
    ];
    /// id-RSASSA-PSS { sha384 NULL, mgf1(sha384 NULL), saltLength 48 }.
    pub const RSA_PSS_SHA384: &[u8] = &[
        0x30, 0x41, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a, 0x30, 0x34,
        0xa0, 0x0f, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02,
        0x05, 0x00, 0xa1, 0x1c, 0x30, 0x1a, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01,
        0x01, 0x08, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02,
        0x05, 0x00, 0xa2, 0x03, 0x02, 0x01, 0x30,
    ];
}

impl SignatureAlgorithm {
    /// Every algorithm, for listing and tests.
    pub const ALL: [SignatureAlgorithm; 7] = [
        SignatureAlgorithm::EcdsaSha256,
        SignatureAlgorithm::EcdsaSha384,
        SignatureAlgorithm::RsaPkcs1Sha256,
        SignatureAlgorithm::RsaPkcs1Sha384,
        SignatureAlgorithm::RsaPssSha256,
        SignatureAlgorithm::RsaPssSha384,
        SignatureAlgorithm::Sm2Sm3,
    ];

    /// The configuration name, e.g. `ecdsa-sha256` or `rsa-pss-sha384`.
    pub fn as_str(&self) -> &'static str {
        match self {
            SignatureAlgorithm::EcdsaSha256 => "ecdsa-sha256",
            SignatureAlgorithm::EcdsaSha384 => "ecdsa-sha384",
            SignatureAlgorithm::RsaPkcs1Sha256 => "rsa-pkcs1-sha256",
            SignatureAlgorithm::RsaPkcs1Sha384 => "rsa-pkcs1-sha384",
            SignatureAlgorithm::RsaPssSha256 => "rsa-pss-sha256",
            SignatureAlgorithm::RsaPssSha384 => "rsa-pss-sha384",
            SignatureAlgorithm::Sm2Sm3 => "sm2-sm3",
        }
    }

    /// True for the two ECDSA algorithms.
    pub fn is_ecdsa(&self) -> bool {
        matches!(
            self,
            SignatureAlgorithm::EcdsaSha256 | SignatureAlgorithm::EcdsaSha384
        )
    }

    /// True for the four RSA algorithms.
    pub fn is_rsa(&self) -> bool {
        !self.is_ecdsa() && *self != SignatureAlgorithm::Sm2Sm3
    }

    /// True for SM3withSM2.
    pub fn is_sm2(&self) -> bool {
        *self == SignatureAlgorithm::Sm2Sm3
    }

    /// True for the two RSASSA-PSS algorithms.
    pub fn is_pss(&self) -> bool {
        matches!(
            self,
            SignatureAlgorithm::RsaPssSha256 | SignatureAlgorithm::RsaPssSha384
        )
    }

    /// DER of the AlgorithmIdentifier, as placed in certificates, CRLs and OCSP responses.
    pub fn algorithm_identifier_der(&self) -> &'static [u8] {
        match self {
            SignatureAlgorithm::EcdsaSha256 => encodings::ECDSA_SHA256,
            SignatureAlgorithm::EcdsaSha384 => encodings::ECDSA_SHA384,
            SignatureAlgorithm::RsaPkcs1Sha256 => encodings::RSA_PKCS1_SHA256,
            SignatureAlgorithm::RsaPkcs1Sha384 => encodings::RSA_PKCS1_SHA384,
            SignatureAlgorithm::RsaPssSha256 => encodings::RSA_PSS_SHA256,
            SignatureAlgorithm::RsaPssSha384 => encodings::RSA_PSS_SHA384,
            SignatureAlgorithm::Sm2Sm3 => encodings::SM2_SM3,
        }
    }

    /// The X.509 AlgorithmIdentifier (PSS with its RSASSA-PSS-params: MGF1 same hash, salt = hash len).
    pub fn algorithm_identifier(&self) -> AlgorithmIdentifierOwned {
        AlgorithmIdentifierOwned::from_der(self.algorithm_identifier_der())
            .expect("the built-in AlgorithmIdentifier encodings are valid DER (unit-tested)")
    }

    /// Length in bytes of this algorithm's digest (32 or 48).
    pub fn hash_len(&self) -> usize {
        match self {
            SignatureAlgorithm::EcdsaSha256
            | SignatureAlgorithm::RsaPkcs1Sha256
            | SignatureAlgorithm::RsaPssSha256
            | SignatureAlgorithm::Sm2Sm3 => 32,
            SignatureAlgorithm::EcdsaSha384
            | SignatureAlgorithm::RsaPkcs1Sha384
            | SignatureAlgorithm::RsaPssSha384 => 48,
        }
    }

    /// Digest `data` with this algorithm's hash (SHA-256/384, SM3). For SM3withSM2 this is the
    /// plain SM3 of `data`, not what SM2 signs: that is `sm2_digest` (Z, from the key and signer ID, first).
    pub fn digest(&self, data: &[u8]) -> Vec<u8> {
        if self.is_sm2() {
            return Sm3::digest(data).to_vec();
        }
        match self.hash_len() {
            32 => Sha256::digest(data).to_vec(),
            _ => Sha384::digest(data).to_vec(),
        }
    }
}

impl fmt::Display for SignatureAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SignatureAlgorithm {
    type Err = HsmError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SignatureAlgorithm::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| HsmError::InvalidArgument {
                what: "signature algorithm",
                reason: format!("{s:?} is not a known signature algorithm"),
            })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests;
