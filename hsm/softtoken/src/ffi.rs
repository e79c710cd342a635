//! The C ABI: `C_GetFunctionList` and the functions it lists. The only `unsafe` of the crate:
//! each entry point copies its arguments out of caller memory, calls `module`, and copies the
//! result back, with a `// SAFETY:` line per block. Panics never cross the boundary.

use std::os::raw::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Mutex, MutexGuard};

use cryptoki_sys::*;

use crate::module::{Module, MECHANISMS, SIGNATURE_LEN};
use crate::object::AttrValue;

/// The module state between C_Initialize and C_Finalize.
static STATE: Mutex<Option<Module>> = Mutex::new(None);

fn state() -> MutexGuard<'static, Option<Module>> {
    // Every module method leaves its state consistent before returning an error, so a lock
    // poisoned by a panic (already turned into CKR_GENERAL_ERROR) is still usable.
    STATE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Run `f` on the initialised module.
fn with<T>(f: impl FnOnce(&mut Module) -> Result<T, CK_RV>) -> Result<T, CK_RV> {
    let mut guard = state();
    let module = guard.as_mut().ok_or(CKR_CRYPTOKI_NOT_INITIALIZED)?;
    f(module)
}

/// Catch panics and turn a result into a return value.
fn entry(f: impl FnOnce() -> Result<(), CK_RV>) -> CK_RV {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => CKR_OK,
        Ok(Err(rv)) => rv,
        Err(_) => CKR_GENERAL_ERROR,
    }
}

/// `len` bytes at `ptr` (empty when `len` is 0).
///
/// # Safety
/// `ptr` must be null or valid for reads of `len` bytes for the returned lifetime.
unsafe fn bytes<'a>(ptr: *const u8, len: CK_ULONG) -> Result<&'a [u8], CK_RV> {
    if len == 0 {
        return Ok(&[]);
    }
    if ptr.is_null() {
        return Err(CKR_ARGUMENTS_BAD);
    }
    // SAFETY: non-null, and the caller guarantees `len` readable bytes (PKCS#11 contract).
    Ok(unsafe { std::slice::from_raw_parts(ptr, len as usize) })
}

/// A copy of the caller's attribute template.
///
/// # Safety
/// `ptr` must be null or point to `count` CK_ATTRIBUTEs whose values are readable.
unsafe fn template(
    ptr: *const CK_ATTRIBUTE,
    count: CK_ULONG,
) -> Result<Vec<(CK_ATTRIBUTE_TYPE, Vec<u8>)>, CK_RV> {
    if count == 0 {
        return Ok(Vec::new());
    }
    if ptr.is_null() {
        return Err(CKR_ARGUMENTS_BAD);
    }
    // SAFETY: non-null and `count` attributes long per the PKCS#11 contract.
    let attributes = unsafe { std::slice::from_raw_parts(ptr, count as usize) };
    attributes
        .iter()
        .map(|a| {
            // SAFETY: each attribute's pValue holds ulValueLen readable bytes.
            let value = unsafe { bytes(a.pValue as *const u8, a.ulValueLen) }?;
            Ok((a.type_, value.to_vec()))
        })
        .collect()
}

/// Write `value` into the caller's (`out`, `out_len`) buffer with the PKCS#11 length rules:
/// a null `out` asks for the length, a short buffer gets CKR_BUFFER_TOO_SMALL.
///
/// # Safety
/// `out_len` must be null or writable; `out` null or writable for `*out_len` items.
unsafe fn write_out<T: Copy>(
    value: &[T],
    out: *mut T,
    out_len: *mut CK_ULONG,
) -> Result<(), CK_RV> {
    if out_len.is_null() {
        return Err(CKR_ARGUMENTS_BAD);
    }
    // SAFETY: out_len is non-null and writable per the contract.
    let capacity = unsafe { *out_len } as usize;
    // SAFETY: as above.
    unsafe { *out_len = value.len() as CK_ULONG };
    if out.is_null() {
        return Ok(());
    }
    if capacity < value.len() {
        return Err(CKR_BUFFER_TOO_SMALL);
    }
    // SAFETY: out is writable for `capacity` >= value.len() items and does not overlap value.
    unsafe { std::ptr::copy_nonoverlapping(value.as_ptr(), out, value.len()) };
    Ok(())
}

/// The length rules of an operation that must not run before its `needed`-item output fits:
/// `Some` (with `needed` written to `out_len`: `Ok` for a null `out`, CKR_BUFFER_TOO_SMALL for
/// a short one) when the caller returns at once, `None` when `out` has room.
///
/// # Safety
/// `out_len` must be non-null, readable and writable.
unsafe fn length_only<T>(
    out: *mut T,
    out_len: *mut CK_ULONG,
    needed: usize,
) -> Option<Result<(), CK_RV>> {
    // SAFETY: out_len is non-null and readable per the contract.
    let capacity = unsafe { *out_len } as usize;
    if !out.is_null() && capacity >= needed {
        return None;
    }
    // SAFETY: out_len is writable per the contract.
    unsafe { *out_len = needed as CK_ULONG };
    Some(if out.is_null() {
        Ok(())
    } else {
        Err(CKR_BUFFER_TOO_SMALL)
    })
}

