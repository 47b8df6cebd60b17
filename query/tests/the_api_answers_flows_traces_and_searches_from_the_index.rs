//! The query API over a real index written by the index crate (as the
//! collector would): flows newest first, a flow as a causal tree, a trace,
//! searches, JSON errors, and commits made after start-up.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use causeway_index::{RecordIndex, RecordWriter};
use causeway_model::{
    CorrelationId, EventId, FlowDetail, FlowStatus, FlowsPage, Record, SearchHits, Stage,
    StepStatus, Timestamp, TraceId, TraceRecords,
};
use causeway_query::{QueryConfig, QueryState, router};
use http_body_util::BodyExt;
use tower::ServiceExt;

fn record(t: i64, service: &str, stage: Stage, flow: &str, event: &str, trace: TraceId) -> Record {
    let mut r = Record::new(
        Timestamp::from_micros(t),
        service,
        format!("{service} {stage}"),
    );
    r.stage = stage;
    r.correlation_id = Some(CorrelationId::new(flow).unwrap());
    r.event_id = Some(EventId::new(event).unwrap());
    r.event_type = Some("OrderPlaced".into());
    r.trace_id = Some(trace);
    r
}

fn write_flow(writer: &mut RecordWriter, t0: i64, flow: &str, fail: bool) -> TraceId {
    let trace = TraceId::random();
    let event = format!("{flow}-e1");
    writer
        .add(&record(t0, "order", Stage::Published, flow, &event, trace))
        .unwrap();
    writer
        .add(&record(
            t0 + 10,
            "payment",
            Stage::Received,
            flow,
            &event,
            trace,
        ))
        .unwrap();
    let mut last = record(
        t0 + 20,
        "payment",
        if fail { Stage::Failed } else { Stage::Handled },
        flow,
        &event,
        trace,
    );
    if fail {
        last.error_type = Some("CardDeclined".into());
    }
    writer.add(&last).unwrap();
    trace
}

async fn get(app: &axum::Router, uri: &str) -> (StatusCode, serde_json::Value) {
    let response = app
        .clone()
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap())
}

#[tokio::test]
async fn flows_traces_and_search_come_back_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let config = QueryConfig::new(dir.path());
    let index = RecordIndex::open_or_create(&config.index_dir()).unwrap();
    let mut writer = index.writer(15_000_000).unwrap();
    write_flow(&mut writer, 1_000, "order-1", false);
    let failed_trace = write_flow(&mut writer, 2_000, "order-2", true);
    writer.commit().unwrap();
    let app = router(QueryState::new(config));

    let (status, json) = get(&app, "/api/v1/flows").await;
    assert_eq!(status, StatusCode::OK);
    let page: FlowsPage = serde_json::from_value(json).unwrap();
    let listed: Vec<_> = page
        .flows
        .iter()
        .map(|f| (f.correlation_id.as_str(), f.status))
        .collect();
    assert_eq!(
        listed,
        vec![
            ("order-2", FlowStatus::Failed),
            ("order-1", FlowStatus::Completed)
        ]
    );

    let (status, json) = get(&app, "/api/v1/flows?limit=1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json["flows"].as_array().unwrap().len(), 1);

    let (status, json) = get(&app, "/api/v1/flows/order-2").await;
    assert_eq!(status, StatusCode::OK);
    let flow: FlowDetail = serde_json::from_value(json).unwrap();
    assert_eq!(flow.records.len(), 3);
    let step = &flow.roots[0].consumers[0];
    assert_eq!(
        (step.service.as_str(), step.status),
        ("payment", StepStatus::Failed)
    );
    assert_eq!(step.stages, vec![Stage::Received, Stage::Failed]);

    let (status, json) = get(&app, &format!("/api/v1/traces/{failed_trace}")).await;
    assert_eq!(status, StatusCode::OK);
    let trace: TraceRecords = serde_json::from_value(json).unwrap();
    assert_eq!(trace.records.len(), 3);
    assert!(
        trace
            .records
            .iter()
            .all(|r| r.trace_id == Some(failed_trace))
    );

    let (status, json) = get(&app, "/api/v1/search?q=stage:failed").await;
    assert_eq!(status, StatusCode::OK);
    let hits: SearchHits = serde_json::from_value(json).unwrap();
    assert_eq!(hits.total, 1);
    assert_eq!(hits.hits[0].error_type.as_deref(), Some("CardDeclined"));
}

#[tokio::test]
async fn unknown_ids_and_bad_input_get_json_errors() {
    let dir = tempfile::tempdir().unwrap();
    let config = QueryConfig::new(dir.path());
    let app = router(QueryState::new(config.clone()));

    // No index yet: 503, not a crash.
    let (status, json) = get(&app, "/api/v1/flows").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(json["error"]["code"], "index_not_ready");

    let index = RecordIndex::open_or_create(&config.index_dir()).unwrap();
    index.writer(15_000_000).unwrap().commit().unwrap();

    let (status, json) = get(&app, "/api/v1/flows/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(json["error"]["code"], "not_found");
    let (status, _) = get(&app, &format!("/api/v1/traces/{}", TraceId::random())).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, json) = get(&app, "/api/v1/traces/not-hex").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("invalid trace id")
    );
    let (status, json) = get(&app, "/api/v1/search?q=message:(").await;
    assert_eq!(
        (status, json["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("bad_request"))
    );
    let (status, json) = get(&app, "/api/v1/nothing").await;
    assert_eq!(
        (status, json["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
}

#[tokio::test]
async fn a_commit_made_after_start_up_becomes_visible() {
    let dir = tempfile::tempdir().unwrap();
    let config = QueryConfig::new(dir.path());
    let index = RecordIndex::open_or_create(&config.index_dir()).unwrap();
    let mut writer = index.writer(15_000_000).unwrap();
    write_flow(&mut writer, 1_000, "order-1", false);
    writer.commit().unwrap();
    let app = router(QueryState::new(config));
    let (_, json) = get(&app, "/api/v1/flows").await;
    assert_eq!(json["flows"].as_array().unwrap().len(), 1);

    write_flow(&mut writer, 5_000, "order-2", false);
    writer.commit().unwrap();
    // The reader reloads on its own; no call to reload from the test.
    let seen = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let (_, json) = get(&app, "/api/v1/flows").await;
            if json["flows"].as_array().unwrap().len() == 2 {
                return json;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the second flow never became visible");
    assert_eq!(seen["flows"][0]["correlation_id"], "order-2");
}
