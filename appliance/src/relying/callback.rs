//! Login callbacks: where a relying party may have the result of its login challenges POSTed
//! (`[[relying_party]]`: an allowlist of callback URLs and the HMAC key that signs each call),
//! the URL rules, and the exact body. Delivery is the notify outbox's `callback` kind.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::config::{ClientConfig, ClientRole, ConfigError, SecretSourceConfig};

/// Longest callback URL accepted.
const MAX_URL: usize = 2048;

/// One `[[relying_party]]`: the callbacks a relying party may ask for.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelyingPartyConfig {
    /// The name its `[[client]] role = "relying_party"` entry gives it (CN or SAN).
    pub name: String,
    /// Allowed callback URLs: a callback must have the same scheme, host and port as one of
    /// them and a path equal to or below its path.
    #[serde(default)]
    pub callback_urls: Vec<String>,
    /// The HMAC-SHA256 key that signs its callbacks (`env` or a 0600 `file`), shared with it.
    pub callback_secret: SecretSourceConfig,
    /// Allow `http://` callbacks to loopback hosts (tests and demos only).
    #[serde(default)]
    pub allow_plain_http: bool,
}

impl RelyingPartyConfig {
    /// Makes the secret file path absolute against the config file's directory.
    pub fn resolve_paths(&mut self, base: &std::path::Path) {
        if let Some(f) = self.callback_secret.file.as_mut() {
            if f.is_relative() {
                *f = base.join(PathBuf::from(&*f));
            }
        }
    }
}

/// Checks the `[[relying_party]]` tables against the `[[client]]` ones.
pub fn validate(
    parties: &[RelyingPartyConfig],
    clients: &[ClientConfig],
) -> Result<(), ConfigError> {
    let invalid = |m: String| Err(ConfigError::Invalid(m));
    let mut seen = std::collections::BTreeSet::new();
    for rp in parties {
        if !seen.insert(rp.name.as_str()) {
            return invalid(format!("[[relying_party]] {} is listed twice", rp.name));
        }
        let named = clients.iter().any(|c| {
            c.role == ClientRole::RelyingParty
                && (c.common_name.as_deref() == Some(rp.name.as_str())
                    || c.san.as_deref() == Some(rp.name.as_str()))
        });
        if !named {
            return invalid(format!(
                "[[relying_party]] {} is not the common_name or san of a [[client]] with role relying_party",
                rp.name
            ));
        }
        if rp.callback_urls.is_empty() {
            return invalid(format!(
                "[[relying_party]] {} needs at least one callback_urls entry",
                rp.name
            ));
        }
        for url in &rp.callback_urls {
            if let Err(why) = parse(url, rp.allow_plain_http) {
                return invalid(format!(
                    "[[relying_party]] {} callback_urls entry {url:?}: {why}",
                    rp.name
                ));
            }
        }
        if rp.callback_secret.env.is_some() == rp.callback_secret.file.is_some() {
            return invalid(format!(
                "[[relying_party]] {} callback_secret needs exactly one of env, file",
                rp.name
            ));
        }
    }
    Ok(())
}

/// Why a callback URL is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallbackRefusal {
    /// The relying party has no `[[relying_party]]` entry.
    #[error("no callback is configured for this relying party ([[relying_party]])")]
    NotConfigured,
    /// Not a usable absolute URL.
    #[error("the callback URL is malformed: {0}")]
    Malformed(&'static str),
    /// Not under any of the relying party's allowed URLs.
    #[error("the callback URL is not under one of the relying party's callback_urls")]
    NotAllowed,
}

/// An allowed URL, parsed: scheme, host, port and path prefix.
#[derive(Debug, Clone)]
struct Allowed {
    scheme: String,
    host: String,
    port: u16,
    path: String,
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Parses `text` as a callback URL: https (http only to loopback when allowed), a host, no
/// user info, no fragment, at most 2 KiB.
fn parse(text: &str, allow_plain_http: bool) -> Result<(url::Url, Allowed), CallbackRefusal> {
    use CallbackRefusal::Malformed;
    if text.len() > MAX_URL {
        return Err(Malformed("longer than 2048 bytes"));
    }
    let url = url::Url::parse(text).map_err(|_| Malformed("not an absolute URL"))?;
    let host = url
        .host_str()
        .ok_or(Malformed("no host"))?
        .to_ascii_lowercase();
    match url.scheme() {
        "https" => {}
        "http" if allow_plain_http && is_loopback(&host) => {}
        "http" => return Err(Malformed("https only (http only to loopback when allowed)")),
        _ => return Err(Malformed("https only")),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Malformed("user info is not allowed"));
    }
    if url.fragment().is_some() {
        return Err(Malformed("a fragment is not allowed"));
    }
    let port = url.port_or_known_default().ok_or(Malformed("no port"))?;
    let allowed = Allowed {
        scheme: url.scheme().to_owned(),
        host,
        port,
        path: url.path().to_owned(),
    };
    Ok((url, allowed))
}

impl Allowed {
    /// Same origin, and the path equal to or below this one.
    fn covers(&self, other: &Allowed) -> bool {
        if self.scheme != other.scheme || self.host != other.host || self.port != other.port {
            return false;
        }
        let base = self.path.trim_end_matches('/');
        other.path == self.path
            || other.path == base
            || other
                .path
                .strip_prefix(base)
                .is_some_and(|rest| rest.starts_with('/'))
    }
}

/// One relying party's callback settings, its secret read.
pub struct CallbackTarget {
    allowed: Vec<Allowed>,
    allow_plain_http: bool,
    secret: Zeroizing<String>,
}

