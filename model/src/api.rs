//! The query API's JSON types, shared by the query server and its clients
//! (the tui, the demo, tests).

use serde::{Deserialize, Serialize};

use crate::ids::{EventId, TraceId};
use crate::record::{Record, Stage};
use crate::timestamp::Timestamp;

/// A flow's overall state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlowStatus {
    /// Every event that was published has been handled.
    Completed,
    /// Work is pending or being handled.
    InProgress,
    /// A step failed and nothing handled it afterwards.
    Failed,
    /// A failure was compensated.
    Compensated,
    /// Pending work and no activity for longer than the step's threshold.
    Stuck,
}

impl FlowStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            FlowStatus::Completed => "completed",
            FlowStatus::InProgress => "in_progress",
            FlowStatus::Failed => "failed",
            FlowStatus::Compensated => "compensated",
            FlowStatus::Stuck => "stuck",
        }
    }
}

/// One consumer's handling of one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    /// Published, not yet received.
    Pending,
    /// Received, not yet finished.
    InProgress,
    Handled,
    Failed,
    /// Failed, then handled on a retry.
    FailedAndRetried,
    DeadLettered,
    Compensated,
}

impl StepStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Pending => "pending",
            StepStatus::InProgress => "in_progress",
            StepStatus::Handled => "handled",
            StepStatus::Failed => "failed",
            StepStatus::FailedAndRetried => "failed_and_retried",
            StepStatus::DeadLettered => "dead_lettered",
            StepStatus::Compensated => "compensated",
        }
    }
}

/// A line in the flows list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlowSummary {
    /// The correlation id, or the trace id for flows without one.
    pub correlation_id: String,
    pub status: FlowStatus,
    /// The type of the first event published in the flow.
    pub root_event_type: Option<String>,
    pub started_at: Timestamp,
    pub last_activity_at: Timestamp,
    /// Last activity minus start.
    pub duration_us: u64,
    /// The services that wrote records in this flow, sorted.
    pub services: Vec<String>,
    pub event_count: usize,
    pub record_count: usize,
    pub failure_count: usize,
}

/// `GET /api/v1/flows`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlowsPage {
    /// Newest activity first.
    pub flows: Vec<FlowSummary>,
}

/// An event in the causal tree and what became of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlowEvent {
    pub event_id: EventId,
    pub event_type: Option<String>,
    /// The service that published it, if its `published` record was seen.
    pub publisher: Option<String>,
    pub published_at: Option<Timestamp>,
    pub destination: Option<String>,
    /// The consumers that received it, each with the events it published
    /// while handling it.
    pub consumers: Vec<ConsumerStep>,
}

/// One consumer (service and group) handling one event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConsumerStep {
    pub service: String,
    pub consumer_group: Option<String>,
    pub status: StepStatus,
    /// Every stage recorded for this step, in time order.
    pub stages: Vec<Stage>,
    pub received_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
    /// Received minus published.
    pub queue_wait_us: Option<u64>,
    /// Finished minus received (or the handler's own duration when given).
    pub processing_us: Option<u64>,
    /// The last error, `type: message`.
    pub error: Option<String>,
    /// Events this consumer published while handling the event.
    pub children: Vec<FlowEvent>,
}

/// `GET /api/v1/flows/{correlation_id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlowDetail {
    pub summary: FlowSummary,
    /// Events with no known cause in this flow, oldest first.
    pub roots: Vec<FlowEvent>,
    /// Every record of the flow, oldest first.
    pub records: Vec<Record>,
    /// True when the flow has more records than one response may carry
    /// (by count or by bytes): `records` holds the oldest ones.
    #[serde(default)]
    pub truncated: bool,
}

/// `GET /api/v1/traces/{trace_id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceRecords {
    pub trace_id: TraceId,
    /// Oldest first.
    pub records: Vec<Record>,
    /// True when the trace has more records than one response may carry
    /// (by count or by bytes): `records` holds the oldest ones.
    #[serde(default)]
    pub truncated: bool,
}

/// `GET /api/v1/search`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchHits {
    pub query: String,
    /// How many records matched in all.
    pub total: usize,
    /// The best matches, newest first, at most the requested limit.
    pub hits: Vec<Record>,
    /// True when fewer hits than asked for were returned because they
    /// would have passed the response's byte budget.
    #[serde(default)]
    pub truncated: bool,
}

/// The error body of every API: `{"error":{"code":...,"message":...}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiErrorBody {
    pub error: ApiError,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    /// Stable, machine-readable (`not_found`, `bad_request`, ...).
    pub code: String,
    pub message: String,
}
