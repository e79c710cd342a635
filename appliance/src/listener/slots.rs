//! The connection cap: a listener holds at most `max` connections. At the cap, a new connection
//! takes the place of the oldest one with no request in progress (idle keep-alive, still in its
//! handshake or still sending its request head) or still sending its request body, so a crowd of
//! slow or idle clients cannot lock out a client that sends its request promptly; if every
//! connection is busy the newcomer is closed at once. Closed sockets are never queued, so
//! descriptors stay bounded.
//!
//! The slots also carry the stop requests to their connections (evicted, or drain for
//! shutdown): one flag and one waker per connection, so a connection checks for them with a
//! few atomic operations each time it runs, with no lock.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;
use tokio::sync::Notify;

use super::timing::Timing;

/// The open connections of one listener.
pub(crate) struct Slots {
    max: usize,
    inner: Mutex<Inner>,
    emptied: Notify,
}

struct Inner {
    next_id: u64,
    open: BTreeMap<u64, Arc<Entry>>,
    /// Shutdown was requested: every connection, even one admitted later, drains.
    draining: bool,
}

/// [`Entry::stop`] values.
const RUN: u8 = 0;
const DRAIN: u8 = 1;
const EVICTED: u8 = 2;

struct Entry {
    timing: Arc<Timing>,
    /// RUN, DRAIN or EVICTED (only ever raised).
    stop: AtomicU8,
    waker: AtomicWaker,
}

impl Entry {
    fn raise(&self, to: u8) {
        if self.stop.fetch_max(to, Ordering::AcqRel) < to {
            self.waker.wake();
        }
    }
}

/// What a connection is asked to do by [`Slot::poll_stop`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    /// Finish the request in progress, then close (shutdown).
    Drain,
    /// Close at once: a newer connection took this one's place.
    Evicted,
}

/// One admitted connection; frees its place when dropped.
pub(crate) struct Slot {
    slots: Arc<Slots>,
    id: u64,
    entry: Arc<Entry>,
}

/// Whether a connection was admitted, and whether it displaced another.
pub(crate) enum Admission {
    /// Admitted below the cap.
    Free(Slot),
    /// Admitted at the cap by evicting the oldest idle or slow connection.
    Evicted(Slot),
    /// At the cap with every connection busy: refused.
    Refused,
}

impl Slots {
    /// A cap of `max` connections.
    pub(crate) fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max: max.max(1),
            inner: Mutex::new(Inner {
                next_id: 0,
                open: BTreeMap::new(),
                draining: false,
            }),
            emptied: Notify::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding this lock leaves the map consistent (single inserts/removes).
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Admits a new connection (see the module doc for the policy at the cap).
    pub(crate) fn admit(self: &Arc<Self>) -> Admission {
        let mut inner = self.lock();
        let mut evicted = false;
        if inner.open.len() >= self.max {
            let victim = inner
                .open
                .iter()
                .find(|(_, e)| e.timing.is_evictable())
                .map(|(id, _)| *id);
            let Some(victim) = victim else {
                return Admission::Refused;
            };
            if let Some(e) = inner.open.remove(&victim) {
                e.raise(EVICTED);
            }
            evicted = true;
        }
        let id = inner.next_id;
        inner.next_id += 1;
        let entry = Arc::new(Entry {
            timing: Arc::new(Timing::new()),
            stop: AtomicU8::new(if inner.draining { DRAIN } else { RUN }),
            waker: AtomicWaker::new(),
        });
        inner.open.insert(id, entry.clone());
        let slot = Slot {
            slots: self.clone(),
            id,
            entry,
        };
        if evicted {
            Admission::Evicted(slot)
        } else {
            Admission::Free(slot)
        }
    }

    /// Shutdown: every connection, open or admitted from now on, is asked to drain.
    pub(crate) fn drain_all(&self) {
        let mut inner = self.lock();
        inner.draining = true;
        for entry in inner.open.values() {
            entry.raise(DRAIN);
        }
    }

    /// Connections currently holding a place.
    pub(crate) fn len(&self) -> usize {
        self.lock().open.len()
    }

    /// Resolves once no connection holds a place.
    pub(crate) async fn drained(&self) {
        loop {
            let emptied = self.emptied.notified();
            tokio::pin!(emptied);
            emptied.as_mut().enable();
            if self.len() == 0 {
                return;
            }
            emptied.await;
        }
    }
}

impl Slot {
    /// The connection's timing state (shared with its I/O and request wrappers).
    pub(crate) fn timing(&self) -> &Arc<Timing> {
        &self.entry.timing
    }

    /// Ready with the strongest stop request made, once it is stronger than `Drain` when
    /// `draining` already (a connection acts on a drain request once).
    pub(crate) fn poll_stop(&self, cx: &mut Context<'_>, draining: bool) -> Poll<Stop> {
        let seen = if draining { DRAIN } else { RUN };
        let check = |e: &Entry| match e.stop.load(Ordering::Acquire) {
            s if s <= seen => None,
            DRAIN => Some(Stop::Drain),
            _ => Some(Stop::Evicted),
        };
        if let Some(stop) = check(&self.entry) {
            return Poll::Ready(stop);
        }
        self.entry.waker.register(cx.waker());
        // A request raised between the check and the registration did not see this waker.
        check(&self.entry).map_or(Poll::Pending, Poll::Ready)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut inner = self.slots.lock();
        inner.open.remove(&self.id);
        if inner.open.is_empty() {
            self.slots.emptied.notify_waiters();
        }
    }
}
