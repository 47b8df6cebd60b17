//! An order saga, choreographed and instrumented with causeway: each
//! service only reacts to events, over the transport chosen at start (the
//! in-process bus, RabbitMQ or NATS JetStream; see [`transport`]).
//!
//! ```text
//! order      --OrderPlaced  (orders.placed)-->       inventory   reserves stock
//! inventory  --StockReserved (inventory.reserved)--> payment     charges the card
//! payment    --PaymentCaptured (payments.captured)-> shipping    books the parcel
//! shipping   --OrderShipped (shipping.shipped)-->    order       completes
//! payment    --PaymentDeclined (payments.declined)-> inventory   releases the stock   (compensated)
//!                                                    order       cancels the order    (compensated)
//! ```
//!
//! Stock is reserved before the card is charged, so that a declined card
//! has something to undo: the saga's compensating transactions (seed text
//! 003). Each [`Scenario`] adds one of the ways such systems go wrong, and
//! [`expected_outcome`] says how the query API must show the flow. The
//! services write records only through the middleware; where they go is
//! the caller's subscriber.

#[cfg(feature = "amqp")]
mod amqp;
#[cfg(feature = "nats")]
mod nats;
pub mod transport;

use std::future::Future;
use std::sync::Arc;

use causeway_middleware::{Handling, MessageContext, Publish, Service};
use causeway_model::CorrelationId;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

pub use transport::{DEAD_LETTERS, MAX_DELIVERIES, Step, Transport, TransportError};

/// Orders above this amount are declined by payment.
pub const PAYMENT_LIMIT_CENTS: u64 = 50_000;

/// The services of the saga.
pub const SERVICES: [&str; 4] = ["order", "payment", "inventory", "shipping"];

/// The topics (routing keys; subjects after the namespace).
pub mod topics {
    pub const ORDER_PLACED: &str = "orders.placed";
    pub const STOCK_RESERVED: &str = "inventory.reserved";
    pub const PAYMENT_CAPTURED: &str = "payments.captured";
    pub const PAYMENT_DECLINED: &str = "payments.declined";
    pub const ORDER_SHIPPED: &str = "shipping.shipped";
}

/// An order as the order service places it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    pub id: u64,
    pub amount_cents: u64,
    pub items: u32,
    /// What goes wrong with this order.
    pub scenario: Scenario,
}

/// The ways an order's flow goes, each showing up in the query API as the
/// flow status (and anomaly) [`expected_outcome`] names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// Reserved, paid, shipped: `completed`.
    Happy,
    /// The card is declined; stock is released and the order cancelled:
    /// `compensated`.
    Declined,
    /// The order's payload cannot be read by inventory, which fails on
    /// every delivery until the broker dead-letters it: `dead_lettered`,
    /// with the anomaly `poison_loop`.
    Poison,
}

impl Scenario {
    /// The names `--scenario` takes.
    pub const NAMES: [&str; 4] = ["happy", "declined", "poison", "mixed"];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Happy => "happy",
            Self::Declined => "declined",
            Self::Poison => "poison",
        }
    }
}

impl Order {
    /// The flow's correlation id: `order-<id>`, so "what happened to order
    /// 1234" is a look-up of `order-1234`.
    pub fn correlation_id(&self) -> CorrelationId {
        CorrelationId::new(format!("order-{}", self.id))
            .unwrap_or_else(|_| CorrelationId::generate())
    }

    /// The `OrderPlaced` body (the contract in `examples/README.md`). A
    /// poison order's `items` is not a number.
    pub fn payload(&self) -> Value {
        let items = match self.scenario {
            Scenario::Poison => json!("a dozen"),
            _ => json!(self.items),
        };
        json!({ "order_id": self.id, "amount_cents": self.amount_cents, "items": items })
    }
}

/// Why a step failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SagaError {
    CardDeclined { amount_cents: u64 },
    BadPayload(String),
    Transport(String),
}

impl SagaError {
    /// Whether another delivery might succeed: the transport retries these
    /// (a payload a consumer cannot read is treated as the transient fault
    /// it usually looks like, which is what makes a poison message loop).
    pub fn retryable(&self) -> bool {
        !matches!(self, Self::CardDeclined { .. })
    }
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
            SagaError::Transport(why) => write!(f, "publishing failed: {why}"),
        }
    }
}

impl From<TransportError> for SagaError {
    fn from(error: TransportError) -> Self {
        Self::Transport(error.to_string())
    }
}

fn field(payload: &Value, name: &str) -> Result<u64, SagaError> {
    payload[name]
        .as_u64()
        .ok_or_else(|| SagaError::BadPayload(format!("{name} is not a whole number")))
}

/// A little simulated work, different per order, so timings look real.
async fn work(order_id: u64, base_ms: u64) {
    tokio::time::sleep(std::time::Duration::from_millis(base_ms + order_id % 7)).await;
}

/// Places an order: the order service publishes `OrderPlaced`.
pub async fn place_order(
    transport: &Transport,
    order: &Order,
) -> Result<MessageContext, TransportError> {
    let service = Service::new("order");
    let event =
        Publish::new("OrderPlaced", topics::ORDER_PLACED).correlation_id(order.correlation_id());
    transport
        .publish(&service, None, event, &order.payload())
        .await
}

/// A [`Step`] from an async function of the transport, the handling and
/// the payload.
fn step<F, Fut>(transport: &Transport, f: F) -> Step
where
    F: Fn(Transport, Handling, Value) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), SagaError>> + Send + 'static,
{
    let transport = transport.clone();
    let f = Arc::new(f);
    Arc::new(move |handling, payload| {
        let (transport, f) = (transport.clone(), f.clone());
        Box::pin(async move { f(transport, handling, payload).await })
    })
}

