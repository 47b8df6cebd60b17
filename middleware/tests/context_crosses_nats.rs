//! Context crosses the real nats-server on 127.0.0.1:4222 (started with
//! `-js`), on core NATS and on JetStream: the consumer continues the
//! producer's trace and correlation, an event published while handling is
//! caused by the handled one, JetStream drops a re-publish of the same
//! event, a nak-ed JetStream message comes back recorded as retried, a
//! foreign `traceparent` is continued, and a message without headers is
//! handled in a fresh flow. Each test uses its own subjects and
//! stream, and the tests fail when the server is not there.

#![cfg(feature = "nats")]
#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

use std::panic::AssertUnwindSafe;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, consumer, stream};
use causeway_middleware::nats::{self, HeaderExtractor};
use causeway_middleware::{ContextStats, MemorySink, Publish, RecordLayer, Service, extract};
use causeway_model::{CorrelationId, EventId, Record, Stage};
use futures_util::{FutureExt, StreamExt};
use tokio::time::timeout;
use tracing::subscriber::DefaultGuard;
use tracing_subscriber::layer::SubscriberExt;

const NATS_URL: &str = "127.0.0.1:4222";
const WAIT: Duration = Duration::from_secs(20);
const FOREIGN_TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// The lifecycle records (the client's own debug logs are left out).
fn lifecycle(buffer: &MemorySink) -> Vec<Record> {
    buffer
        .records()
        .unwrap()
        .into_iter()
        .filter(|r| r.stage != Stage::Log)
        .collect()
}

fn record_to(buffer: &MemorySink) -> DefaultGuard {
    let subscriber = tracing_subscriber::registry().with(RecordLayer::new("test", buffer.clone()));
    tracing::subscriber::set_default(subscriber)
}

/// A token unique to this run, fit for subjects and stream names.
fn unique() -> String {
    EventId::generate().as_str().replace('-', "")
}

async fn connect() -> async_nats::Client {
    timeout(WAIT, async_nats::connect(NATS_URL))
        .await
        .unwrap_or_else(|_| panic!("timed out connecting to nats-server on {NATS_URL}"))
        .unwrap_or_else(|e| panic!("nats-server must run on {NATS_URL} (with -js): {e}"))
}

async fn next(subscriber: &mut async_nats::Subscriber) -> async_nats::Message {
    timeout(WAIT, subscriber.next())
        .await
        .expect("no message within the wait")
        .expect("subscription closed")
}

/// Creates a stream. A nats-server that has no stream yet can fail streams
/// created at the same moment by two tests ("error creating store for
/// stream": a race on its storage directory); creating again succeeds.
async fn create_stream(js: &jetstream::Context, config: stream::Config) -> stream::Stream {
    for _ in 0..5 {
        match js.create_stream(config.clone()).await {
            Ok(stream) => return stream,
            Err(error) if error.to_string().contains("creating store") => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(error) => panic!("creating stream {}: {error}", config.name),
        }
    }
    panic!("nats-server kept failing to create stream {}", config.name)
}

/// A durable pull consumer on `subject` that acknowledges explicitly.
async fn pull_consumer(
    stream: &stream::Stream,
    durable: &str,
    subject: &str,
) -> consumer::PullConsumer {
    stream
        .create_consumer(consumer::pull::Config {
            durable_name: Some(durable.to_owned()),
            filter_subject: subject.to_owned(),
            ack_policy: consumer::AckPolicy::Explicit,
            ..Default::default()
        })
        .await
        .unwrap()
}

fn stages(records: &[Record]) -> Vec<(&str, Stage)> {
    records
        .iter()
        .map(|r| (r.service.as_str(), r.stage))
        .collect()
}

#[derive(Debug, thiserror::Error)]
#[error("publish failed: {0}")]
struct PublishFailed(String);

