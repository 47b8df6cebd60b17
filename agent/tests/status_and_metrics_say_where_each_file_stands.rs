//! The agent's loopback status (`GET /status`) and Prometheus metrics
//! (`GET /metrics`): where each file stands, whether the agent is holding
//! back because the collector is away, and how many bytes a truncation
//! took before they were read.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers, like tests, report a failure by panicking"
)]

mod common;

use common::{Agent, Collector, Workdir, append, config, line, wait_until};

/// A port free a moment ago, for the status endpoint.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn get(url: &str) -> Option<String> {
    let response = reqwest::get(url).await.ok()?;
    assert!(response.status().is_success());
    response.text().await.ok()
}

async fn status(base: &str) -> serde_json::Value {
    loop {
        if let Some(text) = get(&format!("{base}/status")).await {
            return serde_json::from_str(&text).unwrap();
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// The value of one metric in the Prometheus text.
fn metric(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .map(|v| v.trim().parse().unwrap())
}

#[tokio::test]
async fn the_status_shows_the_agent_holding_back_then_caught_up_and_metrics_count_it() {
    let work = Workdir::new();
    let collector = Collector::start().await;
    collector.busy_when(Some("line"));
    let log = work.path("app.log");
    append(&log, &line("line-1"));
    append(&log, &line("line-2"));
    let len = common::file_len(&log);
    let mut settings = config(&collector, &work.checkpoint(), &[&log]);
    let port = free_port();
    settings.status_addr = format!("127.0.0.1:{port}").parse().unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let agent = Agent::start(settings);

    wait_until("the collector refused a few times", || {
        collector.refused() >= 2
    })
    .await;
    let held = status(&base).await;
    assert_eq!(held["collector_away"], true, "{held}");
    assert!(
        held["last_error"].as_str().unwrap().contains("503"),
        "{held}"
    );
    assert!(held["retries"].as_u64().unwrap() >= 1, "{held}");
    let file = &held["files"][0];
    assert_eq!(file["path"], log.to_str().unwrap());
    assert_eq!(file["position"], 0);
    assert_eq!(file["lag_bytes"], len);
    assert!(file["stream"].as_str().unwrap().starts_with("file:"));
    assert_eq!(file["fingerprint"].as_str().unwrap().len(), 16);

    collector.busy_when(None);
    wait_until("both lines arrive", || collector.messages().len() == 2).await;
    let caught_up = loop {
        let now = status(&base).await;
        if now["files"][0]["position"] == len {
            break now;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    };
    assert_eq!(caught_up["collector_away"], false, "{caught_up}");
    assert_eq!(caught_up["files"][0]["lag_bytes"], 0);
    assert_eq!(caught_up["files"][0]["lag_seconds"], 0);
    assert_eq!(caught_up["files"][0]["records_shipped"], 2);
    assert!(
        caught_up["files"][0]["retries"].as_u64().unwrap() >= 2,
        "{caught_up}"
    );
    let metrics = get(&format!("{base}/metrics")).await.unwrap();
    assert_eq!(
        metric(&metrics, "causeway_agent_records_shipped_total"),
        Some(2)
    );
    assert_eq!(metric(&metrics, "causeway_agent_lines_read_total"), Some(2));
    assert!(metric(&metrics, "causeway_agent_retries_total").unwrap() >= 2);
    assert_eq!(
        metric(&metrics, "causeway_agent_dead_lettered_total"),
        Some(0)
    );
    assert_eq!(
        metric(&metrics, "causeway_agent_batches_in_flight"),
        Some(0)
    );
    agent.stop().await;
}

#[tokio::test]
async fn lines_read_ahead_of_a_slow_acknowledgement_survive_a_truncation_and_unread_ones_are_counted()
 {
    let work = Workdir::new();
    let collector = Collector::start().await;
    // line-1 is held back (in flight) until the file is truncated; line-2
    // is read ahead meanwhile; line-3 is never read before the
    // truncation takes it.
    collector.busy_when(Some("line-1"));
    let log = work.path("app.log");
    append(&log, &line("line-1"));
    append(&log, &line("line-2"));
    let read_ahead_end = common::file_len(&log);
    append(&log, &line("line-3"));
    let mut settings = config(&collector, &work.checkpoint(), &[&log]);
    settings.batch_max_records = 1;
    let port = free_port();
    settings.status_addr = format!("127.0.0.1:{port}").parse().unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let agent = Agent::start(settings);

    loop {
        let now = status(&base).await;
        if now["files"][0]["read"] == read_ahead_end {
            assert_eq!(now["files"][0]["position"], 0, "{now}");
            assert_eq!(now["batches_in_flight"], 1, "{now}");
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    std::fs::write(&log, line("new-1")).unwrap();
    collector.busy_when(None);
    wait_until("the new line arrives", || {
        collector.messages().iter().any(|m| m == "new-1")
    })
    .await;
    let metrics = get(&format!("{base}/metrics")).await.unwrap();
    assert_eq!(
        metric(&metrics, "causeway_agent_truncation_lost_bytes_total"),
        Some(line("line-3").len() as u64),
        "{metrics}"
    );
    agent.stop().await;
    assert_eq!(collector.messages(), vec!["line-1", "line-2", "new-1"]);
}
