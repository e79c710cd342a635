//! Hash-checked loading: the library (opened with O_NOFOLLOW) is copied into a sealed memfd
//! (no more writes, growth or shrinking, seals locked), the hash is computed on the memfd's bytes,
//! and dlopen maps `/proc/self/fd/N` of that memfd. So the bytes that run are exactly the bytes
//! whose hash was approved: rewriting the library file after loading changes nothing (a plain
//! file mapping would page the new bytes in). Never dlclose'd. Used in-process and in the worker.
// dlopen and resolving the entry symbol are FFI by nature; each block says why it is sound.
#![allow(unsafe_code)]

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
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

/// A plugin library copied into a sealed memfd, with the SHA-256 of the memfd's bytes.
#[derive(Debug)]
pub struct SealedLibrary {
    memfd: File,
    sha256: String,
}

impl SealedLibrary {
    /// SHA-256 (lowercase hex) of the sealed bytes: the bytes that will run.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// Fails with `HashMismatch` unless the sealed bytes have the approved hash.
    pub fn verify(&self, expected_sha256: &str) -> Result<(), PluginError> {
        let expected = expected_sha256.trim().to_ascii_lowercase();
        if self.sha256 != expected {
            return Err(PluginError::HashMismatch {
                expected,
                actual: self.sha256.clone(),
            });
        }
        Ok(())
    }
}

/// `MFD_EXEC` (Linux 6.3+): say explicitly that this memfd will be mapped executable, so a
/// `vm.memfd_noexec = 1` default does not make it non-executable (older kernels: EINVAL, retried
/// without it).
const MFD_EXEC: libc::c_uint = 0x0010;

fn memfd(name: &std::ffi::CStr) -> std::io::Result<File> {
    let base = libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING;
    // SAFETY: memfd_create reads a NUL-terminated name that outlives the call.
    let mut fd = unsafe { libc::memfd_create(name.as_ptr(), base | MFD_EXEC) };
    if fd < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINVAL) {
        // SAFETY: as above.
        fd = unsafe { libc::memfd_create(name.as_ptr(), base) };
    }
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor we own exclusively.
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// Copies the library at `path` (no symlinks, regular files only) into a memfd, seals it against
/// any change (write, grow, shrink, further sealing) and hashes the sealed bytes.
pub fn seal(path: &Path) -> Result<SealedLibrary, PluginError> {
    let open_err = |reason: String| PluginError::Open {
        path: path.display().to_string(),
        reason,
    };
    let mut source = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| open_err(e.to_string()))?;
    let meta = source.metadata().map_err(|e| open_err(e.to_string()))?;
    if !meta.is_file() {
        return Err(open_err("not a regular file".into()));
    }
    let mut memfd = memfd(c"ca-plugin").map_err(|e| open_err(format!("memfd_create: {e}")))?;
    std::io::copy(&mut source, &mut memfd).map_err(|e| open_err(format!("copy: {e}")))?;
    drop(source);
    let seals = libc::F_SEAL_WRITE | libc::F_SEAL_GROW | libc::F_SEAL_SHRINK | libc::F_SEAL_SEAL;
    // SAFETY: fcntl(F_ADD_SEALS) on a memfd we own; an int argument, no pointers.
    if unsafe { libc::fcntl(memfd.as_raw_fd(), libc::F_ADD_SEALS, seals) } != 0 {
        return Err(open_err(format!(
            "sealing: {}",
            std::io::Error::last_os_error()
        )));
    }
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut offset = 0u64;
    loop {
        let n = memfd
            .read_at(&mut buf, offset)
            .map_err(|e| open_err(e.to_string()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        offset += n as u64;
    }
    Ok(SealedLibrary {
        memfd,
        sha256: hex::encode(hasher.finalize()),
    })
}

/// Seals the library, verifies the hash of the sealed bytes, dlopens them and returns the
/// checked table (see [`load_sealed`]).
pub fn load_verified(path: &Path, expected_sha256: &str) -> Result<PluginTable, PluginError> {
    let sealed = seal(path)?;
    sealed.verify(expected_sha256)?;
    load_sealed(sealed)
}

/// Dlopens a sealed library (whose hash the caller verified) and returns its checked table.
/// The library is leaked on purpose: unloading plugins is unsound, so it is never dlclose'd; its
/// memfd stays open too (one per load) so that no later load can reuse its `/proc/self/fd/N` name.
pub fn load_sealed(sealed: SealedLibrary) -> Result<PluginTable, PluginError> {
    let fd_path = format!("/proc/self/fd/{}", sealed.memfd.as_raw_fd());
    // SAFETY: loading runs the library's initialisers; the sealed bytes' hash was approved by
    // the operator and the seals make dlopen map exactly those bytes.
    let lib = unsafe { libloading::Library::new(&fd_path) }
        .map_err(|e| PluginError::Load(e.to_string()))?;
    // Keep the fd open for the life of the process, like the library itself: glibc's dlopen
    // matches already-loaded objects by name, so if fd N were closed and reused by the next
    // plugin, dlopen("/proc/self/fd/N") would hand back the FIRST plugin's library.
    let _ = sealed.memfd.into_raw_fd();
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
