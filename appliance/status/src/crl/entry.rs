//! One `revokedCertificates` entry and its DER encoding.

use super::builder::CrlError;
use crate::der_write::{push_extension, push_header, push_tlv, tlv_len, INTEGER, SEQUENCE};
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

/// Encodes `entry` into `out` (cleared first). `delta` says whether removeFromCRL is allowed.
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
    let mut b = Vec::with_capacity(96);
    push_tlv(&mut b, INTEGER, &entry.serial);
    push_x509_time(&mut b, entry.revocation_date)?;
    if entry.reason.is_some() || entry.invalidity_date.is_some() {
        let mut exts = Vec::with_capacity(48);
        if let Some(reason) = entry.reason {
            push_extension(
                &mut exts,
                ID_CE_CRL_REASONS.as_bytes(),
                false,
                &reason.der(),
            );
        }
        if let Some(when) = entry.invalidity_date {
            let mut t = Vec::with_capacity(17);
            push_generalized(&mut t, when)?;
            push_extension(&mut exts, ID_CE_INVALIDITY_DATE.as_bytes(), false, &t);
        }
        push_tlv(&mut b, SEQUENCE, &exts);
    }
    out.reserve(tlv_len(b.len()));
    push_header(out, SEQUENCE, b.len());
    out.extend_from_slice(&b);
    Ok(())
}
