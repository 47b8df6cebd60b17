//! End to end, in one process: the orders example publishes N flows
//! through the middleware, each service writes its JSON log file, the agent
//! tails and ships them, the collector indexes them, and the query API
//! returns exactly those N flows with the right stages and causal trees.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

use std::time::Duration;

use causeway_agent::AgentConfig;
use causeway_collector::CollectorConfig;
use causeway_middleware::{DirectorySink, LIFECYCLE_TARGET, RecordLayer};
use causeway_model::{FlowDetail, FlowEvent, FlowStatus, FlowsPage, Stage, StepStatus};
use causeway_orders::{Transport, expected_outcome, place_order, sample_orders};
use causeway_query::QueryConfig;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;

const ORDERS: usize = 6;

/// The chain a paid order must leave: (event type, consumer service).
const PAID_CHAIN: [(&str, &str); 4] = [
    ("OrderPlaced", "inventory"),
    ("StockReserved", "payment"),
    ("PaymentCaptured", "shipping"),
    ("OrderShipped", "order"),
];

/// The chain of first consumers from `root`: (event type, consumer
/// service, step status, stages).
fn chain(root: &FlowEvent) -> Vec<(String, String, StepStatus, Vec<Stage>)> {
    let mut out = Vec::new();
    let mut event = Some(root);
    while let Some(e) = event {
        let Some(step) = e.consumers.first() else {
            break;
        };
        out.push((
            e.event_type.clone().unwrap(),
            step.service.clone(),
            step.status,
            step.stages.clone(),
        ));
        event = step.children.first();
    }
    out
}

#[tokio::test(flavor = "current_thread")]
async fn every_flow_arrives_once_with_its_stages_and_tree() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    let data = dir.path().join("data");

    let records = RecordLayer::new("orders", DirectorySink::new(&logs).unwrap()).with_filter(
        Targets::new()
            .with_target(LIFECYCLE_TARGET, LevelFilter::TRACE)
            .with_target("causeway_orders", LevelFilter::TRACE),
    );
    let _guard = tracing::subscriber::set_default(tracing_subscriber::registry().with(records));

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
    let mut agent_config =
        AgentConfig::new(&collector_url, dir.path().join("agent.checkpoint.json"));
    agent_config.paths = vec![logs.clone()];
    let agent = tokio::spawn(causeway_agent::run(agent_config, stop()));

    let transport = Transport::connect(None, "test").await.unwrap();
    let services = causeway_orders::start(&transport).await.unwrap();
    let orders = sample_orders(ORDERS, 1, "happy");
    for order in &orders {
        place_order(&transport, order).await.unwrap();
    }

    // Wait for every flow to reach its end state through the whole pipeline.
    let client = reqwest::Client::new();
    let fetch = |id: String| {
        let client = client.clone();
        let url = format!("{query_url}/api/v1/flows/{id}");
        async move {
            let response = client.get(url).send().await.ok()?;
            response.status().is_success().then_some(())?;
            response.json::<FlowDetail>().await.ok()
        }
    };
    let flows: Vec<FlowDetail> = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let mut flows = Vec::new();
            for order in &orders {
                let (status, events, _) = expected_outcome(order);
                match fetch(order.correlation_id().to_string()).await {
                    Some(f)
                        if f.summary.status.as_str() == status
                            && f.summary.event_count == events =>
                    {
                        flows.push(f)
                    }
                    _ => break,
                }
            }
            if flows.len() == orders.len() {
                return flows;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("not every flow reached the query API");

    // Exactly N flows, no strays (nothing outside a flow, no duplicates).
    let page: FlowsPage = client
        .get(format!("{query_url}/api/v1/flows?limit=100"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut listed: Vec<String> = page
        .flows
        .iter()
        .map(|f| f.correlation_id.clone())
        .collect();
    listed.sort();
    let mut expected: Vec<String> = orders
        .iter()
        .map(|o| o.correlation_id().to_string())
        .collect();
    expected.sort();
    assert_eq!(listed, expected);

    for (order, flow) in orders.iter().zip(&flows) {
        assert_eq!(flow.roots.len(), 1, "{}: one root event", order.id);
        let steps = chain(&flow.roots[0]);
        if flow.summary.status == FlowStatus::Completed {
            let shape: Vec<(&str, &str)> = steps
                .iter()
                .map(|(e, s, _, _)| (e.as_str(), s.as_str()))
                .collect();
            assert_eq!(shape, PAID_CHAIN.to_vec(), "order {}", order.id);
            for (_, service, status, stages) in &steps {
                assert_eq!(*status, StepStatus::Handled, "{service}");
                assert_eq!(stages, &vec![Stage::Received, Stage::Handled], "{service}");
            }
            assert_eq!(
                flow.summary.services,
                vec!["inventory", "notifier", "order", "payment", "shipping"]
            );
            // Shipping's step caused two events: the broker's OrderShipped
            // and the webhook's ShipmentNotified, taken over HTTP.
            let ship =
                &flow.roots[0].consumers[0].children[0].consumers[0].children[0].consumers[0];
            let caused: Vec<(&str, &str)> = ship
                .children
                .iter()
                .map(|e| {
                    (
                        e.event_type.as_deref().unwrap(),
                        e.consumers[0].service.as_str(),
                    )
                })
                .collect();
            assert_eq!(
                caused,
                [("OrderShipped", "order"), ("ShipmentNotified", "notifier")]
            );
        } else {
            // Declined: reserved, the charge failed, then the declined
            // event undone by both its consumers.
            assert_eq!(flow.summary.status, FlowStatus::Compensated);
            let shape: Vec<(&str, &str, StepStatus)> = steps
                .iter()
                .map(|(e, s, status, _)| (e.as_str(), s.as_str(), *status))
                .collect();
            assert_eq!(
                shape[..2],
                [
                    ("OrderPlaced", "inventory", StepStatus::Handled),
                    ("StockReserved", "payment", StepStatus::Failed),
                ]
            );
            let charge = &flow.roots[0].consumers[0].children[0].consumers[0];
            assert!(charge.error.as_deref().unwrap().contains("card declined"));
            let declined = &charge.children[0];
            assert_eq!(declined.event_type.as_deref(), Some("PaymentDeclined"));
            let mut undone: Vec<(&str, StepStatus)> = declined
                .consumers
                .iter()
                .map(|c| (c.service.as_str(), c.status))
                .collect();
            undone.sort_unstable_by_key(|(service, _)| *service);
            assert_eq!(
                undone,
                [
                    ("inventory", StepStatus::Compensated),
                    ("order", StepStatus::Compensated)
                ]
            );
        }
        // Every record of the flow carries the flow's correlation id and one trace.
        let trace = flow.records[0].trace_id;
        assert!(
            flow.records
                .iter()
                .all(|r| r.trace_id == trace && r.trace_id.is_some())
        );
    }
    assert!(
        flows
            .iter()
            .any(|f| f.summary.status == FlowStatus::Compensated)
    );

    stop_tx.send_replace(true);
    for service in services {
        service.abort();
    }
    agent.await.unwrap().unwrap();
    collector.await.unwrap().unwrap();
    query.await.unwrap().unwrap();
}
