//! Writing a [`MessageContext`] into headers and reading it back.
//!
//! Works on any OpenTelemetry `Injector`/`Extractor`, so each transport only
//! needs a carrier. Extraction never fails: what is missing or malformed is
//! counted and replaced; the returned context is always usable.

use causeway_model::{
    CorrelationId, EventId, SpanId, TraceFlags, TraceId, TraceParent, clean_header_value, headers,
};
use opentelemetry::propagation::{Extractor, Injector};

use crate::context::{MessageContext, count_fresh_context, count_invalid_value};

/// Foreign spellings of the correlation id, tried in order after ours.
const CORRELATION_FALLBACKS: [&str; 2] = ["x-correlation-id", "x-request-id"];

fn set_clean(carrier: &mut dyn Injector, key: &str, value: &str) {
    match clean_header_value(value) {
        Some(value) => carrier.set(key, value.to_owned()),
        None => count_invalid_value(),
    }
}

/// Writes the context into `carrier` under causeway's header names.
pub fn inject(context: &MessageContext, carrier: &mut dyn Injector) {
    let traceparent = TraceParent {
        trace_id: context.trace_id,
        parent_id: context.span_id,
        flags: if context.sampled {
            TraceFlags::SAMPLED
        } else {
            TraceFlags::default()
        },
    };
    carrier.set(headers::TRACEPARENT, traceparent.to_string());
    if let Some(state) = &context.tracestate {
        set_clean(carrier, headers::TRACESTATE, state);
    }
    if let Some(baggage) = &context.baggage {
        set_clean(carrier, headers::BAGGAGE, baggage);
    }
    // Ids were validated on creation: no control characters, bounded length.
    carrier.set(headers::CORRELATION_ID, context.correlation_id.to_string());
    carrier.set(headers::EVENT_ID, context.event_id.to_string());
    if let Some(cause) = &context.causation_id {
        carrier.set(headers::CAUSATION_ID, cause.to_string());
    }
    if let Some(event_type) = &context.event_type {
        set_clean(carrier, headers::EVENT_TYPE, event_type);
    }
    if let Some(source) = &context.source {
        set_clean(carrier, headers::EVENT_SOURCE, source);
    }
    if let Some(version) = &context.schema_version {
        set_clean(carrier, headers::SCHEMA_VERSION, version);
    }
}

/// A header value that is present and clean, counting the unclean.
fn get_clean<'a>(carrier: &'a dyn Extractor, key: &str) -> Option<&'a str> {
    let raw = carrier.get(key)?;
    let clean = clean_header_value(raw);
    if clean.is_none() {
        count_invalid_value();
    }
    clean
}

fn get_parsed<T, E>(
    carrier: &dyn Extractor,
    key: &str,
    parse: impl Fn(&str) -> Result<T, E>,
) -> Option<T> {
    let value = get_clean(carrier, key)?;
    match parse(value) {
        Ok(parsed) => Some(parsed),
        Err(_) => {
            count_invalid_value();
            None
        }
    }
}

/// Reads the context of an incoming event. The returned context describes
/// the event as its publisher sent it: `span_id` is the producer's span.
/// Missing or malformed parts are replaced (a fresh trace, a fresh
/// correlation id, a generated event id) and counted.
pub fn extract(carrier: &dyn Extractor) -> MessageContext {
    let traceparent = get_parsed(carrier, headers::TRACEPARENT, str::parse::<TraceParent>);
    let correlation = std::iter::once(headers::CORRELATION_ID)
        .chain(CORRELATION_FALLBACKS)
        .find_map(|key| get_parsed(carrier, key, str::parse::<CorrelationId>));
    if traceparent.is_none() && correlation.is_none() {
        count_fresh_context();
    }
    let (trace_id, span_id, sampled) = match traceparent {
        Some(tp) => (tp.trace_id, tp.parent_id, tp.flags.is_sampled()),
        None => (TraceId::random(), SpanId::random(), true),
    };
    // A message from a plain OpenTelemetry service has a trace but no
    // correlation id: its flow is its trace, as in reconstruction.
    let correlation_id = correlation.unwrap_or_else(|| {
        traceparent
            .and_then(|tp| CorrelationId::new(tp.trace_id.to_string()).ok())
            .unwrap_or_else(CorrelationId::generate)
    });
    MessageContext {
        trace_id,
        span_id,
        parent_span_id: None,
        sampled,
        tracestate: get_clean(carrier, headers::TRACESTATE).map(str::to_owned),
        baggage: get_clean(carrier, headers::BAGGAGE).map(str::to_owned),
        correlation_id,
        causation_id: get_parsed(carrier, headers::CAUSATION_ID, str::parse::<EventId>),
        event_id: get_parsed(carrier, headers::EVENT_ID, str::parse::<EventId>)
            .unwrap_or_else(EventId::generate),
        event_type: get_clean(carrier, headers::EVENT_TYPE).map(str::to_owned),
        source: get_clean(carrier, headers::EVENT_SOURCE).map(str::to_owned),
        schema_version: get_clean(carrier, headers::SCHEMA_VERSION).map(str::to_owned),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::context::context_stats;

    fn context() -> MessageContext {
        MessageContext {
            trace_id: TraceId::random(),
            span_id: SpanId::random(),
            parent_span_id: None,
            sampled: true,
            tracestate: Some("vendor=abc".into()),
            baggage: Some("tenant=acme".into()),
            correlation_id: CorrelationId::generate(),
            causation_id: Some(EventId::generate()),
            event_id: EventId::generate(),
            event_type: Some("OrderPlaced".into()),
            source: Some("order".into()),
            schema_version: Some("2".into()),
        }
    }

    #[test]
    fn inject_then_extract_gives_the_same_context() {
        let sent = context();
        let mut headers = HashMap::new();
        inject(&sent, &mut headers);
        assert_eq!(extract(&headers), sent);
    }

    #[test]
    fn a_foreign_opentelemetry_traceparent_continues_its_trace() {
        let mut headers = HashMap::new();
        headers.insert(
            "traceparent".to_owned(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned(),
        );
        let got = extract(&headers);
        assert_eq!(got.trace_id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(got.span_id.to_string(), "00f067aa0ba902b7");
        assert_eq!(
            got.correlation_id.as_str(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
    }

    #[test]
    fn x_request_id_is_taken_as_the_correlation_id() {
        let headers = HashMap::from([("x-request-id".to_owned(), "req-42".to_owned())]);
        assert_eq!(extract(&headers).correlation_id.as_str(), "req-42");
    }

    #[test]
    fn malformed_values_start_fresh_and_are_counted() {
        let before = context_stats();
        let headers = HashMap::from([
            ("traceparent".to_owned(), "00-nonsense".to_owned()),
            ("correlation-id".to_owned(), "a\r\nSet-Cookie: x".to_owned()),
            ("event-id".to_owned(), "x".repeat(10_000)),
        ]);
        let got = extract(&headers);
        assert_ne!(got.correlation_id.as_str(), "a");
        let after = context_stats();
        assert!(after.fresh_contexts > before.fresh_contexts);
        assert!(after.invalid_values >= before.invalid_values + 3);
    }

    #[test]
    fn unsafe_values_are_never_written_into_headers() {
        let mut sent = context();
        sent.event_type = Some("Evil\r\nX-Injected: 1".into());
        let mut headers = HashMap::new();
        inject(&sent, &mut headers);
        assert!(!headers.contains_key("event-type"));
        assert!(headers.values().all(|v| !v.contains('\n')));
    }
}
