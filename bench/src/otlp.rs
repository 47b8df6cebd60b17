//! Corpus records as an OTLP logs export (`ExportLogsServiceRequest`,
//! protobuf), for the OTLP/HTTP load of `ingest-run`.
//!
//! Each record becomes one `LogRecord` under a resource per service (and
//! instance), carrying what the collector's mapping
//! (`collector/src/otlp/map.rs`) reads back into the record's fields:
//! `service.name` and `service.instance.id` on the resource; time, severity,
//! body (the message), trace and span ids on the log record; and as
//! attributes `messaging.message.conversation_id` (correlation id),
//! `messaging.message.id` (event id), `messaging.destination.name`,
//! `messaging.system`, `messaging.consumer.group.name`,
//! `causeway.event_type`, `causeway.causation_id`, `error.type` and
//! `exception.message`. The record's own attributes follow under their
//! names. A log record has no lifecycle stage, duration or parent span, so
//! those go as the attributes `causeway.stage`, `causeway.duration_us` and
//! `causeway.parent_span_id`: the export carries all the record holds, and
//! the collector indexes them among the attributes.
//!
//! Pure: no I/O.

use causeway_model::{Level, Record, Stage};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, KeyValue, KeyValueList, any_value,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use serde_json::Value;

/// The OTLP/HTTP content type of a protobuf body.
pub const CONTENT_TYPE: &str = "application/x-protobuf";
/// Where OTLP/HTTP logs are posted.
pub const LOGS_PATH: &str = "/v1/logs";

/// `records` as one logs export, encoded: one resource per (service,
/// instance) in order of first appearance, the records of each in their
/// order.
pub fn encode_logs(records: &[Record]) -> Vec<u8> {
    logs_request(records).encode_to_vec()
}

/// A resource's identity: service name and instance.
type ResourceKey<'a> = (&'a str, Option<&'a str>);

/// `records` as one logs export.
pub fn logs_request(records: &[Record]) -> ExportLogsServiceRequest {
    let mut resources: Vec<(ResourceKey<'_>, Vec<LogRecord>)> = Vec::new();
    for record in records {
        let key = (record.service.as_str(), record.instance.as_deref());
        let log = log_record(record);
        match resources.iter_mut().find(|(k, _)| *k == key) {
            Some((_, logs)) => logs.push(log),
            None => resources.push((key, vec![log])),
        }
    }
    ExportLogsServiceRequest {
        resource_logs: resources
            .into_iter()
            .map(|((service, instance), log_records)| {
                let mut attributes = vec![text("service.name", service)];
                if let Some(instance) = instance {
                    attributes.push(text("service.instance.id", instance));
                }
                ResourceLogs {
                    resource: Some(Resource {
                        attributes,
                        ..Resource::default()
                    }),
                    scope_logs: vec![ScopeLogs {
                        log_records,
                        ..ScopeLogs::default()
                    }],
                    ..ResourceLogs::default()
                }
            })
            .collect(),
    }
}

fn log_record(record: &Record) -> LogRecord {
    let nanos = u64::try_from(record.timestamp.as_micros())
        .unwrap_or(0)
        .saturating_mul(1000);
    let mut attributes = Vec::with_capacity(12 + record.attributes.len());
    let mut put = |key: &str, value: Option<&str>| {
        if let Some(value) = value {
            attributes.push(text(key, value));
        }
    };
    put(
        "messaging.message.conversation_id",
        record.correlation_id.as_ref().map(|id| id.as_str()),
    );
    put(
        "messaging.message.id",
        record.event_id.as_ref().map(|id| id.as_str()),
    );
    put("messaging.destination.name", record.destination.as_deref());
    put("messaging.system", record.messaging_system.as_deref());
    put(
        "messaging.consumer.group.name",
        record.consumer_group.as_deref(),
    );
    put("causeway.event_type", record.event_type.as_deref());
    put(
        "causeway.causation_id",
        record.causation_id.as_ref().map(|id| id.as_str()),
    );
    put("error.type", record.error_type.as_deref());
    put("exception.message", record.error_message.as_deref());
    if record.stage != Stage::Log {
        put("causeway.stage", Some(record.stage.as_str()));
    }
    let parent = record.parent_span_id.map(|id| id.to_string());
    put("causeway.parent_span_id", parent.as_deref());
    if let Some(duration) = record.duration_us {
        attributes.push(kv("causeway.duration_us", int(duration)));
    }
    for (key, value) in &record.attributes {
        attributes.push(kv(key, any(value)));
    }
    LogRecord {
        time_unix_nano: nanos,
        observed_time_unix_nano: nanos,
        severity_number: severity(record.level),
        severity_text: record.level.as_str().to_ascii_uppercase(),
        body: Some(string(&record.message)),
        attributes,
        trace_id: record
            .trace_id
            .map_or_else(Vec::new, |id| id.to_bytes().to_vec()),
        span_id: record
            .span_id
            .map_or_else(Vec::new, |id| id.to_bytes().to_vec()),
        ..LogRecord::default()
    }
}

/// OpenTelemetry's severity number of a level (the first of its range).
fn severity(level: Level) -> i32 {
    match level {
        Level::Trace => 1,
        Level::Debug => 5,
        Level::Info => 9,
        Level::Warn => 13,
        Level::Error => 17,
    }
}

fn text(key: &str, value: &str) -> KeyValue {
    kv(key, string(value))
}

fn kv(key: &str, value: AnyValue) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(value),
        ..KeyValue::default()
    }
}

