//! The host's typed errors. Messages carry no personal data and no secrets.

use std::time::Duration;

use plugin_abi::ffi::CallError;
use plugin_abi::StatusCode;

/// Why loading or calling a plugin failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PluginError {
    /// The file could not be opened (missing, a symlink, unreadable).
    #[error("cannot open plugin file {path}: {reason}")]
    Open {
        /// The path.
        path: String,
        /// Why.
        reason: String,
    },
    /// The file's SHA-256 is not the approved one: it is refused before any of its code runs.
    #[error("plugin file hash mismatch: approved sha256 {expected}, file has {actual}; refusing to load")]
    HashMismatch {
        /// The approved hash.
        expected: String,
        /// The file's hash.
        actual: String,
    },
    /// dlopen or the entry symbol failed.
    #[error("cannot load plugin library: {0}")]
    Load(String),
    /// ABI major/minor/struct_size mismatch or a missing function.
    #[error("plugin ABI mismatch: {0}")]
    Abi(String),
    /// The manifest is invalid or does not fit the spec.
    #[error("invalid plugin manifest: {0}")]
    Manifest(String),
    /// `configure` rejected the config (CA_CONFIG).
    #[error("plugin rejected its config: {0}")]
    Config(String),
    /// The plugin returned a non-OK status for a call.
    #[error("plugin call failed with {status}: {message}")]
    Status {
        /// The status (Internal for codes this host does not know).
        status: StatusCode,
        /// The plugin's diagnostic.
        message: String,
    },
    /// An in-process plugin panicked; its instance is poisoned and every later call fails too.
    #[error("in-process plugin panicked; instance poisoned")]
    Panicked,
    /// The plugin's output was rejected (oversize, invalid JSON, unknown action, wrong "v",
    /// inconsistent status/result): it is never trusted.
    #[error("plugin output rejected: {reason}")]
    BadOutput {
        /// What was wrong (no content from the output).
        reason: String,
    },
    /// The call did not finish before the deadline (a worker is killed).
    #[error("plugin call exceeded its {deadline:?} deadline")]
    Timeout {
        /// The deadline.
        deadline: Duration,
    },
    /// The worker process died during the call (segfault, abort, panic, exit).
    #[error("plugin worker crashed: {reason}")]
    WorkerCrashed {
        /// Exit status or signal.
        reason: String,
    },
    /// The worker binary could not be found or spawned, or the pipe protocol broke.
    #[error("plugin worker unavailable: {0}")]
    Worker(String),
    /// Too many failures recently: calls are refused until the cool-down passes.
    #[error("plugin circuit breaker open; retry in {retry_after:?}")]
    CircuitOpen {
        /// Time left until a trial call is allowed.
        retry_after: Duration,
    },
}

impl PluginError {
    /// Maps a call error from the ABI wrapper; the plugin's message is scrubbed of personal
    /// numbers and capped ([`crate::scrub`]).
    pub(crate) fn from_call(e: CallError) -> PluginError {
        match e {
            CallError::Status { code, message, .. } => {
                let message = crate::scrub::scrub_plugin_text(&message);
                match StatusCode::from_code(code) {
                    Some(StatusCode::Panic) => PluginError::Panicked,
                    Some(StatusCode::Config) => PluginError::Config(message),
                    Some(status) => PluginError::Status { status, message },
                    None => PluginError::Status {
                        status: StatusCode::Internal,
                        message: format!("unknown status code {code}: {message}"),
                    },
                }
            }
            CallError::Oversize { cap } => PluginError::BadOutput {
                reason: format!("reply over the {cap}-byte cap"),
            },
            CallError::Abi(m) => PluginError::Abi(m),
        }
    }

    /// True for failures that count against the circuit breaker (the plugin misbehaved).
    pub fn is_plugin_fault(&self) -> bool {
        matches!(
            self,
            PluginError::Panicked
                | PluginError::BadOutput { .. }
                | PluginError::Timeout { .. }
                | PluginError::WorkerCrashed { .. }
        )
    }
}
