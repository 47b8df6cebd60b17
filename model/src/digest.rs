//! The flow digest: what a flow's records say about its structure, kept
//! small enough to store beside the records and update as they arrive.
//!
//! A [`FlowDigest`] holds, per event, who published it, when and where, and
//! per step (event, service, consumer group) the distinct times of each
//! lifecycle stage, the last error and the handler's duration. It is built
//! by adding records one at a time, and adding is commutative and
//! idempotent: the same records in any order, and a record added twice,
//! give the same digest. That is what lets the index writer keep one digest
//! per flow up to date batch after batch, and lets query derive the flow's
//! status, step states and anomalies from it without reading the records.
//!
//! It is bounded: past [`MAX_EVENTS`] events or [`MAX_STEPS`] steps the
//! rest is counted but not described, and `truncated` says so. It derives
//! nothing that depends on the time of reading (`stuck` is query's call).
//! No I/O.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::api::StepStatus;
use crate::ids::{EventId, TraceId};
use crate::record::{Record, Stage};
use crate::text::char_prefix;
use crate::timestamp::Timestamp;

/// Most events a digest describes.
pub const MAX_EVENTS: usize = 2_048;
/// Most steps (event, service, consumer group) a digest describes.
pub const MAX_STEPS: usize = 4_096;
/// Most services, and most trace ids, a digest lists.
pub const MAX_NAMES: usize = 64;
/// Distinct times kept per stage of a step: enough to tell once, twice and
/// "again and again" apart.
pub const MAX_STAMPS: usize = 8;
/// Longest error text kept per step, in characters.
pub const MAX_ERROR_CHARS: usize = 512;

/// Where a lifecycle stage falls in an event's life, for records with equal
/// timestamps: a publish comes before its receive, a failure before the
/// retry that follows it, a retry before the success it leads to.
pub fn lifecycle_rank(stage: Stage) -> u8 {
    match stage {
        Stage::Published => 0,
        Stage::Received => 1,
        Stage::Log => 2,
        Stage::Failed => 3,
        Stage::Retried => 4,
        Stage::Handled => 5,
        Stage::DeadLettered => 6,
        Stage::Compensated => 7,
    }
}

/// A step: one consumer (service and group) handling one event.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct StepKey {
    pub event_id: EventId,
    pub service: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer_group: Option<String>,
}

/// Distinct microsecond times, the smallest [`MAX_STAMPS`] of them, plus
/// the latest ever seen.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamps {
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub first: BTreeSet<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<i64>,
}

impl Stamps {
    fn add(&mut self, micros: i64) {
        self.first.insert(micros);
        if self.first.len() > MAX_STAMPS {
            self.first.pop_last();
        }
        self.last = Some(self.last.map_or(micros, |l| l.max(micros)));
    }

    fn merge(&mut self, other: &Stamps) {
        for &t in &other.first {
            self.add(t);
        }
        if let Some(l) = other.last {
            self.add(l);
        }
    }

    /// Distinct times seen, up to [`MAX_STAMPS`] (and one more when the
    /// latest is past the kept ones).
    pub fn count(&self) -> usize {
        let beyond = self
            .last
            .is_some_and(|l| self.first.last().is_some_and(|&kept| l > kept));
        self.first.len() + usize::from(beyond)
    }

    pub fn is_empty(&self) -> bool {
        self.first.is_empty()
    }

    pub fn earliest(&self) -> Option<i64> {
        self.first.first().copied()
    }

    pub fn latest(&self) -> Option<i64> {
        self.last
    }
}

/// The facts of one `published` record of an event. Ordered by time, then
/// the rest, so the least of several is the same whatever their order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PublishFacts {
    pub at: i64,
    pub service: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<EventId>,
}

/// What the event's other records say, the least value of each field.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeenFacts {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<EventId>,
}

/// What the records say about one event outside its consumers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventDigest {
    /// The earliest `published` record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published: Option<PublishFacts>,
    /// What the records of other stages said.
    #[serde(default)]
    pub seen: SeenFacts,
    /// Every distinct publish time (a republish shows as a second one).
    #[serde(default, skip_serializing_if = "Stamps::is_empty")]
    pub publishes: Stamps,
    /// The earliest record of the event, of any stage.
    pub first_us: i64,
}

