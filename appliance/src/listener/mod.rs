//! The accept loop both listeners share: a cap on concurrent connections, a handshake timeout,
//! request head, body and idle keep-alive timeouts, and graceful shutdown.
//!
//! A listener never runs out of descriptors: [`raise_open_files_limit`] lifts the soft limit to
//! the hard one at start, [`connection_budget`] fits the caps of both listeners under it with room
//! for the database, the HSM and the plugin workers, and [`slots`] closes anything over the cap
//! at once. Every connection is bounded in time by [`timing`], so slow or idle clients give
//! their place back.

mod percore;
mod request;
mod slots;
mod timing;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::config::ServerConfig;
use percore::Dispatch;
pub use percore::{bind_shared, serve_per_core, thread_count, Home, Local, LocalAnswer};
use request::RequestService;
use slots::{Admission, Slots, Stop};
use timing::{Deadlines, TimedIo};

/// Descriptors kept free of connections: database, HSM, plugin worker pipes, CRL files, egress.
pub const RESERVED_DESCRIPTORS: u64 = 256;

/// The limits every connection of a listener is held to.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Concurrent connections.
    pub max_connections: usize,
    /// TLS handshake (API listener).
    pub handshake: Duration,
    /// Complete request head.
    pub header: Duration,
    /// Complete request body, from its head.
    pub body: Duration,
    /// Idle keep-alive between requests.
    pub idle: Duration,
}

impl ConnectionLimits {
    /// The limits configured in `[server]`, with the cap fitted to `max_connections`.
    pub fn from_config(server: &ServerConfig, max_connections: usize) -> Self {
        Self {
            max_connections,
            handshake: Duration::from_secs(server.tls_handshake_timeout_secs),
            header: Duration::from_secs(server.header_read_timeout_secs),
            body: Duration::from_secs(server.body_read_timeout_secs),
            idle: Duration::from_secs(server.idle_timeout_secs),
        }
    }
}

/// Raises the soft open-files limit to the hard limit; returns the soft limit now in force
/// (`None` if unlimited or unknown).
pub fn raise_open_files_limit() -> Option<u64> {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let current = getrlimit(Resource::Nofile);
    if current.current != current.maximum {
        let raised = Rlimit {
            current: current.maximum,
            maximum: current.maximum,
        };
        if let Err(e) = setrlimit(Resource::Nofile, raised) {
            tracing::warn!(error = %e, "cannot raise the open-files limit");
        }
    }
    getrlimit(Resource::Nofile).current
}

/// The per-listener connection cap that fits two listeners under `open_files` descriptors with
/// [`RESERVED_DESCRIPTORS`] to spare: `configured`, or less (at least 1).
pub fn connection_budget(configured: usize, open_files: Option<u64>) -> usize {
    let Some(limit) = open_files else {
        return configured;
    };
    let per_listener = limit.saturating_sub(RESERVED_DESCRIPTORS) / 2;
    usize::try_from(per_listener)
        .unwrap_or(usize::MAX)
        .clamp(1, configured.max(1))
}

/// Tells listeners to stop accepting and to close their connections once in-flight requests are
/// answered.
#[derive(Clone)]
pub struct Shutdown(watch::Receiver<bool>);

/// The sending side of [`Shutdown`].
pub struct ShutdownTrigger(watch::Sender<bool>);

impl Shutdown {
    /// A new trigger and its signal.
    pub fn channel() -> (ShutdownTrigger, Shutdown) {
        let (tx, rx) = watch::channel(false);
        (ShutdownTrigger(tx), Shutdown(rx))
    }

    /// Resolves once shutdown is requested (never if the trigger is dropped unused).
    pub async fn requested(&mut self) {
        if self.0.wait_for(|stop| *stop).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

impl ShutdownTrigger {
    /// Requests shutdown.
    pub fn trigger(&self) {
        self.0.send_replace(true);
    }
}

/// Turns an accepted TCP stream into the connection's transport (e.g. completes TLS) and the
/// value attached to every request of that connection (e.g. the caller).
pub trait Handshake: Clone + Send + Sync + 'static {
    /// The transport after the handshake.
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    /// Inserted into every request's extensions.
    type Extension: Clone + Send + Sync + Unpin + 'static;
    /// `None` refuses the connection (the reason is logged by the implementation).
    fn handshake(
        &self,
        tcp: TcpStream,
        peer: SocketAddr,
    ) -> impl Future<Output = Option<(Self::Io, Self::Extension)>> + Send;
}

/// Plain HTTP: no handshake, nothing attached.
#[derive(Clone, Copy, Debug)]
pub struct PlainHttp;

impl Handshake for PlainHttp {
    type Io = TcpStream;
    type Extension = ();
    async fn handshake(&self, tcp: TcpStream, _peer: SocketAddr) -> Option<(TcpStream, ())> {
        Some((tcp, ()))
    }
}

/// A listening socket on `addr` whose accepted connections have `TCP_NODELAY` (Linux copies it
/// from the listening socket): a response goes out at once, with no setsockopt per connection.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let listener = TcpListener::bind(addr).await?;
    socket2::SockRef::from(&listener).set_tcp_nodelay(true)?;
    Ok(listener)
}

