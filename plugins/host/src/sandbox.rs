//! The worker's confinement, applied inside `ca-plugin-worker`: resource limits, death with the
//! parent, and (after the plugin is loaded and configured) a seccomp filter built with the
//! `seccompiler` crate that makes `socket`, `connect`, `execve`, `execveat` and `ptrace` fail with
//! EPERM. A plugin needs none of them: the host performs its HTTP.
// setrlimit/prctl/getppid are libc FFI; each block says why it is sound.
#![allow(unsafe_code)]

use std::collections::BTreeMap;

use seccompiler::{BpfProgram, SeccompAction, SeccompFilter, TargetArch};

/// Resource limits for a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// RLIMIT_AS in bytes.
    pub address_space: u64,
    /// RLIMIT_CPU in seconds (cumulative for the worker's life).
    pub cpu_seconds: u64,
    /// RLIMIT_NOFILE.
    pub open_files: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            address_space: 2 << 30,
            cpu_seconds: 3600,
            open_files: 64,
        }
    }
}

/// Why confinement could not be applied (the worker then refuses to run the plugin).
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// setrlimit failed.
    #[error("setrlimit({what}) failed: {err}")]
    Rlimit {
        /// Which limit.
        what: &'static str,
        /// OS error.
        err: std::io::Error,
    },
    /// prctl(PR_SET_PDEATHSIG) failed.
    #[error("prctl(PR_SET_PDEATHSIG) failed: {0}")]
    DeathSignal(std::io::Error),
    /// Moving the protocol fds failed.
    #[error("redirecting standard fds failed ({what}): {err}")]
    Fds {
        /// Which step.
        what: &'static str,
        /// OS error.
        err: std::io::Error,
    },
    /// The parent is already gone.
    #[error("parent process already exited")]
    Orphaned,
    /// Building or installing the seccomp filter failed.
    #[error("seccomp: {0}")]
    Seccomp(String),
}

fn set_limit(
    resource: libc::__rlimit_resource_t,
    what: &'static str,
    value: u64,
) -> Result<(), SandboxError> {
    let lim = libc::rlimit {
        rlim_cur: value,
        rlim_max: value,
    };
    // SAFETY: setrlimit reads a valid rlimit struct that lives for the call.
    let rc = unsafe { libc::setrlimit(resource, &lim) };
    if rc != 0 {
        return Err(SandboxError::Rlimit {
            what,
            err: std::io::Error::last_os_error(),
        });
    }
    Ok(())
}

/// Applies rlimits (address space, CPU, open files, no core dumps).
pub fn apply_limits(limits: Limits) -> Result<(), SandboxError> {
    set_limit(libc::RLIMIT_AS, "RLIMIT_AS", limits.address_space)?;
    set_limit(libc::RLIMIT_CPU, "RLIMIT_CPU", limits.cpu_seconds)?;
    set_limit(libc::RLIMIT_NOFILE, "RLIMIT_NOFILE", limits.open_files)?;
    set_limit(libc::RLIMIT_CORE, "RLIMIT_CORE", 0)
}

/// Asks the kernel to SIGKILL this process when its parent dies; fails if the parent (whose pid
/// the host passed) is already gone.
pub fn die_with_parent(parent_pid: Option<u32>) -> Result<(), SandboxError> {
    // SAFETY: prctl with PR_SET_PDEATHSIG takes a signal number; no pointers involved.
    let rc = unsafe {
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    if rc != 0 {
        return Err(SandboxError::DeathSignal(std::io::Error::last_os_error()));
    }
    // SAFETY: getppid has no arguments and cannot fail.
    let ppid = unsafe { libc::getppid() };
    match parent_pid {
        Some(expected) if i64::from(ppid) != i64::from(expected) => Err(SandboxError::Orphaned),
        _ => Ok(()),
    }
}

/// The syscalls denied once the plugin is initialised.
pub const DENIED_SYSCALLS: [(&str, i64); 5] = [
    ("socket", libc::SYS_socket),
    ("connect", libc::SYS_connect),
    ("execve", libc::SYS_execve),
    ("execveat", libc::SYS_execveat),
    ("ptrace", libc::SYS_ptrace),
];

/// Installs the seccomp filter (also sets no_new_privs): denied syscalls return EPERM.
pub fn deny_network_and_exec() -> Result<(), SandboxError> {
    let rules: BTreeMap<i64, Vec<seccompiler::SeccompRule>> = DENIED_SYSCALLS
        .iter()
        .map(|(_, nr)| (*nr, Vec::new()))
        .collect();
    let arch = TargetArch::try_from(std::env::consts::ARCH)
        .map_err(|e| SandboxError::Seccomp(e.to_string()))?;
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch,
    )
    .map_err(|e| SandboxError::Seccomp(e.to_string()))?;
    let program: BpfProgram = filter
        .try_into()
        .map_err(|e: seccompiler::BackendError| SandboxError::Seccomp(e.to_string()))?;
    seccompiler::apply_filter(&program).map_err(|e| SandboxError::Seccomp(e.to_string()))
}

/// Moves the protocol off fds 0 and 1: returns private duplicates of stdin and stdout (close-on-
/// exec) and points fd 0 at /dev/null and fd 1 at stderr, so a plugin that prints (or reads)
/// cannot corrupt the frame stream.
pub fn protocol_pipes() -> Result<(std::fs::File, std::fs::File), SandboxError> {
    use std::os::fd::FromRawFd;
    let err = |what: &'static str| SandboxError::Fds {
        what,
        err: std::io::Error::last_os_error(),
    };
    // SAFETY: fcntl(F_DUPFD_CLOEXEC) on fds 0 and 1, which the host opened as pipes.
    let input = unsafe { libc::fcntl(0, libc::F_DUPFD_CLOEXEC, 3) };
    if input < 0 {
        return Err(err("dup stdin"));
    }
    // SAFETY: as above.
    let output = unsafe { libc::fcntl(1, libc::F_DUPFD_CLOEXEC, 3) };
    if output < 0 {
        return Err(err("dup stdout"));
    }
    let null = std::fs::File::open("/dev/null").map_err(|e| SandboxError::Fds {
        what: "open /dev/null",
        err: e,
    })?;
    // SAFETY: dup2 onto the standard fds; both source fds are open.
    if unsafe { libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&null), 0) } < 0 {
        return Err(err("dup2 stdin"));
    }
    // SAFETY: as above; fd 2 is the inherited stderr.
    if unsafe { libc::dup2(2, 1) } < 0 {
        return Err(err("dup2 stdout"));
    }
    // SAFETY: input and output are fresh fds we own exclusively from here on.
    Ok(unsafe {
        (
            std::fs::File::from_raw_fd(input),
            std::fs::File::from_raw_fd(output),
        )
    })
}
