//! `retention` deletes the records older than it, and the flows whose last
//! record is, when the collector runs: the day partitions it empties are
//! gone and the rest stays searchable.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use causeway_collector::{CollectorConfig, Indexer, router};
use causeway_index::RecordIndex;
use causeway_model::{CorrelationId, Record, Timestamp, wire};
use http_body_util::BodyExt;
use tower::ServiceExt;

const DAY_US: i64 = 86_400_000_000;
const PER_BATCH: i64 = 5;

/// `PER_BATCH` records of one flow, `days_ago` days before now.
fn batch(days_ago: i64) -> String {
    let start = Timestamp::now().as_micros() - days_ago * DAY_US;
    let flow = CorrelationId::new(format!("order-{days_ago}d")).unwrap();
    let records: Vec<Record> = (0..PER_BATCH)
        .map(|i| {
            let mut r = Record::new(Timestamp::from_micros(start + i), "order", "placed");
            r.correlation_id = Some(flow.clone());
            r
        })
        .collect();
    wire::encode("test", &records)
}

async fn request(app: &axum::Router, request: Request<Body>) -> (StatusCode, String) {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

/// Waits up to 10 s for `done`.
async fn until(mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    true
}

#[tokio::test]
async fn a_restart_with_retention_deletes_the_expired_days_whole() {
    let dir = tempfile::tempdir().unwrap();
    let config = CollectorConfig::new(dir.path());
    let (indexer, thread) = Indexer::start(&config).unwrap();
    let app = router(indexer, &config);
    let index = RecordIndex::open_or_create(&config.index_dir()).unwrap();
    let reader = index.reader().unwrap();
    // Three days, each its own commit (so its own segment).
    for (n, days_ago) in [3, 2, 0].into_iter().enumerate() {
        let post = Request::post("/v1/ingest")
            .header("content-type", wire::CONTENT_TYPE)
            .body(Body::from(batch(days_ago)))
            .unwrap();
        assert_eq!(request(&app, post).await.0, StatusCode::OK);
        let want = PER_BATCH as u64 * (n as u64 + 1);
        assert!(until(|| reader.reload().is_ok() && reader.record_count().unwrap() == want).await);
    }
    assert_eq!(reader.partitions().unwrap().len(), 3);
    drop(app);
    thread.join();

    let config = CollectorConfig {
        retention: Some("36h".parse().unwrap()),
        ..config
    };
    let (indexer, thread) = Indexer::start(&config).unwrap();
    let app = router(indexer, &config);
    assert!(
        until(|| reader.reload().is_ok() && reader.partitions().unwrap().len() == 1).await,
        "the expired days stayed: {:?}",
        reader.partitions()
    );
    assert_eq!(reader.record_count().unwrap(), PER_BATCH as u64);
    let (_, hits) = reader.search("*", 100).unwrap();
    assert!(
        hits.records
            .iter()
            .all(|r| r.correlation_id.as_ref().unwrap().as_str() == "order-0d")
    );
    // Counted right after the commit that readers may see first.
    let deadline = Instant::now() + Duration::from_secs(10);
    let text = loop {
        let metrics = Request::get("/metrics").body(Body::empty()).unwrap();
        let (_, text) = request(&app, metrics).await;
        if text.contains("expired_total") || Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for line in [
        "causeway_collector_expired_total{kind=\"record\"} 10",
        "causeway_collector_expired_total{kind=\"flow\"} 2",
    ] {
        assert!(text.contains(line), "{line} missing from\n{text}");
    }
    drop(app);
    thread.join();
}
