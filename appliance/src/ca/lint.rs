//! Pre-signing checks: a TBS certificate or CRL that fails any of these is never signed.
//!
//! These restate RFC 5280 and the profile against the finished TBS, independently of how it was
//! built, so a bug in building cannot reach the HSM. Each rule has a stable name ([`Rule`]),
//! listed in ARCHITECTURE.md, and a unit test that makes it fire.

use std::collections::BTreeSet;

use const_oid::db::{rfc5280, rfc6960};
use const_oid::{AssociatedOid, ObjectIdentifier};
use der::{Decode, Encode};
use x509_cert::ext::pkix::crl::dp::DistributionPoint;
use x509_cert::ext::pkix::name::{DistributionPointName, GeneralName};
use x509_cert::ext::pkix::{
    AuthorityInfoAccessSyntax, AuthorityKeyIdentifier, BasicConstraints, CertificatePolicies,
    CrlDistributionPoints, ExtendedKeyUsage, KeyUsage, KeyUsages, SubjectAltName,
    SubjectKeyIdentifier,
};
use x509_cert::ext::Extension;
use x509_cert::name::Name;
use x509_cert::TbsCertificate;

use super::tbs::{key_kind_of, subject_key_id};
use crate::profile::{DnAttribute, Profile};

/// One lint rule. The names are stable: they appear in errors, logs and ARCHITECTURE.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// Version v3, no issuer/subject unique identifiers.
    Version,
    /// Serial positive, 8..=20 octets (RFC 5280 4.1.2.2, 64 bits of entropy).
    Serial,
    /// Issuer name equals the issuing CA's subject, byte for byte.
    IssuerName,
    /// The TBS signature algorithm is the one the issuing key signs with.
    SignatureAlgorithm,
    /// Subject DN not empty; each attribute a PrintableString or UTF8String within its
    /// upper bound (RFC 5280 Appendix A), countryName two upper-case letters.
    SubjectName,
    /// notBefore before notAfter, both inside the issuer's validity.
    Validity,
    /// End-entity: not longer than the profile allows, not already expired.
    ValidityProfile,
    /// The subject key is of a type the profile (or the appliance) accepts.
    KeyType,
    /// No extension appears twice; no unknown critical extension.
    ExtensionUnique,
    /// basicConstraints and keyUsage critical; SKI, AKI, AIA, CRLDP, EKU, policies not.
    Criticality,
    /// subjectKeyIdentifier present and the SHA-1 of the subject key (method 1).
    SubjectKeyId,
    /// authorityKeyIdentifier present and equal to the issuer's SKI (a root: absent or its own).
    AuthorityKeyId,
    /// basicConstraints present; cA false for end-entity and responders, true with
    /// pathLenConstraint 0 for issuing CAs.
    BasicConstraints,
    /// keyUsage present: end-entity exactly the profile's and never keyCertSign/cRLSign;
    /// responder digitalSignature only; CA keyCertSign and cRLSign.
    KeyUsage,
    /// keyUsage fits the key type: no keyEncipherment/dataEncipherment for EC keys, no
    /// keyAgreement for RSA keys.
    KeyUsageKeyType,
    /// Subscribers: exactly the profile's EKUs, never OCSPSigning or anyExtendedKeyUsage;
    /// responders: exactly OCSPSigning; CAs: none.
    ExtendedKeyUsage,
    /// Responders carry id-pkix-ocsp-nocheck.
    OcspNoCheck,
    /// Every policy OID of the profile present, none twice, never anyPolicy.
    Policies,
    /// AIA (OCSP, caIssuers) and CRL distribution point: ASCII http(s) URLs, the profile's.
    Urls,
    /// subjectAltName: only when the profile asks for email, well-formed rfc822Name, not critical.
    SubjectAltName,
    /// CRL: issuer name is the CA's subject.
    CrlIssuer,
    /// CRL: thisUpdate before nextUpdate; a delta's base number below its own.
    CrlTimes,
    /// CRL: CRLNumber non-negative and at most 20 octets.
    CrlNumber,
    /// CRL: authorityKeyIdentifier is the CA's SKI; signature algorithm the CA key's.
    CrlAuthority,
    /// GM/T 0015 (SM2 hierarchies): an SM2 CA certifies only SM2 keys and an SM2 key is
    /// certified only by an SM2 CA; a subscriber certificate is either a signing certificate
    /// (digitalSignature / nonRepudiation) or an encryption one (keyEncipherment /
    /// dataEncipherment / keyAgreement), never both (the GM/T 0034 dual-certificate split).
    Gmt0015,
}

