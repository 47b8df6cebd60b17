//! NATS and JetStream with async-nats: carriers over [`HeaderMap`], header
//! builders for a publish ([`publish_headers`], [`publish_child_headers`],
//! and their JetStream forms), and handling of a received message through
//! [`Service::handle`] with `messaging.system` = `nats` ([`handle`],
//! [`handle_jetstream`], which also records JetStream's [`redelivery`]):
//! the same names and shapes as in the other transport modules, see the
//! [crate documentation](crate#one-api-for-every-transport).
//!
//! NATS header names are case-sensitive on the wire. causeway writes its
//! lowercase names ([`causeway_model::headers`]); reading looks the name up
//! as given first and then in any other casing (`Traceparent`), so messages
//! from clients that capitalise still continue their flow. For JetStream,
//! the event id is also written as `Nats-Msg-Id`, so a re-publish of the
//! same event (a retry after a lost ack) is deduplicated by the server
//! inside the stream's duplicate window.
//!
//! This module never connects, subscribes, acks or retries: the user keeps
//! their client, their subscriptions and their ack policy. It never panics
//! on header content and never writes a value with control characters;
//! everything read goes through [`extract`](crate::extract), which bounds,
//! cleans and counts.
//!
//! ```no_run
//! use causeway_middleware::nats;
//! use causeway_middleware::{Publish, Service};
//! use futures_util::StreamExt;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let client = async_nats::connect("127.0.0.1:4222").await?;
//! let order = Service::new("order");
//! let payment = Service::new("payment");
//!
//! // Core NATS: subscribe, publish with causeway's headers, handle.
//! let mut orders = client.queue_subscribe("orders", "payment".into()).await?;
//! let (headers, _placed) = nats::publish_headers(&order, None, Publish::new("OrderPlaced", "orders"));
//! client.publish_with_headers("orders", headers, "{}".into()).await?;
//!
//! if let Some(message) = orders.next().await {
//!     let client = client.clone();
//!     nats::handle(&payment, &message, "payment", |handling| async move {
//!         // An event published while handling is caused by this one.
//!         let (headers, _charged) =
//!             nats::publish_child_headers(&handling, Publish::new("PaymentSucceeded", "payments"));
//!         client.publish_with_headers("payments", headers, "{}".into()).await
//!     })
//!     .await?;
//! }
//!
//! // JetStream: `Nats-Msg-Id` = event id, so publishing the same headers
//! // again is a duplicate the server drops.
//! let jetstream = async_nats::jetstream::new(client);
//! let (headers, _placed) =
//!     nats::publish_jetstream_headers(&order, None, Publish::new("OrderPlaced", "orders.new"));
//! let ack = jetstream
//!     .publish_with_headers("orders.new", headers, "{}".into())
//!     .await?
//!     .await?;
//! assert!(!ack.duplicate);
//! # Ok(())
//! # }
//! ```

use std::fmt::Display;
use std::future::Future;
use std::str::FromStr;

use async_nats::header::NATS_MESSAGE_ID;
use async_nats::{HeaderMap, HeaderName, HeaderValue, Message, jetstream};
use causeway_model::has_control_chars;
use opentelemetry::propagation::{Extractor, Injector};

use crate::context::MessageContext;
use crate::propagation::{FIELDS, canonical_field, names_by_field};
use crate::service::{Consume, Handler, Handling, Publish, Service};

/// The OpenTelemetry `messaging.system` of NATS and JetStream.
pub const SYSTEM: &str = "nats";

/// Writes context into a NATS [`HeaderMap`] under causeway's lowercase
/// names. A header of the same name in another casing is removed, so a
/// forwarded map never carries a stale context beside the new one. Names
/// or values NATS cannot carry (control characters, `:` in a name) are
/// skipped.
#[derive(Debug)]
pub struct HeaderInjector<'a>(pub &'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        // async-nats panics on a value with CR or LF (`From<String>`); every
        // control character is refused here first, so the conversion cannot
        // panic, and it takes the string without copying it.
        if !has_control_chars(&value) {
            self.insert(key, HeaderValue::from(value));
        }
    }
}

