//! Signature format glue: PKCS#11 `CKM_ECDSA` returns `r || s`, X.509 wants DER.

use crate::der_write::{push_header, push_tlv, tlv_len, INTEGER, SEQUENCE};

/// The raw ECDSA signature is empty or has an odd length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("raw ECDSA signature must be r || s of equal, non-zero lengths")]
pub struct InvalidRawEcdsaSignature;

/// Converts a raw `r || s` ECDSA signature (as PKCS#11 returns it) into DER
/// `Ecdsa-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER }`, the form X.509 and OCSP carry.
pub fn ecdsa_raw_to_der(raw: &[u8]) -> Result<Vec<u8>, InvalidRawEcdsaSignature> {
    if raw.is_empty() || !raw.len().is_multiple_of(2) {
        return Err(InvalidRawEcdsaSignature);
    }
    let (r, s) = raw.split_at(raw.len() / 2);
    let (r, s) = (uint(r), uint(s));
    let mut out = Vec::with_capacity(raw.len() + 8);
    push_header(&mut out, SEQUENCE, tlv_len(r.len()) + tlv_len(s.len()));
    push_tlv(&mut out, INTEGER, &r);
    push_tlv(&mut out, INTEGER, &s);
    Ok(out)
}

/// Minimal non-negative INTEGER content for big-endian magnitude `v`.
fn uint(v: &[u8]) -> Vec<u8> {
    let skip = v.iter().take_while(|b| **b == 0).count().min(v.len() - 1);
    let v = &v[skip..];
    let mut out = Vec::with_capacity(v.len() + 1);
    if v[0] & 0x80 != 0 {
        out.push(0);
    }
    out.extend_from_slice(v);
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn converts_and_pads_high_bit() {
        let der = ecdsa_raw_to_der(&[0x00, 0x01, 0x80, 0x00]).unwrap();
        assert_eq!(
            der,
            [0x30, 0x08, 0x02, 0x01, 0x01, 0x02, 0x03, 0x00, 0x80, 0x00]
        );
        assert_eq!(ecdsa_raw_to_der(&[1, 2, 3]), Err(InvalidRawEcdsaSignature));
        assert_eq!(ecdsa_raw_to_der(&[]), Err(InvalidRawEcdsaSignature));
    }
}
