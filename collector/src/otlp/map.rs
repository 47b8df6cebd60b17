//! OTLP spans and log records onto causeway's [`Record`], so that services
//! instrumented with plain OpenTelemetry (no causeway middleware) still
//! form flows.
//!
//! - resource `service.name` -> `service`, `service.instance.id` ->
//!   `instance`; the record's own attributes are kept in `attributes` under
//!   their OpenTelemetry names, the resource's under `resource.<name>`;
//! - `messaging.message.conversation_id` -> correlation id,
//!   `messaging.message.id` -> event id, `messaging.destination.name`,
//!   `messaging.system`, `messaging.consumer.group.name` -> their fields;
//! - a producer span (or operation `send`, `create`, `publish`) ->
//!   `published`; a consumer span (or operation `receive`, `process`) ->
//!   `received` at its start, then `handled` or `failed` (error status or
//!   an `exception` event) at its end with its duration; any other span ->
//!   one record with its name, kind and duration;
//! - span links are kept on the record; a consumer span without a
//!   conversation id takes the LINKED trace id as its correlation id (the
//!   producer's flow key, since the producer falls back to its own trace
//!   id), so a consumer that started a trace of its own joins the flow. The
//!   other spans of that trace in the same request inherit the correlation
//!   through their parents.
//!
//! Each record gets a content hash: that of the span or log record it came
//! from (its protobuf encoding, with its resource, scope and place in the
//! request), and its place among that one's records. An SDK that sends an
//! export again (its answer was lost) sends the same spans, so the indexer
//! can tell the records it holds already. JSON and protobuf of the same
//! span hash alike, since both are hashed as protobuf. A protobuf export
//! is hashed on the bytes it was received as, so nothing is encoded
//! again; they are what encoding it again gives, unless the sender wrote
//! fields in another order than prost does (then a resend of the same
//! bytes still hashes alike). The hashes are the same as before they were
//! taken on the bytes received, so an index's committed hashes still
//! count after an upgrade.
//!
//! A span or log record whose ids are not OTLP ids (wrong length, all
//! zero) is rejected: counted for the partial-success answer, and kept as
//! a malformed record holding its JSON, never dropped silently.
//!
//! This module is pure: no I/O, no clock (the caller passes the time of
//! receipt), nothing of HTTP or gRPC.

use std::collections::HashMap;
use std::hash::Hasher;

use causeway_model::wire::{MAX_REASON_LEN, cut_raw, cut_text};
use causeway_model::{
    CorrelationId, EventId, Level, Record, SpanId, SpanLink, Stage, Timestamp, TraceId,
};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::{Span, span};
use prost::Message;
use serde_json::{Map, Value};
use siphasher::sip::SipHasher13;

use crate::otlp::decode;

const SERVICE_NAME: &str = "service.name";
const SERVICE_INSTANCE: &str = "service.instance.id";
/// What OpenTelemetry SDKs call a service that names none.
const UNKNOWN_SERVICE: &str = "unknown_service";
const CONVERSATION_ID: &str = "messaging.message.conversation_id";
const MESSAGE_ID: &str = "messaging.message.id";
const DESTINATION: &str = "messaging.destination.name";
const SYSTEM: &str = "messaging.system";
const CONSUMER_GROUP: &str = "messaging.consumer.group.name";
const OPERATION_TYPE: &str = "messaging.operation.type";
/// The name before semantic conventions 1.26.
const OPERATION_OLD: &str = "messaging.operation";
const ERROR_TYPE: &str = "error.type";
const EXCEPTION_EVENT: &str = "exception";
const EXCEPTION_TYPE: &str = "exception.type";
const EXCEPTION_MESSAGE: &str = "exception.message";
/// What causeway's own middleware puts on its spans besides the
/// OpenTelemetry names.
const EVENT_TYPE: &str = "causeway.event_type";
const CAUSATION_ID: &str = "causeway.causation_id";
/// Attributes the mapping adds: the span's kind and the scope's name.
const SPAN_KIND: &str = "span.kind";
const SCOPE_NAME: &str = "otel.scope.name";
/// How far up a span's parents the mapping looks for a correlation id.
const MAX_PARENT_WALK: usize = 64;

/// The SipHash keys of content hashes. Changing them makes every record
/// sent again after the change look new.
const HASH_KEYS: (u64, u64) = (0x6361_7573_6577_6179, 0x6f74_6c70_2d68_6173);

/// What a request became.
#[derive(Debug, Default)]
pub(crate) struct Mapped {
    pub records: Vec<Record>,
    /// The content hash of each record, in order.
    pub hashes: Vec<u64>,
    /// Spans or log records rejected (each kept as a malformed record).
    pub rejected: i64,
    /// Why the first rejected one was, for the partial-success message.
    pub first_error: Option<String>,
}

impl Mapped {
    /// Room for the records of `items` spans or log records (a log record
    /// makes one, a span one or two), so that the records, hundreds of
    /// bytes each, are not moved as the list grows.
    fn with_capacity(items: usize) -> Self {
        Self {
            records: Vec::with_capacity(items),
            hashes: Vec::with_capacity(items),
            ..Self::default()
        }
    }

    fn reject(&mut self, record: Record, reason: String) {
        self.rejected += 1;
        self.first_error.get_or_insert(reason);
        self.records.push(record);
    }

    /// Gives the records added since the last call their content hashes:
    /// `item`'s (the span or log record they came from), and their place
    /// among its records.
    fn hash_new(&mut self, item: &SipHasher13) {
        for ordinal in 0..self.records.len() - self.hashes.len() {
            let mut hasher = *item;
            hasher.write_usize(ordinal);
            self.hashes.push(hasher.finish());
        }
    }

    /// The partial-success message: how many, and the first reason.
    pub(crate) fn error_message(&self, what: &str) -> String {
        match &self.first_error {
            Some(first) if self.rejected > 0 => format!(
                "{} {what} rejected (kept as malformed records); the first: {first}",
                self.rejected
            ),
            _ => String::new(),
        }
    }
}

/// What keeps a span and a log record of the same bytes apart in a hash.
const SPAN_HASH: &[u8] = b"span";
const LOG_HASH: &[u8] = b"log";

/// The hash state of a resource and scope, to which each of their spans or
/// log records adds its own encoding.
fn scope_hasher(
    kind: &[u8],
    resource: Option<&Resource>,
    scope: Option<&InstrumentationScope>,
) -> SipHasher13 {
    let resource = resource.map(Message::encode_to_vec).unwrap_or_default();
    let scope = scope.map(Message::encode_to_vec).unwrap_or_default();
    scope_hasher_of(kind, &resource, &scope)
}

/// [`scope_hasher`] of the resource's and scope's encodings (empty when
/// absent).
fn scope_hasher_of(kind: &[u8], resource: &[u8], scope: &[u8]) -> SipHasher13 {
    let mut hasher = SipHasher13::new_with_keys(HASH_KEYS.0, HASH_KEYS.1);
    hasher.write(kind);
    for bytes in [resource, scope] {
        hasher.write_usize(bytes.len());
        hasher.write(bytes);
    }
    hasher
}