impl crate::CarrierMut for HeaderInjector<'_> {
    fn set_header(&mut self, name: &'static str, value: &str) {
        // Checked before async-nats's own check, which panics.
        if !has_control_chars(value) {
            self.insert(name, HeaderValue::from(value));
        }
    }
}

impl HeaderInjector<'_> {
    fn insert(&mut self, key: &str, value: HeaderValue) {
        let Some(name) = static_name(key).or_else(|| HeaderName::from_str(key).ok()) else {
            return;
        };
        // Into an empty map (the usual publish) there is nothing to replace.
        let other_casing = !self.0.is_empty()
            && self.0.iter().any(|(existing, _)| {
                let existing: &str = existing.as_ref();
                existing != key && existing.eq_ignore_ascii_case(key)
            });
        if other_casing {
            let mut kept = HeaderMap::new();
            for (existing, values) in self.0.iter() {
                let text: &str = existing.as_ref();
                if text.eq_ignore_ascii_case(key) {
                    continue;
                }
                for value in values {
                    kept.append(existing.clone(), value.clone());
                }
            }
            *self.0 = kept;
        }
        self.0.insert(name, value);
    }
}

/// causeway's own names by field, made at compile time.
static NAMES: [HeaderName; FIELDS] = names_by_field!(HeaderName::from_static);

/// causeway's own names, which need no parsing or allocation.
fn static_name(key: &str) -> Option<HeaderName> {
    canonical_field(key).map(|field| NAMES[field.index()].clone())
}

/// Reads context from a NATS [`HeaderMap`]: the name as given first, then
/// the same name in any other casing (the alphabetically first, so the
/// choice does not depend on hash order). With several values, the first
/// counts. When there is no `event-id`, the JetStream `Nats-Msg-Id` is read
/// as the event id.
#[derive(Debug)]
pub struct HeaderExtractor<'a>(pub &'a HeaderMap);

impl HeaderExtractor<'_> {
    fn lookup(&self, key: &str) -> Option<&str> {
        if let Some(name) = static_name(key).or_else(|| HeaderName::from_str(key).ok())
            && let Some(value) = self.0.get(name)
        {
            return Some(value.as_str());
        }
        self.0
            .iter()
            .filter(|(name, _)| AsRef::<str>::as_ref(*name).eq_ignore_ascii_case(key))
            .min_by(|(a, _), (b, _)| AsRef::<str>::as_ref(*a).cmp(AsRef::<str>::as_ref(*b)))
            .and_then(|(_, values)| values.first())
            .map(HeaderValue::as_str)
    }
}

impl Extractor for HeaderExtractor<'_> {
    /// `Nats-Msg-Id` stands in for a missing `event-id` through the
    /// default foreign spellings ([`crate::DEFAULT_FOREIGN_NAMES`]).
    fn get(&self, key: &str) -> Option<&str> {
        self.lookup(key)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(name, _)| name.as_ref()).collect()
    }
}

/// One pass over the map, the first value of each name. Names in another
/// casing than causeway's rank after the name as written, and between two
/// casings the one that sorts first wins, as in [`HeaderExtractor::get`].
impl crate::Carrier for HeaderExtractor<'_> {
    fn for_each_header<'a>(&'a self, f: &mut dyn FnMut(&'a str, &'a str)) {
        for (name, values) in self.0.iter() {
            if let Some(value) = values.first() {
                f(name.as_ref(), value.as_str());
            }
        }
    }
}

/// Publishes `event` through `service` (writing the `published` record)
/// and returns the headers to send with it on core NATS, and the event's
/// context. `parent` is a context the service already holds, else `None`
/// for a new flow; inside a handler use [`publish_child_headers`].
/// `messaging.system` is `nats` unless `event` names another.
pub fn publish_headers(
    service: &Service,
    parent: Option<&MessageContext>,
    event: Publish<'_>,
) -> (HeaderMap, MessageContext) {
    let mut headers = HeaderMap::new();
    let context = service.publish(
        parent,
        event.system_or(SYSTEM),
        &mut HeaderInjector(&mut headers),
    );
    (headers, context)
}

