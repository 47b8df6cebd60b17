//! The foreign-client contract of `examples/README.md`, kept by a client in
//! another language: the orders services run over RabbitMQ (`causeway demo
//! --broker amqp://...`), and Python's pika publishes an `OrderPlaced` to
//! their exchange with a W3C `traceparent` it made itself. The query API
//! then returns the Rust services' records of that order under the
//! client's trace id, the whole saga down to the order's completion.
//!
//! The interpreter is the one `.ci/run` installs pika for, named by
//! `CAUSEWAY_PYTHON`; without it the test fails and says how to get one.

#![cfg(feature = "amqp")]
#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// Kills the demo however the test ends.
struct Demo(Child);

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn python() -> PathBuf {
    let Some(python) = std::env::var_os("CAUSEWAY_PYTHON") else {
        panic!(
            "CAUSEWAY_PYTHON is not set: it names a Python with pika \
             (examples/python/requirements.txt) installed. `.ci/run` makes one \
             (.venv-interop); by hand: python3 -m venv .venv-interop && \
             .venv-interop/bin/pip install -r examples/python/requirements.txt \
             && export CAUSEWAY_PYTHON=$PWD/.venv-interop/bin/python"
        )
    };
    PathBuf::from(python)
}

/// The part of `line` after `prefix`, trimmed.
fn after<'a>(line: &'a str, prefix: &str) -> Option<&'a str> {
    Some(line.trim().strip_prefix(prefix)?.trim())
}

#[test]
fn the_rust_services_records_join_the_python_clients_trace() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_causeway"))
        .args(["demo", "--orders", "1", "--broker", AMQP_URL])
        .env("CAUSEWAY_DATA_DIR", dir.path())
        .env("CAUSEWAY_COLLECTOR_HTTP_ADDR", "127.0.0.1:0")
        .env("CAUSEWAY_COLLECTOR_GRPC_ADDR", "127.0.0.1:0")
        .env("CAUSEWAY_QUERY_ADDR", "127.0.0.1:0")
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let _demo = Demo(child);

    // The demo says where it takes orders and where its query API is once
    // its own order went through. Its output is read to the end on a
    // thread of its own: a demo writing into a closed pipe would die.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let (mut exchange, mut api) = (None, None);
    while api.is_none() {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the demo did not come up");
        if let Some(rest) = after(&line, "orders are taken from RabbitMQ exchange") {
            exchange = rest.split_whitespace().next().map(str::to_owned);
        }
        if let Some(url) = after(&line, "query API") {
            api = url.strip_suffix("/api/v1/flows").map(str::to_owned);
        }
    }
    let exchange = exchange.expect("the demo named no exchange");
    let api = api.expect("the demo named no query API");

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/python/place_order.py");
    let placed = Command::new(python())
        .arg(&script)
        .args([AMQP_URL, &exchange, "9001"])
        .output()
        .unwrap();
    assert!(
        placed.status.success(),
        "{}",
        String::from_utf8_lossy(&placed.stderr)
    );
    let trace_id = String::from_utf8(placed.stdout).unwrap().trim().to_owned();
    assert_eq!(trace_id.len(), 32, "{trace_id}");

    // The saga down to the order's completion, under the client's trace.
    let client = reqwest::blocking::Client::new();
    let url = format!("{api}/api/v1/traces/{trace_id}");
    let deadline = Instant::now() + Duration::from_secs(60);
    let records = loop {
        let trace: Option<Value> = client
            .get(&url)
            .send()
            .ok()
            .filter(|r| r.status().is_success())
            .and_then(|r| r.json().ok());
        let records = trace.map(|t| t["records"].clone()).unwrap_or(Value::Null);
        let completed = records.as_array().is_some_and(|r| {
            r.iter()
                .any(|r| r["service"] == "order" && r["stage"] == "handled")
        });
        if completed {
            break records;
        }
        assert!(
            Instant::now() < deadline,
            "no completed saga under {trace_id}: {records}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let records = records.as_array().unwrap();
    let mut services: Vec<&str> = records
        .iter()
        .map(|r| r["service"].as_str().unwrap())
        .collect();
    services.sort_unstable();
    services.dedup();
    assert_eq!(
        services,
        ["inventory", "notifier", "order", "payment", "shipping"]
    );
    for record in records {
        assert_eq!(record["trace_id"], trace_id.as_str(), "{record}");
        assert_eq!(record["correlation_id"], "order-9001", "{record}");
    }
    // The first consumer names the client's event as what it received.
    let received = records
        .iter()
        .find(|r| r["service"] == "inventory" && r["stage"] == "received")
        .unwrap();
    assert_eq!(received["event_type"], "OrderPlaced");
    assert!(received["event_id"].as_str().unwrap().starts_with("py-"));
}
