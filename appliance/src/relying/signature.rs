//! Signature checks for relying parties: which algorithms a subscriber's key may sign with, and
//! the one verifier (`ring`, as for CSRs) that every login response, CMS signer and certificate
//! chain link goes through.

use const_oid::db::rfc5912;
use const_oid::ObjectIdentifier;
use der::asn1::ObjectIdentifier as Oid;
use der::{Decode, Encode};
use spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};

/// Why a signature was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The key is of a type we do not verify (not EC P-256/P-384, not RSA).
    #[error("unsupported key: {0}")]
    UnsupportedKey(String),
    /// The algorithm is unknown, or does not fit the key.
    #[error("unsupported signature algorithm: {0}")]
    UnsupportedAlgorithm(String),
    /// The signature does not verify.
    #[error("the signature does not verify with the certificate's key")]
    Invalid,
}

/// The public key families we verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFamily {
    /// ECDSA on P-256.
    EcP256,
    /// ECDSA on P-384.
    EcP384,
    /// RSA (2048 to 8192 bits).
    Rsa,
}

/// A signature scheme a subscriber's key may use (the names the login API accepts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// ECDSA, DER `ECDSA-Sig-Value`, SHA-256.
    EcdsaSha256,
    /// ECDSA, DER `ECDSA-Sig-Value`, SHA-384.
    EcdsaSha384,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RsaPkcs1Sha256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    RsaPkcs1Sha384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    RsaPkcs1Sha512,
    /// RSASSA-PSS, SHA-256, MGF1-SHA-256, salt length 32.
    RsaPssSha256,
    /// RSASSA-PSS, SHA-384, MGF1-SHA-384, salt length 48.
    RsaPssSha384,
    /// RSASSA-PSS, SHA-512, MGF1-SHA-512, salt length 64.
    RsaPssSha512,
}

/// Digest algorithms accepted in CMS (SHA-1 and MD5 are refused).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Digest {
    /// SHA-256.
    Sha256,
    /// SHA-384.
    Sha384,
    /// SHA-512.
    Sha512,
}

impl Digest {
    /// The digest named by `oid`, if accepted.
    pub fn from_oid(oid: &ObjectIdentifier) -> Option<Digest> {
        match *oid {
            rfc5912::ID_SHA_256 => Some(Digest::Sha256),
            rfc5912::ID_SHA_384 => Some(Digest::Sha384),
            rfc5912::ID_SHA_512 => Some(Digest::Sha512),
            _ => None,
        }
    }

    /// The digest of `data`.
    pub fn digest(self, data: &[u8]) -> Vec<u8> {
        use sha2::Digest as _;
        match self {
            Digest::Sha256 => sha2::Sha256::digest(data).to_vec(),
            Digest::Sha384 => sha2::Sha384::digest(data).to_vec(),
            Digest::Sha512 => sha2::Sha512::digest(data).to_vec(),
        }
    }
}

impl Scheme {
    /// Every scheme with its API name.
    pub const ALL: [(Scheme, &'static str); 8] = [
        (Scheme::EcdsaSha256, "ecdsa-sha256"),
        (Scheme::EcdsaSha384, "ecdsa-sha384"),
        (Scheme::RsaPkcs1Sha256, "rsa-pkcs1-sha256"),
        (Scheme::RsaPkcs1Sha384, "rsa-pkcs1-sha384"),
        (Scheme::RsaPkcs1Sha512, "rsa-pkcs1-sha512"),
        (Scheme::RsaPssSha256, "rsa-pss-sha256"),
        (Scheme::RsaPssSha384, "rsa-pss-sha384"),
        (Scheme::RsaPssSha512, "rsa-pss-sha512"),
    ];

    /// The scheme called `name` in the API.
    pub fn from_name(name: &str) -> Option<Scheme> {
        Self::ALL.iter().find(|(_, n)| *n == name).map(|(s, _)| *s)
    }

    /// Its API name.
    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(s, _)| *s == self)
            .map(|(_, n)| *n)
            .unwrap_or("unknown")
    }

    /// The scheme used when the caller names none: the key's natural one.
    pub fn default_for(family: KeyFamily) -> Scheme {
        match family {
            KeyFamily::EcP256 => Scheme::EcdsaSha256,
            KeyFamily::EcP384 => Scheme::EcdsaSha384,
            KeyFamily::Rsa => Scheme::RsaPkcs1Sha256,
        }
    }

    /// The scheme an X.509 / CMS `signatureAlgorithm` names. `rsaEncryption` (as OpenSSL writes
    /// in CMS) takes its hash from `digest`.
    pub fn from_algorithm(
        alg: &AlgorithmIdentifierOwned,
        digest: Option<Digest>,
    ) -> Result<Scheme, SignatureError> {
        let unsupported = || SignatureError::UnsupportedAlgorithm(alg.oid.to_string());
        Ok(match alg.oid {
            rfc5912::ECDSA_WITH_SHA_256 => Scheme::EcdsaSha256,
            rfc5912::ECDSA_WITH_SHA_384 => Scheme::EcdsaSha384,
            rfc5912::SHA_256_WITH_RSA_ENCRYPTION => Scheme::RsaPkcs1Sha256,
            rfc5912::SHA_384_WITH_RSA_ENCRYPTION => Scheme::RsaPkcs1Sha384,
            rfc5912::SHA_512_WITH_RSA_ENCRYPTION => Scheme::RsaPkcs1Sha512,
            rfc5912::RSA_ENCRYPTION => match digest {
                Some(Digest::Sha256) => Scheme::RsaPkcs1Sha256,
                Some(Digest::Sha384) => Scheme::RsaPkcs1Sha384,
                Some(Digest::Sha512) => Scheme::RsaPkcs1Sha512,
                None => return Err(unsupported()),
            },
            rfc5912::ID_RSASSA_PSS => pss_scheme(alg).ok_or_else(unsupported)?,
            _ => return Err(unsupported()),
        })
    }
}

