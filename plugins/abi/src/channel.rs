//! The JSON documents of **channel plugins** (manifest `kind: "channel"`): the same table and the
//! same `step` entry point as verifiers, different documents. A channel plugin is a pure function
//! from one delivery request (an application event, or an SMS / e-mail the appliance wants sent)
//! to the HTTP actions that deliver it. The host performs them through the plugin's egress
//! allowlist, signs them when asked (HMAC-SHA256 with a secret the plugin never sees), and
//! retries transient failures with backoff from a durable outbox. No state, no clock, no I/O.
//!
//! ```json
//! ChannelInput  {"v":1,"delivery_id":"ntf_...","now":"2026-01-01T00:00:00Z",
//!                "request":{"type":"application_event","event":{...}}
//!                         | {"type":"sms","to":"13800138000","text":"..."}
//!                         | {"type":"email","to":"a@example.com","subject":"...","text":"..."}}
//! ChannelOutput {"v":1,"actions":[{"type":"http","id":"cb","method":"POST","url":"https://...",
//!                "headers":{},"body":"...","timeout_ms":5000,"sign":{"secret":"webhook_secret"}}]}
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::doc::{HttpAction, HttpMethod, DOC_VERSION, MAX_STATE_BYTES};

/// Manifest `methods` entry: the plugin handles application events.
pub const METHOD_EVENTS: &str = "events";
/// Manifest `methods` entry: the plugin sends SMS (it may be a channel's notifier).
pub const METHOD_SMS: &str = "sms";
/// Manifest `methods` entry: the plugin sends e-mail.
pub const METHOD_EMAIL: &str = "email";
/// Every method a channel plugin may declare.
pub const CHANNEL_METHODS: [&str; 3] = [METHOD_EVENTS, METHOD_SMS, METHOD_EMAIL];

/// Most actions one channel reply may ask for.
pub const MAX_CHANNEL_ACTIONS: usize = 16;

/// Header carrying the Unix time a signed action was sent at.
pub const TIMESTAMP_HEADER: &str = "x-ca-timestamp";
/// Header carrying hex HMAC-SHA256(secret, timestamp + "." + body).
pub const SIGNATURE_HEADER: &str = "x-ca-signature";

fn v1() -> u32 {
    DOC_VERSION
}

/// An application event as a channel plugin sees it. Hosts may add fields (plugins ignore what
/// they do not know); `phone` and `email` are passed only to plugins whose manifest lists `sms` /
/// `email` (data minimisation).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct ChannelEvent {
    /// Channel name.
    pub channel: String,
    /// Application id (`app_...`).
    pub application_id: String,
    /// Application kind (`new`, `renewal`, ...).
    pub application_kind: String,
    /// What happened: `created`, `needs_applicant`, `choice_offered`, `awaiting_review`,
    /// `issued`, `rejected`, `expired`, `cancelled` (new names may appear).
    pub event: String,
    /// The application's status after it.
    pub status: String,
    /// The channel's own reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// Serial of the issued certificate (`issued`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_serial: Option<String>,
    /// Failure code (`rejected`, `expired`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_code: Option<String>,
    /// The applicant's phone (only for `sms` plugins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    /// The applicant's e-mail (only for `email` plugins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Unix seconds.
    pub at: i64,
}

/// What the host asks a channel plugin to deliver.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ChannelRequest {
    /// Tell the partner (or the applicant) about an application event.
    ApplicationEvent {
        /// The event.
        event: ChannelEvent,
    },
    /// Send an SMS (the appliance's own one-time codes go this way).
    Sms {
        /// Destination phone.
        to: String,
        /// The text.
        text: String,
    },
    /// Send an e-mail.
    Email {
        /// Destination address.
        to: String,
        /// Subject line.
        subject: String,
        /// Plain-text body.
        text: String,
    },
}

/// The document passed to a channel plugin's `step`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ChannelInput {
    /// Document version, always 1.
    pub v: u32,
    /// The delivery's id (`ntf_...`): stable across retries, an idempotency key for vendors.
    pub delivery_id: String,
    /// The host's current time, RFC 3339 UTC.
    pub now: String,
    /// What to deliver.
    pub request: ChannelRequest,
}

/// Ask the host to sign an action: it adds `x-ca-timestamp` (Unix seconds, at each attempt) and
/// `x-ca-signature` (hex HMAC-SHA256 of `timestamp + "." + body` keyed by the named secret).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Signing {
    /// Name of the plugin secret (the operator's `secrets = { NAME = ... }`).
    pub secret: String,
}

/// An HTTP request a channel plugin asks the host to perform (and retry until it gets a 2xx,
/// a permanent failure, or runs out of attempts).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ChannelHttp {
    /// Id, unique within the reply.
    pub id: String,
    /// HTTP method.
    pub method: HttpMethod,
    /// Absolute URL on an allowlisted host.
    pub url: String,
    /// Request headers (`{{secret:NAME}}` allowed in values, as for verifiers).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Request body (a signed body must not contain `{{secret:...}}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Timeout in milliseconds (default 5000; the host caps it).
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u32,
    /// Host-side HMAC signing, if wanted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sign: Option<Signing>,
}

