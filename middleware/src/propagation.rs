//! Writing a [`MessageContext`] into headers and reading it back, with the
//! header spellings of other systems understood on the way in.
//!
//! Writes through any OpenTelemetry `Injector` and reads through a
//! [`Carrier`] (any `Extractor` is one), so each transport only needs a
//! carrier. Extraction never fails and never panics: what is missing or
//! malformed is counted (in the [`Propagation`]'s own [`ContextStats`]) and
//! replaced; the returned context is always usable.
//!
//! Cost matters (this runs on every message): extraction passes over the
//! carrier's headers once, matching each name against causeway's names and
//! the foreign spellings (CloudEvents, NServiceBus, MassTransit,
//! `x-correlation-id`, ...), and allocates nothing for ids and short text.

use std::sync::{Arc, LazyLock};

use causeway_model::{
    CorrelationId, EventId, SpanId, TraceFlags, TraceId, TraceParent, clean_header_value, headers,
    trim_blanks,
};
use opentelemetry::propagation::{Extractor, Injector};

use crate::context::{ContextCounters, ContextStats, MessageContext};

/// A part of the context that a foreign header can supply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ContextField {
    TraceParent,
    TraceState,
    Baggage,
    CorrelationId,
    CausationId,
    EventId,
    EventType,
    Source,
    SchemaVersion,
}

/// How many fields there are: the length of [`ALL_FIELDS`] (its type says
/// so) and of every table by field.
pub(crate) const FIELDS: usize = 9;

impl ContextField {
    /// The field's place in tables by field, below [`FIELDS`].
    ///
    /// The match is exhaustive, so a new variant does not compile until it
    /// has an arm here; each arm finds the field in [`ALL_FIELDS`] at
    /// compile time, so it does not compile either until the field is
    /// listed there (and hence counted in [`FIELDS`]).
    pub(crate) const fn index(self) -> usize {
        match self {
            ContextField::TraceParent => const { position(ContextField::TraceParent) },
            ContextField::TraceState => const { position(ContextField::TraceState) },
            ContextField::Baggage => const { position(ContextField::Baggage) },
            ContextField::CorrelationId => const { position(ContextField::CorrelationId) },
            ContextField::CausationId => const { position(ContextField::CausationId) },
            ContextField::EventId => const { position(ContextField::EventId) },
            ContextField::EventType => const { position(ContextField::EventType) },
            ContextField::Source => const { position(ContextField::Source) },
            ContextField::SchemaVersion => const { position(ContextField::SchemaVersion) },
        }
    }

    /// causeway's own header name for this field.
    pub const fn canonical(self) -> &'static str {
        match self {
            ContextField::TraceParent => headers::TRACEPARENT,
            ContextField::TraceState => headers::TRACESTATE,
            ContextField::Baggage => headers::BAGGAGE,
            ContextField::CorrelationId => headers::CORRELATION_ID,
            ContextField::CausationId => headers::CAUSATION_ID,
            ContextField::EventId => headers::EVENT_ID,
            ContextField::EventType => headers::EVENT_TYPE,
            ContextField::Source => headers::EVENT_SOURCE,
            ContextField::SchemaVersion => headers::SCHEMA_VERSION,
        }
    }
}

/// The foreign spellings understood by default, in order of preference per
/// field (the first one present wins). Matching ignores ASCII case.
pub const DEFAULT_FOREIGN_NAMES: [(&str, ContextField); 23] = [
    // CloudEvents, HTTP binary mode (`ce-` prefix) and its extensions.
    ("ce-traceparent", ContextField::TraceParent),
    ("ce-tracestate", ContextField::TraceState),
    ("ce-id", ContextField::EventId),
    ("ce-type", ContextField::EventType),
    ("ce-source", ContextField::Source),
    ("ce-dataschema", ContextField::SchemaVersion),
    ("ce-correlationid", ContextField::CorrelationId),
    ("ce-causationid", ContextField::CausationId),
    // Plain HTTP conventions.
    ("x-correlation-id", ContextField::CorrelationId),
    // CloudEvents extension attributes as plain names, MassTransit's
    // `CorrelationId` (same name, any case).
    ("correlationid", ContextField::CorrelationId),
    ("causationid", ContextField::CausationId),
    // NServiceBus.
    ("NServiceBus.ConversationId", ContextField::CorrelationId),
    ("NServiceBus.RelatedTo", ContextField::CausationId),
    ("NServiceBus.MessageId", ContextField::EventId),
    ("NServiceBus.EnclosedMessageTypes", ContextField::EventType),
    ("NServiceBus.OriginatingEndpoint", ContextField::Source),
    // MassTransit.
    ("ConversationId", ContextField::CorrelationId),
    ("InitiatorId", ContextField::CausationId),
    ("MessageId", ContextField::EventId),
    // Generic ids, last: they identify a request or message, not a flow.
    ("x-request-id", ContextField::CorrelationId),
    ("message-id", ContextField::EventId),
    // JetStream's de-duplication id, which causeway sets to the event id.
    ("Nats-Msg-Id", ContextField::EventId),
    ("x-message-id", ContextField::EventId),
];

