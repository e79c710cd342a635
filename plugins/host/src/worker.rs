//! Worker mode, host side: a small pool of `ca-plugin-worker` processes per plugin (each one
//! plugin instance, one call at a time), a deadline per call that counts the wait for a free
//! worker, kill-and-replace of a worker that misses its deadline (so a hung call never makes later
//! callers queue behind it), restart with exponential backoff after a crash, and a circuit breaker
//! after repeated failures (crashes, hangs, panics and invalid output alike).

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::Semaphore;

use crate::error::PluginError;
use crate::protocol::{self, aio, LoadRequest, WorkerFailure};
use crate::sandbox::{Limits, WorkerUser};
use crate::spec::PluginSpec;

/// The worker binary's file name.
pub const WORKER_BINARY: &str = "ca-plugin-worker";
/// Environment variable overriding the worker binary's path.
pub const WORKER_ENV: &str = "CA_PLUGIN_WORKER";

/// Tuning of worker supervision; `Default` suits production.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// Worker binary; `None` = `$CA_PLUGIN_WORKER`, else next to the current executable (or one
    /// directory up, for test binaries in `target/*/deps`).
    pub worker_path: Option<PathBuf>,
    /// Resource limits applied inside the worker.
    pub limits: Limits,
    /// A separate user the worker switches to before loading the plugin (`None`: it keeps the
    /// appliance's user; Landlock then keeps it from the appliance's files).
    pub user: Option<WorkerUser>,
    /// Deadline for spawning, loading and configuring a worker.
    pub load_deadline: Duration,
    /// First restart delay after a failure; doubles per consecutive failure.
    pub backoff_initial: Duration,
    /// Largest restart delay.
    pub backoff_max: Duration,
    /// Failures within `failure_window` that open the circuit.
    pub failure_threshold: u32,
    /// Window in which failures are counted.
    pub failure_window: Duration,
    /// How long an open circuit refuses calls before one trial call is let through.
    pub cooldown: Duration,
    /// Most worker processes (concurrent calls) per plugin; further calls wait for a free worker
    /// within their own deadline.
    pub max_workers: usize,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        WorkerOptions {
            worker_path: None,
            limits: Limits::default(),
            user: None,
            load_deadline: Duration::from_secs(10),
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(10),
            failure_threshold: 5,
            failure_window: Duration::from_secs(60),
            cooldown: Duration::from_secs(30),
            max_workers: 4,
        }
    }
}

/// Finds the worker binary (see [`WorkerOptions::worker_path`]).
pub fn locate_worker(explicit: Option<&Path>) -> Result<PathBuf, PluginError> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os(WORKER_ENV) {
        return Ok(PathBuf::from(p));
    }
    let exe =
        std::env::current_exe().map_err(|e| PluginError::Worker(format!("current_exe: {e}")))?;
    let mut dir = exe.parent();
    for _ in 0..2 {
        if let Some(d) = dir {
            let candidate = d.join(WORKER_BINARY);
            if candidate.is_file() {
                return Ok(candidate);
            }
            dir = d.parent();
        }
    }
    Err(PluginError::Worker(format!(
        "{WORKER_BINARY} not found next to {} (build it with `cargo build -p plugin-host`, or set {WORKER_ENV})",
        exe.display()
    )))
}

/// Circuit breaker state; public view in [`Health`].
#[derive(Debug)]
struct Breaker {
    failures: VecDeque<Instant>,
    open_until: Option<Instant>,
    half_open: bool,
    consecutive: u32,
}

/// What a caller can see about a worker-mode plugin's health (tests and metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Health {
    /// Worker processes started so far (the first start included).
    pub spawns: u64,
    /// Failures counted against the plugin so far.
    pub failures: u64,
    /// True while the circuit is open.
    pub circuit_open: bool,
    /// Whether a worker process is currently running (idle or in a call).
    pub running: bool,
    /// An idle worker's process id, if any.
    pub pid: Option<u32>,
    /// Calls in progress right now.
    pub busy: usize,
}

struct Process {
    child: Child,
    stdin: ChildStdin,
    stdout: ChildStdout,
}

/// Supervision counters and the breaker, shared by every call (held only briefly, never
/// across an await).
struct Supervision {
    breaker: Breaker,
    restart_not_before: Option<Instant>,
    spawns: u64,
    failures: u64,
}

