//! Flow reconstruction on fixture record sets, one per thing that happens to
//! real flows: each flow's JSON is an insta snapshot, and the status, step
//! states and anomaly kinds that matter are asserted by name besides. A
//! property test shuffles every fixture (equal timestamps included) and
//! gets byte-identical JSON.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

use causeway_model::{
    AnomalyKind, ConsumerStep, CorrelationId, DigestFacet, EventId, FlowDetail, FlowDigest,
    FlowEvent, FlowStatus, Record, Stage, StepStatus, Timestamp, TraceId,
};
use causeway_query::{
    Contracts, FlowContext, FlowSettings, Topology, TopologySettings, reconstruct,
};
use proptest::prelude::*;

/// Seconds, as microseconds: fixtures are easier to read in seconds.
const S: i64 = 1_000_000;
/// Every fixture starts here (2026-01-01T00:00:00Z).
const T0: i64 = 1_767_225_600 * S;

/// One record of a fixture; built with the helpers below.
#[derive(Clone)]
struct Line {
    at: i64,
    service: &'static str,
    stage: Stage,
    event: &'static str,
    event_type: &'static str,
    cause: Option<&'static str>,
    destination: Option<&'static str>,
    group: Option<&'static str>,
    error: Option<&'static str>,
    duration_ms: Option<u64>,
    trace: u8,
}

fn line(
    at_ms: i64,
    service: &'static str,
    stage: Stage,
    event: &'static str,
    ty: &'static str,
) -> Line {
    Line {
        at: T0 + at_ms * 1_000,
        service,
        stage,
        event,
        event_type: ty,
        cause: None,
        destination: None,
        group: None,
        error: None,
        duration_ms: None,
        trace: 1,
    }
}

impl Line {
    fn cause(mut self, cause: &'static str) -> Self {
        self.cause = Some(cause);
        self
    }
    fn to(mut self, destination: &'static str) -> Self {
        self.destination = Some(destination);
        self
    }
    fn group(mut self, group: &'static str) -> Self {
        self.group = Some(group);
        self
    }
    fn error(mut self, error: &'static str) -> Self {
        self.error = Some(error);
        self
    }
    fn took(mut self, ms: u64) -> Self {
        self.duration_ms = Some(ms);
        self
    }
}

fn pub_(at_ms: i64, service: &'static str, event: &'static str, ty: &'static str) -> Line {
    line(at_ms, service, Stage::Published, event, ty)
}

/// received + handled, `ms` apart.
fn handles(
    at_ms: i64,
    ms: i64,
    service: &'static str,
    event: &'static str,
    ty: &'static str,
) -> [Line; 2] {
    [
        line(at_ms, service, Stage::Received, event, ty),
        line(at_ms + ms, service, Stage::Handled, event, ty).took(ms as u64),
    ]
}

fn records(flow: &str, lines: &[Line]) -> Vec<Record> {
    lines
        .iter()
        .map(|l| {
            let mut r = Record::new(
                Timestamp::from_micros(l.at),
                l.service,
                format!("{} {}", l.stage, l.event_type),
            );
            r.stage = l.stage;
            r.correlation_id = Some(CorrelationId::new(flow).unwrap());
            r.event_id = Some(EventId::new(l.event).unwrap());
            r.event_type = Some(l.event_type.to_owned());
            r.causation_id = l.cause.map(|c| EventId::new(c).unwrap());
            r.destination = l.destination.map(str::to_owned);
            r.consumer_group = l.group.map(str::to_owned);
            r.duration_us = l.duration_ms.map(|ms| ms * 1_000);
            r.trace_id = TraceId::from_bytes([l.trace; 16]);
            if let Some(error) = l.error {
                r.error_type = Some(error.to_owned());
                r.error_message = Some(format!("{error} while handling {}", l.event_type));
            }
            r
        })
        .collect()
}

