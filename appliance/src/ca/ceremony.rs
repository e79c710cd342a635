//! The key ceremony: create the root and issuing CAs with keys generated in the HSM.
//!
//! Idempotent: a CA that already exists is left alone and reported; a new generation (new key,
//! new certificate) is made only when asked for by name.

use std::path::Path;
use std::sync::Arc;

use rand::RngCore;
use x509_cert::TbsCertificate;

use super::lint::{CertificateKind, IssuerFacts};
use super::signing::{CaSigner, SigningError, SigningKey};
use super::tbs::{self, BuildError};
use super::{lint, CertificateAuthority, Hierarchy, HierarchyError};
use crate::config::CaConfig;
use crate::storage::{unix_now, AuditEntry, NewCa, Storage, StorageError};

/// Why the ceremony stopped. CAs completed before the failure stay (each is one transaction).
#[derive(Debug, thiserror::Error)]
pub enum CeremonyError {
    /// The HSM failed.
    #[error(transparent)]
    Hsm(#[from] hsm::HsmError),
    /// The database failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A stored CA is unusable.
    #[error(transparent)]
    Hierarchy(#[from] HierarchyError),
    /// A configured CA is invalid.
    #[error("CA {name}: {reason}")]
    Config {
        /// CA name.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// Building the certificate failed.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// The built certificate failed the pre-signing checks.
    #[error("pre-signing check failed: {0}")]
    Lint(#[from] lint::LintError),
    /// The signing path refused or failed (record, HSM, verification).
    #[error(transparent)]
    Signing(#[from] SigningError),
    /// The audit key could not be created.
    #[error("audit key: {0}")]
    Audit(#[from] crate::audit::AuditError),
    /// Writing the PEM output failed.
    #[error("cannot write {path}: {reason}")]
    Output {
        /// File.
        path: String,
        /// Why.
        reason: String,
    },
}

/// What the ceremony did for one CA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CeremonyOutcome {
    /// A CA was created at this generation.
    Created {
        /// CA name.
        name: String,
        /// Generation.
        generation: i64,
        /// What was made: key and certificate.
        made: Box<MadeCa>,
    },
    /// The audit key (signs audit log checkpoints) was generated.
    AuditKey {
        /// Its RFC 7512 URI.
        key_uri: String,
    },
    /// The CA existed and was left alone.
    Existing {
        /// CA name.
        name: String,
        /// Its current generation.
        generation: i64,
    },
}

/// The key and certificate the ceremony made for one CA, as it reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MadeCa {
    /// The key's label on the token.
    pub key_label: String,
    /// The key's RFC 7512 URI (token and label).
    pub key_uri: String,
    /// The certificate's serial number, hex.
    pub serial: String,
    /// SHA-256 of the certificate DER, colon-separated upper-case hex (as `openssl x509 -fingerprint`).
    pub fingerprint_sha256: String,
    /// The subject as written in the ceremony file.
    pub subject: String,
    /// notAfter, unix seconds.
    pub not_after: i64,
}

/// Runs the ceremony for `cas` (root first); `new_generation` names CAs to re-key.
/// `public_url` is written into issuing CA certificates (CRL distribution point, caIssuers);
/// `root_hsm` is the offline root token, if the root key lives on one.
#[allow(clippy::too_many_arguments)] // the ceremony's whole context
pub async fn run(
    hsm: &hsm::Hsm,
    root_hsm: Option<&hsm::Hsm>,
    storage: &Storage,
    cas: &[CaConfig],
    new_generation: &[String],
    output_dir: &Path,
    actor: &str,
    public_url: &str,
) -> Result<Vec<CeremonyOutcome>, CeremonyError> {
    let signer = CaSigner::new(hsm.clone(), storage).with_root(root_hsm.cloned());
    for name in new_generation {
        if !cas.iter().any(|c| &c.name == name) {
            return Err(CeremonyError::Config {
                name: name.clone(),
                reason: "not a configured CA".into(),
            });
        }
    }
    let mut outcomes = Vec::new();
    for ca in cas {
        let hierarchy = Hierarchy::from_records(storage.authorities().all().await?)?;
        if let Some(existing) = hierarchy.get(&ca.name) {
            if !new_generation.contains(&ca.name) {
                outcomes.push(CeremonyOutcome::Existing {
                    name: ca.name.clone(),
                    generation: existing.generation,
                });
                continue;
            }
        }
        let generation = hierarchy.get(&ca.name).map_or(1, |c| c.generation + 1);
        let parent = match &ca.parent {
            None => None,
            Some(p) => Some(
                hierarchy
                    .get(p)
                    .cloned()
                    .ok_or_else(|| CeremonyError::Config {
                        name: ca.name.clone(),
                        reason: format!("parent {p} does not exist"),
                    })?,
            ),
        };
        // A root's key goes on the offline root token when there is one.
        let key_hsm = match (&ca.parent, root_hsm) {
            (None, Some(root)) => root,
            _ => hsm,
        };
        let made = create(
            key_hsm, &signer, storage, ca, generation, parent, actor, public_url,
        )
        .await?;
        outcomes.push(CeremonyOutcome::Created {
            name: ca.name.clone(),
            generation,
            made: Box::new(made),
        });
    }
    // The audit key that signs checkpoints of the audit log is made with the CA keys.
    if crate::audit::ensure_key(hsm, storage, actor).await? {
        if let Some(key) = storage.audit().keys().await?.last() {
            outcomes.push(CeremonyOutcome::AuditKey {
                key_uri: key.key_uri.clone(),
            });
        }
    }
    write_pem_files(storage, output_dir).await?;
    Ok(outcomes)
}

#[allow(clippy::too_many_arguments)] // one ceremony step's whole context
async fn create(
    hsm: &hsm::Hsm,
    signer: &CaSigner,
    storage: &Storage,
    ca: &CaConfig,
    generation: i64,
    parent: Option<Arc<CertificateAuthority>>,
    actor: &str,
    public_url: &str,
) -> Result<MadeCa, CeremonyError> {
    let config_err = |reason: String| CeremonyError::Config {
        name: ca.name.clone(),
        reason,
    };
    let kind: hsm::KeyKind = ca
        .key
        .parse()
        .map_err(|_| config_err(format!("unknown key type {}", ca.key)))?;
    let subject: x509_cert::name::Name = ca
        .subject
        .parse()
        .map_err(|e| config_err(format!("subject {:?}: {e}", ca.subject)))?;
    // A random suffix keeps an orphaned key (from an interrupted ceremony) from blocking a retry.
    let mut suffix = [0u8; 4];
    rand::rngs::OsRng.fill_bytes(&mut suffix);
    let label = format!("ca-{}-g{generation}-{}", ca.name, hex::encode(suffix));
    let key = hsm.generate_key_pair(&label, kind).await?;
    let spki_der = hsm.public_key_der(&key).await?;
    let spki = <spki::SubjectPublicKeyInfoOwned as der::Decode>::from_der(&spki_der)
        .map_err(|e| config_err(format!("HSM returned an unparsable public key: {e}")))?;

    let now = unix_now();
    let not_before = now - 60;
    let mut not_after = now + i64::from(ca.validity_days) * 86_400;
    let alg = tbs::signature_algorithm_for(kind);
    let (issuer_name, issuer_key_id, signer_alg, path_len, urls) = match &parent {
        None => (subject.clone(), None, alg, None, None),
        Some(p) => {
            not_after = not_after.min(p.validity().1);
            let base = public_url.trim_end_matches('/');
            (
                p.certificate.tbs_certificate.subject.clone(),
                Some(p.subject_key_id.clone()),
                p.signature_algorithm,
                Some(0),
                Some(tbs::CaUrls {
                    crl: format!("{base}/crl/{}.crl", p.stem()),
                    ca_issuers: format!("{base}/ca/{}.crt", p.generation_stem()),
                }),
            )
        }
    };
    let (serial, serial_hex) = tbs::random_serial();
    let extensions = tbs::ca_extensions(&spki, issuer_key_id.as_deref(), path_len, urls.as_ref())?;
    let tbs_cert = TbsCertificate {
        version: x509_cert::Version::V3,
        serial_number: serial,
        signature: signer_alg.algorithm_identifier(),
        issuer: issuer_name,
        validity: tbs::validity(not_before, not_after)?,
        subject: subject.clone(),
        subject_public_key_info: spki.clone(),
        issuer_unique_id: None,
        subject_unique_id: None,
        extensions: Some(extensions),
    };
    let der = match &parent {
        Some(p) => {
            signer
                .sign_certificate(p, tbs_cert, CertificateKind::SubordinateCa, actor)
                .await?
        }
        None => {
            let self_key = SigningKey {
                name: &ca.name,
                generation,
                key: &key,
                algorithm: alg,
                public_key: &spki,
                facts: IssuerFacts {
                    subject,
                    key_id: tbs::subject_key_id(&spki),
                    validity: (not_before, not_after),
                    algorithm: alg,
                },
            };
            signer
                .sign_with(self_key, tbs_cert, CertificateKind::Root, actor)
                .await?
        }
    };
    let key_uri = key.to_string();
    storage
        .authorities()
        .insert(
            &NewCa {
                name: &ca.name,
                generation,
                parent_id: parent.as_ref().map(|p| p.id),
                key_uri: &key_uri,
                certificate: &der,
                not_before,
                not_after,
            },
            &AuditEntry {
                actor: actor.to_owned(),
                action: "ceremony.create_ca".into(),
                target: ca.name.clone(),
                detail: serde_json::json!({
                    "generation": generation,
                    "key": kind.to_string(),
                    "key_uri": key_uri,
                    "parent": ca.parent,
                }),
            },
        )
        .await?;
    tracing::info!(ca = %ca.name, generation, "CA created");
    let digest = <sha2::Sha256 as sha2::Digest>::digest(&der);
    Ok(MadeCa {
        key_label: label,
        key_uri,
        serial: serial_hex,
        fingerprint_sha256: digest
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<Vec<_>>()
            .join(":"),
        subject: ca.subject.clone(),
        not_after,
    })
}

/// Writes every current CA certificate to `dir/{name}.pem` (atomically: temp file + rename).
pub async fn write_pem_files(storage: &Storage, dir: &Path) -> Result<(), CeremonyError> {
    let hierarchy = Hierarchy::from_records(storage.authorities().all().await?)?;
    let out_err = |path: &Path, e: std::io::Error| CeremonyError::Output {
        path: path.display().to_string(),
        reason: e.to_string(),
    };
    std::fs::create_dir_all(dir).map_err(|e| out_err(dir, e))?;
    // `{name}.pem`: the newest generation; `{name}-gN.pem`: every generation.
    let files = hierarchy
        .iter()
        .map(|ca| (ca.name.clone(), ca))
        .chain(hierarchy.generations().map(|ca| (ca.generation_stem(), ca)));
    for (stem, ca) in files {
        let path = dir.join(format!("{stem}.pem"));
        let tmp = dir.join(format!(".{stem}.pem.tmp"));
        std::fs::write(&tmp, ca.certificate_pem()).map_err(|e| out_err(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| out_err(&path, e))?;
    }
    Ok(())
}
