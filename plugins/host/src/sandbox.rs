//! The worker's confinement, applied inside `ca-plugin-worker`, in layers, all of them BEFORE
//! the plugin library is loaded (so its constructors run confined too):
//! 1. inherited fds beyond 0-2 closed; resource limits (address space, CPU, open files, no core
//!    dumps, `RLIMIT_NPROC` 0: no new process for an unprivileged worker); death with the parent;
//!    no_new_privs;
//!    optionally a separate user ([`switch_user`]);
//! 2. [`landlock`]: read access to system library directories only (no file of the appliance),
//!    no TCP, no signals or ptrace outside the worker. Where the kernel lacks Landlock the worker
//!    prints a loud warning and goes on with the other layers;
//! 3. [`seccomp`]: an allow-list (no socket, exec, fork, ptrace, process_vm_*, io_uring, signals
//!    to other processes); after `configure`, a second filter denies opening any file at all.
//!
//! A plugin needs none of this: the host performs its HTTP.
// setrlimit/prctl/getppid/close_range are libc FFI; each block says why it is sound.
#![allow(unsafe_code)]

pub mod landlock;
pub mod seccomp;

/// Resource limits for a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// RLIMIT_AS in bytes.
    pub address_space: u64,
    /// RLIMIT_CPU in seconds (cumulative for the worker's life).
    pub cpu_seconds: u64,
    /// RLIMIT_NOFILE.
    pub open_files: u64,
    /// RLIMIT_NPROC (counted per user; 0 = an unprivileged worker can start no process or
    /// thread; root ignores it, where the seccomp filter still refuses fork).
    pub processes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            address_space: 2 << 30,
            cpu_seconds: 3600,
            open_files: 64,
            processes: 0,
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
    /// The kernel has no Landlock (not built in, or not in the `lsm=` list).
    #[error("landlock unavailable: {0}")]
    LandlockUnsupported(String),
    /// A Landlock call failed on a kernel that has it.
    #[error("landlock {what} failed: {err}")]
    Landlock {
        /// Which call.
        what: &'static str,
        /// OS error.
        err: std::io::Error,
    },
    /// prctl(PR_SET_NO_NEW_PRIVS) failed.
    #[error("prctl(PR_SET_NO_NEW_PRIVS) failed: {0}")]
    NoNewPrivs(std::io::Error),
    /// Switching to the worker user failed.
    #[error("switching to the worker user failed ({what}): {err}")]
    User {
        /// Which call.
        what: &'static str,
        /// OS error.
        err: std::io::Error,
    },
    /// prctl(PR_SET_DUMPABLE, 0) failed.
    #[error("prctl(PR_SET_DUMPABLE) failed: {0}")]
    Dumpable(std::io::Error),
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

/// Applies rlimits (address space, CPU, open files, processes, no core dumps).
pub fn apply_limits(limits: Limits) -> Result<(), SandboxError> {
    set_limit(libc::RLIMIT_AS, "RLIMIT_AS", limits.address_space)?;
    set_limit(libc::RLIMIT_CPU, "RLIMIT_CPU", limits.cpu_seconds)?;
    set_limit(libc::RLIMIT_NOFILE, "RLIMIT_NOFILE", limits.open_files)?;
    set_limit(libc::RLIMIT_NPROC, "RLIMIT_NPROC", limits.processes)?;
    set_limit(libc::RLIMIT_CORE, "RLIMIT_CORE", 0)
}

/// Closes every fd above stderr that the worker inherited by accident (a library in the
/// appliance that opened a token file or database without close-on-exec would otherwise hand it
/// to the plugin). Call first, before the worker opens anything of its own.
pub fn close_inherited_fds() -> Result<(), SandboxError> {
    // SAFETY: close_range on fds this process has not handed to any Rust owner yet.
    let rc = unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) };
    if rc == 0 {
        return Ok(());
    }
    let err = std::io::Error::last_os_error();
    if err.raw_os_error() != Some(libc::ENOSYS) {
        return Err(SandboxError::Fds {
            what: "close_range",
            err,
        });
    }
    // Kernels before 5.9: close one by one up to the fd limit.
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into a valid rlimit struct.
    let max = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
        lim.rlim_cur.min(1 << 20)
    } else {
        4096
    };
    for fd in 3..max {
        // SAFETY: as above; EBADF for fds that are not open is expected and ignored.
        unsafe { libc::close(fd as libc::c_int) };
    }
    Ok(())
}