/// Write one value to a non-null out pointer.
///
/// # Safety
/// `out` must be null or valid for a write of `T`.
unsafe fn put<T>(out: *mut T, value: T) -> Result<(), CK_RV> {
    if out.is_null() {
        return Err(CKR_ARGUMENTS_BAD);
    }
    // SAFETY: non-null and writable per the contract.
    unsafe { out.write(value) };
    Ok(())
}

/// A blank-padded fixed-width text field.
fn padded<const N: usize>(text: &str) -> [u8; N] {
    let mut field = [b' '; N];
    let bytes = text.as_bytes();
    let n = bytes.len().min(N);
    field[..n].copy_from_slice(&bytes[..n]);
    field
}

const VERSION: CK_VERSION = CK_VERSION { major: 0, minor: 1 };

extern "C" fn c_initialize(args: *mut c_void) -> CK_RV {
    entry(|| {
        if !args.is_null() {
            // SAFETY: a non-null argument is a CK_C_INITIALIZE_ARGS (PKCS#11 contract).
            let args = unsafe { &*(args as *const CK_C_INITIALIZE_ARGS) };
            if !args.pReserved.is_null() {
                return Err(CKR_ARGUMENTS_BAD);
            }
            let callbacks = args.CreateMutex.is_some() as u8
                + args.DestroyMutex.is_some() as u8
                + args.LockMutex.is_some() as u8
                + args.UnlockMutex.is_some() as u8;
            if callbacks != 0 && callbacks != 4 {
                return Err(CKR_ARGUMENTS_BAD);
            }
            if callbacks == 4 && args.flags & CKF_OS_LOCKING_OK == 0 {
                return Err(CKR_CANT_LOCK);
            }
        }
        let mut guard = state();
        if guard.is_some() {
            return Err(CKR_CRYPTOKI_ALREADY_INITIALIZED);
        }
        *guard = Some(Module::load()?);
        Ok(())
    })
}

extern "C" fn c_finalize(reserved: *mut c_void) -> CK_RV {
    entry(|| {
        if !reserved.is_null() {
            return Err(CKR_ARGUMENTS_BAD);
        }
        state()
            .take()
            .map(|_| ())
            .ok_or(CKR_CRYPTOKI_NOT_INITIALIZED)
    })
}

extern "C" fn c_get_info(info: *mut CK_INFO) -> CK_RV {
    entry(|| {
        with(|_| Ok(()))?;
        let value = CK_INFO {
            cryptokiVersion: CK_VERSION {
                major: 2,
                minor: 40,
            },
            manufacturerID: padded("ca-appliance"),
            flags: 0,
            libraryDescription: padded("ca-softtoken SM2/P-256"),
            libraryVersion: VERSION,
        };
        // SAFETY: info is the caller's CK_INFO out pointer.
        unsafe { put(info, value) }
    })
}

/// The PKCS#11 entry point: hands out the function table.
///
/// # Safety
/// `list` must be null or valid for writing one pointer.
#[no_mangle]
pub unsafe extern "C" fn C_GetFunctionList(list: *mut *mut CK_FUNCTION_LIST) -> CK_RV {
    entry(|| {
        // SAFETY: list is the caller's out pointer; the table is a static never written through.
        unsafe {
            put(
                list,
                &FUNCTIONS as *const CK_FUNCTION_LIST as *mut CK_FUNCTION_LIST,
            )
        }
    })
}

extern "C" fn c_get_slot_list(
    _token_present: CK_BBOOL,
    list: *mut CK_SLOT_ID,
    count: *mut CK_ULONG,
) -> CK_RV {
    entry(|| {
        let ids = with(|m| Ok(m.slot_ids()))?;
        // SAFETY: count is null or writable, list null or writable for *count ids (caller).
        unsafe { write_out(&ids, list, count) }
    })
}

extern "C" fn c_get_slot_info(slot: CK_SLOT_ID, info: *mut CK_SLOT_INFO) -> CK_RV {
    entry(|| {
        with(|m| m.token_info(slot).map(|_| ()))?;
        let value = CK_SLOT_INFO {
            slotDescription: padded(&format!("ca-softtoken slot {slot}")),
            manufacturerID: padded("ca-appliance"),
            flags: CKF_TOKEN_PRESENT,
            hardwareVersion: VERSION,
            firmwareVersion: VERSION,
        };
        // SAFETY: info is the caller's CK_SLOT_INFO out pointer.
        unsafe { put(info, value) }
    })
}

