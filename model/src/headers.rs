//! Header names causeway writes and reads on every transport.
//!
//! Names are lowercase so they survive HTTP/2 and case-folding brokers
//! unchanged. The W3C names are shared with every OpenTelemetry SDK.

/// W3C Trace Context: trace id, parent span id, flags.
pub const TRACEPARENT: &str = "traceparent";
/// W3C Trace Context: vendor-specific state, passed through unchanged.
pub const TRACESTATE: &str = "tracestate";
/// W3C Baggage.
pub const BAGGAGE: &str = "baggage";
/// The business transaction this event belongs to.
pub const CORRELATION_ID: &str = "correlation-id";
/// The event whose handling produced this event.
pub const CAUSATION_ID: &str = "causation-id";
/// This event's own id.
pub const EVENT_ID: &str = "event-id";
/// This event's type (`OrderPlaced`).
pub const EVENT_TYPE: &str = "event-type";
/// The service that published this event.
pub const EVENT_SOURCE: &str = "event-source";
/// The schema or contract version of the payload, if the publisher set one.
pub const SCHEMA_VERSION: &str = "event-schema-version";

/// Every header causeway itself writes.
pub const ALL: [&str; 9] = [
    TRACEPARENT,
    TRACESTATE,
    BAGGAGE,
    CORRELATION_ID,
    CAUSATION_ID,
    EVENT_ID,
    EVENT_TYPE,
    EVENT_SOURCE,
    SCHEMA_VERSION,
];