/// A plugin running in a pool of supervised worker processes. Each worker serves one call at a
/// time (one instance: the ABI forbids overlapping calls on an instance); steps are pure, so any
/// worker may serve any verification.
pub(crate) struct WorkerHost {
    spec: PluginSpec,
    options: WorkerOptions,
    binary: PathBuf,
    /// Workers waiting for a call.
    idle: std::sync::Mutex<Vec<Process>>,
    /// One permit per worker slot: bounds concurrent calls (and processes) per plugin.
    slots: Semaphore,
    busy: std::sync::atomic::AtomicUsize,
    sup: std::sync::Mutex<Supervision>,
}

impl std::fmt::Debug for WorkerHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerHost")
            .field("plugin", &self.spec.name)
            .field("binary", &self.binary)
            .finish_non_exhaustive()
    }
}

fn describe_exit(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (_, Some(sig)) => format!("killed by signal {sig}{}", signal_name(sig)),
        (Some(code), _) => format!("exited with status {code}"),
        _ => "ended".into(),
    }
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGSEGV => " (SIGSEGV)",
        libc::SIGABRT => " (SIGABRT)",
        libc::SIGKILL => " (SIGKILL)",
        libc::SIGBUS => " (SIGBUS)",
        libc::SIGILL => " (SIGILL)",
        libc::SIGXCPU => " (SIGXCPU)",
        _ => "",
    }
}

/// Decrements the busy count when a call ends, however it ends (also when cancelled).
struct BusyGuard<'a>(&'a std::sync::atomic::AtomicUsize);

impl Drop for BusyGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

impl WorkerHost {
    /// Spawns the first worker, loads and configures the plugin; returns the manifest bytes.
    pub(crate) async fn start(
        spec: &PluginSpec,
        options: WorkerOptions,
    ) -> Result<(WorkerHost, Vec<u8>), PluginError> {
        let binary = locate_worker(options.worker_path.as_deref())?;
        let slots = Semaphore::new(options.max_workers.max(1));
        let host = WorkerHost {
            spec: spec.clone(),
            options,
            binary,
            idle: std::sync::Mutex::new(Vec::new()),
            slots,
            busy: std::sync::atomic::AtomicUsize::new(0),
            sup: std::sync::Mutex::new(Supervision {
                breaker: Breaker {
                    failures: VecDeque::new(),
                    open_until: None,
                    half_open: false,
                    consecutive: 0,
                },
                restart_not_before: None,
                spawns: 0,
                failures: 0,
            }),
        };
        let (process, manifest) = host.spawn().await?;
        host.sup().spawns += 1;
        host.idle_pool().push(process);
        Ok((host, manifest))
    }

    fn sup(&self) -> std::sync::MutexGuard<'_, Supervision> {
        self.sup.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn idle_pool(&self) -> std::sync::MutexGuard<'_, Vec<Process>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }
    async fn spawn(&self) -> Result<(Process, Vec<u8>), PluginError> {
        let l = self.options.limits;
        let mut command = Command::new(&self.binary);
        if let Some(user) = self.options.user {
            command.args(["--uid".to_owned(), user.uid.to_string()]);
            command.args(["--gid".to_owned(), user.gid.to_string()]);
        }
        let mut child = command
            .env_clear()
            .current_dir("/")
            .args([
                "--parent-pid".to_owned(),
                std::process::id().to_string(),
                "--rlimit-as".to_owned(),
                l.address_space.to_string(),
                "--rlimit-cpu".to_owned(),
                l.cpu_seconds.to_string(),
                "--rlimit-nofile".to_owned(),
                l.open_files.to_string(),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| PluginError::Worker(format!("spawn {}: {e}", self.binary.display())))?;
        if let Some(stderr) = child.stderr.take() {
            crate::scrub::forward_worker_stderr(self.spec.name.clone(), stderr);
        }
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(PluginError::Worker("worker pipes missing".into()));
        };
        let mut process = Process {
            child,
            stdin,
            stdout,
        };
        let req = LoadRequest {
            path: self.spec.path.display().to_string(),
            sha256: self.spec.sha256.clone(),
            config: self.spec.config.clone(),
        };
        let payload = serde_json::to_vec(&req)
            .map_err(|e| PluginError::Worker(format!("load request: {e}")))?;
        let exchange = async {
            aio::write_frame(&mut process.stdin, protocol::TAG_LOAD, &payload).await?;
            aio::read_frame(&mut process.stdout).await
        };
        let reply = tokio::time::timeout(self.options.load_deadline, exchange).await;
        match reply {
            Ok(Ok((protocol::TAG_READY, manifest))) => Ok((process, manifest)),
            Ok(Ok((protocol::TAG_FAILURE, body))) => {
                let _ = process.child.start_kill();
                Err(failure_to_error(&body, true))
            }
            Ok(Ok((tag, _))) => {
                let _ = process.child.start_kill();
                Err(PluginError::Worker(format!(
                    "unexpected frame tag {tag} while loading"
                )))
            }
            Ok(Err(_)) => Err(PluginError::WorkerCrashed {
                reason: format!("while loading: {}", reap(&mut process.child).await),
            }),
            Err(_) => {
                let _ = process.child.start_kill();
                Err(PluginError::Timeout {
                    deadline: self.options.load_deadline,
                })
            }
        }
    }

