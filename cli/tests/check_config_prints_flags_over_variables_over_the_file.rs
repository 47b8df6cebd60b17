//! The real binary: `causeway check-config` layers the file, `CAUSEWAY_*`
//! variables and flags in that order, prints every section, refuses an
//! unknown key with its line, refuses a wide listener address however
//! it was set unless its daemon has tokens, and never prints a token.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

use std::io::Read;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// `causeway ARGS` with only the given `CAUSEWAY_*` variables set. Every
/// command here must exit by itself: one that is still running after 30 s
/// (a daemon that started instead of refusing) is killed and fails the test.
fn causeway(args: &[&str], vars: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_causeway"));
    for (name, _) in std::env::vars() {
        if name.starts_with("CAUSEWAY_") {
            command.env_remove(name);
        }
    }
    let mut child = command
        .args(args)
        .envs(vars.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            pipe.read_to_end(&mut bytes).map(|_| bytes)
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("causeway {args:?} was still running after 30 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: stdout.join().unwrap().unwrap(),
        stderr: stderr.join().unwrap().unwrap(),
    }
}

fn write(dir: &Path, text: &str) -> String {
    let path = dir.join("causeway.toml");
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

fn line<'a>(stdout: &'a str, key: &str) -> &'a str {
    stdout
        .lines()
        .find(|l| l.starts_with(&format!("{key} = ")))
        .unwrap_or_else(|| panic!("{key} not printed:\n{stdout}"))
}

#[test]
fn flags_win_over_variables_which_win_over_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "[query]\naddr = \"127.0.0.1:1001\"\nmax_flows = 7\n\n\
         [tui]\nquery_url = \"http://127.0.0.1:1001\"\n\n\
         [collector]\nhttp_addr = \"127.0.0.1:1002\"\n",
    );
    let output = causeway(
        &["check-config", &file, "--query-addr", "127.0.0.1:3001"],
        &[
            ("CAUSEWAY_QUERY_ADDR", "127.0.0.1:2001"),
            ("CAUSEWAY_QUERY_URL", "http://127.0.0.1:2001"),
        ],
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // flag > variable > file
    assert_eq!(line(&stdout, "addr"), "addr = \"127.0.0.1:3001\"");
    // variable > file
    assert_eq!(
        line(&stdout, "query_url"),
        "query_url = \"http://127.0.0.1:2001\""
    );
    // file > default
    assert_eq!(line(&stdout, "http_addr"), "http_addr = \"127.0.0.1:1002\"");
    assert_eq!(line(&stdout, "max_flows"), "max_flows = 7");
    // default
    assert_eq!(
        line(&stdout, "refresh_interval_ms"),
        "refresh_interval_ms = 2000"
    );
    for section in [
        "[collector]",
        "[collector.http]",
        "[query]",
        "[query.http]",
        "[agent]",
        "[tui]",
        "[demo]",
    ] {
        assert!(stdout.lines().any(|l| l == section), "{section}:\n{stdout}");
    }
}

#[test]
fn the_config_file_is_named_by_the_variable_too() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "[demo]\norders = 42\n");
    let output = causeway(&["check-config"], &[("CAUSEWAY_CONFIG", &file)]);
    assert!(output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(line(&stdout, "orders"), "orders = 42");
}

#[test]
fn an_unknown_key_is_refused_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "[agent]\npaths = []\nbatch_max_record = 5\n");
    let output = causeway(&["--config", &file, "agent", "/tmp"], &[]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("batch_max_record"), "{stderr}");
    assert!(stderr.contains("line 3"), "{stderr}");
    assert!(stderr.contains(&file), "{stderr}");
}

#[test]
fn a_wide_grpc_address_is_refused_from_the_variable_and_from_the_file() {
    let output = causeway(
        &["check-config"],
        &[("CAUSEWAY_COLLECTOR_GRPC_ADDR", "0.0.0.0:4317")],
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("collector.grpc_addr"), "{stderr}");
    assert!(stderr.contains("only loopback"), "{stderr}");

    // `causeway collector` refuses it before binding anything.
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "[collector]\ngrpc_addr = \"0.0.0.0:4317\"\n");
    let output = causeway(
        &[
            "--config",
            &file,
            "collector",
            "--collector-http-addr",
            "127.0.0.1:0",
        ],
        &[("CAUSEWAY_DATA_DIR", dir.path().to_str().unwrap())],
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("collector.grpc_addr"), "{stderr}");
    assert!(!dir.path().join("index").exists(), "nothing may start");
}

#[test]
fn a_wide_address_without_tokens_is_refused_naming_the_tokens_setting() {
    let output = causeway(
        &["check-config"],
        &[("CAUSEWAY_QUERY_ADDR", "0.0.0.0:8686")],
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("query.addr"), "{stderr}");
    assert!(stderr.contains("query.tokens"), "{stderr}");
    assert!(stderr.contains("CAUSEWAY_QUERY_TOKENS"), "{stderr}");
}

#[test]
fn a_wide_address_with_tokens_is_accepted_and_the_tokens_are_not_printed() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "[collector]\nhttp_addr = \"0.0.0.0:4318\"\ngrpc_addr = \"0.0.0.0:4317\"\n\
         tokens = [\"file-token-1234\"]\n",
    );
    let output = causeway(
        &["check-config", &file],
        &[
            ("CAUSEWAY_QUERY_ADDR", "0.0.0.0:8686"),
            ("CAUSEWAY_QUERY_TOKENS", "old-query-token,new-query-token"),
            ("CAUSEWAY_QUERY_READ_TOKENS", "reader-token"),
            ("CAUSEWAY_TUI_TOKEN", "reader-token"),
        ],
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}{stderr}");
    assert_eq!(line(&stdout, "http_addr"), "http_addr = \"0.0.0.0:4318\"");
    assert_eq!(line(&stdout, "addr"), "addr = \"0.0.0.0:8686\"");
    // Two query tokens from the variable, both redacted.
    assert_eq!(
        line(&stdout, "tokens"),
        "tokens = [\"<redacted>\"]",
        "the collector's one token comes first"
    );
    assert!(
        stdout.contains("tokens = [\"<redacted>\", \"<redacted>\"]"),
        "{stdout}"
    );
    for secret in ["file-token", "query-token", "reader-token"] {
        assert!(!stdout.contains(secret), "{stdout}");
        assert!(!stderr.contains(secret), "{stderr}");
    }
}