/// A user the worker switches to before loading the plugin (a dedicated, file-less account:
/// then even a kernel without Landlock keeps the appliance's 0600 files out of reach, and
/// `RLIMIT_NPROC` binds). Needs the appliance to run as root or with CAP_SETUID/CAP_SETGID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerUser {
    /// Numeric user id.
    pub uid: u32,
    /// Numeric group id (the only group kept).
    pub gid: u32,
}

/// Drops every supplementary group and switches real, effective and saved ids to `user`.
pub fn switch_user(user: WorkerUser) -> Result<(), SandboxError> {
    let err = |what: &'static str| SandboxError::User {
        what,
        err: std::io::Error::last_os_error(),
    };
    // SAFETY: setgroups with an empty list reads no memory.
    if unsafe { libc::setgroups(0, std::ptr::null()) } != 0 {
        return Err(err("setgroups"));
    }
    // SAFETY: integer arguments only.
    if unsafe { libc::setresgid(user.gid, user.gid, user.gid) } != 0 {
        return Err(err("setresgid"));
    }
    // SAFETY: integer arguments only.
    if unsafe { libc::setresuid(user.uid, user.uid, user.uid) } != 0 {
        return Err(err("setresuid"));
    }
    // SAFETY: getuid/getgid cannot fail.
    if unsafe { (libc::getuid(), libc::getgid()) } != (user.uid, user.gid) {
        return Err(SandboxError::User {
            what: "verify",
            err: std::io::Error::other("ids did not change"),
        });
    }
    Ok(())
}

/// Sets no_new_privs (required by Landlock and seccomp for an unprivileged process).
pub fn no_new_privs() -> Result<(), SandboxError> {
    // SAFETY: prctl(PR_SET_NO_NEW_PRIVS, 1) takes integers only.
    let rc = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    if rc != 0 {
        return Err(SandboxError::NoNewPrivs(std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Makes this process non-dumpable (`PR_SET_DUMPABLE` 0): a process of the same user can then
/// neither ptrace it nor read `/proc/PID/mem`, `environ` or its fds, and it never dumps core.
/// The appliance calls it first thing; the worker too.
pub fn make_undumpable() -> Result<(), std::io::Error> {
    // SAFETY: prctl(PR_SET_DUMPABLE, 0) takes integers only.
    let rc = unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Whether Landlock is usable here (its ABI version), for the appliance's start-up warning.
pub fn landlock_status() -> Result<u32, String> {
    landlock::abi_version().map_err(|e| e.to_string())
}

/// Which layers [`confine`] put in place (the worker prints it when one is missing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confinement {
    /// Landlock, or why not (then only seccomp and the limits contain the plugin's file access
    /// until `configure` returns).
    pub landlock: Result<landlock::Enforced, String>,
}

impl Confinement {
    /// The loud warning to print when a layer is missing, if any.
    pub fn warning(&self) -> Option<String> {
        match &self.landlock {
            Ok(_) => None,
            Err(why) => Some(format!(
                "WARNING: {why}: the plugin's constructors and configure can read every file this \
                 user can read (run workers under a separate user, or boot with Landlock in lsm=)"
            )),
        }
    }
}

/// Everything that must hold before the plugin's first instruction runs: no_new_privs, Landlock
/// (degrading with a report where the kernel lacks it) and the seccomp allow-list.
pub fn confine() -> Result<Confinement, SandboxError> {
    no_new_privs()?;
    make_undumpable().map_err(SandboxError::Dumpable)?;
    let landlock = match landlock::restrict() {
        Ok(enforced) => Ok(enforced),
        Err(SandboxError::LandlockUnsupported(why)) => Err(why),
        Err(other) => return Err(other),
    };
    seccomp::install_allow_list(std::process::id())?;
    Ok(Confinement {
        landlock: landlock.map_err(|why| format!("landlock unavailable ({why})")),
    })
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
