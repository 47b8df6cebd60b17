//! Test data built from the model types, with fixed times and ids, shared by
//! the state and screen tests. Test-only; nothing here talks to a server.

use causeway_model::{
    Anomaly, AnomalyKind, ConsumerStep, EventId, FlowDetail, FlowEvent, FlowStatus, FlowSummary,
    FlowsPage, Stage, StepStatus, Timestamp,
};

/// `2026-11-22T12:00:00Z` plus `millis`.
pub(crate) fn at(millis: i64) -> Timestamp {
    let base: Timestamp = "2026-11-22T12:00:00Z".parse().unwrap();
    Timestamp::from_micros(base.as_micros() + millis * 1_000)
}

pub(crate) const FAILED_FLOW: &str = "01975c2a-1f00-7000-8000-00000000a003";

/// A plain summary, for tests that only need ids and statuses.
pub(crate) fn summary(correlation_id: &str, status: FlowStatus) -> FlowSummary {
    FlowSummary {
        correlation_id: correlation_id.to_owned(),
        status,
        root_event_type: Some("OrderPlaced".to_owned()),
        started_at: at(0),
        last_activity_at: at(48),
        duration_us: 48_000,
        services: vec!["orders".to_owned()],
        event_count: 1,
        record_count: 3,
        failure_count: 0,
        anomalies: vec![],
        trace_ids: vec![],
    }
}

/// Newest activity first: a failed order, a completed order, a customer
/// sign-up still in progress.
pub(crate) fn three_flows() -> FlowsPage {
    let services = |names: &[&str]| names.iter().map(|s| (*s).to_owned()).collect();
    FlowsPage {
        flows: vec![
            FlowSummary {
                correlation_id: FAILED_FLOW.to_owned(),
                status: FlowStatus::Failed,
                root_event_type: Some("OrderPlaced".to_owned()),
                started_at: at(7_000),
                last_activity_at: at(9_115),
                duration_us: 2_115_400,
                services: services(&["inventory", "orders", "payments"]),
                event_count: 4,
                record_count: 15,
                failure_count: 2,
                anomalies: vec![],
                trace_ids: vec![],
            },
            FlowSummary {
                correlation_id: "01975c29-f400-7000-8000-00000000a002".to_owned(),
                status: FlowStatus::Completed,
                root_event_type: Some("OrderPlaced".to_owned()),
                started_at: at(4_000),
                last_activity_at: at(4_049),
                duration_us: 48_700,
                services: services(&["inventory", "orders", "payments", "shipping"]),
                event_count: 5,
                record_count: 18,
                failure_count: 0,
                anomalies: vec![],
                trace_ids: vec![],
            },
            FlowSummary {
                correlation_id: "01975c29-e000-7000-8000-00000000a001".to_owned(),
                status: FlowStatus::InProgress,
                root_event_type: Some("CustomerRegistered".to_owned()),
                started_at: at(1_000),
                last_activity_at: at(1_001),
                duration_us: 850,
                services: services(&["customers", "notifications"]),
                event_count: 2,
                record_count: 3,
                failure_count: 0,
                anomalies: vec![],
                trace_ids: vec![],
            },
        ],
        next_cursor: None,
        scanned: 0,
        scan_limited: false,
    }
}

fn event_id(n: u32) -> EventId {
    EventId::new(format!("01975c2a-1f00-7000-8000-0000e{n:07}")).unwrap()
}

fn flow_event(
    n: u32,
    event_type: &str,
    publisher: &str,
    destination: &str,
    published_ms: i64,
    consumers: Vec<ConsumerStep>,
) -> FlowEvent {
    FlowEvent {
        event_id: event_id(n),
        event_type: Some(event_type.to_owned()),
        publisher: Some(publisher.to_owned()),
        published_at: Some(at(published_ms)),
        destination: Some(destination.to_owned()),
        consumers,
    }
}

fn handled(service: &str, group: &str, received_ms: i64, children: Vec<FlowEvent>) -> ConsumerStep {
    ConsumerStep {
        service: service.to_owned(),
        consumer_group: Some(group.to_owned()),
        status: StepStatus::Handled,
        stages: vec![Stage::Received, Stage::Handled],
        received_at: Some(at(received_ms)),
        finished_at: Some(at(received_ms + 3)),
        queue_wait_us: Some(1_200),
        processing_us: Some(3_400),
        error: None,
        deliveries: 1,
        expected: false,
        stuck_after_us: None,
        children,
    }
}

/// The first of [`three_flows`]: the order is placed, stock is reserved,
/// the payment fails twice (one retry) and the saga cancels the order.
pub(crate) fn failed_payment_detail() -> FlowDetail {
    let payment = ConsumerStep {
        service: "payments".to_owned(),
        consumer_group: Some("payments".to_owned()),
        status: StepStatus::Failed,
        stages: vec![
            Stage::Received,
            Stage::Failed,
            Stage::Retried,
            Stage::Failed,
        ],
        received_at: Some(at(7_001)),
        finished_at: Some(at(9_104)),
        queue_wait_us: Some(850),
        processing_us: Some(2_103_000),
        error: Some("CardDeclined: card declined by issuer".to_owned()),
        deliveries: 2,
        expected: false,
        stuck_after_us: None,
        children: vec![flow_event(
            4,
            "PaymentFailed",
            "payments",
            "payments.failed",
            9_104,
            vec![handled(
                "orders",
                "orders-saga",
                9_105,
                vec![flow_event(
                    5,
                    "OrderCancelled",
                    "orders",
                    "orders.cancelled",
                    9_110,
                    vec![],
                )],
            )],
        )],
    };
    let inventory = handled(
        "inventory",
        "inventory-reservations",
        7_001,
        vec![flow_event(
            2,
            "StockReserved",
            "inventory",
            "inventory.reserved",
            7_005,
            vec![handled("orders", "orders-saga", 7_006, vec![])],
        )],
    );
    FlowDetail {
        summary: three_flows().flows.remove(0),
        roots: vec![flow_event(
            1,
            "OrderPlaced",
            "orders",
            "orders.placed",
            7_000,
            vec![inventory, payment],
        )],
        anomalies: vec![Anomaly {
            kind: AnomalyKind::Redelivery,
            // As the query writes it, with a control character the screen
            // must not get.
            message: "payments[payments] received OrderPlaced 2 times\u{1b}[2J".to_owned(),
            event_id: None,
            event_type: Some("OrderPlaced".to_owned()),
            consumer: None,
            other_event_id: None,
            count: Some(2),
            observed_us: None,
            threshold_us: None,
            corrections: vec![],
            records: vec![],
        }],
        clock_corrections: vec![],
        records: vec![],
        truncated: false,
        records_returned: 0,
    }
}
