//! Flow reconstruction: a pure function from a flow's records to its causal
//! tree, step statuses, timings and overall status. No I/O, no clock: the
//! same records always give the same flow.
//!
//! The tree is event -> the consumers (service + group) that handled it ->
//! the events each published while handling it (by causation id). An event
//! whose cause is not among the records is a root. Every event is placed
//! once, so a causation cycle cannot recurse forever.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use causeway_model::{
    ConsumerStep, EventId, FlowDetail, FlowEvent, FlowStatus, FlowSummary, Record, Stage,
    StepStatus, Timestamp,
};

#[derive(Default)]
struct EventFacts {
    event_type: Option<String>,
    publisher: Option<String>,
    published_at: Option<Timestamp>,
    destination: Option<String>,
    causation_id: Option<EventId>,
    first_seen: Option<Timestamp>,
    /// (service, consumer group) -> the records of that step, in time order.
    steps: BTreeMap<(String, Option<String>), Vec<Record>>,
}

/// Rebuilds the flow `key` from its records (in any order).
pub fn reconstruct(key: &str, mut records: Vec<Record>) -> FlowDetail {
    records.sort_by_key(|r| r.timestamp);
    let mut events: BTreeMap<EventId, EventFacts> = BTreeMap::new();
    for record in &records {
        let Some(event_id) = &record.event_id else {
            continue;
        };
        let facts = events.entry(event_id.clone()).or_default();
        facts.first_seen.get_or_insert(record.timestamp);
        if facts.event_type.is_none() {
            facts.event_type.clone_from(&record.event_type);
        }
        match record.stage {
            Stage::Published => {
                facts
                    .publisher
                    .get_or_insert_with(|| record.service.clone());
                facts.published_at.get_or_insert(record.timestamp);
                if facts.destination.is_none() {
                    facts.destination.clone_from(&record.destination);
                }
                if facts.causation_id.is_none() {
                    facts.causation_id.clone_from(&record.causation_id);
                }
            }
            Stage::Log => {}
            _ => facts
                .steps
                .entry((record.service.clone(), record.consumer_group.clone()))
                .or_default()
                .push(record.clone()),
        }
    }

    // Children of each (cause, publisher), in order of first sight.
    let mut order: Vec<&EventId> = events.keys().collect();
    order.sort_by_key(|id| (events[*id].first_seen, (*id).clone()));
    let mut children: BTreeMap<(EventId, Option<String>), Vec<EventId>> = BTreeMap::new();
    let mut roots = Vec::new();
    for id in &order {
        let facts = &events[*id];
        match &facts.causation_id {
            Some(cause) if events.contains_key(cause) && cause != *id => children
                .entry((cause.clone(), facts.publisher.clone()))
                .or_default()
                .push((*id).clone()),
            _ => roots.push((*id).clone()),
        }
    }

    let mut placed = HashSet::new();
    let mut tree: Vec<FlowEvent> = roots
        .iter()
        .filter_map(|id| build_event(id, &events, &children, &mut placed))
        .collect();
    // Events only reachable through a causation cycle get no root above
    // them; show them as roots rather than lose them.
    for id in &order {
        if !placed.contains(*id) {
            tree.extend(build_event(id, &events, &children, &mut placed));
        }
    }

    let summary = summarize(key, &records, &events, &tree);
    FlowDetail {
        summary,
        roots: tree,
        records,
        truncated: false,
    }
}