/// As [`publish_headers`], for an event caused by the one being handled
/// (same correlation id and trace, causation id = the handled event).
pub fn publish_child_headers(
    handling: &Handling,
    event: Publish<'_>,
) -> (HeaderMap, MessageContext) {
    publish_headers(handling.service(), Some(handling.context()), event)
}

/// As [`publish_headers`], for a JetStream publish: also sets
/// `Nats-Msg-Id` to the event id. Publishing the same headers again (a
/// retry after a lost ack) is then acknowledged with `duplicate: true`
/// and stored once, within the stream's duplicate window.
pub fn publish_jetstream_headers(
    service: &Service,
    parent: Option<&MessageContext>,
    event: Publish<'_>,
) -> (HeaderMap, MessageContext) {
    let (mut headers, context) = publish_headers(service, parent, event);
    set_message_id(&mut headers, &context);
    (headers, context)
}

/// As [`publish_jetstream_headers`], for an event caused by the one being
/// handled.
pub fn publish_child_jetstream_headers(
    handling: &Handling,
    event: Publish<'_>,
) -> (HeaderMap, MessageContext) {
    publish_jetstream_headers(handling.service(), Some(handling.context()), event)
}

/// Sets JetStream's dedupe id, `Nats-Msg-Id`, to the context's event id,
/// for headers built another way (e.g. [`Handling::publish`] into a
/// [`HeaderInjector`]).
pub fn set_message_id(headers: &mut HeaderMap, context: &MessageContext) {
    // Event ids are validated on creation (no control characters, at most
    // 128 bytes), so this only skips if that invariant were ever broken.
    if let Ok(value) = HeaderValue::from_str(context.event_id.as_str()) {
        headers.insert(NATS_MESSAGE_ID, value);
    }
}

/// Handles a core NATS message through [`Service::handle`]: the context is
/// read from its headers (a message without headers is handled in a fresh
/// flow), the destination is its subject and `messaging.system` is `nats`.
/// The handler's result is returned as is; replying is up to the caller.
/// Core NATS does not redeliver; for JetStream use [`handle_jetstream`].
///
/// The context is read before the future starts, so the future does not
/// borrow `message`.
pub fn handle<H, T, E>(
    service: &Service,
    message: &Message,
    consumer_group: &str,
    handler: H,
) -> impl Future<Output = Result<T, E>> + use<H, T, E>
where
    H: Handler<T, E>,
    E: Display,
{
    handle_delivered(service, message, consumer_group, None, handler)
}

/// Handles a JetStream message as [`handle`]; acking (after `Ok`) or
/// nak-ing stays with the caller, so the ack policy is theirs.
///
/// A message JetStream delivers for the second time or later (after a nak
/// or an ack wait that ran out) also writes `retried` before the handler
/// runs, with the attempt from [`redelivery`].
pub fn handle_jetstream<H, T, E>(
    service: &Service,
    message: &jetstream::Message,
    consumer_group: &str,
    handler: H,
) -> impl Future<Output = Result<T, E>> + use<H, T, E>
where
    H: Handler<T, E>,
    E: Display,
{
    handle_delivered(
        service,
        &message.message,
        consumer_group,
        redelivery(message),
        handler,
    )
}

/// The retry attempt of a message JetStream delivers again (its delivery
/// count less one), or `None` for a first delivery or when JetStream's
/// reply subject cannot be read.
pub fn redelivery(message: &jetstream::Message) -> Option<u32> {
    // JetStream counts deliveries from 1: the second is the first retry.
    message
        .info()
        .ok()
        .and_then(|info| u32::try_from(info.delivered.saturating_sub(1)).ok())
        .filter(|earlier| *earlier > 0)
}

