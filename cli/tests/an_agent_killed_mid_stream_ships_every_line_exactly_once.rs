//! Exactly once from a log file to the index, with real processes: a
//! writer appends lines to a log file steadily while the `causeway agent`
//! binary tails it into `causeway up`. The agent is killed with SIGKILL
//! several times mid-stream, each time after it acknowledged more since
//! its last start, and started again from its checkpoint. The collector is
//! killed too and started again, once while the agent is down and once
//! while it runs, so the batch the agent had in flight is sent again to a
//! collector that may already hold it. Once, the agent is started from the
//! checkpoint of an earlier kill (a kill between acknowledgement and
//! checkpoint, at its widest), so batches acknowledged before and after
//! the collector's restart are certainly sent again. In the end every line
//! written is in the index exactly once, counted through the query API:
//! the agent resends what it had not checkpointed, and the collector drops
//! what it had by the stream positions the agent sends (without them, the
//! first group alone counts some 80 records too many).

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use causeway_model::FlowDetail;

use common::{Daemon, causeway, free_port, up_command};

/// Lines per correlation id: each group is one flow in the query API.
const GROUP: usize = 100;
/// Agent kills (the collector is killed once, after the second).
const AGENT_KILLS: usize = 4;
/// Lines written at least; the writer also goes on until every kill is done.
const MIN_LINES: usize = 3_000;

struct Setup {
    data: PathBuf,
    log: PathBuf,
    checkpoint: PathBuf,
    config: PathBuf,
    http: u16,
    grpc: u16,
    query: u16,
}

impl Setup {
    fn collector_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http)
    }

    fn query_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.query)
    }

    /// `causeway up`: collector and query in one process.
    fn up(&self) -> Daemon {
        let child = up_command(None, &self.data, [self.http, self.grpc, self.query])
            .spawn()
            .unwrap();
        Daemon(child)
    }

    /// `causeway agent` on the log file, small batches, quick polls.
    fn agent(&self) -> Daemon {
        let child = causeway()
            .arg("--config")
            .arg(&self.config)
            .arg("agent")
            .arg(&self.log)
            .arg("--collector-url")
            .arg(self.collector_url())
            .arg("--checkpoint")
            .arg(&self.checkpoint)
            .spawn()
            .unwrap();
        Daemon(child)
    }
}

/// The highest acknowledged offset in the agent's checkpoint (0 before
/// there is one).
fn acknowledged(checkpoint: &Path) -> u64 {
    let Ok(text) = std::fs::read_to_string(checkpoint) else {
        return 0;
    };
    // Written by rename, so never half there.
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    json["streams"]
        .as_array()
        .map(|streams| {
            streams
                .iter()
                .filter_map(|s| s["offset"].as_u64())
                .max()
                .unwrap_or(0)
        })
        .unwrap_or(0)
}