impl EventDigest {
    /// The event type its publish record gave, or else any other record.
    pub fn event_type(&self) -> Option<&str> {
        self.published
            .as_ref()
            .and_then(|p| p.event_type.as_deref())
            .or(self.seen.event_type.as_deref())
    }

    /// The service that published it, if its `published` record was seen.
    pub fn publisher(&self) -> Option<&str> {
        self.published.as_ref().map(|p| p.service.as_str())
    }

    pub fn published_us(&self) -> Option<i64> {
        self.published.as_ref().map(|p| p.at)
    }

    pub fn destination(&self) -> Option<&str> {
        self.published
            .as_ref()
            .and_then(|p| p.destination.as_deref())
            .or(self.seen.destination.as_deref())
    }

    pub fn causation_id(&self) -> Option<&EventId> {
        self.published
            .as_ref()
            .and_then(|p| p.causation_id.as_ref())
            .or(self.seen.causation_id.as_ref())
    }

    fn add(&mut self, record: &Record, t: i64) {
        self.first_us = self.first_us.min(t);
        if record.stage == Stage::Published {
            self.publishes.add(t);
            let facts = PublishFacts {
                at: t,
                service: record.service.clone(),
                event_type: record.event_type.clone(),
                destination: record.destination.clone(),
                causation_id: record.causation_id.clone(),
            };
            keep_least(&mut self.published, facts);
        } else {
            fill_least(&mut self.seen.event_type, record.event_type.as_ref());
            fill_least(&mut self.seen.destination, record.destination.as_ref());
            fill_least(&mut self.seen.causation_id, record.causation_id.as_ref());
        }
    }

    fn merge(&mut self, other: &EventDigest) {
        self.first_us = self.first_us.min(other.first_us);
        self.publishes.merge(&other.publishes);
        if let Some(published) = &other.published {
            keep_least(&mut self.published, published.clone());
        }
        fill_least(&mut self.seen.event_type, other.seen.event_type.as_ref());
        fill_least(&mut self.seen.destination, other.seen.destination.as_ref());
        fill_least(
            &mut self.seen.causation_id,
            other.seen.causation_id.as_ref(),
        );
    }
}

fn keep_least<T: Ord>(slot: &mut Option<T>, value: T) {
    if slot.as_ref().is_none_or(|s| value < *s) {
        *slot = Some(value);
    }
}

fn fill_least<T: Ord + Clone>(slot: &mut Option<T>, value: Option<&T>) {
    if let Some(value) = value
        && slot.as_ref().is_none_or(|s| value < s)
    {
        *slot = Some(value.clone());
    }
}

fn error_text(record: &Record) -> Option<String> {
    let text = match (&record.error_type, &record.error_message) {
        (Some(t), Some(m)) => format!("{t}: {m}"),
        (Some(t), None) => t.clone(),
        (None, Some(m)) => m.clone(),
        (None, None) => return None,
    };
    Some(char_prefix(&text, MAX_ERROR_CHARS).to_owned())
}

/// What the records say about one step.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepDigest {
    #[serde(default, skip_serializing_if = "Stamps::is_empty")]
    pub received: Stamps,
    #[serde(default, skip_serializing_if = "Stamps::is_empty")]
    pub handled: Stamps,
    #[serde(default, skip_serializing_if = "Stamps::is_empty")]
    pub failed: Stamps,
    #[serde(default, skip_serializing_if = "Stamps::is_empty")]
    pub retried: Stamps,
    #[serde(default, skip_serializing_if = "Stamps::is_empty")]
    pub dead_lettered: Stamps,
    #[serde(default, skip_serializing_if = "Stamps::is_empty")]
    pub compensated: Stamps,
    /// The handler's own duration on its latest `handled` or `failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_us: Option<u64>,
    /// The time of the record `duration_us` came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_at: Option<i64>,
    /// The latest error, `type: message`, cut to [`MAX_ERROR_CHARS`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_at: Option<i64>,
    /// The earliest and latest record of the step.
    pub first_us: i64,
    pub last_us: i64,
}

