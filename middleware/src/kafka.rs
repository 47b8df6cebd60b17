//! Kafka with rdkafka: causeway's context in Kafka record headers, and the
//! lifecycle records of publishing and consuming through `FutureProducer`
//! and `StreamConsumer` (or any rdkafka consumer).
//!
//! [`HeaderInjector`] collects the context into [`OwnedHeaders`] (values as
//! UTF-8 bytes) for `FutureRecord::headers`; [`HeaderExtractor`] reads it
//! back from any [`Headers`], borrowed from a consumed message or owned.
//! [`publish_headers`] and [`publish_child_headers`] build the headers of
//! one publish; [`handle`] runs a handler for one consumed message through
//! [`Service::handle`] with `messaging.system` = `kafka` (the same names
//! and shapes as in the other transport modules, see the
//! [crate documentation](crate#one-api-for-every-transport)). Kafka does
//! not redeliver a record by itself; an application that retries (a retry
//! topic, a re-seek) reports the attempt with [`Consume::redelivery`] and
//! [`Service::handle`] over a [`HeaderExtractor`].
//!
//! This module must not produce, consume, commit or configure clients:
//! delivery, retries and offsets stay the application's. It never fails a
//! message because of its headers: a header value that is not UTF-8 or is
//! null is ignored, and a header librdkafka's Rust binding cannot read (a
//! key that is not UTF-8 makes `rdkafka` panic) is skipped, all counted in
//! the extracting [`Propagation`](crate::Propagation)'s stats (see
//! [`Service::context_stats`]). Kafka allows a key to repeat;
//! the last header with a key is the one read (as Kafka's own
//! `Headers.lastHeader` does), so headers appended when forwarding a record
//! take precedence over the forwarded ones.
//!
//! ```no_run
//! use std::time::Duration;
//!
//! use causeway_middleware::{Publish, Service, kafka};
//! use rdkafka::ClientConfig;
//! use rdkafka::consumer::{Consumer, StreamConsumer};
//! use rdkafka::message::Message;
//! use rdkafka::producer::{FutureProducer, FutureRecord};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let producer: FutureProducer = ClientConfig::new()
//!     .set("bootstrap.servers", "localhost:9092")
//!     .create()?;
//! let order = Service::new("order");
//! let (headers, _placed) =
//!     kafka::publish_headers(&order, None, Publish::new("OrderPlaced", "orders"));
//! producer
//!     .send(
//!         FutureRecord::to("orders").key("order-1234").payload("{}").headers(headers),
//!         Duration::from_secs(5),
//!     )
//!     .await
//!     .map_err(|(error, _)| error)?;
//!
//! let consumer: StreamConsumer = ClientConfig::new()
//!     .set("bootstrap.servers", "localhost:9092")
//!     .set("group.id", "payment")
//!     .create()?;
//! consumer.subscribe(&["orders"])?;
//! let payment = Service::new("payment");
//! let message = consumer.recv().await?;
//! let payload = message.payload().unwrap_or_default().to_vec();
//! kafka::handle(&payment, &message, "payment", |handling| async move {
//!     tracing::info!(bytes = payload.len(), "charging card"); // carries the flow's ids
//!     let (headers, _charged) =
//!         kafka::publish_child_headers(&handling, Publish::new("PaymentSucceeded", "payments"));
//!     let record = FutureRecord::to("payments").key("order-1234").payload("{}");
//!     producer
//!         .send(record.headers(headers), Duration::from_secs(5))
//!         .await
//!         .map_err(|(error, _)| error)?;
//!     Ok::<_, rdkafka::error::KafkaError>(())
//! })
//! .await?;
//! # Ok(())
//! # }
//! ```

use std::fmt::Display;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};

use causeway_model::has_control_chars;
use opentelemetry::propagation::{Extractor, Injector};
use rdkafka::message::{BorrowedMessage, Header, Headers, Message, OwnedHeaders};

use crate::context::MessageContext;
use crate::service::{Consume, Handler, Handling, Publish, Service};

