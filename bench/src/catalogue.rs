//! The business domains the corpus imitates, as static tables: services,
//! the events each publishes, who consumes them and what a consumer
//! publishes in turn, plus the wording of log lines and errors.
//!
//! Three sagas share fifteen services: an order (placed, checked for
//! fraud, paid, picked, shipped, tracked, delivered), a customer signup and
//! a return with its refund. This module is data and wording only: it draws
//! no random numbers itself (callers pass the values in) and knows nothing
//! of the generator's clock or queue.

/// The services, each also the consumer group it reads with.
pub(crate) const SERVICES: [&str; 15] = [
    "order",
    "payment",
    "inventory",
    "shipping",
    "notification",
    "fraud",
    "billing",
    "email",
    "loyalty",
    "pricing",
    "warehouse",
    "tracking",
    "analytics",
    "customer",
    "returns",
];

/// What a consumer of an event may publish once it handled it.
#[derive(Debug)]
pub(crate) struct FollowUp {
    /// The consumer (its service publishes the follow-up).
    pub by: &'static str,
    /// How likely the consumer publishes anything at all.
    pub chance: f64,
    /// The events it may publish, one of them, by weight.
    pub events: &'static [(&'static str, u32)],
    /// For a step that can repeat (an item picked, a tracking update): the
    /// alternative that repeats, chosen while the flow is short of its
    /// planned size, so that long flows exist.
    pub again: Option<&'static str>,
}

/// One event type.
#[derive(Debug)]
pub(crate) struct EventSpec {
    pub name: &'static str,
    pub publisher: &'static str,
    /// `rabbitmq` or `nats`.
    pub system: &'static str,
    /// The exchange, queue or subject.
    pub destination: &'static str,
    pub consumers: &'static [&'static str],
    pub follow_ups: &'static [FollowUp],
    /// A consumer that published earlier in the flow undoes its work
    /// (`compensated`) when it handles this event.
    pub compensating: bool,
}

const fn follow(by: &'static str, chance: f64, events: &'static [(&'static str, u32)]) -> FollowUp {
    FollowUp {
        by,
        chance,
        events,
        again: None,
    }
}

const fn repeat(
    by: &'static str,
    events: &'static [(&'static str, u32)],
    again: &'static str,
) -> FollowUp {
    FollowUp {
        by,
        chance: 1.0,
        events,
        again: Some(again),
    }
}

const fn event(
    name: &'static str,
    publisher: &'static str,
    system: &'static str,
    destination: &'static str,
    consumers: &'static [&'static str],
    follow_ups: &'static [FollowUp],
) -> EventSpec {
    EventSpec {
        name,
        publisher,
        system,
        destination,
        consumers,
        follow_ups,
        compensating: false,
    }
}

const fn compensating(spec: EventSpec) -> EventSpec {
    EventSpec {
        compensating: true,
        ..spec
    }
}

const RMQ: &str = "rabbitmq";
const NATS: &str = "nats";

