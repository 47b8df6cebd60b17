//! Where the saga's events travel: the in-process bus (no external
//! service), RabbitMQ or NATS JetStream, chosen at start. The business code
//! in `lib.rs` only publishes through [`Transport::publish`] and consumes
//! through [`Transport::consume`]; each transport gives the same
//! guarantees in its own terms:
//!
//! - a handler error that [`SagaError::retryable`] says may pass is
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
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use causeway_middleware::{Bus, BusMessage, Consume, Handling, MessageContext, Publish, Service};
use serde_json::Value;
use tokio::task::JoinHandle;

use crate::SagaError;

/// Deliveries one consumer handles at once (and, on a broker, holds
/// unacknowledged): a slow one does not hold up the rest.
pub(crate) const CONCURRENCY: usize = 32;

/// Deliveries of one message before it is dead-lettered.
pub const MAX_DELIVERIES: u32 = 4;

/// The topic (routing key, subject suffix) dead letters go to in process,
/// and the service that records them everywhere.
pub const DEAD_LETTERS: &str = "dead-letters";

/// What a consumer runs for each event: the handling (to publish children,
/// record compensations) and the payload.
pub type Step = Arc<
    dyn Fn(Handling, Value) -> Pin<Box<dyn Future<Output = Result<Ack, SagaError>> + Send>>
        + Send
        + Sync,
>;

/// How a handled event is settled with the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ack {
    /// Acknowledged: the broker forgets it.
    Done,
    /// The consumer "crashed" after handling and before acknowledging:
    /// the broker delivers the event again.
    Lost,
}

/// One consumer: a service's consumer group on a topic, what it runs, and
/// how it treats deliveries.
#[derive(Clone)]
pub struct Consumer {
    pub service: Service,
    pub topic: &'static str,
    pub group: &'static str,
    pub step: Step,
    /// Idempotent (an inbox of handled event ids): an event delivered again
    /// after it was handled is acknowledged without being handled again.
    pub idempotent: bool,
    /// Messages this consumer drops unread, as a consumer that is down
    /// would (the scenario `stuck`): nothing of them is recorded.
    pub drops: Option<fn(&Value) -> bool>,
    /// Messages whose context this consumer drops, reading only their
    /// event id (the scenario `context_lost`): it handles them in a flow of
    /// their own.
    pub loses_context: Option<fn(&Value) -> bool>,
    /// How long this consumer stalls before it takes a message, as an
    /// instance paused with the message already fetched would (the
    /// scenario `out_of_order`).
    pub stalls: Option<fn(&Value) -> Option<std::time::Duration>>,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("service", &self.service.name())
            .field("topic", &self.topic)
            .field("group", &self.group)
            .field("idempotent", &self.idempotent)
            .finish_non_exhaustive()
    }
}

/// The event ids an idempotent consumer handled, bounded.
#[derive(Debug, Default)]
pub(crate) struct Inbox(std::sync::Mutex<std::collections::HashSet<String>>);

/// Most event ids an inbox remembers before it starts afresh.
const MAX_INBOX: usize = 100_000;

impl Inbox {
    fn seen(&self, event_id: &str) -> bool {
        let seen = self.0.lock().unwrap_or_else(|e| e.into_inner());
        seen.contains(event_id)
    }

    fn remember(&self, event_id: String) {
        let mut seen = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if seen.len() >= MAX_INBOX {
            seen.clear();
        }
        seen.insert(event_id);
    }
}

/// What the transport does with a delivery once the consumer is through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Settle {
    Ack,
    /// Deliver again (nack with requeue, nak).
    Again,
}

/// Runs `consumer` on one delivery (its headers in `carrier`, read before
/// the future starts; `redelivery` the broker's count) and says how to
/// settle it.
pub(crate) fn deliver(
    consumer: &Arc<Consumer>,
    inbox: &Arc<Inbox>,
    carrier: &dyn causeway_middleware::Carrier,
    payload: Value,
    system: &str,
    redelivery: Option<u32>,
) -> impl Future<Output = Settle> + Send + 'static {
    let (consumer, inbox) = (Arc::clone(consumer), Arc::clone(inbox));
    let event_id = consumer.idempotent.then(|| {
        causeway_middleware::extract(carrier)
            .event_id
            .as_str()
            .to_owned()
    });
    let dropped = consumer.drops.is_some_and(|drops| drops(&payload));
    let seen = event_id.as_deref().is_some_and(|id| inbox.seen(id));
    let stall = consumer.stalls.and_then(|stalls| stalls(&payload));
    // What a consumer that drops the context still reads: the message id.
    let bare: HashMap<String, String> = if consumer.loses_context.is_some_and(|f| f(&payload)) {
        let id = causeway_middleware::extract(carrier).event_id;
        HashMap::from([("event-id".to_owned(), id.as_str().to_owned())])
    } else {
        HashMap::new()
    };
    let carrier: &dyn causeway_middleware::Carrier = if bare.is_empty() { carrier } else { &bare };
    let handled = (!dropped && !seen).then(|| {
        let consume = Consume::new(consumer.topic, consumer.group)
            .system(system)
            .redelivery(redelivery);
        let step = consumer.step.clone();
        consumer
            .service
            .handle(carrier, consume, move |h| step(h, payload))
    });
    async move {
        if let Some(stall) = stall {
            tokio::time::sleep(stall).await;
        }
        let Some(handled) = handled else {
            if seen {
                tracing::info!(
                    topic = consumer.topic,
                    "event handled before; acknowledged again"
                );
            }
            return Settle::Ack;
        };
        match handled.await {
            Ok(ack) => {
                if let Some(id) = event_id {
                    inbox.remember(id);
                }
                match ack {
                    Ack::Done => Settle::Ack,
                    Ack::Lost => Settle::Again,
                }
            }
            Err(error) if error.retryable() => Settle::Again,
            Err(_) => Settle::Ack,
        }
    }
}

/// Why a transport could not start.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("unknown broker URL {0:?}: use amqp://... or nats://... (or none for in process)")]
    UnknownScheme(String),
    #[error("this build has no {0} support: build with `--features {0}`")]
    NotBuilt(&'static str),
    #[error("{0}")]
    Broker(String),
}

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

/// Handles a dead letter as the dead-letter service: `received`, then
/// `dead_lettered` with the reason, in the flow its headers carry. The
/// headers are read before the future starts.
pub(crate) fn record_dead_letter(
    service: &Service,
    carrier: &dyn causeway_middleware::Carrier,
    destination: &str,
    reason: Option<String>,
) -> impl Future<Output = ()> + Send + use<> {
    let reason = reason.unwrap_or_else(|| format!("delivered {MAX_DELIVERIES} times"));
    let handled = service.handle(
        carrier,
        Consume::new(destination, DEAD_LETTERS),
        |h| async move {
            h.dead_lettered(&reason);
            Ok::<_, SagaError>(())
        },
    );
    async move {
        let _ = handled.await;
    }
}

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
