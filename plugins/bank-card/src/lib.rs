//! Verifier plugin `bank-card`: the bank's 4-element check (name, resident ID number, card
//! number, phone reserved at the bank), confirmed by a one-time code the bank sends to the
//! reserved phone. Succeeds with all four verified at L2.
//!
//! Flow: start -> validate -> `bank-init` -> (code sent) challenge `sms_code` (+ expiry timer)
//! -> user_input -> `bank-confirm` -> succeeded | otp_wrong (attempts left) |
//! otp_attempts_exceeded | otp_expired. Init verdicts map to mismatch / card_invalid / card_lost /
//! card_restricted. Transient vendor failures are retried by timer, then `vendor_unavailable`.

#![cfg_attr(test, allow(clippy::unwrap_used))] // tests may unwrap

pub mod config;
mod flow;
pub use plugin_abi::vendor;

use plugin_abi::doc::{ApplicantField, Manifest, PluginKind, StepInput, StepOutput, DOC_VERSION};
use plugin_abi::sdk::{ConfigError, StepError, Verifier};

pub use config::Config;
pub use flow::{BANK_CONFIRM, BANK_INIT, OTP_EXPIRY_TIMER};

/// The plugin: a validated config.
#[derive(Debug)]
pub struct BankCard {
    config: Config,
}

impl Verifier for BankCard {
    type Config = Config;

    fn manifest() -> Manifest {
        Manifest {
            v: DOC_VERSION,
            name: "bank-card".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            kind: PluginKind::Verifier,
            methods: vec!["bank_card".into()],
            config_schema: config::schema(),
            egress_hosts: vec!["bank.example.cn:443".into()],
            applicant_fields: vec![
                ApplicantField::Name,
                ApplicantField::IdNumber,
                ApplicantField::Phone,
                ApplicantField::BankCard,
            ],
        }
    }

    fn configure(config: Config) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(BankCard { config })
    }

    fn step(&self, input: StepInput) -> Result<StepOutput, StepError> {
        flow::step(&self.config, input)
    }
}

plugin_abi::export_verifier!(BankCard);

#[cfg(test)]
mod tests;
