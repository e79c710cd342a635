//! The SDK for Rust plugin authors: implement [`Verifier`], then `export_verifier!(MyVerifier)`;
//! or, for a channel plugin, [`Channel`] and `export_channel!(MyChannel)`.
//!
//! The macro emits `ca_plugin_init_v1`; every entry point runs under `catch_unwind` (a panic in
//! `step` poisons the instance: every later call returns PANIC), input and output are size-capped,
//! and JSON is (de)serialised into the [`crate::doc`] types for you.

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::doc;
use crate::status::StatusCode;

/// A verification plugin: pure, deterministic steps from (config, state, event, now).
pub trait Verifier: Sized + Send + 'static {
    /// The plugin's config object (deserialised from the operator's JSON; no secrets in it).
    type Config: DeserializeOwned;
    /// The manifest `describe()` returns.
    fn manifest() -> doc::Manifest;
    /// Validates the config and builds an instance.
    fn configure(config: Self::Config) -> Result<Self, ConfigError>;
    /// One step: StepInput -> StepOutput. A wrong code is an outcome in the output, not an error.
    fn step(&self, input: doc::StepInput) -> Result<doc::StepOutput, StepError>;

    /// Test hook for proving hosts distrust output: return raw reply bytes instead of calling
    /// `step` (they bypass every SDK check). Real plugins never override this.
    #[doc(hidden)]
    fn raw_reply_for_tests(&self, _input: &doc::StepInput) -> Option<Vec<u8>> {
        None
    }
}

/// A channel plugin (manifest kind `channel`): a pure function from one delivery request to the
/// HTTP actions that deliver it; the host performs, signs and retries them. Export it with
/// [`crate::export_channel!`].
pub trait Channel: Sized + Send + 'static {
    /// The plugin's config object (deserialised from the operator's JSON; no secrets in it).
    type Config: DeserializeOwned;
    /// The manifest `describe()` returns (`kind: channel`, methods among `events`, `sms`,
    /// `email`).
    fn manifest() -> doc::Manifest;
    /// Validates the config and builds an instance.
    fn configure(config: Self::Config) -> Result<Self, ConfigError>;
    /// ChannelInput -> ChannelOutput. A request the plugin does not handle answers no actions
    /// (events) or `StepError::Unsupported` (an SMS to a plugin without `sms`).
    fn deliver(
        &self,
        input: crate::channel::ChannelInput,
    ) -> Result<crate::channel::ChannelOutput, StepError>;
}

/// Config rejected (returned as CA_CONFIG). The message must not contain secrets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

impl ConfigError {
    /// A config error with a message (no secrets).
    pub fn new(msg: impl Into<String>) -> Self {
        ConfigError(msg.into())
    }
}

/// A step that could not run (not an outcome). Messages must not contain personal data: name
/// the field or the rule, never the value (the host scrubs number-like runs as a second line).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StepError {
    /// The event is malformed or does not fit the verification (CA_INVALID_ARGUMENT).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The opaque state is corrupt (CA_STATE).
    #[error("corrupt state: {0}")]
    State(String),
    /// The event is not supported by this plugin (CA_UNSUPPORTED).
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// A plugin bug (CA_INTERNAL).
    #[error("internal: {0}")]
    Internal(String),
}

impl StepError {
    /// The ABI status code this error is reported as.
    pub fn code(&self) -> StatusCode {
        match self {
            StepError::InvalidArgument(_) => StatusCode::InvalidArgument,
            StepError::State(_) => StatusCode::State,
            StepError::Unsupported(_) => StatusCode::Unsupported,
            StepError::Internal(_) => StatusCode::Internal,
        }
    }
}

/// Describes a JSON (de)serialisation error WITHOUT quoting the document: serde's own messages
/// quote the offending value (`invalid type: string "13800138000"`), which may be personal data.
/// Keeps the kind, the position and, for a missing or unknown field, the field's name.
pub fn json_error(what: &str, e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let kind = match e.classify() {
        Category::Io => "could not be read",
        Category::Syntax => "is not valid JSON",
        Category::Eof => "ends early",
        Category::Data => "does not match the expected shape",
    };
    let text = e.to_string();
    let field = ["missing field `", "unknown field `", "duplicate field `"]
        .iter()
        .find_map(|p| {
            let rest = text.strip_prefix(p)?;
            let name = rest.split('`').next()?;
            let safe = !name.is_empty()
                && name.len() <= 64
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            safe.then(|| format!(" ({}`{name}`)", &p[..p.len() - 1]))
        })
        .unwrap_or_default();
    if e.line() == 0 {
        format!("{what} {kind}{field}")
    } else {
        format!(
            "{what} {kind}{field} at line {} column {}",
            e.line(),
            e.column()
        )
    }
}

/// Parses the opaque state into the plugin's own type: `Ok(None)` for `null` (first step),
/// `Err(StepError::State)` if it does not parse (the message never quotes the state).
pub fn parse_state<S: DeserializeOwned>(state: &Option<Value>) -> Result<Option<S>, StepError> {
    match state {
        None | Some(Value::Null) => Ok(None),
        Some(v) => S::deserialize(v)
            .map(Some)
            .map_err(|e| StepError::State(json_error("state", &e))),
    }
}

