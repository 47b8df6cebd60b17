//! The schema (version [`SCHEMA_VERSION`]) and record -> document mapping,
//! derived from the record's declared fields ([`RecordField`],
//! [`NestedField`] in the model).
//!
//! Each field is indexed by its kind: keywords untokenized (`STRING`) so a
//! term query finds an exact id, text tokenized (`TEXT`), times as an i64
//! fast field of microseconds named `<name>_us`, the free-form `attributes`
//! as a JSON field (`attributes.order_id:1234`), a nested field as a
//! `"true"` flag under its own name with its subfields indexed on their
//! own; numbers are not indexed yet. Besides the record's fields, `flow`
//! holds the flow key (correlation id, or trace id when there is none) as a
//! fast field for grouping, and `_source` the whole record as JSON.
//!
//! The same index holds one digest document per flow (version 2 on): `_doc`
//! tells the two kinds apart (`record` or `flow`), and the `flow_*` fields
//! are the digest's, set only on digest documents (their mapping is
//! `digest_doc.rs`). Every read of records filters on `_doc:record`.
//!
//! This module only describes: it opens nothing, reads and writes nothing
//! (that is `record_index.rs`), and imports neither the reader nor the
//! writer.

use std::borrow::Cow;

use causeway_model::{FieldKind, FieldValue, NestedField, Record, RecordField};
use tantivy::schema::{
    FAST, Field, INDEXED, JsonObjectOptions, NumericOptions, STORED, STRING, Schema, TEXT,
    TextFieldIndexing,
};
use tantivy::{TantivyDocument, TantivyError, Term};

use crate::error::IndexError;

/// The version of the schema below. Bump it with any change to fields or
/// their options, and add `schemas/v<version>.json` (the test
/// `the_schema_is_the_one_its_version_names` says so when it is due).
pub const SCHEMA_VERSION: u32 = 3;

/// When the writer added a document (record or digest), microseconds,
/// increasing within a writer: what a tail follows, since records arrive
/// out of their own time order.
pub(crate) const INGESTED_US: &str = "_ingested_us";
/// A record's content hash, given by a sender that can send the same
/// record again with no position to tell (OTLP): indexed only, so that
/// the writer finds whether it holds the record already.
pub(crate) const CONTENT_HASH: &str = "_hash";
/// The field holding the flow key of a record.
pub(crate) const FLOW: &str = "flow";
/// The keyword telling a record document from a digest document.
const DOC_KIND: &str = "_doc";
/// The `_doc` value of a record document.
pub(crate) const DOC_RECORD: &str = "record";
/// The `_doc` value of a flow's digest document.
pub(crate) const DOC_FLOW: &str = "flow";
/// The flow key of a digest document (records have theirs in `flow`).
pub(crate) const FLOW_KEY: &str = "flow_key";
/// The digest's last record time, which flow lists sort on.
pub(crate) const FLOW_LAST_US: &str = "flow_last_us";
const FLOW_DIGEST: &str = "flow_digest";
const FLOW_FIRST_US: &str = "flow_first_us";
const FLOW_DURATION_US: &str = "flow_duration_us";
const FLOW_SERVICES: &str = "flow_services";
const FLOW_EVENT_TYPES: &str = "flow_event_types";
const FLOW_FACETS: &str = "flow_facets";
const FLOW_RECORD_COUNT: &str = "flow_record_count";
/// The fast field of the record's timestamp, in microseconds, which reads
/// sort on.
pub(crate) const TIMESTAMP_US: &str = "timestamp_us";
/// The field holding the whole record as JSON.
const SOURCE: &str = "_source";

/// How the index holds one record field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Indexed {
    /// Only inside `_source`: read back, never searched.
    SourceOnly,
    /// Untokenized: a term query finds the exact value.
    Keyword,
    /// Tokenized: searched by words; the default search fields.
    Text,
    /// Microseconds as an indexed i64 fast field named `<name>_us`.
    Micros,
    /// A JSON field, searched by path.
    Json,
    /// `"true"` when the field is present; its subfields go on their own.
    Flag,
}

