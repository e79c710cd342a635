//! What the operator approves for one plugin: file, hash, isolation, config, secrets, egress.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use zeroize::Zeroize;

/// Where a plugin runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Isolation {
    /// Loaded into the host process (first-party plugins only; a crash takes the host down).
    InProcess,
    /// Loaded into a `ca-plugin-worker` process of its own (third-party plugins).
    Worker,
}

/// A secret value (API key, password). Never printed by `Debug`, zeroed on drop.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value, for injection into an outgoing request only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// One approved plugin, as the operator configured it.
#[derive(Debug, Clone)]
pub struct PluginSpec {
    /// Name; must equal the manifest's name.
    pub name: String,
    /// Path of the shared library.
    pub path: PathBuf,
    /// Approved SHA-256 of the file, lowercase hex (64 chars).
    pub sha256: String,
    /// Where it runs.
    pub isolation: Isolation,
    /// The plugin's config object (no secrets: they are referenced as `{{secret:NAME}}`).
    pub config: serde_json::Value,
    /// Secrets substituted into HTTP actions by name; never shown to the plugin.
    pub secrets: BTreeMap<String, Secret>,
    /// Egress allowlist as `host:port`; empty means the manifest's defaults.
    pub egress_hosts: Vec<String>,
    /// Allow plain `http://` to loopback hosts (test and demo vendors only).
    pub allow_plain_http: bool,
    /// Deadline for one step call (a hung worker is killed after it).
    pub step_deadline: Duration,
}

impl PluginSpec {
    /// A spec with defaults: worker isolation, no secrets, manifest egress hosts, 5 s deadline.
    pub fn new(
        name: impl Into<String>,
        path: impl Into<PathBuf>,
        sha256: impl Into<String>,
    ) -> Self {
        PluginSpec {
            name: name.into(),
            path: path.into(),
            sha256: sha256.into(),
            isolation: Isolation::Worker,
            config: serde_json::Value::Object(Default::default()),
            secrets: BTreeMap::new(),
            egress_hosts: Vec::new(),
            allow_plain_http: false,
            step_deadline: Duration::from_secs(5),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    #[test]
    fn secret_debug_is_redacted() {
        let mut spec = PluginSpec::new("p", "/x.so", "00");
        spec.secrets
            .insert("api_key".into(), Secret::new("sk-live-123"));
        let dbg = format!("{spec:?}");
        assert!(!dbg.contains("sk-live-123"), "{dbg}");
        assert!(dbg.contains("redacted"));
    }
}
