//! `--log-format json`: the real binary's own logs on stderr are one JSON
//! object per line, with the level, the message and the event's fields.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn the_collector_logs_json_lines_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_causeway"));
    for (name, _) in std::env::vars() {
        if name.starts_with("CAUSEWAY_") {
            command.env_remove(name);
        }
    }
    let mut child = command
        .args(["--log-format", "json", "collector", "--data-dir"])
        .arg(dir.path())
        .args([
            "--collector-http-addr",
            "127.0.0.1:0",
            "--collector-grpc-addr",
            "127.0.0.1:0",
        ])
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            if tx.send(line.unwrap()).is_err() {
                return;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    let listening = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(line) = rx.recv_timeout(left) else {
            let _ = child.kill();
            panic!("no \"collector listening\" line in 30 s; stderr: {seen:#?}");
        };
        let value: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        if value["message"] == "collector listening" {
            break value;
        }
        seen.push(line);
    };
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(listening["level"], "INFO");
    assert!(
        listening["addr"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:")
    );
    assert!(listening["timestamp"].is_string());
}
