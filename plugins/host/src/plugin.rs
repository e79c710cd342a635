//! [`Plugin`]: one loaded, configured plugin, in-process or in a worker, behind one API.

use plugin_abi::channel::{ChannelInput, ChannelOutput};
use plugin_abi::doc::{Manifest, PluginKind, StepInput, StepOutput};

use crate::egress::EgressPolicy;
use crate::error::PluginError;
use crate::inprocess::InProcess;
use crate::load;
use crate::spec::{Isolation, PluginSpec};
use crate::validate;
use crate::worker::{Health, WorkerHost, WorkerOptions};

#[derive(Debug)]
enum Backend {
    InProcess(InProcess),
    Worker(Box<WorkerHost>),
}

/// A loaded plugin: hash-checked, ABI-checked, manifest validated, configured.
#[derive(Debug)]
pub struct Plugin {
    spec: PluginSpec,
    manifest: Manifest,
    backend: Backend,
}

impl Plugin {
    /// Loads a plugin as its spec says, with default worker supervision.
    pub async fn load(spec: PluginSpec) -> Result<Plugin, PluginError> {
        Plugin::load_with(spec, WorkerOptions::default()).await
    }

    /// Loads a plugin with explicit worker supervision options (ignored in-process).
    ///
    /// The file's SHA-256 is checked here first (a mismatch is refused before any of the
    /// library's code runs, in either mode) and again by whoever dlopens it.
    pub async fn load_with(
        spec: PluginSpec,
        options: WorkerOptions,
    ) -> Result<Plugin, PluginError> {
        Plugin::load_inner(spec, options, true).await
    }

    /// Loads; `check_name` = false lets the conformance suite load a plugin it knows only by path.
    pub(crate) async fn load_inner(
        spec: PluginSpec,
        options: WorkerOptions,
        check_name: bool,
    ) -> Result<Plugin, PluginError> {
        let path = spec.path.clone();
        let expected = spec.sha256.trim().to_ascii_lowercase();
        let actual = tokio::task::spawn_blocking(move || load::sha256_file(&path))
            .await
            .map_err(|e| PluginError::Load(format!("hash task failed: {e}")))??;
        if actual != expected {
            return Err(PluginError::HashMismatch { expected, actual });
        }
        let (backend, manifest_bytes) = match spec.isolation {
            Isolation::InProcess => {
                let (p, m) = InProcess::load(&spec).await?;
                (Backend::InProcess(p), m)
            }
            Isolation::Worker => {
                let (w, m) = WorkerHost::start(&spec, options).await?;
                (Backend::Worker(Box::new(w)), m)
            }
        };
        let manifest = validate::parse_manifest(&manifest_bytes)?;
        if check_name && manifest.name != spec.name {
            return Err(PluginError::Manifest(format!(
                "manifest name {:?} is not the configured name {:?}",
                manifest.name, spec.name
            )));
        }
        Ok(Plugin {
            spec,
            manifest,
            backend,
        })
    }

    /// The validated manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The operator's spec this plugin was loaded from.
    pub fn spec(&self) -> &PluginSpec {
        &self.spec
    }

    /// The plugin's name.
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// Runs one step and returns the validated output.
    pub async fn step(&self, input: &StepInput) -> Result<StepOutput, PluginError> {
        let bytes = serde_json::to_vec(input).map_err(|e| PluginError::Status {
            status: plugin_abi::StatusCode::InvalidArgument,
            message: format!("StepInput not serialisable: {e}"),
        })?;
        self.step_bytes(bytes).await
    }

    /// Runs one step on raw StepInput bytes (conformance tests send garbage on purpose).
    pub async fn step_bytes(&self, input: Vec<u8>) -> Result<StepOutput, PluginError> {
        self.call(input, validate::parse_step_output).await
    }

    /// Hands a channel plugin one delivery request; returns its validated actions. A verifier
    /// is refused without a call.
    pub async fn deliver(&self, input: &ChannelInput) -> Result<ChannelOutput, PluginError> {
        if self.manifest.kind != PluginKind::Channel {
            return Err(PluginError::Status {
                status: plugin_abi::StatusCode::Unsupported,
                message: format!("plugin {} is not a channel plugin", self.spec.name),
            });
        }
        let bytes = serde_json::to_vec(input).map_err(|e| PluginError::Status {
            status: plugin_abi::StatusCode::InvalidArgument,
            message: format!("ChannelInput not serialisable: {e}"),
        })?;
        self.deliver_bytes(bytes).await
    }

    /// Runs a channel step on raw ChannelInput bytes (the conformance suite sends garbage).
    pub async fn deliver_bytes(&self, input: Vec<u8>) -> Result<ChannelOutput, PluginError> {
        self.call(input, validate::parse_channel_output).await
    }

    /// One call of the plugin's `step` with `input`, its reply checked by `check`.
    async fn call<T>(
        &self,
        input: Vec<u8>,
        check: fn(&[u8]) -> Result<T, PluginError>,
    ) -> Result<T, PluginError> {
        if input.len() > plugin_abi::doc::MAX_INPUT_BYTES {
            return Err(PluginError::Status {
                status: plugin_abi::StatusCode::InvalidArgument,
                message: format!(
                    "input is {} bytes, over the {}-byte cap; not sent",
                    input.len(),
                    plugin_abi::doc::MAX_INPUT_BYTES
                ),
            });
        }
        let deadline = self.spec.step_deadline;
        match &self.backend {
            Backend::InProcess(p) => {
                let reply = p.step(input, deadline).await?;
                check(&reply).inspect_err(|e| {
                    tracing::warn!(plugin = %self.spec.name, error = %e, "plugin output rejected");
                })
            }
            // The worker host validates before it counts the call a success: invalid output
            // counts towards the circuit breaker like a crash.
            Backend::Worker(w) => w.step(&input, deadline, check).await,
        }
    }

    /// Process ids of the idle workers (empty in-process); tests stop one to model a hang.
    pub fn idle_worker_pids(&self) -> Vec<u32> {
        match &self.backend {
            Backend::InProcess(_) => Vec::new(),
            Backend::Worker(w) => w.idle_pids(),
        }
    }

    /// The egress policy for this plugin's HTTP actions: the spec's hosts, or the manifest's
    /// defaults when the spec lists none.
    pub fn egress_policy(&self) -> EgressPolicy {
        let hosts = if self.spec.egress_hosts.is_empty() {
            self.manifest.egress_hosts.clone()
        } else {
            self.spec.egress_hosts.clone()
        };
        EgressPolicy {
            plugin: self.spec.name.clone(),
            hosts,
            allow_plain_http: self.spec.allow_plain_http,
            secrets: self.spec.secrets.clone(),
        }
    }

    /// Worker supervision counters; `None` in-process.
    pub async fn health(&self) -> Option<Health> {
        match &self.backend {
            Backend::InProcess(_) => None,
            Backend::Worker(w) => Some(w.health().await),
        }
    }
}
