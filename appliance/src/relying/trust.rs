//! Is this one of our certificates, and may it be relied on at a given time? The chain to one of
//! our CA generations (its signature verified with the CA key), the certificate as stored
//! (byte for byte), its validity, its status read from our own database (never a cached or
//! stale answer), the issuing generations' revocation, and its assurance level.

use std::collections::BTreeMap;
use std::sync::Arc;

use const_oid::db::rfc4519;
use const_oid::db::rfc5280;
use const_oid::ObjectIdentifier;
use der::{Decode, Encode};
use serde::Serialize;
use x509_cert::ext::pkix::{CertificatePolicies, KeyUsage, KeyUsages};
use x509_cert::Certificate;

use super::signature::{self, Scheme};
use crate::ca::{CertificateAuthority, Hierarchy};
use crate::storage::{CertificateStore, StorageError};

/// An assurance level: L1 registered, L2 real-name checked, L3 face or equivalent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Level {
    /// Registered.
    L1,
    /// Real-name checked.
    L2,
    /// Face-verified or equivalent.
    L3,
}

impl Level {
    /// Parses `L1`, `L2` or `L3`.
    pub fn parse(s: &str) -> Option<Level> {
        match s {
            "L1" => Some(Level::L1),
            "L2" => Some(Level::L2),
            "L3" => Some(Level::L3),
            _ => None,
        }
    }

    /// `L1`, `L2` or `L3`.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::L1 => "L1",
            Level::L2 => "L2",
            Level::L3 => "L3",
        }
    }
}

/// Why a certificate may not be relied on; `code()` is the stable reason the API shows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Not issued by any of our CA generations (or not the certificate we stored).
    #[error("the certificate was not issued by this appliance's CAs")]
    Foreign,
    /// Before its notBefore.
    #[error("the certificate is not valid yet")]
    NotYetValid,
    /// After its notAfter.
    #[error("the certificate has expired")]
    Expired,
    /// Revoked (at the time asked about, or for key compromise).
    #[error("the certificate is revoked")]
    Revoked,
    /// On hold.
    #[error("the certificate is on hold")]
    OnHold,
    /// Its issuing CA generation (or one above it) is revoked or expired.
    #[error("the issuing CA is revoked or expired")]
    IssuerInvalid,
    /// Its assurance level is below what was asked.
    #[error("the certificate's assurance level {have} is below the required {need}")]
    LevelTooLow {
        /// What the certificate carries (`none` without a level OID).
        have: String,
        /// What was asked.
        need: &'static str,
    },
    /// Its keyUsage allows no signatures.
    #[error("the certificate's key usage does not allow signatures")]
    KeyUsage,
}

impl Refusal {
    /// The stable reason code.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::Foreign => "certificate_foreign",
            Refusal::NotYetValid => "certificate_not_yet_valid",
            Refusal::Expired => "certificate_expired",
            Refusal::Revoked => "certificate_revoked",
            Refusal::OnHold => "certificate_on_hold",
            Refusal::IssuerInvalid => "issuer_invalid",
            Refusal::LevelTooLow { .. } => "level_too_low",
            Refusal::KeyUsage => "key_usage_not_allowed",
        }
    }
}

/// One of our certificates, as far as it was checked.
#[derive(Debug, Clone)]
pub struct Known {
    /// Serial, lowercase hex.
    pub serial: String,
    /// Issuing CA name.
    pub issuer: String,
    /// Its assurance level, from its policy OIDs.
    pub level: Option<Level>,
    /// The subject, personal parts masked.
    pub subject: serde_json::Value,
    /// notBefore / notAfter, unix seconds.
    pub validity: (i64, i64),
    /// Stored status: `valid`, `revoked` or `hold`.
    pub status: String,
    /// When revoked, unix seconds.
    pub revoked_at: Option<i64>,
    /// RFC 5280 CRLReason code of a revocation.
    pub revocation_reason: Option<i64>,
    /// Row id of the issuing CA generation.
    pub ca_id: i64,
}

