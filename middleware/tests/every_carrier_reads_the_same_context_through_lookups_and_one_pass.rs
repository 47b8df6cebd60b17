//! One conformance check run against every carrier: the same header sets
//! (causeway's names, other casings, foreign spellings, bad values) are
//! fed to each, and each carrier's two read paths must give the same
//! context and the same counts: the one pass
//! ([`Carrier::for_each_header`], what `Propagation::extract` uses) and
//! the lookups (`Extractor::keys` and `Extractor::get`, what OpenTelemetry
//! propagators use, through `ExtractorCarrier`). A lookup of causeway's own
//! name must also give the value extraction took for that field.
//!
//! Carriers compiled in follow the features (`--all-features` runs all:
//! `HashMap`, `http::HeaderMap`, AMQP `FieldTable`, NATS `HeaderMap`, Kafka
//! headers, and `ExtractorCarrier` over a plain list).

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

use std::collections::HashMap;

use causeway_middleware::{
    Carrier, ContextStats, Extractor, ExtractorCarrier, MessageContext, Propagation,
};
use causeway_model::{CorrelationId, EventId, clean_header_value, headers, trim_blanks};

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// A named set of headers, in sending order, and whether no two of its
/// names are the same name in another case (carriers that lowercase names,
/// like `http::HeaderMap`, merge those, so only such sets read the same in
/// every carrier).
struct HeaderSet {
    name: &'static str,
    headers: Vec<(String, String)>,
    one_spelling_per_name: bool,
}

fn set(name: &'static str, pairs: &[(&str, &str)]) -> HeaderSet {
    let headers: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let mut lower: Vec<String> = headers
        .iter()
        .map(|(k, _)| k.to_ascii_lowercase())
        .collect();
    lower.sort_unstable();
    let before = lower.len();
    lower.dedup();
    HeaderSet {
        name,
        one_spelling_per_name: lower.len() == before,
        headers,
    }
}

