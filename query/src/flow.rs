//! Flow analysis: a pure function from what a flow's records say (its
//! [`FlowDigest`]), the time of reading and the [`Topology`] to the flow's
//! causal tree, step states, timings, clock corrections, status and
//! anomalies. No I/O and no clock of its own: `now` is an argument, and the
//! same records in any order give byte-identical JSON (ties broken by
//! lifecycle order, then ids).
//!
//! The tree is event -> the consumers (service + group) that took it, or
//! are expected to -> the events each published while handling it (by
//! causation id). An event whose cause is not in the flow is a root. Every
//! event is placed once, so a causation cycle cannot recurse forever.
//!
//! Clock skew is estimated from causality: a receive never precedes its
//! publish, so a consumer whose receive is stamped before the publish has
//! its clock moved forward by the least amount that restores the order,
//! and so on down the flow (the longest path over publish -> receive
//! edges). Timings use the corrected times; the response shows the
//! correction per service.

use std::collections::{BTreeMap, BTreeSet};

use causeway_model::{
    Anomaly, AnomalyKind, ClockCorrection, Consumer, ConsumerStep, EventDigest, EventId,
    FlowDetail, FlowDigest, FlowEvent, FlowStatus, FlowSummary, Record, RecordRef, Stage,
    StepDigest, StepKey, StepStatus, Timestamp, lifecycle_rank,
};

use crate::topology::Topology;

/// The knobs of anomaly detection.
#[derive(Debug, Clone, PartialEq)]
pub struct FlowSettings {
    /// Failures of one event for one consumer group that make a
    /// `poison_loop`.
    pub poison_failures: usize,
    /// A step whose processing passes this many times the learned p99 of
    /// its edge is a `slow_step`.
    pub slow_step_factor: f64,
    /// Most anomalies listed for one flow (the first by kind, then ids).
    pub max_anomalies: usize,
}

impl Default for FlowSettings {
    fn default() -> Self {
        Self {
            poison_failures: 3,
            slow_step_factor: 3.0,
            max_anomalies: 256,
        }
    }
}

/// What an analysis needs besides the records: the time of reading, the
/// topology and the settings.
#[derive(Debug, Clone, Copy)]
pub struct FlowContext<'a> {
    pub now: Timestamp,
    pub topology: &'a Topology,
    pub settings: &'a FlowSettings,
}

/// A flow's structure and verdicts, without its records.
#[derive(Debug, Clone, PartialEq)]
pub struct Analysis {
    pub summary: FlowSummary,
    pub roots: Vec<FlowEvent>,
    pub anomalies: Vec<Anomaly>,
    pub clock_corrections: Vec<ClockCorrection>,
    /// The digest left events or steps out (past its bounds).
    pub truncated: bool,
}

/// Rebuilds the flow `key` from its records, in any order.
pub fn reconstruct(key: &str, mut records: Vec<Record>, context: FlowContext<'_>) -> FlowDetail {
    let digest = FlowDigest::of(key, &records);
    sort_records(&mut records);
    let analysis = analyze(&digest, context);
    detail(analysis, records, false)
}

/// A flow answer from its analysis and the records that come with it;
/// `records_cut` says the records are not all of the flow's.
pub fn detail(analysis: Analysis, records: Vec<Record>, records_cut: bool) -> FlowDetail {
    FlowDetail {
        records_returned: records.len(),
        truncated: records_cut || analysis.truncated,
        summary: analysis.summary,
        roots: analysis.roots,
        anomalies: analysis.anomalies,
        clock_corrections: analysis.clock_corrections,
        records,
    }
}

/// Orders records by time, then lifecycle stage, then ids, then their
/// whole content: a total order, so any permutation sorts the same.
pub fn sort_records(records: &mut [Record]) {
    records.sort_by(|a, b| {
        (
            a.timestamp,
            lifecycle_rank(a.stage),
            &a.event_id,
            &a.service,
            &a.consumer_group,
            a.span_id,
            &a.message,
        )
            .cmp(&(
                b.timestamp,
                lifecycle_rank(b.stage),
                &b.event_id,
                &b.service,
                &b.consumer_group,
                b.span_id,
                &b.message,
            ))
            .then_with(|| {
                let a = serde_json::to_string(a).unwrap_or_default();
                let b = serde_json::to_string(b).unwrap_or_default();
                a.cmp(&b)
            })
    });
}

