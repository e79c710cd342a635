//! Pre-signing checks: a TBS certificate that fails any of these is never signed.
//!
//! These restate RFC 5280 and the profile against the finished TBS bytes, independently of how
//! the TBS was built, so a bug in building cannot reach the HSM.

use std::collections::BTreeSet;

use const_oid::db::rfc5280;
use const_oid::AssociatedOid;
use der::{Decode, Encode};
use x509_cert::ext::pkix::{BasicConstraints, KeyUsage, KeyUsages};
use x509_cert::TbsCertificate;

use super::tbs::key_kind_of;
use super::CertificateAuthority;
use crate::profile::Profile;

/// A rule the TBS certificate breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LintError {
    /// Serial not positive, shorter than 64 bits or longer than 20 octets.
    #[error("serial number must be positive, 8..=20 octets")]
    Serial,
    /// notBefore not before notAfter, or outside the issuer's validity.
    #[error("validity {0}")]
    Validity(String),
    /// Issuer name differs from the CA's subject, byte for byte.
    #[error("issuer name does not match the CA certificate's subject")]
    IssuerName,
    /// `signature` does not match the CA key's algorithm.
    #[error("signature algorithm does not match the issuing key")]
    SignatureAlgorithm,
    /// Empty subject.
    #[error("subject must not be empty")]
    EmptySubject,
    /// Key type not allowed by the profile.
    #[error("key type {0} is not allowed by the profile")]
    KeyType(String),
    /// An extension is duplicated, missing, or has the wrong criticality.
    #[error("extension {0}")]
    Extension(String),
}

/// Checks an end-entity TBS certificate against its issuer and profile.
pub fn end_entity(
    tbs: &TbsCertificate,
    issuer: &CertificateAuthority,
    profile: &Profile,
    now: i64,
) -> Result<(), LintError> {
    common(tbs, issuer)?;
    let kind =
        key_kind_of(&tbs.subject_public_key_info).map_err(|e| LintError::KeyType(e.to_string()))?;
    if !profile.key_types.contains(&kind) {
        return Err(LintError::KeyType(kind.to_string()));
    }
    let (nb, na) = secs(tbs);
    if na - nb > i64::from(profile.validity_days) * 86_400 + 3600 {
        return Err(LintError::Validity("longer than the profile allows".into()));
    }
    if na <= now {
        return Err(LintError::Validity("already expired".into()));
    }
    let exts = tbs.extensions.as_deref().unwrap_or_default();
    let bc = find(exts, BasicConstraints::OID)
        .ok_or_else(|| LintError::Extension("basicConstraints missing".into()))?;
    let bc_value = BasicConstraints::from_der(bc.extn_value.as_bytes())
        .map_err(|_| LintError::Extension("basicConstraints does not decode".into()))?;
    if bc_value.ca {
        return Err(LintError::Extension(
            "end-entity certificate with cA=true".into(),
        ));
    }
    let ku =
        find(exts, KeyUsage::OID).ok_or_else(|| LintError::Extension("keyUsage missing".into()))?;
    let ku_value = KeyUsage::from_der(ku.extn_value.as_bytes())
        .map_err(|_| LintError::Extension("keyUsage does not decode".into()))?;
    if ku_value.0.contains(KeyUsages::KeyCertSign) || ku_value.0.contains(KeyUsages::CRLSign) {
        return Err(LintError::Extension(
            "end-entity keyUsage with CA bits".into(),
        ));
    }
    Ok(())
}

