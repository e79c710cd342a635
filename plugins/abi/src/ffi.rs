//! The Rust mirror of `include/ca_plugin.h` and every `unsafe` line of the ABI: the plugin-side
//! trampolines the export macro installs, and the host-side safe wrapper around a plugin's table.
//!
//! Layout is pinned by const assertions that match the header's `_Static_assert`s.

use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicPtr, Ordering};

use crate::doc::{self, MAX_INPUT_BYTES, MAX_OUTPUT_BYTES};
use crate::sdk::{self, StepError, Verifier};
use crate::status::StatusCode;

/// CA_PLUGIN_ABI_MAJOR
pub const ABI_MAJOR: u32 = 1;
/// CA_PLUGIN_ABI_MINOR
pub const ABI_MINOR: u32 = 1;
/// The exported entry symbol's name, NUL-terminated for dlsym.
pub const INIT_SYMBOL: &[u8] = b"ca_plugin_init_v1\0";

/// `ca_sink_write_fn`: the host copies `len` bytes at `data` before returning.
pub type SinkWriteFn = unsafe extern "C" fn(ctx: *mut c_void, data: *const u8, len: usize) -> i32;
/// `ca_log_fn`: a UTF-8 log line from the plugin, copied by the host.
pub type LogFn = unsafe extern "C" fn(ctx: *mut c_void, level: i32, msg: *const u8, len: usize);
/// `describe`
pub type DescribeFn = unsafe extern "C" fn(out: *const CaSink) -> i32;
/// `configure`
pub type ConfigureFn = unsafe extern "C" fn(
    cfg: *const u8,
    len: usize,
    instance: *mut *mut c_void,
    err: *const CaSink,
) -> i32;
/// `step`
pub type StepFn = unsafe extern "C" fn(
    instance: *mut c_void,
    input: *const u8,
    len: usize,
    out: *const CaSink,
) -> i32;
/// `destroy`
pub type DestroyFn = unsafe extern "C" fn(instance: *mut c_void);
/// `ca_plugin_init_v1`
pub type InitFn = unsafe extern "C" fn(host: *const CaHostApi, out: *mut *const CaPluginApi) -> i32;

/// `ca_sink`: a host-provided output channel.
#[repr(C)]
#[derive(Debug)]
pub struct CaSink {
    /// Opaque host context.
    pub ctx: *mut c_void,
    /// Copying write callback.
    pub write: Option<SinkWriteFn>,
}

/// `ca_host_api`: what the host offers a plugin.
#[repr(C)]
#[derive(Debug)]
pub struct CaHostApi {
    /// Host ABI major.
    pub abi_major: u32,
    /// Host ABI minor.
    pub abi_minor: u32,
    /// `sizeof(ca_host_api)` as the host knows it.
    pub struct_size: u32,
    /// Zero.
    pub reserved: u32,
    /// Context for `log`.
    pub log_ctx: *mut c_void,
    /// Log callback; may be NULL.
    pub log: Option<LogFn>,
}

/// `ca_plugin_api`: the plugin's static function table.
#[repr(C)]
#[derive(Debug)]
pub struct CaPluginApi {
    /// Plugin ABI major.
    pub abi_major: u32,
    /// Plugin ABI minor.
    pub abi_minor: u32,
    /// `sizeof(ca_plugin_api)` as the plugin knows it.
    pub struct_size: u32,
    /// Zero.
    pub reserved: u32,
    /// Writes the manifest JSON.
    pub describe: Option<DescribeFn>,
    /// Validates config and creates an instance.
    pub configure: Option<ConfigureFn>,
    /// StepInput -> StepOutput.
    pub step: Option<StepFn>,
    /// Frees an instance.
    pub destroy: Option<DestroyFn>,
}

#[cfg(target_pointer_width = "64")]
const _: () = {
    assert!(std::mem::size_of::<CaSink>() == 16);
    assert!(std::mem::offset_of!(CaSink, write) == 8);
    assert!(std::mem::size_of::<CaHostApi>() == 32);
    assert!(std::mem::offset_of!(CaHostApi, log_ctx) == 16);
    assert!(std::mem::offset_of!(CaHostApi, log) == 24);
    assert!(std::mem::size_of::<CaPluginApi>() == 48);
    assert!(std::mem::offset_of!(CaPluginApi, describe) == 16);
    assert!(std::mem::offset_of!(CaPluginApi, configure) == 24);
    assert!(std::mem::offset_of!(CaPluginApi, step) == 32);
    assert!(std::mem::offset_of!(CaPluginApi, destroy) == 40);
};