impl StepDigest {
    /// The stamps of `stage`, for the stages a step records.
    pub fn stamps(&self, stage: Stage) -> Option<&Stamps> {
        match stage {
            Stage::Received => Some(&self.received),
            Stage::Handled => Some(&self.handled),
            Stage::Failed => Some(&self.failed),
            Stage::Retried => Some(&self.retried),
            Stage::DeadLettered => Some(&self.dead_lettered),
            Stage::Compensated => Some(&self.compensated),
            Stage::Published | Stage::Log => None,
        }
    }

    fn stamps_mut(&mut self, stage: Stage) -> Option<&mut Stamps> {
        match stage {
            Stage::Received => Some(&mut self.received),
            Stage::Handled => Some(&mut self.handled),
            Stage::Failed => Some(&mut self.failed),
            Stage::Retried => Some(&mut self.retried),
            Stage::DeadLettered => Some(&mut self.dead_lettered),
            Stage::Compensated => Some(&mut self.compensated),
            Stage::Published | Stage::Log => None,
        }
    }

    /// Every (time, stage) recorded, in lifecycle order for equal times.
    pub fn timeline(&self) -> Vec<(i64, Stage)> {
        let mut out = Vec::new();
        for stage in Stage::ALL {
            if let Some(stamps) = self.stamps(stage) {
                out.extend(stamps.first.iter().map(|&t| (t, stage)));
                if let Some(l) = stamps.last.filter(|l| !stamps.first.contains(l)) {
                    out.push((l, stage));
                }
            }
        }
        out.sort_by_key(|&(t, stage)| (t, lifecycle_rank(stage)));
        out
    }

    /// The step's state from its records alone (`pending` and staleness
    /// need the topology and the time of reading, so never come from
    /// here).
    pub fn status(&self) -> StepStatus {
        self.status_in(&self.timeline())
    }

    /// [`StepDigest::status`] from the step's [`StepDigest::timeline`].
    pub fn status_in(&self, timeline: &[(i64, Stage)]) -> StepStatus {
        if !self.dead_lettered.is_empty() {
            return StepStatus::DeadLettered;
        }
        if !self.compensated.is_empty() {
            return StepStatus::Compensated;
        }
        let outcome = timeline
            .iter()
            .rev()
            .find(|(_, stage)| matches!(stage, Stage::Handled | Stage::Failed | Stage::Retried));
        match outcome {
            Some((_, Stage::Handled)) => StepStatus::Handled,
            Some((_, Stage::Retried)) => StepStatus::Retrying,
            Some(&(failed_at, Stage::Failed)) => {
                // Delivered again since the failure: the retry is under way.
                if self.received.latest().is_some_and(|r| r > failed_at) {
                    StepStatus::Retrying
                } else {
                    StepStatus::Failed
                }
            }
            _ => StepStatus::InProgress,
        }
    }
}

/// Everything a flow's records say about its structure; see the module docs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowDigest {
    /// The correlation id, or the trace id for flows without one.
    pub key: String,
    pub first_us: i64,
    pub last_us: i64,
    /// Records added, duplicates included.
    pub record_count: u64,
    /// Records of a `failed` or `dead_lettered` stage.
    #[serde(default)]
    pub failure_count: u64,
    #[serde(default)]
    pub services: BTreeSet<String>,
    #[serde(default)]
    pub trace_ids: BTreeSet<TraceId>,
    #[serde(default)]
    pub events: BTreeMap<EventId, EventDigest>,
    /// As JSON, a list of `[key, step]` pairs: JSON object keys are
    /// strings only.
    #[serde(default, with = "step_pairs")]
    pub steps: BTreeMap<StepKey, StepDigest>,
    /// True once an event, step, service or trace id was left out for the
    /// bounds.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}

