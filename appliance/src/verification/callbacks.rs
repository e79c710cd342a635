//! Vendor callbacks: a vendor (face, payout) notifies `POST /callbacks/{plugin}/{verification}` on
//! the public listener when a person finishes or a transfer settles. Each is authenticated per
//! vendor: `X-CA-Timestamp` (Unix seconds) and `X-CA-Signature` (hex HMAC-SHA256 over
//! `timestamp + "." + body` under the plugin's `callback_secret`), the timestamp within
//! [`WINDOW_SECS`] of now, and a signature accepted once (kept in the database, so a replay is
//! refused after a restart too). Only then is the body fed to the verification as its `callback`
//! event; the plugins treat it as "look now" and read the verdict from the vendor themselves.

use ring::hmac;

use crate::storage::{unix_now, LimitRows};

/// Header carrying the signing time, Unix seconds.
pub const TIMESTAMP_HEADER: &str = "x-ca-timestamp";
/// Header carrying the hex HMAC-SHA256 of `timestamp + "." + body`.
pub const SIGNATURE_HEADER: &str = "x-ca-signature";
/// The plugin secret (`[[plugin]] secrets`) callbacks are signed with.
pub const SECRET_NAME: &str = "callback_secret";
/// Largest distance between the signing time and now, seconds.
pub const WINDOW_SECS: i64 = 300;

/// Why a callback was refused. Nothing was changed by a refused callback.
#[derive(Debug, thiserror::Error)]
pub enum CallbackError {
    /// No such plugin, or it has no `callback_secret`: it takes no callbacks.
    #[error("plugin {0} takes no callbacks")]
    NotAccepted(String),
    /// A header is missing or malformed.
    #[error("callback without valid {0} header")]
    MissingHeader(&'static str),
    /// The signature does not match.
    #[error("callback signature does not match")]
    BadSignature,
    /// The timestamp is outside the window.
    #[error("callback timestamp is more than {WINDOW_SECS} s away from now")]
    Stale,
    /// This signature was accepted before.
    #[error("callback already received (replay refused)")]
    Replayed,
    /// The body is not a JSON object.
    #[error("callback body is not a JSON object")]
    BadBody,
    /// The replay records could not be read or written.
    #[error("callback records unavailable: {0}")]
    Storage(String),
}

/// Checks signatures and refuses replays.
#[derive(Clone)]
pub struct CallbackVerifier {
    rows: LimitRows,
}

impl std::fmt::Debug for CallbackVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CallbackVerifier")
    }
}

/// The signature a vendor sends: hex HMAC-SHA256(secret, `timestamp.body`).
pub fn sign(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let mut ctx = hmac::Context::with_key(&key);
    ctx.update(timestamp.as_bytes());
    ctx.update(b".");
    ctx.update(body);
    hex::encode(ctx.sign().as_ref())
}

impl CallbackVerifier {
    /// A verifier recording accepted signatures in `rows`.
    pub fn new(rows: LimitRows) -> Self {
        Self { rows }
    }

    /// Authenticates one callback for `plugin` and returns its body. The signature is checked
    /// (in constant time) before anything else is looked at or stored.
    pub async fn verify(
        &self,
        plugin: &str,
        secret: &[u8],
        timestamp: Option<&str>,
        signature: Option<&str>,
        body: &[u8],
    ) -> Result<serde_json::Value, CallbackError> {
        let timestamp = timestamp
            .map(str::trim)
            .filter(|t| !t.is_empty() && t.len() <= 20 && t.bytes().all(|b| b.is_ascii_digit()))
            .ok_or(CallbackError::MissingHeader(TIMESTAMP_HEADER))?;
        let sig = signature
            .map(str::trim)
            .filter(|s| s.len() == 64)
            .and_then(|s| hex::decode(s).ok())
            .ok_or(CallbackError::MissingHeader(SIGNATURE_HEADER))?;
        let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
        let mut signed = Vec::with_capacity(timestamp.len() + 1 + body.len());
        signed.extend_from_slice(timestamp.as_bytes());
        signed.push(b'.');
        signed.extend_from_slice(body);
        hmac::verify(&key, &signed, &sig).map_err(|_| CallbackError::BadSignature)?;
        let at: i64 = timestamp.parse().map_err(|_| CallbackError::Stale)?;
        let now = unix_now();
        if (now - at).abs() > WINDOW_SECS {
            return Err(CallbackError::Stale);
        }
        let value: serde_json::Value =
            serde_json::from_slice(body).map_err(|_| CallbackError::BadBody)?;
        if !value.is_object() {
            return Err(CallbackError::BadBody);
        }
        let fresh = self
            .rows
            .remember_signature(
                &format!("{plugin}:{}", hex::encode(&sig)),
                now,
                now - 2 * WINDOW_SECS,
            )
            .await
            .map_err(|e| CallbackError::Storage(e.to_string()))?;
        if !fresh {
            return Err(CallbackError::Replayed);
        }
        Ok(value)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn signature_covers_timestamp_and_body() {
        let a = sign(b"k", "1700000000", b"{}");
        assert_eq!(a.len(), 64);
        assert_ne!(a, sign(b"k", "1700000001", b"{}"));
        assert_ne!(a, sign(b"k", "1700000000", b"{ }"));
        assert_ne!(a, sign(b"k2", "1700000000", b"{}"));
    }
}
