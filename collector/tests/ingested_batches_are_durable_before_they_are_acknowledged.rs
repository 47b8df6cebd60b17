//! The collector acknowledges a batch once it is in the write-ahead log,
//! indexes it right after, keeps bad lines, and refuses what it cannot
//! read as a whole.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

use axum::body::Body;
use axum::http::{Request, StatusCode};
use causeway_collector::{CollectorConfig, Indexer, IngestReply, router};
use causeway_index::RecordIndex;
use causeway_model::{CorrelationId, Record, Stage, Timestamp, wire};
use http_body_util::BodyExt;
use tower::ServiceExt;

fn record(n: i64) -> Record {
    let mut r = Record::new(
        Timestamp::from_micros(1_000 + n),
        "order",
        format!("order {n} placed"),
    );
    r.stage = Stage::Published;
    r.correlation_id = Some(CorrelationId::new(format!("order-{n}")).unwrap());
    r
}

async fn post(
    app: axum::Router,
    body: impl Into<Body>,
) -> (StatusCode, serde_json::Value, Option<String>) {
    let response = app
        .oneshot(
            Request::post("/v1/ingest")
                .header("content-type", wire::CONTENT_TYPE)
                .body(body.into())
                .unwrap(),
        )
        .await
        .unwrap();
    let status = response.status();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    (status, json, retry_after)
}