/// Inventory, on `OrderPlaced`: reserves the stock.
async fn reserve_stock(t: Transport, h: Handling, payload: Value) -> Result<(), SagaError> {
    let order_id = field(&payload, "order_id")?;
    let items = field(&payload, "items")?;
    tracing::info!(order_id, items, "reserving stock");
    work(order_id, 2).await;
    let event = Publish::new("StockReserved", topics::STOCK_RESERVED);
    t.publish_child(&h, event, &payload).await?;
    Ok(())
}

/// Payment, on `StockReserved`: charges the card, or declines it (the
/// step fails, and `PaymentDeclined` sets the compensations off).
async fn charge(t: Transport, h: Handling, payload: Value) -> Result<(), SagaError> {
    let order_id = field(&payload, "order_id")?;
    let amount_cents = field(&payload, "amount_cents")?;
    tracing::info!(order_id, amount_cents, "charging card");
    work(order_id, 3).await;
    if amount_cents > PAYMENT_LIMIT_CENTS {
        tracing::warn!(order_id, "card declined");
        let event = Publish::new("PaymentDeclined", topics::PAYMENT_DECLINED);
        t.publish_child(&h, event, &payload).await?;
        return Err(SagaError::CardDeclined { amount_cents });
    }
    let event = Publish::new("PaymentCaptured", topics::PAYMENT_CAPTURED);
    t.publish_child(&h, event, &payload).await?;
    Ok(())
}

/// Shipping, on `PaymentCaptured`: books the parcel.
async fn ship(t: Transport, h: Handling, payload: Value) -> Result<(), SagaError> {
    let order_id = field(&payload, "order_id")?;
    tracing::info!(order_id, "parcel handed to carrier");
    work(order_id, 4).await;
    let event = Publish::new("OrderShipped", topics::ORDER_SHIPPED);
    t.publish_child(&h, event, &payload).await?;
    Ok(())
}

/// Order, on `OrderShipped`: the order is complete.
async fn complete(_: Transport, _: Handling, payload: Value) -> Result<(), SagaError> {
    let order_id = field(&payload, "order_id")?;
    tracing::info!(order_id, "order complete");
    Ok(())
}

/// Inventory, on `PaymentDeclined`: puts the reserved stock back.
async fn release_stock(_: Transport, h: Handling, payload: Value) -> Result<(), SagaError> {
    let order_id = field(&payload, "order_id")?;
    tracing::info!(order_id, "releasing reserved stock");
    h.compensated("stock released");
    Ok(())
}

/// Order, on `PaymentDeclined`: cancels the order.
async fn cancel(_: Transport, h: Handling, payload: Value) -> Result<(), SagaError> {
    let order_id = field(&payload, "order_id")?;
    tracing::info!(order_id, "cancelling order");
    h.compensated("order cancelled");
    Ok(())
}

/// Starts every consumer of the saga, and the dead-letter consumer, on
/// `transport`; they run until the tasks are aborted or the transport
/// goes away.
pub async fn start(transport: &Transport) -> Result<Vec<JoinHandle<()>>, TransportError> {
    let consumers: [(&str, &str, Step); 6] = [
        (
            "inventory",
            topics::ORDER_PLACED,
            step(transport, reserve_stock),
        ),
        ("payment", topics::STOCK_RESERVED, step(transport, charge)),
        ("shipping", topics::PAYMENT_CAPTURED, step(transport, ship)),
        ("order", topics::ORDER_SHIPPED, step(transport, complete)),
        (
            "inventory",
            topics::PAYMENT_DECLINED,
            step(transport, release_stock),
        ),
        ("order", topics::PAYMENT_DECLINED, step(transport, cancel)),
    ];
    let mut tasks = Vec::new();
    for (service, topic, step) in consumers {
        let task = transport
            .consume(Service::new(service), topic, service, step)
            .await?;
        tasks.push(task);
    }
    tasks.push(transport.consume_dead_letters().await?);
    Ok(tasks)
}

/// How an order's flow ends once every step has run: the status as the
/// query API names it, how many events it has, and the anomaly it must
/// show, if any.
pub fn expected_outcome(order: &Order) -> (&'static str, usize, Option<&'static str>) {
    match order.scenario {
        Scenario::Happy => ("completed", 4, None),
        // OrderPlaced, StockReserved, PaymentDeclined.
        Scenario::Declined => ("compensated", 3, None),
        Scenario::Poison => ("dead_lettered", 1, Some("poison_loop")),
    }
}

/// `n` orders from `first_id` for `scenario` (a name of
/// [`Scenario::NAMES`]): one scenario throughout, or `mixed`. `happy`
/// still declines every fourth order, so that the plain demo shows a
/// compensation too; `mixed` adds a poison order every fifth.
pub fn sample_orders(n: usize, first_id: u64, scenario: &str) -> Vec<Order> {
    (0..n as u64)
        .map(|i| {
            let scenario = match scenario {
                "declined" => Scenario::Declined,
                "poison" => Scenario::Poison,
                "mixed" if i % 5 == 3 => Scenario::Poison,
                _ if i % 4 == 1 => Scenario::Declined,
                _ => Scenario::Happy,
            };
            Order {
                id: first_id + i,
                amount_cents: match scenario {
                    Scenario::Declined => PAYMENT_LIMIT_CENTS + 12_345,
                    _ => 1_999 + i * 1_000,
                },
                items: 1 + (i % 3) as u32,
                scenario,
            }
        })
        .collect()
}
