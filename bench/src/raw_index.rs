//! The `raw-index` command: the baseline of the collector ingest
//! benchmark. Plain tantivy indexes the corpus's NDJSON lines with the
//! causeway schema, one `IndexWriter` with the collector's default heap
//! budget, one commit at the end: what indexing these records costs with
//! nothing of causeway's around it (no HTTP, no write-ahead log, no flow
//! digests, no commit every 500 ms). With a commit interval it commits as
//! often as the collector does, so that what it indexes is searchable as
//! soon: the baseline for a collector that must make records searchable
//! within 2 s, still with nothing else of causeway's.
//!
//! The schema is the one an index made by `RecordIndex::open_or_create`
//! has (the index crate keeps its builder to itself), read back through
//! tantivy; each record becomes the document the collector's writer makes
//! of it (`index/src/schema.rs`: `_doc:record`, each model field the
//! schema holds, by its kind, `flow`, `_source` and `_ingested_us`),
//! found by the model's field names. The timed part parses each line
//! into a `Record` (as the collector decodes a batch), builds the
//! document, adds it, and commits.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use causeway_index::RecordIndex;
use causeway_model::{FieldKind, FieldValue, NestedField, Record, RecordField, Timestamp};
use tantivy::schema::{Field, Schema};
use tantivy::{Index, IndexWriter, TantivyDocument};

use crate::procfs::Process;
use crate::results::{MERGED, RAW, RAW_COMMITTING, RunResult, disk_usage, write_result};

/// What `raw-index` does.
#[derive(Debug, Clone)]
pub struct RawOptions {
    pub corpus: PathBuf,
    pub data_dir: PathBuf,
    pub heap_bytes: usize,
    /// Commit whenever this long has passed since the last commit (and
    /// once at the end); `None`: once at the end only.
    pub commit_interval: Option<Duration>,
    pub result: Option<PathBuf>,
    /// Where to write a second row: the same run measured to the end of
    /// the merges tantivy starts after the commit.
    pub merged_result: Option<PathBuf>,
    pub load: String,
}

/// The index fields a record document fills, found by name in the schema.
struct DocFields {
    /// Per model field, the index field and its kind, when indexed.
    record: Vec<(RecordField, Field)>,
    nested: Vec<(NestedField, Field)>,
    doc_kind: Field,
    flow: Field,
    source: Field,
    ingested: Field,
}

impl DocFields {
    fn find(schema: &Schema) -> anyhow::Result<Self> {
        let by_name = |name: &str| {
            schema
                .get_field(name)
                .with_context(|| format!("the causeway schema has no field {name:?}"))
        };
        // Times are `<name>_us`; a field of any other kind keeps its name;
        // a field the schema lacks is kept in `_source` only.
        let index_name = |name: &str, kind: FieldKind| match kind {
            FieldKind::Time => format!("{name}_us"),
            _ => name.to_owned(),
        };
        let record = RecordField::ALL
            .into_iter()
            .filter_map(|f| {
                let field = schema.get_field(&index_name(f.name(), f.kind())).ok()?;
                Some((f, field))
            })
            .collect();
        let nested = NestedField::ALL
            .into_iter()
            .filter_map(|f| {
                let field = schema.get_field(&index_name(f.name(), f.kind())).ok()?;
                Some((f, field))
            })
            .collect();
        Ok(Self {
            record,
            nested,
            doc_kind: by_name("_doc")?,
            flow: by_name("flow")?,
            source: by_name("_source")?,
            ingested: by_name("_ingested_us")?,
        })
    }

    fn document(&self, record: &Record, ingested_us: i64) -> TantivyDocument {
        let mut doc = TantivyDocument::new();
        doc.add_text(self.doc_kind, "record");
        for &(field, target) in &self.record {
            add_value(&mut doc, target, record.field(field));
        }
        for &(field, target) in &self.nested {
            add_value(&mut doc, target, record.nested_field(field));
        }
        if let Some(flow) = record.flow_key() {
            doc.add_text(self.flow, flow);
        }
        doc.add_text(self.source, record.to_json_line());
        doc.add_i64(self.ingested, ingested_us);
        doc
    }
}

fn add_value(doc: &mut TantivyDocument, target: Field, value: FieldValue<'_>) {
    match value {
        FieldValue::Str(s) => doc.add_text(target, s),
        FieldValue::Time(t) => doc.add_i64(target, t.as_micros()),
        FieldValue::Object(map) => doc.add_object(
            target,
            map.iter()
                .map(|(k, v)| (k.clone(), v.clone().into()))
                .collect(),
        ),
        FieldValue::Nested => doc.add_text(target, "true"),
        // Numbers and links are not indexed (not in the schema).
        FieldValue::Absent | FieldValue::Number(_) | FieldValue::Links(_) => {}
    }
}

