//! Building TBS certificates: serials, times, names and the extensions a profile asks for.

use std::collections::BTreeMap;

use const_oid::db::{rfc5280, rfc5912};
use const_oid::{AssociatedOid, ObjectIdentifier};
use der::asn1::{BitString, Ia5String, OctetString, PrintableStringRef, SetOfVec, Utf8StringRef};
use der::{Any, Encode};
use rand::RngCore;
use sha1::{Digest, Sha1};
use spki::SubjectPublicKeyInfoOwned;
use x509_cert::attr::AttributeTypeAndValue;
use x509_cert::ext::pkix::certpolicy::PolicyInformation;
use x509_cert::ext::pkix::crl::dp::DistributionPoint;
use x509_cert::ext::pkix::name::{DistributionPointName, GeneralName};
use x509_cert::ext::pkix::{
    AccessDescription, AuthorityInfoAccessSyntax, AuthorityKeyIdentifier, BasicConstraints,
    CertificatePolicies, CrlDistributionPoints, ExtendedKeyUsage, KeyUsage, SubjectAltName,
    SubjectKeyIdentifier,
};
use x509_cert::ext::Extension;
use x509_cert::name::{Name, RdnSequence, RelativeDistinguishedName};
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::{Time, Validity};

use crate::profile::{DnAttribute, Profile};

/// Why a TBS certificate could not be built from the request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    /// A subject attribute the profile requires is missing.
    #[error("subject attribute {0:?} is required by the profile")]
    MissingSubjectAttribute(String),
    /// A subject attribute value is not acceptable.
    #[error("subject attribute {name:?}: {reason}")]
    InvalidSubjectAttribute {
        /// Attribute (template field or DN attribute) name.
        name: String,
        /// Why.
        reason: String,
    },
    /// The key in the CSR is of a type we do not issue for.
    #[error("unsupported public key: {0}")]
    UnsupportedKey(String),
    /// An RSA key shorter than 2048 bits.
    #[error("RSA key of {0} bits is too small (minimum 2048)")]
    KeyTooSmall(usize),
    /// An encoding step failed (a value out of DER's range).
    #[error("encoding: {0}")]
    Encoding(String),
}

/// Unix seconds at which UTCTime stops (2050-01-01T00:00:00Z): later times are GeneralizedTime.
const UTC_TIME_END: u64 = 2_524_608_000;

/// RFC 5280 4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050.
pub fn x509_time(unix_secs: i64) -> Result<Time, BuildError> {
    let secs =
        u64::try_from(unix_secs).map_err(|_| BuildError::Encoding("time before 1970".into()))?;
    let d = std::time::Duration::from_secs(secs);
    let enc = |e: der::Error| BuildError::Encoding(e.to_string());
    Ok(if secs < UTC_TIME_END {
        Time::UtcTime(der::asn1::UtcTime::from_unix_duration(d).map_err(enc)?)
    } else {
        Time::GeneralTime(der::asn1::GeneralizedTime::from_unix_duration(d).map_err(enc)?)
    })
}

/// A fresh serial: 16 CSPRNG bytes, top bit clear (positive), second bit set (no leading zero).
pub fn random_serial() -> (SerialNumber, String) {
    let mut bytes = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    let serial = SerialNumber::new(&bytes).expect("16 positive bytes are a valid serial");
    (serial, hex::encode(bytes))
}