extern "C" fn c_get_token_info(slot: CK_SLOT_ID, info: *mut CK_TOKEN_INFO) -> CK_RV {
    entry(|| {
        let token = with(|m| m.token_info(slot))?;
        let value = CK_TOKEN_INFO {
            label: padded(&token.label),
            manufacturerID: padded("ca-appliance"),
            model: padded("ca-softtoken"),
            serialNumber: padded(&token.serial),
            flags: token.flags,
            ulMaxSessionCount: CK_EFFECTIVELY_INFINITE,
            ulSessionCount: token.sessions as CK_ULONG,
            ulMaxRwSessionCount: CK_EFFECTIVELY_INFINITE,
            ulRwSessionCount: token.rw_sessions as CK_ULONG,
            ulMaxPinLen: crate::module::MAX_PIN as CK_ULONG,
            ulMinPinLen: crate::module::MIN_PIN as CK_ULONG,
            ulTotalPublicMemory: CK_UNAVAILABLE_INFORMATION,
            ulFreePublicMemory: CK_UNAVAILABLE_INFORMATION,
            ulTotalPrivateMemory: CK_UNAVAILABLE_INFORMATION,
            ulFreePrivateMemory: CK_UNAVAILABLE_INFORMATION,
            hardwareVersion: VERSION,
            firmwareVersion: VERSION,
            utcTime: [b' '; 16],
        };
        // SAFETY: info is the caller's CK_TOKEN_INFO out pointer.
        unsafe { put(info, value) }
    })
}

extern "C" fn c_get_mechanism_list(
    slot: CK_SLOT_ID,
    list: *mut CK_MECHANISM_TYPE,
    count: *mut CK_ULONG,
) -> CK_RV {
    entry(|| {
        with(|m| m.token_info(slot).map(|_| ()))?;
        let mechanisms: Vec<CK_MECHANISM_TYPE> = MECHANISMS.iter().map(|(m, _)| *m).collect();
        // SAFETY: count is null or writable, list null or writable for *count entries (caller).
        unsafe { write_out(&mechanisms, list, count) }
    })
}

extern "C" fn c_get_mechanism_info(
    slot: CK_SLOT_ID,
    mechanism: CK_MECHANISM_TYPE,
    info: *mut CK_MECHANISM_INFO,
) -> CK_RV {
    entry(|| {
        with(|m| m.token_info(slot).map(|_| ()))?;
        let (_, flags) = MECHANISMS
            .iter()
            .find(|(m, _)| *m == mechanism)
            .ok_or(CKR_MECHANISM_INVALID)?;
        let value = CK_MECHANISM_INFO {
            ulMinKeySize: 256,
            ulMaxKeySize: 256,
            flags: *flags,
        };
        // SAFETY: info is the caller's CK_MECHANISM_INFO out pointer.
        unsafe { put(info, value) }
    })
}

extern "C" fn c_init_token(
    slot: CK_SLOT_ID,
    pin: *mut CK_UTF8CHAR,
    pin_len: CK_ULONG,
    label: *mut CK_UTF8CHAR,
) -> CK_RV {
    entry(|| {
        // SAFETY: the SO PIN is pin_len bytes at pin.
        let pin = unsafe { bytes(pin, pin_len) }?;
        // SAFETY: the label is a 32-byte blank-padded field (PKCS#11 contract).
        let label = unsafe { bytes(label, 32) }?;
        let label = std::str::from_utf8(label)
            .map_err(|_| CKR_ARGUMENTS_BAD)?
            .trim_end_matches([' ', '\0']);
        with(|m| m.init_token(slot, pin, label))
    })
}

extern "C" fn c_init_pin(
    session: CK_SESSION_HANDLE,
    pin: *mut CK_UTF8CHAR,
    len: CK_ULONG,
) -> CK_RV {
    entry(|| {
        // SAFETY: the PIN is len bytes at pin.
        let pin = unsafe { bytes(pin, len) }?;
        with(|m| m.init_pin(session, pin))
    })
}

extern "C" fn c_set_pin(
    session: CK_SESSION_HANDLE,
    old: *mut CK_UTF8CHAR,
    old_len: CK_ULONG,
    new: *mut CK_UTF8CHAR,
    new_len: CK_ULONG,
) -> CK_RV {
    entry(|| {
        // SAFETY: each PIN is its length in bytes at its pointer.
        let (old, new) = unsafe { (bytes(old, old_len)?, bytes(new, new_len)?) };
        with(|m| m.set_pin(session, old, new))
    })
}

extern "C" fn c_open_session(
    slot: CK_SLOT_ID,
    flags: CK_FLAGS,
    _application: *mut c_void,
    _notify: CK_NOTIFY,
    session: *mut CK_SESSION_HANDLE,
) -> CK_RV {
    entry(|| {
        if session.is_null() {
            return Err(CKR_ARGUMENTS_BAD);
        }
        let handle = with(|m| m.open_session(slot, flags))?;
        // SAFETY: session is the caller's non-null out pointer.
        unsafe { put(session, handle) }
    })
}

