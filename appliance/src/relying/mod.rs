//! What relying parties (a government portal, an e-bidding system) need to trust our
//! certificates: QR login challenges answered by a signature from the phone (`login`), CMS
//! signature verification (`cms`), both over one certificate check (`trust`) and one signature
//! verifier (`signature`).

pub mod callback;
pub mod cms;
pub mod login;
pub mod signature;
pub mod trust;

use serde::Deserialize;

pub use login::{LoginError, LoginService, LoginView};
pub use trust::{Level, Refusal, Trust};

/// `[login]`: QR login challenges.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginSettings {
    /// How long a challenge can be answered, seconds (1..=600, default 120).
    #[serde(default = "default_challenge_ttl")]
    pub challenge_ttl_secs: u32,
}

impl Default for LoginSettings {
    fn default() -> Self {
        Self {
            challenge_ttl_secs: default_challenge_ttl(),
        }
    }
}

fn default_challenge_ttl() -> u32 {
    120
}

impl LoginSettings {
    /// Checks the ranges.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=600).contains(&self.challenge_ttl_secs) {
            return Err("[login] challenge_ttl_secs must be 1..=600".into());
        }
        Ok(())
    }
}

/// The relying-party services the API uses.
#[derive(Clone)]
pub struct Relying {
    /// QR login challenges.
    pub login: LoginService,
    /// CMS signature verification.
    pub cms: cms::CmsVerifier,
}

impl Relying {
    /// Builds both over the hierarchy, the stored certificates and the level OIDs.
    pub fn new(
        storage: &crate::storage::Storage,
        hierarchy: std::sync::Arc<crate::ca::Hierarchy>,
        certificates: crate::storage::CertificateStore,
        config: &crate::config::ApplianceConfig,
    ) -> Self {
        let trust = Trust::new(
            hierarchy,
            certificates.clone(),
            &config.applications.assurance_policy_oids,
        );
        Self {
            login: LoginService::new(storage.login(), trust.clone(), &config.login),
            cms: cms::CmsVerifier::new(trust, certificates),
        }
    }
}
