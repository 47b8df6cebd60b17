//! Collector settings, the `[collector]` section of `causeway.toml`. Field
//! docs are the user docs. This module only describes settings; it must not
//! open files or sockets (the binary binds the addresses and hands `run` the
//! listener).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use causeway_model::wire;
use causeway_server::{Access, HttpLimits, TlsFiles, Token};
use serde::{Deserialize, Serialize};

/// How the collector stores and accepts records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CollectorConfig {
    /// Where the index lives (`<data_dir>/index`).
    pub data_dir: PathBuf,
    /// Where the ingest API (`POST /v1/ingest`) and OTLP/HTTP
    /// (`POST /v1/traces`, `POST /v1/logs`) listen. An address wider than
    /// loopback needs `tokens`; port 0 picks a free port.
    pub http_addr: SocketAddr,
    /// Where OTLP/gRPC ingest (`TraceService`, `LogsService`) listens; an
    /// address wider than loopback needs `tokens`; port 0 picks a free port.
    pub grpc_addr: SocketAddr,
    /// Bearer tokens, any of which lets a client in (`Authorization: Bearer
    /// <token>`, gRPC metadata `authorization` alike) on both listeners;
    /// several so that one can be rotated out. Empty: no token is asked
    /// for, and only loopback addresses may be bound. `/healthz` is always
    /// open.
    pub tokens: Vec<Token>,
    /// A PEM certificate chain: with `tls_key`, both listeners speak TLS.
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Longest time an acknowledged-pending batch waits for the commit that
    /// makes it durable, in milliseconds. Commits happen at least this often
    /// while records arrive.
    pub commit_interval_ms: u64,
    /// Largest accepted request body, in bytes; larger ones get 413.
    pub max_body_bytes: usize,
    /// Most records in one ingest batch; a larger batch is answered 413
    /// before it is decoded (a record costs a few hundred bytes in memory
    /// however short its line, so the body limit alone does not bound it).
    pub max_batch_records: usize,
    /// Batches waiting for the write-ahead log and the indexer; when full,
    /// ingest answers 429 with `Retry-After` instead of buffering without
    /// bound.
    pub queue_capacity: usize,
    /// Memory the requests being decoded and the batches waiting for the
    /// write-ahead log and the indexer may hold, counted as 4 bytes per
    /// byte of (inflated) request body and taken before the body is
    /// decoded; past it, ingest answers 429 with `Retry-After` (OTLP/gRPC:
    /// `RESOURCE_EXHAUSTED` with a retry delay). A batch is let in alone
    /// whatever its size, so the bound is this plus one batch.
    pub max_queue_bytes: usize,
    /// tantivy's indexing memory budget, in bytes, shared by the indexing
    /// threads (at least 15 MB each).
    pub writer_heap_bytes: usize,
    /// Threads indexing records (1 to 8). Each writes a segment of its own
    /// at every commit, so one leaves the fewest segments to merge; more
    /// index faster where one thread cannot keep up with ingest.
    pub index_threads: usize,
    /// How long records are kept, by their own time (`"7d"`, `"36h"`):
    /// older records, and the flows whose last record is older, are
    /// deleted, and the index's day partitions they leave empty are
    /// dropped whole. Unset: kept for ever.
    pub retention: Option<Retention>,
    /// What one client may hold of the HTTP listener.
    pub http: HttpLimits,
}

/// How long records are kept: a duration written as text (`"7d"`,
/// `"36h"`, `"90m"`; see humantime), of at least a minute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention(Duration);

impl Retention {
    /// The shortest retention: anything shorter is surely a mistake in
    /// units, and would delete records as they arrive.
    pub const MIN: Duration = Duration::from_secs(60);

    pub fn new(keep: Duration) -> Result<Self, String> {
        if keep < Self::MIN {
            return Err(format!(
                "retention {} is shorter than the least, {}",
                humantime::format_duration(keep),
                humantime::format_duration(Self::MIN)
            ));
        }
        Ok(Self(keep))
    }

    pub fn duration(&self) -> Duration {
        self.0
    }
}

impl std::str::FromStr for Retention {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let keep = humantime::parse_duration(text.trim())
            .map_err(|e| format!("retention {text:?} is not a duration such as \"7d\": {e}"))?;
        Self::new(keep)
    }
}

impl std::fmt::Display for Retention {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        humantime::format_duration(self.0).fmt(f)
    }
}

impl Serialize for Retention {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Retention {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl Default for CollectorConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("causeway-data"),
            http_addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 4318)),
            grpc_addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 4317)),
            commit_interval_ms: 500,
            max_body_bytes: 16 * 1024 * 1024,
            max_batch_records: wire::DEFAULT_MAX_BATCH_RECORDS,
            queue_capacity: 64,
            max_queue_bytes: 256 * 1024 * 1024,
            writer_heap_bytes: 64 * 1024 * 1024,
            index_threads: 1,
            tokens: Vec::new(),
            tls_cert: None,
            tls_key: None,
            retention: None,
            http: HttpLimits::default(),
        }
    }
}

impl CollectorConfig {
    /// Defaults with the given data directory.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            ..Self::default()
        }
    }

    /// Who may use the listeners: any of `tokens`.
    pub fn access(&self) -> Access {
        Access::new(&self.tokens)
    }

    /// The listeners' certificate and key, when both are set (the binary
    /// checks that one is not set without the other).
    pub fn tls(&self) -> Option<TlsFiles> {
        TlsFiles::from_settings(
            self.tls_cert.as_deref(),
            self.tls_key.as_deref(),
            "collector",
        )
        .ok()
        .flatten()
    }

    /// The index directory under the data directory.
    pub fn index_dir(&self) -> PathBuf {
        self.data_dir.join("index")
    }

    /// The write-ahead log's directory under the data directory.
    pub fn wal_dir(&self) -> PathBuf {
        self.data_dir.join("wal")
    }

    /// How large a write-ahead log segment grows before the next one
    /// starts; a segment is dropped whole once the index covers it.
    pub(crate) fn wal_segment_bytes(&self) -> u64 {
        64 * 1024 * 1024
    }

    /// How often the indexer deletes what retention let go of.
    pub(crate) fn retention_check_interval(&self) -> Duration {
        Duration::from_secs(60)
    }

    /// Whether the index writer can be made with these settings: the
    /// indexing threads, and the memory they share.
    pub fn check_indexing(&self) -> Result<(), causeway_index::IndexError> {
        causeway_index::check_writer_threads(self.index_threads, self.writer_heap_bytes)
    }

    pub(crate) fn commit_interval(&self) -> Duration {
        Duration::from_millis(self.commit_interval_ms.clamp(1, 1_000))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_reads_durations_as_text_and_refuses_nonsense() {
        let config: CollectorConfig = serde_json::from_str(r#"{"retention":"7d"}"#).unwrap();
        assert_eq!(
            config.retention.map(|r| r.duration()),
            Some(Duration::from_secs(7 * 86_400))
        );
        assert_eq!(
            "36h".parse::<Retention>().unwrap().duration(),
            Duration::from_secs(36 * 3_600)
        );
        let written = serde_json::to_string(&"7d".parse::<Retention>().unwrap()).unwrap();
        assert_eq!(written, "\"7days\"");
        for bad in ["7", "seven days", "30s", ""] {
            let error = bad.parse::<Retention>().unwrap_err();
            assert!(error.contains("retention"), "{bad:?}: {error}");
        }
        assert!(serde_json::from_str::<CollectorConfig>(r#"{"retention":"1x"}"#).is_err());
    }
}
