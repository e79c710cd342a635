//! Channel plugin `channel-webhook`: every application event of its channel (or those listed in
//! `events`) becomes one JSON POST to the partner's `url`, signed by the host with the secret
//! `webhook_secret` (`x-ca-timestamp`, `x-ca-signature` = hex HMAC-SHA256 over
//! `timestamp + "." + body`) and retried by the host until the partner answers 2xx. The body:
//!
//! ```json
//! {"v":1,"delivery_id":"ntf_...","event":{"channel","application_id","application_kind",
//!  "event","status","reference"?,"certificate_serial"?,"failure_code"?,"at"}}
//! ```
//!
//! The partner de-duplicates by `delivery_id` (delivery is at least once). No personal data: the
//! manifest lists neither `sms` nor `email`, so the host strips phone and e-mail.

#![cfg_attr(test, allow(clippy::unwrap_used))] // tests may unwrap

use std::collections::BTreeMap;

use plugin_abi::channel::{
    ChannelAction, ChannelHttp, ChannelInput, ChannelOutput, ChannelRequest, Signing, METHOD_EVENTS,
};
use plugin_abi::doc::{HttpMethod, Manifest, PluginKind, DOC_VERSION};
use plugin_abi::sdk::{Channel, ConfigError, StepError};
use plugin_abi::vendor::{check_range, check_url};
use serde::Deserialize;
use serde_json::{json, Value};

/// Name of the secret that keys the signature.
pub const SECRET: &str = "webhook_secret";

/// Event names a channel may filter on.
pub const EVENTS: [&str; 8] = [
    "created",
    "needs_applicant",
    "choice_offered",
    "awaiting_review",
    "issued",
    "rejected",
    "expired",
    "cancelled",
];

fn default_timeout() -> u32 {
    5000
}

/// Operator config (JSON). The secret is not in it: the host signs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The partner's callback URL.
    pub url: String,
    /// Only these events (default: all).
    #[serde(default)]
    pub events: Option<Vec<String>>,
    /// Per-request timeout in ms, 100-30000 (default 5000).
    #[serde(default = "default_timeout")]
    pub timeout_ms: u32,
}

/// The plugin: a validated config.
#[derive(Debug)]
pub struct Webhook {
    config: Config,
}

fn schema() -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "additionalProperties": false,
        "required": ["url"],
        "properties": {
            "url": {"type": "string", "format": "uri"},
            "events": {"type": "array", "items": {"enum": EVENTS}},
            "timeout_ms": {"type": "integer", "minimum": 100, "maximum": 30000, "default": 5000},
            "webhook_secret": {"type": "string", "x-secret": true,
                "description": "keys the HMAC-SHA256 signature the host adds"}
        }
    })
}

impl Channel for Webhook {
    type Config = Config;

    fn manifest() -> Manifest {
        Manifest {
            v: DOC_VERSION,
            name: "channel-webhook".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            kind: PluginKind::Channel,
            methods: vec![METHOD_EVENTS.into()],
            config_schema: schema(),
            egress_hosts: Vec::new(),
            applicant_fields: Vec::new(),
        }
    }

    fn configure(config: Config) -> Result<Self, ConfigError> {
        check_url("url", &config.url)?;
        check_range("timeout_ms", config.timeout_ms, 100, 30_000)?;
        if let Some(events) = &config.events {
            if let Some(e) = events.iter().find(|e| !EVENTS.contains(&e.as_str())) {
                return Err(ConfigError::new(format!(
                    "events: {e:?} is not one of {EVENTS:?}"
                )));
            }
        }
        Ok(Webhook { config })
    }

    fn deliver(&self, input: ChannelInput) -> Result<ChannelOutput, StepError> {
        let ChannelRequest::ApplicationEvent { event } = input.request else {
            return Err(StepError::Unsupported(
                "channel-webhook delivers application events only".into(),
            ));
        };
        if let Some(only) = &self.config.events {
            if !only.contains(&event.event) {
                return Ok(ChannelOutput::new(Vec::new()));
            }
        }
        let body = json!({"v": 1, "delivery_id": input.delivery_id, "event": event});
        let mut headers = BTreeMap::new();
        headers.insert("content-type".into(), "application/json".into());
        headers.insert("x-ca-delivery".into(), input.delivery_id.clone());
        Ok(ChannelOutput::new(vec![ChannelAction::Http(ChannelHttp {
            id: "callback".into(),
            method: HttpMethod::POST,
            url: self.config.url.clone(),
            headers,
            body: Some(body.to_string()),
            timeout_ms: self.config.timeout_ms,
            sign: Some(Signing {
                secret: SECRET.into(),
            }),
        })]))
    }
}

plugin_abi::export_channel!(Webhook);

#[cfg(test)]
mod tests {
    use super::*;
    use plugin_abi::channel::ChannelEvent;

    fn event(name: &str) -> ChannelInput {
        ChannelInput {
            v: 1,
            delivery_id: "ntf_1".into(),
            now: "2026-01-01T00:00:00Z".into(),
            request: ChannelRequest::ApplicationEvent {
                event: ChannelEvent {
                    channel: "c".into(),
                    application_id: "app_1".into(),
                    application_kind: "new".into(),
                    event: name.into(),
                    status: "issued".into(),
                    at: 1,
                    ..Default::default()
                },
            },
        }
    }

    #[test]
    fn one_signed_post_per_event_and_filters() {
        let w = Webhook::configure(Config {
            url: "https://partner.example/hook".into(),
            events: Some(vec!["issued".into()]),
            timeout_ms: 5000,
        })
        .unwrap();
        let out = w.deliver(event("issued")).unwrap();
        out.check_rules().unwrap();
        let ChannelAction::Http(h) = &out.actions[0];
        assert_eq!(h.sign.as_ref().unwrap().secret, SECRET);
        let body: Value = serde_json::from_str(h.body.as_deref().unwrap()).unwrap();
        assert_eq!(body["delivery_id"], "ntf_1");
        assert_eq!(body["event"]["application_id"], "app_1");
        assert!(w.deliver(event("created")).unwrap().actions.is_empty());
        let sms = ChannelInput {
            request: ChannelRequest::Sms {
                to: "1".into(),
                text: "x".into(),
            },
            ..event("issued")
        };
        assert!(matches!(w.deliver(sms), Err(StepError::Unsupported(_))));
    }

    #[test]
    fn bad_config_is_refused() {
        let bad = |url: &str, events: Option<Vec<String>>| {
            Webhook::configure(Config {
                url: url.into(),
                events,
                timeout_ms: 5000,
            })
            .is_err()
        };
        assert!(bad("partner.example", None));
        assert!(bad("https://p.example/", Some(vec!["exploded".into()])));
        assert!(!bad("https://p.example/", None));
    }
}