/// Accepts connections until `shutdown`, serving `router` on each within `limits`; then closes
/// the listening socket and returns once every connection has finished (idle ones at once,
/// busy ones after their response).
pub async fn serve<H: Handshake>(
    name: &'static str,
    listener: TcpListener,
    limits: ConnectionLimits,
    handshake: H,
    router: Router,
    shutdown: Shutdown,
) {
    let slots = Slots::new(limits.max_connections);
    accept_loop(
        name, listener, &slots, limits, handshake, router, None, shutdown,
    )
    .await;
    slots.drained().await;
}

/// Accepts on `listener` into `slots` until `shutdown`, spawning each connection on the current
/// runtime; then closes the listening socket (the caller waits for `slots` to drain).
#[allow(clippy::too_many_arguments)] // the listener's whole context, passed once
async fn accept_loop<H: Handshake>(
    name: &'static str,
    listener: TcpListener,
    slots: &std::sync::Arc<Slots>,
    limits: ConnectionLimits,
    handshake: H,
    router: Router,
    dispatch: Option<Dispatch>,
    mut shutdown: Shutdown,
) {
    // One wait for the whole loop, not one registered and dropped per accepted connection.
    let stop = shutdown.requested();
    tokio::pin!(stop);
    loop {
        let (tcp, peer) = tokio::select! {
            biased;
            () = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(listener = name, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let slot = match slots.admit() {
            Admission::Free(slot) => slot,
            Admission::Evicted(slot) => {
                tracing::debug!(listener = name, %peer, "at the connection cap: closed the oldest idle connection");
                slot
            }
            Admission::Refused => {
                tracing::debug!(listener = name, %peer, "at the connection cap, every connection busy: refused");
                continue;
            }
        };
        tokio::spawn(connection(
            name,
            tcp,
            peer,
            slot,
            limits,
            handshake.clone(),
            router.clone(),
            dispatch.clone(),
        ));
    }
    drop(listener);
    slots.drain_all();
    let open = slots.len();
    if open > 0 {
        tracing::info!(
            listener = name,
            open,
            "stopped accepting; finishing open connections"
        );
    }
}

#[allow(clippy::too_many_arguments)] // one connection's whole context, passed once
async fn connection<H: Handshake>(
    name: &'static str,
    tcp: TcpStream,
    peer: SocketAddr,
    slot: slots::Slot,
    limits: ConnectionLimits,
    handshake: H,
    router: Router,
    dispatch: Option<Dispatch>,
) {
    let (io, extension) = tokio::select! {
        // The handshake first: a plain-HTTP one is complete at once.
        biased;
        done = tokio::time::timeout(limits.handshake, handshake.handshake(tcp, peer)) => match done {
            Ok(Some(connected)) => connected,
            Ok(None) => return,
            Err(_) => {
                tracing::debug!(listener = name, %peer, "handshake timed out; closed");
                return;
            }
        },
        _ = std::future::poll_fn(|cx| slot.poll_stop(cx, false)) => return,
    };
    let timing = slot.timing().clone();
    timing.ready();
    let service = RequestService {
        router,
        extension,
        timing: timing.clone(),
        body_timeout: limits.body,
        dispatch,
    };
    let mut conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(TimedIo::new(io, timing.clone())), service);
    let deadlines = Deadlines {
        header: limits.header,
        idle: limits.idle,
    };
    let expired = timing.expired(deadlines);
    tokio::pin!(expired);
    let mut draining = false;
    loop {
        tokio::select! {
            done = std::future::poll_fn(|cx| conn.poll_without_shutdown(cx)) => {
                match done {
                    Ok(()) => {
                        let parts = conn.into_parts();
                        close(parts.io.into_inner(), parts.read_buf.is_empty() && !timing.left_body_unread()).await;
                    }
                    Err(e) => {
                        tracing::debug!(listener = name, %peer, error = %e, "connection ended with an error");
                    }
                }
                return;
            }
            () = &mut expired => {
                tracing::debug!(listener = name, %peer, "request head or idle timeout; closed");
                return;
            }
            stop = std::future::poll_fn(|cx| slot.poll_stop(cx, draining)) => match stop {
                Stop::Evicted => return,
                Stop::Drain => {
                    std::pin::Pin::new(&mut conn).graceful_shutdown();
                    draining = true;
                }
            },
        }
    }
}

/// Longest a finished connection lingers, reading what its client still sends.
const LINGER: Duration = Duration::from_secs(2);
/// Most bytes read and discarded while lingering.
const LINGER_BYTES: usize = 1 << 20;

/// Closes a finished connection: at once when `all_read` (every request read to its end) and
/// nothing more has arrived, as for a `Connection: close` client that got its answer; else
/// with a lingering close.
async fn close<T: AsyncRead + AsyncWrite + Unpin>(mut io: T, all_read: bool) {
    use futures_util::FutureExt;
    if all_read {
        let mut probe = [0u8; 1];
        // Nothing waiting (or end of stream): closing sends a FIN, not a reset that could
        // destroy the response on its way. Anything else: linger.
        match io.read(&mut probe).now_or_never() {
            None | Some(Ok(0)) | Some(Err(_)) => return,
            Some(Ok(_)) => {}
        }
    }
    linger(io).await;
}

/// Lingering close (RFC 9112 9.6): after the last response, half-close and read (bounded) what
/// the client is still sending, so an early answer (413 to an oversize body, 408) reaches it
/// instead of being destroyed by the TCP reset that closing with unread data causes.
async fn linger<T: AsyncRead + AsyncWrite + Unpin>(mut io: T) {
    if io.shutdown().await.is_err() {
        return;
    }
    // On the heap: an 8 KiB array here would be part of every connection's future, copied
    // when each connection is spawned.
    let mut buf = vec![0u8; 8192];
    let mut left = LINGER_BYTES;
    let _ = tokio::time::timeout(LINGER, async {
        while left > 0 {
            match io.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    })
    .await;
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn accepted_connections_have_nodelay_from_either_kind_of_listening_socket() {
        let single = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let (shared, shared_addr) = bind_shared("127.0.0.1:0".parse().unwrap(), 2).unwrap();
        let shared = TcpListener::from_std(shared.into_iter().next().unwrap()).unwrap();
        for (listener, addr) in [
            (&single, single.local_addr().unwrap()),
            (&shared, shared_addr),
        ] {
            let _client = TcpStream::connect(addr).await.unwrap();
            let (accepted, _) = listener.accept().await.unwrap();
            assert!(
                accepted.nodelay().unwrap(),
                "accepted from {addr} without TCP_NODELAY"
            );
        }
    }

    #[test]
    fn budget_fits_two_listeners_under_the_descriptor_limit() {
        assert_eq!(connection_budget(4096, None), 4096);
        assert_eq!(connection_budget(4096, Some(1_048_576)), 4096);
        assert_eq!(connection_budget(4096, Some(512)), 128);
        assert_eq!(connection_budget(100, Some(512)), 100);
        assert_eq!(connection_budget(4096, Some(100)), 1);
    }

    #[tokio::test]
    async fn an_early_413_reaches_a_client_still_sending_its_body() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = Router::new()
            .route(
                "/up",
                axum::routing::post(|_: axum::body::Bytes| async { "stored" }),
            )
            .layer(axum::extract::DefaultBodyLimit::max(1024));
        let long = Duration::from_secs(600);
        let limits = ConnectionLimits {
            max_connections: 8,
            handshake: long,
            header: long,
            body: long,
            idle: long,
        };
        let (trigger, shutdown) = Shutdown::channel();
        let serving = tokio::spawn(serve("test", listener, limits, PlainHttp, router, shutdown));
        let tcp = TcpStream::connect(addr).await.unwrap();
        let (mut rd, mut wr) = tcp.into_split();
        // The client keeps sending its 4 MiB body while the answer comes back.
        let writer = tokio::spawn(async move {
            let head = b"POST /up HTTP/1.1\r\nhost: t\r\ncontent-length: 4194304\r\n\r\n";
            if wr.write_all(head).await.is_err() {
                return;
            }
            let chunk = vec![b'x'; 64 * 1024];
            for _ in 0..64 {
                if wr.write_all(&chunk).await.is_err() {
                    return;
                }
            }
        });
        let mut response = Vec::new();
        let mut buf = [0u8; 4096];
        while !response.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = rd.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed before the answer: {response:?}");
            response.extend_from_slice(&buf[..n]);
        }
        let response = String::from_utf8_lossy(&response);
        assert!(response.starts_with("HTTP/1.1 413"), "{response}");
        writer.await.unwrap();
        trigger.trigger();
        serving.await.unwrap();
    }
}
