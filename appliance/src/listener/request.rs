//! The hyper service of one connection: hands each request to the router (on a listener
//! thread, to the thread's [`super::Local`] first) with the connection's extension attached, marks the connection busy while the handler runs (and evictable while
//! the request body is still arriving), and answers 408 if the
//! request body is not complete within the body timeout (the handler, which cannot have acted
//! on a body it has not finished reading, is dropped).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::http::{header, HeaderValue, Request, Response, StatusCode};
use axum::response::IntoResponse;
use axum::Router;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tower::ServiceExt;

use super::percore::{Dispatch, LocalAnswer};
use super::timing::Timing;
use crate::api::ApiError;

/// Serves one connection's requests through `router`.
#[derive(Clone)]
pub(crate) struct RequestService<E> {
    pub(crate) router: Router,
    pub(crate) extension: E,
    pub(crate) timing: Arc<Timing>,
    pub(crate) body_timeout: Duration,
    /// On a listener thread: which requests run here, and the main runtime for the others.
    pub(crate) dispatch: Option<Dispatch>,
}

impl<E: Clone + Send + Sync + 'static> hyper::service::Service<Request<Incoming>>
    for RequestService<E>
{
    type Response = Response<axum::body::Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn call(&self, mut req: Request<Incoming>) -> Self::Future {
        let busy = self.timing.request_started();
        req.extensions_mut().insert(self.extension.clone());
        let empty = req.body().is_end_stream();
        let complete = Arc::new(AtomicBool::new(empty));
        if !empty {
            self.timing.body_started();
        }
        let req = req.map(|body| {
            axum::body::Body::new(WatchedBody {
                inner: body,
                complete: complete.clone(),
                pending: (!empty).then(|| self.timing.clone()),
            })
        });
        let handler = self.handler(req);
        if empty {
            // No body to wait for (GET, HEAD): no timer to arm and cancel per request.
            return Box::pin(async move {
                let _busy = busy;
                Ok(respond(handler).await)
            });
        }
        let deadline = tokio::time::Instant::now() + self.body_timeout;
        Box::pin(async move {
            let _busy = busy;
            tokio::select! {
                r = respond(handler) => Ok(r),
                () = body_overdue(deadline, &complete) => Ok(request_timeout()),
            }
        })
    }
}

/// Where a request is answered.
#[allow(clippy::large_enum_variant)] // built in place inside the request's boxed future
enum Handler {
    /// By the router on this thread (the single-runtime listeners).
    Router(tower::util::Oneshot<Router, Request<axum::body::Body>>),
    /// By the listener thread's [`super::Local`].
    Local(LocalAnswer),
    /// By the router on the main runtime.
    Main(Pin<Box<dyn Future<Output = Response<axum::body::Body>> + Send>>),
}

impl<E> RequestService<E> {
    /// The answer to `req`: the router's on this thread (the single-runtime listeners); on a
    /// listener thread, the thread's own [`super::Local`] answer or else the router's on the
    /// main runtime.
    fn handler(&self, req: Request<axum::body::Body>) -> Handler {
        let Some(dispatch) = &self.dispatch else {
            return Handler::Router(self.router.clone().oneshot(req));
        };
        let req = match dispatch.local.answer(req, &dispatch.home) {
            Ok(answer) => return Handler::Local(answer),
            Err(req) => req,
        };
        let (home, router) = (dispatch.home.clone(), self.router.clone());
        Handler::Main(Box::pin(async move {
            match home.run(router.oneshot(req)).await {
                Ok(Ok(answered)) => answered,
                Ok(Err(never)) => match never {},
                Err(e) => {
                    tracing::error!(error = %e, "request handler failed");
                    ApiError::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "internal",
                        "the request could not be completed",
                    )
                    .into_response()
                }
            }
        }))
    }
}

/// The response of a [`Handler`].
async fn respond(handler: Handler) -> Response<axum::body::Body> {
    match handler {
        Handler::Router(routed) => match routed.await {
            Ok(r) => r,
            Err(never) => match never {},
        },
        Handler::Local(local) => local.await,
        Handler::Main(main) => main.await,
    }
}

/// Resolves at `deadline` if the body is not complete by then; never otherwise.
async fn body_overdue(deadline: tokio::time::Instant, complete: &AtomicBool) {
    tokio::time::sleep_until(deadline).await;
    if complete.load(Ordering::Acquire) {
        std::future::pending::<()>().await;
    }
}

fn request_timeout() -> Response<axum::body::Body> {
    let mut resp = ApiError::new(
        StatusCode::REQUEST_TIMEOUT,
        "request_timeout",
        "the request body was not received in time",
    )
    .into_response();
    resp.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

/// A request body that records when it has been read to the end (or dropped).
struct WatchedBody {
    inner: Incoming,
    complete: Arc<AtomicBool>,
    /// The connection to tell once the body is no longer arriving.
    pending: Option<Arc<Timing>>,
}

impl WatchedBody {
    fn finished(&mut self) {
        if let Some(timing) = self.pending.take() {
            timing.body_finished();
        }
    }
}

impl Drop for WatchedBody {
    fn drop(&mut self) {
        if let Some(timing) = &self.pending {
            // Dropped before its end: the rest may still be on its way (see `linger`).
            timing.body_abandoned();
        }
        self.finished();
    }
}

impl Body for WatchedBody {
    type Data = hyper::body::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(r, Poll::Ready(None)) || self.inner.is_end_stream() {
            self.complete.store(true, Ordering::Release);
            self.finished();
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