/// The flow's summary only, for lists.
pub fn summarize(digest: &FlowDigest, context: FlowContext<'_>) -> FlowSummary {
    analyze(digest, context).summary
}

/// Events published in this flow that nobody in it received: where a
/// consumer dropped the correlation context, its receive is filed under
/// another flow key. The caller looks these up in the index (at most
/// `most`) and hands the findings to [`received_elsewhere`].
pub fn unreceived_events(digest: &FlowDigest, most: usize) -> Vec<EventId> {
    digest
        .events
        .iter()
        .filter(|(id, event)| event.published.is_some() && steps_of(digest, id).next().is_none())
        .map(|(id, _)| id.clone())
        .take(most)
        .collect()
}

/// Adds a `context_lost` anomaly for each event of the flow that was
/// received under another flow key: `elsewhere` holds (event, the other
/// flow's key). Keeps the anomalies in their order.
pub fn received_elsewhere(analysis: &mut Analysis, elsewhere: &[(EventId, String)]) {
    for (event_id, other) in elsewhere {
        analysis.anomalies.push(Anomaly {
            message: format!(
                "{event_id} was received under correlation id {other:?}: a consumer dropped the context"
            ),
            event_id: Some(event_id.clone()),
            ..anomaly(AnomalyKind::ContextLost)
        });
    }
    if elsewhere.is_empty() {
        return;
    }
    analysis
        .anomalies
        .sort_by(|a, b| anomaly_order(a).cmp(&anomaly_order(b)));
    if !analysis
        .summary
        .anomalies
        .contains(&AnomalyKind::ContextLost)
    {
        analysis.summary.anomalies.push(AnomalyKind::ContextLost);
        analysis.summary.anomalies.sort();
    }
}

/// Everything but the records; see the module docs.
pub fn analyze(digest: &FlowDigest, context: FlowContext<'_>) -> Analysis {
    let clocks = Clocks::estimate(digest);
    let mut steps: BTreeMap<&StepKey, StepView> = digest
        .steps
        .iter()
        .map(|(key, step)| {
            let event = digest.events.get(&key.event_id);
            (key, StepView::new(key, step, event, &clocks, context))
        })
        .collect();
    let expected = expected_steps(digest, &clocks, context);

    let mut anomalies = Vec::new();
    step_anomalies(digest, &steps, context, &mut anomalies);
    out_of_order(digest, &clocks, &mut anomalies);
    context_lost(digest, context, &mut anomalies);
    for pending in &expected {
        if pending.stale {
            anomalies.push(Anomaly {
                message: format!(
                    "{} did not receive {} within {}",
                    pending.consumer.service,
                    pending.event_type.as_deref().unwrap_or("the event"),
                    causeway_model::human_duration(pending.threshold_us),
                ),
                event_id: Some(pending.event_id.clone()),
                event_type: pending.event_type.clone(),
                consumer: Some(pending.consumer.clone()),
                observed_us: Some(pending.waited_us),
                threshold_us: Some(pending.threshold_us),
                records: pending.published.iter().cloned().collect(),
                ..anomaly(AnomalyKind::MissingConsumer)
            });
        }
    }
    if !clocks.corrections.is_empty() {
        let corrections = clocks.corrections();
        let list: Vec<String> = corrections
            .iter()
            .map(|c| {
                format!(
                    "{} +{}",
                    c.service,
                    causeway_model::human_duration(c.correction_us)
                )
            })
            .collect();
        anomalies.push(Anomaly {
            message: format!(
                "receives stamped before their publish; clocks corrected: {}",
                list.join(", ")
            ),
            corrections,
            records: clocks.evidence.values().flatten().cloned().collect(),
            ..anomaly(AnomalyKind::ClockSkew)
        });
    }
    anomalies.sort_by(|a, b| anomaly_order(a).cmp(&anomaly_order(b)));
    anomalies.truncate(context.settings.max_anomalies);

    let status = flow_status(steps.values(), &expected);
    let roots = build_tree(digest, &mut steps, expected, &clocks);
    let kinds: BTreeSet<AnomalyKind> = anomalies.iter().map(|a| a.kind).collect();
    let (first, last) = clocks.span(digest);
    let summary = FlowSummary {
        correlation_id: digest.key.clone(),
        status,
        root_event_type: roots.first().and_then(|e| e.event_type.clone()),
        started_at: digest.first_at(),
        last_activity_at: digest.last_at(),
        duration_us: micros_between(first, last),
        services: digest.services.iter().cloned().collect(),
        event_count: digest.events.len(),
        record_count: usize::try_from(digest.record_count).unwrap_or(usize::MAX),
        failure_count: usize::try_from(digest.failure_count).unwrap_or(usize::MAX),
        anomalies: kinds.into_iter().collect(),
        trace_ids: digest.trace_ids.iter().copied().collect(),
    };
    Analysis {
        summary,
        roots,
        anomalies,
        clock_corrections: clocks.corrections(),
        truncated: digest.truncated,
    }
}

