//! A real listener served by `causeway_server::serve` behind `authorize`:
//! no token, a wrong one or a malformed header is answered 401 with the
//! JSON reason and `WWW-Authenticate: Bearer` (a gRPC call with
//! `UNAUTHENTICATED`), either of two tokens passes, `/healthz` stays open;
//! and the same over TLS with a certificate made here, over HTTP/1.1 and
//! over HTTP/2 chosen by ALPN (as gRPC clients connect).

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

use std::net::SocketAddr;

use axum::Router;
use axum::routing::{get, post};
use causeway_server::{Access, HttpLimits, Listener, TlsFiles, Token, authorize, harden, serve};
use reqwest::StatusCode;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

const FIRST: &str = "first-token-0123456789";
const SECOND: &str = "second-token-9876543210";

fn app() -> Router {
    let router = Router::new()
        .route("/healthz", get(|| async { "alive" }))
        .route("/api/v1/flows", get(|| async { "flows" }))
        .route("/v1/ingest", post(|body: String| async move { body }));
    let access = Access::new(&[Token::from(FIRST), Token::from(SECOND)]);
    authorize(harden(router, &HttpLimits::default()), &access)
}

async fn start(tls: Option<TlsFiles>) -> (SocketAddr, oneshot::Sender<()>) {
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(serve(
        Listener::new(tcp, tls),
        app(),
        HttpLimits::default(),
        async {
            let _ = stopped.await;
        },
    ));
    (addr, stop)
}

async fn refused(response: reqwest::Response, challenge: &str, message: &str) {
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(response.headers()["www-authenticate"], challenge);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthorized", "{body}");
    let text = body["error"]["message"].as_str().unwrap();
    assert!(text.contains(message), "{body}");
    assert!(!text.contains("wrong-token"), "{body}");
}

#[tokio::test]
async fn only_a_configured_bearer_token_passes_and_healthz_stays_open() {
    let (addr, _stop) = start(None).await;
    let client = reqwest::Client::new();
    let url = |path: &str| format!("http://{addr}{path}");

    let response = client.get(url("/api/v1/flows")).send().await.unwrap();
    refused(response, "Bearer", "bearer token is required").await;

    let response = client
        .get(url("/api/v1/flows"))
        .bearer_auth("wrong-token")
        .send()
        .await
        .unwrap();
    refused(response, "Bearer error=\"invalid_token\"", "not valid").await;

    let response = client
        .get(url("/api/v1/flows"))
        .header("authorization", format!("Basic {FIRST}"))
        .send()
        .await
        .unwrap();
    refused(response, "Bearer error=\"invalid_token\"", "not `Bearer").await;

    // Unknown paths are refused too: nothing is said about what exists.
    let response = client.get(url("/nowhere")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    for token in [FIRST, SECOND] {
        let response = client
            .get(url("/api/v1/flows"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.text().await.unwrap(), "flows");
        let response = client
            .post(url("/v1/ingest"))
            .bearer_auth(token)
            .body("a batch")
            .send()
            .await
            .unwrap();
        assert_eq!(response.text().await.unwrap(), "a batch");
    }

    let response = client.get(url("/healthz")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.text().await.unwrap(), "alive");
}

#[tokio::test]
async fn a_grpc_call_without_a_token_is_unauthenticated() {
    let (addr, _stop) = start(None).await;
    // The layer looks at the content type, whatever the HTTP version; the
    // collector's tests make the same call with a real gRPC client.
    let response = reqwest::Client::new()
        .post(format!(
            "http://{addr}/opentelemetry.proto.collector.logs.v1.LogsService/Export"
        ))
        .header("content-type", "application/grpc")
        .body(vec![0u8, 0, 0, 0, 0])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["grpc-status"], "16");
    assert!(
        response.headers()["grpc-message"]
            .to_str()
            .unwrap()
            .contains("bearer token")
    );
}

#[tokio::test]
async fn a_tls_listener_answers_over_https_with_its_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (files, made) = certificate(dir.path());
    let (addr, _stop) = start(Some(files)).await;

    let trusted = reqwest::Certificate::from_pem(made.cert.pem().as_bytes()).unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(trusted)
        .resolve("localhost", addr)
        .build()
        .unwrap();
    let url = format!("https://localhost:{}/api/v1/flows", addr.port());
    let response = client.get(&url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let response = client.get(&url).bearer_auth(FIRST).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    // Plain HTTP to a TLS listener gets no answer from the router.
    let plain = reqwest::Client::new()
        .get(format!("http://{addr}/healthz"))
        .send()
        .await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());

    // A client that does not trust the certificate does not get through.
    let untrusting = reqwest::Client::builder()
        .resolve("localhost", addr)
        .build()
        .unwrap();
    assert!(untrusting.get(&url).send().await.is_err());
}

/// A self-signed certificate for `localhost`, written to `dir`.
fn certificate(dir: &std::path::Path) -> (TlsFiles, rcgen::CertifiedKey<rcgen::KeyPair>) {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let files = TlsFiles {
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
    };
    std::fs::write(&files.cert, made.cert.pem()).unwrap();
    std::fs::write(&files.key, made.signing_key.serialize_pem()).unwrap();
    (files, made)
}

#[tokio::test]
async fn a_grpc_call_over_tls_negotiates_http2_and_needs_the_token() {
    use tokio_rustls::rustls::crypto::aws_lc_rs;
    use tokio_rustls::rustls::pki_types::ServerName;
    use tokio_rustls::rustls::{ClientConfig, RootCertStore};

    let dir = tempfile::tempdir().unwrap();
    let (files, made) = certificate(dir.path());
    let (addr, _stop) = start(Some(files)).await;

    let mut roots = RootCertStore::empty();
    roots.add(made.cert.der().clone()).unwrap();
    let mut config =
        ClientConfig::builder_with_provider(std::sync::Arc::new(aws_lc_rs::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tls),
    )
    .await
    .unwrap();
    tokio::spawn(connection);
    let call = |token: Option<&str>| {
        let mut request =
            hyper::Request::post(format!("https://localhost:{}/v1/ingest", addr.port()))
                .header("content-type", "application/grpc")
                .header("te", "trailers");
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        request
            .body(http_body_util::Full::new(axum::body::Bytes::from_static(
                b"grpc",
            )))
            .unwrap()
    };
    let refused = sender.send_request(call(None)).await.unwrap();
    assert_eq!(refused.version(), hyper::Version::HTTP_2);
    assert_eq!(refused.headers()["grpc-status"], "16");
    let allowed = sender.send_request(call(Some(SECOND))).await.unwrap();
    assert_eq!(allowed.status(), 200);
    assert!(!allowed.headers().contains_key("grpc-status"));
}

#[tokio::test]
async fn a_missing_certificate_stops_serve_before_it_serves() {
    let dir = tempfile::tempdir().unwrap();
    let files = TlsFiles {
        cert: dir.path().join("absent.pem"),
        key: dir.path().join("absent-key.pem"),
    };
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let error = serve(
        Listener::new(tcp, Some(files)),
        app(),
        HttpLimits::default(),
        std::future::pending(),
    )
    .await
    .unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput);
    assert!(error.to_string().contains("absent.pem"), "{error}");
}
