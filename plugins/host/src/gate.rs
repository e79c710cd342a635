//! [`ActionGate`]: the host's say over a plugin's HTTP actions before they reach a vendor, for
//! limits on what a verification may spend (SMS sends, carrier and bank checks, face sessions,
//! payouts). The runner asks twice: when a caller's event (start, user input, callback, cancel)
//! produces actions, without counting, so an over-limit request is refused and changes nothing;
//! and right before it performs each action, counting it. An action refused at that point is
//! answered to the plugin as the vendor's own rate limiting would be (HTTP 429), never sent.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use plugin_abi::doc::HttpAction;

/// Why the gate did not admit an action.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GateError {
    /// A limit is reached.
    #[error("{scope} limit on {class} reached; retry after {} s", retry_after.as_secs())]
    Limited {
        /// The limit class (`sms`, `payout`, ...).
        class: String,
        /// Whose limit: `channel` or `subject`.
        scope: String,
        /// When a slot frees up.
        retry_after: Duration,
    },
    /// The counters could not be read or written (fail closed: nothing is sent).
    #[error("limit counters unavailable: {0}")]
    Unavailable(String),
}

/// A boxed future returned by [`ActionGate::admit`].
pub type GateFuture<'a> = Pin<Box<dyn Future<Output = Result<(), GateError>> + Send + 'a>>;

/// Decides whether a verification's HTTP actions may reach their vendor.
pub trait ActionGate: Send + Sync {
    /// Admits `actions` of verification `id` all together or not at all; with `record`, counts
    /// them as spent.
    fn admit<'a>(&'a self, id: &'a str, actions: &'a [HttpAction], record: bool) -> GateFuture<'a>;
}
