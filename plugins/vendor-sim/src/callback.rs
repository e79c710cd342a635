//! Vendor notifications: POST a JSON body to a callback URL (plain http, best effort).

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

/// POSTs `body` to `url` once; returns the receiver's status.
pub async fn post_json(url: &str, body: &serde_json::Value) -> Result<u16, CallbackError> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let req = hyper::Request::post(url)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
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

/// Sends a notification in the background after `delay_ms`, retrying a few times.
pub fn spawn_notify(url: String, body: serde_json::Value, delay_ms: u64) {
    tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(delay_ms)).await;
        for attempt in 0..3u64 {
            match post_json(&url, &body).await {
                Ok(_) => return,
                Err(e) => {
                    tracing::warn!(error = %e, attempt, "callback delivery failed");
                    tokio::time::sleep(std::time::Duration::from_millis(200 * (attempt + 1))).await;
                }
            }
        }
    });
}