/// [`Service::handle`] for a NATS message, marked as a redelivery or not.
fn handle_delivered<H, T, E>(
    service: &Service,
    message: &Message,
    consumer_group: &str,
    redelivery: Option<u32>,
    handler: H,
) -> impl Future<Output = Result<T, E>> + use<H, T, E>
where
    H: Handler<T, E>,
    E: Display,
{
    let empty = HeaderMap::new();
    let headers = message.headers.as_ref().unwrap_or(&empty);
    service.handle(
        &HeaderExtractor(headers),
        Consume::new(message.subject.as_str(), consumer_group)
            .system(SYSTEM)
            .redelivery(redelivery),
        handler,
    )
}

/// The former name of [`publish_jetstream_headers`].
#[deprecated(note = "use nats::publish_jetstream_headers")]
pub fn jetstream_publish_headers(
    service: &Service,
    parent: Option<&MessageContext>,
    event: Publish<'_>,
) -> (HeaderMap, MessageContext) {
    publish_jetstream_headers(service, parent, event)
}

/// The former name of [`handle`].
#[deprecated(note = "use nats::handle")]
pub fn handle_message<H, T, E>(
    service: &Service,
    message: &Message,
    consumer_group: &str,
    handler: H,
) -> impl Future<Output = Result<T, E>> + use<H, T, E>
where
    H: Handler<T, E>,
    E: Display,
{
    handle(service, message, consumer_group, handler)
}

