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

/// `causeway up` (with the config file `config`, if any) on `data`, its
/// three listeners on the given loopback ports (collector HTTP and gRPC,
/// query).
pub fn up_command(
    config: Option<&std::path::Path>,
    data: &std::path::Path,
    [http, grpc, query]: [u16; 3],
) -> Command {
    let mut command = causeway();
    if let Some(config) = config {
        command.arg("--config").arg(config);
    }
    command.arg("up").arg("--data-dir").arg(data).args([
        "--collector-http-addr",
        &format!("127.0.0.1:{http}"),
        "--collector-grpc-addr",
        &format!("127.0.0.1:{grpc}"),
        "--query-addr",
        &format!("127.0.0.1:{query}"),
    ]);
    command
}

/// `causeway demo` on a data directory of its own, every listener on a
/// free port, none of the caller's `CAUSEWAY_*` variables nor its log
/// filter; output captured.
pub fn demo_command(data: &std::path::Path) -> Command {
    let mut command = causeway();
    command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .arg("demo")
        .env("CAUSEWAY_DATA_DIR", data)
        .env("CAUSEWAY_COLLECTOR_HTTP_ADDR", "127.0.0.1:0")
        .env("CAUSEWAY_COLLECTOR_GRPC_ADDR", "127.0.0.1:0")
        .env("CAUSEWAY_QUERY_ADDR", "127.0.0.1:0")
        .env_remove("RUST_LOG");
    command
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

/// `causeway up` and `causeway agent` as children over one temporary
/// directory: the collector, query and agent status ports, the data
/// directory, the agent's checkpoint and a `causeway.toml` both read.
pub struct Stack {
    pub dir: tempfile::TempDir,
    pub http: u16,
    pub grpc: u16,
    pub query: u16,
    pub status: u16,
}

impl Stack {
    /// A fresh directory whose `causeway.toml` has `agent` (lines of the
    /// `[agent]` section) and the agent's status on a port of its own.
    pub fn new(agent: &str) -> Stack {
        let dir = tempfile::tempdir().unwrap();
        let status = free_port();
        std::fs::write(
            dir.path().join("causeway.toml"),
            format!("[agent]\nstatus_addr = \"127.0.0.1:{status}\"\n{agent}"),
        )
        .unwrap();
        Stack {
            dir,
            http: free_port(),
            grpc: free_port(),
            query: free_port(),
            status,
        }
    }

    /// A counter of the running agent's `/metrics`, by its full name.
    pub fn agent_counter(&self, name: &str) -> f64 {
        let text = blocking_client()
            .get(format!("http://127.0.0.1:{}/metrics", self.status))
            .send()
            .unwrap()
            .text()
            .unwrap();
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no {name} in the agent's metrics:\n{text}"))
            .trim()
            .parse()
            .unwrap()
    }

    pub fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }

    pub fn collector_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http)
    }

    pub fn query_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.query)
    }

    /// `causeway up` (collector and query in one process), once it answers.
    pub fn up(&self) -> Daemon {
        let child = up_command(
            Some(&self.path("causeway.toml")),
            &self.path("data"),
            [self.http, self.grpc, self.query],
        )
        .spawn()
        .unwrap();
        let daemon = Daemon(child);
        wait_healthy(&self.collector_url());
        wait_healthy(&self.query_url());
        daemon
    }

    /// `causeway agent` on `paths` (files or glob patterns, expanded by
    /// the agent), its checkpoint in the directory.
    pub fn agent(&self, paths: &[&str]) -> Daemon {
        let child = causeway()
            .arg("--config")
            .arg(self.path("causeway.toml"))
            .arg("agent")
            .args(paths)
            .arg("--collector-url")
            .arg(self.collector_url())
            .arg("--checkpoint")
            .arg(self.path("agent/checkpoint.json"))
            .spawn()
            .unwrap();
        Daemon(child)
    }
}