/// The happy saga: order -> payment -> inventory -> shipping.
fn saga(flow: &str, t: i64) -> Vec<Line> {
    let _ = flow;
    let mut l = vec![pub_(t, "order", "e1", "OrderPlaced").to("orders")];
    l.extend(handles(t + 20, 30, "payment", "e1", "OrderPlaced"));
    l.push(
        pub_(t + 45, "payment", "e2", "PaymentAuthorized")
            .cause("e1")
            .to("payments"),
    );
    l.extend(handles(t + 60, 15, "inventory", "e2", "PaymentAuthorized"));
    l.push(
        pub_(t + 70, "inventory", "e3", "StockReserved")
            .cause("e2")
            .to("inventory"),
    );
    l.extend(handles(t + 90, 40, "shipping", "e3", "StockReserved"));
    l
}

/// A topology learned from 20 happy sagas an hour before the fixtures, so
/// expectations and thresholds are the learned ones.
fn learned() -> Topology {
    let digests: Vec<FlowDigest> = (0..20)
        .map(|i| {
            let key = format!("history-{i}");
            FlowDigest::of(&key, &records(&key, &saga(&key, -3_600_000 + i * 1_000)))
        })
        .collect();
    Topology::learn(TopologySettings::default(), Contracts::default(), &digests)
}

/// Reconstructs a fixture as read 10 s after its start.
fn flow(name: &str, lines: &[Line]) -> FlowDetail {
    flow_at(name, lines, &learned(), T0 + 10 * S)
}

fn flow_at(name: &str, lines: &[Line], topology: &Topology, now: i64) -> FlowDetail {
    let settings = FlowSettings::default();
    let context = FlowContext {
        now: Timestamp::from_micros(now),
        topology,
        settings: &settings,
    };
    reconstruct(name, records(name, lines), context)
}

fn steps(flow: &FlowDetail) -> Vec<(String, String, StepStatus)> {
    fn walk(events: &[FlowEvent], out: &mut Vec<(String, String, StepStatus)>) {
        for e in events {
            for s in &e.consumers {
                out.push((
                    e.event_type.clone().unwrap_or_default(),
                    s.service.clone(),
                    s.status,
                ));
                walk(&s.children, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(&flow.roots, &mut out);
    out
}

fn step<'a>(flow: &'a FlowDetail, service: &str, event_type: &str) -> &'a ConsumerStep {
    fn find<'a>(events: &'a [FlowEvent], service: &str, ty: &str) -> Option<&'a ConsumerStep> {
        events.iter().find_map(|e| {
            e.consumers.iter().find_map(|s| {
                if s.service == service && e.event_type.as_deref() == Some(ty) {
                    Some(s)
                } else {
                    find(&s.children, service, ty)
                }
            })
        })
    }
    find(&flow.roots, service, event_type).unwrap()
}

fn kinds(flow: &FlowDetail) -> Vec<AnomalyKind> {
    flow.summary.anomalies.clone()
}

fn snapshot(name: &str, flow: &FlowDetail) {
    // Records are the input; the snapshot is what was made of them.
    let mut shown = flow.clone();
    shown.records.clear();
    insta::assert_json_snapshot!(name, shown);
}

fn happy_lines() -> Vec<Line> {
    saga("happy", 0)
}

#[test]
fn the_happy_saga_completes_with_its_timings() {
    let flow = flow("happy", &happy_lines());
    assert_eq!(flow.summary.status, FlowStatus::Completed);
    assert!(kinds(&flow).is_empty(), "{:?}", flow.anomalies);
    assert!(
        steps(&flow)
            .iter()
            .all(|(_, _, s)| *s == StepStatus::Handled)
    );
    let payment = step(&flow, "payment", "OrderPlaced");
    assert_eq!(
        (payment.queue_wait_us, payment.processing_us),
        (Some(20_000), Some(30_000))
    );
    assert_eq!(flow.summary.duration_us, 130_000);
    snapshot("happy_saga", &flow);
}

fn compensation_lines() -> Vec<Line> {
    let mut l = vec![pub_(0, "order", "e1", "OrderPlaced").to("orders")];
    l.extend(handles(20, 30, "inventory", "e1", "OrderPlaced"));
    l.push(
        pub_(40, "inventory", "e2", "StockReserved")
            .cause("e1")
            .to("inventory"),
    );
    l.push(line(60, "payment", Stage::Received, "e2", "StockReserved"));
    l.push(
        line(80, "payment", Stage::Failed, "e2", "StockReserved")
            .error("CardDeclined")
            .took(20),
    );
    l.push(
        pub_(85, "payment", "e3", "PaymentDeclined")
            .cause("e2")
            .to("payments"),
    );
    l.push(line(
        100,
        "inventory",
        Stage::Received,
        "e3",
        "PaymentDeclined",
    ));
    l.push(line(
        110,
        "inventory",
        Stage::Compensated,
        "e3",
        "PaymentDeclined",
    ));
    l.push(line(111, "inventory", Stage::Handled, "e3", "PaymentDeclined").took(11));
    l.extend(handles(100, 5, "order", "e3", "PaymentDeclined"));
    l
}

