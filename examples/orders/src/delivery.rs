//! What every transport shares: the consumer a service runs on a topic
//! ([`Consumer`], its [`Step`] and how it treats deliveries), how one
//! delivery is run and settled ([`deliver`]: dropped, stalled, handled
//! once by an idempotent consumer, handled again, dead-lettered), and the
//! dead-letter consumer's record. `transport.rs` and the broker modules
//! build on it; it imports none of them.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use causeway_middleware::{Consume, Handling, Service};
use serde_json::Value;

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