fn string(value: &str) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::StringValue(value.to_owned())),
    }
}

fn int(value: u64) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::IntValue(
            i64::try_from(value).unwrap_or(i64::MAX),
        )),
    }
}

/// A JSON value as an OTLP `AnyValue`: numbers as int when whole, else
/// double; null as an empty value.
fn any(value: &Value) -> AnyValue {
    let value = match value {
        Value::Null => None,
        Value::Bool(b) => Some(any_value::Value::BoolValue(*b)),
        Value::Number(n) => Some(match n.as_i64() {
            Some(i) => any_value::Value::IntValue(i),
            None => any_value::Value::DoubleValue(n.as_f64().unwrap_or_default()),
        }),
        Value::String(s) => Some(any_value::Value::StringValue(s.clone())),
        Value::Array(items) => Some(any_value::Value::ArrayValue(ArrayValue {
            values: items.iter().map(any).collect(),
        })),
        Value::Object(map) => Some(any_value::Value::KvlistValue(KeyValueList {
            values: map.iter().map(|(k, v)| kv(k, any(v))).collect(),
        })),
    };
    AnyValue { value }
}

#[cfg(test)]
mod tests {
    use causeway_model::{CorrelationId, EventId, Timestamp};

    use super::*;

    fn attr<'a>(log: &'a LogRecord, key: &str) -> Option<&'a any_value::Value> {
        log.attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.as_ref())
            .and_then(|v| v.value.as_ref())
    }

    fn string_attr<'a>(log: &'a LogRecord, key: &str) -> Option<&'a str> {
        match attr(log, key) {
            Some(any_value::Value::StringValue(s)) => Some(s),
            _ => None,
        }
    }

    #[test]
    fn a_record_becomes_a_log_record_under_its_service() {
        let mut r = Record::new(Timestamp::from_micros(1_500), "payment", "card declined");
        r.instance = Some("payment-1".into());
        r.level = Level::Error;
        r.stage = Stage::Failed;
        r.trace_id = Some("4bf92f3577b34da6a3ce929d0e0e4736".parse().unwrap());
        r.span_id = Some("00f067aa0ba902b7".parse().unwrap());
        r.correlation_id = Some(CorrelationId::new("order-1").unwrap());
        r.event_id = Some(EventId::new("ev-2").unwrap());
        r.causation_id = Some(EventId::new("ev-1").unwrap());
        r.event_type = Some("PaymentFailed".into());
        r.duration_us = Some(7);
        r.error_type = Some("CardDeclined".into());
        r.error_message = Some("insufficient funds".into());
        r.attributes.insert("amount".into(), 125.into());
        let other = Record::new(Timestamp::from_micros(2_000), "orders", "placed");

        let request = logs_request(&[r.clone(), other, r]);
        assert_eq!(request.resource_logs.len(), 2, "one resource per service");
        let payment = &request.resource_logs[0];
        let resource = payment.resource.as_ref().unwrap();
        assert_eq!(resource.attributes[0].key, "service.name");
        assert_eq!(resource.attributes[1].key, "service.instance.id");
        let logs = &payment.scope_logs[0].log_records;
        assert_eq!(logs.len(), 2);
        let log = &logs[0];
        assert_eq!(log.time_unix_nano, 1_500_000);
        assert_eq!(log.severity_number, 17);
        assert_eq!(log.trace_id.len(), 16);
        assert_eq!(log.span_id.len(), 8);
        assert_eq!(
            string_attr(log, "messaging.message.conversation_id"),
            Some("order-1")
        );
        assert_eq!(string_attr(log, "messaging.message.id"), Some("ev-2"));
        assert_eq!(string_attr(log, "causeway.causation_id"), Some("ev-1"));
        assert_eq!(string_attr(log, "causeway.stage"), Some("failed"));
        assert_eq!(string_attr(log, "error.type"), Some("CardDeclined"));
        assert_eq!(
            attr(log, "causeway.duration_us"),
            Some(&any_value::Value::IntValue(7))
        );
        assert_eq!(attr(log, "amount"), Some(&any_value::Value::IntValue(125)));

        let decoded = ExportLogsServiceRequest::decode(encode_logs(&[other_record()]).as_slice())
            .expect("the encoding decodes");
        assert_eq!(decoded.resource_logs.len(), 1);
    }

    fn other_record() -> Record {
        Record::new(Timestamp::from_micros(0), "orders", "placed")
    }

    #[test]
    fn json_attributes_keep_their_kinds() {
        let value = serde_json::json!({"a": [1, 2.5, "x", true, null]});
        let Some(any_value::Value::KvlistValue(list)) = any(&value).value else {
            panic!("an object is a kvlist");
        };
        let Some(any_value::Value::ArrayValue(items)) =
            list.values[0].value.as_ref().and_then(|v| v.value.clone())
        else {
            panic!("an array stays an array");
        };
        let kinds: Vec<_> = items.values.iter().map(|v| v.value.clone()).collect();
        assert_eq!(
            kinds,
            [
                Some(any_value::Value::IntValue(1)),
                Some(any_value::Value::DoubleValue(2.5)),
                Some(any_value::Value::StringValue("x".into())),
                Some(any_value::Value::BoolValue(true)),
                None,
            ]
        );
    }
}
