//! Lines written to a followed file reach the collector as records, once
//! they are complete, and the checkpoint follows the acknowledgements.

mod common;

use causeway_model::wire::{CONTENT_TYPE, MAX_RAW_LEN};
use causeway_model::{Level, Stage};
use common::{
    Agent, Collector, Workdir, append, checkpoint_offset, config, file_len, line, wait_until,
};
use serde_json::json;

#[tokio::test]
async fn appended_lines_arrive_as_decoded_records_and_the_checkpoint_reaches_the_file_end() {
    let work = Workdir::new();
    let collector = Collector::start().await;
    let log = work.path("orders.log");
    append(
        &log,
        concat!(
            r#"{"timestamp":"2026-11-22T12:00:00.000001Z","level":"WARN","message":"order placed","stage":"published","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","correlation_id":"order-1234","event_id":"ev-1","event_type":"OrderPlaced","destination":"orders"}"#,
            "\n"
        ),
    );
    let mut config = config(&collector, &work.checkpoint(), &[&log]);
    config.source = "agent@test".into();
    let agent = Agent::start(config);

    wait_until("the first line arrives", || collector.records().len() == 1).await;
    append(
        &log,
        concat!(
            r#"{"time":"2026-11-22T13:00:00+01:00","msg":"payment taken","severity":"error","service.name":"payment","amount":125}"#,
            "\n",
            r#"{"message":"no timestamp"}"#,
            "\n"
        ),
    );
    wait_until("all three lines arrive", || collector.records().len() == 3).await;

    let batches = collector.batches();
    assert!(
        batches
            .iter()
            .all(|(header, _)| header.source == "agent@test")
    );
    assert!(collector.content_types().iter().all(|t| t == CONTENT_TYPE));
    let records = collector.records();

    let placed = &records[0];
    assert_eq!(placed.message, "order placed");
    assert_eq!(
        placed.service, "orders",
        "service falls back to the file stem"
    );
    assert_eq!(placed.level, Level::Warn);
    assert_eq!(placed.stage, Stage::Published);
    assert_eq!(placed.timestamp.to_string(), "2026-11-22T12:00:00.000001Z");
    assert_eq!(
        placed.trace_id.map(|t| t.to_string()).as_deref(),
        Some("4bf92f3577b34da6a3ce929d0e0e4736")
    );
    assert_eq!(
        placed.correlation_id.as_ref().map(|c| c.as_str()),
        Some("order-1234")
    );
    assert_eq!(placed.event_type.as_deref(), Some("OrderPlaced"));
    assert_eq!(placed.destination.as_deref(), Some("orders"));

    let payment = &records[1];
    assert_eq!(payment.message, "payment taken");
    assert_eq!(payment.service, "payment");
    assert_eq!(payment.level, Level::Error);
    assert_eq!(payment.timestamp.to_string(), "2026-11-22T12:00:00.000000Z");
    assert_eq!(payment.attributes.get("amount"), Some(&json!(125)));

    assert_eq!(records[2].message, "no timestamp");
    assert!(records.iter().all(|r| r.malformed.is_none()));

    let len = file_len(&log);
    wait_until("the checkpoint reaches the end of the file", || {
        checkpoint_offset(&work.checkpoint(), &log) == Some(len)
    })
    .await;
    agent.stop().await;
    assert_eq!(checkpoint_offset(&work.checkpoint(), &log), Some(len));
}

