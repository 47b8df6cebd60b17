//! AMQP 0-9-1 with lapin: causeway's context in a message's headers
//! `FieldTable`, with AMQP's own `message_id`, `correlation_id`, `type`
//! and `app_id` properties set on publish and read as a fallback on
//! receipt.
//!
//! [`FieldTableInjector`] writes the context as long-string headers;
//! [`PropertiesExtractor`] reads it back from a delivery's properties,
//! taking text from long strings, short strings and UTF-8 byte arrays and
//! ignoring every other AMQP type. [`publish_headers`],
//! [`publish_child_headers`] and [`handle`] (which also records a
//! [`redelivery`]) wrap [`Service::publish`] and [`Service::handle`] for
//! lapin's types, with the same names and shapes as in the other transport
//! modules (see the [crate documentation](crate#one-api-for-every-transport));
//! the application still declares, publishes, consumes and acknowledges
//! with lapin itself.
//!
//! This module must not talk to the broker, and must not judge header
//! values: what comes off the wire goes through [`extract`](crate::extract),
//! which bounds, cleans and counts it. A header that cannot be read as text
//! is counted, never a reason to fail or panic.
//!
//! ```no_run
//! use causeway_middleware::{Publish, Service, amqp};
//! use futures_util::StreamExt;
//! use lapin::options::{
//!     BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions,
//! };
//! use lapin::types::FieldTable;
//! use lapin::{Connection, ConnectionProperties};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let connection =
//!     Connection::connect("amqp://127.0.0.1:5672/%2f", ConnectionProperties::default()).await?;
//! let channel = connection.create_channel().await?;
//!
//! // Publishing: the properties carry the context and AMQP's own ids.
//! let order = Service::new("order");
//! let (properties, _placed) =
//!     amqp::publish_headers(&order, None, Publish::new("OrderPlaced", "orders"));
//! let properties = properties.with_content_type("application/json".into());
//! channel
//!     .basic_publish(
//!         "".into(),
//!         "orders".into(),
//!         BasicPublishOptions::default(),
//!         br#"{"order":1234}"#,
//!         properties,
//!     )
//!     .await?
//!     .await?;
//!
//! // Consuming: each delivery is handled inside its flow; ack as usual.
//! let payment = Service::new("payment");
//! let mut deliveries = channel
//!     .basic_consume(
//!         "orders".into(),
//!         "payment".into(),
//!         BasicConsumeOptions::default(),
//!         FieldTable::default(),
//!     )
//!     .await?;
//! while let Some(delivery) = deliveries.next().await {
//!     let delivery = delivery?;
//!     let outcome = amqp::handle(&payment, &delivery, "payment", |handling| {
//!         let payload = delivery.data.clone();
//!         async move {
//!             tracing::info!(bytes = payload.len(), "charging card"); // carries the flow's ids
//!             // A child event: same flow, causation = the event handled.
//!             let (_properties, _charged) = amqp::publish_child_headers(
//!                 &handling,
//!                 Publish::new("PaymentCharged", "payments"),
//!             );
//!             Ok::<_, std::io::Error>(())
//!         }
//!     })
//!     .await;
//!     match outcome {
//!         Ok(()) => delivery.ack(BasicAckOptions::default()).await?,
//!         Err(_) => delivery.nack(BasicNackOptions::default()).await?,
//!     };
//! }
//! # Ok(())
//! # }
//! ```

use std::fmt::Display;
use std::future::Future;

use causeway_model::{clean_header_value, headers};
use lapin::BasicProperties;
use lapin::message::Delivery;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use opentelemetry::propagation::{Extractor, Injector};

use crate::context::MessageContext;
use crate::service::{Consume, Handler, Handling, Publish, Service};

/// OpenTelemetry's `messaging.system` for AMQP 0-9-1.
pub const SYSTEM: &str = "rabbitmq";

/// Writes context into a message's headers table, each value as an AMQP
/// long string. A key longer than a short string allows (255 bytes) is
/// skipped; causeway's own header names are far shorter.
#[derive(Debug)]
pub struct FieldTableInjector<'a>(pub &'a mut FieldTable);

