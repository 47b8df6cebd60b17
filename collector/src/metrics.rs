//! The collector's own metrics, served as Prometheus text at `GET /metrics`,
//! and its readiness for `GET /readyz`.
//!
//! Counters and histograms are kept where the work happens (the ingest
//! handlers, the log and indexer threads); what is cheaper to read than to
//! keep (index documents and bytes, write-ahead log bytes) is read when
//! scraped.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use causeway_index::RecordReader;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// A label set of one label.
type Label = Vec<(&'static str, &'static str)>;

/// How records reached the collector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    /// causeway's own NDJSON batch (`POST /v1/ingest`).
    Causeway,
    OtlpTraces,
    OtlpLogs,
}

impl Protocol {
    fn label(self) -> Label {
        let name = match self {
            Protocol::Causeway => "causeway",
            Protocol::OtlpTraces => "otlp_traces",
            Protocol::OtlpLogs => "otlp_logs",
        };
        vec![("protocol", name)]
    }
}

/// The upper bounds of the ingest-to-searchable histogram, in seconds.
const SEARCHABLE_BUCKETS: [f64; 18] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 5.0, 10.0,
    30.0,
];

/// The collector's metrics; one per running collector, shared.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    records_in: Family<Label, Counter>,
    bytes_in: Family<Label, Counter>,
    malformed: Family<Label, Counter>,
    rejected: Family<Label, Counter>,
    duplicates: Counter,
    expired: Family<Label, Counter>,
    queue_batches: Gauge,
    queue_bytes: Gauge,
    wal_bytes: Gauge,
    wal_segments: Gauge,
    index_docs: Gauge,
    index_bytes: Gauge,
    commit_seconds: Histogram,
    searchable_lag_seconds: Histogram,
    ready: AtomicBool,
    index_dir: PathBuf,
}

impl Metrics {
    pub(crate) fn new(index_dir: &Path) -> Self {
        let mut metrics = Self {
            registry: Registry::with_prefix("causeway_collector"),
            records_in: Family::default(),
            bytes_in: Family::default(),
            malformed: Family::default(),
            rejected: Family::default(),
            duplicates: Counter::default(),
            expired: Family::default(),
            queue_batches: Gauge::default(),
            queue_bytes: Gauge::default(),
            wal_bytes: Gauge::default(),
            wal_segments: Gauge::default(),
            index_docs: Gauge::default(),
            index_bytes: Gauge::default(),
            // 1 ms to about 33 s.
            commit_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            // Finer around the 2 s goal than doubling buckets are.
            searchable_lag_seconds: Histogram::new(SEARCHABLE_BUCKETS),
            ready: AtomicBool::new(false),
            index_dir: index_dir.to_owned(),
        };
        let r = &mut metrics.registry;
        r.register(
            "records_received",
            "Records made durable, malformed ones included, by protocol",
            metrics.records_in.clone(),
        );
        r.register(
            "bytes_received",
            "Bytes of records made durable (as the write-ahead log holds them), by protocol",
            metrics.bytes_in.clone(),
        );
        r.register(
            "records_malformed",
            "Records kept as malformed (raw text and reason), by protocol",
            metrics.malformed.clone(),
        );
        r.register(
            "requests_rejected",
            "Ingest requests refused, by reason",
            metrics.rejected.clone(),
        );
        r.register(
            "records_duplicate",
            "Records dropped at indexing because their stream position or content hash was indexed already",
            metrics.duplicates.clone(),
        );
        r.register(
            "expired",
            "Documents deleted by retention, by kind (record, flow)",
            metrics.expired.clone(),
        );
        r.register(
            "queue_batches",
            "Batches waiting for the write-ahead log or the indexer",
            metrics.queue_batches.clone(),
        );
        r.register(
            "queue_bytes",
            "Bytes of the batches waiting for the write-ahead log or the indexer",
            metrics.queue_bytes.clone(),
        );
        r.register(
            "wal_bytes",
            "Bytes of the write-ahead log on disk",
            metrics.wal_bytes.clone(),
        );
        r.register(
            "wal_segments",
            "Segment files of the write-ahead log",
            metrics.wal_segments.clone(),
        );
        r.register(
            "index_documents",
            "Records in the index as of the last commit",
            metrics.index_docs.clone(),
        );
        r.register(
            "index_bytes",
            "Bytes of the index on disk",
            metrics.index_bytes.clone(),
        );
        r.register(
            "commit_duration_seconds",
            "Time an index commit took",
            metrics.commit_seconds.clone(),
        );
        r.register(
            "ingest_to_searchable_seconds",
            "From a batch's acknowledgement to the index commit that makes it searchable",
            metrics.searchable_lag_seconds.clone(),
        );
        metrics
    }

