//! Turning one log line into a [`Record`]: our own field names first (the
//! model's [`RecordField`] names), then a few common aliases, everything
//! else kept as attributes. Each declared field is read by an exhaustive
//! `match`, so a new field does not compile until it is read here.
//!
//! Parsing never fails and never drops what it was given: a line that is
//! not a JSON object becomes a malformed record holding the (cut) raw text,
//! and a field whose value is unusable (a bad trace id, an unknown stage, a
//! timestamp in a foreign format) is kept raw under `invalid.<key>` with
//! the reason under `invalid.reasons`. This module does no I/O.
//!
//! The agent reads its sources' lines with it, and the collector a batch's
//! raw lines (see [`crate::wire`]), so a line means the same whichever
//! side parses it.

use crate::text::cut_raw;
use crate::{
    CorrelationId, EventId, Level, Malformed, Record, RecordField, SpanId, SpanLink, Timestamp,
    TraceId,
};
use serde_json::{Map, Value};

/// Keys read for a field when its own name is absent, first present wins.
fn aliases(field: RecordField) -> &'static [&'static str] {
    match field {
        RecordField::Timestamp => &["time", "ts", "@timestamp"],
        RecordField::Level => &["severity", "lvl"],
        RecordField::Service => &["service.name"],
        RecordField::Message => &["msg"],
        RecordField::Instance
        | RecordField::Stage
        | RecordField::TraceId
        | RecordField::SpanId
        | RecordField::ParentSpanId
        | RecordField::CorrelationId
        | RecordField::CausationId
        | RecordField::EventId
        | RecordField::EventType
        | RecordField::MessagingSystem
        | RecordField::Destination
        | RecordField::ConsumerGroup
        | RecordField::DurationUs
        | RecordField::ErrorType
        | RecordField::ErrorMessage
        | RecordField::Attributes
        | RecordField::Malformed
        | RecordField::Links => &[],
    }
}
/// The attribute holding, per invalid key, why its value was not used.
pub const INVALID_REASONS: &str = "invalid.reasons";

/// Maps one line onto a record.
///
/// `fallback_service` names lines that carry no service; `read_at` stamps
/// lines that carry no (usable) timestamp and malformed lines. A trailing
/// `\n` or `\r\n` is ignored.
///
/// Timestamps are RFC 3339 strings or Unix epoch numbers (seconds,
/// milliseconds, microseconds or nanoseconds, told apart by magnitude).
/// Levels are names in any case (`warning`, `FATAL`, ...), bunyan/pino
/// numbers (10 trace ... 60 fatal) or syslog severities (0 emerg ... 7
/// debug).
pub fn parse_line(line: &str, fallback_service: &str, read_at: Timestamp) -> Record {
    let line = line.strip_suffix('\n').unwrap_or(line);
    let line = line.strip_suffix('\r').unwrap_or(line);
    read_own_shape(line).unwrap_or_else(|| parse_any_shape(line, fallback_service, read_at))
}

/// A line already in the record's own shape (what the middleware writes),
/// read by [`Record`]'s own deserializer, without building a [`Value`]
/// first (BENCHMARKS.md, Collector ingest, run E); `None` unless what it
/// reads is what
/// [`parse_any_shape`] would: every key a field name (the deserializer
/// refuses others), every value valid for its field (the same parsers),
/// a service, and no empty text where the lenient reading sees an absent
/// field. A test holds the two readings equal.
fn read_own_shape(line: &str) -> Option<Record> {
    let record: Record = serde_json::from_str(line).ok()?;
    let empty = |text: Option<&str>| text.is_some_and(str::is_empty);
    let absent_as_lenient = !record.service.is_empty()
        && !empty(record.instance.as_deref())
        && !empty(record.event_type.as_deref())
        && !empty(record.messaging_system.as_deref())
        && !empty(record.destination.as_deref())
        && !empty(record.consumer_group.as_deref())
        && !empty(record.error_type.as_deref())
        && !empty(record.error_message.as_deref())
        && !empty(record.correlation_id.as_ref().map(CorrelationId::as_str))
        && !empty(record.causation_id.as_ref().map(EventId::as_str))
        && !empty(record.event_id.as_ref().map(EventId::as_str));
    absent_as_lenient.then_some(record)
}

