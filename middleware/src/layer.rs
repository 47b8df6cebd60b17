//! [`RecordLayer`]: a tracing-subscriber layer that writes causeway records.
//!
//! Lifecycle events (target [`LIFECYCLE_TARGET`]) become lifecycle records
//! field for field. Every other event becomes a `log` record; inside a
//! `causeway.handle` span it is stamped with that span's flow ids (trace,
//! span, correlation, causation, event), so a handler's ordinary logs join
//! its flow, and its own fields go to `attributes`.
//!
//! This runs for every log line of a service, so it writes the JSON line
//! straight into reused per-thread buffers, with the span's part serialized
//! once when the span is created: no `Record` is built and, once warm, no
//! allocation is made per event beyond what formatting the message needs.
//! The layer never panics and never blocks on anything but the sink's lock.
//!
//! Every key it writes is a name the model declares ([`RecordField`]);
//! which record fields a lifecycle event may set and which span fields
//! carry a flow's ids are exhaustive `match`es over `RecordField`, so a new
//! field does not compile until it is decided here.

use std::cell::RefCell;
use std::fmt;
use std::io::Write as _;

use causeway_model::{Level, RecordField, Stage, Timestamp};
use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record as SpanRecord};
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
    ///
    /// Every event that reaches the layer becomes a record, including those
    /// of libraries (lapin, async-nats, hyper log at debug): give the layer a
    /// filter (`with_filter`) when those are not wanted.
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

/// Record field names the layer writes or looks at itself.
const TIMESTAMP: &str = RecordField::Timestamp.name();
const LEVEL: &str = RecordField::Level.name();
const SERVICE: &str = RecordField::Service.name();
const INSTANCE: &str = RecordField::Instance.name();
const MESSAGE: &str = RecordField::Message.name();
const STAGE: &str = RecordField::Stage.name();
const ATTRIBUTES: &str = RecordField::Attributes.name();

/// The flow fields of a `causeway.handle` span, kept in its extensions:
/// the values under record names, and the same serialized once as a JSON
/// fragment (`,"trace_id":"...",...`, without `service`).
#[derive(Debug, Default)]
struct SpanFlow {
    values: Map<String, Value>,
    service: Option<String>,
    fragment: Vec<u8>,
}

impl SpanFlow {
    fn update(&mut self, values: Map<String, Value>) {
        self.values.extend(values);
        self.service = self
            .values
            .get(SERVICE)
            .and_then(Value::as_str)
            .map(str::to_owned);
        self.fragment.clear();
        for (name, value) in &self.values {
            if name == SERVICE {
                continue;
            }
            self.fragment.push(b',');
            write_json_str(&mut self.fragment, name);
            self.fragment.push(b':');
            // A `Value` always serializes; the buffer is in memory.
            let _ = serde_json::to_writer(&mut self.fragment, value);
        }
    }
}

/// Collects a span's fields under the record's names.
#[derive(Default)]
struct SpanFields(Map<String, Value>);

/// The field of the handler span that carries a record field into the
/// handler's ordinary log lines: OpenTelemetry's messaging attributes and
/// causeway's own `causeway.*` fields; `None` for a field a log line does
/// not take from its handler.
const fn span_field(field: RecordField) -> Option<&'static str> {
    Some(match field {
        RecordField::MessagingSystem => "messaging.system",
        RecordField::Destination => "messaging.destination.name",
        RecordField::ConsumerGroup => "messaging.consumer.group.name",
        RecordField::EventId => "messaging.message.id",
        RecordField::CorrelationId => "messaging.message.conversation_id",
        RecordField::Service => "causeway.service",
        RecordField::TraceId => "causeway.trace_id",
        RecordField::SpanId => "causeway.span_id",
        RecordField::ParentSpanId => "causeway.parent_span_id",
        RecordField::CausationId => "causeway.causation_id",
        RecordField::EventType => "causeway.event_type",
        RecordField::Timestamp
        | RecordField::Level
        | RecordField::Instance
        | RecordField::Message
        | RecordField::Stage
        | RecordField::DurationUs
        | RecordField::ErrorType
        | RecordField::ErrorMessage
        | RecordField::Attributes
        | RecordField::Malformed
        | RecordField::Links => return None,
    })
}

