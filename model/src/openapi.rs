//! OpenAPI schemas, behind the `openapi` feature, for the types whose JSON
//! is written by hand: the ids, the timestamp, the record and its level
//! and stage. The API types in `api.rs` derive theirs and refer to these.
//!
//! Each schema says what the type's own `Serialize` writes, from the same
//! tables where there is one (`Stage::ALL`, `RecordField`); the tests here
//! and in the query crate hold them to what serde writes. This module only
//! describes: it must not change what any type serializes to.

use std::borrow::Cow;

use serde_json::json;
use utoipa::openapi::schema::{
    AdditionalProperties, ArrayBuilder, KnownFormat, ObjectBuilder, Schema, SchemaFormat, Type,
};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{PartialSchema, ToSchema};

use crate::field::{NestedField, RecordField};
use crate::ids::{CorrelationId, EventId, MAX_ID_LEN, SpanId, SpanLink, TraceId};
use crate::record::{Level, Malformed, Record, Stage};
use crate::timestamp::Timestamp;

/// The schemas a component list needs.
type Schemas = Vec<(String, RefOr<Schema>)>;

/// What `Timestamp`'s `Display` writes: always UTC, always six fraction
/// digits.
const TIMESTAMP_PATTERN: &str = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$";

/// Any character an id may hold: not a control character (`char::is_control`,
/// Unicode Cc) and not whitespace (`char::is_whitespace`, Unicode
/// White_Space), written in the syntax ECMA-262 and Rust's `regex` share.
const TEXT_ID_PATTERN: &str =
    r"^[^\u0000-\u0020\u007f-\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+$";

fn reference(name: &str) -> RefOr<Schema> {
    RefOr::Ref(Ref::from_schema_name(name))
}

fn string(description: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(description))
}

impl PartialSchema for Timestamp {
    fn schema() -> RefOr<Schema> {
        string("A UTC instant with microsecond precision, RFC 3339.")
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
            .pattern(Some(TIMESTAMP_PATTERN))
            .examples([json!("2026-11-22T12:00:00.123456Z")])
            .into()
    }
}

impl ToSchema for Timestamp {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Timestamp")
    }
}

fn hex_id(description: &str, bytes: usize, example: &str) -> RefOr<Schema> {
    let digits = bytes * 2;
    string(description)
        .min_length(Some(digits))
        .max_length(Some(digits))
        .pattern(Some(format!("^[0-9a-f]{{{digits}}}$")))
        .examples([json!(example)])
        .into()
}

impl PartialSchema for TraceId {
    fn schema() -> RefOr<Schema> {
        hex_id(
            "A W3C trace id: 32 lowercase hex digits, not all zero.",
            16,
            "4bf92f3577b34da6a3ce929d0e0e4736",
        )
    }
}

impl ToSchema for TraceId {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("TraceId")
    }
}

impl PartialSchema for SpanId {
    fn schema() -> RefOr<Schema> {
        hex_id(
            "A W3C span id: 16 lowercase hex digits, not all zero.",
            8,
            "00f067aa0ba902b7",
        )
    }
}

impl ToSchema for SpanId {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("SpanId")
    }
}

fn text_id(description: &str, example: &str) -> RefOr<Schema> {
    string(&format!(
        "{description} Any printable text of 1 to {MAX_ID_LEN} bytes (UTF-8) without \
         whitespace or control characters; the ones causeway makes are UUIDv7."
    ))
    .min_length(Some(1))
    // Characters, where the limit is in bytes: a bound, not the whole rule.
    .max_length(Some(MAX_ID_LEN))
    .pattern(Some(TEXT_ID_PATTERN))
    .examples([json!(example)])
    .into()
}

impl PartialSchema for CorrelationId {
    fn schema() -> RefOr<Schema> {
        text_id(
            "The id of one business transaction, copied to every event it causes.",
            "order-1234",
        )
    }
}

impl ToSchema for CorrelationId {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("CorrelationId")
    }
}

impl PartialSchema for EventId {
    fn schema() -> RefOr<Schema> {
        text_id(
            "The id of one event (message); the causation id of the events published \
             while handling it.",
            "01936f4e-8c2a-7b3d-9e4f-5a6b7c8d9e0f",
        )
    }
}

impl ToSchema for EventId {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("EventId")
    }
}