/// OpenTelemetry `messaging.system` for Kafka.
pub const SYSTEM: &str = "kafka";

/// Writes context into Kafka record headers, each value as UTF-8 bytes.
///
/// Starts from empty headers ([`HeaderInjector::new`]) or from the
/// application's own ([`HeaderInjector::from_headers`]); a key or value
/// that holds a control character is skipped, never written.
#[derive(Debug)]
pub struct HeaderInjector {
    /// Always `Some` between calls: `OwnedHeaders::insert` takes the headers
    /// by value, so `set` takes them out and puts the result back.
    headers: Option<OwnedHeaders>,
}

impl HeaderInjector {
    /// An injector over empty headers.
    pub fn new() -> Self {
        Self::from_headers(OwnedHeaders::new())
    }

    /// An injector that appends to headers the application already built.
    pub fn from_headers(headers: OwnedHeaders) -> Self {
        Self {
            headers: Some(headers),
        }
    }

    /// The headers, for `FutureRecord::headers`.
    pub fn into_headers(self) -> OwnedHeaders {
        self.headers.unwrap_or_default()
    }
}

impl Default for HeaderInjector {
    fn default() -> Self {
        Self::new()
    }
}

impl Injector for HeaderInjector {
    /// Sizes librdkafka's header list once when nothing was written yet.
    fn reserve(&mut self, additional: usize) {
        if self
            .headers
            .as_ref()
            .is_none_or(|headers| headers.count() == 0)
        {
            self.headers = Some(OwnedHeaders::new_with_capacity(additional));
        }
    }

    fn set(&mut self, key: &str, value: String) {
        self.append(key, &value);
    }
}

/// The value is copied into librdkafka straight from causeway's text.
impl crate::CarrierMut for HeaderInjector {
    fn set_header(&mut self, name: &'static str, value: &str) {
        self.append(name, value);
    }
}

impl HeaderInjector {
    fn append(&mut self, key: &str, value: &str) {
        if key.is_empty() || has_control_chars(key) || has_control_chars(value) {
            return;
        }
        let headers = self.headers.take().unwrap_or_default();
        // `insert` only fails (by panicking) on read-only headers, and
        // `OwnedHeaders` are always writable.
        self.headers = Some(headers.insert(Header {
            key,
            value: Some(value.as_bytes()),
        }));
    }
}

/// One header as read: its value only if it is UTF-8 text.
#[derive(Debug, Clone, Copy)]
enum Value<'a> {
    Text(&'a str),
    NotUtf8,
    Null,
}

/// Reads context from Kafka record headers: the headers of a consumed
/// message (`BorrowedHeaders`) or owned ones.
///
/// Keys are matched ignoring ASCII case, a key as written before the same
/// key in another case; when a key repeats, the last header with it is the
/// one read. A value that is not UTF-8 or null reads as absent (and, when
/// its key is one causeway reads, extraction counts it as invalid).
/// Headers are read once, on construction.
#[derive(Debug, Clone, Default)]
pub struct HeaderExtractor<'a> {
    entries: Vec<(&'a str, Value<'a>)>,
    /// Headers the binding could not read (it panicked on them).
    skipped: u64,
}

impl<'a> HeaderExtractor<'a> {
    /// Reads every header. A header the `rdkafka` binding panics on (it
    /// unwraps keys as UTF-8, and librdkafka passes any bytes through) is
    /// skipped, and extraction counts it as invalid
    /// ([`Carrier::skipped_headers`](crate::Carrier::skipped_headers)); the
    /// panic message still reaches the panic hook.
    pub fn new<H: Headers + ?Sized>(headers: &'a H) -> Self {
        let count = headers.count();
        let mut entries = Vec::with_capacity(count);
        let mut skipped = 0;
        for index in 0..count {
            // Reading only: nothing observes a half-done state after a panic.
            match catch_unwind(AssertUnwindSafe(|| headers.try_get(index))) {
                Ok(Some(header)) => {
                    let value = match header.value {
                        Some(bytes) => match std::str::from_utf8(bytes) {
                            Ok(text) => Value::Text(text),
                            Err(_) => Value::NotUtf8,
                        },
                        None => Value::Null,
                    };
                    entries.push((header.key, value));
                }
                Ok(None) => {}
                Err(_) => skipped += 1,
            }
        }
        Self { entries, skipped }
    }