extern "C" fn c_close_session(session: CK_SESSION_HANDLE) -> CK_RV {
    entry(|| with(|m| m.close_session(session)))
}

extern "C" fn c_close_all_sessions(slot: CK_SLOT_ID) -> CK_RV {
    entry(|| with(|m| m.close_all(slot)))
}

extern "C" fn c_get_session_info(session: CK_SESSION_HANDLE, info: *mut CK_SESSION_INFO) -> CK_RV {
    entry(|| {
        let s = with(|m| m.session_info(session))?;
        let value = CK_SESSION_INFO {
            slotID: s.slot,
            state: s.state,
            flags: s.flags,
            ulDeviceError: 0,
        };
        // SAFETY: info is the caller's CK_SESSION_INFO out pointer.
        unsafe { put(info, value) }
    })
}

extern "C" fn c_login(
    session: CK_SESSION_HANDLE,
    user: CK_USER_TYPE,
    pin: *mut CK_UTF8CHAR,
    len: CK_ULONG,
) -> CK_RV {
    entry(|| {
        // SAFETY: the PIN is len bytes at pin.
        let pin = unsafe { bytes(pin, len) }?;
        with(|m| m.login(session, user, pin))
    })
}

extern "C" fn c_logout(session: CK_SESSION_HANDLE) -> CK_RV {
    entry(|| with(|m| m.logout(session)))
}

extern "C" fn c_destroy_object(session: CK_SESSION_HANDLE, object: CK_OBJECT_HANDLE) -> CK_RV {
    entry(|| with(|m| m.destroy(session, object)))
}

extern "C" fn c_get_attribute_value(
    session: CK_SESSION_HANDLE,
    object: CK_OBJECT_HANDLE,
    attributes: *mut CK_ATTRIBUTE,
    count: CK_ULONG,
) -> CK_RV {
    entry(|| {
        if attributes.is_null() && count != 0 {
            return Err(CKR_ARGUMENTS_BAD);
        }
        let attributes: &mut [CK_ATTRIBUTE] = if count == 0 {
            &mut []
        } else {
            // SAFETY: non-null, `count` attributes owned by the caller for this call.
            unsafe { std::slice::from_raw_parts_mut(attributes, count as usize) }
        };
        let kinds: Vec<CK_ATTRIBUTE_TYPE> = attributes.iter().map(|a| a.type_).collect();
        let values = with(|m| m.attributes(session, object, &kinds))?;
        let mut rv = Ok(());
        for (attribute, value) in attributes.iter_mut().zip(values) {
            match value {
                AttrValue::Value(bytes) => {
                    if attribute.pValue.is_null() {
                        attribute.ulValueLen = bytes.len() as CK_ULONG;
                    } else if (attribute.ulValueLen as usize) < bytes.len() {
                        attribute.ulValueLen = CK_UNAVAILABLE_INFORMATION;
                        rv = Err(CKR_BUFFER_TOO_SMALL);
                    } else {
                        // SAFETY: pValue is writable for ulValueLen >= bytes.len() bytes.
                        unsafe {
                            std::ptr::copy_nonoverlapping(
                                bytes.as_ptr(),
                                attribute.pValue as *mut u8,
                                bytes.len(),
                            )
                        };
                        attribute.ulValueLen = bytes.len() as CK_ULONG;
                    }
                }
                AttrValue::Sensitive => {
                    attribute.ulValueLen = CK_UNAVAILABLE_INFORMATION;
                    rv = Err(CKR_ATTRIBUTE_SENSITIVE);
                }
                AttrValue::Invalid => {
                    attribute.ulValueLen = CK_UNAVAILABLE_INFORMATION;
                    rv = Err(CKR_ATTRIBUTE_TYPE_INVALID);
                }
            }
        }
        rv
    })
}

extern "C" fn c_find_objects_init(
    session: CK_SESSION_HANDLE,
    attributes: *mut CK_ATTRIBUTE,
    count: CK_ULONG,
) -> CK_RV {
    entry(|| {
        // SAFETY: the template is `count` attributes at `attributes`.
        let template = unsafe { template(attributes, count) }?;
        with(|m| m.find_init(session, &template))
    })
}

extern "C" fn c_find_objects(
    session: CK_SESSION_HANDLE,
    objects: *mut CK_OBJECT_HANDLE,
    max: CK_ULONG,
    found: *mut CK_ULONG,
) -> CK_RV {
    entry(|| {
        if (objects.is_null() && max != 0) || found.is_null() {
            return Err(CKR_ARGUMENTS_BAD);
        }
        let handles = with(|m| m.find_next(session, max as usize))?;
        for (i, handle) in handles.iter().enumerate() {
            // SAFETY: objects is writable for `max` >= handles.len() handles.
            unsafe { objects.add(i).write(*handle) };
        }
        // SAFETY: found is non-null and writable.
        unsafe { put(found, handles.len() as CK_ULONG) }
    })
}

