//! The saga over each transport (the in-process bus, and with their
//! features RabbitMQ on :5672 and NATS JetStream on :4222), one order per
//! scenario: each service writes its own log file of causeway records, and
//! those records show the paid order completed, the declined one
//! compensated by inventory and order, the poison one retried by the broker
//! until it dead-lettered it (recorded in its own flow), the duplicate one
//! shipped twice by shipping but completed once by the idempotent order
//! service, the slow one slow in shipping, and the stuck one never
//! reaching shipping. (What the query API makes of them is tested through
//! `causeway demo` in the cli crate.)

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

use std::path::Path;
use std::time::Duration;

use causeway_middleware::{DirectorySink, RecordLayer};
use causeway_model::{Record, Stage};
use causeway_orders::{DEAD_LETTERS, Transport, place_order, sample_orders, start};
use tracing_subscriber::layer::SubscriberExt;

fn read(dir: &Path, service: &str) -> Vec<Record> {
    std::fs::read_to_string(dir.join(format!("{service}.log")))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn of<'a>(records: &'a [Record], flow: &str, stage: Stage) -> Vec<&'a Record> {
    records
        .iter()
        .filter(|r| r.stage == stage && r.correlation_id.as_ref().unwrap().as_str() == flow)
        .collect()
}

/// The event id of order-7's `PaymentCaptured`, once published.
fn lost_payment(payment: &[Record]) -> Option<String> {
    of(payment, "order-7", Stage::Published)
        .iter()
        .find(|r| r.event_type.as_deref() == Some("PaymentCaptured"))
        .map(|r| r.event_id.as_ref().unwrap().as_str().to_owned())
}

fn handled_anywhere(records: &[Record], event_id: &str) -> bool {
    records.iter().any(|r| {
        r.stage == Stage::Handled && r.event_id.as_ref().is_some_and(|e| e.as_str() == event_id)
    })
}

/// A name no other run uses.
fn namespace() -> String {
    format!(
        "causeway-test-{}",
        causeway_model::EventId::generate()
            .as_str()
            .replace('-', "")
    )
}