/// `scope`'s hash state with `item`'s place in its request and its
/// encoding added: the same request sent again hashes alike, while two
/// equal log lines in one request (no time set, say) stay two records.
/// `buf` is only room to encode into, reused from item to item.
fn item_hasher(
    scope: &SipHasher13,
    at: usize,
    item: &impl Message,
    buf: &mut Vec<u8>,
) -> SipHasher13 {
    buf.clear();
    // Encoding into a Vec cannot run out of room.
    let _ = item.encode(buf);
    item_hasher_of(scope, at, buf)
}

/// [`item_hasher`] of the item's encoding.
fn item_hasher_of(scope: &SipHasher13, at: usize, item: &[u8]) -> SipHasher13 {
    let mut hasher = *scope;
    hasher.write_usize(at);
    hasher.write(item);
    hasher
}

/// The hash state of each item of an export, in order, made from the
/// protobuf bytes it was decoded from; `None` when they do not walk, give
/// a resource or a scope twice (see [`decode::wire_scopes`]), or hold
/// another number of items than the `count` decoded: its items are then
/// encoded again.
fn received_hashers(encoded: &[u8], kind: &[u8], count: usize) -> Option<Vec<SipHasher13>> {
    let mut hashers = Vec::with_capacity(count);
    for group in decode::wire_scopes(encoded)? {
        let scope = scope_hasher_of(kind, group.resource, group.scope);
        for item in group.items {
            hashers.push(item_hasher_of(&scope, hashers.len(), item));
        }
    }
    (hashers.len() == count).then_some(hashers)
}

/// The hash state of each item of an export: made of the bytes it was
/// received as when there are any, else of its encoding.
struct ItemHashes {
    kind: &'static [u8],
    received: Option<Vec<SipHasher13>>,
    /// The current resource and scope's hash state, made when an item of
    /// theirs is first encoded.
    scope: Option<SipHasher13>,
    /// Room to encode items into.
    buf: Vec<u8>,
}

impl ItemHashes {
    /// For an export of `count` items, decoded from `encoded` if it was.
    fn new(kind: &'static [u8], encoded: Option<&[u8]>, count: usize) -> Self {
        Self {
            kind,
            received: encoded.and_then(|e| received_hashers(e, kind, count)),
            scope: None,
            buf: Vec::new(),
        }
    }

    /// The items that follow are of another resource or scope.
    fn next_scope(&mut self) {
        self.scope = None;
    }

    /// The hash state of `item`, at `at` in the export, under `resource`
    /// and `scope`.
    fn item(
        &mut self,
        at: usize,
        resource: Option<&Resource>,
        scope: Option<&InstrumentationScope>,
        item: &impl Message,
    ) -> SipHasher13 {
        if let Some(hasher) = self.received.as_ref().and_then(|r| r.get(at)) {
            return *hasher;
        }
        let kind = self.kind;
        let scope = self
            .scope
            .get_or_insert_with(|| scope_hasher(kind, resource, scope));
        item_hasher(scope, at, item, &mut self.buf)
    }
}

/// How many spans or log records a request holds.
pub(crate) fn span_count(request: &ExportTraceServiceRequest) -> usize {
    request
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .map(|s| s.spans.len())
        .sum()
}

/// How many log records a request holds.
pub(crate) fn log_count(request: &ExportLogsServiceRequest) -> usize {
    request
        .resource_logs
        .iter()
        .flat_map(|r| &r.scope_logs)
        .map(|s| s.log_records.len())
        .sum()
}

// ---------------------------------------------------------------- spans

/// What a span does in a message's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Publish,
    Consume,
    Other,
}

fn role(kind: SpanKind, operation: Option<&str>) -> Role {
    match operation {
        Some("send" | "create" | "publish") => Role::Publish,
        Some("receive" | "process" | "deliver") => Role::Consume,
        Some(_) => Role::Other,
        None => match kind {
            SpanKind::Producer => Role::Publish,
            SpanKind::Consumer => Role::Consume,
            _ => Role::Other,
        },
    }
}

/// A span's ids and what the flow needs of it, read before any record is
/// made, so that spans can look at each other (parents, same trace).
struct SpanFacts {
    trace_id: TraceId,
    span_id: SpanId,
    parent: Option<SpanId>,
    role: Role,
    /// The correlation the span names itself, or (a consumer) takes from
    /// its link.
    correlation: Option<CorrelationId>,
    event_id: Option<EventId>,
}

/// Why a span's ids are unusable.
fn span_ids(span: &Span) -> Result<(TraceId, SpanId, Option<SpanId>), String> {
    let trace = trace_id(&span.trace_id).ok_or_else(|| bad_id("trace_id", &span.trace_id, 16))?;
    let own = span_id(&span.span_id).ok_or_else(|| bad_id("span_id", &span.span_id, 8))?;
    let parent = if span.parent_span_id.is_empty() {
        None
    } else {
        Some(
            span_id(&span.parent_span_id)
                .ok_or_else(|| bad_id("parent_span_id", &span.parent_span_id, 8))?,
        )
    };
    Ok((trace, own, parent))
}

fn bad_id(name: &str, bytes: &[u8], expected: usize) -> String {
    if bytes.len() == expected {
        format!("{name} is all zero")
    } else {
        format!("{name} is {} bytes, expected {expected}", bytes.len())
    }
}

fn trace_id(bytes: &[u8]) -> Option<TraceId> {
    TraceId::from_bytes(<[u8; 16]>::try_from(bytes).ok()?)
}

fn span_id(bytes: &[u8]) -> Option<SpanId> {
    SpanId::from_bytes(<[u8; 8]>::try_from(bytes).ok()?)
}

/// The links whose ids are valid, with each one's `messaging.message.id`.
fn links(span: &Span) -> Vec<(SpanLink, Option<EventId>)> {
    span.links
        .iter()
        .filter_map(|link: &span::Link| {
            let link_ids = SpanLink {
                trace_id: trace_id(&link.trace_id)?,
                span_id: span_id(&link.span_id)?,
            };
            let message_id = string_attr(&link.attributes, MESSAGE_ID).and_then(event_id);
            Some((link_ids, message_id))
        })
        .collect()
}

