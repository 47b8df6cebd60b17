//! The flow API over an index written as the collector writes it (records
//! and their flows' digests in the same commits): the list with each
//! filter, cursor pages that neither skip nor repeat, lookups by trace and
//! by event id, a flow far larger than one answer, searches with a time
//! range and a histogram, and the learned topology.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

use axum::body::Body;
use axum::http::{Request, StatusCode};
use causeway_index::{RecordIndex, RecordWriter};
use causeway_model::{
    AnomalyKind, CorrelationId, EventId, FlowDetail, FlowStatus, FlowsPage, Record, SearchHits,
    ServicesPage, Stage, Timestamp, TopologyPage, TraceId,
};
use causeway_query::{QueryConfig, QueryState, router};
use http_body_util::BodyExt;
use tower::ServiceExt;

/// One record of flow `flow`, `ms` milliseconds after `t0`.
struct At<'a> {
    flow: &'a str,
    trace: TraceId,
    t0: i64,
}

impl At<'_> {
    fn record(&self, ms: i64, service: &str, stage: Stage, event: &str, ty: &str) -> Record {
        let mut r = Record::new(
            Timestamp::from_micros(self.t0 + ms * 1_000),
            service,
            format!("{service} {stage} {ty}"),
        );
        r.stage = stage;
        r.correlation_id = Some(CorrelationId::new(self.flow).unwrap());
        r.event_id = Some(EventId::new(format!("{}-{event}", self.flow)).unwrap());
        r.event_type = Some(ty.to_owned());
        r.trace_id = Some(self.trace);
        r
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Happy,
    Declined,
    Duplicate,
}

/// order -> OrderPlaced -> payment -> PaymentAuthorized -> shipping.
fn saga(writer: &mut RecordWriter, flow: &str, t0: i64, kind: Kind) -> TraceId {
    let at = At {
        flow,
        trace: TraceId::random(),
        t0,
    };
    let mut records = vec![
        at.record(0, "order", Stage::Published, "e1", "OrderPlaced"),
        at.record(10, "payment", Stage::Received, "e1", "OrderPlaced"),
    ];
    if kind == Kind::Declined {
        let mut failed = at.record(30, "payment", Stage::Failed, "e1", "OrderPlaced");
        failed.error_type = Some("CardDeclined".into());
        failed.error_message = Some("card declined by issuer".into());
        records.push(failed);
    } else {
        let mut child = at.record(20, "payment", Stage::Published, "e2", "PaymentAuthorized");
        child.causation_id = Some(EventId::new(format!("{flow}-e1")).unwrap());
        records.push(child);
        records.push(at.record(30, "payment", Stage::Handled, "e1", "OrderPlaced"));
        records.push(at.record(40, "shipping", Stage::Received, "e2", "PaymentAuthorized"));
        records.push(at.record(60, "shipping", Stage::Handled, "e2", "PaymentAuthorized"));
        if kind == Kind::Duplicate {
            records.push(at.record(90, "shipping", Stage::Received, "e2", "PaymentAuthorized"));
            records.push(at.record(95, "shipping", Stage::Handled, "e2", "PaymentAuthorized"));
        }
    }
    for r in &records {
        writer.add(r).unwrap();
    }
    at.trace
}

async fn get<T: serde::de::DeserializeOwned>(app: &axum::Router, uri: &str) -> T {
    let (status, json) = get_json(app, uri).await;
    assert_eq!(status, StatusCode::OK, "{uri}: {json}");
    serde_json::from_value(json).unwrap()
}

async fn get_json(app: &axum::Router, uri: &str) -> (StatusCode, serde_json::Value) {
    let response = app
        .clone()
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap())
}

fn keys(page: &FlowsPage) -> Vec<&str> {
    page.flows
        .iter()
        .map(|f| f.correlation_id.as_str())
        .collect()
}