    /// Reads the headers of a message; a message without headers gives an
    /// empty extractor.
    pub fn from_message<M: Message>(message: &'a M) -> Self {
        message.headers().map(Self::new).unwrap_or_default()
    }
}

impl Extractor for HeaderExtractor<'_> {
    /// The last header with exactly this key; failing that, the last header
    /// with the same key in another case (of several casings, the one that
    /// sorts first), as `extract` reads. A value that is not UTF-8 or null
    /// reads as absent.
    fn get(&self, key: &str) -> Option<&str> {
        let (_, value) = self
            .entries
            .iter()
            .rev()
            .find(|(k, _)| *k == key)
            .or_else(|| {
                self.entries
                    .iter()
                    .rev()
                    .filter(|(k, _)| k.eq_ignore_ascii_case(key))
                    .min_by_key(|(k, _)| *k)
            })?;
        match value {
            Value::Text(text) => Some(text),
            Value::NotUtf8 | Value::Null => None,
        }
    }

    /// Each key once, in first-seen order.
    fn keys(&self) -> Vec<&str> {
        let mut keys: Vec<&str> = Vec::with_capacity(self.entries.len());
        for (key, _) in &self.entries {
            if !keys.contains(key) {
                keys.push(key);
            }
        }
        keys
    }
}

/// One pass over the headers, last first, so that when a key repeats the
/// last header with it is the one read. A value that is not UTF-8 is
/// passed as [`UNREADABLE`](crate::UNREADABLE) and a null one as empty:
/// either hides the earlier headers with its key, and is refused and
/// counted if the key is one causeway reads.
impl crate::Carrier for HeaderExtractor<'_> {
    fn for_each_header<'a>(&'a self, f: &mut dyn FnMut(&'a str, &'a str)) {
        for (key, value) in self.entries.iter().rev() {
            let text = match value {
                Value::Text(text) => text,
                Value::NotUtf8 => crate::UNREADABLE,
                Value::Null => "",
            };
            f(key, text);
        }
    }

    fn skipped_headers(&self) -> u64 {
        self.skipped
    }
}

/// Builds the headers of a new event on `event.destination` (the topic):
/// writes the `published` record and returns the headers, for
/// `FutureRecord::to(topic).headers(headers)`, with the event's context.
/// `messaging.system` is `kafka` unless `event` names another. Pass
/// `parent` when the event continues a context the service already holds;
/// inside a handler use [`publish_child_headers`].
pub fn publish_headers(
    service: &Service,
    parent: Option<&MessageContext>,
    event: Publish<'_>,
) -> (OwnedHeaders, MessageContext) {
    let mut injector = HeaderInjector::new();
    let context = service.publish(parent, event.system_or(SYSTEM), &mut injector);
    (injector.into_headers(), context)
}

/// Builds the headers of an event caused by the one being handled (same
/// correlation id and trace, causation id = the handled event), writing
/// its `published` record; as [`publish_headers`] otherwise.
pub fn publish_child_headers(
    handling: &Handling,
    event: Publish<'_>,
) -> (OwnedHeaders, MessageContext) {
    publish_headers(handling.service(), Some(handling.context()), event)
}

/// Handles one consumed message through [`Service::handle`]: its topic is
/// the destination, `consumer_group` the consumer's `group.id`. Writes
/// `received`, then `handled` or `failed`; the handler's result is
/// returned as is. The headers are read before the future starts, so the
/// future does not borrow the message.
pub fn handle<H, T, E>(
    service: &Service,
    message: &BorrowedMessage<'_>,
    consumer_group: &str,
    handler: H,
) -> impl Future<Output = Result<T, E>> + use<H, T, E>
where
    H: Handler<T, E>,
    E: Display,
{
    service.handle(
        &HeaderExtractor::from_message(message),
        Consume::new(message.topic(), consumer_group).system(SYSTEM),
        handler,
    )
}

