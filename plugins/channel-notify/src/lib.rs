//! Channel plugin `channel-notify`: the channel's notifier. Sends the appliance's SMS (one-time
//! codes) through the SMS gateway (`POST {sms_url}/sms/v1/message`) and e-mail through the mail
//! gateway (`POST {mail_url}/mail/v1/send`), each with `request_id` = the delivery id (the
//! gateway's idempotency key: a retried delivery is not sent twice) and the API key injected by
//! the host (`{{secret:sms_api_key}}`, `{{secret:mail_api_key}}`). On the application events
//! listed in `notify_events` it tells the applicant by SMS (and by e-mail when one was given).

#![cfg_attr(test, allow(clippy::unwrap_used))] // tests may unwrap

use plugin_abi::channel::{
    ChannelAction, ChannelEvent, ChannelHttp, ChannelInput, ChannelOutput, ChannelRequest,
    METHOD_EMAIL, METHOD_EVENTS, METHOD_SMS,
};
use plugin_abi::doc::{Manifest, PluginKind, DOC_VERSION};
use plugin_abi::sdk::{Channel, ConfigError, StepError};
use plugin_abi::vendor::{check_range, check_url, post_json};
use serde::Deserialize;
use serde_json::{json, Value};

/// Secret sent as `x-api-key` to the SMS gateway.
pub const SMS_SECRET: &str = "sms_api_key";
/// Secret sent as `x-api-key` to the mail gateway.
pub const MAIL_SECRET: &str = "mail_api_key";
/// SMS gateway path.
pub const SMS_PATH: &str = "/sms/v1/message";
/// Mail gateway path.
pub const MAIL_PATH: &str = "/mail/v1/send";

/// Events that may notify the applicant.
pub const EVENTS: [&str; 6] = [
    "needs_applicant",
    "choice_offered",
    "issued",
    "rejected",
    "expired",
    "cancelled",
];

fn default_timeout() -> u32 {
    5000
}

fn default_signature() -> String {
    "【CA】".into()
}

/// Operator config (JSON). The API keys are secrets the host injects.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// SMS gateway base URL.
    pub sms_url: String,
    /// Mail gateway base URL (absent: e-mail is refused).
    #[serde(default)]
    pub mail_url: Option<String>,
    /// Sender address of e-mails.
    #[serde(default)]
    pub mail_from: Option<String>,
    /// SMS signature prefix (carriers require one), default `【CA】`.
    #[serde(default = "default_signature")]
    pub sms_signature: String,
    /// Application events that notify the applicant (default: none).
    #[serde(default)]
    pub notify_events: Vec<String>,
    /// Per-request timeout in ms, 100-30000 (default 5000).
    #[serde(default = "default_timeout")]
    pub timeout_ms: u32,
}

/// The plugin: a validated config.
#[derive(Debug)]
pub struct Notify {
    config: Config,
}

fn schema() -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "additionalProperties": false,
        "required": ["sms_url"],
        "properties": {
            "sms_url": {"type": "string", "format": "uri"},
            "mail_url": {"type": "string", "format": "uri"},
            "mail_from": {"type": "string"},
            "sms_signature": {"type": "string", "maxLength": 16},
            "notify_events": {"type": "array", "items": {"enum": EVENTS}},
            "timeout_ms": {"type": "integer", "minimum": 100, "maximum": 30000, "default": 5000},
            "sms_api_key": {"type": "string", "x-secret": true, "description": "x-api-key of the SMS gateway"},
            "mail_api_key": {"type": "string", "x-secret": true, "description": "x-api-key of the mail gateway"}
        }
    })
}

/// The applicant notice for an event (no personal data beyond the application id).
fn notice(e: &ChannelEvent) -> (String, String) {
    let what = match e.event.as_str() {
        "needs_applicant" => "等待您完成下一步验证 (waiting for your next verification step)",
        "choice_offered" => "请选择验证方式 (please choose a verification method)",
        "issued" => "证书已签发 (your certificate was issued)",
        "rejected" => "申请未通过 (your application was rejected)",
        "expired" => "申请已过期 (your application expired)",
        "cancelled" => "申请已取消 (your application was cancelled)",
        _ => "状态已更新 (status updated)",
    };
    (
        format!("Certificate application {}", e.application_id),
        format!("您的证书申请 {} {what}", e.application_id),
    )
}

impl Notify {
    fn sms(&self, id: &str, delivery: &str, to: &str, text: &str) -> ChannelAction {
        let body = json!({
            "request_id": format!("{delivery}:{id}"),
            "phone": to,
            "text": format!("{}{text}", self.config.sms_signature),
        });
        let a = post_json(
            id,
            &self.config.sms_url,
            SMS_PATH,
            SMS_SECRET,
            &body,
            self.config.timeout_ms,
        );
        ChannelAction::Http(ChannelHttp {
            id: a.id,
            method: a.method,
            url: a.url,
            headers: a.headers,
            body: a.body,
            timeout_ms: a.timeout_ms,
            sign: None,
        })
    }

    fn email(
        &self,
        id: &str,
        delivery: &str,
        to: &str,
        subject: &str,
        text: &str,
    ) -> Result<ChannelAction, StepError> {
        let Some(base) = &self.config.mail_url else {
            return Err(StepError::Unsupported(
                "no mail_url is configured: e-mail is not available".into(),
            ));
        };
        let body = json!({
            "request_id": format!("{delivery}:{id}"),
            "from": self.config.mail_from,
            "to": to,
            "subject": subject,
            "text": text,
        });
        let a = post_json(
            id,
            base,
            MAIL_PATH,
            MAIL_SECRET,
            &body,
            self.config.timeout_ms,
        );
        Ok(ChannelAction::Http(ChannelHttp {
            id: a.id,
            method: a.method,
            url: a.url,
            headers: a.headers,
            body: a.body,
            timeout_ms: a.timeout_ms,
            sign: None,
        }))
    }
}