impl FlowDigest {
    /// An empty digest of the flow `key`.
    pub fn new(key: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            first_us: i64::MAX,
            last_us: i64::MIN,
            record_count: 0,
            failure_count: 0,
            services: BTreeSet::new(),
            trace_ids: BTreeSet::new(),
            events: BTreeMap::new(),
            steps: BTreeMap::new(),
            truncated: false,
        }
    }

    /// A digest of `records`, all of flow `key`.
    pub fn of<'a>(key: impl Into<String>, records: impl IntoIterator<Item = &'a Record>) -> Self {
        let mut digest = Self::new(key);
        for record in records {
            digest.add(record);
        }
        digest
    }

    pub fn is_empty(&self) -> bool {
        self.record_count == 0
    }

    pub fn first_at(&self) -> Timestamp {
        Timestamp::from_micros(if self.is_empty() { 0 } else { self.first_us })
    }

    pub fn last_at(&self) -> Timestamp {
        Timestamp::from_micros(if self.is_empty() { 0 } else { self.last_us })
    }

    /// Adds one record of this flow.
    pub fn add(&mut self, record: &Record) {
        let t = record.timestamp.as_micros();
        self.record_count += 1;
        self.first_us = self.first_us.min(t);
        self.last_us = self.last_us.max(t);
        if matches!(record.stage, Stage::Failed | Stage::DeadLettered) {
            self.failure_count += 1;
        }
        insert_bounded(&mut self.services, &record.service, &mut self.truncated);
        if let Some(trace_id) = record.trace_id {
            if self.trace_ids.len() < MAX_NAMES || self.trace_ids.contains(&trace_id) {
                self.trace_ids.insert(trace_id);
            } else {
                self.truncated = true;
            }
        }
        let Some(event_id) = &record.event_id else {
            return;
        };
        if !self.events.contains_key(event_id) && self.events.len() >= MAX_EVENTS {
            self.truncated = true;
            return;
        }
        let event = self
            .events
            .entry(event_id.clone())
            .or_insert_with(|| EventDigest {
                first_us: t,
                ..EventDigest::default()
            });
        event.add(record, t);
        if record.stage == Stage::Published || record.stage == Stage::Log {
            return;
        }
        let key = StepKey {
            event_id: event_id.clone(),
            service: record.service.clone(),
            consumer_group: record.consumer_group.clone(),
        };
        if !self.steps.contains_key(&key) && self.steps.len() >= MAX_STEPS {
            self.truncated = true;
            return;
        }
        self.steps
            .entry(key)
            .or_insert_with(|| StepDigest {
                first_us: t,
                last_us: t,
                ..StepDigest::default()
            })
            .add(record, t);
    }

    /// Folds `other`, a digest of more records of the same flow, into this
    /// one: as if its records had been added here.
    pub fn merge(&mut self, other: &FlowDigest) {
        if other.is_empty() {
            return;
        }
        self.record_count += other.record_count;
        self.failure_count += other.failure_count;
        self.first_us = self.first_us.min(other.first_us);
        self.last_us = self.last_us.max(other.last_us);
        self.truncated |= other.truncated;
        for service in &other.services {
            insert_bounded(&mut self.services, service, &mut self.truncated);
        }
        for trace_id in &other.trace_ids {
            if self.trace_ids.len() < MAX_NAMES || self.trace_ids.contains(trace_id) {
                self.trace_ids.insert(*trace_id);
            } else {
                self.truncated = true;
            }
        }
        for (id, event) in &other.events {
            let room = self.events.len() < MAX_EVENTS;
            match self.events.get_mut(id) {
                Some(mine) => mine.merge(event),
                None if room => {
                    self.events.insert(id.clone(), event.clone());
                }
                None => self.truncated = true,
            }
        }
        for (key, step) in &other.steps {
            let room = self.steps.len() < MAX_STEPS;
            match self.steps.get_mut(key) {
                Some(mine) => mine.merge(step),
                None if room => {
                    self.steps.insert(key.clone(), step.clone());
                }
                None => self.truncated = true,
            }
        }
    }
}

/// A fact about a flow that a filter can look up without decoding its
/// digest. Each is a fact of the records alone, not a verdict that needs
/// the time of reading or the topology (`stuck`, `pending`, the learned
/// thresholds): those are derived at read time, and a facet only narrows
/// which flows could match (a flow can be `failed` only if it has the
/// facet `failed`).
///
/// `failed` and `dead_lettered` are exact: the flow status they name
/// outranks every status that depends on the time of reading, so the
/// records decide it. Digests written by builds before 0.1 set them for
/// any `failed` / `dead_lettered` record, a superset: filters stay right
/// on such an index, only slower.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DigestFacet {
    /// The flow is `failed` by its records: a step's latest outcome is a
    /// failure with no delivery since, and no step was dead-lettered or
    /// compensated.
    Failed,
    /// The flow is `dead_lettered` by its records: a step was
    /// dead-lettered and none compensated.
    DeadLettered,
    /// A step recorded `compensated`.
    Compensated,
    /// A step received an event and has not recorded an outcome since.
    Open,
    /// An event has consumer records but no `published` record.
    Unpublished,
    /// An event was delivered to one consumer more than once, or retried.
    Redelivered,
    /// An event was handled by one consumer more than once.
    HandledTwice,
    /// An event failed three or more times for one consumer.
    FailedRepeatedly,
    /// A receive was stamped before its publish.
    ReceivedBeforePublished,
    /// One consumer received two events of one destination.
    SharedDestination,
}

