//! CMS signature verification for relying parties (RFC 5652 SignedData, attached or detached):
//! each signer's signature (over the DER signed attributes, or the content when there are
//! none), the messageDigest and contentType attributes, the signer certificate's chain to one of
//! our CAs and its status at the signing time (the signingTime attribute, else now), and its key
//! usage. The answer is a verdict with every reason found, not the first error.

use cms::content_info::ContentInfo;
use cms::signed_data::{SignedData, SignerIdentifier, SignerInfo};
use const_oid::db::{rfc5280, rfc5911};
use der::asn1::OctetString;
use der::{Decode, Encode};
use serde::Serialize;
use x509_cert::ext::pkix::SubjectKeyIdentifier;
use x509_cert::time::Time;
use x509_cert::Certificate;

use super::signature::{self, Digest, Scheme, SignatureError};
use super::trust::{self, Refusal, Trust};
use crate::storage::{CertificateStore, StorageError};

/// A signingTime further ahead of our clock than this is not believed.
const CLOCK_SKEW_SECS: i64 = 300;

/// Why a verification request could not be judged at all.
#[derive(Debug, thiserror::Error)]
pub enum CmsError {
    /// Not a DER ContentInfo holding a SignedData with at least one signer.
    #[error("malformed CMS: {0}")]
    Malformed(String),
    /// Detached signature and no `content` given.
    #[error("the CMS is detached: the signed content must be given as `content`")]
    ContentMissing,
    /// The database failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// The signer as far as it is known.
#[derive(Debug, Serialize)]
pub struct SignerView {
    /// Certificate serial, lowercase hex.
    pub serial: Option<String>,
    /// Issuing CA name (ours) if identified.
    pub issuer: Option<String>,
    /// Subject, personal parts masked.
    pub subject: Option<serde_json::Value>,
    /// Assurance level from its policy OIDs.
    pub level: Option<String>,
    /// Current stored status (`valid`, `revoked`, `hold`).
    pub status: Option<String>,
    /// The signingTime attribute, unix seconds.
    pub signing_time: Option<i64>,
    /// The time the status was judged at (signingTime, else now).
    pub checked_at: i64,
}

/// The verdict.
#[derive(Debug, Serialize)]
pub struct Verdict {
    /// True only when every signer passed every check.
    pub valid: bool,
    /// Every reason found, stable codes.
    pub reasons: Vec<String>,
    /// The first signer.
    pub signer: Option<SignerView>,
    /// How many signers the CMS holds.
    pub signers: usize,
}

/// Verifies CMS SignedData against our CAs and status data.
#[derive(Clone)]
pub struct CmsVerifier {
    trust: Trust,
    certificates: CertificateStore,
}

impl CmsVerifier {
    /// A verifier over `trust`, finding signer certificates the CMS omits in `certificates`.
    pub fn new(trust: Trust, certificates: CertificateStore) -> Self {
        Self {
            trust,
            certificates,
        }
    }

    /// Verifies `cms` (DER ContentInfo); `content` is the signed content of a detached CMS.
    pub async fn verify(&self, cms: &[u8], content: Option<&[u8]>) -> Result<Verdict, CmsError> {
        let malformed = |e: der::Error| CmsError::Malformed(e.to_string());
        let info = ContentInfo::from_der(cms).map_err(malformed)?;
        if info.content_type != rfc5911::ID_SIGNED_DATA {
            return Err(CmsError::Malformed(format!(
                "content type {} is not signedData",
                info.content_type
            )));
        }
        let signed: SignedData = info.content.decode_as().map_err(malformed)?;
        let attached = match &signed.encap_content_info.econtent {
            None => None,
            Some(any) => Some(any.decode_as::<OctetString>().map_err(malformed)?),
        };
        let mut reasons = Vec::new();
        let content: Vec<u8> = match (&attached, content) {
            (Some(a), Some(given)) => {
                if a.as_bytes() != given {
                    reasons.push("content_mismatch".to_owned());
                }
                a.as_bytes().to_vec()
            }
            (Some(a), None) => a.as_bytes().to_vec(),
            (None, Some(given)) => given.to_vec(),
            (None, None) => return Err(CmsError::ContentMissing),
        };
        let signer_infos: Vec<&SignerInfo> = signed.signer_infos.0.iter().collect();
        if signer_infos.is_empty() {
            return Err(CmsError::Malformed("no signerInfo".into()));
        }
        let mut first = None;
        for info in &signer_infos {
            let (view, found) = self.verify_signer(&signed, info, &content).await?;
            for r in found {
                if !reasons.contains(&r) {
                    reasons.push(r);
                }
            }
            first.get_or_insert(view);
        }
        Ok(Verdict {
            valid: reasons.is_empty(),
            reasons,
            signer: first,
            signers: signer_infos.len(),
        })
    }