impl Channel for Notify {
    type Config = Config;

    fn manifest() -> Manifest {
        Manifest {
            v: DOC_VERSION,
            name: "channel-notify".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            kind: PluginKind::Channel,
            methods: vec![METHOD_EVENTS.into(), METHOD_SMS.into(), METHOD_EMAIL.into()],
            config_schema: schema(),
            egress_hosts: vec!["sms.example.cn:443".into(), "mail.example.cn:443".into()],
            applicant_fields: Vec::new(),
        }
    }

    fn configure(config: Config) -> Result<Self, ConfigError> {
        check_url("sms_url", &config.sms_url)?;
        if let Some(m) = &config.mail_url {
            check_url("mail_url", m)?;
        }
        check_range("timeout_ms", config.timeout_ms, 100, 30_000)?;
        if config.sms_signature.chars().count() > 16 {
            return Err(ConfigError::new(
                "sms_signature must be at most 16 characters",
            ));
        }
        if let Some(e) = config
            .notify_events
            .iter()
            .find(|e| !EVENTS.contains(&e.as_str()))
        {
            return Err(ConfigError::new(format!(
                "notify_events: {e:?} is not one of {EVENTS:?}"
            )));
        }
        Ok(Notify { config })
    }

    fn deliver(&self, input: ChannelInput) -> Result<ChannelOutput, StepError> {
        let id = input.delivery_id.as_str();
        let actions = match &input.request {
            ChannelRequest::Sms { to, text } => {
                if to.trim().is_empty() || text.is_empty() {
                    return Err(StepError::InvalidArgument(
                        "an SMS needs a phone and a text".into(),
                    ));
                }
                vec![self.sms("sms", id, to, text)]
            }
            ChannelRequest::Email { to, subject, text } => {
                if !to.contains('@') {
                    return Err(StepError::InvalidArgument(
                        "an e-mail needs an address".into(),
                    ));
                }
                vec![self.email("email", id, to, subject, text)?]
            }
            ChannelRequest::ApplicationEvent { event } => {
                if !self.config.notify_events.contains(&event.event) {
                    return Ok(ChannelOutput::new(Vec::new()));
                }
                let (subject, text) = notice(event);
                let mut actions = Vec::new();
                if let Some(phone) = event.phone.as_deref().filter(|p| !p.is_empty()) {
                    actions.push(self.sms("sms", id, phone, &text));
                }
                if let (Some(to), Some(_)) = (event.email.as_deref(), &self.config.mail_url) {
                    actions.push(self.email("email", id, to, &subject, &text)?);
                }
                actions
            }
        };
        Ok(ChannelOutput::new(actions))
    }
}

plugin_abi::export_channel!(Notify);

#[cfg(test)]
mod tests {
    use super::*;

    fn notify(events: &[&str]) -> Notify {
        Notify::configure(Config {
            sms_url: "https://sms.example.cn".into(),
            mail_url: Some("https://mail.example.cn".into()),
            mail_from: Some("ca@example.cn".into()),
            sms_signature: default_signature(),
            notify_events: events.iter().map(|s| s.to_string()).collect(),
            timeout_ms: 5000,
        })
        .unwrap()
    }

    fn input(request: ChannelRequest) -> ChannelInput {
        ChannelInput {
            v: 1,
            delivery_id: "ntf_9".into(),
            now: "2026-01-01T00:00:00Z".into(),
            request,
        }
    }

    #[test]
    fn sms_goes_to_the_gateway_with_the_secret_placeholder() {
        let out = notify(&[])
            .deliver(input(ChannelRequest::Sms {
                to: "13800138000".into(),
                text: "验证码 123456".into(),
            }))
            .unwrap();
        out.check_rules().unwrap();
        let ChannelAction::Http(h) = &out.actions[0];
        assert_eq!(h.url, "https://sms.example.cn/sms/v1/message");
        assert_eq!(h.headers["x-api-key"], "{{secret:sms_api_key}}");
        let body: Value = serde_json::from_str(h.body.as_deref().unwrap()).unwrap();
        assert_eq!(body["phone"], "13800138000");
        assert_eq!(body["request_id"], "ntf_9:sms");
        assert!(body["text"].as_str().unwrap().ends_with("123456"));
    }

    #[test]
    fn events_notify_only_when_configured() {
        let event = |name: &str| {
            input(ChannelRequest::ApplicationEvent {
                event: ChannelEvent {
                    application_id: "app_1".into(),
                    event: name.into(),
                    phone: Some("13800138000".into()),
                    email: Some("a@example.cn".into()),
                    ..Default::default()
                },
            })
        };
        let n = notify(&["issued"]);
        assert_eq!(n.deliver(event("issued")).unwrap().actions.len(), 2);
        assert!(n.deliver(event("created")).unwrap().actions.is_empty());
        assert!(notify(&[])
            .deliver(event("issued"))
            .unwrap()
            .actions
            .is_empty());
    }

    #[test]
    fn bad_config_and_requests_are_refused() {
        assert!(Notify::configure(Config {
            sms_url: "sms.example.cn".into(),
            mail_url: None,
            mail_from: None,
            sms_signature: default_signature(),
            notify_events: vec![],
            timeout_ms: 5000,
        })
        .is_err());
        let e = notify(&[]).deliver(input(ChannelRequest::Email {
            to: "nobody".into(),
            subject: "s".into(),
            text: "t".into(),
        }));
        assert!(matches!(e, Err(StepError::InvalidArgument(_))));
    }
}
