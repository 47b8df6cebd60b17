//! Exactly once from a log file to the index around what happens to real
//! log files, with real processes: a writer thread appends numbered JSON
//! lines to `app.log` while the `causeway agent` binary tails `app.log*`
//! into `causeway up`, and meanwhile the file is rotated by rename (with
//! late writes into the renamed file), rotated by copytruncate, truncated
//! and rewritten, the collector is killed and kept down for 20 s, or
//! 10,000 malformed, oversized and non-UTF-8 lines are mixed in. In every
//! case each line written is in the query API exactly once: the flows of
//! its correlation id hold each message once, and a search counts as many
//! records as lines were written; the agent counted no byte lost to a
//! truncation and dead-lettered nothing. Copytruncate copies right after a
//! burst of lines, so the agent must read them from the copy (following
//! only `app.log`, a third of the lines never arrive); the truncated file
//! is rewritten with the same first line each time. (An agent killed
//! mid-stream is `an_agent_killed_mid_stream_ships_every_line_exactly_once`.)

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

mod common;

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{
    Daemon, GROUP, Stack, assert_every_line_once, blocking_client, numbered_line, search,
    search_total,
};

/// Small batches and quick polls, so a disruption lands between many.
const CONFIG: &str = "batch_max_records = 100\npoll_interval_ms = 20\n";

/// A writer appending to the log through a handle the test can take (to
/// reopen the file as a service does after a rotation, to hold writes
/// for a moment, or to write a burst just before a disruption).
struct Writer {
    out: Arc<Mutex<Out>>,
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<usize>,
}

/// The writer's file and its next step.
struct Out {
    file: File,
    next: usize,
    step: Box<dyn FnMut(usize) -> Vec<u8> + Send>,
}

impl Out {
    /// Writes the next `steps` steps.
    fn write(&mut self, steps: usize) {
        for _ in 0..steps {
            let bytes = (self.step)(self.next);
            self.file.write_all(&bytes).unwrap();
            self.next += 1;
        }
    }
}

fn open_append(path: &Path) -> File {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap()
}

