//! A lifecycle record carries every record field it should itself, under
//! the model's declared names: a field `Service` forgets to emit, or emits
//! under another name (it would land in `attributes`), fails here. A new
//! record field does not compile here until it is decided whether
//! lifecycle records carry it.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

use std::collections::HashMap;

use causeway_middleware::{Consume, MemorySink, Publish, RecordLayer, Service};
use causeway_model::{RecordField, Stage};
use tracing_subscriber::layer::SubscriberExt;

#[derive(Debug, thiserror::Error)]
#[error("parcel lost")]
struct ParcelLost;

/// Whether the `failed` record of a handler two hops into a flow carries
/// the field.
fn carried_by_a_failure(field: RecordField) -> bool {
    match field {
        RecordField::Timestamp
        | RecordField::Level
        | RecordField::Service
        | RecordField::Instance
        | RecordField::Message
        | RecordField::Stage
        | RecordField::TraceId
        | RecordField::SpanId
        | RecordField::ParentSpanId
        | RecordField::CorrelationId
        | RecordField::CausationId
        | RecordField::EventId
        | RecordField::EventType
        | RecordField::MessagingSystem
        | RecordField::Destination
        | RecordField::ConsumerGroup
        | RecordField::DurationUs
        | RecordField::ErrorType
        | RecordField::ErrorMessage => true,
        // Nothing of a lifecycle event is left over for `attributes`, and
        // only the agent writes malformed records.
        // Links come from OpenTelemetry spans through the collector.
        RecordField::Attributes | RecordField::Malformed | RecordField::Links => false,
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_failure_two_hops_in_carries_every_lifecycle_field() {
    let sink = MemorySink::new();
    let subscriber = tracing_subscriber::registry()
        .with(RecordLayer::new("test", sink.clone()).with_instance("host-1"));
    let _guard = tracing::subscriber::set_default(subscriber);

    let mut placed = HashMap::<String, String>::new();
    Service::new("order").publish(None, Publish::new("OrderPlaced", "orders"), &mut placed);
    let paid = Service::new("payment")
        .handle(
            &placed,
            Consume::new("orders", "payment"),
            |handling| async move {
                let mut paid = HashMap::<String, String>::new();
                handling.publish(Publish::new("PaymentTaken", "payments"), &mut paid);
                Ok::<_, ParcelLost>(paid)
            },
        )
        .await
        .unwrap();
    let result = Service::new("shipping")
        .handle(&paid, Consume::new("payments", "shipping"), |_| async {
            Err::<(), _>(ParcelLost)
        })
        .await;
    assert!(result.is_err());

    let records = sink.records().unwrap();
    let failed = records
        .iter()
        .find(|r| r.stage == Stage::Failed)
        .expect("a failed record");
    let wrong: Vec<(&str, bool)> = RecordField::ALL
        .into_iter()
        .filter(|field| failed.field(*field).is_absent() == carried_by_a_failure(*field))
        .map(|field| (field.name(), carried_by_a_failure(field)))
        .collect();
    assert!(
        wrong.is_empty(),
        "(field, expected) not as expected: {wrong:?}\n{failed:#?}"
    );
}
