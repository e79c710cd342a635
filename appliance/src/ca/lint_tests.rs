//! Each lint rule made to fire by one mutation of an otherwise clean TBS.
#![allow(clippy::unwrap_used)] // tests may unwrap

use super::*;
use crate::ca::tbs;
use der::asn1::{Ia5String, OctetString};
use spki::{EncodePublicKey, SubjectPublicKeyInfoOwned};
use x509_cert::ext::pkix::AccessDescription;

const PERSONAL: &str = include_str!("../../../config/profiles/personal.toml");
const NOW: i64 = 1_800_000_000;

fn spki() -> SubjectPublicKeyInfoOwned {
    let key = p256::SecretKey::random(&mut rand::rngs::OsRng);
    let der = key.public_key().to_public_key_der().unwrap();
    SubjectPublicKeyInfoOwned::from_der(der.as_bytes()).unwrap()
}

fn profile() -> Profile {
    crate::profile::parse(PERSONAL, "http://ca.example").unwrap()
}

fn issuer() -> IssuerFacts {
    IssuerFacts {
        subject: "CN=Test Issuing CA,O=Test,C=CN".parse().unwrap(),
        key_id: tbs::subject_key_id(&spki()),
        validity: (NOW - 86_400, NOW + 3650 * 86_400),
        algorithm: hsm::SignatureAlgorithm::EcdsaSha256,
    }
}

