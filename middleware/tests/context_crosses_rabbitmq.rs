//! The correlation context crosses a real RabbitMQ broker (127.0.0.1:5672,
//! guest/guest) through lapin: causeway to causeway, from a plain AMQP
//! client's native ids, from another OpenTelemetry implementation's
//! `traceparent`, past hostile header values, and again as `retried` when
//! the broker redelivers a message that failed. The broker must be
//! running: these tests fail, never skip, without it.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

use std::time::Duration;

use causeway_middleware::amqp::{self, PropertiesExtractor};
use causeway_middleware::{
    ContextStats, LIFECYCLE_TARGET, MemorySink, MessageContext, Publish, RecordLayer, Service,
    extract,
};
use causeway_model::{CorrelationId, EventId, Record, Stage};
use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicPublishOptions,
    ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use tracing::level_filters::LevelFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;

const BROKER: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
const WAIT: Duration = Duration::from_secs(20);

/// Records only lifecycle events: lapin's own tracing stays out.
fn record_lifecycle(buffer: &MemorySink) -> tracing::subscriber::DefaultGuard {
    let layer = RecordLayer::new("test", buffer.clone())
        .with_filter(Targets::new().with_target(LIFECYCLE_TARGET, LevelFilter::TRACE));
    tracing::subscriber::set_default(tracing_subscriber::registry().with(layer))
}

/// One connection and channel to the broker, and the queues it declared.
struct Rabbit {
    connection: Connection,
    channel: Channel,
    queues: Vec<String>,
}

impl Rabbit {
    async fn connect() -> Self {
        let connection = tokio::time::timeout(
            WAIT,
            Connection::connect(BROKER, ConnectionProperties::default()),
        )
        .await
        .expect("RabbitMQ did not answer on 127.0.0.1:5672")
        .expect("RabbitMQ must be running on 127.0.0.1:5672 (guest/guest)");
        let channel = connection.create_channel().await.unwrap();
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap();
        Self {
            connection,
            channel,
            queues: Vec::new(),
        }
    }

    /// A queue no other run can see; the broker drops it after a minute
    /// unused should the test die before deleting it.
    async fn fresh_queue(&mut self, purpose: &str) -> String {
        let name = format!("causeway-test-{purpose}-{}", EventId::generate());
        let mut arguments = FieldTable::default();
        arguments.insert("x-expires".into(), AMQPValue::LongInt(60_000));
        self.channel
            .queue_declare(
                name.as_str().into(),
                QueueDeclareOptions::default(),
                arguments,
            )
            .await
            .unwrap();
        self.queues.push(name.clone());
        name
    }

    /// Publishes to `queue` through the default exchange and waits for the
    /// broker's confirmation.
    async fn publish(&self, queue: &str, properties: BasicProperties) {
        let confirm = self
            .channel
            .basic_publish(
                "".into(),
                queue.into(),
                BasicPublishOptions::default(),
                br#"{"order":1234}"#,
                properties,
            )
            .await
            .unwrap();
        let confirmation = tokio::time::timeout(WAIT, confirm).await.unwrap().unwrap();
        assert!(confirmation.is_ack(), "broker refused the message");
    }

