//! Delegated OCSP responder certificates: one per issuing CA, P-256 key in the HSM, issued by
//! the CA with only `id-kp-OCSPSigning`, `id-pkix-ocsp-nocheck`, short validity; renewed
//! before it expires.

use const_oid::db::rfc5280::ID_KP_OCSP_SIGNING;
use const_oid::db::rfc6960::ID_PKIX_OCSP_NOCHECK;
use der::asn1::OctetString;
use der::Decode;
use rand::RngCore;
use x509_cert::ext::pkix::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, KeyUsages,
    SubjectKeyIdentifier,
};
use x509_cert::ext::Extension;
use x509_cert::name::Name;
use x509_cert::TbsCertificate;

use super::StatusError;
use crate::ca::lint::CertificateKind;
use crate::ca::signing::{CaSigner, SigningError};
use crate::ca::tbs::{self, extension};
use crate::ca::CertificateAuthority;
use crate::storage::{unix_now, AuditEntry, OcspStore, ResponderRecord};

/// The responder key kind for `ca`: SM2 under an SM2 CA (GM/T 0015 hierarchies stay SM2), else P-256.
pub fn key_kind_for(ca: &CertificateAuthority) -> hsm::KeyKind {
    if ca.signature_algorithm.is_sm2() {
        hsm::KeyKind::Sm2
    } else {
        hsm::KeyKind::EcP256
    }
}

/// Whether `rec` must be replaced: missing, or fewer than `renew_secs` of validity left
/// while a new one could last longer (it never outlives the CA's `ca_not_after`).
pub fn needs_renewal(
    rec: Option<&ResponderRecord>,
    now: i64,
    renew_secs: i64,
    ca_not_after: i64,
) -> bool {
    rec.is_none_or(|r| r.not_after - now < renew_secs && r.not_after < ca_not_after)
}

/// Generates a key in the HSM and has `ca` issue a responder certificate for it.
pub async fn create(
    hsm: &hsm::Hsm,
    signer: &CaSigner,
    store: &OcspStore,
    ca: &CertificateAuthority,
    validity_days: u32,
) -> Result<ResponderRecord, StatusError> {
    let mut suffix = [0u8; 4];
    rand::rngs::OsRng.fill_bytes(&mut suffix);
    let label = format!(
        "ocsp-{}-g{}-{}",
        ca.name,
        ca.generation,
        hex::encode(suffix)
    );
    let key = hsm.generate_key_pair(&label, key_kind_for(ca)).await?;
    let spki_der = hsm.public_key_der(&key).await?;
    let spki = spki::SubjectPublicKeyInfoOwned::from_der(&spki_der)
        .map_err(|e| StatusError::Build(format!("HSM public key: {e}")))?;
    let now = unix_now();
    let not_before = now - 60;
    let not_after = (now + i64::from(validity_days) * 86_400).min(ca.validity().1);
    let enc = |e: der::Error| StatusError::Build(e.to_string());
    let build = |e: tbs::BuildError| StatusError::Build(e.to_string());
    let nocheck = Extension {
        extn_id: ID_PKIX_OCSP_NOCHECK,
        critical: false,
        extn_value: OctetString::new(vec![0x05, 0x00]).map_err(enc)?,
    };
    let extensions = vec![
        extension(
            true,
            &BasicConstraints {
                ca: false,
                path_len_constraint: None,
            },
        )
        .map_err(build)?,
        extension(true, &KeyUsage(KeyUsages::DigitalSignature.into())).map_err(build)?,
        extension(false, &ExtendedKeyUsage(vec![ID_KP_OCSP_SIGNING])).map_err(build)?,
        extension(
            false,
            &SubjectKeyIdentifier(OctetString::new(tbs::subject_key_id(&spki)).map_err(enc)?),
        )
        .map_err(build)?,
        extension(
            false,
            &AuthorityKeyIdentifier {
                key_identifier: Some(OctetString::new(ca.subject_key_id.clone()).map_err(enc)?),
                authority_cert_issuer: None,
                authority_cert_serial_number: None,
            },
        )
        .map_err(build)?,
        nocheck,
    ];
    let subject: Name = format!("CN=OCSP Responder {},O=CA Appliance", ca.name)
        .parse()
        .map_err(|e| StatusError::Build(format!("responder subject: {e}")))?;
    let (serial, _) = tbs::random_serial();
    let tbs_cert = TbsCertificate {
        version: x509_cert::Version::V3,
        serial_number: serial,
        signature: ca.signature_algorithm.algorithm_identifier(),
        issuer: ca.certificate.tbs_certificate.subject.clone(),
        validity: tbs::validity(not_before, not_after).map_err(build)?,
        subject,
        subject_public_key_info: spki,
        issuer_unique_id: None,
        subject_unique_id: None,
        extensions: Some(extensions),
    };
    let certificate = signer
        .sign_certificate(ca, tbs_cert, CertificateKind::OcspResponder, "system:ocsp")
        .await
        .map_err(|e| match e {
            SigningError::Hsm(h) => StatusError::Hsm(h),
            SigningError::Storage(s) => StatusError::Storage(s),
            other => StatusError::Build(other.to_string()),
        })?;
    let rec = ResponderRecord {
        ca_id: ca.id,
        key_uri: key.to_string(),
        certificate,
        not_before,
        not_after,
    };
    store
        .insert_responder(
            &rec,
            &AuditEntry {
                actor: "system:ocsp".into(),
                action: "ocsp.responder_issue".into(),
                target: ca.name.clone(),
                detail: serde_json::json!({ "key_uri": rec.key_uri, "not_after": not_after }),
            },
        )
        .await?;
    tracing::info!(ca = %ca.name, not_after, "OCSP responder certificate issued");
    Ok(rec)
}
