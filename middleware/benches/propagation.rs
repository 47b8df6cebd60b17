//! Benchmarks of what causeway adds to every message, each side by side in
//! one run with its baseline:
//!
//! - `context/*`: inject the full causeway context into a fresh carrier and
//!   extract it again, per carrier, against OpenTelemetry's bare
//!   `TraceContextPropagator` doing the same with `traceparent` (and an
//!   empty `tracestate`) on a `HashMap` (the baseline). Per carrier also:
//!   the bare propagator through the same carrier, and the carrier alone
//!   (the same six headers written and read back, nothing else).
//! - `record/*`: one `tracing` event inside a handler span written as a
//!   JSON line by `RecordLayer`, against tracing-subscriber's own JSON
//!   formatter, both into `io::sink()`.
//!
//! Allocations per operation are counted by a counting global allocator and
//! printed before the timings. Run: `cargo bench -p causeway-middleware
//! --all-features --bench propagation`.

#![allow(unsafe_code)] // a counting global allocator needs `unsafe impl GlobalAlloc`
#![allow(clippy::unwrap_used)] // bench set-up: a panic is the failure report

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};

use causeway_middleware::{
    HeaderMapExtractor, HeaderMapInjector, JsonLinesSink, MessageContext, RecordLayer, extract,
    inject,
};
use causeway_model::{CorrelationId, EventId, SpanId, TraceId};
use criterion::{Criterion, criterion_group, criterion_main};
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{
    SpanContext, SpanId as OtelSpanId, TraceContextExt, TraceFlags, TraceId as OtelTraceId,
    TraceState,
};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_subscriber::layer::SubscriberExt;

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards every call to the system allocator unchanged; it only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations_per_op(mut op: impl FnMut()) -> f64 {
    const N: u64 = 10_000;
    op();
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for _ in 0..N {
        op();
    }
    (ALLOCATIONS.load(Ordering::Relaxed) - before) as f64 / N as f64
}

/// A context in the middle of a flow: every causeway header but the
/// optional tracestate, baggage and schema version.
fn full_context() -> MessageContext {
    MessageContext {
        trace_id: TraceId::random(),
        span_id: SpanId::random(),
        parent_span_id: None,
        sampled: true,
        tracestate: None,
        baggage: None,
        correlation_id: CorrelationId::new("order-1234").unwrap(),
        causation_id: Some(EventId::generate()),
        event_id: EventId::generate(),
        event_type: Some("PaymentCaptured".into()),
        source: Some("payment".into()),
        schema_version: None,
        trace_continued: true,
    }
}

fn otel_context() -> opentelemetry::Context {
    let span = SpanContext::new(
        OtelTraceId::from_bytes(TraceId::random().to_bytes()),
        OtelSpanId::from_bytes(SpanId::random().to_bytes()),
        TraceFlags::SAMPLED,
        true,
        TraceState::default(),
    );
    opentelemetry::Context::new().with_remote_span_context(span)
}

/// The full context's headers as causeway writes them, for the
/// "carrier alone" cases: the same names and values, built once.
fn prebuilt_headers() -> Vec<(&'static str, String)> {
    let mut written = HashMap::new();
    inject(&full_context(), &mut written);
    causeway_model::headers::ALL
        .iter()
        .filter_map(|name| written.remove(*name).map(|value| (*name, value)))
        .collect()
}