/// The key type of a subject public key (curve or RSA modulus size).
pub fn key_kind_of(spki: &SubjectPublicKeyInfoOwned) -> Result<hsm::KeyKind, BuildError> {
    match spki.algorithm.oid {
        rfc5912::ID_EC_PUBLIC_KEY => {
            let curve: ObjectIdentifier = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.decode_as().ok())
                .ok_or_else(|| BuildError::UnsupportedKey("EC key without a named curve".into()))?;
            match curve {
                rfc5912::SECP_256_R_1 => Ok(hsm::KeyKind::EcP256),
                rfc5912::SECP_384_R_1 => Ok(hsm::KeyKind::EcP384),
                super::sm2::SM2_CURVE => Ok(hsm::KeyKind::Sm2),
                other => Err(BuildError::UnsupportedKey(format!("EC curve {other}"))),
            }
        }
        rfc5912::RSA_ENCRYPTION => {
            use rsa::pkcs8::DecodePublicKey;
            use rsa::traits::PublicKeyParts;
            let der = spki
                .to_der()
                .map_err(|e| BuildError::Encoding(e.to_string()))?;
            let key = rsa::RsaPublicKey::from_public_key_der(&der)
                .map_err(|e| BuildError::UnsupportedKey(format!("RSA key: {e}")))?;
            match key.n().bits() {
                2048 => Ok(hsm::KeyKind::Rsa2048),
                3072 => Ok(hsm::KeyKind::Rsa3072),
                4096 => Ok(hsm::KeyKind::Rsa4096),
                bits if bits < 2048 => Err(BuildError::KeyTooSmall(bits)),
                bits => Err(BuildError::UnsupportedKey(format!(
                    "RSA key of {bits} bits (2048, 3072 or 4096 accepted)"
                ))),
            }
        }
        other => Err(BuildError::UnsupportedKey(format!("algorithm {other}"))),
    }
}

/// How a CA with a key of `kind` signs.
pub fn signature_algorithm_for(kind: hsm::KeyKind) -> hsm::SignatureAlgorithm {
    match kind {
        hsm::KeyKind::EcP256 => hsm::SignatureAlgorithm::EcdsaSha256,
        hsm::KeyKind::EcP384 => hsm::SignatureAlgorithm::EcdsaSha384,
        hsm::KeyKind::Sm2 => hsm::SignatureAlgorithm::Sm2Sm3,
        _ => hsm::SignatureAlgorithm::RsaPkcs1Sha256,
    }
}

/// RFC 5280 4.2.1.2 method 1: SHA-1 of the subjectPublicKey BIT STRING's bytes.
pub fn subject_key_id(spki: &SubjectPublicKeyInfoOwned) -> Vec<u8> {
    Sha1::digest(spki.subject_public_key.raw_bytes()).to_vec()
}

/// One DN attribute, encoded as PrintableString or UTF8String per RFC 5280 Appendix A.
pub fn dn_attribute(attr: DnAttribute, value: &str) -> Result<AttributeTypeAndValue, BuildError> {
    let invalid = |reason: &str| BuildError::InvalidSubjectAttribute {
        name: format!("{attr:?}"),
        reason: reason.into(),
    };
    let chars = value.chars().count();
    if chars == 0 {
        return Err(invalid("is empty"));
    }
    if chars > attr.max_len() {
        return Err(invalid(&format!(
            "longer than {} characters",
            attr.max_len()
        )));
    }
    if value.chars().any(char::is_control) {
        return Err(invalid("contains control characters"));
    }
    let any = if attr.printable() {
        if attr == DnAttribute::Country
            && !(value.len() == 2 && value.bytes().all(|b| b.is_ascii_uppercase()))
        {
            return Err(invalid("must be two upper-case letters"));
        }
        let s = PrintableStringRef::new(value).map_err(|_| invalid("not a PrintableString"))?;
        Any::from(s)
    } else {
        let s = Utf8StringRef::new(value).map_err(|_| invalid("not UTF-8"))?;
        Any::from(s)
    };
    Ok(AttributeTypeAndValue {
        oid: attr.oid(),
        value: any,
    })
}

/// Fills the profile's subject template from verified attributes, most significant first.
pub fn subject_name(
    profile: &Profile,
    attributes: &BTreeMap<String, String>,
) -> Result<Name, BuildError> {
    let mut rdns = Vec::new();
    for t in &profile.subject {
        match fill_template(&t.value, attributes) {
            Ok(value) => {
                let atv = dn_attribute(t.attr, &value)?;
                let set = SetOfVec::try_from(vec![atv])
                    .map_err(|e| BuildError::Encoding(e.to_string()))?;
                rdns.push(RelativeDistinguishedName(set));
            }
            Err(_) if t.optional => {}
            Err(missing) => return Err(BuildError::MissingSubjectAttribute(missing)),
        }
    }
    Ok(RdnSequence(rdns))
}

