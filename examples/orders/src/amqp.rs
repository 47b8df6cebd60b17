//! The saga over RabbitMQ: a topic exchange `<ns>` routing by topic, a
//! quorum queue `<ns>.<group>.<topic>` per consumer group and topic with
//! a delivery limit and the dead-letter exchange `<ns>.dlx`; a retryable
//! failure is nack-ed back onto its queue, and once the queue has
//! delivered a message [`MAX_DELIVERIES`] times it dead-letters it into
//! `<ns>.dead-letters`, whose consumer records it. Queues expire an hour
//! after their last consumer leaves.

use causeway_middleware::amqp::{PropertiesExtractor, publish_headers, redelivery};
use causeway_middleware::{MessageContext, Publish, Service};
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions,
    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Connection, ConnectionProperties, ExchangeKind};
use serde_json::Value;
use tokio::task::JoinHandle;

use crate::delivery::{
    CONCURRENCY, Consumer, DEAD_LETTERS, Inbox, MAX_DELIVERIES, Settle, TransportError, deliver,
    record_dead_letter,
};

const SYSTEM: &str = "rabbitmq";
/// How long an unused queue lives, in milliseconds.
const QUEUE_EXPIRES_MS: i64 = 3_600_000;
/// Deliveries each consumer takes before acknowledging.
const PREFETCH: u16 = CONCURRENCY as u16;

fn broker(error: impl std::fmt::Display) -> TransportError {
    TransportError::Broker(format!("rabbitmq: {error}"))
}

/// A RabbitMQ connection, a channel to publish on, and the namespace of
/// its exchanges and queues.
#[derive(Clone)]
pub(crate) struct Amqp {
    connection: std::sync::Arc<Connection>,
    publisher: Channel,
    namespace: String,
}

