//! In-process mode: the plugin library is loaded into the host process (first-party plugins).
//! Same hash check and ABI checks as the worker; calls run on tokio's blocking pool. A panic is
//! caught by the SDK (the instance is poisoned: every later call fails), but a segfault or abort
//! takes the host down and a hang can only be timed out, not stopped (its thread also delays a
//! graceful runtime shutdown): use `Worker` for third-party code.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use plugin_abi::ffi::PluginInstance;

use crate::error::PluginError;
use crate::load;
use crate::spec::PluginSpec;

/// A configured in-process instance.
#[derive(Debug)]
pub(crate) struct InProcess {
    instance: Arc<Mutex<PluginInstance>>,
    /// Set when a call overran its deadline and is still running.
    hung: Arc<AtomicBool>,
}

impl InProcess {
    /// Loads, describes and configures; returns the instance and the raw manifest bytes.
    pub(crate) async fn load(spec: &PluginSpec) -> Result<(InProcess, Vec<u8>), PluginError> {
        let path = spec.path.clone();
        let sha = spec.sha256.clone();
        let cfg = serde_json::to_vec(&spec.config)
            .map_err(|e| PluginError::Config(format!("config is not serialisable: {e}")))?;
        tokio::task::spawn_blocking(move || {
            let table = load::load_verified(&path, &sha)?;
            let manifest = table.describe().map_err(PluginError::from_call)?;
            let instance = table.configure(&cfg).map_err(PluginError::from_call)?;
            Ok((
                InProcess {
                    instance: Arc::new(Mutex::new(instance)),
                    hung: Arc::new(AtomicBool::new(false)),
                },
                manifest,
            ))
        })
        .await
        .map_err(|e| PluginError::Load(format!("loader task failed: {e}")))?
    }

    /// One step call; the reply bytes are validated by the caller. After a call overran its
    /// deadline, its thread is still inside the plugin: later calls fail fast with `Timeout`
    /// (instead of piling up blocked threads) until that call returns, if ever.
    pub(crate) async fn step(
        &self,
        input: Vec<u8>,
        deadline: Duration,
    ) -> Result<Vec<u8>, PluginError> {
        if self.hung.load(Ordering::Acquire) {
            return Err(PluginError::Timeout { deadline });
        }
        let instance = Arc::clone(&self.instance);
        let hung = Arc::clone(&self.hung);
        let call = tokio::task::spawn_blocking(move || {
            // A poisoned std mutex means a previous call unwound through the host (not the
            // plugin, whose panics the SDK catches); the instance itself is still consistent.
            let mut guard = instance.lock().unwrap_or_else(|p| p.into_inner());
            let r = guard.step(&input).map_err(PluginError::from_call);
            hung.store(false, Ordering::Release);
            r
        });
        match tokio::time::timeout(deadline, call).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => Err(PluginError::Load(format!("step task failed: {e}"))),
            Err(_) => {
                self.hung.store(true, Ordering::Release);
                Err(PluginError::Timeout { deadline })
            }
        }
    }
}