/// The record name of a handler span's field, if it carries one.
fn record_name(span_field_name: &str) -> Option<&'static str> {
    RecordField::ALL
        .into_iter()
        .find(|field| span_field(*field) == Some(span_field_name))
        .map(RecordField::name)
}

impl Visit for SpanFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if let Some(name) = record_name(field.name()) {
            self.0.insert(name.to_owned(), Value::from(value));
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if let Some(name) = record_name(field.name()) {
            self.0
                .insert(name.to_owned(), Value::from(format!("{value:?}")));
        }
    }
}

/// Whether a lifecycle event's field of this name sets the record field
/// (at the top level) rather than going to `attributes`.
const fn lifecycle_field(field: RecordField) -> bool {
    match field {
        RecordField::Stage
        | RecordField::Service
        | RecordField::TraceId
        | RecordField::SpanId
        | RecordField::ParentSpanId
        | RecordField::CorrelationId
        | RecordField::CausationId
        | RecordField::EventId
        | RecordField::EventType
        | RecordField::MessagingSystem
        | RecordField::Destination
        | RecordField::ConsumerGroup
        | RecordField::DurationUs
        | RecordField::ErrorType
        | RecordField::ErrorMessage => true,
        // Written by the layer itself (`message` for every event).
        RecordField::Timestamp
        | RecordField::Level
        | RecordField::Instance
        | RecordField::Message
        | RecordField::Attributes => false,
        // Only the agent makes malformed records; the collector's OTLP
        // mapping writes links, read from the spans themselves.
        RecordField::Malformed | RecordField::Links => false,
    }
}

fn is_lifecycle_field(name: &str) -> bool {
    RecordField::from_name(name).is_some_and(lifecycle_field)
}

/// Reused per thread: the line being built, its attributes, the service.
#[derive(Default)]
struct Buffers {
    line: Vec<u8>,
    attributes: Vec<u8>,
    service: String,
}

thread_local! {
    static BUFFERS: RefCell<Buffers> = RefCell::new(Buffers::default());
}

/// Writes an event's fields into the line: `message`, top-level record
/// fields (lifecycle events only), everything else into `attributes`.
struct EventWriter<'a> {
    buffers: &'a mut Buffers,
    lifecycle: bool,
    has_message: bool,
    has_stage: bool,
    has_service: bool,
}

impl EventWriter<'_> {
    /// Where a field goes: `Some(buffer)` after writing its key there.
    fn key(&mut self, name: &str) -> &mut Vec<u8> {
        let top_level = name == MESSAGE || (self.lifecycle && is_lifecycle_field(name));
        match name {
            MESSAGE => self.has_message = true,
            STAGE if self.lifecycle => self.has_stage = true,
            _ => {}
        }
        let out = if top_level {
            &mut self.buffers.line
        } else {
            if !self.buffers.attributes.is_empty() {
                self.buffers.attributes.push(b',');
            }
            &mut self.buffers.attributes
        };
        if top_level {
            out.push(b',');
        }
        write_json_str(out, name);
        out.push(b':');
        out
    }
}

impl Visit for EventWriter<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if self.lifecycle && field.name() == SERVICE {
            self.has_service = true;
            self.buffers.service.clear();
            self.buffers.service.push_str(value);
        }
        write_json_str(self.key(field.name()), value);
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        let _ = write!(self.key(field.name()), "{value}");
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        let _ = write!(self.key(field.name()), "{value}");
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        let out = self.key(field.name());
        if value.is_finite() {
            let _ = write!(out, "{value}");
        } else {
            out.extend_from_slice(b"null");
        }
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        let _ = write!(self.key(field.name()), "{value}");
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        write_json_display(self.key(field.name()), value);
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let out = self.key(field.name());
        out.push(b'"');
        let _ = fmt::write(&mut Escaping(out), format_args!("{value:?}"));
        out.push(b'"');
    }
}