/// Every event type. Follow-ups name events of this table; the test
/// `the_catalogue_is_consistent` checks each name and publisher.
pub(crate) const EVENTS: &[EventSpec] = &[
    // The order saga.
    event(
        "OrderPlaced",
        "order",
        RMQ,
        "orders.placed",
        &["fraud", "inventory", "pricing", "analytics"],
        &[
            follow(
                "fraud",
                1.0,
                &[("FraudCheckPassed", 97), ("FraudCheckFailed", 3)],
            ),
            follow(
                "inventory",
                1.0,
                &[("StockReserved", 95), ("StockShortage", 5)],
            ),
            follow("pricing", 0.9, &[("PriceCalculated", 1)]),
        ],
    ),
    event(
        "FraudCheckPassed",
        "fraud",
        NATS,
        "fraud.checked",
        &["payment", "analytics"],
        &[follow(
            "payment",
            1.0,
            &[("PaymentAuthorized", 92), ("PaymentDeclined", 8)],
        )],
    ),
    event(
        "FraudCheckFailed",
        "fraud",
        NATS,
        "fraud.checked",
        &["order", "notification"],
        &[follow("order", 1.0, &[("OrderCancelled", 1)])],
    ),
    event(
        "StockReserved",
        "inventory",
        RMQ,
        "inventory.reserved",
        &["order", "warehouse"],
        &[follow("warehouse", 0.9, &[("PickListCreated", 1)])],
    ),
    event(
        "StockShortage",
        "inventory",
        RMQ,
        "inventory.shortage",
        &["order", "notification"],
        &[follow("order", 1.0, &[("OrderCancelled", 1)])],
    ),
    event(
        "PriceCalculated",
        "pricing",
        NATS,
        "pricing.calculated",
        &["billing"],
        &[follow("billing", 0.8, &[("InvoiceDrafted", 1)])],
    ),
    event(
        "InvoiceDrafted",
        "billing",
        RMQ,
        "billing.invoices",
        &["email", "analytics"],
        &[follow("email", 0.5, &[("EmailSent", 1)])],
    ),
    event(
        "PaymentAuthorized",
        "payment",
        RMQ,
        "payments.authorized",
        &["order", "billing", "shipping", "loyalty"],
        &[
            follow("order", 1.0, &[("OrderConfirmed", 1)]),
            follow("billing", 0.9, &[("InvoiceIssued", 1)]),
            follow("shipping", 1.0, &[("ShipmentScheduled", 1)]),
            follow("loyalty", 0.7, &[("PointsAwarded", 1)]),
        ],
    ),
    event(
        "PaymentDeclined",
        "payment",
        RMQ,
        "payments.declined",
        &["order", "notification"],
        &[follow("order", 1.0, &[("OrderCancelled", 1)])],
    ),
    compensating(event(
        "OrderCancelled",
        "order",
        RMQ,
        "orders.cancelled",
        &["inventory", "payment", "notification", "analytics"],
        &[follow("notification", 0.8, &[("NotificationSent", 1)])],
    )),
    event(
        "OrderConfirmed",
        "order",
        RMQ,
        "orders.confirmed",
        &["notification", "email", "analytics"],
        &[
            follow("email", 0.9, &[("EmailSent", 1)]),
            follow("notification", 0.6, &[("NotificationSent", 1)]),
        ],
    ),
    event(
        "PickListCreated",
        "warehouse",
        NATS,
        "warehouse.picklists",
        &["warehouse"],
        &[follow("warehouse", 1.0, &[("ItemPicked", 1)])],
    ),
    event(
        "ItemPicked",
        "warehouse",
        NATS,
        "warehouse.items",
        &["warehouse", "analytics"],
        &[repeat(
            "warehouse",
            &[("ItemPicked", 55), ("PackageSealed", 45)],
            "ItemPicked",
        )],
    ),
    event(
        "PackageSealed",
        "warehouse",
        NATS,
        "warehouse.packages",
        &["shipping"],
        &[follow("shipping", 0.8, &[("LabelPrinted", 1)])],
    ),
    event(
        "LabelPrinted",
        "shipping",
        NATS,
        "shipping.labels",
        &["warehouse"],
        &[],
    ),
    event(
        "ShipmentScheduled",
        "shipping",
        RMQ,
        "shipping.scheduled",
        &["warehouse", "notification"],
        &[follow("warehouse", 0.95, &[("PackageHandedOver", 1)])],
    ),
    event(
        "PackageHandedOver",
        "warehouse",
        RMQ,
        "warehouse.handover",
        &["shipping"],
        &[follow("shipping", 1.0, &[("ShipmentDispatched", 1)])],
    ),
    event(
        "ShipmentDispatched",
        "shipping",
        RMQ,
        "shipping.dispatched",
        &["tracking", "notification", "order"],
        &[
            follow("tracking", 1.0, &[("TrackingUpdated", 1)]),
            follow("notification", 0.7, &[("NotificationSent", 1)]),
        ],
    ),
    event(
        "TrackingUpdated",
        "tracking",
        NATS,
        "tracking.updates",
        &["tracking", "analytics"],
        &[repeat(
            "tracking",
            &[("TrackingUpdated", 75), ("ShipmentDelivered", 25)],
            "TrackingUpdated",
        )],
    ),
    event(
        "ShipmentDelivered",
        "tracking",
        RMQ,
        "shipping.delivered",
        &["order", "billing", "loyalty", "email"],
        &[
            follow("order", 1.0, &[("OrderCompleted", 1)]),
            follow("email", 0.8, &[("EmailSent", 1)]),
        ],
    ),
    event(
        "OrderCompleted",
        "order",
        RMQ,
        "orders.completed",
        &["analytics", "loyalty"],
        &[follow("loyalty", 0.5, &[("PointsAwarded", 1)])],
    ),
    event(
        "InvoiceIssued",
        "billing",
        RMQ,
        "billing.issued",
        &["email", "analytics"],
        &[follow("email", 0.9, &[("EmailSent", 1)])],
    ),
    event(
        "PointsAwarded",
        "loyalty",
        NATS,
        "loyalty.points",
        &["notification", "analytics"],
        &[],
    ),
    event(
        "EmailSent",
        "email",
        NATS,
        "email.sent",
        &["analytics"],
        &[],
    ),
    event(
        "NotificationSent",
        "notification",
        NATS,
        "notifications.sent",
        &["analytics"],
        &[],
    ),
    // The signup saga.
    event(
        "UserRegistered",
        "customer",
        RMQ,
        "customers.registered",
        &["email", "fraud", "analytics", "loyalty"],
        &[
            follow("email", 1.0, &[("VerificationEmailSent", 1)]),
            follow("fraud", 0.8, &[("RiskScored", 1)]),
            follow("loyalty", 0.7, &[("LoyaltyAccountOpened", 1)]),
        ],
    ),
    event(
        "VerificationEmailSent",
        "email",
        NATS,
        "email.verification",
        &["customer"],
        &[follow("customer", 0.85, &[("EmailVerified", 1)])],
    ),
    event(
        "EmailVerified",
        "customer",
        RMQ,
        "customers.verified",
        &["notification", "analytics", "billing"],
        &[
            follow("billing", 0.7, &[("BillingProfileCreated", 1)]),
            follow("notification", 0.6, &[("NotificationSent", 1)]),
        ],
    ),
    event(
        "RiskScored",
        "fraud",
        NATS,
        "fraud.scored",
        &["customer"],
        &[],
    ),
    event(
        "LoyaltyAccountOpened",
        "loyalty",
        NATS,
        "loyalty.accounts",
        &["email"],
        &[follow("email", 0.8, &[("EmailSent", 1)])],
    ),
    event(
        "BillingProfileCreated",
        "billing",
        RMQ,
        "billing.profiles",
        &["analytics"],
        &[],
    ),
    // The return saga.
    event(
        "ReturnRequested",
        "returns",
        RMQ,
        "returns.requested",
        &["warehouse", "order", "notification"],
        &[follow("warehouse", 1.0, &[("ReturnLabelIssued", 1)])],
    ),
    event(
        "ReturnLabelIssued",
        "warehouse",
        RMQ,
        "returns.labels",
        &["email", "tracking"],
        &[
            follow("email", 0.9, &[("EmailSent", 1)]),
            follow("tracking", 0.9, &[("ReturnInTransit", 1)]),
        ],
    ),
    event(
        "ReturnInTransit",
        "tracking",
        NATS,
        "returns.tracking",
        &["tracking"],
        &[repeat(
            "tracking",
            &[("ReturnInTransit", 60), ("ReturnReceived", 40)],
            "ReturnInTransit",
        )],
    ),
    event(
        "ReturnReceived",
        "tracking",
        RMQ,
        "returns.received",
        &["warehouse", "payment", "returns"],
        &[
            follow("payment", 0.95, &[("RefundIssued", 1)]),
            follow("warehouse", 0.9, &[("StockRestocked", 1)]),
        ],
    ),
    compensating(event(
        "RefundIssued",
        "payment",
        RMQ,
        "payments.refunded",
        &["returns", "billing", "email", "loyalty"],
        &[
            follow("returns", 1.0, &[("ReturnClosed", 1)]),
            follow("billing", 0.8, &[("CreditNoteIssued", 1)]),
        ],
    )),
    event(
        "StockRestocked",
        "warehouse",
        NATS,
        "inventory.restocked",
        &["inventory", "analytics"],
        &[],
    ),
    event(
        "ReturnClosed",
        "returns",
        RMQ,
        "returns.closed",
        &["analytics", "notification"],
        &[],
    ),
    event(
        "CreditNoteIssued",
        "billing",
        RMQ,
        "billing.credit-notes",
        &["email"],
        &[follow("email", 0.9, &[("EmailSent", 1)])],
    ),
];