/// Maps an OTLP trace export onto records, moving its strings into them.
/// `encoded`: the protobuf bytes it was decoded from, if it was: its
/// spans are hashed on them rather than encoded again.
pub(crate) fn spans(
    request: ExportTraceServiceRequest,
    encoded: Option<&[u8]>,
    received_at: Timestamp,
) -> Mapped {
    // First pass: the facts of every usable span, by position.
    let mut facts: Vec<Option<SpanFacts>> = Vec::new();
    for resource_spans in &request.resource_spans {
        for scope_spans in &resource_spans.scope_spans {
            for span in &scope_spans.spans {
                facts.push(span_facts(span));
            }
        }
    }
    let by_span: HashMap<(TraceId, SpanId), usize> = facts
        .iter()
        .enumerate()
        .filter_map(|(i, f)| f.as_ref().map(|f| ((f.trace_id, f.span_id), i)))
        .collect();
    let mut by_trace: HashMap<TraceId, CorrelationId> = HashMap::new();
    for f in facts.iter().flatten() {
        if let Some(correlation) = &f.correlation {
            by_trace
                .entry(f.trace_id)
                .or_insert_with(|| correlation.clone());
        }
    }
    let flow = FlowLookup {
        facts: &facts,
        by_span: &by_span,
        by_trace: &by_trace,
    };
    let mut hashes = ItemHashes::new(SPAN_HASH, encoded, facts.len());
    let mut mapped = Mapped::with_capacity(facts.len());

    let mut position = 0;
    for resource_spans in request.resource_spans {
        let resource = ResourceFacts::new(resource_spans.resource.as_ref());
        for scope_spans in resource_spans.scope_spans {
            hashes.next_scope();
            for span in scope_spans.spans {
                let at = position;
                position += 1;
                let item = hashes.item(
                    at,
                    resource_spans.resource.as_ref(),
                    scope_spans.scope.as_ref(),
                    &span,
                );
                match &facts[at] {
                    Some(f) => span_records(
                        span,
                        f,
                        at,
                        &flow,
                        &resource,
                        scope_spans.scope.as_ref(),
                        &mut mapped.records,
                    ),
                    None => {
                        let reason = span_ids(&span).err().unwrap_or_default();
                        let raw = serde_json::to_string(&span).unwrap_or_default();
                        let record = Record::malformed(
                            received_at,
                            resource.service.clone(),
                            cut_raw(&raw),
                            cut_text(&format!("OTLP span: {reason}"), MAX_REASON_LEN),
                        );
                        mapped.reject(record, format!("span {:?}: {reason}", span.name));
                    }
                }
                mapped.hash_new(&item);
            }
        }
    }
    mapped
}

fn span_facts(span: &Span) -> Option<SpanFacts> {
    let (trace_id, span_id, parent) = span_ids(span).ok()?;
    let kind = SpanKind::try_from(span.kind).unwrap_or(SpanKind::Unspecified);
    let role = role(kind, operation(&span.attributes));
    let links = links(span);
    let own = string_attr(&span.attributes, CONVERSATION_ID).and_then(correlation_id);
    let correlation = match (own, role, links.first()) {
        (Some(own), _, _) => Some(own),
        // The producer's flow key, since the producer falls back to its
        // own trace id.
        (None, Role::Consume, Some((link, _))) => correlation_id(&link.trace_id.to_string()),
        _ => None,
    };
    let mut event_id = string_attr(&span.attributes, MESSAGE_ID).and_then(event_id);
    if event_id.is_none() && role == Role::Consume {
        // The message being consumed is the one the link points at.
        event_id = links.iter().find_map(|(_, id)| id.clone());
    }
    Some(SpanFacts {
        trace_id,
        span_id,
        parent,
        role,
        correlation,
        event_id,
    })
}

/// Looks up, for one span, what other spans of the request say.
struct FlowLookup<'a> {
    facts: &'a [Option<SpanFacts>],
    by_span: &'a HashMap<(TraceId, SpanId), usize>,
    by_trace: &'a HashMap<TraceId, CorrelationId>,
}

impl FlowLookup<'_> {
    /// The span's parents in this request, nearest first (bounded, so a
    /// cycle of bad parent ids ends).
    fn ancestors(&self, at: usize) -> impl Iterator<Item = &SpanFacts> {
        let mut current = self.facts[at].as_ref();
        std::iter::from_fn(move || {
            let f = current?;
            let parent = f.parent?;
            let index = *self.by_span.get(&(f.trace_id, parent))?;
            current = self.facts[index].as_ref();
            current
        })
        .take(MAX_PARENT_WALK)
    }

    /// The span's own correlation, else its nearest parent's, else any
    /// span's of the same trace; `None` leaves the trace id as flow key.
    fn correlation(&self, at: usize, f: &SpanFacts) -> Option<CorrelationId> {
        f.correlation
            .clone()
            .or_else(|| self.ancestors(at).find_map(|a| a.correlation.clone()))
            .or_else(|| self.by_trace.get(&f.trace_id).cloned())
    }

    /// The event whose handling the span is part of: the nearest consumer
    /// among its parents.
    fn handled_event(&self, at: usize) -> Option<EventId> {
        self.ancestors(at)
            .find(|a| a.role == Role::Consume)
            .and_then(|a| a.event_id.clone())
    }
}

fn span_records(
    span: Span,
    f: &SpanFacts,
    at: usize,
    flow: &FlowLookup<'_>,
    resource: &ResourceFacts,
    scope: Option<&InstrumentationScope>,
    out: &mut Vec<Record>,
) {
    let kind = SpanKind::try_from(span.kind).unwrap_or(SpanKind::Unspecified);
    let links = links(&span);
    let start = time(span.start_time_unix_nano);
    let end = time(span.end_time_unix_nano);
    let duration_us = (span.end_time_unix_nano >= span.start_time_unix_nano
        && span.end_time_unix_nano > 0)
        .then(|| (span.end_time_unix_nano - span.start_time_unix_nano) / 1_000);
    let error = span_error(&span);

    let mut base = Record::new(
        start.unwrap_or(Timestamp::from_micros(0)),
        resource.service.clone(),
        span.name,
    );
    base.instance = resource.instance.clone();
    base.trace_id = Some(f.trace_id);
    base.span_id = Some(f.span_id);
    base.parent_span_id = f.parent;
    base.correlation_id = flow.correlation(at, f);
    base.event_id = f.event_id.clone();
    base.links = links.iter().map(|(link, _)| *link).collect();
    let mut taken = Taken::new(span.attributes);
    taken.messaging(&mut base);
    base.causation_id = taken.take(CAUSATION_ID, event_id);
    let mut attributes = taken.into_attributes(resource, scope);
    if base.causation_id.is_none() && f.role == Role::Publish {
        // Published while handling an event: that event caused it; else a
        // link naming a message says which one did.
        base.causation_id = flow
            .handled_event(at)
            .or_else(|| links.iter().find_map(|(_, id)| id.clone()));
    }
    attributes.insert(SPAN_KIND.to_owned(), Value::from(kind_name(kind)));
    base.attributes = attributes;
    // A span without a start time is dated by its end.
    let start = start.or(end).unwrap_or(base.timestamp);
    base.timestamp = start;

    match (f.role, &error) {
        (Role::Publish, None) => {
            base.stage = Stage::Published;
            out.push(base);
        }
        (Role::Consume, _) => {
            let mut closing = base.clone();
            base.stage = Stage::Received;
            out.push(base);
            closing.timestamp = end.unwrap_or(start);
            closing.duration_us = duration_us;
            match error {
                None => closing.stage = Stage::Handled,
                Some(error) => {
                    closing.stage = Stage::Failed;
                    closing.level = Level::Error;
                    closing.error_type = error.kind;
                    closing.error_message = error.message;
                }
            }
            out.push(closing);
        }
        // A publish that failed published nothing: an ordinary record with
        // the error, not an event the flow would wait on.
        (Role::Publish | Role::Other, _) => {
            base.duration_us = duration_us;
            if let Some(error) = error {
                base.level = Level::Error;
                base.error_type = error.kind;
                base.error_message = error.message;
            }
            out.push(base);
        }
    }
}

struct SpanError {
    kind: Option<String>,
    message: Option<String>,
}