impl Rule {
    /// The stable name.
    pub fn name(self) -> &'static str {
        match self {
            Rule::Version => "version",
            Rule::Serial => "serial",
            Rule::IssuerName => "issuer_name",
            Rule::SignatureAlgorithm => "signature_algorithm",
            Rule::SubjectName => "subject_name",
            Rule::Validity => "validity",
            Rule::ValidityProfile => "validity_profile",
            Rule::KeyType => "key_type",
            Rule::ExtensionUnique => "extension_unique",
            Rule::Criticality => "criticality",
            Rule::SubjectKeyId => "subject_key_id",
            Rule::AuthorityKeyId => "authority_key_id",
            Rule::BasicConstraints => "basic_constraints",
            Rule::KeyUsage => "key_usage",
            Rule::KeyUsageKeyType => "key_usage_key_type",
            Rule::ExtendedKeyUsage => "extended_key_usage",
            Rule::OcspNoCheck => "ocsp_nocheck",
            Rule::Policies => "policies",
            Rule::Urls => "urls",
            Rule::SubjectAltName => "subject_alt_name",
            Rule::CrlIssuer => "crl_issuer",
            Rule::CrlTimes => "crl_times",
            Rule::CrlNumber => "crl_number",
            Rule::CrlAuthority => "crl_authority",
            Rule::Gmt0015 => "gmt0015",
        }
    }
}

/// A rule the TBS breaks, and how.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} ({})", detail, rule.name())]
pub struct LintError {
    /// Which rule.
    pub rule: Rule,
    /// What exactly.
    pub detail: String,
}

fn fail(rule: Rule, detail: impl Into<String>) -> LintError {
    LintError {
        rule,
        detail: detail.into(),
    }
}

/// What a lint needs to know about the signing CA (for a root: the TBS itself).
#[derive(Debug, Clone)]
pub struct IssuerFacts {
    /// Its subject name.
    pub subject: Name,
    /// Its subject key identifier.
    pub key_id: Vec<u8>,
    /// Its notBefore and notAfter, unix seconds.
    pub validity: (i64, i64),
    /// How its key signs.
    pub algorithm: hsm::SignatureAlgorithm,
}

/// What kind of certificate is being signed, with what it is checked against.
#[derive(Debug, Clone, Copy)]
pub enum CertificateKind<'a> {
    /// A subscriber certificate under `profile`, at `now`.
    EndEntity {
        /// The profile it was built from.
        profile: &'a Profile,
        /// Unix seconds.
        now: i64,
    },
    /// A delegated OCSP responder certificate.
    OcspResponder,
    /// An issuing CA certificate signed by its parent.
    SubordinateCa,
    /// A self-signed root certificate.
    Root,
}

impl CertificateKind<'_> {
    /// The stable name (signing records, audit rows).
    pub fn name(&self) -> &'static str {
        match self {
            CertificateKind::EndEntity { .. } => "end_entity",
            CertificateKind::OcspResponder => "ocsp_responder",
            CertificateKind::SubordinateCa => "ca",
            CertificateKind::Root => "root",
        }
    }
}

