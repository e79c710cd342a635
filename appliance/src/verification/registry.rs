//! [`PluginRegistry`]: the `[[plugin]]` table loaded through plugin-host at start-up, one
//! [`VerificationRunner`] per plugin. A plugin that cannot be loaded (file missing, hash
//! mismatch, bad manifest, worker missing) is marked unavailable with its reason and the
//! appliance serves everything else: issuance and status services must not depend on a vendor
//! plugin. `check-config` refuses the same faults up front. Plugins are never unloaded.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use plugin_host::{
    Egress, EgressOptions, Isolation, Plugin, PluginSpec, RunnerOptions, Secret, VerificationRunner,
};

use super::limits::Limits;
use super::secrets::{read_secret, SecretError};
use super::store::SqlVerificationStore;
use crate::config::{ApplianceConfig, PluginConfig, PluginIsolation};

/// A runner over the SQL store.
pub type Runner = VerificationRunner<SqlVerificationStore>;

/// Why a configured plugin is not usable. Names the plugin; never a secret value.
#[derive(Debug, thiserror::Error)]
pub enum PluginSetupError {
    /// A secret could not be read.
    #[error("plugin {plugin}: {source}")]
    Secret {
        /// Plugin name.
        plugin: String,
        /// Why.
        source: SecretError,
    },
    /// The library file is missing or unreadable.
    #[error("plugin {plugin}: cannot read {path}: {reason}")]
    File {
        /// Plugin name.
        plugin: String,
        /// Library path.
        path: String,
        /// Why.
        reason: String,
    },
    /// The file's hash is not the approved one.
    #[error("plugin {plugin}: {path} has sha256 {actual}, but the approved sha256 is {expected}; refusing to load it")]
    HashMismatch {
        /// Plugin name.
        plugin: String,
        /// Library path.
        path: String,
        /// Configured hash.
        expected: String,
        /// The file's hash.
        actual: String,
    },
    /// plugin-host refused it (ABI, manifest, config, worker).
    #[error("plugin {plugin}: {source}")]
    Load {
        /// Plugin name.
        plugin: String,
        /// Why.
        source: plugin_host::PluginError,
    },
}

/// Builds plugin-host's spec for one `[[plugin]]`, reading its secrets.
pub fn spec_of(p: &PluginConfig) -> Result<PluginSpec, PluginSetupError> {
    // The worker process runs elsewhere: hand it an absolute path.
    let path = std::fs::canonicalize(&p.path).unwrap_or_else(|_| p.path.clone());
    let mut spec = PluginSpec::new(&p.name, path, p.sha256.trim().to_ascii_lowercase());
    spec.isolation = match p.isolation {
        PluginIsolation::Worker => Isolation::Worker,
        PluginIsolation::InProcess => Isolation::InProcess,
    };
    spec.config = serde_json::Value::Object(p.config.clone());
    for (name, source) in &p.secrets {
        let value = read_secret(source, &format!("secret {name}")).map_err(|source| {
            PluginSetupError::Secret {
                plugin: p.name.clone(),
                source,
            }
        })?;
        spec.secrets
            .insert(name.clone(), Secret::new(value.as_str()));
    }
    spec.egress_hosts = p.egress_hosts.clone();
    spec.allow_plain_http = p.allow_plain_http;
    spec.step_deadline = Duration::from_millis(p.step_deadline_ms);
    Ok(spec)
}

/// Checks the library file exists and has the approved hash (no code of it runs).
pub fn check_file(p: &PluginConfig) -> Result<(), PluginSetupError> {
    let actual = plugin_host::sha256_file(&p.path).map_err(|e| PluginSetupError::File {
        plugin: p.name.clone(),
        path: p.path.display().to_string(),
        reason: e.to_string(),
    })?;
    let expected = p.sha256.trim().to_ascii_lowercase();
    if actual != expected {
        return Err(PluginSetupError::HashMismatch {
            plugin: p.name.clone(),
            path: p.path.display().to_string(),
            expected,
            actual,
        });
    }
    Ok(())
}

/// What `check-config` verifies for every plugin: file, hash and secrets.
pub fn check_all(config: &ApplianceConfig) -> Result<(), PluginSetupError> {
    for p in &config.plugins {
        check_file(p)?;
        spec_of(p)?;
    }
    Ok(())
}

