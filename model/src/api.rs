//! The query API's JSON types, shared by the query server and its clients
//! (the tui, the demo, tests).
//!
//! With the `openapi` feature each type also derives its OpenAPI schema,
//! which describes what serde writes: a field always written is
//! `required` even where reading accepts it missing, and an `Option` left
//! out when `None` is not `null`able.

use serde::{Deserialize, Serialize};

use crate::ids::{EventId, TraceId};
use crate::record::{Record, Stage};
use crate::timestamp::Timestamp;

/// A flow's overall state, as of the moment it is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum FlowStatus {
    /// Work is pending or being handled, and none of it has gone quiet for
    /// longer than its threshold.
    InProgress,
    /// Every step that was expected or begun was handled.
    Completed,
    /// A step failed and nothing retried, dead-lettered or compensated it.
    Failed,
    /// The flow ran compensating actions.
    Compensated,
    /// An event was moved to a dead letter queue.
    DeadLettered,
    /// Pending or in-progress work with no activity for longer than its
    /// threshold.
    Stuck,
}

impl FlowStatus {
    pub const ALL: [FlowStatus; 6] = [
        FlowStatus::InProgress,
        FlowStatus::Completed,
        FlowStatus::Failed,
        FlowStatus::Compensated,
        FlowStatus::DeadLettered,
        FlowStatus::Stuck,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FlowStatus::InProgress => "in_progress",
            FlowStatus::Completed => "completed",
            FlowStatus::Failed => "failed",
            FlowStatus::Compensated => "compensated",
            FlowStatus::DeadLettered => "dead_lettered",
            FlowStatus::Stuck => "stuck",
        }
    }

    /// The status with this wire name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

/// One consumer's handling of one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    /// An expected consumer that has received nothing yet.
    Pending,
    /// Received, not yet finished.
    InProgress,
    /// Finished successfully (on its last attempt).
    Handled,
    /// Failed, and a retry is under way or expected.
    Retrying,
    /// Failed, and nothing retried it.
    Failed,
    /// Moved to a dead letter queue.
    DeadLettered,
    /// The consumer ran a compensating action.
    Compensated,
}

impl StepStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Pending => "pending",
            StepStatus::InProgress => "in_progress",
            StepStatus::Handled => "handled",
            StepStatus::Retrying => "retrying",
            StepStatus::Failed => "failed",
            StepStatus::DeadLettered => "dead_lettered",
            StepStatus::Compensated => "compensated",
        }
    }

    /// Whether work of this step is still open (it could go stuck).
    pub fn is_open(self) -> bool {
        matches!(
            self,
            StepStatus::Pending | StepStatus::InProgress | StepStatus::Retrying
        )
    }
}

/// What can be wrong with a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum AnomalyKind {
    /// The same event handled successfully more than once by one consumer
    /// group: an idempotency breach.
    DuplicateDelivery,
    /// The same event delivered again to one consumer group, after a
    /// failure or without an acknowledgement.
    Redelivery,
    /// Two events published to one destination, received by one consumer
    /// group in the opposite order.
    OutOfOrder,
    /// Clocks disagree: a receive was stamped before its publish.
    ClockSkew,
    /// A service dropped the correlation context.
    ContextLost,
    /// An expected consumer never received an event within its threshold.
    MissingConsumer,
    /// One event failing again and again for one consumer group.
    PoisonLoop,
    /// A step far slower than the learned latency of its edge.
    SlowStep,
}

impl AnomalyKind {
    pub const ALL: [AnomalyKind; 8] = [
        AnomalyKind::DuplicateDelivery,
        AnomalyKind::Redelivery,
        AnomalyKind::OutOfOrder,
        AnomalyKind::ClockSkew,
        AnomalyKind::ContextLost,
        AnomalyKind::MissingConsumer,
        AnomalyKind::PoisonLoop,
        AnomalyKind::SlowStep,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AnomalyKind::DuplicateDelivery => "duplicate_delivery",
            AnomalyKind::Redelivery => "redelivery",
            AnomalyKind::OutOfOrder => "out_of_order",
            AnomalyKind::ClockSkew => "clock_skew",
            AnomalyKind::ContextLost => "context_lost",
            AnomalyKind::MissingConsumer => "missing_consumer",
            AnomalyKind::PoisonLoop => "poison_loop",
            AnomalyKind::SlowStep => "slow_step",
        }
    }

    /// The kind with this wire name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