/// How context is written and read: which foreign header names extraction
/// understands, and whether injection also writes CloudEvents names.
///
/// Each `Propagation` counts the contexts it had to start afresh and the
/// values it refused ([`Propagation::stats`]); a clone starts its own
/// counters at zero.
#[derive(Debug)]
pub struct Propagation {
    /// Foreign names in order of preference; shared until changed, so a
    /// `Service` per handler or per message costs no copy of the table.
    foreign: Arc<Vec<(String, ContextField)>>,
    cloudevents: bool,
    counters: ContextCounters,
}

impl Default for Propagation {
    fn default() -> Self {
        Self {
            foreign: Arc::clone(&DEFAULT_FOREIGN),
            cloudevents: false,
            counters: ContextCounters::default(),
        }
    }
}

/// The same configuration, with counters of its own.
impl Clone for Propagation {
    fn clone(&self) -> Self {
        Self {
            foreign: Arc::clone(&self.foreign),
            cloudevents: self.cloudevents,
            counters: ContextCounters::default(),
        }
    }
}

static DEFAULT: LazyLock<Arc<Propagation>> = LazyLock::new(|| Arc::new(Propagation::default()));

/// [`DEFAULT_FOREIGN_NAMES`] as the table a [`Propagation`] reads, built once.
static DEFAULT_FOREIGN: LazyLock<Arc<Vec<(String, ContextField)>>> = LazyLock::new(|| {
    Arc::new(
        DEFAULT_FOREIGN_NAMES
            .iter()
            .map(|(name, field)| ((*name).to_owned(), *field))
            .collect(),
    )
});

impl Propagation {
    /// The shared default (all foreign spellings, no CloudEvents output),
    /// which the free functions [`extract`] and [`inject`] use: its
    /// [`stats`](Propagation::stats) count for every caller of those.
    pub fn shared_default() -> Arc<Propagation> {
        Arc::clone(&DEFAULT)
    }

    /// Understands causeway's own header names only.
    pub fn canonical_only() -> Self {
        Self {
            foreign: Arc::default(),
            cloudevents: false,
            counters: ContextCounters::default(),
        }
    }

    /// What this `Propagation` counted: contexts started afresh on
    /// extraction, values refused on extraction and on injection. Also
    /// added to the process-wide sum, [`context_stats`](crate::context_stats).
    pub fn stats(&self) -> ContextStats {
        self.counters.stats()
    }

    /// Also reads `name` (any ASCII case) as `field`, after the names
    /// already known for that field.
    pub fn with_foreign_name(mut self, name: impl Into<String>, field: ContextField) -> Self {
        Arc::make_mut(&mut self.foreign).push((name.into(), field));
        self
    }

    /// Stops reading `name` as anything.
    pub fn without_foreign_name(mut self, name: &str) -> Self {
        Arc::make_mut(&mut self.foreign).retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self
    }

    /// Also writes the CloudEvents binary-mode headers (`ce-specversion`,
    /// `ce-id`, `ce-type`, `ce-source`, `ce-traceparent`, and the
    /// `ce-correlationid`/`ce-causationid` extensions).
    pub fn with_cloudevents_output(mut self, on: bool) -> Self {
        self.cloudevents = on;
        self
    }