fn header_sets() -> Vec<HeaderSet> {
    let oversized = "e".repeat(10_000);
    let long_state = format!("vendor={}", "s".repeat(600));
    vec![
        set("empty", &[]),
        set(
            "unrelated headers only",
            &[("content-type", "application/json"), ("x-custom", "1")],
        ),
        set(
            "causeway's names",
            &[
                (headers::TRACEPARENT, TRACEPARENT),
                (headers::TRACESTATE, "vendor=abc"),
                (headers::BAGGAGE, "tenant=acme"),
                (headers::CORRELATION_ID, "order-1234"),
                (headers::CAUSATION_ID, "evt-0"),
                (headers::EVENT_ID, "evt-1"),
                (headers::EVENT_TYPE, "OrderPlaced"),
                (headers::EVENT_SOURCE, "order"),
                (headers::SCHEMA_VERSION, "2"),
            ],
        ),
        set(
            "causeway's names in other casings",
            &[
                ("Traceparent", TRACEPARENT),
                ("TRACESTATE", "vendor=abc"),
                ("Baggage", "tenant=acme"),
                ("Correlation-Id", "order-1234"),
                ("CAUSATION-ID", "evt-0"),
                ("Event-Id", "evt-1"),
                ("Event-Type", "OrderPlaced"),
                ("EVENT-SOURCE", "order"),
                ("Schema-Version", "2"),
            ],
        ),
        set(
            "one name in several casings",
            &[
                ("Correlation-Id", "mixed"),
                ("correlation-id", "exact"),
                ("CORRELATION-ID", "upper"),
                ("Event-Type", "Mixed"),
                ("EVENT-TYPE", "Upper"),
                (headers::TRACEPARENT, TRACEPARENT),
            ],
        ),
        set(
            "CloudEvents",
            &[
                ("ce-specversion", "1.0"),
                ("ce-id", "evt-1"),
                ("ce-type", "com.example.order.placed"),
                ("ce-source", "/orders"),
                ("ce-traceparent", TRACEPARENT),
                ("ce-correlationid", "order-9"),
                ("ce-causationid", "evt-0"),
                ("ce-dataschema", "https://example.com/order/v2"),
            ],
        ),
        set(
            "NServiceBus",
            &[
                ("NServiceBus.ConversationId", "conv-1"),
                ("NServiceBus.RelatedTo", "msg-0"),
                ("NServiceBus.MessageId", "msg-1"),
                ("NServiceBus.EnclosedMessageTypes", "Shop.OrderPlaced"),
                ("NServiceBus.OriginatingEndpoint", "Shop.Sales"),
            ],
        ),
        set(
            "MassTransit and generic ids",
            &[
                ("ConversationId", "conv-2"),
                ("InitiatorId", "msg-5"),
                ("MessageId", "msg-6"),
                ("x-request-id", "req-1"),
                ("Nats-Msg-Id", "nats-1"),
            ],
        ),
        set(
            "foreign spellings beside causeway's",
            &[
                ("x-request-id", "req-1"),
                ("x-correlation-id", "corr-1"),
                (headers::CORRELATION_ID, "ours"),
                ("ce-id", "ce-evt"),
                ("message-id", "msg-evt"),
                (headers::EVENT_ID, "our-evt"),
                ("ce-type", "ce.type"),
            ],
        ),
        set(
            "a plain OpenTelemetry sender",
            &[
                (headers::TRACEPARENT, TRACEPARENT),
                (headers::TRACESTATE, "rojo=00f067aa0ba902b7"),
            ],
        ),
        set(
            "bad values",
            &[
                (headers::TRACEPARENT, "00-nonsense"),
                (headers::CORRELATION_ID, "order 1"),
                (headers::EVENT_ID, &oversized),
                (headers::EVENT_TYPE, "Order\tPlaced"),
                (headers::CAUSATION_ID, ""),
                (headers::EVENT_SOURCE, "   "),
                (headers::TRACESTATE, &long_state),
                (headers::BAGGAGE, "tenant=acme"),
            ],
        ),
        set(
            "a bad value of ours hides a good foreign one",
            &[
                (headers::CORRELATION_ID, "order 1"),
                ("x-correlation-id", "corr-1"),
                ("Event-Id", "é"),
                ("ce-id", "ce-evt"),
            ],
        ),
        set(
            "text beyond ASCII and blanks around ids",
            &[
                (headers::EVENT_TYPE, "Commande passée"),
                (headers::EVENT_SOURCE, "café"),
                (headers::CORRELATION_ID, "  order-7\t"),
                ("Traceparent", TRACEPARENT),
            ],
        ),
    ]
}

/// Headers in a given order, names as written, as a plain OpenTelemetry
/// `Extractor` (for `ExtractorCarrier`).
struct Pairs<'a>(&'a [(String, String)]);

impl Extractor for Pairs<'_> {
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