/// Every level, in severity order.
fn levels() -> [Level; 5] {
    // A new level does not build here until it is listed below too.
    let listed = |level: Level| match level {
        Level::Trace | Level::Debug | Level::Info | Level::Warn | Level::Error => level,
    };
    [
        Level::Trace,
        Level::Debug,
        Level::Info,
        Level::Warn,
        Level::Error,
    ]
    .map(listed)
}

impl PartialSchema for Level {
    fn schema() -> RefOr<Schema> {
        string("Severity, as OpenTelemetry's severity text.")
            .enum_values(Some(levels().map(Level::as_str)))
            .into()
    }
}

impl ToSchema for Level {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Level")
    }
}

impl PartialSchema for Stage {
    fn schema() -> RefOr<Schema> {
        string(
            "Where in an event's life a record was written: `published`, `received`, \
             `handled`, `failed`, `retried`, `dead_lettered`, `compensated`, or `log` for an \
             ordinary log line.",
        )
        .enum_values(Some(Stage::ALL.map(Stage::as_str)))
        .into()
    }
}

impl ToSchema for Stage {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Stage")
    }
}

impl PartialSchema for Malformed {
    fn schema() -> RefOr<Schema> {
        let mut object = ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some(
                "A line that could not be read as a record, kept with the reason.",
            ))
            .additional_properties(Some(AdditionalProperties::FreeForm(false)));
        for field in RecordField::Malformed.nested() {
            let description = match field {
                NestedField::MalformedRaw => {
                    "The line as it was read (possibly cut, see `reason`)."
                }
                NestedField::MalformedReason => "Why it could not be read.",
            };
            object = object
                .property(field.name(), string(description))
                .required(field.name());
        }
        object.into()
    }
}

impl ToSchema for Malformed {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Malformed")
    }
}

impl PartialSchema for SpanLink {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some(
                "A link to a span in another trace (OpenTelemetry span links).",
            ))
            .additional_properties(Some(AdditionalProperties::FreeForm(false)))
            .property("trace_id", reference("TraceId"))
            .required("trace_id")
            .property("span_id", reference("SpanId"))
            .required("span_id")
            .into()
    }
}

impl ToSchema for SpanLink {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("SpanLink")
    }
}

/// The schema of one record field, and what it says.
fn record_field(field: RecordField) -> RefOr<Schema> {
    let keyword = |description: &str| string(description).into();
    match field {
        RecordField::Timestamp => reference("Timestamp"),
        RecordField::Level => reference("Level"),
        RecordField::Service => keyword("The service that wrote the record."),
        RecordField::Instance => keyword("Which instance of the service (a host, a pod)."),
        RecordField::Message => keyword("The log message."),
        RecordField::Stage => reference("Stage"),
        RecordField::TraceId => reference("TraceId"),
        RecordField::SpanId | RecordField::ParentSpanId => reference("SpanId"),
        RecordField::CorrelationId => reference("CorrelationId"),
        RecordField::CausationId | RecordField::EventId => reference("EventId"),
        RecordField::EventType => keyword("The event's type (`OrderPlaced`)."),
        RecordField::MessagingSystem => {
            keyword("OpenTelemetry `messaging.system` (`rabbitmq`, `nats`, `kafka`, `inproc`).")
        }
        RecordField::Destination => {
            keyword("OpenTelemetry `messaging.destination.name`: the topic, queue or subject.")
        }
        RecordField::ConsumerGroup => keyword("OpenTelemetry `messaging.consumer.group.name`."),
        RecordField::DurationUs => ObjectBuilder::new()
            .schema_type(Type::Integer)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
            .minimum(Some(0))
            .description(Some(
                "Microseconds; set on the record that closes a span of work (`handled`, \
                 `failed`).",
            ))
            .into(),
        RecordField::ErrorType => keyword("OpenTelemetry `error.type`."),
        RecordField::ErrorMessage => keyword("The error's message."),
        RecordField::Attributes => ObjectBuilder::new()
            .schema_type(Type::Object)
            .additional_properties(Some(AdditionalProperties::FreeForm(true)))
            .description(Some("Everything else the logger wrote, as it wrote it."))
            .into(),
        RecordField::Malformed => reference("Malformed"),
        RecordField::Links => ArrayBuilder::new()
            .items(reference("SpanLink"))
            .description(Some(
                "OpenTelemetry span links: the spans in other traces that caused this \
                 record's span (a consumer's link to its producer).",
            ))
            .into(),
    }
}