// ---------------------------------------------------------------------------------------------
// Plugin side: what `export_verifier!` installs.
// ---------------------------------------------------------------------------------------------

/// The host table the plugin was initialised with (per plugin library: each cdylib has its own).
static HOST: AtomicPtr<CaHostApi> = AtomicPtr::new(ptr::null_mut());

/// A configured plugin instance plus its poison flag (set forever after a panic).
struct Instance<T> {
    poisoned: AtomicBool,
    inner: T,
}

/// What the export trampolines need from a plugin type: the verifier and channel SDK traits
/// both reduce to this (bytes in, bytes out), so one set of `unsafe` trampolines serves both.
#[doc(hidden)]
pub trait Entry: Sized + Send + 'static {
    /// The manifest as JSON.
    fn manifest_json() -> Result<Vec<u8>, serde_json::Error>;
    /// Parses and validates the config; the message names no secret.
    fn configure_bytes(cfg: &[u8]) -> Result<Self, String>;
    /// One step on raw input bytes (already size-checked).
    fn step_bytes(&self, input: &[u8]) -> Result<Vec<u8>, (StatusCode, String)>;
}

/// A [`Verifier`] behind the trampolines.
#[doc(hidden)]
pub struct VerifierEntry<T>(T);

impl<T: Verifier> Entry for VerifierEntry<T> {
    fn manifest_json() -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(&T::manifest())
    }

    fn configure_bytes(cfg: &[u8]) -> Result<Self, String> {
        let config: T::Config =
            serde_json::from_slice(cfg).map_err(|e| crate::sdk::json_error("config", &e))?;
        T::configure(config)
            .map(VerifierEntry)
            .map_err(|e| e.to_string())
    }

    fn step_bytes(&self, input: &[u8]) -> Result<Vec<u8>, (StatusCode, String)> {
        let doc: doc::StepInput = serde_json::from_slice(input).map_err(|e| {
            (
                StatusCode::InvalidArgument,
                crate::sdk::json_error("StepInput", &e),
            )
        })?;
        if doc.v != doc::DOC_VERSION {
            return Err((
                StatusCode::InvalidArgument,
                format!("StepInput v {} is not 1", doc.v),
            ));
        }
        if let Some(raw) = self.0.raw_reply_for_tests(&doc) {
            return Ok(raw);
        }
        let output = self
            .0
            .step(doc)
            .map_err(|e: StepError| (e.code(), e.to_string()))?;
        serde_json::to_vec(&output).map_err(|e| {
            (
                StatusCode::Internal,
                crate::sdk::json_error("StepOutput", &e),
            )
        })
    }
}

/// A [`sdk::Channel`] behind the trampolines.
#[doc(hidden)]
pub struct ChannelEntry<T>(T);

impl<T: sdk::Channel> Entry for ChannelEntry<T> {
    fn manifest_json() -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(&T::manifest())
    }

    fn configure_bytes(cfg: &[u8]) -> Result<Self, String> {
        let config: T::Config =
            serde_json::from_slice(cfg).map_err(|e| crate::sdk::json_error("config", &e))?;
        T::configure(config)
            .map(ChannelEntry)
            .map_err(|e| e.to_string())
    }

    fn step_bytes(&self, input: &[u8]) -> Result<Vec<u8>, (StatusCode, String)> {
        let doc: crate::channel::ChannelInput = serde_json::from_slice(input).map_err(|e| {
            (
                StatusCode::InvalidArgument,
                crate::sdk::json_error("ChannelInput", &e),
            )
        })?;
        if doc.v != doc::DOC_VERSION {
            return Err((
                StatusCode::InvalidArgument,
                format!("ChannelInput v {} is not 1", doc.v),
            ));
        }
        let output = self
            .0
            .deliver(doc)
            .map_err(|e: StepError| (e.code(), e.to_string()))?;
        serde_json::to_vec(&output).map_err(|e| {
            (
                StatusCode::Internal,
                crate::sdk::json_error("ChannelOutput", &e),
            )
        })
    }
}

