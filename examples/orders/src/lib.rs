//! An order saga, choreographed over the in-process bus and instrumented
//! with causeway: the flow of seed text 000 (order placed -> payment ->
//! inventory -> shipping), where each service only reacts to events.
//!
//! ```text
//! order    --OrderPlaced-->      [orders]     --> payment
//! payment  --PaymentCaptured-->  [payments]   --> inventory
//! inventory--StockReserved-->    [inventory]  --> shipping
//! shipping --OrderShipped-->     [shipments]  --> order (completes)
//! ```
//!
//! Payment declines orders above [`PAYMENT_LIMIT_CENTS`]: its handler fails
//! and the flow stops there, as a failed flow. The services write records
//! only through the middleware; where they go is the caller's subscriber.

use causeway_middleware::{
    Bus, BusError, BusMessage, Consume, Handling, MessageContext, Publish, Service,
};
use causeway_model::CorrelationId;
use serde_json::{Value, json};
use tokio::task::JoinSet;

/// Orders above this amount are declined by payment.
pub const PAYMENT_LIMIT_CENTS: u64 = 50_000;

/// The services of the saga, in flow order.
pub const SERVICES: [&str; 4] = ["order", "payment", "inventory", "shipping"];

/// An order as the order service places it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    pub id: u64,
    pub amount_cents: u64,
    pub items: u32,
}

impl Order {
    /// The flow's correlation id: `order-<id>`, so "what happened to order
    /// 1234" is a look-up of `order-1234`.
    pub fn correlation_id(&self) -> CorrelationId {
        CorrelationId::new(format!("order-{}", self.id))
            .unwrap_or_else(|_| CorrelationId::generate())
    }
}

/// Why a step failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SagaError {
    CardDeclined { amount_cents: u64 },
    BadPayload(String),
}

impl std::fmt::Display for SagaError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SagaError::CardDeclined { amount_cents } => {
                write!(
                    f,
                    "card declined for {amount_cents} cents (limit {PAYMENT_LIMIT_CENTS})"
                )
            }
            SagaError::BadPayload(why) => write!(f, "bad payload: {why}"),
        }
    }
}

fn field(payload: &Value, name: &str) -> Result<u64, SagaError> {
    payload[name]
        .as_u64()
        .ok_or_else(|| SagaError::BadPayload(format!("missing {name}")))
}

/// A little simulated work, different per order, so timings look real.
async fn work(order_id: u64, base_ms: u64) {
    tokio::time::sleep(std::time::Duration::from_millis(base_ms + order_id % 7)).await;
}

async fn emit(bus: &Bus, handling: &Handling, event_type: &str, topic: &str, payload: Value) {
    let mut headers = std::collections::HashMap::new();
    handling.publish(Publish::new(event_type, topic), &mut headers);
    bus.publish(topic, BusMessage { headers, payload }).await;
}

/// Places an order: the order service publishes `OrderPlaced`.
pub async fn place_order(bus: &Bus, order: &Order) -> MessageContext {
    let service = Service::new("order");
    let mut headers = std::collections::HashMap::new();
    let context = service.publish(
        None,
        Publish::new("OrderPlaced", "orders").correlation_id(order.correlation_id()),
        &mut headers,
    );
    let payload =
        json!({ "order_id": order.id, "amount_cents": order.amount_cents, "items": order.items });
    bus.publish("orders", BusMessage { headers, payload }).await;
    context
}

/// Subscribes every service and runs them until the bus is dropped.
pub fn start(bus: &Bus) -> Result<JoinSet<()>, BusError> {
    let mut tasks = JoinSet::new();

    let mut payments = bus.subscribe("orders", "payment")?;
    let b = bus.clone();
    tasks.spawn(async move {
        let service = Service::new("payment");
        while let Some(message) = payments.recv().await {
            let bus = b.clone();
            let payload = message.payload.clone();
            let _ = service
                .handle(
                    &message.headers,
                    Consume::new("orders", "payment"),
                    |h| async move {
                        let order_id = field(&payload, "order_id")?;
                        let amount_cents = field(&payload, "amount_cents")?;
                        tracing::info!(order_id, amount_cents, "charging card");
                        work(order_id, 3).await;
                        if amount_cents > PAYMENT_LIMIT_CENTS {
                            tracing::warn!(order_id, "card declined");
                            return Err(SagaError::CardDeclined { amount_cents });
                        }
                        emit(&bus, &h, "PaymentCaptured", "payments", payload).await;
                        Ok(())
                    },
                )
                .await;
        }
    });

    let mut inventory = bus.subscribe("payments", "inventory")?;
    let b = bus.clone();
    tasks.spawn(async move {
        let service = Service::new("inventory");
        while let Some(message) = inventory.recv().await {
            let bus = b.clone();
            let payload = message.payload.clone();
            let _ = service
                .handle(
                    &message.headers,
                    Consume::new("payments", "inventory"),
                    |h| async move {
                        let order_id = field(&payload, "order_id")?;
                        tracing::info!(
                            order_id,
                            items = payload["items"].as_u64(),
                            "reserving stock"
                        );
                        work(order_id, 2).await;
                        emit(&bus, &h, "StockReserved", "inventory", payload).await;
                        Ok::<_, SagaError>(())
                    },
                )
                .await;
        }
    });

    let mut shipping = bus.subscribe("inventory", "shipping")?;
    let b = bus.clone();
    tasks.spawn(async move {
        let service = Service::new("shipping");
        while let Some(message) = shipping.recv().await {
            let bus = b.clone();
            let payload = message.payload.clone();
            let _ = service
                .handle(
                    &message.headers,
                    Consume::new("inventory", "shipping"),
                    |h| async move {
                        let order_id = field(&payload, "order_id")?;
                        tracing::info!(order_id, "parcel handed to carrier");
                        work(order_id, 4).await;
                        emit(&bus, &h, "OrderShipped", "shipments", payload).await;
                        Ok::<_, SagaError>(())
                    },
                )
                .await;
        }
    });

    let mut completions = bus.subscribe("shipments", "order")?;
    tasks.spawn(async move {
        let service = Service::new("order");
        while let Some(message) = completions.recv().await {
            let payload = message.payload.clone();
            let _ = service
                .handle(
                    &message.headers,
                    Consume::new("shipments", "order"),
                    |_| async move {
                        let order_id = field(&payload, "order_id")?;
                        tracing::info!(order_id, "order complete");
                        Ok::<_, SagaError>(())
                    },
                )
                .await;
        }
    });

    Ok(tasks)
}

/// How an order's flow ends when every service is up: the status as the
/// query API names it (`completed` or `failed`) and how many events it has.
pub fn expected_outcome(order: &Order) -> (&'static str, usize) {
    if order.amount_cents > PAYMENT_LIMIT_CENTS {
        ("failed", 1)
    } else {
        ("completed", 4)
    }
}

/// The demo's orders: `n` orders, every fourth one (and at least one when
/// `n >= 2`) above the payment limit.
pub fn sample_orders(n: usize, first_id: u64) -> Vec<Order> {
    (0..n as u64)
        .map(|i| {
            let declined = i % 4 == 1;
            Order {
                id: first_id + i,
                amount_cents: if declined {
                    PAYMENT_LIMIT_CENTS + 12_345
                } else {
                    1_999 + i * 1_000
                },
                items: 1 + (i % 3) as u32,
            }
        })
        .collect()
}
