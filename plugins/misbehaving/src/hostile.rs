//! The `hostile` behaviour: what a malicious third-party verifier would try, each attempt
//! reported back (in a challenge payload, where a real attacker would smuggle loot) so the tests
//! can assert that nothing secret came back and nothing outside the plugin was touched.
//! Attempts: read files (HSM PIN, data key, database: paths from config) and drop copies into a
//! directory; TCP socket directly and io_uring; fork repeatedly; SIGKILL the parent; write into
//! the library file it was loaded from (config) and into its own loaded image; read the parent's
//! memory (process_vm_readv, /proc/PPID/mem, ptrace). A constructor records the sandbox state at
//! load time and tries to read the parent's command line and environment.
// Raw syscalls are the point of this module; each block says why it is sound.
#![allow(unsafe_code)]

use std::io::Write;
use std::sync::OnceLock;

use serde::Deserialize;
use serde_json::{json, Value};

/// What the hostile behaviour is told (all paths chosen by the test).
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct Targets {
    /// Files to steal.
    #[serde(default)]
    pub paths: Vec<String>,
    /// Where to drop stolen copies.
    #[serde(default)]
    pub drop_dir: Option<String>,
    /// The library file this plugin was loaded from (to overwrite).
    #[serde(default)]
    pub library: Option<String>,
}

/// What the constructor saw, before `configure` ran.
static AT_LOAD: OnceLock<Value> = OnceLock::new();

extern "C" fn at_load() {
    let _ = AT_LOAD.set(json!({
        "seccomp": prctl_get(libc::PR_GET_SECCOMP),
        "no_new_privs": prctl_get(libc::PR_GET_NO_NEW_PRIVS),
        "parent_cmdline": read_file(&format!("/proc/{}/cmdline", parent())),
        "parent_environ": read_file(&format!("/proc/{}/environ", parent())),
    }));
}

/// Runs `at_load` when the library is loaded, like a C `__attribute__((constructor))`.
#[used]
#[link_section = ".init_array"]
static CONSTRUCTOR: extern "C" fn() = at_load;

fn prctl_get(op: libc::c_int) -> i64 {
    // SAFETY: PR_GET_SECCOMP / PR_GET_NO_NEW_PRIVS take no pointers.
    i64::from(unsafe { libc::prctl(op, 0, 0, 0, 0) })
}

fn parent() -> libc::pid_t {
    // SAFETY: getppid has no arguments.
    unsafe { libc::getppid() }
}

fn errno() -> String {
    std::io::Error::last_os_error().to_string()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().take(64).map(|b| format!("{b:02x}")).collect()
}

/// `{"got": hex of the first 64 bytes}` or `{"error": ...}`.
fn read_file(path: &str) -> Value {
    match std::fs::read(path) {
        Ok(b) => json!({"got": hex(&b), "len": b.len()}),
        Err(e) => json!({"error": e.to_string()}),
    }
}

fn outcome(rc: i64) -> Value {
    if rc < 0 {
        json!({"error": errno()})
    } else {
        json!({"ok": rc})
    }
}

fn steal(t: &Targets) -> Value {
    let mut out = Vec::new();
    for (i, path) in t.paths.iter().enumerate() {
        let got = std::fs::read(path);
        let dropped = t.drop_dir.as_ref().map(|dir| {
            let copy = format!("{dir}/misbehaving-loot-{i}");
            let bytes = got.as_deref().unwrap_or(b"attempt");
            match std::fs::write(&copy, bytes) {
                Ok(()) => json!({"ok": copy}),
                Err(e) => json!({"error": e.to_string()}),
            }
        });
        let read = match got {
            Ok(b) => json!({"got": hex(&b), "len": b.len()}),
            Err(e) => json!({"error": e.to_string()}),
        };
        out.push(json!({"path": path, "read": read, "dropped": dropped}));
    }
    Value::Array(out)
}

fn sockets() -> Value {
    // SAFETY: socket takes integers; a returned fd is closed right away.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
    let socket = outcome(i64::from(fd));
    if fd >= 0 {
        // SAFETY: fd is ours.
        unsafe { libc::close(fd) };
    }
    let connect = match std::net::TcpStream::connect(("127.0.0.1", 9)) {
        Ok(_) => json!({"ok": "connected"}),
        Err(e) => json!({"error": e.to_string()}),
    };
    // io_uring_params is 120 bytes; zeroed means "no flags". An fd would let the plugin submit
    // IORING_OP_SOCKET / OPENAT behind seccomp's back.
    let mut params = [0u8; 120];
    // SAFETY: params is a writable buffer of the kernel's io_uring_params size.
    let ring = unsafe { libc::syscall(libc::SYS_io_uring_setup, 4u32, params.as_mut_ptr()) };
    let io_uring = outcome(ring);
    if ring >= 0 {
        // SAFETY: ring is ours.
        unsafe { libc::close(ring as i32) };
    }
    json!({"socket": socket, "connect": connect, "io_uring_setup": io_uring})
}

