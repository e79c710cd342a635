//! The worker's seccomp filters (built with `seccompiler`), installed before the plugin library
//! is loaded so its constructors already run under them:
//! - [`install_allow_list`]: only the syscalls a plugin, glibc's dlopen and the worker's own loop
//!   need; everything else fails with EPERM (so a plugin sees a clean error and the worker stays
//!   diagnosable). Not listed, hence denied: socket and every network call, execve/execveat,
//!   fork/vfork, ptrace, process_vm_readv/writev, io_uring_*, memfd_create, bpf, perf_event_open,
//!   userfaultfd, pidfd_*, keyctl, mount & co. Arguments are checked where a syscall is needed
//!   but could reach another process: kill/tgkill/tkill only to the worker's own pid, clone
//!   only for threads (`CLONE_THREAD`), prlimit64 only on itself, prctl only a few harmless ops.
//!   clone3 answers ENOSYS (its flags live in memory seccomp cannot read; glibc then falls
//!   back to clone).
//! - [`deny_file_opens`]: after `configure`, no file can be opened any more at all.
// Building filters is safe code; nothing here needs unsafe.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen as Len, SeccompCmpOp as Op, SeccompCondition,
    SeccompFilter, SeccompRule, TargetArch,
};

use super::SandboxError;

/// Syscalls allowed with any arguments.
const ALLOWED: &[(&str, i64)] = &[
    ("read", libc::SYS_read),
    ("write", libc::SYS_write),
    ("readv", libc::SYS_readv),
    ("writev", libc::SYS_writev),
    ("pread64", libc::SYS_pread64),
    ("lseek", libc::SYS_lseek),
    ("close", libc::SYS_close),
    ("fstat", libc::SYS_fstat),
    ("newfstatat", libc::SYS_newfstatat),
    ("statx", libc::SYS_statx),
    ("fcntl", libc::SYS_fcntl),
    // Opening files is confined by Landlock until `deny_file_opens`; dlopen needs it.
    ("openat", libc::SYS_openat),
    ("mmap", libc::SYS_mmap),
    ("munmap", libc::SYS_munmap),
    ("mprotect", libc::SYS_mprotect),
    ("mremap", libc::SYS_mremap),
    ("madvise", libc::SYS_madvise),
    ("brk", libc::SYS_brk),
    ("rt_sigaction", libc::SYS_rt_sigaction),
    ("rt_sigprocmask", libc::SYS_rt_sigprocmask),
    ("rt_sigreturn", libc::SYS_rt_sigreturn),
    ("sigaltstack", libc::SYS_sigaltstack),
    ("restart_syscall", libc::SYS_restart_syscall),
    ("futex", libc::SYS_futex),
    ("set_robust_list", libc::SYS_set_robust_list),
    ("set_tid_address", libc::SYS_set_tid_address),
    ("rseq", libc::SYS_rseq),
    ("sched_yield", libc::SYS_sched_yield),
    ("sched_getaffinity", libc::SYS_sched_getaffinity),
    ("nanosleep", libc::SYS_nanosleep),
    ("clock_nanosleep", libc::SYS_clock_nanosleep),
    ("clock_gettime", libc::SYS_clock_gettime),
    ("clock_getres", libc::SYS_clock_getres),
    ("gettimeofday", libc::SYS_gettimeofday),
    ("getrandom", libc::SYS_getrandom),
    ("getpid", libc::SYS_getpid),
    ("gettid", libc::SYS_gettid),
    ("getppid", libc::SYS_getppid),
    ("getuid", libc::SYS_getuid),
    ("geteuid", libc::SYS_geteuid),
    ("getgid", libc::SYS_getgid),
    ("getegid", libc::SYS_getegid),
    ("uname", libc::SYS_uname),
    ("sysinfo", libc::SYS_sysinfo),
    ("exit", libc::SYS_exit),
    ("exit_group", libc::SYS_exit_group),
    // Adding a stricter filter (the second stage) is harmless for a plugin to do too.
    ("seccomp", libc::SYS_seccomp),
    #[cfg(target_arch = "x86_64")]
    ("arch_prctl", libc::SYS_arch_prctl),
];

