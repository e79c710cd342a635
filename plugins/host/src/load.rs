//! Hash-checked loading: open with O_NOFOLLOW, hash the open fd, dlopen `/proc/self/fd/N` (no
//! check-then-load race), never dlclose. Used in-process and inside the worker.
// dlopen and resolving the entry symbol are FFI by nature; each block says why it is sound.
#![allow(unsafe_code)]

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::fd::{AsRawFd, IntoRawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use plugin_abi::ffi::{self, InitFn, PluginTable};
use sha2::{Digest, Sha256};

use crate::error::PluginError;

/// Opens `path` without following symlinks and returns the file and its SHA-256 (lowercase hex).
pub fn open_and_hash(path: &Path) -> Result<(File, String), PluginError> {
    let open_err = |reason: String| PluginError::Open {
        path: path.display().to_string(),
        reason,
    };
    let mut file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| open_err(e.to_string()))?;
    let meta = file.metadata().map_err(|e| open_err(e.to_string()))?;
    if !meta.is_file() {
        return Err(open_err("not a regular file".into()));
    }
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf).map_err(|e| open_err(e.to_string()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok((file, hex::encode(hasher.finalize())))
}

/// SHA-256 of a file (lowercase hex), for operators approving a plugin.
pub fn sha256_file(path: &Path) -> Result<String, PluginError> {
    open_and_hash(path).map(|(_, h)| h)
}

fn host_log(level: i32, msg: &str) {
    crate::scrub::emit_plugin_log(level, msg);
}

/// Verifies the hash, dlopens the very file that was hashed and returns its checked table.
/// The library is leaked on purpose: unloading plugins is unsound, so it is never dlclose'd; its
/// fd stays open too (one per load) so that no later load can reuse its `/proc/self/fd/N` name.
pub fn load_verified(path: &Path, expected_sha256: &str) -> Result<PluginTable, PluginError> {
    let (file, actual) = open_and_hash(path)?;
    let expected = expected_sha256.trim().to_ascii_lowercase();
    if actual != expected {
        return Err(PluginError::HashMismatch { expected, actual });
    }
    let fd_path = format!("/proc/self/fd/{}", file.as_raw_fd());
    // SAFETY: loading runs the library's initialisers; the file's hash was approved by the
    // operator, and dlopen reads the same open file we hashed (no path race).
    let lib = unsafe { libloading::Library::new(&fd_path) }
        .map_err(|e| PluginError::Load(e.to_string()))?;
    // Keep the fd open for the life of the process, like the library itself: glibc's dlopen
    // matches already-loaded objects by name, so if fd N were closed and reused by the next
    // plugin, dlopen("/proc/self/fd/N") would hand back the FIRST plugin's library.
    let _ = file.into_raw_fd();
    let lib: &'static libloading::Library = Box::leak(Box::new(lib));
    // SAFETY: the symbol's type is fixed by ca_plugin.h (ca_plugin_init_v1_fn).
    let init: libloading::Symbol<'static, InitFn> = unsafe { lib.get(ffi::INIT_SYMBOL) }
        .map_err(|e| PluginError::Load(format!("entry symbol: {e}")))?;
    let host = host_api();
    // SAFETY: init is the library's ca_plugin_init_v1 and the library is never unloaded (leaked).
    unsafe { PluginTable::from_init(*init, host) }.map_err(|e| PluginError::Abi(e.to_string()))
}

/// The process-wide host table handed to every plugin.
struct HostApiRef(&'static ffi::CaHostApi);

// SAFETY: the table is leaked and never mutated after creation; its raw context pointer points to
// an immutable leaked `fn` pointer, so sharing it between threads is sound.
unsafe impl Sync for HostApiRef {}
// SAFETY: as above: immutable, 'static data.
unsafe impl Send for HostApiRef {}

fn host_api() -> &'static ffi::CaHostApi {
    static HOST: std::sync::OnceLock<HostApiRef> = std::sync::OnceLock::new();
    HOST.get_or_init(|| HostApiRef(ffi::leak_host_api(host_log)))
        .0
}