/// How a flow's correlation id is spelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyStyle {
    /// `order-<n>`, a business id.
    Order,
    /// A UUID.
    Uuid,
}

/// The events a flow starts with, their weight and their key style.
pub(crate) const ROOTS: [(&str, u32, KeyStyle); 3] = [
    ("OrderPlaced", 70, KeyStyle::Order),
    ("UserRegistered", 15, KeyStyle::Uuid),
    ("ReturnRequested", 15, KeyStyle::Uuid),
];

/// The index of an event type in [`EVENTS`].
pub(crate) fn event_index(name: &str) -> Option<usize> {
    EVENTS.iter().position(|e| e.name == name)
}

/// The business facts of one flow, which its log lines and attributes
/// mention.
#[derive(Debug, Clone)]
pub(crate) struct Business {
    pub order_no: u64,
    pub customer: String,
    pub amount_cents: u64,
    pub currency: &'static str,
    pub items: u32,
    pub sku: u32,
    pub warehouse: &'static str,
    pub carrier: &'static str,
    pub region: &'static str,
}

pub(crate) const CURRENCIES: [&str; 3] = ["EUR", "USD", "GBP"];
pub(crate) const WAREHOUSES: [&str; 5] = ["fra-2", "ams-1", "dub-3", "waw-1", "mad-2"];
pub(crate) const CARRIERS: [&str; 4] = ["dhl", "ups", "dpd", "gls"];
pub(crate) const REGIONS: [&str; 3] = ["eu-central-1", "eu-west-1", "us-east-1"];

