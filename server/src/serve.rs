//! The accept loop and the router layers that bound what a client can hold.
//!
//! axum's own `serve` has no connection limit, no header read timeout and
//! no idle timeout: a few thousand half-sent requests filled the file
//! descriptor table and every client, `/healthz` included, timed out. Here
//! each connection takes a permit (none left: a canned 503 and close), hyper
//! closes a connection whose request head is not in after
//! `header_read_timeout_ms`, and a watchdog closes one that has had no
//! request in flight and no byte either way for `idle_timeout_ms`.
//!
//! A listener given a certificate speaks TLS: the handshake runs in the
//! connection's own task, under the header read timeout, and holds a
//! permit like any connection (one past the limit is closed without a
//! handshake, since a 503 in plain text would mean nothing to it).
//!
//! It must not know what the router does; it only bounds clients.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::body::Bytes;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::{Next, from_fn, map_response};
use axum::response::{IntoResponse, Response};
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;
use tower_http::catch_panic::CatchPanicLayer;

use crate::errors::{json_errors, panic_response, raw_status_response, status_response};
use crate::limits::HttpLimits;
use crate::tls::Listener;

/// How long connections may take to finish once shutdown began.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Requests one HTTP/2 connection may have open at once (hyper's default
/// is 200).
const MAX_STREAMS_PER_CONNECTION: u32 = 32;
/// How long a refused connection gets to take its 503.
const REFUSAL_WRITE_TIMEOUT: Duration = Duration::from_secs(1);

/// Wraps a daemon's router with the per-request bounds: the URI length
/// limit, the body read timeout, panic containment and JSON errors. Call it
/// on the whole router, after its routes and fallback.
pub fn harden(router: Router, limits: &HttpLimits) -> Router {
    let max_uri_bytes = limits.max_uri_bytes;
    let body_read_timeout = limits.body_read_timeout();
    router
        .layer(from_fn(move |request: Request, next: Next| {
            limit_body_time(body_read_timeout, request, next)
        }))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(from_fn(move |request: Request, next: Next| {
            limit_uri(max_uri_bytes, request, next)
        }))
        .layer(map_response(json_errors))
}

async fn limit_uri(max_uri_bytes: usize, request: Request, next: Next) -> Response {
    let target = request
        .uri()
        .path_and_query()
        .map_or(0, |target| target.as_str().len());
    if target > max_uri_bytes {
        return status_response(
            StatusCode::URI_TOO_LONG,
            format!("the request target is {target} bytes, the limit is {max_uri_bytes}"),
        );
    }
    next.run(request).await
}

/// A body not wholly in `timeout` after the request head fails the read,
/// and the request is answered 408 whatever the handler made of the failed
/// read. The deadline is fixed when the head arrives: a client that sends a
/// byte now and then does not move it.
async fn limit_body_time(timeout: Duration, request: Request, next: Next) -> Response {
    if request.body().is_end_stream() {
        // No body to wait for (most GETs): no timer either.
        return next.run(request).await;
    }
    let timed_out = Arc::new(AtomicBool::new(false));
    let flag = timed_out.clone();
    let request = request.map(|body| {
        Body::new(DeadlineBody {
            inner: body,
            deadline: Box::pin(tokio::time::sleep(timeout)),
            timed_out: flag,
        })
    });
    let response = next.run(request).await;
    if timed_out.load(Ordering::Relaxed) {
        return status_response(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the request body did not arrive within {} ms",
                timeout.as_millis()
            ),
        );
    }
    response
}

/// A request body that fails once its deadline has passed.
struct DeadlineBody {
    inner: Body,
    deadline: Pin<Box<tokio::time::Sleep>>,
    timed_out: Arc<AtomicBool>,
}

impl HttpBody for DeadlineBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        if self.deadline.as_mut().poll(cx).is_ready() {
            self.timed_out.store(true, Ordering::Relaxed);
            let late = io::Error::new(io::ErrorKind::TimedOut, "the request body came too late");
            return Poll::Ready(Some(Err(axum::Error::new(late))));
        }
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Serves `router` on `listener` within `limits` until `shutdown`
/// completes, then lets open connections finish (at most ten seconds).
/// A listener with TLS files reads them first: one that cannot be read is
/// an `InvalidInput` error before anything is served.
pub async fn serve(
    listener: impl Into<Listener>,
    router: Router,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let Listener { tcp: listener, tls } = listener.into();
    let tls = tls
        .map(|files| files.acceptor())
        .transpose()
        .map_err(|error| io::Error::new(io::ErrorKind::InvalidInput, error))?;
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout())
        .max_buf_size(limits.max_header_bytes.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(MAX_STREAMS_PER_CONNECTION)
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
    let builder = Arc::new(builder);
    let (stop, stopping) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut accept_errors = AcceptErrors::default();
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(error) => {
                    accept_errors.wait(&error).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        while connections.try_join_next().is_some() {}
        match permits.clone().try_acquire_owned() {
            Ok(permit) => {
                let connection = Connection {
                    builder: builder.clone(),
                    tls: tls.clone(),
                    handshake_timeout: limits.header_read_timeout(),
                    router: router.clone(),
                    idle_timeout: limits.idle_timeout(),
                    max_age: limits.max_connection_age(),
                    stopping: stopping.clone(),
                    _permit: permit,
                };
                connections.spawn(connection.run(stream));
            }
            Err(_) if tls.is_some() => drop(stream),
            Err(_) => {
                connections.spawn(refuse(stream));
            }
        }
    }
    drop(listener);
    let _ = stop.send(true);
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            open = connections.len(),
            "closing connections still open after the shutdown grace period"
        );
        connections.shutdown().await;
    }
    Ok(())
}

