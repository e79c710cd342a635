//! The plugin's config: vendor base URLs, code lifetime, attempts, timeouts and retries.
//! Secrets (`carrier_api_key`, `sms_api_key`) are not in it: the host injects them.

use plugin_abi::sdk::ConfigError;
use plugin_abi::vendor::{
    check_range, check_url, default_retries, default_retry_after, default_timeout,
};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::vendor::RetryPolicy;

/// Operator config (JSON), validated by [`Config::validate`].
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Carrier API base URL (`https://carrier.example.cn`).
    pub carrier_url: String,
    /// SMS gateway base URL (`https://sms.example.cn`).
    pub sms_url: String,
    /// Lifetime of a code in seconds, 30-3600 (default 300).
    #[serde(default = "default_ttl")]
    pub code_ttl_secs: u32,
    /// Wrong codes allowed before `otp_attempts_exceeded`, 1-10 (default 5).
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
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

fn default_ttl() -> u32 {
    300
}
fn default_attempts() -> u32 {
    5
}

impl Config {
    /// Checks every field's limits.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_url("carrier_url", &self.carrier_url)?;
        check_url("sms_url", &self.sms_url)?;
        check_range("code_ttl_secs", self.code_ttl_secs, 30, 3600)?;
        check_range("max_attempts", self.max_attempts, 1, 10)?;
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

/// JSON Schema of the config; the secrets are declared with `x-secret` and never sent to us.
pub fn schema() -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "additionalProperties": false,
        "required": ["carrier_url", "sms_url"],
        "properties": {
            "carrier_url": {"type": "string", "format": "uri"},
            "sms_url": {"type": "string", "format": "uri"},
            "code_ttl_secs": {"type": "integer", "minimum": 30, "maximum": 3600, "default": 300},
            "max_attempts": {"type": "integer", "minimum": 1, "maximum": 10, "default": 5},
            "timeout_ms": {"type": "integer", "minimum": 100, "maximum": 30000, "default": 5000},
            "max_retries": {"type": "integer", "minimum": 0, "maximum": 10, "default": 3},
            "retry_after_ms": {"type": "integer", "minimum": 10, "maximum": 600000, "default": 2000},
            "carrier_api_key": {"type": "string", "x-secret": true, "description": "sent as x-api-key to the carrier"},
            "sms_api_key": {"type": "string", "x-secret": true, "description": "sent as x-api-key to the SMS gateway"}
        }
    })
}
