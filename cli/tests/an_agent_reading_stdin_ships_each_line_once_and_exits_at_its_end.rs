//! `causeway agent -` reads standard input: a real agent process is fed
//! lines through a pipe, ships them to a real collector and exits 0 by
//! itself once stdin ended and every line is acknowledged. Run again on
//! more input, it ships only the new lines (the spool and its checkpoint
//! carry over), so the collector has received each line once.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

mod common;

use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{Daemon, causeway, free_port};

/// Runs `causeway agent -` on `lines` and waits (at most 60 s) for it to
/// exit, which it must do by itself, successfully.
fn agent_on_stdin(collector: &str, checkpoint: &std::path::Path, lines: &[String]) {
    let mut child = causeway()
        .args(["agent", "-", "--collector-url", collector, "--checkpoint"])
        .arg(checkpoint)
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    for line in lines {
        stdin.write_all(line.as_bytes()).unwrap();
    }
    drop(stdin);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "the agent exited with {status}");
            return;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the agent did not exit within 60 s of its stdin's end");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
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
    // No line before the first record of the protocol.
    let count = text.lines().find_map(|l| {
        l.strip_prefix("causeway_collector_records_received_total{protocol=\"causeway\"} ")
            .map(|v| v.trim().parse().unwrap())
    });
    Some(count.unwrap_or(0))
}

fn lines(range: std::ops::Range<usize>) -> Vec<String> {
    range
        .map(|n| format!("{{\"message\":\"stdin-{n}\",\"service\":\"piped\"}}\n"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_piped_to_the_agent_are_shipped_once_and_it_exits_at_their_end() {
    let dir = tempfile::tempdir().unwrap();
    let (http, grpc) = (free_port(), free_port());
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
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while received(&client, &url).await.is_none() {
        assert!(Instant::now() < deadline, "the collector never answered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let checkpoint = dir.path().join("agent.checkpoint.json");

    let first = lines(0..300);
    let (url2, checkpoint2) = (url.clone(), checkpoint.clone());
    tokio::task::spawn_blocking(move || agent_on_stdin(&url2, &checkpoint2, &first))
        .await
        .unwrap();
    assert_eq!(received(&client, &url).await, Some(300));

    let second = lines(300..420);
    let (url2, checkpoint2) = (url.clone(), checkpoint.clone());
    tokio::task::spawn_blocking(move || agent_on_stdin(&url2, &checkpoint2, &second))
        .await
        .unwrap();
    assert_eq!(
        received(&client, &url).await,
        Some(420),
        "the second run sent only its own lines"
    );
    assert!(dir.path().join("agent.checkpoint.stdin.ndjson").exists());
}