/// Builds every carrier compiled in from `set` and calls `check` with each.
fn for_each_carrier(set: &HeaderSet, check: &mut dyn FnMut(&str, &dyn Carrier)) {
    // OpenTelemetry's `HashMap` carrier holds names lowercase (its
    // `Injector` lowercases them, its `get` looks them up lowercased), so
    // it is filled that way; the first value of a name is kept, as in the
    // other carriers.
    let mut map: HashMap<String, String> = HashMap::new();
    for (name, value) in &set.headers {
        map.entry(name.to_ascii_lowercase())
            .or_insert_with(|| value.clone());
    }
    check("HashMap", &map);

    let pairs = Pairs(&set.headers);
    check("ExtractorCarrier", &ExtractorCarrier(&pairs));

    #[cfg(feature = "http")]
    {
        use causeway_middleware::HeaderMapExtractor;
        use http::{HeaderMap, HeaderName, HeaderValue};
        let mut map = HeaderMap::new();
        for (name, value) in &set.headers {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_bytes(value.as_bytes()).unwrap(),
            );
        }
        check("http::HeaderMap", &HeaderMapExtractor(&map));
    }

    #[cfg(feature = "amqp")]
    {
        use causeway_middleware::amqp::PropertiesExtractor;
        use lapin::BasicProperties;
        use lapin::types::{AMQPValue, FieldTable, LongString};
        let mut table = FieldTable::default();
        for (name, value) in &set.headers {
            table.insert(
                name.as_str().into(),
                AMQPValue::LongString(LongString::from(value.as_str())),
            );
        }
        let properties = BasicProperties::default().with_headers(table);
        check("AMQP FieldTable", &PropertiesExtractor(&properties));
    }

    #[cfg(feature = "nats")]
    {
        use async_nats::{HeaderMap, HeaderName, HeaderValue};
        use causeway_middleware::nats::HeaderExtractor;
        let mut map = HeaderMap::new();
        for (name, value) in &set.headers {
            map.append(
                name.parse::<HeaderName>().unwrap(),
                value.parse::<HeaderValue>().unwrap(),
            );
        }
        check("NATS HeaderMap", &HeaderExtractor(&map));
    }

    #[cfg(feature = "kafka")]
    {
        use causeway_middleware::kafka::HeaderExtractor;
        use rdkafka::message::{Header, OwnedHeaders};
        let owned = set.headers.iter().fold(OwnedHeaders::new(), |h, (k, v)| {
            h.insert(Header {
                key: k.as_str(),
                value: Some(v.as_bytes()),
            })
        });
        check("Kafka OwnedHeaders", &HeaderExtractor::new(&owned));
        check(
            "Kafka BorrowedHeaders",
            &HeaderExtractor::new(owned.as_borrowed()),
        );
    }
}

/// The context as text, with what extraction generated (a fresh trace, a
/// generated correlation or event id: values found in no header) replaced
/// by a marker, so two extractions of the same headers compare equal.
fn comparable(context: &MessageContext, set: &HeaderSet) -> String {
    let sent = |id: &str| set.headers.iter().any(|(_, v)| v.contains(id));
    let mut context = context.clone();
    let mut fresh_trace = false;
    if !context.trace_continued {
        fresh_trace = true;
        context.trace_id = causeway_model::TraceId::from_bytes([1; 16]).unwrap();
        context.span_id = causeway_model::SpanId::from_bytes([1; 8]).unwrap();
    }
    if !sent(context.correlation_id.as_str()) {
        context.correlation_id = CorrelationId::new("generated").unwrap();
    }
    if !sent(context.event_id.as_str()) {
        context.event_id = EventId::new("generated").unwrap();
    }
    format!("fresh trace: {fresh_trace}, {context:?}")
}

/// What the one pass took for each field that a lookup of causeway's own
/// name answers with a usable value: that value.
fn check_lookups_of_our_names(carrier: &dyn Carrier, got: &MessageContext, what: &str) {
    let text = |name| carrier.get(name).and_then(clean_header_value);
    let id = |name| carrier.get(name).map(trim_blanks);
    if let Some(value) = id(headers::CORRELATION_ID).and_then(|v| v.parse::<CorrelationId>().ok()) {
        assert_eq!(got.correlation_id, value, "{what}: correlation-id");
    }
    if let Some(value) = id(headers::EVENT_ID).and_then(|v| v.parse::<EventId>().ok()) {
        assert_eq!(got.event_id, value, "{what}: event-id");
    }
    if let Some(value) = id(headers::CAUSATION_ID).and_then(|v| v.parse::<EventId>().ok()) {
        assert_eq!(got.causation_id, Some(value), "{what}: causation-id");
    }
    if let Some(value) = text(headers::EVENT_TYPE) {
        assert_eq!(got.event_type.as_deref(), Some(value), "{what}: event-type");
    }
    if let Some(value) = text(headers::EVENT_SOURCE) {
        assert_eq!(got.source.as_deref(), Some(value), "{what}: event-source");
    }
    if let Some(value) = text(headers::TRACESTATE) {
        assert_eq!(got.tracestate.as_deref(), Some(value), "{what}: tracestate");
    }
    if let Some(value) = text(headers::BAGGAGE) {
        assert_eq!(got.baggage.as_deref(), Some(value), "{what}: baggage");
    }
    if let Some(value) = text(headers::SCHEMA_VERSION) {
        assert_eq!(
            got.schema_version.as_deref(),
            Some(value),
            "{what}: schema-version"
        );
    }
}

