//! [`CausewayPropagator`]: causeway's context as an OpenTelemetry
//! `TextMapPropagator`, so anything that propagates through OpenTelemetry
//! (the global propagator, other crates' instrumentation) carries the
//! correlation, causation and event ids along with `traceparent`.
//!
//! It reads and writes exactly what [`Propagation`] does; the
//! [`MessageContext`] travels in the OpenTelemetry `Context` as a value.

use std::sync::Arc;

use opentelemetry::Context;
use opentelemetry::propagation::text_map_propagator::FieldIter;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{
    SpanContext, SpanId as OtelSpanId, TraceContextExt, TraceFlags as OtelFlags,
    TraceId as OtelTraceId, TraceState,
};

use crate::context::MessageContext;
use crate::propagation::{ExtractorCarrier, Propagation};

/// causeway's headers through OpenTelemetry's propagation API.
#[derive(Debug, Clone)]
pub struct CausewayPropagator {
    propagation: Arc<Propagation>,
    fields: Vec<String>,
}

impl Default for CausewayPropagator {
    fn default() -> Self {
        Self::new(Propagation::default())
    }
}

impl CausewayPropagator {
    pub fn new(propagation: Propagation) -> Self {
        Self {
            propagation: Arc::new(propagation),
            fields: causeway_model::headers::ALL
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
        }
    }
}

/// The causeway context an OpenTelemetry context carries, if any.
pub fn message_context(cx: &Context) -> Option<&MessageContext> {
    cx.get::<MessageContext>()
}

fn span_context(context: &MessageContext) -> SpanContext {
    SpanContext::new(
        OtelTraceId::from_bytes(context.trace_id.to_bytes()),
        OtelSpanId::from_bytes(context.span_id.to_bytes()),
        if context.sampled {
            OtelFlags::SAMPLED
        } else {
            OtelFlags::default()
        },
        true,
        context
            .tracestate
            .as_deref()
            .and_then(|s| s.parse::<TraceState>().ok())
            .unwrap_or_default(),
    )
}

impl TextMapPropagator for CausewayPropagator {
    /// Writes the context's causeway ids, with the context's current span
    /// as the parent of the next hop. A context without causeway ids gets
    /// `traceparent` (and `tracestate`) only, as the W3C propagator would.
    fn inject_context(&self, cx: &Context, injector: &mut dyn Injector) {
        let span = cx.span();
        let current = span.span_context();
        let mut context = match message_context(cx) {
            Some(context) => context.clone(),
            None if current.is_valid() => {
                let tp = causeway_model::TraceParent {
                    trace_id: causeway_model::TraceId::from_bytes(current.trace_id().to_bytes())
                        .unwrap_or_else(causeway_model::TraceId::random),
                    parent_id: causeway_model::SpanId::from_bytes(current.span_id().to_bytes())
                        .unwrap_or_else(causeway_model::SpanId::random),
                    flags: causeway_model::TraceFlags(current.trace_flags().to_u8()),
                };
                injector.set(causeway_model::headers::TRACEPARENT, tp.encode());
                let state = current.trace_state().header();
                if !state.is_empty() {
                    injector.set(causeway_model::headers::TRACESTATE, state);
                }
                return;
            }
            None => return,
        };
        if current.is_valid()
            && let (Some(trace), Some(span)) = (
                causeway_model::TraceId::from_bytes(current.trace_id().to_bytes()),
                causeway_model::SpanId::from_bytes(current.span_id().to_bytes()),
            )
        {
            context.trace_id = trace;
            context.span_id = span;
            context.sampled = current.is_sampled();
        }
        self.propagation
            .inject(&context, &mut crate::InjectorCarrier(injector));
    }

    /// Reads causeway's headers (and every foreign spelling); the result
    /// carries the remote span and the [`MessageContext`].
    fn extract_with_context(&self, cx: &Context, extractor: &dyn Extractor) -> Context {
        let context = self.propagation.extract(&ExtractorCarrier(extractor));
        let cx = if context.trace_continued {
            cx.with_remote_span_context(span_context(&context))
        } else {
            cx.clone()
        };
        cx.with_value(context)
    }

    fn fields(&self) -> FieldIter<'_> {
        FieldIter::new(&self.fields)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use opentelemetry_sdk::propagation::TraceContextPropagator;

    use super::*;
    use crate::{Publish, Service};

    #[test]
    fn the_whole_context_round_trips_through_the_opentelemetry_api() {
        let mut headers = HashMap::new();
        let sent = Service::new("order").publish(
            None,
            Publish::new("OrderPlaced", "orders"),
            &mut headers,
        );
        let propagator = CausewayPropagator::default();
        let cx = propagator.extract(&headers);
        assert_eq!(message_context(&cx), Some(&sent));
        assert_eq!(
            cx.span().span_context().trace_id().to_bytes(),
            sent.trace_id.to_bytes()
        );
        let mut again = HashMap::new();
        propagator.inject_context(&cx, &mut again);
        assert_eq!(again, headers);
    }

    #[test]
    fn it_interoperates_with_the_w3c_propagator() {
        // W3C writes, causeway reads.
        let w3c = TraceContextPropagator::new();
        let remote = SpanContext::new(
            OtelTraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
            OtelSpanId::from_hex("00f067aa0ba902b7").unwrap(),
            OtelFlags::SAMPLED,
            true,
            TraceState::default(),
        );
        let mut headers = HashMap::new();
        w3c.inject_context(
            &Context::new().with_remote_span_context(remote.clone()),
            &mut headers,
        );
        let cx = CausewayPropagator::default().extract(&headers);
        assert_eq!(cx.span().span_context().trace_id(), remote.trace_id());
        assert_eq!(cx.span().span_context().span_id(), remote.span_id());

        // causeway writes, W3C reads.
        let mut headers = HashMap::new();
        CausewayPropagator::default().inject_context(&cx, &mut headers);
        let back = w3c.extract(&headers);
        assert_eq!(back.span().span_context().trace_id(), remote.trace_id());
        assert!(headers.contains_key("correlation-id"));
    }
}
