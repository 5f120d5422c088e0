//! Each request through the edge: its body is cut when it sends nothing for
//! `body_read_timeout` (tower-http's `TimeoutBody`), and it must be answered within
//! `request_timeout`. Either way the answer is a 408 in the shape of the API the path
//! belongs to (problem+json under `/admin/`, `{"ok": false}` under `/api/`), with
//! `Connection: close`, since the rest of the body is not read.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::http::{header, HeaderValue, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use tower_http::timeout::{TimeoutBody, TimeoutError};

use super::conn::{Busy, ConnState};
use super::Limits;
use crate::error::Problem;

/// The tower service hyper calls for each request of one connection.
#[derive(Clone)]
pub struct EdgeService {
    router: Router,
    limits: Arc<Limits>,
    conn: Arc<ConnState>,
}

impl EdgeService {
    pub fn new(router: Router, limits: Arc<Limits>, conn: Arc<ConnState>) -> EdgeService {
        EdgeService {
            router,
            limits,
            conn,
        }
    }
}

impl tower::Service<Request<Incoming>> for EdgeService {
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Incoming>) -> Self::Future {
        let busy = self.conn.begin_request();
        let stalled = Arc::new(AtomicBool::new(false));
        let api = Api::of(req.uri().path());
        let body_timeout = self.limits.body_read_timeout;
        let req = req.map(|b| StallWatch {
            inner: Box::pin(TimeoutBody::new(body_timeout, b)),
            stalled: stalled.clone(),
        });
        let mut router = self.router.clone();
        let deadline = self.limits.request_timeout;
        Box::pin(async move {
            let answered =
                tokio::time::timeout(deadline, tower::Service::call(&mut router, req)).await;
            let res = match answered {
                Ok(Ok(res)) if !stalled.load(Ordering::Acquire) => res,
                Ok(Ok(_)) => timed_out(api, Why::Body),
                Ok(Err(never)) => match never {},
                Err(_) => timed_out(api, Why::Request),
            };
            Ok(res.map(|inner| Body::new(Finishing { inner, _busy: busy })))
        })
    }
}

/// Which API a path belongs to, for the shape of an error.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Api {
    Web,
    Operator,
    Other,
}

impl Api {
    fn of(path: &str) -> Api {
        if path.starts_with("/api/") {
            Api::Web
        } else if path.starts_with("/admin/") {
            Api::Operator
        } else {
            Api::Other
        }
    }
}

#[derive(Clone, Copy)]
enum Why {
    Body,
    Request,
}

fn timed_out(api: Api, why: Why) -> Response {
    let (code, detail) = match why {
        Why::Body => (
            "body_read_timeout",
            "the request body stopped arriving (server.body_read_timeout)",
        ),
        Why::Request => (
            "request_timeout",
            "the request was not answered within server.request_timeout",
        ),
    };
    metrics::counter!("tidings_http_timeouts_total", "kind" => code).increment(1);
    let mut res = match api {
        Api::Web => (
            StatusCode::REQUEST_TIMEOUT,
            axum::Json(serde_json::json!({"ok": false, "error": code})),
        )
            .into_response(),
        Api::Operator => Problem::new(StatusCode::REQUEST_TIMEOUT, code, detail).into_response(),
        Api::Other => (StatusCode::REQUEST_TIMEOUT, detail).into_response(),
    };
    res.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    res
}

/// A request body that notes whether it was cut for stalling.
struct StallWatch {
    inner: Pin<Box<TimeoutBody<Incoming>>>,
    stalled: Arc<AtomicBool>,
}

impl HttpBody for StallWatch {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let r = self.inner.as_mut().poll_frame(cx);
        if let Poll::Ready(Some(Err(e))) = &r {
            if e.is::<TimeoutError>() {
                self.stalled.store(true, Ordering::Release);
            }
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

/// A response body that keeps its connection busy (not idle) until it is written.
struct Finishing {
    inner: Body,
    _busy: Busy,
}

impl HttpBody for Finishing {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timeout_answers_in_the_shape_of_its_api() {
        assert_eq!(Api::of("/api/auth.test"), Api::Web);
        assert_eq!(Api::of("/admin/v1/apps"), Api::Operator);
        assert_eq!(Api::of("/ui/login"), Api::Other);
        let r = timed_out(Api::Operator, Why::Body);
        assert_eq!(r.status(), StatusCode::REQUEST_TIMEOUT);
        assert_eq!(r.headers()[header::CONNECTION], "close");
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            "application/problem+json"
        );
    }
}
