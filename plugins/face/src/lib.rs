//! Verifier plugin `face`: a vendor liveness + face comparison session. The person opens the
//! vendor's page (a URL, or a QR code of it on another phone), the verdict is pulled by a polling
//! timer or announced by a vendor callback (which only triggers a pull: a notification body is
//! never trusted as the verdict). Succeeds with name and ID number verified at L3 when liveness
//! passes and the similarity reaches the configured threshold.
//!
//! Outcomes: verified | liveness_failed | not_same_person | no_record | cancelled | expired |
//! invalid_id_number | vendor_unavailable.

#![cfg_attr(test, allow(clippy::unwrap_used))] // tests may unwrap

pub mod config;
mod flow;
pub use plugin_abi::vendor;

use plugin_abi::doc::{ApplicantField, Manifest, PluginKind, StepInput, StepOutput, DOC_VERSION};
use plugin_abi::sdk::{ConfigError, StepError, Verifier};

pub use config::Config;
pub use flow::{FACE_RESULT, FACE_START, POLL_TIMER};

/// The plugin: a validated config.
#[derive(Debug)]
pub struct Face {
    config: Config,
}

impl Verifier for Face {
    type Config = Config;

    fn manifest() -> Manifest {
        Manifest {
            v: DOC_VERSION,
            name: "face".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            kind: PluginKind::Verifier,
            methods: vec!["face".into()],
            config_schema: config::schema(),
            egress_hosts: vec!["face.example.cn:443".into()],
            applicant_fields: vec![ApplicantField::Name, ApplicantField::IdNumber],
        }
    }

    fn configure(config: Config) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Face { config })
    }

    fn step(&self, input: StepInput) -> Result<StepOutput, StepError> {
        flow::step(&self.config, input)
    }
}

plugin_abi::export_verifier!(Face);

#[cfg(test)]
mod tests;