impl Amqp {
    /// Connects and declares the exchanges and the dead-letter queue.
    pub(crate) async fn connect(url: &str, namespace: &str) -> Result<Self, TransportError> {
        let connection = Connection::connect(url, ConnectionProperties::default())
            .await
            .map_err(broker)?;
        let publisher = connection.create_channel().await.map_err(broker)?;
        let amqp = Self {
            connection: std::sync::Arc::new(connection),
            publisher,
            namespace: namespace.to_owned(),
        };
        let options = ExchangeDeclareOptions {
            auto_delete: true,
            ..ExchangeDeclareOptions::default()
        };
        for (name, kind) in [
            (amqp.namespace.clone(), ExchangeKind::Topic),
            (amqp.dlx(), ExchangeKind::Fanout),
        ] {
            amqp.publisher
                .exchange_declare(name.as_str().into(), kind, options, FieldTable::default())
                .await
                .map_err(broker)?;
        }
        let dead = amqp.dead_letter_queue();
        amqp.publisher
            .queue_declare(
                dead.as_str().into(),
                QueueDeclareOptions::default(),
                expiring(),
            )
            .await
            .map_err(broker)?;
        amqp.publisher
            .queue_bind(
                dead.as_str().into(),
                amqp.dlx().as_str().into(),
                "".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(broker)?;
        Ok(amqp)
    }

    pub(crate) fn order_address(&self) -> String {
        format!(
            "RabbitMQ exchange {} routing key {}",
            self.namespace,
            crate::topics::ORDER_PLACED
        )
    }

    fn dlx(&self) -> String {
        format!("{}.dlx", self.namespace)
    }

    fn dead_letter_queue(&self) -> String {
        format!("{}.{DEAD_LETTERS}", self.namespace)
    }

    /// Publishes to the topic exchange, routed by the event's topic, and
    /// waits for the broker's confirmation.
    pub(crate) async fn publish(
        &self,
        service: &Service,
        parent: Option<&MessageContext>,
        event: Publish<'_>,
        payload: &Value,
    ) -> Result<MessageContext, TransportError> {
        let routing_key = event.destination.to_owned();
        let (properties, context) = publish_headers(service, parent, event);
        let properties = properties
            .with_content_type("application/json".into())
            .with_delivery_mode(2);
        let body = serde_json::to_vec(payload).map_err(broker)?;
        self.publisher
            .basic_publish(
                self.namespace.as_str().into(),
                routing_key.as_str().into(),
                BasicPublishOptions::default(),
                &body,
                properties,
            )
            .await
            .map_err(broker)?
            .await
            .map_err(broker)?;
        Ok(context)
    }

    pub(crate) async fn consume(
        &self,
        consumer: Consumer,
    ) -> Result<JoinHandle<()>, TransportError> {
        let channel = self.connection.create_channel().await.map_err(broker)?;
        let queue = format!("{}.{}.{}", self.namespace, consumer.group, consumer.topic);
        let mut arguments = expiring();
        arguments.insert(
            "x-queue-type".into(),
            AMQPValue::LongString("quorum".into()),
        );
        arguments.insert(
            "x-delivery-limit".into(),
            AMQPValue::LongInt(i32::try_from(MAX_DELIVERIES - 1).unwrap_or(i32::MAX)),
        );
        arguments.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString(self.dlx().as_str().into()),
        );
        let durable = QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        };
        channel
            .queue_declare(queue.as_str().into(), durable, arguments)
            .await
            .map_err(broker)?;
        channel
            .queue_bind(
                queue.as_str().into(),
                self.namespace.as_str().into(),
                consumer.topic.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(broker)?;
        channel
            .basic_qos(PREFETCH, BasicQosOptions::default())
            .await
            .map_err(broker)?;
        let mut deliveries = channel
            .basic_consume(
                queue.as_str().into(),
                consumer.group.into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(broker)?;
        let consumer = std::sync::Arc::new(consumer);
        Ok(tokio::spawn(async move {
            // The channel lives as long as its consumer.
            let _channel = channel;
            let inbox = std::sync::Arc::new(Inbox::default());
            while let Some(Ok(delivery)) = deliveries.next().await {
                let payload = serde_json::from_slice(&delivery.data).unwrap_or(Value::Null);
                let settle = deliver(
                    &consumer,
                    &inbox,
                    &PropertiesExtractor(&delivery.properties),
                    payload,
                    SYSTEM,
                    redelivery(&delivery),
                );
                // At most PREFETCH deliveries are out at once: the broker
                // holds back the rest until these are settled.
                tokio::spawn(async move {
                    let settled = match settle.await {
                        Settle::Again => {
                            let requeue = BasicNackOptions {
                                requeue: true,
                                ..BasicNackOptions::default()
                            };
                            delivery.nack(requeue).await
                        }
                        Settle::Ack => delivery.ack(BasicAckOptions::default()).await,
                    };
                    if let Err(error) = settled {
                        tracing::warn!(%error, "settling a RabbitMQ delivery failed");
                    }
                });
            }
        }))
    }

    /// Consumes the dead-letter queue: each message, its context in its
    /// own headers, is recorded as dead-lettered with RabbitMQ's reason.
    pub(crate) async fn consume_dead_letters(&self) -> Result<JoinHandle<()>, TransportError> {
        let channel = self.connection.create_channel().await.map_err(broker)?;
        let mut deliveries = channel
            .basic_consume(
                self.dead_letter_queue().as_str().into(),
                DEAD_LETTERS.into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(broker)?;
        Ok(tokio::spawn(async move {
            let _channel = channel;
            let service = Service::new(DEAD_LETTERS);
            while let Some(Ok(delivery)) = deliveries.next().await {
                let topic = delivery.routing_key.as_str().to_owned();
                let reason = first_death(&delivery.properties).map(|(queue, why)| {
                    format!("{queue}: {why} after {MAX_DELIVERIES} deliveries")
                });
                record_dead_letter(
                    &service,
                    &PropertiesExtractor(&delivery.properties),
                    &topic,
                    reason,
                )
                .await;
                if let Err(error) = delivery.ack(BasicAckOptions::default()).await {
                    tracing::warn!(%error, "acknowledging a dead letter failed");
                }
            }
        }))
    }
}

/// Queue arguments: gone an hour after the last consumer left.
fn expiring() -> FieldTable {
    let mut arguments = FieldTable::default();
    arguments.insert("x-expires".into(), AMQPValue::LongLongInt(QUEUE_EXPIRES_MS));
    arguments
}

/// RabbitMQ's `x-first-death-queue` and `x-first-death-reason` headers.
fn first_death(properties: &lapin::BasicProperties) -> Option<(String, String)> {
    let headers = properties.headers().as_ref()?.inner();
    let text = |key: &str| match headers.get(key)? {
        AMQPValue::LongString(s) => Some(s.to_string()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    };
    Some((text("x-first-death-queue")?, text("x-first-death-reason")?))
}
