//! The real binaries, as a person uses them: `causeway demo` serves flows,
//! `causeway tui` runs in a real terminal (tmux), lists them, opens one and
//! quits. Needs tmux (CI installs it); a missing tmux fails the test.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Daemon, demo_command};

struct Tmux(String);

impl Tmux {
    fn run(&self, args: &[&str]) -> String {
        let output = Command::new("tmux")
            .args(args)
            .output()
            .expect("tmux must be installed");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", &self.0])
    }

    fn wait_for(&self, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let screen = self.screen();
            if screen.contains(text) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "{text:?} never appeared:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Tmux {
    fn wait_until_gone(&self, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let screen = self.screen();
            if !screen.contains(text) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{text:?} never went away:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        self.run(&["kill-session", "-t", &self.0]);
    }
}

/// Starts `causeway demo` with `args` and returns it with its query API's
/// address, printed once every flow is in.
fn start_demo(dir: &std::path::Path, args: &[&str]) -> (Daemon, String) {
    let mut child = demo_command(dir)
        .args(args)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let demo = Daemon(child);
    // Its stdout is drained to the end, so it never writes into a closed pipe.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            if let Some(rest) = line.trim().strip_prefix("query API") {
                let _ = tx.send(rest.trim().trim_end_matches("/api/v1/flows").to_owned());
            }
        }
    });
    let query_url = rx
        .recv_timeout(Duration::from_secs(120))
        .expect("the demo never printed its query API address");
    (demo, query_url)
}

/// `causeway tui` against `query_url` in a new 160 x 40 tmux session.
fn open_tui(query_url: &str, name: &str) -> Tmux {
    let session = format!("causeway-tui-{name}-{}", std::process::id());
    let tmux = Tmux(session.clone());
    let command = format!(
        "CAUSEWAY_QUERY_URL={query_url} {} tui",
        env!("CARGO_BIN_EXE_causeway")
    );
    let status = Command::new("tmux")
        .args([
            "new-session",
            "-d",
            "-s",
            &session,
            "-x",
            "160",
            "-y",
            "40",
            &command,
        ])
        .status()
        .expect("tmux must be installed");
    assert!(status.success());
    tmux
}

#[test]
fn the_tui_lists_the_flows_opens_one_and_quits() {
    let dir = tempfile::tempdir().unwrap();
    let (_demo, query_url) = start_demo(dir.path(), &["--orders", "3"]);
    let tmux = open_tui(&query_url, "list");
    let session = tmux.0.clone();

    let list = tmux.wait_for("order-1003");
    assert!(
        list.contains("order-1001") && list.contains("order-1002"),
        "{list}"
    );
    assert!(
        list.contains("compensated"),
        "order-1002 is declined and compensated:\n{list}"
    );
    assert!(list.contains("connected to"), "{list}");

    // Newest activity first, so the first row is one of the three (the
    // services run concurrently); open the first one that shipped, not
    // order-1002, which was declined.
    for _ in 0..3 {
        tmux.run(&["send-keys", "-t", &session, "Enter"]);
        if !tmux.wait_for("┌ flow ").contains("┌ flow order-1002") {
            break;
        }
        tmux.run(&["send-keys", "-t", &session, "Escape"]);
        tmux.wait_until_gone("┌ flow ");
        tmux.run(&["send-keys", "-t", &session, "j"]);
    }
    let detail = tmux.wait_for("OrderShipped");
    assert!(
        detail.contains("┌ flow order-1001") || detail.contains("┌ flow order-1003"),
        "{detail}"
    );
    for step in [
        "OrderPlaced",
        "PaymentCaptured",
        "StockReserved",
        "OrderShipped",
    ] {
        assert!(detail.contains(step), "{step} missing:\n{detail}");
    }

    tmux.run(&["send-keys", "-t", &session, "q"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    // The session ends when its only program, the tui, exits.
    while Command::new("tmux")
        .args(["has-session", "-t", &session])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
    {
        assert!(Instant::now() < deadline, "the tui did not quit on q");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Every scenario of `--scenario mixed` (examples/README.md) is on the
/// list with its status, whole, and each flow opened shows the anomaly its
/// scenario must produce above its tree.
#[test]
fn the_tui_shows_each_choreographed_scenario_with_its_status_and_anomaly() {
    each_scenario_with_its_status_and_anomaly("choreography");
}

/// The same for the orchestrated saga: its flows are stars around the
/// orchestrator, their statuses and anomalies the same.
#[test]
fn the_tui_shows_each_orchestrated_scenario_with_its_status_and_anomaly() {
    each_scenario_with_its_status_and_anomaly("orchestration");
}

fn each_scenario_with_its_status_and_anomaly(style: &str) {
    let dir = tempfile::tempdir().unwrap();
    let (_demo, query_url) = start_demo(
        dir.path(),
        &["--orders", "9", "--scenario", "mixed", "--style", style],
    );
    let tmux = open_tui(&query_url, style);
    let session = tmux.0.clone();
    let list = tmux.wait_for("order-1009");
    for status in ["completed", "compensated", "dead_lettered", "stuck"] {
        assert!(list.contains(status), "{status} missing:\n{list}");
    }
    let expected = [
        ("order-1003", "poison_loop"),
        ("order-1004", "duplicate_delivery"),
        ("order-1005", "slow_step"),
        ("order-1006", "missing_consumer"),
        ("order-1007", "context_lost"),
        ("order-1008", "out_of_order"),
    ];
    // The list is ordered by activity: open each row in turn and check the
    // flow it is, going round again should a late record reorder it. Ten
    // rows: the records shipping wrote under the context it dropped
    // (`context_lost`) are a flow of their own.
    let all: Vec<String> = (1001..=1009).map(|n| format!("order-{n}")).collect();
    let mut seen = std::collections::BTreeSet::new();
    for step in 0..40 {
        if all.iter().all(|order| seen.contains(order)) {
            break;
        }
        tmux.run(&["send-keys", "-t", &session, "Enter"]);
        let detail = tmux.wait_for("┌ flow ");
        let flow = detail
            .split("┌ flow ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap()
            .to_owned();
        if let Some((_, anomaly)) = expected.iter().find(|(id, _)| *id == flow) {
            let detail = tmux.wait_for(anomaly);
            assert!(detail.contains(&format!("flow {flow}")), "{detail}");
        }
        seen.insert(flow);
        tmux.run(&["send-keys", "-t", &session, "Escape"]);
        tmux.wait_until_gone("┌ flow ");
        let next = if step % 10 == 9 { "g" } else { "j" };
        tmux.run(&["send-keys", "-t", &session, next]);
    }
    for order in &all {
        assert!(seen.contains(order), "{order} never opened: {seen:?}");
    }
}
