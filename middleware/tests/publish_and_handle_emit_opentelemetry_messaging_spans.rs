//! With tracing-opentelemetry installed, a publish is a producer span and a
//! handler a consumer span per the messaging semantic conventions: the
//! consumer is a child of and linked to the producer, carries the messaging
//! attributes, the user's own spans nest under it, and the causeway records
//! carry the very same ids.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

use std::collections::HashMap;

use causeway_middleware::{Consume, MemorySink, Publish, RecordLayer, Service};
use causeway_model::{Record, Stage};
use opentelemetry::trace::{SpanKind, Status, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tracing_subscriber::layer::SubscriberExt;

fn attribute(span: &SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.to_string())
}

#[derive(Debug)]
struct Declined;

impl std::fmt::Display for Declined {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("declined")
    }
}

#[tokio::test(flavor = "current_thread")]
async fn producer_and_consumer_spans_follow_the_messaging_conventions() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let buffer = MemorySink::new();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")))
        .with(RecordLayer::new("test", buffer.clone()));
    let _guard = tracing::subscriber::set_default(subscriber);

    let mut headers = HashMap::new();
    let sent = Service::new("order").publish(
        None,
        Publish::new("OrderPlaced", "orders").system("rabbitmq"),
        &mut headers,
    );
    Service::new("payment")
        .handle(
            &headers,
            Consume::new("orders", "payment").system("rabbitmq"),
            |_| async {
                let _user = tracing::info_span!("charge_card").entered();
                tracing::info!("charging");
                Ok::<_, Declined>(())
            },
        )
        .await
        .unwrap();
    Service::new("payment")
        .handle(&headers, Consume::new("orders", "payment"), |_| async {
            Err::<(), _>(Declined)
        })
        .await
        .unwrap_err();
    provider.force_flush().unwrap();

    let spans = exporter.get_finished_spans().unwrap();
    let producer = spans.iter().find(|s| s.name == "send orders").unwrap();
    let consumer = spans.iter().find(|s| s.name == "process orders").unwrap();
    let user = spans.iter().find(|s| s.name == "charge_card").unwrap();

    assert_eq!(producer.span_kind, SpanKind::Producer);
    assert_eq!(consumer.span_kind, SpanKind::Consumer);
    assert_eq!(
        attribute(consumer, "messaging.system").as_deref(),
        Some("rabbitmq")
    );
    assert_eq!(
        attribute(consumer, "messaging.destination.name").as_deref(),
        Some("orders")
    );
    assert_eq!(
        attribute(consumer, "messaging.consumer.group.name").as_deref(),
        Some("payment")
    );
    assert_eq!(
        attribute(consumer, "messaging.message.id").as_deref(),
        Some(sent.event_id.as_str())
    );
    assert_eq!(
        attribute(consumer, "messaging.message.conversation_id").as_deref(),
        Some(sent.correlation_id.as_str())
    );
    assert_eq!(
        attribute(producer, "messaging.operation.type").as_deref(),
        Some("send")
    );

    // The context on the wire is the producer span's.
    assert_eq!(
        producer.span_context.trace_id().to_bytes(),
        sent.trace_id.to_bytes()
    );
    assert_eq!(
        producer.span_context.span_id().to_bytes(),
        sent.span_id.to_bytes()
    );
    // The consumer continues the trace under the producer and links it.
    assert_eq!(
        consumer.span_context.trace_id(),
        producer.span_context.trace_id()
    );
    assert_eq!(consumer.parent_span_id, producer.span_context.span_id());
    assert!(
        consumer
            .links
            .links
            .iter()
            .any(|l| l.span_context.span_id() == producer.span_context.span_id())
    );
    // The user's span nests under the consumer span.
    assert_eq!(user.parent_span_id, consumer.span_context.span_id());

    // The records carry the spans' ids.
    let text = String::from_utf8(buffer.text().into_bytes()).unwrap();
    let records: Vec<Record> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let received = records.iter().find(|r| r.stage == Stage::Received).unwrap();
    assert_eq!(
        received.span_id.unwrap().to_bytes(),
        consumer.span_context.span_id().to_bytes()
    );
    assert_eq!(received.parent_span_id, Some(sent.span_id));
    let log = records.iter().find(|r| r.message == "charging").unwrap();
    assert_eq!(log.trace_id, Some(sent.trace_id));

    // A failing handler's consumer span has an error status.
    let failed = spans
        .iter()
        .filter(|s| s.name == "process orders")
        .find(|s| matches!(s.status, Status::Error { .. }))
        .expect("failed consumer span");
    assert_eq!(failed.parent_span_id, producer.span_context.span_id());
}
