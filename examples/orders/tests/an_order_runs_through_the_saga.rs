//! The saga runs end to end on the bus and each service writes its own log
//! file of causeway records.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

use std::time::Duration;

use causeway_middleware::{Bus, DirectorySink, RecordLayer};
use causeway_model::{Record, Stage};
use causeway_orders::{Order, PAYMENT_LIMIT_CENTS, place_order, start};
use tracing_subscriber::layer::SubscriberExt;

fn read(path: &std::path::Path) -> Vec<Record> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test(flavor = "current_thread")]
async fn a_paid_order_ships_and_a_declined_one_fails_in_payment() {
    let dir = tempfile::tempdir().unwrap();
    let sink = DirectorySink::new(dir.path()).unwrap();
    let subscriber = tracing_subscriber::registry().with(RecordLayer::new("orders", sink));
    let _guard = tracing::subscriber::set_default(subscriber);

    let bus = Bus::default();
    let _services = start(&bus).unwrap();
    place_order(
        &bus,
        &Order {
            id: 1,
            amount_cents: 1_000,
            items: 2,
        },
    )
    .await;
    place_order(
        &bus,
        &Order {
            id: 2,
            amount_cents: PAYMENT_LIMIT_CENTS + 1,
            items: 1,
        },
    )
    .await;

    let completed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let order = read(&dir.path().join("order.log"));
            if order.iter().any(|r| r.stage == Stage::Handled) {
                return order;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("order 1 never completed");
    assert!(completed.iter().all(|r| r.service == "order"));

    let payment = read(&dir.path().join("payment.log"));
    let failed: Vec<&Record> = payment
        .iter()
        .filter(|r| r.stage == Stage::Failed)
        .collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(
        failed[0].correlation_id.as_ref().unwrap().as_str(),
        "order-2"
    );
    assert_eq!(failed[0].error_type.as_deref(), Some("SagaError"));

    let shipping = read(&dir.path().join("shipping.log"));
    assert!(
        shipping
            .iter()
            .all(|r| r.correlation_id.as_ref().unwrap().as_str() == "order-1")
    );
    assert!(shipping.iter().any(|r| r.stage == Stage::Published && r.event_type.as_deref() == Some("OrderShipped")));
}
