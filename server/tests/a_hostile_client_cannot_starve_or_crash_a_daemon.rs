//! A real listener on 127.0.0.1:0 served by `causeway_server::serve`, and
//! clients that misbehave: half-sent requests past the connection limit,
//! idle connections, a panicking handler, and requests axum would answer in
//! plain text.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Query};
use axum::routing::{get, post};
use causeway_server::{HttpLimits, harden, serve};
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

#[derive(Debug, Deserialize)]
struct Limit {
    #[allow(dead_code)] // only its parsing matters here
    limit: Option<usize>,
}

fn app(limits: &HttpLimits) -> Router {
    let router = Router::new()
        .route("/ok", get(|| async { "fine" }))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                "late"
            }),
        )
        .route(
            "/panic",
            get(|| async {
                if std::hint::black_box(true) {
                    panic!("handler bug at /srv/secret/path");
                }
                "unreachable"
            }),
        )
        .route("/limit", get(|Query(_): Query<Limit>| async { "limited" }))
        .route(
            "/ingest",
            post(|body: Bytes| async move { body.len().to_string() }),
        )
        .layer(DefaultBodyLimit::max(1024));
    harden(router, limits)
}

struct Running {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Running {
    async fn start(limits: HttpLimits) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let router = app(&limits);
        let task = tokio::spawn(serve(listener, router, limits, async {
            let _ = stopped.await;
        }));
        Self {
            addr,
            stop: Some(stop),
            task,
        }
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.await.unwrap().unwrap();
    }
}

/// Sends `request` whole and reads the answer until the server closes.
async fn exchange(addr: SocketAddr, request: &str) -> (u16, String, serde_json::Value) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    read_response(&mut stream).await
}

async fn read_response(
    stream: &mut (impl AsyncReadExt + Unpin),
) -> (u16, String, serde_json::Value) {
    // A server that closes with part of a huge request unread resets the
    // connection: what arrived before the reset is the answer.
    let mut raw = Vec::new();
    let mut chunk = [0u8; 8192];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk))
            .await
            .expect("the server answers and closes")
        {
            Ok(0) | Err(_) => break,
            Ok(n) => raw.extend_from_slice(&chunk[..n]),
        }
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let json = serde_json::from_str(body).unwrap_or(serde_json::Value::Null);
    (status, head.to_ascii_lowercase(), json)
}

fn get_close(target: &str) -> String {
    format!("GET {target} HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n")
}

fn small_limits() -> HttpLimits {
    HttpLimits {
        max_connections: 4,
        header_read_timeout_ms: 400,
        idle_timeout_ms: 400,
        body_read_timeout_ms: 400,
        max_uri_bytes: 2048,
        ..HttpLimits::default()
    }
}

#[tokio::test]
async fn half_sent_requests_past_the_limit_get_503_and_are_closed_by_the_header_timeout() {
    let server = Running::start(small_limits()).await;
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        stream
            .write_all(b"GET /ok HTTP/1.1\r\nhost: te")
            .await
            .unwrap();
        held.push(stream);
    }
    // Let the server take all four before the fifth arrives.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (status, head, body) = exchange(server.addr, &get_close("/ok")).await;
    assert_eq!(status, 503, "{head}");
    assert!(head.contains("retry-after: 1"), "{head}");
    assert_eq!(body["error"]["code"], "unavailable");

    // The half-sent heads time out, which frees the permits.
    for stream in &mut held {
        let mut rest = Vec::new();
        // A reset or an orderly close both end the read; a timeout here
        // means the server kept the connection.
        let _closed = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest))
            .await
            .expect("the server closes a connection whose head never came");
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (status, _, _) = exchange(server.addr, &get_close("/ok")).await;
    assert_eq!(status, 200);
    server.stop().await;
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    let server = Running::start(small_limits()).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(b"GET /ok HTTP/1.1\r\nhost: test\r\n\r\n")
        .await
        .unwrap();
    // The answer comes, then nothing: the connection stays open, idle,
    // until the server closes it.
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut raw))
        .await
        .expect("an idle connection is closed by the server")
        .unwrap();
    assert!(String::from_utf8_lossy(&raw).starts_with("HTTP/1.1 200"));
    server.stop().await;
}

#[tokio::test]
async fn a_panicking_handler_answers_500_without_its_message_and_the_server_goes_on() {
    let server = Running::start(small_limits()).await;
    for _ in 0..3 {
        let (status, head, body) = exchange(server.addr, &get_close("/panic")).await;
        assert_eq!(status, 500, "{head}");
        assert_eq!(body["error"]["code"], "internal");
        assert!(!body.to_string().contains("/srv/secret"), "{body}");
    }
    let (status, _, _) = exchange(server.addr, &get_close("/ok")).await;
    assert_eq!(status, 200);
    server.stop().await;
}

