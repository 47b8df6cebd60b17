//! Context crosses Kafka: a record produced with causeway's headers through
//! a `FutureProducer` and consumed by a `StreamConsumer` in a consumer group
//! continues its flow, a record from a plain OpenTelemetry producer
//! continues its trace, and headers that are binary, malformed or repeated
//! never break handling.
//!
//! There is no Kafka broker on this machine: the tests run against
//! librdkafka's in-process mock cluster (`rdkafka::mocking::MockCluster`),
//! which speaks the Kafka protocol over localhost sockets, with consumer
//! groups and offset commits. Each test starts its own cluster and topics
//! (named with a fresh id), and drops them when it ends.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report
#![cfg(feature = "kafka")]

use std::time::Duration;

use causeway_middleware::kafka::{self, HeaderExtractor};
use causeway_middleware::{ContextStats, Extractor, MemorySink, Publish, RecordLayer, Service};
use causeway_model::{CorrelationId, EventId, Stage, headers};
use rdkafka::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Header, OwnedHeaders};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{DefaultProducerContext, FutureProducer, FutureRecord};
use tracing_subscriber::layer::SubscriberExt;

const WAIT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
#[error("kafka: {0}")]
struct ProduceFailed(#[from] rdkafka::error::KafkaError);

type Cluster = MockCluster<'static, DefaultProducerContext>;

/// A mock cluster with one broker and the given topics (one partition each).
fn cluster(topics: &[&str]) -> Cluster {
    let cluster = MockCluster::new(1).unwrap();
    for topic in topics {
        cluster.create_topic(topic, 1, 1).unwrap();
    }
    cluster
}

fn topic(name: &str) -> String {
    format!("{name}-{}", EventId::generate().as_str())
}

fn producer(cluster: &Cluster) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", cluster.bootstrap_servers())
        .set("message.timeout.ms", "30000")
        .create()
        .unwrap()
}

fn consumer(cluster: &Cluster, group: &str, topic: &str) -> StreamConsumer {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", cluster.bootstrap_servers())
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    consumer
}

async fn produce(
    producer: &FutureProducer,
    topic: &str,
    headers: OwnedHeaders,
) -> Result<(), ProduceFailed> {
    producer
        .send(
            FutureRecord::to(topic)
                .key("order-1234")
                .payload(r#"{"order":1234}"#)
                .headers(headers),
            WAIT,
        )
        .await
        .map(|_| ())
        .map_err(|(error, _)| error.into())
}

async fn next(consumer: &StreamConsumer) -> BorrowedMessage<'_> {
    tokio::time::timeout(WAIT, consumer.recv())
        .await
        .expect("no record within 30 s")
        .unwrap()
}

fn recording() -> (MemorySink, tracing::subscriber::DefaultGuard) {
    let buffer = MemorySink::new();
    let subscriber = tracing_subscriber::registry().with(RecordLayer::new("test", buffer.clone()));
    (buffer, tracing::subscriber::set_default(subscriber))
}

