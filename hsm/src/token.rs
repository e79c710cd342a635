//! Finding a token by label, and provisioning a fresh one for demos and tests.

use std::path::Path;
use std::sync::Mutex;

use cryptoki::context::Pkcs11;
use cryptoki::session::UserType;
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;

use crate::error::HsmError;
use crate::pkcs11::{context, pkcs11_error};

/// Serialises provisioning in this process: choosing the free slot and initialising it are two
/// PKCS#11 calls, and two threads doing both at once could pick the same slot (one then finds
/// the slot it scanned already taken, and no free one in its list).
static PROVISIONING: Mutex<()> = Mutex::new(());

/// PKCS#11 token labels are a 32-byte blank-padded field.
const MAX_LABEL_BYTES: usize = 32;

/// The slot holding the initialised token labelled `label`.
pub(crate) fn find_slot(ctx: &Pkcs11, label: &str) -> Result<Slot, HsmError> {
    for slot in ctx.get_slots_with_token().map_err(pkcs11_error)? {
        let info = ctx.get_token_info(slot).map_err(pkcs11_error)?;
        if info.token_initialized() && info.label().trim_end() == label {
            return Ok(slot);
        }
    }
    Err(HsmError::TokenNotFound {
        label: label.to_owned(),
    })
}

/// Provision a fresh token (demo / tests): C_InitToken on the first free slot with `label`, then set the user PIN.
pub fn init_token(
    module: &Path,
    label: &str,
    so_pin: &str,
    user_pin: &str,
) -> Result<(), HsmError> {
    if label.is_empty() || label.len() > MAX_LABEL_BYTES {
        return Err(HsmError::InvalidArgument {
            what: "token label",
            reason: format!("must be 1 to {MAX_LABEL_BYTES} bytes"),
        });
    }
    let _provisioning = PROVISIONING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let ctx = context(module)?;
    if find_slot(&ctx, label).is_ok() {
        return Err(HsmError::InvalidArgument {
            what: "token label",
            reason: format!("a token labelled {label:?} already exists"),
        });
    }
    let mut free = None;
    for slot in ctx.get_slots_with_token().map_err(pkcs11_error)? {
        if !ctx
            .get_token_info(slot)
            .map_err(pkcs11_error)?
            .token_initialized()
        {
            free = Some(slot);
            break;
        }
    }
    let slot = free.ok_or_else(|| HsmError::InvalidArgument {
        what: "token label",
        reason: "no slot with an uninitialised token is left".into(),
    })?;
    let so_pin = AuthPin::new(so_pin.to_owned());
    ctx.init_token(slot, &so_pin, label).map_err(pkcs11_error)?;
    // SoftHSM2 may renumber the slot once the token is initialised: find it again by label.
    let slot = find_slot(&ctx, label)?;
    let session = ctx.open_rw_session(slot).map_err(pkcs11_error)?;
    session
        .login(UserType::So, Some(&so_pin))
        .map_err(pkcs11_error)?;
    session
        .init_pin(&AuthPin::new(user_pin.to_owned()))
        .map_err(pkcs11_error)?;
    session.logout().map_err(pkcs11_error)?;
    Ok(())
}