/// The function table for verifier `T`; the export macro puts it in a `static`.
pub const fn plugin_table<T: Verifier>() -> CaPluginApi {
    entry_table::<VerifierEntry<T>>()
}

/// The function table for channel plugin `T`; `export_channel!` puts it in a `static`.
pub const fn channel_table<T: sdk::Channel>() -> CaPluginApi {
    entry_table::<ChannelEntry<T>>()
}

const fn entry_table<E: Entry>() -> CaPluginApi {
    CaPluginApi {
        abi_major: ABI_MAJOR,
        abi_minor: ABI_MINOR,
        struct_size: std::mem::size_of::<CaPluginApi>() as u32,
        reserved: 0,
        describe: Some(describe_trampoline::<E>),
        configure: Some(configure_trampoline::<E>),
        step: Some(step_trampoline::<E>),
        destroy: Some(destroy_trampoline::<E>),
    }
}

/// Body of `ca_plugin_init_v1`: checks the host's ABI and hands out `api`.
///
/// # Safety
/// `host` must be NULL or point to a valid `ca_host_api` living for the whole process; `out` must
/// be NULL or valid for one pointer write.
pub unsafe fn plugin_init(
    host: *const CaHostApi,
    out: *mut *const CaPluginApi,
    api: &'static CaPluginApi,
) -> i32 {
    if host.is_null() || out.is_null() {
        return StatusCode::InvalidArgument.code();
    }
    // SAFETY: host is non-null and valid per this function's contract; the header fields exist in
    // every version of the table.
    let (major, size) = unsafe { ((*host).abi_major, (*host).struct_size) };
    if major != ABI_MAJOR || (size as usize) < std::mem::size_of::<CaHostApi>() {
        return StatusCode::AbiMismatch.code();
    }
    HOST.store(host.cast_mut(), Ordering::Release);
    // SAFETY: out is non-null and writable per this function's contract.
    unsafe { out.write(api) };
    StatusCode::Ok.code()
}

/// Sends a log line to the host's log callback, if any.
pub(crate) fn host_log(level: i32, msg: &str) {
    let host = HOST.load(Ordering::Acquire);
    if host.is_null() {
        return;
    }
    // SAFETY: HOST is only set by plugin_init from a host table that lives for the process.
    let (ctx, log) = unsafe { ((*host).log_ctx, (*host).log) };
    if let Some(log) = log {
        // SAFETY: msg is a valid slice for the call; the host copies it.
        unsafe { log(ctx, level, msg.as_ptr(), msg.len()) };
    }
}

/// Writes `data` to a host sink; SINK if the host refuses it.
///
/// # Safety
/// `sink` must be NULL or point to a valid `ca_sink` for the duration of the call.
unsafe fn sink_write(sink: *const CaSink, data: &[u8]) -> i32 {
    if sink.is_null() {
        return StatusCode::InvalidArgument.code();
    }
    // SAFETY: sink is non-null and valid per the contract.
    let (ctx, write) = unsafe { ((*sink).ctx, (*sink).write) };
    match write {
        // SAFETY: the host's callback copies exactly data.len() bytes from a live slice.
        Some(write) => unsafe { write(ctx, data.as_ptr(), data.len()) },
        None => StatusCode::InvalidArgument.code(),
    }
}

/// Borrows `(ptr, len)` as a slice, or None for a NULL pointer with a non-zero length.
///
/// # Safety
/// A non-null `ptr` must be valid for `len` bytes for the lifetime `'a`.
unsafe fn borrow<'a>(ptr: *const u8, len: usize) -> Option<&'a [u8]> {
    if len == 0 {
        return Some(&[]);
    }
    if ptr.is_null() {
        return None;
    }
    // SAFETY: non-null and valid for len bytes per the contract.
    Some(unsafe { std::slice::from_raw_parts(ptr, len) })
}

fn panic_code() -> i32 {
    StatusCode::Panic.code()
}

unsafe extern "C" fn describe_trampoline<E: Entry>(out: *const CaSink) -> i32 {
    let json = match catch_unwind(E::manifest_json) {
        Ok(Ok(json)) => json,
        Ok(Err(_)) => return StatusCode::Internal.code(),
        Err(_) => return panic_code(),
    };
    if json.len() > MAX_OUTPUT_BYTES {
        return StatusCode::Sink.code();
    }
    // SAFETY: out comes from the host per the ABI contract (valid for the call, or NULL).
    unsafe { sink_write(out, &json) }
}

