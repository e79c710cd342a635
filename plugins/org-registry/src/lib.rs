//! Verifier plugin `org-registry`: the organisation registry's check of name, USCC and legal
//! representative (name and ID number), plus registration status (not active is a failure).
//! A USCC whose GB 32100 check character fails is a soft failure: it is sent to the registry,
//! and only a registry `no_record` turns it into `invalid_uscc`.
//!
//! Outcomes: verified | mismatch | no_record | deregistered | invalid_uscc | invalid_id_number |
//! cancelled | vendor_unavailable.

#![cfg_attr(test, allow(clippy::unwrap_used))] // tests may unwrap

pub mod config;
mod flow;
pub use plugin_abi::vendor;

use plugin_abi::doc::{ApplicantField, Manifest, PluginKind, StepInput, StepOutput, DOC_VERSION};
use plugin_abi::sdk::{ConfigError, StepError, Verifier};

pub use config::Config;
pub use flow::REGISTRY_CHECK;

/// The plugin: a validated config.
#[derive(Debug)]
pub struct OrgRegistry {
    config: Config,
}

impl Verifier for OrgRegistry {
    type Config = Config;

    fn manifest() -> Manifest {
        Manifest {
            v: DOC_VERSION,
            name: "org-registry".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            kind: PluginKind::Verifier,
            methods: vec!["org_registry".into()],
            config_schema: config::schema(),
            egress_hosts: vec!["registry.example.cn:443".into()],
            applicant_fields: vec![
                ApplicantField::OrgName,
                ApplicantField::Uscc,
                ApplicantField::LegalRepName,
                ApplicantField::LegalRepId,
            ],
        }
    }

    fn configure(config: Config) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(OrgRegistry { config })
    }

    fn step(&self, input: StepInput) -> Result<StepOutput, StepError> {
        flow::step(&self.config, input)
    }
}

plugin_abi::export_verifier!(OrgRegistry);

#[cfg(test)]
mod tests;