pub fn raw_index(options: &RawOptions) -> anyhow::Result<()> {
    let index_dir = options.data_dir.join("index");
    if index_dir.join("meta.json").exists() {
        bail!(
            "{} already holds an index: remove it or pick another --data-dir",
            index_dir.display()
        );
    }
    let corpus = read_corpus(&options.corpus)?;
    let lines: Vec<&[u8]> = corpus
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    // The schema of a causeway index, then the index opened as plain tantivy.
    drop(RecordIndex::open_or_create(&index_dir)?);
    let index = Index::open_in_dir(&index_dir)?;
    let fields = DocFields::find(&index.schema())?;
    eprintln!(
        "raw tantivy: {} records, {:.1} MB of NDJSON, heap {} MiB",
        lines.len(),
        corpus.len() as f64 / 1e6,
        options.heap_bytes >> 20
    );

    Process::This.reset_peak_rss().ok();
    let rss_before = Process::This.rss_kib()?;
    let cpu_before = Process::This.cpu_seconds()?;
    let started = Instant::now();
    let mut writer: IndexWriter = index.writer(options.heap_bytes)?;
    let mut last_ingested = 0i64;
    let mut parse_secs = 0.0;
    let mut commits = 0usize;
    let mut last_commit = Instant::now();
    for line in &lines {
        if let Some(interval) = options.commit_interval
            && last_commit.elapsed() >= interval
        {
            writer.commit()?;
            commits += 1;
            last_commit = Instant::now();
        }
        let parsing = Instant::now();
        let record: Record = serde_json::from_slice(line).context("a corpus line")?;
        parse_secs += parsing.elapsed().as_secs_f64();
        last_ingested = Timestamp::now()
            .as_micros()
            .max(last_ingested.saturating_add(1));
        writer.add_document(fields.document(&record, last_ingested))?;
    }
    writer.commit()?;
    commits += 1;
    let wall = started.elapsed().as_secs_f64();
    let cpu = Process::This.cpu_seconds()? - cpu_before;
    let peak_rss = Process::This.peak_rss_kib()?;
    let (committed_bytes, _) = disk_usage(&index_dir)?;
    let segments = index.searchable_segment_metas()?.len();
    // The merges tantivy's policy wants after the commit: what a running
    // indexer does next (the collector's merges run while it ingests).
    writer.wait_merging_threads()?;
    let merged_wall = started.elapsed().as_secs_f64();
    let merged_cpu = Process::This.cpu_seconds()? - cpu_before;
    let merged_peak = Process::This.peak_rss_kib()?;
    let (index_bytes, _) = disk_usage(&index_dir)?;
    let merged_segments = index.searchable_segment_metas()?.len();

    let result = RunResult {
        case: match options.commit_interval {
            Some(every) => format!("{RAW_COMMITTING} {} ms", every.as_millis()),
            None => RAW.to_owned(),
        },
        records: lines.len() as u64,
        ndjson_bytes: corpus.len() as u64,
        wire_bytes: corpus.len() as u64,
        wall_secs: wall,
        cpu_secs: cpu,
        client_cpu_secs: None,
        peak_rss_kib: peak_rss,
        rss_note: format!(
            "the {} MiB corpus read into this process is part of it",
            rss_before / 1024
        ),
        index_bytes: committed_bytes,
        searchable_p50_secs: None,
        searchable_p99_secs: None,
        ack: None,
        busy: 0,
        overloaded: 0,
        errors: 0,
        load: options.load.clone(),
        note: format!(
            "one IndexWriter, heap {} MiB, {}, {segments} segments; parsing the lines {parse_secs:.1} s of it",
            options.heap_bytes >> 20,
            match options.commit_interval {
                Some(every) => format!("{commits} commits, one every {} ms", every.as_millis()),
                None => "one commit".to_owned(),
            }
        ),
    };
    write_result(&result, options.result.as_deref())?;
    if let Some(path) = &options.merged_result {
        let merged = RunResult {
            case: format!("{}{MERGED}", result.case),
            wall_secs: merged_wall,
            cpu_secs: merged_cpu,
            peak_rss_kib: merged_peak,
            index_bytes,
            note: format!(
                "the same run until the merges tantivy starts after the commit end: {segments} segments -> {merged_segments}"
            ),
            ..result
        };
        write_result(&merged, Some(path))?;
    }
    Ok(())
}

/// The corpus file, whole.
pub fn read_corpus(path: &Path) -> anyhow::Result<Vec<u8>> {
    fs::read(path).with_context(|| format!("reading {}", path.display()))
}

#[cfg(test)]
mod tests {
    use causeway_index::RecordIndex;
    use causeway_model::{CorrelationId, Stage, Timestamp};

    use super::*;

    /// The document built here finds the same records as the collector's
    /// writer's: by keyword, by text, by flow and in `_source`.
    #[test]
    fn a_raw_document_is_found_as_the_collectors_is() {
        let dir = tempfile::tempdir().unwrap();
        drop(RecordIndex::open_or_create(dir.path()).unwrap());
        let index = Index::open_in_dir(dir.path()).unwrap();
        let fields = DocFields::find(&index.schema()).unwrap();
        let names: Vec<&str> = fields.record.iter().map(|(f, _)| f.name()).collect();
        assert!(names.contains(&"correlation_id") && names.contains(&"message"));
        assert!(!names.contains(&"duration_us"), "numbers are not indexed");

        let mut record = Record::new(Timestamp::from_micros(5), "payment", "card declined");
        record.stage = Stage::Failed;
        record.correlation_id = Some(CorrelationId::new("order-7").unwrap());
        let mut writer: IndexWriter = index.writer(15_000_000).unwrap();
        writer.add_document(fields.document(&record, 1)).unwrap();
        writer.commit().unwrap();

        let reader = index.reader().unwrap();
        let searcher = reader.searcher();
        let parser = tantivy::query::QueryParser::for_index(&index, vec![]);
        for query in [
            "correlation_id:order-7",
            "message:declined",
            "flow:order-7",
            "_doc:record",
            "stage:failed",
        ] {
            let query = parser.parse_query(query).unwrap();
            let hits = searcher.search(&query, &tantivy::collector::Count).unwrap();
            assert_eq!(hits, 1, "{query:?}");
        }
    }
}
