//! The plugin's config: payout provider URL, window, attempts, polling, retries.
//! The secret `payout_api_key` is not in it: the host injects it.

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
    /// Payout provider API base URL (`https://payout.example.cn`).
    pub payout_url: String,
    /// How long the applicant has to enter the amount, 3600-2592000 s (default 259200 = 72 h).
    #[serde(default = "default_window")]
    pub window_secs: u32,
    /// Wrong amounts allowed before `attempts_exceeded`, 1-10 (default 3).
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
    /// Where the provider should POST settlement notices; `{verification_id}` is replaced.
    #[serde(default)]
    pub callback_url: Option<String>,
    /// Delay between payout status polls, 1000-86400000 ms (default 60000).
    #[serde(default = "default_poll")]
    pub poll_interval_ms: u64,
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

fn default_window() -> u32 {
    72 * 3600
}
fn default_attempts() -> u32 {
    3
}
fn default_poll() -> u64 {
    60_000
}

impl Config {
    /// Checks every field's limits.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_url("payout_url", &self.payout_url)?;
        if let Some(u) = &self.callback_url {
            check_url("callback_url", u)?;
        }
        check_range("window_secs", self.window_secs, 3600, 2_592_000)?;
        check_range("max_attempts", self.max_attempts, 1, 10)?;
        check_range("poll_interval_ms", self.poll_interval_ms, 1000, 86_400_000)?;
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
        "required": ["payout_url"],
        "properties": {
            "payout_url": {"type": "string", "format": "uri"},
            "window_secs": {"type": "integer", "minimum": 3600, "maximum": 2592000, "default": 259200},
            "max_attempts": {"type": "integer", "minimum": 1, "maximum": 10, "default": 3},
            "callback_url": {"type": "string", "format": "uri", "description": "{verification_id} is replaced"},
            "poll_interval_ms": {"type": "integer", "minimum": 1000, "maximum": 86400000, "default": 60000},
            "timeout_ms": {"type": "integer", "minimum": 100, "maximum": 30000, "default": 5000},
            "max_retries": {"type": "integer", "minimum": 0, "maximum": 10, "default": 3},
            "retry_after_ms": {"type": "integer", "minimum": 10, "maximum": 600000, "default": 2000},
            "payout_api_key": {"type": "string", "x-secret": true, "description": "sent as x-api-key to the payout provider"}
        }
    })
}