/// CRLReason keyCompromise: a signature is not trusted whatever time it claims.
const KEY_COMPROMISE: i64 = 1;

/// Checks certificates against our hierarchy and database.
#[derive(Clone)]
pub struct Trust {
    hierarchy: Arc<Hierarchy>,
    certificates: CertificateStore,
    levels: Vec<(ObjectIdentifier, Level)>,
}

impl Trust {
    /// A checker over `hierarchy` and the stored certificates; `levels` maps `L1..L3` to the
    /// policy OIDs (`[applications] assurance_policy_oids`).
    pub fn new(
        hierarchy: Arc<Hierarchy>,
        certificates: CertificateStore,
        levels: &BTreeMap<String, String>,
    ) -> Self {
        let levels = levels
            .iter()
            .filter_map(|(l, oid)| Some((ObjectIdentifier::new(oid).ok()?, Level::parse(l)?)))
            .collect();
        Self {
            hierarchy,
            certificates,
            levels,
        }
    }

    /// Identifies `cert` as one of ours (chain + stored bytes), without judging time or status.
    pub async fn identify(
        &self,
        cert: &Certificate,
    ) -> Result<Result<Known, Refusal>, StorageError> {
        let Some(ca) = self.issuing_ca(cert) else {
            return Ok(Err(Refusal::Foreign));
        };
        let serial = serial_hex(cert.tbs_certificate.serial_number.as_bytes());
        let Some(record) = self.certificates.get(&serial).await? else {
            return Ok(Err(Refusal::Foreign));
        };
        if cert.to_der().ok().as_deref() != Some(record.der.as_slice()) || record.ca_id != ca.id {
            return Ok(Err(Refusal::Foreign));
        }
        let v = &cert.tbs_certificate.validity;
        Ok(Ok(Known {
            serial,
            issuer: ca.name.clone(),
            level: self.level_of(cert),
            subject: masked_subject(cert),
            validity: (
                v.not_before.to_unix_duration().as_secs() as i64,
                v.not_after.to_unix_duration().as_secs() as i64,
            ),
            status: record.status,
            revoked_at: record.revoked_at,
            revocation_reason: record.revocation_reason,
            ca_id: ca.id,
        }))
    }

    /// Full check at time `at`: chain, validity, status (revoked at or before `at`, or ever for
    /// key compromise; on hold now), issuing generations, and `min_level`.
    pub async fn check(
        &self,
        cert: &Certificate,
        at: i64,
        min_level: Option<Level>,
    ) -> Result<Result<Known, Refusal>, StorageError> {
        let known = match self.identify(cert).await? {
            Ok(k) => k,
            Err(r) => return Ok(Err(r)),
        };
        Ok(self.judge(&known, at, min_level).map(|()| known))
    }

    /// The time, status, issuer and level checks of an identified certificate.
    pub fn judge(&self, known: &Known, at: i64, min_level: Option<Level>) -> Result<(), Refusal> {
        if at < known.validity.0 {
            return Err(Refusal::NotYetValid);
        }
        if at > known.validity.1 {
            return Err(Refusal::Expired);
        }
        match known.status.as_str() {
            "valid" => {}
            "hold" => return Err(Refusal::OnHold),
            _ => {
                let compromised = known.revocation_reason == Some(KEY_COMPROMISE);
                if compromised || known.revoked_at.is_none_or(|r| r <= at) {
                    return Err(Refusal::Revoked);
                }
            }
        }
        let Some(ca) = self.hierarchy.by_id(known.ca_id) else {
            return Err(Refusal::IssuerInvalid);
        };
        for link in self.hierarchy.chain_of(ca) {
            let (from, to) = link.validity();
            if at < from || at > to || link.revoked_at.is_some_and(|r| r <= at) {
                return Err(Refusal::IssuerInvalid);
            }
        }
        if let Some(need) = min_level {
            if known.level.is_none_or(|have| have < need) {
                return Err(Refusal::LevelTooLow {
                    have: known.level.map_or("none", Level::as_str).to_owned(),
                    need: need.as_str(),
                });
            }
        }
        Ok(())
    }