fn level(level: &tracing::Level) -> &'static str {
    match *level {
        tracing::Level::TRACE => Level::Trace,
        tracing::Level::DEBUG => Level::Debug,
        tracing::Level::INFO => Level::Info,
        tracing::Level::WARN => Level::Warn,
        _ => Level::Error,
    }
    .as_str()
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
        let mut fields = SpanFields::default();
        attrs.record(&mut fields);
        if let Some(span) = ctx.span(id) {
            let mut flow = SpanFlow::default();
            flow.update(fields.0);
            span.extensions_mut().insert(flow);
        }
    }

    fn on_record(&self, id: &Id, values: &SpanRecord<'_>, ctx: Context<'_, Sub>) {
        let Some(span) = ctx.span(id) else { return };
        if span.metadata().name() != HANDLE_SPAN {
            return;
        }
        let mut fields = SpanFields::default();
        values.record(&mut fields);
        if let Some(flow) = span.extensions_mut().get_mut::<SpanFlow>() {
            flow.update(fields.0);
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, Sub>) {
        // Re-entrancy (a sink that logs) gets fresh buffers instead of a panic.
        let write = |buffers: &mut Buffers| self.write_event(buffers, event, &ctx);
        let reused = BUFFERS.with(|cell| cell.try_borrow_mut().map(|mut b| write(&mut b)).is_ok());
        if !reused {
            write(&mut Buffers::default());
        }
    }
}

impl<S: RecordSink> RecordLayer<S> {
    fn write_event<Sub>(&self, buffers: &mut Buffers, event: &Event<'_>, ctx: &Context<'_, Sub>)
    where
        Sub: Subscriber + for<'a> LookupSpan<'a>,
    {
        let lifecycle = event.metadata().target() == LIFECYCLE_TARGET;
        buffers.line.clear();
        buffers.attributes.clear();
        buffers.service.clear();
        let line = &mut buffers.line;
        let _ = write!(
            line,
            "{{\"{TIMESTAMP}\":\"{}\",\"{LEVEL}\":\"{}\"",
            Timestamp::now(),
            level(event.metadata().level())
        );
        if let Some(instance) = &self.instance {
            write_key(line, INSTANCE);
            write_json_str(line, instance);
        }
        // An ordinary event inside a handler takes the handler's flow ids.
        // A lifecycle event carries every field of its record itself; the
        // enclosing span's (a consumer group, say) must not leak in.
        let mut in_flow = false;
        if !lifecycle && let Some(scope) = ctx.event_scope(event) {
            for span in scope {
                if let Some(flow) = span.extensions().get::<SpanFlow>() {
                    line.extend_from_slice(&flow.fragment);
                    if let Some(service) = &flow.service {
                        buffers.service.push_str(service);
                        in_flow = true;
                    }
                    break;
                }
            }
        }
        let mut writer = EventWriter {
            buffers,
            lifecycle,
            has_message: false,
            has_stage: false,
            has_service: in_flow,
        };
        event.record(&mut writer);
        let (has_message, has_stage, has_service) =
            (writer.has_message, writer.has_stage, writer.has_service);
        if !has_service {
            buffers.service.push_str(&self.service);
        }
        let line = &mut buffers.line;
        if !(lifecycle && has_service) {
            write_key(line, SERVICE);
            write_json_str(line, &buffers.service);
        }
        if !has_message {
            write_key(line, MESSAGE);
            write_json_str(line, "");
        }
        if !has_stage {
            write_key(line, STAGE);
            write_json_str(line, Stage::Log.as_str());
        }
        if !buffers.attributes.is_empty() {
            write_key(line, ATTRIBUTES);
            line.push(b'{');
            line.extend_from_slice(&buffers.attributes);
            line.push(b'}');
        }
        line.extend_from_slice(b"}\n");
        self.sink.write(&buffers.service, line);
    }
}