#[tokio::test(flavor = "current_thread")]
async fn a_produced_record_and_its_child_carry_the_flow_through_consumer_groups() {
    let (buffer, _guard) = recording();
    let orders = topic("orders");
    let payments = topic("payments");
    let cluster = cluster(&[&orders, &payments]);
    let producer = producer(&cluster);
    let payment_consumer = consumer(&cluster, "payment", &orders);
    let shipping_consumer = consumer(&cluster, "shipping", &payments);

    let (headers, placed) = kafka::publish_headers(
        &Service::new("order"),
        None,
        Publish::new("OrderPlaced", &orders)
            .correlation_id(CorrelationId::new("order-1234").unwrap()),
    );
    produce(&producer, &orders, headers).await.unwrap();

    let message = next(&payment_consumer).await;
    let on_the_wire = HeaderExtractor::from_message(&message);
    assert_eq!(
        on_the_wire.get(headers::TRACEPARENT),
        Some(format!("00-{}-{}-01", placed.trace_id, placed.span_id).as_str())
    );
    assert_eq!(
        on_the_wire.get(headers::EVENT_ID),
        Some(placed.event_id.as_str())
    );
    let (producer_ref, payments_ref) = (&producer, payments.as_str());
    let (child, handled) = kafka::handle(
        &Service::new("payment"),
        &message,
        "payment",
        |handling| async move {
            let handled = handling.context().clone();
            let (headers, child) = kafka::publish_child_headers(
                &handling,
                Publish::new("PaymentSucceeded", payments_ref),
            );
            produce(producer_ref, payments_ref, headers).await?;
            Ok::<_, ProduceFailed>((child, handled))
        },
    )
    .await
    .unwrap();
    drop(message);
    assert_eq!(handled.trace_id, placed.trace_id);
    assert_eq!(handled.correlation_id, placed.correlation_id);
    assert_eq!(handled.parent_span_id, Some(placed.span_id));
    assert_eq!(handled.event_id, placed.event_id);

    let message = next(&shipping_consumer).await;
    let shipped = kafka::handle(
        &Service::new("shipping"),
        &message,
        "shipping",
        |handling| async move { Ok::<_, ProduceFailed>(handling.context().clone()) },
    )
    .await
    .unwrap();
    assert_eq!(shipped.event_id, child.event_id);
    assert_eq!(shipped.causation_id.as_ref(), Some(&placed.event_id));
    assert_eq!(shipped.parent_span_id, Some(child.span_id));
    assert_eq!(child.parent_span_id, Some(handled.span_id));

    let records = buffer.records().unwrap();
    let stages: Vec<(&str, Stage)> = records
        .iter()
        .map(|r| (r.service.as_str(), r.stage))
        .collect();
    assert_eq!(
        stages,
        vec![
            ("order", Stage::Published),
            ("payment", Stage::Received),
            ("payment", Stage::Published),
            ("payment", Stage::Handled),
            ("shipping", Stage::Received),
            ("shipping", Stage::Handled),
        ]
    );
    for r in &records {
        assert_eq!(r.correlation_id.as_ref().unwrap().as_str(), "order-1234");
        assert_eq!(r.trace_id, Some(placed.trace_id));
        assert_eq!(r.messaging_system.as_deref(), Some("kafka"));
    }
    let received = &records[1];
    assert_eq!(received.event_id.as_ref(), Some(&placed.event_id));
    assert_eq!(received.parent_span_id, Some(placed.span_id));
    assert_eq!(received.destination.as_deref(), Some(orders.as_str()));
    assert_eq!(received.consumer_group.as_deref(), Some("payment"));
    let published_child = &records[2];
    assert_eq!(published_child.event_id.as_ref(), Some(&child.event_id));
    assert_eq!(
        published_child.causation_id.as_ref(),
        Some(&placed.event_id)
    );
    assert_eq!(published_child.parent_span_id, received.span_id);
    assert_eq!(
        published_child.destination.as_deref(),
        Some(payments.as_str())
    );
    assert!(records[3].duration_us.is_some());
    let received_child = &records[4];
    assert_eq!(received_child.event_id.as_ref(), Some(&child.event_id));
    assert_eq!(received_child.causation_id.as_ref(), Some(&placed.event_id));
    assert_eq!(received_child.parent_span_id, Some(child.span_id));
    assert_eq!(received_child.consumer_group.as_deref(), Some("shipping"));
}