    /// Writes the context into `carrier`.
    pub fn inject(&self, context: &MessageContext, carrier: &mut dyn CarrierMut) {
        let optional = [
            context.tracestate.is_some(),
            context.baggage.is_some(),
            context.causation_id.is_some(),
            context.event_type.is_some(),
            context.source.is_some(),
            context.schema_version.is_some(),
        ];
        let headers = 3 + optional.iter().filter(|present| **present).count();
        // One allocation for the carrier's table instead of growing it.
        carrier.reserve(if self.cloudevents {
            headers * 2
        } else {
            headers
        });
        let mut buf = [0; TraceParent::LEN];
        let traceparent = TraceParent {
            trace_id: context.trace_id,
            parent_id: context.span_id,
            flags: if context.sampled {
                TraceFlags::SAMPLED
            } else {
                TraceFlags::default()
            },
        }
        .encode_into(&mut buf);
        // Ids were validated on creation: no control characters, bounded.
        if self.cloudevents {
            carrier.set_header("ce-specversion", "1.0");
            carrier.set_header("ce-id", context.event_id.as_str());
            carrier.set_header("ce-traceparent", traceparent);
            carrier.set_header("ce-correlationid", context.correlation_id.as_str());
            if let Some(cause) = &context.causation_id {
                carrier.set_header("ce-causationid", cause.as_str());
            }
            if let Some(event_type) = &context.event_type {
                self.set_clean(carrier, "ce-type", event_type);
            }
            if let Some(source) = &context.source {
                self.set_clean(carrier, "ce-source", source);
            }
        }
        // causeway's own headers in byte order of their names: a sorted
        // carrier (AMQP's B-tree table) then appends instead of shifting its
        // entries on each insert.
        if let Some(baggage) = &context.baggage {
            self.set_clean(carrier, headers::BAGGAGE, baggage);
        }
        if let Some(cause) = &context.causation_id {
            carrier.set_header(headers::CAUSATION_ID, cause.as_str());
        }
        carrier.set_header(headers::CORRELATION_ID, context.correlation_id.as_str());
        carrier.set_header(headers::EVENT_ID, context.event_id.as_str());
        if let Some(version) = &context.schema_version {
            self.set_clean(carrier, headers::SCHEMA_VERSION, version);
        }
        if let Some(source) = &context.source {
            self.set_clean(carrier, headers::EVENT_SOURCE, source);
        }
        if let Some(event_type) = &context.event_type {
            self.set_clean(carrier, headers::EVENT_TYPE, event_type);
        }
        carrier.set_header(headers::TRACEPARENT, traceparent);
        if let Some(state) = &context.tracestate {
            self.set_clean(carrier, headers::TRACESTATE, state);
        }
    }

    /// Reads the context of an incoming event. The result describes the
    /// event as its publisher sent it: `span_id` is the producer's span.
    /// Missing or malformed parts are replaced (a fresh trace, a fresh
    /// correlation id, a generated event id) and counted in
    /// [`stats`](Propagation::stats). It never fails and never panics.
    pub fn extract(&self, carrier: &dyn Carrier) -> MessageContext {
        // One pass over the carrier's headers: each name is matched against
        // causeway's names as written, then in any other case, then the
        // foreign ones, and the best-ranked value per field is kept. On a
        // tie (the same field under two casings of one name) the name that
        // sorts first wins, so the result does not depend on the carrier's
        // order; a repeated name keeps its first value.
        let mut best: [Option<(usize, &str, &str)>; FIELDS] = [None; FIELDS];
        carrier.for_each_header(&mut |key, value| {
            // `index()` is below FIELDS (checked at compile time): `get_mut`
            // only spells out that no index can panic here.
            if let Some((rank, field)) = self.rank_of(key)
                && let Some(slot) = best.get_mut(field.index())
                && slot.is_none_or(|(r, k, _)| rank < r || (rank == r && key < k))
            {
                *slot = Some((rank, key, value));
            }
        });
        // What the transport supplies besides its headers counts only for a
        // field no header supplied.
        carrier.for_each_fallback(&mut |key, value| {
            if let Some(field) = canonical_field(key)
                && let Some(slot) = best.get_mut(field.index())
            {
                slot.get_or_insert((usize::MAX, key, value));
            }
        });
        // Headers the carrier could not read at all, not even their names.
        for _ in 0..carrier.skipped_headers() {
            self.counters.count_invalid_value();
        }
        Values {
            raw: best.map(|slot| slot.map(|(_, _, value)| value)),
            counters: &self.counters,
        }
        .into_context()
    }

    /// Writes `value` under `name` if it is fit for a header, else counts it.
    fn set_clean(&self, carrier: &mut dyn CarrierMut, name: &'static str, value: &str) {
        match clean_header_value(value) {
            Some(value) => carrier.set_header(name, value),
            None => self.counters.count_invalid_value(),
        }
    }

