//! The real binary: `causeway demo --orders N --exit` on free ports and a
//! fresh data dir prints every flow and exits 0.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

mod common;

use std::process::Command;

use common::demo_command;

#[test]
fn demo_with_exit_prints_every_flow_and_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let output = demo_command(dir.path())
        .args(["--orders", "5", "--exit", "--timeout-secs", "90"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    for id in 1001..=1005 {
        assert!(
            stdout.contains(&format!("order-{id}")),
            "order-{id} missing:\n{stdout}"
        );
    }
    assert!(
        stdout.contains("all 5 flows reached the query API"),
        "{stdout}"
    );
    // Order 1002 is above the payment limit: payment declined it, and
    // inventory and order undid their part.
    let line = stdout
        .lines()
        .find(|l| l.starts_with("order-1002"))
        .unwrap();
    assert!(line.contains("compensated"), "{line}");
    assert!(dir.path().join("demo-logs/payment.log").exists());

    // The hint names a config that serves these flows with the demo's
    // contracts, not the learned topology.
    let hint = stdout
        .lines()
        .find(|l| l.contains("causeway tui"))
        .unwrap_or_else(|| panic!("no hint:\n{stdout}"));
    let file = hint
        .split("--config ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("{hint}"));
    let checked = Command::new(env!("CARGO_BIN_EXE_causeway"))
        .args(["check-config", file])
        .env_remove("CAUSEWAY_DATA_DIR")
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&checked.stdout);
    assert!(
        checked.status.success(),
        "{printed}{}",
        String::from_utf8_lossy(&checked.stderr)
    );
    let contracts = dir.path().join("demo-contracts.toml");
    assert!(
        printed.contains(&format!(
            "contracts_file = {:?}",
            contracts.display().to_string()
        )),
        "{printed}"
    );
    assert!(
        printed.contains(&format!(
            "data_dir = {:?}",
            dir.path().display().to_string()
        )),
        "{printed}"
    );
}

#[test]
fn binding_beyond_loopback_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_causeway"))
        .args(["up"])
        .env("CAUSEWAY_DATA_DIR", dir.path())
        .env("CAUSEWAY_COLLECTOR_HTTP_ADDR", "0.0.0.0:0")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("only loopback addresses"), "{stderr}");
    assert!(stderr.contains("collector.tokens"), "{stderr}");
}
