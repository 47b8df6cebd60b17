//! A request published through causeway crosses real HTTP (reqwest to an
//! in-process axum server behind `CausewayLayer`) in its flow: the handler
//! sees the client's trace and correlation id, the server writes
//! `received`, its handler's logs and `handled`/`failed` with them, events
//! published while handling are caused by the request, and bad or foreign
//! incoming headers never stop a request from being served.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

use std::net::SocketAddr;

use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use causeway_middleware::http::{CausewayLayer, publish_child_headers, publish_request};
use causeway_middleware::{ContextStats, Handling, MemorySink, Publish, RecordLayer, Service};
use causeway_model::{CorrelationId, Level, Record, Stage};
use serde_json::{Value, json};
use tracing::subscriber::DefaultGuard;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::layer::SubscriberExt;

fn records_of(buffer: &MemorySink, service: &str) -> Vec<Record> {
    buffer
        .records()
        .unwrap()
        .into_iter()
        .filter(|r| r.service == service)
        .collect()
}

/// Records of causeway and of this test's handlers, on this thread (the
/// runtime is current-thread, so the server's tasks run here too). Events
/// of hyper, reqwest and axum are left out so stage sequences are exact.
fn record_into(buffer: &MemorySink) -> DefaultGuard {
    let layer = RecordLayer::new("test", buffer.clone()).with_filter(filter_fn(|meta| {
        meta.target().starts_with("causeway") || meta.target().starts_with(module_path!())
    }));
    tracing::subscriber::set_default(tracing_subscriber::registry().with(layer))
}

async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

fn client() -> reqwest::Client {
    // Loopback only: never through a proxy from the environment.
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// What a handler saw of its flow, sent back as the response body.
async fn echo_context(Extension(handling): Extension<Handling>) -> Json<Value> {
    tracing::info!(order = 1234, "placing order");
    let c = handling.context();
    Json(json!({
        "trace_id": c.trace_id.to_string(),
        "correlation_id": c.correlation_id.as_str(),
        "event_id": c.event_id.as_str(),
        "causation_id": c.causation_id.as_ref().map(|id| id.as_str()),
    }))
}

fn orders_app() -> Router {
    orders_app_of(Service::new("orders"))
}

fn orders_app_of(orders: Service) -> Router {
    Router::new()
        .route("/orders", post(echo_context).get(echo_context))
        .route("/interop", get(echo_context))
        .layer(CausewayLayer::new(orders))
}

#[tokio::test(flavor = "current_thread")]
async fn a_published_request_is_handled_in_the_client_s_flow_behind_the_layer() {
    let buffer = MemorySink::new();
    let _guard = record_into(&buffer);
    let addr = serve(orders_app()).await;
    let client = client();

    let mut request = client
        .post(format!("http://{addr}/orders"))
        .body("{}")
        .build()
        .unwrap();
    let sent = publish_request(
        &Service::new("web"),
        None,
        Publish::new("OrderRequested", "/orders")
            .correlation_id(CorrelationId::new("order-1234").unwrap()),
        request.headers_mut(),
    );
    let response = client.execute(request).await.unwrap();

    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["correlation-id"], "order-1234");
    let seen: Value = response.json().await.unwrap();
    assert_eq!(seen["trace_id"], sent.trace_id.to_string());
    assert_eq!(seen["correlation_id"], "order-1234");
    assert_eq!(seen["event_id"], sent.event_id.as_str());

    let published = records_of(&buffer, "web");
    assert_eq!(published.len(), 1);
    assert_eq!(published[0].stage, Stage::Published);
    assert_eq!(published[0].messaging_system.as_deref(), Some("http"));

    let server = records_of(&buffer, "orders");
    let stages: Vec<Stage> = server.iter().map(|r| r.stage).collect();
    assert_eq!(stages, [Stage::Received, Stage::Log, Stage::Handled]);
    for r in &server {
        assert_eq!(r.trace_id, Some(sent.trace_id));
        assert_eq!(r.correlation_id.as_ref().unwrap().as_str(), "order-1234");
        assert_eq!(r.event_id.as_ref(), Some(&sent.event_id));
        assert_eq!(r.parent_span_id, Some(sent.span_id), "parent = client span");
        assert_eq!(r.span_id, server[0].span_id);
    }
    let received = &server[0];
    assert_ne!(received.span_id, Some(sent.span_id));
    assert_eq!(received.messaging_system.as_deref(), Some("http"));
    assert_eq!(received.destination.as_deref(), Some("/orders"));
    assert_eq!(received.consumer_group.as_deref(), Some("orders"));
    assert_eq!(received.event_type.as_deref(), Some("OrderRequested"));
    assert_eq!(server[1].message, "placing order");
    assert_eq!(server[1].attributes["order"], 1234);
    assert!(server[2].duration_us.is_some());
}