#[tokio::test]
async fn a_partial_last_line_is_not_shipped_until_its_newline_is_written() {
    let work = Workdir::new();
    let collector = Collector::start().await;
    let log = work.path("app.log");
    let first = line("complete");
    append(&log, &format!("{first}{{\"message\":\"half"));
    let agent = Agent::start(config(&collector, &work.checkpoint(), &[&log]));

    // The first line and the partial one were written together: the poll
    // that read the first line saw the partial line too.
    let acked = first.len() as u64;
    wait_until("the complete line is acknowledged", || {
        checkpoint_offset(&work.checkpoint(), &log) == Some(acked)
    })
    .await;
    assert_eq!(collector.messages(), vec!["complete"]);

    append(&log, " written\"}\n");
    wait_until("the finished line arrives", || {
        collector.records().len() == 2
    })
    .await;
    let records = collector.records();
    assert_eq!(records[1].message, "half written");
    assert!(records[1].malformed.is_none());
    let len = file_len(&log);
    wait_until("the checkpoint reaches the end of the file", || {
        checkpoint_offset(&work.checkpoint(), &log) == Some(len)
    })
    .await;
    agent.stop().await;
}

#[tokio::test]
async fn bad_and_oversized_lines_arrive_as_records_with_reason_and_raw_text_or_their_fields() {
    let work = Workdir::new();
    let collector = Collector::start().await;
    let log = work.path("app.log");
    let oversized = format!(
        "{{\"message\":\"{}\",\"correlation_id\":\"order-7\"}}",
        "x".repeat(4_000)
    );
    let huge = "y".repeat(MAX_RAW_LEN * 2);
    append(
        &log,
        &format!(
            "this is not json\n[1,2,3]\n{oversized}\n{}after\n",
            line("fine")
        ),
    );
    let mut config = config(&collector, &work.checkpoint(), &[&log]);
    config.max_line_bytes = 1_024;
    config.default_service = Some("checkout".into());
    let agent = Agent::start(config);

    wait_until("five records arrive", || collector.records().len() == 5).await;
    let records = collector.records();

    let not_json = records[0].malformed.as_ref().expect("kept as malformed");
    assert_eq!(not_json.raw, "this is not json");
    assert!(
        not_json.reason.starts_with("not JSON"),
        "{}",
        not_json.reason
    );
    assert_eq!(records[0].service, "checkout");

    let not_object = records[1].malformed.as_ref().expect("kept as malformed");
    assert_eq!(not_object.raw, "[1,2,3]");
    assert_eq!(not_object.reason, "not a JSON object but an array");

    // JSON over the limit keeps its fields, its long values cut, and says
    // it was cut.
    let cut = &records[2];
    assert!(cut.malformed.is_none(), "{cut:?}");
    let (kept, marker) = cut
        .message
        .split_once("…")
        .unwrap_or_else(|| panic!("{cut:?}"));
    assert!(
        !kept.is_empty() && kept.bytes().all(|b| b == b'x'),
        "{kept}"
    );
    assert_eq!(marker, format!("[cut {} bytes]", 4_000 - kept.len()));
    assert!(kept.len() <= 1_024 / 4, "at most a quarter of the limit");
    assert_eq!(cut.correlation_id.as_ref().unwrap().as_str(), "order-7");
    assert_eq!(
        cut.attributes["line.cut"],
        format!(
            "line of {} bytes exceeds max_line_bytes 1024; {} bytes of long values cut",
            oversized.len(),
            4_000 - kept.len()
        )
    );

    // The reader found the next line after the oversized one.
    assert_eq!(records[3].message, "fine");
    assert!(records[3].malformed.is_none());
    assert_eq!(records[4].malformed.as_ref().unwrap().raw, "after");

    // A line far beyond the raw-text limit is cut to it.
    append(&log, &format!("{huge}\n"));
    wait_until("the huge line arrives", || collector.records().len() == 6).await;
    let records = collector.records();
    let malformed = records[5].malformed.as_ref().unwrap();
    assert!(
        malformed
            .reason
            .starts_with("line exceeds 1024 bytes; not JSON"),
        "{}",
        malformed.reason
    );
    let raw = &malformed.raw;
    assert_eq!(
        raw.as_str(),
        format!("{}…[cut {} bytes]", &huge[..1_024], huge.len() - 1_024)
    );
    agent.stop().await;
}