    async fn verify_signer(
        &self,
        signed: &SignedData,
        info: &SignerInfo,
        content: &[u8],
    ) -> Result<(SignerView, Vec<String>), CmsError> {
        let now = crate::storage::unix_now();
        let mut reasons: Vec<String> = Vec::new();
        let mut view = SignerView {
            serial: None,
            issuer: None,
            subject: None,
            level: None,
            status: None,
            signing_time: None,
            checked_at: now,
        };
        let digest = Digest::from_oid(&info.digest_alg.oid);
        if digest.is_none() {
            reasons.push("unsupported_algorithm".into());
        }
        // The bytes the signature covers, and the signed attributes' own checks.
        let message: Vec<u8> = match &info.signed_attrs {
            Some(attrs) => {
                let mut content_type = None;
                let mut message_digest = None;
                for attr in attrs.iter() {
                    let value = attr.values.iter().next();
                    if attr.values.len() != 1 {
                        reasons.push("signed_attributes_invalid".into());
                        continue;
                    }
                    match (attr.oid, value) {
                        (rfc5911::ID_CONTENT_TYPE, Some(v)) => content_type = v.decode_as().ok(),
                        (rfc5911::ID_MESSAGE_DIGEST, Some(v)) => {
                            message_digest = v.decode_as::<OctetString>().ok()
                        }
                        (rfc5911::ID_SIGNING_TIME, Some(v)) => {
                            match Time::from_der(&v.to_der().unwrap_or_default()) {
                                Ok(t) => {
                                    view.signing_time = Some(t.to_unix_duration().as_secs() as i64)
                                }
                                Err(_) => reasons.push("signed_attributes_invalid".into()),
                            }
                        }
                        _ => {}
                    }
                }
                let expected_type: Option<der::asn1::ObjectIdentifier> =
                    Some(signed.encap_content_info.econtent_type);
                if content_type != expected_type {
                    reasons.push("content_type_mismatch".into());
                }
                match (message_digest, digest) {
                    (Some(md), Some(d)) if md.as_bytes() == d.digest(content).as_slice() => {}
                    (_, Some(_)) => reasons.push("content_digest_mismatch".into()),
                    (_, None) => {}
                }
                attrs
                    .to_der()
                    .map_err(|e| CmsError::Malformed(e.to_string()))?
            }
            None => {
                if signed.encap_content_info.econtent_type != rfc5911::ID_DATA {
                    reasons.push("signed_attributes_invalid".into());
                }
                content.to_vec()
            }
        };
        let Some(cert) = self.signer_certificate(signed, &info.sid).await? else {
            reasons.push("signer_certificate_missing".into());
            return Ok((view, reasons));
        };
        view.serial = Some(trust::serial_hex(
            cert.tbs_certificate.serial_number.as_bytes(),
        ));
        view.subject = Some(trust::masked_subject(&cert));
        let spki = &cert.tbs_certificate.subject_public_key_info;
        match Scheme::from_algorithm(&info.signature_algorithm, digest)
            .and_then(|s| signature::verify(spki, s, &message, info.signature.as_bytes()))
        {
            Ok(()) => {}
            Err(SignatureError::Invalid) => reasons.push("signature_invalid".into()),
            Err(_) => reasons.push("unsupported_algorithm".into()),
        }
        let at = match view.signing_time {
            Some(t) if t > now + CLOCK_SKEW_SECS => {
                reasons.push("signing_time_in_future".into());
                now
            }
            Some(t) => t,
            None => now,
        };
        view.checked_at = at;
        match self.trust.identify(&cert).await? {
            Err(refusal) => reasons.push(refusal.code().into()),
            Ok(known) => {
                if let Err(refusal) = self.trust.judge(&known, at, None) {
                    reasons.push(refusal.code().into());
                }
                view.serial = Some(known.serial.clone());
                view.issuer = Some(known.issuer.clone());
                view.level = known.level.map(|l| l.as_str().to_owned());
                view.status = Some(known.status.clone());
            }
        }
        if !trust::may_sign(&cert) {
            reasons.push(Refusal::KeyUsage.code().into());
        }
        Ok((view, reasons))
    }

    /// The signer's certificate: from the CMS `certificates`, else ours by issuer and serial.
    async fn signer_certificate(
        &self,
        signed: &SignedData,
        sid: &SignerIdentifier,
    ) -> Result<Option<Certificate>, CmsError> {
        let included = signed
            .certificates
            .iter()
            .flat_map(|set| set.0.iter())
            .filter_map(|c| match c {
                cms::cert::CertificateChoices::Certificate(c) => Some(c),
                _ => None,
            });
        for cert in included {
            let matches = match sid {
                SignerIdentifier::IssuerAndSerialNumber(ias) => {
                    ias.serial_number == cert.tbs_certificate.serial_number
                        && ias.issuer.to_der().ok() == cert.tbs_certificate.issuer.to_der().ok()
                }
                SignerIdentifier::SubjectKeyIdentifier(ski) => {
                    subject_key_id(cert).is_some_and(|own| own == *ski)
                }
            };
            if matches {
                return Ok(Some(cert.clone()));
            }
        }
        let SignerIdentifier::IssuerAndSerialNumber(ias) = sid else {
            return Ok(None);
        };
        let serial = trust::serial_hex(ias.serial_number.as_bytes());
        let Some(record) = self.certificates.get(&serial).await? else {
            return Ok(None);
        };
        Ok(Certificate::from_der(&record.der)
            .ok()
            .filter(|c| c.tbs_certificate.issuer.to_der().ok() == ias.issuer.to_der().ok()))
    }
}

fn subject_key_id(cert: &Certificate) -> Option<SubjectKeyIdentifier> {
    let ext = cert
        .tbs_certificate
        .extensions
        .as_ref()?
        .iter()
        .find(|e| e.extn_id == rfc5280::ID_CE_SUBJECT_KEY_IDENTIFIER)?;
    SubjectKeyIdentifier::from_der(ext.extn_value.as_bytes()).ok()
}
