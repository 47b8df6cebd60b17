//! Publishing and handling through the middleware writes the lifecycle
//! records, and a handler's own tracing events carry its flow's ids.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

use causeway_middleware::{
    Bus, BusMessage, Consume, DirectorySink, MemorySink, Publish, RecordLayer, Service,
};
use causeway_model::{CorrelationId, Level, Record, Stage};
use tracing_subscriber::layer::SubscriberExt;

#[derive(Debug, thiserror::Error)]
#[error("card declined")]
struct CardDeclined;

#[tokio::test(flavor = "current_thread")]
async fn a_handled_event_and_its_child_share_the_flow() {
    let buffer = MemorySink::new();
    let subscriber = tracing_subscriber::registry()
        .with(RecordLayer::new("test", buffer.clone()).with_instance("host-1"));
    let _guard = tracing::subscriber::set_default(subscriber);

    let bus = Bus::default();
    let mut payments = bus.subscribe("orders", "payment").unwrap();
    let order = Service::new("order");
    let payment = Service::new("payment");

    let mut headers = Default::default();
    let placed = order.publish(
        None,
        Publish::new("OrderPlaced", "orders")
            .correlation_id(CorrelationId::new("order-1234").unwrap()),
        &mut headers,
    );
    bus.publish(
        "orders",
        BusMessage {
            headers,
            payload: serde_json::json!({"order": 1234}),
        },
    )
    .await;

    let message = payments.recv().await.unwrap();
    let child = payment
        .handle(
            &message.headers,
            Consume::new("orders", "payment"),
            |handling| async move {
                tracing::warn!(amount = 125, "charging card");
                let mut headers = std::collections::HashMap::<String, String>::new();
                Ok::<_, CardDeclined>(
                    handling.publish(Publish::new("PaymentSucceeded", "payments"), &mut headers),
                )
            },
        )
        .await
        .unwrap();

    let records = buffer.records().unwrap();
    let stages: Vec<(&str, Stage)> = records
        .iter()
        .map(|r| (r.service.as_str(), r.stage))
        .collect();
    assert_eq!(
        stages,
        vec![
            ("order", Stage::Published),
            ("payment", Stage::Received),
            ("payment", Stage::Log),
            ("payment", Stage::Published),
            ("payment", Stage::Handled),
        ]
    );
    for r in &records {
        assert_eq!(r.correlation_id.as_ref().unwrap().as_str(), "order-1234");
        assert_eq!(r.trace_id, Some(placed.trace_id));
        assert_eq!(r.instance.as_deref(), Some("host-1"));
    }
    let received = &records[1];
    assert_eq!(received.event_id.as_ref(), Some(&placed.event_id));
    assert_eq!(received.parent_span_id, Some(placed.span_id));
    assert_eq!(received.consumer_group.as_deref(), Some("payment"));
    assert_eq!(received.messaging_system.as_deref(), Some("inproc"));

    let log = &records[2];
    assert_eq!(log.message, "charging card");
    assert_eq!(log.level, Level::Warn);
    assert_eq!(log.attributes["amount"], 125);
    assert_eq!(
        log.event_id.as_ref(),
        Some(&placed.event_id),
        "log line not stamped"
    );
    assert_eq!(log.span_id, received.span_id);

    let published_child = &records[3];
    assert_eq!(published_child.event_id.as_ref(), Some(&child.event_id));
    assert_eq!(
        published_child.causation_id.as_ref(),
        Some(&placed.event_id)
    );
    assert_eq!(published_child.parent_span_id, received.span_id);
    assert!(records[4].duration_us.is_some());
}

#[tokio::test(flavor = "current_thread")]
async fn a_failing_handler_writes_failed_with_the_error_and_returns_it() {
    let dir = tempfile::tempdir().unwrap();
    let sink = DirectorySink::new(dir.path()).unwrap();
    let payment_log = sink.path_for("payment");
    let subscriber = tracing_subscriber::registry().with(RecordLayer::new("test", sink));
    let _guard = tracing::subscriber::set_default(subscriber);

    let mut headers = std::collections::HashMap::<String, String>::new();
    Service::new("order").publish(None, Publish::new("OrderPlaced", "orders"), &mut headers);
    let result = Service::new("payment")
        .handle(&headers, Consume::new("orders", "payment"), |_| async {
            Err::<(), _>(CardDeclined)
        })
        .await;
    assert!(result.is_err());

    let text = std::fs::read_to_string(payment_log).unwrap();
    let records: Vec<Record> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let failed = records.last().unwrap();
    assert_eq!(failed.stage, Stage::Failed);
    assert_eq!(failed.level, Level::Error);
    assert_eq!(failed.error_type.as_deref(), Some("CardDeclined"));
    assert_eq!(failed.error_message.as_deref(), Some("card declined"));
    assert!(
        dir.path().join("order.log").exists(),
        "each service writes its own file"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_message_without_context_is_still_handled_in_a_fresh_flow() {
    let buffer = MemorySink::new();
    let subscriber = tracing_subscriber::registry().with(RecordLayer::new("test", buffer.clone()));
    let _guard = tracing::subscriber::set_default(subscriber);
    let headers =
        std::collections::HashMap::from([("traceparent".to_owned(), "garbage".to_owned())]);
    let payment = Service::new("payment");
    let handled = payment
        .handle(&headers, Consume::new("orders", "payment"), |_| async {
            Ok::<_, CardDeclined>(7)
        })
        .await;
    assert_eq!(handled.unwrap(), 7);
    assert_eq!(
        payment.context_stats(),
        causeway_middleware::ContextStats {
            fresh_contexts: 1,
            invalid_values: 1
        }
    );
    let records = buffer.records().unwrap();
    assert_eq!(records.len(), 2);
    assert!(
        records
            .iter()
            .all(|r| r.correlation_id.is_some() && r.trace_id.is_some())
    );
}

#[tokio::test(flavor = "current_thread")]
async fn retries_dead_letters_and_compensations_are_recorded_in_the_flow() {
    let buffer = MemorySink::new();
    let subscriber = tracing_subscriber::registry().with(RecordLayer::new("test", buffer.clone()));
    let _guard = tracing::subscriber::set_default(subscriber);

    let mut headers = std::collections::HashMap::<String, String>::new();
    let placed =
        Service::new("order").publish(None, Publish::new("OrderPlaced", "orders"), &mut headers);
    Service::new("payment")
        .handle(
            &headers,
            Consume::new("orders", "payment"),
            |handling| async move {
                handling.retried(2);
                handling.dead_lettered("poison message");
                handling.compensated("refund issued");
                Ok::<_, CardDeclined>(())
            },
        )
        .await
        .unwrap();

    let records = buffer.records().unwrap();
    let find = |stage| records.iter().find(|r| r.stage == stage).unwrap();
    for stage in [Stage::Retried, Stage::DeadLettered, Stage::Compensated] {
        let record = find(stage);
        assert_eq!(record.event_id.as_ref(), Some(&placed.event_id), "{stage}");
        assert_eq!(
            record.correlation_id,
            Some(placed.correlation_id.clone()),
            "{stage}"
        );
        assert_eq!(record.consumer_group.as_deref(), Some("payment"), "{stage}");
    }
    assert_eq!(find(Stage::Retried).message, "retry attempt 2");
    let dead = find(Stage::DeadLettered);
    assert_eq!(dead.level, Level::Error);
    assert_eq!(dead.error_message.as_deref(), Some("poison message"));
    assert_eq!(
        find(Stage::Compensated).message,
        "compensated: refund issued"
    );
}