/// The span's failure, if it failed: an error status or an `exception`
/// event.
fn span_error(span: &Span) -> Option<SpanError> {
    let status = span
        .status
        .as_ref()
        .filter(|s| s.code == StatusCode::Error as i32);
    let exception = span.events.iter().find(|e| e.name == EXCEPTION_EVENT);
    if status.is_none() && exception.is_none() {
        return None;
    }
    let exception_attr = |key| exception.and_then(|e| string_attr(&e.attributes, key));
    let kind = string_attr(&span.attributes, ERROR_TYPE)
        .or_else(|| exception_attr(EXCEPTION_TYPE))
        .map(str::to_owned);
    let message = exception_attr(EXCEPTION_MESSAGE)
        .or_else(|| status.map(|s| s.message.as_str()).filter(|m| !m.is_empty()))
        .map(str::to_owned);
    Some(SpanError { kind, message })
}

fn kind_name(kind: SpanKind) -> &'static str {
    match kind {
        SpanKind::Unspecified => "unspecified",
        SpanKind::Internal => "internal",
        SpanKind::Server => "server",
        SpanKind::Client => "client",
        SpanKind::Producer => "producer",
        SpanKind::Consumer => "consumer",
    }
}

fn operation(attributes: &[KeyValue]) -> Option<&str> {
    string_attr(attributes, OPERATION_TYPE).or_else(|| string_attr(attributes, OPERATION_OLD))
}

// ----------------------------------------------------------------- logs

/// Maps an OTLP logs export onto records (stage `log`), moving its strings
/// into them.
/// `encoded`: the protobuf bytes it was decoded from, if it was: its log
/// records are hashed on them rather than encoded again.
pub(crate) fn logs(
    request: ExportLogsServiceRequest,
    encoded: Option<&[u8]>,
    received_at: Timestamp,
) -> Mapped {
    let count = log_count(&request);
    let mut mapped = Mapped::with_capacity(count);
    let mut hashes = ItemHashes::new(LOG_HASH, encoded, count);
    let mut position = 0;
    for resource_logs in request.resource_logs {
        let resource = ResourceFacts::new(resource_logs.resource.as_ref());
        for scope_logs in resource_logs.scope_logs {
            hashes.next_scope();
            for log in scope_logs.log_records {
                let at = position;
                position += 1;
                let item = hashes.item(
                    at,
                    resource_logs.resource.as_ref(),
                    scope_logs.scope.as_ref(),
                    &log,
                );
                match log_ids(&log) {
                    Ok(ids) => mapped.records.push(log_record(
                        log,
                        ids,
                        &resource,
                        scope_logs.scope.as_ref(),
                        received_at,
                    )),
                    Err(reason) => {
                        let raw = serde_json::to_string(&log).unwrap_or_default();
                        let record = Record::malformed(
                            received_at,
                            resource.service.clone(),
                            cut_raw(&raw),
                            cut_text(&format!("OTLP log record: {reason}"), MAX_REASON_LEN),
                        );
                        mapped.reject(record, format!("log record: {reason}"));
                    }
                }
                mapped.hash_new(&item);
            }
        }
    }
    mapped
}

/// A log record's trace and span ids: optional, but present ones must be
/// ids.
fn log_ids(log: &LogRecord) -> Result<(Option<TraceId>, Option<SpanId>), String> {
    let trace = match log.trace_id.as_slice() {
        [] => None,
        bytes => Some(trace_id(bytes).ok_or_else(|| bad_id("trace_id", bytes, 16))?),
    };
    let span = match log.span_id.as_slice() {
        [] => None,
        bytes => Some(span_id(bytes).ok_or_else(|| bad_id("span_id", bytes, 8))?),
    };
    Ok((trace, span))
}

fn log_record(
    log: LogRecord,
    (trace, span): (Option<TraceId>, Option<SpanId>),
    resource: &ResourceFacts,
    scope: Option<&InstrumentationScope>,
    received_at: Timestamp,
) -> Record {
    let timestamp = time(log.time_unix_nano)
        .or_else(|| time(log.observed_time_unix_nano))
        .unwrap_or(received_at);
    let message = match log.body.map(any_value) {
        Some(Value::String(text)) => text,
        Some(Value::Null) | None => log.event_name,
        Some(other) => other.to_string(),
    };
    let mut record = Record::new(timestamp, resource.service.clone(), message);
    record.instance = resource.instance.clone();
    record.level = level(log.severity_number, &log.severity_text);
    record.trace_id = trace;
    record.span_id = span;
    let mut taken = Taken::new(log.attributes);
    taken.messaging(&mut record);
    record.causation_id = taken.take(CAUSATION_ID, event_id);
    record.error_type = taken
        .string(ERROR_TYPE)
        .or_else(|| taken.string(EXCEPTION_TYPE));
    record.error_message = taken.string(EXCEPTION_MESSAGE);
    record.attributes = taken.into_attributes(resource, scope);
    record
}

/// OpenTelemetry's severity numbers (1-4 trace ... 17-24 fatal), else the
/// text, else info.
fn level(number: i32, text: &str) -> Level {
    match number {
        1..=4 => Level::Trace,
        5..=8 => Level::Debug,
        9..=12 => Level::Info,
        13..=16 => Level::Warn,
        17..=24 => Level::Error,
        _ => Level::parse_lenient(text).unwrap_or(Level::Info),
    }
}

// ----------------------------------------------------- shared by both

/// What every record of one resource shares.
struct ResourceFacts {
    service: String,
    instance: Option<String>,
    /// The other resource attributes, as `resource.<name>`.
    attributes: Map<String, Value>,
}

impl ResourceFacts {
    fn new(resource: Option<&Resource>) -> Self {
        let empty = Vec::new();
        let attrs = resource.map_or(&empty, |r| &r.attributes);
        let service = string_attr(attrs, SERVICE_NAME)
            .filter(|s| !s.is_empty())
            .unwrap_or(UNKNOWN_SERVICE)
            .to_owned();
        let instance = string_attr(attrs, SERVICE_INSTANCE).map(str::to_owned);
        let attributes = attrs
            .iter()
            .filter(|kv| !kv.key.is_empty() && kv.key != SERVICE_NAME && kv.key != SERVICE_INSTANCE)
            .map(|kv| {
                (
                    format!("resource.{}", kv.key),
                    kv.value.clone().map_or(Value::Null, any_value),
                )
            })
            .collect();
        Self {
            service,
            instance,
            attributes,
        }
    }
}

/// The attributes of one span or log record, of which some become record
/// fields: their strings are moved out of the list, and the keys taken are
/// left out of the record's attributes, so none is copied into a map only
/// to be taken out again.
struct Taken {
    own: Vec<KeyValue>,
    keys: Vec<&'static str>,
}

impl Taken {
    fn new(own: Vec<KeyValue>) -> Self {
        Self {
            own,
            keys: Vec::new(),
        }
    }

    /// The string value of `key`, taken: the last one when the key is
    /// there twice, as a map of the attributes would keep it. A value of
    /// another kind stays an attribute.
    fn string(&mut self, key: &'static str) -> Option<String> {
        self.read(key, |text| Some(std::mem::take(text)))
    }

    /// What `read` makes of the string value of `key`, which is taken when
    /// it makes something; otherwise the value stays an attribute.
    fn take<T>(&mut self, key: &'static str, read: impl FnOnce(&str) -> Option<T>) -> Option<T> {
        self.read(key, |text| read(text))
    }

