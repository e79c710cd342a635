//! The public listener's threading (nginx's model): one current-thread runtime per thread, all
//! accepting from one listening socket (a descriptor each), so a connection is accepted, served
//! and closed on one thread with no hand-off between workers, and whichever thread is free takes
//! the next connection. The socket has no `SO_REUSEPORT`: no other process can bind the port
//! beside it and take a share of the connections.
//!
//! The connection cap is one [`Slots`] shared by every thread (not a per-thread share), so the
//! cap and the eviction order are the listener's, whatever thread a connection landed on.
//! Requests the caller's [`Local`] answers (OCSP) are answered on the connection's thread ahead
//! of the router; every other request goes through the router on the process's main runtime,
//! and so does anything a local answer hands to [`Home::run`] (database, HSM), so no database
//! connection or HSM session is ever tied to a listener thread's runtime.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, Response};
use axum::Router;
use tokio::net::TcpListener;
use tokio::runtime::Handle;
use tokio::sync::{oneshot, watch};
use tokio::task::{JoinError, JoinHandle};

use super::slots::Slots;
use super::{accept_loop, ConnectionLimits, Handshake, Shutdown};

/// A request answered on the connection's thread (see [`Local`]).
pub type LocalAnswer = Pin<Box<dyn Future<Output = Response<Body>> + Send>>;

/// The requests a listener thread answers itself, ahead of the router.
pub trait Local: Send + Sync + 'static {
    /// The answer to `req` if it is one of these requests (work needing the database or the
    /// HSM goes to `home`), else `req` given back for the router, on the main runtime.
    #[allow(clippy::result_large_err)] // the request handed back as is: boxing it costs an allocation per request
    fn answer(&self, req: Request<Body>, home: &Home) -> Result<LocalAnswer, Request<Body>>;
}

/// The main runtime, attached to every request served on a listener thread: work that opens
/// database connections or HSM sessions goes there through [`Home::run`].
#[derive(Clone, Debug)]
pub struct Home(Handle);

impl Home {
    /// Runs `fut` on the main runtime and waits for it; dropping the returned future cancels it.
    pub async fn run<F>(&self, fut: F) -> Result<F::Output, JoinError>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let mut task = AbortOnDrop(self.0.spawn(fut));
        (&mut task.0).await
    }
}

/// Cancels a task when the future waiting for it is dropped (a body timeout drops the handler).
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Where a listener thread sends the requests it does not run itself.
#[derive(Clone)]
pub(crate) struct Dispatch {
    pub(crate) home: Home,
    pub(crate) local: Arc<dyn Local>,
}