/// Lints a TBS certificate of `kind` signed by `issuer`.
pub fn certificate(
    tbs: &TbsCertificate,
    issuer: &IssuerFacts,
    kind: CertificateKind<'_>,
) -> Result<(), LintError> {
    if tbs.version != x509_cert::Version::V3
        || tbs.issuer_unique_id.is_some()
        || tbs.subject_unique_id.is_some()
    {
        return Err(fail(Rule::Version, "must be v3 without unique identifiers"));
    }
    serial(tbs.serial_number.as_bytes())?;
    if encoded(&tbs.issuer) != encoded(&issuer.subject) {
        return Err(fail(
            Rule::IssuerName,
            "issuer name differs from the CA certificate's subject",
        ));
    }
    if tbs.signature != issuer.algorithm.algorithm_identifier() {
        return Err(fail(
            Rule::SignatureAlgorithm,
            "does not match the issuing key",
        ));
    }
    // The appliance encodes subscriber DNs itself; CA and responder DNs come from configuration.
    subject_name(
        &tbs.subject,
        matches!(kind, CertificateKind::EndEntity { .. }),
    )?;
    let (nb, na) = secs(tbs);
    if nb >= na {
        return Err(fail(Rule::Validity, "notBefore is not before notAfter"));
    }
    if nb < issuer.validity.0 || na > issuer.validity.1 {
        return Err(fail(
            Rule::Validity,
            "outside the issuing CA certificate's validity",
        ));
    }
    let key_kind = key_kind_of(&tbs.subject_public_key_info)
        .map_err(|e| fail(Rule::KeyType, e.to_string()))?;
    let exts = tbs.extensions.as_deref().unwrap_or_default();
    extensions_unique_and_critical(exts)?;
    let ski: SubjectKeyIdentifier = decode(exts, Rule::SubjectKeyId)?
        .ok_or_else(|| fail(Rule::SubjectKeyId, "subjectKeyIdentifier missing"))?;
    if ski.0.as_bytes() != subject_key_id(&tbs.subject_public_key_info).as_slice() {
        return Err(fail(
            Rule::SubjectKeyId,
            "is not the SHA-1 of the subject key",
        ));
    }
    let aki: Option<AuthorityKeyIdentifier> = decode(exts, Rule::AuthorityKeyId)?;
    let aki_id = aki
        .as_ref()
        .and_then(|a| a.key_identifier.as_ref())
        .map(|k| k.as_bytes().to_vec());
    match (kind, aki_id) {
        (CertificateKind::Root, None) => {}
        (_, Some(id)) if id == issuer.key_id => {}
        (_, None) => return Err(fail(Rule::AuthorityKeyId, "authorityKeyIdentifier missing")),
        (_, Some(_)) => {
            return Err(fail(
                Rule::AuthorityKeyId,
                "is not the issuer's subject key identifier",
            ))
        }
    }
    let bc: BasicConstraints = decode(exts, Rule::BasicConstraints)?
        .ok_or_else(|| fail(Rule::BasicConstraints, "basicConstraints missing"))?;
    let ku: KeyUsage =
        decode(exts, Rule::KeyUsage)?.ok_or_else(|| fail(Rule::KeyUsage, "keyUsage missing"))?;
    let eku: Option<ExtendedKeyUsage> = decode(exts, Rule::ExtendedKeyUsage)?;
    let eku = eku.map(|e| e.0).unwrap_or_default();
    key_usage_fits_key(ku, key_kind)?;
    gmt0015(issuer, key_kind, ku, kind)?;
    match kind {
        CertificateKind::EndEntity { profile, now } => {
            end_entity(tbs, exts, profile, now, key_kind, bc, ku, &eku)?
        }
        CertificateKind::OcspResponder => {
            if bc.ca {
                return Err(fail(Rule::BasicConstraints, "responder with cA=true"));
            }
            if ku.0 != flagset::FlagSet::from(KeyUsages::DigitalSignature) {
                return Err(fail(Rule::KeyUsage, "responder: digitalSignature only"));
            }
            if eku != [rfc5280::ID_KP_OCSP_SIGNING] {
                return Err(fail(
                    Rule::ExtendedKeyUsage,
                    "responder: exactly id-kp-OCSPSigning",
                ));
            }
            if find(exts, rfc6960::ID_PKIX_OCSP_NOCHECK).is_none() {
                return Err(fail(Rule::OcspNoCheck, "id-pkix-ocsp-nocheck missing"));
            }
        }
        CertificateKind::SubordinateCa | CertificateKind::Root => {
            if !bc.ca {
                return Err(fail(
                    Rule::BasicConstraints,
                    "CA certificate without cA=true",
                ));
            }
            if matches!(kind, CertificateKind::SubordinateCa) && bc.path_len_constraint != Some(0) {
                return Err(fail(
                    Rule::BasicConstraints,
                    "an issuing CA has pathLenConstraint 0",
                ));
            }
            if !(ku.0.contains(KeyUsages::KeyCertSign) && ku.0.contains(KeyUsages::CRLSign)) {
                return Err(fail(Rule::KeyUsage, "CA: keyCertSign and cRLSign"));
            }
            if !eku.is_empty() {
                return Err(fail(
                    Rule::ExtendedKeyUsage,
                    "CA certificates carry no extendedKeyUsage",
                ));
            }
            if matches!(kind, CertificateKind::Root)
                && encoded(&tbs.subject) != encoded(&tbs.issuer)
            {
                return Err(fail(Rule::IssuerName, "a root is self-issued"));
            }
            urls_well_formed(exts)?;
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)] // the decoded pieces of one TBS
fn end_entity(
    tbs: &TbsCertificate,
    exts: &[Extension],
    profile: &Profile,
    now: i64,
    key_kind: hsm::KeyKind,
    bc: BasicConstraints,
    ku: KeyUsage,
    eku: &[ObjectIdentifier],
) -> Result<(), LintError> {
    if !profile.key_types.contains(&key_kind) {
        return Err(fail(
            Rule::KeyType,
            format!("key type {key_kind} is not allowed by the profile"),
        ));
    }
    let (nb, na) = secs(tbs);
    if na - nb > i64::from(profile.validity_days) * 86_400 + 3600 {
        return Err(fail(
            Rule::ValidityProfile,
            "longer than the profile allows",
        ));
    }
    if na <= now {
        return Err(fail(Rule::ValidityProfile, "already expired"));
    }
    if bc.ca {
        return Err(fail(
            Rule::BasicConstraints,
            "end-entity certificate with cA=true",
        ));
    }
    if ku.0.contains(KeyUsages::KeyCertSign) || ku.0.contains(KeyUsages::CRLSign) {
        return Err(fail(Rule::KeyUsage, "end-entity keyUsage with CA bits"));
    }
    if ku.0 != profile.key_usage.0 {
        return Err(fail(Rule::KeyUsage, "differs from the profile"));
    }
    subscriber_eku(eku)?;
    if eku != profile.extended_key_usage.as_slice() {
        return Err(fail(Rule::ExtendedKeyUsage, "differs from the profile"));
    }
    let policies: Option<CertificatePolicies> = decode(exts, Rule::Policies)?;
    let oids: Vec<ObjectIdentifier> = policies
        .map(|p| p.0.into_iter().map(|p| p.policy_identifier).collect())
        .unwrap_or_default();
    let unique: BTreeSet<_> = oids.iter().collect();
    if unique.len() != oids.len() {
        return Err(fail(Rule::Policies, "a policy OID appears twice"));
    }
    if oids.contains(&ANY_POLICY) {
        return Err(fail(
            Rule::Policies,
            "anyPolicy in a subscriber certificate",
        ));
    }
    if let Some(missing) = profile.policy_oids.iter().find(|p| !oids.contains(p)) {
        return Err(fail(
            Rule::Policies,
            format!("profile policy {missing} missing"),
        ));
    }
    let (ocsp, ca_issuers, crl) = urls(exts)?;
    if ocsp != profile.ocsp_url || ca_issuers != profile.ca_issuers_url || crl != profile.crl_url {
        return Err(fail(
            Rule::Urls,
            "AIA or CRL distribution point differs from the profile",
        ));
    }
    let san: Option<SubjectAltName> = decode(exts, Rule::SubjectAltName)?;
    if let Some(san) = san {
        if !profile.email_san {
            return Err(fail(
                Rule::SubjectAltName,
                "the profile issues no subjectAltName",
            ));
        }
        for name in &san.0 {
            match name {
                GeneralName::Rfc822Name(m) if valid_mailbox(m.as_str()) => {}
                _ => {
                    return Err(fail(
                        Rule::SubjectAltName,
                        "only well-formed rfc822Name entries are issued",
                    ))
                }
            }
        }
        if san.0.is_empty() {
            return Err(fail(Rule::SubjectAltName, "empty subjectAltName"));
        }
    }
    Ok(())
}

/// anyPolicy (RFC 5280 4.2.1.4).
const ANY_POLICY: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.32.0");
/// anyExtendedKeyUsage (RFC 5280 4.2.1.12).
const ANY_EKU: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.37.0");

fn subscriber_eku(eku: &[ObjectIdentifier]) -> Result<(), LintError> {
    if eku.contains(&rfc5280::ID_KP_OCSP_SIGNING) {
        return Err(fail(
            Rule::ExtendedKeyUsage,
            "OCSPSigning would make a subscriber a second OCSP signer for the CA",
        ));
    }
    if eku.contains(&ANY_EKU) {
        return Err(fail(
            Rule::ExtendedKeyUsage,
            "anyExtendedKeyUsage in a subscriber certificate",
        ));
    }
    let unique: BTreeSet<_> = eku.iter().collect();
    if unique.len() != eku.len() {
        return Err(fail(Rule::ExtendedKeyUsage, "an EKU appears twice"));
    }
    Ok(())
}

/// Checks a profile statically: refuses one that could only produce failing certificates.
pub fn profile(profile: &Profile) -> Result<(), LintError> {
    subscriber_eku(&profile.extended_key_usage)?;
    if profile.policy_oids.contains(&ANY_POLICY) {
        return Err(fail(Rule::Policies, "anyPolicy in a subscriber profile"));
    }
    if !profile
        .key_types
        .iter()
        .any(|k| key_usage_fits_key(profile.key_usage, *k).is_ok())
    {
        return Err(fail(
            Rule::KeyUsageKeyType,
            "no allowed key type can carry the profile's keyUsage",
        ));
    }
    for url in [&profile.ocsp_url, &profile.ca_issuers_url, &profile.crl_url]
        .into_iter()
        .flatten()
    {
        url_ok(url)?;
    }
    Ok(())
}

/// The GM/T 0015 rules of SM2 hierarchies (see [`Rule::Gmt0015`]).
fn gmt0015(
    issuer: &IssuerFacts,
    key_kind: hsm::KeyKind,
    ku: KeyUsage,
    kind: CertificateKind<'_>,
) -> Result<(), LintError> {
    let sm2_issuer = issuer.algorithm.is_sm2();
    let sm2_key = key_kind == hsm::KeyKind::Sm2;
    if sm2_issuer != sm2_key {
        return Err(fail(
            Rule::Gmt0015,
            "SM2 and non-SM2 keys do not mix in one chain (an SM2 CA certifies SM2 keys only)",
        ));
    }
    if sm2_key && matches!(kind, CertificateKind::EndEntity { .. }) {
        let signing = KeyUsages::DigitalSignature | KeyUsages::NonRepudiation;
        let encryption =
            KeyUsages::KeyEncipherment | KeyUsages::DataEncipherment | KeyUsages::KeyAgreement;
        if (ku.0 & signing).bits() != 0 && (ku.0 & encryption).bits() != 0 {
            return Err(fail(
                Rule::Gmt0015,
                "a signing certificate cannot also be an encryption certificate",
            ));
        }
    }
    Ok(())
}

fn key_usage_fits_key(ku: KeyUsage, kind: hsm::KeyKind) -> Result<(), LintError> {
    // SM2 has public-key encryption (GM/T 0003.4): its encryption certificates encipher.
    if kind.is_ec()
        && kind != hsm::KeyKind::Sm2
        && (ku.0.contains(KeyUsages::KeyEncipherment) || ku.0.contains(KeyUsages::DataEncipherment))
    {
        return Err(fail(
            Rule::KeyUsageKeyType,
            "an EC key cannot encipher (keyEncipherment/dataEncipherment)",
        ));
    }
    if !kind.is_ec() && ku.0.contains(KeyUsages::KeyAgreement) {
        return Err(fail(
            Rule::KeyUsageKeyType,
            "an RSA key cannot do keyAgreement",
        ));
    }
    Ok(())
}

/// Lints the fixed fields of a CRL before its entries are streamed and it is signed.
#[allow(clippy::too_many_arguments)] // the fixed fields of one CRL, each checked
pub fn crl(
    issuer: &IssuerFacts,
    issuer_name_der: &[u8],
    authority_key_id: &[u8],
    algorithm: &spki::AlgorithmIdentifierOwned,
    number: i64,
    base: Option<i64>,
    this_update: i64,
    next_update: i64,
) -> Result<(), LintError> {
    if Some(issuer_name_der) != encoded(&issuer.subject).as_deref() {
        return Err(fail(Rule::CrlIssuer, "issuer is not the CA's subject"));
    }
    if authority_key_id != issuer.key_id.as_slice() {
        return Err(fail(
            Rule::CrlAuthority,
            "authorityKeyIdentifier is not the CA's",
        ));
    }
    if *algorithm != issuer.algorithm.algorithm_identifier() {
        return Err(fail(
            Rule::CrlAuthority,
            "signature algorithm is not the CA key's",
        ));
    }
    if number < 0 {
        return Err(fail(Rule::CrlNumber, "negative CRLNumber"));
    }
    if this_update >= next_update {
        return Err(fail(Rule::CrlTimes, "thisUpdate is not before nextUpdate"));
    }
    if base.is_some_and(|b| b >= number) {
        return Err(fail(Rule::CrlTimes, "a delta's base is not older than it"));
    }
    Ok(())
}

fn serial(bytes: &[u8]) -> Result<(), LintError> {
    if bytes.is_empty() || bytes.len() > 20 || bytes[0] & 0x80 != 0 || bytes.len() < 8 {
        return Err(fail(Rule::Serial, "must be positive, 8..=20 octets"));
    }
    Ok(())
}

fn subject_name(name: &Name, strict_types: bool) -> Result<(), LintError> {
    if name.0.is_empty() {
        return Err(fail(Rule::SubjectName, "subject must not be empty"));
    }
    for rdn in name.0.iter() {
        for atv in rdn.0.iter() {
            let Some(attr) = DnAttribute::from_oid(atv.oid) else {
                continue; // not one the appliance writes: the CA's own configured subject
            };
            let text = if let Ok(s) = der::asn1::PrintableStringRef::try_from(&atv.value) {
                s.as_str().to_owned()
            } else if let Ok(s) = der::asn1::Utf8StringRef::try_from(&atv.value) {
                if attr.printable() && strict_types {
                    return Err(fail(
                        Rule::SubjectName,
                        format!("{attr:?} must be a PrintableString"),
                    ));
                }
                s.as_str().to_owned()
            } else {
                return Err(fail(
                    Rule::SubjectName,
                    format!("{attr:?} must be a PrintableString or UTF8String"),
                ));
            };
            let chars = text.chars().count();
            if chars == 0 || chars > attr.max_len() {
                return Err(fail(
                    Rule::SubjectName,
                    format!("{attr:?} must be 1..={} characters", attr.max_len()),
                ));
            }
            if attr == DnAttribute::Country
                && strict_types
                && !(text.len() == 2 && text.bytes().all(|b| b.is_ascii_uppercase()))
            {
                return Err(fail(
                    Rule::SubjectName,
                    "countryName must be two upper-case letters",
                ));
            }
        }
    }
    Ok(())
}

fn extensions_unique_and_critical(exts: &[Extension]) -> Result<(), LintError> {
    let known = [
        rfc5280::ID_CE_BASIC_CONSTRAINTS,
        rfc5280::ID_CE_KEY_USAGE,
        rfc5280::ID_CE_SUBJECT_KEY_IDENTIFIER,
        rfc5280::ID_CE_AUTHORITY_KEY_IDENTIFIER,
        rfc5280::ID_PE_AUTHORITY_INFO_ACCESS,
        rfc5280::ID_CE_CRL_DISTRIBUTION_POINTS,
        rfc5280::ID_CE_EXT_KEY_USAGE,
        rfc5280::ID_CE_CERTIFICATE_POLICIES,
    ];
    let mut seen = BTreeSet::new();
    for e in exts {
        if !seen.insert(e.extn_id) {
            return Err(fail(
                Rule::ExtensionUnique,
                format!("{} appears twice", e.extn_id),
            ));
        }
        let must_be_critical = [rfc5280::ID_CE_BASIC_CONSTRAINTS, rfc5280::ID_CE_KEY_USAGE];
        if must_be_critical.contains(&e.extn_id) && !e.critical {
            return Err(fail(
                Rule::Criticality,
                format!("{} must be critical", e.extn_id),
            ));
        }
        if known[2..].contains(&e.extn_id) && e.critical {
            return Err(fail(
                Rule::Criticality,
                format!("{} must not be critical", e.extn_id),
            ));
        }
        if e.extn_id == rfc5280::ID_CE_SUBJECT_ALT_NAME && e.critical {
            return Err(fail(
                Rule::SubjectAltName,
                "subjectAltName is critical only with an empty subject",
            ));
        }
        let ours = known.contains(&e.extn_id)
            || e.extn_id == rfc5280::ID_CE_SUBJECT_ALT_NAME
            || e.extn_id == rfc6960::ID_PKIX_OCSP_NOCHECK;
        if e.critical && !ours {
            return Err(fail(
                Rule::ExtensionUnique,
                format!("unknown critical extension {}", e.extn_id),
            ));
        }
    }
    Ok(())
}

type Urls = (Option<String>, Option<String>, Option<String>);

/// The (OCSP, caIssuers, CRL) URLs, each checked to be an ASCII http(s) URL.
fn urls(exts: &[Extension]) -> Result<Urls, LintError> {
    let uri_of = |name: &GeneralName| -> Result<String, LintError> {
        match name {
            GeneralName::UniformResourceIdentifier(u) => {
                url_ok(u.as_str())?;
                Ok(u.as_str().to_owned())
            }
            _ => Err(fail(Rule::Urls, "a location that is not a URI")),
        }
    };
    let (mut ocsp, mut ca_issuers, mut crl) = (None, None, None);
    let aia: Option<AuthorityInfoAccessSyntax> = decode(exts, Rule::Urls)?;
    for ad in aia.map(|a| a.0).unwrap_or_default() {
        let url = uri_of(&ad.access_location)?;
        let slot = match ad.access_method {
            rfc5280::ID_AD_OCSP => &mut ocsp,
            rfc5280::ID_AD_CA_ISSUERS => &mut ca_issuers,
            other => return Err(fail(Rule::Urls, format!("unknown access method {other}"))),
        };
        if slot.replace(url).is_some() {
            return Err(fail(Rule::Urls, "an access method appears twice"));
        }
    }
    let dps: Option<CrlDistributionPoints> = decode(exts, Rule::Urls)?;
    for DistributionPoint {
        distribution_point,
        reasons,
        crl_issuer,
    } in dps.map(|d| d.0).unwrap_or_default()
    {
        if reasons.is_some() || crl_issuer.is_some() {
            return Err(fail(
                Rule::Urls,
                "partitioned or indirect CRLs are not issued",
            ));
        }
        match distribution_point {
            Some(DistributionPointName::FullName(names)) if names.len() == 1 => {
                if crl.replace(uri_of(&names[0])?).is_some() {
                    return Err(fail(Rule::Urls, "several CRL distribution points"));
                }
            }
            _ => {
                return Err(fail(
                    Rule::Urls,
                    "a CRL distribution point is one full-name URI",
                ))
            }
        }
    }
    Ok((ocsp, ca_issuers, crl))
}

fn urls_well_formed(exts: &[Extension]) -> Result<(), LintError> {
    urls(exts).map(|_| ())
}

fn url_ok(url: &str) -> Result<(), LintError> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"));
    match rest {
        Some(r)
            if url.is_ascii()
                && !r.is_empty()
                && !r.starts_with('/')
                && !url.contains(char::is_whitespace) =>
        {
            Ok(())
        }
        _ => Err(fail(
            Rule::Urls,
            format!("{url:?} is not an ASCII http(s) URL"),
        )),
    }
}

fn valid_mailbox(m: &str) -> bool {
    let mut parts = m.split('@');
    let (Some(local), Some(domain), None) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    m.is_ascii()
        && m.len() <= 255
        && !local.is_empty()
        && !domain.is_empty()
        && !m.contains(char::is_whitespace)
}

fn decode<T: AssociatedOid + for<'a> Decode<'a>>(
    exts: &[Extension],
    rule: Rule,
) -> Result<Option<T>, LintError> {
    find(exts, T::OID)
        .map(|e| {
            T::from_der(e.extn_value.as_bytes())
                .map_err(|_| fail(rule, format!("{} does not decode", T::OID)))
        })
        .transpose()
}

fn find(exts: &[Extension], oid: ObjectIdentifier) -> Option<&Extension> {
    exts.iter().find(|e| e.extn_id == oid)
}

fn encoded<T: Encode>(value: &T) -> Option<Vec<u8>> {
    value.to_der().ok()
}

fn secs(tbs: &TbsCertificate) -> (i64, i64) {
    (
        tbs.validity.not_before.to_unix_duration().as_secs() as i64,
        tbs.validity.not_after.to_unix_duration().as_secs() as i64,
    )
}

#[cfg(test)]
#[path = "lint_tests.rs"]
mod tests;