fn default_timeout_ms() -> u32 {
    5000
}

impl ChannelHttp {
    /// The plain HTTP action the egress performs (signature headers are added by the host).
    pub fn to_http_action(&self) -> HttpAction {
        HttpAction {
            id: self.id.clone(),
            method: self.method,
            url: self.url.clone(),
            headers: self.headers.clone(),
            body: self.body.clone(),
            timeout_ms: self.timeout_ms,
        }
    }
}

/// An action a channel plugin asks the host to perform.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ChannelAction {
    /// Perform an HTTP request.
    Http(ChannelHttp),
}

impl ChannelAction {
    /// The action's id.
    pub fn id(&self) -> &str {
        match self {
            ChannelAction::Http(h) => &h.id,
        }
    }
}

/// The document a channel plugin's `step` returns. No actions = nothing to deliver (the event
/// does not concern this plugin).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ChannelOutput {
    /// Document version, always 1.
    #[serde(default = "v1")]
    pub v: u32,
    /// The deliveries to perform.
    #[serde(default)]
    pub actions: Vec<ChannelAction>,
}

/// Why a ChannelOutput breaks the document rules.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelRuleError {
    /// `"v"` is not 1.
    #[error("document version {0} is not 1")]
    Version(u32),
    /// An action id is empty or repeated.
    #[error("action ids must be non-empty and unique")]
    BadId,
    /// Too many actions.
    #[error("{0} actions, over the cap of {MAX_CHANNEL_ACTIONS}")]
    TooManyActions(usize),
    /// A signing secret name is empty.
    #[error("a signed action names no secret")]
    EmptySecret,
    /// The reply is too large to keep in the outbox.
    #[error("actions are {0} bytes, over the cap")]
    TooLarge(usize),
}

impl ChannelOutput {
    /// A reply with these actions.
    pub fn new(actions: Vec<ChannelAction>) -> Self {
        ChannelOutput {
            v: DOC_VERSION,
            actions,
        }
    }

    /// Checks the rules a host enforces: version, ids, action count, size.
    pub fn check_rules(&self) -> Result<(), ChannelRuleError> {
        if self.v != DOC_VERSION {
            return Err(ChannelRuleError::Version(self.v));
        }
        if self.actions.len() > MAX_CHANNEL_ACTIONS {
            return Err(ChannelRuleError::TooManyActions(self.actions.len()));
        }
        let mut seen = std::collections::BTreeSet::new();
        for a in &self.actions {
            if a.id().is_empty() || !seen.insert(a.id()) {
                return Err(ChannelRuleError::BadId);
            }
            let ChannelAction::Http(h) = a;
            if h.sign.as_ref().is_some_and(|s| s.secret.trim().is_empty()) {
                return Err(ChannelRuleError::EmptySecret);
            }
        }
        let len = serde_json::to_vec(&self.actions)
            .map(|v| v.len())
            .unwrap_or(usize::MAX);
        if len > MAX_STATE_BYTES {
            return Err(ChannelRuleError::TooLarge(len));
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    #[test]
    fn documents_round_trip_and_rules_hold() {
        let input: ChannelInput = serde_json::from_str(
            r#"{"v":1,"delivery_id":"ntf_1","now":"2026-01-01T00:00:00Z",
                "request":{"type":"sms","to":"13800138000","text":"code 123456"}}"#,
        )
        .unwrap();
        assert!(matches!(input.request, ChannelRequest::Sms { .. }));
        let event: ChannelInput = serde_json::from_str(
            r#"{"v":1,"delivery_id":"ntf_2","now":"2026-01-01T00:00:00Z",
                "request":{"type":"application_event","event":{"channel":"c","application_id":"app_1",
                "application_kind":"new","event":"issued","status":"issued","at":1,"future_field":true}}}"#,
        )
        .unwrap();
        assert!(matches!(
            event.request,
            ChannelRequest::ApplicationEvent { .. }
        ));
        let out: ChannelOutput = serde_json::from_str(
            r#"{"v":1,"actions":[{"type":"http","id":"a","method":"POST","url":"https://x.example/",
                "sign":{"secret":"s"}}]}"#,
        )
        .unwrap();
        out.check_rules().unwrap();
        let dup = ChannelOutput::new(vec![out.actions[0].clone(), out.actions[0].clone()]);
        assert_eq!(dup.check_rules(), Err(ChannelRuleError::BadId));
        let mut v2 = out.clone();
        v2.v = 2;
        assert_eq!(v2.check_rules(), Err(ChannelRuleError::Version(2)));
        assert!(serde_json::from_str::<ChannelOutput>(
            r#"{"v":1,"actions":[{"type":"shell","id":"a"}]}"#
        )
        .is_err());
    }
}
