//! Interop with a stock OpenTelemetry SDK: Python's `opentelemetry-sdk` with
//! its OTLP/HTTP and OTLP/gRPC exporters (from PyPI, pinned in
//! `collector/tests/otlp_python/requirements.txt`) sends spans and logs of
//! three services, instrumented with plain OpenTelemetry, to the real
//! `causeway up` binary; the query API then shows one flow across a
//! producer trace and two consumer traces joined by span links, with the
//! services, trace ids, lifecycle stages and log records.
//!
//! The interpreter is the one `.ci/run` installs the SDK for, named by
//! `CAUSEWAY_PYTHON`; without it the test fails and says how to get one.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use common::{Daemon, free_port};

fn python() -> PathBuf {
    let Some(python) = std::env::var_os("CAUSEWAY_PYTHON") else {
        panic!(
            "CAUSEWAY_PYTHON is not set: it names a Python with the OpenTelemetry SDK of \
             collector/tests/otlp_python/requirements.txt installed. `.ci/run` makes one \
             (.venv-interop); by hand: python3 -m venv .venv-interop && \
             .venv-interop/bin/pip install -r collector/tests/otlp_python/requirements.txt \
             && export CAUSEWAY_PYTHON=$PWD/.venv-interop/bin/python"
        )
    };
    let python = PathBuf::from(python);
    assert!(
        python.exists(),
        "CAUSEWAY_PYTHON names {}, which does not exist",
        python.display()
    );
    python
}

fn get(client: &reqwest::blocking::Client, url: &str) -> Option<Value> {
    let response = client.get(url).send().ok()?;
    if !response.status().is_success() {
        return None;
    }
    response.json().ok()
}

/// Asks `url` until `done` holds for its answer, for at most 30 s.
fn wait_for(client: &reqwest::blocking::Client, url: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = Value::Null;
    while Instant::now() < deadline {
        if let Some(answer) = get(client, url) {
            if done(&answer) {
                return answer;
            }
            last = answer;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("{url} did not get there in 30 s; last answer: {last:#}");
}

fn strings<'a>(records: &'a Value, field: &str) -> Vec<&'a str> {
    records
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r[field].as_str())
        .collect()
}

#[test]
fn spans_and_logs_from_the_python_sdk_over_http_and_grpc_form_one_flow() {
    let python = python();
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../collector/tests/otlp_python/send.py");
    let dir = tempfile::tempdir().unwrap();
    let (http, grpc, query) = (free_port(), free_port(), free_port());
    let mut command = Command::new(env!("CARGO_BIN_EXE_causeway"));
    for (name, _) in std::env::vars() {
        if name.starts_with("CAUSEWAY_") {
            command.env_remove(name);
        }
    }
    let _daemon = Daemon(
        command
            .arg("up")
            .arg("--data-dir")
            .arg(dir.path())
            .args([
                "--collector-http-addr",
                &format!("127.0.0.1:{http}"),
                "--collector-grpc-addr",
                &format!("127.0.0.1:{grpc}"),
                "--query-addr",
                &format!("127.0.0.1:{query}"),
            ])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let client = reqwest::blocking::Client::new();
    let api = format!("http://127.0.0.1:{query}");
    wait_for(&client, &format!("http://127.0.0.1:{http}/healthz"), |_| {
        true
    });

    // The batch processors export only when the script shuts them down, a
    // service's spans before its logs: the collector learns that the
    // consumer's trace belongs to the producer's flow from the consumer's
    // span before the consumer's log record comes. (A log record exported
    // before any span of its trace stays in its trace's flow.)
    let output = Command::new(&python)
        .arg(&script)
        .args([
            &format!("http://127.0.0.1:{http}"),
            &format!("http://127.0.0.1:{grpc}"),
            "interop",
        ])
        .env("OTEL_BSP_SCHEDULE_DELAY", "600000")
        .env("OTEL_BLRP_SCHEDULE_DELAY", "600000")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "send.py failed\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let sent: Value = serde_json::from_slice(&output.stdout).unwrap();
    let producer = sent["producer_trace"].as_str().unwrap();
    let consumer = sent["consumer_trace"].as_str().unwrap();
    let failed = sent["failed_trace"].as_str().unwrap();

    // One flow, keyed by the producer's trace: the producer's span and log
    // (OTLP/HTTP), the consumers' spans in traces of their own (OTLP/gRPC),
    // joined through their links, and the consumer's log record, exported
    // apart from its spans, with them.
    let flow = wait_for(
        &client,
        &format!("{api}/api/v1/flows/by-trace/{consumer}"),
        |flow| flow["summary"]["record_count"].as_u64() >= Some(8),
    );
    let summary = &flow["summary"];
    assert_eq!(summary["correlation_id"], producer, "{flow:#}");
    assert_eq!(
        summary["services"],
        serde_json::json!(["py-audit", "py-order", "py-payment"]),
        "{flow:#}"
    );
    let traces: Vec<String> = summary["trace_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_owned())
        .collect();
    for trace in [producer, consumer, failed] {
        assert!(
            traces.iter().any(|t| t == trace),
            "{trace} not in {traces:?}"
        );
    }
    assert_eq!(summary["status"], "failed", "{flow:#}");
    let records = &flow["records"];
    let mut stages = strings(records, "stage");
    stages.sort_unstable();
    assert_eq!(
        stages,
        [
            "failed",
            "handled",
            "log",
            "log",
            "log",
            "published",
            "received",
            "received"
        ],
        "{flow:#}"
    );
    let messages = strings(records, "message");
    assert!(messages.contains(&"order placed"), "{messages:?}");
    assert!(messages.contains(&"charge card"), "{messages:?}");
    assert!(messages.contains(&"card charged"), "{messages:?}");
    let failure = records
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["stage"] == "failed")
        .unwrap();
    assert_eq!(failure["service"], "py-audit");
    assert_eq!(failure["consumer_group"], "audit");
    assert_eq!(failure["error_type"], "ValueError");
    assert_eq!(failure["error_message"], "audit log is full");
    assert_eq!(failure["event_id"], sent["message_id"]);
    assert_eq!(failure["links"][0]["trace_id"], producer);

    // The consumer's whole trace, its log record included.
    let trace = wait_for(&client, &format!("{api}/api/v1/traces/{consumer}"), |t| {
        t["records"].as_array().is_some_and(|r| r.len() >= 4)
    });
    let mut messages = strings(&trace["records"], "message");
    messages.sort_unstable();
    assert_eq!(
        messages,
        [
            "card charged",
            "charge card",
            "process orders",
            "process orders"
        ],
        "{trace:#}"
    );
    let log = trace["records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["message"] == "card charged")
        .unwrap();
    assert_eq!(log["level"], "WARN");
    assert_eq!(log["service"], "py-payment");
    assert_eq!(log["instance"], "py-payment-1");
}
