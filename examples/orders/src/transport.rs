//! Where the saga's events travel: the in-process bus (no external
//! service), RabbitMQ or NATS JetStream, chosen at start. The business code
//! in `lib.rs` only publishes through [`Transport::publish`] and consumes
//! through [`Transport::consume`]; each transport gives the same
//! guarantees in its own terms:
//!
//! - a handler error that
//!   [`SagaError::retryable`](crate::SagaError::retryable) says may pass is
//!   retried by the transport (RabbitMQ: nack and requeue on a quorum
//!   queue; JetStream: nak; in process: handled again), each attempt
//!   recorded as `retried`;
//! - past [`MAX_DELIVERIES`] the message is dead-lettered by the broker's
//!   own mechanism (RabbitMQ: the queue's delivery limit and dead-letter
//!   exchange; JetStream: `max_deliver` and its advisory; in process: the
//!   `dead-letters` topic), and the dead-letter consumer records it as
//!   `dead_lettered` in the same flow, the context read from the dead
//!   letter's own headers;
//! - an error that is final (a declined card) is acknowledged: it stays a
//!   `failed` step.

use std::collections::HashMap;
use std::sync::Arc;

use causeway_middleware::{Bus, BusMessage, Handling, MessageContext, Publish, Service};
use serde_json::Value;
use tokio::task::JoinHandle;

use crate::delivery::{
    CONCURRENCY, Consumer, DEAD_LETTERS, Inbox, MAX_DELIVERIES, Settle, TransportError, deliver,
    record_dead_letter,
};

/// The transport every service of the saga uses.
#[derive(Clone)]
pub struct Transport(Inner);

#[derive(Clone)]
enum Inner {
    InProc(Bus),
    #[cfg(feature = "amqp")]
    Amqp(Box<crate::amqp::Amqp>),
    #[cfg(feature = "nats")]
    Nats(Box<crate::nats::Nats>),
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl Transport {
    /// The transport `broker` names (`amqp://...`, `nats://...`), or the
    /// in-process bus for `None`. `namespace` prefixes every exchange,
    /// queue, stream and subject, so that runs do not meet.
    pub async fn connect(broker: Option<&str>, namespace: &str) -> Result<Self, TransportError> {
        match broker {
            None => Ok(Self(Inner::InProc(Bus::default()))),
            Some(url) if url.starts_with("amqp://") || url.starts_with("amqps://") => {
                #[cfg(feature = "amqp")]
                {
                    let amqp = crate::amqp::Amqp::connect(url, namespace).await?;
                    Ok(Self(Inner::Amqp(Box::new(amqp))))
                }
                #[cfg(not(feature = "amqp"))]
                {
                    let _ = namespace;
                    Err(TransportError::NotBuilt("amqp"))
                }
            }
            Some(url) if url.starts_with("nats://") => {
                #[cfg(feature = "nats")]
                {
                    let nats = crate::nats::Nats::connect(url, namespace).await?;
                    Ok(Self(Inner::Nats(Box::new(nats))))
                }
                #[cfg(not(feature = "nats"))]
                {
                    let _ = namespace;
                    Err(TransportError::NotBuilt("nats"))
                }
            }
            Some(other) => Err(TransportError::UnknownScheme(other.to_owned())),
        }
    }

    /// Where a client outside this process publishes an `OrderPlaced`
    /// (the contract of `examples/README.md`), if it can.
    pub fn order_address(&self) -> Option<String> {
        match &self.0 {
            Inner::InProc(_) => None,
            #[cfg(feature = "amqp")]
            Inner::Amqp(amqp) => Some(amqp.order_address()),
            #[cfg(feature = "nats")]
            Inner::Nats(nats) => Some(nats.order_address()),
        }
    }

    /// `inproc`, `rabbitmq` or `nats`.
    pub fn name(&self) -> &'static str {
        match &self.0 {
            Inner::InProc(_) => "inproc",
            #[cfg(feature = "amqp")]
            Inner::Amqp(_) => "rabbitmq",
            #[cfg(feature = "nats")]
            Inner::Nats(_) => "nats",
        }
    }