fn micros_between(from: i64, to: i64) -> u64 {
    u64::try_from(to.saturating_sub(from)).unwrap_or(0)
}

fn anomaly(kind: AnomalyKind) -> Anomaly {
    Anomaly {
        kind,
        message: String::new(),
        event_id: None,
        event_type: None,
        consumer: None,
        other_event_id: None,
        count: None,
        observed_us: None,
        threshold_us: None,
        corrections: Vec::new(),
        records: Vec::new(),
    }
}

type AnomalyOrder<'a> = (
    AnomalyKind,
    Option<&'a EventId>,
    Option<&'a Consumer>,
    Option<&'a EventId>,
    &'a str,
);

fn anomaly_order(a: &Anomaly) -> AnomalyOrder<'_> {
    (
        a.kind,
        a.event_id.as_ref(),
        a.consumer.as_ref(),
        a.other_event_id.as_ref(),
        &a.message,
    )
}

fn record_ref(t: i64, service: &str, stage: Stage, event_id: &EventId) -> RecordRef {
    RecordRef {
        timestamp: Timestamp::from_micros(t),
        service: service.to_owned(),
        stage,
        event_id: Some(event_id.clone()),
    }
}

fn consumer_of(key: &StepKey) -> Consumer {
    Consumer {
        service: key.service.clone(),
        consumer_group: key.consumer_group.clone(),
    }
}

/// Per-service clock offsets that keep every receive at or after its
/// publish.
struct Clocks {
    /// Service -> microseconds added to its times (only those moved).
    corrections: BTreeMap<String, i64>,
    /// Service -> the publish and receive that set its correction.
    evidence: BTreeMap<String, [RecordRef; 2]>,
}

