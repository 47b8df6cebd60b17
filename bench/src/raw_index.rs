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
//!
//! With `decode_otlp_batch`, the lines are cut into chunks of that many
//! and each chunk is encoded as one OTLP logs export (`otlp::encode_logs`,
//! the bodies `ingest-run --protocol otlp` posts) before the clock and the
//! CPU reading start; the timed part then decodes each chunk's export with
//! prost, as the collector's OTLP path does, before indexing the chunk's
//! lines as above: raw tantivy plus the protobuf decode of the same
//! records, to set the OTLP row against. It must not do anything else
//! with the decoded export (no mapping into records): that would be
//! measuring the collector's code, not the dependency's.

use std::fs;
use std::hint::black_box;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use causeway_index::RecordIndex;
use causeway_model::{FieldKind, FieldValue, NestedField, Record, RecordField, Timestamp};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use prost::Message;
use tantivy::schema::{Field, Schema};
use tantivy::{Index, IndexWriter, TantivyDocument};

use crate::otlp;
use crate::procfs::Process;
use crate::results::{
    DECODING_OTLP, MERGED, RAW, RAW_COMMITTING, RunResult, disk_usage, write_result,
};

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
    /// Encode the lines as OTLP logs exports of this many records before
    /// the measurement, and decode each export before indexing its lines.
    pub decode_otlp_batch: Option<NonZeroUsize>,
    pub load: String,
}

/// Lines indexed together: all of them, or the records of one OTLP
/// export, which the timed part decodes first.
struct Chunk<'a> {
    lines: &'a [&'a [u8]],
    /// The lines as one encoded `ExportLogsServiceRequest`.
    export: Option<Vec<u8>>,
}