/// Writes `,"name":` for a declared field name, which needs no escaping
/// (the model's tests hold every name to lowercase letters and `_`).
fn write_key(out: &mut Vec<u8>, name: &str) {
    out.push(b',');
    out.push(b'"');
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":");
}

/// Writes `s` as a JSON string, quotes included.
fn write_json_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    escape_into(out, s);
    out.push(b'"');
}

fn write_json_display(out: &mut Vec<u8>, value: &dyn fmt::Display) {
    out.push(b'"');
    let _ = fmt::write(&mut Escaping(out), format_args!("{value}"));
    out.push(b'"');
}

/// JSON string escaping (RFC 8259): quote, backslash and control
/// characters; everything else is copied as is.
fn escape_into(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if escape.is_empty() {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0xf)]);
        } else {
            out.extend_from_slice(escape);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

/// A `fmt::Write` that JSON-escapes into a byte buffer.
struct Escaping<'a>(&'a mut Vec<u8>);

impl fmt::Write for Escaping<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        escape_into(self.0, s);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use causeway_model::Record;

    use super::*;

    #[test]
    fn escaping_round_trips_through_a_json_parser() {
        let tricky = "quote \" backslash \\ newline \n tab \t nul \u{0} bell \u{7} é 😀 \u{7f}";
        let mut out = Vec::new();
        write_json_str(&mut out, tricky);
        let back: String = serde_json::from_slice(&out).unwrap();
        assert_eq!(back, tricky);
    }

    #[test]
    fn each_span_field_carries_one_record_field() {
        let mut seen = std::collections::HashSet::new();
        for field in RecordField::ALL {
            if let Some(name) = span_field(field) {
                assert!(seen.insert(name), "{name} carries two fields");
                assert_eq!(record_name(name), Some(field.name()));
            }
        }
        assert_eq!(record_name("otel.kind"), None);
        assert!(is_lifecycle_field("destination") && !is_lifecycle_field("timestamp"));
    }

    #[derive(Debug, Clone, Default)]
    struct Lines(std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>);

    impl RecordSink for Lines {
        fn write(&self, service: &str, line: &[u8]) {
            let line = String::from_utf8(line.to_vec()).unwrap();
            self.0.lock().unwrap().push((service.to_owned(), line));
        }
    }

    #[test]
    fn every_field_type_lands_in_a_valid_record() {
        use tracing_subscriber::layer::SubscriberExt;
        let lines = Lines::default();
        let subscriber = tracing_subscriber::registry()
            .with(RecordLayer::new("svc", lines.clone()).with_instance("pod-1"));
        tracing::subscriber::with_default(subscriber, || {
            let error = std::io::Error::other("disk \"full\"");
            tracing::warn!(
                count = 3u64,
                delta = -2i64,
                ratio = 0.5,
                nan = f64::NAN,
                ok = true,
                error = &error as &dyn std::error::Error,
                debug = ?vec![1, 2],
                "multi\nline \"message\""
            );
            tracing::info!(no_message = 1);
        });
        let lines = lines.0.lock().unwrap();
        let (service, line) = &lines[0];
        assert_eq!(service, "svc");
        assert!(line.ends_with('\n'));
        let record: Record = serde_json::from_str(line).unwrap();
        assert_eq!(record.message, "multi\nline \"message\"");
        assert_eq!(record.instance.as_deref(), Some("pod-1"));
        assert_eq!(record.level, Level::Warn);
        let a = &record.attributes;
        assert_eq!(
            (a["count"].as_u64(), a["delta"].as_i64()),
            (Some(3), Some(-2))
        );
        assert_eq!(
            (a["ratio"].as_f64(), a["ok"].as_bool()),
            (Some(0.5), Some(true))
        );
        assert!(a["nan"].is_null());
        assert_eq!(a["error"], "disk \"full\"");
        assert_eq!(a["debug"], "[1, 2]");
        let record: Record = serde_json::from_str(&lines[1].1).unwrap();
        assert_eq!(record.message, "");
        assert_eq!(record.attributes["no_message"], 1);
    }
}