#[tokio::test(flavor = "current_thread")]
async fn core_nats_carries_the_flow_from_publisher_to_handler_and_its_child_event() {
    let buffer = MemorySink::new();
    let _guard = record_to(&buffer);
    let client = connect().await;
    let run = unique();
    let orders = format!("causeway.test.{run}.orders");
    let payments = format!("causeway.test.{run}.payments");
    let mut order_sub = client
        .queue_subscribe(orders.clone(), "payment".into())
        .await
        .unwrap();
    let mut payment_sub = client.subscribe(payments.clone()).await.unwrap();
    client.flush().await.unwrap();

    let order = Service::new("order");
    let payment = Service::new("payment");
    let correlation = CorrelationId::new(format!("order-{run}")).unwrap();
    let (headers, placed) = nats::publish_headers(
        &order,
        None,
        Publish::new("OrderPlaced", &orders).correlation_id(correlation.clone()),
    );
    client
        .publish_with_headers(orders.clone(), headers, "{\"order\":1}".into())
        .await
        .unwrap();
    client.flush().await.unwrap();

    let message = next(&mut order_sub).await;
    let publisher = client.clone();
    let child_subject = payments.clone();
    let (handled, child) = nats::handle(&payment, &message, "payment", |handling| async move {
        let (headers, child) = nats::publish_child_headers(
            &handling,
            Publish::new("PaymentSucceeded", &child_subject),
        );
        publisher
            .publish_with_headers(child_subject.clone(), headers, "{}".into())
            .await
            .map_err(|e| PublishFailed(e.to_string()))?;
        Ok::<_, PublishFailed>((handling.context().clone(), child))
    })
    .await
    .unwrap();

    assert_eq!(handled.trace_id, placed.trace_id);
    assert_eq!(handled.correlation_id, correlation);
    assert_eq!(handled.event_id, placed.event_id);
    assert_eq!(handled.parent_span_id, Some(placed.span_id));

    // The child crossed the server too, caused by the handled event.
    let child_message = next(&mut payment_sub).await;
    let seen = extract(&HeaderExtractor(child_message.headers.as_ref().unwrap()));
    assert_eq!(seen.trace_id, placed.trace_id);
    assert_eq!(seen.correlation_id, correlation);
    assert_eq!(seen.causation_id.as_ref(), Some(&placed.event_id));
    assert_eq!(seen.event_id, child.event_id);
    assert_eq!(seen.span_id, child.span_id);
    assert_eq!(child.parent_span_id, Some(handled.span_id));

    let records = lifecycle(&buffer);
    assert_eq!(
        stages(&records),
        vec![
            ("order", Stage::Published),
            ("payment", Stage::Received),
            ("payment", Stage::Published),
            ("payment", Stage::Handled),
        ]
    );
    for r in &records {
        assert_eq!(r.correlation_id.as_ref(), Some(&correlation));
        assert_eq!(r.trace_id, Some(placed.trace_id));
        assert_eq!(r.messaging_system.as_deref(), Some("nats"));
    }
    assert_eq!(records[0].span_id, Some(placed.span_id));
    assert_eq!(records[0].destination.as_deref(), Some(orders.as_str()));
    let received = &records[1];
    assert_eq!(received.event_id.as_ref(), Some(&placed.event_id));
    assert_eq!(received.parent_span_id, Some(placed.span_id));
    assert_eq!(received.destination.as_deref(), Some(orders.as_str()));
    assert_eq!(received.consumer_group.as_deref(), Some("payment"));
    assert_eq!(records[2].causation_id.as_ref(), Some(&placed.event_id));
    assert_eq!(records[2].event_id.as_ref(), Some(&child.event_id));
    assert!(records[3].duration_us.is_some());
}

