//! The live tail end to end: a client holds `GET /api/v1/tail` open on the
//! query daemon, a batch is posted to the collector, and the record and its
//! flow's status arrive as server-sent events; a filter keeps other
//! services' records out.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

use std::time::Duration;

use causeway_collector::CollectorConfig;
use causeway_model::{CorrelationId, EventId, FlowSummary, Record, Stage, Timestamp, wire};
use causeway_query::QueryConfig;
use tokio::net::TcpListener;
use tokio::sync::watch;

fn record(service: &str, stage: Stage, message: &str) -> Record {
    let mut r = Record::new(Timestamp::now(), service, message);
    r.stage = stage;
    r.correlation_id = Some(CorrelationId::new("order-tail").unwrap());
    r.event_id = Some(EventId::new("order-tail-e1").unwrap());
    r.event_type = Some("OrderPlaced".into());
    r
}

/// One server-sent event: its `event:` and `data:` lines.
#[derive(Debug)]
struct Sse {
    event: String,
    data: String,
}

/// Reads events off an SSE response until `done` says enough, or a minute
/// passes.
async fn read_events(
    response: &mut reqwest::Response,
    mut done: impl FnMut(&[Sse]) -> bool,
) -> Vec<Sse> {
    let mut buffer = String::new();
    let mut events = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), async {
        while !done(&events) {
            let chunk = response.chunk().await.unwrap().expect("the tail ended");
            buffer.push_str(std::str::from_utf8(&chunk).unwrap());
            while let Some(end) = buffer.find("\n\n") {
                let block: String = buffer.drain(..end + 2).collect();
                let field = |name: &str| {
                    block
                        .lines()
                        .filter_map(|l| l.strip_prefix(name))
                        .collect::<Vec<_>>()
                        .join("\n")
                };
                let event = field("event:");
                if !event.is_empty() {
                    events.push(Sse {
                        event: event.trim().to_owned(),
                        data: field("data:"),
                    });
                }
            }
        }
    })
    .await
    .expect("the events never arrived");
    events
}

#[tokio::test]
async fn a_posted_record_and_its_flow_arrive_on_the_tail() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (stop_tx, stop_rx) = watch::channel(false);
    let stop = || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let collector_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let collector_url = format!("http://{}", collector_listener.local_addr().unwrap());
    let collector = tokio::spawn(causeway_collector::run(
        collector_listener,
        CollectorConfig::new(&data),
        stop(),
    ));
    let query_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let query_url = format!("http://{}", query_listener.local_addr().unwrap());
    let query = tokio::spawn(causeway_query::run(
        query_listener,
        QueryConfig::new(&data),
        stop(),
    ));
    let client = reqwest::Client::new();
    let post = |records: Vec<Record>| {
        let client = client.clone();
        let url = format!("{collector_url}/v1/ingest");
        async move {
            let response = client
                .post(url)
                .header("content-type", wire::CONTENT_TYPE)
                .body(wire::encode("tail-test", &records))
                .send()
                .await
                .unwrap();
            assert!(response.status().is_success(), "{}", response.status());
        }
    };
    // The index exists once the collector committed something.
    post(vec![record("warmup", Stage::Log, "before the tail")]).await;

    let mut tail = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let response = client
                .get(format!("{query_url}/api/v1/tail?service=payment,order"))
                .send()
                .await
                .unwrap();
            if response.status().is_success() {
                return response;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .unwrap();
    assert_eq!(tail.headers()["content-type"], "text/event-stream");

    post(vec![
        record("order", Stage::Published, "order placed"),
        record("shipping", Stage::Log, "not for this tail"),
        record("payment", Stage::Received, "charging the card"),
    ])
    .await;

    let events = read_events(&mut tail, |events| {
        let records = events.iter().filter(|e| e.event == "record").count();
        let flows = events.iter().filter(|e| e.event == "flow").count();
        records >= 2 && flows >= 1
    })
    .await;
    let records: Vec<Record> = events
        .iter()
        .filter(|e| e.event == "record")
        .map(|e| serde_json::from_str(&e.data).unwrap())
        .collect();
    let messages: Vec<&str> = records.iter().map(|r| r.message.as_str()).collect();
    assert_eq!(messages, ["order placed", "charging the card"]);
    let flow: FlowSummary =
        serde_json::from_str(&events.iter().find(|e| e.event == "flow").unwrap().data).unwrap();
    assert_eq!(flow.correlation_id, "order-tail");
    assert_eq!(flow.status.as_str(), "in_progress");

    // The handler finishes: the flow's new status arrives.
    post(vec![record("payment", Stage::Handled, "charged")]).await;
    let events = read_events(&mut tail, |events| events.iter().any(|e| e.event == "flow")).await;
    let flow: FlowSummary =
        serde_json::from_str(&events.iter().find(|e| e.event == "flow").unwrap().data).unwrap();
    assert_eq!(flow.status.as_str(), "completed");

    drop(tail);
    stop_tx.send(true).unwrap();
    collector.await.unwrap().unwrap();
    query.await.unwrap().unwrap();
}