#[tokio::test(flavor = "current_thread")]
async fn a_webhook_published_while_handling_a_request_is_caused_by_it() {
    let buffer = MemorySink::new();
    let _guard = record_into(&buffer);

    let payments = serve(
        Router::new()
            .route("/charge", post(echo_context))
            .layer(CausewayLayer::new(Service::new("payment"))),
    )
    .await;
    let charge_url = format!("http://{payments}/charge");
    let orders = serve(
        Router::new()
            .route(
                "/orders",
                post(|Extension(handling): Extension<Handling>| async move {
                    let (headers, child) = publish_child_headers(
                        &handling,
                        Publish::new("ChargeRequested", "/charge"),
                    );
                    let response = client().post(charge_url).headers(headers).send();
                    let charged: Value = response.await.unwrap().json().await.unwrap();
                    Json(json!({ "child_event_id": child.event_id.as_str(), "charged": charged }))
                }),
            )
            .layer(CausewayLayer::new(Service::new("orders"))),
    )
    .await;

    let client = client();
    let mut request = client
        .post(format!("http://{orders}/orders"))
        .build()
        .unwrap();
    let sent = publish_request(
        &Service::new("web"),
        None,
        Publish::new("OrderRequested", "/orders"),
        request.headers_mut(),
    );
    let response = client.execute(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let child_event_id = body["child_event_id"].as_str().unwrap();
    assert_eq!(body["charged"]["event_id"], child_event_id);
    assert_eq!(
        body["charged"]["causation_id"],
        sent.event_id.as_str(),
        "the payment handler sees the order request as the cause"
    );
    assert_eq!(
        body["charged"]["correlation_id"],
        sent.correlation_id.as_str()
    );

    let records = buffer.records().unwrap();
    let stages: Vec<(&str, Stage)> = records
        .iter()
        .map(|r| (r.service.as_str(), r.stage))
        .collect();
    assert_eq!(
        stages,
        [
            ("web", Stage::Published),
            ("orders", Stage::Received),
            ("orders", Stage::Published),
            ("payment", Stage::Received),
            ("payment", Stage::Log),
            ("payment", Stage::Handled),
            ("orders", Stage::Handled),
        ]
    );
    for r in &records {
        assert_eq!(r.trace_id, Some(sent.trace_id));
        assert_eq!(r.correlation_id.as_ref(), Some(&sent.correlation_id));
    }
    let (order_received, child_published, payment_received) =
        (&records[1], &records[2], &records[3]);
    assert_eq!(
        child_published.event_id.as_ref().unwrap().as_str(),
        child_event_id
    );
    assert_eq!(child_published.causation_id.as_ref(), Some(&sent.event_id));
    assert_eq!(child_published.parent_span_id, order_received.span_id);
    assert_eq!(child_published.messaging_system.as_deref(), Some("http"));
    assert_eq!(child_published.destination.as_deref(), Some("/charge"));
    assert_eq!(
        payment_received.event_id.as_ref().unwrap().as_str(),
        child_event_id
    );
    assert_eq!(payment_received.causation_id.as_ref(), Some(&sent.event_id));
    assert_eq!(payment_received.parent_span_id, child_published.span_id);
    assert_eq!(
        payment_received.event_type.as_deref(),
        Some("ChargeRequested")
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_handler_answering_500_writes_failed_with_the_status() {
    let buffer = MemorySink::new();
    let _guard = record_into(&buffer);
    let addr = serve(
        Router::new()
            .route(
                "/boom",
                get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "boom") }),
            )
            .layer(CausewayLayer::new(Service::new("orders"))),
    )
    .await;

    let response = client()
        .get(format!("http://{addr}/boom"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 500);
    let correlation_id = response.headers()["correlation-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(response.text().await.unwrap(), "boom", "the answer is kept");

    let records = records_of(&buffer, "orders");
    let stages: Vec<Stage> = records.iter().map(|r| r.stage).collect();
    assert_eq!(stages, [Stage::Received, Stage::Failed]);
    let failed = &records[1];
    assert_eq!(failed.level, Level::Error);
    assert_eq!(failed.error_type.as_deref(), Some("HttpStatus"));
    assert_eq!(
        failed.error_message.as_deref(),
        Some("500 Internal Server Error")
    );
    assert!(failed.duration_us.is_some());
    assert_eq!(failed.event_type.as_deref(), Some("GET /boom"));
    assert_eq!(
        failed.correlation_id.as_ref().unwrap().as_str(),
        correlation_id
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_request_with_malformed_context_is_served_in_a_fresh_flow() {
    let buffer = MemorySink::new();
    let _guard = record_into(&buffer);
    let orders = Service::new("orders");
    let addr = serve(orders_app_of(orders.clone())).await;
    let oversized = "a".repeat(4096);

    let response = client()
        .get(format!("http://{addr}/orders"))
        .header("traceparent", "00-not-a-trace-01")
        .header("correlation-id", &oversized)
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 200);
    let correlation_id = response.headers()["correlation-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        CorrelationId::new(correlation_id.clone()).is_ok(),
        "a valid, bounded id"
    );
    assert!(!correlation_id.starts_with("aaaa"), "never echoed");
    let seen: Value = response.json().await.unwrap();
    assert_eq!(seen["correlation_id"], correlation_id.as_str());

    assert_eq!(
        orders.context_stats(),
        ContextStats {
            fresh_contexts: 1,
            invalid_values: 2
        },
        "the bad traceparent and the oversized correlation id"
    );

    let records = records_of(&buffer, "orders");
    let stages: Vec<Stage> = records.iter().map(|r| r.stage).collect();
    assert_eq!(stages, [Stage::Received, Stage::Log, Stage::Handled]);
    for r in &records {
        assert_eq!(r.correlation_id.as_ref().unwrap().as_str(), correlation_id);
        assert_eq!(r.trace_id.unwrap().to_string(), seen["trace_id"]);
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_request_from_a_plain_opentelemetry_client_continues_its_trace() {
    let buffer = MemorySink::new();
    let _guard = record_into(&buffer);
    let addr = serve(orders_app()).await;

    let response = client()
        .get(format!("http://{addr}/interop"))
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["correlation-id"],
        "4bf92f3577b34da6a3ce929d0e0e4736",
        "a flow without a correlation id is its trace"
    );
    let seen: Value = response.json().await.unwrap();
    assert_eq!(seen["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");

    let records = records_of(&buffer, "orders");
    let received = &records[0];
    assert_eq!(received.stage, Stage::Received);
    assert_eq!(
        received.trace_id.unwrap().to_string(),
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    assert_eq!(
        received.parent_span_id.unwrap().to_string(),
        "00f067aa0ba902b7"
    );
    assert_eq!(received.event_type.as_deref(), Some("GET /interop"));
    assert_eq!(received.destination.as_deref(), Some("/interop"));
    assert_eq!(received.messaging_system.as_deref(), Some("http"));
    assert_eq!(received.consumer_group.as_deref(), Some("orders"));
}

#[cfg(feature = "axum")]
#[tokio::test(flavor = "current_thread")]
async fn behind_a_route_layer_the_event_is_named_after_the_matched_route() {
    let buffer = MemorySink::new();
    let _guard = record_into(&buffer);
    let app = Router::new()
        .route("/orders/{id}", get(echo_context))
        .route_layer(CausewayLayer::new(Service::new("orders")));
    let addr = serve(app).await;

    let response = client()
        .get(format!("http://{addr}/orders/1234"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    let records = records_of(&buffer, "orders");
    let received = records.iter().find(|r| r.stage == Stage::Received).unwrap();
    assert_eq!(received.destination.as_deref(), Some("/orders/{id}"));
    assert_eq!(received.event_type.as_deref(), Some("GET /orders/{id}"));
}