extern "C" fn c_find_objects_final(session: CK_SESSION_HANDLE) -> CK_RV {
    entry(|| with(|m| m.find_final(session)))
}

/// The mechanism type and parameter bytes.
///
/// # Safety
/// `mechanism` must be null or a valid CK_MECHANISM whose parameter is readable.
unsafe fn mechanism<'a>(
    mechanism: *const CK_MECHANISM,
) -> Result<(CK_MECHANISM_TYPE, &'a [u8]), CK_RV> {
    if mechanism.is_null() {
        return Err(CKR_ARGUMENTS_BAD);
    }
    // SAFETY: non-null and valid per the contract.
    let mechanism = unsafe { &*mechanism };
    // SAFETY: the parameter is ulParameterLen bytes at pParameter.
    let parameter = unsafe { bytes(mechanism.pParameter as *const u8, mechanism.ulParameterLen) }?;
    Ok((mechanism.mechanism, parameter))
}

extern "C" fn c_sign_init(
    session: CK_SESSION_HANDLE,
    mech: *mut CK_MECHANISM,
    key: CK_OBJECT_HANDLE,
) -> CK_RV {
    entry(|| {
        // SAFETY: mech is the caller's CK_MECHANISM.
        let (kind, parameter) = unsafe { mechanism(mech) }?;
        with(|m| m.sign_init(session, kind, parameter, key))
    })
}

/// Finish a sign operation into the caller's buffer (length query and short buffer keep it).
///
/// # Safety
/// As `write_out`.
unsafe fn finish_sign(
    session: CK_SESSION_HANDLE,
    data: &[u8],
    signature: *mut CK_BYTE,
    len: *mut CK_ULONG,
) -> Result<(), CK_RV> {
    if len.is_null() {
        with(|m| {
            m.abort(session, true);
            Ok(())
        })?;
        return Err(CKR_ARGUMENTS_BAD);
    }
    with(|m| m.signing(session))?;
    // SAFETY: len is non-null (checked above), readable and writable.
    if let Some(rv) = unsafe { length_only(signature, len, SIGNATURE_LEN) } {
        return rv;
    }
    // The key leaves the lock with the job: other sessions sign meanwhile.
    let job = with(|m| m.take(session, true, data))?;
    let value = job.sign()?;
    // SAFETY: signature is writable for at least 64 bytes (length_only), len writable.
    unsafe { write_out(&value, signature, len) }
}

extern "C" fn c_sign(
    session: CK_SESSION_HANDLE,
    data: *mut CK_BYTE,
    data_len: CK_ULONG,
    signature: *mut CK_BYTE,
    signature_len: *mut CK_ULONG,
) -> CK_RV {
    entry(|| {
        // SAFETY: data is data_len bytes at data.
        let data = match unsafe { bytes(data, data_len) } {
            Ok(data) => data,
            Err(rv) => {
                with(|m| {
                    m.abort(session, true);
                    Ok(())
                })?;
                return Err(rv);
            }
        };
        // SAFETY: the caller's signature buffer and length.
        unsafe { finish_sign(session, data, signature, signature_len) }
    })
}

extern "C" fn c_sign_update(
    session: CK_SESSION_HANDLE,
    part: *mut CK_BYTE,
    len: CK_ULONG,
) -> CK_RV {
    entry(|| {
        // SAFETY: part is len bytes.
        let part = unsafe { bytes(part, len) }?;
        with(|m| m.update(session, true, part))
    })
}

extern "C" fn c_sign_final(
    session: CK_SESSION_HANDLE,
    signature: *mut CK_BYTE,
    signature_len: *mut CK_ULONG,
) -> CK_RV {
    // SAFETY: the caller's signature buffer and length.
    entry(|| unsafe { finish_sign(session, &[], signature, signature_len) })
}

extern "C" fn c_verify_init(
    session: CK_SESSION_HANDLE,
    mech: *mut CK_MECHANISM,
    key: CK_OBJECT_HANDLE,
) -> CK_RV {
    entry(|| {
        // SAFETY: mech is the caller's CK_MECHANISM.
        let (kind, parameter) = unsafe { mechanism(mech) }?;
        with(|m| m.verify_init(session, kind, parameter, key))
    })
}

extern "C" fn c_verify(
    session: CK_SESSION_HANDLE,
    data: *mut CK_BYTE,
    data_len: CK_ULONG,
    signature: *mut CK_BYTE,
    signature_len: CK_ULONG,
) -> CK_RV {
    entry(|| {
        // SAFETY: data and signature are their lengths in bytes.
        let read = unsafe {
            bytes(data, data_len).and_then(|d| Ok((d, bytes(signature, signature_len)?)))
        };
        let job = with(|m| {
            m.take(
                session,
                false,
                read.as_ref().map(|(d, _)| *d).unwrap_or(&[]),
            )
        })?;
        let (_, signature) = read?;
        job.verify(signature)
    })
}

