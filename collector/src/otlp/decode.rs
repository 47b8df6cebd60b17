//! Reading an OTLP request body, bounded: gzip inflated up to a limit (a
//! zip bomb stops at the limit, it is never inflated whole), and the spans
//! or log records counted on the encoded bytes before anything is decoded,
//! since an empty span is two bytes of protobuf (three of JSON) but a few
//! hundred once decoded: the count is refused past the batch limit first.
//! The same walk over the wire format finds a protobuf export's items with
//! their resource and scope ([`wire_scopes`]), whose bytes the mapping
//! hashes.
//!
//! Pure functions over byte slices; it knows nothing of HTTP or gRPC.

use std::io::Read;

use flate2::read::GzDecoder;
use prost::Message;
use serde::de::DeserializeOwned;

/// How the body is encoded (OTLP/HTTP `Content-Type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    /// From a `Content-Type` value; parameters (`; charset=utf-8`) ignored.
    pub(crate) fn from_content_type(value: &str) -> Option<Self> {
        let essence = value.split(';').next().unwrap_or("").trim();
        if essence.eq_ignore_ascii_case("application/x-protobuf") {
            Some(Encoding::Protobuf)
        } else if essence.eq_ignore_ascii_case("application/json") {
            Some(Encoding::Json)
        } else {
            None
        }
    }

    pub(crate) fn content_type(self) -> &'static str {
        match self {
            Encoding::Protobuf => "application/x-protobuf",
            Encoding::Json => "application/json",
        }
    }
}

/// Why a body was not read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DecodeError {
    /// Past a size or count limit.
    TooLarge(String),
    /// Not a valid request.
    Bad(String),
}

/// Inflates a gzip body, refusing one that inflates past `limit` bytes
/// without inflating more than that.
pub(crate) fn gunzip(body: &[u8], limit: usize) -> Result<Vec<u8>, DecodeError> {
    let mut inflated = Vec::with_capacity(body.len().saturating_mul(4).min(limit));
    let read = GzDecoder::new(body)
        .take(u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1))
        .read_to_end(&mut inflated);
    match read {
        Err(error) => Err(DecodeError::Bad(format!(
            "the gzip body is invalid: {error}"
        ))),
        Ok(n) if n > limit => Err(DecodeError::TooLarge(format!(
            "the body inflates past {limit} bytes"
        ))),
        Ok(_) => Ok(inflated),
    }
}

/// Decodes a request after counting what it holds: more than
/// `max_records` spans or log records is refused before decoding.
pub(crate) fn decode<T: Message + Default + DeserializeOwned>(
    body: &[u8],
    encoding: Encoding,
    max_records: usize,
    what: &str,
) -> Result<T, DecodeError> {
    let count = match encoding {
        Encoding::Protobuf => count_protobuf(body)?,
        Encoding::Json => count_json(body)?,
    };
    if count > max_records {
        return Err(DecodeError::TooLarge(format!(
            "the request holds {count} {what}, the limit is {max_records}"
        )));
    }
    match encoding {
        Encoding::Protobuf => T::decode(body)
            .map_err(|error| DecodeError::Bad(format!("not an OTLP protobuf request: {error}"))),
        Encoding::Json => serde_json::from_slice(body)
            .map_err(|error| DecodeError::Bad(format!("not an OTLP JSON request: {error}"))),
    }
}

/// Where the records sit in both export requests: `resource_spans` (1) ->
/// `scope_spans` (2) -> `spans` (2), and `resource_logs` (1) ->
/// `scope_logs` (2) -> `log_records` (2).
const PROTOBUF_PATH: [u64; 3] = [1, 2, 2];
/// The same path in OTLP/JSON (its names are lowerCamelCase).
const JSON_PATHS: [[&str; 3]; 2] = [
    ["resourceSpans", "scopeSpans", "spans"],
    ["resourceLogs", "scopeLogs", "logRecords"],
];
/// Deeper than this is refused (serde_json stops at 128 anyway).
const MAX_JSON_DEPTH: usize = 128;

/// Counts the spans (or log records) of an encoded export request by
/// walking the protobuf wire format, decoding nothing.
pub(crate) fn count_protobuf(body: &[u8]) -> Result<usize, DecodeError> {
    count_fields(body, &PROTOBUF_PATH)
        .map_err(|reason| DecodeError::Bad(format!("not an OTLP protobuf request: {reason}")))
}