/// Waits (60 s at most) until `url` answers `/healthz`.
pub fn wait_healthy(url: &str) {
    let client = blocking_client();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::time::Instant::now() < deadline {
        if let Ok(response) = client.get(format!("{url}/healthz")).send()
            && response.status().is_success()
        {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("{url} never answered /healthz");
}

pub fn blocking_client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .unwrap()
}

/// Lines per correlation id in [`numbered_line`]: each group is one flow.
pub const GROUP: usize = 100;

/// The correlation id of line `n`'s group.
pub fn group_key(tag: &str, n: usize) -> String {
    format!("{tag}-{}", n / GROUP)
}

/// The message of line `n`.
pub fn numbered_message(n: usize) -> String {
    format!("line-{n}")
}

/// Line `n` as a service writes it, newline included: a JSON record of
/// service `writer`, in its group's flow.
pub fn numbered_line(tag: &str, n: usize) -> String {
    format!(
        "{{\"message\":\"{}\",\"correlation_id\":\"{}\",\"service\":\"writer\",\"level\":\"info\"}}\n",
        numbered_message(n),
        group_key(tag, n)
    )
}

/// `GET /api/v1/search?q=..&limit=..` on the query API at `query`.
pub fn search_url(query: &str, q: &str, limit: usize) -> reqwest::Url {
    reqwest::Url::parse_with_params(
        &format!("{query}/api/v1/search"),
        &[("q", q), ("limit", &limit.to_string())],
    )
    .unwrap()
}

/// How many records match the search `q` (`limit=0`: the total only).
pub fn search_total(client: &reqwest::blocking::Client, query: &str, q: &str) -> usize {
    let response = client.get(search_url(query, q, 0)).send().unwrap();
    assert!(response.status().is_success(), "{q}: {}", response.status());
    let hits: causeway_model::SearchHits = response.json().unwrap();
    hits.total
}

/// The records matching `q`, at most `limit`, all of them (not cut by the
/// response's budget).
pub fn search(
    client: &reqwest::blocking::Client,
    query: &str,
    q: &str,
    limit: usize,
) -> Vec<causeway_model::Record> {
    let response = client.get(search_url(query, q, limit)).send().unwrap();
    assert!(response.status().is_success(), "{q}: {}", response.status());
    let hits: causeway_model::SearchHits = response.json().unwrap();
    assert!(!hits.truncated, "{q}: the hits are cut");
    assert_eq!(hits.hits.len(), hits.total, "{q}: hits past the limit");
    hits.hits
}

/// A flow's record count (duplicates included) and its messages, sorted.
pub fn flow_messages(
    client: &reqwest::blocking::Client,
    query: &str,
    key: &str,
) -> (usize, Vec<String>) {
    let response = client
        .get(format!("{query}/api/v1/flows/{key}"))
        .send()
        .unwrap();
    if response.status() == reqwest::StatusCode::NOT_FOUND {
        return (0, Vec::new());
    }
    assert!(
        response.status().is_success(),
        "{key}: {}",
        response.status()
    );
    let flow: causeway_model::FlowDetail = response.json().unwrap();
    assert!(!flow.truncated, "{key}: the flow is cut");
    let mut messages: Vec<String> = flow.records.into_iter().map(|r| r.message).collect();
    messages.sort();
    (flow.summary.record_count, messages)
}

/// Waits (120 s at most) until `service:writer` counts `written` records,
/// then one more commit interval for a duplicate to show, then checks
/// that every line `0..written` of [`numbered_line`] is in its group's
/// flow exactly once, by count and by content.
pub fn assert_every_line_once(stack: &Stack, tag: &str, written: usize) {
    let client = blocking_client();
    let query = stack.query_url();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let total = search_total(&client, &query, "service:writer");
        if total >= written {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{total} of {written} lines searchable after 120 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    std::thread::sleep(std::time::Duration::from_millis(1_500));
    assert_eq!(
        search_total(&client, &query, "service:writer"),
        written,
        "records of the writer's lines"
    );
    let mut groups: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for n in 0..written {
        groups
            .entry(group_key(tag, n))
            .or_default()
            .push(numbered_message(n));
    }
    for (key, mut messages) in groups {
        messages.sort();
        let (count, found) = flow_messages(&client, &query, &key);
        assert_eq!(count, messages.len(), "{key}: records in the flow");
        assert_eq!(found, messages, "{key}: the lines, once each");
    }
}