#[test]
fn a_declined_payment_that_is_compensated_ends_compensated() {
    let flow = flow("compensation", &compensation_lines());
    assert_eq!(flow.summary.status, FlowStatus::Compensated);
    assert_eq!(
        step(&flow, "payment", "StockReserved").status,
        StepStatus::Failed
    );
    assert_eq!(
        step(&flow, "inventory", "PaymentDeclined").status,
        StepStatus::Compensated
    );
    snapshot("payment_failure_compensated", &flow);
}

fn dead_letter_lines() -> Vec<Line> {
    let mut l = saga("dead", 0);
    l.truncate(l.len() - 2); // shipping never handles StockReserved
    for (i, at) in [90, 200, 400].into_iter().enumerate() {
        if i > 0 {
            l.push(line(
                at - 1,
                "shipping",
                Stage::Retried,
                "e3",
                "StockReserved",
            ));
        }
        l.push(line(at, "shipping", Stage::Received, "e3", "StockReserved"));
        l.push(
            line(at + 10, "shipping", Stage::Failed, "e3", "StockReserved")
                .error("AddressInvalid")
                .took(10),
        );
    }
    l.push(line(
        420,
        "shipping",
        Stage::DeadLettered,
        "e3",
        "StockReserved",
    ));
    l
}

#[test]
fn an_event_that_fails_until_it_is_dead_lettered_is_a_poison_loop() {
    let flow = flow("dead-letter", &dead_letter_lines());
    assert_eq!(flow.summary.status, FlowStatus::DeadLettered);
    let shipping = step(&flow, "shipping", "StockReserved");
    assert_eq!(
        (shipping.status, shipping.deliveries),
        (StepStatus::DeadLettered, 3)
    );
    assert_eq!(
        kinds(&flow),
        vec![AnomalyKind::Redelivery, AnomalyKind::PoisonLoop]
    );
    snapshot("dead_lettered", &flow);
}

fn retry_lines(succeeds: bool) -> Vec<Line> {
    let mut l = saga("retry", 0);
    l.truncate(l.len() - 2);
    l.push(line(90, "shipping", Stage::Received, "e3", "StockReserved"));
    l.push(
        line(95, "shipping", Stage::Failed, "e3", "StockReserved")
            .error("Timeout")
            .took(5),
    );
    l.push(line(300, "shipping", Stage::Retried, "e3", "StockReserved"));
    if succeeds {
        l.push(line(
            300,
            "shipping",
            Stage::Received,
            "e3",
            "StockReserved",
        ));
        l.push(line(320, "shipping", Stage::Handled, "e3", "StockReserved").took(20));
    }
    l
}

#[test]
fn a_retry_that_succeeds_completes_the_flow_and_shows_the_redelivery() {
    let flow = flow("retry-ok", &retry_lines(true));
    assert_eq!(flow.summary.status, FlowStatus::Completed);
    let shipping = step(&flow, "shipping", "StockReserved");
    assert_eq!(
        (shipping.status, shipping.processing_us),
        (StepStatus::Handled, Some(20_000))
    );
    assert_eq!(kinds(&flow), vec![AnomalyKind::Redelivery]);
    snapshot("retry_succeeds", &flow);
}

#[test]
fn a_retry_still_running_is_retrying_not_failed() {
    let flow = flow("retry-running", &retry_lines(false));
    assert_eq!(flow.summary.status, FlowStatus::InProgress);
    assert_eq!(
        step(&flow, "shipping", "StockReserved").status,
        StepStatus::Retrying
    );
    snapshot("retry_running", &flow);
}