unsafe extern "C" fn configure_trampoline<E: Entry>(
    cfg: *const u8,
    len: usize,
    instance: *mut *mut c_void,
    err: *const CaSink,
) -> i32 {
    if instance.is_null() {
        return StatusCode::InvalidArgument.code();
    }
    // SAFETY: the host guarantees cfg is valid for len bytes during the call.
    let Some(cfg) = (unsafe { borrow(cfg, len) }) else {
        return StatusCode::InvalidArgument.code();
    };
    let made = catch_unwind(AssertUnwindSafe(|| E::configure_bytes(cfg)));
    match made {
        Ok(Ok(inner)) => {
            let boxed = Box::new(Instance {
                poisoned: AtomicBool::new(false),
                inner,
            });
            // SAFETY: instance is non-null and writable per the ABI contract.
            unsafe { instance.write(Box::into_raw(boxed).cast::<c_void>()) };
            StatusCode::Ok.code()
        }
        Ok(Err(msg)) => {
            // SAFETY: err is the host's sink for this call (or NULL, handled).
            let _ = unsafe { sink_write(err, msg.as_bytes()) };
            StatusCode::Config.code()
        }
        Err(_) => panic_code(),
    }
}

unsafe extern "C" fn step_trampoline<E: Entry>(
    instance: *mut c_void,
    input: *const u8,
    len: usize,
    out: *const CaSink,
) -> i32 {
    if instance.is_null() {
        return StatusCode::InvalidArgument.code();
    }
    // SAFETY: instance was made by configure_trampoline::<E> and not yet destroyed; the host never
    // calls step concurrently on one instance, and we only take a shared reference.
    let inst = unsafe { &*instance.cast::<Instance<E>>() };
    if inst.poisoned.load(Ordering::Acquire) {
        return StatusCode::Panic.code();
    }
    if len > MAX_INPUT_BYTES {
        return StatusCode::InvalidArgument.code();
    }
    // SAFETY: the host guarantees input is valid for len bytes during the call.
    let Some(input) = (unsafe { borrow(input, len) }) else {
        return StatusCode::InvalidArgument.code();
    };
    let result = catch_unwind(AssertUnwindSafe(|| inst.inner.step_bytes(input)));
    match result {
        Ok(Ok(json)) => {
            // SAFETY: out is the host's sink for this call (or NULL, handled); the host enforces
            // its own cap (MAX_OUTPUT_BYTES) and refuses larger writes.
            match unsafe { sink_write(out, &json) } {
                0 => StatusCode::Ok.code(),
                _ => StatusCode::Sink.code(),
            }
        }
        Ok(Err((code, msg))) => {
            // SAFETY: as above; the diagnostic is best effort.
            let _ = unsafe { sink_write(out, msg.as_bytes()) };
            code.code()
        }
        Err(_) => {
            inst.poisoned.store(true, Ordering::Release);
            sdk::log_error("step panicked; instance poisoned");
            panic_code()
        }
    }
}

unsafe extern "C" fn destroy_trampoline<E: Entry>(instance: *mut c_void) {
    if instance.is_null() {
        return;
    }
    // SAFETY: instance was made by Box::into_raw in configure_trampoline::<E>; the host calls
    // destroy exactly once and never uses the pointer afterwards.
    let boxed = unsafe { Box::from_raw(instance.cast::<Instance<E>>()) };
    let _ = catch_unwind(AssertUnwindSafe(move || drop(boxed)));
}

// ---------------------------------------------------------------------------------------------
// Host side: a safe wrapper around a plugin's table.
// ---------------------------------------------------------------------------------------------

/// Why a plugin's table or a call into it failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The plugin returned a non-OK status (the message is the plugin's diagnostic, truncated).
    #[error("plugin returned {code_name} ({code}): {message}")]
    Status {
        /// Raw status code.
        code: i32,
        /// Its name, or `unknown`.
        code_name: &'static str,
        /// Plugin diagnostic, truncated to 512 bytes.
        message: String,
    },
    /// The plugin's output exceeded the cap.
    #[error("plugin output exceeds {cap} bytes")]
    Oversize {
        /// The cap in bytes.
        cap: usize,
    },
    /// The table is unusable: wrong major, too small, missing function.
    #[error("ABI mismatch: {0}")]
    Abi(String),
}

