//! Identity verification through plugins: the `[[plugin]]` registry loaded through plugin-host
//! ([`registry`]), the SQL-backed outbox store with personal data sealed at rest ([`store`],
//! [`seal`]) under data keys wrapped by the HSM ([`keyring`], rotated online by [`rotation`]),
//! the retention purge ([`retention`]), and the [`service`] the API calls, with its background
//! task that performs committed-but-unperformed actions after a restart and fires due timers.

pub mod callbacks;
pub mod keyring;
pub mod limits;
pub mod mask;
pub mod registry;
pub mod retention;
pub mod rotation;
pub mod seal;
pub mod secrets;
pub mod service;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

pub use keyring::{Keyring, KeyringError};
pub use registry::{PluginRegistry, PluginSetupError, PluginSlot};
pub use seal::{DataKey, KeySet, SealError};
pub use service::{Requester, VerificationError, VerificationInfo, VerificationService};
pub use store::SqlVerificationStore;

use crate::config::ApplianceConfig;
use crate::storage::Storage;

/// Builds the service from the configuration: the data keys (unwrapped by `hsm`; needed once a
/// plugin is configured), every plugin, and the retention purge task. A plugin that cannot load
/// is marked unavailable, not fatal.
pub async fn start(
    config: &ApplianceConfig,
    storage: &Storage,
    hsm: &hsm::Hsm,
) -> Result<Arc<VerificationService>, KeyringError> {
    let keyring = if config.plugins.is_empty() {
        // No plugins: nothing will be sealed.
        Keyring::fixed(KeySet::default())
    } else {
        let keyring = Keyring::load(hsm.clone(), storage.data_keys()).await?;
        if keyring.current().active().is_err() {
            return Err(KeyringError::NoActiveKey);
        }
        keyring
    };
    let subject_key = match keyring.current().active() {
        // Subjects are keyed under the active data key (a rotation starts the counters afresh).
        Ok(key) => limits::SubjectKey::derive(&key.reference_mac("limits", "subject key v1")),
        Err(_) => limits::SubjectKey::random(),
    };
    let store = Arc::new(
        SqlVerificationStore::new(storage.verifications(), Arc::new(keyring)).claimed_through(
            (storage.backend() == crate::storage::Backend::Postgres).then(|| storage.leases()),
        ),
    );
    if !config.plugins.is_empty() {
        let _purge = retention::spawn(
            store.clone(),
            config.verification.retention_days,
            Duration::from_secs(u64::from(config.verification.purge_every_secs)),
        );
    }
    let limits = Arc::new(limits::Limits::new(config, storage.limits(), subject_key));
    let registry = PluginRegistry::load(config, store.clone(), &limits).await;
    Ok(Arc::new(
        VerificationService::new(
            registry,
            store,
            Duration::from_secs(u64::from(config.verification.tick_secs)),
        )
        .with_limits(limits)
        .with_callbacks(callbacks::CallbackVerifier::new(storage.limits())),
    ))
}