/// [`parse_line`] for a line in any shape.
fn parse_any_shape(line: &str, fallback_service: &str, read_at: Timestamp) -> Record {
    let fields = match serde_json::from_str::<Value>(line) {
        Ok(Value::Object(fields)) => fields,
        Ok(other) => {
            let reason = format!("not a JSON object but {}", kind(&other));
            return Record::malformed(read_at, fallback_service, cut_raw(line), reason);
        }
        Err(error) => {
            let reason = format!("not JSON: {error}");
            return Record::malformed(read_at, fallback_service, cut_raw(line), reason);
        }
    };
    parse_object(fields, fallback_service, read_at)
}

/// Maps a JSON object (a line already read by its format, see
/// the agent's formats) onto a record, as [`parse_line`] does.
pub fn parse_object(
    fields: Map<String, Value>,
    fallback_service: &str,
    read_at: Timestamp,
) -> Record {
    Mapper::new(fields).into_record(fallback_service, read_at)
}

/// What a JSON value is, for a reason (`a string`, `an object`, ...).
pub fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Takes the known fields out of a JSON object one by one; what is left at
/// the end becomes attributes.
struct Mapper {
    fields: Map<String, Value>,
    invalid: Map<String, Value>,
    reasons: Map<String, Value>,
}

impl Mapper {
    fn new(fields: Map<String, Value>) -> Self {
        Self {
            fields,
            invalid: Map::new(),
            reasons: Map::new(),
        }
    }

    /// Removes and returns the field's own key or else the first of its
    /// aliases present with a value other than `null` or `""`. Later
    /// aliases stay behind as attributes.
    fn take(&mut self, field: RecordField) -> Option<(String, Value)> {
        for key in std::iter::once(field.name()).chain(aliases(field).iter().copied()) {
            match self.fields.get(key) {
                None => continue,
                Some(Value::Null) => {
                    self.fields.remove(key);
                }
                Some(Value::String(s)) if s.is_empty() => {
                    self.fields.remove(key);
                }
                Some(_) => {
                    return self.fields.remove_entry(key);
                }
            }
        }
        None
    }

    /// Reads the field's first present key with `read`; an `Err` keeps the
    /// raw value under `invalid.<key>` and yields `None`.
    fn field<T>(
        &mut self,
        field: RecordField,
        read: impl FnOnce(&Value) -> Result<T, String>,
    ) -> Option<T> {
        let (key, value) = self.take(field)?;
        match read(&value) {
            Ok(parsed) => Some(parsed),
            Err(reason) => {
                self.reasons.insert(key.clone(), Value::String(reason));
                self.invalid.insert(format!("invalid.{key}"), value);
                None
            }
        }
    }

