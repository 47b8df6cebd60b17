//! The record: one JSON object per line, the same shape in log files, on the
//! wire, in the index and in the API.
//!
//! Field names follow OpenTelemetry where it has one, flattened to
//! snake_case so they are usable as index field names
//! (`messaging.destination.name` is `destination`, `error.type` is
//! `error_type`). A line that could not be understood is still a record:
//! [`Record::malformed`] keeps the raw text and the reason.
//!
//! The names and kinds of the fields are declared in `field.rs`
//! ([`RecordField`]); the serde names here must agree with them, which the
//! tests check. This module does no I/O.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::field::{FieldValue, NestedField, RecordField};
use crate::ids::{CorrelationId, EventId, SpanId, SpanLink, TraceId};
use crate::timestamp::Timestamp;

/// Where in an event's life a record was written.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// A service published the event.
    Published,
    /// A consumer took the event off its transport.
    Received,
    /// A consumer finished handling the event successfully.
    Handled,
    /// A consumer's handler failed.
    Failed,
    /// The event is being handled again after a failure.
    Retried,
    /// The event was moved to a dead letter queue.
    DeadLettered,
    /// A compensating action undid the effect of earlier steps.
    Compensated,
    /// An ordinary log line, written inside a handler or elsewhere.
    #[default]
    Log,
}

impl Stage {
    pub const ALL: [Stage; 8] = [
        Stage::Published,
        Stage::Received,
        Stage::Handled,
        Stage::Failed,
        Stage::Retried,
        Stage::DeadLettered,
        Stage::Compensated,
        Stage::Log,
    ];

    /// The wire name (`dead_lettered`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Published => "published",
            Stage::Received => "received",
            Stage::Handled => "handled",
            Stage::Failed => "failed",
            Stage::Retried => "retried",
            Stage::DeadLettered => "dead_lettered",
            Stage::Compensated => "compensated",
            Stage::Log => "log",
        }
    }
}

/// A stage name that is not one of [`Stage::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown stage {0:?}")]
pub struct UnknownStage(pub String);

impl FromStr for Stage {
    type Err = UnknownStage;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Stage::ALL
            .into_iter()
            .find(|stage| stage.as_str() == s)
            .ok_or_else(|| UnknownStage(s.chars().take(32).collect()))
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Severity, as OpenTelemetry's severity text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Level {
    Trace,
    Debug,
    #[default]
    Info,
    Warn,
    Error,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Trace => "TRACE",
            Level::Debug => "DEBUG",
            Level::Info => "INFO",
            Level::Warn => "WARN",
            Level::Error => "ERROR",
        }
    }

    /// Reads the spellings loggers use (`warning`, `fatal`, `err`, any case).
    pub fn parse_lenient(s: &str) -> Option<Level> {
        let level = match s.to_ascii_lowercase().as_str() {
            "trace" | "finest" | "verbose" => Level::Trace,
            "debug" | "fine" => Level::Debug,
            "info" | "information" | "notice" => Level::Info,
            "warn" | "warning" => Level::Warn,
            "error" | "err" | "fatal" | "critical" | "crit" | "alert" | "emerg" | "panic" => {
                Level::Error
            }
            _ => return None,
        };
        Some(level)
    }
}