impl DigestFacet {
    pub const ALL: [DigestFacet; 10] = [
        DigestFacet::Failed,
        DigestFacet::DeadLettered,
        DigestFacet::Compensated,
        DigestFacet::Open,
        DigestFacet::Unpublished,
        DigestFacet::Redelivered,
        DigestFacet::HandledTwice,
        DigestFacet::FailedRepeatedly,
        DigestFacet::ReceivedBeforePublished,
        DigestFacet::SharedDestination,
    ];

    /// The indexed name.
    pub fn as_str(self) -> &'static str {
        match self {
            DigestFacet::Failed => "failed",
            DigestFacet::DeadLettered => "dead_lettered",
            DigestFacet::Compensated => "compensated",
            DigestFacet::Open => "open",
            DigestFacet::Unpublished => "unpublished",
            DigestFacet::Redelivered => "redelivered",
            DigestFacet::HandledTwice => "handled_twice",
            DigestFacet::FailedRepeatedly => "failed_repeatedly",
            DigestFacet::ReceivedBeforePublished => "received_before_published",
            DigestFacet::SharedDestination => "shared_destination",
        }
    }
}

impl FlowDigest {
    /// The facets that hold for this flow, sorted, each once.
    pub fn facets(&self) -> BTreeSet<DigestFacet> {
        let mut out = BTreeSet::new();
        let mut seen_destinations: BTreeSet<(&str, Option<&str>, &str)> = BTreeSet::new();
        let mut failed_step = false;
        for (key, step) in &self.steps {
            failed_step |= step.status() == StepStatus::Failed;
            if !step.dead_lettered.is_empty() {
                out.insert(DigestFacet::DeadLettered);
            }
            if !step.compensated.is_empty() {
                out.insert(DigestFacet::Compensated);
            }
            if step.received.count() > 1 || !step.retried.is_empty() {
                out.insert(DigestFacet::Redelivered);
            }
            if step.handled.count() > 1 {
                out.insert(DigestFacet::HandledTwice);
            }
            if step.failed.count() >= 3 {
                out.insert(DigestFacet::FailedRepeatedly);
            }
            let outcome = [
                &step.handled,
                &step.failed,
                &step.dead_lettered,
                &step.compensated,
            ]
            .iter()
            .filter_map(|s| s.latest())
            .max();
            let opened = [&step.received, &step.retried]
                .iter()
                .filter_map(|s| s.latest())
                .max();
            if opened.is_some_and(|o| outcome.is_none_or(|done| o > done)) {
                out.insert(DigestFacet::Open);
            }
            let event = self.events.get(&key.event_id);
            match event.and_then(EventDigest::published_us) {
                None => {
                    out.insert(DigestFacet::Unpublished);
                }
                Some(published) => {
                    if step.received.earliest().is_some_and(|r| r < published) {
                        out.insert(DigestFacet::ReceivedBeforePublished);
                    }
                }
            }
            if let Some(destination) = event.and_then(EventDigest::destination) {
                let consumer = (
                    key.service.as_str(),
                    key.consumer_group.as_deref(),
                    destination,
                );
                if !seen_destinations.insert(consumer) {
                    out.insert(DigestFacet::SharedDestination);
                }
            }
        }
        // The flow status ranks compensated over dead-lettered over failed.
        if out.contains(&DigestFacet::Compensated) {
            out.remove(&DigestFacet::DeadLettered);
        } else if failed_step && !out.contains(&DigestFacet::DeadLettered) {
            out.insert(DigestFacet::Failed);
        }
        out
    }
}

mod step_pairs {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serializer};

    use super::{StepDigest, StepKey};

    pub(super) fn serialize<S: Serializer>(
        steps: &BTreeMap<StepKey, StepDigest>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(steps.iter())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<BTreeMap<StepKey, StepDigest>, D::Error> {
        let pairs = Vec::<(StepKey, StepDigest)>::deserialize(deserializer)?;
        Ok(pairs.into_iter().collect())
    }
}

