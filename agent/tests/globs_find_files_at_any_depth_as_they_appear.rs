//! Paths may be glob patterns, `**` for any depth of directories, matched
//! again as files appear; a watched directory wakes the agent, so a new
//! file is read without waiting for the next poll.

mod common;

use common::{Agent, Collector, Workdir, append, config, line, wait_until};

#[tokio::test]
async fn a_double_star_pattern_finds_files_in_directories_created_later_without_a_poll() {
    let work = Workdir::new();
    let collector = Collector::start().await;
    let root = work.path("app");
    std::fs::create_dir_all(root.join("a")).unwrap();
    append(&root.join("a/one.log"), &line("one"));
    append(&root.join("a/skipped.txt"), &line("not matched"));
    let pattern = root.join("**/*.log");
    let mut settings = config(&collector, &work.checkpoint(), &[&pattern]);
    // Only the first poll runs on its own: anything later is read because
    // the watch woke the agent.
    settings.poll_interval_ms = 3_600_000;
    let agent = Agent::start(settings);
    wait_until("the existing file's line arrives", || {
        collector.messages() == vec!["one".to_owned()]
    })
    .await;

    std::fs::create_dir_all(root.join("b/deeper")).unwrap();
    append(&root.join("b/deeper/two.log"), &line("two"));
    wait_until("the file in the new directory arrives", || {
        collector.messages().iter().any(|m| m == "two")
    })
    .await;
    append(&root.join("a/one.log"), &line("three"));
    wait_until("an appended line arrives", || {
        collector.messages().iter().any(|m| m == "three")
    })
    .await;
    agent.stop().await;
    assert_eq!(collector.messages(), vec!["one", "two", "three"]);
}

#[tokio::test]
async fn a_suffix_pattern_follows_the_file_and_its_rotated_copies_once() {
    let work = Workdir::new();
    let collector = Collector::start().await;
    let log = work.path("app.log");
    append(&log, &line("first"));
    let pattern = work.path("app.log*");
    let agent = Agent::start(config(&collector, &work.checkpoint(), &[&pattern]));
    wait_until("the first line arrives", || collector.messages().len() == 1).await;
    // Rotated by rename: the old file is matched as app.log.1, still the
    // same stream; the new app.log is a new one.
    append(&log, &line("second"));
    std::fs::rename(&log, work.path("app.log.1")).unwrap();
    append(&log, &line("third"));
    wait_until("both lines arrive", || collector.messages().len() == 3).await;
    agent.stop().await;
    let mut messages = collector.messages();
    messages.sort();
    assert_eq!(messages, vec!["first", "second", "third"]);
}

#[tokio::test]
async fn the_agents_own_files_in_a_followed_directory_are_not_read_as_logs() {
    let work = Workdir::new();
    let collector = Collector::start().await;
    let dir = work.path("logs");
    std::fs::create_dir_all(&dir).unwrap();
    // The checkpoint (*.json) and the dead-letter file (*.ndjson) would
    // match the directory's extensions.
    let checkpoint = dir.join("agent.checkpoint.json");
    collector.unreadable_when("POISON");
    append(&dir.join("app.log"), &line("POISON"));
    let agent = Agent::start(config(&collector, &checkpoint, &[&dir]));
    wait_until("the refused line is dead-lettered", || {
        dir.join("agent.checkpoint.dead-letter.ndjson").exists()
    })
    .await;
    append(&dir.join("app.log"), &line("after"));
    wait_until("a later line arrives", || {
        collector.messages().iter().any(|m| m == "after")
    })
    .await;
    agent.stop().await;
    assert_eq!(collector.messages(), vec!["after"]);
}