impl Clocks {
    fn estimate(digest: &FlowDigest) -> Self {
        // publisher -> consumer: the consumer's clock must be at least
        // `need` ahead of the publisher's.
        let mut edges: Vec<(&str, &str, i64, [RecordRef; 2])> = Vec::new();
        for (key, step) in &digest.steps {
            let Some(published) = digest
                .events
                .get(&key.event_id)
                .and_then(|e| e.published.as_ref())
            else {
                continue;
            };
            let Some(received) = step.received.earliest() else {
                continue;
            };
            if published.service == key.service {
                continue;
            }
            edges.push((
                published.service.as_str(),
                key.service.as_str(),
                published.at - received,
                [
                    record_ref(
                        published.at,
                        &published.service,
                        Stage::Published,
                        &key.event_id,
                    ),
                    record_ref(received, &key.service, Stage::Received, &key.event_id),
                ],
            ));
        }
        edges.sort_by(|a, b| (a.0, a.1, a.2).cmp(&(b.0, b.1, b.2)));
        let mut offsets: BTreeMap<&str, i64> = BTreeMap::new();
        let mut evidence: BTreeMap<String, [RecordRef; 2]> = BTreeMap::new();
        let services = digest.services.len().max(1);
        for _ in 0..=services {
            let mut changed = false;
            for (publisher, consumer, need, refs) in &edges {
                let want = offsets.get(publisher).copied().unwrap_or(0) + need;
                if want > offsets.get(consumer).copied().unwrap_or(0) {
                    offsets.insert(consumer, want);
                    evidence.insert((*consumer).to_owned(), refs.clone());
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        Self {
            corrections: offsets
                .into_iter()
                .filter(|&(_, o)| o > 0)
                .map(|(s, o)| (s.to_owned(), o))
                .collect(),
            evidence,
        }
    }

    fn offset(&self, service: &str) -> i64 {
        self.corrections.get(service).copied().unwrap_or(0)
    }

    fn at(&self, service: &str, t: i64) -> i64 {
        t.saturating_add(self.offset(service))
    }

    fn corrections(&self) -> Vec<ClockCorrection> {
        self.corrections
            .iter()
            .map(|(service, &o)| ClockCorrection {
                service: service.clone(),
                correction_us: u64::try_from(o).unwrap_or(0),
            })
            .collect()
    }

    /// The flow's first and last activity on corrected clocks.
    fn span(&self, digest: &FlowDigest) -> (i64, i64) {
        if digest.is_empty() {
            return (0, 0);
        }
        let mut first = digest.first_us;
        let mut last = digest.last_us;
        for (key, step) in &digest.steps {
            last = last.max(self.at(&key.service, step.last_us));
        }
        for event in digest.events.values() {
            if let Some(p) = &event.published {
                first = first.min(self.at(&p.service, p.at));
            }
        }
        (first, last)
    }
}

/// One step as the API shows it, before it is placed in the tree.
struct StepView {
    step: ConsumerStep,
    first_us: i64,
    stale: bool,
}

impl StepView {
    fn new(
        key: &StepKey,
        step: &StepDigest,
        event: Option<&EventDigest>,
        clocks: &Clocks,
        context: FlowContext<'_>,
    ) -> Self {
        let timeline = step.timeline();
        let status = step.status_in(&timeline);
        let received = step.received.earliest();
        let finished = match status {
            StepStatus::Handled => step.handled.latest(),
            StepStatus::Failed => step.failed.latest(),
            StepStatus::DeadLettered => step.dead_lettered.latest(),
            StepStatus::Compensated => step.compensated.latest(),
            _ => None,
        };
        let published = event.and_then(|e| e.published.as_ref());
        let queue_wait = published
            .zip(received)
            .map(|(p, r)| micros_between(clocks.at(&p.service, p.at), clocks.at(&key.service, r)));
        let processing = finished.and_then(|f| {
            let closing = matches!(status, StepStatus::Handled | StepStatus::Failed);
            step.duration_us.filter(|_| closing).or_else(|| {
                // From the last delivery before the finish.
                let start = step
                    .received
                    .first
                    .iter()
                    .chain(step.received.last.iter())
                    .copied()
                    .filter(|&r| r <= f)
                    .max()?;
                Some(micros_between(start, f))
            })
        });
        let consumer = consumer_of(key);
        let event_type = event.and_then(EventDigest::event_type);
        let threshold = status
            .is_open()
            .then(|| context.topology.stuck_threshold_us(event_type, &consumer));
        let stale =
            threshold.is_some_and(|t| micros_between(step.last_us, context.now.as_micros()) > t);
        StepView {
            step: ConsumerStep {
                service: key.service.clone(),
                consumer_group: key.consumer_group.clone(),
                status,
                stages: timeline.iter().map(|&(_, stage)| stage).collect(),
                deliveries: u32::try_from(step.received.count()).unwrap_or(u32::MAX),
                received_at: received.map(Timestamp::from_micros),
                finished_at: finished.map(Timestamp::from_micros),
                queue_wait_us: queue_wait,
                processing_us: processing,
                error: step.error.clone(),
                expected: false,
                stuck_after_us: threshold,
                children: Vec::new(),
            },
            first_us: clocks.at(&key.service, step.first_us),
            stale,
        }
    }
}

/// An expected consumer with no step for an event.
struct ExpectedStep {
    event_id: EventId,
    event_type: Option<String>,
    consumer: Consumer,
    threshold_us: u64,
    waited_us: u64,
    stale: bool,
    published: Option<RecordRef>,
}

fn expected_steps(
    digest: &FlowDigest,
    clocks: &Clocks,
    context: FlowContext<'_>,
) -> Vec<ExpectedStep> {
    let mut out = Vec::new();
    for (event_id, event) in &digest.events {
        let Some(event_type) = event.event_type() else {
            continue;
        };
        // Only events that were published can be waiting for a consumer.
        let Some(published) = &event.published else {
            continue;
        };
        let seen: Vec<Consumer> = steps_of(digest, event_id)
            .map(|(key, _)| consumer_of(key))
            .collect();
        for consumer in context.topology.expected_consumers(event_type) {
            if seen.iter().any(|s| Topology::matches(&consumer, s)) {
                continue;
            }
            let threshold_us = context
                .topology
                .stuck_threshold_us(Some(event_type), &consumer);
            let since = clocks.at(&published.service, published.at);
            let waited_us = micros_between(since, context.now.as_micros());
            out.push(ExpectedStep {
                event_id: event_id.clone(),
                event_type: Some(event_type.to_owned()),
                consumer,
                threshold_us,
                waited_us,
                stale: waited_us > threshold_us,
                published: Some(record_ref(
                    published.at,
                    &published.service,
                    Stage::Published,
                    event_id,
                )),
            });
        }
    }
    out
}

fn steps_of<'a>(
    digest: &'a FlowDigest,
    event_id: &'a EventId,
) -> impl Iterator<Item = (&'a StepKey, &'a StepDigest)> {
    digest
        .steps
        .range(
            StepKey {
                event_id: event_id.clone(),
                service: String::new(),
                consumer_group: None,
            }..,
        )
        .take_while(move |(key, _)| &key.event_id == event_id)
}

fn flow_status<'a>(
    steps: impl Iterator<Item = &'a StepView> + Clone,
    expected: &[ExpectedStep],
) -> FlowStatus {
    let any = |status: StepStatus| steps.clone().any(|s| s.step.status == status);
    if any(StepStatus::Compensated) {
        FlowStatus::Compensated
    } else if any(StepStatus::DeadLettered) {
        FlowStatus::DeadLettered
    } else if any(StepStatus::Failed) {
        FlowStatus::Failed
    } else if steps.clone().any(|s| s.stale) || expected.iter().any(|e| e.stale) {
        FlowStatus::Stuck
    } else if steps.clone().any(|s| s.step.status.is_open()) || !expected.is_empty() {
        FlowStatus::InProgress
    } else {
        FlowStatus::Completed
    }
}

fn step_anomalies(
    digest: &FlowDigest,
    steps: &BTreeMap<&StepKey, StepView>,
    context: FlowContext<'_>,
    out: &mut Vec<Anomaly>,
) {
    let refs = |times: &mut dyn Iterator<Item = i64>, key: &StepKey, stage: Stage| {
        times
            .take(4)
            .map(|t| record_ref(t, &key.service, stage, &key.event_id))
            .collect::<Vec<_>>()
    };
    for (key, step) in &digest.steps {
        let event = digest.events.get(&key.event_id);
        let event_type = event.and_then(EventDigest::event_type).map(str::to_owned);
        let base = Anomaly {
            event_id: Some(key.event_id.clone()),
            event_type: event_type.clone(),
            consumer: Some(consumer_of(key)),
            ..anomaly(AnomalyKind::Redelivery)
        };
        let who = match &key.consumer_group {
            Some(group) => format!("{} ({group})", key.service),
            None => key.service.clone(),
        };
        let what = event_type.as_deref().unwrap_or("the event").to_owned();
        let handled = step.handled.count();
        if handled > 1 {
            out.push(Anomaly {
                kind: AnomalyKind::DuplicateDelivery,
                message: format!("{who} handled {what} {handled} times: not idempotent"),
                count: Some(u32::try_from(handled).unwrap_or(u32::MAX)),
                records: refs(&mut step.handled.first.iter().copied(), key, Stage::Handled),
                ..base.clone()
            });
        }
        let deliveries = step.received.count();
        if deliveries > 1 || !step.retried.is_empty() {
            let mut records = refs(
                &mut step.received.first.iter().copied(),
                key,
                Stage::Received,
            );
            records.extend(refs(
                &mut step.retried.first.iter().copied(),
                key,
                Stage::Retried,
            ));
            records.sort();
            out.push(Anomaly {
                message: format!("{what} was delivered {deliveries} times to {who}"),
                count: Some(u32::try_from(deliveries.max(2)).unwrap_or(u32::MAX)),
                records,
                ..base.clone()
            });
        }
        let failures = step.failed.count();
        if failures >= context.settings.poison_failures.max(1) {
            out.push(Anomaly {
                kind: AnomalyKind::PoisonLoop,
                message: format!("{what} failed {failures} times in {who}"),
                count: Some(u32::try_from(failures).unwrap_or(u32::MAX)),
                records: refs(&mut step.failed.first.iter().copied(), key, Stage::Failed),
                ..base.clone()
            });
        }
        let Some(view) = steps.get(key) else {
            continue;
        };
        let (Some(event_type), Some(processing)) = (&event_type, view.step.processing_us) else {
            continue;
        };
        let slow = context.topology.slow_threshold_us(
            event_type,
            &consumer_of(key),
            context.settings.slow_step_factor,
        );
        if let Some(threshold) = slow.filter(|&t| processing > t) {
            let mut records = Vec::new();
            if let Some(t) = step.received.earliest() {
                records.push(record_ref(t, &key.service, Stage::Received, &key.event_id));
            }
            if let Some(f) = view.step.finished_at {
                records.push(record_ref(
                    f.as_micros(),
                    &key.service,
                    match view.step.status {
                        StepStatus::Failed => Stage::Failed,
                        _ => Stage::Handled,
                    },
                    &key.event_id,
                ));
            }
            out.push(Anomaly {
                kind: AnomalyKind::SlowStep,
                message: format!(
                    "{who} took {} on {what}, above {}",
                    causeway_model::human_duration(processing),
                    causeway_model::human_duration(threshold)
                ),
                observed_us: Some(processing),
                threshold_us: Some(threshold),
                records,
                ..base
            });
        }
    }
}

/// Two events published to one destination and received by one consumer in
/// the opposite order.
fn out_of_order(digest: &FlowDigest, clocks: &Clocks, out: &mut Vec<Anomaly>) {
    /// One event's trip down a lane: corrected publish and receive times,
    /// the event, and the receive as stamped.
    #[derive(PartialEq, Eq, PartialOrd, Ord)]
    struct Trip<'a> {
        published: i64,
        received: i64,
        event: &'a EventId,
        stamped: i64,
    }
    // (consumer, destination) -> the trips of its events.
    let mut lanes: BTreeMap<(Consumer, &str), Vec<Trip<'_>>> = BTreeMap::new();
    for (key, step) in &digest.steps {
        let Some(event) = digest.events.get(&key.event_id) else {
            continue;
        };
        let (Some(published), Some(destination), Some(received)) = (
            event.published.as_ref(),
            event.destination(),
            step.received.earliest(),
        ) else {
            continue;
        };
        lanes
            .entry((consumer_of(key), destination))
            .or_default()
            .push(Trip {
                published: clocks.at(&published.service, published.at),
                received: clocks.at(&key.service, received),
                event: &key.event_id,
                stamped: received,
            });
    }
    for ((consumer, destination), mut lane) in lanes {
        lane.sort();
        for (i, early) in lane.iter().enumerate() {
            for late in &lane[i + 1..] {
                if late.published > early.published && late.received < early.received {
                    out.push(Anomaly {
                        message: format!(
                            "{} received {} before {}, though it was published after it to {destination}",
                            consumer.service, late.event, early.event
                        ),
                        event_id: Some(early.event.clone()),
                        event_type: digest
                            .events
                            .get(early.event)
                            .and_then(EventDigest::event_type)
                            .map(str::to_owned),
                        consumer: Some(consumer.clone()),
                        other_event_id: Some(late.event.clone()),
                        records: vec![
                            record_ref(
                                early.stamped,
                                &consumer.service,
                                Stage::Received,
                                early.event,
                            ),
                            record_ref(late.stamped, &consumer.service, Stage::Received, late.event),
                        ],
                        ..anomaly(AnomalyKind::OutOfOrder)
                    });
                }
            }
        }
    }
}

