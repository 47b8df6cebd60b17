//! A stand-in for the collector's HTTP ingest endpoint, and helpers to run
//! the agent in-process against it.
#![allow(dead_code, reason = "each test file uses a different part")]
#![allow(
    clippy::unwrap_used,
    reason = "test helpers, like tests, report a failure by panicking"
)]

use std::future::Future;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use causeway_agent::{AgentConfig, AgentError};
use causeway_model::wire::{self, BatchHeader};
use causeway_model::{Record, Timestamp};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

#[derive(Debug, Default)]
struct Inner {
    /// Accepted batch bodies, in arrival order.
    bodies: Vec<String>,
    /// Content types of every request.
    content_types: Vec<String>,
    /// How many of the next requests to refuse, and with what.
    fail_remaining: usize,
    fail_status: u16,
    /// How many requests were refused so far.
    refused: usize,
    /// `Retry-After` sent with a refusal (`0` when unset).
    retry_after: Option<String>,
    /// Batches of more records than this are refused with 413.
    max_records: Option<usize>,
    /// A batch holding this text is refused with 413.
    too_large_marker: Option<String>,
    /// A batch holding this text is refused with 400.
    unreadable_marker: Option<String>,
    /// A batch holding this text is refused with 503 (busy).
    busy_marker: Option<String>,
    /// Gzipped bodies are refused with 400, as a collector that does not
    /// know gzip would.
    refuse_gzip: bool,
    /// `Content-Encoding` of every request (empty when none).
    encodings: Vec<String>,
}

/// An HTTP peer answering `POST /v1/ingest` like the collector, recording
/// the batches it accepts.
#[derive(Debug, Clone)]
pub struct Collector {
    pub url: String,
    inner: Arc<Mutex<Inner>>,
}

async fn ingest(
    State(inner): State<Arc<Mutex<Inner>>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let mut inner = inner.lock().unwrap();
    let header_text = |name| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    inner.content_types.push(header_text(header::CONTENT_TYPE));
    let encoding = header_text(header::CONTENT_ENCODING);
    inner.encodings.push(encoding.clone());
    if inner.fail_remaining > 0 {
        inner.fail_remaining -= 1;
        inner.refused += 1;
        let status = StatusCode::from_u16(inner.fail_status).unwrap();
        let retry_after = inner.retry_after.clone().unwrap_or_else(|| "0".to_owned());
        return (status, [(header::RETRY_AFTER, retry_after)], "not now").into_response();
    }
    let body = if encoding == "gzip" {
        if inner.refuse_gzip {
            inner.refused += 1;
            return (StatusCode::BAD_REQUEST, "bad header line").into_response();
        }
        let mut text = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&body[..]), &mut text)
            .unwrap();
        text
    } else {
        String::from_utf8(body.to_vec()).unwrap()
    };
    if inner
        .busy_marker
        .as_ref()
        .is_some_and(|m| body.contains(m.as_str()))
    {
        inner.refused += 1;
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "0")],
            "busy",
        )
            .into_response();
    }
    if inner
        .unreadable_marker
        .as_ref()
        .is_some_and(|m| body.contains(m.as_str()))
    {
        inner.refused += 1;
        return (StatusCode::BAD_REQUEST, "cannot read this batch").into_response();
    }
    let too_many = inner
        .max_records
        .is_some_and(|max| body.lines().count() - 1 > max);
    if too_many
        || inner
            .too_large_marker
            .as_ref()
            .is_some_and(|m| body.contains(m.as_str()))
    {
        inner.refused += 1;
        return (StatusCode::PAYLOAD_TOO_LARGE, "batch too large").into_response();
    }
    inner.bodies.push(body);
    StatusCode::OK.into_response()
}

impl Collector {
    pub async fn start() -> Self {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let app = Router::new()
            .route("/v1/ingest", post(ingest))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { url, inner }
    }

    /// Answers the next `count` requests with `status` and `Retry-After: 0`.
    pub fn refuse_next(&self, count: usize, status: u16) {
        let mut inner = self.inner.lock().unwrap();
        inner.fail_remaining = count;
        inner.fail_status = status;
    }

    /// Sends `value` as `Retry-After` with refusals.
    pub fn retry_after(&self, value: &str) {
        self.inner.lock().unwrap().retry_after = Some(value.to_owned());
    }

    /// Refuses batches of more than `max` records with 413.
    pub fn max_records(&self, max: usize) {
        self.inner.lock().unwrap().max_records = Some(max);
    }

    /// Refuses a batch holding `marker` with 413.
    pub fn too_large_when(&self, marker: &str) {
        self.inner.lock().unwrap().too_large_marker = Some(marker.to_owned());
    }