    fn read<T>(
        &mut self,
        key: &'static str,
        read: impl FnOnce(&mut String) -> Option<T>,
    ) -> Option<T> {
        let kv = self.own.iter_mut().rev().find(|kv| kv.key == key)?;
        let any_value::Value::StringValue(text) = kv.value.as_mut()?.value.as_mut()? else {
            return None;
        };
        let value = read(text)?;
        self.keys.push(key);
        Some(value)
    }

    /// Takes the messaging attributes that are record fields into
    /// `record`. A value that is not a usable id stays an attribute.
    fn messaging(&mut self, record: &mut Record) {
        if let Some(id) = self.take(CONVERSATION_ID, correlation_id) {
            // The span's own conversation id, as FlowLookup found it too.
            record.correlation_id.get_or_insert(id);
        }
        if let Some(id) = self.take(MESSAGE_ID, event_id) {
            record.event_id.get_or_insert(id);
        }
        record.destination = self.string(DESTINATION);
        record.messaging_system = self.string(SYSTEM);
        record.consumer_group = self.string(CONSUMER_GROUP);
        record.event_type = self.string(EVENT_TYPE);
    }

    /// The record's attributes: its own under their names but those
    /// taken into fields, then the scope's name and the resource's, which
    /// never replace its own.
    fn into_attributes(
        self,
        resource: &ResourceFacts,
        scope: Option<&InstrumentationScope>,
    ) -> Map<String, Value> {
        let keys = self.keys;
        let mut map: Map<String, Value> = self
            .own
            .into_iter()
            .filter(|kv| !kv.key.is_empty() && !keys.contains(&kv.key.as_str()))
            .map(|kv| (kv.key, kv.value.map_or(Value::Null, any_value)))
            .collect();
        if let Some(scope) = scope.filter(|s| !s.name.is_empty()) {
            map.entry(SCOPE_NAME)
                .or_insert_with(|| Value::from(scope.name.clone()));
        }
        for (key, value) in &resource.attributes {
            map.entry(key.clone()).or_insert_with(|| value.clone());
        }
        map
    }
}

fn string_attr<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a str> {
    attributes.iter().find(|kv| kv.key == key).and_then(|kv| {
        match kv.value.as_ref()?.value.as_ref()? {
            any_value::Value::StringValue(s) => Some(s.as_str()),
            _ => None,
        }
    })
}

fn correlation_id(value: &str) -> Option<CorrelationId> {
    CorrelationId::new(value).ok()
}

fn event_id(value: &str) -> Option<EventId> {
    EventId::new(value).ok()
}

/// Nanoseconds since the epoch; 0 means unset.
fn time(nanos: u64) -> Option<Timestamp> {
    if nanos == 0 {
        return None;
    }
    // u64 nanoseconds / 1000 always fits an i64.
    Timestamp::from_micros_checked(i64::try_from(nanos / 1_000).ok()?)
}