    /// Publishes `event` with `payload` from `service`, in the flow of
    /// `parent` (the event being handled) or a new one; writes the
    /// `published` record.
    pub async fn publish(
        &self,
        service: &Service,
        parent: Option<&MessageContext>,
        event: Publish<'_>,
        payload: &Value,
    ) -> Result<MessageContext, TransportError> {
        match &self.0 {
            Inner::InProc(bus) => {
                let mut headers = HashMap::new();
                let topic = event.destination.to_owned();
                let context = service.publish(parent, event, &mut headers);
                let message = BusMessage {
                    headers,
                    payload: payload.clone(),
                };
                bus.publish(&topic, message).await;
                Ok(context)
            }
            #[cfg(feature = "amqp")]
            Inner::Amqp(amqp) => amqp.publish(service, parent, event, payload).await,
            #[cfg(feature = "nats")]
            Inner::Nats(nats) => nats.publish(service, parent, event, payload).await,
        }
    }

    /// Publishes a child of the event being handled.
    pub async fn publish_child(
        &self,
        handling: &Handling,
        event: Publish<'_>,
        payload: &Value,
    ) -> Result<MessageContext, TransportError> {
        self.publish(handling.service(), Some(handling.context()), event, payload)
            .await
    }

    /// Runs `consumer` for every event on its topic, until the transport
    /// goes away.
    pub async fn consume(&self, consumer: Consumer) -> Result<JoinHandle<()>, TransportError> {
        match &self.0 {
            Inner::InProc(bus) => inproc_consume(bus, consumer),
            #[cfg(feature = "amqp")]
            Inner::Amqp(amqp) => amqp.consume(consumer).await,
            #[cfg(feature = "nats")]
            Inner::Nats(nats) => nats.consume(consumer).await,
        }
    }

    /// Starts the consumer of dead letters: it records each as
    /// `dead_lettered`, in its flow.
    pub async fn consume_dead_letters(&self) -> Result<JoinHandle<()>, TransportError> {
        match &self.0 {
            Inner::InProc(bus) => {
                let mut dead = bus
                    .subscribe(DEAD_LETTERS, DEAD_LETTERS)
                    .map_err(|e| TransportError::Broker(e.to_string()))?;
                Ok(tokio::spawn(async move {
                    let service = Service::new(DEAD_LETTERS);
                    while let Some(message) = dead.recv().await {
                        let reason = message.headers.get(DEAD_REASON).cloned();
                        record_dead_letter(&service, &message.headers, DEAD_LETTERS, reason).await;
                    }
                }))
            }
            #[cfg(feature = "amqp")]
            Inner::Amqp(amqp) => amqp.consume_dead_letters().await,
            #[cfg(feature = "nats")]
            Inner::Nats(nats) => nats.consume_dead_letters().await,
        }
    }
}

/// `messaging.system` of the in-process bus.
const INPROC: &str = "inproc";

/// The in-process header naming why a message was dead-lettered.
const DEAD_REASON: &str = "x-dead-reason";

/// The in-process consumer: delivers again what is to be delivered again
/// (a retryable error, a lost acknowledgement) up to [`MAX_DELIVERIES`]
/// deliveries, then sends it to [`DEAD_LETTERS`] with its headers.
fn inproc_consume(bus: &Bus, consumer: Consumer) -> Result<JoinHandle<()>, TransportError> {
    let mut subscription = bus
        .subscribe(consumer.topic, consumer.group)
        .map_err(|e| TransportError::Broker(e.to_string()))?;
    let bus = bus.clone();
    let consumer = Arc::new(consumer);
    Ok(tokio::spawn(async move {
        let inbox = Arc::new(Inbox::default());
        let slots = Arc::new(tokio::sync::Semaphore::new(CONCURRENCY));
        while let Some(message) = subscription.recv().await {
            let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
                return;
            };
            let (consumer, inbox, bus) = (consumer.clone(), inbox.clone(), bus.clone());
            tokio::spawn(async move {
                let _slot = slot;
                for delivery in 1..=MAX_DELIVERIES {
                    let redelivery = (delivery > 1).then_some(delivery - 1);
                    let payload = message.payload.clone();
                    let settle = deliver(
                        &consumer,
                        &inbox,
                        &message.headers,
                        payload,
                        INPROC,
                        redelivery,
                    )
                    .await;
                    if settle == Settle::Ack {
                        break;
                    }
                    if delivery == MAX_DELIVERIES {
                        let mut headers = message.headers.clone();
                        headers.insert(
                            DEAD_REASON.to_owned(),
                            format!("{}: {MAX_DELIVERIES} deliveries", consumer.topic),
                        );
                        let dead = BusMessage {
                            headers,
                            payload: message.payload.clone(),
                        };
                        bus.publish(DEAD_LETTERS, dead).await;
                    }
                }
            });
        }
    }))
}