/// What `read` returns once it is not empty, trying for 10 s.
async fn eventually<T: Default + PartialEq>(mut read: impl FnMut() -> T) -> T {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let value = read();
        if value != T::default() || std::time::Instant::now() > deadline {
            return value;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn an_acknowledged_batch_is_searchable_within_moments() {
    let dir = tempfile::tempdir().unwrap();
    let config = CollectorConfig::new(dir.path());
    let (indexer, thread) = Indexer::start(&config).unwrap();
    let app = router(indexer, &config);

    let body = wire::encode("test", &[record(1), record(2)]);
    let (status, json, _) = post(app.clone(), body).await;
    assert_eq!(status, StatusCode::OK, "{json}");
    let reply: IngestReply = serde_json::from_value(json).unwrap();
    assert_eq!(
        reply,
        IngestReply {
            accepted: 2,
            malformed: 0,
            malformed_lines: Vec::new(),
        }
    );

    // Indexed within a commit interval or so of the acknowledgement.
    let reader = RecordIndex::open_existing(&config.index_dir())
        .unwrap()
        .reader()
        .unwrap();
    let found = eventually(|| reader.flow_records("order-2", 10).unwrap().records).await;
    assert_eq!(found, vec![record(2)]);
    assert_eq!(reader.record_count().unwrap(), 2);

    drop(app);
    thread.join();
}

#[tokio::test]
async fn a_bad_line_is_kept_and_a_bad_batch_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = CollectorConfig::new(dir.path());
    let (indexer, thread) = Indexer::start(&config).unwrap();
    let app = router(indexer, &config);

    let body = format!(
        "{{\"causeway_batch\":1,\"source\":\"agent@test\",\"count\":2}}\n{}\n{{\"timestamp\":\"soon\"}}\n",
        record(1).to_json_line()
    );
    let (status, json, _) = post(app.clone(), body).await;
    assert_eq!(status, StatusCode::OK, "{json}");
    assert_eq!(json["malformed"], 1);
    assert_eq!(json["malformed_lines"], serde_json::json!([3]));
    let reader = RecordIndex::open_existing(&config.index_dir())
        .unwrap()
        .reader()
        .unwrap();
    eventually(|| reader.search("malformed:true", 10).unwrap().0).await;
    let (total, hits) = reader.search("malformed:true", 10).unwrap();
    assert_eq!(total, 1);
    assert_eq!(
        hits.records[0].malformed.as_ref().unwrap().raw,
        "{\"timestamp\":\"soon\"}"
    );

    let (status, json, _) = post(
        app.clone(),
        "{\"causeway_batch\":7,\"source\":\"x\",\"count\":0}\n",
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(json["error"]["code"], "bad_batch");
    assert!(
        json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("version 7")
    );

    drop(app);
    thread.join();
}

#[tokio::test]
async fn an_oversized_body_is_refused_with_413() {
    let dir = tempfile::tempdir().unwrap();
    let config = CollectorConfig {
        max_body_bytes: 1024,
        ..CollectorConfig::new(dir.path())
    };
    let (indexer, thread) = Indexer::start(&config).unwrap();
    let app = router(indexer, &config);
    let records: Vec<Record> = (0..50).map(record).collect();
    let (status, _, _) = post(app.clone(), wire::encode("test", &records)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    drop(app);
    thread.join();
}

async fn get_text(app: axum::Router, uri: &str) -> (StatusCode, String) {
    let response = app
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(bytes.to_vec()).unwrap())
}

#[tokio::test]
async fn readyz_waits_for_the_replay_and_metrics_count_what_arrived() {
    let dir = tempfile::tempdir().unwrap();
    let config = CollectorConfig::new(dir.path());
    let (indexer, thread) = Indexer::start(&config).unwrap();
    let app = router(indexer, &config);
    let (status, _) = poll(&app, "/readyz", |status, _| status == StatusCode::OK).await;
    assert_eq!(status, StatusCode::OK, "never ready");

    let body = format!(
        "{{\"causeway_batch\":1,\"source\":\"agent@test\",\"count\":3}}\n{}\n{}\nnot json\n",
        record(1).to_json_line(),
        record(2).to_json_line()
    );
    let (status, json, _) = post(app.clone(), body).await;
    assert_eq!(status, StatusCode::OK, "{json}");
    let (status, _, _) = post(
        app.clone(),
        "{\"causeway_batch\":7,\"source\":\"x\",\"count\":0}\n",
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // The commit that makes the batch searchable is observed too.
    let (_, text) = poll(&app, "/metrics", |_, text| {
        text.contains("causeway_collector_ingest_to_searchable_seconds_count 1")
    })
    .await;
    for line in [
        "causeway_collector_records_received_total{protocol=\"causeway\"} 3",
        "causeway_collector_records_malformed_total{protocol=\"causeway\"} 1",
        "causeway_collector_requests_rejected_total{reason=\"bad_batch\"} 1",
        "causeway_collector_queue_batches 0",
        "causeway_collector_wal_segments 1",
        "causeway_collector_index_documents 3",
    ] {
        assert!(text.contains(line), "{line} missing from\n{text}");
    }
    drop(app);
    thread.join();
}

/// `GET uri` until `done` holds for its answer, for 10 s at most; the last
/// answer.
async fn poll(
    app: &axum::Router,
    uri: &str,
    done: impl Fn(StatusCode, &str) -> bool,
) -> (StatusCode, String) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (status, text) = get_text(app.clone(), uri).await;
        if done(status, &text) || std::time::Instant::now() > deadline {
            return (status, text);
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn past_its_byte_budget_the_queue_answers_429_and_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let config = CollectorConfig {
        // Any batch alone gets in; a second one while the first waits does not.
        max_queue_bytes: 1,
        ..CollectorConfig::new(dir.path())
    };
    let (indexer, thread) = Indexer::start(&config).unwrap();
    let app = router(indexer, &config);
    let mut acked = Vec::new();
    let mut refused = None;
    for round in 0..20 {
        let posts: Vec<_> = (0..32)
            .map(|i| {
                let n = round * 32 + i;
                let records: Vec<Record> = (0..200).map(|j| record(n * 1_000 + j)).collect();
                let app = app.clone();
                tokio::spawn(async move { (n, post(app, wire::encode("test", &records)).await) })
            })
            .collect();
        for post in posts {
            let (n, (status, json, retry_after)) = post.await.unwrap();
            match status {
                StatusCode::OK => acked.push(n),
                StatusCode::TOO_MANY_REQUESTS => refused = Some((json, retry_after)),
                other => panic!("{other}: {json}"),
            }
        }
        if refused.is_some() {
            break;
        }
    }
    let (json, retry_after) = refused.expect("32 concurrent batches never overran a 1-byte budget");
    assert_eq!(json["error"]["code"], "overloaded");
    assert_eq!(retry_after.as_deref(), Some("1"));
    let reader = RecordIndex::open_existing(&config.index_dir())
        .unwrap()
        .reader()
        .unwrap();
    let want = (acked.len() * 200) as u64;
    let got = eventually(|| {
        reader.reload().unwrap();
        let count = reader.record_count().unwrap();
        if count >= want { count } else { 0 }
    })
    .await;
    assert_eq!(got, want);
    drop(app);
    thread.join();
}
