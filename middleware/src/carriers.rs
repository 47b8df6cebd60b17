//! Carriers for `http::HeaderMap`, the header type of axum, hyper and
//! reqwest. Writing, a value that is not a valid header value is skipped
//! (and was already refused by the propagation layer's cleaning); reading,
//! values are taken as UTF-8 text.

use http::HeaderMap;
use http::header::{HeaderName, HeaderValue};
use opentelemetry::propagation::{Extractor, Injector};

use crate::propagation::{Carrier, CarrierMut, FIELDS, canonical_field, names_by_field};

/// Writes context into a request's or response's headers.
#[derive(Debug)]
pub struct HeaderMapInjector<'a>(pub &'a mut HeaderMap);

/// causeway's own names by field, made at compile time.
static NAMES: [HeaderName; FIELDS] = names_by_field!(HeaderName::from_static);

/// causeway's own names without parsing or allocation; any other name is
/// parsed (and skipped if it is not a valid header name).
fn header_name(key: &str) -> Option<HeaderName> {
    match canonical_field(key) {
        Some(field) => Some(NAMES[field.index()].clone()),
        None => HeaderName::from_bytes(key.as_bytes()).ok(),
    }
}

impl Injector for HeaderMapInjector<'_> {
    fn reserve(&mut self, additional: usize) {
        self.0.reserve(additional);
    }

    fn set(&mut self, key: &str, value: String) {
        // `HeaderValue::try_from(String)` takes the string's buffer as is.
        if let (Some(name), Ok(value)) = (header_name(key), HeaderValue::try_from(value)) {
            self.0.insert(name, value);
        }
    }
}

impl CarrierMut for HeaderMapInjector<'_> {
    fn set_header(&mut self, name: &'static str, value: &str) {
        if let (Some(name), Ok(value)) = (header_name(name), HeaderValue::from_str(value)) {
            self.0.insert(name, value);
        }
    }
}

/// Reads context from a request's or response's headers.
#[derive(Debug)]
pub struct HeaderMapExtractor<'a>(pub &'a HeaderMap);

/// A header value as text: visible ASCII, or else any UTF-8 (HTTP allows
/// other bytes, and senders put UTF-8 there).
fn value_text(value: &HeaderValue) -> Option<&str> {
    value
        .to_str()
        .ok()
        .or_else(|| std::str::from_utf8(value.as_bytes()).ok())
}

impl Extractor for HeaderMapExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(value_text)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

impl Carrier for HeaderMapExtractor<'_> {
    /// Every value of every header, in the map's order; a value that is not
    /// UTF-8 is passed as [`UNREADABLE`](crate::UNREADABLE).
    fn for_each_header<'a>(&'a self, f: &mut dyn FnMut(&'a str, &'a str)) {
        for (name, value) in self.0 {
            f(
                name.as_str(),
                value_text(value).unwrap_or(crate::UNREADABLE),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Publish, Service, extract};

    #[test]
    fn utf8_values_are_read_and_other_bytes_counted() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "event-type",
            HeaderValue::from_bytes("Commande passée".as_bytes()).unwrap(),
        );
        headers.insert(
            "correlation-id",
            HeaderValue::from_bytes(&[0xc3, 0x28]).unwrap(),
        );
        let propagation = crate::Propagation::default();
        let got = propagation.extract(&HeaderMapExtractor(&headers));
        assert_eq!(got.event_type.as_deref(), Some("Commande passée"));
        assert_eq!(propagation.stats().invalid_values, 1);
    }

    #[test]
    fn context_survives_a_header_map() {
        let mut headers = HeaderMap::new();
        let sent = Service::new("web").publish(
            None,
            Publish::new("CheckoutRequested", "/checkout").system("http"),
            &mut HeaderMapInjector(&mut headers),
        );
        assert!(headers.contains_key("traceparent"));
        let got = extract(&HeaderMapExtractor(&headers));
        assert_eq!((got.trace_id, got.span_id), (sent.trace_id, sent.span_id));
        assert_eq!(got.correlation_id, sent.correlation_id);
        assert_eq!(got.event_id, sent.event_id);
    }
}
