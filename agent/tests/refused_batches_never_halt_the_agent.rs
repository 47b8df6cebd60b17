//! A collector that refuses a batch for good never halts the agent: 413
//! splits the batch down to single records, a single record still refused
//! and a batch the collector cannot read (400) go to the dead-letter file
//! with the status and the collector's reason, and the agent moves on.
//! Bodies are gzipped, and sent plain to a collector that does not take
//! gzip.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers, like tests, report a failure by panicking"
)]

mod common;

use common::{
    Agent, Collector, Workdir, append, checkpoint_offset, config, file_len, line, wait_until,
};

fn dead_letters(work: &Workdir) -> Vec<serde_json::Value> {
    let path = work.path("state/checkpoint.dead-letter.ndjson");
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The message of a dead letter's line: the agent sends causeway's JSON
/// lines as they were written, and keeps them so when they are refused.
fn dead_message(dead: &serde_json::Value) -> String {
    let line: serde_json::Value = serde_json::from_str(dead["line"].as_str().unwrap()).unwrap();
    line["message"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_batch_too_large_is_sent_in_halves_and_a_single_record_too_large_is_dead_lettered() {
    let work = Workdir::new();
    let collector = Collector::start().await;
    collector.max_records(3);
    collector.too_large_when("HUGE");
    let log = work.path("app.log");
    for i in 1..=10 {
        append(&log, &line(&format!("line-{i}")));
        if i == 6 {
            append(&log, &line("HUGE"));
        }
    }
    let agent = Agent::start(config(&collector, &work.checkpoint(), &[&log]));
    let end = file_len(&log);
    wait_until("the checkpoint reaches the end of the file", || {
        checkpoint_offset(&work.checkpoint(), &log) == Some(end)
    })
    .await;
    append(&log, &line("after"));
    wait_until("a later line arrives", || {
        collector.messages().iter().any(|m| m == "after")
    })
    .await;
    agent.stop().await;

    let mut messages = collector.messages();
    messages.sort();
    let mut expected: Vec<String> = (1..=10).map(|i| format!("line-{i}")).collect();
    expected.push("after".to_owned());
    expected.sort();
    assert_eq!(messages, expected, "every line but the refused one, once");
    assert!(collector.batches().iter().all(|(_, r)| r.len() <= 3));
    let dead = dead_letters(&work);
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["status"], 413);
    assert_eq!(dead[0]["reason"], "batch too large");
    assert_eq!(dead_message(&dead[0]), "HUGE");
    assert_eq!(
        format!("{}\n", dead[0]["line"].as_str().unwrap()),
        line("HUGE")
    );
    let huge_end = (1..=6)
        .map(|i| line(&format!("line-{i}")).len())
        .sum::<usize>()
        + line("HUGE").len();
    assert_eq!(
        dead[0]["offset"], huge_end as u64,
        "its position: the end of its line"
    );
}

#[tokio::test]
async fn a_batch_the_collector_cannot_read_is_dead_lettered_and_the_agent_moves_on() {
    let work = Workdir::new();
    let collector = Collector::start().await;
    collector.unreadable_when("POISON");
    let log = work.path("app.log");
    append(&log, &line("before-1"));
    append(&log, &line("POISON"));
    append(&log, &line("before-3"));
    let agent = Agent::start(config(&collector, &work.checkpoint(), &[&log]));
    let end = file_len(&log);
    wait_until("the checkpoint passes the refused batch", || {
        checkpoint_offset(&work.checkpoint(), &log) == Some(end)
    })
    .await;
    append(&log, &line("after"));
    wait_until("a later line arrives", || {
        collector.messages().iter().any(|m| m == "after")
    })
    .await;
    agent.stop().await;

    assert_eq!(collector.messages(), vec!["after"]);
    let dead = dead_letters(&work);
    let kept: Vec<String> = dead.iter().map(dead_message).collect();
    assert_eq!(kept, vec!["before-1", "POISON", "before-3"]);
    assert!(dead.iter().all(|d| d["status"] == 400));
    assert!(
        dead.iter()
            .all(|d| d["reason"] == "cannot read this batch" && d["stream"].is_string())
    );
}

#[tokio::test]
async fn bodies_are_gzipped_and_sent_plain_to_a_collector_that_does_not_take_gzip() {
    let work = Workdir::new();
    let collector = Collector::start().await;
    let log = work.path("app.log");
    append(&log, &line("zipped"));
    let agent = Agent::start(config(&collector, &work.checkpoint(), &[&log]));
    wait_until("the line arrives", || {
        collector.messages() == vec!["zipped".to_owned()]
    })
    .await;
    assert_eq!(collector.encodings(), vec!["gzip"]);

    collector.refuse_gzip();
    append(&log, &line("plain-1"));
    wait_until("the line arrives", || collector.messages().len() == 2).await;
    append(&log, &line("plain-2"));
    wait_until("the line arrives", || collector.messages().len() == 3).await;
    agent.stop().await;
    assert_eq!(collector.messages(), vec!["zipped", "plain-1", "plain-2"]);
    assert_eq!(
        collector.encodings(),
        vec!["gzip", "gzip", "", ""],
        "one gzipped body refused, then plain for good"
    );
    assert!(dead_letters(&work).is_empty(), "nothing dead-lettered");
}

#[tokio::test]
async fn a_503_with_an_http_date_retry_after_is_retried_until_accepted() {
    let work = Workdir::new();
    let collector = Collector::start().await;
    // A date already past: retry at once (the shortest wait).
    collector.retry_after("Wed, 21 Oct 2015 07:28:00 GMT");
    collector.refuse_next(3, 503);
    let log = work.path("app.log");
    append(&log, &line("one"));
    let agent = Agent::start(config(&collector, &work.checkpoint(), &[&log]));
    wait_until("the line arrives", || collector.messages().len() == 1).await;
    agent.stop().await;
    assert_eq!(collector.refused(), 3);
    assert!(dead_letters(&work).is_empty());
}