    /// Health counters for tests and metrics.
    pub(crate) async fn health(&self) -> Health {
        let (pid, idle) = {
            let idle = self.idle_pool();
            (idle.last().and_then(|p| p.child.id()), idle.len())
        };
        let busy = self.busy.load(std::sync::atomic::Ordering::SeqCst);
        let st = self.sup();
        Health {
            spawns: st.spawns,
            failures: st.failures,
            circuit_open: st.breaker.open_until.is_some_and(|t| Instant::now() < t),
            running: idle + busy > 0,
            pid,
            busy,
        }
    }

    /// Process ids of the idle workers (tests stop one to model a hung worker).
    pub(crate) fn idle_pids(&self) -> Vec<u32> {
        self.idle_pool()
            .iter()
            .filter_map(|p| p.child.id())
            .collect()
    }

    /// Refuses the call while the circuit is open; lets one trial through after the cooldown.
    fn admit(&self) -> Result<(), PluginError> {
        let mut st = self.sup();
        let now = Instant::now();
        if let Some(until) = st.breaker.open_until {
            if now < until {
                return Err(PluginError::CircuitOpen {
                    retry_after: until - now,
                });
            }
            st.breaker.open_until = None;
            st.breaker.half_open = true;
        }
        Ok(())
    }

    /// An idle worker, or a freshly spawned one (after the restart backoff, within `end`).
    async fn checkout(&self, end: Instant, deadline: Duration) -> Result<Process, PluginError> {
        if let Some(p) = self.idle_pool().pop() {
            return Ok(p);
        }
        let not_before = self.sup().restart_not_before;
        if let Some(t) = not_before {
            if t >= end {
                return Err(PluginError::Timeout { deadline });
            }
            tokio::time::sleep_until(t.into()).await;
        }
        match self.spawn().await {
            Ok((p, _manifest)) => {
                self.sup().spawns += 1;
                Ok(p)
            }
            Err(e) => {
                self.fail();
                Err(e)
            }
        }
    }

