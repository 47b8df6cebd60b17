//! Collector and query in-process with tokens, the query over TLS with a
//! certificate made here: ingest with a token is acknowledged and without
//! one is answered 401, OTLP/gRPC without one is `UNAUTHENTICATED`, the
//! agent ships with its token, and the query API answers a read token over
//! https (and nothing without one) with what was shipped.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

use std::time::Duration;

use causeway_agent::AgentConfig;
use causeway_collector::{CollectorConfig, Listeners};
use causeway_model::{CorrelationId, FlowDetail, Record, Stage, Timestamp, wire};
use causeway_query::QueryConfig;
use causeway_server::Token;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use reqwest::StatusCode;
use tokio::net::TcpListener;
use tokio::sync::watch;

const INGEST_OLD: &str = "ingest-token-old-0001";
const INGEST_NEW: &str = "ingest-token-new-0002";
const READER: &str = "reader-token-0003";

fn record(correlation: &str) -> Record {
    let mut r = Record::new(Timestamp::now(), "order", "order placed");
    r.stage = Stage::Published;
    r.correlation_id = Some(CorrelationId::new(correlation).unwrap());
    r
}

/// Reads the flow with `token` until it has `records` records (a minute at
/// most).
async fn wait_for_flow(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    records: usize,
) -> FlowDetail {
    tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let response = client.get(url).bearer_auth(token).send().await.unwrap();
            if response.status().is_success() {
                let flow: FlowDetail = response.json().await.unwrap();
                if flow.summary.record_count >= records {
                    return flow;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the flow never reached the query API")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_requests_with_a_token_get_in_and_the_query_api_answers_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, made.cert.pem()).unwrap();
    std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();

    let (stop_tx, stop_rx) = watch::channel(false);
    let stop = || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };

    let mut collector_config = CollectorConfig::new(&data);
    collector_config.commit_interval_ms = 20;
    collector_config.tokens = vec![Token::from(INGEST_OLD), Token::from(INGEST_NEW)];
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let grpc = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let collector_url = format!("http://{}", http.local_addr().unwrap());
    let grpc_url = format!("http://{}", grpc.local_addr().unwrap());
    let collector = tokio::spawn(causeway_collector::run(
        Listeners {
            http,
            grpc: Some(grpc),
        },
        collector_config,
        stop(),
    ));

    let mut query_config = QueryConfig::new(&data);
    query_config.tokens = vec![Token::from(INGEST_NEW)];
    query_config.read_tokens = vec![Token::from(READER)];
    query_config.tls_cert = Some(cert);
    query_config.tls_key = Some(key);
    let query_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let query_addr = query_listener.local_addr().unwrap();
    let query = tokio::spawn(causeway_query::run(query_listener, query_config, stop()));

    let client = reqwest::Client::new();
    let ingest = |token: Option<&'static str>, correlation: &'static str| {
        let mut request = client
            .post(format!("{collector_url}/v1/ingest"))
            .header("content-type", wire::CONTENT_TYPE)
            .body(wire::encode("secure-test", &[record(correlation)]));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };

    // Without a token, or with one of the query's read tokens: refused.
    for token in [None, Some(READER)] {
        let response = ingest(token, "order-refused").await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert!(response.headers().contains_key("www-authenticate"));
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "unauthorized", "{body}");
    }
    // Either collector token (rotation): acknowledged.
    for token in [INGEST_OLD, INGEST_NEW] {
        let response = ingest(Some(token), "order-secure").await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{token}");
    }
    let health = client
        .get(format!("{collector_url}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);

    // OTLP/gRPC: no token is UNAUTHENTICATED, the token in the metadata
    // gets through.
    let mut traces = TraceServiceClient::connect(grpc_url).await.unwrap();
    let status = traces
        .export(ExportTraceServiceRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
    let mut request = tonic::Request::new(ExportTraceServiceRequest::default());
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {INGEST_NEW}").parse().unwrap(),
    );
    traces.export(request).await.unwrap();

    // The agent ships with its token.
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    std::fs::write(
        logs.join("shipping.log"),
        "{\"service\":\"shipping\",\"message\":\"shipped by the agent\",\
         \"correlation_id\":\"order-secure\",\"stage\":\"handled\"}\n",
    )
    .unwrap();
    let agent_config = AgentConfig {
        paths: vec![logs],
        token: Some(INGEST_OLD.to_owned()),
        poll_interval_ms: 20,
        ..AgentConfig::new(&collector_url, dir.path().join("agent.checkpoint.json"))
    };
    let agent = tokio::spawn(causeway_agent::run(agent_config, stop()));

    // The query API over https, trusting the certificate made above.
    let trusted = reqwest::Certificate::from_pem(made.cert.pem().as_bytes()).unwrap();
    let https = reqwest::Client::builder()
        .add_root_certificate(trusted)
        .resolve("localhost", query_addr)
        .build()
        .unwrap();
    let base = format!("https://localhost:{}", query_addr.port());
    let flow_url = format!("{base}/api/v1/flows/order-secure");
    // Two posted records and the agent's one, read with the read token.
    let flow = wait_for_flow(&https, &flow_url, READER, 3).await;
    assert!(flow.summary.services.contains(&"shipping".to_owned()));
    assert!(
        !format!("{flow:?}").contains("order-refused"),
        "a refused batch left nothing"
    );
    // The query's other token reads too.
    let response = https
        .get(&flow_url)
        .bearer_auth(INGEST_NEW)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    // Without a token, or with a collector-only token: refused, the OpenAPI
    // document included; /healthz stays open.
    for path in ["/api/v1/flows/order-secure", "/api/v1/openapi.json"] {
        let response = https.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{path}");
    }
    let response = https
        .get(&flow_url)
        .bearer_auth(INGEST_OLD)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let response = https.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    // Plain HTTP to the TLS listener gets nowhere.
    let plain = client
        .get(format!("http://{query_addr}/healthz"))
        .send()
        .await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());

    stop_tx.send(true).unwrap();
    agent.await.unwrap().unwrap();
    collector.await.unwrap().unwrap();
    query.await.unwrap().unwrap();
}
