//! The process-wide PKCS#11 module registry and the mapping of cryptoki errors to `HsmError`.
//!
//! A module may be C_Initialize'd only once per process and C_Finalize would close every
//! session of every user, so each module is loaded once, initialised with OS locking, and kept
//! for the life of the process.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use cryptoki::context::{CInitializeArgs, Function, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};

use crate::error::HsmError;

static MODULES: OnceLock<Mutex<HashMap<PathBuf, Pkcs11>>> = OnceLock::new();

/// The initialised context for `module`, loading and C_Initialize'ing it on first use.
pub(crate) fn context(module: &Path) -> Result<Pkcs11, HsmError> {
    let key = std::fs::canonicalize(module).map_err(|e| HsmError::Module {
        path: module.to_owned(),
        reason: e.to_string(),
    })?;
    let mut modules = MODULES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(ctx) = modules.get(&key) {
        return Ok(ctx.clone());
    }
    let module_error = |reason: String| HsmError::Module {
        path: module.to_owned(),
        reason,
    };
    let ctx = Pkcs11::new(&key).map_err(|e| module_error(e.to_string()))?;
    match ctx.initialize(CInitializeArgs::OsThreads) {
        Ok(()) => {}
        // Someone else in this process (another crate, a test) initialised it first: usable.
        Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => return Err(module_error(describe(&e).1)),
    }
    modules.insert(key, ctx.clone());
    Ok(ctx)
}

/// The cryptoki context for `module`, shared with the rest of the crate. For this crate's own
/// tests, which must inspect key attributes directly; not part of the supported API.
#[doc(hidden)]
pub fn raw_context(module: &Path) -> Result<Pkcs11, HsmError> {
    context(module)
}

/// `("C_Login", "CKR_PIN_INCORRECT")` for a cryptoki error.
pub(crate) fn describe(e: &CkError) -> (String, String) {
    match e {
        CkError::Pkcs11(rv, function) => (function_name(*function), rv_name(*rv)),
        other => ("cryptoki".to_owned(), other.to_string()),
    }
}

fn function_name(function: Function) -> String {
    format!("C_{function:?}")
}

/// `PinIncorrect` -> `CKR_PIN_INCORRECT`.
fn rv_name(rv: RvError) -> String {
    let camel = format!("{rv:?}");
    let mut out = String::from("CKR");
    for c in camel.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

/// A PKCS#11 failure that is not a session problem.
pub(crate) fn pkcs11_error(e: CkError) -> HsmError {
    let (function, code) = describe(&e);
    HsmError::Pkcs11 { function, code }
}

/// The same failure, reported as the token being unavailable (after the retry).
pub(crate) fn unavailable(e: &CkError) -> HsmError {
    let (function, code) = describe(e);
    HsmError::Unavailable { function, code }
}

/// True for errors that mean the session (or token behind it) is gone: reopen and retry once.
pub(crate) fn is_session_error(e: &CkError) -> bool {
    matches!(
        e,
        CkError::Pkcs11(
            RvError::SessionHandleInvalid
                | RvError::SessionClosed
                | RvError::DeviceError
                | RvError::DeviceRemoved
                | RvError::DeviceMemory
                | RvError::TokenNotPresent
                | RvError::TokenNotRecognized
                | RvError::UserNotLoggedIn
                | RvError::CryptokiNotInitialized,
            _
        )
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    #[test]
    fn rv_names_look_like_the_spec() {
        assert_eq!(rv_name(RvError::PinIncorrect), "CKR_PIN_INCORRECT");
        assert_eq!(
            rv_name(RvError::SessionHandleInvalid),
            "CKR_SESSION_HANDLE_INVALID"
        );
        assert_eq!(function_name(Function::Login), "C_Login");
    }
}