/// Accept errors (out of file descriptors, mostly) pause the loop briefly
/// instead of spinning, and are logged at most every few seconds.
#[derive(Debug, Default)]
struct AcceptErrors {
    last_logged: Option<Instant>,
    since_logged: u64,
}

impl AcceptErrors {
    async fn wait(&mut self, error: &io::Error) {
        self.since_logged += 1;
        if self
            .last_logged
            .is_none_or(|at| at.elapsed() >= Duration::from_secs(5))
        {
            tracing::warn!(%error, errors = self.since_logged, "accept failed; pausing");
            self.last_logged = Some(Instant::now());
            self.since_logged = 0;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One more connection than the limit: a 503 it can read, then close.
async fn refuse(mut stream: TcpStream) {
    let answer = raw_status_response(StatusCode::SERVICE_UNAVAILABLE, "too many connections");
    let _ = tokio::time::timeout(REFUSAL_WRITE_TIMEOUT, async {
        stream.write_all(&answer).await?;
        stream.shutdown().await
    })
    .await;
}

struct Connection {
    builder: Arc<auto::Builder<TokioExecutor>>,
    tls: Option<TlsAcceptor>,
    handshake_timeout: Duration,
    router: Router,
    idle_timeout: Duration,
    max_age: Duration,
    stopping: watch::Receiver<bool>,
    _permit: OwnedSemaphorePermit,
}

impl Connection {
    async fn run(self, stream: TcpStream) {
        let _ = stream.set_nodelay(true);
        let Some(acceptor) = self.tls.clone() else {
            return self.serve_stream(stream).await;
        };
        match tokio::time::timeout(self.handshake_timeout, acceptor.accept(stream)).await {
            Ok(Ok(stream)) => self.serve_stream(stream).await,
            Ok(Err(error)) => tracing::debug!(%error, "TLS handshake failed"),
            Err(_) => tracing::debug!("TLS handshake timed out"),
        }
    }

    async fn serve_stream<S>(mut self, stream: S)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let activity = Arc::new(Activity::new());
        let io = TokioIo::new(Tracked::new(stream, activity.clone()));
        let router = self.router.clone();
        let in_service = activity.clone();
        let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            // Held by the handler's future: dropped when it ends or when
            // hyper drops it (an HTTP/2 stream reset), either way.
            let in_flight = InFlight::begin(in_service.clone());
            let call = router.clone().oneshot(request.map(Body::new));
            async move {
                let response = call.await;
                drop(in_flight);
                response.map(IntoResponse::into_response)
            }
        });
        let connection = self.builder.serve_connection(io, service);
        tokio::pin!(connection);
        let mut watchdog = tokio::time::interval(
            (self.idle_timeout / 4).clamp(Duration::from_millis(10), Duration::from_secs(5)),
        );
        let mut stop_asked = *self.stopping.borrow();
        if stop_asked {
            connection.as_mut().graceful_shutdown();
        }
        // Past its age a connection winds down like at shutdown, and is
        // closed outright if it has not finished within the grace period.
        let aged = tokio::time::sleep(self.max_age);
        tokio::pin!(aged);
        let mut winding_down = false;
        loop {
            tokio::select! {
                served = connection.as_mut() => {
                    if let Err(error) = served {
                        tracing::debug!(%error, "connection ended with an error");
                    }
                    return;
                }
                changed = self.stopping.changed(), if !stop_asked => {
                    if changed.is_err() || *self.stopping.borrow() {
                        stop_asked = true;
                        connection.as_mut().graceful_shutdown();
                    }
                }
                () = &mut aged => {
                    if winding_down {
                        tracing::debug!("closing a connection that outlived its grace period");
                        return;
                    }
                    winding_down = true;
                    stop_asked = true;
                    connection.as_mut().graceful_shutdown();
                    aged.as_mut().reset(tokio::time::Instant::now() + SHUTDOWN_GRACE);
                }
                _ = watchdog.tick() => {
                    if activity.idle_for() >= self.idle_timeout {
                        tracing::debug!("closing an idle connection");
                        return;
                    }
                }
            }
        }
    }
}