#[cfg(test)]
mod tests {
    use causeway_model::{CorrelationId, headers};
    use rdkafka::Timestamp;
    use rdkafka::message::OwnedMessage;

    use super::*;
    use crate::{Propagation, extract};

    fn owned(pairs: &[(&str, Option<&[u8]>)]) -> OwnedHeaders {
        pairs.iter().fold(OwnedHeaders::new(), |h, (key, value)| {
            h.insert(Header { key, value: *value })
        })
    }

    #[test]
    fn context_survives_owned_and_borrowed_kafka_headers() {
        let (headers, sent) = publish_headers(
            &Service::new("order"),
            None,
            Publish::new("OrderPlaced", "orders")
                .correlation_id(CorrelationId::new("order-1234").unwrap()),
        );
        let keys: Vec<&str> = headers.iter().map(|h| h.key).collect();
        assert!(keys.contains(&headers::TRACEPARENT));
        assert!(keys.contains(&headers::CORRELATION_ID));
        for got in [
            extract(&HeaderExtractor::new(&headers)),
            extract(&HeaderExtractor::new(headers.as_borrowed())),
        ] {
            assert_eq!(got, sent);
        }
    }

    #[test]
    fn a_message_without_headers_reads_as_empty() {
        let message = OwnedMessage::new(None, None, "orders".into(), Timestamp::now(), 0, 0, None);
        let extractor = HeaderExtractor::from_message(&message);
        assert!(extractor.keys().is_empty());
        assert_eq!(extractor.get(headers::TRACEPARENT), None);
    }

    #[test]
    fn a_repeated_key_reads_as_its_last_header() {
        let headers = owned(&[
            ("correlation-id", Some(b"first".as_slice())),
            ("event-type", Some(b"OrderPlaced".as_slice())),
            ("correlation-id", Some(b"last".as_slice())),
        ]);
        let extractor = HeaderExtractor::new(&headers);
        assert_eq!(extractor.get("correlation-id"), Some("last"));
        assert_eq!(extractor.keys(), vec!["correlation-id", "event-type"]);
        assert_eq!(extract(&extractor).correlation_id.as_str(), "last");
    }

    #[test]
    fn a_last_header_that_is_not_utf8_hides_the_earlier_ones() {
        let headers = owned(&[
            ("correlation-id", Some(b"first".as_slice())),
            ("correlation-id", Some([0xff, 0xfe].as_slice())),
        ]);
        assert_eq!(HeaderExtractor::new(&headers).get("correlation-id"), None);

        let propagation = Propagation::default();
        let got = propagation.extract(&HeaderExtractor::new(&headers));
        assert_ne!(got.correlation_id.as_str(), "first");
        assert_eq!(propagation.stats().invalid_values, 1);
    }

    #[test]
    fn a_key_as_written_wins_over_another_casing_through_get_and_extract() {
        for pairs in [
            [("correlation-id", "exact"), ("CORRELATION-ID", "upper")],
            [("CORRELATION-ID", "upper"), ("correlation-id", "exact")],
        ] {
            let headers = owned(&pairs.map(|(k, v)| (k, Some(v.as_bytes()))));
            let extractor = HeaderExtractor::new(&headers);
            assert_eq!(extractor.get("correlation-id"), Some("exact"));
            assert_eq!(extract(&extractor).correlation_id.as_str(), "exact");
        }
        let headers = owned(&[
            ("Correlation-Id", Some(b"mixed".as_slice())),
            ("CORRELATION-ID", Some(b"upper".as_slice())),
        ]);
        let extractor = HeaderExtractor::new(&headers);
        assert_eq!(extractor.get("correlation-id"), Some("upper"));
        assert_eq!(extract(&extractor).correlation_id.as_str(), "upper");
    }

