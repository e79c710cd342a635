//! How the appliance reaches applicants and partners: the implementations of the
//! [`crate::contact`] seams. [`outbox`] queues channel-plugin deliveries durably and delivers
//! them in the background (retried, survives restarts); [`codes`] makes and checks the
//! appliance's own one-time codes; [`captcha`] issues and redeems picture captchas ([`png`]).
//! [`Contact`] builds all three from the configuration and the loaded channel plugins.

pub mod callback;
pub mod captcha;
pub mod codes;
pub mod outbox;
pub mod png;

use std::collections::BTreeMap;
use std::sync::Arc;

use plugin_host::{Egress, EgressOptions, Plugin};

use crate::config::{ApplianceConfig, ContactSettings};
use crate::contact::{Captchas, ChannelNotifier, OneTimeCodes};
use crate::storage::Storage;
use crate::verification::{Keyring, VerificationService};

pub use captcha::CaptchaService;
pub use codes::{CodeRules, CodeService};
pub use outbox::{DeliveryView, Outbox, Schedule};

/// A channel's channel plugins: who receives its application events, who sends its SMS/e-mail.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelPlugins {
    /// `[[plugin]]` names of channel plugins that receive the channel's application events.
    #[serde(default)]
    pub plugins: Vec<String>,
    /// `[[plugin]]` name of the channel plugin that sends its SMS and e-mail.
    #[serde(default)]
    pub notifier: Option<String>,
}

/// `check-config`: loads every plugin a channel names as `plugins` or `notifier` (as configured:
/// in a worker by default) and checks its manifest: a channel plugin, and a notifier that sends
/// SMS. Returns how many were checked; the error names the plugin and the rule.
pub async fn check_channel_plugins(config: &ApplianceConfig) -> Result<usize, String> {
    use plugin_abi::channel::METHOD_SMS;
    use plugin_abi::doc::PluginKind;
    let mut checked = BTreeMap::new();
    let mut notifiers = std::collections::BTreeSet::new();
    for channel in &config.channels {
        for name in channel.plugins.iter().chain(channel.notifier.iter()) {
            checked.insert(name.clone(), None);
        }
        notifiers.extend(channel.notifier.iter().cloned());
    }
    for (name, methods) in checked.iter_mut() {
        let Some(p) = config.plugins.iter().find(|p| &p.name == name) else {
            return Err(format!(
                "channel plugin {name} is not a configured [[plugin]]"
            ));
        };
        crate::verification::registry::check_file(p).map_err(|e| e.to_string())?;
        let spec = crate::verification::registry::spec_of(p).map_err(|e| e.to_string())?;
        let plugin = Plugin::load(spec)
            .await
            .map_err(|e| format!("channel plugin {name}: {e}"))?;
        if plugin.manifest().kind != PluginKind::Channel {
            return Err(format!(
                "plugin {name} is named as a channel plugin, but its manifest kind is {:?}",
                plugin.manifest().kind
            ));
        }
        *methods = Some(plugin.manifest().methods.clone());
    }
    for name in &notifiers {
        let sends_sms = checked
            .get(name)
            .and_then(Option::as_ref)
            .is_some_and(|m| m.iter().any(|x| x == METHOD_SMS));
        if !sends_sms {
            return Err(format!(
                "channel plugin {name} is a notifier but does not send SMS (its manifest lacks \"{METHOD_SMS}\")"
            ));
        }
    }
    Ok(checked.len())
}

/// Why the contact services could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ContactError {
    /// The HTTP client for channel plugins could not be built.
    #[error("channel plugin egress: {0}")]
    Egress(String),
}

/// The three contact services, ready for the applications engine, plus the delivery task.
#[derive(Clone)]
pub struct Contact {
    /// The durable outbox (also the [`ChannelNotifier`]).
    pub outbox: Arc<Outbox>,
    /// Channel notifications.
    pub notifier: Arc<dyn ChannelNotifier>,
    /// One-time codes.
    pub codes: Arc<dyn OneTimeCodes>,
    /// Picture captchas.
    pub captchas: Arc<dyn Captchas>,
}

impl std::fmt::Debug for Contact {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Contact")
            .field("outbox", &self.outbox)
            .finish_non_exhaustive()
    }
}

impl Contact {
    /// Builds the services from the configuration (`[contact]`, and each `[[channel]]`'s
    /// `plugins` / `notifier`), the channel plugins loaded by the verification service's
    /// registry and its personal-data keys. Channel files add theirs with
    /// [`Contact::set_channels`]. Call [`Contact::spawn_background`] once.
    pub fn new(
        config: &ApplianceConfig,
        storage: &Storage,
        verifications: &VerificationService,
    ) -> Result<Contact, ContactError> {
        let contact = Self::with_parts(
            &config.contact,
            storage,
            verifications.keyring(),
            verifications.registry().channel_plugins().clone(),
        )?;
        contact.set_channels(
            config
                .channels
                .iter()
                .filter(|c| !c.plugins.is_empty() || c.notifier.is_some())
                .map(|c| {
                    (
                        c.name.clone(),
                        ChannelPlugins {
                            plugins: c.plugins.clone(),
                            notifier: c.notifier.clone(),
                        },
                    )
                })
                .collect(),
        );
        Ok(contact)
    }

    /// Builds the services from explicit parts (tests; an appliance without verifiers); no
    /// channel has plugins until [`Contact::set_channels`].
    pub fn with_parts(
        settings: &ContactSettings,
        storage: &Storage,
        keyring: Arc<Keyring>,
        plugins: BTreeMap<String, Arc<Plugin>>,
    ) -> Result<Contact, ContactError> {
        let egress = Egress::new(EgressOptions::default())
            .map_err(|e| ContactError::Egress(e.to_string()))?;
        let s = settings;
        let outbox = Arc::new(Outbox::new(
            storage.notify(),
            keyring.clone(),
            plugins,
            egress,
            Schedule::from_settings(s),
        ));
        let notifier: Arc<dyn ChannelNotifier> = outbox.clone();
        let codes = Arc::new(CodeService::new(
            storage.notify(),
            keyring,
            notifier.clone(),
            CodeRules {
                ttl_secs: i64::from(s.code_ttl_secs),
                resend_secs: i64::from(s.code_resend_secs),
                max_attempts: s.code_max_attempts,
            },
        ));
        let captchas = Arc::new(CaptchaService::new(storage.notify(), s.captcha_ttl_secs));
        Ok(Contact {
            outbox,
            notifier,
            codes,
            captchas,
        })
    }

    /// Adds (or replaces) channels' plugins, e.g. from `config/channels/*.toml`.
    pub fn set_channels(&self, channels: BTreeMap<String, ChannelPlugins>) {
        self.outbox.set_channels(channels);
    }

    /// Starts the delivery task (due deliveries at once, then as they are queued or fall due).
    pub fn spawn_background(&self) -> tokio::task::JoinHandle<()> {
        self.outbox.spawn()
    }
}