fn count_fields(mut buf: &[u8], path: &[u64]) -> Result<usize, &'static str> {
    let Some((&field, rest)) = path.split_first() else {
        return Ok(0);
    };
    let mut count = 0usize;
    while !buf.is_empty() {
        if let Some((number, inner)) = next_field(&mut buf)?
            && number == field
        {
            count += if rest.is_empty() {
                1
            } else {
                count_fields(inner, rest)?
            };
        }
    }
    Ok(count)
}

/// The items (spans or log records) of a resource and scope as received:
/// their encodings, and the resource's and scope's (empty when absent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WireScope<'a> {
    pub resource: &'a [u8],
    pub scope: &'a [u8],
    pub items: Vec<&'a [u8]>,
}

/// An encoded export request's items by resource and scope, in the order
/// decoding it lists them, read off the wire format without decoding:
/// for each `resource_*` (1), its `resource` (1) and `scope_*` (2), for
/// each of those its `scope` (1) and items (2). `None` when the bytes do
/// not walk, or a resource or scope is given twice (protobuf merges the
/// two, so neither is the resource the items belong to on its own).
pub(crate) fn wire_scopes(mut body: &[u8]) -> Option<Vec<WireScope<'_>>> {
    let mut scopes = Vec::new();
    while !body.is_empty() {
        let Some((1, mut resource_items)) = next_field(&mut body).ok()? else {
            continue;
        };
        let first = scopes.len();
        let mut resource = None;
        while !resource_items.is_empty() {
            match next_field(&mut resource_items).ok()? {
                Some((1, part)) if resource.replace(part).is_some() => return None,
                Some((2, part)) => scopes.push(wire_scope(part)?),
                _ => {}
            }
        }
        for scope in &mut scopes[first..] {
            scope.resource = resource.unwrap_or_default();
        }
    }
    Some(scopes)
}

fn wire_scope(mut scope_items: &[u8]) -> Option<WireScope<'_>> {
    let mut scope = None;
    let mut items = Vec::new();
    while !scope_items.is_empty() {
        match next_field(&mut scope_items).ok()? {
            Some((1, part)) if scope.replace(part).is_some() => return None,
            Some((2, part)) => items.push(part),
            _ => {}
        }
    }
    Some(WireScope {
        resource: &[],
        scope: scope.unwrap_or_default(),
        items,
    })
}

/// The next field of `buf`, read past: its number and bytes if it is
/// length-delimited, `None` for another wire type.
fn next_field<'a>(buf: &mut &'a [u8]) -> Result<Option<(u64, &'a [u8])>, &'static str> {
    let key = varint(buf)?;
    let (field, skip) = match key & 7 {
        0 => {
            varint(buf)?;
            (None, 0)
        }
        1 => (None, 8),
        2 => {
            let len = usize::try_from(varint(buf)?).map_err(|_| "length overflow")?;
            let inner = buf.get(..len).ok_or("truncated message")?;
            (Some((key >> 3, inner)), len)
        }
        5 => (None, 4),
        _ => return Err("unsupported wire type"),
    };
    *buf = buf.get(skip..).ok_or("truncated message")?;
    Ok(field)
}

fn varint(buf: &mut &[u8]) -> Result<u64, &'static str> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = buf.split_first().ok_or("truncated varint")?;
        *buf = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err("varint too long")
}

