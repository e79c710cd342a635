//! Crash and fault tests' hooks: `CA_APPLIANCE_FAULT=<name>` in the environment makes the point
//! so named misbehave, so tests can play the crash or the fault a promise must survive. Unset in
//! production, where every hook is a no-op. The points: `after-revocation-commit` (aborts:
//! revocation committed, OCSP not yet re-signed), `after-application-issuance` (aborts:
//! certificate committed, application not yet marked issued), `corrupt-signature` (the HSM's
//! signature is altered, which the signing path's verification must catch).

/// Whether the fault `name` is requested.
pub fn active(name: &str) -> bool {
    std::env::var_os("CA_APPLIANCE_FAULT").is_some_and(|v| v == name)
}

/// Aborts the process here when the fault `name` is requested.
pub fn crash_point(name: &str) {
    if active(name) {
        tracing::error!(point = name, "CA_APPLIANCE_FAULT: aborting on purpose");
        std::process::abort();
    }
}