    /// The preference rank of a header name and the field it supplies:
    /// causeway's own names as written (0), in another case (1), then the
    /// foreign ones in order, each as configured before any other case
    /// (2, 3 for the first, 4, 5 for the second, ...).
    fn rank_of(&self, key: &str) -> Option<(usize, ContextField)> {
        if let Some(field) = canonical_field(key) {
            return Some((0, field));
        }
        if let Some(field) = ALL_FIELDS
            .iter()
            .find(|f| f.canonical().len() == key.len() && f.canonical().eq_ignore_ascii_case(key))
        {
            return Some((1, *field));
        }
        self.foreign
            .iter()
            .position(|(name, _)| name.len() == key.len() && name.eq_ignore_ascii_case(key))
            .map(|i| {
                let (name, field) = &self.foreign[i];
                let other_case = usize::from(name != key);
                (2 + 2 * i + other_case, *field)
            })
    }
}

/// The field of one of causeway's own names as written (lowercase).
///
/// Hash maps hand over their headers in a different order each time, so a
/// branch on which name this is would be mispredicted about once a header.
/// Instead a perfect hash of the length and first byte picks the one
/// candidate, and the comparison is a few word compares whose outcome does
/// not depend on the name.
pub(crate) fn canonical_field(key: &str) -> Option<ContextField> {
    let bytes = key.as_bytes();
    let first = *bytes.first()?;
    // `slot` is below 32, `BY_SLOT`'s length.
    let field = BY_SLOT.get(slot(bytes.len(), first)).copied().flatten()?;
    same_name(field.canonical().as_bytes(), bytes).then_some(field)
}

/// The perfect hash of causeway's names: distinct for each of them (checked
/// when `BY_SLOT` is built, at compile time).
const fn slot(len: usize, first: u8) -> usize {
    len.wrapping_add((first as usize).wrapping_mul(5)) & 31
}

/// causeway's own fields by the slot of their names.
const BY_SLOT: [Option<ContextField>; 32] = {
    let mut table = [None; 32];
    let mut i = 0;
    while i < FIELDS {
        let name = ALL_FIELDS[i].canonical().as_bytes();
        let at = slot(name.len(), name[0]);
        assert!(
            table[at].is_none(),
            "two causeway header names share a slot"
        );
        table[at] = Some(ALL_FIELDS[i]);
        i += 1;
    }
    table
};

/// `a == b` for header names: from 8 to 24 bytes, as three overlapping
/// 8-byte words, with no branch on the bytes themselves.
fn same_name(a: &[u8], b: &[u8]) -> bool {
    let len = a.len();
    if len != b.len() {
        return false;
    }
    if !(8..=24).contains(&len) {
        return a == b;
    }
    let word = |s: &[u8], at: usize| {
        let mut w = [0; 8];
        w.copy_from_slice(&s[at..at + 8]);
        u64::from_ne_bytes(w)
    };
    let (middle, last) = ((len - 8) / 2, len - 8);
    (word(a, 0) ^ word(b, 0))
        | (word(a, middle) ^ word(b, middle))
        | (word(a, last) ^ word(b, last))
        == 0
}

/// causeway's own header names as an array by field ([`ContextField`]
/// index) of a carrier's name type, made at compile time by the given
/// `const fn` (e.g. `http::HeaderName::from_static`).
///
/// The table's length is [`FIELDS`] by its type; that its order is
/// [`ALL_FIELDS`]'s is checked at compile time where it is expanded.
macro_rules! names_by_field {
    ($from_static:path) => {
        $crate::propagation::names_by_field!(
            @ $from_static;
            TraceParent TraceState Baggage CorrelationId CausationId EventId EventType Source
            SchemaVersion
        )
    };
    (@ $from_static:path; $($field:ident)*) => {{
        const _: () = assert!(
            $crate::propagation::same_fields(
                &[$($crate::ContextField::$field),*],
                &$crate::propagation::ALL_FIELDS,
            ),
            "names_by_field! must list every ContextField in ALL_FIELDS order"
        );
        [$($from_static($crate::ContextField::$field.canonical())),*]
    }};
}
pub(crate) use names_by_field;

/// Whether `a` and `b` hold the same fields in the same order.
pub(crate) const fn same_fields(a: &[ContextField], b: &[ContextField]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] as usize != b[i] as usize {
            return false;
        }
        i += 1;
    }
    true
}