impl Business {
    pub fn amount(&self) -> String {
        format!(
            "{}.{:02} {}",
            self.amount_cents / 100,
            self.amount_cents % 100,
            self.currency
        )
    }
}

/// An ordinary log line a handler of `service` writes, variant `pick`
/// (any number; taken modulo the service's three variants), with `ms` a
/// plausible figure of milliseconds and `n` a small count.
pub(crate) fn log_line(
    service: &str,
    event_type: &str,
    b: &Business,
    pick: u32,
    ms: u64,
    n: u64,
) -> String {
    let (order, customer, sku, items) = (b.order_no, &b.customer, b.sku, b.items);
    let amount = || b.amount();
    match (service, pick % 3) {
        ("order", 0) => format!(
            "loaded order {order} for customer {customer}: {items} line items, total {}, state machine at {event_type}",
            amount()
        ),
        ("order", 1) => format!(
            "order {order} transitioned after {event_type}; persisted with optimistic version {n} in {ms} ms"
        ),
        ("order", 2) => format!(
            "outbox: enqueued follow-up for order {order} (customer {customer}, region {})",
            b.region
        ),
        ("payment", 0) => format!(
            "authorizing {} for order {order} via provider adyen, 3DS not required, risk score {n}",
            amount()
        ),
        ("payment", 1) => format!(
            "payment provider answered in {ms} ms: resultCode=Authorised pspReference=88{order}{sku}"
        ),
        ("payment", 2) => format!(
            "idempotency key pay-{order}-{n} not seen before, proceeding with capture of {}",
            amount()
        ),
        ("inventory", 0) => format!(
            "reserving {items} units of SKU-{sku} in warehouse {} for order {order} (available {}, reserved {n})",
            b.warehouse,
            40 + n * 7
        ),
        ("inventory", 1) => format!(
            "stock ledger updated for SKU-{sku}: -{items} in {} ({ms} ms, 1 row)",
            b.warehouse
        ),
        ("inventory", 2) => {
            format!("reservation for order {order} expires in 900 s unless confirmed")
        }
        ("shipping", 0) => format!(
            "booking {} shipment for order {order}: {items} parcels to {customer}'s default address, service level standard",
            b.carrier
        ),
        ("shipping", 1) => format!(
            "carrier {} accepted booking in {ms} ms, tracking number 1Z{sku}{order}",
            b.carrier
        ),
        ("shipping", 2) => format!(
            "label rendered as PDF (A6, {} KiB) for order {order}",
            40 + n
        ),
        ("notification", 0) => format!(
            "rendering push notification for customer {customer} about {event_type} (locale de-DE, template v{n})"
        ),
        ("notification", 1) => {
            format!("push gateway accepted message for {customer} in {ms} ms, 1 device token")
        }
        ("notification", 2) => format!("customer {customer} opted out of sms, sending push only"),
        ("fraud", 0) => format!(
            "scoring order {order} for customer {customer}: amount {}, {items} items, account age {n} days",
            amount()
        ),
        ("fraud", 1) => {
            format!("fraud model v{n} returned score 0.0{ms} in {ms} ms, threshold 0.85")
        }
        ("fraud", 2) => format!(
            "velocity check for customer {customer}: {n} orders in the last 24 h, within limits"
        ),
        ("billing", 0) => format!(
            "drafting invoice INV-{order} for customer {customer}: {items} lines, total {}, VAT 19%",
            amount()
        ),
        ("billing", 1) => format!(
            "invoice INV-{order} numbered and stored in {ms} ms (pdf {} KiB)",
            20 + n
        ),
        ("billing", 2) => format!(
            "ledger entry posted for order {order}: debit receivables {}",
            amount()
        ),
        ("email", 0) => format!(
            "sending {event_type} email to customer {customer} via smtp relay, template {}-v{n}",
            event_type.to_lowercase()
        ),
        ("email", 1) => format!(
            "smtp relay accepted message for {customer} in {ms} ms: 250 2.0.0 Ok queued as {sku:X}"
        ),
        ("email", 2) => {
            format!("email for customer {customer} throttled for {n} ms by per-domain rate limit")
        }
        ("loyalty", 0) => format!(
            "crediting {} points to customer {customer} for order {order}",
            b.amount_cents / 100
        ),
        ("loyalty", 1) => format!(
            "loyalty balance of {customer} now {} points (tier silver)",
            n * 113
        ),
        ("loyalty", 2) => format!("points ledger write took {ms} ms"),
        ("pricing", 0) => format!(
            "pricing order {order}: {items} items, promotion SPRING{n} applied, total {}",
            amount()
        ),
        ("pricing", 1) => {
            format!("price cache hit ratio {n}% for SKU-{sku}, recomputed in {ms} ms")
        }
        ("pricing", 2) => format!(
            "currency conversion {} -> EUR at rate 1.0{n} for order {order}",
            b.currency
        ),
        ("warehouse", 0) => format!(
            "pick list for order {order}: {items} items in warehouse {}, aisle {n}, bin {sku}",
            b.warehouse
        ),
        ("warehouse", 1) => format!("scanner confirmed SKU-{sku} for order {order} after {ms} ms"),
        ("warehouse", 2) => format!(
            "package for order {order} weighed {} g, dimensions 30x20x{n} cm",
            200 + sku % 4000
        ),
        ("tracking", 0) => format!(
            "carrier {} reported scan for order {order} at hub {n} after {ms} ms",
            b.carrier
        ),
        ("tracking", 1) => format!(
            "polling {} tracking API for 1Z{sku}{order}: status in_transit",
            b.carrier
        ),
        ("tracking", 2) => format!("eta for order {order} recomputed: {n} h"),
        ("analytics", 0) => {
            format!("buffered {event_type} for order {order} into batch of {n} events")
        }
        ("analytics", 1) => {
            format!("flushed analytics batch of {n} events to warehouse in {ms} ms")
        }
        ("analytics", 2) => {
            format!("dropped duplicate {event_type} for customer {customer} (dedupe window 60 s)")
        }
        ("customer", 0) => {
            format!("creating customer profile {customer} (signup channel web, locale de-DE)")
        }
        ("customer", 1) => {
            format!("customer {customer} verified email address in {ms} ms after {n} attempts")
        }
        ("customer", 2) => format!("profile {customer} persisted with marketing consent false"),
        (_, 0) => format!(
            "return request for order {order} by customer {customer}: {items} items, reason damaged"
        ),
        (_, 1) => format!(
            "return RMA-{order} approved automatically (value {} under threshold)",
            amount()
        ),
        _ => format!("return for order {order} closed after {ms} ms"),
    }
}