/// Roots that show a service dropped the context: received with no known
/// publisher, or published without a cause although the event type is
/// otherwise always caused by another event.
fn context_lost(digest: &FlowDigest, context: FlowContext<'_>, out: &mut Vec<Anomaly>) {
    for (event_id, event) in &digest.events {
        let caused_here = event
            .causation_id()
            .is_some_and(|c| c != event_id && digest.events.contains_key(c));
        if caused_here {
            continue;
        }
        let event_type = event.event_type().map(str::to_owned);
        let what = event_type.as_deref().unwrap_or("an event").to_owned();
        match &event.published {
            None => {
                let Some((key, step)) = steps_of(digest, event_id).next() else {
                    continue;
                };
                let Some(received) = step.received.earliest() else {
                    continue;
                };
                out.push(Anomaly {
                    message: format!(
                        "{} received {what} from a publisher that is not in this flow: the context was lost upstream",
                        key.service
                    ),
                    event_id: Some(event_id.clone()),
                    event_type,
                    consumer: Some(consumer_of(key)),
                    records: vec![record_ref(
                        received,
                        &key.service,
                        Stage::Received,
                        event_id,
                    )],
                    ..anomaly(AnomalyKind::ContextLost)
                });
            }
            Some(published) => {
                let usually_caused = event_type
                    .as_deref()
                    .is_some_and(|t| context.topology.usually_caused(t));
                if event.causation_id().is_none() && usually_caused {
                    out.push(Anomaly {
                        message: format!(
                            "{} published {what} without the context of the event that caused it",
                            published.service
                        ),
                        event_id: Some(event_id.clone()),
                        event_type,
                        records: vec![record_ref(
                            published.at,
                            &published.service,
                            Stage::Published,
                            event_id,
                        )],
                        ..anomaly(AnomalyKind::ContextLost)
                    });
                }
            }
        }
    }
}