extern "C" fn c_verify_update(
    session: CK_SESSION_HANDLE,
    part: *mut CK_BYTE,
    len: CK_ULONG,
) -> CK_RV {
    entry(|| {
        // SAFETY: part is len bytes.
        let part = unsafe { bytes(part, len) }?;
        with(|m| m.update(session, false, part))
    })
}

extern "C" fn c_verify_final(
    session: CK_SESSION_HANDLE,
    signature: *mut CK_BYTE,
    signature_len: CK_ULONG,
) -> CK_RV {
    entry(|| {
        // SAFETY: signature is signature_len bytes.
        let signature = unsafe { bytes(signature, signature_len) };
        let job = with(|m| m.take(session, false, &[]))?;
        job.verify(signature?)
    })
}

#[allow(clippy::too_many_arguments)] // the C signature
extern "C" fn c_generate_key_pair(
    session: CK_SESSION_HANDLE,
    mech: *mut CK_MECHANISM,
    public: *mut CK_ATTRIBUTE,
    public_count: CK_ULONG,
    private: *mut CK_ATTRIBUTE,
    private_count: CK_ULONG,
    public_key: *mut CK_OBJECT_HANDLE,
    private_key: *mut CK_OBJECT_HANDLE,
) -> CK_RV {
    entry(|| {
        if public_key.is_null() || private_key.is_null() {
            return Err(CKR_ARGUMENTS_BAD);
        }
        // SAFETY: mech and both templates are the caller's, valid for this call.
        let (kind, public, private) = unsafe {
            (
                mechanism(mech)?.0,
                template(public, public_count)?,
                template(private, private_count)?,
            )
        };
        let (pub_handle, priv_handle) =
            with(|m| m.generate_key_pair(session, kind, &public, &private))?;
        // SAFETY: both out pointers are non-null and writable.
        unsafe {
            put(public_key, pub_handle)?;
            put(private_key, priv_handle)
        }
    })
}

extern "C" fn c_generate_random(
    session: CK_SESSION_HANDLE,
    out: *mut CK_BYTE,
    len: CK_ULONG,
) -> CK_RV {
    entry(|| {
        if out.is_null() && len != 0 {
            return Err(CKR_ARGUMENTS_BAD);
        }
        let mut buffer = vec![0u8; len as usize];
        with(|m| m.random(session, &mut buffer))?;
        if len != 0 {
            // SAFETY: out is writable for len bytes.
            unsafe { std::ptr::copy_nonoverlapping(buffer.as_ptr(), out, buffer.len()) };
        }
        Ok(())
    })
}

extern "C" fn c_seed_random(
    session: CK_SESSION_HANDLE,
    _seed: *mut CK_BYTE,
    _len: CK_ULONG,
) -> CK_RV {
    entry(|| {
        with(|m| m.session_info(session).map(|_| ()))?;
        Err(CKR_RANDOM_SEED_NOT_SUPPORTED)
    })
}

extern "C" fn c_generate_key(
    session: CK_SESSION_HANDLE,
    mech: *mut CK_MECHANISM,
    attributes: *mut CK_ATTRIBUTE,
    count: CK_ULONG,
    key: *mut CK_OBJECT_HANDLE,
) -> CK_RV {
    entry(|| {
        if key.is_null() {
            return Err(CKR_ARGUMENTS_BAD);
        }
        // SAFETY: mech and the template are the caller's, valid for this call.
        let (kind, template) = unsafe { (mechanism(mech)?.0, template(attributes, count)?) };
        let handle = with(|m| m.generate_key(session, kind, &template))?;
        // SAFETY: key is non-null and writable.
        unsafe { put(key, handle) }
    })
}

/// The CK_GCM_PARAMS of a CKM_AES_GCM mechanism: 12-byte IV, 128-bit tag only.
///
/// # Safety
/// `mech` must be null or a valid CK_MECHANISM whose parameter, if any, is a CK_GCM_PARAMS
/// with readable IV and AAD buffers.
unsafe fn gcm_mechanism(
    mech: *const CK_MECHANISM,
) -> Result<(CK_MECHANISM_TYPE, crate::keys::GcmParams), CK_RV> {
    if mech.is_null() {
        return Err(CKR_ARGUMENTS_BAD);
    }
    // SAFETY: non-null and valid per the contract.
    let mech = unsafe { &*mech };
    if mech.mechanism != CKM_AES_GCM {
        return Err(CKR_MECHANISM_INVALID);
    }
    if mech.pParameter.is_null()
        || mech.ulParameterLen as usize != std::mem::size_of::<CK_GCM_PARAMS>()
    {
        return Err(CKR_MECHANISM_PARAM_INVALID);
    }
    // SAFETY: pParameter is a CK_GCM_PARAMS (size checked above) per the contract.
    let params = unsafe { &*(mech.pParameter as *const CK_GCM_PARAMS) };
    if params.ulIvLen != 12 || params.ulTagBits != 128 {
        return Err(CKR_MECHANISM_PARAM_INVALID);
    }
    // SAFETY: the IV and AAD are their lengths in bytes at their pointers.
    let (iv, aad) = unsafe {
        (
            bytes(params.pIv, params.ulIvLen)?,
            bytes(params.pAAD, params.ulAADLen)?,
        )
    };
    let iv: [u8; 12] = iv.try_into().map_err(|_| CKR_MECHANISM_PARAM_INVALID)?;
    Ok((
        mech.mechanism,
        crate::keys::GcmParams {
            iv,
            aad: aad.to_vec(),
        },
    ))
}

