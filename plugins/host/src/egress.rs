//! [`Egress`]: performs a plugin's HTTP actions on its behalf, under the operator's policy:
//! allowlisted `host:port` only, TLS verified against the webpki roots (plain http only when the
//! spec allows it and the host is loopback), no redirects, no proxies, a response size cap and a
//! timeout; `{{secret:NAME}}` placeholders are filled from the spec's secrets. Logs carry method,
//! host and status only: never bodies, headers or URLs' paths (they may hold personal data).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use plugin_abi::doc::{Event, HttpAction, HttpErrorKind};

use crate::spec::Secret;

/// What one plugin may reach, built by [`crate::Plugin::egress_policy`].
#[derive(Debug, Clone)]
pub struct EgressPolicy {
    /// The plugin's name (for logs).
    pub plugin: String,
    /// Allowed `host:port` entries.
    pub hosts: Vec<String>,
    /// Allow `http://` to loopback hosts (test and demo vendors only).
    pub allow_plain_http: bool,
    /// Secrets substituted into header values and bodies.
    pub secrets: BTreeMap<String, Secret>,
}

/// Limits of the HTTP client.
#[derive(Debug, Clone, Copy)]
pub struct EgressOptions {
    /// Largest response body accepted (larger -> `too_large`).
    pub max_response_bytes: usize,
    /// Upper bound on any action's timeout.
    pub max_timeout: Duration,
    /// TCP connect timeout.
    pub connect_timeout: Duration,
}

impl Default for EgressOptions {
    fn default() -> Self {
        EgressOptions {
            max_response_bytes: 512 * 1024,
            max_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// The egress client could not be built.
#[derive(Debug, thiserror::Error)]
#[error("cannot build the egress HTTP client: {0}")]
pub struct EgressError(String);

/// The host's HTTP client for plugin actions. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Egress {
    client: reqwest::Client,
    options: EgressOptions,
}

/// Why an action is refused before any connection is made.
#[derive(Debug, PartialEq, Eq)]
enum Refusal {
    BadUrl,
    Scheme,
    NotAllowlisted,
    UnknownSecret,
    ForbiddenHeader,
    BadHeader,
}

/// Headers a plugin may not set: the host owns routing and framing.
const FORBIDDEN_HEADERS: [&str; 5] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
];

impl Refusal {
    fn describe(&self) -> &'static str {
        match self {
            Refusal::BadUrl => "URL does not parse",
            Refusal::Scheme => {
                "scheme not allowed (https only; http only to loopback when enabled)"
            }
            Refusal::NotAllowlisted => "host:port not on the plugin's egress allowlist",
            Refusal::UnknownSecret => "a {{secret:NAME}} placeholder names no configured secret",
            Refusal::BadHeader => "a header name or value is not valid HTTP",
            Refusal::ForbiddenHeader => {
                "a header the host owns (host, content-length, ...) was set"
            }
        }
    }
}