/// `lines` as one chunk without an export, or cut into chunks of `batch`
/// lines (the last may hold fewer), each with its lines as an OTLP logs
/// export, encoded here (this is the untimed part).
fn chunks<'a>(
    lines: &'a [&'a [u8]],
    batch: Option<NonZeroUsize>,
) -> anyhow::Result<Vec<Chunk<'a>>> {
    let Some(batch) = batch else {
        return Ok(vec![Chunk {
            lines,
            export: None,
        }]);
    };
    lines
        .chunks(batch.get())
        .map(|lines| {
            let records = lines
                .iter()
                .map(|line| serde_json::from_slice::<Record>(line))
                .collect::<Result<Vec<_>, _>>()
                .context("a corpus line")?;
            Ok(Chunk {
                lines,
                export: Some(otlp::encode_logs(&records)),
            })
        })
        .collect()
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
    // Before any reading of the clock or the CPU time: what the collector
    // receives already encoded costs it nothing to encode.
    let chunks = chunks(&lines, options.decode_otlp_batch)?;
    let export_bytes: usize = chunks
        .iter()
        .filter_map(|chunk| chunk.export.as_ref().map(Vec::len))
        .sum();
    if let Some(batch) = options.decode_otlp_batch {
        eprintln!(
            "raw tantivy: {} OTLP exports of {batch} records, {:.1} MB, encoded before the measurement",
            chunks.len(),
            export_bytes as f64 / 1e6
        );
    }

    Process::This.reset_peak_rss().ok();
    let rss_before = Process::This.rss_kib()?;
    let cpu_before = Process::This.cpu_seconds()?;
    let started = Instant::now();
    let mut writer: IndexWriter = index.writer(options.heap_bytes)?;
    let mut last_ingested = 0i64;
    let mut parse_secs = 0.0;
    let mut decode_secs = 0.0;
    let mut commits = 0usize;
    let mut last_commit = Instant::now();
    for chunk in &chunks {
        // Kept (through `black_box`, so that the decode is not optimized
        // away) until the chunk's lines are indexed, as the collector
        // holds a request while it ingests it.
        let decoded = match &chunk.export {
            Some(export) => {
                let decoding = Instant::now();
                let request = ExportLogsServiceRequest::decode(export.as_slice())
                    .context("decoding an OTLP export")?;
                decode_secs += decoding.elapsed().as_secs_f64();
                Some(black_box(request))
            }
            None => None,
        };
        for line in chunk.lines {
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
        drop(black_box(decoded));
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

    let decoding = match options.decode_otlp_batch {
        Some(_) => DECODING_OTLP,
        None => "",
    };
    let result = RunResult {
        case: match options.commit_interval {
            Some(every) => format!("{RAW_COMMITTING} {} ms{decoding}", every.as_millis()),
            None => format!("{RAW}{decoding}"),
        },
        records: lines.len() as u64,
        ndjson_bytes: corpus.len() as u64,
        wire_bytes: corpus.len() as u64,
        wall_secs: wall,
        cpu_secs: cpu,
        client_cpu_secs: None,
        peak_rss_kib: peak_rss,
        rss_note: match options.decode_otlp_batch {
            Some(_) => format!(
                "the {} MiB of the corpus and its OTLP exports ({:.1} MB), read and encoded into this process, are part of it",
                rss_before / 1024,
                export_bytes as f64 / 1e6
            ),
            None => format!(
                "the {} MiB corpus read into this process is part of it",
                rss_before / 1024
            ),
        },
        index_bytes: committed_bytes,
        searchable_p50_secs: None,
        searchable_p99_secs: None,
        ack: None,
        busy: 0,
        overloaded: 0,
        errors: 0,
        load: options.load.clone(),
        note: format!(
            "one IndexWriter, heap {} MiB, {}, {segments} segments; parsing the lines {parse_secs:.1} s of it{}",
            options.heap_bytes >> 20,
            match options.commit_interval {
                Some(every) => format!("{commits} commits, one every {} ms", every.as_millis()),
                None => "one commit".to_owned(),
            },
            match options.decode_otlp_batch {
                Some(batch) => format!(
                    "; before each {batch} lines, their OTLP logs export ({:.1} MB in all, encoded before the measurement) decoded with prost: {decode_secs:.1} s of it",
                    export_bytes as f64 / 1e6
                ),
                None => String::new(),
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
    use opentelemetry_proto::tonic::common::v1::any_value;

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

    /// A corpus file of `records` records, as `corpus --out` writes it.
    fn corpus_file(dir: &Path, records: u64) -> PathBuf {
        let path = dir.join("corpus.ndjson");
        crate::ingest::write_corpus(records, 7, Some(&path)).unwrap();
        path
    }

    fn corpus_lines(corpus: &[u8]) -> Vec<&[u8]> {
        corpus
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .collect()
    }

    /// Every line is in exactly one chunk, in order, the last chunk holding
    /// the rest; each chunk's export decodes to its lines' records.
    #[test]
    fn otlp_chunks_cover_every_line_once() {
        let dir = tempfile::tempdir().unwrap();
        let corpus = read_corpus(&corpus_file(dir.path(), 1_050)).unwrap();
        let lines = corpus_lines(&corpus);
        assert_eq!(lines.len(), 1_050);

        let whole = chunks(&lines, None).unwrap();
        assert_eq!(whole.len(), 1);
        assert_eq!(whole[0].lines, lines.as_slice());
        assert!(whole[0].export.is_none());

        let cut = chunks(&lines, NonZeroUsize::new(100)).unwrap();
        let sizes: Vec<usize> = cut.iter().map(|c| c.lines.len()).collect();
        let mut expected_sizes = vec![100usize; 10];
        expected_sizes.push(50);
        assert_eq!(sizes, expected_sizes);
        let rejoined: Vec<&[u8]> = cut.iter().flat_map(|c| c.lines.iter().copied()).collect();
        assert_eq!(rejoined, lines, "each line once, in order");
        for chunk in &cut {
            let export = chunk.export.as_deref().expect("an export per chunk");
            let request = ExportLogsServiceRequest::decode(export).unwrap();
            // (time, message) of each log record, against each line's.
            let mut decoded: Vec<(u64, String)> = request
                .resource_logs
                .iter()
                .flat_map(|r| &r.scope_logs)
                .flat_map(|s| &s.log_records)
                .map(|log| {
                    let body = log.body.as_ref().and_then(|b| b.value.as_ref());
                    let Some(any_value::Value::StringValue(message)) = body else {
                        panic!("a string body: {log:?}");
                    };
                    (log.time_unix_nano, message.clone())
                })
                .collect();
            let mut expected: Vec<(u64, String)> = chunk
                .lines
                .iter()
                .map(|line| {
                    let record: Record = serde_json::from_slice(line).unwrap();
                    let nanos = u64::try_from(record.timestamp.as_micros()).unwrap() * 1000;
                    (nanos, record.message)
                })
                .collect();
            decoded.sort();
            expected.sort();
            assert_eq!(decoded, expected);
        }
    }

    /// Decoding the exports first indexes the same documents, and the row
    /// says it decoded.
    #[test]
    fn decoding_otlp_first_indexes_the_same_records() {
        let dir = tempfile::tempdir().unwrap();
        let corpus = corpus_file(dir.path(), 1_050);
        let run = |name: &str, decode_otlp_batch| {
            let data_dir = dir.path().join(name);
            let result = dir.path().join(format!("{name}.json"));
            raw_index(&RawOptions {
                corpus: corpus.clone(),
                data_dir: data_dir.clone(),
                heap_bytes: 15_000_000,
                commit_interval: Some(Duration::from_millis(500)),
                result: Some(result.clone()),
                merged_result: None,
                decode_otlp_batch,
                load: String::new(),
            })
            .unwrap();
            let result: RunResult =
                serde_json::from_str(&fs::read_to_string(result).unwrap()).unwrap();
            let index = Index::open_in_dir(data_dir.join("index")).unwrap();
            let docs = index.reader().unwrap().searcher().num_docs();
            (result, docs)
        };
        let (plain, plain_docs) = run("plain", None);
        let (decoding, decoding_docs) = run("decoding", NonZeroUsize::new(100));
        assert_eq!(plain_docs, 1_050);
        assert_eq!(decoding_docs, plain_docs);
        assert_eq!(decoding.records, plain.records);
        assert_eq!(plain.case, format!("{RAW_COMMITTING} 500 ms"));
        assert_eq!(
            decoding.case,
            format!("{RAW_COMMITTING} 500 ms{DECODING_OTLP}")
        );
        assert!(
            decoding.note.contains("decoded with prost"),
            "{}",
            decoding.note
        );
        assert!(!plain.note.contains("prost"), "{}", plain.note);
    }
}