/// Where `field` is in [`ALL_FIELDS`]; fails to compile (from
/// [`ContextField::index`]) when it is not there.
const fn position(field: ContextField) -> usize {
    let mut i = 0;
    while i < FIELDS {
        if ALL_FIELDS[i] as usize == field as usize {
            return i;
        }
        i += 1;
    }
    panic!("a ContextField is missing from ALL_FIELDS")
}

// `ALL_FIELDS` is in declaration order, each field once: so
// `ALL_FIELDS[f.index()] == f`, `index()` is the discriminant, and every
// table by field (`[_; FIELDS]`) has a slot for every field.
const _: () = {
    let mut i = 0;
    while i < FIELDS {
        assert!(
            ALL_FIELDS[i] as usize == i && ALL_FIELDS[i].index() == i,
            "ALL_FIELDS must list the ContextField variants in declaration order"
        );
        i += 1;
    }
};

/// Every field, in declaration order, so `ALL_FIELDS[f.index()] == f`.
pub(crate) const ALL_FIELDS: [ContextField; FIELDS] = [
    ContextField::TraceParent,
    ContextField::TraceState,
    ContextField::Baggage,
    ContextField::CorrelationId,
    ContextField::CausationId,
    ContextField::EventId,
    ContextField::EventType,
    ContextField::Source,
    ContextField::SchemaVersion,
];

/// Raw header values by field, before cleaning and parsing, and where to
/// count the ones refused.
struct Values<'a> {
    raw: [Option<&'a str>; FIELDS],
    counters: &'a ContextCounters,
}

impl<'a> Values<'a> {
    fn raw(&self, field: ContextField) -> Option<&'a str> {
        // `index()` is below FIELDS (checked at compile time).
        self.raw.get(field.index()).copied().flatten()
    }

    /// The value if present and clean; an unclean one is counted.
    fn clean(&self, field: ContextField) -> Option<&'a str> {
        let raw = self.raw(field)?;
        let clean = clean_header_value(raw);
        if clean.is_none() {
            self.counters.count_invalid_value();
        }
        clean
    }

    /// The value parsed, if present and valid; an invalid one is counted.
    /// Ids and `traceparent` check their own characters (stricter than
    /// [`clean_header_value`]: no whitespace either) and length, so only
    /// the surrounding blanks are trimmed first.
    fn parsed<T: std::str::FromStr>(&self, field: ContextField) -> Option<T> {
        let raw = self.raw(field)?;
        let parsed = trim_blanks(raw).parse().ok();
        if parsed.is_none() {
            self.counters.count_invalid_value();
        }
        parsed
    }

    fn owned(&self, field: ContextField) -> Option<String> {
        self.clean(field).map(str::to_owned)
    }

    fn into_context(self) -> MessageContext {
        let traceparent: Option<TraceParent> = self.parsed(ContextField::TraceParent);
        let correlation: Option<CorrelationId> = self.parsed(ContextField::CorrelationId);
        if traceparent.is_none() && correlation.is_none() {
            self.counters.count_fresh_context();
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
            tracestate: self.owned(ContextField::TraceState),
            baggage: self.owned(ContextField::Baggage),
            correlation_id,
            causation_id: self.parsed(ContextField::CausationId),
            event_id: self
                .parsed(ContextField::EventId)
                .unwrap_or_else(EventId::generate),
            event_type: self.clean(ContextField::EventType).map(Into::into),
            source: self.clean(ContextField::Source).map(Into::into),
            schema_version: self.owned(ContextField::SchemaVersion),
            trace_continued: traceparent.is_some(),
        }
    }
}

/// A carrier causeway writes into: the write side of [`Carrier`].
///
/// Every OpenTelemetry `Injector` can be one (wrap a `&mut dyn Injector` in
/// [`InjectorCarrier`]): the provided method hands `set` an owned copy of
/// the value. Carriers that can store a header more cheaply override it: a
/// `HashMap` skips the lowercasing OpenTelemetry's own `Injector` does on
/// every key, and Kafka copies the value into librdkafka without an
/// intermediate `String`.
pub trait CarrierMut: Injector {
    /// Sets header `name` to `value`. `name` is one of causeway's names or a
    /// CloudEvents one, all lowercase ASCII; `value` has been checked: no
    /// control characters, at most
    /// [`MAX_HEADER_VALUE_LEN`](causeway_model::MAX_HEADER_VALUE_LEN) bytes.
    fn set_header(&mut self, name: &'static str, value: &str) {
        self.set(name, value.to_owned());
    }
}

