//! `POST /v1/ingest` with `Content-Encoding: gzip` (what the agent sends):
//! inflated up to `max_body_bytes` and indexed like a plain batch; a body
//! inflating past the limit is 413, one that is not gzip 400, another
//! encoding 415, and the collector goes on ingesting.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

use std::io::Write;

use causeway_collector::{CollectorConfig, IngestReply, run};
use causeway_model::wire;
use causeway_model::{Record, Timestamp};
use flate2::Compression;
use flate2::write::GzEncoder;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

fn batch(messages: usize) -> String {
    let records: Vec<Record> = (0..messages)
        .map(|i| {
            let mut record = Record::malformed(Timestamp::now(), "svc", "x", "test");
            record.malformed = None;
            record.message = format!("message-{i}");
            record
        })
        .collect();
    wire::encode("gzip-test", &records)
}

#[tokio::test]
async fn gzip_bodies_are_inflated_within_the_limit_and_others_refused_with_their_status() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = CollectorConfig::new(dir.path());
    config.max_body_bytes = 64 * 1024;
    config.commit_interval_ms = 20;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1/ingest", listener.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(run(listener, config, async {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::new();
    let post = |body: Vec<u8>, encoding: &'static str| {
        let request = client
            .post(&url)
            .header("content-type", wire::CONTENT_TYPE)
            .header("content-encoding", encoding)
            .body(body);
        async move {
            let response = request.send().await.unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        }
    };

    let plain = batch(20);
    let (status, body) = post(gzip(plain.as_bytes()), "gzip").await;
    assert_eq!(status, 200, "{body}");
    let reply: IngestReply = serde_json::from_str(&body).unwrap();
    assert_eq!(reply.accepted, 20);
    assert_eq!(reply.malformed, 0);

    // Small on the wire, past the limit once inflated.
    let mut bomb = batch(1).into_bytes();
    bomb.extend(std::iter::repeat_n(b' ', 200 * 1024));
    let zipped = gzip(&bomb);
    assert!(zipped.len() < 64 * 1024);
    let (status, body) = post(zipped, "gzip").await;
    assert_eq!(status, 413, "{body}");

    let (status, body) = post(b"not gzip at all".to_vec(), "gzip").await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = post(plain.clone().into_bytes(), "br").await;
    assert_eq!(status, 415, "{body}");

    let (status, body) = post(plain.into_bytes(), "identity").await;
    assert_eq!(status, 200, "{body}");
    stop.send(()).unwrap();
    task.await.unwrap().unwrap();
}