/// Serialises the plugin's state type into the opaque JSON for a StepOutput.
pub fn state_value<S: Serialize>(state: &S) -> Result<Value, StepError> {
    serde_json::to_value(state).map_err(|e| StepError::Internal(json_error("state", &e)))
}

/// A StepOutput with the given status and state, no actions, no result.
pub fn output(status: doc::Status, state: Value) -> doc::StepOutput {
    doc::StepOutput::new(status, state)
}

/// A final `succeeded` output proving `attributes` at `assurance`.
pub fn succeeded(
    state: Value,
    attributes: Vec<doc::ApplicantField>,
    assurance: &str,
    evidence: Value,
) -> doc::StepOutput {
    let mut out = doc::StepOutput::new(doc::Status::Succeeded, state);
    out.result = Some(doc::VerificationResult {
        outcome: doc::Outcome::Verified,
        verified_attributes: attributes,
        assurance: Some(assurance.to_owned()),
        evidence,
    });
    out
}

/// A final `failed` output with a failure code.
pub fn failed(state: Value, outcome: doc::Outcome, evidence: Value) -> doc::StepOutput {
    let mut out = doc::StepOutput::new(doc::Status::Failed, state);
    out.result = Some(doc::VerificationResult {
        outcome,
        verified_attributes: Vec::new(),
        assurance: None,
        evidence,
    });
    out
}

/// Log levels for [`log`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum LogLevel {
    /// CA_LOG_ERROR
    Error = 1,
    /// CA_LOG_WARN
    Warn = 2,
    /// CA_LOG_INFO
    Info = 3,
    /// CA_LOG_DEBUG
    Debug = 4,
}

/// Logs through the host. Never log personal data or secrets.
pub fn log(level: LogLevel, msg: &str) {
    crate::ffi::host_log(level as i32, msg);
}

pub(crate) fn log_error(msg: &str) {
    log(LogLevel::Error, msg);
}

/// Emits `ca_plugin_init_v1` for a [`Verifier`] type. Use once per cdylib.
#[macro_export]
macro_rules! export_verifier {
    ($ty:ty) => {
        /// The plugin's ABI v1 entry point (see ca_plugin.h).
        ///
        /// # Safety
        /// Called by the host per ca_plugin.h: `host` valid for the process, `out` writable.
        #[allow(unsafe_code)] // the one exported C symbol; all logic lives in plugin_abi::ffi
        #[no_mangle]
        pub unsafe extern "C" fn ca_plugin_init_v1(
            host: *const $crate::ffi::CaHostApi,
            out: *mut *const $crate::ffi::CaPluginApi,
        ) -> i32 {
            static API: $crate::ffi::CaPluginApi = $crate::ffi::plugin_table::<$ty>();
            // SAFETY: forwarded unchanged from the host, which honours ca_plugin.h.
            unsafe { $crate::ffi::plugin_init(host, out, &API) }
        }
    };
}

/// Emits `ca_plugin_init_v1` for a [`Channel`] type. Use once per cdylib.
#[macro_export]
macro_rules! export_channel {
    ($ty:ty) => {
        /// The plugin's ABI v1 entry point (see ca_plugin.h).
        ///
        /// # Safety
        /// Called by the host per ca_plugin.h: `host` valid for the process, `out` writable.
        #[allow(unsafe_code)] // the one exported C symbol; all logic lives in plugin_abi::ffi
        #[no_mangle]
        pub unsafe extern "C" fn ca_plugin_init_v1(
            host: *const $crate::ffi::CaHostApi,
            out: *mut *const $crate::ffi::CaPluginApi,
        ) -> i32 {
            static API: $crate::ffi::CaPluginApi = $crate::ffi::channel_table::<$ty>();
            // SAFETY: forwarded unchanged from the host, which honours ca_plugin.h.
            unsafe { $crate::ffi::plugin_init(host, out, &API) }
        }
    };
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Person {
        phone: u64,
        id_number: String,
    }

    #[test]
    fn json_errors_name_the_field_never_the_value() {
        for doc in [
            serde_json::json!({"phone": "13800138000", "id_number": "11010519491231002X"}),
            serde_json::json!({"phone": 13800138000u64, "id_number": 11010519491231002u64}),
            serde_json::json!({"phone": 13800138000u64, "id_number": "x", "card": "6222020000000000018"}),
        ] {
            let err = parse_state::<Person>(&Some(doc)).unwrap_err();
            let text = err.to_string();
            for needle in ["13800138000", "11010519491231002", "6222020000000000018"] {
                assert!(!text.contains(needle), "{needle} in {text}");
            }
            assert!(matches!(err, StepError::State(_)));
        }
        let missing = parse_state::<Person>(&Some(serde_json::json!({"phone": 1}))).unwrap_err();
        assert!(
            missing.to_string().contains("missing field `id_number`"),
            "{missing}"
        );
        let bytes = br#"{"phone": "13800138000""#;
        let e = serde_json::from_slice::<Person>(bytes).unwrap_err();
        let text = json_error("StepInput", &e);
        assert!(
            !text.contains("1380") && text.starts_with("StepInput"),
            "{text}"
        );
    }
}