/// OpenTelemetry's own carrier: causeway's names are lowercase already, so
/// they are stored as they are.
impl<S: std::hash::BuildHasher> CarrierMut for std::collections::HashMap<String, String, S> {
    fn set_header(&mut self, name: &'static str, value: &str) {
        self.insert(name.to_owned(), value.to_owned());
    }
}

/// Any OpenTelemetry `Injector`, written through `set()`.
pub struct InjectorCarrier<'a>(pub &'a mut dyn Injector);

impl std::fmt::Debug for InjectorCarrier<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InjectorCarrier")
    }
}

impl Injector for InjectorCarrier<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.set(key, value);
    }

    fn reserve(&mut self, additional: usize) {
        self.0.reserve(additional);
    }
}

impl CarrierMut for InjectorCarrier<'_> {}

/// A carrier causeway reads in one pass over its headers.
///
/// Every OpenTelemetry `Extractor` can be one: the provided method walks
/// `keys()` and `get()` (wrap a `&dyn Extractor` in [`ExtractorCarrier`]).
/// Carriers that can iterate their entries directly override it, which
/// saves a look-up (and, on some maps, an allocation) per header.
pub trait Carrier: Extractor {
    /// Calls `f` with each header's name and value. A carrier whose values
    /// may not be text passes one it cannot read as text as
    /// [`UNREADABLE`], so that it is refused and counted if its name is one
    /// causeway reads (the provided method sees only what `get()` returns).
    fn for_each_header<'a>(&'a self, f: &mut dyn FnMut(&'a str, &'a str)) {
        for key in self.keys() {
            if let Some(value) = self.get(key) {
                f(key, value);
            }
        }
    }

    /// Calls `f` with what the transport supplies outside its headers,
    /// under causeway's name for the field (AMQP's `message_id` as
    /// `event-id`, an HTTP request's method and path as `event-type`).
    /// Each is read only for a field that no header, in any spelling,
    /// supplied. None by default.
    fn for_each_fallback<'a>(&'a self, f: &mut dyn FnMut(&'a str, &'a str)) {
        let _ = f;
    }

    /// How many headers the carrier had to leave out of
    /// [`for_each_header`](Carrier::for_each_header) because it could not
    /// read even their names (Kafka: a key that is not UTF-8). Extraction
    /// counts each as an invalid value. None by default.
    fn skipped_headers(&self) -> u64 {
        0
    }
}

/// The value a [`Carrier`] passes for a header whose value is not text (not
/// UTF-8): a control character, which extraction refuses and counts.
pub const UNREADABLE: &str = "\u{0}";

/// OpenTelemetry's own carrier for the in-process bus and for tests.
impl<S: std::hash::BuildHasher> Carrier for std::collections::HashMap<String, String, S> {
    fn for_each_header<'a>(&'a self, f: &mut dyn FnMut(&'a str, &'a str)) {
        for (key, value) in self {
            f(key, value);
        }
    }
}

/// Any OpenTelemetry `Extractor`, read through `keys()` and `get()`.
#[derive(Clone, Copy)]
pub struct ExtractorCarrier<'a>(pub &'a dyn Extractor);

impl std::fmt::Debug for ExtractorCarrier<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ExtractorCarrier")
            .field(&self.0.keys())
            .finish()
    }
}

impl Extractor for ExtractorCarrier<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys()
    }
}

impl Carrier for ExtractorCarrier<'_> {}

/// Writes the context into `carrier` with the default [`Propagation`].
pub fn inject(context: &MessageContext, carrier: &mut dyn CarrierMut) {
    DEFAULT.inject(context, carrier);
}

