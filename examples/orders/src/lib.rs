//! An order saga, choreographed and instrumented with causeway: each
//! service only reacts to events, over the transport chosen at start (the
//! in-process bus, RabbitMQ or NATS JetStream; see [`transport`]).
//!
//! ```text
//! order      --OrderPlaced  (orders.placed)-->       inventory   reserves stock
//! inventory  --StockReserved (inventory.reserved)--> payment     charges the card
//! payment    --PaymentCaptured (payments.captured)-> shipping    books the parcel
//! shipping   --OrderShipped (shipping.shipped)-->    order       completes
//! shipping   --ShipmentNotified (HTTP POST)-->       notifier    tells the customer (the webhook hop)
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
mod delivery;
#[cfg(feature = "nats")]
mod nats;
pub mod orchestrator;
pub mod transport;
pub mod webhook;

use std::future::Future;
use std::sync::Arc;

use causeway_middleware::{Handling, MessageContext, Publish, Service};
use causeway_model::CorrelationId;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

pub use delivery::{Ack, Consumer, DEAD_LETTERS, MAX_DELIVERIES, Step, TransportError};
pub use transport::Transport;

/// How long shipping takes in the `slow` scenario: above the declared
/// `slow_after_ms` of [`contracts`].
pub const SLOW_SHIPPING: std::time::Duration = std::time::Duration::from_millis(1_500);

/// The saga's declared contracts in `style`, for the query API's
/// `contracts_file`: who must take each event, when a step is stuck, when
/// shipping is slow.
pub fn contracts(style: Style) -> String {
    let rows: &[(&str, &str, Option<u64>)] = match style {
        Style::Choreography => &[
            ("OrderPlaced", "\"inventory\"", None),
            ("StockReserved", "\"payment\"", None),
            ("PaymentCaptured", "\"shipping\"", Some(1_000)),
            ("PaymentDeclined", "\"inventory\", \"order\"", None),
            ("OrderShipped", "\"order\"", None),
            ("ShipmentNotified", "\"notifier\"", None),
            ("OrderUpdated", "\"shipping\"", None),
        ],
        Style::Orchestration => &[
            ("OrderPlaced", "\"orchestrator\"", None),
            ("ReserveStock", "\"inventory\"", None),
            ("StockReserved", "\"orchestrator\"", None),
            ("ChargeCard", "\"payment\"", None),
            ("PaymentCaptured", "\"orchestrator\"", None),
            ("PaymentDeclined", "\"orchestrator\"", None),
            ("ShipOrder", "\"shipping\"", Some(1_000)),
            ("OrderShipped", "\"orchestrator\"", None),
            ("ShipmentNotified", "\"notifier\"", None),
            ("CompleteOrder", "\"order\"", None),
            ("ReleaseStock", "\"inventory\"", None),
            ("CancelOrder", "\"order\"", None),
            ("OrderUpdated", "\"shipping\"", None),
        ],
    };
    let mut toml = format!(
        "# The orders saga's contracts, {} (causeway query `contracts_file`).\n",
        style.as_str()
    );
    for (event, consumers, slow) in rows {
        toml.push_str(&format!(
            "\n[events.{event}]\nconsumers = [{consumers}]\nstuck_after_ms = {STUCK_AFTER_MS}\n"
        ));
        if let Some(ms) = slow {
            toml.push_str(&format!("slow_after_ms = {ms}\n"));
        }
    }
    toml
}

/// When a declared consumer that has not taken its event makes the flow
/// `stuck`.
pub const STUCK_AFTER_MS: u64 = 3_000;

/// Orders above this amount are declined by payment.
pub const PAYMENT_LIMIT_CENTS: u64 = 50_000;

/// The services of the saga.
pub const SERVICES: [&str; 5] = ["order", "payment", "inventory", "shipping", "notifier"];