fn crypt_init(
    session: CK_SESSION_HANDLE,
    encrypt: bool,
    mech: *mut CK_MECHANISM,
    key: CK_OBJECT_HANDLE,
) -> CK_RV {
    entry(|| {
        // SAFETY: mech is the caller's CK_MECHANISM.
        let (kind, params) = unsafe { gcm_mechanism(mech) }?;
        with(|m| m.crypt_init(session, encrypt, kind, params, key))
    })
}

fn crypt(
    session: CK_SESSION_HANDLE,
    encrypt: bool,
    data: *mut CK_BYTE,
    data_len: CK_ULONG,
    out: *mut CK_BYTE,
    out_len: *mut CK_ULONG,
) -> CK_RV {
    entry(|| {
        // SAFETY: data is data_len bytes at data.
        let input = match unsafe { bytes(data, data_len) } {
            Ok(input) if !out_len.is_null() => input,
            Ok(_) | Err(_) => {
                with(|m| {
                    m.abort_crypt(session);
                    Ok(())
                })?;
                return Err(CKR_ARGUMENTS_BAD);
            }
        };
        let needed = with(|m| m.crypt_len(session, encrypt, input.len()))?;
        // SAFETY: out_len is non-null (checked above), readable and writable.
        if let Some(rv) = unsafe { length_only(out, out_len, needed) } {
            return rv;
        }
        let result = with(|m| m.crypt(session, encrypt, input))?;
        // SAFETY: out is writable for at least `needed` >= result.len() bytes; out_len writable.
        unsafe { write_out(&result, out, out_len) }
    })
}

extern "C" fn c_encrypt_init(
    s: CK_SESSION_HANDLE,
    m: *mut CK_MECHANISM,
    k: CK_OBJECT_HANDLE,
) -> CK_RV {
    crypt_init(s, true, m, k)
}

extern "C" fn c_decrypt_init(
    s: CK_SESSION_HANDLE,
    m: *mut CK_MECHANISM,
    k: CK_OBJECT_HANDLE,
) -> CK_RV {
    crypt_init(s, false, m, k)
}

extern "C" fn c_encrypt(
    s: CK_SESSION_HANDLE,
    d: *mut CK_BYTE,
    dl: CK_ULONG,
    o: *mut CK_BYTE,
    ol: *mut CK_ULONG,
) -> CK_RV {
    crypt(s, true, d, dl, o, ol)
}

extern "C" fn c_decrypt(
    s: CK_SESSION_HANDLE,
    d: *mut CK_BYTE,
    dl: CK_ULONG,
    o: *mut CK_BYTE,
    ol: *mut CK_ULONG,
) -> CK_RV {
    crypt(s, false, d, dl, o, ol)
}

/// Functions outside the supported subset: CKR_FUNCTION_NOT_SUPPORTED, touching nothing.
macro_rules! unsupported {
    ($($name:ident($($arg:ty),*);)*) => {
        $(
            extern "C" fn $name($(_: $arg),*) -> CK_RV {
                CKR_FUNCTION_NOT_SUPPORTED
            }
        )*
    };
}

type H = CK_SESSION_HANDLE;
type O = CK_OBJECT_HANDLE;
type U = CK_ULONG;
type B = *mut CK_BYTE;
type L = *mut CK_ULONG;
type M = *mut CK_MECHANISM;
type A = *mut CK_ATTRIBUTE;

