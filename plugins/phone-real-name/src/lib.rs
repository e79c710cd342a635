//! Verifier plugin `phone-real-name`: the carrier's 3-element check (name, resident ID number,
//! mobile number), then a one-time code sent by the SMS gateway to that phone. Succeeds with
//! name, ID number and phone verified at L2.
//!
//! Flow: start -> validate -> `carrier-check` -> (match) `sms-send` -> challenge `sms_code`
//! (+ expiry timer) -> user_input -> `sms-verify` -> succeeded | otp_wrong (attempts left) |
//! otp_attempts_exceeded | otp_expired. Transient vendor failures are retried by timer, then
//! `vendor_unavailable`. Deterministic: time comes from `StepInput.now`, the code from the gateway.

#![cfg_attr(test, allow(clippy::unwrap_used))] // tests may unwrap

pub mod config;
mod flow;
pub use plugin_abi::vendor;

use plugin_abi::doc::{ApplicantField, Manifest, PluginKind, StepInput, StepOutput, DOC_VERSION};
use plugin_abi::sdk::{ConfigError, StepError, Verifier};

pub use config::Config;
pub use flow::{CARRIER_CHECK, OTP_EXPIRY_TIMER, SMS_SEND, SMS_VERIFY};

/// The plugin: a validated config.
#[derive(Debug)]
pub struct PhoneRealName {
    config: Config,
}

impl Verifier for PhoneRealName {
    type Config = Config;

    fn manifest() -> Manifest {
        Manifest {
            v: DOC_VERSION,
            name: "phone-real-name".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            kind: PluginKind::Verifier,
            methods: vec!["phone_real_name".into()],
            config_schema: config::schema(),
            egress_hosts: vec!["carrier.example.cn:443".into(), "sms.example.cn:443".into()],
            applicant_fields: vec![
                ApplicantField::Name,
                ApplicantField::IdNumber,
                ApplicantField::Phone,
            ],
        }
    }

    fn configure(config: Config) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(PhoneRealName { config })
    }

    fn step(&self, input: StepInput) -> Result<StepOutput, StepError> {
        flow::step(&self.config, input)
    }
}

plugin_abi::export_verifier!(PhoneRealName);

#[cfg(test)]
mod tests;
