//! The SDK for Rust plugin authors: implement [`Verifier`], then `export_verifier!(MyVerifier)`.
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

/// A step that could not run (not an outcome). Messages must not contain personal data.
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

/// Parses the opaque state into the plugin's own type: `Ok(None)` for `null` (first step),
/// `Err(StepError::State)` if it does not parse.
pub fn parse_state<S: DeserializeOwned>(state: &Option<Value>) -> Result<Option<S>, StepError> {
    match state {
        None | Some(Value::Null) => Ok(None),
        Some(v) => S::deserialize(v)
            .map(Some)
            .map_err(|e| StepError::State(e.to_string())),
    }
}

/// Serialises the plugin's state type into the opaque JSON for a StepOutput.
pub fn state_value<S: Serialize>(state: &S) -> Result<Value, StepError> {
    serde_json::to_value(state).map_err(|e| StepError::Internal(format!("state: {e}")))
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