/// Replaces every `{{secret:NAME}}` in `text`; `Err` if a name is not configured.
fn substitute(text: &str, secrets: &BTreeMap<String, Secret>) -> Result<String, Refusal> {
    const OPEN: &str = "{{secret:";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find(OPEN) {
        out.push_str(&rest[..start]);
        let after = &rest[start + OPEN.len()..];
        let Some(end) = after.find("}}") else {
            out.push_str(&rest[start..]);
            return Ok(out);
        };
        let name = &after[..end];
        let secret = secrets.get(name).ok_or(Refusal::UnknownSecret)?;
        out.push_str(secret.expose());
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

fn is_loopback(host: &str) -> bool {
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

/// Checks the URL against the policy; returns the parsed URL and its `host:port` for logs.
fn check_url(policy: &EgressPolicy, url: &str) -> Result<(reqwest::Url, String), Refusal> {
    let url = reqwest::Url::parse(url).map_err(|_| Refusal::BadUrl)?;
    let host = url.host_str().ok_or(Refusal::BadUrl)?.to_ascii_lowercase();
    let port = url.port_or_known_default().ok_or(Refusal::BadUrl)?;
    match url.scheme() {
        "https" => {}
        "http" if policy.allow_plain_http && is_loopback(&host) => {}
        _ => return Err(Refusal::Scheme),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Refusal::BadUrl);
    }
    let host_port = format!("{host}:{port}");
    if !policy
        .hosts
        .iter()
        .any(|h| h.eq_ignore_ascii_case(&host_port))
    {
        return Err(Refusal::NotAllowlisted);
    }
    Ok((url, host_port))
}

fn is_tls_error(e: &reqwest::Error) -> bool {
    // hyper-util wraps the connector's io::Error, which wraps another io::Error holding the
    // rustls::Error; io::Error::source() skips its payload, so descend with get_ref() too.
    fn in_io(mut io: &std::io::Error) -> bool {
        loop {
            match io.get_ref() {
                Some(inner) if inner.downcast_ref::<rustls::Error>().is_some() => return true,
                Some(inner) => match inner.downcast_ref::<std::io::Error>() {
                    Some(next) => io = next,
                    None => return false,
                },
                None => return false,
            }
        }
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = source {
        if s.downcast_ref::<rustls::Error>().is_some() {
            return true;
        }
        if s.downcast_ref::<std::io::Error>().is_some_and(in_io) {
            return true;
        }
        source = s.source();
    }
    false
}

impl Egress {
    /// Builds the client: rustls with the webpki roots, no redirects, no proxies.
    pub fn new(options: EgressOptions) -> Result<Egress, EgressError> {
        let client = reqwest::Client::builder()
            .use_rustls_tls()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(options.connect_timeout)
            .user_agent("ca-appliance-plugin-host")
            .build()
            .map_err(|e| EgressError(e.to_string()))?;
        Ok(Egress { client, options })
    }

    /// Performs one action and returns the event to feed back to the plugin: `http_response`,
    /// or `http_error` (`refused_host` when the policy forbids the request).
    pub async fn perform(&self, policy: &EgressPolicy, action: &HttpAction) -> Event {
        let error = |kind| Event::HttpError {
            id: action.id.clone(),
            error: kind,
        };
        let method = action.method.as_str();
        let (url, host_port) = match check_url(policy, &action.url) {
            Ok(x) => x,
            Err(r) => {
                tracing::warn!(plugin = %policy.plugin, method, reason = r.describe(), "plugin HTTP action refused");
                return error(HttpErrorKind::RefusedHost);
            }
        };
        let prepared = (|| -> Result<_, Refusal> {
            let mut headers = reqwest::header::HeaderMap::new();
            for (name, value) in &action.headers {
                if FORBIDDEN_HEADERS
                    .iter()
                    .any(|h| name.eq_ignore_ascii_case(h))
                {
                    return Err(Refusal::ForbiddenHeader);
                }
                let value = substitute(value, &policy.secrets)?;
                let name = reqwest::header::HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| Refusal::BadHeader)?;
                let mut value = reqwest::header::HeaderValue::from_str(&value)
                    .map_err(|_| Refusal::BadHeader)?;
                value.set_sensitive(true);
                headers.append(name, value);
            }
            let body = action
                .body
                .as_deref()
                .map(|b| substitute(b, &policy.secrets))
                .transpose()?;
            Ok((headers, body))
        })();
        let (headers, body) = match prepared {
            Ok(x) => x,
            Err(r) => {
                tracing::warn!(plugin = %policy.plugin, method, host = %host_port, reason = r.describe(), "plugin HTTP action refused");
                return error(HttpErrorKind::RefusedHost);
            }
        };
        let timeout = Duration::from_millis(u64::from(action.timeout_ms).max(1))
            .min(self.options.max_timeout);
        let method = match reqwest::Method::from_bytes(method.as_bytes()) {
            Ok(m) => m,
            Err(_) => return error(HttpErrorKind::RefusedHost),
        };
        let mut req = self
            .client
            .request(method.clone(), url)
            .headers(headers)
            .timeout(timeout);
        if let Some(b) = body {
            req = req.body(b);
        }
        let exchange = async {
            let mut resp = req.send().await?;
            let status = resp.status().as_u16();
            let mut buf: Vec<u8> = Vec::new();
            while let Some(chunk) = resp.chunk().await? {
                if buf.len() + chunk.len() > self.options.max_response_bytes {
                    return Ok(Err(status));
                }
                buf.extend_from_slice(&chunk);
            }
            Ok::<_, reqwest::Error>(Ok((status, buf)))
        };
        let outcome = match tokio::time::timeout(timeout, exchange).await {
            Err(_) => Err(HttpErrorKind::Timeout),
            Ok(Ok(Ok(x))) => Ok(x),
            Ok(Ok(Err(_status))) => Err(HttpErrorKind::TooLarge),
            Ok(Err(e)) if e.is_timeout() => Err(HttpErrorKind::Timeout),
            Ok(Err(e)) if is_tls_error(&e) => Err(HttpErrorKind::Tls),
            Ok(Err(_)) => Err(HttpErrorKind::Connect),
        };
        match outcome {
            Ok((status, body)) => {
                tracing::info!(plugin = %policy.plugin, method = %method, host = %host_port, status, "plugin HTTP action");
                Event::HttpResponse {
                    id: action.id.clone(),
                    status,
                    body: String::from_utf8_lossy(&body).into_owned(),
                }
            }
            Err(kind) => {
                tracing::info!(plugin = %policy.plugin, method = %method, host = %host_port, error = ?kind, "plugin HTTP action failed");
                error(kind)
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    fn policy(hosts: &[&str], plain: bool) -> EgressPolicy {
        EgressPolicy {
            plugin: "t".into(),
            hosts: hosts.iter().map(|s| s.to_string()).collect(),
            allow_plain_http: plain,
            secrets: [("api_key".to_owned(), Secret::new("s3cr3t"))].into(),
        }
    }

    #[test]
    fn substitutes_known_secrets_and_refuses_unknown() {
        let p = policy(&[], false);
        assert_eq!(
            substitute("Bearer {{secret:api_key}}!", &p.secrets).unwrap(),
            "Bearer s3cr3t!"
        );
        assert_eq!(
            substitute("no placeholder", &p.secrets).unwrap(),
            "no placeholder"
        );
        assert_eq!(
            substitute("{{secret:other}}", &p.secrets),
            Err(Refusal::UnknownSecret)
        );
    }

    #[test]
    fn url_policy() {
        let p = policy(&["api.example.cn:443", "127.0.0.1:8080"], false);
        assert!(check_url(&p, "https://api.example.cn/v1").is_ok());
        assert!(check_url(&p, "https://API.example.cn:443/v1").is_ok());
        assert_eq!(
            check_url(&p, "https://evil.example.cn/").unwrap_err(),
            Refusal::NotAllowlisted
        );
        assert_eq!(
            check_url(&p, "https://api.example.cn:8443/").unwrap_err(),
            Refusal::NotAllowlisted
        );
        assert_eq!(
            check_url(&p, "http://127.0.0.1:8080/").unwrap_err(),
            Refusal::Scheme
        );
        assert_eq!(
            check_url(&p, "ftp://api.example.cn/").unwrap_err(),
            Refusal::Scheme
        );
        let plain = policy(&["127.0.0.1:8080", "api.example.cn:80"], true);
        assert!(check_url(&plain, "http://127.0.0.1:8080/x").is_ok());
        assert_eq!(
            check_url(&plain, "http://api.example.cn/").unwrap_err(),
            Refusal::Scheme
        );
        assert_eq!(
            check_url(&p, "https://u:p@api.example.cn/").unwrap_err(),
            Refusal::BadUrl
        );
    }
}
