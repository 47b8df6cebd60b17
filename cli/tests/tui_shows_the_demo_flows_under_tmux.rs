//! The real binaries, as a person uses them: `causeway demo` serves flows,
//! `causeway tui` runs in a real terminal (tmux), lists them, opens one and
//! quits. Needs tmux (CI installs it); a missing tmux fails the test.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Demo(Child);

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

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

impl Drop for Tmux {
    fn drop(&mut self) {
        self.run(&["kill-session", "-t", &self.0]);
    }
}

#[test]
fn the_tui_lists_the_flows_opens_one_and_quits() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_causeway"))
        .args(["demo", "--orders", "3"])
        .env("CAUSEWAY_DATA_DIR", dir.path())
        .env("CAUSEWAY_COLLECTOR_HTTP_ADDR", "127.0.0.1:0")
        .env("CAUSEWAY_COLLECTOR_GRPC_ADDR", "127.0.0.1:0")
        .env("CAUSEWAY_QUERY_ADDR", "127.0.0.1:0")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let _demo = Demo(child);
    // The demo prints its query API address once every flow is in.
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

    let session = format!("causeway-tui-{}", std::process::id());
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

    // Newest first: order-1003 is selected; open it.
    tmux.run(&["send-keys", "-t", &session, "Enter"]);
    let detail = tmux.wait_for("OrderShipped");
    assert!(detail.contains("flow order-1003"), "{detail}");
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