    pub(crate) fn received(
        &self,
        protocol: Protocol,
        records: usize,
        malformed: usize,
        bytes: usize,
    ) {
        let label = protocol.label();
        self.records_in.get_or_create(&label).inc_by(records as u64);
        self.bytes_in.get_or_create(&label).inc_by(bytes as u64);
        if malformed > 0 {
            self.malformed
                .get_or_create(&label)
                .inc_by(malformed as u64);
        }
    }

    /// An ingest request refused; `reason` is its error code.
    pub(crate) fn rejected(&self, reason: &'static str) {
        self.rejected.get_or_create(&vec![("reason", reason)]).inc();
    }

    pub(crate) fn duplicates(&self, records: usize) {
        self.duplicates.inc_by(records as u64);
    }

    /// Records and flow digests deleted by retention.
    pub(crate) fn expired(&self, records: u64, flows: u64) {
        self.expired
            .get_or_create(&vec![("kind", "record")])
            .inc_by(records);
        self.expired
            .get_or_create(&vec![("kind", "flow")])
            .inc_by(flows);
    }

    /// A batch entered (`+1`) or left (`-1`) the queues.
    pub(crate) fn queued(&self, batches: i64, bytes: i64) {
        self.queue_batches.inc_by(batches);
        self.queue_bytes.inc_by(bytes);
    }

    pub(crate) fn wal(&self, bytes: u64, segments: usize) {
        self.wal_bytes.set(i64::try_from(bytes).unwrap_or(i64::MAX));
        self.wal_segments
            .set(i64::try_from(segments).unwrap_or(i64::MAX));
    }

    pub(crate) fn committed(&self, took: Duration, lags: impl IntoIterator<Item = Duration>) {
        self.commit_seconds.observe(took.as_secs_f64());
        for lag in lags {
            self.searchable_lag_seconds.observe(lag.as_secs_f64());
        }
    }

    /// Ready once the write-ahead log is indexed past the last commit and
    /// while the index writer is usable.
    pub(crate) fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    pub(crate) fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// The text exposition, with what is read at scrape time brought up to
    /// date first. Blocking (it counts the index and walks its directory).
    pub(crate) fn render(&self, reader: Option<&RecordReader>) -> String {
        let counted = reader.and_then(|r| r.reload().and_then(|()| r.record_count()).ok());
        if let Some(count) = counted {
            self.index_docs
                .set(i64::try_from(count).unwrap_or(i64::MAX));
        }
        self.index_bytes
            .set(i64::try_from(dir_bytes(&self.index_dir)).unwrap_or(i64::MAX));
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// Bytes of the files directly in `dir` (tantivy keeps its index flat).
fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| e.metadata().ok())
                .filter(std::fs::Metadata::is_file)
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_names_every_metric_with_its_labels() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("seg"), [0u8; 10]).unwrap();
        let metrics = Metrics::new(dir.path());
        metrics.received(Protocol::OtlpLogs, 5, 1, 700);
        metrics.rejected("overloaded");
        metrics.committed(Duration::from_millis(20), [Duration::from_millis(300)]);
        let text = metrics.render(None);
        for line in [
            "causeway_collector_records_received_total{protocol=\"otlp_logs\"} 5",
            "causeway_collector_bytes_received_total{protocol=\"otlp_logs\"} 700",
            "causeway_collector_records_malformed_total{protocol=\"otlp_logs\"} 1",
            "causeway_collector_requests_rejected_total{reason=\"overloaded\"} 1",
            "causeway_collector_index_bytes 10",
            "causeway_collector_commit_duration_seconds_count 1",
            "causeway_collector_ingest_to_searchable_seconds_count 1",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
    }
}
