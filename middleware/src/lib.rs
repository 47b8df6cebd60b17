//! causeway middleware: correlation context in event headers, and a
//! structured lifecycle record for every publish and every handling.
//!
//! A service creates one [`Service`], publishes through
//! [`Service::publish`] (which injects the context into the message's
//! headers and writes a `published` record) and wraps each handler in
//! [`Service::handle`] (which extracts the context, writes `received`, then
//! `handled` with its duration or `failed` with the error). Records are
//! written by [`RecordLayer`], a tracing-subscriber layer that also stamps
//! the flow's ids on every ordinary `tracing` event inside a handler.
//!
//! Tracing never fails or slows a user's message: a missing or malformed
//! incoming header starts a fresh context and is counted by the service
//! that read it ([`Service::context_stats`]; [`context_stats`] is the sum
//! over the process); values written into headers are bounded and free of
//! control characters.
//!
//! # Transports and features
//!
//! | feature | module | carrier |
//! |---|---|---|
//! | `bus` (default) | [`Bus`] | `HashMap<String, String>` |
//! | `http` (default) | `http` | `http::HeaderMap`: a tower layer for servers, `publish_headers` for clients |
//! | `axum` | `http` | events named after axum's matched route (`GET /orders/{id}`) behind `route_layer` |
//! | `amqp` | `amqp` | lapin `FieldTable` + `message_id`/`correlation_id` properties |
//! | `nats` | `nats` | async-nats `HeaderMap`, JetStream `Nats-Msg-Id` |
//! | `kafka` | `kafka` | rdkafka `OwnedHeaders` / `Headers` (builds librdkafka) |
//! | `otel` (default) | | producer and consumer spans through tracing-opentelemetry |
//!
//! Each transport module documents a complete publish-and-consume example,
//! and `middleware/examples/<transport>.rs` runs one against the real
//! broker (`cargo run -p causeway-middleware --example amqp --features
//! amqp`). Header spellings of other systems are read through
//! [`Propagation`]; [`CausewayPropagator`] offers the same as an
//! OpenTelemetry `TextMapPropagator` (for `global::set_text_map_propagator`
//! and any instrumentation that propagates through OpenTelemetry).
//!
//! # One API for every transport
//!
//! Every transport module (`amqp`, `nats`, `kafka`, and `http` where it
//! applies) names the same jobs the same way, with the same arguments:
//!
//! | job | function | returns |
//! |---|---|---|
//! | publish an event of a new flow (or of a context you hold) | `publish_headers(&service, parent: Option<&MessageContext>, Publish)` | the transport's headers (AMQP: `BasicProperties`) and the event's context |
//! | publish an event caused by the one being handled | `publish_child_headers(&handling, Publish)` | the same |
//! | handle a delivery | `handle(&service, &message, consumer_group, handler)` | the handler's result |
//! | report a redelivery | `redelivery(&message) -> Option<u32>` where the broker redelivers (`amqp`, NATS JetStream); `handle` records it as `retried` | the retry attempt |
//!
//! NATS JetStream has its own forms, `publish_jetstream_headers`,
//! `publish_child_jetstream_headers` (they also set `Nats-Msg-Id`) and
//! `handle_jetstream` (which reads the delivery count); HTTP's handling is
//! the `http::CausewayLayer`, and `http::publish_request` writes into a
//! request's own `HeaderMap`. Kafka and core NATS do not redeliver.
//!
//! `messaging.system` is the transport's own (`amqp::SYSTEM`,
//! `nats::SYSTEM`, `kafka::SYSTEM`, `http::SYSTEM`) unless the caller chose
//! another with [`Publish::system`], which every `publish_*` function
//! keeps. Anything else (another system or destination on the consumer
//! side, your own retry count, a message type the module does not take):
//! call [`Service::handle`] with the module's carrier and a [`Consume`]
//! of your own. A handler is any [`Handler`]: a closure
//! `|handling| async move { ... }` returning `Result<T, E>`.
//!
//! The former names still work, deprecated: `amqp::publish_properties`
//! (now `publish_headers`, with `with_content_type` chained),
//! `amqp::handle_delivery` (`handle`), `nats::handle_message` (`handle`),
//! `nats::handle_jetstream_message` (`handle_jetstream`),
//! `nats::jetstream_publish_headers` (`publish_jetstream_headers`).
//!
//! # A transport of your own
//!
//! A transport of your own needs a carrier each way: [`CarrierMut`] to
//! write (any OpenTelemetry `Injector` through [`InjectorCarrier`]) and
//! [`Carrier`] to read (any `Extractor` through [`ExtractorCarrier`]).
//! Their provided methods are enough; overriding `set_header` and
//! `for_each_header` makes them cheaper.
//!
//! ```
//! use std::collections::HashMap;
//! use causeway_middleware::{Consume, Publish, Service};
//!
//! # tokio_test_block(async {
//! let order = Service::new("order");
//! let payment = Service::new("payment");
//!
//! let mut headers = HashMap::new();
//! let placed = order.publish(None, Publish::new("OrderPlaced", "orders"), &mut headers);
//!
//! let seen = payment
//!     .handle(&headers, Consume::new("orders", "payment"), |handling| async move {
//!         tracing::info!("charging card"); // carries the flow's ids
//!         Ok::<_, std::io::Error>(handling.context().correlation_id.clone())
//!     })
//!     .await
//!     .unwrap();
//! assert_eq!(seen, placed.correlation_id);
//! # });
//! # fn tokio_test_block(f: impl std::future::Future<Output = ()>) {
//! #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
//! # }
//! ```

#[cfg(feature = "bus")]
mod bus;
#[cfg(feature = "http")]
mod carriers;

// Each transport is a public module behind its own feature, so its types
// read as `causeway_middleware::amqp::...` and vanish with the feature.
#[cfg(feature = "amqp")]
pub mod amqp;
mod context;
#[cfg(feature = "http")]
pub mod http;
#[cfg(feature = "kafka")]
pub mod kafka;
mod layer;
#[cfg(feature = "nats")]
pub mod nats;
mod otel;
mod propagation;
mod propagator;
mod service;
mod sink;

#[cfg(feature = "bus")]
pub use bus::{Bus, BusError, BusMessage, Subscription};
#[cfg(feature = "http")]
pub use carriers::{HeaderMapExtractor, HeaderMapInjector};
pub use context::{ContextStats, MessageContext, context_stats};
pub use layer::RecordLayer;
pub use opentelemetry::propagation::{Extractor, Injector};
pub use propagation::{
    Carrier, CarrierMut, ContextField, DEFAULT_FOREIGN_NAMES, ExtractorCarrier, InjectorCarrier,
    Propagation, UNREADABLE, extract, inject,
};
pub use propagator::{CausewayPropagator, message_context};
pub use service::{Consume, Handler, Handling, Publish, Service};
pub use sink::{
    DirectorySink, JsonLinesSink, MemorySink, RecordSink, RotatingFileSink, Rotation, write_record,
};

/// The `tracing` target of lifecycle records.
pub const LIFECYCLE_TARGET: &str = "causeway::lifecycle";
/// The name of the span every handler runs in (an OpenTelemetry consumer span).
pub const HANDLE_SPAN: &str = "causeway.handle";
/// The name of the span around each publish (an OpenTelemetry producer span).
pub const PUBLISH_SPAN: &str = "causeway.publish";