const fn by_kind(kind: FieldKind) -> Indexed {
    match kind {
        FieldKind::Keyword => Indexed::Keyword,
        FieldKind::Text => Indexed::Text,
        FieldKind::Time => Indexed::Micros,
        // A numeric field (`duration_us:>1000`) is a schema change of its
        // own, for a later version.
        FieldKind::Number => Indexed::SourceOnly,
        FieldKind::Object => Indexed::Json,
        FieldKind::Nested => Indexed::Flag,
        // Kept for reading back; a search by linked trace is for later.
        FieldKind::Links => Indexed::SourceOnly,
    }
}

/// How a top-level record field is indexed: by its kind.
pub(crate) const fn indexed(field: RecordField) -> Indexed {
    by_kind(field.kind())
}

/// How a subfield of a nested field is indexed, decided per subfield.
pub(crate) const fn nested_indexed(field: NestedField) -> Indexed {
    match field {
        NestedField::MalformedRaw => by_kind(field.kind()),
        // One of a few parser messages; `malformed:true` finds the records
        // and `_source` has the reason.
        NestedField::MalformedReason => Indexed::SourceOnly,
    }
}

/// The index field name of a record or nested field (times get `_us`).
fn index_name(name: &'static str, indexed: Indexed) -> Cow<'static, str> {
    match indexed {
        Indexed::Micros => Cow::Owned(format!("{name}_us")),
        _ => Cow::Borrowed(name),
    }
}

/// Adds the field to the builder if it is indexed at all.
fn add_field(
    b: &mut tantivy::schema::SchemaBuilder,
    name: &str,
    indexed: Indexed,
) -> Option<Field> {
    Some(match indexed {
        Indexed::SourceOnly => return None,
        Indexed::Keyword | Indexed::Flag => b.add_text_field(name, STRING),
        Indexed::Text => b.add_text_field(name, TEXT),
        Indexed::Micros => b.add_i64_field(name, INDEXED | FAST),
        Indexed::Json => b.add_json_field(
            name,
            JsonObjectOptions::default()
                .set_indexing_options(TextFieldIndexing::default().set_tokenizer("default")),
        ),
    })
}

/// The schema of version [`SCHEMA_VERSION`].
pub(crate) fn build_schema() -> Schema {
    let mut b = Schema::builder();
    for field in RecordField::ALL {
        let indexed = indexed(field);
        add_field(&mut b, &index_name(field.name(), indexed), indexed);
    }
    for field in NestedField::ALL {
        let indexed = nested_indexed(field);
        add_field(&mut b, &index_name(field.name(), indexed), indexed);
    }
    b.add_text_field(FLOW, STRING | FAST);
    b.add_text_field(SOURCE, STORED);
    b.add_text_field(DOC_KIND, STRING);
    b.add_text_field(FLOW_KEY, STRING | FAST);
    b.add_text_field(FLOW_DIGEST, STORED);
    b.add_i64_field(FLOW_FIRST_US, INDEXED | FAST);
    b.add_i64_field(FLOW_LAST_US, INDEXED | FAST);
    b.add_u64_field(FLOW_DURATION_US, INDEXED | FAST);
    b.add_text_field(FLOW_SERVICES, STRING);
    b.add_text_field(FLOW_EVENT_TYPES, STRING);
    b.add_text_field(FLOW_FACETS, STRING);
    b.add_u64_field(FLOW_RECORD_COUNT, FAST);
    b.add_i64_field(INGESTED_US, INDEXED | FAST);
    // No fieldnorms: nothing is scored by it.
    b.add_u64_field(CONTENT_HASH, NumericOptions::default().set_indexed());
    b.build()
}

/// The fields of a flow's digest document.
#[derive(Debug, Clone)]
pub(crate) struct DigestFields {
    /// The flow key: one live digest document per value.
    pub key: Field,
    /// The digest as JSON, stored only.
    pub json: Field,
    pub first_us: Field,
    pub last_us: Field,
    pub duration_us: Field,
    /// Every service of the flow, one value each.
    pub services: Field,
    /// Every event type of the flow, one value each.
    pub event_types: Field,
    /// [`causeway_model::DigestFacet::as_str`] of each facet that holds.
    pub facets: Field,
    pub record_count: Field,
}

/// The handles of an opened index's fields, found by name.
#[derive(Debug, Clone)]
pub(crate) struct Fields {
    pub flow: Field,
    pub source: Field,
    /// The record's time, [`TIMESTAMP_US`].
    pub timestamp: Field,
    /// `_doc`: [`DOC_RECORD`] or [`DOC_FLOW`].
    pub doc_kind: Field,
    /// [`INGESTED_US`], on every document.
    pub ingested: Field,
    /// [`CONTENT_HASH`], on records whose sender gave one.
    pub content_hash: Field,
    pub digest: DigestFields,
    record: [Option<Field>; RecordField::COUNT],
    nested: [Option<Field>; NestedField::COUNT],
}

impl Fields {
    /// Finds every field of [`build_schema`] in `schema` (an opened index's)
    /// by name, and refuses one whose options differ: such an index was
    /// written by a build that changed the schema without a new version.
    pub(crate) fn resolve(schema: &Schema) -> Result<Self, IndexError> {
        let expected = build_schema();
        let find = |name: &str| -> Result<Field, IndexError> {
            let mismatch = |what: &str| {
                IndexError::Tantivy(TantivyError::SchemaError(format!(
                    "index field {name:?} {what} in schema version {SCHEMA_VERSION}"
                )))
            };
            let field = schema.get_field(name).map_err(|_| mismatch("is missing"))?;
            let wanted = expected
                .get_field(name)
                .map_err(|_| mismatch("is not declared"))?;
            if schema.get_field_entry(field) != expected.get_field_entry(wanted) {
                return Err(mismatch("has other options than"));
            }
            Ok(field)
        };
        let mut record = [None; RecordField::COUNT];
        for field in RecordField::ALL {
            let indexed = indexed(field);
            if indexed != Indexed::SourceOnly {
                record[field.index()] = Some(find(&index_name(field.name(), indexed))?);
            }
        }
        let mut nested = [None; NestedField::COUNT];
        for field in NestedField::ALL {
            let indexed = nested_indexed(field);
            if indexed != Indexed::SourceOnly {
                nested[field.index()] = Some(find(&index_name(field.name(), indexed))?);
            }
        }
        Ok(Self {
            flow: find(FLOW)?,
            source: find(SOURCE)?,
            timestamp: find(TIMESTAMP_US)?,
            doc_kind: find(DOC_KIND)?,
            ingested: find(INGESTED_US)?,
            content_hash: find(CONTENT_HASH)?,
            digest: DigestFields {
                key: find(FLOW_KEY)?,
                json: find(FLOW_DIGEST)?,
                first_us: find(FLOW_FIRST_US)?,
                last_us: find(FLOW_LAST_US)?,
                duration_us: find(FLOW_DURATION_US)?,
                services: find(FLOW_SERVICES)?,
                event_types: find(FLOW_EVENT_TYPES)?,
                facets: find(FLOW_FACETS)?,
                record_count: find(FLOW_RECORD_COUNT)?,
            },
            record,
            nested,
        })
    }

    /// The term every record document has.
    pub(crate) fn record_term(&self) -> Term {
        Term::from_field_text(self.doc_kind, DOC_RECORD)
    }

    /// The term every digest document has.
    pub(crate) fn flow_term(&self) -> Term {
        Term::from_field_text(self.doc_kind, DOC_FLOW)
    }

    /// The untokenized index field of a keyword record field.
    pub(crate) fn keyword(&self, field: RecordField) -> Option<Field> {
        match indexed(field) {
            Indexed::Keyword => self.record[field.index()],
            _ => None,
        }
    }

    /// The fields searched when a query names none: every field indexed as
    /// text, record fields first, in declaration order.
    pub(crate) fn default_search(&self) -> Vec<Field> {
        let record = RecordField::ALL
            .into_iter()
            .filter(|f| indexed(*f) == Indexed::Text)
            .filter_map(|f| self.record[f.index()]);
        let nested = NestedField::ALL
            .into_iter()
            .filter(|f| nested_indexed(*f) == Indexed::Text)
            .filter_map(|f| self.nested[f.index()]);
        record.chain(nested).collect()
    }

    /// The document of `record`, whose flow key (`record.flow_key()`) the
    /// caller computed once for this and for the flow's digest.
    /// The record's document; `json_line` is its JSON line when the
    /// caller has it already (else it is made here).
    pub(crate) fn document(
        &self,
        record: &Record,
        flow_key: Option<&str>,
        json_line: Option<&str>,
    ) -> TantivyDocument {
        let mut doc = TantivyDocument::new();
        doc.add_text(self.doc_kind, DOC_RECORD);
        for field in RecordField::ALL {
            if let Some(target) = self.record[field.index()] {
                add_value(&mut doc, target, indexed(field), record.field(field));
            }
        }
        for field in NestedField::ALL {
            if let Some(target) = self.nested[field.index()] {
                add_value(
                    &mut doc,
                    target,
                    nested_indexed(field),
                    record.nested_field(field),
                );
            }
        }
        if let Some(flow) = flow_key {
            doc.add_text(self.flow, flow);
        }
        match json_line {
            Some(line) => doc.add_text(self.source, line),
            None => doc.add_text(self.source, record.to_json_line()),
        }
        doc
    }
}

fn add_value(doc: &mut TantivyDocument, target: Field, indexed: Indexed, value: FieldValue<'_>) {
    match (indexed, value) {
        (_, FieldValue::Absent) | (Indexed::SourceOnly, _) => {}
        (Indexed::Keyword | Indexed::Text, FieldValue::Str(s)) => doc.add_text(target, s),
        (Indexed::Micros, FieldValue::Time(t)) => doc.add_i64(target, t.as_micros()),
        (Indexed::Json, FieldValue::Object(map)) => doc.add_object(
            target,
            map.iter()
                .map(|(k, v)| (k.clone(), v.clone().into()))
                .collect(),
        ),
        (Indexed::Flag, FieldValue::Nested) => doc.add_text(target, "true"),
        // The model's tests tie each kind to its value variant, and
        // `by_kind` ties each kind to its indexing, so this is unreachable;
        // `every_indexed_field_of_a_full_record_is_in_its_document` checks.
        (indexed, value) => debug_assert!(false, "{indexed:?} cannot hold {value:?}"),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use causeway_model::{CorrelationId, EventId, Level, Malformed, SpanLink, Stage, Timestamp};
    use serde_json::Value;
    use tantivy::schema::Value as _;

    use super::*;

    /// The schema as JSON, its fields sorted by name (their order is not
    /// part of the schema: fields are found by name).
    fn sorted(schema: Value) -> Vec<Value> {
        let mut fields = schema.as_array().cloned().unwrap_or_default();
        fields.sort_by_key(|f| f["name"].as_str().unwrap_or_default().to_owned());
        fields
    }

    #[test]
    fn the_schema_is_the_one_its_version_names() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("schemas")
            .join(format!("v{SCHEMA_VERSION}.json"));
        let pinned = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}; a new version writes its schema", path.display()));
        let pinned = sorted(serde_json::from_str(&pinned).unwrap());
        let built = sorted(serde_json::to_value(build_schema()).unwrap());
        assert!(
            built == pinned,
            "the schema is not the one of version {SCHEMA_VERSION}: bump SCHEMA_VERSION and \
             write schemas/v<new>.json (keep the old files)\nbuilt: {}",
            serde_json::to_string_pretty(&built).unwrap()
        );
    }

    #[test]
    fn default_search_fields_are_the_text_fields() {
        let schema = build_schema();
        let fields = Fields::resolve(&schema).unwrap();
        let names: Vec<&str> = fields
            .default_search()
            .into_iter()
            .map(|f| schema.get_field_name(f))
            .collect();
        assert_eq!(names, ["message", "error_message", "raw"]);
        for name in names {
            let field = schema.get_field(name).unwrap();
            let indexing = schema
                .get_field_entry(field)
                .field_type()
                .get_index_record_option();
            assert_eq!(
                indexing,
                Some(tantivy::schema::IndexRecordOption::WithFreqsAndPositions),
                "{name} is tokenized"
            );
        }
    }

    fn full_record() -> Record {
        let mut r = Record::new(Timestamp::from_micros(42), "payment", "card declined");
        r.level = Level::Error;
        r.stage = Stage::Failed;
        r.instance = Some("pod-1".into());
        r.trace_id = Some("4bf92f3577b34da6a3ce929d0e0e4736".parse().unwrap());
        r.span_id = Some("00f067aa0ba902b7".parse().unwrap());
        r.parent_span_id = Some("00f067aa0ba902b8".parse().unwrap());
        r.correlation_id = Some(CorrelationId::new("order-1").unwrap());
        r.causation_id = Some(EventId::new("ev-1").unwrap());
        r.event_id = Some(EventId::new("ev-2").unwrap());
        r.event_type = Some("PaymentFailed".into());
        r.messaging_system = Some("inproc".into());
        r.destination = Some("payments".into());
        r.consumer_group = Some("payment".into());
        r.duration_us = Some(7);
        r.error_type = Some("CardDeclined".into());
        r.error_message = Some("insufficient funds".into());
        r.attributes.insert("order_id".into(), 1234.into());
        r.malformed = Some(Malformed {
            raw: "{oops".into(),
            reason: "not JSON".into(),
        });
        r.links = vec![SpanLink {
            trace_id: "0af7651916cd43dd8448eb211c80319c".parse().unwrap(),
            span_id: "b7ad6b7169203331".parse().unwrap(),
        }];
        r
    }

    #[test]
    fn every_indexed_field_of_a_full_record_is_in_its_document() {
        let schema = build_schema();
        let fields = Fields::resolve(&schema).unwrap();
        let record = full_record();
        for field in RecordField::ALL {
            assert!(!record.field(field).is_absent(), "{field:?} not set");
        }
        let doc = fields.document(&record, record.flow_key().as_deref(), None);
        for (field, entry) in schema.fields() {
            if entry.name().starts_with("flow_")
                || entry.name() == INGESTED_US
                || entry.name() == CONTENT_HASH
            {
                // The digest document's fields; what the writer adds.
                continue;
            }
            assert!(
                doc.get_first(field).is_some(),
                "{} has no value",
                schema.get_field_name(field)
            );
        }
        let keyword = |name| doc.get_first(fields.keyword(name).unwrap())?.as_str();
        assert_eq!(keyword(RecordField::SpanId), Some("00f067aa0ba902b7"));
        assert_eq!(keyword(RecordField::Level), Some("ERROR"));
        assert_eq!(keyword(RecordField::Stage), Some("failed"));
        assert_eq!(
            fields.keyword(RecordField::Message),
            None,
            "text is not a keyword"
        );
        // The name reads sort by is the one the declarations give the time.
        assert_eq!(
            index_name(
                RecordField::Timestamp.name(),
                indexed(RecordField::Timestamp)
            ),
            TIMESTAMP_US
        );
        let timestamp = schema.get_field(TIMESTAMP_US).unwrap();
        assert_eq!(doc.get_first(timestamp).and_then(|v| v.as_i64()), Some(42));
    }

    #[test]
    fn an_index_whose_field_options_differ_is_refused() {
        let mut b = Schema::builder();
        for (_, entry) in build_schema().fields() {
            if entry.name() == "service" {
                b.add_text_field("service", TEXT);
            } else {
                b.add_field(entry.clone());
            }
        }
        let error = Fields::resolve(&b.build()).unwrap_err();
        assert!(error.to_string().contains("\"service\""), "{error}");
    }
}