/// `prctl` operations allowed (thread names, reading the sandbox state, no_new_privs).
const PRCTL_OPS: [libc::c_int; 6] = [
    libc::PR_SET_NAME,
    libc::PR_GET_NAME,
    libc::PR_GET_SECCOMP,
    libc::PR_GET_NO_NEW_PRIVS,
    libc::PR_SET_NO_NEW_PRIVS,
    libc::PR_GET_DUMPABLE,
];

fn err(e: impl std::fmt::Display) -> SandboxError {
    SandboxError::Seccomp(e.to_string())
}

fn arch() -> Result<TargetArch, SandboxError> {
    TargetArch::try_from(std::env::consts::ARCH).map_err(err)
}

fn arg_is(index: u8, len: Len, value: u64) -> Result<SeccompRule, SandboxError> {
    SeccompRule::new(vec![
        SeccompCondition::new(index, len, Op::Eq, value).map_err(err)?
    ])
    .map_err(err)
}

fn install(
    rules: BTreeMap<i64, Vec<SeccompRule>>,
    mismatch: SeccompAction,
    matched: SeccompAction,
) -> Result<(), SandboxError> {
    let filter = SeccompFilter::new(rules, mismatch, matched, arch()?).map_err(err)?;
    let program: BpfProgram = filter.try_into().map_err(err)?;
    seccompiler::apply_filter(&program).map_err(err)
}

/// Installs the allow-list (and sets no_new_privs); `own_pid` is the only pid signals may target.
pub fn install_allow_list(own_pid: u32) -> Result<(), SandboxError> {
    // clone3 first: ENOSYS, so glibc falls back to clone, whose flags seccomp can check.
    let mut enosys = BTreeMap::new();
    enosys.insert(libc::SYS_clone3, Vec::new());
    install(
        enosys,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
    )?;

    let mut rules: BTreeMap<i64, Vec<SeccompRule>> =
        ALLOWED.iter().map(|(_, nr)| (*nr, Vec::new())).collect();
    rules.insert(libc::SYS_clone3, Vec::new()); // decided by the ENOSYS filter above
    let pid = u64::from(own_pid);
    rules.insert(libc::SYS_kill, vec![arg_is(0, Len::Dword, pid)?]);
    rules.insert(libc::SYS_tgkill, vec![arg_is(0, Len::Dword, pid)?]);
    rules.insert(libc::SYS_tkill, vec![arg_is(0, Len::Dword, pid)?]);
    rules.insert(libc::SYS_prlimit64, vec![arg_is(0, Len::Dword, 0)?]);
    let thread = libc::CLONE_THREAD as u64;
    rules.insert(
        libc::SYS_clone,
        vec![SeccompRule::new(vec![SeccompCondition::new(
            0,
            Len::Qword,
            Op::MaskedEq(thread),
            thread,
        )
        .map_err(err)?])
        .map_err(err)?],
    );
    let prctl = PRCTL_OPS
        .iter()
        .map(|op| arg_is(0, Len::Dword, *op as u64))
        .collect::<Result<Vec<_>, _>>()?;
    rules.insert(libc::SYS_prctl, prctl);
    install(
        rules,
        SeccompAction::Errno(libc::EPERM as u32),
        SeccompAction::Allow,
    )
}

/// Second stage, after `configure`: opening any file fails with EPERM from now on.
pub fn deny_file_opens() -> Result<(), SandboxError> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    rules.insert(libc::SYS_openat, Vec::new());
    rules.insert(libc::SYS_openat2, Vec::new());
    #[cfg(target_arch = "x86_64")]
    {
        rules.insert(libc::SYS_open, Vec::new());
        rules.insert(libc::SYS_creat, Vec::new());
    }
    install(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
    )
}

/// Syscalls the allow-list leaves out on purpose (documentation and tests).
pub const DENIED_EXAMPLES: [(&str, i64); 9] = [
    ("socket", libc::SYS_socket),
    ("execve", libc::SYS_execve),
    ("ptrace", libc::SYS_ptrace),
    ("process_vm_readv", libc::SYS_process_vm_readv),
    ("process_vm_writev", libc::SYS_process_vm_writev),
    ("io_uring_setup", libc::SYS_io_uring_setup),
    ("memfd_create", libc::SYS_memfd_create),
    ("pidfd_open", libc::SYS_pidfd_open),
    ("bpf", libc::SYS_bpf),
];