/// One open JSON container while scanning.
struct Frame {
    array: bool,
    /// An object: whether the next string is a key. An array: unused.
    expect_key: bool,
    /// An object: its current key is one of a path's names, by path
    /// position (an escaped key counts as any, so escaping cannot hide
    /// records from the count). An array: the key it is the value of.
    key: KeyMatch,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum KeyMatch {
    None,
    Any,
    Name(&'static str),
}

/// Counts the objects at `resourceSpans[].scopeSpans[].spans[]` (or the
/// logs' path) in an OTLP/JSON body, by scanning its brackets, strings and
/// keys only. Over-counts rather than under-counts.
pub(crate) fn count_json(body: &[u8]) -> Result<usize, DecodeError> {
    let mut stack: Vec<Frame> = Vec::new();
    let mut count = 0usize;
    let mut i = 0;
    while i < body.len() {
        match body[i] {
            b'"' => {
                let start = i + 1;
                let mut escaped = false;
                i = start;
                loop {
                    match body.get(i) {
                        None => return Err(bad_json("unterminated string")),
                        Some(b'\\') => {
                            escaped = true;
                            i += 2;
                        }
                        Some(b'"') => break,
                        Some(_) => i += 1,
                    }
                }
                let text = &body[start..i.min(body.len())];
                if let Some(top) = stack.last_mut().filter(|f| !f.array && f.expect_key) {
                    top.expect_key = false;
                    top.key = if escaped {
                        KeyMatch::Any
                    } else {
                        JSON_PATHS
                            .iter()
                            .flatten()
                            .find(|name| name.as_bytes() == text)
                            .map_or(KeyMatch::None, |name| KeyMatch::Name(name))
                    };
                }
            }
            open @ (b'{' | b'[') => {
                if stack.len() >= MAX_JSON_DEPTH {
                    return Err(bad_json("nested too deep"));
                }
                let array = open == b'[';
                if !array && on_record_path(&stack) {
                    count += 1;
                }
                let key = match stack.last() {
                    Some(parent) if array && !parent.array => parent.key,
                    _ => KeyMatch::None,
                };
                stack.push(Frame {
                    array,
                    expect_key: !array,
                    key,
                });
            }
            b'}' | b']' => {
                stack.pop();
            }
            b',' => {
                if let Some(top) = stack.last_mut().filter(|f| !f.array) {
                    top.expect_key = true;
                    top.key = KeyMatch::None;
                }
            }
            _ => {}
        }
        i += 1;
    }
    Ok(count)
}

/// Whether an object opened now is a span or log record: the stack is
/// root object, array under the path's first name, object, array under the
/// second, object, array under the third.
fn on_record_path(stack: &[Frame]) -> bool {
    if stack.len() != 6 {
        return false;
    }
    JSON_PATHS.iter().any(|path| {
        path.iter().enumerate().all(|(level, name)| {
            let frame = &stack[2 * level + 1];
            frame.array && (frame.key == KeyMatch::Any || frame.key == KeyMatch::Name(name))
        }) && stack.iter().step_by(2).all(|f| !f.array)
    })
}

fn bad_json(reason: &str) -> DecodeError {
    DecodeError::Bad(format!("not an OTLP JSON request: {reason}"))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use flate2::Compression;
    use flate2::write::GzEncoder;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{InstrumentationScope, KeyValue};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

    use super::*;

    fn request(resources: usize, scopes: usize, spans: usize) -> ExportTraceServiceRequest {
        let span = Span {
            name: "a span".into(),
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            ..Span::default()
        };
        ExportTraceServiceRequest {
            resource_spans: vec![
                ResourceSpans {
                    scope_spans: vec![
                        ScopeSpans {
                            spans: vec![span; spans],
                            ..ScopeSpans::default()
                        };
                        scopes
                    ],
                    ..ResourceSpans::default()
                };
                resources
            ],
        }
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    #[test]
    fn records_are_counted_on_the_encoded_bytes_in_both_encodings() {
        let request = request(2, 3, 4);
        assert_eq!(count_protobuf(&request.encode_to_vec()), Ok(24));
        let json = serde_json::to_vec(&request).unwrap();
        assert_eq!(count_json(&json), Ok(24));
        assert_eq!(count_json(br#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{},{"body":{"stringValue":"{["}}]}]}]}"#), Ok(2));
    }

    #[test]
    fn an_escaped_key_cannot_hide_records_from_the_count() {
        let body = br#"{"resourceSpans":[{"scopeSpans":[{"sp\u0061ns":[{},{},{}]}]}]}"#;
        assert_eq!(count_json(body), Ok(3));
    }

    #[test]
    fn too_many_records_are_refused_before_decoding() {
        let body = request(1, 1, 11).encode_to_vec();
        let refused = decode::<ExportTraceServiceRequest>(&body, Encoding::Protobuf, 10, "spans");
        assert!(matches!(refused, Err(DecodeError::TooLarge(m)) if m.contains("11 spans")));
        let decoded: ExportTraceServiceRequest =
            decode(&body, Encoding::Protobuf, 11, "spans").unwrap();
        assert_eq!(decoded, request(1, 1, 11));
        // Two bytes of protobuf per empty span: refused by the count alone.
        let mut bomb = Vec::new();
        let spans = [0x12, 0x00].repeat(100_000);
        let scope = [vec![0x12], varint_bytes(spans.len()), spans].concat();
        bomb.extend([vec![0x0a], varint_bytes(scope.len()), scope].concat());
        assert!(matches!(
            decode::<ExportTraceServiceRequest>(&bomb, Encoding::Protobuf, 10_000, "spans"),
            Err(DecodeError::TooLarge(_))
        ));
    }

    fn varint_bytes(mut n: usize) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return out;
            }
            out.push(byte | 0x80);
        }
    }

    #[test]
    fn a_truncated_protobuf_is_bad_not_a_panic() {
        let body = request(1, 1, 2).encode_to_vec();
        for cut in 1..body.len() {
            let _ = count_protobuf(&body[..cut]);
        }
        assert!(matches!(
            count_protobuf(&[0x0a, 0x05, 0x01]),
            Err(DecodeError::Bad(_))
        ));
    }

    /// A length-delimited field: its key, length and bytes.
    fn field(number: u8, bytes: &[u8]) -> Vec<u8> {
        let mut out = vec![number << 3 | 2];
        out.extend(varint_bytes(bytes.len()));
        out.extend_from_slice(bytes);
        out
    }

    #[test]
    fn an_exports_items_are_read_off_the_wire_with_their_resource_and_scope() {
        let mut request = request(2, 2, 2);
        let first = &mut request.resource_spans[0];
        first.resource = Some(Resource {
            attributes: vec![KeyValue {
                key: "service.name".into(),
                ..KeyValue::default()
            }],
            ..Resource::default()
        });
        first.scope_spans[1].scope = Some(InstrumentationScope {
            name: "orders".into(),
            ..InstrumentationScope::default()
        });
        first.scope_spans[1].spans[1].name = "another span".into();
        let body = request.encode_to_vec();
        let scopes = wire_scopes(&body).expect("a prost encoding walks");
        let mut encoded = Vec::new();
        for resource_spans in &request.resource_spans {
            for scope_spans in &resource_spans.scope_spans {
                encoded.push((
                    resource_spans.resource.as_ref().map(Message::encode_to_vec),
                    scope_spans.scope.as_ref().map(Message::encode_to_vec),
                    scope_spans
                        .spans
                        .iter()
                        .map(Message::encode_to_vec)
                        .collect::<Vec<_>>(),
                ));
            }
        }
        assert_eq!(scopes.len(), encoded.len());
        for (scope, (resource, scope_bytes, items)) in scopes.iter().zip(&encoded) {
            assert_eq!(scope.resource, resource.as_deref().unwrap_or_default());
            assert_eq!(scope.scope, scope_bytes.as_deref().unwrap_or_default());
            assert_eq!(
                scope.items,
                items.iter().map(Vec::as_slice).collect::<Vec<_>>()
            );
        }
        assert!(!scopes[0].resource.is_empty() && scopes[2].resource.is_empty());
        assert!(!scopes[1].scope.is_empty() && scopes[0].scope.is_empty());

        // A resource after its scopes is still theirs; other fields and
        // wire types are passed over.
        let (item, resource) = (b"\x0a\x01x".as_slice(), b"\x0a\x00".as_slice());
        let mut scope_items = field(2, item);
        scope_items.extend([0x18, 0x96, 0x01]);
        let mut resource_items = field(2, &scope_items);
        resource_items.extend(field(3, b"https://schema"));
        resource_items.extend(field(1, resource));
        let body = field(1, &resource_items);
        let scopes = wire_scopes(&body).unwrap();
        assert_eq!(
            scopes,
            [WireScope {
                resource,
                scope: &[],
                items: vec![item],
            }]
        );

        // Given twice, a resource or a scope is merged by decoding: neither
        // occurrence is the one its items sit under.
        let mut twice = resource_items.clone();
        twice.extend(field(1, resource));
        assert_eq!(wire_scopes(&field(1, &twice)), None);
        let mut twice = scope_items.clone();
        twice.extend(field(1, b""));
        twice.extend(field(1, b""));
        assert_eq!(wire_scopes(&field(1, &field(2, &twice))), None);
        // Bytes that do not walk.
        for cut in 1..body.len() {
            assert_eq!(wire_scopes(&body[..cut]), None, "cut at {cut}");
        }
    }

    #[test]
    fn gzip_inflates_up_to_the_limit_and_no_further() {
        let body = vec![b'a'; 1 << 20];
        let zipped = gzip(&body);
        assert_eq!(gunzip(&zipped, 1 << 20).unwrap(), body);
        assert!(matches!(
            gunzip(&zipped, (1 << 20) - 1),
            Err(DecodeError::TooLarge(_))
        ));
        assert!(matches!(gunzip(b"not gzip", 100), Err(DecodeError::Bad(_))));
    }

    #[test]
    fn content_types_are_read_with_parameters() {
        assert_eq!(
            Encoding::from_content_type("application/json; charset=utf-8"),
            Some(Encoding::Json)
        );
        assert_eq!(
            Encoding::from_content_type("Application/X-Protobuf"),
            Some(Encoding::Protobuf)
        );
        assert_eq!(Encoding::from_content_type("text/plain"), None);
    }
}