/// The operations measured, by name. Each makes a fresh carrier, writes
/// into it and reads it back. Per carrier: causeway's full context,
/// OpenTelemetry's bare propagator through the same carrier, and the
/// carrier alone (the same six headers, prebuilt, written and read back as
/// text with nothing else: the floor any propagation pays on it).
type Case = (&'static str, Box<dyn FnMut()>);

fn cases() -> Vec<Case> {
    let mut cases: Vec<Case> = Vec::new();
    let headers = prebuilt_headers();

    let (propagator, cx) = (TraceContextPropagator::new(), otel_context());
    cases.push((
        "otel_bare_traceparent/hashmap",
        Box::new(move || {
            let mut carrier = HashMap::new();
            propagator.inject_context(&cx, &mut carrier);
            black_box(propagator.extract(&carrier));
        }),
    ));
    let context = full_context();
    cases.push((
        "causeway_full/hashmap",
        Box::new(move || {
            let mut carrier = HashMap::new();
            inject(&context, &mut carrier);
            black_box(extract(&carrier));
        }),
    ));
    let written = headers.clone();
    cases.push((
        "carrier_alone/hashmap",
        Box::new(move || {
            let mut carrier = HashMap::with_capacity(written.len());
            for (name, value) in &written {
                carrier.insert((*name).to_owned(), value.clone());
            }
            for (name, value) in &carrier {
                black_box((name.as_str(), value.as_str()));
            }
        }),
    ));

    let (propagator, cx) = (TraceContextPropagator::new(), otel_context());
    cases.push((
        "otel_bare_traceparent/http_headermap",
        Box::new(move || {
            let mut carrier = http::HeaderMap::new();
            propagator.inject_context(&cx, &mut HeaderMapInjector(&mut carrier));
            black_box(propagator.extract(&HeaderMapExtractor(&carrier)));
        }),
    ));
    let context = full_context();
    cases.push((
        "causeway_full/http_headermap",
        Box::new(move || {
            let mut carrier = http::HeaderMap::new();
            inject(&context, &mut HeaderMapInjector(&mut carrier));
            black_box(extract(&HeaderMapExtractor(&carrier)));
        }),
    ));
    let written = headers.clone();
    cases.push((
        "carrier_alone/http_headermap",
        Box::new(move || {
            let mut carrier = http::HeaderMap::with_capacity(written.len());
            for (name, value) in &written {
                carrier.insert(
                    http::HeaderName::from_static(name),
                    http::HeaderValue::from_str(value).unwrap(),
                );
            }
            for (name, value) in &carrier {
                black_box((name.as_str(), value.to_str().ok()));
            }
        }),
    ));

    #[cfg(feature = "amqp")]
    {
        use causeway_middleware::amqp::{FieldTableInjector, PropertiesExtractor};
        use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
        let (propagator, cx) = (TraceContextPropagator::new(), otel_context());
        cases.push((
            "otel_bare_traceparent/amqp_fieldtable",
            Box::new(move || {
                let mut table = FieldTable::default();
                propagator.inject_context(&cx, &mut FieldTableInjector(&mut table));
                let properties = lapin::BasicProperties::default().with_headers(table);
                black_box(propagator.extract(&PropertiesExtractor(&properties)));
            }),
        ));
        let context = full_context();
        cases.push((
            "causeway_full/amqp_fieldtable",
            Box::new(move || {
                let mut table = FieldTable::default();
                inject(&context, &mut FieldTableInjector(&mut table));
                let properties = lapin::BasicProperties::default().with_headers(table);
                black_box(extract(&PropertiesExtractor(&properties)));
            }),
        ));
        let written = headers.clone();
        cases.push((
            "carrier_alone/amqp_fieldtable",
            Box::new(move || {
                let mut table = FieldTable::default();
                for (name, value) in &written {
                    table.insert(
                        ShortString::from(*name),
                        AMQPValue::LongString(LongString::from(value.clone())),
                    );
                }
                let properties = lapin::BasicProperties::default().with_headers(table);
                for (name, value) in properties.headers().as_ref().unwrap() {
                    if let AMQPValue::LongString(text) = value {
                        black_box((name.as_str(), std::str::from_utf8(text.as_bytes()).ok()));
                    }
                }
            }),
        ));
    }

    #[cfg(feature = "nats")]
    {
        use causeway_middleware::nats::{HeaderExtractor, HeaderInjector};
        let (propagator, cx) = (TraceContextPropagator::new(), otel_context());
        cases.push((
            "otel_bare_traceparent/nats_headermap",
            Box::new(move || {
                let mut carrier = async_nats::HeaderMap::new();
                propagator.inject_context(&cx, &mut HeaderInjector(&mut carrier));
                black_box(propagator.extract(&HeaderExtractor(&carrier)));
            }),
        ));
        let context = full_context();
        cases.push((
            "causeway_full/nats_headermap",
            Box::new(move || {
                let mut carrier = async_nats::HeaderMap::new();
                inject(&context, &mut HeaderInjector(&mut carrier));
                black_box(extract(&HeaderExtractor(&carrier)));
            }),
        ));
        let written = headers.clone();
        cases.push((
            "carrier_alone/nats_headermap",
            Box::new(move || {
                let mut carrier = async_nats::HeaderMap::new();
                for (name, value) in &written {
                    carrier.insert(
                        async_nats::HeaderName::from_static(name),
                        async_nats::HeaderValue::from(value.clone()),
                    );
                }
                for (name, values) in carrier.iter() {
                    let name: &str = name.as_ref();
                    black_box((name, values.first().map(async_nats::HeaderValue::as_str)));
                }
            }),
        ));
    }

    #[cfg(feature = "kafka")]
    {
        use causeway_middleware::kafka::{HeaderExtractor, HeaderInjector};
        use rdkafka::message::{Header, Headers, OwnedHeaders};
        let (propagator, cx) = (TraceContextPropagator::new(), otel_context());
        cases.push((
            "otel_bare_traceparent/kafka_owned_headers",
            Box::new(move || {
                let mut injector = HeaderInjector::new();
                propagator.inject_context(&cx, &mut injector);
                let headers = injector.into_headers();
                black_box(propagator.extract(&HeaderExtractor::new(&headers)));
            }),
        ));
        let context = full_context();
        cases.push((
            "causeway_full/kafka_owned_headers",
            Box::new(move || {
                let mut injector = HeaderInjector::new();
                inject(&context, &mut injector);
                let headers = injector.into_headers();
                black_box(extract(&HeaderExtractor::new(&headers)));
            }),
        ));
        let written = headers.clone();
        cases.push((
            "carrier_alone/kafka_owned_headers",
            Box::new(move || {
                let mut carrier = OwnedHeaders::new_with_capacity(written.len());
                for (name, value) in &written {
                    carrier = carrier.insert(Header {
                        key: name,
                        value: Some(value.as_bytes()),
                    });
                }
                for header in carrier.iter() {
                    black_box((header.key, header.value.map(std::str::from_utf8)));
                }
            }),
        ));
    }

    // Extraction alone, from a carrier filled once.
    let propagator = TraceContextPropagator::new();
    let mut filled = HashMap::new();
    propagator.inject_context(&otel_context(), &mut filled);
    cases.push((
        "extract_only/otel_bare_traceparent/hashmap",
        Box::new(move || {
            black_box(propagator.extract(&filled));
        }),
    ));
    let mut filled = HashMap::new();
    inject(&full_context(), &mut filled);
    cases.push((
        "extract_only/causeway_full/hashmap",
        Box::new(move || {
            black_box(extract(&filled));
        }),
    ));
    let mut filled = http::HeaderMap::new();
    inject(&full_context(), &mut HeaderMapInjector(&mut filled));
    cases.push((
        "extract_only/causeway_full/http_headermap",
        Box::new(move || {
            black_box(extract(&HeaderMapExtractor(&filled)));
        }),
    ));
    cases
}

fn context(c: &mut Criterion) {
    println!("\nallocations per inject+extract:");
    for (name, mut op) in cases() {
        println!("  {name:<40} {:>6.1}", allocations_per_op(&mut op));
    }
    let mut group = c.benchmark_group("context");
    for (name, mut op) in cases() {
        group.bench_function(name, |b| b.iter(&mut op));
    }
    group.finish();
}

fn emit_in_handler_span() {
    let span = tracing::info_span!(
        causeway_middleware::HANDLE_SPAN,
        causeway.service = "payment",
        causeway.trace_id = "4bf92f3577b34da6a3ce929d0e0e4736",
        causeway.span_id = "00f067aa0ba902b7",
        messaging.message.id = "01a2034e-af76-70ea-b5ff-288a8fcf0307",
        messaging.message.conversation_id = "order-1234",
    );
    let _entered = span.enter();
    for _ in 0..100 {
        tracing::info!(order_id = 1234, amount_cents = 1999, "charging card");
    }
}

fn record(c: &mut Criterion) {
    let ours = tracing_subscriber::registry().with(RecordLayer::new(
        "payment",
        JsonLinesSink::new(std::io::sink()),
    ));
    let theirs = tracing_subscriber::fmt()
        .json()
        .with_current_span(true)
        .with_span_list(false)
        .with_writer(std::io::sink)
        .finish();
    println!("\nallocations per 100 events in a handler span:");
    tracing::subscriber::with_default(ours, || {
        println!(
            "  {:<40} {:>6.1}",
            "causeway_record_layer",
            allocations_per_op(emit_in_handler_span)
        );
    });
    tracing::subscriber::with_default(theirs, || {
        println!(
            "  {:<40} {:>6.1}",
            "tracing_subscriber_json",
            allocations_per_op(emit_in_handler_span)
        );
    });

    let mut group = c.benchmark_group("record");
    let ours = tracing_subscriber::registry().with(RecordLayer::new(
        "payment",
        JsonLinesSink::new(std::io::sink()),
    ));
    tracing::subscriber::with_default(ours, || {
        group.bench_function("causeway_record_layer/100_events", |b| {
            b.iter(emit_in_handler_span)
        });
    });
    let theirs = tracing_subscriber::fmt()
        .json()
        .with_current_span(true)
        .with_span_list(false)
        .with_writer(std::io::sink)
        .finish();
    tracing::subscriber::with_default(theirs, || {
        group.bench_function("tracing_subscriber_json/100_events", |b| {
            b.iter(emit_in_handler_span)
        });
    });
    group.finish();
}

criterion_group!(benches, context, record);
criterion_main!(benches);
