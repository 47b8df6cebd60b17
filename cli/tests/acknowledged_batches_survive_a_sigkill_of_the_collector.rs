//! Durability of the collector as a real process: several posters send
//! batches while the collector is killed with SIGKILL, twice (the second
//! time right after it started again, while it replays its write-ahead
//! log). Each poster sends like the agent: every batch names its stream and
//! each record's offset, and a batch that was not acknowledged is sent
//! again, first thing, once the collector is back. In the end every batch,
//! acknowledged the first time or only when sent again, is searchable
//! exactly once through the query API.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use causeway_model::wire::{self, Position};
use causeway_model::{CorrelationId, FlowDetail, Record, Stage, Timestamp};

use common::{Daemon, free_port};

const POSTERS: usize = 4;
const BATCH: usize = 200;

struct Ports {
    http: u16,
    grpc: u16,
    query: u16,
}

/// `causeway up` (collector and query in one process) on `data`.
fn up(data: &Path, ports: &Ports) -> Daemon {
    let mut command = Command::new(env!("CARGO_BIN_EXE_causeway"));
    for (name, _) in std::env::vars() {
        if name.starts_with("CAUSEWAY_") {
            command.env_remove(name);
        }
    }
    let child = command
        .arg("up")
        .arg("--data-dir")
        .arg(data)
        .args([
            "--collector-http-addr",
            &format!("127.0.0.1:{}", ports.http),
            "--collector-grpc-addr",
            &format!("127.0.0.1:{}", ports.grpc),
            "--query-addr",
            &format!("127.0.0.1:{}", ports.query),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Daemon(child)
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

fn batch(poster: usize, n: usize) -> (String, Vec<u8>) {
    let key = format!("poster{poster}-batch{n}");
    let records: Vec<Record> = (0..BATCH)
        .map(|i| {
            let mut r = Record::new(
                Timestamp::now(),
                format!("poster{poster}"),
                format!("{key} record {i}"),
            );
            r.stage = Stage::Log;
            r.correlation_id = Some(CorrelationId::new(&key).unwrap());
            r
        })
        .collect();
    // Offsets along the poster's one stream, as if each record were a
    // 100-byte line of one file.
    let positions: Vec<Position> = (0..BATCH)
        .map(|i| Position(0, ((n * BATCH + i + 1) * 100) as u64))
        .collect();
    let streams = [format!("test-host:poster{poster}")];
    let body = wire::encode_positioned(&format!("poster{poster}"), &records, &streams, &positions);
    (key, body.into())
}

/// Per poster, the batches sent, in order, and whether each was
/// acknowledged at least once.
type Posted = Arc<Mutex<Vec<Vec<(String, bool)>>>>;

/// Posts from `POSTERS` tasks until `stop` is set and nothing is left to
/// send again: each first sends again what was not acknowledged, in order,
/// then new batches while `more` holds.
fn start_posters(
    client: &reqwest::Client,
    url: &str,
    posted: &Posted,
    more: bool,
) -> (Arc<AtomicBool>, Vec<tokio::task::JoinHandle<()>>) {
    let stop = Arc::new(AtomicBool::new(false));
    let tasks = (0..POSTERS)
        .map(|poster| {
            let (client, url, posted, stop) =
                (client.clone(), url.to_owned(), posted.clone(), stop.clone());
            tokio::spawn(async move {
                loop {
                    let next = {
                        let posted = posted.lock().unwrap();
                        let sent = &posted[poster];
                        sent.iter()
                            .position(|(_, ok)| !ok)
                            .or(more.then_some(sent.len()))
                    };
                    let Some(n) = next else { return };
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let (key, body) = batch(poster, n);
                    {
                        let mut posted = posted.lock().unwrap();
                        if n == posted[poster].len() {
                            posted[poster].push((key, false));
                        }
                    }
                    let sent = client
                        .post(format!("{url}/v1/ingest"))
                        .header("content-type", wire::CONTENT_TYPE)
                        .body(body)
                        .send()
                        .await;
                    match sent {
                        Ok(response) if response.status().is_success() => {
                            posted.lock().unwrap()[poster][n].1 = true;
                        }
                        // Refused or down: try again shortly.
                        _ => tokio::time::sleep(Duration::from_millis(20)).await,
                    }
                }
            })
        })
        .collect();
    (stop, tasks)
}

async fn stop_posters(stop: Arc<AtomicBool>, tasks: Vec<tokio::task::JoinHandle<()>>) {
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.unwrap();
    }
}

/// Records the query API holds for `key`: (records added to its flow,
/// duplicates included; records returned).
async fn count(client: &reqwest::Client, query: &str, key: &str) -> (usize, usize) {
    let response = client
        .get(format!("{query}/api/v1/flows/{key}"))
        .send()
        .await
        .unwrap();
    if response.status() == reqwest::StatusCode::NOT_FOUND {
        return (0, 0);
    }
    assert!(
        response.status().is_success(),
        "{key}: {}",
        response.status()
    );
    let flow: FlowDetail = response.json().await.unwrap();
    (flow.summary.record_count, flow.records.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_batch_is_searchable_exactly_once_after_sigkills_and_resends() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let ports = Ports {
        http: free_port(),
        grpc: free_port(),
        query: free_port(),
    };
    let collector = format!("http://127.0.0.1:{}", ports.http);
    let query = format!("http://127.0.0.1:{}", ports.query);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let posted: Posted = Arc::new(Mutex::new(vec![Vec::new(); POSTERS]));

    // Round 1: steady posting, then SIGKILL in the middle of it.
    let daemon = up(&data, &ports);
    wait_healthy(&client, &collector).await;
    let (stop, tasks) = start_posters(&client, &collector, &posted, true);
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    drop(daemon);
    stop_posters(stop, tasks).await;
    let first_round = posted
        .lock()
        .unwrap()
        .iter()
        .flatten()
        .filter(|(_, ok)| *ok)
        .count();

    // Round 2: posting again, and SIGKILL as soon as it answers, while the
    // write-ahead log of round 1 is replayed.
    let (stop, tasks) = start_posters(&client, &collector, &posted, true);
    let daemon = up(&data, &ports);
    wait_healthy(&client, &collector).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(daemon);
    stop_posters(stop, tasks).await;

    // Round 3: up again; the posters send again what was not acknowledged,
    // then everything must settle.
    let _daemon = up(&data, &ports);
    wait_healthy(&client, &collector).await;
    let (_, tasks) = start_posters(&client, &collector, &posted, false);
    for task in tasks {
        task.await.unwrap();
    }
    wait_healthy(&client, &query).await;
    let keys: Vec<String> = posted
        .lock()
        .unwrap()
        .iter()
        .flatten()
        .map(|(key, _)| key.clone())
        .collect();
    assert!(
        first_round >= 8,
        "too few batches acknowledged before the first kill to say anything: {first_round}"
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut missing = Vec::new();
        for key in &keys {
            if count(&client, &query, key).await.0 < BATCH {
                missing.push(key.clone());
            }
        }
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} batches not searchable, e.g. {:?}",
            missing.len(),
            keys.len(),
            &missing[..missing.len().min(5)]
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // One more commit interval, then every batch is there whole and once.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    for key in &keys {
        assert_eq!(count(&client, &query, key).await, (BATCH, BATCH), "{key}");
    }
}