impl CallError {
    /// The typed status, if the error is a known status code.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            CallError::Status { code, .. } => StatusCode::from_code(*code),
            CallError::Oversize { .. } => Some(StatusCode::Sink),
            CallError::Abi(_) => Some(StatusCode::AbiMismatch),
        }
    }
}

/// Collects sink writes up to a cap.
struct SinkBuf {
    data: Vec<u8>,
    cap: usize,
    overflow: bool,
}

unsafe extern "C" fn host_sink_write(ctx: *mut c_void, data: *const u8, len: usize) -> i32 {
    if ctx.is_null() {
        return StatusCode::InvalidArgument.code();
    }
    // SAFETY: ctx is the SinkBuf the host created for this call (see with_sink), exclusively
    // borrowed for its duration.
    let buf = unsafe { &mut *ctx.cast::<SinkBuf>() };
    if buf.data.len().saturating_add(len) > buf.cap {
        buf.overflow = true;
        return StatusCode::Sink.code();
    }
    // SAFETY: the plugin passes a slice valid for len bytes during this call.
    match unsafe { borrow(data, len) } {
        Some(slice) => {
            buf.data.extend_from_slice(slice);
            StatusCode::Ok.code()
        }
        None => StatusCode::InvalidArgument.code(),
    }
}

fn with_sink<R>(cap: usize, f: impl FnOnce(*const CaSink) -> R) -> (R, SinkBuf) {
    let mut buf = SinkBuf {
        data: Vec::new(),
        cap,
        overflow: false,
    };
    let sink = CaSink {
        ctx: ptr::addr_of_mut!(buf).cast::<c_void>(),
        write: Some(host_sink_write),
    };
    let r = f(&sink);
    (r, buf)
}

fn status_error(code: i32, buf: &SinkBuf) -> CallError {
    let mut msg = buf.data.clone();
    msg.truncate(512);
    CallError::Status {
        code,
        code_name: StatusCode::from_code(code).map_or("unknown", StatusCode::name),
        message: String::from_utf8_lossy(&msg).into_owned(),
    }
}

unsafe extern "C" fn host_log_trampoline(ctx: *mut c_void, level: i32, msg: *const u8, len: usize) {
    if ctx.is_null() {
        return;
    }
    // SAFETY: ctx is the leaked `fn(i32, &str)` made by leak_host_api, alive forever.
    let log = unsafe { *ctx.cast::<fn(i32, &str)>() };
    // SAFETY: the plugin passes a slice valid for len bytes during this call.
    if let Some(bytes) = unsafe { borrow(msg, len.min(4096)) } {
        let _ = catch_unwind(|| log(level, &String::from_utf8_lossy(bytes)));
    }
}

/// A host table living for the process, forwarding plugin log lines to `log`.
pub fn leak_host_api(log: fn(i32, &str)) -> &'static CaHostApi {
    let ctx: &'static mut fn(i32, &str) = Box::leak(Box::new(log));
    Box::leak(Box::new(CaHostApi {
        abi_major: ABI_MAJOR,
        abi_minor: ABI_MINOR,
        struct_size: std::mem::size_of::<CaHostApi>() as u32,
        reserved: 0,
        log_ctx: ptr::from_mut(ctx).cast::<c_void>(),
        log: Some(host_log_trampoline),
    }))
}

/// A plugin's function table, checked for ABI compatibility. `Copy`: it points into a library
/// that is never unloaded.
#[derive(Debug, Clone, Copy)]
pub struct PluginTable {
    describe: DescribeFn,
    configure: ConfigureFn,
    step: StepFn,
    destroy: DestroyFn,
    /// The plugin's ABI minor version.
    pub abi_minor: u32,
}

