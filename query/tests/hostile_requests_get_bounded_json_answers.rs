//! The reproductions of a hostile client against a real query daemon on
//! 127.0.0.1:0: deeply nested and overlong search queries, a 54-byte
//! request over large malformed records, bad parameters, unknown routes and
//! methods. Each gets a bounded JSON answer, and the daemon goes on serving.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

use std::net::SocketAddr;

use causeway_index::RecordIndex;
use causeway_model::{Record, Timestamp};
use causeway_query::{QueryConfig, run};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

struct Daemon {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), causeway_query::QueryError>>,
    _dir: tempfile::TempDir,
}

async fn start(config: impl FnOnce(&mut QueryConfig), records: &[Record]) -> Daemon {
    let dir = tempfile::tempdir().unwrap();
    let mut query = QueryConfig::new(dir.path());
    config(&mut query);
    if !records.is_empty() {
        let index = RecordIndex::open_or_create(&query.index_dir()).unwrap();
        let mut writer = index.writer(15_000_000).unwrap();
        for record in records {
            writer.add(record).unwrap();
        }
        writer.commit().unwrap();
    }
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(run(listener, query, async {
        let _ = stopped.await;
    }));
    Daemon {
        addr,
        stop,
        task,
        _dir: dir,
    }
}

impl Daemon {
    async fn get(&self, target: &str) -> (u16, String, serde_json::Value) {
        let response = reqwest::get(format!("http://{}{target}", self.addr))
            .await
            .unwrap();
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let body = response.bytes().await.unwrap();
        let json = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
        (status, content_type, json)
    }

    async fn stop(self) {
        self.stop.send(()).unwrap();
        self.task.await.unwrap().unwrap();
    }
}

fn assert_json_error(answer: &(u16, String, serde_json::Value), status: u16, code: &str) {
    let (got, content_type, body) = answer;
    assert_eq!(*got, status, "{body}");
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    assert_eq!(body["error"]["code"], code, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(!message.is_empty());
    assert!(!message.contains("/tmp"), "no server path in {message}");
}

fn malformed(i: i64, bytes: usize) -> Record {
    let mut record = Record::malformed(
        Timestamp::from_micros(1_700_000_000_000_000 + i),
        "agent@host",
        "x".repeat(bytes),
        "expected value at line 1 column 1",
    );
    record.message = format!("malformed record {i}");
    record
}

#[tokio::test]
async fn nested_and_overlong_search_queries_are_refused_and_the_daemon_lives() {
    let daemon = start(|_| {}, &[malformed(1, 10)]).await;
    // About 2,100 nested parentheses, URL-encoded: once enough to abort
    // the process on a worker's stack overflow.
    let parens = format!(
        "/api/v1/search?q={}a{}",
        "%28".repeat(1_050),
        "%29".repeat(1_050)
    );
    let answer = daemon.get(&parens).await;
    assert_json_error(&answer, 400, "bad_request");
    assert!(answer.2.to_string().contains("nests"), "{}", answer.2);

    let nots = format!("/api/v1/search?q={}a", "NOT+".repeat(10_000));
    assert_json_error(&daemon.get(&nots).await, 414, "uri_too_long");
    let nots = format!("/api/v1/search?q={}a", "NOT+".repeat(1_000));
    assert_json_error(&daemon.get(&nots).await, 400, "bad_request");

    let (status, _, body) = daemon.get("/healthz").await;
    assert_eq!(status, 200, "{body}");
    daemon.stop().await;
}

#[tokio::test]
async fn a_short_request_over_large_records_gets_a_response_cut_to_its_budget() {
    let records: Vec<_> = (0..40).map(|i| malformed(i, 16 * 1024)).collect();
    let budget = 100 * 1024;
    let daemon = start(|c| c.max_response_bytes = budget, &records).await;
    let response = reqwest::get(format!(
        "http://{}/api/v1/search?q=malformed:true&limit=1000",
        daemon.addr
    ))
    .await
    .unwrap();
    assert_eq!(response.status(), 200);
    let body = response.bytes().await.unwrap();
    assert!(
        body.len() < budget + 8 * 1024,
        "{} bytes for a budget of {budget}",
        body.len()
    );
    let hits: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(hits["total"], 40);
    assert_eq!(hits["truncated"], true);
    let returned = hits["hits"].as_array().unwrap().len();
    assert!((1..40).contains(&returned), "{returned} hits");
    daemon.stop().await;
}

#[tokio::test]
async fn bad_parameters_unknown_routes_and_methods_answer_json() {
    let daemon = start(|_| {}, &[malformed(1, 10)]).await;
    for (target, status, code) in [
        ("/api/v1/flows?limit=-1", 400, "bad_request"),
        ("/api/v1/flows?limit=abc", 400, "bad_request"),
        ("/api/v1/search?q=x&limit=1e9", 400, "bad_request"),
        ("/api/v1/flows/%FF%FE", 400, "bad_request"),
        ("/api/v1/traces/not-a-trace", 400, "bad_request"),
        ("/api/v1/search?q=message%3A%28", 400, "bad_request"),
        ("/nowhere", 404, "not_found"),
        ("/api/v1/flows/no-such-flow", 404, "not_found"),
    ] {
        assert_json_error(&daemon.get(target).await, status, code);
    }
    let response = reqwest::Client::new()
        .post(format!("http://{}/api/v1/flows", daemon.addr))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "method_not_allowed");
    daemon.stop().await;
}

#[tokio::test]
async fn before_the_index_exists_the_answer_is_503_without_the_data_path() {
    let daemon = start(|_| {}, &[]).await;
    let answer = daemon.get("/api/v1/flows").await;
    assert_json_error(&answer, 503, "index_not_ready");
    daemon.stop().await;
}