/// Kinds of error a handler fails with: the `error_type` and a message
/// template's first line; `{peer}` is filled with the service's peer.
pub(crate) const ERRORS: [(&str, &str); 7] = [
    ("TimeoutError", "call to {peer} timed out after 3000 ms"),
    (
        "ConnectionReset",
        "connection reset by peer while talking to {peer}",
    ),
    (
        "OptimisticLockError",
        "version conflict updating aggregate: expected version 17, found 18",
    ),
    (
        "ValidationError",
        "field `shipping_address.postal_code` failed validation: value does not match the pattern for DE",
    ),
    (
        "UpstreamUnavailable",
        "{peer} answered 503 Service Unavailable (retry-after: 2)",
    ),
    (
        "DeadlockDetected",
        "deadlock detected while locking rows; transaction rolled back",
    ),
    (
        "DeserializationError",
        "could not decode event payload: missing field `line_items` at line 1 column 412",
    ),
];

/// The dependency a service talks to, named in its errors.
pub(crate) fn peer(service: &str) -> &'static str {
    match service {
        "payment" => "https://checkout-test.adyen.example/v71/payments",
        "inventory" => "postgres://inventory-db:5432/inventory",
        "shipping" => "https://api.carrier-gateway.example/v2/shipments",
        "notification" => "https://push-gateway.internal:8443/v1/send",
        "fraud" => "http://fraud-model.ml.svc:8080/score",
        "billing" => "postgres://billing-db:5432/billing",
        "email" => "smtp://smtp-relay.internal:587",
        "tracking" => "https://tracking.carrier-gateway.example/v1/events",
        "analytics" => "clickhouse://analytics-ch:9000/events",
        _ => "postgres://orders-db:5432/orders",
    }
}