impl std::fmt::Debug for CallbackTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallbackTarget")
            .field("allowed", &self.allowed.len())
            .field("allow_plain_http", &self.allow_plain_http)
            .finish_non_exhaustive()
    }
}

impl CallbackTarget {
    /// Whether plain http to loopback is allowed.
    pub fn allow_plain_http(&self) -> bool {
        self.allow_plain_http
    }

    /// The signing key (never logged).
    pub fn secret(&self) -> &str {
        self.secret.as_str()
    }
}

/// Every relying party's callback settings, by name.
#[derive(Debug, Default, Clone)]
pub struct CallbackTargets {
    targets: BTreeMap<String, Arc<CallbackTarget>>,
}

impl CallbackTargets {
    /// Reads each `[[relying_party]]`'s secret; the error names the relying party, never the value.
    pub fn from_config(parties: &[RelyingPartyConfig]) -> Result<Self, String> {
        let mut targets = BTreeMap::new();
        for rp in parties {
            let secret = crate::verification::secrets::read_secret(
                &rp.callback_secret,
                &format!("[[relying_party]] {} callback_secret", rp.name),
            )
            .map_err(|e| e.to_string())?;
            let allowed = rp
                .callback_urls
                .iter()
                .map(|u| parse(u, rp.allow_plain_http).map(|(_, a)| a))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("[[relying_party]] {}: {e}", rp.name))?;
            targets.insert(
                rp.name.clone(),
                Arc::new(CallbackTarget {
                    allowed,
                    allow_plain_http: rp.allow_plain_http,
                    secret,
                }),
            );
        }
        Ok(Self { targets })
    }

    /// The settings of `relying_party`, if it has any.
    pub fn get(&self, relying_party: &str) -> Option<&Arc<CallbackTarget>> {
        self.targets.get(relying_party)
    }

    /// Checks `url` for `relying_party`; returns the URL normalised and its `host:port`.
    pub fn check(
        &self,
        relying_party: &str,
        url: &str,
    ) -> Result<(String, String), CallbackRefusal> {
        let target = self
            .targets
            .get(relying_party)
            .ok_or(CallbackRefusal::NotConfigured)?;
        let (parsed, wanted) = parse(url, target.allow_plain_http)?;
        if !target.allowed.iter().any(|a| a.covers(&wanted)) {
            return Err(CallbackRefusal::NotAllowed);
        }
        let host_port = format!("{}:{}", wanted.host, wanted.port);
        Ok((parsed.to_string(), host_port))
    }
}

/// The JSON body POSTed to a callback; its exact bytes are what the signature covers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CallbackBody {
    /// Format version, 1.
    pub v: u32,
    /// The outbox delivery id (`ntf_...`): the same on every retry, for de-duplication.
    pub delivery_id: String,
    /// `login.decided`.
    pub event: String,
    /// The challenge id (`lc_...`).
    pub challenge: String,
    /// `approved` or `refused`.
    pub status: String,
    /// Why refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The certificate subject, masked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<serde_json::Value>,
    /// The certificate's level.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub level: Option<String>,
    /// The certificate's serial.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    /// Unix seconds of the decision.
    pub decided_at: i64,
}

/// What the outbox stores (sealed) for one callback delivery.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CallbackRequest {
    /// The relying party (its signing key and allowlist are looked up at delivery time).
    pub relying_party: String,
    /// The callback URL, checked when the challenge was created.
    pub url: String,
    /// The exact JSON body.
    pub body: String,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    fn targets(urls: &[&str], plain: bool) -> CallbackTargets {
        let allowed = urls.iter().map(|u| parse(u, plain).unwrap().1).collect();
        let mut t = CallbackTargets::default();
        t.targets.insert(
            "rp".into(),
            Arc::new(CallbackTarget {
                allowed,
                allow_plain_http: plain,
                secret: Zeroizing::new("k".into()),
            }),
        );
        t
    }

    #[test]
    fn a_callback_must_be_under_an_allowed_url_of_its_relying_party() {
        let t = targets(&["https://portal.example/ca/"], false);
        assert!(t.check("rp", "https://portal.example/ca/login?s=1").is_ok());
        assert!(t.check("rp", "https://portal.example/ca").is_ok());
        assert!(t.check("rp", "https://PORTAL.example:443/ca/x").is_ok());
        for bad in [
            "https://portal.example/cab",
            "https://portal.example/other",
            "https://portal.example.evil.test/ca/",
            "https://portal.example:8443/ca/",
        ] {
            assert_eq!(
                t.check("rp", bad),
                Err(CallbackRefusal::NotAllowed),
                "{bad}"
            );
        }
        for bad in [
            "http://portal.example/ca/",
            "https://u:p@portal.example/ca/",
            "https://portal.example/ca/#f",
            "ftp://portal.example/ca/",
            "/ca/login",
        ] {
            assert!(
                matches!(t.check("rp", bad), Err(CallbackRefusal::Malformed(_))),
                "{bad}"
            );
        }
        assert_eq!(
            t.check("other", "https://portal.example/ca/"),
            Err(CallbackRefusal::NotConfigured)
        );
    }

    #[test]
    fn plain_http_only_to_loopback_and_only_when_allowed() {
        let t = targets(&["http://127.0.0.1:9000/cb"], true);
        assert!(t.check("rp", "http://127.0.0.1:9000/cb").is_ok());
        assert!(parse("http://10.0.0.1/cb", true).is_err());
        assert!(parse("http://127.0.0.1/cb", false).is_err());
    }
}