impl Injector for FieldTableInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let Ok(key) = ShortString::try_new(key) {
            self.0
                .insert(key, AMQPValue::LongString(LongString::from(value)));
        }
    }
}

/// `set` takes the value's `String` as the long string's buffer.
impl crate::CarrierMut for FieldTableInjector<'_> {}

/// Reads context from a message's properties: the headers table first,
/// then AMQP's `message_id`, `correlation_id`, `type` and `app_id` for
/// `event-id`, `correlation-id`, `event-type` and `event-source` when the
/// headers lack them.
///
/// Header names are matched exactly, then ignoring ASCII case (other
/// clients write `Correlation-Id`). Long strings, short strings and byte
/// arrays are read when they are UTF-8; other value types are ignored.
#[derive(Debug, Clone, Copy)]
pub struct PropertiesExtractor<'a>(pub &'a BasicProperties);

impl PropertiesExtractor<'_> {
    fn header(&self, key: &str) -> Option<&str> {
        let table = self.0.headers().as_ref()?.inner();
        let value = match table.get(key) {
            Some(value) => value,
            None => {
                table
                    .iter()
                    .find(|(name, _)| name.as_str().eq_ignore_ascii_case(key))?
                    .1
            }
        };
        as_text(value)
    }

    /// The native property standing in for a causeway header, if any.
    fn native(&self, key: &str) -> Option<&str> {
        let property = match key {
            headers::EVENT_ID => self.0.message_id(),
            headers::CORRELATION_ID => self.0.correlation_id(),
            headers::EVENT_TYPE => self.0.kind(),
            headers::EVENT_SOURCE => self.0.app_id(),
            _ => return None,
        };
        property.as_ref().map(ShortString::as_str)
    }
}

/// The causeway headers an AMQP property can stand in for.
const NATIVE: [&str; 4] = [
    headers::EVENT_ID,
    headers::CORRELATION_ID,
    headers::EVENT_TYPE,
    headers::EVENT_SOURCE,
];

/// The text of a header value, for the string-like AMQP types.
fn as_text(value: &AMQPValue) -> Option<&str> {
    match value {
        AMQPValue::LongString(text) => std::str::from_utf8(text.as_bytes()).ok(),
        AMQPValue::ShortString(text) => Some(text.as_str()),
        AMQPValue::ByteArray(bytes) => std::str::from_utf8(bytes.as_slice()).ok(),
        _ => None,
    }
}

impl Extractor for PropertiesExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.header(key).or_else(|| self.native(key))
    }

    fn keys(&self) -> Vec<&str> {
        let mut keys: Vec<&str> = self
            .0
            .headers()
            .iter()
            .flat_map(|table| table.inner().keys().map(ShortString::as_str))
            .collect();
        for key in NATIVE {
            if self.native(key).is_some() && self.header(key).is_none() {
                keys.push(key);
            }
        }
        keys
    }
}

impl crate::Carrier for PropertiesExtractor<'_> {
    /// The headers table in one pass. A long string or byte array that is
    /// not UTF-8 is passed as [`UNREADABLE`](crate::UNREADABLE); values of
    /// other types (numbers, tables, ...) are not text and are skipped.
    fn for_each_header<'a>(&'a self, f: &mut dyn FnMut(&'a str, &'a str)) {
        if let Some(table) = self.0.headers().as_ref() {
            for (name, value) in table.inner() {
                let text = match value {
                    AMQPValue::LongString(_) | AMQPValue::ByteArray(_) => {
                        as_text(value).unwrap_or(crate::UNREADABLE)
                    }
                    AMQPValue::ShortString(text) => text.as_str(),
                    _ => continue,
                };
                f(name.as_str(), text);
            }
        }
    }

    /// The native `message_id`, `correlation_id`, `type` and `app_id`
    /// properties, as `event-id`, `correlation-id`, `event-type` and
    /// `event-source` when no header gave those.
    fn for_each_fallback<'a>(&'a self, f: &mut dyn FnMut(&'a str, &'a str)) {
        for key in NATIVE {
            if let Some(value) = self.native(key) {
                f(key, value);
            }
        }
    }
}

