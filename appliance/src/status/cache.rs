//! Pre-signed responses in memory: one map per issuer, serial octets -> response and its
//! precomputed HTTP caching headers, so answering is a hash lookup and a write.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

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
    /// The last `Cache-Control` built and the second it was built for: every answer within one
    /// second carries the same max-age, so it is formatted once per second, not per request.
    cache_control_memo: Mutex<Option<(i64, HeaderValue)>>,
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
            cache_control_memo: Mutex::new(None),
        }
    }

    /// `Cache-Control` for a reply sent at `now`: max-age ends before nextUpdate (RFC 5019 6.2).
    pub fn cache_control(&self, now: i64) -> HeaderValue {
        // A busy memo (another thread answering the same serial) is not waited for.
        let Ok(mut memo) = self.cache_control_memo.try_lock() else {
            return cache_control(now, self.next_update);
        };
        match &*memo {
            Some((at, value)) if *at == now => value.clone(),
            _ => {
                let value = cache_control(now, self.next_update);
                *memo = Some((now, value.clone()));
                value
            }
        }
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

/// Parses an RFC 9110 IMF-fixdate (`If-Modified-Since`) to unix seconds; `None` for anything
/// else (the obsolete formats are ignored: the full response is sent).
pub fn parse_http_date(text: &str) -> Option<i64> {
    let format = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    time::PrimitiveDateTime::parse(text.trim(), &format)
        .ok()
        .map(|t| t.assume_utc().unix_timestamp())
}

/// Which CertID hash a cached response answers (a response must repeat the request's CertID).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertIdHash {
    /// SHA-1 CertIDs: pre-signed for every certificate.
    Sha1,
    /// SHA-256 CertIDs: signed on first demand (within the live-signing budget), then cached.
    Sha256,
    /// SM3 CertIDs (GM/T 0015 relying parties): like SHA-256, signed on first demand.
    Sm3,
}

/// What one serial holds: the status version its responses are for, and those responses.
#[derive(Debug, Default)]
struct Slot {
    status_seq: i64,
    sha1: Option<Arc<CachedResponse>>,
    sha256: Option<Arc<CachedResponse>>,
    sm3: Option<Arc<CachedResponse>>,
}

impl Slot {
    fn response(&mut self, hash: CertIdHash) -> &mut Option<Arc<CachedResponse>> {
        match hash {
            CertIdHash::Sha1 => &mut self.sha1,
            CertIdHash::Sha256 => &mut self.sha256,
            CertIdHash::Sm3 => &mut self.sm3,
        }
    }
}

/// The responses of one issuer, keyed by serial INTEGER content octets. Each serial remembers
/// the newest status version seen, so a response signed for an older version (a slow signer
/// racing a revocation) is refused instead of replacing a newer answer.
#[derive(Debug, Default)]
pub struct ResponseCache {
    map: RwLock<HashMap<Box<[u8]>, Slot>>,
}

impl ResponseCache {
    /// The `hash` response for `serial` if present and still valid at `now`.
    pub fn get(&self, serial: &[u8], hash: CertIdHash, now: i64) -> Option<Arc<CachedResponse>> {
        let map = self.map.read().unwrap_or_else(|p| p.into_inner());
        let slot = map.get(serial)?;
        let response = match hash {
            CertIdHash::Sha1 => slot.sha1.as_ref(),
            CertIdHash::Sha256 => slot.sha256.as_ref(),
            CertIdHash::Sm3 => slot.sm3.as_ref(),
        };
        response.filter(|r| r.next_update > now).cloned()
    }

    /// Offers a response signed for status version `status_seq`: kept unless the serial is
    /// already at a newer version. A newer version drops the other hash's older response.
    pub fn offer(
        &self,
        serial: &[u8],
        status_seq: i64,
        hash: CertIdHash,
        response: Arc<CachedResponse>,
    ) -> bool {
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        Self::offer_in(&mut map, serial, status_seq, hash, response)
    }

    fn offer_in(
        map: &mut HashMap<Box<[u8]>, Slot>,
        serial: &[u8],
        status_seq: i64,
        hash: CertIdHash,
        response: Arc<CachedResponse>,
    ) -> bool {
        let slot = map.entry(serial.into()).or_default();
        if status_seq < slot.status_seq {
            return false;
        }
        if status_seq > slot.status_seq {
            *slot = Slot {
                status_seq,
                ..Slot::default()
            };
        }
        *slot.response(hash) = Some(response);
        true
    }

    /// Offers many SHA-1 responses at once (one lock acquisition).
    pub fn offer_all(&self, items: impl IntoIterator<Item = (Vec<u8>, i64, Arc<CachedResponse>)>) {
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        for (serial, seq, r) in items {
            Self::offer_in(&mut map, &serial, seq, CertIdHash::Sha1, r);
        }
    }

    /// The status of `serial` changed to version `status_seq`: every response for an older
    /// version is withdrawn at once, and none can be offered back.
    pub fn invalidate(&self, serial: &[u8], status_seq: i64) {
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        let slot = map.entry(serial.into()).or_default();
        if status_seq > slot.status_seq {
            *slot = Slot {
                status_seq,
                ..Slot::default()
            };
        }
    }