    fn into_record(mut self, fallback_service: &str, read_at: Timestamp) -> Record {
        // The service is set in its arm below, from the line or the fallback,
        // so a line that names its own costs no copy of the fallback.
        let mut record = Record::new(read_at, String::new(), "");
        let mut nested = None;
        for field in RecordField::ALL {
            match field {
                RecordField::Timestamp => {
                    if let Some(timestamp) = self.field(field, read_timestamp) {
                        record.timestamp = timestamp;
                    }
                }
                RecordField::Level => {
                    if let Some(level) = self.field(field, read_level) {
                        record.level = level;
                    }
                }
                RecordField::Service => {
                    record.service = self
                        .field(field, read_string)
                        .unwrap_or_else(|| fallback_service.to_owned());
                }
                RecordField::Instance => record.instance = self.field(field, read_scalar_text),
                RecordField::Message => {
                    record.message = self.field(field, |v| Ok(read_text(v))).unwrap_or_default();
                }
                RecordField::Stage => {
                    if let Some(stage) = self.field(field, |v| {
                        read_string(v)?.parse().map_err(|e| format!("{e}"))
                    }) {
                        record.stage = stage;
                    }
                }
                RecordField::TraceId => record.trace_id = self.field(field, read_parsed::<TraceId>),
                RecordField::SpanId => record.span_id = self.field(field, read_parsed::<SpanId>),
                RecordField::ParentSpanId => {
                    record.parent_span_id = self.field(field, read_parsed::<SpanId>);
                }
                RecordField::CorrelationId => {
                    record.correlation_id = self.field(field, |v| {
                        CorrelationId::new(read_scalar_text(v)?).map_err(|e| e.to_string())
                    });
                }
                RecordField::CausationId => record.causation_id = self.field(field, read_event_id),
                RecordField::EventId => record.event_id = self.field(field, read_event_id),
                RecordField::EventType => record.event_type = self.field(field, read_scalar_text),
                RecordField::MessagingSystem => {
                    record.messaging_system = self.field(field, read_scalar_text);
                }
                RecordField::Destination => {
                    record.destination = self.field(field, read_scalar_text);
                }
                RecordField::ConsumerGroup => {
                    record.consumer_group = self.field(field, read_scalar_text);
                }
                RecordField::DurationUs => record.duration_us = self.field(field, read_duration),
                RecordField::ErrorType => record.error_type = self.field(field, read_scalar_text),
                RecordField::ErrorMessage => {
                    record.error_message = self.field(field, read_scalar_text);
                }
                RecordField::Attributes => {
                    nested = self.field(field, |v| match v {
                        Value::Object(map) => Ok(map.clone()),
                        other => Err(format!("expected an object, found {}", kind(other))),
                    });
                }
                RecordField::Malformed => {
                    record.malformed = self.field(field, |v| {
                        serde_json::from_value::<Malformed>(v.clone()).map_err(|e| e.to_string())
                    });
                }
                RecordField::Links => {
                    record.links = self
                        .field(field, |v| {
                            serde_json::from_value::<Vec<SpanLink>>(v.clone())
                                .map_err(|e| e.to_string())
                        })
                        .unwrap_or_default();
                }
            }
        }

        // Everything not recognised, then the line's own `attributes`, then
        // what could not be used. Nothing the line said is dropped.
        let mut attributes = std::mem::take(&mut self.fields);
        for (key, value) in nested.into_iter().flatten() {
            if attributes.contains_key(&key) {
                attributes.insert(format!("attributes.{key}"), value);
            } else {
                attributes.insert(key, value);
            }
        }
        attributes.extend(self.invalid);
        if !self.reasons.is_empty() {
            attributes.insert(INVALID_REASONS.to_owned(), Value::Object(self.reasons));
        }
        record.attributes = attributes;
        record
    }
}

fn read_string(value: &Value) -> Result<String, String> {
    match value {
        Value::String(s) => Ok(s.clone()),
        other => Err(format!("expected a string, found {}", kind(other))),
    }
}

/// A string, or a number or boolean written out as text.
fn read_scalar_text(value: &Value) -> Result<String, String> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        other => Err(format!("expected a string, found {}", kind(other))),
    }
}

/// Any value as text: strings as they are, anything else as JSON.
fn read_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn read_event_id(value: &Value) -> Result<EventId, String> {
    EventId::new(read_scalar_text(value)?).map_err(|e| e.to_string())
}

fn read_parsed<T>(value: &Value) -> Result<T, String>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    read_string(value)?
        .parse()
        .map_err(|e: T::Err| e.to_string())
}

fn read_timestamp(value: &Value) -> Result<Timestamp, String> {
    match value {
        Value::String(s) => match s.parse() {
            Ok(timestamp) => Ok(timestamp),
            Err(error) => {
                read_space_separated(s).ok_or_else(|| (error as crate::TimestampError).to_string())
            }
        },
        Value::Number(n) => epoch_to_timestamp(n),
        other => Err(format!(
            "expected an RFC 3339 string or an epoch number, found {}",
            kind(other)
        )),
    }
}

/// `2026-11-28 01:15:52,521` (Python's `asctime`, log4j's default) or
/// with a `.`, and an offset or none (then UTC), as RFC 3339 reads it.
fn read_space_separated(text: &str) -> Option<Timestamp> {
    let bytes = text.as_bytes();
    if bytes.len() < 19 || bytes[10] != b' ' {
        return None;
    }
    let mut rfc = format!("{}T{}", &text[..10], &text[11..]).replacen(',', ".", 1);
    let zoned = rfc.ends_with('Z') || rfc[19..].contains(['+', '-']);
    if !zoned {
        rfc.push('Z');
    }
    rfc.parse().ok()
}