/// Publishes an event (see [`Service::publish`]: writes the `published`
/// record) and returns the properties to hand to lapin's `basic_publish`:
/// the causeway headers, `message_id` = the event id, `correlation_id` =
/// the correlation id, `type` = the event type and `app_id` = the
/// publishing service.
///
/// `parent` is a context the service already holds, else `None` to start a
/// flow; inside a handler use [`publish_child_headers`]. The event's
/// destination is the exchange, or the routing key when publishing to the
/// default exchange. `messaging.system` is `rabbitmq` unless `event` names
/// another system. Further properties (content type, delivery mode,
/// expiration, ...) can be chained onto the result with lapin's `with_*`
/// methods.
pub fn publish_headers(
    service: &Service,
    parent: Option<&MessageContext>,
    event: Publish<'_>,
) -> (BasicProperties, MessageContext) {
    let mut table = FieldTable::default();
    let context = service.publish(
        parent,
        event.system_or(SYSTEM),
        &mut FieldTableInjector(&mut table),
    );
    let mut properties = BasicProperties::default().with_headers(table);
    // Correlation and event ids are at most 128 bytes (the model checks),
    // so they fit a short string; a failure would only leave one unset.
    if let Ok(id) = ShortString::try_new(context.event_id.as_str()) {
        properties = properties.with_message_id(id);
    }
    if let Ok(id) = ShortString::try_new(context.correlation_id.as_str()) {
        properties = properties.with_correlation_id(id);
    }
    // The event type and the publishing service also go where AMQP has
    // properties for them, for consumers that read only those.
    if let Some(kind) = short_text(context.event_type.as_deref()) {
        properties = properties.with_type(kind);
    }
    if let Some(app) = short_text(context.source.as_deref()) {
        properties = properties.with_app_id(app);
    }
    (properties, context)
}

/// As [`publish_headers`], for an event caused by the one being handled
/// (same correlation id and trace, causation id = the handled event).
pub fn publish_child_headers(
    handling: &Handling,
    event: Publish<'_>,
) -> (BasicProperties, MessageContext) {
    publish_headers(handling.service(), Some(handling.context()), event)
}

/// `text` as a short string property, if it is fit to send and fits.
fn short_text(text: Option<&str>) -> Option<ShortString> {
    ShortString::try_new(clean_header_value(text?)?).ok()
}

/// Handles one lapin delivery through [`Service::handle`] (writes
/// `received`, then `handled` or `failed`) as `consumer_group`. The
/// destination is the delivery's exchange, or its routing key when it came
/// through the default exchange (the queue's name), as on publish. The
/// context is read from the delivery before the returned future starts.
/// Acknowledging stays with the caller.
///
/// A delivery the broker marks `redelivered` also writes `retried` before
/// the handler runs, with the attempt from [`redelivery`].
pub fn handle<H, T, E>(
    service: &Service,
    delivery: &Delivery,
    consumer_group: &str,
    handler: H,
) -> impl Future<Output = Result<T, E>> + use<H, T, E>
where
    H: Handler<T, E>,
    E: Display,
{
    let destination = if delivery.exchange.as_str().is_empty() {
        delivery.routing_key.as_str()
    } else {
        delivery.exchange.as_str()
    };
    handle_from(service, delivery, destination, consumer_group, handler)
}

/// The retry attempt of a delivery RabbitMQ marks `redelivered` (an
/// earlier delivery was not acknowledged: a nack with requeue, a crashed
/// consumer): a quorum queue's `x-delivery-count`, or 1 when the queue
/// does not count. `None` for a first delivery.
pub fn redelivery(delivery: &Delivery) -> Option<u32> {
    delivery
        .redelivered
        .then(|| delivery_count(&delivery.properties).unwrap_or(1))
}