    /// Whether a response signed for status version `status_seq` (or newer) is held for `serial`.
    pub fn holds_version(&self, serial: &[u8], status_seq: i64) -> bool {
        let map = self.map.read().unwrap_or_else(|p| p.into_inner());
        map.get(serial).is_some_and(|s| {
            s.status_seq >= status_seq
                && (s.sha1.is_some() || s.sha256.is_some() || s.sm3.is_some())
        })
    }

    /// Drops responses whose nextUpdate has passed (the serial keeps its version).
    pub fn purge_expired(&self, now: i64) {
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        for slot in map.values_mut() {
            for r in [&mut slot.sha1, &mut slot.sha256, &mut slot.sm3] {
                if r.as_ref().is_some_and(|r| r.next_update <= now) {
                    *r = None;
                }
            }
        }
    }

    /// Number of pre-signed (SHA-1) responses held.
    pub fn len(&self) -> usize {
        let map = self.map.read().unwrap_or_else(|p| p.into_inner());
        map.values().filter(|s| s.sha1.is_some()).count()
    }

    /// Number of pre-signed (SHA-1) responses and the oldest one's thisUpdate (metrics,
    /// readiness): a scan, called per scrape, not per request.
    pub fn summary(&self) -> (usize, Option<i64>) {
        let map = self.map.read().unwrap_or_else(|p| p.into_inner());
        let mut count = 0;
        let mut oldest: Option<i64> = None;
        for r in map.values().filter_map(|s| s.sha1.as_ref()) {
            count += 1;
            oldest = Some(oldest.map_or(r.this_update, |o| o.min(r.this_update)));
        }
        (count, oldest)
    }

    /// Whether no pre-signed response is held.
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
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777)
        );
        assert_eq!(parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT"), None);
        assert_eq!(parse_http_date("yesterday"), None);
    }

    #[test]
    fn max_age_stays_before_next_update_and_expired_entries_are_not_served() {
        let r = CachedResponse::new(vec![0x30, 0], 1000, 2000);
        assert_eq!(
            r.cache_control(1500).to_str().unwrap(),
            "max-age=499, public, no-transform, must-revalidate"
        );
        // Asked again in the same second (memo) and in the next one (rebuilt).
        assert_eq!(r.cache_control(1500), cache_control(1500, 2000));
        assert_eq!(
            r.cache_control(1501).to_str().unwrap(),
            "max-age=498, public, no-transform, must-revalidate"
        );
        assert!(r
            .cache_control(5000)
            .to_str()
            .unwrap()
            .starts_with("max-age=0,"));
        let cache = ResponseCache::default();
        assert!(cache.offer(&[1], 0, CertIdHash::Sha1, Arc::new(r)));
        assert!(cache.get(&[1], CertIdHash::Sha1, 1999).is_some());
        assert!(cache.get(&[1], CertIdHash::Sha1, 2000).is_none());
        assert!(cache.get(&[1], CertIdHash::Sha256, 1500).is_none());
        assert!(cache.get(&[2], CertIdHash::Sha1, 1500).is_none());
    }

    fn response(tag: u8) -> Arc<CachedResponse> {
        Arc::new(CachedResponse::new(vec![0x30, 1, tag], 1000, 2000))
    }

    #[test]
    fn a_response_for_an_older_status_version_never_replaces_a_newer_one() {
        let cache = ResponseCache::default();
        assert!(cache.offer(&[7], 5, CertIdHash::Sha1, response(5)));
        // A slow signer that read the status before the change finishes last: refused.
        assert!(!cache.offer(&[7], 4, CertIdHash::Sha1, response(4)));
        assert_eq!(cache.get(&[7], CertIdHash::Sha1, 1500).unwrap().der[2], 5);
        // Same version (a refresh) replaces.
        assert!(cache.offer(&[7], 5, CertIdHash::Sha1, response(6)));
        assert_eq!(cache.get(&[7], CertIdHash::Sha1, 1500).unwrap().der[2], 6);
    }

    #[test]
    fn invalidation_withdraws_every_hash_and_blocks_older_offers() {
        let cache = ResponseCache::default();
        cache.offer(&[9], 1, CertIdHash::Sha1, response(1));
        cache.offer(&[9], 1, CertIdHash::Sha256, response(1));
        cache.invalidate(&[9], 2);
        assert!(cache.get(&[9], CertIdHash::Sha1, 1500).is_none());
        assert!(cache.get(&[9], CertIdHash::Sha256, 1500).is_none());
        assert!(!cache.offer(&[9], 1, CertIdHash::Sha1, response(1)));
        assert!(cache.get(&[9], CertIdHash::Sha1, 1500).is_none());
        // Invalidating to an older version changes nothing.
        cache.offer(&[9], 2, CertIdHash::Sha1, response(2));
        cache.invalidate(&[9], 1);
        assert!(cache.get(&[9], CertIdHash::Sha1, 1500).is_some());
        // A newer version for one hash drops the other hash's older answer.
        cache.offer(&[9], 2, CertIdHash::Sha256, response(2));
        cache.offer(&[9], 3, CertIdHash::Sha1, response(3));
        assert!(cache.get(&[9], CertIdHash::Sha256, 1500).is_none());
    }
}