/// Epoch numbers, with the unit guessed from the magnitude: below 1e11 are
/// seconds (until the year 5138), below 1e14 milliseconds, below 1e17
/// microseconds, anything larger nanoseconds.
fn epoch_to_timestamp(n: &serde_json::Number) -> Result<Timestamp, String> {
    if let Some(i) = n.as_u64() {
        let micros = match i {
            0..100_000_000_000 => i.saturating_mul(1_000_000),
            100_000_000_000..100_000_000_000_000 => i.saturating_mul(1_000),
            100_000_000_000_000..100_000_000_000_000_000 => i,
            _ => i / 1_000,
        };
        return i64::try_from(micros)
            .ok()
            .and_then(Timestamp::from_micros_checked)
            .ok_or_else(|| format!("epoch {i} is past the year 9999"));
    }
    match n.as_f64() {
        Some(f) if f.is_finite() && f >= 0.0 => {
            let micros = if f < 1e11 {
                f * 1e6
            } else if f < 1e14 {
                f * 1e3
            } else if f < 1e17 {
                f
            } else {
                f / 1e3
            };
            // `as` saturates on overflow; the value is finite and non-negative,
            // and a saturated one is past the range RFC 3339 can write.
            Timestamp::from_micros_checked(micros.round() as i64)
                .ok_or_else(|| format!("epoch {n} is past the year 9999"))
        }
        _ => Err(format!("epoch {n} is negative or not a number")),
    }
}

fn read_level(value: &Value) -> Result<Level, String> {
    match value {
        Value::String(s) => {
            Level::parse_lenient(s.trim()).ok_or_else(|| format!("unknown level {s:?}"))
        }
        Value::Number(n) => match n.as_u64() {
            // syslog severities: 0 emerg ... 3 err, 4 warning, 5 notice,
            // 6 info, 7 debug.
            Some(0..=3) => Ok(Level::Error),
            Some(4) => Ok(Level::Warn),
            Some(5 | 6) => Ok(Level::Info),
            Some(7) => Ok(Level::Debug),
            // bunyan and pino: 10 trace, 20 debug, 30 info, 40 warn, 50
            // error, 60 fatal.
            Some(10..=19) => Ok(Level::Trace),
            Some(20..=29) => Ok(Level::Debug),
            Some(30..=39) => Ok(Level::Info),
            Some(40..=49) => Ok(Level::Warn),
            Some(50..=69) => Ok(Level::Error),
            _ => Err(format!("unknown numeric level {n}")),
        },
        other => Err(format!(
            "expected a level name or number, found {}",
            kind(other)
        )),
    }
}