/// [`Service::handle`] for a delivery consumed from `destination`.
fn handle_from<H, T, E>(
    service: &Service,
    delivery: &Delivery,
    destination: &str,
    consumer_group: &str,
    handler: H,
) -> impl Future<Output = Result<T, E>> + use<H, T, E>
where
    H: Handler<T, E>,
    E: Display,
{
    service.handle(
        &PropertiesExtractor(&delivery.properties),
        Consume::new(destination, consumer_group)
            .system(SYSTEM)
            .redelivery(redelivery(delivery)),
        handler,
    )
}

/// The former [`publish_headers`], with a content type.
#[deprecated(
    note = "use amqp::publish_headers (or publish_child_headers) and chain \
                     `with_content_type` onto the properties"
)]
pub fn publish_properties(
    service: &Service,
    parent: Option<&MessageContext>,
    event: Publish<'_>,
    content_type: Option<&str>,
) -> (BasicProperties, MessageContext) {
    let (properties, context) = publish_headers(service, parent, event);
    match short_text(content_type) {
        Some(kind) => (properties.with_content_type(kind), context),
        None => (properties, context),
    }
}

/// The former [`handle`], with the queue as the destination.
#[deprecated(note = "use amqp::handle")]
pub fn handle_delivery<H, T, E>(
    service: &Service,
    delivery: &Delivery,
    queue: &str,
    consumer_group: &str,
    handler: H,
) -> impl Future<Output = Result<T, E>> + use<H, T, E>
where
    H: Handler<T, E>,
    E: Display,
{
    handle_from(service, delivery, queue, consumer_group, handler)
}

/// RabbitMQ's count of earlier deliveries of a message (quorum queues).
fn delivery_count(properties: &BasicProperties) -> Option<u32> {
    let count = properties
        .headers()
        .as_ref()?
        .inner()
        .get("x-delivery-count")?;
    let count = match count {
        AMQPValue::ShortShortUInt(n) => u64::from(*n),
        AMQPValue::ShortUInt(n) => u64::from(*n),
        AMQPValue::LongUInt(n) => u64::from(*n),
        AMQPValue::ShortShortInt(n) => u64::try_from(*n).ok()?,
        AMQPValue::ShortInt(n) => u64::try_from(*n).ok()?,
        AMQPValue::LongInt(n) => u64::try_from(*n).ok()?,
        AMQPValue::LongLongInt(n) => u64::try_from(*n).ok()?,
        _ => return None,
    };
    u32::try_from(count).ok().filter(|count| *count > 0)
}

#[cfg(test)]
mod tests {
    use lapin::types::ByteArray;

    use super::*;
    use crate::extract;

    fn properties(entries: Vec<(&str, AMQPValue)>) -> BasicProperties {
        let mut table = FieldTable::default();
        for (key, value) in entries {
            table.insert(key.into(), value);
        }
        BasicProperties::default().with_headers(table)
    }

    #[test]
    fn published_properties_carry_the_context_and_the_native_ids() {
        let (properties, sent) = publish_headers(
            &Service::new("order"),
            None,
            Publish::new("OrderPlaced", "orders"),
        );
        assert_eq!(properties.content_type(), &None);
        let table = properties.headers().as_ref().unwrap();
        assert!(matches!(
            table.inner().get("traceparent"),
            Some(AMQPValue::LongString(_))
        ));
        assert_eq!(
            properties.message_id().as_ref().unwrap().as_str(),
            sent.event_id.as_str()
        );
        assert_eq!(
            properties.correlation_id().as_ref().unwrap().as_str(),
            sent.correlation_id.as_str()
        );
        assert_eq!(properties.kind().as_ref().unwrap().as_str(), "OrderPlaced");
        assert_eq!(properties.app_id().as_ref().unwrap().as_str(), "order");
        let got = extract(&PropertiesExtractor(&properties));
        assert_eq!((got.trace_id, got.span_id), (sent.trace_id, sent.span_id));
        assert_eq!(got.event_id, sent.event_id);
        assert_eq!(got.event_type.as_deref(), Some("OrderPlaced"));
    }