    /// The CA generation whose key verifies `cert`'s signature (issuer name matched first).
    fn issuing_ca(&self, cert: &Certificate) -> Option<Arc<CertificateAuthority>> {
        let issuer = cert.tbs_certificate.issuer.to_der().ok()?;
        let tbs = cert.tbs_certificate.to_der().ok()?;
        let signature = cert.signature.as_bytes()?;
        let scheme = Scheme::from_algorithm(&cert.signature_algorithm, None).ok()?;
        self.hierarchy
            .generations()
            .filter(|ca| {
                ca.certificate
                    .tbs_certificate
                    .subject
                    .to_der()
                    .ok()
                    .as_deref()
                    == Some(issuer.as_slice())
            })
            .find(|ca| {
                let spki = &ca.certificate.tbs_certificate.subject_public_key_info;
                signature::verify(spki, scheme, &tbs, signature).is_ok()
            })
            .cloned()
    }

    fn level_of(&self, cert: &Certificate) -> Option<Level> {
        let policies = extension::<CertificatePolicies>(cert, rfc5280::ID_CE_CERTIFICATE_POLICIES)?;
        policies
            .0
            .iter()
            .filter_map(|p| {
                self.levels
                    .iter()
                    .find(|(oid, _)| *oid == p.policy_identifier)
                    .map(|(_, l)| *l)
            })
            .max()
    }
}

/// A serial as stored: lowercase hex of the INTEGER content without leading zero bytes.
pub fn serial_hex(bytes: &[u8]) -> String {
    let first = bytes
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(bytes.len().saturating_sub(1));
    hex::encode(&bytes[first..])
}

/// Whether `cert`'s keyUsage (if present) allows digitalSignature or nonRepudiation.
pub fn may_sign(cert: &Certificate) -> bool {
    match extension::<KeyUsage>(cert, rfc5280::ID_CE_KEY_USAGE) {
        None => cert
            .tbs_certificate
            .extensions
            .as_ref()
            .is_none_or(|exts| !exts.iter().any(|e| e.extn_id == rfc5280::ID_CE_KEY_USAGE)),
        Some(ku) => {
            ku.0.contains(KeyUsages::DigitalSignature) || ku.0.contains(KeyUsages::NonRepudiation)
        }
    }
}

fn extension<'a, T: Decode<'a>>(cert: &'a Certificate, oid: ObjectIdentifier) -> Option<T> {
    let ext = cert
        .tbs_certificate
        .extensions
        .as_ref()?
        .iter()
        .find(|e| e.extn_id == oid)?;
    T::from_der(ext.extn_value.as_bytes()).ok()
}

/// The subject as a relying party may see it: the common name masked (a person's name),
/// organisation and country as they are (public).
pub fn masked_subject(cert: &Certificate) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    for rdn in cert.tbs_certificate.subject.0.iter() {
        for atv in rdn.0.iter() {
            let Ok(value) = std::str::from_utf8(atv.value.value()) else {
                continue;
            };
            let (key, value) = match atv.oid {
                rfc4519::COMMON_NAME => ("name", crate::verification::mask::mask_name(value)),
                rfc4519::ORGANIZATION_NAME => ("organisation", value.to_owned()),
                rfc4519::COUNTRY_NAME => ("country", value.to_owned()),
                _ => continue,
            };
            out.insert(key.into(), value.into());
        }
    }
    serde_json::Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_drop_leading_zero_bytes_like_the_store() {
        assert_eq!(serial_hex(&[0x00, 0x8f, 0x01]), "8f01");
        assert_eq!(serial_hex(&[0x7f]), "7f");
        assert_eq!(serial_hex(&[0x00]), "00");
    }
}
