//! The reproductions of a hostile client against a real collector on
//! 127.0.0.1:0: a small batch built to blow up once decoded, bodies past the
//! limit, unknown routes and methods. Each gets a bounded JSON answer, and
//! the collector goes on ingesting.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

use causeway_collector::{CollectorConfig, IngestReply, run};
use causeway_index::RecordIndex;
use causeway_model::wire::{self, MAX_SOURCE_LEN};
use causeway_model::{Record, Timestamp};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

struct Daemon {
    base: String,
    config: CollectorConfig,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), causeway_collector::CollectorError>>,
    _dir: tempfile::TempDir,
}

async fn start(max_body_bytes: usize) -> Daemon {
    let dir = tempfile::tempdir().unwrap();
    let mut config = CollectorConfig::new(dir.path());
    config.max_body_bytes = max_body_bytes;
    config.commit_interval_ms = 20;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(run(listener, config.clone(), async {
        let _ = stopped.await;
    }));
    Daemon {
        base,
        config,
        stop,
        task,
        _dir: dir,
    }
}

impl Daemon {
    async fn post(&self, path: &str, body: String) -> (u16, serde_json::Value) {
        let response = reqwest::Client::new()
            .post(format!("{}{path}", self.base))
            .header("content-type", wire::CONTENT_TYPE)
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let is_json = response
            .headers()
            .get("content-type")
            .is_some_and(|v| v.to_str().unwrap().starts_with("application/json"));
        assert!(is_json, "every answer is JSON ({status})");
        (status, response.json().await.unwrap())
    }

    /// Stops the collector; the data directory lives as long as the result.
    async fn stop(self) -> (CollectorConfig, tempfile::TempDir) {
        self.stop.send(()).unwrap();
        self.task.await.unwrap().unwrap();
        (self.config, self._dir)
    }
}

#[tokio::test]
async fn a_batch_with_a_huge_source_and_bad_lines_is_stored_at_its_own_size() {
    let daemon = start(16 << 20).await;
    let source = "s".repeat(1 << 20);
    let mut body = format!("{{\"causeway_batch\":1,\"source\":\"{source}\",\"count\":1000}}\n");
    for _ in 0..1_000 {
        body.push_str("x\n");
    }
    let (status, reply) = daemon.post("/v1/ingest", body).await;
    assert_eq!(status, 200, "{reply}");
    let reply: IngestReply = serde_json::from_value(reply).unwrap();
    assert_eq!((reply.accepted, reply.malformed), (1_000, 1_000));

    let (config, _dir) = daemon.stop().await;
    let reader = RecordIndex::open_existing(&config.index_dir())
        .unwrap()
        .reader()
        .unwrap();
    let (total, read) = reader.search("malformed:true", 1_000).unwrap();
    assert_eq!(total, 1_000);
    for record in &read.records {
        assert!(record.service.len() <= MAX_SOURCE_LEN + 32);
        assert_eq!(record.malformed.as_ref().unwrap().raw, "x");
    }
}

#[tokio::test]
async fn bodies_past_the_limit_unknown_routes_and_methods_answer_json() {
    let daemon = start(64 * 1024).await;
    let records: Vec<_> = (0..1_000)
        .map(|i| Record::new(Timestamp::from_micros(i), "order", "y".repeat(100)))
        .collect();
    let (status, body) = daemon
        .post("/v1/ingest", wire::encode("test", &records))
        .await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"]["code"], "payload_too_large");

    // Two bytes a line, eight million lines: once 7 GiB decoded.
    let daemon_16m = start(16 << 20).await;
    let mut many = "{\"causeway_batch\":1,\"source\":\"a\",\"count\":8000000}\n".to_owned();
    many.push_str(&"x\n".repeat(8_000_000));
    let (status, body) = daemon_16m.post("/v1/ingest", many).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"]["code"], "batch_too_large");
    daemon_16m.stop().await;

    let (status, body) = daemon.post("/v1/nowhere", String::new()).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    let (status, body) = daemon.post("/healthz", String::new()).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (405, Some("method_not_allowed"))
    );
    let (status, body) = daemon
        .post("/v1/ingest", "{\"causeway_batch\":9}\n".to_owned())
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("bad_batch"))
    );

    // Still ingesting after all that.
    let (status, body) = daemon
        .post("/v1/ingest", wire::encode("test", &records[..3]))
        .await;
    assert_eq!(status, 200, "{body}");
    daemon.stop().await;
}
