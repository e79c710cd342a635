//! The one error type of the crate: says which PKCS#11 call failed and why, never the PIN.

use std::path::PathBuf;

use crate::algorithm::{KeyKind, SignatureAlgorithm};
use crate::uri::KeyUri;

/// Everything that can go wrong talking to the token; callers map `Unavailable` to HTTP 503.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HsmError {
    /// The PKCS#11 module could not be loaded or initialised.
    #[error("PKCS#11 module {path}: {reason}")]
    Module {
        /// Path of the module as configured.
        path: PathBuf,
        /// What went wrong (loader or C_Initialize message).
        reason: String,
    },
    /// No slot holds an initialised token with this label.
    #[error("no token labelled {label:?}")]
    TokenNotFound {
        /// The token label that was looked for.
        label: String,
    },
    /// C_Login refused the user PIN (CKR_PIN_INCORRECT or CKR_PIN_LEN_RANGE).
    #[error("the token refused the user PIN")]
    WrongPin,
    /// The user PIN is locked after too many wrong attempts (CKR_PIN_LOCKED).
    #[error("the token's user PIN is locked")]
    PinLocked,
    /// The PIN could not be read from its source (missing file, bad permissions, unset variable).
    #[error("PIN source {what}: {reason}")]
    PinSource {
        /// Which source (file path, variable or credential name; never the PIN).
        what: String,
        /// Why it was refused.
        reason: String,
    },
    /// No private key with this URI on the token.
    #[error("no key {uri}")]
    KeyNotFound {
        /// The key looked for.
        uri: KeyUri,
    },
    /// A key with this label already exists; generation refuses to shadow it.
    #[error("a key {uri} already exists")]
    KeyExists {
        /// The key that already exists.
        uri: KeyUri,
    },
    /// Several private keys carry this label, so the URI is ambiguous.
    #[error("more than one key matches {uri}")]
    AmbiguousKey {
        /// The ambiguous key URI.
        uri: KeyUri,
    },
    /// The token or its sessions failed even after reopening a session once.
    #[error("HSM unavailable: {function} failed with {code}")]
    Unavailable {
        /// The PKCS#11 function that failed last.
        function: String,
        /// The CKR code (or library error) it returned.
        code: String,
    },
    /// A PKCS#11 call failed for a reason that is not a session problem.
    #[error("{function} failed with {code}")]
    Pkcs11 {
        /// The PKCS#11 function that failed.
        function: String,
        /// The CKR code (or library error) it returned.
        code: String,
    },
    /// The string is not a usable RFC 7512 key URI.
    #[error("invalid PKCS#11 key URI: {0}")]
    InvalidKeyUri(String),
    /// The key type and the signature algorithm do not go together.
    #[error("algorithm {alg} is not allowed with a {key_kind} key")]
    UnsupportedAlgorithm {
        /// Kind of the key asked to sign.
        key_kind: KeyKind,
        /// Algorithm asked for.
        alg: SignatureAlgorithm,
    },
    /// A key on the token is of a type or size this crate does not handle.
    #[error("key {uri} is not a supported key type: {reason}")]
    UnsupportedKey {
        /// The key.
        uri: KeyUri,
        /// What was found instead.
        reason: String,
    },
    /// `sign_digest` got a digest of the wrong length for the algorithm.
    #[error("{alg} needs a {expected}-byte digest, got {actual} bytes")]
    DigestLength {
        /// Algorithm asked for.
        alg: SignatureAlgorithm,
        /// Its hash length.
        expected: usize,
        /// Length given.
        actual: usize,
    },
    /// An argument (label, kind name, PIN length) is out of range.
    #[error("invalid {what}: {reason}")]
    InvalidArgument {
        /// Which argument.
        what: &'static str,
        /// Why it is refused.
        reason: String,
    },
    /// A wrapped secret could not be opened: wrong wrapping key, wrong associated data or a
    /// tampered value.
    #[error("the value wrapped by {uri} cannot be unwrapped (wrong key, wrong label or tampered)")]
    UnwrapFailed {
        /// The wrapping key.
        uri: KeyUri,
    },
    /// The token returned data this crate could not interpret (public key, signature).
    #[error("unexpected data from the token: {0}")]
    Malformed(String),
    /// The blocking worker running the PKCS#11 call was cancelled or panicked.
    #[error("HSM worker task failed: {0}")]
    Worker(String),
}

impl HsmError {
    /// True when the server should answer 503 (try again later) rather than 500.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, HsmError::Unavailable { .. } | HsmError::Worker(_))
    }
}
