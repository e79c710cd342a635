//! The host side of channel plugins (manifest kind `channel`): what a plugin may see of an
//! application event (data minimisation by its methods), host-side HMAC signing of its actions
//! (the secret never reaches the plugin), and one attempt at one action through [`Egress`],
//! classified as delivered, worth retrying, or permanently failed. The durable outbox and the
//! retry schedule belong to the caller (the appliance's `notify`).

use hmac::{Hmac, Mac};
use plugin_abi::channel::{
    ChannelEvent, ChannelHttp, METHOD_EMAIL, METHOD_SMS, SIGNATURE_HEADER, TIMESTAMP_HEADER,
};
use plugin_abi::doc::{Event, HttpAction, HttpErrorKind, Manifest};
use sha2::Sha256;

use crate::egress::{Egress, EgressPolicy};

/// What one attempt at an action came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// A 2xx answer.
    Delivered {
        /// HTTP status.
        status: u16,
    },
    /// Worth retrying later (5xx, 408, 429, timeout, connection failure).
    Transient(String),
    /// Retrying will not help (other 4xx, refused host, TLS, oversize, signing impossible).
    Permanent(String),
}

/// `event` as plugin `manifest` may see it: `phone` only for `sms` plugins, `email` only for
/// `email` plugins.
pub fn event_for(manifest: &Manifest, event: &ChannelEvent) -> ChannelEvent {
    let has = |m: &str| manifest.methods.iter().any(|x| x == m);
    let mut e = event.clone();
    if !has(METHOD_SMS) {
        e.phone = None;
    }
    if !has(METHOD_EMAIL) {
        e.email = None;
    }
    e
}

/// Hex HMAC-SHA256 of `timestamp + "." + body` under `secret`: the `x-ca-signature` value.
pub fn signature(secret: &[u8], timestamp: i64, body: &str) -> String {
    // HMAC accepts keys of any length; new_from_slice cannot fail for it.
    let mut mac = match <Hmac<Sha256> as Mac>::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// The HTTP action to perform for `http` at Unix time `now`: with signature headers when it
/// asks to be signed. `Err` names why it cannot be signed (never the secret).
pub fn prepare(
    policy: &EgressPolicy,
    http: &ChannelHttp,
    now: i64,
) -> Result<HttpAction, &'static str> {
    let mut action = http.to_http_action();
    let Some(sign) = &http.sign else {
        return Ok(action);
    };
    let secret = policy
        .secrets
        .get(&sign.secret)
        .ok_or("the signing secret is not configured for this plugin")?;
    let body = http.body.clone().unwrap_or_default();
    if body.contains("{{secret:") {
        return Err("a signed body must not contain secret placeholders");
    }
    let lower = |h: &str| h.to_ascii_lowercase();
    if action
        .headers
        .keys()
        .any(|k| lower(k) == TIMESTAMP_HEADER || lower(k) == SIGNATURE_HEADER)
    {
        return Err("a signed action must not set the signature headers itself");
    }
    let sig = signature(secret.expose().as_bytes(), now, &body);
    action
        .headers
        .insert(TIMESTAMP_HEADER.to_owned(), now.to_string());
    action.headers.insert(SIGNATURE_HEADER.to_owned(), sig);
    Ok(action)
}

/// Classifies what the egress answered.
pub fn classify(event: &Event) -> Attempt {
    match event {
        Event::HttpResponse { status, .. } => match status {
            200..=299 => Attempt::Delivered { status: *status },
            408 | 425 | 429 | 500..=599 => Attempt::Transient(format!("HTTP {status}")),
            _ => Attempt::Permanent(format!("HTTP {status}")),
        },
        Event::HttpError { error, .. } => match error {
            HttpErrorKind::Timeout | HttpErrorKind::Connect => {
                Attempt::Transient(format!("{error:?}").to_ascii_lowercase())
            }
            HttpErrorKind::RefusedHost | HttpErrorKind::Tls | HttpErrorKind::TooLarge => {
                Attempt::Permanent(format!("{error:?}").to_ascii_lowercase())
            }
        },
        _ => Attempt::Permanent("unexpected egress answer".into()),
    }
}

/// One attempt at `http` now: signed if asked, performed under `policy`, classified.
pub async fn attempt(egress: &Egress, policy: &EgressPolicy, http: &ChannelHttp) -> Attempt {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    match prepare(policy, http, now) {
        Ok(action) => classify(&egress.perform(policy, &action).await),
        Err(why) => Attempt::Permanent(why.to_owned()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;
    use crate::spec::Secret;
    use plugin_abi::channel::Signing;
    use plugin_abi::doc::HttpMethod;

    fn policy() -> EgressPolicy {
        EgressPolicy {
            plugin: "w".into(),
            hosts: vec!["p.example:443".into()],
            allow_plain_http: false,
            secrets: [("hook".to_owned(), Secret::new("k3y"))].into(),
        }
    }

    fn http(sign: Option<&str>, body: &str) -> ChannelHttp {
        ChannelHttp {
            id: "cb".into(),
            method: HttpMethod::POST,
            url: "https://p.example/hook".into(),
            headers: Default::default(),
            body: Some(body.into()),
            timeout_ms: 1000,
            sign: sign.map(|s| Signing { secret: s.into() }),
        }
    }

    #[test]
    fn signs_with_the_named_secret_over_timestamp_and_body() {
        let a = prepare(&policy(), &http(Some("hook"), "{\"a\":1}"), 1_700_000_000).unwrap();
        assert_eq!(a.headers[TIMESTAMP_HEADER], "1700000000");
        // Independent HMAC computation (RFC 2104 over SHA-256 via the sha2 crate directly).
        use sha2::Digest;
        let key = b"k3y";
        let mut k = [0u8; 64];
        k[..key.len()].copy_from_slice(key);
        let ipad: Vec<u8> = k.iter().map(|b| b ^ 0x36).collect();
        let opad: Vec<u8> = k.iter().map(|b| b ^ 0x5c).collect();
        let inner = Sha256::new()
            .chain_update(&ipad)
            .chain_update(b"1700000000.{\"a\":1}")
            .finalize();
        let outer = Sha256::new()
            .chain_update(&opad)
            .chain_update(inner)
            .finalize();
        assert_eq!(a.headers[SIGNATURE_HEADER], hex::encode(outer));
        assert!(!format!("{a:?}").contains("k3y"));
        assert!(prepare(&policy(), &http(None, "x"), 1)
            .unwrap()
            .headers
            .is_empty());
        assert!(prepare(&policy(), &http(Some("other"), "x"), 1).is_err());
        assert!(prepare(&policy(), &http(Some("hook"), "{{secret:hook}}"), 1).is_err());
    }

    #[test]
    fn classifies_answers() {
        let resp = |status| Event::HttpResponse {
            id: "a".into(),
            status,
            body: String::new(),
        };
        assert_eq!(classify(&resp(204)), Attempt::Delivered { status: 204 });
        assert!(matches!(classify(&resp(503)), Attempt::Transient(_)));
        assert!(matches!(classify(&resp(429)), Attempt::Transient(_)));
        assert!(matches!(classify(&resp(400)), Attempt::Permanent(_)));
        let err = |error| Event::HttpError {
            id: "a".into(),
            error,
        };
        assert!(matches!(
            classify(&err(HttpErrorKind::Connect)),
            Attempt::Transient(_)
        ));
        assert!(matches!(
            classify(&err(HttpErrorKind::RefusedHost)),
            Attempt::Permanent(_)
        ));
    }
}
