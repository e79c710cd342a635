//! The plugin's config: vendor base URL, similarity threshold, polling, session lifetime.
//! The secret `face_api_key` is not in it: the host injects it.

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
    /// Face vendor API base URL (`https://face.example.cn`).
    pub face_url: String,
    /// Lowest similarity (0-100) accepted as the same person (default 80).
    #[serde(default = "default_threshold")]
    pub similarity_threshold: f64,
    /// Where the vendor should POST its notification; `{verification_id}` is replaced. Optional:
    /// without it the result is only polled.
    #[serde(default)]
    pub callback_url: Option<String>,
    /// Where the vendor page sends the person afterwards (optional).
    #[serde(default)]
    pub return_url: Option<String>,
    /// How long the person has to complete the session, 60-604800 s (default 7200).
    #[serde(default = "default_session_ttl")]
    pub session_ttl_secs: u32,
    /// Delay between result polls, 100-3600000 ms (default 5000).
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

fn default_threshold() -> f64 {
    80.0
}
fn default_session_ttl() -> u32 {
    7200
}
fn default_poll() -> u64 {
    5000
}

impl Config {
    /// Checks every field's limits.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_url("face_url", &self.face_url)?;
        if let Some(u) = &self.callback_url {
            check_url("callback_url", u)?;
        }
        if let Some(u) = &self.return_url {
            check_url("return_url", u)?;
        }
        if !self.similarity_threshold.is_finite() {
            return Err(ConfigError::new("similarity_threshold must be a number"));
        }
        check_range(
            "similarity_threshold",
            self.similarity_threshold,
            0.0,
            100.0,
        )?;
        check_range("session_ttl_secs", self.session_ttl_secs, 60, 604_800)?;
        check_range("poll_interval_ms", self.poll_interval_ms, 100, 3_600_000)?;
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
        "required": ["face_url"],
        "properties": {
            "face_url": {"type": "string", "format": "uri"},
            "similarity_threshold": {"type": "number", "minimum": 0, "maximum": 100, "default": 80},
            "callback_url": {"type": "string", "format": "uri", "description": "{verification_id} is replaced"},
            "return_url": {"type": "string", "format": "uri"},
            "session_ttl_secs": {"type": "integer", "minimum": 60, "maximum": 604800, "default": 7200},
            "poll_interval_ms": {"type": "integer", "minimum": 100, "maximum": 3600000, "default": 5000},
            "timeout_ms": {"type": "integer", "minimum": 100, "maximum": 30000, "default": 5000},
            "max_retries": {"type": "integer", "minimum": 0, "maximum": 10, "default": 3},
            "retry_after_ms": {"type": "integer", "minimum": 10, "maximum": 600000, "default": 2000},
            "face_api_key": {"type": "string", "x-secret": true, "description": "sent as x-api-key to the face vendor"}
        }
    })
}
