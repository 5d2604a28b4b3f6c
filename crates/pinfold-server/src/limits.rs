//! Limits against hostile or broken clients (issue 6, item 5), as layers in front of the auth
//! middleware, each answered in the format of the surface the request was for (OCI envelope
//! under `/v2/`, `{"error":..}` under `/api/v1/`, Artifactory's under `/apt/`):
//!
//! - a request head over `max_header_bytes` → 431;
//! - more requests from one client address than its token bucket holds → 429 with
//!   `Retry-After` (`rate_limit_per_second`, `rate_limit_burst`);
//! - a body that sends nothing for `body_idle_timeout_seconds` while a handler waits for it →
//!   408; the handler sees the body fail, which the store treats like a dropped connection
//!   (the chunk is rolled back, the upload stays resumable).
//!
//! The connection-level limits (header read timeout, hyper's own head buffer) are set in
//! [`crate::listen`]; the manifest (4 MiB) and blob (`max_blob_bytes`) size limits sit with
//! the handlers that read those bodies.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use http_body::{Frame, SizeHint};

use crate::api::error::ApiError;
use crate::apt::error::AptError;
use crate::auth::need::{need, Surface};
use crate::v2::error::{ErrorCode, OciError};
use crate::ServerConfig;

/// The request limits of `[server]`, shared by the layers below.
#[derive(Clone, Debug)]
pub struct Limits {
    max_header_bytes: usize,
    body_idle_timeout: Duration,
    rate: Option<Arc<DefaultKeyedRateLimiter<IpAddr>>>,
}

/// How often clients that have not been seen for a while are forgotten by the rate limiter.
const RATE_LIMITER_SWEEP: Duration = Duration::from_secs(60);

impl Limits {
    /// The limits `config` sets.
    pub fn new(config: &ServerConfig) -> Limits {
        let rate = NonZeroU32::new(config.rate_limit_per_second).map(|per_second| {
            let burst = NonZeroU32::new(config.rate_limit_burst)
                .unwrap_or_else(|| per_second.saturating_mul(NonZeroU32::MIN.saturating_add(1)));
            Arc::new(RateLimiter::keyed(
                Quota::per_second(per_second).allow_burst(burst),
            ))
        });
        Limits {
            max_header_bytes: config.max_header_bytes,
            body_idle_timeout: Duration::from_secs(config.body_idle_timeout_seconds.max(1)),
            rate,
        }
    }

    /// Forgets, every minute, the clients whose bucket has refilled, so that the limiter's
    /// map holds only clients seen recently. Ends when `self` is the last holder of the map.
    pub fn spawn_sweeper(&self) {
        let Some(rate) = self.rate.as_ref().map(Arc::downgrade) else {
            return;
        };
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(RATE_LIMITER_SWEEP);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(rate) = rate.upgrade() else { break };
                rate.retain_recent();
                rate.shrink_to_fit();
            }
        });
    }
}

/// A limit's answer in the format of the surface `request` is for.
fn refuse(request: &Request, code: ErrorCode, detail: String) -> Response {
    let surface = need(request.method(), request.uri()).surface;
    let status = code_status(code);
    match surface {
        Surface::V2 => OciError::new(code)
            .detail(detail)
            .for_head(request.method() == Method::HEAD)
            .into_response(),
        Surface::Api => ApiError::with_status(status, code.as_str(), detail).into_response(),
        Surface::Apt => AptError::with_status(status, detail).into_response(),
    }
}

fn code_status(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
        ErrorCode::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        _ => StatusCode::BAD_REQUEST,
    }
}