/// A failure nobody retried, dead-lettered or compensated.
fn failed_lines() -> Vec<Line> {
    let mut l = retry_lines(false);
    l.retain(|x| x.stage != Stage::Retried);
    l
}

#[test]
fn a_failure_nothing_resolved_fails_the_flow() {
    let flow = flow("failed", &failed_lines());
    assert_eq!(flow.summary.status, FlowStatus::Failed);
    assert_eq!(
        step(&flow, "shipping", "StockReserved").status,
        StepStatus::Failed
    );
}

fn duplicate_lines() -> Vec<Line> {
    let mut l = happy_lines();
    l.extend(handles(500, 40, "shipping", "e3", "StockReserved"));
    l
}

#[test]
fn an_event_handled_twice_is_a_duplicate_delivery() {
    let flow = flow("duplicate", &duplicate_lines());
    assert_eq!(flow.summary.status, FlowStatus::Completed);
    assert_eq!(
        kinds(&flow),
        vec![AnomalyKind::DuplicateDelivery, AnomalyKind::Redelivery]
    );
    let duplicate = &flow.anomalies[0];
    assert_eq!(duplicate.consumer.as_ref().unwrap().service, "shipping");
    assert_eq!(duplicate.records.len(), 2);
    snapshot("duplicate_delivery", &flow);
}

fn out_of_order_lines() -> Vec<Line> {
    let mut l = vec![pub_(0, "order", "e1", "OrderPlaced").to("orders")];
    l.extend(handles(20, 10, "order-view", "e1", "OrderPlaced").map(|x| x.group("views")));
    l.push(
        pub_(100, "order", "e2", "OrderUpdated")
            .cause("e1")
            .to("orders"),
    );
    l.push(
        pub_(110, "order", "e3", "OrderUpdated")
            .cause("e1")
            .to("orders"),
    );
    l.extend(handles(130, 5, "order-view", "e3", "OrderUpdated").map(|x| x.group("views")));
    l.extend(handles(150, 5, "order-view", "e2", "OrderUpdated").map(|x| x.group("views")));
    l
}

#[test]
fn two_updates_received_in_the_opposite_order_are_out_of_order() {
    let flow = flow("out-of-order", &out_of_order_lines());
    assert_eq!(kinds(&flow), vec![AnomalyKind::OutOfOrder]);
    let a = &flow.anomalies[0];
    assert_eq!(
        (
            a.event_id.as_ref().unwrap().as_str(),
            a.other_event_id.as_ref().unwrap().as_str()
        ),
        ("e2", "e3")
    );
    snapshot("out_of_order", &flow);
}

fn stuck_lines() -> Vec<Line> {
    let mut l = happy_lines();
    l.truncate(l.len() - 2); // shipping never receives StockReserved
    l
}

#[test]
fn an_expected_consumer_that_never_received_leaves_the_flow_stuck() {
    // Read 2 hours later: far past any threshold.
    let flow = flow_at("stuck", &stuck_lines(), &learned(), T0 + 7_200 * S);
    assert_eq!(flow.summary.status, FlowStatus::Stuck);
    let shipping = step(&flow, "shipping", "StockReserved");
    assert!(shipping.expected);
    assert_eq!(shipping.status, StepStatus::Pending);
    assert_eq!(kinds(&flow), vec![AnomalyKind::MissingConsumer]);
    snapshot("stuck_pending_consumer", &flow);
    // The same records read a second after they were written: still going.
    let fresh = flow_at("stuck", &stuck_lines(), &learned(), T0 + S);
    assert_eq!(fresh.summary.status, FlowStatus::InProgress);
    assert!(kinds(&fresh).is_empty());
    // With nothing learned nobody is expected: the flow is complete.
    let unknown = Topology::empty(TopologySettings::default(), Contracts::default());
    let alone = flow_at("stuck", &stuck_lines(), &unknown, T0 + 7_200 * S);
    assert_eq!(alone.summary.status, FlowStatus::Completed);
}

