//! What the cli's process tests share: a child process that is killed
//! however the test ends, a free loopback port, and the `causeway` binary
//! with none of the caller's `CAUSEWAY_*` variables and no output.

#![allow(dead_code, clippy::unwrap_used)] // each test uses a part; a panic is the failure report

use std::process::{Child, Command, Stdio};

/// A child process, killed (SIGKILL) when dropped.
pub struct Daemon(pub Child);

impl Daemon {
    /// SIGKILL, now, and wait for it to be gone.
    pub fn kill(mut self) {
        self.0.kill().unwrap();
        self.0.wait().unwrap();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A loopback port free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The binary, its environment cleared of `CAUSEWAY_*`, stdin empty and
/// its output dropped (a test sets what it reads).
pub fn causeway() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_causeway"));
    for (name, _) in std::env::vars() {
        if name.starts_with("CAUSEWAY_") {
            command.env_remove(name);
        }
    }
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    command
}
