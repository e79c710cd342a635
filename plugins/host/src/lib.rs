//! The host side of the plugin ABI (`plugins/abi/include/ca_plugin.h`): loading plugins only if
//! their SHA-256 is the approved one, running them in a supervised worker process (or in-process
//! for first-party plugins), distrusting their output, performing their HTTP actions under an
//! allowlist, and driving verifications with an outbox that survives restarts.
//!
//! # Public API (stable; other crates build on it)
//! - [`PluginSpec`] / [`Isolation`] / [`Secret`]: what the operator approved for one plugin.
//! - [`Plugin::load`] / [`Plugin::load_with`] (+ [`WorkerOptions`], [`sandbox::WorkerUser`]):
//!   hash check (refused with [`PluginError::HashMismatch`]), dlopen of the sealed memfd copy
//!   whose bytes were hashed, ABI check, manifest validation, configure. Then [`Plugin::step`]
//!   returns a validated `StepOutput` or a typed [`PluginError`] (`WorkerCrashed`, `Timeout`,
//!   `CircuitOpen`, `BadOutput`, `Panicked`, `Status`, ...).
//! - [`Egress`] / [`EgressPolicy`] / [`EgressOptions`]: performs one HTTP action and returns the
//!   event to feed back (`http_error` `refused_host` for anything off the allowlist).
//! - [`VerificationRunner`] over a [`VerificationStore`] ([`MemoryStore`] for tests only):
//!   `start`, `deliver`, `view`, `resume_pending`, `fire_due_timers`.
//! - Channel plugins (manifest kind `channel`): [`Plugin::deliver`] returns their validated
//!   `ChannelOutput`; [`channel`] minimises events per plugin, signs actions host-side
//!   (HMAC-SHA256) and classifies one attempt as delivered / transient / permanent.
//! - [`conformance::check`]: the `ca-appliance plugin check PATH` suite, returning a printable
//!   [`conformance::Report`].
//! - [`sha256_file`]: what an operator approves.
//!
//! # Worker binary
//! Worker mode spawns `ca-plugin-worker` (built from this crate: `cargo build -p plugin-host`).
//! It is looked up in [`WorkerOptions::worker_path`], else `$CA_PLUGIN_WORKER`, else next to the
//! current executable or one directory up (so test binaries in `target/debug/deps` find
//! `target/debug/ca-plugin-worker`).
//!
//! # Behaviour worth knowing
//! - Worker mode: a pool of up to `WorkerOptions::max_workers` workers per plugin, one call per
//!   worker at a time. `PluginSpec::step_deadline` covers the wait for a free worker too, and a
//!   worker that misses it is killed, so a hung call never delays later callers. A crash, hang,
//!   panic, protocol break or invalid output fails only that call; a replacement is spawned
//!   lazily after an exponential backoff; after `failure_threshold` faults (invalid output
//!   included) within `failure_window` calls fail fast with `PluginError::CircuitOpen` until
//!   `cooldown` passes, then one trial call decides.
//! - Limits: [`VerificationRunner::with_gate`] puts an [`ActionGate`] in front of every HTTP
//!   action; a caller's event whose actions are over a limit is refused
//!   ([`RunnerError::Limited`]) without committing, and an action refused right before it is
//!   performed is answered to the plugin as HTTP 429, never sent.
//! - In-process mode: same checks; a panic is caught by the SDK and poisons the instance; a hang
//!   is reported as `Timeout` but its thread cannot be stopped (use Worker for third parties).
//! - Plugin-supplied text (log lines, error messages, a worker's stderr) is scrubbed of ID,
//!   phone and card numbers and length-capped before it is logged ([`scrub`]).
//! - Every loaded library stays mapped (never dlclose'd) and its sealed memfd stays open.
//! - Worker confinement (see [`sandbox`]) is in place before the library's constructors run;
//!   the worker prints a loud warning on stderr where the kernel lacks Landlock.
//! - Runner: the caller should run `resume_pending()` at startup and, with
//!   `perform_inline = false`, periodically; and `fire_due_timers()` periodically.
//!
//! # Tests and benchmark
//! `cargo test -p plugin-host` (builds `plugin-misbehaving` and compiles
//! `plugins/reference-c/static_code.c` with `cc`); per-call overhead:
//! `cargo run --release -p plugin-host --example step_overhead`.
//!
//! # Example
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use plugin_host::{Egress, EgressOptions, Isolation, MemoryStore, Plugin, PluginSpec, RunnerOptions, VerificationRunner};
//! let path = "target/debug/libplugin_misbehaving.so";
//! let mut spec = PluginSpec::new("misbehaving", path, plugin_host::sha256_file(path.as_ref())?);
//! spec.isolation = Isolation::Worker;
//! spec.config = serde_json::json!({"behaviour": "ok"});
//! let plugin = Arc::new(Plugin::load(spec).await?);
//! let runner = VerificationRunner::new(plugin, Arc::new(MemoryStore::new()), Egress::new(EgressOptions::default())?, RunnerOptions::default());
//! let view = runner.start("vrf_1", &Default::default()).await?;
//! println!("{:?}", view.status);
//! # Ok(()) }
//! ```

pub mod channel;
pub mod conformance;
pub mod egress;
pub mod error;
pub mod gate;
mod inprocess;
pub mod load;
mod plugin;
pub mod protocol;
pub mod runner;
pub mod sandbox;
pub mod scrub;
pub mod spec;
pub mod store;
pub mod validate;
pub mod worker;

pub use egress::{Egress, EgressError, EgressOptions, EgressPolicy};
pub use error::PluginError;
pub use gate::{ActionGate, GateError};
pub use load::sha256_file;
pub use plugin::Plugin;
pub use runner::{Clock, RunnerError, RunnerOptions, VerificationRunner, VerificationView};
pub use spec::{Isolation, PluginSpec, Secret};
pub use store::{MemoryStore, PendingTimer, StoreError, VerificationRecord, VerificationStore};
pub use worker::{Health, WorkerOptions};
