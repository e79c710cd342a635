//! Vendor notifications: POST a JSON body to a callback URL (plain http, best effort), signed
//! when a secret is configured: `X-CA-Timestamp` (Unix seconds) and `X-CA-Signature` (hex
//! HMAC-SHA256 over `timestamp + "." + body`), what the appliance's callback route checks.

use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// Why a notification could not be delivered.
#[derive(Debug, thiserror::Error)]
pub enum CallbackError {
    /// The URL or request could not be built.
    #[error("bad callback request: {0}")]
    Request(String),
    /// Connection or protocol failure.
    #[error("callback delivery failed: {0}")]
    Send(String),
    /// The receiver answered with a non-2xx status.
    #[error("callback receiver answered {0}")]
    Status(u16),
}

/// Header carrying the signing time.
pub const TIMESTAMP_HEADER: &str = "x-ca-timestamp";
/// Header carrying the signature.
pub const SIGNATURE_HEADER: &str = "x-ca-signature";

/// Hex HMAC-SHA256 of `timestamp.body` under `secret`.
pub fn sign(secret: &str, timestamp: &str, body: &[u8]) -> String {
    let Ok(mut mac) = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()) else {
        return String::new(); // HMAC takes keys of any length
    };
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// POSTs `body` to `url` once, signed with `secret` if given; returns the receiver's status.
pub async fn post_json(
    url: &str,
    body: &serde_json::Value,
    secret: Option<&str>,
) -> Result<u16, CallbackError> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let payload = body.to_string();
    let mut req = hyper::Request::post(url).header("content-type", "application/json");
    if let Some(secret) = secret {
        let ts = unix_now().to_string();
        let sig = sign(secret, &ts, payload.as_bytes());
        req = req
            .header(TIMESTAMP_HEADER, ts)
            .header(SIGNATURE_HEADER, sig);
    }
    let req = req
        .body(Full::new(Bytes::from(payload)))
        .map_err(|e| CallbackError::Request(e.to_string()))?;
    let resp = client
        .request(req)
        .await
        .map_err(|e| CallbackError::Send(e.to_string()))?;
    let status = resp.status().as_u16();
    // Drain the body so the connection closes cleanly.
    let _ = resp.into_body().collect().await;
    if (200..300).contains(&status) {
        Ok(status)
    } else {
        Err(CallbackError::Status(status))
    }
}

/// Sends a notification in the background after `delay_ms`, retrying a few times (each try
/// signed afresh with `secret`, if given).
pub fn spawn_notify(url: String, body: serde_json::Value, delay_ms: u64, secret: Option<String>) {
    tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(delay_ms)).await;
        for attempt in 0..3u64 {
            match post_json(&url, &body, secret.as_deref()).await {
                Ok(_) => return,
                Err(e) => {
                    tracing::warn!(error = %e, attempt, "callback delivery failed");
                    tokio::time::sleep(std::time::Duration::from_millis(200 * (attempt + 1))).await;
                }
            }
        }
    });
}