/// Stack frames a service's failures show, innermost first.
fn frames(service: &str) -> (&'static [&'static str], bool) {
    // (frames, whether the service is a JVM one)
    match service {
        "payment" | "billing" | "loyalty" => (
            &[
                "com.acme.{svc}.adapter.HttpGatewayClient.send(HttpGatewayClient.java:214)",
                "com.acme.{svc}.adapter.HttpGatewayClient.lambda$execute$3(HttpGatewayClient.java:151)",
                "io.github.resilience4j.retry.Retry.lambda$decorateCheckedSupplier$3(Retry.java:210)",
                "com.acme.{svc}.application.CommandHandler.handle(CommandHandler.java:88)",
                "com.acme.{svc}.application.CommandHandler$$SpringCGLIB$$0.invoke(<generated>)",
                "org.springframework.transaction.interceptor.TransactionInterceptor.invoke(TransactionInterceptor.java:119)",
                "org.springframework.aop.framework.ReflectiveMethodInvocation.proceed(ReflectiveMethodInvocation.java:184)",
                "org.springframework.amqp.rabbit.listener.adapter.MessagingMessageListenerAdapter.invokeHandler(MessagingMessageListenerAdapter.java:286)",
                "org.springframework.amqp.rabbit.listener.AbstractMessageListenerContainer.doInvokeListener(AbstractMessageListenerContainer.java:1663)",
                "org.springframework.amqp.rabbit.listener.SimpleMessageListenerContainer.receiveAndExecute(SimpleMessageListenerContainer.java:1034)",
                "java.base/java.util.concurrent.ThreadPoolExecutor.runWorker(ThreadPoolExecutor.java:1144)",
                "java.base/java.lang.Thread.run(Thread.java:1583)",
            ],
            true,
        ),
        _ => (
            &[
                "{svc}::adapters::db::Repository::save::{{closure}}\n             at ./src/adapters/db.rs:214:17",
                "{svc}::domain::handlers::handle_event::{{closure}}\n             at ./src/domain/handlers.rs:88:9",
                "<tracing::instrument::Instrumented<T> as core::future::future::Future>::poll\n             at /cargo/registry/src/tracing-0.1.44/src/instrument.rs:321:9",
                "causeway_middleware::service::Service::handle::{{closure}}\n             at /cargo/registry/src/causeway-middleware/src/service.rs:370:13",
                "{svc}::consumer::run::{{closure}}::{{closure}}\n             at ./src/consumer.rs:57:21",
                "tokio::runtime::task::core::Core<T,S>::poll::{{closure}}\n             at /cargo/registry/src/tokio-1.54.0/src/runtime/task/core.rs:331:17",
                "tokio::runtime::task::harness::Harness<T,S>::poll\n             at /cargo/registry/src/tokio-1.54.0/src/runtime/task/harness.rs:154:15",
                "tokio::runtime::scheduler::multi_thread::worker::Context::run_task\n             at /cargo/registry/src/tokio-1.54.0/src/runtime/scheduler/multi_thread/worker.rs:595:9",
                "tokio::runtime::scheduler::multi_thread::worker::run\n             at /cargo/registry/src/tokio-1.54.0/src/runtime/scheduler/multi_thread/worker.rs:513:21",
                "std::sys::backtrace::__rust_begin_short_backtrace\n             at /rustc/1.95.0/library/std/src/sys/backtrace.rs:152:18",
                "std::thread::Builder::spawn_unchecked_::{{closure}}\n             at /rustc/1.95.0/library/std/src/thread/mod.rs:559:17",
                "std::sys::pal::unix::thread::Thread::new::thread_start\n             at /rustc/1.95.0/library/std/src/sys/pal/unix/thread.rs:105:17",
            ],
            false,
        ),
    }
}

/// `first_line` followed by a stack trace of `service`'s frames, repeated
/// (as nested causes) until the text is at least `min_len` bytes.
pub(crate) fn with_stack_trace(
    service: &str,
    error_type: &str,
    first_line: &str,
    min_len: usize,
) -> String {
    let (frames, jvm) = frames(service);
    let mut text = String::with_capacity(min_len + 512);
    text.push_str(first_line);
    let mut depth = 0usize;
    while text.len() < min_len {
        if depth > 0 {
            if jvm {
                text.push_str(&format!(
                    "\nCaused by: com.acme.{service}.{error_type}Exception: {first_line}"
                ));
            } else {
                text.push_str(&format!("\n\nCaused by:\n    {depth}: {first_line}"));
            }
        } else if !jvm {
            text.push_str("\n\nStack backtrace:");
        }
        for (i, frame) in frames.iter().enumerate() {
            let frame = frame.replace("{svc}", service);
            if jvm {
                text.push_str("\n\tat ");
            } else {
                text.push_str(&format!("\n  {i:>2}: "));
            }
            text.push_str(&frame);
        }
        depth += 1;
    }
    text
}