/// An OTLP value as JSON, its strings moved: bytes as lowercase hex, a
/// non-finite double as its name.
fn any_value(value: AnyValue) -> Value {
    let Some(value) = value.value else {
        return Value::Null;
    };
    match value {
        any_value::Value::StringValue(s) => Value::String(s),
        any_value::Value::BoolValue(b) => Value::from(b),
        any_value::Value::IntValue(i) => Value::from(i),
        any_value::Value::DoubleValue(d) => serde_json::Number::from_f64(d)
            .map_or_else(|| Value::from(d.to_string()), Value::Number),
        any_value::Value::ArrayValue(array) => {
            Value::Array(array.values.into_iter().map(any_value).collect())
        }
        any_value::Value::KvlistValue(list) => Value::Object(
            list.values
                .into_iter()
                .map(|kv| (kv.key, kv.value.map_or(Value::Null, any_value)))
                .collect(),
        ),
        any_value::Value::BytesValue(bytes) => {
            Value::from(bytes.iter().map(|b| format!("{b:02x}")).collect::<String>())
        }
        // An index into a dictionary only profiles carry.
        any_value::Value::StringValueStrindex(i) => Value::from(i),
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::common::v1::{ArrayValue, KeyValueList};
    use opentelemetry_proto::tonic::logs::v1::{ResourceLogs, ScopeLogs};
    use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Status};

    use super::*;

    const PRODUCER_TRACE: [u8; 16] = [0xa1; 16];
    const CONSUMER_TRACE: [u8; 16] = [0xb2; 16];
    /// 2026-11-22T12:00:00Z in nanoseconds.
    const T0: u64 = 1_795_348_800_000_000_000;

    fn kv(key: &str, value: any_value::Value) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue { value: Some(value) }),
            ..KeyValue::default()
        }
    }

    fn text(key: &str, value: &str) -> KeyValue {
        kv(key, any_value::Value::StringValue(value.into()))
    }

    fn resource(service: &str) -> Option<Resource> {
        Some(Resource {
            attributes: vec![
                text(SERVICE_NAME, service),
                text(SERVICE_INSTANCE, &format!("{service}-1")),
                text("deployment.environment", "test"),
            ],
            ..Resource::default()
        })
    }

    fn span(trace: [u8; 16], id: u8, parent: Option<u8>, kind: SpanKind, name: &str) -> Span {
        Span {
            trace_id: trace.to_vec(),
            span_id: vec![id; 8],
            parent_span_id: parent.map(|p| vec![p; 8]).unwrap_or_default(),
            name: name.into(),
            kind: kind as i32,
            start_time_unix_nano: T0,
            end_time_unix_nano: T0 + 2_500_000,
            ..Span::default()
        }
    }

    fn traces(service: &str, spans: Vec<Span>) -> ResourceSpans {
        ResourceSpans {
            resource: resource(service),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "shop.tracer".into(),
                    ..InstrumentationScope::default()
                }),
                spans,
                ..ScopeSpans::default()
            }],
            ..ResourceSpans::default()
        }
    }

    /// `request` mapped with the hashers of its encoding, after checking
    /// that mapping it with its items encoded again gives the same.
    fn map_spans(resources: Vec<ResourceSpans>) -> Mapped {
        let request = ExportTraceServiceRequest {
            resource_spans: resources,
        };
        let encoded = request.encode_to_vec();
        let count = span_count(&request);
        assert!(received_hashers(&encoded, SPAN_HASH, count).is_some());
        let encoded_again = spans(request.clone(), None, Timestamp::from_micros(0));
        let mapped = spans(request, Some(&encoded), Timestamp::from_micros(0));
        assert_same(&mapped, &encoded_again);
        mapped
    }

    /// The same as [`map_spans`], for a logs export.
    fn map_logs(request: ExportLogsServiceRequest, received_at: Timestamp) -> Mapped {
        let encoded = request.encode_to_vec();
        let count = log_count(&request);
        assert!(received_hashers(&encoded, LOG_HASH, count).is_some());
        let encoded_again = logs(request.clone(), None, received_at);
        let mapped = logs(request, Some(&encoded), received_at);
        assert_same(&mapped, &encoded_again);
        mapped
    }

    fn assert_same(mapped: &Mapped, expected: &Mapped) {
        assert_eq!(mapped.records, expected.records);
        assert_eq!(mapped.hashes, expected.hashes);
        assert_eq!(mapped.rejected, expected.rejected);
        assert_eq!(mapped.first_error, expected.first_error);
    }

    fn time_of(nanos: u64) -> Timestamp {
        Timestamp::from_micros((nanos / 1_000) as i64)
    }

    fn producer_span() -> Span {
        let mut send = span(PRODUCER_TRACE, 1, None, SpanKind::Producer, "send orders");
        send.attributes = vec![
            text(SYSTEM, "rabbitmq"),
            text(DESTINATION, "orders"),
            text(MESSAGE_ID, "msg-1"),
            text(OPERATION_TYPE, "send"),
            text("order.id", "1234"),
        ];
        send
    }

    /// A consumer span in a trace of its own, linked to the producer.
    fn linked_consumer_span() -> Span {
        let mut process = span(
            CONSUMER_TRACE,
            9,
            None,
            SpanKind::Consumer,
            "process orders",
        );
        process.attributes = vec![
            text(SYSTEM, "rabbitmq"),
            text(DESTINATION, "orders"),
            text(CONSUMER_GROUP, "payment"),
            text(OPERATION_TYPE, "process"),
        ];
        process.links = vec![Link {
            trace_id: PRODUCER_TRACE.to_vec(),
            span_id: vec![1; 8],
            attributes: vec![text(MESSAGE_ID, "msg-1")],
            ..Link::default()
        }];
        process
    }

    /// `log` as the one log record of service `payment`'s export, mapped.
    fn payment_log(log: LogRecord) -> Mapped {
        let request = ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: resource("payment"),
                scope_logs: vec![ScopeLogs {
                    log_records: vec![log],
                    ..ScopeLogs::default()
                }],
                ..ResourceLogs::default()
            }],
        };
        map_logs(request, Timestamp::from_micros(0))
    }

    #[test]
    fn an_export_is_hashed_on_its_bytes_and_encoded_again_only_when_they_do_not_walk() {
        let message = |tag: u32, inner: &[u8]| {
            let mut out = Vec::new();
            prost::encoding::bytes::encode(tag, &inner.to_vec(), &mut out);
            out
        };
        let resource = resource("payment").unwrap().encode_to_vec();
        let export = |log: &[u8]| {
            message(
                1,
                &[message(1, &resource), message(2, &message(2, log))].concat(),
            )
        };
        let body = LogRecord {
            body: Some(AnyValue {
                value: Some(any_value::Value::StringValue("order accepted".into())),
            }),
            ..LogRecord::default()
        }
        .encode_to_vec();
        let severity = LogRecord {
            severity_text: "WARN".into(),
            ..LogRecord::default()
        }
        .encode_to_vec();
        // The body (field 5) before the severity (field 3): decoding merges
        // both, and encoding again puts the severity first.
        let ordered_log = [severity.clone(), body.clone()].concat();
        let unordered = export(&[body, severity].concat());
        let ordered = export(&ordered_log);
        let decode = |bytes: &[u8]| ExportLogsServiceRequest::decode(bytes).unwrap();
        assert_eq!(decode(&unordered), decode(&ordered));
        let map = |bytes: &[u8], as_received: bool| {
            logs(
                decode(bytes),
                as_received.then_some(bytes),
                Timestamp::from_micros(0),
            )
        };
        assert_eq!(map(&unordered, true).records, map(&ordered, true).records);
        assert_eq!(map(&ordered, true).hashes, map(&ordered, false).hashes);
        assert_eq!(map(&unordered, false).hashes, map(&ordered, false).hashes);
        // Bytes in another order hash as themselves (sent again, alike).
        assert_ne!(map(&unordered, true).hashes, map(&unordered, false).hashes);

        // A resource given twice is merged by decoding: the export is
        // encoded again, as it would be without its bytes.
        let twice = message(
            1,
            &[
                message(1, &resource),
                message(1, &resource),
                message(2, &message(2, &ordered_log)),
            ]
            .concat(),
        );
        assert_eq!(map(&twice, true).hashes, map(&twice, false).hashes);
    }

    #[test]
    fn only_usable_string_values_become_fields_and_the_last_of_a_repeated_key_counts() {
        let log = LogRecord {
            time_unix_nano: T0,
            attributes: vec![
                // Not an id: stays an attribute.
                text(CONVERSATION_ID, "has a space"),
                // Not a string: stays.
                kv(DESTINATION, any_value::Value::IntValue(7)),
                // Twice: the last one is the field, and neither stays.
                text(SYSTEM, "rabbitmq"),
                text(SYSTEM, "kafka"),
                // The first of two that may say the error's type.
                text(ERROR_TYPE, "Declined"),
                text(EXCEPTION_TYPE, "CardError"),
                text(EXCEPTION_MESSAGE, "card declined"),
                text(CAUSATION_ID, "evt-1"),
                text("kept", "yes"),
            ],
            ..LogRecord::default()
        };
        let mapped = payment_log(log);
        let [record] = mapped.records.as_slice() else {
            panic!("one record: {:?}", mapped.records)
        };
        assert_eq!(record.correlation_id, None);
        assert_eq!(record.destination, None);
        assert_eq!(record.messaging_system.as_deref(), Some("kafka"));
        assert_eq!(record.error_type.as_deref(), Some("Declined"));
        assert_eq!(record.error_message.as_deref(), Some("card declined"));
        assert_eq!(
            record.causation_id.as_ref().map(EventId::as_str),
            Some("evt-1")
        );
        assert_eq!(
            Value::Object(record.attributes.clone()),
            serde_json::json!({
                CONVERSATION_ID: "has a space",
                DESTINATION: 7,
                EXCEPTION_TYPE: "CardError",
                "kept": "yes",
                "resource.deployment.environment": "test",
            })
        );

        // A causation id that is not an id stays an attribute too.
        let mapped = payment_log(LogRecord {
            attributes: vec![text(CAUSATION_ID, "has a space")],
            ..LogRecord::default()
        });
        assert_eq!(mapped.records[0].causation_id, None);
        assert_eq!(
            mapped.records[0].attributes.get(CAUSATION_ID),
            Some(&Value::from("has a space"))
        );
    }

    #[test]
    fn a_log_record_keeps_service_ids_level_message_and_attributes() {
        let log = LogRecord {
            time_unix_nano: T0,
            severity_number: 13,
            severity_text: "WARNING".into(),
            body: Some(AnyValue {
                value: Some(any_value::Value::StringValue("card declined".into())),
            }),
            trace_id: PRODUCER_TRACE.to_vec(),
            span_id: vec![1; 8],
            attributes: vec![
                text(CONVERSATION_ID, "order-1234"),
                text(MESSAGE_ID, "msg-1"),
                text(DESTINATION, "orders"),
                text(SYSTEM, "kafka"),
                text(CONSUMER_GROUP, "payment"),
                kv("amount", any_value::Value::IntValue(125)),
                kv("ratio", any_value::Value::DoubleValue(0.5)),
                kv("retry", any_value::Value::BoolValue(true)),
                kv("blob", any_value::Value::BytesValue(vec![0xde, 0xad])),
                kv(
                    "tags",
                    any_value::Value::ArrayValue(ArrayValue {
                        values: vec![AnyValue {
                            value: Some(any_value::Value::StringValue("vip".into())),
                        }],
                    }),
                ),
                kv(
                    "card",
                    any_value::Value::KvlistValue(KeyValueList {
                        values: vec![text("brand", "visa")],
                    }),
                ),
            ],
            ..LogRecord::default()
        };
        let mapped = payment_log(log);
        assert_eq!(mapped.rejected, 0);
        let [record] = mapped.records.as_slice() else {
            panic!("one record: {:?}", mapped.records)
        };
        assert_eq!(record.service, "payment");
        assert_eq!(record.instance.as_deref(), Some("payment-1"));
        assert_eq!(record.timestamp, time_of(T0));
        assert_eq!(record.level, Level::Warn);
        assert_eq!(record.message, "card declined");
        assert_eq!(record.stage, Stage::Log);
        assert_eq!(record.trace_id.unwrap().to_bytes(), PRODUCER_TRACE);
        assert_eq!(record.span_id.unwrap().to_bytes(), [1; 8]);
        assert_eq!(record.flow_key().as_deref(), Some("order-1234"));
        assert_eq!(record.event_id.as_ref().unwrap().as_str(), "msg-1");
        assert_eq!(record.destination.as_deref(), Some("orders"));
        assert_eq!(record.messaging_system.as_deref(), Some("kafka"));
        assert_eq!(record.consumer_group.as_deref(), Some("payment"));
        let attributes = Value::Object(record.attributes.clone());
        assert_eq!(
            attributes,
            serde_json::json!({
                "amount": 125, "ratio": 0.5, "retry": true, "blob": "dead",
                "tags": ["vip"], "card": {"brand": "visa"},
                "resource.deployment.environment": "test",
            })
        );
    }

    #[test]
    fn log_levels_follow_severity_numbers_then_text() {
        assert_eq!(level(1, ""), Level::Trace);
        assert_eq!(level(5, ""), Level::Debug);
        assert_eq!(level(9, "ERROR"), Level::Info);
        assert_eq!(level(17, ""), Level::Error);
        assert_eq!(level(21, ""), Level::Error);
        assert_eq!(level(0, "warning"), Level::Warn);
        assert_eq!(level(0, ""), Level::Info);
    }

    #[test]
    fn a_producer_span_is_a_published_record_at_its_start() {
        let mapped = map_spans(vec![traces("order", vec![producer_span()])]);
        let [record] = mapped.records.as_slice() else {
            panic!("one record: {:?}", mapped.records)
        };
        assert_eq!(record.stage, Stage::Published);
        assert_eq!(record.service, "order");
        assert_eq!(record.message, "send orders");
        assert_eq!(record.timestamp, time_of(T0));
        assert_eq!(record.event_id.as_ref().unwrap().as_str(), "msg-1");
        assert_eq!(record.destination.as_deref(), Some("orders"));
        assert_eq!(record.messaging_system.as_deref(), Some("rabbitmq"));
        // No conversation id: the flow is the trace, as for any record.
        assert_eq!(record.correlation_id, None);
        assert_eq!(
            record.flow_key(),
            Some(TraceId::from_bytes(PRODUCER_TRACE).unwrap().to_string())
        );
        assert_eq!(record.attributes["order.id"], "1234");
        assert_eq!(record.attributes[SPAN_KIND], "producer");
        assert_eq!(record.attributes[SCOPE_NAME], "shop.tracer");
        assert!(!record.attributes.contains_key(MESSAGE_ID));
    }

    #[test]
    fn the_operation_decides_before_the_kind_and_the_old_name_counts() {
        let mut create = span(PRODUCER_TRACE, 1, None, SpanKind::Internal, "create orders");
        create.attributes = vec![text(OPERATION_TYPE, "create")];
        let mut publish = span(PRODUCER_TRACE, 2, None, SpanKind::Client, "orders publish");
        publish.attributes = vec![text(OPERATION_OLD, "publish")];
        let mut settle = span(PRODUCER_TRACE, 3, None, SpanKind::Consumer, "ack orders");
        settle.attributes = vec![text(OPERATION_TYPE, "settle")];
        let mut receive = span(PRODUCER_TRACE, 4, None, SpanKind::Client, "receive orders");
        receive.attributes = vec![text(OPERATION_TYPE, "receive")];
        let mapped = map_spans(vec![traces("svc", vec![create, publish, settle, receive])]);
        let stages: Vec<Stage> = mapped.records.iter().map(|r| r.stage).collect();
        assert_eq!(
            stages,
            [
                Stage::Published,
                Stage::Published,
                Stage::Log,
                Stage::Received,
                Stage::Handled
            ]
        );
    }

    #[test]
    fn a_consumer_span_is_received_at_its_start_then_handled_at_its_end() {
        let mut process = span(
            PRODUCER_TRACE,
            2,
            Some(1),
            SpanKind::Consumer,
            "process orders",
        );
        process.attributes = vec![
            text(CONVERSATION_ID, "order-1234"),
            text(MESSAGE_ID, "msg-1"),
            text(CONSUMER_GROUP, "payment"),
        ];
        let mapped = map_spans(vec![traces("payment", vec![process])]);
        let [received, handled] = mapped.records.as_slice() else {
            panic!("two records: {:?}", mapped.records)
        };
        assert_eq!(received.stage, Stage::Received);
        assert_eq!(received.timestamp, time_of(T0));
        assert_eq!(received.duration_us, None);
        assert_eq!(handled.stage, Stage::Handled);
        assert_eq!(handled.timestamp, time_of(T0 + 2_500_000));
        assert_eq!(handled.duration_us, Some(2_500));
        for record in [received, handled] {
            assert_eq!(
                record.correlation_id.as_ref().unwrap().as_str(),
                "order-1234"
            );
            assert_eq!(record.event_id.as_ref().unwrap().as_str(), "msg-1");
            assert_eq!(record.consumer_group.as_deref(), Some("payment"));
            assert_eq!(record.parent_span_id.unwrap().to_bytes(), [1; 8]);
            assert_eq!(record.level, Level::Info);
        }
    }

    #[test]
    fn an_error_status_or_an_exception_event_fails_the_handling() {
        let mut by_status = span(
            PRODUCER_TRACE,
            2,
            None,
            SpanKind::Consumer,
            "process orders",
        );
        by_status.attributes = vec![text(ERROR_TYPE, "CardDeclined")];
        by_status.status = Some(Status {
            code: StatusCode::Error as i32,
            message: "insufficient funds".into(),
        });
        let mut by_exception = span(
            PRODUCER_TRACE,
            3,
            None,
            SpanKind::Consumer,
            "process orders",
        );
        by_exception.events = vec![Event {
            name: EXCEPTION_EVENT.into(),
            time_unix_nano: T0 + 1_000,
            attributes: vec![
                text(EXCEPTION_TYPE, "ValueError"),
                text(EXCEPTION_MESSAGE, "bad order"),
            ],
            ..Event::default()
        }];
        let mapped = map_spans(vec![traces("payment", vec![by_status, by_exception])]);
        let failed: Vec<&Record> = mapped
            .records
            .iter()
            .filter(|r| r.stage == Stage::Failed)
            .collect();
        let [status, exception] = failed.as_slice() else {
            panic!("two failures: {:?}", mapped.records)
        };
        assert_eq!(status.error_type.as_deref(), Some("CardDeclined"));
        assert_eq!(status.error_message.as_deref(), Some("insufficient funds"));
        assert_eq!(status.level, Level::Error);
        assert_eq!(status.duration_us, Some(2_500));
        assert_eq!(exception.error_type.as_deref(), Some("ValueError"));
        assert_eq!(exception.error_message.as_deref(), Some("bad order"));
    }

    #[test]
    fn a_consumer_in_a_trace_of_its_own_joins_the_producer_flow_through_its_link() {
        // Two services, two traces, two requests: one flow.
        let producer = map_spans(vec![traces("order", vec![producer_span()])]);
        let mut charge = span(
            CONSUMER_TRACE,
            10,
            Some(9),
            SpanKind::Internal,
            "charge card",
        );
        charge.attributes = vec![text("card.brand", "visa")];
        let mut publish = span(
            CONSUMER_TRACE,
            11,
            Some(9),
            SpanKind::Producer,
            "send payments",
        );
        publish.attributes = vec![text(MESSAGE_ID, "msg-2"), text(DESTINATION, "payments")];
        let consumer = map_spans(vec![traces(
            "payment",
            vec![charge, publish, linked_consumer_span()],
        )]);
        let records: Vec<&Record> = producer.records.iter().chain(&consumer.records).collect();
        let producer_key = TraceId::from_bytes(PRODUCER_TRACE).unwrap().to_string();
        for record in &records {
            assert_eq!(
                record.flow_key().as_deref(),
                Some(producer_key.as_str()),
                "{record:?}"
            );
        }
        let received = records.iter().find(|r| r.stage == Stage::Received).unwrap();
        assert_eq!(received.trace_id.unwrap().to_bytes(), CONSUMER_TRACE);
        assert_eq!(received.event_id.as_ref().unwrap().as_str(), "msg-1");
        assert_eq!(
            received.links,
            [SpanLink {
                trace_id: TraceId::from_bytes(PRODUCER_TRACE).unwrap(),
                span_id: SpanId::from_bytes([1; 8]).unwrap(),
            }]
        );
        assert!(records.iter().any(|r| r.stage == Stage::Handled));
        // What the handler published was caused by the event it handled.
        let published = records
            .iter()
            .find(|r| r.stage == Stage::Published && r.service == "payment")
            .unwrap();
        assert_eq!(published.event_id.as_ref().unwrap().as_str(), "msg-2");
        assert_eq!(published.causation_id.as_ref().unwrap().as_str(), "msg-1");
        // The JSON line keeps the link, so query can follow it.
        assert!(
            received
                .to_json_line()
                .contains(&format!("\"links\":[{{\"trace_id\":\"{producer_key}\""))
        );
    }

    #[test]
    fn a_link_naming_a_message_is_the_cause_of_a_publish() {
        let mut publish = span(CONSUMER_TRACE, 5, None, SpanKind::Producer, "send refunds");
        publish.links = vec![Link {
            trace_id: PRODUCER_TRACE.to_vec(),
            span_id: vec![1; 8],
            attributes: vec![text(MESSAGE_ID, "msg-1")],
            ..Link::default()
        }];
        let mapped = map_spans(vec![traces("refund", vec![publish])]);
        let [record] = mapped.records.as_slice() else {
            panic!("one record: {:?}", mapped.records)
        };
        assert_eq!(record.stage, Stage::Published);
        assert_eq!(record.causation_id.as_ref().unwrap().as_str(), "msg-1");
        // Not a consumer: its flow stays its own trace.
        assert_eq!(record.correlation_id, None);
    }

    #[test]
    fn a_conversation_id_wins_over_the_link() {
        let mut process = linked_consumer_span();
        process.attributes.push(text(CONVERSATION_ID, "order-1234"));
        let mapped = map_spans(vec![traces("payment", vec![process])]);
        for record in &mapped.records {
            assert_eq!(record.flow_key().as_deref(), Some("order-1234"));
        }
    }

    #[test]
    fn any_other_span_is_one_record_with_name_kind_and_duration() {
        let mut get = span(
            PRODUCER_TRACE,
            1,
            None,
            SpanKind::Server,
            "GET /orders/{id}",
        );
        get.attributes = vec![text("http.request.method", "GET")];
        get.status = Some(Status {
            code: StatusCode::Error as i32,
            message: "boom".into(),
        });
        let query = span(
            PRODUCER_TRACE,
            2,
            Some(1),
            SpanKind::Client,
            "SELECT orders",
        );
        let mapped = map_spans(vec![traces("order", vec![get, query])]);
        let [get, query] = mapped.records.as_slice() else {
            panic!("two records: {:?}", mapped.records)
        };
        assert_eq!(get.stage, Stage::Log);
        assert_eq!(get.message, "GET /orders/{id}");
        assert_eq!(get.attributes[SPAN_KIND], "server");
        assert_eq!(get.attributes["http.request.method"], "GET");
        assert_eq!(get.duration_us, Some(2_500));
        assert_eq!(get.level, Level::Error);
        assert_eq!(get.error_message.as_deref(), Some("boom"));
        assert_eq!(query.attributes[SPAN_KIND], "client");
        assert_eq!(query.parent_span_id, get.span_id);
        assert_eq!(query.trace_id, get.trace_id);
    }

    #[test]
    fn spans_with_unusable_ids_are_rejected_and_kept_as_malformed() {
        let mut short = span(PRODUCER_TRACE, 1, None, SpanKind::Internal, "short");
        short.trace_id = vec![1, 2, 3];
        let mut zero = span(PRODUCER_TRACE, 2, None, SpanKind::Internal, "zero");
        zero.span_id = vec![0; 8];
        let good = span(PRODUCER_TRACE, 3, None, SpanKind::Internal, "good");
        let mapped = map_spans(vec![traces("svc", vec![short, zero, good])]);
        assert_eq!(mapped.rejected, 2);
        assert_eq!(mapped.records.len(), 3);
        let malformed: Vec<&Record> = mapped
            .records
            .iter()
            .filter(|r| r.malformed.is_some())
            .collect();
        assert_eq!(malformed.len(), 2);
        assert!(
            malformed[0]
                .malformed
                .as_ref()
                .unwrap()
                .reason
                .contains("trace_id is 3 bytes")
        );
        assert!(
            malformed[0]
                .malformed
                .as_ref()
                .unwrap()
                .raw
                .contains("\"short\"")
        );
        assert!(
            malformed[1]
                .malformed
                .as_ref()
                .unwrap()
                .reason
                .contains("span_id is all zero")
        );
        let message = mapped.error_message("spans");
        assert!(message.starts_with("2 spans rejected"), "{message}");
        assert!(
            message.contains("trace_id is 3 bytes, expected 16"),
            "{message}"
        );
    }

    #[test]
    fn a_log_record_with_a_bad_trace_id_is_rejected() {
        let request = ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: None,
                scope_logs: vec![ScopeLogs {
                    log_records: vec![
                        LogRecord {
                            trace_id: vec![7; 5],
                            ..LogRecord::default()
                        },
                        LogRecord::default(),
                    ],
                    ..ScopeLogs::default()
                }],
                ..ResourceLogs::default()
            }],
        };
        let received = Timestamp::from_micros(42);
        let mapped = map_logs(request, received);
        assert_eq!(mapped.rejected, 1);
        assert_eq!(mapped.records[0].service, UNKNOWN_SERVICE);
        assert!(mapped.records[0].malformed.is_some());
        // No time at all: stamped with the time of receipt.
        assert_eq!(mapped.records[1].timestamp, received);
        assert!(mapped.records[1].malformed.is_none());
    }
}
