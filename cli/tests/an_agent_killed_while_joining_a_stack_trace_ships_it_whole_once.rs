//! Exactly once with multiline records, with real processes: a
//! `causeway agent` reading a Python text log (a regex source joining
//! tracebacks) is killed with SIGKILL while a traceback is half written.
//! Its checkpoint stopped at the start of that record, so the agent
//! started again reads it whole: the collector receives each record once,
//! the traceback as one record.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

mod common;

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{Daemon, causeway, free_port};

fn append(path: &Path, text: &str) {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    file.write_all(text.as_bytes()).unwrap();
}

/// The acknowledged offset of the one stream in the checkpoint.
fn acknowledged(checkpoint: &Path) -> u64 {
    let Ok(text) = std::fs::read_to_string(checkpoint) else {
        return 0;
    };
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    json["streams"][0]["offset"].as_u64().unwrap_or(0)
}

async fn received(client: &reqwest::Client, url: &str) -> Option<u64> {
    let text = client
        .get(format!("{url}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    let count = text.lines().find_map(|l| {
        l.strip_prefix("causeway_collector_records_received_total{protocol=\"causeway\"} ")
            .map(|v| v.trim().parse().unwrap())
    });
    Some(count.unwrap_or(0))
}

async fn wait_for(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done().await {
        assert!(Instant::now() < deadline, "waited 60 s for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn entry(id: u32, message: &str) -> String {
    format!("2026-11-28 01:16:29,439 ERROR [orders] correlation_id=order-{id} {message}\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_written_traceback_is_read_again_whole_after_a_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let (http, grpc, status) = (free_port(), free_port(), free_port());
    let url = format!("http://127.0.0.1:{http}");
    let _collector = Daemon(
        causeway()
            .arg("collector")
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args([
                "--collector-http-addr",
                &format!("127.0.0.1:{http}"),
                "--collector-grpc-addr",
                &format!("127.0.0.1:{grpc}"),
            ])
            .spawn()
            .unwrap(),
    );
    let log = dir.path().join("orders.txt");
    let checkpoint = dir.path().join("agent.checkpoint.json");
    let config = dir.path().join("causeway.toml");
    std::fs::write(
        &config,
        format!(
            r#"[agent]
collector_url = "{url}"
checkpoint_path = {checkpoint:?}
poll_interval_ms = 20
status_addr = "127.0.0.1:{status}"

[[agent.sources]]
paths = [{log:?}]
format = "regex"
pattern = '(?P<timestamp>\d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d,\d+) (?P<level>\w+) \[(?P<logger>[^\]]+)\] correlation_id=(?P<correlation_id>\S+) (?P<message>.*)'
multiline_start = '^\d{{4}}-\d\d-\d\d '
multiline_timeout_ms = 600000
"#
        ),
    )
    .unwrap();
    let agent = || {
        Daemon(
            causeway()
                .arg("--config")
                .arg(&config)
                .arg("agent")
                .spawn()
                .unwrap(),
        )
    };
    let client = reqwest::Client::new();
    wait_for("the collector", async || {
        received(&client, &url).await.is_some()
    })
    .await;

    append(&log, &entry(1, "order placed"));
    let first_end = std::fs::metadata(&log).unwrap().len();
    append(&log, &entry(2, "order rejected"));
    append(
        &log,
        "Traceback (most recent call last):\n  File \"t.py\", line 6\n",
    );
    let running = agent();
    wait_for("the first record acknowledged", async || {
        acknowledged(&checkpoint) >= first_end
    })
    .await;
    assert_eq!(
        acknowledged(&checkpoint),
        first_end,
        "stopped at the record being joined"
    );
    running.kill();

    append(&log, "KeyError: 'sku'\n");
    append(&log, &entry(3, "order shipped"));
    let _running = agent();
    wait_for("the traceback acknowledged", async || {
        acknowledged(&checkpoint) > first_end
    })
    .await;
    // Record 3 is still open to continuation lines, so not sent: two
    // records, the traceback whole in one.
    assert_eq!(received(&client, &url).await, Some(2));
    let whole = std::fs::metadata(&log).unwrap().len() - entry(3, "order shipped").len() as u64;
    assert_eq!(acknowledged(&checkpoint), whole);
}
