//! SDK helper: calling a vendor through host HTTP actions, retrying transient failures with a
//! timer. Shared by every first-party verifier plugin; third-party plugins may use it too.

use crate::doc::{Action, HttpAction, HttpErrorKind, HttpMethod, Timer};
use crate::sdk::ConfigError;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Id of the timer that resends a failed vendor request.
pub const RETRY_TIMER: &str = "vendor-retry";

/// Header carrying the vendor API key; the host substitutes the secret.
pub const API_KEY_HEADER: &str = "x-api-key";

/// How often and how soon to retry a transient vendor failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt before giving up with `vendor_unavailable`.
    pub max_retries: u32,
    /// Delay before the first retry; doubles each time.
    pub retry_after_ms: u64,
}

/// The vendor request in flight, kept in the state so a retry timer can resend it.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
pub struct InFlight {
    /// The request (its id is what the answer event carries).
    pub action: Option<HttpAction>,
    /// Transient failures so far for this request.
    pub failures: u32,
}

/// What an `http_response` / `http_error` means for the flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// 2xx: the body to parse.
    Body(String),
    /// 5xx, 429, timeout, connection failure: worth retrying.
    Transient,
    /// 4xx, refused host, oversize, TLS failure: retrying will not help.
    Permanent,
}

/// Classifies an HTTP answer.
pub fn classify_response(status: u16, body: String) -> Reply {
    match status {
        200..=299 => Reply::Body(body),
        429 | 500..=599 => Reply::Transient,
        _ => Reply::Permanent,
    }
}

/// Classifies a failure to perform the request.
pub fn classify_error(kind: HttpErrorKind) -> Reply {
    match kind {
        HttpErrorKind::Timeout | HttpErrorKind::Connect => Reply::Transient,
        HttpErrorKind::Tls | HttpErrorKind::TooLarge | HttpErrorKind::RefusedHost => {
            Reply::Permanent
        }
    }
}

/// A JSON POST to `base_url` + `path` with the API key placeholder for `secret`.
pub fn post_json(
    id: &str,
    base_url: &str,
    path: &str,
    secret: &str,
    body: &Value,
    timeout_ms: u32,
) -> HttpAction {
    let mut headers = std::collections::BTreeMap::new();
    headers.insert("content-type".to_owned(), "application/json".to_owned());
    headers.insert(
        API_KEY_HEADER.to_owned(),
        format!("{{{{secret:{secret}}}}}"),
    );
    HttpAction {
        id: id.to_owned(),
        method: HttpMethod::POST,
        url: format!("{}{path}", base_url.trim_end_matches('/')),
        headers,
        body: Some(body.to_string()),
        timeout_ms,
    }
}

impl InFlight {
    /// Records `action` as the request in flight and returns it as an action to perform.
    pub fn send(&mut self, action: HttpAction) -> Action {
        self.action = Some(action.clone());
        self.failures = 0;
        Action::Http(action)
    }

    /// True when an answer with this id belongs to the request in flight.
    pub fn is(&self, id: &str) -> bool {
        self.action.as_ref().is_some_and(|a| a.id == id)
    }

    /// The request's id, if one is in flight.
    pub fn id(&self) -> Option<&str> {
        self.action.as_ref().map(|a| a.id.as_str())
    }

    /// After a transient failure: the retry timer, or `None` when retries are used up.
    pub fn on_transient(&mut self, policy: RetryPolicy) -> Option<Action> {
        if self.failures >= policy.max_retries {
            return None;
        }
        let delay = policy
            .retry_after_ms
            .saturating_mul(1u64 << self.failures.min(16));
        self.failures += 1;
        Some(Action::Timer(Timer {
            id: RETRY_TIMER.to_owned(),
            after_ms: delay,
        }))
    }

    /// On the retry timer: the request to send again (`None` if nothing is in flight).
    pub fn resend(&self) -> Option<Action> {
        self.action.clone().map(Action::Http)
    }

    /// The answer arrived: nothing is in flight any more.
    pub fn clear(&mut self) {
        self.action = None;
        self.failures = 0;
    }
}

// Configuration checks and defaults shared by the vendor-calling plugins.

/// Default per-request vendor timeout, milliseconds.
pub fn default_timeout() -> u32 {
    5000
}

/// Default retries of a transient vendor failure.
pub fn default_retries() -> u32 {
    3
}

/// Default delay before the first retry, milliseconds (doubles each time).
pub fn default_retry_after() -> u64 {
    2000
}

/// Checks that a configured vendor URL is an absolute http(s) URL.
pub fn check_url(name: &str, url: &str) -> Result<(), ConfigError> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    match rest {
        Some(r) if !r.is_empty() && !r.starts_with('/') => Ok(()),
        _ => Err(ConfigError::new(format!(
            "{name} must be an absolute http(s) URL"
        ))),
    }
}

/// Checks that a configured number lies within `lo..=hi`.
pub fn check_range<T: PartialOrd + std::fmt::Display>(
    name: &str,
    v: T,
    lo: T,
    hi: T,
) -> Result<(), ConfigError> {
    if v < lo || v > hi {
        return Err(ConfigError::new(format!(
            "{name} must be between {lo} and {hi}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_classified() {
        assert_eq!(classify_response(200, "x".into()), Reply::Body("x".into()));
        assert_eq!(classify_response(503, String::new()), Reply::Transient);
        assert_eq!(classify_response(429, String::new()), Reply::Transient);
        assert_eq!(classify_response(401, String::new()), Reply::Permanent);
        assert_eq!(classify_error(HttpErrorKind::Timeout), Reply::Transient);
        assert_eq!(classify_error(HttpErrorKind::RefusedHost), Reply::Permanent);
    }

    #[test]
    fn retries_back_off_then_stop() {
        let policy = RetryPolicy {
            max_retries: 2,
            retry_after_ms: 100,
        };
        let mut f = InFlight::default();
        f.send(post_json(
            "a",
            "https://v.example/",
            "/x",
            "k",
            &serde_json::json!({}),
            1000,
        ));
        let delays: Vec<u64> = std::iter::from_fn(|| match f.on_transient(policy) {
            Some(Action::Timer(t)) => Some(t.after_ms),
            _ => None,
        })
        .collect();
        assert_eq!(delays, vec![100, 200]);
        assert!(f.resend().is_some());
    }

    #[test]
    fn post_json_carries_secret_placeholder_not_secret() {
        let a = post_json(
            "id",
            "https://v.example/",
            "/p",
            "carrier_api_key",
            &serde_json::json!({"a":1}),
            5000,
        );
        assert_eq!(a.url, "https://v.example/p");
        assert_eq!(
            a.headers.get(API_KEY_HEADER).map(String::as_str),
            Some("{{secret:carrier_api_key}}")
        );
        assert_eq!(a.body.as_deref(), Some(r#"{"a":1}"#));
    }
}