/// A consumer: a service, and the consumer group it read in (when the
/// transport has groups).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Consumer {
    pub service: String,
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer_group: Option<String>,
}

/// Names one record that proves an anomaly: records carry no id of their
/// own, so by who wrote it, when, at which stage and for which event.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RecordRef {
    pub timestamp: Timestamp,
    pub service: String,
    pub stage: Stage,
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<EventId>,
}

/// A clock correction: this service's times were moved forward by
/// `correction_us` so that no receive precedes its publish.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClockCorrection {
    pub service: String,
    pub correction_us: u64,
}

/// Something wrong with a flow, with the records that prove it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Anomaly {
    pub kind: AnomalyKind,
    /// One sentence for a person.
    pub message: String,
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<EventId>,
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_type: Option<String>,
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer: Option<Consumer>,
    /// `out_of_order`: the event received before `event_id` although
    /// published after it.
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub other_event_id: Option<EventId>,
    /// `redelivery`, `duplicate_delivery`, `poison_loop`: how many times.
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
    /// `slow_step`: how long the step took and the learned p99 of its edge;
    /// `missing_consumer`: how long the event has waited and the threshold.
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_us: Option<u64>,
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold_us: Option<u64>,
    /// `clock_skew`: the corrections made.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub corrections: Vec<ClockCorrection>,
    /// The records that show it (at most a few).
    #[cfg_attr(feature = "openapi", schema(required = true))]
    #[serde(default)]
    pub records: Vec<RecordRef>,
}

/// A line in the flows list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FlowSummary {
    /// The correlation id, or the trace id for flows without one.
    pub correlation_id: String,
    pub status: FlowStatus,
    /// The type of the first event published in the flow.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub root_event_type: Option<String>,
    pub started_at: Timestamp,
    pub last_activity_at: Timestamp,
    /// Last activity minus start, clocks corrected.
    pub duration_us: u64,
    /// The services that wrote records in this flow, sorted.
    pub services: Vec<String>,
    pub event_count: usize,
    /// Records of the flow in the index, duplicates included.
    pub record_count: usize,
    pub failure_count: usize,
    /// The kinds of anomaly found, each once, sorted.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    #[serde(default)]
    pub anomalies: Vec<AnomalyKind>,
    /// The trace ids the flow's records carry, sorted.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    #[serde(default)]
    pub trace_ids: Vec<TraceId>,
}

/// `GET /api/v1/flows`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FlowsPage {
    /// Newest activity first.
    pub flows: Vec<FlowSummary>,
    /// Pass as `cursor` for the next page; absent on the last one.
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
    /// Flows examined for this page (statuses and anomalies are derived
    /// as of the request, so a filter examines flows until enough match).
    #[cfg_attr(feature = "openapi", schema(required = true))]
    #[serde(default)]
    pub scanned: usize,
    /// True when the page stopped at the most flows one request examines
    /// rather than at `limit` or the end: `next_cursor` goes on from there.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    #[serde(default)]
    pub scan_limited: bool,
}

/// An event in the causal tree and what became of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FlowEvent {
    pub event_id: EventId,
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub event_type: Option<String>,
    /// The service that published it, if its `published` record was seen.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub publisher: Option<String>,
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub published_at: Option<Timestamp>,
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub destination: Option<String>,
    /// The consumers that received it (or are expected to), each with the
    /// events it published while handling it.
    pub consumers: Vec<ConsumerStep>,
}

/// One consumer (service and group) handling one event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConsumerStep {
    pub service: String,
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub consumer_group: Option<String>,
    pub status: StepStatus,
    /// Every stage recorded for this step, in time order (lifecycle order
    /// for equal times).
    pub stages: Vec<Stage>,
    /// How many times the event was delivered to it.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    #[serde(default)]
    pub deliveries: u32,
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub received_at: Option<Timestamp>,
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub finished_at: Option<Timestamp>,
    /// Received minus published, clocks corrected.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub queue_wait_us: Option<u64>,
    /// The handler's own duration when it gave one, or finished minus
    /// received.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub processing_us: Option<u64>,
    /// The last error, `type: message`.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub error: Option<String>,
    /// Expected by the topology (learned or declared) rather than seen.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    #[serde(default)]
    pub expected: bool,
    /// Past this long without activity, open work here is stuck.
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stuck_after_us: Option<u64>,
    /// Events this consumer published while handling the event.
    // A FlowEvent holds steps that hold FlowEvents: the schema refers back
    // instead of collecting FlowEvent's schemas again, forever.
    #[cfg_attr(feature = "openapi", schema(no_recursion))]
    pub children: Vec<FlowEvent>,
}