/// Places a happy, a declined and a poison order over `broker` and checks
/// what each service wrote.
async fn saga_over(broker: Option<&str>) {
    let dir = tempfile::tempdir().unwrap();
    let sink = DirectorySink::new(dir.path()).unwrap();
    let subscriber = tracing_subscriber::registry().with(RecordLayer::new("orders", sink));
    let _guard = tracing::subscriber::set_default(subscriber);

    let transport = Transport::connect(broker, &namespace()).await.unwrap();
    let services = start(&transport).await.unwrap();
    let mut orders = sample_orders(1, 1, "happy");
    for (id, scenario) in [
        (2, "declined"),
        (3, "poison"),
        (4, "duplicate"),
        (5, "slow"),
        (6, "stuck"),
        (7, "context_lost"),
        (8, "out_of_order"),
    ] {
        orders.extend(sample_orders(1, id, scenario));
    }
    for order in &orders {
        place_order(&transport, order).await.unwrap();
    }

    let settled = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let order = read(dir.path(), "order");
            let dead = read(dir.path(), DEAD_LETTERS);
            let shipping = read(dir.path(), "shipping");
            let lost = lost_payment(&read(dir.path(), "payment"));
            let done = !of(&order, "order-1", Stage::Handled).is_empty()
                && lost.is_some_and(|id| handled_anywhere(&shipping, &id))
                && of(&shipping, "order-8", Stage::Handled).len() >= 3
                && of(&order, "order-4", Stage::Handled).len() == 2
                && !of(&shipping, "order-5", Stage::Handled).is_empty()
                && !of(&order, "order-2", Stage::Compensated).is_empty()
                && !of(
                    &read(dir.path(), "inventory"),
                    "order-2",
                    Stage::Compensated,
                )
                .is_empty()
                && !of(&dead, "order-3", Stage::DeadLettered).is_empty();
            if done {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let inventory = read(dir.path(), "inventory");
    assert!(
        settled.is_ok(),
        "over {transport:?} the saga did not settle: {inventory:#?}"
    );

    // Redelivered: shipping, not idempotent, handled one event twice;
    // order, idempotent, handled each event once, however long it is
    // given to do otherwise.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let handled_ids = |service: &str| {
        let records = read(dir.path(), service);
        let mut ids: Vec<String> = of(&records, "order-4", Stage::Handled)
            .iter()
            .map(|r| r.event_id.as_ref().unwrap().as_str().to_owned())
            .collect();
        ids.sort();
        ids
    };
    let by_order = handled_ids("order");
    let mut distinct = by_order.clone();
    distinct.dedup();
    assert_eq!(
        by_order, distinct,
        "order handled an event twice over {transport:?}"
    );
    let by_shipping = handled_ids("shipping");
    assert!(
        by_shipping.windows(2).any(|w| w[0] == w[1]),
        "shipping handled no event twice over {transport:?}: {by_shipping:?}"
    );

    // Paid: shipped, the customer notified over HTTP in the same trace,
    // and nothing compensated.
    let shipping = read(dir.path(), "shipping");
    let notified = read(dir.path(), "notifier");
    let notified = of(&notified, "order-1", Stage::Handled);
    let webhook = of(&shipping, "order-1", Stage::Published);
    let webhook = webhook
        .iter()
        .find(|r| r.event_type.as_deref() == Some("ShipmentNotified"))
        .unwrap();
    assert_eq!(notified[0].event_id, webhook.event_id);
    assert_eq!(notified[0].trace_id, webhook.trace_id);
    assert_eq!(notified[0].messaging_system.as_deref(), Some("http"));
    let shipped = of(&shipping, "order-1", Stage::Published);
    assert!(
        shipped
            .iter()
            .any(|r| r.event_type.as_deref() == Some("OrderShipped"))
    );
    assert!(of(&inventory, "order-1", Stage::Compensated).is_empty());
    // Declined: payment failed once, not retried; both compensations.
    let payment = read(dir.path(), "payment");
    assert_eq!(of(&payment, "order-2", Stage::Failed).len(), 1);
    assert!(of(&payment, "order-2", Stage::Retried).is_empty());
    assert!(of(&shipping, "order-2", Stage::Received).is_empty());
    let released = of(&inventory, "order-2", Stage::Compensated);
    assert_eq!(released[0].message, "compensated: stock released");
    // Poison: inventory failed on every delivery the broker made, each
    // redelivery recorded, then the dead letter in the same flow.
    let failures = of(&inventory, "order-3", Stage::Failed).len();
    assert!(failures >= 3, "{failures} failures over {transport:?}");
    assert!(!of(&inventory, "order-3", Stage::Retried).is_empty());
    let dead = read(dir.path(), DEAD_LETTERS);
    let dead = of(&dead, "order-3", Stage::DeadLettered);
    let order = read(dir.path(), "order");
    let placed = of(&order, "order-3", Stage::Published);
    assert_eq!(
        dead[0].event_id, placed[0].event_id,
        "the dead letter is the placed event"
    );
    assert_eq!(
        dead[0].trace_id, placed[0].trace_id,
        "the context survived dead-lettering"
    );
    for task in services {
        task.abort();
    }
}

#[tokio::test(flavor = "current_thread")]
async fn over_the_in_process_bus() {
    saga_over(None).await;
}

#[cfg(feature = "amqp")]
#[tokio::test(flavor = "current_thread")]
async fn over_rabbitmq() {
    saga_over(Some("amqp://guest:guest@127.0.0.1:5672/%2f")).await;
}

#[cfg(feature = "nats")]
#[tokio::test(flavor = "current_thread")]
async fn over_nats_jetstream() {
    saga_over(Some("nats://127.0.0.1:4222")).await;
}
