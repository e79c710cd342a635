//! Pre-signed responses in memory: one map per issuer, serial octets -> response and its
//! precomputed HTTP caching headers, so answering is a hash lookup and a write.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use axum::body::Bytes;
use axum::http::HeaderValue;
use sha2::{Digest, Sha256};

/// One signed `OCSPResponse` with the header values derived from it.
#[derive(Debug)]
pub struct CachedResponse {
    /// The DER `OCSPResponse`.
    pub der: Bytes,
    /// thisUpdate, unix seconds.
    pub this_update: i64,
    /// nextUpdate, unix seconds.
    pub next_update: i64,
    /// Strong ETag: quoted hex SHA-256 of the DER.
    pub etag: HeaderValue,
    /// `Last-Modified` (= thisUpdate).
    pub last_modified: HeaderValue,
    /// `Expires` (= nextUpdate).
    pub expires: HeaderValue,
}

impl CachedResponse {
    /// Wraps a response and computes its headers.
    pub fn new(der: Vec<u8>, this_update: i64, next_update: i64) -> CachedResponse {
        let etag = format!("\"{}\"", hex::encode(Sha256::digest(&der)));
        CachedResponse {
            der: Bytes::from(der),
            this_update,
            next_update,
            etag: header_value(&etag),
            last_modified: header_value(&http_date(this_update)),
            expires: header_value(&http_date(next_update)),
        }
    }

    /// `Cache-Control` for a reply sent at `now`: max-age ends before nextUpdate (RFC 5019 6.2).
    pub fn cache_control(&self, now: i64) -> HeaderValue {
        cache_control(now, self.next_update)
    }
}

/// `max-age=n, public, no-transform, must-revalidate` with now + n < `next_update`.
pub fn cache_control(now: i64, next_update: i64) -> HeaderValue {
    let max_age = (next_update - now - 1).max(0);
    header_value(&format!(
        "max-age={max_age}, public, no-transform, must-revalidate"
    ))
}

/// A header value from text we formatted ourselves (ASCII, no control characters).
fn header_value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// RFC 9110 IMF-fixdate of unix seconds, e.g. `Sun, 06 Nov 1994 08:49:37 GMT`.
pub fn http_date(unix: i64) -> String {
    let format = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_default()
}

/// The pre-signed responses of one issuer, keyed by serial INTEGER content octets.
#[derive(Debug, Default)]
pub struct ResponseCache {
    map: RwLock<HashMap<Box<[u8]>, Arc<CachedResponse>>>,
}

impl ResponseCache {
    /// The response for `serial` if present and still valid at `now`.
    pub fn get(&self, serial: &[u8], now: i64) -> Option<Arc<CachedResponse>> {
        let map = self.map.read().unwrap_or_else(|p| p.into_inner());
        map.get(serial).filter(|r| r.next_update > now).cloned()
    }

    /// Inserts or replaces the response for `serial`.
    pub fn insert(&self, serial: &[u8], response: Arc<CachedResponse>) {
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        map.insert(serial.into(), response);
    }

    /// Inserts many at once (one lock acquisition).
    pub fn extend(&self, items: impl IntoIterator<Item = (Vec<u8>, Arc<CachedResponse>)>) {
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        for (serial, r) in items {
            map.insert(serial.into_boxed_slice(), r);
        }
    }

    /// Forgets `serial` (its status changed and could not be re-signed).
    pub fn remove(&self, serial: &[u8]) {
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        map.remove(serial);
    }

    /// Drops responses whose nextUpdate has passed.
    pub fn purge_expired(&self, now: i64) {
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, r| r.next_update > now);
    }

    /// Number of responses held.
    pub fn len(&self) -> usize {
        self.map.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether no response is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn http_date_is_imf_fixdate() {
        assert_eq!(http_date(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
    }

    #[test]
    fn max_age_stays_before_next_update_and_expired_entries_are_not_served() {
        let r = CachedResponse::new(vec![0x30, 0], 1000, 2000);
        assert_eq!(
            r.cache_control(1500).to_str().unwrap(),
            "max-age=499, public, no-transform, must-revalidate"
        );
        assert!(r
            .cache_control(5000)
            .to_str()
            .unwrap()
            .starts_with("max-age=0,"));
        let cache = ResponseCache::default();
        cache.insert(&[1], Arc::new(r));
        assert!(cache.get(&[1], 1999).is_some());
        assert!(cache.get(&[1], 2000).is_none());
        assert!(cache.get(&[2], 1500).is_none());
    }
}