/// The PSS variants `ring` verifies: MGF1 with the same hash and a salt as long as the hash.
fn pss_scheme(alg: &AlgorithmIdentifierOwned) -> Option<Scheme> {
    let params = alg.parameters.as_ref()?.to_der().ok()?;
    let params = rsa::pkcs1::RsaPssParams::from_der(&params).ok()?;
    let hash = params.hash.oid;
    let mgf_hash = params.mask_gen.parameters.as_ref().map(|p| p.oid);
    if params.mask_gen.oid != rfc5912::ID_MGF_1 || mgf_hash != Some(hash) {
        return None;
    }
    match (Digest::from_oid(&hash)?, params.salt_len) {
        (Digest::Sha256, 32) => Some(Scheme::RsaPssSha256),
        (Digest::Sha384, 48) => Some(Scheme::RsaPssSha384),
        (Digest::Sha512, 64) => Some(Scheme::RsaPssSha512),
        _ => None,
    }
}

/// The family of `spki`'s key.
pub fn key_family(spki: &SubjectPublicKeyInfoOwned) -> Result<KeyFamily, SignatureError> {
    match spki.algorithm.oid {
        rfc5912::ID_EC_PUBLIC_KEY => {
            let curve: Option<Oid> = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.decode_as().ok());
            match curve {
                Some(rfc5912::SECP_256_R_1) => Ok(KeyFamily::EcP256),
                Some(rfc5912::SECP_384_R_1) => Ok(KeyFamily::EcP384),
                Some(other) => Err(SignatureError::UnsupportedKey(format!("EC curve {other}"))),
                None => Err(SignatureError::UnsupportedKey(
                    "EC key without a named curve".into(),
                )),
            }
        }
        rfc5912::RSA_ENCRYPTION => Ok(KeyFamily::Rsa),
        other => Err(SignatureError::UnsupportedKey(format!(
            "key algorithm {other}"
        ))),
    }
}

/// Verifies `signature` over `message` with `spki`'s key under `scheme`.
pub fn verify(
    spki: &SubjectPublicKeyInfoOwned,
    scheme: Scheme,
    message: &[u8],
    signature: &[u8],
) -> Result<(), SignatureError> {
    use ring::signature as sig;
    let family = key_family(spki)?;
    let mismatch = || {
        SignatureError::UnsupportedAlgorithm(format!(
            "{} does not fit a {family:?} key",
            scheme.name()
        ))
    };
    let algorithm: &'static dyn sig::VerificationAlgorithm = match (scheme, family) {
        (Scheme::EcdsaSha256, KeyFamily::EcP256) => &sig::ECDSA_P256_SHA256_ASN1,
        (Scheme::EcdsaSha384, KeyFamily::EcP256) => &sig::ECDSA_P256_SHA384_ASN1,
        (Scheme::EcdsaSha256, KeyFamily::EcP384) => &sig::ECDSA_P384_SHA256_ASN1,
        (Scheme::EcdsaSha384, KeyFamily::EcP384) => &sig::ECDSA_P384_SHA384_ASN1,
        (Scheme::RsaPkcs1Sha256, KeyFamily::Rsa) => &sig::RSA_PKCS1_2048_8192_SHA256,
        (Scheme::RsaPkcs1Sha384, KeyFamily::Rsa) => &sig::RSA_PKCS1_2048_8192_SHA384,
        (Scheme::RsaPkcs1Sha512, KeyFamily::Rsa) => &sig::RSA_PKCS1_2048_8192_SHA512,
        (Scheme::RsaPssSha256, KeyFamily::Rsa) => &sig::RSA_PSS_2048_8192_SHA256,
        (Scheme::RsaPssSha384, KeyFamily::Rsa) => &sig::RSA_PSS_2048_8192_SHA384,
        (Scheme::RsaPssSha512, KeyFamily::Rsa) => &sig::RSA_PSS_2048_8192_SHA512,
        _ => return Err(mismatch()),
    };
    let key = spki
        .subject_public_key
        .as_bytes()
        .ok_or_else(|| SignatureError::UnsupportedKey("public key has unused bits".into()))?;
    sig::UnparsedPublicKey::new(algorithm, key)
        .verify(message, signature)
        .map_err(|_| SignatureError::Invalid)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn every_scheme_name_round_trips() {
        for (scheme, name) in Scheme::ALL {
            assert_eq!(Scheme::from_name(name), Some(scheme));
            assert_eq!(scheme.name(), name);
        }
        assert_eq!(Scheme::from_name("ecdsa-sha1"), None);
    }

    #[test]
    fn sha1_is_not_an_accepted_digest() {
        assert_eq!(Digest::from_oid(&rfc5912::ID_SHA_1), None);
        assert_eq!(Digest::from_oid(&rfc5912::ID_SHA_256), Some(Digest::Sha256));
    }
}