/// 30 happy sagas a second apart, then a declined one, then a duplicate
/// delivery, all within the last few minutes.
struct Fixture {
    _dir: tempfile::TempDir,
    app: axum::Router,
    declined_trace: TraceId,
    t0: i64,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let config = QueryConfig::new(dir.path());
    let index = RecordIndex::open_or_create(&config.index_dir()).unwrap();
    let mut writer = index.writer(15_000_000).unwrap();
    let t0 = Timestamp::now().as_micros() - 300_000_000;
    for i in 0..30 {
        saga(
            &mut writer,
            &format!("order-{i:02}"),
            t0 + i * 1_000_000,
            Kind::Happy,
        );
        if i % 7 == 0 {
            // Several commits, so digests are merged across them.
            writer.commit().unwrap();
        }
    }
    let declined_trace = saga(
        &mut writer,
        "order-declined",
        t0 + 40_000_000,
        Kind::Declined,
    );
    saga(&mut writer, "order-twice", t0 + 50_000_000, Kind::Duplicate);
    writer.commit().unwrap();
    Fixture {
        _dir: dir,
        app: router(QueryState::new(config)),
        declined_trace,
        t0,
    }
}

#[tokio::test]
async fn the_list_filters_by_status_anomaly_service_type_time_duration_and_text() {
    let f = fixture();
    let all: FlowsPage = get(&f.app, "/api/v1/flows?limit=100").await;
    assert_eq!(all.flows.len(), 32);
    assert_eq!(
        keys(&all)[..3],
        ["order-twice", "order-declined", "order-29"]
    );
    assert!(all.next_cursor.is_none());
    assert_eq!(all.scanned, 32);

    let failed: FlowsPage = get(&f.app, "/api/v1/flows?status=failed").await;
    assert_eq!(keys(&failed), ["order-declined"]);
    assert_eq!(failed.flows[0].status, FlowStatus::Failed);
    // Only flows with a failed record are read for it.
    assert_eq!(failed.scanned, 1);

    let completed: FlowsPage = get(&f.app, "/api/v1/flows?status=completed&limit=100").await;
    assert_eq!(completed.flows.len(), 31);

    let twice: FlowsPage = get(&f.app, "/api/v1/flows?anomaly=duplicate_delivery").await;
    assert_eq!(keys(&twice), ["order-twice"]);
    assert!(
        twice.flows[0]
            .anomalies
            .contains(&AnomalyKind::DuplicateDelivery)
    );

    // The declined flow never reached shipping.
    let shipping: FlowsPage = get(&f.app, "/api/v1/flows?service=shipping&limit=100").await;
    assert_eq!(shipping.flows.len(), 31);
    assert!(!keys(&shipping).contains(&"order-declined"));
    let typed: FlowsPage = get(
        &f.app,
        "/api/v1/flows?event_type=PaymentAuthorized,Nothing&limit=100",
    )
    .await;
    assert_eq!(typed.flows.len(), 31);

    let since = Timestamp::from_micros(f.t0 + 39_000_000);
    let recent: FlowsPage = get(&f.app, &format!("/api/v1/flows?since={since}")).await;
    assert_eq!(keys(&recent), ["order-twice", "order-declined"]);
    let until = Timestamp::from_micros(f.t0 + 500_000);
    let first: FlowsPage = get(&f.app, &format!("/api/v1/flows?until={until}")).await;
    assert_eq!(keys(&first), ["order-00"]);

    // Only the duplicate's redelivery makes a flow last 95 ms.
    let long: FlowsPage = get(&f.app, "/api/v1/flows?min_duration_ms=90").await;
    assert_eq!(keys(&long), ["order-twice"]);

    let text: FlowsPage = get(&f.app, "/api/v1/flows?q=declined").await;
    assert_eq!(keys(&text), ["order-declined"]);
    let none: FlowsPage = get(&f.app, "/api/v1/flows?q=nothing_like_this").await;
    assert!(none.flows.is_empty());

    for bad in [
        "/api/v1/flows?status=broken",
        "/api/v1/flows?anomaly=weird",
        "/api/v1/flows?since=yesterday",
        "/api/v1/flows?cursor=zz",
    ] {
        let (status, json) = get_json(&f.app, bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {json}");
        assert_eq!(json["error"]["code"], "bad_request");
    }
}

#[tokio::test]
async fn cursor_pages_cover_every_flow_once_in_order() {
    let f = fixture();
    let all: FlowsPage = get(&f.app, "/api/v1/flows?limit=100").await;
    let mut paged = Vec::new();
    let mut uri = "/api/v1/flows?limit=7".to_owned();
    loop {
        let page: FlowsPage = get(&f.app, &uri).await;
        assert!(page.flows.len() <= 7);
        paged.extend(page.flows.iter().map(|f| f.correlation_id.clone()));
        match page.next_cursor {
            Some(cursor) => uri = format!("/api/v1/flows?limit=7&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(paged, keys(&all));
}

#[tokio::test]
async fn a_flow_is_found_by_correlation_trace_and_event_id() {
    let f = fixture();
    let by_key: FlowDetail = get(&f.app, "/api/v1/flows/order-declined").await;
    assert_eq!(by_key.summary.status, FlowStatus::Failed);
    assert_eq!(by_key.records.len(), 3);
    assert!(!by_key.truncated);
    let by_trace: FlowDetail = get(
        &f.app,
        &format!("/api/v1/flows/by-trace/{}", f.declined_trace),
    )
    .await;
    assert_eq!(by_trace, by_key);
    let by_event: FlowDetail = get(&f.app, "/api/v1/flows/by-event/order-07-e2").await;
    assert_eq!(by_event.summary.correlation_id, "order-07");
    let (status, _) = get_json(&f.app, "/api/v1/flows/by-event/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = get_json(
        &f.app,
        &format!("/api/v1/flows/by-trace/{}", TraceId::random()),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn search_takes_field_filters_and_a_range_and_counts_per_bucket() {
    let f = fixture();
    let since = Timestamp::from_micros(f.t0);
    let until = Timestamp::from_micros(f.t0 + 60_000_000);
    let hits: SearchHits = get(
        &f.app,
        &format!("/api/v1/search?service=shipping&stage=handled&since={since}&until={until}&buckets=6&limit=5"),
    )
    .await;
    // 30 happy sagas' and the duplicate's two.
    assert_eq!(hits.total, 32);
    assert_eq!(hits.hits.len(), 5);
    assert!(
        hits.hits
            .iter()
            .all(|r| r.service == "shipping" && r.stage == Stage::Handled)
    );
    assert_eq!(hits.histogram.len(), 6);
    assert_eq!(hits.histogram.iter().map(|b| b.count).sum::<u64>(), 32);
    // The first 10 s hold order-00..order-09.
    assert_eq!(hits.histogram[0].count, 10);
}

#[tokio::test]
async fn the_topology_and_services_are_learned_from_the_flows() {
    let f = fixture();
    let topology: TopologyPage = get(&f.app, "/api/v1/topology").await;
    assert_eq!(topology.flows, 32);
    let placed = topology
        .event_types
        .iter()
        .find(|t| t.event_type == "OrderPlaced")
        .unwrap();
    assert_eq!(placed.publishers, vec!["order"]);
    let payment = &placed.consumers[0];
    assert_eq!(payment.consumer.service, "payment");
    assert!(payment.expected);
    assert_eq!((payment.received, payment.failed), (32, 1));
    let services: ServicesPage = get(&f.app, "/api/v1/services").await;
    let names: Vec<&str> = services
        .services
        .iter()
        .map(|s| s.service.as_str())
        .collect();
    assert_eq!(names, ["order", "payment", "shipping"]);
}

#[tokio::test]
async fn a_flow_of_a_hundred_thousand_records_answers_with_its_newest_and_says_it_is_cut() {
    let dir = tempfile::tempdir().unwrap();
    let config = QueryConfig::new(dir.path());
    let index = RecordIndex::open_or_create(&config.index_dir()).unwrap();
    let mut writer = index.writer(50_000_000).unwrap();
    let at = At {
        flow: "big",
        trace: TraceId::random(),
        t0: Timestamp::now().as_micros() - 3_600_000_000,
    };
    writer
        .add(&at.record(0, "order", Stage::Published, "e1", "OrderPlaced"))
        .unwrap();
    writer
        .add(&at.record(1, "payment", Stage::Received, "e1", "OrderPlaced"))
        .unwrap();
    for i in 0..99_997 {
        writer
            .add(&at.record(2 + i / 100, "payment", Stage::Log, "e1", "OrderPlaced"))
            .unwrap();
    }
    // The failure comes last: it is what a cut that kept the oldest lost.
    let mut failed = at.record(5_000, "payment", Stage::Failed, "e1", "OrderPlaced");
    failed.error_type = Some("Timeout".into());
    writer.add(&failed).unwrap();
    writer.commit().unwrap();
    let app = router(QueryState::new(config));

    let flow: FlowDetail = get(&app, "/api/v1/flows/big").await;
    assert_eq!(flow.summary.record_count, 100_000);
    assert_eq!(flow.summary.status, FlowStatus::Failed);
    assert!(flow.truncated);
    assert_eq!(flow.records_returned, 10_000);
    assert_eq!(flow.records.len(), 10_000);
    assert_eq!(flow.records.last().unwrap().stage, Stage::Failed);
    let step = &flow.roots[0].consumers[0];
    assert_eq!(step.error.as_deref(), Some("Timeout"));
}

#[tokio::test]
async fn an_event_received_under_another_correlation_id_lost_its_context() {
    let dir = tempfile::tempdir().unwrap();
    let config = QueryConfig::new(dir.path());
    let index = RecordIndex::open_or_create(&config.index_dir()).unwrap();
    let mut writer = index.writer(15_000_000).unwrap();
    let t0 = Timestamp::now().as_micros() - 60_000_000;
    let placed = At {
        flow: "order-1",
        trace: TraceId::random(),
        t0,
    };
    writer
        .add(&placed.record(0, "order", Stage::Published, "e1", "OrderPlaced"))
        .unwrap();
    // payment received it, but wrote its records under a fresh id.
    let mut received = placed.record(10, "payment", Stage::Received, "e1", "OrderPlaced");
    received.correlation_id = Some(CorrelationId::new("fresh-42").unwrap());
    writer.add(&received).unwrap();
    writer.commit().unwrap();
    let app = router(QueryState::new(config));

    let flow: FlowDetail = get(&app, "/api/v1/flows/order-1").await;
    assert_eq!(flow.summary.anomalies, vec![AnomalyKind::ContextLost]);
    assert!(
        flow.anomalies[0].message.contains("fresh-42"),
        "{:?}",
        flow.anomalies
    );
    // The other side sees a flow that starts with a receive.
    let fresh: FlowDetail = get(&app, "/api/v1/flows/fresh-42").await;
    assert_eq!(fresh.summary.anomalies, vec![AnomalyKind::ContextLost]);
}

#[tokio::test]
async fn a_stale_topology_is_learned_again_from_the_new_flows() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = QueryConfig::new(dir.path());
    config.topology_refresh_ms = 0;
    let index = RecordIndex::open_or_create(&config.index_dir()).unwrap();
    let mut writer = index.writer(15_000_000).unwrap();
    let t0 = Timestamp::now().as_micros() - 60_000_000;
    for i in 0..2 {
        saga(&mut writer, &format!("early-{i}"), t0 + i, Kind::Happy);
    }
    writer.commit().unwrap();
    let app = router(QueryState::new(config));
    let first: TopologyPage = get(&app, "/api/v1/topology").await;
    assert_eq!(first.flows, 2);
    for i in 0..3 {
        saga(
            &mut writer,
            &format!("late-{i}"),
            t0 + 10 + i,
            Kind::Declined,
        );
    }
    writer.commit().unwrap();
    // Every read finds the topology stale: it answers with the one it has
    // and a thread learns it again, so some later read sees the new flows.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let topology: TopologyPage = get(&app, "/api/v1/topology").await;
        if topology.flows == 5 {
            let placed = topology
                .event_types
                .iter()
                .find(|t| t.event_type == "OrderPlaced")
                .unwrap();
            assert_eq!(placed.consumers[0].failed, 3);
            break;
        }
        assert_eq!(topology.flows, 2, "a topology of neither read");
        assert!(
            std::time::Instant::now() < deadline,
            "the topology was never learned again"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn the_topology_is_learned_page_by_page_up_to_its_flow_limit() {
    let dir = tempfile::tempdir().unwrap();
    let index_dir = QueryConfig::new(dir.path()).index_dir();
    let index = RecordIndex::open_or_create(&index_dir).unwrap();
    let mut writer = index.writer(30_000_000).unwrap();
    let t0 = Timestamp::now().as_micros() - 120_000_000;
    for i in 0..1_100 {
        saga(
            &mut writer,
            &format!("many-{i:04}"),
            t0 + i * 1_000,
            Kind::Happy,
        );
    }
    writer.commit().unwrap();
    for (limit, learned) in [(usize::MAX, 1_100), (1_030, 1_030)] {
        let mut config = QueryConfig::new(dir.path());
        config.topology_max_flows = limit;
        let topology: TopologyPage =
            get(&router(QueryState::new(config)), "/api/v1/topology").await;
        assert_eq!(topology.flows, learned, "limit {limit}");
        let placed = topology
            .event_types
            .iter()
            .find(|t| t.event_type == "OrderPlaced")
            .unwrap();
        assert_eq!(placed.consumers[0].received, learned);
    }
}