#[tokio::test]
async fn every_error_axum_would_write_as_text_is_json() {
    let server = Running::start(small_limits()).await;
    let long = format!("/ok?{}", "a".repeat(4096));
    let oversized = format!(
        "POST /ingest HTTP/1.1\r\nhost: t\r\nconnection: close\r\ncontent-length: 4096\r\n\r\n{}",
        "x".repeat(4096)
    );
    let cases: [(String, u16, &str); 6] = [
        (get_close("/nowhere"), 404, "not_found"),
        (
            "DELETE /ok HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n".to_owned(),
            405,
            "method_not_allowed",
        ),
        (get_close("/limit?limit=abc"), 400, "bad_request"),
        (get_close("/limit?limit=-1"), 400, "bad_request"),
        (get_close(&long), 414, "uri_too_long"),
        (oversized, 413, "payload_too_large"),
    ];
    for (request, status, code) in cases {
        let (got, head, body) = exchange(server.addr, &request).await;
        assert_eq!(got, status, "{head}\n{body}");
        assert!(head.contains("content-type: application/json"), "{head}");
        assert_eq!(body["error"]["code"], code, "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn requests_hyper_cannot_parse_are_answered_json_too() {
    let server = Running::start(HttpLimits::default()).await;
    let huge_target = format!("/ok?{}", "a".repeat(100 * 1024));
    let huge_header = format!(
        "GET /ok HTTP/1.1\r\nhost: t\r\nx-big: {}\r\nconnection: close\r\n\r\n",
        "b".repeat(100 * 1024)
    );
    let cases = [
        (get_close(&huge_target), 431, "headers_too_large"),
        (huge_header, 431, "headers_too_large"),
        ("NOT HTTP AT ALL\r\n\r\n".to_owned(), 400, "bad_request"),
    ];
    for (request, status, code) in cases {
        let (got, head, body) = exchange(server.addr, &request).await;
        assert_eq!(got, status, "{head}");
        assert!(head.contains("content-type: application/json"), "{head}");
        assert_eq!(body["error"]["code"], code, "{body}");
    }
    let (status, _, _) = exchange(server.addr, &get_close("/ok")).await;
    assert_eq!(status, 200);
    server.stop().await;
}

#[tokio::test]
async fn a_body_that_stops_coming_is_refused_and_the_connection_freed() {
    let server = Running::start(small_limits()).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(b"POST /ingest HTTP/1.1\r\nhost: t\r\ncontent-length: 100\r\n\r\nabc")
        .await
        .unwrap();
    let (status, head, body) = read_response(&mut stream).await;
    assert_eq!(status, 408, "{head}\n{body}");
    assert_eq!(body["error"]["code"], "request_timeout", "{body}");
    server.stop().await;
}

#[tokio::test]
async fn a_body_trickled_a_byte_at_a_time_still_meets_its_deadline() {
    let server = Running::start(small_limits()).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(b"POST /ingest HTTP/1.1\r\nhost: t\r\ncontent-length: 100\r\n\r\n")
        .await
        .unwrap();
    // One byte every 100 ms: never a gap as long as the 400 ms timeout,
    // but the whole body would take ten seconds (and then be answered 200:
    // a timeout that waited for a gap would never fire).
    let (mut reading, mut writing) = stream.into_split();
    let trickle = tokio::spawn(async move {
        for _ in 0..100 {
            if writing.write_all(b"x").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let (status, head, body) = read_response(&mut reading).await;
    trickle.abort();
    assert_eq!(status, 408, "{head}\n{body}");
    assert_eq!(body["error"]["code"], "request_timeout", "{body}");
    server.stop().await;
}

#[tokio::test]
async fn an_http2_stream_reset_mid_handler_leaves_the_connection_idle_and_closed() {
    let server = Running::start(small_limits()).await;
    let stream = TcpStream::connect(server.addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    let connection = tokio::spawn(connection);
    let request = hyper::Request::get(format!("http://{}/slow", server.addr))
        .body(http_body_util::Empty::<Bytes>::new())
        .unwrap();
    // Give up on the slow answer: the client resets the stream.
    let answer = tokio::time::timeout(Duration::from_millis(100), sender.send_request(request));
    assert!(
        answer.await.is_err(),
        "the slow handler has not answered yet"
    );
    // Nothing in flight any more: the idle timeout (400 ms) closes it.
    tokio::time::timeout(Duration::from_secs(5), connection)
        .await
        .expect("the server closes the idle HTTP/2 connection")
        .unwrap()
        .ok();
    server.stop().await;
}

#[tokio::test]
async fn a_connection_that_is_never_idle_is_still_closed_at_its_age() {
    let server = Running::start(HttpLimits {
        max_connection_age_ms: 500,
        ..small_limits()
    })
    .await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    // A request every 100 ms keeps it busy: never idle for 400 ms. Over the
    // ten seconds this could go on, the age of 500 ms must end it.
    let mut served = 0;
    let mut closed = false;
    for _ in 0..100 {
        if stream
            .write_all(b"GET /ok HTTP/1.1\r\nhost: t\r\n\r\n")
            .await
            .is_err()
        {
            closed = true;
            break;
        }
        let mut answer = [0u8; 1024];
        match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut answer)).await {
            Ok(Ok(n)) if n > 0 => {
                served += 1;
                let text = String::from_utf8_lossy(&answer[..n]).to_ascii_lowercase();
                assert!(text.starts_with("http/1.1 200"), "{text}");
            }
            _ => {
                closed = true;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(closed, "still open after {served} requests");
    assert!(served >= 1);
    server.stop().await;
}