    #[test]
    fn a_message_from_a_plain_amqp_client_is_read_from_its_properties() {
        // No headers at all: what a client that only sets AMQP's own
        // properties sends.
        let props = BasicProperties::default()
            .with_message_id("msg-9".into())
            .with_correlation_id("order-9".into())
            .with_type("order.placed".into())
            .with_app_id("legacy-shop".into());
        let got = extract(&PropertiesExtractor(&props));
        assert_eq!(got.event_id.as_str(), "msg-9");
        assert_eq!(got.correlation_id.as_str(), "order-9");
        assert_eq!(got.event_type.as_deref(), Some("order.placed"));
        assert_eq!(got.source.as_deref(), Some("legacy-shop"));

        // A header, in any spelling causeway reads, wins over the property.
        let mut table = FieldTable::default();
        table.insert(
            "ce-type".into(),
            AMQPValue::LongString("OrderPlaced".into()),
        );
        let props = props.with_headers(table);
        let got = extract(&PropertiesExtractor(&props));
        assert_eq!(got.event_type.as_deref(), Some("OrderPlaced"));
        assert_eq!(got.source.as_deref(), Some("legacy-shop"));
    }

    #[test]
    fn string_like_values_are_read_as_text_and_other_types_ignored() {
        let props = properties(vec![
            ("a", AMQPValue::ShortString("short".into())),
            ("b", AMQPValue::ByteArray(ByteArray::from(&b"bytes"[..]))),
            ("c", AMQPValue::ByteArray(ByteArray::from(vec![0xff, 0xfe]))),
            ("d", AMQPValue::LongInt(42)),
            (
                "e",
                AMQPValue::LongString(LongString::from(vec![0xc3, 0x28])),
            ),
            ("Correlation-Id", AMQPValue::LongString("order-7".into())),
        ]);
        let extractor = PropertiesExtractor(&props);
        assert_eq!(extractor.get("a"), Some("short"));
        assert_eq!(extractor.get("b"), Some("bytes"));
        assert_eq!(extractor.get("c"), None);
        assert_eq!(extractor.get("d"), None);
        assert_eq!(extractor.get("e"), None);
        assert_eq!(extractor.get("correlation-id"), Some("order-7"));
    }

    #[test]
    fn native_ids_fill_in_only_what_the_headers_lack() {
        let props = properties(vec![(
            "correlation-id",
            AMQPValue::LongString("from-header".into()),
        )])
        .with_correlation_id("from-property".into())
        .with_message_id("msg-1".into());
        let extractor = PropertiesExtractor(&props);
        assert_eq!(extractor.get("correlation-id"), Some("from-header"));
        assert_eq!(extractor.get("event-id"), Some("msg-1"));
        assert_eq!(extractor.get("causation-id"), None);
        let mut keys = extractor.keys();
        keys.sort_unstable();
        assert_eq!(keys, ["correlation-id", "event-id"]);
        let got = extract(&extractor);
        assert_eq!(
            (got.correlation_id.as_str(), got.event_id.as_str()),
            ("from-header", "msg-1")
        );
    }

    #[test]
    fn a_header_in_another_case_still_wins_over_the_native_property() {
        let props = properties(vec![(
            "Correlation-Id",
            AMQPValue::LongString("from-header".into()),
        )])
        .with_correlation_id("from-property".into());
        let extractor = PropertiesExtractor(&props);
        assert_eq!(extractor.get("correlation-id"), Some("from-header"));
        assert_eq!(extract(&extractor).correlation_id.as_str(), "from-header");
    }

    #[test]
    fn a_value_that_is_not_utf8_is_counted_and_not_used() {
        let props = properties(vec![(
            "correlation-id",
            AMQPValue::LongString(LongString::from(vec![0xc3, 0x28])),
        )])
        .with_correlation_id("from-property".into());
        let propagation = crate::Propagation::default();
        let got = propagation.extract(&PropertiesExtractor(&props));
        assert_ne!(got.correlation_id.as_str(), "from-property");
        assert_eq!(propagation.stats().invalid_values, 1);
    }