impl PartialSchema for Record {
    fn schema() -> RefOr<Schema> {
        // Serde leaves a field out exactly when `Record::field` says it is
        // absent (a test in record.rs): the fields of a bare record are the
        // ones always written.
        let bare = Record::new(Timestamp::from_micros(0), "", "");
        let mut object = ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some(
                "One lifecycle record or log line: the same object in log files, on the \
                 wire, in the index and in the API. Fields without a value are left out.",
            ))
            .additional_properties(Some(AdditionalProperties::FreeForm(false)));
        for field in RecordField::ALL {
            object = object.property(field.name(), record_field(field));
            if !bare.field(field).is_absent() {
                object = object.required(field.name());
            }
        }
        object.into()
    }
}

impl ToSchema for Record {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Record")
    }

    fn schemas(schemas: &mut Schemas) {
        fn add<T: ToSchema>(schemas: &mut Schemas) {
            schemas.push((T::name().into_owned(), T::schema()));
        }
        add::<Timestamp>(schemas);
        add::<Level>(schemas);
        add::<Stage>(schemas);
        add::<TraceId>(schemas);
        add::<SpanId>(schemas);
        add::<CorrelationId>(schemas);
        add::<EventId>(schemas);
        add::<Malformed>(schemas);
        add::<SpanLink>(schemas);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    fn json<T: PartialSchema>() -> Value {
        serde_json::to_value(T::schema()).unwrap()
    }

    fn strings(value: &Value) -> Vec<&str> {
        value
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect()
    }

    #[test]
    fn the_enums_list_what_serde_writes() {
        let stages: Vec<String> = Stage::ALL
            .iter()
            .map(|s| {
                serde_json::to_value(s)
                    .unwrap()
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        assert_eq!(strings(&json::<Stage>()["enum"]), stages);
        let levels: Vec<String> = levels()
            .iter()
            .map(|l| {
                serde_json::to_value(l)
                    .unwrap()
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        assert_eq!(strings(&json::<Level>()["enum"]), levels);
    }

    #[test]
    fn the_record_schema_has_every_declared_field_and_requires_the_ones_always_written() {
        let schema = json::<Record>();
        let mut properties: Vec<&str> = schema["properties"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut declared: Vec<&str> = RecordField::ALL.iter().map(|f| f.name()).collect();
        properties.sort_unstable();
        declared.sort_unstable();
        assert_eq!(properties, declared);
        let bare = serde_json::to_value(Record::new(Timestamp::from_micros(0), "a", "")).unwrap();
        let mut written: Vec<&str> = bare
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut required = strings(&schema["required"]);
        written.sort_unstable();
        required.sort_unstable();
        assert_eq!(required, written);
        assert_eq!(schema["additionalProperties"], false);
        let malformed = json::<Malformed>();
        let mut required = strings(&malformed["required"]);
        required.sort_unstable();
        assert_eq!(required, ["raw", "reason"]);
    }

    #[test]
    fn every_referenced_schema_is_listed() {
        let mut schemas = Vec::new();
        <Record as ToSchema>::schemas(&mut schemas);
        let listed: Vec<&str> = schemas.iter().map(|(name, _)| name.as_str()).collect();
        let text = serde_json::to_string(&Record::schema()).unwrap();
        let mut referenced: Vec<&str> = text
            .split("\"#/components/schemas/")
            .skip(1)
            .filter_map(|rest| rest.split('"').next())
            .collect();
        referenced.sort_unstable();
        referenced.dedup();
        let mut listed_sorted = listed.clone();
        listed_sorted.sort_unstable();
        assert_eq!(referenced, listed_sorted);
    }

    #[test]
    fn the_examples_are_values_the_types_read() {
        let example = |schema: Value| schema["examples"][0].clone();
        serde_json::from_value::<Timestamp>(example(json::<Timestamp>())).unwrap();
        serde_json::from_value::<TraceId>(example(json::<TraceId>())).unwrap();
        serde_json::from_value::<SpanId>(example(json::<SpanId>())).unwrap();
        serde_json::from_value::<EventId>(example(json::<EventId>())).unwrap();
        serde_json::from_value::<CorrelationId>(example(json::<CorrelationId>())).unwrap();
    }
}