/// Waits until the agent acknowledged past `offset`, while the writer is
/// still writing.
async fn wait_for_progress(checkpoint: &Path, offset: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let now = acknowledged(checkpoint);
        if now > offset {
            return now;
        }
        assert!(
            Instant::now() < deadline,
            "the agent acknowledged nothing past {offset} in 60 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn wait_healthy(client: &reqwest::Client, url: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(response) = client.get(format!("{url}/healthz")).send().await
            && response.status().is_success()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{url} never answered /healthz");
}

fn key(group: usize) -> String {
    format!("exactly-once-{group}")
}

fn message(n: usize) -> String {
    format!("line-{n}")
}

/// Appends lines steadily until `stop` and at least [`MIN_LINES`], then
/// returns how many it wrote.
fn start_writer(log: PathBuf, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let mut n = 0;
        while n < MIN_LINES || !stop.load(Ordering::Relaxed) {
            for _ in 0..5 {
                let line = format!(
                    "{{\"message\":\"{}\",\"correlation_id\":\"{}\",\"level\":\"info\"}}\n",
                    message(n),
                    key(n / GROUP)
                );
                file.write_all(line.as_bytes()).unwrap();
                n += 1;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        n
    })
}

/// The messages the query API holds for a group and how many records its
/// flow counts (duplicates included).
async fn group(client: &reqwest::Client, query: &str, key: &str) -> (usize, Vec<String>) {
    let response = client
        .get(format!("{query}/api/v1/flows/{key}"))
        .send()
        .await
        .unwrap();
    if response.status() == reqwest::StatusCode::NOT_FOUND {
        return (0, Vec::new());
    }
    assert!(
        response.status().is_success(),
        "{key}: {}",
        response.status()
    );
    let flow: FlowDetail = response.json().await.unwrap();
    assert!(!flow.truncated, "{key}: the flow is cut");
    let mut messages: Vec<String> = flow.records.into_iter().map(|r| r.message).collect();
    messages.sort();
    (flow.summary.record_count, messages)
}

/// Per group, the messages written.
fn expected(written: usize) -> BTreeMap<String, Vec<String>> {
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for n in 0..written {
        groups.entry(key(n / GROUP)).or_default().push(message(n));
    }
    for messages in groups.values_mut() {
        messages.sort();
    }
    groups
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_line_is_indexed_exactly_once_through_agent_and_collector_sigkills() {
    let dir = tempfile::tempdir().unwrap();
    let setup = Setup {
        data: dir.path().join("data"),
        log: dir.path().join("app.log"),
        checkpoint: dir.path().join("agent/checkpoint.json"),
        config: dir.path().join("causeway.toml"),
        http: free_port(),
        grpc: free_port(),
        query: free_port(),
    };
    // Small batches, so a kill lands between many of them.
    std::fs::write(
        &setup.config,
        "[agent]\nbatch_max_records = 25\npoll_interval_ms = 20\n",
    )
    .unwrap();
    std::fs::write(&setup.log, "").unwrap();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();

    let mut up = setup.up();
    wait_healthy(&client, &setup.collector_url()).await;
    let stop = Arc::new(AtomicBool::new(false));
    let writer = start_writer(setup.log.clone(), stop.clone());
    let mut agent = setup.agent();

    let stale = dir.path().join("stale-checkpoint.json");
    let mut progress = 0;
    for kill in 0..AGENT_KILLS {
        progress = wait_for_progress(&setup.checkpoint, progress).await;
        // Somewhere inside the next batch or two, a different moment each time.
        tokio::time::sleep(Duration::from_millis(7 + 13 * kill as u64)).await;
        agent.kill();
        match kill {
            0 => {
                std::fs::copy(&setup.checkpoint, &stale).unwrap();
            }
            1 => {
                // The collector too, with the agent down: the batch it had
                // in flight may be in the collector's log already.
                up.kill();
                up = setup.up();
                wait_healthy(&client, &setup.collector_url()).await;
            }
            2 => {
                // A kill between acknowledgement and checkpoint, at its
                // widest: the checkpoint of the first kill, so every batch
                // acknowledged since, before and after the collector's
                // restart, is sent again.
                let tmp = dir.path().join("agent/.restore.tmp");
                std::fs::copy(&stale, &tmp).unwrap();
                std::fs::rename(&tmp, &setup.checkpoint).unwrap();
                assert!(acknowledged(&setup.checkpoint) < progress);
            }
            _ => {}
        }
        agent = setup.agent();
    }
    progress = wait_for_progress(&setup.checkpoint, progress).await;
    // The collector killed while the agent runs: the agent retries the
    // batch in flight until the collector is back.
    up.kill();
    up = setup.up();
    wait_healthy(&client, &setup.collector_url()).await;
    wait_for_progress(&setup.checkpoint, progress).await;

    stop.store(true, Ordering::Relaxed);
    let written = writer.join().unwrap();
    let len = std::fs::metadata(&setup.log).unwrap().len();
    let deadline = Instant::now() + Duration::from_secs(120);
    while acknowledged(&setup.checkpoint) < len {
        assert!(
            Instant::now() < deadline,
            "the agent did not acknowledge the whole file ({len} bytes) in 120 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    agent.kill();
    wait_healthy(&client, &setup.query_url()).await;

    let expected = expected(written);
    // Acknowledged means logged; searchable once a commit covers it.
    let deadline = Instant::now() + Duration::from_secs(60);
    for (key, messages) in &expected {
        loop {
            let (count, _) = group(&client, &setup.query_url(), key).await;
            if count >= messages.len() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{key}: {count} of {} records searchable",
                messages.len()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // Every line there, and once: one more commit interval lets a
    // duplicate show.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    for (key, messages) in &expected {
        let (count, found) = group(&client, &setup.query_url(), key).await;
        assert_eq!(count, messages.len(), "{key}: records in the flow");
        assert_eq!(&found, messages, "{key}: the lines, once each");
    }
    drop(up);
}