fn fork_bomb() -> Value {
    let mut started = 0;
    let mut last_error = Value::Null;
    for _ in 0..20 {
        // SAFETY: the child only calls _exit (async-signal-safe).
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            // SAFETY: _exit in the child.
            unsafe { libc::_exit(0) };
        }
        if pid < 0 {
            last_error = json!(errno());
            continue;
        }
        started += 1;
        let mut status = 0;
        // SAFETY: waits for our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
    }
    // A thread is fine only where RLIMIT_NPROC allows it; a process never.
    json!({"processes_started": started, "error": last_error})
}

fn signal_parent() -> Value {
    let ppid = parent();
    // SAFETY: signalling is the attack; no memory involved.
    let kill = unsafe { libc::kill(ppid, libc::SIGKILL) };
    let kill = outcome(i64::from(kill));
    // SAFETY: as above.
    let tgkill = unsafe { libc::syscall(libc::SYS_tgkill, ppid, ppid, libc::SIGKILL) };
    json!({"kill": kill, "tgkill": outcome(tgkill), "parent": ppid})
}

fn write_library(t: &Targets) -> Value {
    let original =
        t.library.as_ref().map(
            |path| match std::fs::OpenOptions::new().write(true).open(path) {
                Ok(mut f) => match f.write_all(b"HOSTILE!") {
                    Ok(()) => json!({"ok": "overwrote the library file"}),
                    Err(e) => json!({"error": e.to_string()}),
                },
                Err(e) => json!({"error": e.to_string()}),
            },
        );
    // The file our code is mapped from, as the dynamic loader recorded it.
    let mut info: libc::Dl_info = empty_dl_info();
    // SAFETY: dladdr fills `info` for an address inside this library.
    let found = unsafe { libc::dladdr(at_load as *const libc::c_void, &mut info) };
    let image = if found != 0 && !info.dli_fname.is_null() {
        // SAFETY: dli_fname is a NUL-terminated string owned by the loader.
        let name = unsafe { std::ffi::CStr::from_ptr(info.dli_fname) }
            .to_string_lossy()
            .into_owned();
        let written = match std::fs::OpenOptions::new().write(true).open(&name) {
            Ok(mut f) => match f.write_all(b"HOSTILE!") {
                Ok(()) => json!({"ok": "overwrote the loaded image"}),
                Err(e) => json!({"error": e.to_string()}),
            },
            Err(e) => json!({"error": e.to_string()}),
        };
        json!({"name": name, "write": written})
    } else {
        json!({"error": "dladdr found nothing"})
    };
    json!({"original": original, "image": image})
}

fn empty_dl_info() -> libc::Dl_info {
    libc::Dl_info {
        dli_fname: std::ptr::null(),
        dli_fbase: std::ptr::null_mut(),
        dli_sname: std::ptr::null(),
        dli_saddr: std::ptr::null_mut(),
    }
}

fn read_parent_memory() -> Value {
    let ppid = parent();
    let mut buf = [0u8; 64];
    let local = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // Any address will do: EPERM (denied) differs from EFAULT (allowed, bad address).
    let remote = libc::iovec {
        iov_base: 0x40_0000 as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // SAFETY: local points at our buffer; the kernel validates the remote side.
    let n = unsafe { libc::process_vm_readv(ppid, &local, 1, &remote, 1, 0) };
    // SAFETY: PTRACE_ATTACH with integer arguments.
    let ptrace = unsafe {
        libc::ptrace(
            libc::PTRACE_ATTACH,
            ppid,
            std::ptr::null_mut::<libc::c_void>(),
            std::ptr::null_mut::<libc::c_void>(),
        )
    };
    json!({
        "process_vm_readv": outcome(n as i64),
        "ptrace_attach": outcome(ptrace),
        "proc_mem": read_file(&format!("/proc/{ppid}/mem")),
        "proc_environ": read_file(&format!("/proc/{ppid}/environ")),
    })
}

/// Runs every attempt and returns the report.
pub fn attack(t: &Targets) -> Value {
    json!({
        "at_load": AT_LOAD.get().cloned().unwrap_or(Value::Null),
        "in_step": {
            "seccomp": prctl_get(libc::PR_GET_SECCOMP),
            "no_new_privs": prctl_get(libc::PR_GET_NO_NEW_PRIVS),
        },
        "steal": steal(t),
        "network": sockets(),
        "fork": fork_bomb(),
        "signal_parent": signal_parent(),
        "write_library": write_library(t),
        "parent_memory": read_parent_memory(),
    })
}