/// Places every event once: roots by time, each event's consumers (seen,
/// then expected), each consumer's children.
fn build_tree<'d>(
    digest: &'d FlowDigest,
    steps: &mut BTreeMap<&'d StepKey, StepView>,
    expected: Vec<ExpectedStep>,
    clocks: &Clocks,
) -> Vec<FlowEvent> {
    let when = |id: &EventId, event: &EventDigest| {
        let t = match &event.published {
            Some(p) => clocks.at(&p.service, p.at),
            None => steps_of(digest, id)
                .map(|(k, s)| clocks.at(&k.service, s.first_us))
                .min()
                .unwrap_or(event.first_us),
        };
        (t, id.clone())
    };
    let mut order: Vec<(i64, EventId)> = digest
        .events
        .iter()
        .map(|(id, event)| when(id, event))
        .collect();
    order.sort();
    let mut children: BTreeMap<&EventId, Vec<&EventId>> = BTreeMap::new();
    let mut roots = Vec::new();
    for (_, id) in &order {
        let Some((id, event)) = digest.events.get_key_value(id) else {
            continue;
        };
        match event.causation_id() {
            Some(cause) if cause != id && digest.events.contains_key(cause) => {
                children.entry(cause).or_default().push(id);
            }
            _ => roots.push(id),
        }
    }
    let mut expected_by_event: BTreeMap<EventId, Vec<ExpectedStep>> = BTreeMap::new();
    for e in expected {
        expected_by_event
            .entry(e.event_id.clone())
            .or_default()
            .push(e);
    }
    let mut builder = TreeBuilder {
        digest,
        steps,
        children,
        expected: expected_by_event,
        placed: BTreeSet::new(),
    };
    let mut tree: Vec<FlowEvent> = roots
        .into_iter()
        .filter_map(|id| builder.event(id))
        .collect();
    // Events only reachable through a causation cycle have no root above
    // them; show them as roots rather than lose them.
    for (_, id) in &order {
        if let Some(built) = builder.event(id) {
            tree.push(built);
        }
    }
    tree
}

