//! Minimal DER writer: tag-length-value helpers for the structures this crate emits.
//!
//! Everything we write is built from known-good pieces, so these helpers cannot fail; lengths
//! are always the definite, minimal form DER requires.

/// `INTEGER` tag.
pub(crate) const INTEGER: u8 = 0x02;
/// `BIT STRING` tag.
pub(crate) const BIT_STRING: u8 = 0x03;
/// `OCTET STRING` tag.
pub(crate) const OCTET_STRING: u8 = 0x04;
/// `OBJECT IDENTIFIER` tag.
pub(crate) const OID: u8 = 0x06;
/// `ENUMERATED` tag.
pub(crate) const ENUMERATED: u8 = 0x0a;
/// `SEQUENCE` / `SEQUENCE OF` tag (constructed).
pub(crate) const SEQUENCE: u8 = 0x30;
/// `BOOLEAN` tag.
pub(crate) const BOOLEAN: u8 = 0x01;
/// `NULL` tag.
pub(crate) const NULL: u8 = 0x05;
/// `UTCTime` tag.
pub(crate) const UTC_TIME: u8 = 0x17;
/// `GeneralizedTime` tag.
pub(crate) const GENERALIZED_TIME: u8 = 0x18;

/// Number of bytes the DER length field for `len` takes.
pub(crate) fn length_len(len: usize) -> usize {
    if len < 0x80 {
        1
    } else {
        1 + (usize::BITS as usize / 8 - (len.leading_zeros() as usize / 8))
    }
}

/// Total size of a TLV whose content is `len` bytes (single-byte tag).
pub(crate) fn tlv_len(len: usize) -> usize {
    1 + length_len(len) + len
}

/// Appends a tag and a DER length.
pub(crate) fn push_header(out: &mut Vec<u8>, tag: u8, len: usize) {
    out.push(tag);
    if len < 0x80 {
        // Short form: the guard makes the narrowing exact.
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        let n = bytes.len() - skip;
        // n <= size_of::<usize>() <= 16, so it fits the 7-bit count.
        out.push(0x80 | n as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
}

/// Appends a complete TLV.
pub(crate) fn push_tlv(out: &mut Vec<u8>, tag: u8, content: &[u8]) {
    push_header(out, tag, content.len());
    out.extend_from_slice(content);
}

/// Returns a complete TLV as a new vector.
pub(crate) fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(tlv_len(content.len()));
    push_tlv(&mut out, tag, content);
    out
}

/// Content octets of a non-negative INTEGER holding `value`, minimally encoded.
pub(crate) fn uint_content(value: u128) -> Vec<u8> {
    let bytes = value.to_be_bytes();
    let skip = bytes
        .iter()
        .take_while(|b| **b == 0)
        .count()
        .min(bytes.len() - 1);
    let mut out = Vec::with_capacity(17);
    if bytes[skip] & 0x80 != 0 {
        out.push(0);
    }
    out.extend_from_slice(&bytes[skip..]);
    out
}

/// Appends an `Extension ::= SEQUENCE { extnID, critical BOOLEAN DEFAULT FALSE, extnValue }`.
pub(crate) fn push_extension(out: &mut Vec<u8>, oid: &[u8], critical: bool, value: &[u8]) {
    let crit_len = if critical { 3 } else { 0 };
    let inner = tlv_len(oid.len()) + crit_len + tlv_len(value.len());
    push_header(out, SEQUENCE, inner);
    push_tlv(out, OID, oid);
    if critical {
        out.extend_from_slice(&[BOOLEAN, 1, 0xff]);
    }
    push_tlv(out, OCTET_STRING, value);
}

/// Whether `content` is a valid, minimally encoded DER INTEGER body.
pub(crate) fn is_minimal_integer(content: &[u8]) -> bool {
    match content {
        [] => false,
        [_] => true,
        [0x00, next, ..] => next & 0x80 != 0,
        [0xff, next, ..] => next & 0x80 == 0,
        _ => true,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn lengths_use_minimal_forms() {
        let mut v = Vec::new();
        push_header(&mut v, SEQUENCE, 0x7f);
        assert_eq!(v, [0x30, 0x7f]);
        v.clear();
        push_header(&mut v, SEQUENCE, 0x80);
        assert_eq!(v, [0x30, 0x81, 0x80]);
        v.clear();
        push_header(&mut v, SEQUENCE, 0x0102_0304);
        assert_eq!(v, [0x30, 0x84, 1, 2, 3, 4]);
        assert_eq!(length_len(0x7f), 1);
        assert_eq!(length_len(0x80), 2);
        assert_eq!(length_len(0x100), 3);
        assert_eq!(length_len(0x0102_0304), 5);
    }

    #[test]
    fn uints_are_minimal_and_positive() {
        assert_eq!(uint_content(0), [0]);
        assert_eq!(uint_content(0x7f), [0x7f]);
        assert_eq!(uint_content(0x80), [0, 0x80]);
        assert_eq!(uint_content(0x0100), [1, 0]);
        assert_eq!(uint_content(u128::MAX).len(), 17);
    }

    #[test]
    fn integer_minimality() {
        assert!(!is_minimal_integer(&[]));
        assert!(is_minimal_integer(&[0]));
        assert!(!is_minimal_integer(&[0, 1]));
        assert!(is_minimal_integer(&[0, 0x80]));
        assert!(!is_minimal_integer(&[0xff, 0x80]));
        assert!(is_minimal_integer(&[0xff, 0x7f]));
    }
}
