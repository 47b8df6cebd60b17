//! The correlation context of one event, and the counters of incoming
//! contexts that had to be started afresh or held a bad value: per
//! [`Propagation`](crate::Propagation), and their process-wide sum.
//! Counting must never fail or block a message: the counters are relaxed
//! atomics.

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
///
/// Each [`Propagation`](crate::Propagation) counts its own (read them with
/// [`Propagation::stats`](crate::Propagation::stats) or
/// [`Service::context_stats`](crate::Service::context_stats));
/// [`context_stats`] is their sum over the whole process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ContextStats {
    /// Messages whose context was missing or unusable: a fresh trace and
    /// correlation id were started.
    pub fresh_contexts: u64,
    /// Individual header values dropped as malformed, oversized or unsafe.
    pub invalid_values: u64,
}

/// The counters of one [`Propagation`](crate::Propagation). Each count is
/// also added to the process-wide sum read by [`context_stats`].
#[derive(Debug, Default)]
pub(crate) struct ContextCounters {
    fresh_contexts: AtomicU64,
    invalid_values: AtomicU64,
}

impl ContextCounters {
    pub(crate) fn count_fresh_context(&self) {
        self.fresh_contexts.fetch_add(1, Ordering::Relaxed);
        FRESH_CONTEXTS.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_invalid_value(&self) {
        self.invalid_values.fetch_add(1, Ordering::Relaxed);
        INVALID_VALUES.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn stats(&self) -> ContextStats {
        ContextStats {
            fresh_contexts: self.fresh_contexts.load(Ordering::Relaxed),
            invalid_values: self.invalid_values.load(Ordering::Relaxed),
        }
    }
}

static FRESH_CONTEXTS: AtomicU64 = AtomicU64::new(0);
static INVALID_VALUES: AtomicU64 = AtomicU64::new(0);

/// The sum of every [`Propagation`](crate::Propagation)'s counters since
/// the process started: one figure for a metrics endpoint.
///
/// Every service, propagator and test in the process adds to it, so it
/// cannot tell whose messages were bad: read one service's counters with
/// [`Service::context_stats`](crate::Service::context_stats) (or
/// [`Propagation::stats`](crate::Propagation::stats)) instead.
pub fn context_stats() -> ContextStats {
    ContextStats {
        fresh_contexts: FRESH_CONTEXTS.load(Ordering::Relaxed),
        invalid_values: INVALID_VALUES.load(Ordering::Relaxed),
    }
}
