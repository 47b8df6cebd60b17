//! Header extraction on any headers, through a `HashMap` and an
//! `http::HeaderMap`: it never fails or panics, and what it keeps is
//! bounded and free of control characters.

#![no_main]

use std::collections::HashMap;

use causeway_middleware::{HeaderMapExtractor, MessageContext, Propagation};
use libfuzzer_sys::fuzz_target;

fn check(context: &MessageContext) {
    let kept = [
        Some(context.correlation_id.as_str()),
        Some(context.event_id.as_str()),
        context.causation_id.as_ref().map(|id| id.as_str()),
        context.event_type.as_ref().map(|t| t.as_str()),
        context.source.as_ref().map(|s| s.as_str()),
        context.tracestate.as_deref(),
        context.baggage.as_deref(),
        context.schema_version.as_deref(),
    ];
    for value in kept.into_iter().flatten() {
        assert!(value.len() <= 512, "{} bytes kept", value.len());
        assert!(!value.chars().any(char::is_control), "{value:?}");
    }
}

fuzz_target!(|input: &str| {
    // One header a line, `name: value`; a line without a colon is a name
    // with an empty value.
    let pairs: Vec<(&str, &str)> = input
        .lines()
        .map(|line| line.split_once(':').unwrap_or((line, "")))
        .map(|(name, value)| (name, value.strip_prefix(' ').unwrap_or(value)))
        .collect();
    let propagation = Propagation::default();

    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .collect();
    check(&propagation.extract(&map));

    let mut headers = http::HeaderMap::new();
    for (name, value) in &pairs {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(name.as_bytes()),
            http::HeaderValue::from_bytes(value.as_bytes()),
        ) {
            headers.append(name, value);
        }
    }
    check(&propagation.extract(&HeaderMapExtractor(&headers)));
});
