//! Lifecycle records without boilerplate: publishing and handling through a
//! [`Service`] writes `published`, `received`, `handled`/`failed`, and, on
//! request, `retried`, `dead_lettered` and `compensated`.
//!
//! Records are `tracing` events on [`LIFECYCLE_TARGET`] carrying every
//! record field; the [`RecordLayer`](crate::RecordLayer) turns them into
//! JSON lines. Nothing here can fail a user's publish or handler.

use std::fmt::Display;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use causeway_model::{CorrelationId, EventId, SpanId, Stage, TraceId};
use tracing::Instrument;
use tracing::field::Empty;

use crate::context::{ContextStats, MessageContext};
use crate::otel;
use crate::propagation::{Carrier, CarrierMut, Propagation};
use crate::{HANDLE_SPAN, LIFECYCLE_TARGET, PUBLISH_SPAN};

/// A service that publishes and handles events.
#[derive(Debug, Clone)]
pub struct Service {
    name: Arc<str>,
    propagation: Arc<Propagation>,
}

/// What is being published.
#[derive(Debug, Clone)]
pub struct Publish<'a> {
    pub event_type: &'a str,
    /// Topic, queue, exchange or subject.
    pub destination: &'a str,
    /// OpenTelemetry `messaging.system`.
    pub system: &'a str,
    pub schema_version: Option<&'a str>,
    /// Starts the flow under this correlation id (only without a parent).
    pub correlation_id: Option<CorrelationId>,
}

/// `messaging.system` of the in-process bus, the default of [`Publish`] and
/// [`Consume`]: a transport module replaces it with its own system, and
/// keeps any other the caller chose.
pub(crate) const DEFAULT_SYSTEM: &str = "inproc";

impl<'a> Publish<'a> {
    /// An event on the in-process bus (`messaging.system` = `inproc`).
    pub fn new(event_type: &'a str, destination: &'a str) -> Self {
        Self {
            event_type,
            destination,
            system: DEFAULT_SYSTEM,
            schema_version: None,
            correlation_id: None,
        }
    }

    /// Sets `messaging.system` (`rabbitmq`, `nats`, `kafka`, ...). The
    /// transport modules set their own unless the caller chose one here.
    pub fn system(mut self, system: &'a str) -> Self {
        self.system = system;
        self
    }

    /// `messaging.system` = `system`, unless the caller already chose one.
    pub(crate) fn system_or(self, system: &'a str) -> Self {
        if self.system == DEFAULT_SYSTEM {
            self.system(system)
        } else {
            self
        }
    }

    /// Starts the flow under a business id (`order-1234`) instead of a
    /// generated one. Ignored when publishing inside a handler.
    pub fn correlation_id(mut self, id: CorrelationId) -> Self {
        self.correlation_id = Some(id);
        self
    }
}

/// Where an event is being consumed from.
#[derive(Debug, Clone)]
pub struct Consume<'a> {
    pub destination: &'a str,
    pub consumer_group: &'a str,
    pub system: &'a str,
    /// The broker delivers this message again (after a nack, an expired ack
    /// wait, a crashed consumer); the retry attempt, counting from 1.
    pub redelivery: Option<u32>,
}

impl<'a> Consume<'a> {
    /// Consuming from the in-process bus.
    pub fn new(destination: &'a str, consumer_group: &'a str) -> Self {
        Self {
            destination,
            consumer_group,
            system: DEFAULT_SYSTEM,
            redelivery: None,
        }
    }

    pub fn system(mut self, system: &'a str) -> Self {
        self.system = system;
        self
    }

    /// Marks the message as delivered again by the broker: handling it
    /// writes `retried` (with `attempt`) right after `received`.
    pub fn redelivery(mut self, attempt: Option<u32>) -> Self {
        self.redelivery = attempt;
        self
    }
}

/// An event handler: what [`Service::handle`] and each transport module's
/// `handle` run. Every `FnOnce(Handling) -> impl Future<Output =
/// Result<T, E>>` is one (a closure `|handling| async move { ... }`, an
/// `async fn(Handling) -> Result<T, E>`); the trait only spells that bound
/// once, so no signature has to repeat it.
pub trait Handler<T, E>: FnOnce(Handling) -> <Self as Handler<T, E>>::Future {
    /// The future the handler returns.
    type Future: Future<Output = Result<T, E>>;
}

impl<F, Fut, T, E> Handler<T, E> for F
where
    F: FnOnce(Handling) -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    type Future = Fut;
}

/// The event being handled, given to the handler.
#[derive(Debug, Clone)]
pub struct Handling {
    service: Service,
    context: MessageContext,
    span: tracing::Span,
    system: String,
    destination: String,
    consumer_group: String,
}

fn short_type_name<E>() -> &'static str {
    let full = std::any::type_name::<E>();
    let base = full.split('<').next().unwrap_or(full);
    base.rsplit("::").next().unwrap_or(base)
}