    #[test]
    fn a_last_null_header_hides_the_earlier_ones() {
        let headers = owned(&[
            ("correlation-id", Some(b"first".as_slice())),
            ("correlation-id", None),
        ]);
        let extractor = HeaderExtractor::new(&headers);
        assert_eq!(extractor.get("correlation-id"), None);
        assert_ne!(extract(&extractor).correlation_id.as_str(), "first");
    }

    #[test]
    fn keys_match_ignoring_ascii_case() {
        let headers = owned(&[("TraceParent", Some(b"x".as_slice()))]);
        assert_eq!(HeaderExtractor::new(&headers).get("traceparent"), Some("x"));
    }

    #[test]
    fn binary_and_null_values_read_as_absent_and_extraction_starts_fresh() {
        let headers = owned(&[
            ("traceparent", Some([0x00, 0xff, 0xc3, 0x28].as_slice())),
            ("correlation-id", None),
            ("event-id", Some([0x80; 64].as_slice())),
        ]);
        let propagation = Propagation::default();
        let extractor = HeaderExtractor::new(&headers);
        assert_eq!(extractor.get("traceparent"), None);
        assert_eq!(extractor.get("correlation-id"), None);
        let got = propagation.extract(&extractor);
        assert!(!got.correlation_id.as_str().is_empty());
        assert_eq!(propagation.stats().fresh_contexts, 1);
    }

    /// Like librdkafka's Rust binding on a header key that is not UTF-8.
    struct PanickingHeaders;

    impl Headers for PanickingHeaders {
        fn count(&self) -> usize {
            3
        }

        fn try_get(&self, index: usize) -> Option<Header<'_, &[u8]>> {
            match index {
                0 => Some(Header {
                    key: "correlation-id",
                    value: Some(b"order-7".as_slice()),
                }),
                1 => panic!("simulated: header key is not valid UTF-8"),
                _ => Some(Header {
                    key: "event-type",
                    value: Some(b"OrderPlaced".as_slice()),
                }),
            }
        }
    }

    #[test]
    fn a_header_the_binding_cannot_read_is_skipped_and_counted() {
        let extractor = HeaderExtractor::new(&PanickingHeaders);
        assert_eq!(extractor.get("correlation-id"), Some("order-7"));
        assert_eq!(extractor.get("event-type"), Some("OrderPlaced"));
        let propagation = Propagation::default();
        let got = propagation.extract(&extractor);
        assert_eq!(got.correlation_id.as_str(), "order-7");
        assert_eq!(propagation.stats().invalid_values, 1);
    }

    #[test]
    fn arbitrary_header_bytes_never_break_extraction() {
        // xorshift: a deterministic spread of byte strings, lengths up to 2 KiB.
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for round in 0..500 {
            let len = usize::try_from(next() % 2048).unwrap();
            // Every other round stays ASCII (with control characters), so
            // the values reach the cleaning instead of the UTF-8 check.
            let mask = if round % 2 == 0 { 0x7f } else { 0xff };
            let bytes: Vec<u8> = (0..len).map(|_| next().to_le_bytes()[0] & mask).collect();
            let headers = headers::ALL.iter().fold(OwnedHeaders::new(), |h, key| {
                h.insert(Header {
                    key,
                    value: Some(&bytes),
                })
            });
            let got = extract(&HeaderExtractor::new(&headers));
            let mut injector = HeaderInjector::new();
            crate::inject(&got, &mut injector);
            for header in injector.into_headers().iter() {
                let value = std::str::from_utf8(header.value.unwrap()).unwrap();
                assert!(!value.chars().any(char::is_control), "{value:?}");
            }
        }
    }

    #[test]
    fn the_injector_never_writes_control_characters() {
        let mut injector =
            HeaderInjector::from_headers(owned(&[("content-type", Some(b"json".as_slice()))]));
        injector.set("event-type", "Evil\r\nX-Injected: 1".into());
        injector.set("bad\nkey", "x".into());
        injector.set("", "x".into());
        injector.set("event-source", "order".into());
        let headers = injector.into_headers();
        let keys: Vec<&str> = headers.iter().map(|h| h.key).collect();
        assert_eq!(keys, vec!["content-type", "event-source"]);
    }
}