/// The number of listener threads for `configured` (0: one per available core).
pub fn thread_count(configured: usize) -> usize {
    if configured > 0 {
        return configured;
    }
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

/// `n` (at least 1) descriptors of one listening socket bound to `addr`, one per thread: every
/// thread waits on the same accept queue, so an idle thread takes the next connection while a
/// busy one is still serving (with a socket each, the kernel would hash connections to a thread
/// whether or not it is free). Returns the descriptors and the bound address.
pub fn bind_shared(
    addr: SocketAddr,
    n: usize,
) -> io::Result<(Vec<std::net::TcpListener>, SocketAddr)> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    // Inherited by every accepted connection (see `listener::bind`).
    socket.set_tcp_nodelay(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    let first: std::net::TcpListener = socket.into();
    let bound = first.local_addr()?;
    let mut all = Vec::with_capacity(n.max(1));
    for _ in 1..n.max(1) {
        all.push(first.try_clone()?);
    }
    all.push(first);
    Ok((all, bound))
}

/// Serves `local`, then `router`, on `listeners`, one thread and current-thread runtime each,
/// sharing one connection cap; requests `local` gives back go through `router` on the calling
/// (main) runtime.
/// On `shutdown` every thread stops accepting and finishes its connections; returns when all
/// threads have drained. Dropping the returned future stops the threads at once (their
/// connections are dropped).
pub async fn serve_per_core<H: Handshake>(
    name: &'static str,
    listeners: Vec<std::net::TcpListener>,
    limits: ConnectionLimits,
    handshake: H,
    router: Router,
    local: Arc<dyn Local>,
    shutdown: Shutdown,
) {
    let slots = Slots::new(limits.max_connections);
    let dispatch = Dispatch {
        home: Home(Handle::current()),
        local,
    };
    // Never sent: dropped with this future, which ends every thread's runtime.
    let (_abort, aborted) = watch::channel(());
    let mut finished = Vec::new();
    for (i, std_listener) in listeners.into_iter().enumerate() {
        let (done, finished_rx) = oneshot::channel::<()>();
        let (slots, handshake, router, shutdown, dispatch, mut aborted) = (
            slots.clone(),
            handshake.clone(),
            router.clone(),
            shutdown.clone(),
            dispatch.clone(),
            aborted.clone(),
        );
        let thread = std::thread::Builder::new()
            .name(format!("{name}-{i}"))
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        tracing::error!(listener = name, error = %e, "listener thread: no runtime");
                        return;
                    }
                };
                runtime.block_on(async move {
                    let listener = match TcpListener::from_std(std_listener) {
                        Ok(l) => l,
                        Err(e) => {
                            tracing::error!(listener = name, error = %e, "listener thread: socket unusable");
                            return;
                        }
                    };
                    let serving = async {
                        accept_loop(
                            name,
                            listener,
                            &slots,
                            limits,
                            handshake,
                            router,
                            Some(dispatch),
                            shutdown,
                        )
                        .await;
                        // The cap is shared: drained means every thread's connections are done.
                        slots.drained().await;
                    };
                    tokio::select! {
                        () = serving => {}
                        _ = aborted.changed() => {}
                    }
                });
                drop(runtime);
                let _ = done.send(());
            });
        match thread {
            Ok(_) => finished.push(finished_rx),
            Err(e) => {
                tracing::error!(listener = name, error = %e, "cannot start a listener thread")
            }
        }
    }
    for thread in finished {
        // An error means the thread ended without reporting (its runtime failed): done too.
        let _ = thread.await;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    use tokio::sync::{watch, Semaphore};

    use super::*;

    /// Counts itself as started, waits for a permit, and answers with its thread's name.
    async fn hold(started: watch::Sender<usize>, release: Arc<Semaphore>) -> String {
        started.send_modify(|n| *n += 1);
        let _permit = release.acquire().await.expect("semaphore open");
        std::thread::current().name().unwrap_or("").to_owned()
    }

    /// Answers `/local/hold` on the listener threads.
    struct LocalHold {
        started: watch::Sender<usize>,
        release: Arc<Semaphore>,
    }

    impl Local for LocalHold {
        fn answer(&self, req: Request<Body>, _: &Home) -> Result<LocalAnswer, Request<Body>> {
            if req.uri().path() != "/local/hold" {
                return Err(req);
            }
            let held = hold(self.started.clone(), self.release.clone());
            Ok(Box::pin(
                async move { Response::new(Body::from(held.await)) },
            ))
        }
    }

    /// The `/main/hold` route (and the local answers) for a listener whose handlers count
    /// themselves as started, wait for a permit, and answer with their thread's name.
    fn holding(started: watch::Sender<usize>, release: Arc<Semaphore>) -> (Router, Arc<dyn Local>) {
        let local = Arc::new(LocalHold {
            started: started.clone(),
            release: release.clone(),
        });
        let router = Router::new().route(
            "/main/hold",
            get(move || hold(started.clone(), release.clone())),
        );
        (router, local)
    }

    fn limits(max_connections: usize) -> ConnectionLimits {
        let long = Duration::from_secs(600);
        ConnectionLimits {
            max_connections,
            handshake: long,
            header: long,
            body: long,
            idle: long,
        }
    }

    async fn send(addr: SocketAddr, path: &str) -> TcpStream {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        // A connection over the cap may be reset before the request is written.
        let _ = tcp
            .write_all(format!("GET {path} HTTP/1.1\r\nhost: t\r\n\r\n").as_bytes())
            .await;
        tcp
    }

    /// Reads until the peer closes; returns everything read (empty when closed at once).
    async fn read_to_close(mut tcp: TcpStream) -> String {
        let mut out = Vec::new();
        let _ = tcp.read_to_end(&mut out).await;
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Reads one response whose body is a thread name (a short, unchunked body).
    async fn read_response(tcp: &mut TcpStream) -> String {
        let mut out = Vec::new();
        let mut buf = [0u8; 1024];
        loop {
            let n = tcp.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed before a response: {out:?}");
            out.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&out).into_owned();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length: ")
                            .map(|v| v.trim().parse().unwrap())
                    })
                    .unwrap();
                if body.len() >= len {
                    return text;
                }
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_connection_cap_holds_across_threads_and_shutdown_drains_every_thread() {
        let (listeners, addr) = bind_shared("127.0.0.1:0".parse().unwrap(), 4).unwrap();
        assert_eq!(listeners.len(), 4);
        let (started_tx, mut started) = watch::channel(0usize);
        let release = Arc::new(Semaphore::new(0));
        let (trigger, shutdown) = Shutdown::channel();
        let (router, local) = holding(started_tx, release.clone());
        let serving = tokio::spawn(serve_per_core(
            "test",
            listeners,
            limits(6),
            super::super::PlainHttp,
            router,
            local,
            shutdown,
        ));
        // Six busy connections (the cap), each admitted before the next is opened, taken by
        // whichever of the four threads wakes first; half run here, half on the main runtime.
        let mut held = Vec::new();
        for i in 0..6 {
            let path = if i % 2 == 0 {
                "/local/hold"
            } else {
                "/main/hold"
            };
            held.push((path, send(addr, path).await));
            started.wait_for(|n| *n == i + 1).await.unwrap();
        }
        // Over the cap with every connection busy: each newcomer is closed unanswered, on
        // whatever thread it landed.
        for _ in 0..12 {
            let refused = read_to_close(send(addr, "/local/hold").await).await;
            assert_eq!(refused, "", "a connection over the cap was served");
        }
        assert_eq!(*started.borrow(), 6);
        // Shutdown: every thread stops accepting; the six in-flight requests still finish.
        trigger.trigger();
        assert!(!serving.is_finished(), "returned with requests in flight");
        release.add_permits(6);
        for (path, mut tcp) in held {
            let response = read_response(&mut tcp).await;
            assert!(response.starts_with("HTTP/1.1 200"), "{response}");
            let thread = response.split("\r\n\r\n").nth(1).unwrap();
            if path.starts_with("/local/") {
                assert!(
                    thread.starts_with("test-"),
                    "local request ran on {thread:?}"
                );
            } else {
                assert!(
                    !thread.starts_with("test-"),
                    "main request ran on {thread:?}"
                );
            }
        }
        serving.await.unwrap();
        assert!(
            TcpStream::connect(addr).await.is_err(),
            "still accepting after shutdown"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dropping_the_listener_stops_its_threads() {
        let (listeners, addr) = bind_shared("127.0.0.1:0".parse().unwrap(), 2).unwrap();
        let (started_tx, mut started) = watch::channel(0usize);
        let release = Arc::new(Semaphore::new(0));
        let (_trigger, shutdown) = Shutdown::channel();
        let (router, local) = holding(started_tx, release);
        let serving = tokio::spawn(serve_per_core(
            "test",
            listeners,
            limits(8),
            super::super::PlainHttp,
            router,
            local,
            shutdown,
        ));
        let held = send(addr, "/local/hold").await;
        started.wait_for(|n| *n == 1).await.unwrap();
        // The grace period is over: the listener is dropped with a request still in flight,
        // and its connection is closed unanswered.
        serving.abort();
        assert_eq!(read_to_close(held).await, "");
    }
}
