//! Truncated, replaced, rotated and newly created files: every line that
//! lands in a followed file is read, from the right place.

mod common;

use common::{
    Agent, Collector, Workdir, append, checkpoint_offset, config, file_len, line, wait_until,
};

#[tokio::test]
async fn truncating_a_file_makes_the_agent_read_it_again_from_the_start() {
    let work = Workdir::new();
    let collector = Collector::start().await;
    let log = work.path("app.log");
    for i in 1..=3 {
        append(&log, &line(&format!("old-{i}-with-some-padding")));
    }
    let agent = Agent::start(config(&collector, &work.checkpoint(), &[&log]));
    let len = file_len(&log);
    wait_until("the old lines are acknowledged", || {
        checkpoint_offset(&work.checkpoint(), &log) == Some(len)
    })
    .await;

    std::fs::write(&log, line("new-1")).unwrap();
    wait_until("the rewritten line arrives", || {
        collector.messages().contains(&"new-1".to_owned())
    })
    .await;
    let new_len = file_len(&log);
    wait_until("the checkpoint follows the shorter file", || {
        checkpoint_offset(&work.checkpoint(), &log) == Some(new_len)
    })
    .await;
    agent.stop().await;
    assert_eq!(
        collector.messages(),
        vec![
            "old-1-with-some-padding",
            "old-2-with-some-padding",
            "old-3-with-some-padding",
            "new-1"
        ]
    );
}

#[tokio::test]
async fn a_file_rewritten_with_different_longer_content_is_read_again_from_the_start() {
    let work = Workdir::new();
    let collector = Collector::start().await;
    let log = work.path("app.log");
    append(&log, &line("old"));
    let agent = Agent::start(config(&collector, &work.checkpoint(), &[&log]));
    let len = file_len(&log);
    wait_until("the old line is acknowledged", || {
        checkpoint_offset(&work.checkpoint(), &log) == Some(len)
    })
    .await;

    // Same file (inode), longer than the acknowledged offset: whether or
    // not the agent saw it empty in between, it must not skip the start.
    let rewritten: String = (1..=4).map(|i| line(&format!("rewritten-{i}"))).collect();
    std::fs::write(&log, &rewritten).unwrap();
    wait_until("the rewritten lines arrive", || {
        collector.records().len() == 5
    })
    .await;
    agent.stop().await;
    assert_eq!(
        collector.messages(),
        vec![
            "old",
            "rewritten-1",
            "rewritten-2",
            "rewritten-3",
            "rewritten-4"
        ]
    );
}

#[tokio::test]
async fn a_file_created_in_a_watched_directory_after_start_is_picked_up() {
    let work = Workdir::new();
    let collector = Collector::start().await;
    let logs = work.path("logs");
    std::fs::create_dir(&logs).unwrap();
    append(&logs.join("first.log"), &line("first"));
    let agent = Agent::start(config(&collector, &work.checkpoint(), &[&logs]));
    wait_until("the existing file is read", || {
        collector.records().len() == 1
    })
    .await;

    append(&logs.join("notes.txt"), &line("not a log file"));
    append(&logs.join("later.ndjson"), &line("later"));
    wait_until("the new file is read", || collector.records().len() == 2).await;

    append(&logs.join("first.log"), &line("first-again"));
    wait_until("the first file is still followed", || {
        collector.records().len() == 3
    })
    .await;
    let records = collector.records();
    assert_eq!(records[1].message, "later");
    assert_eq!(records[1].service, "later");
    assert!(!collector.messages().contains(&"not a log file".to_owned()));
    let len = file_len(&logs.join("later.ndjson"));
    wait_until("the new file is checkpointed", || {
        checkpoint_offset(&work.checkpoint(), &logs.join("later.ndjson")) == Some(len)
    })
    .await;
    agent.stop().await;
}

#[tokio::test]
async fn lines_written_just_before_a_rotation_are_read_from_the_rotated_file() {
    let work = Workdir::new();
    let collector = Collector::start().await;
    let logs = work.path("logs");
    std::fs::create_dir(&logs).unwrap();
    let log = logs.join("app.log");
    // Hold the agent on its first batch while the file is rotated under it.
    collector.refuse_next(usize::MAX, 503);
    append(&log, &line("before"));
    let agent = Agent::start(config(&collector, &work.checkpoint(), &[&logs]));
    wait_until("the first batch is being retried", || {
        collector.refused() >= 1
    })
    .await;

    // Written after the agent's last read, then rotated away to a name
    // the directory pattern does not match (logrotate's `app.log.1`).
    append(&log, &line("just-before-rotation"));
    std::fs::rename(&log, logs.join("app.log.1")).unwrap();
    append(&log, &line("after-rotation"));

    collector.refuse_next(0, 503);
    wait_until("every line arrives", || collector.records().len() == 3).await;
    agent.stop().await;
    let messages = collector.messages();
    assert_eq!(messages[0], "before");
    let mut rest = messages[1..].to_vec();
    rest.sort();
    assert_eq!(rest, vec!["after-rotation", "just-before-rotation"]);
}