/// The topics (routing keys; subjects after the namespace).
pub mod topics {
    pub const ORDER_PLACED: &str = "orders.placed";
    pub const STOCK_RESERVED: &str = "inventory.reserved";
    pub const PAYMENT_CAPTURED: &str = "payments.captured";
    pub const PAYMENT_DECLINED: &str = "payments.declined";
    pub const ORDER_SHIPPED: &str = "shipping.shipped";
    pub const ORDER_UPDATED: &str = "orders.updated";
}

/// An order as the order service places it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    pub id: u64,
    pub amount_cents: u64,
    pub items: u32,
    /// What goes wrong with this order.
    pub scenario: Scenario,
    /// How the services that take it are coordinated.
    pub style: Style,
}

/// How the saga's services are coordinated: the same business steps,
/// driven by events or by an orchestrator's commands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Style {
    /// Each service reacts to the events of the one before.
    #[default]
    Choreography,
    /// An orchestrator sends each service a command and takes its reply,
    /// matched to the command by its id (request-reply); see
    /// [`orchestrator`].
    Orchestration,
}

impl Style {
    /// The names `--style` takes.
    pub const NAMES: [&str; 2] = ["choreography", "orchestration"];

    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "choreography" => Some(Self::Choreography),
            "orchestration" => Some(Self::Orchestration),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Choreography => "choreography",
            Self::Orchestration => "orchestration",
        }
    }

    /// Where a step's outcome event goes: to its topic, or as a reply to
    /// the orchestrator.
    fn outcome(self, topic: &'static str) -> &'static str {
        match self {
            Self::Choreography => topic,
            Self::Orchestration => orchestrator::REPLIES,
        }
    }
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
    /// Shipping and order each lose their first acknowledgement, so the
    /// broker delivers again: shipping, not idempotent, ships twice
    /// (`duplicate_delivery`); order, idempotent, handles once. The flow
    /// still `completed`.
    Duplicate,
    /// Shipping takes far longer than its declared `slow_after_ms`:
    /// `completed` with `slow_step`.
    Slow,
    /// Shipping is down for this order (it drops the message unread):
    /// `stuck`, with `missing_consumer` once the declared threshold passes.
    Stuck,
    /// Shipping drops the context of the payment it takes (it reads only
    /// the message id): its records land in a flow of their own, so this
    /// one shows `context_lost` (the payment was received under another
    /// flow) and is `stuck` with `missing_consumer`.
    ContextLost,
    /// The order service sends two address updates; the shipping instance
    /// that fetched the first stalls, and the second is taken first:
    /// `completed` with `out_of_order`.
    OutOfOrder,
}

impl Scenario {
    /// The names `--scenario` takes.
    pub const NAMES: [&str; 9] = [
        "happy",
        "declined",
        "poison",
        "duplicate",
        "slow",
        "stuck",
        "context_lost",
        "out_of_order",
        "mixed",
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Happy => "happy",
            Self::Declined => "declined",
            Self::Poison => "poison",
            Self::Duplicate => "duplicate",
            Self::Slow => "slow",
            Self::Stuck => "stuck",
            Self::ContextLost => "context_lost",
            Self::OutOfOrder => "out_of_order",
        }
    }

    /// The scenario `name` names (`mixed` is not one).
    pub fn parse(name: &str) -> Option<Self> {
        [
            Self::Happy,
            Self::Declined,
            Self::Poison,
            Self::Duplicate,
            Self::Slow,
            Self::Stuck,
            Self::ContextLost,
            Self::OutOfOrder,
        ]
        .into_iter()
        .find(|s| s.as_str() == name)
    }

    /// The scenario a payload names (`"scenario"`), happy when none.
    fn of(payload: &Value) -> Self {
        payload["scenario"]
            .as_str()
            .and_then(Self::parse)
            .unwrap_or(Self::Happy)
    }
}

impl Order {
    /// The flow's correlation id: `order-<id>`, so "what happened to order
    /// 1234" is a look-up of `order-1234`.
    pub fn correlation_id(&self) -> CorrelationId {
        CorrelationId::new(format!("order-{}", self.id))
            .unwrap_or_else(|_| CorrelationId::generate())
    }

