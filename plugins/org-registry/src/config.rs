//! The plugin's config: registry URL, timeout, retries.
//! The secret `registry_api_key` is not in it: the host injects it.

use plugin_abi::sdk::ConfigError;
use plugin_abi::vendor::{check_range, default_retries, default_retry_after, default_timeout};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::vendor::RetryPolicy;

/// Operator config (JSON), validated by [`Config::validate`].
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Registry API base URL (`https://registry.example.cn`).
    pub registry_url: String,
    /// Per-request timeout in ms, 100-30000 (default 5000).
    #[serde(default = "default_timeout")]
    pub timeout_ms: u32,
    /// Retries of a transient vendor failure, 0-10 (default 3).
    #[serde(default = "default_retries")]
    pub max_retries: u32,
    /// First retry delay in ms, doubling, 10-600000 (default 2000).
    #[serde(default = "default_retry_after")]
    pub retry_after_ms: u64,
}

impl Config {
    /// Checks every field's limits.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let rest = self
            .registry_url
            .strip_prefix("https://")
            .or_else(|| self.registry_url.strip_prefix("http://"));
        if !rest.is_some_and(|r| !r.is_empty() && !r.starts_with('/')) {
            return Err(ConfigError::new(
                "registry_url must be an absolute http(s) URL",
            ));
        }
        check_range("timeout_ms", self.timeout_ms, 100, 30_000)?;
        check_range("max_retries", self.max_retries, 0, 10)?;
        check_range("retry_after_ms", self.retry_after_ms, 10, 600_000)?;
        Ok(())
    }

    /// The retry policy for vendor calls.
    pub fn retry(&self) -> RetryPolicy {
        RetryPolicy {
            max_retries: self.max_retries,
            retry_after_ms: self.retry_after_ms,
        }
    }
}

/// JSON Schema of the config; the secret is declared with `x-secret` and never sent to us.
pub fn schema() -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "additionalProperties": false,
        "required": ["registry_url"],
        "properties": {
            "registry_url": {"type": "string", "format": "uri"},
            "timeout_ms": {"type": "integer", "minimum": 100, "maximum": 30000, "default": 5000},
            "max_retries": {"type": "integer", "minimum": 0, "maximum": 10, "default": 3},
            "retry_after_ms": {"type": "integer", "minimum": 10, "maximum": 600000, "default": 2000},
            "registry_api_key": {"type": "string", "x-secret": true, "description": "sent as x-api-key to the registry"}
        }
    })
}
