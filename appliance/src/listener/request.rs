//! The hyper service of one connection: hands each request to the router with the connection's
//! extension attached, marks the connection busy while the handler runs (and evictable while
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

use super::percore::Dispatch;
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
                handler.await
            });
        }
        let deadline = tokio::time::Instant::now() + self.body_timeout;
        Box::pin(async move {
            let _busy = busy;
            tokio::select! {
                r = handler => r,
                () = body_overdue(deadline, &complete) => Ok(request_timeout()),
            }
        })
    }
}

/// A request answered on this thread (the router) or on the main runtime (a boxed task).
type Handler = futures_util::future::Either<
    tower::util::Oneshot<Router, Request<axum::body::Body>>,
    Pin<Box<dyn Future<Output = Result<Response<axum::body::Body>, Infallible>> + Send>>,
>;

impl<E> RequestService<E> {
    /// The router's answer to `req`: on this thread, or on the main runtime for a request a
    /// listener thread does not run itself.
    fn handler(&self, mut req: Request<axum::body::Body>) -> Handler {
        use futures_util::future::Either;
        let router = self.router.clone();
        let Some(dispatch) = &self.dispatch else {
            return Either::Left(router.oneshot(req));
        };
        if dispatch.local(req.method(), req.uri()) {
            req.extensions_mut().insert(dispatch.home.clone());
            return Either::Left(router.oneshot(req));
        }
        let home = dispatch.home.clone();
        Either::Right(Box::pin(async move {
            match home.run(router.oneshot(req)).await {
                Ok(answered) => answered,
                Err(e) => {
                    tracing::error!(error = %e, "request handler failed");
                    Ok(ApiError::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "internal",
                        "the request could not be completed",
                    )
                    .into_response())
                }
            }
        }))
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