impl Writer {
    /// Writes step `n`'s bytes (`step(n)`), `per_tick` steps every 5 ms,
    /// at least `min` steps and until stopped.
    fn start(
        path: &Path,
        per_tick: usize,
        min: usize,
        step: impl FnMut(usize) -> Vec<u8> + Send + 'static,
    ) -> Writer {
        let out = Arc::new(Mutex::new(Out {
            file: open_append(path),
            next: 0,
            step: Box::new(step),
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (out, stop) = (out.clone(), stop.clone());
            std::thread::spawn(move || {
                loop {
                    {
                        let mut out = out.lock().unwrap();
                        if out.next >= min && stop.load(Ordering::Relaxed) {
                            return out.next;
                        }
                        out.write(per_tick);
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
            })
        };
        Writer { out, stop, thread }
    }

    /// Stops it, and says how many steps it wrote.
    fn finish(self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

fn numbered(tag: &'static str) -> impl FnMut(usize) -> Vec<u8> + Send + 'static {
    move |n| numbered_line(tag, n).into_bytes()
}

/// `name.k` -> `name.(k+1)`, oldest first, as logrotate shifts them.
fn shift_rotated(log: &Path, keep: usize) {
    for k in (1..keep).rev() {
        let from = rotated(log, k);
        if from.exists() {
            std::fs::rename(&from, rotated(log, k + 1)).unwrap();
        }
    }
}

fn rotated(log: &Path, k: usize) -> PathBuf {
    PathBuf::from(format!("{}.{k}", log.display()))
}

/// The collector, the agent on `app.log*` and the log's path.
fn start(config: &str) -> (Stack, Daemon, Daemon, PathBuf) {
    let stack = Stack::new(config);
    let log = stack.path("app.log");
    std::fs::write(&log, "").unwrap();
    let up = stack.up();
    let pattern = format!("{}*", log.display());
    let agent = stack.agent(&[&pattern]);
    (stack, up, agent, log)
}

/// The agent counted no byte a truncation took unread, and set no record
/// aside.
fn assert_nothing_lost_or_set_aside(stack: &Stack) {
    assert_eq!(
        stack.agent_counter("causeway_agent_truncation_lost_bytes_total"),
        0.0,
        "bytes a truncation took before the agent read them"
    );
    assert_eq!(
        stack.agent_counter("causeway_agent_dead_lettered_total"),
        0.0,
        "records dead-lettered"
    );
}

#[test]
fn rename_rotation_with_late_writes_loses_and_repeats_no_line() {
    let (stack, up, agent, log) = start(CONFIG);
    let writer = Writer::start(&log, 5, 3_000, numbered("renamed"));
    for _ in 0..5 {
        std::thread::sleep(Duration::from_millis(400));
        shift_rotated(&log, 4);
        std::fs::rename(&log, rotated(&log, 1)).unwrap();
        // The service goes on writing into the renamed file a moment,
        // then reopens its log (a new file under the old name).
        std::thread::sleep(Duration::from_millis(50));
        writer.out.lock().unwrap().file = open_append(&log);
    }
    let written = writer.finish();
    assert_every_line_once(&stack, "renamed", written);
    assert_nothing_lost_or_set_aside(&stack);
    drop((agent, up));
}

#[test]
fn copytruncate_rotation_loses_and_repeats_no_line() {
    let (stack, up, agent, log) = start(CONFIG);
    let writer = Writer::start(&log, 5, 3_000, numbered("copied"));
    for _ in 0..5 {
        std::thread::sleep(Duration::from_millis(400));
        shift_rotated(&log, 4);
        // A burst the agent cannot have read yet, then copy and truncation
        // with no write between (what logrotate loses there is lost to any
        // reader): the burst, and whatever else the agent had not read, is
        // only in the copy.
        let mut out = writer.out.lock().unwrap();
        out.write(200);
        std::fs::copy(&log, rotated(&log, 1)).unwrap();
        out.file.set_len(0).unwrap();
    }
    let written = writer.finish();
    assert_every_line_once(&stack, "copied", written);
    assert_nothing_lost_or_set_aside(&stack);
    drop((agent, up));
}

#[test]
fn a_collector_down_for_twenty_seconds_while_lines_are_written_loses_and_repeats_none() {
    let (stack, up, agent, log) = start(CONFIG);
    let writer = Writer::start(&log, 1, 1_000, numbered("collector-down"));
    std::thread::sleep(Duration::from_millis(1_000));
    up.kill();
    let back = std::time::Instant::now() + Duration::from_secs(20);
    // The agent notices, and says so, while the writer goes on.
    let client = blocking_client();
    let status = format!("http://127.0.0.1:{}/status", stack.status);
    loop {
        let status: serde_json::Value = client.get(&status).send().unwrap().json().unwrap();
        if status["collector_away"] == serde_json::Value::Bool(true) {
            break;
        }
        assert!(
            std::time::Instant::now() < back,
            "the agent's status never said the collector is away: {status}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(back.saturating_duration_since(std::time::Instant::now()));
    let up = stack.up();
    std::thread::sleep(Duration::from_millis(1_000));
    let written = writer.finish();
    assert_every_line_once(&stack, "collector-down", written);
    assert_nothing_lost_or_set_aside(&stack);
    drop((agent, up));
}

/// The first line of each content of the truncated log, the same each
/// time, so that a rewritten file starts as the one before did.
const HEADER: &str = "{\"message\":\"log opened\",\"service\":\"header\"}\n";

#[test]
fn a_file_truncated_and_rewritten_in_place_loses_and_repeats_no_line() {
    const TRUNCATIONS: usize = 4;
    let (stack, up, agent, log) = start(CONFIG);
    std::fs::write(&log, HEADER).unwrap();
    let client = blocking_client();
    let writer = Writer::start(&log, 5, 3_000, numbered("rewritten"));
    for _ in 0..TRUNCATIONS {
        std::thread::sleep(Duration::from_millis(400));
        // The service truncates its log once the agent shipped all of it
        // (what a truncation takes before any reader saw it is lost, and
        // counted as lost) and writes it again from the start, the same
        // first line first.
        let mut out = writer.out.lock().unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while search_total(&client, &stack.query_url(), "service:writer") < out.next {
            assert!(
                std::time::Instant::now() < deadline,
                "the agent did not ship the log's {} lines in 60 s",
                out.next
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        out.file.set_len(0).unwrap();
        out.file.write_all(HEADER.as_bytes()).unwrap();
    }
    let written = writer.finish();
    assert_every_line_once(&stack, "rewritten", written);
    assert_eq!(
        search_total(&client, &stack.query_url(), "service:header"),
        TRUNCATIONS + 1,
        "the first line of each content, once each"
    );
    assert_nothing_lost_or_set_aside(&stack);
    drop((agent, up));
}

/// Bad lines per good line in the mixed case.
const BAD_PER_LINE: usize = 5;
/// Good lines in the mixed case.
const GOOD_LINES: usize = 2_000;
const BAD_LINES: usize = GOOD_LINES * BAD_PER_LINE;
const MAX_LINE_BYTES: usize = 1_024;

/// Bad line `b`, newline included: not JSON, JSON over the line limit,
/// not UTF-8, or not JSON and over the limit, by turns; its group's token
/// `zqg<group>` and its number `bad-<b>` in its first bytes (in the
/// message of the JSON one).
fn bad_line(b: usize) -> Vec<u8> {
    let head = format!("zqg{} bad-{b}", b / GROUP);
    let mut line = match b % 4 {
        0 => format!("{head} is not json").into_bytes(),
        1 => format!(
            "{{\"message\":\"{head}\",\"pad\":\"{}\"}}",
            "x".repeat(MAX_LINE_BYTES)
        )
        .into_bytes(),
        2 => [head.as_bytes(), b" \xff\xfe\xc3( half a character"].concat(),
        _ => format!("{head} {}", "y".repeat(MAX_LINE_BYTES)).into_bytes(),
    };
    line.push(b'\n');
    line
}

#[test]
fn ten_thousand_malformed_oversized_and_non_utf8_lines_arrive_once_each_as_records() {
    let config = format!("{CONFIG}max_line_bytes = {MAX_LINE_BYTES}\n");
    let (stack, up, agent, log) = start(&config);
    let writer = Writer::start(&log, 5, GOOD_LINES, |n| {
        let mut bytes = numbered_line("mixed", n).into_bytes();
        for b in n * BAD_PER_LINE..(n + 1) * BAD_PER_LINE {
            bytes.extend(bad_line(b));
        }
        bytes
    });
    // Stops as soon as it wrote its lines.
    writer.stop.store(true, Ordering::Relaxed);
    let written = writer.finish();
    assert_eq!(written, GOOD_LINES);
    assert_every_line_once(&stack, "mixed", written);

    let client = blocking_client();
    let query = stack.query_url();
    assert_eq!(
        search_total(&client, &query, "malformed:true"),
        BAD_LINES / 4 * 3,
        "malformed records: all but the JSON over the limit"
    );
    let number = |text: &str| -> usize {
        text.split_once(" bad-")
            .and_then(|(_, rest)| rest.split(|c: char| !c.is_ascii_digit()).next())
            .unwrap()
            .parse()
            .unwrap()
    };
    for group in 0..BAD_LINES / GROUP {
        let hits = search(&client, &query, &format!("zqg{group}"), 1_000);
        let mut found: Vec<usize> = Vec::new();
        for record in hits {
            let Some(malformed) = record.malformed else {
                // JSON over the limit keeps its fields, its long value cut.
                let b = number(&record.message);
                assert_eq!(b % 4, 1, "{b}: only JSON is read past the limit");
                assert_eq!(record.message, format!("zqg{group} bad-{b}"));
                let pad = record.attributes["pad"].as_str().unwrap();
                assert!(
                    pad.starts_with("xxx") && pad.ends_with(" bytes]"),
                    "{b}: {pad}"
                );
                let note = record.attributes["line.cut"].as_str().unwrap();
                assert!(
                    note.starts_with(&format!(
                        "line of {} bytes exceeds max_line_bytes {MAX_LINE_BYTES}",
                        bad_line(b).len() - 1
                    )),
                    "{b}: {note}"
                );
                found.push(b);
                continue;
            };
            let raw = &malformed.raw;
            let b = number(raw);
            let line = bad_line(b);
            let line = &line[..line.len() - 1];
            match b % 4 {
                3 => {
                    assert!(
                        malformed
                            .reason
                            .starts_with(&format!("line exceeds {MAX_LINE_BYTES} bytes; not JSON")),
                        "{b}: {}",
                        malformed.reason
                    );
                    let kept = raw
                        .split_once('…')
                        .unwrap_or_else(|| panic!("{b}: {raw}"))
                        .0;
                    assert!(line.starts_with(kept.as_bytes()), "{b}: {raw}");
                    assert_eq!(
                        raw.strip_prefix(kept).unwrap(),
                        format!("…[cut {} bytes]", line.len() - kept.len()),
                        "{b}: the marker"
                    );
                }
                _ => {
                    assert_eq!(raw, &String::from_utf8_lossy(line), "{b}: the raw text");
                    assert!(
                        malformed.reason.starts_with("not JSON"),
                        "{b}: {}",
                        malformed.reason
                    );
                }
            }
            found.push(b);
        }
        found.sort_unstable();
        let expected: Vec<usize> = (group * GROUP..(group + 1) * GROUP).collect();
        assert_eq!(found, expected, "zqg{group}: the bad lines, once each");
    }
    assert_nothing_lost_or_set_aside(&stack);
    drop((agent, up));
}