fn read_duration(value: &Value) -> Result<u64, String> {
    match value {
        Value::Number(n) => n.as_u64().ok_or_else(|| {
            format!("expected a whole non-negative number of microseconds, found {n}")
        }),
        Value::String(s) => s
            .parse()
            .map_err(|_| format!("expected a whole number of microseconds, found {s:?}")),
        other => Err(format!("expected a number, found {}", kind(other))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Stage;
    use proptest::prelude::*;
    use serde_json::json;

    const READ_AT_MICROS: i64 = 1_000_000;

    fn read_at() -> Timestamp {
        Timestamp::from_micros(READ_AT_MICROS)
    }

    fn parse(value: Value) -> Record {
        parse_line(&value.to_string(), "file-stem", read_at())
    }

    /// Text that is empty now and then, as loggers write it.
    fn text() -> impl Strategy<Value = String> {
        prop_oneof![Just(String::new()), "[a-z0-9 .-]{1,12}"]
    }

    fn maybe_text() -> impl Strategy<Value = Option<String>> {
        proptest::option::of(text())
    }

    fn line_in_own_shape() -> impl Strategy<Value = String> {
        let ids = (
            proptest::option::of("[0-9a-f]{32}"),
            proptest::option::of("[0-9a-f]{16}"),
            proptest::option::of(prop_oneof![Just(String::new()), "order-[0-9]{1,4}"]),
            proptest::option::of(prop_oneof![Just(String::new()), "[0-9a-f-]{8,36}"]),
        );
        let texts = (
            text(),
            maybe_text(),
            maybe_text(),
            maybe_text(),
            maybe_text(),
            maybe_text(),
        );
        let rest = (
            proptest::sample::select(vec!["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "warn"]),
            proptest::sample::select(Stage::ALL.to_vec()),
            proptest::option::of(0u64..10_000_000),
            proptest::collection::btree_map("[a-z.]{1,6}", "[a-z0-9]{0,6}", 0..3),
            proptest::bool::ANY,
        );
        (ids, texts, rest).prop_map(
            |(
                (trace, span, correlation, event),
                (service, instance, event_type, destination, group, error),
                (level, stage, duration, attributes, with_null),
            )| {
                let mut line = json!({
                    "timestamp": "2026-11-28T05:00:00.123456Z",
                    "level": level,
                    "service": service,
                    "message": "m",
                    "stage": stage.as_str(),
                });
                let fields = [
                    ("trace_id", trace),
                    ("span_id", span),
                    ("correlation_id", correlation),
                    ("event_id", event),
                    ("instance", instance),
                    ("event_type", event_type),
                    ("destination", destination),
                    ("consumer_group", group),
                    ("error_message", error),
                ];
                for (key, value) in fields {
                    match value {
                        Some(value) => line[key] = json!(value),
                        None if with_null => line[key] = Value::Null,
                        None => {}
                    }
                }
                if let Some(duration) = duration {
                    line["duration_us"] = json!(duration);
                }
                if !attributes.is_empty() {
                    line["attributes"] = json!(attributes);
                }
                line.to_string()
            },
        )
    }

    proptest! {
        /// The fast reading of a line in the record's own shape gives the
        /// record the lenient reading gives, or steps aside.
        #[test]
        fn a_line_in_own_shape_reads_as_the_lenient_reading_reads_it(line in line_in_own_shape()) {
            prop_assert_eq!(
                parse_line(&line, "file-stem", read_at()),
                parse_any_shape(&line, "file-stem", read_at())
            );
        }
    }

    #[test]
    fn the_fast_reading_steps_aside_for_what_only_the_lenient_one_reads() {
        let own = r#"{"timestamp":"2026-11-28T05:00:00Z","service":"a","message":"m","correlation_id":"order-1"}"#;
        assert!(read_own_shape(own).is_some(), "the middleware's shape");
        for line in [
            r#"{"timestamp":"2026-11-28T05:00:00Z","service":"","message":"m"}"#,
            r#"{"timestamp":"2026-11-28T05:00:00Z","service":"a","instance":""}"#,
            r#"{"timestamp":"2026-11-28T05:00:00Z","service":"a","extra":1}"#,
            r#"{"ts":"2026-11-28T05:00:00Z","service":"a"}"#,
            r#"{"service":"a","message":"no time"}"#,
            r#"{"timestamp":"2026-11-28T05:00:00Z","service":"a","level":null}"#,
            r#"{"timestamp":"2026-11-28T05:00:00Z","service":"a","trace_id":"xyz"}"#,
        ] {
            assert!(read_own_shape(line).is_none(), "{line}");
            assert_eq!(
                parse_line(line, "file-stem", read_at()),
                parse_any_shape(line, "file-stem", read_at())
            );
        }
    }

    /// Found by the `agent_line` fuzz target: an epoch past the year 9999
    /// became a timestamp RFC 3339 cannot write, so the record no longer
    /// read back. It is now an invalid field, kept with its reason.
    #[test]
    fn an_epoch_past_the_year_9999_is_an_invalid_field() {
        for line in [
            r#"{"time":2E29,"message":"m"}"#,
            r#"{"ts":990000000000000000000}"#,
        ] {
            let record = parse_line(line, "file-stem", read_at());
            assert_eq!(record.timestamp, read_at(), "{line}");
            let once = record.to_json_line();
            assert!(once.contains("year 9999"), "{once}");
            let again: Record = serde_json::from_str(&once).unwrap();
            assert_eq!(again.to_json_line(), once);
        }
    }

    /// Found by the `agent_line` fuzz target: an integer too large for 64
    /// bits becomes a float, and without exact float parsing it read back
    /// one unit in the last place off.
    #[test]
    fn a_huge_number_reads_back_as_it_was_written() {
        let line = r#"{"name":"svc","levle":1111111111111111111111110}"#;
        let once = parse_line(line, "file-stem", read_at()).to_json_line();
        let again: Record = serde_json::from_str(&once).unwrap();
        assert_eq!(again.to_json_line(), once);
    }

    #[test]
    fn a_line_in_our_own_shape_round_trips() {
        let mut record = Record::new(
            "2026-11-22T12:00:00.000001Z".parse().unwrap(),
            "payment",
            "payment declined",
        );
        record.level = Level::Error;
        record.instance = Some("payment-7f9c".into());
        record.stage = Stage::Failed;
        record.trace_id = Some("4bf92f3577b34da6a3ce929d0e0e4736".parse().unwrap());
        record.span_id = Some("00f067aa0ba902b7".parse().unwrap());
        record.parent_span_id = Some("00f067aa0ba902b8".parse().unwrap());
        record.correlation_id = Some(CorrelationId::new("order-1234").unwrap());
        record.causation_id = Some(EventId::new("ev-1").unwrap());
        record.event_id = Some(EventId::new("ev-2").unwrap());
        record.event_type = Some("PaymentFailed".into());
        record.messaging_system = Some("rabbitmq".into());
        record.destination = Some("payments".into());
        record.consumer_group = Some("payment-svc".into());
        record.duration_us = Some(1234);
        record.error_type = Some("CardDeclined".into());
        record.error_message = Some("insufficient funds".into());
        record.attributes.insert("amount".into(), json!(125));
        record.malformed = Some(Malformed {
            raw: "{oops".into(),
            reason: "not JSON".into(),
        });
        record.links = vec![SpanLink {
            trace_id: "0af7651916cd43dd8448eb211c80319c".parse().unwrap(),
            span_id: "b7ad6b7169203331".parse().unwrap(),
        }];
        let unset: Vec<_> = RecordField::ALL
            .into_iter()
            .filter(|field| record.field(*field).is_absent())
            .collect();
        assert!(unset.is_empty(), "set {unset:?} too, so they are read back");
        let parsed = parse_line(&record.to_json_line(), "file-stem", read_at());
        assert_eq!(parsed, record);
    }

    #[test]
    fn common_aliases_are_understood() {
        let record = parse(json!({
            "time": "2026-11-22T13:00:00+01:00",
            "msg": "order placed",
            "severity": "warning",
            "service.name": "order",
        }));
        assert_eq!(record.timestamp.to_string(), "2026-11-22T12:00:00.000000Z");
        assert_eq!(record.message, "order placed");
        assert_eq!(record.level, Level::Warn);
        assert_eq!(record.service, "order");
        assert!(record.attributes.is_empty(), "{:?}", record.attributes);

        let record = parse(json!({"@timestamp": "2026-11-22T12:00:00Z", "lvl": "debug"}));
        assert_eq!(record.timestamp.to_string(), "2026-11-22T12:00:00.000000Z");
        assert_eq!(record.level, Level::Debug);
    }

    #[test]
    fn our_own_name_wins_over_an_alias_which_stays_an_attribute() {
        let record = parse(json!({"message": "ours", "msg": "theirs"}));
        assert_eq!(record.message, "ours");
        assert_eq!(record.attributes.get("msg"), Some(&json!("theirs")));
    }

    #[test]
    fn unknown_keys_become_attributes_next_to_the_lines_own() {
        let record = parse(json!({
            "message": "x",
            "user_id": 42,
            "http": {"status": 500},
            "attributes": {"region": "eu", "user_id": 7},
        }));
        assert_eq!(record.attributes.get("user_id"), Some(&json!(42)));
        assert_eq!(record.attributes.get("attributes.user_id"), Some(&json!(7)));
        assert_eq!(record.attributes.get("http"), Some(&json!({"status": 500})));
        assert_eq!(record.attributes.get("region"), Some(&json!("eu")));
    }

    #[test]
    fn missing_fields_fall_back_to_read_time_and_file_service() {
        let record = parse(json!({"message": "x"}));
        assert_eq!(record.timestamp, read_at());
        assert_eq!(record.service, "file-stem");
        assert_eq!(record.level, Level::Info);
        assert_eq!(record.stage, Stage::Log);
        assert!(record.malformed.is_none());
    }

    #[test]
    fn invalid_values_are_kept_raw_with_a_reason() {
        let record = parse(json!({
            "timestamp": "yesterday",
            "trace_id": "XYZ",
            "stage": "exploded",
            "level": "loud",
            "duration_us": -5,
            "correlation_id": "has space",
            "message": "still here",
        }));
        assert_eq!(record.message, "still here");
        assert_eq!(record.timestamp, read_at());
        assert_eq!(record.trace_id, None);
        assert_eq!(record.stage, Stage::Log);
        assert_eq!(record.level, Level::Info);
        assert_eq!(record.duration_us, None);
        assert_eq!(record.correlation_id, None);
        let a = &record.attributes;
        assert_eq!(a.get("invalid.timestamp"), Some(&json!("yesterday")));
        assert_eq!(a.get("invalid.trace_id"), Some(&json!("XYZ")));
        assert_eq!(a.get("invalid.stage"), Some(&json!("exploded")));
        assert_eq!(a.get("invalid.level"), Some(&json!("loud")));
        assert_eq!(a.get("invalid.duration_us"), Some(&json!(-5)));
        assert_eq!(a.get("invalid.correlation_id"), Some(&json!("has space")));
        let reasons = a.get(INVALID_REASONS).and_then(Value::as_object).unwrap();
        let keys: Vec<&str> = reasons.keys().map(String::as_str).collect();
        assert_eq!(keys.len(), 6, "every invalid key has a reason: {reasons:?}");
        assert!(
            reasons["stage"].as_str().unwrap().contains("exploded"),
            "{reasons:?}"
        );
        // What came out is still a record the rest of causeway accepts.
        let back: Record = serde_json::from_str(&record.to_json_line()).unwrap();
        assert_eq!(back, record);
    }

    #[test]
    fn null_and_empty_values_count_as_absent() {
        let record =
            parse(json!({"trace_id": "", "span_id": null, "time": null, "ts": 1_700_000_000}));
        assert_eq!(record.trace_id, None);
        assert_eq!(record.span_id, None);
        assert_eq!(record.timestamp.as_micros(), 1_700_000_000_000_000);
        assert!(record.attributes.is_empty(), "{:?}", record.attributes);
    }

    #[test]
    fn epoch_numbers_are_read_in_any_common_unit() {
        let expected = 1_700_000_000_123_000;
        for ts in [
            json!(1_700_000_000.123),
            json!(1_700_000_000_123u64),
            json!(1_700_000_000_123_000u64),
            json!(1_700_000_000_123_000_000u64),
        ] {
            let record = parse(json!({ "ts": ts }));
            assert_eq!(record.timestamp.as_micros(), expected, "ts {ts}");
        }
    }

    #[test]
    fn numeric_levels_follow_bunyan_and_syslog() {
        let level = |n: u64| parse(json!({ "level": n })).level;
        assert_eq!(level(10), Level::Trace);
        assert_eq!(level(30), Level::Info);
        assert_eq!(level(40), Level::Warn);
        assert_eq!(level(60), Level::Error);
        assert_eq!(level(3), Level::Error);
        assert_eq!(level(7), Level::Debug);
    }

    #[test]
    fn non_string_messages_are_written_out() {
        assert_eq!(parse(json!({"message": 42})).message, "42");
        assert_eq!(parse(json!({"msg": {"a": 1}})).message, r#"{"a":1}"#);
    }

    #[test]
    fn a_line_that_is_not_json_is_kept_as_malformed() {
        let record = parse_line("plain text, not json\r\n", "file-stem", read_at());
        let malformed = record.malformed.as_ref().unwrap();
        assert_eq!(malformed.raw, "plain text, not json");
        assert!(
            malformed.reason.starts_with("not JSON"),
            "{}",
            malformed.reason
        );
        assert_eq!(record.service, "file-stem");
        assert_eq!(record.timestamp, read_at());
        assert_eq!(record.level, Level::Warn);
    }

    #[test]
    fn json_that_is_not_an_object_is_kept_as_malformed() {
        let record = parse_line("[1,2,3]", "file-stem", read_at());
        let malformed = record.malformed.unwrap();
        assert_eq!(malformed.raw, "[1,2,3]");
        assert_eq!(malformed.reason, "not a JSON object but an array");
    }

    #[test]
    fn a_huge_malformed_line_is_cut_with_a_marker() {
        let line = "x".repeat(crate::text::MAX_RAW_LEN + 10);
        let record = parse_line(&line, "s", read_at());
        let raw = record.malformed.unwrap().raw;
        assert!(
            raw.ends_with("[cut 10 bytes]"),
            "{}",
            &raw[raw.len() - 30..]
        );
    }
}
