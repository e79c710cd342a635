//! Process hardening applied first thing in `main`: the appliance holds the HSM PIN and the data
//! key in memory, so it is made non-dumpable (no ptrace, no `/proc/PID/mem` for a process of the
//! same user, no core dump); and the kernel's Landlock support is checked once, so a host where
//! plugin workers would run without it says so loudly at start.

/// What [`apply`] found, logged once tracing is up.
pub struct Hardening {
    dumpable: Result<(), std::io::Error>,
    landlock: Result<u32, String>,
}

/// Makes the process non-dumpable and probes Landlock; call before anything else in `main`.
pub fn apply() -> Hardening {
    Hardening {
        dumpable: plugin_host::sandbox::make_undumpable(),
        landlock: plugin_host::sandbox::landlock_status(),
    }
}

impl Hardening {
    /// Logs what is missing (a warning each); silent when everything is in place.
    pub fn log(&self) {
        if let Err(e) = &self.dumpable {
            tracing::warn!("could not make the process non-dumpable: {e}");
        }
        match &self.landlock {
            Ok(abi) => tracing::debug!(abi, "landlock available for plugin workers"),
            Err(e) => tracing::warn!(
                "LANDLOCK UNAVAILABLE ({e}): worker-isolated plugins can read every file this \
                 user can read while they load (their seccomp filter still applies); run the \
                 appliance on a kernel with Landlock in lsm= or give workers their own user"
            ),
        }
    }
}