fn attrs() -> std::collections::BTreeMap<String, String> {
    [("name", "Zhang San"), ("email", "zs@example.com")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// A clean end-entity TBS under the personal profile.
fn end_entity(issuer: &IssuerFacts, profile: &Profile) -> TbsCertificate {
    let key = spki();
    let exts =
        tbs::end_entity_extensions(profile, &key, &issuer.key_id, Some("zs@example.com")).unwrap();
    TbsCertificate {
        version: x509_cert::Version::V3,
        serial_number: tbs::random_serial().0,
        signature: issuer.algorithm.algorithm_identifier(),
        issuer: issuer.subject.clone(),
        validity: tbs::validity(NOW - 60, NOW + 365 * 86_400).unwrap(),
        subject: tbs::subject_name(profile, &attrs()).unwrap(),
        subject_public_key_info: key,
        issuer_unique_id: None,
        subject_unique_id: None,
        extensions: Some(exts),
    }
}

fn check_ee(t: &TbsCertificate) -> Result<(), LintError> {
    let p = profile();
    certificate(
        t,
        &issuer_for(t),
        CertificateKind::EndEntity {
            profile: &p,
            now: NOW,
        },
    )
}

/// The issuer facts a TBS was built against (its AKI is the issuer's SKI).
fn issuer_for(t: &TbsCertificate) -> IssuerFacts {
    let mut i = issuer();
    let aki: Option<AuthorityKeyIdentifier> =
        decode(t.extensions.as_deref().unwrap(), Rule::AuthorityKeyId).unwrap_or(None);
    if let Some(id) = aki.and_then(|a| a.key_identifier) {
        i.key_id = id.as_bytes().to_vec();
    }
    i
}

fn fires(rule: Rule, result: Result<(), LintError>) {
    match result {
        Err(e) => assert_eq!(e.rule, rule, "expected {rule:?}, got {e}"),
        Ok(()) => panic!("rule {rule:?} did not fire"),
    }
}

fn set_ext<T: Encode + AssociatedOid>(t: &mut TbsCertificate, critical: bool, value: &T) {
    let e = tbs::extension(critical, value).unwrap();
    let exts = t.extensions.get_or_insert_with(Vec::new);
    exts.retain(|x| x.extn_id != T::OID);
    exts.push(e);
}

fn remove_ext(t: &mut TbsCertificate, oid: ObjectIdentifier) {
    t.extensions.as_mut().unwrap().retain(|x| x.extn_id != oid);
}

fn clean() -> TbsCertificate {
    end_entity(&issuer(), &profile())
}

#[test]
fn a_clean_end_entity_passes() {
    check_ee(&clean()).unwrap();
}

#[test]
fn version_fires() {
    let mut t = clean();
    t.version = x509_cert::Version::V2;
    fires(Rule::Version, check_ee(&t));
}

#[test]
fn serial_fires() {
    let mut t = clean();
    t.serial_number = x509_cert::serial_number::SerialNumber::new(&[1, 2, 3, 4]).unwrap();
    fires(Rule::Serial, check_ee(&t));
}

#[test]
fn issuer_name_fires() {
    let mut t = clean();
    t.issuer = "CN=Someone Else".parse().unwrap();
    fires(Rule::IssuerName, check_ee(&t));
}

#[test]
fn signature_algorithm_fires() {
    let mut t = clean();
    t.signature = hsm::SignatureAlgorithm::EcdsaSha384.algorithm_identifier();
    fires(Rule::SignatureAlgorithm, check_ee(&t));
}

#[test]
fn subject_name_fires() {
    let mut t = clean();
    t.subject = x509_cert::name::RdnSequence(Vec::new());
    fires(Rule::SubjectName, check_ee(&t));
    let mut t = clean();
    let c_utf8 = x509_cert::attr::AttributeTypeAndValue {
        oid: const_oid::db::rfc4519::C,
        value: der::Any::from(der::asn1::Utf8StringRef::new("CN").unwrap()),
    };
    t.subject = x509_cert::name::RdnSequence(vec![x509_cert::name::RelativeDistinguishedName(
        der::asn1::SetOfVec::try_from(vec![c_utf8]).unwrap(),
    )]);
    fires(Rule::SubjectName, check_ee(&t));
    let mut t = clean();
    t.subject = format!("CN={}", "x".repeat(65)).parse().unwrap();
    fires(Rule::SubjectName, check_ee(&t));
}

#[test]
fn validity_fires() {
    let mut t = clean();
    t.validity = tbs::validity(NOW - 60, NOW + 3651 * 86_400).unwrap();
    fires(Rule::Validity, check_ee(&t));
    let mut t = clean();
    t.validity = tbs::validity(NOW, NOW - 1).unwrap();
    fires(Rule::Validity, check_ee(&t));
}

#[test]
fn validity_profile_fires() {
    let mut t = clean();
    t.validity = tbs::validity(NOW - 60, NOW + 400 * 86_400).unwrap();
    fires(Rule::ValidityProfile, check_ee(&t));
    let mut t = clean();
    t.validity = tbs::validity(NOW - 86_000, NOW - 10).unwrap();
    fires(Rule::ValidityProfile, check_ee(&t));
}

#[test]
fn key_type_fires() {
    let t = clean();
    let mut p = profile();
    p.key_types = vec![hsm::KeyKind::Rsa2048];
    fires(
        Rule::KeyType,
        certificate(
            &t,
            &issuer_for(&t),
            CertificateKind::EndEntity {
                profile: &p,
                now: NOW,
            },
        ),
    );
}

#[test]
fn extension_unique_fires() {
    let mut t = clean();
    let ski = t.extensions.as_ref().unwrap()[2].clone();
    t.extensions.as_mut().unwrap().push(ski);
    fires(Rule::ExtensionUnique, check_ee(&t));
    let mut t = clean();
    t.extensions.as_mut().unwrap().push(Extension {
        extn_id: ObjectIdentifier::new_unwrap("1.2.3.4"),
        critical: true,
        extn_value: OctetString::new(vec![5, 0]).unwrap(),
    });
    fires(Rule::ExtensionUnique, check_ee(&t));
}

#[test]
fn criticality_fires() {
    let mut t = clean();
    set_ext(&mut t, false, &KeyUsage(profile().key_usage.0));
    fires(Rule::Criticality, check_ee(&t));
    let mut t = clean();
    set_ext(
        &mut t,
        true,
        &ExtendedKeyUsage(profile().extended_key_usage.clone()),
    );
    fires(Rule::Criticality, check_ee(&t));
}

#[test]
fn subject_key_id_fires() {
    let mut t = clean();
    set_ext(
        &mut t,
        false,
        &SubjectKeyIdentifier(OctetString::new(vec![1; 20]).unwrap()),
    );
    fires(Rule::SubjectKeyId, check_ee(&t));
    let mut t = clean();
    remove_ext(&mut t, rfc5280::ID_CE_SUBJECT_KEY_IDENTIFIER);
    fires(Rule::SubjectKeyId, check_ee(&t));
}

#[test]
fn authority_key_id_fires() {
    let t = clean();
    let mut other = issuer_for(&t);
    other.key_id = vec![9; 20];
    let p = profile();
    fires(
        Rule::AuthorityKeyId,
        certificate(
            &t,
            &other,
            CertificateKind::EndEntity {
                profile: &p,
                now: NOW,
            },
        ),
    );
    let mut t = clean();
    let facts = issuer_for(&t);
    remove_ext(&mut t, rfc5280::ID_CE_AUTHORITY_KEY_IDENTIFIER);
    fires(
        Rule::AuthorityKeyId,
        certificate(
            &t,
            &facts,
            CertificateKind::EndEntity {
                profile: &p,
                now: NOW,
            },
        ),
    );
}

#[test]
fn basic_constraints_fires() {
    let mut t = clean();
    set_ext(
        &mut t,
        true,
        &BasicConstraints {
            ca: true,
            path_len_constraint: None,
        },
    );
    fires(Rule::BasicConstraints, check_ee(&t));
}

#[test]
fn key_usage_fires() {
    let mut t = clean();
    set_ext(
        &mut t,
        true,
        &KeyUsage(KeyUsages::DigitalSignature | KeyUsages::KeyCertSign),
    );
    fires(Rule::KeyUsage, check_ee(&t));
    let mut t = clean();
    set_ext(&mut t, true, &KeyUsage(KeyUsages::DigitalSignature.into()));
    fires(Rule::KeyUsage, check_ee(&t)); // differs from the profile
}

#[test]
fn key_usage_key_type_fires() {
    let mut t = clean();
    set_ext(
        &mut t,
        true,
        &KeyUsage(KeyUsages::DigitalSignature | KeyUsages::KeyEncipherment),
    );
    fires(Rule::KeyUsageKeyType, check_ee(&t));
}

#[test]
fn extended_key_usage_fires() {
    for bad in [rfc5280::ID_KP_OCSP_SIGNING, ANY_EKU] {
        let mut t = clean();
        set_ext(
            &mut t,
            false,
            &ExtendedKeyUsage(vec![rfc5280::ID_KP_CLIENT_AUTH, bad]),
        );
        fires(Rule::ExtendedKeyUsage, check_ee(&t));
    }
    let mut t = clean();
    set_ext(
        &mut t,
        false,
        &ExtendedKeyUsage(vec![rfc5280::ID_KP_CLIENT_AUTH]),
    );
    fires(Rule::ExtendedKeyUsage, check_ee(&t)); // differs from the profile
}

#[test]
fn a_profile_granting_ocsp_signing_is_refused() {
    let text = PERSONAL.replace(
        "extended_key_usage = [\"clientAuth\", \"emailProtection\"]",
        "extended_key_usage = [\"clientAuth\", \"OCSPSigning\"]",
    );
    let p = crate::profile::parse(&text, "http://ca.example").unwrap();
    fires(Rule::ExtendedKeyUsage, super::profile(&p));
    super::profile(&profile()).unwrap();
    let text = PERSONAL
        .replace(
            "\"digitalSignature\", \"nonRepudiation\"",
            "\"keyEncipherment\"",
        )
        .replace(
            "key_types = [\"ec-p256\", \"ec-p384\", \"rsa-2048\", \"rsa-3072\", \"rsa-4096\"]",
            "key_types = [\"ec-p256\"]",
        );
    let p = crate::profile::parse(&text, "http://ca.example").unwrap();
    fires(Rule::KeyUsageKeyType, super::profile(&p));
}

/// A clean responder TBS (as `status::responder` builds it).
fn responder() -> TbsCertificate {
    let mut t = clean();
    t.subject = "CN=OCSP Responder,O=CA Appliance".parse().unwrap();
    let keep = [
        rfc5280::ID_CE_BASIC_CONSTRAINTS,
        rfc5280::ID_CE_SUBJECT_KEY_IDENTIFIER,
        rfc5280::ID_CE_AUTHORITY_KEY_IDENTIFIER,
    ];
    t.extensions
        .as_mut()
        .unwrap()
        .retain(|e| keep.contains(&e.extn_id));
    set_ext(&mut t, true, &KeyUsage(KeyUsages::DigitalSignature.into()));
    set_ext(
        &mut t,
        false,
        &ExtendedKeyUsage(vec![rfc5280::ID_KP_OCSP_SIGNING]),
    );
    t.extensions.as_mut().unwrap().push(Extension {
        extn_id: rfc6960::ID_PKIX_OCSP_NOCHECK,
        critical: false,
        extn_value: OctetString::new(vec![5, 0]).unwrap(),
    });
    t
}

#[test]
fn ocsp_nocheck_fires() {
    let t = responder();
    certificate(&t, &issuer_for(&t), CertificateKind::OcspResponder).unwrap();
    let mut t = responder();
    remove_ext(&mut t, rfc6960::ID_PKIX_OCSP_NOCHECK);
    fires(
        Rule::OcspNoCheck,
        certificate(&t, &issuer_for(&t), CertificateKind::OcspResponder),
    );
    let mut t = responder();
    set_ext(
        &mut t,
        false,
        &ExtendedKeyUsage(vec![rfc5280::ID_KP_CLIENT_AUTH]),
    );
    fires(
        Rule::ExtendedKeyUsage,
        certificate(&t, &issuer_for(&t), CertificateKind::OcspResponder),
    );
}

#[test]
fn policies_fires() {
    let mut t = clean();
    remove_ext(&mut t, rfc5280::ID_CE_CERTIFICATE_POLICIES);
    fires(Rule::Policies, check_ee(&t));
}

#[test]
fn urls_fire() {
    let mut t = clean();
    set_ext(
        &mut t,
        false,
        &AuthorityInfoAccessSyntax(vec![AccessDescription {
            access_method: rfc5280::ID_AD_OCSP,
            access_location: GeneralName::UniformResourceIdentifier(
                Ia5String::new("ftp://ca.example/ocsp").unwrap(),
            ),
        }]),
    );
    fires(Rule::Urls, check_ee(&t));
    let mut t = clean();
    remove_ext(&mut t, rfc5280::ID_CE_CRL_DISTRIBUTION_POINTS);
    fires(Rule::Urls, check_ee(&t));
}

#[test]
fn subject_alt_name_fires() {
    let mut t = clean();
    set_ext(
        &mut t,
        false,
        &SubjectAltName(vec![GeneralName::DnsName(
            Ia5String::new("example.com").unwrap(),
        )]),
    );
    fires(Rule::SubjectAltName, check_ee(&t));
    let mut t = clean();
    set_ext(
        &mut t,
        false,
        &SubjectAltName(vec![GeneralName::Rfc822Name(
            Ia5String::new("not-an-address").unwrap(),
        )]),
    );
    fires(Rule::SubjectAltName, check_ee(&t));
}

/// A clean issuing CA TBS under `issuer`.
fn sub_ca() -> TbsCertificate {
    let i = issuer();
    let key = spki();
    let urls = tbs::CaUrls {
        crl: "http://ca.example/crl/root.crl".into(),
        ca_issuers: "http://ca.example/ca/root.crt".into(),
    };
    TbsCertificate {
        version: x509_cert::Version::V3,
        serial_number: tbs::random_serial().0,
        signature: i.algorithm.algorithm_identifier(),
        issuer: i.subject.clone(),
        validity: tbs::validity(NOW - 60, NOW + 365 * 86_400).unwrap(),
        subject: "CN=Sub CA,O=Test,C=CN".parse().unwrap(),
        extensions: Some(tbs::ca_extensions(&key, Some(&i.key_id), Some(0), Some(&urls)).unwrap()),
        subject_public_key_info: key,
        issuer_unique_id: None,
        subject_unique_id: None,
    }
}

#[test]
fn ca_rules_fire() {
    let t = sub_ca();
    certificate(&t, &issuer_for(&t), CertificateKind::SubordinateCa).unwrap();
    let mut t = sub_ca();
    set_ext(
        &mut t,
        true,
        &BasicConstraints {
            ca: true,
            path_len_constraint: None,
        },
    );
    fires(
        Rule::BasicConstraints,
        certificate(&t, &issuer_for(&t), CertificateKind::SubordinateCa),
    );
    let mut t = sub_ca();
    set_ext(&mut t, true, &KeyUsage(KeyUsages::KeyCertSign.into()));
    fires(
        Rule::KeyUsage,
        certificate(&t, &issuer_for(&t), CertificateKind::SubordinateCa),
    );
    let t = sub_ca();
    fires(
        Rule::IssuerName,
        certificate(&t, &issuer_for(&t), CertificateKind::Root),
    );
}

fn crl_check(
    name: &[u8],
    aki: &[u8],
    alg: hsm::SignatureAlgorithm,
    number: i64,
    base: Option<i64>,
    this: i64,
    next: i64,
) -> Result<(), LintError> {
    let i = issuer();
    let name_ok = i.subject.to_der().unwrap();
    let name = if name.is_empty() { &name_ok[..] } else { name };
    let aki = if aki.is_empty() { &i.key_id[..] } else { aki };
    crl(
        &i,
        name,
        aki,
        &alg.algorithm_identifier(),
        number,
        base,
        this,
        next,
    )
}

#[test]
fn crl_rules_fire() {
    let ok = hsm::SignatureAlgorithm::EcdsaSha256;
    crl_check(b"", b"", ok, 5, Some(4), NOW, NOW + 3600).unwrap();
    let other: Name = "CN=Other".parse().unwrap();
    fires(
        Rule::CrlIssuer,
        crl_check(&other.to_der().unwrap(), b"", ok, 5, None, NOW, NOW + 1),
    );
    fires(
        Rule::CrlAuthority,
        crl_check(b"", &[7; 20], ok, 5, None, NOW, NOW + 1),
    );
    fires(
        Rule::CrlAuthority,
        crl_check(
            b"",
            b"",
            hsm::SignatureAlgorithm::EcdsaSha384,
            5,
            None,
            NOW,
            NOW + 1,
        ),
    );
    fires(
        Rule::CrlNumber,
        crl_check(b"", b"", ok, -1, None, NOW, NOW + 1),
    );
    fires(Rule::CrlTimes, crl_check(b"", b"", ok, 5, None, NOW, NOW));
    fires(
        Rule::CrlTimes,
        crl_check(b"", b"", ok, 5, Some(5), NOW, NOW + 1),
    );
}

const SM2_PERSONAL: &str = include_str!("../../../config/profiles/sm2-personal.toml");

/// An SM2 subject key (id-ecPublicKey on the SM2 curve, as OpenSSL 3 writes it).
fn sm2_spki() -> SubjectPublicKeyInfoOwned {
    use sm2::elliptic_curve::sec1::ToEncodedPoint;
    let key = sm2::SecretKey::random(&mut rand::rngs::OsRng);
    let point = key.public_key().to_encoded_point(false);
    SubjectPublicKeyInfoOwned {
        algorithm: spki::AlgorithmIdentifierOwned {
            oid: const_oid::db::rfc5912::ID_EC_PUBLIC_KEY,
            parameters: Some(der::Any::from(&crate::ca::sm2::SM2_CURVE)),
        },
        subject_public_key: der::asn1::BitString::from_bytes(point.as_bytes()).unwrap(),
    }
}

/// A clean SM2 end entity under an SM2 issuing CA and the sm2-personal profile.
fn sm2_end_entity(key: SubjectPublicKeyInfoOwned) -> (TbsCertificate, IssuerFacts, Profile) {
    let profile = crate::profile::parse(SM2_PERSONAL, "http://ca.example").unwrap();
    let mut issuer = issuer();
    issuer.algorithm = hsm::SignatureAlgorithm::Sm2Sm3;
    issuer.key_id = tbs::subject_key_id(&sm2_spki());
    let exts = tbs::end_entity_extensions(&profile, &key, &issuer.key_id, None).unwrap();
    let t = TbsCertificate {
        version: x509_cert::Version::V3,
        serial_number: tbs::random_serial().0,
        signature: issuer.algorithm.algorithm_identifier(),
        issuer: issuer.subject.clone(),
        validity: tbs::validity(NOW - 60, NOW + 365 * 86_400).unwrap(),
        subject: tbs::subject_name(&profile, &attrs()).unwrap(),
        subject_public_key_info: key,
        issuer_unique_id: None,
        subject_unique_id: None,
        extensions: Some(exts),
    };
    (t, issuer, profile)
}

fn check_sm2(t: &TbsCertificate, issuer: &IssuerFacts, profile: &Profile) -> Result<(), LintError> {
    certificate(t, issuer, CertificateKind::EndEntity { profile, now: NOW })
}

#[test]
fn a_clean_sm2_end_entity_passes() {
    let (t, issuer, profile) = sm2_end_entity(sm2_spki());
    check_sm2(&t, &issuer, &profile).unwrap();
}

#[test]
fn gmt0015_fires_for_mixed_chains() {
    // An SM2 CA certifying a P-256 key.
    let (t, issuer, profile) = sm2_end_entity(spki());
    fires(Rule::Gmt0015, check_sm2(&t, &issuer, &profile));
    // An ECDSA CA certifying an SM2 key.
    let (mut t, mut issuer, profile) = sm2_end_entity(sm2_spki());
    issuer.algorithm = hsm::SignatureAlgorithm::EcdsaSha256;
    t.signature = issuer.algorithm.algorithm_identifier();
    fires(Rule::Gmt0015, check_sm2(&t, &issuer, &profile));
}

#[test]
fn gmt0015_fires_for_a_certificate_that_both_signs_and_encrypts() {
    let (mut t, issuer, profile) = sm2_end_entity(sm2_spki());
    set_ext(
        &mut t,
        true,
        &KeyUsage(KeyUsages::DigitalSignature | KeyUsages::KeyEncipherment),
    );
    fires(Rule::Gmt0015, check_sm2(&t, &issuer, &profile));
}