fn build_event(
    id: &EventId,
    events: &BTreeMap<EventId, EventFacts>,
    children: &BTreeMap<(EventId, Option<String>), Vec<EventId>>,
    placed: &mut HashSet<EventId>,
) -> Option<FlowEvent> {
    if !placed.insert(id.clone()) {
        return None;
    }
    let facts = &events[id];
    let mut consumers: Vec<ConsumerStep> = facts
        .steps
        .iter()
        .map(|((service, group), records)| {
            step(service, group.clone(), records, facts.published_at)
        })
        .collect();
    // Events this event caused, under the step of the service that published them.
    let caused = children
        .range((id.clone(), None)..)
        .take_while(|((cause, _), _)| cause == id);
    for ((_, publisher), kids) in caused {
        let service = publisher.clone().unwrap_or_else(|| "unknown".to_owned());
        let built: Vec<FlowEvent> = kids
            .iter()
            .filter_map(|k| build_event(k, events, children, placed))
            .collect();
        match consumers.iter_mut().find(|s| s.service == service) {
            Some(step) => step.children.extend(built),
            // It published because of this event, so it handled it, though
            // its own records of that are missing.
            None => consumers.push(ConsumerStep {
                service,
                consumer_group: None,
                status: StepStatus::InProgress,
                stages: Vec::new(),
                received_at: None,
                finished_at: None,
                queue_wait_us: None,
                processing_us: None,
                error: None,
                children: built,
            }),
        }
    }
    Some(FlowEvent {
        event_id: id.clone(),
        event_type: facts.event_type.clone(),
        publisher: facts.publisher.clone(),
        published_at: facts.published_at,
        destination: facts.destination.clone(),
        consumers,
    })
}

fn micros_between(from: Timestamp, to: Timestamp) -> u64 {
    u64::try_from(to.as_micros().saturating_sub(from.as_micros())).unwrap_or(0)
}

fn step(
    service: &str,
    consumer_group: Option<String>,
    records: &[Record],
    published_at: Option<Timestamp>,
) -> ConsumerStep {
    let stages: Vec<Stage> = records.iter().map(|r| r.stage).collect();
    let received_at = records
        .iter()
        .find(|r| r.stage == Stage::Received)
        .map(|r| r.timestamp);
    let finishing = records.iter().rev().find(|r| {
        matches!(
            r.stage,
            Stage::Handled | Stage::Failed | Stage::DeadLettered
        )
    });
    let failed_before = stages.contains(&Stage::Failed);
    let status = if stages.contains(&Stage::DeadLettered) {
        StepStatus::DeadLettered
    } else if stages.contains(&Stage::Compensated) {
        StepStatus::Compensated
    } else {
        match finishing.map(|r| r.stage) {
            Some(Stage::Handled) if failed_before => StepStatus::FailedAndRetried,
            Some(Stage::Handled) => StepStatus::Handled,
            Some(Stage::Failed) => StepStatus::Failed,
            _ => StepStatus::InProgress,
        }
    };
    let error = records
        .iter()
        .rev()
        .find(|r| r.error_type.is_some() || r.error_message.is_some())
        .map(|r| match (&r.error_type, &r.error_message) {
            (Some(t), Some(m)) => format!("{t}: {m}"),
            (Some(t), None) => t.clone(),
            (None, Some(m)) => m.clone(),
            (None, None) => String::new(),
        });
    ConsumerStep {
        service: service.to_owned(),
        consumer_group,
        status,
        stages,
        received_at,
        finished_at: finishing.map(|r| r.timestamp),
        queue_wait_us: published_at
            .zip(received_at)
            .map(|(p, r)| micros_between(p, r)),
        processing_us: finishing.and_then(|r| {
            r.duration_us
                .or_else(|| received_at.map(|rec| micros_between(rec, r.timestamp)))
        }),
        error,
        children: Vec::new(),
    }
}

fn walk_steps<'a>(events: &'a [FlowEvent], out: &mut Vec<&'a ConsumerStep>) {
    for event in events {
        for step in &event.consumers {
            out.push(step);
            walk_steps(&step.children, out);
        }
    }
}

