//! [`RecordLayer`]: a tracing-subscriber layer that writes causeway records.
//!
//! Lifecycle events (target [`LIFECYCLE_TARGET`]) become lifecycle records
//! field for field. Every other event becomes a `log` record; inside a
//! `causeway.handle` span it is stamped with that span's flow ids (trace,
//! span, correlation, causation, event), so a handler's ordinary logs join
//! its flow. The layer never panics and never blocks on anything but the
//! sink's own lock.

use std::fmt;

use causeway_model::{Level, Record, Stage, Timestamp};
use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record as Record_};
use tracing::{Event, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

use crate::sink::RecordSink;
use crate::{HANDLE_SPAN, LIFECYCLE_TARGET};

/// Writes records for lifecycle and ordinary events to a [`RecordSink`].
#[derive(Debug)]
pub struct RecordLayer<S> {
    sink: S,
    service: String,
    instance: Option<String>,
}

impl<S: RecordSink> RecordLayer<S> {
    /// `service` names records written outside any handler span.
    pub fn new(service: impl Into<String>, sink: S) -> Self {
        Self {
            sink,
            service: service.into(),
            instance: None,
        }
    }

    /// Sets `instance` (host, pod) on every record.
    pub fn with_instance(mut self, instance: impl Into<String>) -> Self {
        self.instance = Some(instance.into());
        self
    }
}

/// The flow fields of a `causeway.handle` span, kept in its extensions.
#[derive(Debug, Default)]
struct SpanFlow(Map<String, Value>);

#[derive(Default)]
struct Fields {
    message: Option<String>,
    values: Map<String, Value>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = Some(value.to_owned());
        } else {
            self.values
                .insert(field.name().to_owned(), Value::from(value));
        }
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.values
            .insert(field.name().to_owned(), Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.values
            .insert(field.name().to_owned(), Value::from(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.values
            .insert(field.name().to_owned(), Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.values
            .insert(field.name().to_owned(), Value::from(value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.values
            .insert(field.name().to_owned(), Value::from(value.to_string()));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            self.message = Some(format!("{value:?}"));
        } else {
            self.values
                .insert(field.name().to_owned(), Value::from(format!("{value:?}")));
        }
    }
}

/// The handler span's fields under the record's names: OpenTelemetry's
/// messaging attributes and causeway's own `causeway.*` fields.
fn record_names(fields: Map<String, Value>) -> Map<String, Value> {
    fields
        .into_iter()
        .filter_map(|(name, value)| {
            let name = match name.as_str() {
                "messaging.system" => "messaging_system",
                "messaging.destination.name" => "destination",
                "messaging.consumer.group.name" => "consumer_group",
                "messaging.message.id" => "event_id",
                "messaging.message.conversation_id" => "correlation_id",
                "causeway.service" => "service",
                "causeway.trace_id" => "trace_id",
                "causeway.span_id" => "span_id",
                "causeway.parent_span_id" => "parent_span_id",
                "causeway.causation_id" => "causation_id",
                "causeway.event_type" => "event_type",
                _ => return None,
            };
            Some((name.to_owned(), value))
        })
        .collect()
}

/// Sets the record's typed fields from `fields`, leaving what does not parse
/// untouched (our own spans and events always parse).
fn apply(record: &mut Record, fields: &Map<String, Value>) {
    let text = |name: &str| fields.get(name).and_then(Value::as_str);
    if let Some(v) = text("service") {
        record.service = v.to_owned();
    }
    if let Some(v) = text("trace_id").and_then(|v| v.parse().ok()) {
        record.trace_id = Some(v);
    }
    if let Some(v) = text("span_id").and_then(|v| v.parse().ok()) {
        record.span_id = Some(v);
    }
    if let Some(v) = text("parent_span_id").and_then(|v| v.parse().ok()) {
        record.parent_span_id = Some(v);
    }
    if let Some(v) = text("correlation_id").and_then(|v| v.parse().ok()) {
        record.correlation_id = Some(v);
    }
    if let Some(v) = text("causation_id").and_then(|v| v.parse().ok()) {
        record.causation_id = Some(v);
    }
    if let Some(v) = text("event_id").and_then(|v| v.parse().ok()) {
        record.event_id = Some(v);
    }
    let owned = |name: &str| text(name).map(str::to_owned);
    record.event_type = owned("event_type").or(record.event_type.take());
    record.messaging_system = owned("messaging_system").or(record.messaging_system.take());
    record.destination = owned("destination").or(record.destination.take());
    record.consumer_group = owned("consumer_group").or(record.consumer_group.take());
    record.error_type = owned("error_type").or(record.error_type.take());
    record.error_message = owned("error_message").or(record.error_message.take());
    if let Some(v) = fields.get("duration_us").and_then(Value::as_u64) {
        record.duration_us = Some(v);
    }
}

fn level(level: &tracing::Level) -> Level {
    match *level {
        tracing::Level::TRACE => Level::Trace,
        tracing::Level::DEBUG => Level::Debug,
        tracing::Level::INFO => Level::Info,
        tracing::Level::WARN => Level::Warn,
        _ => Level::Error,
    }
}

impl<S, Sub> Layer<Sub> for RecordLayer<S>
where
    S: RecordSink,
    Sub: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, Sub>) {
        if attrs.metadata().name() != HANDLE_SPAN {
            return;
        }
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut()
                .insert(SpanFlow(record_names(fields.values)));
        }
    }

    fn on_record(&self, id: &Id, values: &Record_<'_>, ctx: Context<'_, Sub>) {
        let Some(span) = ctx.span(id) else { return };
        if span.metadata().name() != HANDLE_SPAN {
            return;
        }
        let mut fields = Fields::default();
        values.record(&mut fields);
        if let Some(flow) = span.extensions_mut().get_mut::<SpanFlow>() {
            flow.0.extend(record_names(fields.values));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, Sub>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let mut record = Record::new(
            Timestamp::now(),
            self.service.clone(),
            fields.message.take().unwrap_or_default(),
        );
        record.level = level(event.metadata().level());
        record.instance.clone_from(&self.instance);
        if event.metadata().target() == LIFECYCLE_TARGET {
            // A lifecycle event carries every field of its record itself;
            // the enclosing span's (a consumer group, say) must not leak in.
            apply(&mut record, &fields.values);
            record.stage = fields
                .values
                .get("stage")
                .and_then(Value::as_str)
                .and_then(|s| s.parse().ok())
                .unwrap_or(Stage::Log);
        } else {
            if let Some(scope) = ctx.event_scope(event) {
                for span in scope {
                    if let Some(flow) = span.extensions().get::<SpanFlow>() {
                        apply(&mut record, &flow.0);
                        break;
                    }
                }
            }
            // A handler's own fields are its business: kept as attributes,
            // never taken for flow fields.
            record.attributes = fields.values;
            record.stage = Stage::Log;
        }
        self.sink.write(&record);
    }
}