/// Emits one lifecycle record. Optional fields are passed as `Option<&str>`
/// and skipped when `None` by the layer.
#[allow(clippy::too_many_arguments)] // one flat record, one place that writes it
fn lifecycle(
    service: &str,
    stage: Stage,
    context: &MessageContext,
    system: &str,
    destination: &str,
    consumer_group: Option<&str>,
    duration_us: Option<u64>,
    error: Option<(&str, &str)>,
    message: &str,
) {
    let level_is_error = matches!(stage, Stage::Failed | Stage::DeadLettered);
    macro_rules! emit {
        ($level:expr) => {
            tracing::event!(
                target: LIFECYCLE_TARGET,
                $level,
                stage = stage.as_str(),
                service,
                trace_id = %context.trace_id,
                span_id = %context.span_id,
                parent_span_id = context.parent_span_id.map(|s| s.to_string()),
                correlation_id = context.correlation_id.as_str(),
                causation_id = context.causation_id.as_ref().map(EventId::as_str),
                event_id = context.event_id.as_str(),
                event_type = context.event_type.as_deref(),
                messaging_system = system,
                destination,
                consumer_group,
                duration_us,
                error_type = error.map(|e| e.0),
                error_message = error.map(|e| e.1),
                "{message}"
            )
        };
    }
    if level_is_error {
        emit!(tracing::Level::ERROR);
    } else {
        emit!(tracing::Level::INFO);
    }
}