#[test]
fn a_declared_consumer_is_expected_even_when_never_seen() {
    let contracts = Contracts::parse(
        "[events.StockReserved]\nconsumers = [\"shipping\", \"billing\"]\nstuck_after_ms = 60000\n",
    )
    .unwrap();
    let topology = Topology::empty(TopologySettings::default(), contracts);
    let flow = flow_at("declared", &happy_lines(), &topology, T0 + 61 * S);
    assert_eq!(flow.summary.status, FlowStatus::Stuck);
    let billing = step(&flow, "billing", "StockReserved");
    assert_eq!(
        (billing.status, billing.stuck_after_us),
        (StepStatus::Pending, Some(60_000_000))
    );
}

fn skew_lines() -> Vec<Line> {
    let mut l = happy_lines();
    // payment's clock runs 2 s behind: its records are stamped early.
    for x in l.iter_mut().filter(|x| x.service == "payment") {
        x.at -= 2 * S;
    }
    l
}

#[test]
fn a_receive_before_its_publish_corrects_the_clock_and_says_so() {
    let flow = flow("skew", &skew_lines());
    assert_eq!(flow.summary.status, FlowStatus::Completed);
    assert_eq!(kinds(&flow), vec![AnomalyKind::ClockSkew]);
    assert_eq!(flow.clock_corrections.len(), 1);
    let correction = &flow.clock_corrections[0];
    // The least correction that restores causality: the receive lands on
    // the publish (2 s - 20 ms).
    assert_eq!(
        (correction.service.as_str(), correction.correction_us),
        ("payment", 1_980_000)
    );
    let payment = step(&flow, "payment", "OrderPlaced");
    assert_eq!(payment.queue_wait_us, Some(0));
    // The correction is the least that restores causality, not the true
    // 2 s: downstream of payment, inventory's wait of 15 ms reads as
    // 35 ms, never as negative.
    let inventory = step(&flow, "inventory", "PaymentAuthorized");
    assert_eq!(inventory.queue_wait_us, Some(35_000));
    snapshot("clock_skew", &flow);
}

fn lost_context_lines() -> Vec<Line> {
    // inventory's records of its PaymentAuthorized arrive in a flow of their
    // own: payment published it under another correlation id.
    let mut l = handles(60, 15, "inventory", "e2", "PaymentAuthorized").to_vec();
    l.push(
        pub_(70, "inventory", "e3", "StockReserved")
            .cause("e2")
            .to("inventory"),
    );
    l.extend(handles(90, 40, "shipping", "e3", "StockReserved"));
    l
}

#[test]
fn a_flow_that_starts_with_a_receive_lost_its_context_upstream() {
    let flow = flow("lost", &lost_context_lines());
    assert_eq!(kinds(&flow), vec![AnomalyKind::ContextLost]);
    assert_eq!(flow.roots[0].publisher, None);
    snapshot("context_lost", &flow);
}

#[test]
fn a_root_published_without_its_usual_cause_lost_its_context() {
    let mut l = vec![pub_(70, "inventory", "e3", "StockReserved").to("inventory")];
    l.extend(handles(90, 40, "shipping", "e3", "StockReserved"));
    let flow = flow("uncaused", &l);
    assert_eq!(kinds(&flow), vec![AnomalyKind::ContextLost]);
    assert_eq!(flow.anomalies[0].records[0].stage, Stage::Published);
}

fn two_trace_lines() -> Vec<Line> {
    let mut l = happy_lines();
    // inventory started a new trace but kept the correlation id.
    for x in l.iter_mut().filter(|x| x.event != "e1" && x.event != "e2") {
        x.trace = 2;
    }
    l
}

#[test]
fn a_flow_across_two_trace_ids_is_one_flow() {
    let flow = flow("two-traces", &two_trace_lines());
    assert_eq!(flow.summary.status, FlowStatus::Completed);
    assert_eq!(flow.summary.trace_ids.len(), 2);
    assert_eq!(steps(&flow).len(), 3);
    snapshot("two_trace_ids", &flow);
}

#[test]
fn a_slow_step_is_far_above_the_learned_p99_of_its_edge() {
    let mut l = happy_lines();
    let n = l.len();
    l[n - 1] = line(
        90 + 5_000,
        "shipping",
        Stage::Handled,
        "e3",
        "StockReserved",
    )
    .took(5_000);
    let flow = flow("slow", &l);
    assert_eq!(kinds(&flow), vec![AnomalyKind::SlowStep]);
    let slow = &flow.anomalies[0];
    assert_eq!(slow.observed_us, Some(5_000_000));
    assert_eq!(slow.threshold_us, Some(120_000));
}

