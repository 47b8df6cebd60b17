//! An agent restarted from its checkpoint sends what was written since,
//! and nothing the collector had already acknowledged.

mod common;

use common::{
    Agent, Collector, Workdir, append, checkpoint_offset, config, file_len, line, wait_until,
};

#[tokio::test]
async fn restarting_from_the_checkpoint_sends_only_lines_appended_after_the_last_ack() {
    let work = Workdir::new();
    let collector = Collector::start().await;
    let log = work.path("app.log");
    let other = work.path("other.log");
    for i in 1..=3 {
        append(&log, &line(&format!("line-{i}")));
    }
    append(&other, &line("other-1"));

    let first = Agent::start(config(&collector, &work.checkpoint(), &[&log, &other]));
    wait_until("the first lines arrive", || collector.records().len() == 4).await;
    let (log_len, other_len) = (file_len(&log), file_len(&other));
    wait_until("the checkpoint holds both files", || {
        checkpoint_offset(&work.checkpoint(), &log) == Some(log_len)
            && checkpoint_offset(&work.checkpoint(), &other) == Some(other_len)
    })
    .await;
    first.stop().await;

    // Written while no agent runs.
    append(&log, &line("line-4"));
    append(&log, &line("line-5"));

    let second = Agent::start(config(&collector, &work.checkpoint(), &[&log, &other]));
    wait_until("the new lines arrive", || {
        collector.messages().iter().any(|m| m == "line-5")
    })
    .await;
    let log_len = file_len(&log);
    wait_until("the checkpoint reaches the end of the file", || {
        checkpoint_offset(&work.checkpoint(), &log) == Some(log_len)
    })
    .await;
    second.stop().await;

    let mut messages = collector.messages();
    messages.sort();
    assert_eq!(
        messages,
        vec!["line-1", "line-2", "line-3", "line-4", "line-5", "other-1"],
        "nothing acknowledged before the restart was sent again"
    );
}

#[tokio::test]
async fn a_corrupt_checkpoint_stops_the_agent_with_an_error_instead_of_resending_everything() {
    let work = Workdir::new();
    let collector = Collector::start().await;
    let log = work.path("app.log");
    append(&log, &line("x"));
    std::fs::create_dir_all(work.checkpoint().parent().unwrap()).unwrap();
    std::fs::write(work.checkpoint(), "{\"version\":99,\"files\":[]}").unwrap();

    let config = config(&collector, &work.checkpoint(), &[&log]);
    let result = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        causeway_agent::run(config, std::future::pending()),
    )
    .await
    .expect("run returns at once");
    let error = result.unwrap_err();
    assert!(
        matches!(error, causeway_agent::AgentError::CheckpointInvalid { .. }),
        "{error}"
    );
    assert!(error.to_string().contains("version 99"), "{error}");
    assert!(collector.records().is_empty());
}
