//! One `revokedCertificates` entry and its DER encoding.

use super::builder::CrlError;
use crate::der_write::{
    push_extension, push_header, push_tlv, tlv_len, INTEGER, OCTET_STRING, OID, SEQUENCE,
};
use crate::reason::Reason;
use crate::serial::check_serial;
use crate::time_enc::{push_generalized, push_x509_time};
use const_oid::db::rfc5280::{ID_CE_CRL_REASONS, ID_CE_INVALIDITY_DATE};
use time::OffsetDateTime;

/// A revoked certificate as it appears on a CRL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedEntry {
    /// Serial INTEGER content octets, byte-identical to the certificate's.
    pub serial: Vec<u8>,
    /// revocationDate.
    pub revocation_date: OffsetDateTime,
    /// reasonCode; `None` omits it (unspecified). `RemoveFromCrl` only on delta CRLs.
    pub reason: Option<Reason>,
    /// invalidityDate: when the key is known or suspected to have been compromised.
    pub invalidity_date: Option<OffsetDateTime>,
}

/// DER length of an RFC 5280 `Time` for `t`: UTCTime (15) through 2049, else GeneralizedTime (17).
fn x509_time_len(t: OffsetDateTime) -> usize {
    if (1950..=2049).contains(&t.to_offset(time::UtcOffset::UTC).year()) {
        15
    } else {
        17
    }
}

/// `Extension { extnID, extnValue }` size for a 3-byte OID and a value of `value_len` bytes.
const fn extension_len(value_len: usize) -> usize {
    2 + 5 + 2 + value_len
}

/// Encodes `entry` into `out` (cleared first), in one pass without temporary buffers: every
/// length is known up front (a serial is at most 20 octets, so an entry is under 128 bytes).
/// `delta` says whether removeFromCRL is allowed.
pub(crate) fn encode_entry(
    out: &mut Vec<u8>,
    entry: &RevokedEntry,
    delta: bool,
) -> Result<(), CrlError> {
    check_serial(&entry.serial)?;
    if entry.reason == Some(Reason::RemoveFromCrl) && !delta {
        return Err(CrlError::RemoveFromCrlOnFullCrl);
    }
    out.clear();
    let reason_len = entry.reason.map_or(0, |_| extension_len(3));
    let invalidity_len = entry.invalidity_date.map_or(0, |_| extension_len(17));
    let exts_len = reason_len + invalidity_len;
    let content_len = tlv_len(entry.serial.len())
        + x509_time_len(entry.revocation_date)
        + if exts_len > 0 { tlv_len(exts_len) } else { 0 };
    push_header(out, SEQUENCE, content_len);
    push_tlv(out, INTEGER, &entry.serial);
    push_x509_time(out, entry.revocation_date)?;
    if exts_len > 0 {
        push_header(out, SEQUENCE, exts_len);
        if let Some(reason) = entry.reason {
            push_extension(out, ID_CE_CRL_REASONS.as_bytes(), false, &reason.der());
        }
        if let Some(when) = entry.invalidity_date {
            // Extension { extnID, extnValue OCTET STRING { GeneralizedTime } }, in place.
            push_header(out, SEQUENCE, extension_len(17) - 2);
            push_tlv(out, OID, ID_CE_INVALIDITY_DATE.as_bytes());
            push_header(out, OCTET_STRING, 17);
            push_generalized(out, when)?;
        }
    }
    debug_assert_eq!(out.len(), tlv_len(content_len));
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use der::Decode;
    use time::macros::datetime;
    use x509_cert::crl::RevokedCert;

    fn decode(entry: &RevokedEntry) -> (Vec<u8>, RevokedCert) {
        let mut out = Vec::new();
        encode_entry(&mut out, entry, true).unwrap();
        let parsed = RevokedCert::from_der(&out).unwrap();
        (out, parsed)
    }

    #[test]
    fn entries_decode_with_exactly_the_fields_given() {
        for (reason, invalidity, year) in [
            (None, None, 2026),
            (Some(Reason::KeyCompromise), None, 2026),
            (
                Some(Reason::KeyCompromise),
                Some(datetime!(2026-01-02 03:04:05 UTC)),
                2026,
            ),
            (None, Some(datetime!(2026-01-02 03:04:05 UTC)), 2051),
        ] {
            let date = datetime!(2026-11-30 10:00:00 UTC)
                .replace_year(year)
                .unwrap();
            let entry = RevokedEntry {
                serial: vec![0x40; 20],
                revocation_date: date,
                reason,
                invalidity_date: invalidity,
            };
            let (der, parsed) = decode(&entry);
            assert_eq!(parsed.serial_number.as_bytes(), &entry.serial[..]);
            assert_eq!(
                parsed.revocation_date.to_unix_duration().as_secs(),
                date.unix_timestamp() as u64
            );
            let exts = parsed.crl_entry_extensions.unwrap_or_default();
            assert_eq!(
                exts.len(),
                usize::from(reason.is_some()) + usize::from(invalidity.is_some())
            );
            // The minimal DER: header 2, INTEGER 2 + 20, UTCTime 15 (GeneralizedTime 17 from
            // 2050), then the extensions SEQUENCE 2 + reasonCode 12 + invalidityDate 26.
            let time_len = if year < 2050 { 15 } else { 17 };
            let exts_len = if exts.is_empty() {
                0
            } else {
                2 + 12 * usize::from(reason.is_some()) + 26 * usize::from(invalidity.is_some())
            };
            assert_eq!(der.len(), 2 + 22 + time_len + exts_len);
        }
    }

    #[test]
    fn remove_from_crl_only_on_deltas() {
        let entry = RevokedEntry {
            serial: vec![1],
            revocation_date: datetime!(2026-11-30 10:00:00 UTC),
            reason: Some(Reason::RemoveFromCrl),
            invalidity_date: None,
        };
        let mut out = Vec::new();
        assert!(matches!(
            encode_entry(&mut out, &entry, false),
            Err(CrlError::RemoveFromCrlOnFullCrl)
        ));
        encode_entry(&mut out, &entry, true).unwrap();
    }
}