#[tokio::test(flavor = "current_thread")]
async fn jetstream_carries_the_flow_and_drops_a_republished_event() {
    let buffer = MemorySink::new();
    let _guard = record_to(&buffer);
    let js = jetstream::new(connect().await);
    let run = unique();
    let stream_name = format!("CAUSEWAY_TEST_{run}");
    let mut stream = create_stream(
        &js,
        stream::Config {
            name: stream_name.clone(),
            subjects: vec![format!("causeway.test.{run}.>")],
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        },
    )
    .await;

    // Delete the stream whatever happens, then report the failure.
    let outcome = AssertUnwindSafe(async {
        let orders = format!("causeway.test.{run}.orders");
        let payments = format!("causeway.test.{run}.payments");
        let order = Service::new("order");
        let payment = Service::new("payment");
        let shipping = Service::new("shipping");

        let (headers, placed) =
            nats::publish_jetstream_headers(&order, None, Publish::new("OrderPlaced", &orders));
        let first = js
            .publish_with_headers(orders.clone(), headers.clone(), "{\"order\":1}".into())
            .await
            .unwrap()
            .await
            .unwrap();
        assert!(!first.duplicate);
        // A retry of the same event (same Nats-Msg-Id) is a duplicate.
        let again = js
            .publish_with_headers(orders.clone(), headers, "{\"order\":1}".into())
            .await
            .unwrap()
            .await
            .unwrap();
        assert!(again.duplicate, "the server did not flag the re-publish");
        assert_eq!(again.sequence, first.sequence);
        assert_eq!(stream.info().await.unwrap().state.messages, 1);

        let payment_consumer = pull_consumer(&stream, "payment", &orders).await;
        let delivered: Vec<_> = timeout(
            WAIT,
            payment_consumer
                .batch()
                .max_messages(10)
                .expires(Duration::from_secs(2))
                .messages()
                .await
                .unwrap()
                .collect::<Vec<_>>(),
        )
        .await
        .unwrap();
        assert_eq!(delivered.len(), 1, "the event was stored once");
        let message = delivered.into_iter().next().unwrap().unwrap();

        let publisher = js.clone();
        let child_subject = payments.clone();
        let (handled, child) =
            nats::handle_jetstream(&payment, &message, "payment", |handling| async move {
                let (headers, child) = nats::publish_child_jetstream_headers(
                    &handling,
                    Publish::new("PaymentSucceeded", &child_subject),
                );
                publisher
                    .publish_with_headers(child_subject.clone(), headers, "{}".into())
                    .await
                    .map_err(|e| PublishFailed(e.to_string()))?
                    .await
                    .map_err(|e| PublishFailed(e.to_string()))?;
                Ok::<_, PublishFailed>((handling.context().clone(), child))
            })
            .await
            .unwrap();
        message.ack().await.unwrap();

        assert_eq!(handled.trace_id, placed.trace_id);
        assert_eq!(handled.correlation_id, placed.correlation_id);
        assert_eq!(handled.event_id, placed.event_id);
        assert_eq!(handled.parent_span_id, Some(placed.span_id));

        // The child event is consumed by the next service in the flow.
        let shipping_consumer = pull_consumer(&stream, "shipping", &payments).await;
        let mut messages = shipping_consumer.messages().await.unwrap();
        let child_message = timeout(WAIT, messages.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let shipped = nats::handle_jetstream(
            &shipping,
            &child_message,
            "shipping",
            |handling| async move { Ok::<_, PublishFailed>(handling.context().clone()) },
        )
        .await
        .unwrap();
        child_message.ack().await.unwrap();
        assert_eq!(shipped.trace_id, placed.trace_id);
        assert_eq!(shipped.correlation_id, placed.correlation_id);
        assert_eq!(shipped.event_id, child.event_id);
        assert_eq!(shipped.causation_id.as_ref(), Some(&placed.event_id));
        assert_eq!(shipped.parent_span_id, Some(child.span_id));

        let records = lifecycle(&buffer);
        assert_eq!(
            stages(&records),
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
            assert_eq!(r.correlation_id.as_ref(), Some(&placed.correlation_id));
            assert_eq!(r.trace_id, Some(placed.trace_id));
            assert_eq!(r.messaging_system.as_deref(), Some("nats"));
        }
        assert_eq!(records[1].parent_span_id, Some(placed.span_id));
        assert_eq!(records[1].consumer_group.as_deref(), Some("payment"));
        assert_eq!(records[1].destination.as_deref(), Some(orders.as_str()));
        assert_eq!(records[2].causation_id.as_ref(), Some(&placed.event_id));
        assert_eq!(records[4].causation_id.as_ref(), Some(&placed.event_id));
        assert_eq!(records[4].event_id.as_ref(), Some(&child.event_id));
        assert_eq!(records[4].consumer_group.as_deref(), Some("shipping"));
    })
    .catch_unwind()
    .await;

    js.delete_stream(&stream_name).await.unwrap();
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_foreign_traceparent_alone_continues_its_trace_in_either_casing() {
    let buffer = MemorySink::new();
    let _guard = record_to(&buffer);
    let client = connect().await;
    let subject = format!("causeway.test.{}.foreign", unique());
    let mut sub = client.subscribe(subject.clone()).await.unwrap();
    client.flush().await.unwrap();

    let payment = Service::new("payment");
    for name in ["traceparent", "Traceparent"] {
        let mut headers = HeaderMap::new();
        headers.insert(name, FOREIGN_TRACEPARENT);
        client
            .publish_with_headers(subject.clone(), headers, "{}".into())
            .await
            .unwrap();
        let message = next(&mut sub).await;
        assert!(
            message.headers.as_ref().unwrap().get(name).is_some(),
            "the server kept the header name {name} as sent"
        );
        let handled = nats::handle(&payment, &message, "payment", |handling| async move {
            Ok::<_, PublishFailed>(handling.context().clone())
        })
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
        // With no correlation id on the wire, the flow is the trace.
        assert_eq!(
            handled.correlation_id.as_str(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
    }

    let records = lifecycle(&buffer);
    assert_eq!(records.len(), 4);
    for r in &records {
        assert_eq!(
            r.trace_id.map(|t| t.to_string()).as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        assert_eq!(r.service, "payment");
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_message_without_headers_is_handled_in_a_fresh_flow() {
    let buffer = MemorySink::new();
    let _guard = record_to(&buffer);
    let client = connect().await;
    let subject = format!("causeway.test.{}.bare", unique());
    let mut sub = client.subscribe(subject.clone()).await.unwrap();
    client.flush().await.unwrap();

    client
        .publish(subject.clone(), "{\"legacy\":true}".into())
        .await
        .unwrap();
    let message = next(&mut sub).await;
    assert!(
        message.headers.is_none(),
        "the message came without headers"
    );

    let payment = Service::new("payment");
    let handled = nats::handle(&payment, &message, "payment", |handling| async move {
        Ok::<_, PublishFailed>(handling.context().clone())
    })
    .await
    .unwrap();
    assert_eq!(
        payment.context_stats(),
        ContextStats {
            fresh_contexts: 1,
            invalid_values: 0
        }
    );
    assert_eq!(handled.causation_id, None);

    let records = lifecycle(&buffer);
    assert_eq!(
        stages(&records),
        vec![("payment", Stage::Received), ("payment", Stage::Handled)]
    );
    for r in &records {
        assert_eq!(r.trace_id, Some(handled.trace_id));
        assert_eq!(r.correlation_id.as_ref(), Some(&handled.correlation_id));
        assert_eq!(r.event_id.as_ref(), Some(&handled.event_id));
        assert_eq!(r.destination.as_deref(), Some(subject.as_str()));
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_message_jetstream_redelivers_after_a_nak_is_recorded_as_retried() {
    let buffer = MemorySink::new();
    let _guard = record_to(&buffer);
    let js = jetstream::new(connect().await);
    let run = unique();
    let stream_name = format!("CAUSEWAY_TEST_{run}");
    let stream = create_stream(
        &js,
        stream::Config {
            name: stream_name.clone(),
            subjects: vec![format!("causeway.test.{run}.>")],
            ..Default::default()
        },
    )
    .await;

    let outcome = AssertUnwindSafe(async {
        let orders = format!("causeway.test.{run}.orders");
        let (headers, placed) = nats::publish_jetstream_headers(
            &Service::new("order"),
            None,
            Publish::new("OrderPlaced", &orders),
        );
        js.publish_with_headers(orders.clone(), headers, "{}".into())
            .await
            .unwrap()
            .await
            .unwrap();
        let payment_consumer = pull_consumer(&stream, "payment", &orders).await;
        let mut messages = payment_consumer.messages().await.unwrap();
        let payment = Service::new("payment");

        // The first attempt fails and is nak-ed: JetStream delivers it again.
        let first = timeout(WAIT, messages.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(first.info().unwrap().delivered, 1);
        let failed = nats::handle_jetstream(&payment, &first, "payment", |_| async {
            Err::<(), _>(PublishFailed("card service down".into()))
        })
        .await;
        assert!(failed.is_err());
        first.ack_with(jetstream::AckKind::Nak(None)).await.unwrap();

        let second = timeout(WAIT, messages.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(second.info().unwrap().delivered, 2);
        nats::handle_jetstream(&payment, &second, "payment", |_| async {
            Ok::<_, PublishFailed>(())
        })
        .await
        .unwrap();
        second.ack().await.unwrap();

        let records = lifecycle(&buffer);
        assert_eq!(
            stages(&records),
            vec![
                ("order", Stage::Published),
                ("payment", Stage::Received),
                ("payment", Stage::Failed),
                ("payment", Stage::Received),
                ("payment", Stage::Retried),
                ("payment", Stage::Handled),
            ]
        );
        let retried = &records[4];
        assert_eq!(retried.event_id.as_ref(), Some(&placed.event_id));
        assert_eq!(retried.message, "retry attempt 1");
    })
    .catch_unwind()
    .await;

    js.delete_stream(&stream_name).await.unwrap();
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}