/// Replaces `{field}` placeholders; returns the first missing field's name.
fn fill_template(template: &str, attributes: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[start..]);
            return Ok(out);
        };
        let field = &after[..end];
        match attributes.get(field).filter(|v| !v.is_empty()) {
            Some(v) => out.push_str(v),
            None => return Err(field.to_owned()),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Wraps an extension value with its OID.
pub fn extension<T: Encode + AssociatedOid>(
    critical: bool,
    value: &T,
) -> Result<Extension, BuildError> {
    let der = value
        .to_der()
        .map_err(|e| BuildError::Encoding(e.to_string()))?;
    Ok(Extension {
        extn_id: T::OID,
        critical,
        extn_value: OctetString::new(der).map_err(|e| BuildError::Encoding(e.to_string()))?,
    })
}

fn uri(url: &str) -> Result<GeneralName, BuildError> {
    Ia5String::new(url)
        .map(GeneralName::UniformResourceIdentifier)
        .map_err(|e| BuildError::Encoding(format!("URL {url:?}: {e}")))
}

/// The extensions of an end-entity certificate under `profile`.
pub fn end_entity_extensions(
    profile: &Profile,
    subject_spki: &SubjectPublicKeyInfoOwned,
    issuer_key_id: &[u8],
    email: Option<&str>,
) -> Result<Vec<Extension>, BuildError> {
    let enc = |e: der::Error| BuildError::Encoding(e.to_string());
    let mut exts = vec![
        extension(
            true,
            &BasicConstraints {
                ca: false,
                path_len_constraint: None,
            },
        )?,
        extension(true, &KeyUsage(profile.key_usage.0))?,
    ];
    if !profile.extended_key_usage.is_empty() {
        exts.push(extension(
            false,
            &ExtendedKeyUsage(profile.extended_key_usage.clone()),
        )?);
    }
    exts.push(extension(
        false,
        &SubjectKeyIdentifier(OctetString::new(subject_key_id(subject_spki)).map_err(enc)?),
    )?);
    exts.push(extension(
        false,
        &AuthorityKeyIdentifier {
            key_identifier: Some(OctetString::new(issuer_key_id).map_err(enc)?),
            authority_cert_issuer: None,
            authority_cert_serial_number: None,
        },
    )?);
    if !profile.policy_oids.is_empty() {
        let policies = profile
            .policy_oids
            .iter()
            .map(|oid| PolicyInformation {
                policy_identifier: *oid,
                policy_qualifiers: None,
            })
            .collect();
        exts.push(extension(false, &CertificatePolicies(policies))?);
    }
    let mut aia = Vec::new();
    if let Some(url) = &profile.ocsp_url {
        aia.push(AccessDescription {
            access_method: rfc5280::ID_AD_OCSP,
            access_location: uri(url)?,
        });
    }
    if let Some(url) = &profile.ca_issuers_url {
        aia.push(AccessDescription {
            access_method: rfc5280::ID_AD_CA_ISSUERS,
            access_location: uri(url)?,
        });
    }
    if !aia.is_empty() {
        exts.push(extension(false, &AuthorityInfoAccessSyntax(aia))?);
    }
    if let Some(url) = &profile.crl_url {
        exts.push(extension(
            false,
            &CrlDistributionPoints(vec![DistributionPoint {
                distribution_point: Some(DistributionPointName::FullName(vec![uri(url)?])),
                reasons: None,
                crl_issuer: None,
            }]),
        )?);
    }
    if let (true, Some(email)) = (profile.email_san, email) {
        let name = Ia5String::new(email).map_err(|_| BuildError::InvalidSubjectAttribute {
            name: "email".into(),
            reason: "must be ASCII".into(),
        })?;
        exts.push(extension(
            false,
            &SubjectAltName(vec![GeneralName::Rfc822Name(name)]),
        )?);
    }
    Ok(exts)
}

/// Where relying parties find the parent's CRL and certificate (issuing CA certificates).
#[derive(Debug, Clone)]
pub struct CaUrls {
    /// The parent's CRL (CRL distribution point).
    pub crl: String,
    /// The parent's certificate (AIA caIssuers).
    pub ca_issuers: String,
}

/// The extensions of a CA certificate (root when `issuer_key_id` is `None`).
pub fn ca_extensions(
    subject_spki: &SubjectPublicKeyInfoOwned,
    issuer_key_id: Option<&[u8]>,
    path_len: Option<u8>,
    urls: Option<&CaUrls>,
) -> Result<Vec<Extension>, BuildError> {
    use x509_cert::ext::pkix::KeyUsages;
    let enc = |e: der::Error| BuildError::Encoding(e.to_string());
    let mut exts = vec![
        extension(
            true,
            &BasicConstraints {
                ca: true,
                path_len_constraint: path_len,
            },
        )?,
        extension(true, &KeyUsage(KeyUsages::KeyCertSign | KeyUsages::CRLSign))?,
        extension(
            false,
            &SubjectKeyIdentifier(OctetString::new(subject_key_id(subject_spki)).map_err(enc)?),
        )?,
    ];
    if let Some(id) = issuer_key_id {
        exts.push(extension(
            false,
            &AuthorityKeyIdentifier {
                key_identifier: Some(OctetString::new(id).map_err(enc)?),
                authority_cert_issuer: None,
                authority_cert_serial_number: None,
            },
        )?);
    }
    if let Some(urls) = urls {
        exts.push(extension(
            false,
            &AuthorityInfoAccessSyntax(vec![AccessDescription {
                access_method: rfc5280::ID_AD_CA_ISSUERS,
                access_location: uri(&urls.ca_issuers)?,
            }]),
        )?);
        exts.push(extension(
            false,
            &CrlDistributionPoints(vec![DistributionPoint {
                distribution_point: Some(DistributionPointName::FullName(vec![uri(&urls.crl)?])),
                reasons: None,
                crl_issuer: None,
            }]),
        )?);
    }
    Ok(exts)
}

/// Validity from `not_before` for `days`, as X.509 times.
pub fn validity(not_before: i64, not_after: i64) -> Result<Validity, BuildError> {
    Ok(Validity {
        not_before: x509_time(not_before)?,
        not_after: x509_time(not_after)?,
    })
}

/// Assembles a signed certificate from its TBS DER, algorithm and signature.
pub fn assemble(
    tbs: x509_cert::TbsCertificate,
    signature_algorithm: spki::AlgorithmIdentifierOwned,
    signature: &[u8],
) -> Result<Vec<u8>, BuildError> {
    let cert = x509_cert::Certificate {
        tbs_certificate: tbs,
        signature_algorithm,
        signature: BitString::from_bytes(signature)
            .map_err(|e| BuildError::Encoding(e.to_string()))?,
    };
    cert.to_der()
        .map_err(|e| BuildError::Encoding(e.to_string()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    #[test]
    fn times_switch_to_generalized_in_2050() {
        assert!(matches!(
            x509_time(2_524_607_999).unwrap(),
            Time::UtcTime(_)
        ));
        assert!(matches!(
            x509_time(2_524_608_000).unwrap(),
            Time::GeneralTime(_)
        ));
    }

    #[test]
    fn serials_are_sixteen_positive_bytes() {
        for _ in 0..100 {
            let (serial, hex) = random_serial();
            assert_eq!(serial.as_bytes().len(), 16);
            assert!(serial.as_bytes()[0] & 0x80 == 0 && serial.as_bytes()[0] != 0);
            assert_eq!(hex.len(), 32);
        }
    }

    #[test]
    fn template_reports_missing_field() {
        let mut attrs = BTreeMap::new();
        attrs.insert("name".to_string(), "Zhang San".to_string());
        assert_eq!(fill_template("{name}", &attrs).unwrap(), "Zhang San");
        assert_eq!(fill_template("X-{uscc}", &attrs).unwrap_err(), "uscc");
    }

    #[test]
    fn dn_values_are_checked() {
        assert!(dn_attribute(DnAttribute::Country, "cn").is_err());
        assert!(dn_attribute(DnAttribute::CommonName, &"x".repeat(65)).is_err());
        assert!(dn_attribute(DnAttribute::CommonName, "a\u{0}b").is_err());
        assert!(dn_attribute(DnAttribute::CommonName, "张三").is_ok());
    }
}