    #[test]
    fn an_oversized_key_is_skipped_rather_than_panicking() {
        let mut table = FieldTable::default();
        FieldTableInjector(&mut table).set(&"k".repeat(300), "v".into());
        FieldTableInjector(&mut table).set("ok", "v".into());
        assert_eq!(table.inner().len(), 1);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_mock_delivery_is_handled_in_its_publisher_flow() {
        let (properties, sent) = publish_headers(
            &Service::new("order"),
            None,
            Publish::new("OrderPlaced", "orders"),
        );
        let mut delivery = Delivery::mock(1, "".into(), "orders".into(), false, Vec::new());
        delivery.properties = properties;
        let got = handle(
            &Service::new("payment"),
            &delivery,
            "payment",
            |handling| async move {
                let (_, child) =
                    publish_child_headers(&handling, Publish::new("PaymentCharged", "payments"));
                Ok::<_, std::io::Error>((handling.context().clone(), child))
            },
        )
        .await
        .unwrap();
        let (handled, child) = got;
        assert_eq!(handled.correlation_id, sent.correlation_id);
        assert_eq!(handled.parent_span_id, Some(sent.span_id));
        assert_eq!(child.correlation_id, sent.correlation_id);
        assert_eq!(child.causation_id, Some(sent.event_id));
    }

    #[test]
    fn a_redelivered_delivery_reports_its_attempt() {
        let mut delivery = Delivery::mock(1, "".into(), "orders".into(), false, Vec::new());
        assert_eq!(redelivery(&delivery), None);
        delivery.redelivered = true;
        assert_eq!(redelivery(&delivery), Some(1));
        delivery.properties = properties(vec![("x-delivery-count", AMQPValue::LongInt(2))]);
        assert_eq!(redelivery(&delivery), Some(2));
    }

    #[tokio::test(flavor = "current_thread")]
    #[allow(deprecated)] // the former names, kept as aliases
    async fn the_former_names_still_publish_and_handle() {
        let (properties, sent) = publish_properties(
            &Service::new("order"),
            None,
            Publish::new("OrderPlaced", "orders"),
            Some("application/json"),
        );
        assert_eq!(
            properties.content_type().as_ref().unwrap().as_str(),
            "application/json"
        );
        let mut delivery = Delivery::mock(1, "".into(), "orders".into(), false, Vec::new());
        delivery.properties = properties;
        let handled = handle_delivery(
            &Service::new("payment"),
            &delivery,
            "orders",
            "payment",
            |handling| async move { Ok::<_, std::io::Error>(handling.context().clone()) },
        )
        .await
        .unwrap();
        assert_eq!(handled.correlation_id, sent.correlation_id);
        assert_eq!(handled.parent_span_id, Some(sent.span_id));
    }

    #[test]
    fn a_quorum_queue_s_delivery_count_is_the_retry_attempt() {
        let with_count = |value: AMQPValue| properties(vec![("x-delivery-count", value)]);
        assert_eq!(
            delivery_count(&with_count(AMQPValue::LongLongInt(3))),
            Some(3)
        );
        assert_eq!(delivery_count(&with_count(AMQPValue::LongInt(1))), Some(1));
        assert_eq!(
            delivery_count(&with_count(AMQPValue::ShortShortUInt(2))),
            Some(2)
        );
        // No count, a zero, a negative or a non-number: unknown.
        assert_eq!(delivery_count(&BasicProperties::default()), None);
        assert_eq!(delivery_count(&with_count(AMQPValue::LongLongInt(0))), None);
        assert_eq!(
            delivery_count(&with_count(AMQPValue::LongLongInt(-4))),
            None
        );
        assert_eq!(
            delivery_count(&with_count(AMQPValue::LongString("3".into()))),
            None
        );
        assert_eq!(
            delivery_count(&with_count(AMQPValue::LongLongInt(i64::MAX))),
            None
        );
    }
}
