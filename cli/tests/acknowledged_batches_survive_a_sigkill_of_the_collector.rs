//! Durability of the collector as a real process: several posters send
//! batches while the collector is killed with SIGKILL, twice (the second
//! time right after it started again, while it replays its write-ahead
//! log). Restarted on the same data directory, every acknowledged batch is
//! searchable exactly once through the query API, and a batch that was not
//! acknowledged is there whole or not at all.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use causeway_model::{CorrelationId, FlowDetail, Record, Stage, Timestamp, wire};

const POSTERS: usize = 4;
const BATCH: usize = 200;

/// The daemon as a child process, killed with SIGKILL when dropped.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

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
    (
        key,
        wire::encode(&format!("poster{poster}"), &records).into(),
    )
}

/// Every batch key posted, and whether its post was acknowledged.
type Posted = Arc<Mutex<BTreeMap<String, bool>>>;

/// Posts batches from `POSTERS` tasks until `stop` is set; `offset` keeps
/// the keys of later rounds apart.
fn start_posters(
    client: &reqwest::Client,
    url: &str,
    posted: &Posted,
    offset: usize,
) -> (
    Arc<std::sync::atomic::AtomicBool>,
    Vec<tokio::task::JoinHandle<()>>,
) {
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let tasks = (0..POSTERS)
        .map(|poster| {
            let (client, url, posted, stop) =
                (client.clone(), url.to_owned(), posted.clone(), stop.clone());
            tokio::spawn(async move {
                let mut n = offset;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let (key, body) = batch(poster, n);
                    n += 1;
                    posted.lock().unwrap().insert(key.clone(), false);
                    let sent = client
                        .post(format!("{url}/v1/ingest"))
                        .header("content-type", wire::CONTENT_TYPE)
                        .body(body)
                        .send()
                        .await;
                    match sent {
                        Ok(response) if response.status().is_success() => {
                            posted.lock().unwrap().insert(key, true);
                        }
                        Ok(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                        // The collector is down: wait for the next round.
                        Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                    }
                }
            })
        })
        .collect();
    (stop, tasks)
}

async fn stop_posters(
    stop: Arc<std::sync::atomic::AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
) {
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
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
async fn every_acknowledged_batch_is_searchable_exactly_once_after_sigkills() {
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
    let posted: Posted = Arc::default();

    // Round 1: steady posting, then SIGKILL in the middle of it.
    let daemon = up(&data, &ports);
    wait_healthy(&client, &collector).await;
    let (stop, tasks) = start_posters(&client, &collector, &posted, 0);
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    drop(daemon);
    stop_posters(stop, tasks).await;

    // Round 2: posting again, and SIGKILL as soon as it answers, while the
    // write-ahead log of round 1 is replayed.
    let (stop, tasks) = start_posters(&client, &collector, &posted, 1_000_000);
    let daemon = up(&data, &ports);
    wait_healthy(&client, &collector).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(daemon);
    stop_posters(stop, tasks).await;

    // Round 3: up again, nothing posted; everything must settle.
    let _daemon = up(&data, &ports);
    wait_healthy(&client, &query).await;
    let posted = posted.lock().unwrap().clone();
    let acknowledged = posted.values().filter(|ok| **ok).count();
    assert!(
        acknowledged >= 8,
        "too few batches acknowledged to say anything: {acknowledged}"
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut missing = Vec::new();
        for (key, _) in posted.iter().filter(|(_, ok)| **ok) {
            if count(&client, &query, key).await.0 < BATCH {
                missing.push(key.clone());
            }
        }
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {acknowledged} acknowledged batches not searchable, e.g. {:?}",
            missing.len(),
            &missing[..missing.len().min(5)]
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // One more commit interval, then every batch is there whole and once,
    // or (not acknowledged) not at all.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    for (key, ok) in &posted {
        let (added, returned) = count(&client, &query, key).await;
        if *ok {
            assert_eq!((added, returned), (BATCH, BATCH), "acknowledged {key}");
        } else {
            assert!(
                (added, returned) == (0, 0) || (added, returned) == (BATCH, BATCH),
                "unacknowledged {key} is partly there: {added} added, {returned} returned"
            );
        }
    }
}