/// 431 when the request line and headers together exceed `max_header_bytes`.
pub async fn header_size(State(limits): State<Limits>, request: Request, next: Next) -> Response {
    // As sent: `NAME: VALUE\r\n` per header, plus the request target (no allocation: this
    // runs on every request).
    let uri = request.uri();
    let target = uri.path_and_query().map_or(0, |p| p.as_str().len())
        + uri.authority().map_or(0, |a| a.as_str().len());
    let size = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum::<usize>()
        + target;
    if size > limits.max_header_bytes {
        let detail = format!(
            "the request head is {size} bytes; at most {} are accepted ([server] max_header_bytes)",
            limits.max_header_bytes
        );
        let mut response = refuse(&request, ErrorCode::HeadersTooLarge, detail);
        // What follows the head cannot be trusted to be a body of the right length.
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return response;
    }
    next.run(request).await
}

/// 429 with `Retry-After` when the client's address has used up its bucket. Requests without
/// a peer address (tests driving the router in-process) are not limited.
pub async fn rate_limit(State(limits): State<Limits>, request: Request, next: Next) -> Response {
    let Some(rate) = &limits.rate else {
        return next.run(request).await;
    };
    let Some(ip) = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
    else {
        return next.run(request).await;
    };
    match rate.check_key(&ip) {
        Ok(()) => next.run(request).await,
        Err(not_until) => {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            // Whole seconds, rounded up: a client retrying after Retry-After is let in.
            let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            let seconds = seconds.max(1);
            tracing::debug!(client = %ip, seconds, "rate limited");
            let detail =
                format!("more requests than [server] rate_limit_per_second allows from {ip}; retry in {seconds} s");
            let mut response = refuse(&request, ErrorCode::TooManyRequests, detail);
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
            response
        }
    }
}

/// 408 when the request body stalled for longer than `body_idle_timeout_seconds` while the
/// handler waited for it (whatever the handler answered when its body failed).
pub async fn body_idle_timeout(
    State(limits): State<Limits>,
    request: Request,
    next: Next,
) -> Response {
    // GET and HEAD without a body (the pull path) skip the wrapper.
    if http_body::Body::size_hint(request.body()).exact() == Some(0) {
        return next.run(request).await;
    }
    let stalled = Arc::new(AtomicBool::new(false));
    let idle = limits.body_idle_timeout;
    let method = request.method().clone();
    let uri = request.uri().clone();
    let request = request.map(|body| Body::new(IdleTimeoutBody::new(body, idle, stalled.clone())));
    let response = next.run(request).await;
    if !stalled.load(Ordering::Acquire) {
        return response;
    }
    tracing::info!(%method, %uri, ?idle, "request body stalled; answering 408");
    let mut probe = Request::new(Body::empty());
    *probe.method_mut() = method;
    *probe.uri_mut() = uri;
    let detail = format!(
        "no request body data for {} s ([server] body_idle_timeout_seconds); nothing of this request was kept",
        idle.as_secs()
    );
    let mut response = refuse(&probe, ErrorCode::RequestTimeout, detail);
    // The rest of the body may still arrive; it must not be read as the next request.
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// Why a body failed: it sent nothing for the idle timeout.
#[derive(Debug, thiserror::Error)]
#[error("request body stalled: nothing received for {0:?}")]
pub struct BodyStalled(Duration);

/// A request body that fails when its client sends nothing for `idle` while it is being read.
/// The clock runs only while a reader waits, so a handler that reads the body late (after a
/// lock or a database call) is not charged for its own delay.
struct IdleTimeoutBody {
    inner: Body,
    idle: Duration,
    /// Armed while a reader waits for the next frame.
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    stalled: Arc<AtomicBool>,
}

impl IdleTimeoutBody {
    fn new(inner: Body, idle: Duration, stalled: Arc<AtomicBool>) -> IdleTimeoutBody {
        IdleTimeoutBody {
            inner,
            idle,
            deadline: None,
            stalled,
        }
    }
}

impl http_body::Body for IdleTimeoutBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            this.deadline = None;
            return Poll::Ready(frame);
        }
        let idle = this.idle;
        let deadline = this
            .deadline
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
        match deadline.as_mut().poll(cx) {
            Poll::Ready(()) => {
                this.deadline = None;
                this.stalled.store(true, Ordering::Release);
                Poll::Ready(Some(Err(axum::Error::new(BodyStalled(idle)))))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