#[test]
fn equal_timestamps_break_ties_by_lifecycle_not_by_input_order() {
    // Every record in the same microsecond: received, failed, retried and
    // handled must still read as a retry that succeeded.
    let mut l = vec![pub_(0, "order", "e1", "OrderPlaced")];
    l.push(line(0, "payment", Stage::Received, "e1", "OrderPlaced"));
    l.push(line(0, "payment", Stage::Failed, "e1", "OrderPlaced").error("Timeout"));
    l.push(line(0, "payment", Stage::Retried, "e1", "OrderPlaced"));
    l.push(line(0, "payment", Stage::Handled, "e1", "OrderPlaced"));
    for order in [l.clone(), l.iter().rev().cloned().collect()] {
        let flow = flow("ties", &order);
        assert_eq!(flow.summary.status, FlowStatus::Completed);
        assert_eq!(
            step(&flow, "payment", "OrderPlaced").status,
            StepStatus::Handled
        );
    }
}

fn fixtures() -> Vec<(&'static str, Vec<Line>)> {
    let mut all_at_once = compensation_lines();
    for x in &mut all_at_once {
        x.at = T0;
    }
    vec![
        ("happy", happy_lines()),
        ("compensation", compensation_lines()),
        ("dead", dead_letter_lines()),
        ("retry-ok", retry_lines(true)),
        ("retry-running", retry_lines(false)),
        ("failed", failed_lines()),
        ("duplicate", duplicate_lines()),
        ("out-of-order", out_of_order_lines()),
        ("stuck", stuck_lines()),
        ("skew", skew_lines()),
        ("lost", lost_context_lines()),
        ("two-traces", two_trace_lines()),
        ("all-at-once", all_at_once),
    ]
}

/// The flow list narrows `status=failed`, `dead_lettered` and
/// `compensated` by the digest facet of that name alone: each must hold
/// exactly when the status does, whenever the flow is read and whatever
/// the topology says.
#[test]
fn the_status_facets_hold_exactly_when_their_status_does() {
    let learned = learned();
    let empty = Topology::empty(TopologySettings::default(), Contracts::default());
    let mut seen = Vec::new();
    for (name, lines) in fixtures() {
        let facets = FlowDigest::of(name, &records(name, &lines)).facets();
        for topology in [&learned, &empty] {
            for now in [T0 + 10 * S, T0 + 7_200 * S] {
                let status = flow_at(name, &lines, topology, now).summary.status;
                seen.push(status);
                for (facet, named) in [
                    (DigestFacet::Failed, FlowStatus::Failed),
                    (DigestFacet::DeadLettered, FlowStatus::DeadLettered),
                    (DigestFacet::Compensated, FlowStatus::Compensated),
                ] {
                    assert_eq!(
                        facets.contains(&facet),
                        status == named,
                        "{name}: facets {facets:?}, status {status:?}"
                    );
                }
            }
        }
    }
    for status in [
        FlowStatus::Failed,
        FlowStatus::DeadLettered,
        FlowStatus::Compensated,
    ] {
        assert!(seen.contains(&status), "no fixture is {status:?}");
    }
}

fn shuffled_fixture() -> impl Strategy<Value = (usize, Vec<Record>)> {
    (0..fixtures().len()).prop_flat_map(|which| {
        let (name, lines) = fixtures().swap_remove(which);
        (Just(which), Just(records(name, &lines)).prop_shuffle())
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn any_order_of_the_same_records_gives_byte_identical_json(
        (which, shuffled) in shuffled_fixture()
    ) {
        let (name, lines) = fixtures().swap_remove(which);
        let topology = learned();
        let now = T0 + 7_200 * S;
        let expected = serde_json::to_string(&flow_at(name, &lines, &topology, now)).unwrap();
        let settings = FlowSettings::default();
        let context = FlowContext {
            now: Timestamp::from_micros(now),
            topology: &topology,
            settings: &settings,
        };
        let got = serde_json::to_string(&reconstruct(name, shuffled, context)).unwrap();
        prop_assert_eq!(got, expected);
    }
}