/// `GET /api/v1/flows/{correlation_id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FlowDetail {
    pub summary: FlowSummary,
    /// Events with no known cause in this flow, oldest first.
    pub roots: Vec<FlowEvent>,
    /// What is wrong with the flow, in a stable order.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    #[serde(default)]
    pub anomalies: Vec<Anomaly>,
    /// Per service, how far its clock was moved to keep causality.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    #[serde(default)]
    pub clock_corrections: Vec<ClockCorrection>,
    /// The flow's records, oldest first; when there are more than one
    /// response may carry, the newest of them.
    pub records: Vec<Record>,
    /// True when `records` does not hold every record of the flow (by
    /// count or by bytes), or when the flow has more events or steps than
    /// its structure describes.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    #[serde(default)]
    pub truncated: bool,
    /// How many records the flow has in all (`summary.record_count`) and
    /// how many `records` holds.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    #[serde(default)]
    pub records_returned: usize,
}

/// `GET /api/v1/traces/{trace_id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TraceRecords {
    pub trace_id: TraceId,
    /// Oldest first.
    pub records: Vec<Record>,
    /// True when the trace has more records than one response may carry
    /// (by count or by bytes): `records` holds the oldest ones.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    #[serde(default)]
    pub truncated: bool,
}

/// `GET /api/v1/search`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SearchHits {
    pub query: String,
    /// How many records matched in all.
    pub total: usize,
    /// The best matches, newest first, at most the requested limit.
    pub hits: Vec<Record>,
    /// True when fewer hits than asked for were returned because they
    /// would have passed the response's byte budget.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    #[serde(default)]
    pub truncated: bool,
    /// Matches per time bucket, oldest first, when a time range was given.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub histogram: Vec<HistogramBucket>,
}

/// Records matching a search in one time bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HistogramBucket {
    pub start: Timestamp,
    pub count: u64,
}

/// `GET /api/v1/topology`: what publishes and consumes each event type, and
/// how each edge behaves, learned from the flows of a window and
/// overridden by the declared contracts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TopologyPage {
    /// The flows the topology was learned from, and their activity span.
    pub flows: u64,
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub window_start: Option<Timestamp>,
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub window_end: Option<Timestamp>,
    pub event_types: Vec<EventTypeTopology>,
}

/// One event type in the topology.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EventTypeTopology {
    pub event_type: String,
    /// Events of the type seen, and how many of them had a cause.
    pub events: u64,
    pub caused: u64,
    pub publishers: Vec<String>,
    pub destinations: Vec<String>,
    /// Every consumer seen or declared, sorted.
    pub consumers: Vec<EdgeTopology>,
}

/// An edge: one event type taken by one consumer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EdgeTopology {
    pub consumer: Consumer,
    /// Named in the contracts file.
    pub declared: bool,
    /// Expected to receive every event of the type (declared, or learned).
    pub expected: bool,
    /// Events received, and how many of them failed at least once.
    pub received: u64,
    pub failed: u64,
    pub error_ratio: f64,
    /// Events received per minute over the window.
    pub rate_per_min: f64,
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub queue_wait_p50_us: Option<u64>,
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub queue_wait_p99_us: Option<u64>,
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub processing_p50_us: Option<u64>,
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub processing_p99_us: Option<u64>,
    /// Open work on this edge is stuck past this long without activity.
    pub stuck_after_us: u64,
}

/// `GET /api/v1/services`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ServicesPage {
    pub services: Vec<ServiceTopology>,
}

/// One service as the topology sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ServiceTopology {
    pub service: String,
    /// Event types it publishes, sorted.
    pub publishes: Vec<String>,
    /// Event types it consumes, sorted.
    pub consumes: Vec<String>,
    /// Events it received, and how many of them failed at least once.
    pub received: u64,
    pub failed: u64,
    pub error_ratio: f64,
}

/// The error body of every API: `{"error":{"code":...,"message":...}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApiErrorBody {
    pub error: ApiError,
}

/// What went wrong: a stable code and a sentence for a person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApiError {
    /// Stable, machine-readable (`not_found`, `bad_request`, ...).
    pub code: String,
    pub message: String,
}
