//! Issuing end-entity certificates: prepare (build + lint), then sign and store.
//!
//! [`Issuer::prepare`] returns a [`PreparedCertificate`] that is not `Clone` and is consumed by
//! [`Issuer::sign`]: a linted TBS can be signed at most once, only through the
//! [`CaSigner`] path (lint -> record -> sign -> verify), and is stored before anyone sees it.

use std::collections::BTreeMap;
use std::sync::Arc;

use x509_cert::TbsCertificate;

use super::csr::{self, CsrError};
use super::lint::{self, CertificateKind, LintError};
use super::signing::{CaSigner, SigningError};
use super::tbs::{self, BuildError};
use super::{CertificateAuthority, Hierarchy};
use crate::profile::Profile;
use crate::storage::{
    unix_now, AuditEntry, CertificateStore, NewCertificate, Storage, StorageError,
};

/// Subject attributes a request may carry; anything else is refused.
pub const SUBJECT_FIELDS: &[&str] = &[
    "name",
    "organisation",
    "organisational_unit",
    "uscc",
    "email",
    "locality",
    "province",
];

/// Backdating of notBefore, to tolerate relying parties with slow clocks.
const BACKDATE_SECS: i64 = 60;

/// Why an issuance failed. Each maps to one stable API error code.
#[derive(Debug, thiserror::Error)]
pub enum IssuanceError {
    /// No such profile.
    #[error("unknown profile {0:?}")]
    UnknownProfile(String),
    /// The profile's issuing CA has not been created (run the ceremony).
    #[error("issuing CA {0} does not exist; run the ceremony")]
    IssuerMissing(String),
    /// The CSR was refused.
    #[error(transparent)]
    Csr(#[from] CsrError),
    /// A subject attribute was refused.
    #[error("{0}")]
    Subject(String),
    /// The request could not be turned into a certificate.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// The certificate would break RFC 5280 or its profile.
    #[error("pre-signing check failed: {0}")]
    Lint(#[from] LintError),
    /// The HSM failed.
    #[error(transparent)]
    Hsm(#[from] hsm::HsmError),
    /// The database failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The HSM's signature did not verify with the issuer's public key; nothing was stored.
    #[error("{0}")]
    BadSignature(String),
}

impl From<SigningError> for IssuanceError {
    fn from(e: SigningError) -> Self {
        match e {
            SigningError::Lint(l) => IssuanceError::Lint(l),
            SigningError::Build(b) => IssuanceError::Build(b),
            SigningError::Hsm(h) => IssuanceError::Hsm(h),
            SigningError::Storage(s) => IssuanceError::Storage(s),
            SigningError::BadSignature(m) => IssuanceError::BadSignature(m),
        }
    }
}

/// What a caller asks for.
#[derive(Debug, Clone)]
pub struct IssuanceRequest {
    /// Profile name.
    pub profile: String,
    /// PEM CSR.
    pub csr_pem: String,
    /// Verified subject attributes.
    pub subject: BTreeMap<String, String>,
    /// Channel the request came through, if any.
    pub channel: Option<String>,
    /// Who asked, for the audit log (`operator:<cn>`, `channel:<name>`).
    pub actor: String,
    /// Certificate policy OIDs added to the profile's (the assurance level's OID).
    pub extra_policies: Vec<const_oid::ObjectIdentifier>,
    /// The application (or account download, `dl_...`) this issuance concludes (`None`: an
    /// operator's direct issuance).
    pub application: Option<String>,
}

/// A built and linted TBS certificate, redeemable once by [`Issuer::sign`].
#[derive(Debug)]
pub struct PreparedCertificate {
    tbs: TbsCertificate,
    issuer: Arc<CertificateAuthority>,
    serial: String,
    profile: String,
    channel: Option<String>,
    actor: String,
    application: Option<String>,
    subject_dn: String,
    not_before: i64,
    not_after: i64,
    now: i64,
    /// The profile as applied to this issuer generation (its URLs), for the signing lint.
    applied: Profile,
    /// The CRL shard written into the CRLDP (a `crl_shards` profile), stored with the row.
    crl_shard: Option<i64>,
}

/// A signed, stored certificate.
#[derive(Debug, Clone)]
pub struct IssuedCertificate {
    /// Serial, lowercase hex.
    pub serial: String,
    /// The certificate DER.
    pub der: Vec<u8>,
    /// The issuing CA and its ancestors, nearest first.
    pub chain: Vec<Arc<CertificateAuthority>>,
    /// The issuing CA's row id.
    pub ca_id: i64,
    /// notAfter, unix seconds.
    pub not_after: i64,
}

/// Issues end-entity certificates. Cheap to clone (shared signer, hierarchy and profiles).
#[derive(Clone)]
pub struct Issuer {
    signer: CaSigner,
    hierarchy: Arc<Hierarchy>,
    profiles: Arc<BTreeMap<String, Profile>>,
    store: CertificateStore,
}

impl Issuer {
    /// An issuer over a loaded hierarchy and profiles; its CA signatures are recorded in
    /// `storage`'s signing ledger.
    pub fn new(
        hsm: hsm::Hsm,
        storage: &Storage,
        hierarchy: Arc<Hierarchy>,
        profiles: Arc<BTreeMap<String, Profile>>,
        store: CertificateStore,
    ) -> Self {
        Self {
            signer: CaSigner::new(hsm, storage),
            hierarchy,
            profiles,
            store,
        }
    }

    /// The signing capability, for the status services (responder certificates, CRLs).
    pub fn signer(&self) -> CaSigner {
        self.signer.clone()
    }

    /// The loaded profiles.
    pub fn profiles(&self) -> &BTreeMap<String, Profile> {
        &self.profiles
    }

    /// Verifies the CSR, builds the TBS certificate and lints it.
    pub fn prepare(&self, req: IssuanceRequest) -> Result<PreparedCertificate, IssuanceError> {
        let profile = self
            .profiles
            .get(&req.profile)
            .ok_or_else(|| IssuanceError::UnknownProfile(req.profile.clone()))?;
        let issuer = self
            .hierarchy
            .get(&profile.issuer)
            .ok_or_else(|| IssuanceError::IssuerMissing(profile.issuer.clone()))?
            .clone();
        if issuer.revoked_at.is_some() {
            return Err(IssuanceError::IssuerMissing(format!(
                "{} (generation {} is revoked; run the ceremony with --new-generation)",
                issuer.name, issuer.generation
            )));
        }
        let mut effective = generation_profile(profile, &issuer);
        for oid in &req.extra_policies {
            if !effective.policy_oids.contains(oid) {
                effective.policy_oids.push(*oid);
            }
        }
        check_subject(&req.subject)?;
        let csr = csr::verify_pem(&req.csr_pem)?;
        let subject = tbs::subject_name(&effective, &req.subject)?;
        self.build(
            req,
            effective,
            issuer,
            subject,
            csr.public_key,
            csr.key_kind,
        )
    }

    /// As [`Issuer::prepare`] for a key the appliance made (no CSR): the encryption half of a
    /// dual certificate, named `subject` (its signing certificate's subject).
    pub fn prepare_for_key(
        &self,
        req: IssuanceRequest,
        subject: x509_cert::name::Name,
        public_key: spki::SubjectPublicKeyInfoOwned,
    ) -> Result<PreparedCertificate, IssuanceError> {
        let profile = self
            .profiles
            .get(&req.profile)
            .ok_or_else(|| IssuanceError::UnknownProfile(req.profile.clone()))?;
        let issuer = self
            .hierarchy
            .get(&profile.issuer)
            .ok_or_else(|| IssuanceError::IssuerMissing(profile.issuer.clone()))?
            .clone();
        if issuer.revoked_at.is_some() {
            return Err(IssuanceError::IssuerMissing(format!(
                "{} (generation {} is revoked)",
                issuer.name, issuer.generation
            )));
        }
        let effective = generation_profile(profile, &issuer);
        let kind = tbs::key_kind_of(&public_key)
            .map_err(|e| IssuanceError::Csr(CsrError::UnsupportedKey(e.to_string())))?;
        self.build(req, effective, issuer, subject, public_key, kind)
    }

    fn build(
        &self,
        req: IssuanceRequest,
        effective: Profile,
        issuer: Arc<CertificateAuthority>,
        subject: x509_cert::name::Name,
        public_key: spki::SubjectPublicKeyInfoOwned,
        key_kind: hsm::KeyKind,
    ) -> Result<PreparedCertificate, IssuanceError> {
        let profile = &effective;
        if !profile.key_types.contains(&key_kind) {
            return Err(IssuanceError::Csr(CsrError::UnsupportedKey(format!(
                "key type {} is not allowed by profile {}",
                key_kind, profile.name
            ))));
        }
        let now = unix_now();
        let not_before = now - BACKDATE_SECS;
        // Clipped to the issuer: a certificate never outlives the CA certificate above it.
        let not_after = (now + i64::from(profile.validity_days) * 86_400).min(issuer.validity().1);
        let (serial, serial_hex) = tbs::random_serial();
        // A sharded profile: the shard is chosen here, once, and written into the CRLDP.
        let shard_profile;
        let shard = profile
            .crl_shard(serial.as_bytes())
            .filter(|_| profile.crl_url.is_some());
        let crl_shard = shard.map(i64::from);
        let profile = match (shard, &profile.crl_url) {
            (Some(shard), Some(url)) => {
                let mut p = profile.clone();
                p.crl_url = Some(crate::profile::crl_shard_url(
                    url,
                    &issuer.stem(),
                    &p.name,
                    shard,
                ));
                shard_profile = p;
                &shard_profile
            }
            _ => profile,
        };
        let extensions = tbs::end_entity_extensions(
            profile,
            &public_key,
            &issuer.subject_key_id,
            req.subject.get("email").map(String::as_str),
        )?;
        let tbs = TbsCertificate {
            version: x509_cert::Version::V3,
            serial_number: serial,
            signature: issuer.signature_algorithm.algorithm_identifier(),
            issuer: issuer.certificate.tbs_certificate.subject.clone(),
            validity: tbs::validity(not_before, not_after)?,
            subject,
            subject_public_key_info: public_key,
            issuer_unique_id: None,
            subject_unique_id: None,
            extensions: Some(extensions),
        };
        lint::certificate(
            &tbs,
            &super::signing::SigningKey::of(&issuer).facts,
            CertificateKind::EndEntity { profile, now },
        )?;
        Ok(PreparedCertificate {
            subject_dn: tbs.subject.to_string(),
            tbs,
            issuer,
            serial: serial_hex,
            profile: profile.name.clone(),
            channel: req.channel,
            actor: req.actor,
            application: req.application,
            not_before,
            not_after,
            now,
            applied: profile.clone(),
            crl_shard,
        })
    }

    /// Signs a prepared certificate in the HSM and stores it durably; then returns it.
    pub async fn sign(
        &self,
        prepared: PreparedCertificate,
    ) -> Result<IssuedCertificate, IssuanceError> {
        let PreparedCertificate {
            tbs,
            issuer,
            serial,
            profile,
            channel,
            actor,
            application,
            subject_dn,
            not_before,
            not_after,
            now,
            applied,
            crl_shard,
        } = prepared;
        let profile_def = &applied;
        let der = self
            .signer
            .sign_certificate(
                &issuer,
                tbs,
                CertificateKind::EndEntity {
                    profile: profile_def,
                    now,
                },
                &actor,
            )
            .await?;
        let audit = AuditEntry {
            actor,
            action: "certificate.issue".into(),
            target: serial.clone(),
            detail: serde_json::json!({
                "profile": profile,
                "issuer": issuer.name,
                "application": application,
                "direct": application.is_none(),
            }),
        };
        self.store
            .insert(
                NewCertificate {
                    serial: serial.clone(),
                    ca_id: issuer.id,
                    profile,
                    channel,
                    subject_dn,
                    not_before,
                    not_after,
                    der: der.clone(),
                    crl_shard,
                },
                audit,
            )
            .await?;
        tracing::info!(serial = %serial, issuer = %issuer.name, "certificate issued");
        Ok(IssuedCertificate {
            serial,
            der,
            chain: self.hierarchy.chain_of(&issuer),
            ca_id: issuer.id,
            not_after,
        })
    }

    /// Prepare and sign in one call.
    pub async fn issue(&self, req: IssuanceRequest) -> Result<IssuedCertificate, IssuanceError> {
        let prepared = self.prepare(req)?;
        self.sign(prepared).await
    }
}

/// `profile` as issued under `issuer`: from generation 2 on, a CRL URL ending in
/// `/crl/{name}.crl` and a caIssuers URL ending in `/ca/{name}.crt` name that generation's own
/// files (`{name}-gN`), so older generations keep their CRL and certificate at the URLs their
/// certificates carry.
pub fn generation_profile(profile: &Profile, issuer: &CertificateAuthority) -> Profile {
    let mut p = profile.clone();
    if issuer.generation > 1 {
        let stem = issuer.stem();
        let swap = |url: &mut Option<String>, dir: &str, ext: &str| {
            if let Some(u) = url {
                let old = format!("/{dir}/{}.{ext}", issuer.name);
                if let Some(base) = u.strip_suffix(&old) {
                    *u = format!("{base}/{dir}/{stem}.{ext}");
                }
            }
        };
        swap(&mut p.crl_url, "crl", "crl");
        swap(&mut p.ca_issuers_url, "ca", "crt");
    }
    p
}

fn check_subject(subject: &BTreeMap<String, String>) -> Result<(), IssuanceError> {
    for (key, value) in subject {
        if !SUBJECT_FIELDS.contains(&key.as_str()) {
            return Err(IssuanceError::Subject(format!(
                "unknown subject attribute {key:?} (accepted: {})",
                SUBJECT_FIELDS.join(", ")
            )));
        }
        if value.chars().count() > 128 {
            return Err(IssuanceError::Subject(format!(
                "subject attribute {key:?} is longer than 128 characters"
            )));
        }
    }
    if let Some(email) = subject.get("email") {
        let ok = email.is_ascii()
            && email.split('@').count() == 2
            && email.split('@').all(|p| !p.is_empty())
            && !email.contains(char::is_whitespace);
        if !ok {
            return Err(IssuanceError::Subject(
                "email is not a valid address".into(),
            ));
        }
    }
    if let Some(uscc) = subject.get("uscc") {
        if identifiers::uscc::Uscc::parse(uscc).is_err() {
            return Err(IssuanceError::Subject(
                "uscc is not a valid unified social credit code".into(),
            ));
        }
    }
    Ok(())
}