#[tokio::test(flavor = "current_thread")]
async fn a_record_with_only_a_foreign_traceparent_continues_that_trace() {
    let (buffer, _guard) = recording();
    let orders = topic("orders");
    let cluster = cluster(&[&orders]);
    let producer = producer(&cluster);
    let consumer = consumer(&cluster, "payment", &orders);

    // What any OpenTelemetry SDK's Kafka instrumentation sends.
    let headers = OwnedHeaders::new().insert(Header {
        key: "traceparent",
        value: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
    });
    produce(&producer, &orders, headers).await.unwrap();

    let message = next(&consumer).await;
    let (handled, child, child_headers) = kafka::handle(
        &Service::new("payment"),
        &message,
        "payment",
        |handling| async move {
            let (headers, child) = kafka::publish_child_headers(
                &handling,
                Publish::new("PaymentSucceeded", "payments"),
            );
            Ok::<_, ProduceFailed>((handling.context().clone(), child, headers))
        },
    )
    .await
    .unwrap();

    assert_eq!(
        handled.trace_id.to_string(),
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    assert_eq!(
        handled.parent_span_id.map(|s| s.to_string()).as_deref(),
        Some("00f067aa0ba902b7")
    );
    assert!(handled.sampled);
    assert_eq!(child.parent_span_id, Some(handled.span_id));
    assert_eq!(
        HeaderExtractor::new(&child_headers).get(headers::TRACEPARENT),
        Some(format!("00-4bf92f3577b34da6a3ce929d0e0e4736-{}-01", child.span_id).as_str())
    );

    let records = buffer.records().unwrap();
    let received = records.iter().find(|r| r.stage == Stage::Received).unwrap();
    assert_eq!(
        received.trace_id.map(|t| t.to_string()).as_deref(),
        Some("4bf92f3577b34da6a3ce929d0e0e4736")
    );
    assert_eq!(
        received.parent_span_id.map(|s| s.to_string()).as_deref(),
        Some("00f067aa0ba902b7")
    );
    assert!(records.iter().any(|r| r.stage == Stage::Handled));
}

#[tokio::test(flavor = "current_thread")]
async fn binary_malformed_and_repeated_header_values_do_not_break_handling() {
    let (buffer, _guard) = recording();
    let orders = topic("orders");
    let cluster = cluster(&[&orders]);
    let producer = producer(&cluster);
    let consumer = consumer(&cluster, "payment", &orders);

    let huge = "7".repeat(100_000);
    let headers = OwnedHeaders::new()
        .insert(Header {
            key: "traceparent",
            value: Some([0xff, 0x00, 0xfe, 0x1b, 0x5b].as_slice()),
        })
        .insert(Header {
            key: "correlation-id",
            value: Some("order-1\r\nSet-Cookie: x=1"),
        })
        .insert(Header {
            key: "event-id",
            value: Some(huge.as_str()),
        })
        .insert(Header::<&[u8]> {
            key: "event-type",
            value: None,
        })
        .insert(Header {
            key: "causation-id",
            value: Some([0xc3, 0x28].as_slice()),
        })
        // Kafka allows a key to repeat: the last header with it counts.
        .insert(Header {
            key: "event-source",
            value: Some("forwarder"),
        })
        .insert(Header {
            key: "event-source",
            value: Some("billing"),
        });
    produce(&producer, &orders, headers).await.unwrap();

    let payment = Service::new("payment");
    let message = next(&consumer).await;
    let handled = kafka::handle(&payment, &message, "payment", |handling| async move {
        Ok::<_, ProduceFailed>(handling.context().clone())
    })
    .await
    .unwrap();

    assert_ne!(handled.correlation_id.as_str(), "order-1");
    assert!(!handled.correlation_id.as_str().contains('\n'));
    assert!(handled.event_id.as_str().len() < 1000);
    assert_eq!(handled.causation_id, None);
    assert_eq!(handled.event_type, None);
    assert_eq!(handled.source.as_deref(), Some("billing"));
    assert_eq!(
        payment.context_stats(),
        ContextStats {
            fresh_contexts: 1,
            invalid_values: 5
        },
        "traceparent, correlation-id, event-id, the null event-type and causation-id"
    );

    let records = buffer.records().unwrap();
    let stages: Vec<Stage> = records.iter().map(|r| r.stage).collect();
    assert_eq!(stages, vec![Stage::Received, Stage::Handled]);
    for r in &records {
        assert_eq!(r.correlation_id.as_ref(), Some(&handled.correlation_id));
        assert_eq!(r.trace_id, Some(handled.trace_id));
    }
}