fn insert_bounded(set: &mut BTreeSet<String>, value: &str, truncated: &mut bool) {
    if set.contains(value) {
        return;
    }
    if set.len() < MAX_NAMES {
        set.insert(value.to_owned());
    } else {
        *truncated = true;
    }
}

impl StepDigest {
    fn add(&mut self, record: &Record, t: i64) {
        self.first_us = self.first_us.min(t);
        self.last_us = self.last_us.max(t);
        if let Some(stamps) = self.stamps_mut(record.stage) {
            stamps.add(t);
        }
        if matches!(record.stage, Stage::Handled | Stage::Failed)
            && let Some(d) = record.duration_us
        {
            let mut slot = self.duration_at.zip(self.duration_us);
            keep_latest(&mut slot, t, d);
            self.duration_at = slot.map(|(t, _)| t);
            self.duration_us = slot.map(|(_, d)| d);
        }
        if let Some(error) = error_text(record) {
            let mut slot = self.error_at.zip(self.error.take());
            keep_latest(&mut slot, t, error);
            self.error_at = slot.as_ref().map(|(t, _)| *t);
            self.error = slot.map(|(_, e)| e);
        }
    }

    fn merge(&mut self, other: &StepDigest) {
        self.first_us = self.first_us.min(other.first_us);
        self.last_us = self.last_us.max(other.last_us);
        for stage in Stage::ALL {
            if let (Some(theirs), Some(mine)) =
                (other.stamps(stage).cloned(), self.stamps_mut(stage))
            {
                mine.merge(&theirs);
            }
        }
        if let (Some(t), Some(d)) = (other.duration_at, other.duration_us) {
            let mut slot = self.duration_at.zip(self.duration_us);
            keep_latest(&mut slot, t, d);
            self.duration_at = slot.map(|(t, _)| t);
            self.duration_us = slot.map(|(_, d)| d);
        }
        if let (Some(t), Some(e)) = (other.error_at, other.error.clone()) {
            let mut slot = self.error_at.zip(self.error.take());
            keep_latest(&mut slot, t, e);
            self.error_at = slot.as_ref().map(|(t, _)| *t);
            self.error = slot.map(|(_, e)| e);
        }
    }
}