#[test]
fn every_carrier_gives_the_same_context_through_lookups_and_through_one_pass() {
    let mut carriers_seen = Vec::new();
    for set in header_sets() {
        let mut first: Option<(String, String)> = None;
        for_each_carrier(&set, &mut |carrier_name, carrier| {
            let what = format!("{carrier_name}, {}", set.name);
            let one_pass = Propagation::default();
            let lookups = Propagation::default();
            let by_one_pass = one_pass.extract(carrier);
            let by_lookups = lookups.extract(&ExtractorCarrier(carrier));
            assert_eq!(
                comparable(&by_one_pass, &set),
                comparable(&by_lookups, &set),
                "{what}"
            );
            assert_eq!(one_pass.stats(), lookups.stats(), "{what}: counts");
            check_lookups_of_our_names(carrier, &by_one_pass, &what);

            // Where no carrier can merge two names, every carrier reads the
            // set alike.
            let seen = comparable(&by_one_pass, &set);
            match &first {
                Some((by, expected)) if set.one_spelling_per_name => {
                    assert_eq!(&seen, expected, "{what}, as {by} read it");
                }
                Some(_) => {}
                None => first = Some((carrier_name.to_owned(), seen)),
            }
            if !carriers_seen.contains(&carrier_name.to_owned()) {
                carriers_seen.push(carrier_name.to_owned());
            }
        });
    }
    let mut expected = vec!["HashMap", "ExtractorCarrier"];
    if cfg!(feature = "http") {
        expected.push("http::HeaderMap");
    }
    if cfg!(feature = "amqp") {
        expected.push("AMQP FieldTable");
    }
    if cfg!(feature = "nats") {
        expected.push("NATS HeaderMap");
    }
    if cfg!(feature = "kafka") {
        expected.extend(["Kafka OwnedHeaders", "Kafka BorrowedHeaders"]);
    }
    assert_eq!(carriers_seen, expected);
}

#[test]
fn the_header_sets_exercise_what_they_are_named_for() {
    // Guards the fixture: the sets must really hold bad values, foreign
    // spellings and casings, or the conformance check above proves little.
    let propagation = Propagation::default();
    let sets = header_sets();
    let read = |name: &str| {
        let set = sets.iter().find(|s| s.name == name).unwrap();
        let map: HashMap<String, String> = set
            .headers
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
            .collect();
        propagation.extract(&map)
    };
    let bad = Propagation::default();
    let set = sets.iter().find(|s| s.name == "bad values").unwrap();
    let map: HashMap<String, String> = set.headers.iter().cloned().collect();
    bad.extract(&map);
    assert_eq!(
        bad.stats(),
        ContextStats {
            fresh_contexts: 1,
            invalid_values: 7
        }
    );
    assert_eq!(read("CloudEvents").correlation_id.as_str(), "order-9");
    assert_eq!(read("NServiceBus").correlation_id.as_str(), "conv-1");
    assert_eq!(
        read("foreign spellings beside causeway's")
            .correlation_id
            .as_str(),
        "ours"
    );
    assert_eq!(
        read("causeway's names in other casings")
            .event_type
            .as_deref(),
        Some("OrderPlaced")
    );
    assert!(!sets.iter().all(|s| s.one_spelling_per_name));
}