fn summarize(
    key: &str,
    records: &[Record],
    events: &BTreeMap<EventId, EventFacts>,
    tree: &[FlowEvent],
) -> FlowSummary {
    let mut steps = Vec::new();
    walk_steps(tree, &mut steps);
    let compensated = records.iter().any(|r| r.stage == Stage::Compensated);
    let failed = steps
        .iter()
        .any(|s| matches!(s.status, StepStatus::Failed | StepStatus::DeadLettered));
    let in_progress = steps.iter().any(|s| s.status == StepStatus::InProgress);
    let status = if compensated {
        FlowStatus::Compensated
    } else if failed {
        FlowStatus::Failed
    } else if in_progress {
        FlowStatus::InProgress
    } else {
        FlowStatus::Completed
    };
    let started_at = records
        .first()
        .map_or(Timestamp::from_micros(0), |r| r.timestamp);
    let last_activity_at = records.last().map_or(started_at, |r| r.timestamp);
    let services: BTreeSet<&str> = records.iter().map(|r| r.service.as_str()).collect();
    FlowSummary {
        correlation_id: key.to_owned(),
        status,
        root_event_type: tree.first().and_then(|e| e.event_type.clone()),
        started_at,
        last_activity_at,
        duration_us: micros_between(started_at, last_activity_at),
        services: services.into_iter().map(str::to_owned).collect(),
        event_count: events.len(),
        record_count: records.len(),
        failure_count: records
            .iter()
            .filter(|r| matches!(r.stage, Stage::Failed | Stage::DeadLettered))
            .count(),
    }
}

#[cfg(test)]
mod tests {
    use causeway_model::CorrelationId;

    use super::*;

    /// One line of a record script: (micros, service, stage, event, cause, type).
    type Line<'a> = (i64, &'a str, Stage, &'a str, Option<&'a str>, &'a str);

