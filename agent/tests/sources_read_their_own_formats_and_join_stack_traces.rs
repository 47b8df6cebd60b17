//! `[[agent.sources]]`: each source reads its files in its own format,
//! with its own service and start; a multiline source ships a stack trace
//! as one record, and never acknowledges a record still being joined, so a
//! restart reads it again whole.

mod common;

use causeway_agent::{Format, ParseSpec, ReadFrom, SourceConfig};
use common::{
    Agent, Collector, Workdir, append, checkpoint_offset, checkpoint_stream, config, file_len,
    line, wait_until,
};

const PATTERN: &str = r"(?P<timestamp>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+) (?P<level>\w+) \[(?P<logger>[^\]]+)\] correlation_id=(?P<correlation_id>\S+) (?P<message>.*)";
const START: &str = r"^\d{4}-\d\d-\d\d ";

fn python_text_source(path: &std::path::Path) -> SourceConfig {
    SourceConfig {
        paths: vec![path.to_path_buf()],
        parse: ParseSpec {
            format: Format::Regex,
            pattern: Some(PATTERN.to_owned()),
            multiline_start: Some(START.to_owned()),
            // Long enough never to flush a record in these tests: only
            // the next record's first line completes one.
            multiline_timeout_ms: 600_000,
            ..ParseSpec::default()
        },
        service: Some("orders-py".to_owned()),
        ..SourceConfig::default()
    }
}

fn entry(id: u32, message: &str) -> String {
    format!("2026-11-28 01:16:29,439 ERROR [orders] correlation_id=order-{id} {message}\n")
}

const TRACE: &str =
    "Traceback (most recent call last):\n  File \"t.py\", line 6, in <module>\n    {}[\"sku\"]\n";
const TRACE_END: &str = "KeyError: 'sku'\n";

#[tokio::test]
async fn a_stack_trace_is_one_record_and_is_acknowledged_only_once_complete() {
    let work = Workdir::new();
    let collector = Collector::start().await;
    let text_log = work.path("orders.txt");
    let marker = work.path("marker.log");
    let logfmt = work.path("billing.log");
    append(&text_log, &entry(1, "order placed"));
    let first_len = file_len(&text_log);
    append(&text_log, &entry(2, "order rejected"));
    append(&text_log, TRACE);
    append(
        &logfmt,
        "level=warn msg=\"card declined\" correlation_id=order-2\n",
    );

    let mut settings = config(&collector, &work.checkpoint(), &[&marker]);
    settings.sources.push(python_text_source(&text_log));
    settings.sources.push(SourceConfig {
        paths: vec![logfmt.clone()],
        parse: ParseSpec {
            format: Format::Logfmt,
            ..ParseSpec::default()
        },
        service: Some("billing".to_owned()),
        ..SourceConfig::default()
    });
    let agent = Agent::start(settings.clone());
    // Written after the half trace: a poll that ships it has read the
    // trace as it is now, unfinished.
    append(&marker, &line("marker-1"));
    wait_until("the marker arrives", || {
        collector.messages().iter().any(|m| m == "marker-1")
    })
    .await;
    wait_until("the logfmt line arrives", || {
        collector.records().iter().any(|r| r.service == "billing")
    })
    .await;
    wait_until("the first record is checkpointed", || {
        checkpoint_offset(&work.checkpoint(), &text_log).is_some_and(|o| o >= first_len)
    })
    .await;
    let records = collector.records();
    let python: Vec<_> = records
        .iter()
        .filter(|r| r.service == "orders-py")
        .collect();
    assert_eq!(python.len(), 1, "only the complete record went: {python:?}");
    assert_eq!(python[0].message, "order placed");
    assert_eq!(
        checkpoint_offset(&work.checkpoint(), &text_log),
        Some(first_len),
        "the checkpoint stops at the start of the record still being joined"
    );
    let billing = records.iter().find(|r| r.service == "billing").unwrap();
    assert_eq!(billing.message, "card declined");
    assert_eq!(
        billing.correlation_id.as_ref().map(|c| c.as_str()),
        Some("order-2")
    );

    // The agent stops with the trace half written; more of it, and the
    // next record, are written while it is down.
    agent.stop().await;
    append(&text_log, TRACE_END);
    append(&text_log, &entry(3, "order shipped"));
    let complete_len = file_len(&text_log);
    let agent = Agent::start(settings);
    append(&marker, &line("marker-2"));
    wait_until("the joined trace arrives", || {
        collector
            .records()
            .iter()
            .any(|r| r.message.contains("KeyError"))
    })
    .await;
    wait_until("the marker arrives", || {
        collector.messages().iter().any(|m| m == "marker-2")
    })
    .await;
    agent.stop().await;

    let records = collector.records();
    let python: Vec<_> = records
        .iter()
        .filter(|r| r.service == "orders-py")
        .collect();
    assert_eq!(python.len(), 2, "{python:?}");
    let trace = python[1];
    assert_eq!(
        trace.message,
        format!("order rejected\n{TRACE}KeyError: 'sku'"),
        "the record read again whole, its lines joined"
    );
    assert_eq!(
        trace.correlation_id.as_ref().map(|c| c.as_str()),
        Some("order-2")
    );
    // "order shipped" is itself still open to continuation lines: its
    // record waits, and the checkpoint stops at its start.
    assert!(python.iter().all(|r| r.message != "order shipped"));
    assert_eq!(
        checkpoint_offset(&work.checkpoint(), &text_log),
        Some(complete_len - entry(3, "order shipped").len() as u64)
    );
}

#[tokio::test]
async fn a_source_read_from_the_end_skips_what_its_files_held_at_start_but_not_new_files() {
    let work = Workdir::new();
    let collector = Collector::start().await;
    let dir = work.path("logs");
    std::fs::create_dir_all(&dir).unwrap();
    let old = dir.join("old.log");
    append(&old, &line("before-start-1"));
    append(&old, &line("before-start-2"));
    append(&old, "{\"message\":\"unfinished");

    let mut settings = config(&collector, &work.checkpoint(), &[]);
    settings.sources.push(SourceConfig {
        paths: vec![dir.clone()],
        read_from: ReadFrom::End,
        ..SourceConfig::default()
    });
    let agent = Agent::start(settings);
    // The first look is over once old.log's stream is checkpointed: a file
    // created from now on is new.
    wait_until("old.log is followed", || {
        checkpoint_stream(&work.checkpoint(), &old).is_some()
    })
    .await;
    let marker = dir.join("new.log");
    append(&marker, &line("new-file-1"));
    wait_until("the new file's line arrives", || {
        collector.messages().iter().any(|m| m == "new-file-1")
    })
    .await;
    append(&old, "\"}\n");
    append(&old, &line("after-start"));
    wait_until("the line written after start arrives", || {
        collector.messages().iter().any(|m| m == "after-start")
    })
    .await;
    agent.stop().await;

    let mut messages = collector.messages();
    messages.sort();
    assert_eq!(
        messages,
        vec!["after-start", "new-file-1", "unfinished"],
        "lines complete at start were skipped; the line completed after it was not"
    );
}
