//! The orchestrated saga: the same business steps as the choreographed
//! one, driven by an orchestrator. It takes `OrderPlaced`, sends each
//! service a command (`ReserveStock`, `ChargeCard`, `ShipOrder`,
//! `CompleteOrder`; after a decline `ReleaseStock` and `CancelOrder`) on a
//! queue of its own, and takes the service's reply on [`REPLIES`]. A reply
//! is matched to its command by id (request-reply): its causation id is
//! the command's event id. A reply to no command the orchestrator waits
//! for (a duplicate, a late one) is recorded as handled and changes
//! nothing.
//!
//! ```text
//! order        --OrderPlaced-->       orchestrator --ReserveStock--> inventory --StockReserved--> orchestrator
//! orchestrator --ChargeCard-->        payment      --PaymentCaptured | PaymentDeclined--> orchestrator
//! orchestrator --ShipOrder-->         shipping     --OrderShipped--> orchestrator --CompleteOrder--> order
//! orchestrator --ReleaseStock, CancelOrder--> inventory, order   (after PaymentDeclined)
//! ```
//!
//! Its state (the commands awaiting a reply) is in memory: an example, not
//! a durable saga log.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use causeway_middleware::{Handling, Publish, Service};
use causeway_model::EventId;
use serde_json::Value;
use tokio::task::JoinHandle;

use crate::{Consumer, SagaError, Step, Transport, TransportError, step, topics};

/// The topic the services reply on, which only the orchestrator takes.
pub const REPLIES: &str = "replies.saga";
/// The orchestrator's service and consumer group.
pub const ORCHESTRATOR: &str = "orchestrator";

/// The command topics, one per step.
pub mod commands {
    pub const RESERVE_STOCK: &str = "commands.reserve-stock";
    pub const CHARGE_CARD: &str = "commands.charge-card";
    pub const SHIP_ORDER: &str = "commands.ship-order";
    pub const COMPLETE_ORDER: &str = "commands.complete-order";
    pub const RELEASE_STOCK: &str = "commands.release-stock";
    pub const CANCEL_ORDER: &str = "commands.cancel-order";
}

/// Most commands awaiting a reply that the orchestrator keeps.
const MAX_PENDING: usize = 100_000;

/// The commands sent and not yet answered, by their event id.
#[derive(Debug, Default)]
struct Pending(Mutex<HashMap<EventId, &'static str>>);

impl Pending {
    fn sent(&self, command: EventId, name: &'static str) {
        let mut pending = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if pending.len() >= MAX_PENDING {
            pending.clear();
        }
        pending.insert(command, name);
    }

    /// The command `reply` answers, taken out: `None` if none waits.
    fn answered(&self, reply: &Handling) -> Option<&'static str> {
        let cause = reply.context().causation_id.as_ref()?;
        let mut pending = self.0.lock().unwrap_or_else(|e| e.into_inner());
        pending.remove(cause)
    }
}

/// Sends `command` (an event of type `name`) on `topic`, caused by what
/// `h` handles, and remembers it.
async fn send(
    t: &Transport,
    h: &Handling,
    pending: &Pending,
    name: &'static str,
    topic: &'static str,
    payload: &Value,
) -> Result<(), SagaError> {
    let context = t
        .publish_child(h, Publish::new(name, topic), payload)
        .await?;
    pending.sent(context.event_id, name);
    Ok(())
}

/// On `OrderPlaced`: the first command.
async fn placed(
    t: Transport,
    h: Handling,
    payload: Value,
    pending: Arc<Pending>,
) -> Result<(), SagaError> {
    send(
        &t,
        &h,
        &pending,
        "ReserveStock",
        commands::RESERVE_STOCK,
        &payload,
    )
    .await
}

/// On a reply: the next command(s), if it answers one that waits.
async fn replied(
    t: Transport,
    h: Handling,
    payload: Value,
    pending: Arc<Pending>,
) -> Result<(), SagaError> {
    let reply = h
        .context()
        .event_type
        .as_deref()
        .unwrap_or_default()
        .to_owned();
    let Some(command) = pending.answered(&h) else {
        tracing::info!(%reply, "a reply to no command that waits (a duplicate or a late one); ignored");
        return Ok(());
    };
    tracing::info!(command, %reply, "reply matched to its command");
    match reply.as_str() {
        "StockReserved" => {
            send(
                &t,
                &h,
                &pending,
                "ChargeCard",
                commands::CHARGE_CARD,
                &payload,
            )
            .await
        }
        "PaymentCaptured" => {
            send(
                &t,
                &h,
                &pending,
                "ShipOrder",
                commands::SHIP_ORDER,
                &payload,
            )
            .await
        }
        "OrderShipped" => {
            send(
                &t,
                &h,
                &pending,
                "CompleteOrder",
                commands::COMPLETE_ORDER,
                &payload,
            )
            .await
        }
        "PaymentDeclined" => {
            send(
                &t,
                &h,
                &pending,
                "ReleaseStock",
                commands::RELEASE_STOCK,
                &payload,
            )
            .await?;
            send(
                &t,
                &h,
                &pending,
                "CancelOrder",
                commands::CANCEL_ORDER,
                &payload,
            )
            .await
        }
        other => Err(SagaError::BadPayload(format!("no next step after {other}"))),
    }
}

/// Starts the orchestrator's two consumers: `OrderPlaced` and the replies.
pub(crate) async fn start(transport: &Transport) -> Result<Vec<JoinHandle<()>>, TransportError> {
    let pending = Arc::new(Pending::default());
    let on_placed = {
        let pending = pending.clone();
        step(transport, false, move |t, h, p| {
            placed(t, h, p, pending.clone())
        })
    };
    let on_reply: Step = step(transport, false, move |t, h, p| {
        replied(t, h, p, pending.clone())
    });
    let mut tasks = Vec::new();
    for (topic, step) in [(topics::ORDER_PLACED, on_placed), (REPLIES, on_reply)] {
        let consumer = Consumer {
            service: Service::new(ORCHESTRATOR),
            topic,
            group: ORCHESTRATOR,
            step,
            idempotent: false,
            drops: None,
            loses_context: None,
            stalls: None,
        };
        tasks.push(transport.consume(consumer).await?);
    }
    Ok(tasks)
}
