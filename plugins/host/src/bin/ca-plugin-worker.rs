//! `ca-plugin-worker`: hosts ONE plugin library in a process of its own, so that a plugin that
//! segfaults, aborts, hangs or panics costs only this process.
//!
//! The host spawns it with an empty environment and talks length-prefixed frames over
//! stdin/stdout (see `plugin_host::protocol`). Startup: close inherited fds, rlimits (NPROC
//! included), parent-death signal, read the load request, copy the library into a sealed memfd
//! and check its hash, then confine (no_new_privs, Landlock, the seccomp allow-list; see
//! `plugin_host::sandbox`), and only then dlopen (constructors run confined) + describe +
//! configure; then a last filter forbids opening files at all, and steps are answered until stdin
//! closes. The frames move to private fds first, so a plugin printing to stdout cannot corrupt
//! them (its output goes to stderr).
//!
//! Arguments: `--parent-pid N --rlimit-as BYTES --rlimit-cpu SECS --rlimit-nofile N
//! [--rlimit-nproc N] [--uid N --gid N]` (the user to switch to once the library is sealed).

use std::io::{self, BufReader, BufWriter, Write};
use std::process::ExitCode;

use plugin_abi::ffi::CallError;
use plugin_host::protocol::{self, LoadRequest, WorkerFailure};
use plugin_host::sandbox::{self, Limits};
use plugin_host::PluginError;

fn failure_bytes(f: &WorkerFailure) -> Vec<u8> {
    serde_json::to_vec(f)
        .unwrap_or_else(|_| b"{\"kind\":\"protocol\",\"message\":\"encode\"}".to_vec())
}

fn call_failure(e: CallError) -> WorkerFailure {
    match e {
        CallError::Status { code, message, .. } => WorkerFailure::Status { code, message },
        CallError::Oversize { cap } => WorkerFailure::Oversize { cap },
        CallError::Abi(message) => WorkerFailure::Load { message },
    }
}

fn load_failure(e: PluginError) -> WorkerFailure {
    match e {
        PluginError::HashMismatch { expected, actual } => {
            WorkerFailure::HashMismatch { expected, actual }
        }
        other => WorkerFailure::Load {
            message: other.to_string(),
        },
    }
}

struct Args {
    parent_pid: Option<u32>,
    limits: Limits,
    uid: Option<u32>,
    gid: Option<u32>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        parent_pid: None,
        limits: Limits::default(),
        uid: None,
        gid: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let n: u64 = value.parse().map_err(|_| format!("{flag}: not a number"))?;
        match flag.as_str() {
            "--parent-pid" => args.parent_pid = Some(u32::try_from(n).map_err(|_| "pid range")?),
            "--rlimit-as" => args.limits.address_space = n,
            "--rlimit-cpu" => args.limits.cpu_seconds = n,
            "--rlimit-nofile" => args.limits.open_files = n,
            "--rlimit-nproc" => args.limits.processes = n,
            "--uid" => args.uid = Some(u32::try_from(n).map_err(|_| "uid range")?),
            "--gid" => args.gid = Some(u32::try_from(n).map_err(|_| "gid range")?),
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    if args.uid.is_some() != args.gid.is_some() {
        return Err("--uid and --gid go together".into());
    }
    Ok(args)
}

fn run() -> Result<(), String> {
    sandbox::close_inherited_fds().map_err(|e| e.to_string())?;
    let args = parse_args()?;
    sandbox::die_with_parent(args.parent_pid).map_err(|e| e.to_string())?;
    sandbox::apply_limits(args.limits).map_err(|e| e.to_string())?;

    let (input, output) = sandbox::protocol_pipes().map_err(|e| e.to_string())?;
    let mut input = BufReader::new(input);
    let mut output = BufWriter::new(output);
    let reply = |out: &mut BufWriter<_>, tag: u8, payload: &[u8]| -> Result<(), String> {
        protocol::write_frame(out, tag, payload).map_err(|e| format!("write: {e}"))
    };

    let Some((tag, payload)) =
        protocol::read_frame(&mut input).map_err(|e| format!("read: {e}"))?
    else {
        return Ok(());
    };
    if tag != protocol::TAG_LOAD {
        let f = WorkerFailure::Protocol {
            message: "first frame must be a load request".into(),
        };
        return reply(&mut output, protocol::TAG_FAILURE, &failure_bytes(&f));
    }
    let req: LoadRequest = match serde_json::from_slice(&payload) {
        Ok(r) => r,
        Err(e) => {
            let f = WorkerFailure::Protocol {
                message: format!("load request: {e}"),
            };
            return reply(&mut output, protocol::TAG_FAILURE, &failure_bytes(&f));
        }
    };
    let sealed = plugin_host::load::seal(std::path::Path::new(&req.path))
        .and_then(|sealed| sealed.verify(&req.sha256).map(|()| sealed));
    let sealed = match sealed {
        Ok(s) => s,
        Err(e) => {
            return reply(
                &mut output,
                protocol::TAG_FAILURE,
                &failure_bytes(&load_failure(e)),
            )
        }
    };
    if let (Some(uid), Some(gid)) = (args.uid, args.gid) {
        if let Err(e) = sandbox::switch_user(sandbox::WorkerUser { uid, gid }) {
            let f = WorkerFailure::Load {
                message: format!("confinement: {e}"),
            };
            return reply(&mut output, protocol::TAG_FAILURE, &failure_bytes(&f));
        }
    }
    match sandbox::confine() {
        Ok(confinement) => {
            if let Some(warning) = confinement.warning() {
                let _ = writeln!(io::stderr(), "ca-plugin-worker: {warning}");
            }
        }
        Err(e) => {
            let f = WorkerFailure::Load {
                message: format!("confinement: {e}"),
            };
            return reply(&mut output, protocol::TAG_FAILURE, &failure_bytes(&f));
        }
    }
    let loaded = plugin_host::load::load_sealed(sealed)
        .map_err(load_failure)
        .and_then(|table| {
            let manifest = table.describe().map_err(call_failure)?;
            let cfg = serde_json::to_vec(&req.config).map_err(|e| WorkerFailure::Protocol {
                message: format!("config: {e}"),
            })?;
            let instance = table.configure(&cfg).map_err(call_failure)?;
            Ok((manifest, instance))
        });
    let (manifest, mut instance) = match loaded {
        Ok(x) => x,
        Err(f) => return reply(&mut output, protocol::TAG_FAILURE, &failure_bytes(&f)),
    };
    if let Err(e) = sandbox::seccomp::deny_file_opens() {
        let f = WorkerFailure::Load {
            message: e.to_string(),
        };
        return reply(&mut output, protocol::TAG_FAILURE, &failure_bytes(&f));
    }
    reply(&mut output, protocol::TAG_READY, &manifest)?;

    loop {
        let frame = protocol::read_frame(&mut input).map_err(|e| format!("read: {e}"))?;
        let Some((tag, payload)) = frame else {
            return Ok(());
        };
        if tag != protocol::TAG_STEP {
            let f = WorkerFailure::Protocol {
                message: format!("unexpected frame tag {tag}"),
            };
            reply(&mut output, protocol::TAG_FAILURE, &failure_bytes(&f))?;
            continue;
        }
        match instance.step(&payload) {
            Ok(out) => reply(&mut output, protocol::TAG_OUTPUT, &out)?,
            Err(e) => reply(
                &mut output,
                protocol::TAG_FAILURE,
                &failure_bytes(&call_failure(e)),
            )?,
        }
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(io::stderr(), "ca-plugin-worker: {e}");
            ExitCode::from(2)
        }
    }
}
