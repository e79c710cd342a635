//! Identity verification through plugins: the `[[plugin]]` registry loaded through plugin-host
//! ([`registry`]), the SQL-backed outbox store with personal data sealed at rest ([`store`],
//! [`seal`]), and the [`service`] the API calls, with its background task that performs
//! committed-but-unperformed actions after a restart and fires due timers.

pub mod callbacks;
pub mod limits;
pub mod mask;
pub mod registry;
pub mod seal;
pub mod secrets;
pub mod service;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

pub use registry::{PluginRegistry, PluginSetupError, PluginSlot};
pub use seal::{DataKey, SealError};
pub use service::{Requester, VerificationError, VerificationInfo, VerificationService};
pub use store::SqlVerificationStore;

use crate::config::ApplianceConfig;
use crate::storage::Storage;

/// Builds the service from the configuration: the data key (only needed once a plugin is
/// configured) and every plugin. A plugin that cannot load is marked unavailable, not fatal.
pub async fn start(
    config: &ApplianceConfig,
    storage: &Storage,
) -> Result<Arc<VerificationService>, SealError> {
    let key = if config.plugins.is_empty()
        && config.verification.data_key.env.is_none()
        && config.verification.data_key.file.is_none()
    {
        // No plugins: nothing will be sealed; a random key keeps the types simple.
        DataKey::from_hex(&DataKey::generate_hex())?
    } else {
        DataKey::load(&config.verification.data_key)?
    };
    let store = Arc::new(SqlVerificationStore::new(storage.verifications(), key));
    let limits = Arc::new(limits::Limits::new(
        config,
        storage.limits(),
        limits::SubjectKey::from_source(&config.verification.data_key),
    ));
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
