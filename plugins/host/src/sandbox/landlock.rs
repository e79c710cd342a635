//! Landlock (Linux 5.13+, on in Debian's stock kernel): the worker may read system library
//! directories (so a plugin's own shared-library dependencies still load) and nothing else; no
//! TCP bind/connect (ABI 4+); no signals to, or abstract sockets of, processes outside its domain
//! (ABI 6+). Landlock binds root too, and also forbids ptrace of (so `/proc/PID/mem` of) anything
//! outside the domain. Raw syscalls: glibc has no wrappers.
// The landlock syscalls are FFI by nature; each block says why it is sound.
#![allow(unsafe_code)]

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::SandboxError;

/// Directories (and files) the worker may still read: system libraries and the loader's cache.
pub const READABLE_PATHS: [&str; 6] = [
    "/lib",
    "/lib64",
    "/usr/lib",
    "/usr/lib64",
    "/usr/local/lib",
    "/etc/ld.so.cache",
];

const CREATE_RULESET_VERSION: u32 = 1 << 0;
const RULE_PATH_BENEATH: libc::c_int = 1;

const ACCESS_FS_EXECUTE: u64 = 1 << 0;
const ACCESS_FS_READ_FILE: u64 = 1 << 2;
const ACCESS_FS_READ_DIR: u64 = 1 << 3;
/// Every filesystem right of ABI 1 (execute .. make_sym).
const ACCESS_FS_ABI1: u64 = (1 << 13) - 1;
const ACCESS_FS_REFER: u64 = 1 << 13;
const ACCESS_FS_TRUNCATE: u64 = 1 << 14;
const ACCESS_FS_IOCTL_DEV: u64 = 1 << 15;
const ACCESS_NET_BIND_TCP: u64 = 1 << 0;
const ACCESS_NET_CONNECT_TCP: u64 = 1 << 1;
const SCOPE_ABSTRACT_UNIX_SOCKET: u64 = 1 << 0;
const SCOPE_SIGNAL: u64 = 1 << 1;

#[repr(C)]
struct RulesetAttr {
    handled_access_fs: u64,
    handled_access_net: u64,
    scoped: u64,
}

#[repr(C, packed)]
struct PathBeneathAttr {
    allowed_access: u64,
    parent_fd: i32,
}

/// The kernel's Landlock ABI version, or why there is none (not built in, not in `lsm=`).
pub fn abi_version() -> Result<u32, std::io::Error> {
    // SAFETY: with a NULL attr, size 0 and the VERSION flag the kernel only returns a number.
    let v = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<RulesetAttr>(),
            0usize,
            CREATE_RULESET_VERSION,
        )
    };
    if v < 0 {
        return Err(std::io::Error::last_os_error());
    }
    u32::try_from(v).map_err(|_| std::io::Error::other("landlock ABI out of range"))
}

/// What [`restrict`] enforced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Enforced {
    /// The Landlock ABI version used.
    pub abi: u32,
    /// TCP bind/connect denied (ABI 4+).
    pub network: bool,
    /// Signals and abstract unix sockets scoped to the domain (ABI 6+).
    pub scoped: bool,
}

/// Restricts this process (and its future threads and children) to reading [`READABLE_PATHS`].
/// Needs no_new_privs (set by the caller). Returns `Err(Unsupported)` when the kernel lacks
/// Landlock, so the caller can degrade with a warning.
pub fn restrict() -> Result<Enforced, SandboxError> {
    let abi = abi_version().map_err(|e| SandboxError::LandlockUnsupported(e.to_string()))?;
    let mut fs = ACCESS_FS_ABI1;
    if abi >= 2 {
        fs |= ACCESS_FS_REFER;
    }
    if abi >= 3 {
        fs |= ACCESS_FS_TRUNCATE;
    }
    if abi >= 5 {
        fs |= ACCESS_FS_IOCTL_DEV;
    }
    let attr = RulesetAttr {
        handled_access_fs: fs,
        handled_access_net: if abi >= 4 {
            ACCESS_NET_BIND_TCP | ACCESS_NET_CONNECT_TCP
        } else {
            0
        },
        scoped: if abi >= 6 {
            SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL
        } else {
            0
        },
    };
    // Older kernels reject fields they do not know unless the size leaves them out.
    let size = match abi {
        0..=3 => 8usize,
        4 | 5 => 16,
        _ => std::mem::size_of::<RulesetAttr>(),
    };
    let err = |what: &'static str| SandboxError::Landlock {
        what,
        err: std::io::Error::last_os_error(),
    };
    // SAFETY: attr is a valid ruleset_attr and `size` does not exceed it.
    let fd = unsafe { libc::syscall(libc::SYS_landlock_create_ruleset, &attr, size, 0u32) };
    if fd < 0 {
        return Err(err("create_ruleset"));
    }
    let fd = i32::try_from(fd).map_err(|_| SandboxError::Landlock {
        what: "create_ruleset",
        err: std::io::Error::other("fd out of range"),
    })?;
    // SAFETY: fd is a fresh ruleset descriptor we own exclusively.
    let ruleset = unsafe { OwnedFd::from_raw_fd(fd) };
    for path in READABLE_PATHS {
        let Ok(target) = std::fs::File::open(path) else {
            continue; // absent on this system (e.g. /lib64 on arm64)
        };
        let is_dir = target.metadata().map(|m| m.is_dir()).unwrap_or(false);
        let allowed = if is_dir {
            ACCESS_FS_READ_FILE | ACCESS_FS_READ_DIR | ACCESS_FS_EXECUTE
        } else {
            ACCESS_FS_READ_FILE
        };
        let rule = PathBeneathAttr {
            allowed_access: allowed,
            parent_fd: target.as_raw_fd(),
        };
        // SAFETY: rule is a valid path_beneath_attr; both fds are open for the call.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_landlock_add_rule,
                ruleset.as_raw_fd(),
                RULE_PATH_BENEATH,
                &rule,
                0u32,
            )
        };
        if rc != 0 {
            return Err(err("add_rule"));
        }
    }
    // SAFETY: restrict_self takes the ruleset fd and flags only.
    let rc = unsafe { libc::syscall(libc::SYS_landlock_restrict_self, ruleset.as_raw_fd(), 0u32) };
    if rc != 0 {
        return Err(err("restrict_self"));
    }
    Ok(Enforced {
        abi,
        network: abi >= 4,
        scoped: abi >= 6,
    })
}