/// The former name of [`handle_jetstream`].
#[deprecated(note = "use nats::handle_jetstream")]
pub fn handle_jetstream_message<H, T, E>(
    service: &Service,
    message: &jetstream::Message,
    consumer_group: &str,
    handler: H,
) -> impl Future<Output = Result<T, E>> + use<H, T, E>
where
    H: Handler<T, E>,
    E: Display,
{
    handle_jetstream(service, message, consumer_group, handler)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extract;

    #[test]
    fn context_survives_a_nats_header_map_under_lowercase_names() {
        let (headers, sent) = publish_headers(
            &Service::new("order"),
            None,
            Publish::new("OrderPlaced", "orders"),
        );
        let extractor = HeaderExtractor(&headers);
        let names = extractor.keys();
        assert!(names.contains(&"traceparent") && names.contains(&"correlation-id"));
        assert!(names.iter().all(|n| *n == n.to_ascii_lowercase()));
        let got = extract(&HeaderExtractor(&headers));
        assert_eq!((got.trace_id, got.span_id), (sent.trace_id, sent.span_id));
        assert_eq!(got.correlation_id, sent.correlation_id);
        assert_eq!(got.event_id, sent.event_id);
        assert!(
            headers.get(NATS_MESSAGE_ID).is_none(),
            "core publish has no dedupe id"
        );
    }

    #[test]
    fn other_casings_are_read() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "Traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        );
        headers.insert("Correlation-ID", "order-7");
        let got = extract(&HeaderExtractor(&headers));
        assert_eq!(got.trace_id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(got.correlation_id.as_str(), "order-7");
    }

    #[test]
    fn the_exact_name_wins_over_another_casing() {
        let mut headers = HeaderMap::new();
        headers.insert("correlation-id", "exact");
        headers.insert("Correlation-Id", "other");
        assert_eq!(
            HeaderExtractor(&headers).get("correlation-id"),
            Some("exact")
        );
        assert_eq!(
            extract(&HeaderExtractor(&headers)).correlation_id.as_str(),
            "exact"
        );
    }

    #[test]
    fn between_two_other_casings_the_first_in_sort_order_wins_whatever_the_map_order() {
        // Hash order differs from map to map: build several and expect the
        // same answer from each, through `get` and through one-pass `extract`.
        for _ in 0..16 {
            let mut headers = HeaderMap::new();
            headers.insert("Correlation-Id", "mixed");
            headers.insert("CORRELATION-ID", "upper");
            let extractor = HeaderExtractor(&headers);
            assert_eq!(extractor.get("correlation-id"), Some("upper"));
            assert_eq!(extract(&extractor).correlation_id.as_str(), "upper");
        }
    }

    #[test]
    fn injecting_replaces_a_stale_header_in_another_casing() {
        let mut headers = HeaderMap::new();
        headers.insert("Traceparent", "00-stale");
        headers.append("keep", "1");
        headers.append("keep", "2");
        HeaderInjector(&mut headers).set("traceparent", "fresh".to_owned());
        let extractor = HeaderExtractor(&headers);
        let mut names = extractor.keys();
        names.sort_unstable();
        assert_eq!(names, ["keep", "traceparent"]);
        assert_eq!(extractor.get("Traceparent"), Some("fresh"));
        assert_eq!(headers.get_all("keep").count(), 2);
    }

    #[test]
    fn unsafe_names_and_values_are_skipped_without_panicking() {
        let mut headers = HeaderMap::new();
        let mut injector = HeaderInjector(&mut headers);
        injector.set("event-type", "Evil\r\nX-Injected: 1".to_owned());
        injector.set("event-type", "tab\tor\u{1b}escape".to_owned());
        injector.set("bad:name", "v".to_owned());
        injector.set("bad\nname", "v".to_owned());
        injector.set("näme", "v".to_owned());
        assert!(headers.is_empty());
        // Lookups of names NATS cannot carry do not panic either.
        assert_eq!(HeaderExtractor(&headers).get("bad:name"), None);
    }

    #[test]
    fn jetstream_headers_carry_the_event_id_as_nats_msg_id() {
        let (headers, sent) = publish_jetstream_headers(
            &Service::new("order"),
            None,
            Publish::new("OrderPlaced", "orders"),
        );
        assert_eq!(
            headers.get(NATS_MESSAGE_ID).map(HeaderValue::as_str),
            Some(sent.event_id.as_str())
        );
    }

    fn message(subject: &str, headers: HeaderMap) -> Message {
        Message {
            subject: subject.into(),
            reply: None,
            payload: "{}".into(),
            headers: Some(headers),
            status: None,
            description: None,
            length: 0,
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_message_is_handled_in_its_publisher_flow_and_a_child_is_caused_by_it() {
        let (headers, sent) = publish_headers(
            &Service::new("order"),
            None,
            Publish::new("OrderPlaced", "orders"),
        );
        let (handled, child, child_headers) = handle(
            &Service::new("payment"),
            &message("orders", headers),
            "payment",
            |handling| async move {
                let (headers, child) = publish_child_jetstream_headers(
                    &handling,
                    Publish::new("PaymentSucceeded", "payments"),
                );
                Ok::<_, std::io::Error>((handling.context().clone(), child, headers))
            },
        )
        .await
        .unwrap();
        assert_eq!(handled.correlation_id, sent.correlation_id);
        assert_eq!(handled.parent_span_id, Some(sent.span_id));
        assert_eq!(child.causation_id, Some(sent.event_id));
        assert_eq!(
            child_headers.get(NATS_MESSAGE_ID).map(HeaderValue::as_str),
            Some(child.event_id.as_str())
        );
    }

    #[tokio::test(flavor = "current_thread")]
    #[allow(deprecated)] // the former names, kept as aliases
    async fn the_former_names_still_publish_and_handle() {
        let (headers, sent) = jetstream_publish_headers(
            &Service::new("order"),
            None,
            Publish::new("OrderPlaced", "orders"),
        );
        assert_eq!(
            headers.get(NATS_MESSAGE_ID).map(HeaderValue::as_str),
            Some(sent.event_id.as_str())
        );
        let handled = handle_message(
            &Service::new("payment"),
            &message("orders", headers),
            "payment",
            |handling| async move { Ok::<_, std::io::Error>(handling.context().clone()) },
        )
        .await
        .unwrap();
        assert_eq!(handled.correlation_id, sent.correlation_id);
    }

    #[test]
    fn nats_msg_id_stands_in_for_a_missing_event_id() {
        let mut headers = HeaderMap::new();
        headers.insert(NATS_MESSAGE_ID, "order-7-placed");
        assert_eq!(
            extract(&HeaderExtractor(&headers)).event_id.as_str(),
            "order-7-placed"
        );
        headers.insert("event-id", "the-event");
        assert_eq!(
            extract(&HeaderExtractor(&headers)).event_id.as_str(),
            "the-event"
        );
    }
}