/// Reads an incoming context with the default [`Propagation`] (every
/// foreign spelling in [`DEFAULT_FOREIGN_NAMES`]).
pub fn extract(carrier: &dyn Carrier) -> MessageContext {
    DEFAULT.extract(carrier)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

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
            trace_continued: true,
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
    fn each_canonical_name_is_recognised_as_written_and_in_another_case() {
        let propagation = Propagation::canonical_only();
        for field in ALL_FIELDS {
            let name = field.canonical();
            assert_eq!(propagation.rank_of(name), Some((0, field)), "{name}");
            let upper = name.to_ascii_uppercase();
            assert_eq!(propagation.rank_of(&upper), Some((1, field)), "{upper}");
        }
        assert_eq!(propagation.rank_of("event-kind"), None);
    }

    #[test]
    fn a_name_one_byte_off_a_canonical_one_is_not_taken_for_it() {
        for field in ALL_FIELDS {
            let name = field.canonical();
            for at in 0..name.len() {
                let mut changed = name.as_bytes().to_vec();
                changed[at] = if changed[at] == b'x' { b'y' } else { b'x' };
                let changed = String::from_utf8(changed).unwrap();
                assert_ne!(canonical_field(&changed), Some(field), "{changed}");
            }
            assert_eq!(canonical_field(&name[1..]), None);
            assert_eq!(canonical_field(&format!("{name}x")), None);
        }
        assert_eq!(canonical_field(""), None);
    }

    #[test]
    fn the_name_as_written_wins_over_another_casing_in_any_order() {
        for order in [
            ["correlation-id", "Correlation-Id"],
            ["Correlation-Id", "correlation-id"],
        ] {
            let headers: Vec<(String, String)> = order
                .iter()
                .map(|name| ((*name).to_owned(), format!("from-{name}")))
                .collect();
            let carrier = Pairs(headers);
            assert_eq!(
                extract(&carrier).correlation_id.as_str(),
                "from-correlation-id"
            );
        }
    }

    /// Headers in a given order, as a list (kept case, repeats allowed).
    struct Pairs(Vec<(String, String)>);

    impl Extractor for Pairs {
        fn get(&self, key: &str) -> Option<&str> {
            self.0
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
        }

        fn keys(&self) -> Vec<&str> {
            self.0.iter().map(|(k, _)| k.as_str()).collect()
        }
    }

    impl Carrier for Pairs {}

    #[test]
    fn a_foreign_name_as_configured_wins_over_it_in_another_case() {
        let propagation = Propagation::canonical_only()
            .with_foreign_name("X-Trace-Key", ContextField::CorrelationId);
        for order in [
            ["X-Trace-Key", "x-trace-key"],
            ["x-trace-key", "X-Trace-Key"],
        ] {
            let carrier = Pairs(
                order
                    .iter()
                    .map(|name| ((*name).to_owned(), format!("from-{name}")))
                    .collect(),
            );
            assert_eq!(
                propagation.extract(&carrier).correlation_id.as_str(),
                "from-X-Trace-Key"
            );
        }
    }

    #[test]
    fn a_hash_map_takes_causeway_s_names_as_they_are() {
        let mut map: HashMap<String, String> = HashMap::new();
        map.set_header(headers::CORRELATION_ID, "order-1");
        assert_eq!(map["correlation-id"], "order-1");
        let mut via_otel: HashMap<String, String> = HashMap::new();
        InjectorCarrier(&mut via_otel).set_header(headers::EVENT_ID, "evt-1");
        assert_eq!(via_otel["event-id"], "evt-1");
    }

    #[test]
    fn x_request_id_is_taken_as_the_correlation_id() {
        let headers = HashMap::from([("x-request-id".to_owned(), "req-42".to_owned())]);
        assert_eq!(extract(&headers).correlation_id.as_str(), "req-42");
    }

    #[test]
    fn malformed_values_start_fresh_and_are_counted_by_their_propagation() {
        let propagation = Propagation::default();
        let headers = HashMap::from([
            ("traceparent".to_owned(), "00-nonsense".to_owned()),
            ("correlation-id".to_owned(), "a\r\nSet-Cookie: x".to_owned()),
            ("event-id".to_owned(), "x".repeat(10_000)),
        ]);
        let got = propagation.extract(&headers);
        assert_ne!(got.correlation_id.as_str(), "a");
        assert_eq!(
            propagation.stats(),
            ContextStats {
                fresh_contexts: 1,
                invalid_values: 3
            }
        );
        // Another instance, even a clone, counts on its own.
        let other = propagation.clone();
        assert_eq!(other.stats(), ContextStats::default());
        other.extract(&HashMap::<String, String>::new());
        assert_eq!(other.stats().fresh_contexts, 1);
        assert_eq!(propagation.stats().fresh_contexts, 1);
    }

    #[test]
    fn an_unsafe_value_refused_on_injection_is_counted_by_its_propagation() {
        let propagation = Propagation::default();
        let mut sent = context();
        sent.event_type = Some("Evil\r\nX-Injected: 1".into());
        propagation.inject(&sent, &mut HashMap::new());
        assert_eq!(propagation.stats().invalid_values, 1);
        assert_eq!(propagation.stats().fresh_contexts, 0);
    }

    #[test]
    fn every_field_has_its_own_slot_in_declaration_order() {
        for (i, field) in ALL_FIELDS.into_iter().enumerate() {
            assert_eq!(field.index(), i);
        }
        let names: std::collections::HashSet<&str> =
            ALL_FIELDS.iter().map(|f| f.canonical()).collect();
        assert_eq!(names.len(), FIELDS);
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

    #[test]
    fn cloudevents_and_nservicebus_spellings_are_understood() {
        let cloudevents = HashMap::from([
            ("ce-id".to_owned(), "evt-1".to_owned()),
            ("ce-type".to_owned(), "com.example.order.placed".to_owned()),
            ("ce-source".to_owned(), "/orders".to_owned()),
            (
                "ce-traceparent".to_owned(),
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned(),
            ),
            ("ce-correlationid".to_owned(), "order-9".to_owned()),
            ("ce-causationid".to_owned(), "evt-0".to_owned()),
        ]);
        let got = extract(&cloudevents);
        assert_eq!(got.event_id.as_str(), "evt-1");
        assert_eq!(got.event_type.as_deref(), Some("com.example.order.placed"));
        assert_eq!(got.source.as_deref(), Some("/orders"));
        assert_eq!(got.correlation_id.as_str(), "order-9");
        assert_eq!(got.causation_id.unwrap().as_str(), "evt-0");
        assert_eq!(got.trace_id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");

        // OpenTelemetry's HashMap carrier keeps keys lowercase; matching
        // ignores case, so carriers that keep case (AMQP, NATS) match too.
        let nservicebus = HashMap::from([
            ("nservicebus.conversationid".to_owned(), "conv-1".to_owned()),
            ("nservicebus.relatedto".to_owned(), "msg-0".to_owned()),
            ("nservicebus.messageid".to_owned(), "msg-1".to_owned()),
        ]);
        let got = extract(&nservicebus);
        assert_eq!(
            (
                got.correlation_id.as_str(),
                got.causation_id.unwrap().as_str(),
                got.event_id.as_str()
            ),
            ("conv-1", "msg-0", "msg-1")
        );
    }

    #[test]
    fn a_preferred_foreign_name_wins_and_ours_win_over_all() {
        let headers = HashMap::from([
            ("x-request-id".to_owned(), "req-1".to_owned()),
            ("x-correlation-id".to_owned(), "corr-1".to_owned()),
        ]);
        assert_eq!(extract(&headers).correlation_id.as_str(), "corr-1");
        let mut headers = headers;
        headers.insert("correlation-id".to_owned(), "ours".to_owned());
        assert_eq!(extract(&headers).correlation_id.as_str(), "ours");
    }

    #[test]
    fn the_mapping_is_configurable() {
        let headers = HashMap::from([("x-trace-key".to_owned(), "k-7".to_owned())]);
        let custom = Propagation::canonical_only()
            .with_foreign_name("X-Trace-Key", ContextField::CorrelationId);
        assert_eq!(custom.extract(&headers).correlation_id.as_str(), "k-7");
        let without = Propagation::default().without_foreign_name("x-request-id");
        let req = HashMap::from([("x-request-id".to_owned(), "req-1".to_owned())]);
        assert_ne!(without.extract(&req).correlation_id.as_str(), "req-1");
    }

    #[test]
    fn cloudevents_output_writes_ce_headers_that_read_back() {
        let sent = context();
        let mut headers = HashMap::new();
        Propagation::default()
            .with_cloudevents_output(true)
            .inject(&sent, &mut headers);
        assert_eq!(headers["ce-specversion"], "1.0");
        assert_eq!(headers["ce-id"], sent.event_id.as_str());
        let only_ce: HashMap<String, String> = headers
            .into_iter()
            .filter(|(k, _)| k.starts_with("ce-"))
            .collect();
        let got = extract(&only_ce);
        assert_eq!((got.trace_id, got.span_id), (sent.trace_id, sent.span_id));
        assert_eq!(got.correlation_id, sent.correlation_id);
        assert_eq!(got.causation_id, sent.causation_id);
        assert_eq!(got.event_type, sent.event_type);
    }
}
