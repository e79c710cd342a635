//! Turning a digest into what the token signs, and the token's output into X.509 form.

use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsPssParams};
use cryptoki::mechanism::{Mechanism, MechanismType};
use der::asn1::UintRef;
use der::Encode;

use crate::algorithm::SignatureAlgorithm;
use crate::error::HsmError;

/// DER prefix of `DigestInfo { sha256, NULL, OCTET STRING(32) }` (RFC 8017 9.2 note 1).
const SHA256_DIGEST_INFO: &[u8] = &[
    0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05,
    0x00, 0x04, 0x20,
];
/// DER prefix of `DigestInfo { sha384, NULL, OCTET STRING(48) }`.
const SHA384_DIGEST_INFO: &[u8] = &[
    0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05,
    0x00, 0x04, 0x30,
];

/// `Ecdsa-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER }` (RFC 3279 2.2.3).
#[derive(der::Sequence)]
struct EcdsaSigValue<'a> {
    r: UintRef<'a>,
    s: UintRef<'a>,
}

/// The PKCS#11 mechanism and the bytes to pass to C_Sign for `digest` under `alg`.
pub(crate) fn prepare(
    alg: SignatureAlgorithm,
    digest: &[u8],
) -> Result<(Mechanism<'static>, Vec<u8>), HsmError> {
    if digest.len() != alg.hash_len() {
        return Err(HsmError::DigestLength {
            alg,
            expected: alg.hash_len(),
            actual: digest.len(),
        });
    }
    let sha384 = alg.hash_len() == 48;
    Ok(match alg {
        SignatureAlgorithm::Sm2Sm3 => {
            // SM2 mechanisms are vendor-defined: `Hsm` builds them from the token's table.
            return Err(HsmError::InvalidArgument {
                what: "signature algorithm",
                reason: "SM2 signs through the token's SM2 mechanism table".into(),
            });
        }
        SignatureAlgorithm::EcdsaSha256 | SignatureAlgorithm::EcdsaSha384 => {
            (Mechanism::Ecdsa, digest.to_vec())
        }
        SignatureAlgorithm::RsaPkcs1Sha256 | SignatureAlgorithm::RsaPkcs1Sha384 => {
            let prefix = if sha384 {
                SHA384_DIGEST_INFO
            } else {
                SHA256_DIGEST_INFO
            };
            (Mechanism::RsaPkcs, [prefix, digest].concat())
        }
        SignatureAlgorithm::RsaPssSha256 | SignatureAlgorithm::RsaPssSha384 => {
            let (hash_alg, mgf) = if sha384 {
                (MechanismType::SHA384, PkcsMgfType::MGF1_SHA384)
            } else {
                (MechanismType::SHA256, PkcsMgfType::MGF1_SHA256)
            };
            let params = PkcsPssParams {
                hash_alg,
                mgf,
                s_len: (alg.hash_len() as u64).into(),
            };
            (Mechanism::RsaPkcsPss(params), digest.to_vec())
        }
    })
}

/// Convert the token's raw signature to X.509 form: ECDSA and SM2 r||s become DER
/// (SM2Signature has the same SEQUENCE { r, s } shape, GM/T 0009), RSA stays raw.
pub(crate) fn finish(alg: SignatureAlgorithm, raw: Vec<u8>) -> Result<Vec<u8>, HsmError> {
    if !alg.is_ecdsa() && !alg.is_sm2() {
        return Ok(raw);
    }
    if raw.is_empty() || !raw.len().is_multiple_of(2) {
        return Err(HsmError::Malformed(format!(
            "ECDSA signature of odd length {}",
            raw.len()
        )));
    }
    let (r, s) = raw.split_at(raw.len() / 2);
    let malformed = |e: der::Error| HsmError::Malformed(format!("ECDSA signature: {e}"));
    EcdsaSigValue {
        r: UintRef::new(r).map_err(malformed)?,
        s: UintRef::new(s).map_err(malformed)?,
    }
    .to_der()
    .map_err(malformed)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    #[test]
    fn ecdsa_raw_becomes_der_with_sign_padding_and_zero_stripping() {
        let mut raw = vec![0u8; 64];
        raw[0] = 0x80; // r needs a 0x00 pad byte
        raw[31] = 0x01;
        raw[63] = 0x05; // s = 5 after stripping 31 zero bytes
        let der = finish(SignatureAlgorithm::EcdsaSha256, raw).unwrap();
        assert_eq!(&der[..4], &[0x30, 0x26, 0x02, 0x21]);
        assert_eq!(der[4], 0x00);
        assert_eq!(&der[der.len() - 3..], &[0x02, 0x01, 0x05]);
    }

    #[test]
    fn odd_ecdsa_signature_is_refused() {
        assert!(matches!(
            finish(SignatureAlgorithm::EcdsaSha384, vec![1, 2, 3]),
            Err(HsmError::Malformed(_))
        ));
    }

    #[test]
    fn wrong_digest_length_is_a_typed_error() {
        let err = prepare(SignatureAlgorithm::RsaPssSha384, &[0u8; 32]).err();
        assert!(matches!(
            err,
            Some(HsmError::DigestLength {
                expected: 48,
                actual: 32,
                ..
            })
        ));
    }

    #[test]
    fn pkcs1_input_is_digest_info() {
        let (_, input) = prepare(SignatureAlgorithm::RsaPkcs1Sha256, &[7u8; 32]).unwrap();
        assert_eq!(input.len(), 19 + 32);
        assert_eq!(&input[..19], SHA256_DIGEST_INFO);
    }
}
