//! What the agent has done and where it stands: Prometheus counters
//! (`GET /metrics`) and the status of each file (`GET /status`), kept where
//! the work happens (the tailer, the shipper) and read when asked.
//!
//! One `Stats` per running agent, shared (`Arc`); no process-wide state,
//! so two agents in one process (tests) count apart.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use causeway_model::strip_control;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::Serialize;

/// The longest error kept for the status.
const MAX_ERROR_LEN: usize = 512;

/// The status of one followed file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FileStatus {
    pub path: String,
    /// The stream it is read as (`None` until its first line is complete).
    pub stream: Option<String>,
    /// Its stream's fingerprint (FNV-1a of its first line, hex).
    pub fingerprint: Option<String>,
    /// Acknowledged up to here.
    pub position: u64,
    /// Read up to here: past `position`, into batches in flight or read
    /// ahead.
    pub read: u64,
    /// The file's length.
    pub len: u64,
    /// Bytes written and not yet acknowledged.
    pub lag_bytes: u64,
    /// Seconds since the file was last written, when something of it is
    /// not yet acknowledged; 0 when caught up.
    pub lag_seconds: u64,
    /// Records of it the collector acknowledged since start.
    pub records_shipped: u64,
    /// Sends of batches holding its records tried again since start.
    pub retries: u64,
    /// A copy read as its stream (copytruncate's `.1`).
    pub copy: bool,
    /// Read to its end before it is let go (rotated away or deleted).
    pub draining: bool,
    /// The last problem reading it, if it is not resolved.
    pub last_error: Option<String>,
}

/// The agent's counters and state.
#[derive(Debug)]
pub(crate) struct Stats {
    registry: Registry,
    lines_read: Counter,
    records_shipped: Counter,
    bytes_shipped: Counter,
    retries: Counter,
    dead_lettered: Counter,
    truncated_bytes: Counter,
    in_flight: Gauge,
    away: AtomicBool,
    last_error: Mutex<Option<String>>,
    files: Mutex<Vec<FileStatus>>,
}

impl Default for Stats {
    fn default() -> Self {
        Self::new()
    }
}

impl Stats {
    pub fn new() -> Self {
        let mut stats = Self {
            registry: Registry::with_prefix("causeway_agent"),
            lines_read: Counter::default(),
            records_shipped: Counter::default(),
            bytes_shipped: Counter::default(),
            retries: Counter::default(),
            dead_lettered: Counter::default(),
            truncated_bytes: Counter::default(),
            in_flight: Gauge::default(),
            away: AtomicBool::new(false),
            last_error: Mutex::new(None),
            files: Mutex::new(Vec::new()),
        };
        let r = &mut stats.registry;
        r.register(
            "lines_read",
            "Lines read from log files",
            stats.lines_read.clone(),
        );
        r.register(
            "records_shipped",
            "Records the collector acknowledged",
            stats.records_shipped.clone(),
        );
        r.register(
            "shipped_bytes",
            "Bytes of acknowledged batches, uncompressed",
            stats.bytes_shipped.clone(),
        );
        r.register(
            "retries",
            "Batch sends tried again after a failure",
            stats.retries.clone(),
        );
        r.register(
            "dead_lettered",
            "Records the collector refused for good, kept in the dead-letter file",
            stats.dead_lettered.clone(),
        );
        r.register(
            "truncation_lost_bytes",
            "Bytes a truncation took before the agent read them",
            stats.truncated_bytes.clone(),
        );
        r.register(
            "batches_in_flight",
            "Batches sent and not yet acknowledged",
            stats.in_flight.clone(),
        );
        stats
    }

    pub fn lines_read(&self, n: u64) {
        self.lines_read.inc_by(n);
    }

    pub fn shipped(&self, records: u64, bytes: u64) {
        self.records_shipped.inc_by(records);
        self.bytes_shipped.inc_by(bytes);
    }

    pub fn retried(&self) {
        self.retries.inc();
    }

    /// Retries since start, to tell how many one batch took.
    pub fn retries(&self) -> u64 {
        self.retries.get()
    }

    pub fn dead_lettered(&self, n: u64) {
        self.dead_lettered.inc_by(n);
    }

    pub fn truncation_lost(&self, bytes: u64) {
        self.truncated_bytes.inc_by(bytes);
    }

    pub fn in_flight(&self, batches: i64) {
        self.in_flight.set(batches);
    }

    /// The collector could not be reached or is failing.
    pub fn collector_away(&self, error: String) {
        self.away.store(true, Ordering::Relaxed);
        self.set_error(error);
    }

    /// A batch went through.
    pub fn collector_back(&self) {
        self.away.store(false, Ordering::Relaxed);
    }

    pub fn set_error(&self, error: String) {
        let error = strip_control(&error);
        let error = causeway_model::char_prefix(&error, MAX_ERROR_LEN).to_owned();
        if let Ok(mut last) = self.last_error.lock() {
            *last = Some(error);
        }
    }

    pub fn set_files(&self, files: Vec<FileStatus>) {
        if let Ok(mut kept) = self.files.lock() {
            *kept = files;
        }
    }

    /// Whether the file at `path` is followed and acknowledged up to
    /// `len` (an empty file: nothing to read), with nothing rotated away
    /// from there still being read.
    pub fn caught_up(&self, path: &std::path::Path, len: u64) -> bool {
        let path = path.to_string_lossy();
        self.files.lock().is_ok_and(|files| {
            let mut at = files.iter().filter(|f| f.path == path);
            at.clone().all(|f| !f.draining)
                && (len == 0 || at.any(|f| f.stream.is_some() && f.position >= len))
        })
    }

    /// The Prometheus text exposition of every counter.
    pub fn render_metrics(&self) -> String {
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }

    /// The `GET /status` document.
    pub fn status(&self) -> serde_json::Value {
        let files = self.files.lock().map(|f| f.clone()).unwrap_or_default();
        let last_error = self.last_error.lock().ok().and_then(|e| e.clone());
        serde_json::json!({
            "collector_away": self.away.load(Ordering::Relaxed),
            "holding_back": self.away.load(Ordering::Relaxed),
            "last_error": last_error,
            "lines_read": self.lines_read.get(),
            "records_shipped": self.records_shipped.get(),
            "shipped_bytes": self.bytes_shipped.get(),
            "retries": self.retries.get(),
            "dead_lettered": self.dead_lettered.get(),
            "truncation_lost_bytes": self.truncated_bytes.get(),
            "batches_in_flight": self.in_flight.get(),
            "files": files,
        })
    }
}