/// When a connection last moved a byte, and how many requests it has in
/// its handlers now.
#[derive(Debug)]
struct Activity {
    origin: Instant,
    last_millis: AtomicU64,
    in_flight: AtomicUsize,
}

impl Activity {
    fn new() -> Self {
        Self {
            origin: Instant::now(),
            last_millis: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
        }
    }

    fn touch(&self) {
        let now = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_millis.store(now, Ordering::Relaxed);
    }

    fn begin(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.touch();
    }

    fn end(&self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.touch();
    }

    /// Zero while a request is in a handler.
    fn idle_for(&self) -> Duration {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return Duration::ZERO;
        }
        let last = Duration::from_millis(self.last_millis.load(Ordering::Relaxed));
        self.origin.elapsed().saturating_sub(last)
    }
}

/// One request in a handler, for as long as this lives.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn begin(activity: Arc<Activity>) -> Self {
        activity.begin();
        Self(activity)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.end();
    }
}

/// A socket that notes every byte it moves in its [`Activity`], and turns
/// hyper's own answers to a request it could not parse (a bodyless 400, 414
/// or 431, written before any routing) into the JSON error every other
/// answer is. Our router never writes an empty error (`json_errors` gives
/// each one a body), so an error head with `content-length: 0` is hyper's.
struct Tracked<S> {
    inner: S,
    activity: Arc<Activity>,
    /// A JSON answer standing in for hyper's, and how much of it is written.
    replacement: Option<(Vec<u8>, usize)>,
}

impl<S: AsyncWrite + Unpin> Tracked<S> {
    fn new(inner: S, activity: Arc<Activity>) -> Self {
        Self {
            inner,
            activity,
            replacement: None,
        }
    }

    /// Writes what is left of a replacement; `Ready(Ok(()))` once it is all
    /// out (or there is none).
    fn drain_replacement(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((bytes, written)) = &mut self.replacement {
            if *written == bytes.len() {
                return Poll::Ready(Ok(()));
            }
            match Pin::new(&mut self.inner).poll_write(cx, &bytes[*written..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => {
                    *written += n;
                    self.activity.touch();
                }
                Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Whether `first` starts one of hyper's bodyless error heads; if so,
    /// the JSON replacement is set up.
    fn replace_bare_error(&mut self, first: &[u8]) -> bool {
        if self.replacement.is_some() {
            return false;
        }
        let Some(status) = bare_error_status(first) else {
            return false;
        };
        self.replacement = Some((raw_status_response(status, ""), 0));
        true
    }
}

/// The status of a bodyless error head as hyper writes it for a request it
/// could not parse.
fn bare_error_status(bytes: &[u8]) -> Option<StatusCode> {
    let rest = bytes.strip_prefix(b"HTTP/1.1 ")?;
    let status = StatusCode::from_bytes(rest.get(..3)?).ok()?;
    let bare = [
        StatusCode::BAD_REQUEST,
        StatusCode::URI_TOO_LONG,
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
    ]
    .contains(&status);
    let head_end = bytes.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&bytes[..head_end]).to_ascii_lowercase();
    (bare && head.contains("\r\ncontent-length: 0")).then_some(status)
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.replace_bare_error(buf) || self.replacement.is_some() {
            // What hyper meant to write is swallowed whole: the JSON answer
            // goes out in its place.
            return self.drain_replacement(cx).map_ok(|()| buf.len());
        }
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let first = bufs
            .iter()
            .find(|b| !b.is_empty())
            .map_or(&[][..], |b| &b[..]);
        if self.replace_bare_error(first) || self.replacement.is_some() {
            let total = bufs.iter().map(|b| b.len()).sum();
            return self.drain_replacement(cx).map_ok(|()| total);
        }
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.drain_replacement(cx)?.is_pending() {
            return Poll::Pending;
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.drain_replacement(cx)?.is_pending() {
            return Poll::Pending;
        }
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_hypers_bodyless_parse_errors_are_replaced() {
        let hyper =
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: x\r\n\r\n";
        assert_eq!(
            bare_error_status(hyper),
            Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
        );
        let ours = b"HTTP/1.1 414 URI Too Long\r\ncontent-type: application/json\r\ncontent-length: 60\r\n\r\n{}";
        assert_eq!(bare_error_status(ours), None);
        let empty_ok = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(bare_error_status(empty_ok), None);
        let body_bytes = b"{\"HTTP/1.1 400 \r\ncontent-length: 0\r\n\r\n";
        assert_eq!(bare_error_status(body_bytes), None);
    }
}