impl<'de> Deserialize<'de> for Level {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <Cow<'de, str>>::deserialize(deserializer)?;
        Level::parse_lenient(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown level {s:?}")))
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A line that could not be read as a record, kept with the reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Malformed {
    /// The line as it was read (possibly cut, see `reason`).
    pub raw: String,
    pub reason: String,
}

/// One lifecycle record or log line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    pub timestamp: Timestamp,
    #[serde(default)]
    pub level: Level,
    pub service: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub stage: Stage,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<TraceId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub span_id: Option<SpanId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_span_id: Option<SpanId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<CorrelationId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<EventId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<EventId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_type: Option<String>,
    /// OpenTelemetry `messaging.system` (`rabbitmq`, `nats`, `kafka`, `inproc`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messaging_system: Option<String>,
    /// OpenTelemetry `messaging.destination.name`: the topic, queue or subject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<String>,
    /// OpenTelemetry `messaging.consumer.group.name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer_group: Option<String>,
    /// Set on the record that closes a span of work (`handled`, `failed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_us: Option<u64>,
    /// OpenTelemetry `error.type`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    /// Everything else the logger wrote.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub attributes: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub malformed: Option<Malformed>,
    /// OpenTelemetry span links of the record's span: the spans in other
    /// traces that caused it (a consumer's link to its producer).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<SpanLink>,
}

impl Record {
    /// An ordinary log record with only the required fields set.
    pub fn new(
        timestamp: Timestamp,
        service: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            timestamp,
            level: Level::Info,
            service: service.into(),
            instance: None,
            message: message.into(),
            stage: Stage::Log,
            trace_id: None,
            span_id: None,
            parent_span_id: None,
            correlation_id: None,
            causation_id: None,
            event_id: None,
            event_type: None,
            messaging_system: None,
            destination: None,
            consumer_group: None,
            duration_us: None,
            error_type: None,
            error_message: None,
            attributes: Map::new(),
            malformed: None,
            links: Vec::new(),
        }
    }

    /// A record that keeps a line that could not be read, with the reason.
    pub fn malformed(
        timestamp: Timestamp,
        service: impl Into<String>,
        raw: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        let reason = reason.into();
        let mut record = Self::new(timestamp, service, format!("malformed record: {reason}"));
        record.level = Level::Warn;
        record.malformed = Some(Malformed {
            raw: raw.into(),
            reason,
        });
        record
    }

    /// The key that groups this record into a flow: the correlation id,
    /// falling back to the trace id.
    pub fn flow_key(&self) -> Option<String> {
        self.correlation_id
            .as_ref()
            .map(|c| c.as_str().to_owned())
            .or_else(|| self.trace_id.map(|t| t.to_string()))
    }