impl Service {
    /// A service that reads every known header spelling and writes
    /// causeway's own (see [`Propagation`]), with counters of its own
    /// ([`Service::context_stats`]).
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: Arc::from(name.into()),
            propagation: Arc::new(Propagation::default()),
        }
    }

    /// Uses `propagation` to write and read headers, and counts in it.
    pub fn with_propagation(mut self, propagation: Propagation) -> Self {
        self.propagation = Arc::new(propagation);
        self
    }

    /// What this service (and its clones, and the [`Handling`]s it gave
    /// out) counted while reading and writing context: contexts started
    /// afresh, values refused. See [`Propagation::stats`].
    pub fn context_stats(&self) -> ContextStats {
        self.propagation.stats()
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Publishes a new event: builds its context (a child of `parent` when
    /// publishing while handling, else a new flow), injects it into
    /// `carrier` and writes the `published` record, inside an OpenTelemetry
    /// producer span (`send <destination>`) whose ids the context carries.
    pub fn publish(
        &self,
        parent: Option<&MessageContext>,
        event: Publish<'_>,
        carrier: &mut dyn CarrierMut,
    ) -> MessageContext {
        let correlation_id = match parent {
            Some(p) => p.correlation_id.clone(),
            None => event.correlation_id.unwrap_or_else(CorrelationId::generate),
        };
        let event_id = EventId::generate();
        let span = tracing::info_span!(
            target: LIFECYCLE_TARGET,
            PUBLISH_SPAN,
            otel.name = %format_args!("send {}", event.destination),
            otel.kind = "producer",
            messaging.system = event.system,
            messaging.operation.type = "send",
            messaging.destination.name = event.destination,
            messaging.message.id = event_id.as_str(),
            messaging.message.conversation_id = correlation_id.as_str(),
        );
        // With an OpenTelemetry layer the producer span's ids are the
        // event's; without one, the ids are made here.
        let (trace_id, span_id) = otel::bind(&span, parent, false).unwrap_or_else(|| {
            (
                parent.map_or_else(TraceId::random, |p| p.trace_id),
                SpanId::random(),
            )
        });
        let context = MessageContext {
            trace_id,
            span_id,
            parent_span_id: parent.map(|p| p.span_id),
            sampled: parent.is_none_or(|p| p.sampled),
            tracestate: parent.and_then(|p| p.tracestate.clone()),
            baggage: parent.and_then(|p| p.baggage.clone()),
            correlation_id,
            causation_id: parent.map(|p| p.event_id.clone()),
            event_id,
            event_type: Some(event.event_type.into()),
            source: Some(self.name.as_ref().into()),
            schema_version: event.schema_version.map(str::to_owned),
            trace_continued: true,
        };
        self.propagation.inject(&context, carrier);
        span.in_scope(|| {
            lifecycle(
                &self.name,
                Stage::Published,
                &context,
                event.system,
                event.destination,
                None,
                None,
                None,
                &format!("published {}", event.event_type),
            )
        });
        context
    }

    /// Handles one incoming event: extracts its context, writes `received`,
    /// runs `handler` inside the `causeway.handle` span (an OpenTelemetry
    /// consumer span, `process <destination>`, child of and linked to the
    /// producer's span, so the handler's own spans nest under it and its
    /// tracing events carry the flow's ids), then writes `handled` with the
    /// duration or `failed` with the error. The handler's result is
    /// returned as is.
    ///
    /// The context is read before the returned future starts, so the future
    /// does not borrow the carrier and is `Send` whenever the handler is.
    pub fn handle<H, T, E>(
        &self,
        carrier: &dyn Carrier,
        consume: Consume<'_>,
        handler: H,
    ) -> impl Future<Output = Result<T, E>> + use<H, T, E>
    where
        H: Handler<T, E>,
        E: Display,
    {
        let incoming = self.propagation.extract(carrier);
        let span = tracing::info_span!(
            target: LIFECYCLE_TARGET,
            HANDLE_SPAN,
            otel.name = %format_args!("process {}", consume.destination),
            otel.kind = "consumer",
            otel.status_code = Empty,
            otel.status_message = Empty,
            messaging.system = consume.system,
            messaging.operation.type = "process",
            messaging.destination.name = consume.destination,
            messaging.consumer.group.name = consume.consumer_group,
            messaging.message.id = incoming.event_id.as_str(),
            messaging.message.conversation_id = incoming.correlation_id.as_str(),
            causeway.service = self.name(),
            causeway.trace_id = Empty,
            causeway.span_id = Empty,
            causeway.parent_span_id = Empty,
            causeway.causation_id = incoming.causation_id.as_ref().map(EventId::as_str),
            causeway.event_type = incoming.event_type.as_deref(),
        );
        // A producer span is a parent only if the sender really named one.
        let remote = incoming.trace_continued.then_some(&incoming);
        let (trace_id, span_id) = otel::bind(&span, remote, true)
            .unwrap_or_else(|| (incoming.trace_id, SpanId::random()));
        let parent_span_id = remote.map(|p| p.span_id);
        span.record("causeway.trace_id", tracing::field::display(trace_id));
        span.record("causeway.span_id", tracing::field::display(span_id));
        if let Some(parent) = parent_span_id {
            span.record("causeway.parent_span_id", tracing::field::display(parent));
        }
        let handling = Handling {
            service: self.clone(),
            context: MessageContext {
                trace_id,
                span_id,
                parent_span_id,
                ..incoming
            },
            span,
            system: consume.system.to_owned(),
            destination: consume.destination.to_owned(),
            consumer_group: consume.consumer_group.to_owned(),
        };
        let redelivery = consume.redelivery;
        async move {
            let span = handling.span.clone();
            let event_type = handling.context.event_type.clone().unwrap_or_default();
            span.in_scope(|| {
                handling.record(
                    Stage::Received,
                    None,
                    None,
                    &format!("received {event_type}"),
                )
            });
            if let Some(attempt) = redelivery {
                handling.retried(attempt);
            }
            let started = Instant::now();
            let result = handler(handling.clone()).instrument(span.clone()).await;
            let duration_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
            span.in_scope(|| match &result {
                Ok(_) => handling.record(
                    Stage::Handled,
                    Some(duration_us),
                    None,
                    &format!("handled {event_type}"),
                ),
                Err(error) => {
                    let message = error.to_string();
                    span.record("otel.status_code", "error");
                    span.record("otel.status_message", message.as_str());
                    handling.record(
                        Stage::Failed,
                        Some(duration_us),
                        Some((short_type_name::<E>(), &message)),
                        &format!("failed {event_type}: {message}"),
                    );
                }
            });
            result
        }
    }
}

impl Handling {
    /// The context of the event being handled (`span_id` is this handler's
    /// span, `event_id` the handled event's id).
    pub fn context(&self) -> &MessageContext {
        &self.context
    }

    /// The service handling the event.
    pub fn service(&self) -> &Service {
        &self.service
    }

    /// The consumer span the handler runs in.
    pub fn span(&self) -> &tracing::Span {
        &self.span
    }

    /// Publishes an event caused by the one being handled: same
    /// correlation id and trace, causation id = the handled event.
    pub fn publish(&self, event: Publish<'_>, carrier: &mut dyn CarrierMut) -> MessageContext {
        self.service.publish(Some(&self.context), event, carrier)
    }

    /// Records that this event is being handled again after a failure.
    pub fn retried(&self, attempt: u32) {
        self.record(
            Stage::Retried,
            None,
            None,
            &format!("retry attempt {attempt}"),
        );
    }

    /// Records that this event was moved to a dead letter queue.
    pub fn dead_lettered(&self, reason: &str) {
        self.record(
            Stage::DeadLettered,
            None,
            Some(("DeadLettered", reason)),
            &format!("dead-lettered: {reason}"),
        );
    }

    /// Records a compensating action for this flow.
    pub fn compensated(&self, action: &str) {
        self.record(
            Stage::Compensated,
            None,
            None,
            &format!("compensated: {action}"),
        );
    }

    fn record(
        &self,
        stage: Stage,
        duration_us: Option<u64>,
        error: Option<(&str, &str)>,
        message: &str,
    ) {
        self.span.in_scope(|| {
            lifecycle(
                self.service.name(),
                stage,
                &self.context,
                &self.system,
                &self.destination,
                Some(&self.consumer_group),
                duration_us,
                error,
                message,
            )
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_system_the_caller_chose_is_kept_over_a_transports_default() {
        assert_eq!(
            Publish::new("a", "b").system_or("rabbitmq").system,
            "rabbitmq"
        );
        assert_eq!(
            Publish::new("a", "b")
                .system("activemq")
                .system_or("rabbitmq")
                .system,
            "activemq"
        );
    }
}
