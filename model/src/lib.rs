//! The shared vocabulary of causeway: ids, the W3C trace context, the
//! record, the header names, the wire batch and the query API types.
//!
//! This crate does no I/O and knows nothing of tokio, HTTP, brokers or
//! tantivy. Every other crate speaks through these types, so they change
//! slowly and carry versions where they cross a process boundary
//! ([`wire::BATCH_VERSION`]).

mod api;
mod digest;
mod field;
mod ids;
#[cfg(feature = "openapi")]
mod openapi;
mod record;
mod text;
mod timestamp;
mod traceparent;

pub mod headers;
pub mod lenient;
pub mod wire;

pub use api::{
    Anomaly, AnomalyKind, ApiError, ApiErrorBody, ClockCorrection, Consumer, ConsumerStep,
    EdgeTopology, EventTypeTopology, FlowDetail, FlowEvent, FlowStatus, FlowSummary, FlowsPage,
    HistogramBucket, RecordRef, SearchHits, ServiceTopology, ServicesPage, StepStatus,
    TopologyPage, TraceRecords,
};
pub use digest::{
    DigestFacet, EventDigest, FlowDigest, MAX_ERROR_CHARS, MAX_EVENTS, MAX_NAMES, MAX_STAMPS,
    MAX_STEPS, PublishFacts, SeenFacts, Stamps, StepDigest, StepKey, lifecycle_rank,
};
pub use field::{FieldKind, FieldValue, NestedField, RecordField};
pub use ids::{CorrelationId, EventId, IdError, MAX_ID_LEN, SmallText, SpanId, SpanLink, TraceId};
pub use record::{Level, Malformed, Record, Stage, UnknownStage};
pub use text::{
    MAX_HEADER_VALUE_LEN, char_prefix, clean_header_value, has_control_chars, human_duration,
    strip_control, trim_blanks,
};
pub use timestamp::{Timestamp, TimestampError};
pub use traceparent::{TraceFlags, TraceParent, TraceParentError};
