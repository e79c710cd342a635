//! The live-signing budget: how much HSM work anyone on the public port can cause. Answers that
//! are not pre-signed (nonce echoes, SHA-256 CertIDs on first demand, several CertIDs, unknown
//! serials) are signed only within a concurrency cap below the HSM pool size, so issuance and
//! revocation re-signing always find a session, and within a rate (token bucket).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, SemaphorePermit};

/// How long a live request may wait for a signing slot before it is over budget.
const SLOT_WAIT: Duration = Duration::from_millis(100);

/// Tokens refill continuously at `rate` per second up to one second's worth.
#[derive(Debug)]
struct TokenBucket {
    tokens: f64,
    capacity: f64,
    rate: f64,
    refilled: Instant,
}

impl TokenBucket {
    fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.capacity);
        self.refilled = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Concurrency and rate limit on live OCSP signatures.
#[derive(Debug)]
pub struct LiveBudget {
    slots: Semaphore,
    concurrency: usize,
    bucket: Mutex<TokenBucket>,
}

/// The right to make one live signature; the slot is released on drop.
#[derive(Debug)]
pub struct LivePermit<'a> {
    _slot: SemaphorePermit<'a>,
}

impl LiveBudget {
    /// At most `concurrency` live signatures at once and `per_second` on average (burst: one
    /// second's worth). Either at 0 disables live signing.
    pub fn new(concurrency: usize, per_second: u32) -> LiveBudget {
        let rate = f64::from(per_second);
        LiveBudget {
            slots: Semaphore::new(concurrency),
            concurrency,
            bucket: Mutex::new(TokenBucket {
                tokens: rate,
                capacity: rate,
                rate,
                refilled: Instant::now(),
            }),
        }
    }

    /// A permit if the budget allows one more live signature now; `None` means over budget
    /// (answer from a pre-signed response or `tryLater`).
    pub async fn acquire(&self) -> Option<LivePermit<'_>> {
        if self.concurrency == 0 {
            return None;
        }
        let taken = self
            .bucket
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take(Instant::now());
        if !taken {
            return None;
        }
        match tokio::time::timeout(SLOT_WAIT, self.slots.acquire()).await {
            Ok(Ok(slot)) => Some(LivePermit { _slot: slot }),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_allows_its_burst_then_refills_with_time() {
        let start = Instant::now();
        let mut b = TokenBucket {
            tokens: 3.0,
            capacity: 3.0,
            rate: 3.0,
            refilled: start,
        };
        assert!((0..3).all(|_| b.take(start)));
        assert!(!b.take(start));
        assert!(b.take(start + Duration::from_millis(400)));
        assert!(!b.take(start + Duration::from_millis(400)));
        // Never more than capacity after a long pause.
        let later = start + Duration::from_secs(60);
        assert!((0..3).all(|_| b.take(later)));
        assert!(!b.take(later));
    }

    #[tokio::test]
    async fn concurrency_is_capped_and_zero_disables() {
        let budget = LiveBudget::new(1, 1000);
        let first = budget.acquire().await;
        assert!(first.is_some());
        assert!(budget.acquire().await.is_none(), "second concurrent signer");
        drop(first);
        assert!(budget.acquire().await.is_some());
        assert!(LiveBudget::new(0, 1000).acquire().await.is_none());
        assert!(LiveBudget::new(4, 0).acquire().await.is_none());
    }
}