impl PluginTable {
    /// Calls a plugin's `ca_plugin_init_v1` and checks the table it returns.
    ///
    /// # Safety
    /// `init` must be the `ca_plugin_init_v1` symbol of a library that stays loaded for the rest
    /// of the process (never dlclose'd), honouring `ca_plugin.h`.
    pub unsafe fn from_init(
        init: InitFn,
        host: &'static CaHostApi,
    ) -> Result<PluginTable, CallError> {
        let mut api: *const CaPluginApi = ptr::null();
        // SAFETY: per this function's contract init is a real entry point; host lives forever and
        // api is a valid out-pointer.
        let rc = unsafe { init(host, &mut api) };
        if rc != 0 {
            return Err(CallError::Abi(format!(
                "ca_plugin_init_v1 returned {}",
                StatusCode::from_code(rc).map_or("an unknown code", StatusCode::name)
            )));
        }
        if api.is_null() {
            return Err(CallError::Abi(
                "ca_plugin_init_v1 returned a NULL table".into(),
            ));
        }
        // SAFETY: a non-null table from the plugin; its three header fields exist in every version.
        let (major, minor, size) =
            unsafe { ((*api).abi_major, (*api).abi_minor, (*api).struct_size) };
        if major != ABI_MAJOR {
            return Err(CallError::Abi(format!(
                "plugin ABI major {major}, host {ABI_MAJOR}"
            )));
        }
        if (size as usize) < std::mem::size_of::<CaPluginApi>() {
            return Err(CallError::Abi(format!(
                "plugin table is {size} bytes, v1 needs 48"
            )));
        }
        // SAFETY: struct_size says the whole v1.0 table is present; it is static in the library.
        let table = unsafe { &*api };
        match (table.describe, table.configure, table.step, table.destroy) {
            (Some(describe), Some(configure), Some(step), Some(destroy)) => Ok(PluginTable {
                describe,
                configure,
                step,
                destroy,
                abi_minor: minor,
            }),
            _ => Err(CallError::Abi("a required v1.0 function is NULL".into())),
        }
    }

    /// Calls `describe` and returns the manifest bytes (capped).
    pub fn describe(&self) -> Result<Vec<u8>, CallError> {
        // SAFETY: the sink and its buffer outlive the call; the table was checked by from_init.
        let (rc, buf) = with_sink(MAX_OUTPUT_BYTES, |sink| unsafe { (self.describe)(sink) });
        finish(rc, buf)
    }

    /// Calls `configure`; on success the returned instance is destroyed when dropped.
    pub fn configure(&self, cfg: &[u8]) -> Result<PluginInstance, CallError> {
        let mut inst: *mut c_void = ptr::null_mut();
        // SAFETY: cfg is a live slice, inst a valid out-pointer, the sink outlives the call.
        let (rc, buf) = with_sink(4096, |sink| unsafe {
            (self.configure)(cfg.as_ptr(), cfg.len(), &mut inst, sink)
        });
        if rc != 0 {
            return Err(status_error(rc, &buf));
        }
        if inst.is_null() {
            return Err(CallError::Abi(
                "configure returned OK and a NULL instance".into(),
            ));
        }
        Ok(PluginInstance {
            table: *self,
            ptr: inst,
        })
    }
}

fn finish(rc: i32, buf: SinkBuf) -> Result<Vec<u8>, CallError> {
    if buf.overflow {
        return Err(CallError::Oversize { cap: buf.cap });
    }
    if rc != 0 {
        return Err(status_error(rc, &buf));
    }
    Ok(buf.data)
}

/// A configured plugin instance. `Send` (moves between threads) but not `Sync`: the ABI forbids
/// concurrent calls on one instance, so callers wrap it in a mutex.
#[derive(Debug)]
pub struct PluginInstance {
    table: PluginTable,
    ptr: *mut c_void,
}

// SAFETY: the ABI lets the host call an instance from any thread as long as calls do not overlap;
// `step` takes `&mut self`, so the borrow checker enforces "one at a time".
unsafe impl Send for PluginInstance {}

impl PluginInstance {
    /// Calls `step` with a StepInput document; returns the raw StepOutput bytes (capped).
    pub fn step(&mut self, input: &[u8]) -> Result<Vec<u8>, CallError> {
        let inst = self.ptr;
        // SAFETY: inst is live (destroyed only in Drop), input a live slice, the sink outlives the
        // call, and &mut self forbids overlapping calls.
        let (rc, buf) = with_sink(MAX_OUTPUT_BYTES, |sink| unsafe {
            (self.table.step)(inst, input.as_ptr(), input.len(), sink)
        });
        finish(rc, buf)
    }
}

impl Drop for PluginInstance {
    fn drop(&mut self) {
        // SAFETY: ptr came from this table's configure and is destroyed exactly once, here.
        unsafe { (self.table.destroy)(self.ptr) };
    }
}