unsupported! {
    c_get_operation_state(H, B, L);
    c_set_operation_state(H, B, U, O, O);
    c_create_object(H, A, U, *mut O);
    c_copy_object(H, O, A, U, *mut O);
    c_get_object_size(H, O, L);
    c_set_attribute_value(H, O, A, U);
    c_encrypt_update(H, B, U, B, L);
    c_encrypt_final(H, B, L);
    c_decrypt_update(H, B, U, B, L);
    c_decrypt_final(H, B, L);
    c_digest_init(H, M);
    c_digest(H, B, U, B, L);
    c_digest_update(H, B, U);
    c_digest_key(H, O);
    c_digest_final(H, B, L);
    c_sign_recover_init(H, M, O);
    c_sign_recover(H, B, U, B, L);
    c_verify_recover_init(H, M, O);
    c_verify_recover(H, B, U, B, L);
    c_digest_encrypt_update(H, B, U, B, L);
    c_decrypt_digest_update(H, B, U, B, L);
    c_sign_encrypt_update(H, B, U, B, L);
    c_decrypt_verify_update(H, B, U, B, L);
    c_wrap_key(H, M, O, O, B, L);
    c_unwrap_key(H, M, O, B, U, A, U, *mut O);
    c_derive_key(H, M, O, A, U, *mut O);
    c_get_function_status(H);
    c_cancel_function(H);
    c_wait_for_slot_event(CK_FLAGS, *mut CK_SLOT_ID, *mut c_void);
}

static FUNCTIONS: CK_FUNCTION_LIST = CK_FUNCTION_LIST {
    version: CK_VERSION {
        major: 2,
        minor: 40,
    },
    C_Initialize: Some(c_initialize),
    C_Finalize: Some(c_finalize),
    C_GetInfo: Some(c_get_info),
    C_GetFunctionList: Some(C_GetFunctionList),
    C_GetSlotList: Some(c_get_slot_list),
    C_GetSlotInfo: Some(c_get_slot_info),
    C_GetTokenInfo: Some(c_get_token_info),
    C_GetMechanismList: Some(c_get_mechanism_list),
    C_GetMechanismInfo: Some(c_get_mechanism_info),
    C_InitToken: Some(c_init_token),
    C_InitPIN: Some(c_init_pin),
    C_SetPIN: Some(c_set_pin),
    C_OpenSession: Some(c_open_session),
    C_CloseSession: Some(c_close_session),
    C_CloseAllSessions: Some(c_close_all_sessions),
    C_GetSessionInfo: Some(c_get_session_info),
    C_GetOperationState: Some(c_get_operation_state),
    C_SetOperationState: Some(c_set_operation_state),
    C_Login: Some(c_login),
    C_Logout: Some(c_logout),
    C_CreateObject: Some(c_create_object),
    C_CopyObject: Some(c_copy_object),
    C_DestroyObject: Some(c_destroy_object),
    C_GetObjectSize: Some(c_get_object_size),
    C_GetAttributeValue: Some(c_get_attribute_value),
    C_SetAttributeValue: Some(c_set_attribute_value),
    C_FindObjectsInit: Some(c_find_objects_init),
    C_FindObjects: Some(c_find_objects),
    C_FindObjectsFinal: Some(c_find_objects_final),
    C_EncryptInit: Some(c_encrypt_init),
    C_Encrypt: Some(c_encrypt),
    C_EncryptUpdate: Some(c_encrypt_update),
    C_EncryptFinal: Some(c_encrypt_final),
    C_DecryptInit: Some(c_decrypt_init),
    C_Decrypt: Some(c_decrypt),
    C_DecryptUpdate: Some(c_decrypt_update),
    C_DecryptFinal: Some(c_decrypt_final),
    C_DigestInit: Some(c_digest_init),
    C_Digest: Some(c_digest),
    C_DigestUpdate: Some(c_digest_update),
    C_DigestKey: Some(c_digest_key),
    C_DigestFinal: Some(c_digest_final),
    C_SignInit: Some(c_sign_init),
    C_Sign: Some(c_sign),
    C_SignUpdate: Some(c_sign_update),
    C_SignFinal: Some(c_sign_final),
    C_SignRecoverInit: Some(c_sign_recover_init),
    C_SignRecover: Some(c_sign_recover),
    C_VerifyInit: Some(c_verify_init),
    C_Verify: Some(c_verify),
    C_VerifyUpdate: Some(c_verify_update),
    C_VerifyFinal: Some(c_verify_final),
    C_VerifyRecoverInit: Some(c_verify_recover_init),
    C_VerifyRecover: Some(c_verify_recover),
    C_DigestEncryptUpdate: Some(c_digest_encrypt_update),
    C_DecryptDigestUpdate: Some(c_decrypt_digest_update),
    C_SignEncryptUpdate: Some(c_sign_encrypt_update),
    C_DecryptVerifyUpdate: Some(c_decrypt_verify_update),
    C_GenerateKey: Some(c_generate_key),
    C_GenerateKeyPair: Some(c_generate_key_pair),
    C_WrapKey: Some(c_wrap_key),
    C_UnwrapKey: Some(c_unwrap_key),
    C_DeriveKey: Some(c_derive_key),
    C_SeedRandom: Some(c_seed_random),
    C_GenerateRandom: Some(c_generate_random),
    C_GetFunctionStatus: Some(c_get_function_status),
    C_CancelFunction: Some(c_cancel_function),
    C_WaitForSlotEvent: Some(c_wait_for_slot_event),
};