struct TreeBuilder<'d, 's> {
    digest: &'d FlowDigest,
    steps: &'s mut BTreeMap<&'d StepKey, StepView>,
    children: BTreeMap<&'d EventId, Vec<&'d EventId>>,
    expected: BTreeMap<EventId, Vec<ExpectedStep>>,
    placed: BTreeSet<EventId>,
}

impl TreeBuilder<'_, '_> {
    fn event(&mut self, id: &EventId) -> Option<FlowEvent> {
        if !self.placed.insert(id.clone()) {
            return None;
        }
        let digest = self.digest;
        let event = digest.events.get(id)?;
        let mut consumers: Vec<(i64, ConsumerStep)> = steps_of(digest, id)
            .filter_map(|(key, _)| self.steps.remove(key))
            .map(|view| (view.first_us, view.step))
            .collect();
        for pending in self.expected.remove(id).unwrap_or_default() {
            consumers.push((
                i64::MAX,
                ConsumerStep {
                    service: pending.consumer.service,
                    consumer_group: pending.consumer.consumer_group,
                    status: StepStatus::Pending,
                    stages: Vec::new(),
                    deliveries: 0,
                    received_at: None,
                    finished_at: None,
                    queue_wait_us: None,
                    processing_us: None,
                    error: None,
                    expected: true,
                    stuck_after_us: Some(pending.threshold_us),
                    children: Vec::new(),
                },
            ));
        }
        consumers.sort_by(|a, b| {
            (a.0, &a.1.service, &a.1.consumer_group).cmp(&(b.0, &b.1.service, &b.1.consumer_group))
        });
        let mut consumers: Vec<ConsumerStep> = consumers.into_iter().map(|(_, s)| s).collect();
        for child_id in self.children.get(id).cloned().unwrap_or_default() {
            let Some(child) = self.event(child_id) else {
                continue;
            };
            let publisher = child.publisher.clone().unwrap_or_else(|| "unknown".into());
            match consumers
                .iter_mut()
                .find(|s| s.service == publisher && !s.expected)
            {
                Some(step) => step.children.push(child),
                // It published because of this event, so it took it,
                // though its own records of that are missing.
                None => consumers.push(ConsumerStep {
                    service: publisher,
                    consumer_group: None,
                    status: StepStatus::InProgress,
                    stages: Vec::new(),
                    deliveries: 0,
                    received_at: None,
                    finished_at: None,
                    queue_wait_us: None,
                    processing_us: None,
                    error: None,
                    expected: false,
                    stuck_after_us: None,
                    children: vec![child],
                }),
            }
        }
        Some(FlowEvent {
            event_id: id.clone(),
            event_type: event.event_type().map(str::to_owned),
            publisher: event.publisher().map(str::to_owned),
            published_at: event.published_us().map(Timestamp::from_micros),
            destination: event.destination().map(str::to_owned),
            consumers,
        })
    }
}
