//! `causeway demo --scenario mixed` over the in-process bus, RabbitMQ
//! (:5672) and NATS JetStream (:4222), choreographed and orchestrated: one
//! order per scenario, each flow read back through the query API with the
//! status and anomaly the scenario must produce (the demo exits non-zero
//! unless every flow settles that way, event count included, and the
//! table it prints says so per flow).

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

mod common;

use common::demo_command;

/// (order, status, anomaly the flow must show) for `--orders 9 --scenario mixed`.
const EXPECTED: [(&str, &str, Option<&str>); 9] = [
    ("order-1001", "completed", None),
    ("order-1002", "compensated", None),
    ("order-1003", "dead_lettered", Some("poison_loop")),
    ("order-1004", "completed", Some("duplicate_delivery")),
    ("order-1005", "completed", Some("slow_step")),
    ("order-1006", "stuck", Some("missing_consumer")),
    ("order-1007", "stuck", Some("context_lost")),
    ("order-1008", "completed", Some("out_of_order")),
    ("order-1009", "completed", None),
];

/// The demo in both styles over `broker`.
fn demo(broker: Option<&str>) {
    for style in ["choreography", "orchestration"] {
        demo_styled(broker, style);
    }
}

fn demo_styled(broker: Option<&str>, style: &str) {
    let dir = tempfile::tempdir().unwrap();
    let mut command = demo_command(dir.path());
    command.args([
        "--orders",
        "9",
        "--scenario",
        "mixed",
        "--exit",
        "--timeout-secs",
        "60",
    ]);
    command.args(["--style", style]);
    if let Some(broker) = broker {
        command.args(["--broker", broker]);
    }
    let output = command.output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{style}\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    for (flow, status, anomaly) in EXPECTED {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(flow))
            .unwrap_or_else(|| panic!("{flow} missing:\n{stdout}"));
        let columns: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(columns[1], status, "{line}");
        if let Some(anomaly) = anomaly {
            assert!(
                columns[6].split(',').any(|a| a == anomaly),
                "{anomaly}: {line}"
            );
        }
    }
    assert!(
        stdout.contains("all 9 flows reached the query API"),
        "{stdout}"
    );
}

#[test]
fn over_the_in_process_bus() {
    demo(None);
}

#[cfg(feature = "amqp")]
#[test]
fn over_rabbitmq() {
    demo(Some("amqp://guest:guest@127.0.0.1:5672/%2f"));
}

#[cfg(feature = "nats")]
#[test]
fn over_nats_jetstream() {
    demo(Some("nats://127.0.0.1:4222"));
}