    /// One step through a worker, validated by `validate` before the call counts as a success:
    /// invalid output is a plugin fault like a crash. The deadline covers the wait for a free
    /// worker; a worker that misses it is killed, so the next call runs on a fresh one.
    pub(crate) async fn step<T>(
        &self,
        input: &[u8],
        deadline: Duration,
        validate: impl FnOnce(&[u8]) -> Result<T, PluginError>,
    ) -> Result<T, PluginError> {
        self.admit()?;
        let end = Instant::now() + deadline;
        let Ok(Ok(_permit)) = tokio::time::timeout_at(end.into(), self.slots.acquire()).await
        else {
            // Every worker is busy for the whole deadline: congestion, not this call's fault.
            return Err(PluginError::Timeout { deadline });
        };
        self.busy.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let _busy = BusyGuard(&self.busy);
        let mut p = self.checkout(end, deadline).await?;
        let exchange = async {
            aio::write_frame(&mut p.stdin, protocol::TAG_STEP, input).await?;
            aio::read_frame(&mut p.stdout).await
        };
        let result = tokio::time::timeout_at(end.into(), exchange).await;
        match result {
            Ok(Ok((protocol::TAG_OUTPUT, out))) => match validate(&out) {
                Ok(v) => {
                    self.succeed();
                    self.idle_pool().push(p);
                    Ok(v)
                }
                Err(e) => {
                    tracing::warn!(plugin = %self.spec.name, error = %e, "plugin output rejected");
                    // An instance that produced garbage is not trusted with the next call.
                    kill(p).await;
                    self.fail();
                    Err(e)
                }
            },
            Ok(Ok((protocol::TAG_FAILURE, body))) => {
                let err = failure_to_error(&body, false);
                if err.is_plugin_fault() {
                    // A panicked instance is poisoned: replace the worker.
                    kill(p).await;
                    self.fail();
                } else {
                    self.succeed();
                    self.idle_pool().push(p);
                }
                Err(err)
            }
            Ok(Ok((tag, _))) => {
                kill(p).await;
                self.fail();
                Err(PluginError::BadOutput {
                    reason: format!("worker sent unexpected frame tag {tag}"),
                })
            }
            Ok(Err(e)) => {
                if e.kind() == std::io::ErrorKind::InvalidData {
                    let _ = p.child.start_kill();
                }
                let reason = reap(&mut p.child).await;
                self.fail();
                Err(PluginError::WorkerCrashed { reason })
            }
            Err(_) => {
                kill(p).await;
                self.fail();
                Err(PluginError::Timeout { deadline })
            }
        }
    }

    fn succeed(&self) {
        let mut st = self.sup();
        let b = &mut st.breaker;
        b.failures.clear();
        b.half_open = false;
        b.consecutive = 0;
        st.restart_not_before = None;
    }

    fn fail(&self) {
        let now = Instant::now();
        let mut guard = self.sup();
        let st = &mut *guard;
        st.failures += 1;
        let o = &self.options;
        let b = &mut st.breaker;
        b.consecutive = b.consecutive.saturating_add(1);
        let shift = (b.consecutive - 1).min(16);
        let delay = o
            .backoff_initial
            .saturating_mul(1u32 << shift)
            .min(o.backoff_max);
        st.restart_not_before = Some(now + delay);
        if b.half_open {
            b.half_open = false;
            b.open_until = Some(now + o.cooldown);
            return;
        }
        b.failures.push_back(now);
        while b
            .failures
            .front()
            .is_some_and(|t| now.duration_since(*t) > o.failure_window)
        {
            b.failures.pop_front();
        }
        if b.failures.len() >= o.failure_threshold as usize {
            b.failures.clear();
            b.open_until = Some(now + o.cooldown);
            tracing::warn!(plugin = %self.spec.name, cooldown = ?o.cooldown, "plugin circuit breaker opened");
        }
    }
}

/// Ends a worker and waits for it (a stopped or hung process included).
async fn kill(mut p: Process) {
    let _ = p.child.start_kill();
    let _ = p.child.wait().await;
}

/// Waits for a dead (or dying) worker and describes how it ended.
async fn reap(child: &mut Child) -> String {
    match tokio::time::timeout(Duration::from_secs(2), child.wait()).await {
        Ok(Ok(status)) => describe_exit(status),
        Ok(Err(e)) => format!("wait failed: {e}"),
        Err(_) => {
            let _ = child.start_kill();
            let _ = child.wait().await;
            "closed its pipe and was killed".into()
        }
    }
}

fn failure_to_error(body: &[u8], loading: bool) -> PluginError {
    let Ok(f) = serde_json::from_slice::<WorkerFailure>(body) else {
        return PluginError::BadOutput {
            reason: "worker sent an unreadable failure frame".into(),
        };
    };
    match f {
        WorkerFailure::Status { code, message } => {
            PluginError::from_call(plugin_abi::ffi::CallError::Status {
                code,
                code_name: "",
                message,
            })
        }
        WorkerFailure::Oversize { cap } => PluginError::BadOutput {
            reason: format!("reply over the {cap}-byte cap"),
        },
        WorkerFailure::HashMismatch { expected, actual } => {
            PluginError::HashMismatch { expected, actual }
        }
        WorkerFailure::Load { message } if loading => PluginError::Load(message),
        WorkerFailure::Load { message } | WorkerFailure::Protocol { message } => {
            PluginError::Worker(message)
        }
    }
}