/// Checks a CA TBS certificate (issued by the ceremony) against its issuer; `None` for a root.
pub fn ca(tbs: &TbsCertificate, issuer: Option<&CertificateAuthority>) -> Result<(), LintError> {
    match issuer {
        Some(issuer) => common(tbs, issuer)?,
        None => {
            serial(tbs)?;
            extensions(tbs)?;
            let (nb, na) = secs(tbs);
            if nb >= na {
                return Err(LintError::Validity(
                    "notBefore is not before notAfter".into(),
                ));
            }
        }
    }
    let exts = tbs.extensions.as_deref().unwrap_or_default();
    let bc = find(exts, BasicConstraints::OID)
        .and_then(|e| BasicConstraints::from_der(e.extn_value.as_bytes()).ok())
        .ok_or_else(|| LintError::Extension("basicConstraints missing".into()))?;
    if !bc.ca {
        return Err(LintError::Extension(
            "CA certificate without cA=true".into(),
        ));
    }
    Ok(())
}

fn common(tbs: &TbsCertificate, issuer: &CertificateAuthority) -> Result<(), LintError> {
    serial(tbs)?;
    let issuer_subject = issuer
        .certificate
        .tbs_certificate
        .subject
        .to_der()
        .map_err(|_| LintError::IssuerName)?;
    if tbs.issuer.to_der().map_err(|_| LintError::IssuerName)? != issuer_subject {
        return Err(LintError::IssuerName);
    }
    if tbs.signature != issuer.signature_algorithm.algorithm_identifier() {
        return Err(LintError::SignatureAlgorithm);
    }
    if tbs.subject.0.is_empty() {
        return Err(LintError::EmptySubject);
    }
    let (nb, na) = secs(tbs);
    let (inb, ina) = issuer.validity();
    if nb >= na {
        return Err(LintError::Validity(
            "notBefore is not before notAfter".into(),
        ));
    }
    if nb < inb || na > ina {
        return Err(LintError::Validity(
            "outside the issuing CA certificate's validity".into(),
        ));
    }
    extensions(tbs)
}

fn serial(tbs: &TbsCertificate) -> Result<(), LintError> {
    let bytes = tbs.serial_number.as_bytes();
    if bytes.is_empty() || bytes.len() > 20 || bytes[0] & 0x80 != 0 || bytes.len() < 8 {
        return Err(LintError::Serial);
    }
    Ok(())
}

fn extensions(tbs: &TbsCertificate) -> Result<(), LintError> {
    let exts = tbs.extensions.as_deref().unwrap_or_default();
    let mut seen = BTreeSet::new();
    for e in exts {
        if !seen.insert(e.extn_id) {
            return Err(LintError::Extension(format!("{} appears twice", e.extn_id)));
        }
        let must_be_critical = [rfc5280::ID_CE_BASIC_CONSTRAINTS, rfc5280::ID_CE_KEY_USAGE];
        let must_not_be = [
            rfc5280::ID_CE_SUBJECT_KEY_IDENTIFIER,
            rfc5280::ID_CE_AUTHORITY_KEY_IDENTIFIER,
            rfc5280::ID_PE_AUTHORITY_INFO_ACCESS,
            rfc5280::ID_CE_CRL_DISTRIBUTION_POINTS,
            rfc5280::ID_CE_EXT_KEY_USAGE,
        ];
        if must_be_critical.contains(&e.extn_id) && !e.critical {
            return Err(LintError::Extension(format!(
                "{} must be critical",
                e.extn_id
            )));
        }
        if must_not_be.contains(&e.extn_id) && e.critical {
            return Err(LintError::Extension(format!(
                "{} must not be critical",
                e.extn_id
            )));
        }
    }
    if !seen.contains(&rfc5280::ID_CE_SUBJECT_KEY_IDENTIFIER) {
        return Err(LintError::Extension("subjectKeyIdentifier missing".into()));
    }
    Ok(())
}

fn find(
    exts: &[x509_cert::ext::Extension],
    oid: const_oid::ObjectIdentifier,
) -> Option<&x509_cert::ext::Extension> {
    exts.iter().find(|e| e.extn_id == oid)
}

fn secs(tbs: &TbsCertificate) -> (i64, i64) {
    (
        tbs.validity.not_before.to_unix_duration().as_secs() as i64,
        tbs.validity.not_after.to_unix_duration().as_secs() as i64,
    )
}