    /// Waits for the next message on `queue`, then stops consuming. The
    /// caller acknowledges it.
    async fn next_delivery(&self, queue: &str) -> Delivery {
        let tag = format!("causeway-test-{}", EventId::generate());
        let mut consumer = self
            .channel
            .basic_consume(
                queue.into(),
                tag.as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
        let delivery = tokio::time::timeout(WAIT, consumer.next())
            .await
            .unwrap_or_else(|_| panic!("nothing arrived on {queue}"))
            .expect("consumer ended")
            .unwrap();
        self.channel
            .basic_cancel(tag.as_str().into(), BasicCancelOptions::default())
            .await
            .unwrap();
        delivery
    }

    async fn close(self) {
        for queue in &self.queues {
            self.channel
                .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                .await
                .unwrap();
        }
        self.connection.close(200, "done".into()).await.unwrap();
    }
}

/// Handles one delivery as `payment` and returns the handler's context.
async fn handle_as_payment(delivery: &Delivery, queue: &str) -> MessageContext {
    handle_as(&Service::new("payment"), delivery, queue).await
}

async fn handle_as(service: &Service, delivery: &Delivery, queue: &str) -> MessageContext {
    // Published to the default exchange: the routing key, the queue, is
    // the destination.
    assert_eq!(delivery.routing_key.as_str(), queue);
    let context = amqp::handle(service, delivery, "payment", |handling| async move {
        Ok::<_, std::io::Error>(handling.context().clone())
    })
    .await
    .unwrap();
    delivery.ack(BasicAckOptions::default()).await.unwrap();
    context
}

fn lifecycle_of(records: &[Record], service: &str) -> Vec<Stage> {
    records
        .iter()
        .filter(|r| r.service == service)
        .map(|r| r.stage)
        .collect()
}

#[tokio::test(flavor = "current_thread")]
async fn a_consumer_continues_the_producers_flow_through_rabbitmq() {
    let buffer = MemorySink::new();
    let _guard = record_lifecycle(&buffer);
    let mut producer = Rabbit::connect().await;
    let consumer = Rabbit::connect().await;
    let orders = producer.fresh_queue("orders").await;
    let payments = producer.fresh_queue("payments").await;

    let correlation = CorrelationId::new(format!("order-{}", EventId::generate())).unwrap();
    let (properties, placed) = amqp::publish_headers(
        &Service::new("order"),
        None,
        Publish::new("OrderPlaced", &orders).correlation_id(correlation.clone()),
    );
    producer.publish(&orders, properties).await;

    let delivery = consumer.next_delivery(&orders).await;
    assert_eq!(
        delivery.properties.message_id().as_ref().unwrap().as_str(),
        placed.event_id.as_str(),
        "message_id is the event id"
    );
    let channel = consumer.channel.clone();
    let payments_queue = payments.clone();
    let child = amqp::handle(
        &Service::new("payment"),
        &delivery,
        "payment",
        |handling| async move {
            let (properties, child) = amqp::publish_child_headers(
                &handling,
                Publish::new("PaymentCharged", &payments_queue),
            );
            channel
                .basic_publish(
                    "".into(),
                    payments_queue.as_str().into(),
                    BasicPublishOptions::default(),
                    b"{}",
                    properties,
                )
                .await?
                .await?;
            Ok::<_, lapin::Error>(child)
        },
    )
    .await
    .unwrap();
    delivery.ack(BasicAckOptions::default()).await.unwrap();

    // The child event arrives with the flow's ids and its cause.
    let child_delivery = producer.next_delivery(&payments).await;
    let arrived = extract(&PropertiesExtractor(&child_delivery.properties));
    child_delivery
        .ack(BasicAckOptions::default())
        .await
        .unwrap();
    assert_eq!(arrived.causation_id.as_ref(), Some(&placed.event_id));
    assert_eq!(arrived.correlation_id, correlation);
    assert_eq!(arrived.trace_id, placed.trace_id);
    assert_eq!(arrived.event_id, child.event_id);

    let records = buffer.records().unwrap();
    assert_eq!(lifecycle_of(&records, "order"), [Stage::Published]);
    assert_eq!(
        lifecycle_of(&records, "payment"),
        [Stage::Received, Stage::Published, Stage::Handled]
    );
    for r in &records {
        assert_eq!(r.trace_id, Some(placed.trace_id), "{r:?}");
        assert_eq!(r.correlation_id.as_ref(), Some(&correlation), "{r:?}");
        assert_eq!(r.messaging_system.as_deref(), Some("rabbitmq"), "{r:?}");
    }
    let published = &records[0];
    assert_eq!(published.span_id, Some(placed.span_id));
    assert_eq!(published.destination.as_deref(), Some(orders.as_str()));
    let received = records.iter().find(|r| r.stage == Stage::Received).unwrap();
    assert_eq!(received.parent_span_id, Some(placed.span_id));
    assert_eq!(received.event_id.as_ref(), Some(&placed.event_id));
    assert_eq!(received.destination.as_deref(), Some(orders.as_str()));
    assert_eq!(received.consumer_group.as_deref(), Some("payment"));
    let child_published = records
        .iter()
        .find(|r| r.service == "payment" && r.stage == Stage::Published)
        .unwrap();
    assert_eq!(child_published.event_id.as_ref(), Some(&child.event_id));
    assert_eq!(
        child_published.causation_id.as_ref(),
        Some(&placed.event_id)
    );
    assert_eq!(child_published.parent_span_id, received.span_id);
    let handled = records.iter().find(|r| r.stage == Stage::Handled).unwrap();
    assert_eq!(handled.span_id, received.span_id);
    assert!(handled.duration_us.is_some());

    consumer.close().await;
    producer.close().await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_plain_amqp_message_is_handled_under_its_native_ids() {
    let buffer = MemorySink::new();
    let _guard = record_lifecycle(&buffer);
    let mut rabbit = Rabbit::connect().await;
    let queue = rabbit.fresh_queue("plain").await;

    let message_id = format!("msg-{}", EventId::generate());
    let correlation_id = format!("order-{}", EventId::generate());
    let properties = BasicProperties::default()
        .with_message_id(message_id.as_str().into())
        .with_correlation_id(correlation_id.as_str().into());
    rabbit.publish(&queue, properties).await;

    let delivery = rabbit.next_delivery(&queue).await;
    assert!(
        delivery.properties.headers().is_none(),
        "no headers were sent"
    );
    let context = handle_as_payment(&delivery, &queue).await;
    assert_eq!(context.event_id.as_str(), message_id);
    assert_eq!(context.correlation_id.as_str(), correlation_id);

    let records = buffer.records().unwrap();
    assert_eq!(
        lifecycle_of(&records, "payment"),
        [Stage::Received, Stage::Handled]
    );
    for r in &records {
        assert_eq!(r.event_id.as_ref().map(EventId::as_str), Some(&*message_id));
        assert_eq!(
            r.correlation_id.as_ref().map(CorrelationId::as_str),
            Some(&*correlation_id)
        );
    }
    rabbit.close().await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_traceparent_from_another_opentelemetry_implementation_continues_its_trace() {
    let buffer = MemorySink::new();
    let _guard = record_lifecycle(&buffer);
    let mut rabbit = Rabbit::connect().await;
    let queue = rabbit.fresh_queue("otel").await;

    let mut headers = FieldTable::default();
    headers.insert(
        "traceparent".into(),
        AMQPValue::LongString(LongString::from(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )),
    );
    rabbit
        .publish(&queue, BasicProperties::default().with_headers(headers))
        .await;

    let delivery = rabbit.next_delivery(&queue).await;
    let context = handle_as_payment(&delivery, &queue).await;
    assert_eq!(
        context.trace_id.to_string(),
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );

    let records = buffer.records().unwrap();
    assert_eq!(
        lifecycle_of(&records, "payment"),
        [Stage::Received, Stage::Handled]
    );
    for r in &records {
        assert_eq!(
            r.trace_id.map(|t| t.to_string()).as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        assert_eq!(
            r.parent_span_id.map(|s| s.to_string()).as_deref(),
            Some("00f067aa0ba902b7")
        );
        assert_ne!(
            r.span_id.map(|s| s.to_string()).as_deref(),
            Some("00f067aa0ba902b7"),
            "the handler has its own span"
        );
    }
    rabbit.close().await;
}

#[tokio::test(flavor = "current_thread")]
async fn hostile_header_values_are_not_taken_and_the_message_is_still_handled() {
    let buffer = MemorySink::new();
    let _guard = record_lifecycle(&buffer);
    let mut rabbit = Rabbit::connect().await;
    let queue = rabbit.fresh_queue("hostile").await;

    let huge = "e".repeat(10 * 1024);
    let mut headers = FieldTable::default();
    headers.insert(
        "correlation-id".into(),
        AMQPValue::LongString(LongString::from("order-1\r\nX-Injected: 1")),
    );
    headers.insert(
        "event-id".into(),
        AMQPValue::LongString(LongString::from(huge.as_str())),
    );
    rabbit
        .publish(&queue, BasicProperties::default().with_headers(headers))
        .await;

    let payment = Service::new("payment");
    let delivery = rabbit.next_delivery(&queue).await;
    let context = handle_as(&payment, &delivery, &queue).await;

    assert_ne!(context.correlation_id.as_str(), "order-1");
    assert!(!context.correlation_id.as_str().contains('\n'));
    assert_ne!(context.event_id.as_str(), huge);
    assert_eq!(
        payment.context_stats(),
        ContextStats {
            fresh_contexts: 1,
            invalid_values: 2
        },
        "the correlation id with CR LF and the oversized event id"
    );

    let records = buffer.records().unwrap();
    assert_eq!(
        lifecycle_of(&records, "payment"),
        [Stage::Received, Stage::Handled]
    );
    let text = buffer.text();
    assert!(!text.contains("X-Injected"), "a raw value was echoed");
    assert!(!text.contains(&huge[..600]), "a raw value was echoed");
    rabbit.close().await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_message_the_broker_redelivers_after_a_failure_is_recorded_as_retried() {
    let buffer = MemorySink::new();
    let _guard = record_lifecycle(&buffer);
    let mut rabbit = Rabbit::connect().await;
    let orders = rabbit.fresh_queue("redelivered").await;
    let (properties, placed) = amqp::publish_headers(
        &Service::new("order"),
        None,
        Publish::new("OrderPlaced", &orders),
    );
    rabbit.publish(&orders, properties).await;

    // The first attempt fails and is handed back to the broker.
    let first = rabbit.next_delivery(&orders).await;
    assert!(!first.redelivered);
    let failed = amqp::handle(&Service::new("payment"), &first, "payment", |_| async {
        Err::<(), _>(std::io::Error::other("card service down"))
    })
    .await;
    assert!(failed.is_err());
    first
        .nack(lapin::options::BasicNackOptions {
            multiple: false,
            requeue: true,
        })
        .await
        .unwrap();

    // The broker delivers it again, marked as such.
    let second = rabbit.next_delivery(&orders).await;
    assert!(second.redelivered, "RabbitMQ marks a requeued message");
    assert_eq!(amqp::redelivery(&first), None);
    assert!(amqp::redelivery(&second).is_some_and(|attempt| attempt >= 1));
    let context = handle_as_payment(&second, &orders).await;
    second.ack(BasicAckOptions::default()).await.unwrap();
    assert_eq!(context.correlation_id, placed.correlation_id);

    let records = buffer.records().unwrap();
    assert_eq!(
        lifecycle_of(&records, "payment"),
        [
            Stage::Received,
            Stage::Failed,
            Stage::Received,
            Stage::Retried,
            Stage::Handled
        ]
    );
    let retried = records.iter().find(|r| r.stage == Stage::Retried).unwrap();
    assert_eq!(retried.event_id.as_ref(), Some(&placed.event_id));
    assert_eq!(
        retried.correlation_id.as_ref(),
        Some(&placed.correlation_id)
    );
    rabbit.close().await;
}