    /// The `OrderPlaced` body (the contract in `examples/README.md`); the
    /// optional `scenario` tells the services what to get wrong. A poison
    /// order's `items` is not a number.
    pub fn payload(&self) -> Value {
        let items = match self.scenario {
            Scenario::Poison => json!("a dozen"),
            _ => json!(self.items),
        };
        let mut payload =
            json!({ "order_id": self.id, "amount_cents": self.amount_cents, "items": items });
        if self.scenario != Scenario::Happy {
            payload["scenario"] = json!(self.scenario.as_str());
        }
        payload
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

/// Places an order: the order service publishes `OrderPlaced` (and, in
/// the `out_of_order` scenario, two `OrderUpdated` address changes right
/// after it, version 1 then 2).
pub async fn place_order(
    transport: &Transport,
    order: &Order,
) -> Result<MessageContext, TransportError> {
    let service = Service::new("order");
    let event =
        Publish::new("OrderPlaced", topics::ORDER_PLACED).correlation_id(order.correlation_id());
    let placed = transport
        .publish(&service, None, event, &order.payload())
        .await?;
    if order.scenario == Scenario::OutOfOrder {
        for version in [1, 2] {
            let update = json!({
                "order_id": order.id,
                "version": version,
                "address": format!("{version} Harbour Street"),
                "scenario": Scenario::OutOfOrder.as_str(),
            });
            let event = Publish::new("OrderUpdated", topics::ORDER_UPDATED)
                .correlation_id(order.correlation_id());
            transport.publish(&service, None, event, &update).await?;
        }
    }
    Ok(placed)
}

/// A [`Step`] from an async function of the transport, the handling and
/// the payload. In the `duplicate` scenario, the step's first
/// acknowledgement of each event is lost when `loses_ack` is set.
pub(crate) fn step<F, Fut>(transport: &Transport, loses_ack: bool, f: F) -> Step
where
    F: Fn(Transport, Handling, Value) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), SagaError>> + Send + 'static,
{
    let transport = transport.clone();
    let f = Arc::new(f);
    let lost = Arc::new(std::sync::Mutex::new(std::collections::HashSet::new()));
    Arc::new(move |handling, payload| {
        let (transport, f, lost) = (transport.clone(), f.clone(), lost.clone());
        Box::pin(async move {
            let event = handling.context().event_id.clone();
            let duplicate = loses_ack && Scenario::of(&payload) == Scenario::Duplicate;
            f(transport, handling, payload).await?;
            let mut lost = lost.lock().unwrap_or_else(|e| e.into_inner());
            if duplicate && lost.insert(event) {
                return Ok(Ack::Lost);
            }
            Ok(Ack::Done)
        })
    })
}

/// Inventory, on `OrderPlaced`: reserves the stock.
async fn reserve_stock(
    t: Transport,
    h: Handling,
    payload: Value,
    style: Style,
) -> Result<(), SagaError> {
    let order_id = field(&payload, "order_id")?;
    let items = field(&payload, "items")?;
    tracing::info!(order_id, items, "reserving stock");
    work(order_id, 2).await;
    let event = Publish::new("StockReserved", style.outcome(topics::STOCK_RESERVED));
    t.publish_child(&h, event, &payload).await?;
    Ok(())
}

/// Payment, on `StockReserved`: charges the card, or declines it (the
/// step fails, and `PaymentDeclined` sets the compensations off).
async fn charge(t: Transport, h: Handling, payload: Value, style: Style) -> Result<(), SagaError> {
    let order_id = field(&payload, "order_id")?;
    let amount_cents = field(&payload, "amount_cents")?;
    tracing::info!(order_id, amount_cents, "charging card");
    work(order_id, 3).await;
    if amount_cents > PAYMENT_LIMIT_CENTS {
        tracing::warn!(order_id, "card declined");
        let event = Publish::new("PaymentDeclined", style.outcome(topics::PAYMENT_DECLINED));
        t.publish_child(&h, event, &payload).await?;
        return Err(SagaError::CardDeclined { amount_cents });
    }
    let event = Publish::new("PaymentCaptured", style.outcome(topics::PAYMENT_CAPTURED));
    t.publish_child(&h, event, &payload).await?;
    Ok(())
}

/// Shipping, on `PaymentCaptured`: books the parcel, announces it, and
/// notifies the customer over the webhook.
async fn ship(
    t: Transport,
    h: Handling,
    payload: Value,
    style: Style,
    notifier: webhook::Notifier,
) -> Result<(), SagaError> {
    let order_id = field(&payload, "order_id")?;
    tracing::info!(order_id, "parcel handed to carrier");
    work(order_id, 4).await;
    if Scenario::of(&payload) == Scenario::Slow {
        tracing::warn!(order_id, "the carrier's API is slow");
        tokio::time::sleep(SLOW_SHIPPING).await;
    }
    let event = Publish::new("OrderShipped", style.outcome(topics::ORDER_SHIPPED));
    t.publish_child(&h, event, &payload).await?;
    notifier.notify(&h, &payload).await
}

/// Shipping, on `OrderUpdated`: the new delivery address.
async fn update_address(_: Transport, _: Handling, payload: Value) -> Result<(), SagaError> {
    let order_id = field(&payload, "order_id")?;
    let version = field(&payload, "version")?;
    tracing::info!(order_id, version, "delivery address changed");
    Ok(())
}

/// How long the shipping instance that fetched an update stalls: version
/// 1 of an `out_of_order` order long enough for version 2 to go first.
fn stall_first_update(payload: &Value) -> Option<std::time::Duration> {
    (Scenario::of(payload) == Scenario::OutOfOrder && payload["version"] == 1)
        .then_some(std::time::Duration::from_millis(300))
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

/// Starts every consumer of the choreographed saga, and the dead-letter
/// consumer, on `transport`; they run until the tasks are aborted or the
/// transport goes away.
pub async fn start(transport: &Transport) -> Result<Vec<JoinHandle<()>>, TransportError> {
    start_styled(transport, Style::Choreography).await
}

/// [`start`] in either style: the same steps, consuming events
/// (choreography) or the orchestrator's commands (orchestration, which
/// also starts the orchestrator).
pub async fn start_styled(
    transport: &Transport,
    style: Style,
) -> Result<Vec<JoinHandle<()>>, TransportError> {
    let t = transport;
    let (webhook_url, webhook) = webhook::serve().await?;
    let notifier = webhook::Notifier::new(webhook_url);
    let ship = move |t, h, payload| ship(t, h, payload, style, notifier.clone());
    let consumer = |service: &'static str, topic, step| Consumer {
        service: Service::new(service),
        topic,
        group: service,
        step,
        idempotent: false,
        drops: None,
        loses_context: None,
        stalls: None,
    };
    // (choreography topic, orchestration command) each step consumes.
    let on = |event: &'static str, command: &'static str| match style {
        Style::Choreography => event,
        Style::Orchestration => command,
    };
    use orchestrator::commands as c;
    let consumers = [
        consumer(
            "inventory",
            on(topics::ORDER_PLACED, c::RESERVE_STOCK),
            step(t, false, move |t, h, p| reserve_stock(t, h, p, style)),
        ),
        consumer(
            "payment",
            on(topics::STOCK_RESERVED, c::CHARGE_CARD),
            step(t, false, move |t, h, p| charge(t, h, p, style)),
        ),
        Consumer {
            drops: Some(|payload| Scenario::of(payload) == Scenario::Stuck),
            loses_context: Some(|payload| Scenario::of(payload) == Scenario::ContextLost),
            ..consumer(
                "shipping",
                on(topics::PAYMENT_CAPTURED, c::SHIP_ORDER),
                step(t, true, ship),
            )
        },
        Consumer {
            stalls: Some(stall_first_update),
            ..consumer(
                "shipping",
                topics::ORDER_UPDATED,
                step(t, false, update_address),
            )
        },
        Consumer {
            idempotent: true,
            ..consumer(
                "order",
                on(topics::ORDER_SHIPPED, c::COMPLETE_ORDER),
                step(t, true, complete),
            )
        },
        consumer(
            "inventory",
            on(topics::PAYMENT_DECLINED, c::RELEASE_STOCK),
            step(t, false, release_stock),
        ),
        consumer(
            "order",
            on(topics::PAYMENT_DECLINED, c::CANCEL_ORDER),
            step(t, false, cancel),
        ),
    ];
    let mut tasks = vec![webhook];
    for consumer in consumers {
        tasks.push(transport.consume(consumer).await?);
    }
    if style == Style::Orchestration {
        tasks.extend(orchestrator::start(transport).await?);
    }
    tasks.push(transport.consume_dead_letters().await?);
    Ok(tasks)
}

/// How an order's flow ends once every step has run: the status as the
/// query API names it, how many events it has, and the anomaly it must
/// show, if any.
pub fn expected_outcome(order: &Order) -> (&'static str, usize, Option<&'static str>) {
    let orchestrated = order.style == Style::Orchestration;
    // Orchestration adds a command before each step: ReserveStock,
    // ChargeCard, ShipOrder, CompleteOrder (or ReleaseStock and
    // CancelOrder after a decline).
    let events = |choreography: usize, orchestration: usize| {
        if orchestrated {
            orchestration
        } else {
            choreography
        }
    };
    match order.scenario {
        // OrderPlaced, StockReserved, PaymentCaptured, OrderShipped,
        // ShipmentNotified.
        Scenario::Happy => ("completed", events(5, 9), None),
        // OrderPlaced, StockReserved, PaymentDeclined.
        Scenario::Declined => ("compensated", events(3, 7), None),
        Scenario::Poison => ("dead_lettered", events(1, 2), Some("poison_loop")),
        // Shipped twice: two OrderShipped and two ShipmentNotified events
        // (the orchestrator completes the order once).
        Scenario::Duplicate => ("completed", events(7, 11), Some("duplicate_delivery")),
        Scenario::Slow => ("completed", events(5, 9), Some("slow_step")),
        // Nothing reached shipping.
        Scenario::Stuck => ("stuck", events(3, 6), Some("missing_consumer")),
        // Shipping took the payment in another flow: nothing after it here.
        Scenario::ContextLost => ("stuck", events(3, 6), Some("context_lost")),
        // Two OrderUpdated events besides the saga's.
        Scenario::OutOfOrder => ("completed", events(7, 11), Some("out_of_order")),
    }
}

/// `n` orders from `first_id` for `scenario` (a name of
/// [`Scenario::NAMES`]): one scenario throughout, or `mixed`. `happy`
/// still declines every fourth order, so that the plain demo shows a
/// compensation too; `mixed` runs every scenario in turn, after a happy
/// and a declined order.
pub fn sample_orders(n: usize, first_id: u64, scenario: &str) -> Vec<Order> {
    const MIXED: [Scenario; 9] = [
        Scenario::Happy,
        Scenario::Declined,
        Scenario::Poison,
        Scenario::Duplicate,
        Scenario::Slow,
        Scenario::Stuck,
        Scenario::ContextLost,
        Scenario::OutOfOrder,
        Scenario::Happy,
    ];
    (0..n as u64)
        .map(|i| {
            let scenario = match (scenario, Scenario::parse(scenario)) {
                ("mixed", _) => MIXED[(i % MIXED.len() as u64) as usize],
                (_, Some(Scenario::Happy) | None) if i % 4 == 1 => Scenario::Declined,
                (_, Some(chosen)) => chosen,
                (_, None) => Scenario::Happy,
            };
            Order {
                id: first_id + i,
                amount_cents: match scenario {
                    Scenario::Declined => PAYMENT_LIMIT_CENTS + 12_345,
                    // Always below the limit, however many orders.
                    _ => 1_999 + (i % 40) * 1_000,
                },
                items: 1 + (i % 3) as u32,
                scenario,
                style: Style::Choreography,
            }
        })
        .collect()
}
