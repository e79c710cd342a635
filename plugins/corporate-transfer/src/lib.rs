//! Verifier plugin `corporate-transfer`: a micro-deposit (0.01-0.99 CNY) to the organisation's
//! bank account; the payout provider draws the amount and a 6-digit verification code printed in
//! the remark, and the applicant reads both on the statement and enters them back (`0.37 123456`)
//! within a window (default 72 h) with limited attempts: guessing succeeds with probability under
//! 10^-5 (see [`amount`]). Payout failures arrive asynchronously (poll timer or a callback that triggers a
//! pull). Registry-independent: pair it with `org-registry` for the organisation itself.
//!
//! Outcomes: verified | wrong_amount (attempts left) | attempts_exceeded | expired |
//! account_invalid | account_name_mismatch | cancelled | vendor_unavailable.

#![cfg_attr(test, allow(clippy::unwrap_used))] // tests may unwrap

pub mod amount;
pub mod config;
mod flow;
pub use plugin_abi::vendor;

use plugin_abi::doc::{ApplicantField, Manifest, PluginKind, StepInput, StepOutput, DOC_VERSION};
use plugin_abi::sdk::{ConfigError, StepError, Verifier};

pub use config::Config;
pub use flow::{remark_code, PAYOUT_CREATE, PAYOUT_QUERY, POLL_TIMER};

/// The plugin: a validated config.
#[derive(Debug)]
pub struct CorporateTransfer {
    config: Config,
}

impl Verifier for CorporateTransfer {
    type Config = Config;

    fn manifest() -> Manifest {
        Manifest {
            v: DOC_VERSION,
            name: "corporate-transfer".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            kind: PluginKind::Verifier,
            methods: vec!["corporate_transfer".into()],
            config_schema: config::schema(),
            egress_hosts: vec!["payout.example.cn:443".into()],
            applicant_fields: vec![
                ApplicantField::OrgName,
                ApplicantField::BankAccount,
                ApplicantField::BankName,
            ],
        }
    }

    fn configure(config: Config) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(CorporateTransfer { config })
    }

    fn step(&self, input: StepInput) -> Result<StepOutput, StepError> {
        flow::step(&self.config, input)
    }
}

plugin_abi::export_verifier!(CorporateTransfer);

#[cfg(test)]
mod tests;