    fn records(script: &[Line<'_>]) -> Vec<Record> {
        script
            .iter()
            .map(|(t, service, stage, event, cause, event_type)| {
                let mut r = Record::new(Timestamp::from_micros(*t), *service, stage.as_str());
                r.stage = *stage;
                r.correlation_id = Some(CorrelationId::new("order-1").unwrap());
                r.event_id = Some(EventId::new(*event).unwrap());
                r.causation_id = cause.map(|c| EventId::new(c).unwrap());
                r.event_type = Some((*event_type).to_owned());
                if *stage == Failed {
                    r.error_type = Some("CardDeclined".into());
                    r.error_message = Some("insufficient funds".into());
                }
                r
            })
            .collect()
    }

    use Stage::*;

    fn happy() -> Vec<Record> {
        records(&[
            (100, "order", Published, "e1", None, "OrderPlaced"),
            (150, "payment", Received, "e1", None, "OrderPlaced"),
            (
                170,
                "payment",
                Published,
                "e2",
                Some("e1"),
                "PaymentSucceeded",
            ),
            (180, "payment", Handled, "e1", None, "OrderPlaced"),
            (200, "shipping", Received, "e2", None, "PaymentSucceeded"),
            (260, "shipping", Handled, "e2", None, "PaymentSucceeded"),
        ])
    }

    #[test]
    fn a_saga_becomes_a_causal_tree_with_timings() {
        let mut input = happy();
        input.reverse(); // order of arrival must not matter
        let flow = reconstruct("order-1", input);
        assert_eq!(flow.summary.status, FlowStatus::Completed);
        assert_eq!(flow.summary.root_event_type.as_deref(), Some("OrderPlaced"));
        assert_eq!(flow.summary.services, vec!["order", "payment", "shipping"]);
        assert_eq!(
            (flow.summary.event_count, flow.summary.record_count),
            (2, 6)
        );
        assert_eq!(flow.summary.duration_us, 160);
        assert_eq!(flow.roots.len(), 1);
        let root = &flow.roots[0];
        assert_eq!(root.publisher.as_deref(), Some("order"));
        let payment = &root.consumers[0];
        assert_eq!(payment.service, "payment");
        assert_eq!(payment.status, StepStatus::Handled);
        assert_eq!(payment.queue_wait_us, Some(50));
        assert_eq!(payment.processing_us, Some(30));
        assert_eq!(payment.stages, vec![Received, Handled]);
        let child = &payment.children[0];
        assert_eq!(child.event_type.as_deref(), Some("PaymentSucceeded"));
        assert_eq!(child.consumers[0].service, "shipping");
        assert_eq!(child.consumers[0].status, StepStatus::Handled);
    }

    #[test]
    fn a_failed_payment_fails_the_flow_with_its_error() {
        let flow = reconstruct(
            "order-1",
            records(&[
                (100, "order", Published, "e1", None, "OrderPlaced"),
                (150, "payment", Received, "e1", None, "OrderPlaced"),
                (160, "payment", Failed, "e1", None, "OrderPlaced"),
            ]),
        );
        assert_eq!(flow.summary.status, FlowStatus::Failed);
        assert_eq!(flow.summary.failure_count, 1);
        let step = &flow.roots[0].consumers[0];
        assert_eq!(step.status, StepStatus::Failed);
        assert_eq!(
            step.error.as_deref(),
            Some("CardDeclined: insufficient funds")
        );
    }

    #[test]
    fn a_retry_that_succeeds_completes_the_flow() {
        let flow = reconstruct(
            "order-1",
            records(&[
                (100, "order", Published, "e1", None, "OrderPlaced"),
                (150, "payment", Received, "e1", None, "OrderPlaced"),
                (160, "payment", Failed, "e1", None, "OrderPlaced"),
                (170, "payment", Retried, "e1", None, "OrderPlaced"),
                (190, "payment", Handled, "e1", None, "OrderPlaced"),
            ]),
        );
        assert_eq!(
            flow.roots[0].consumers[0].status,
            StepStatus::FailedAndRetried
        );
        assert_eq!(flow.summary.status, FlowStatus::Completed);
    }

    #[test]
    fn compensation_and_unfinished_work_are_reported() {
        let compensated = reconstruct(
            "order-1",
            records(&[
                (100, "order", Published, "e1", None, "OrderPlaced"),
                (150, "payment", Failed, "e1", None, "OrderPlaced"),
                (190, "order", Compensated, "e1", None, "OrderPlaced"),
            ]),
        );
        assert_eq!(compensated.summary.status, FlowStatus::Compensated);
        let pending = reconstruct(
            "order-1",
            records(&[
                (100, "order", Published, "e1", None, "OrderPlaced"),
                (150, "payment", Received, "e1", None, "OrderPlaced"),
            ]),
        );
        assert_eq!(pending.summary.status, FlowStatus::InProgress);
        assert_eq!(pending.roots[0].consumers[0].status, StepStatus::InProgress);
    }

    #[test]
    fn a_causation_cycle_places_every_event_once() {
        let flow = reconstruct(
            "order-1",
            records(&[
                (100, "a", Published, "e1", Some("e2"), "Ping"),
                (200, "b", Published, "e2", Some("e1"), "Pong"),
            ]),
        );
        let mut steps = Vec::new();
        walk_steps(&flow.roots, &mut steps);
        let placed = flow.roots.len() + steps.iter().map(|s| s.children.len()).sum::<usize>();
        assert_eq!(placed, 2);
    }

    #[test]
    fn a_child_whose_publisher_left_no_consumer_records_gets_a_step() {
        let flow = reconstruct(
            "order-1",
            records(&[
                (100, "order", Published, "e1", None, "OrderPlaced"),
                (
                    170,
                    "payment",
                    Published,
                    "e2",
                    Some("e1"),
                    "PaymentSucceeded",
                ),
            ]),
        );
        let step = &flow.roots[0].consumers[0];
        assert_eq!(
            (step.service.as_str(), step.status),
            ("payment", StepStatus::InProgress)
        );
        assert_eq!(
            step.children[0].event_type.as_deref(),
            Some("PaymentSucceeded")
        );
    }
}
