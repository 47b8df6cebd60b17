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
            malformed: 0
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