    /// The value of one declared field, `Absent` exactly when the JSON line
    /// leaves its key out.
    pub fn field(&self, field: RecordField) -> FieldValue<'_> {
        fn text(s: &str) -> FieldValue<'_> {
            FieldValue::Str(Cow::Borrowed(s))
        }
        fn optional<T>(
            value: Option<T>,
            read: impl FnOnce(T) -> FieldValue<'static>,
        ) -> FieldValue<'static> {
            value.map_or(FieldValue::Absent, read)
        }
        fn optional_text(value: Option<&str>) -> FieldValue<'_> {
            value.map_or(FieldValue::Absent, text)
        }
        fn display(value: impl fmt::Display) -> FieldValue<'static> {
            FieldValue::Str(Cow::Owned(value.to_string()))
        }
        match field {
            RecordField::Timestamp => FieldValue::Time(self.timestamp),
            RecordField::Level => text(self.level.as_str()),
            RecordField::Service => text(&self.service),
            RecordField::Instance => optional_text(self.instance.as_deref()),
            RecordField::Message => text(&self.message),
            RecordField::Stage => text(self.stage.as_str()),
            RecordField::TraceId => optional(self.trace_id, display),
            RecordField::SpanId => optional(self.span_id, display),
            RecordField::ParentSpanId => optional(self.parent_span_id, display),
            RecordField::CorrelationId => {
                optional_text(self.correlation_id.as_ref().map(CorrelationId::as_str))
            }
            RecordField::CausationId => {
                optional_text(self.causation_id.as_ref().map(EventId::as_str))
            }
            RecordField::EventId => optional_text(self.event_id.as_ref().map(EventId::as_str)),
            RecordField::EventType => optional_text(self.event_type.as_deref()),
            RecordField::MessagingSystem => optional_text(self.messaging_system.as_deref()),
            RecordField::Destination => optional_text(self.destination.as_deref()),
            RecordField::ConsumerGroup => optional_text(self.consumer_group.as_deref()),
            RecordField::DurationUs => optional(self.duration_us, FieldValue::Number),
            RecordField::ErrorType => optional_text(self.error_type.as_deref()),
            RecordField::ErrorMessage => optional_text(self.error_message.as_deref()),
            RecordField::Attributes if self.attributes.is_empty() => FieldValue::Absent,
            RecordField::Attributes => FieldValue::Object(&self.attributes),
            RecordField::Malformed => optional(self.malformed.as_ref(), |_| FieldValue::Nested),
            RecordField::Links if self.links.is_empty() => FieldValue::Absent,
            RecordField::Links => FieldValue::Links(&self.links),
        }
    }

    /// The value of a subfield of a nested field (`Absent` when the parent
    /// is).
    pub fn nested_field(&self, field: NestedField) -> FieldValue<'_> {
        let malformed = |read: fn(&Malformed) -> &str| {
            self.malformed.as_ref().map_or(FieldValue::Absent, |m| {
                FieldValue::Str(Cow::Borrowed(read(m)))
            })
        };
        match field {
            NestedField::MalformedRaw => malformed(|m| &m.raw),
            NestedField::MalformedReason => malformed(|m| &m.reason),
        }
    }

    /// One JSON line, without the newline.
    pub fn to_json_line(&self) -> String {
        // Serializing this struct cannot fail: every key is a string and no
        // field has a fallible Serialize impl.
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"serialize_error\":\"{e}\"}}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::field::FieldKind;

    #[test]
    fn stage_names_round_trip() {
        for stage in Stage::ALL {
            assert_eq!(stage.as_str().parse::<Stage>(), Ok(stage));
            let json = serde_json::to_string(&stage).unwrap();
            assert_eq!(json, format!("\"{}\"", stage.as_str()));
        }
        assert!("exploded".parse::<Stage>().is_err());
    }

    #[test]
    fn record_round_trips_through_json_and_omits_empty_fields() {
        let mut record = Record::new(
            "2026-11-22T12:00:00.000001Z".parse().unwrap(),
            "payment",
            "payment declined",
        );
        record.stage = Stage::Failed;
        record.correlation_id = Some(CorrelationId::new("order-1234").unwrap());
        record.error_type = Some("CardDeclined".into());
        record.attributes.insert("amount".into(), Value::from(125));
        let line = record.to_json_line();
        assert!(!line.contains("span_id"), "{line}");
        assert!(line.contains("\"stage\":\"failed\""), "{line}");
        let back: Record = serde_json::from_str(&line).unwrap();
        assert_eq!(back, record);
    }

    #[test]
    fn unknown_fields_are_rejected_so_the_agent_can_map_them() {
        let line = r#"{"timestamp":"2026-11-22T12:00:00Z","service":"a","msg":"x"}"#;
        assert!(serde_json::from_str::<Record>(line).is_err());
    }

    #[test]
    fn flow_key_prefers_correlation_id() {
        let mut record = Record::new(Timestamp::from_micros(0), "a", "x");
        assert_eq!(record.flow_key(), None);
        let trace = TraceId::random();
        record.trace_id = Some(trace);
        assert_eq!(record.flow_key(), Some(trace.to_string()));
        record.correlation_id = Some(CorrelationId::new("c-1").unwrap());
        assert_eq!(record.flow_key().as_deref(), Some("c-1"));
    }

    /// Every field set, written as a struct literal so that a new field of
    /// `Record` does not compile here until it is given a value.
    fn fully_populated() -> Record {
        let mut attributes = Map::new();
        attributes.insert("amount".into(), Value::from(125));
        Record {
            timestamp: "2026-11-22T12:00:00.000001Z".parse().unwrap(),
            level: Level::Error,
            service: "payment".into(),
            instance: Some("payment-7f9c".into()),
            message: "payment declined".into(),
            stage: Stage::Failed,
            trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736".parse().unwrap()),
            span_id: Some("00f067aa0ba902b7".parse().unwrap()),
            parent_span_id: Some("00f067aa0ba902b8".parse().unwrap()),
            correlation_id: Some(CorrelationId::new("order-1234").unwrap()),
            causation_id: Some(EventId::new("ev-1").unwrap()),
            event_id: Some(EventId::new("ev-2").unwrap()),
            event_type: Some("PaymentFailed".into()),
            messaging_system: Some("rabbitmq".into()),
            destination: Some("payments".into()),
            consumer_group: Some("payment-svc".into()),
            duration_us: Some(1234),
            error_type: Some("CardDeclined".into()),
            error_message: Some("insufficient funds".into()),
            attributes,
            malformed: Some(Malformed {
                raw: "{\"oops\"".into(),
                reason: "not JSON".into(),
            }),
            links: vec![SpanLink {
                trace_id: "0af7651916cd43dd8448eb211c80319c".parse().unwrap(),
                span_id: "b7ad6b7169203331".parse().unwrap(),
            }],
        }
    }

    fn json_of(record: &Record) -> Map<String, Value> {
        match serde_json::to_value(record).unwrap() {
            Value::Object(map) => map,
            other => panic!("a record serializes to an object, not {other}"),
        }
    }

    /// `field` hands out what serde writes under the declared name, of the
    /// declared kind.
    fn assert_value_matches(name: &str, kind: FieldKind, value: &FieldValue<'_>, json: &Value) {
        match (kind, value) {
            (FieldKind::Keyword | FieldKind::Text, FieldValue::Str(s)) => {
                assert_eq!(json.as_str(), Some(s.as_ref()), "{name}");
            }
            (FieldKind::Time, FieldValue::Time(t)) => {
                let written: Timestamp = serde_json::from_value(json.clone()).unwrap();
                assert_eq!(&written, t, "{name}");
            }
            (FieldKind::Number, FieldValue::Number(n)) => {
                assert_eq!(json.as_u64(), Some(*n), "{name}");
            }
            (FieldKind::Object, FieldValue::Object(map)) => {
                assert_eq!(json.as_object(), Some(*map), "{name}");
            }
            (FieldKind::Nested, FieldValue::Nested) => assert!(json.is_object(), "{name}"),
            (FieldKind::Links, FieldValue::Links(links)) => {
                let written: Vec<SpanLink> = serde_json::from_value(json.clone()).unwrap();
                assert_eq!(written.as_slice(), *links, "{name}");
            }
            (kind, value) => panic!("{name} is declared {kind:?} but holds {value:?}"),
        }
    }

    #[test]
    fn a_full_record_writes_exactly_the_declared_fields_under_their_names() {
        let record = fully_populated();
        let json = json_of(&record);
        let written: Vec<&str> = json.keys().map(String::as_str).collect();
        let mut declared: Vec<&str> = RecordField::ALL.iter().map(|f| f.name()).collect();
        let mut written_sorted = written.clone();
        written_sorted.sort_unstable();
        declared.sort_unstable();
        assert_eq!(
            written_sorted, declared,
            "Record's serde names and RecordField disagree"
        );
        for field in RecordField::ALL {
            let value = record.field(field);
            assert_value_matches(field.name(), field.kind(), &value, &json[field.name()]);
            let nested_json = json[field.name()].as_object();
            let mut declared: Vec<&str> = field.nested().map(NestedField::name).collect();
            let mut written: Vec<&str> = nested_json
                .map(|o| o.keys().map(String::as_str).collect())
                .unwrap_or_default();
            declared.sort_unstable();
            written.sort_unstable();
            if field.kind() == FieldKind::Nested {
                assert_eq!(written, declared, "subfields of {}", field.name());
            }
            for nested in field.nested() {
                let path = format!("{}.{}", field.name(), nested.name());
                let json = &json[field.name()][nested.name()];
                assert_value_matches(&path, nested.kind(), &record.nested_field(nested), json);
            }
        }
    }

    #[test]
    fn a_field_is_absent_exactly_when_its_key_is_left_out() {
        let minimal = Record::new(Timestamp::from_micros(0), "a", "");
        for record in [minimal, fully_populated()] {
            let json = json_of(&record);
            for field in RecordField::ALL {
                assert_eq!(
                    record.field(field).is_absent(),
                    !json.contains_key(field.name()),
                    "{}",
                    field.name()
                );
            }
            for nested in NestedField::ALL {
                let written = json
                    .get(nested.parent().name())
                    .is_some_and(|parent| parent.get(nested.name()).is_some());
                assert_eq!(!record.nested_field(nested).is_absent(), written);
            }
        }
    }

    #[test]
    fn level_reads_common_spellings() {
        assert_eq!(Level::parse_lenient("warning"), Some(Level::Warn));
        assert_eq!(Level::parse_lenient("FATAL"), Some(Level::Error));
        assert_eq!(Level::parse_lenient("loud"), None);
    }
}