    /// Refuses a batch holding `marker` with 400.
    pub fn unreadable_when(&self, marker: &str) {
        self.inner.lock().unwrap().unreadable_marker = Some(marker.to_owned());
    }

    /// Refuses a batch holding `marker` with 503, until `None`.
    pub fn busy_when(&self, marker: Option<&str>) {
        self.inner.lock().unwrap().busy_marker = marker.map(str::to_owned);
    }

    /// Refuses gzipped bodies with 400.
    pub fn refuse_gzip(&self) {
        self.inner.lock().unwrap().refuse_gzip = true;
    }

    /// The `Content-Encoding` of every request so far.
    pub fn encodings(&self) -> Vec<String> {
        self.inner.lock().unwrap().encodings.clone()
    }

    /// How many requests were refused so far.
    pub fn refused(&self) -> usize {
        self.inner.lock().unwrap().refused
    }

    /// Every accepted batch, decoded.
    pub fn batches(&self) -> Vec<(BatchHeader, Vec<Record>)> {
        let bodies = self.inner.lock().unwrap().bodies.clone();
        bodies
            .iter()
            .map(|body| wire::decode(body, Timestamp::now()).unwrap())
            .collect()
    }

    /// Every accepted record, in arrival order.
    pub fn records(&self) -> Vec<Record> {
        self.batches().into_iter().flat_map(|(_, r)| r).collect()
    }

    /// The messages of every accepted record, in arrival order.
    pub fn messages(&self) -> Vec<String> {
        self.records().into_iter().map(|r| r.message).collect()
    }

    pub fn content_types(&self) -> Vec<String> {
        self.inner.lock().unwrap().content_types.clone()
    }
}

/// The agent's settings for a test: fast polling, everything else default.
pub fn config(collector: &Collector, checkpoint: &Path, paths: &[&Path]) -> AgentConfig {
    let mut config = AgentConfig::new(collector.url.clone(), checkpoint);
    config.paths = paths.iter().map(|p| p.to_path_buf()).collect();
    config.poll_interval_ms = 10;
    config.status_addr = "127.0.0.1:0".parse().unwrap();
    config
}

/// An agent running in-process.
#[derive(Debug)]
pub struct Agent {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), AgentError>>,
}

impl Agent {
    pub fn start(config: AgentConfig) -> Self {
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown = async move {
            let _ = stopped.await;
        };
        let task = tokio::spawn(causeway_agent::run(config, shutdown));
        Self { stop, task }
    }

    /// Asks the agent to stop and checks that it stopped cleanly.
    pub async fn stop(self) {
        self.stop.send(()).unwrap();
        let result = tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("the agent did not stop within 10 s")
            .unwrap();
        result.unwrap();
    }
}

/// Waits (at most 10 s) until `done` holds, checking every few ms.
pub async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let waiting = async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    if tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .is_err()
    {
        panic!("timed out after 10 s waiting until {what}");
    }
}

/// Runs `future`, failing the test if it takes more than 10 s.
pub async fn within_10s<T>(future: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), future)
        .await
        .expect("timed out after 10 s")
}

/// Appends `text` to `path`, creating it if needed.
pub fn append(path: &Path, text: &str) {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    file.write_all(text.as_bytes()).unwrap();
}

/// A JSON line in our own shape with just a message.
pub fn line(message: &str) -> String {
    format!("{{\"message\":\"{message}\"}}\n")
}

/// The acknowledged offset the checkpoint holds for `file` (matched by
/// inode): that of the stream it is read as, if the checkpoint exists and
/// knows the file and its stream.
pub fn checkpoint_offset(checkpoint: &Path, file: &Path) -> Option<u64> {
    let (json, name) = checkpoint_stream(checkpoint, file)?;
    json["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|stream| stream["name"] == name.as_str())
        .map(|stream| stream["offset"].as_u64().unwrap())
}

/// The checkpoint and the name of the stream `file` (matched by inode) is
/// read as.
pub fn checkpoint_stream(checkpoint: &Path, file: &Path) -> Option<(serde_json::Value, String)> {
    let text = std::fs::read_to_string(checkpoint).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(json["version"], 2);
    let inode = std::fs::metadata(file).unwrap().ino();
    let name = json["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|entry| entry["inode"] == inode)?["stream"]
        .as_str()?
        .to_owned();
    Some((json, name))
}

pub fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().len()
}

/// A temporary directory holding the logs and the checkpoint.
pub struct Workdir {
    pub dir: tempfile::TempDir,
}

impl Workdir {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn checkpoint(&self) -> PathBuf {
        self.path("state/checkpoint.json")
    }
}