/// Keeps the greater by (time, value), so arrival order does not matter.
fn keep_latest<T: Ord>(slot: &mut Option<(i64, T)>, t: i64, value: T) {
    let better = match slot {
        None => true,
        Some((st, sv)) => (t, &value) > (*st, &*sv),
    };
    if better {
        *slot = Some((t, value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::CorrelationId;

    fn record(t: i64, service: &str, stage: Stage, event: &str) -> Record {
        let mut r = Record::new(Timestamp::from_micros(t), service, stage.as_str());
        r.stage = stage;
        r.correlation_id = Some(CorrelationId::new("order-1").unwrap());
        r.event_id = Some(EventId::new(event).unwrap());
        r.event_type = Some(format!("Type-{event}"));
        r
    }

    fn saga() -> Vec<Record> {
        let mut failed = record(160, "payment", Stage::Failed, "e1");
        failed.error_type = Some("Declined".into());
        failed.duration_us = Some(5);
        let mut handled = record(190, "payment", Stage::Handled, "e1");
        handled.duration_us = Some(12);
        let mut child = record(185, "payment", Stage::Published, "e2");
        child.causation_id = Some(EventId::new("e1").unwrap());
        vec![
            record(100, "order", Stage::Published, "e1"),
            record(150, "payment", Stage::Received, "e1"),
            failed,
            record(170, "payment", Stage::Retried, "e1"),
            record(175, "payment", Stage::Received, "e1"),
            child,
            handled,
            record(200, "shipping", Stage::Received, "e2"),
            record(200, "shipping", Stage::Handled, "e2"),
            record(201, "shipping", Stage::Log, "e2"),
        ]
    }

    #[test]
    fn any_order_and_any_split_give_the_same_digest() {
        let records = saga();
        let forward = FlowDigest::of("order-1", &records);
        let backward = FlowDigest::of("order-1", records.iter().rev());
        assert_eq!(forward, backward);
        for split in 0..records.len() {
            let mut left = FlowDigest::of("order-1", &records[..split]);
            left.merge(&FlowDigest::of("order-1", &records[split..]));
            assert_eq!(left, forward, "split at {split}");
        }
        let step = &forward.steps[&StepKey {
            event_id: EventId::new("e1").unwrap(),
            service: "payment".into(),
            consumer_group: None,
        }];
        assert_eq!(step.received.count(), 2);
        assert_eq!(step.duration_us, Some(12));
        assert_eq!(step.error.as_deref(), Some("Declined"));
        let e2 = &forward.events[&EventId::new("e2").unwrap()];
        assert_eq!(e2.publisher(), Some("payment"));
        assert_eq!(e2.causation_id().map(EventId::as_str), Some("e1"));
    }

    #[test]
    fn a_record_sent_twice_changes_only_the_record_count() {
        let records = saga();
        let once = FlowDigest::of("order-1", &records);
        let mut twice = FlowDigest::of("order-1", records.iter().chain(&records));
        assert_eq!(twice.record_count, 2 * once.record_count);
        twice.record_count = once.record_count;
        twice.failure_count = once.failure_count;
        assert_eq!(twice, once);
    }

    #[test]
    fn past_the_bounds_events_are_counted_and_the_digest_says_it_is_cut() {
        let mut digest = FlowDigest::new("big");
        for i in 0..MAX_EVENTS + 10 {
            digest.add(&record(i as i64, "s", Stage::Published, &format!("e{i}")));
        }
        assert_eq!(digest.events.len(), MAX_EVENTS);
        assert_eq!(digest.record_count, (MAX_EVENTS + 10) as u64);
        assert!(digest.truncated);
    }

    #[test]
    fn a_digest_reads_back_from_json() {
        let digest = FlowDigest::of("order-1", &saga());
        let json = serde_json::to_string(&digest).unwrap();
        let back: FlowDigest = serde_json::from_str(&json).unwrap();
        assert_eq!(back, digest);
    }

    #[test]
    fn the_failed_facet_names_a_failure_nothing_resolved() {
        let facets = |records: &[Record]| FlowDigest::of("order-1", records).facets();
        // Failed, retried and handled: not failed.
        assert!(!facets(&saga()).contains(&DigestFacet::Failed));
        let failed = [
            record(100, "order", Stage::Published, "e1"),
            record(150, "payment", Stage::Received, "e1"),
            record(160, "payment", Stage::Failed, "e1"),
        ];
        assert!(facets(&failed).contains(&DigestFacet::Failed));
        // Delivered again after the failure: a retry under way.
        let redelivered = [
            failed.as_slice(),
            &[record(170, "payment", Stage::Received, "e1")],
        ];
        assert!(!facets(&redelivered.concat()).contains(&DigestFacet::Failed));
        // Dead-lettered: that status, not failed.
        let dead = [
            failed.as_slice(),
            &[record(170, "payment", Stage::DeadLettered, "e1")],
        ];
        let dead = facets(&dead.concat());
        assert!(dead.contains(&DigestFacet::DeadLettered) && !dead.contains(&DigestFacet::Failed));
        // Compensated elsewhere: neither.
        let compensated = [
            failed.as_slice(),
            &[record(180, "inventory", Stage::Compensated, "e1")],
        ];
        let compensated = facets(&compensated.concat());
        assert!(compensated.contains(&DigestFacet::Compensated));
        assert!(!compensated.contains(&DigestFacet::Failed));
        let with_dead = [
            failed.as_slice(),
            &[
                record(170, "payment", Stage::DeadLettered, "e1"),
                record(180, "inventory", Stage::Compensated, "e1"),
            ],
        ];
        assert!(!facets(&with_dead.concat()).contains(&DigestFacet::DeadLettered));
    }

    #[test]
    fn stamps_keep_a_count_past_their_bound() {
        let mut stamps = Stamps::default();
        for t in 0..20 {
            stamps.add(t);
            stamps.add(t);
        }
        assert_eq!(stamps.first.len(), MAX_STAMPS);
        assert_eq!(stamps.count(), MAX_STAMPS + 1);
        assert_eq!((stamps.earliest(), stamps.latest()), (Some(0), Some(19)));
    }
}
