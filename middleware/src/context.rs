//! The correlation context of one event, and the counters of incoming
//! contexts that had to be started afresh.

use std::sync::atomic::{AtomicU64, Ordering};

use causeway_model::{CorrelationId, EventId, SmallText, SpanId, TraceId};

/// Everything causeway carries with one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageContext {
    pub trace_id: TraceId,
    /// The span that published the event (on the producer side) or that is
    /// handling it (on the consumer side).
    pub span_id: SpanId,
    pub parent_span_id: Option<SpanId>,
    pub sampled: bool,
    /// W3C `tracestate`, passed through unchanged.
    pub tracestate: Option<String>,
    /// W3C `baggage`, passed through unchanged.
    pub baggage: Option<String>,
    pub correlation_id: CorrelationId,
    /// The event whose handling produced this one.
    pub causation_id: Option<EventId>,
    pub event_id: EventId,
    pub event_type: Option<SmallText>,
    /// The publishing service.
    pub source: Option<SmallText>,
    pub schema_version: Option<String>,
    /// Whether the trace came with the event (a `traceparent` was read, or
    /// the context was made by publishing) rather than being started afresh
    /// on receipt; only then does `span_id` name a real span of the sender.
    pub trace_continued: bool,
}

/// How many incoming messages carried no usable context, or a bad value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ContextStats {
    /// Messages whose context was missing or unusable: a fresh trace and
    /// correlation id were started.
    pub fresh_contexts: u64,
    /// Individual header values dropped as malformed, oversized or unsafe.
    pub invalid_values: u64,
}

static FRESH_CONTEXTS: AtomicU64 = AtomicU64::new(0);
static INVALID_VALUES: AtomicU64 = AtomicU64::new(0);

/// The counters since the process started.
pub fn context_stats() -> ContextStats {
    ContextStats {
        fresh_contexts: FRESH_CONTEXTS.load(Ordering::Relaxed),
        invalid_values: INVALID_VALUES.load(Ordering::Relaxed),
    }
}

pub(crate) fn count_fresh_context() {
    FRESH_CONTEXTS.fetch_add(1, Ordering::Relaxed);
}

pub(crate) fn count_invalid_value() {
    INVALID_VALUES.fetch_add(1, Ordering::Relaxed);
}
