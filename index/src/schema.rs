//! The schema (version [`SCHEMA_VERSION`]) and record -> document mapping.
//!
//! Identifier fields are untokenized (`STRING`) so a term query finds an
//! exact id; free text (`message`, `error_message`, the raw text of
//! malformed lines) is tokenized; `attributes` is a JSON field so that
//! `attributes.order_id:1234` works. `flow` holds the flow key (correlation
//! id, or trace id when there is none) as a fast field for grouping.

use std::fs;
use std::path::{Path, PathBuf};

use causeway_model::Record;
use tantivy::schema::{
    FAST, Field, INDEXED, JsonObjectOptions, STORED, STRING, Schema, TEXT, TextFieldIndexing,
};
use tantivy::{Index, TantivyDocument};

use crate::error::IndexError;
use crate::reader::RecordReader;
use crate::writer::RecordWriter;

/// The version of the schema below. Bump it with any change to fields or
/// their options.
pub const SCHEMA_VERSION: u32 = 1;

const VERSION_FILE: &str = "causeway-index.json";

/// Fields searched when a query names none.
pub const DEFAULT_SEARCH_FIELDS: [&str; 3] = ["message", "error_message", "raw"];

/// The untokenized string fields, in record order.
pub(crate) const KEYWORD_FIELDS: [&str; 15] = [
    "service",
    "instance",
    "level",
    "stage",
    "trace_id",
    "span_id",
    "parent_span_id",
    "correlation_id",
    "causation_id",
    "event_id",
    "event_type",
    "messaging_system",
    "destination",
    "consumer_group",
    "error_type",
];

#[derive(Debug, Clone)]
pub(crate) struct Fields {
    pub timestamp_us: Field,
    pub flow: Field,
    pub keywords: [Field; KEYWORD_FIELDS.len()],
    pub message: Field,
    pub error_message: Field,
    pub raw: Field,
    pub malformed: Field,
    pub attributes: Field,
    pub source: Field,
}

fn build_schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let timestamp_us = b.add_i64_field("timestamp_us", INDEXED | FAST);
    let flow = b.add_text_field("flow", STRING | FAST);
    let keywords = KEYWORD_FIELDS.map(|name| b.add_text_field(name, STRING));
    let message = b.add_text_field("message", TEXT);
    let error_message = b.add_text_field("error_message", TEXT);
    let raw = b.add_text_field("raw", TEXT);
    let malformed = b.add_text_field("malformed", STRING);
    let attributes = b.add_json_field(
        "attributes",
        JsonObjectOptions::default()
            .set_indexing_options(TextFieldIndexing::default().set_tokenizer("default")),
    );
    let source = b.add_text_field("_source", STORED);
    let fields = Fields {
        timestamp_us,
        flow,
        keywords,
        message,
        error_message,
        raw,
        malformed,
        attributes,
        source,
    };
    (b.build(), fields)
}

impl Fields {
    pub(crate) fn keyword(&self, name: &str) -> Option<Field> {
        KEYWORD_FIELDS
            .iter()
            .position(|n| *n == name)
            .map(|i| self.keywords[i])
    }

    pub(crate) fn document(&self, record: &Record) -> TantivyDocument {
        let mut doc = TantivyDocument::new();
        doc.add_i64(self.timestamp_us, record.timestamp.as_micros());
        if let Some(flow) = record.flow_key() {
            doc.add_text(self.flow, flow);
        }
        let values: [Option<String>; KEYWORD_FIELDS.len()] = [
            Some(record.service.clone()),
            record.instance.clone(),
            Some(record.level.as_str().to_owned()),
            Some(record.stage.as_str().to_owned()),
            record.trace_id.map(|v| v.to_string()),
            record.span_id.map(|v| v.to_string()),
            record.parent_span_id.map(|v| v.to_string()),
            record.correlation_id.as_ref().map(|v| v.to_string()),
            record.causation_id.as_ref().map(|v| v.to_string()),
            record.event_id.as_ref().map(|v| v.to_string()),
            record.event_type.clone(),
            record.messaging_system.clone(),
            record.destination.clone(),
            record.consumer_group.clone(),
            record.error_type.clone(),
        ];
        for (field, value) in self.keywords.iter().zip(values) {
            if let Some(value) = value {
                doc.add_text(*field, value);
            }
        }
        doc.add_text(self.message, &record.message);
        if let Some(error) = &record.error_message {
            doc.add_text(self.error_message, error);
        }
        if let Some(malformed) = &record.malformed {
            doc.add_text(self.raw, &malformed.raw);
            doc.add_text(self.malformed, "true");
        }
        if !record.attributes.is_empty() {
            doc.add_object(
                self.attributes,
                record
                    .attributes
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone().into()))
                    .collect(),
            );
        }
        doc.add_text(self.source, record.to_json_line());
        doc
    }
}

/// An opened index directory.
#[derive(Clone)]
pub struct RecordIndex {
    pub(crate) index: Index,
    pub(crate) fields: Fields,
    path: PathBuf,
}

impl std::fmt::Debug for RecordIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordIndex")
            .field("path", &self.path)
            .finish()
    }
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> IndexError + '_ {
    move |source| IndexError::Io {
        path: path.to_owned(),
        source,
    }
}

fn check_version(dir: &Path) -> Result<(), IndexError> {
    let path = dir.join(VERSION_FILE);
    let text = fs::read_to_string(&path).map_err(io_error(&path))?;
    let found = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v.get("schema_version")?.as_u64())
        .and_then(|v| u32::try_from(v).ok())
        .unwrap_or(0);
    if found != SCHEMA_VERSION {
        return Err(IndexError::SchemaVersion {
            path: dir.to_owned(),
            found,
            expected: SCHEMA_VERSION,
        });
    }
    Ok(())
}

impl RecordIndex {
    /// Opens the index in `dir`, creating the directory and an empty index
    /// if there is none. For the collector.
    pub fn open_or_create(dir: &Path) -> Result<Self, IndexError> {
        fs::create_dir_all(dir).map_err(io_error(dir))?;
        if dir.join("meta.json").exists() {
            return Self::open_existing(dir);
        }
        // The version file goes first: readers take `meta.json` as the sign
        // that an index exists, and must then find its version.
        let version = format!("{{\"schema_version\":{SCHEMA_VERSION}}}\n");
        let path = dir.join(VERSION_FILE);
        fs::write(&path, version).map_err(io_error(&path))?;
        let (schema, fields) = build_schema();
        let index = Index::create_in_dir(dir, schema)?;
        Ok(Self {
            index,
            fields,
            path: dir.to_owned(),
        })
    }

    /// Opens an existing index; fails with [`IndexError::Missing`] if there
    /// is none. For query, which never creates or writes.
    pub fn open_existing(dir: &Path) -> Result<Self, IndexError> {
        if !dir.join("meta.json").exists() {
            return Err(IndexError::Missing {
                path: dir.to_owned(),
            });
        }
        check_version(dir)?;
        let index = Index::open_in_dir(dir)?;
        let (_, fields) = build_schema();
        Ok(Self {
            index,
            fields,
            path: dir.to_owned(),
        })
    }

    /// The index directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The single writer. `heap_bytes` is tantivy's indexing memory budget.
    pub fn writer(&self, heap_bytes: usize) -> Result<RecordWriter, IndexError> {
        RecordWriter::new(self, heap_bytes)
    }

    /// A reader that picks up new commits by itself (within about a second).
    pub fn reader(&self) -> Result<RecordReader, IndexError> {
        RecordReader::new(self)
    }
}