/// What loading one `[[plugin]]` gave: its manifest kind decides.
enum Loaded {
    Verifier(Arc<Runner>),
    Channel(Arc<Plugin>),
}

/// A configured plugin: ready, or unavailable with the reason (logged at start-up).
pub enum PluginSlot {
    /// Loaded and configured.
    Ready(Arc<Runner>),
    /// Refused at start-up.
    Unavailable(String),
}

/// Every configured plugin by name: verifiers as runners, channel plugins (manifest kind
/// `channel`) as loaded plugins for `notify`.
#[derive(Default)]
pub struct PluginRegistry {
    slots: BTreeMap<String, PluginSlot>,
    channel_plugins: BTreeMap<String, Arc<Plugin>>,
}

impl std::fmt::Debug for PluginRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginRegistry")
            .field("plugins", &self.slots.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl PluginRegistry {
    /// Loads every `[[plugin]]`; failures become [`PluginSlot::Unavailable`] (logged).
    pub async fn load(
        config: &ApplianceConfig,
        store: Arc<SqlVerificationStore>,
        limits: &Arc<Limits>,
    ) -> Self {
        let mut slots = BTreeMap::new();
        let egress = match Egress::new(EgressOptions::default()) {
            Ok(e) => Some(e),
            Err(e) => {
                tracing::error!(error = %e, "plugin egress client unavailable; every plugin is unavailable");
                None
            }
        };
        let mut channel_plugins = BTreeMap::new();
        for p in &config.plugins {
            let slot = match Self::load_one(p, egress.clone(), store.clone(), limits).await {
                Ok(Loaded::Verifier(runner)) => {
                    tracing::info!(plugin = %p.name, isolation = ?p.isolation, "plugin loaded");
                    PluginSlot::Ready(runner)
                }
                Ok(Loaded::Channel(plugin)) => {
                    tracing::info!(plugin = %p.name, isolation = ?p.isolation, "channel plugin loaded");
                    channel_plugins.insert(p.name.clone(), plugin);
                    continue;
                }
                Err(e) => {
                    tracing::error!(plugin = %p.name, error = %e, "plugin unavailable");
                    PluginSlot::Unavailable(e.to_string())
                }
            };
            slots.insert(p.name.clone(), slot);
        }
        Self {
            slots,
            channel_plugins,
        }
    }

    async fn load_one(
        p: &PluginConfig,
        egress: Option<Egress>,
        store: Arc<SqlVerificationStore>,
        limits: &Arc<Limits>,
    ) -> Result<Loaded, PluginSetupError> {
        check_file(p)?;
        let spec = spec_of(p)?;
        let plugin = Plugin::load(spec)
            .await
            .map_err(|source| PluginSetupError::Load {
                plugin: p.name.clone(),
                source,
            })?;
        if plugin.manifest().kind == plugin_abi::doc::PluginKind::Channel {
            return Ok(Loaded::Channel(Arc::new(plugin)));
        }
        let egress = egress.ok_or_else(|| PluginSetupError::Load {
            plugin: p.name.clone(),
            source: plugin_host::PluginError::Load("egress HTTP client unavailable".into()),
        })?;
        Ok(Loaded::Verifier(Arc::new(
            VerificationRunner::new(Arc::new(plugin), store, egress, RunnerOptions::default())
                .with_gate(limits.gate(&p.name)),
        )))
    }

    /// The loaded channel plugins (manifest kind `channel`) by name; `notify` drives them.
    pub fn channel_plugins(&self) -> &BTreeMap<String, Arc<Plugin>> {
        &self.channel_plugins
    }

    /// The slot of plugin `name`, if configured.
    pub fn get(&self, name: &str) -> Option<&PluginSlot> {
        self.slots.get(name)
    }

    /// Every ready runner.
    pub fn ready(&self) -> impl Iterator<Item = &Arc<Runner>> {
        self.slots.values().filter_map(|s| match s {
            PluginSlot::Ready(r) => Some(r),
            PluginSlot::Unavailable(_) => None,
        })
    }

    /// Configured plugin names.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.slots.keys().map(String::as_str)
    }
}
