//! Operator commands that sign with a root key, outside `serve`: revoking an issuing CA
//! generation and signing the root CRL (`ca revoke`, `root sign-crl`). With
//! `[status] root_offline = true` these are the only users of the root key besides the ceremony.

use std::sync::Arc;

use super::signing::CaSigner;
use super::{Hierarchy, HierarchyError};
use crate::config::ApplianceConfig;
use crate::status::{CrlPublisher, StatusError};
use crate::storage::{unix_now, RevocationError, Storage, StorageError};

/// Why an offline command failed; nothing half-done is published.
#[derive(Debug, thiserror::Error)]
pub enum OfflineError {
    /// The database failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The stored hierarchy is unusable.
    #[error(transparent)]
    Hierarchy(#[from] HierarchyError),
    /// Signing or writing the CRL failed.
    #[error("root CRL: {0}")]
    Crl(#[from] StatusError),
    /// The request names something that cannot be revoked.
    #[error("{0}")]
    Refused(String),
}

/// Reasons a CA generation may be revoked for (RFC 5280 names).
const CA_REASONS: &[(&str, i64)] = &[
    ("unspecified", 0),
    ("keyCompromise", 1),
    ("cACompromise", 2),
    ("affiliationChanged", 3),
    ("superseded", 4),
    ("cessationOfOperation", 5),
];

/// Revokes generation `generation` (default: the newest) of issuing CA `name`, then signs its
/// parent's CRL so the revocation is published at once; returns the generation revoked.
#[allow(clippy::too_many_arguments)] // one operator command's whole context
pub async fn revoke_ca(
    hsm: &hsm::Hsm,
    root_hsm: Option<&hsm::Hsm>,
    storage: &Storage,
    config: &ApplianceConfig,
    name: &str,
    generation: Option<i64>,
    reason: &str,
    actor: &str,
) -> Result<i64, OfflineError> {
    let code = CA_REASONS
        .iter()
        .find(|(n, _)| *n == reason)
        .map(|(_, c)| *c)
        .ok_or_else(|| {
            OfflineError::Refused(format!(
                "unknown reason {reason:?} (accepted: {})",
                CA_REASONS
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
    let hierarchy = Hierarchy::from_records(storage.authorities().all().await?)?;
    let newest = hierarchy
        .get(name)
        .ok_or_else(|| OfflineError::Refused(format!("no CA named {name:?}")))?;
    let generation = generation.unwrap_or(newest.generation);
    let ca = hierarchy
        .generations()
        .find(|c| c.name == name && c.generation == generation)
        .ok_or_else(|| {
            OfflineError::Refused(format!("CA {name} has no generation {generation}"))
        })?;
    let Some(parent_id) = ca.parent_id else {
        return Err(OfflineError::Refused(format!(
            "{name} is a root: a root is not revoked on a CRL; retire it and distrust its certificate"
        )));
    };
    storage
        .authorities()
        .revoke(name, generation, code, actor)
        .await
        .map_err(|e| match e {
            RevocationError::AlreadyRevoked => OfflineError::Refused(format!(
                "CA {name} generation {generation} is already revoked"
            )),
            RevocationError::NotFound => {
                OfflineError::Refused(format!("CA {name} has no generation {generation}"))
            }
            RevocationError::Storage(s) => OfflineError::Storage(s),
            other => OfflineError::Refused(other.to_string()),
        })?;
    tracing::info!(ca = %name, generation, reason, "CA generation revoked");
    let hierarchy = Hierarchy::from_records(storage.authorities().all().await?)?;
    if let Some(parent) = hierarchy.by_id(parent_id).cloned() {
        publisher(hsm, root_hsm, storage, config, &hierarchy)
            .await?
            .publish(&parent)
            .await?;
    }
    Ok(generation)
}

/// Signs and writes the CRL of every unexpired root generation; returns (file stem, CRL number).
pub async fn sign_root_crls(
    hsm: &hsm::Hsm,
    root_hsm: Option<&hsm::Hsm>,
    storage: &Storage,
    config: &ApplianceConfig,
) -> Result<Vec<(String, i64)>, OfflineError> {
    let hierarchy = Hierarchy::from_records(storage.authorities().all().await?)?;
    let publisher = publisher(hsm, root_hsm, storage, config, &hierarchy).await?;
    let mut out = Vec::new();
    let roots: Vec<_> = hierarchy
        .unexpired(unix_now())
        .filter(|c| c.parent_id.is_none())
        .cloned()
        .collect();
    for root in roots {
        publisher.publish(&root).await?;
        let number = storage
            .crls()
            .latest(root.id, "full")
            .await?
            .map_or(0, |r| r.number);
        out.push((root.stem(), number));
    }
    Ok(out)
}

async fn publisher(
    hsm: &hsm::Hsm,
    root_hsm: Option<&hsm::Hsm>,
    storage: &Storage,
    config: &ApplianceConfig,
    hierarchy: &Hierarchy,
) -> Result<Arc<CrlPublisher>, OfflineError> {
    let signer = CaSigner::new(hsm.clone(), storage).with_root(root_hsm.cloned());
    Ok(Arc::new(
        CrlPublisher::new(
            signer,
            storage.crls(),
            hierarchy,
            &config.status,
            &config.server.public_url,
        )
        .await?,
    ))
}
