//! The bridge to OpenTelemetry spans (feature `otel`): parents a causeway
//! span on a remote context through tracing-opentelemetry and reads back
//! the ids the OpenTelemetry layer gave it, so records and spans agree.
//!
//! Without the feature, or without an OpenTelemetry layer in the
//! subscriber, [`bind`] returns `None` and causeway makes its own ids.

use causeway_model::{SpanId, TraceId};

use crate::context::MessageContext;

/// Parents `span` on `parent` (and, for consumers, links the creation
/// context), then returns the span's OpenTelemetry ids if a layer records it.
#[cfg(feature = "otel")]
pub(crate) fn bind(
    span: &tracing::Span,
    parent: Option<&MessageContext>,
    link: bool,
) -> Option<(TraceId, SpanId)> {
    use opentelemetry::trace::{
        SpanContext, SpanId as OtelSpanId, TraceContextExt, TraceFlags, TraceId as OtelTraceId,
        TraceState,
    };
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    if let Some(parent) = parent {
        let remote = SpanContext::new(
            OtelTraceId::from_bytes(parent.trace_id.to_bytes()),
            OtelSpanId::from_bytes(parent.span_id.to_bytes()),
            if parent.sampled {
                TraceFlags::SAMPLED
            } else {
                TraceFlags::default()
            },
            true,
            parent
                .tracestate
                .as_deref()
                .and_then(|s| s.parse::<TraceState>().ok())
                .unwrap_or_default(),
        );
        if link {
            span.add_link(remote.clone());
        }
        // Fails only when no OpenTelemetry layer is installed: then there is
        // no span to parent, and the ids below come back invalid.
        let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
    }
    let cx = span.context();
    let span_context = cx.span().span_context().clone();
    if !span_context.is_valid() {
        return None;
    }
    Some((
        TraceId::from_bytes(span_context.trace_id().to_bytes())?,
        SpanId::from_bytes(span_context.span_id().to_bytes())?,
    ))
}

#[cfg(not(feature = "otel"))]
pub(crate) fn bind(
    _span: &tracing::Span,
    _parent: Option<&MessageContext>,
    _link: bool,
) -> Option<(TraceId, SpanId)> {
    None
}
