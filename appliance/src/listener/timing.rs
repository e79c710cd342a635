//! Per-connection deadlines: the request head, the request body and idle keep-alive.
//!
//! hyper 1.x's own `header_read_timeout` starts when a keep-alive connection goes idle, so it
//! cannot tell "idle between requests" from "slow request head". These deadlines are tracked
//! here instead, from three observations: bytes read ([`TimedIo`]), a request handed to the
//! router and its handler finishing ([`Timing::request_started`]), and bytes written.
//!
//! - No request yet: the head must be complete `header` after the connection is ready.
//! - Between requests: the connection may stay idle for `idle` after its last response byte was
//!   written (a client that stops reading its response stalls the writes and is cut the same
//!   way); once a byte of the next request arrives, its head must be complete `header` later.
//! - A request in progress: no connection deadline; its body must be complete `body` after its
//!   head (enforced on the request, answered 408).
//!
//! The observations are plain atomic stores, with no wake-up: the connection's one timer fires
//! at least every `min(header, idle)` and re-reads them (see [`Timing::expired`]), so a request
//! costs no timer to arm or cancel and no extra poll of its connection.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

const NONE: u64 = u64::MAX;

/// The timing state of one connection; times are milliseconds since `base`.
pub(crate) struct Timing {
    base: Instant,
    in_flight: AtomicUsize,
    bodies_pending: AtomicUsize,
    /// A request body was given up before its end (its rest may still be arriving).
    body_unread: AtomicBool,
    served: AtomicBool,
    ready_or_idle_since: AtomicU64,
    head_started: AtomicU64,
    last_write: AtomicU64,
}

/// The connection deadlines.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadlines {
    /// Request head.
    pub header: Duration,
    /// Idle between requests (and stalled response writes).
    pub idle: Duration,
}

/// Marks a request in progress until dropped.
pub(crate) struct Busy(Arc<Timing>);

impl Timing {
    pub(crate) fn new() -> Self {
        Self {
            base: Instant::now(),
            in_flight: AtomicUsize::new(0),
            bodies_pending: AtomicUsize::new(0),
            body_unread: AtomicBool::new(false),
            served: AtomicBool::new(false),
            ready_or_idle_since: AtomicU64::new(0),
            head_started: AtomicU64::new(NONE),
            last_write: AtomicU64::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_millis()).unwrap_or(NONE - 1)
    }

    fn at(&self, ms: u64) -> Instant {
        self.base + Duration::from_millis(ms)
    }

    /// Whether a request is in progress.
    pub(crate) fn is_busy(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) > 0
    }

    /// Whether the connection may give its place to a new one at the cap: no request in
    /// progress, or one whose body is still arriving (its handler cannot have acted on it yet).
    pub(crate) fn is_evictable(&self) -> bool {
        !self.is_busy() || self.bodies_pending.load(Ordering::Acquire) > 0
    }

    /// A request body started arriving.
    pub(crate) fn body_started(&self) {
        self.bodies_pending.fetch_add(1, Ordering::AcqRel);
    }

    /// A request body was read to its end, or given up by its handler.
    pub(crate) fn body_finished(&self) {
        self.bodies_pending.fetch_sub(1, Ordering::AcqRel);
    }

    /// A request body was given up by its handler before its end.
    pub(crate) fn body_abandoned(&self) {
        self.body_unread.store(true, Ordering::Release);
    }

    /// Whether some request body was given up before its end (the client may still send it).
    pub(crate) fn left_body_unread(&self) -> bool {
        self.body_unread.load(Ordering::Acquire)
    }

    /// The connection finished its handshake: the first request head is due from now.
    pub(crate) fn ready(&self) {
        let now = self.now_ms();
        self.ready_or_idle_since.store(now, Ordering::Release);
        self.last_write.store(now, Ordering::Release);
    }

    /// hyper handed a request (its head complete) to the router.
    pub(crate) fn request_started(self: &Arc<Self>) -> Busy {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.served.store(true, Ordering::Release);
        self.head_started.store(NONE, Ordering::Release);
        Busy(self.clone())
    }

    fn read_progress(&self) {
        if self.is_busy() {
            return;
        }
        if self.head_started.load(Ordering::Acquire) == NONE {
            let now = self.now_ms();
            let _ =
                self.head_started
                    .compare_exchange(NONE, now, Ordering::AcqRel, Ordering::Acquire);
        }
    }

    fn write_progress(&self) {
        self.last_write.store(self.now_ms(), Ordering::Release);
    }

    /// When the connection must be closed, or `None` while a request is in progress.
    fn deadline(&self, d: Deadlines) -> Option<Instant> {
        if self.is_busy() {
            return None;
        }
        let head = self.head_started.load(Ordering::Acquire);
        if head != NONE {
            return Some(self.at(head) + d.header);
        }
        let since = self.ready_or_idle_since.load(Ordering::Acquire);
        if !self.served.load(Ordering::Acquire) {
            return Some(self.at(since) + d.header);
        }
        let last = since.max(self.last_write.load(Ordering::Acquire));
        Some(self.at(last) + d.idle)
    }

    /// Resolves when the connection is past its deadline.
    ///
    /// Nothing wakes this on a change: the timer fires at least every `tick` (the shortest time
    /// from an observation to the deadline it sets) and is then set to the current deadline if
    /// that comes sooner. So the first firing after any observation is no later than the
    /// deadline it set, and from there the timer is set to that deadline exactly.
    pub(crate) async fn expired(&self, d: Deadlines) {
        let tick = d.header.min(d.idle);
        let sleep = tokio::time::sleep(tick);
        tokio::pin!(sleep);
        loop {
            let now = Instant::now();
            let next = match self.deadline(d) {
                Some(at) if at <= now => return,
                Some(at) => at.min(now + tick),
                None => now + tick,
            };
            sleep.as_mut().reset(next);
            sleep.as_mut().await;
        }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let t = &self.0;
        let now = t.now_ms();
        t.ready_or_idle_since.store(now, Ordering::Release);
        t.last_write.store(now, Ordering::Release);
        t.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A connection's transport, reporting read and write progress to its [`Timing`].
pub(crate) struct TimedIo<T> {
    inner: T,
    timing: Arc<Timing>,
}

impl<T> TimedIo<T> {
    pub(crate) fn new(inner: T, timing: Arc<Timing>) -> Self {
        Self { inner, timing }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for TimedIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.timing.read_progress();
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for TimedIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.timing.write_progress();
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.timing.write_progress();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
