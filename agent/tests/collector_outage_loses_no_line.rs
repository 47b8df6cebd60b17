//! While the collector refuses batches nothing is acknowledged, and once it
//! accepts them again every line arrives, in order, once.

mod common;

use common::{
    Agent, Collector, Workdir, append, checkpoint_offset, config, file_len, line, wait_until,
};

/// The messages that came from one file, in arrival order.
fn from_file(collector: &Collector, prefix: &str) -> Vec<String> {
    collector
        .messages()
        .into_iter()
        .filter(|m| m.starts_with(prefix))
        .collect()
}

fn expected(prefix: &str, count: usize) -> Vec<String> {
    (0..count).map(|i| format!("{prefix}-{i}")).collect()
}

#[tokio::test]
async fn while_the_collector_answers_503_nothing_is_checkpointed_and_afterwards_every_line_arrives_in_order()
 {
    let work = Workdir::new();
    let collector = Collector::start().await;
    collector.refuse_next(usize::MAX, 503);
    let a = work.path("a.log");
    let b = work.path("b.log");
    for i in 0..10 {
        append(&a, &line(&format!("a-{i}")));
        append(&b, &line(&format!("b-{i}")));
    }
    let mut config = config(&collector, &work.checkpoint(), &[&a, &b]);
    config.batch_max_records = 7;
    let agent = Agent::start(config);

    wait_until("the collector refused three attempts", || {
        collector.refused() >= 3
    })
    .await;
    // More lines come in during the outage.
    for i in 10..25 {
        append(&a, &line(&format!("a-{i}")));
        append(&b, &line(&format!("b-{i}")));
    }
    wait_until("the collector refused six attempts", || {
        collector.refused() >= 6
    })
    .await;
    assert!(collector.records().is_empty());
    for file in [&a, &b] {
        assert_eq!(
            checkpoint_offset(&work.checkpoint(), file).unwrap_or(0),
            0,
            "nothing was acknowledged, so nothing may be checkpointed"
        );
    }

    collector.refuse_next(0, 503);
    wait_until("every line arrives", || collector.records().len() >= 50).await;
    assert_eq!(from_file(&collector, "a-"), expected("a", 25));
    assert_eq!(from_file(&collector, "b-"), expected("b", 25));
    assert_eq!(collector.records().len(), 50, "no line arrived twice");
    assert!(
        collector.batches().iter().all(|(_, r)| r.len() <= 7),
        "batches respect batch_max_records"
    );
    for file in [&a, &b] {
        let len = file_len(file);
        wait_until("the checkpoint reaches the end of the file", || {
            checkpoint_offset(&work.checkpoint(), file) == Some(len)
        })
        .await;
    }
    agent.stop().await;
}

#[tokio::test]
async fn a_batch_refused_with_a_client_error_is_retried_not_dropped() {
    let work = Workdir::new();
    let collector = Collector::start().await;
    // Not 400 or 413, which say the batch itself is at fault (those go to
    // the dead-letter file, see refused_batches_never_halt_the_agent.rs).
    collector.refuse_next(3, 422);
    let log = work.path("app.log");
    append(&log, &format!("{}{}", line("first"), line("second")));
    let agent = Agent::start(config(&collector, &work.checkpoint(), &[&log]));

    wait_until("both lines arrive", || collector.records().len() == 2).await;
    assert_eq!(collector.refused(), 3);
    assert_eq!(collector.messages(), vec!["first", "second"]);
    agent.stop().await;
}

#[tokio::test]
async fn too_many_requests_with_retry_after_is_waited_out() {
    let work = Workdir::new();
    let collector = Collector::start().await;
    collector.refuse_next(2, 429);
    let log = work.path("app.log");
    append(&log, &line("patient"));
    let agent = Agent::start(config(&collector, &work.checkpoint(), &[&log]));

    wait_until("the line arrives", || collector.records().len() == 1).await;
    assert_eq!(collector.refused(), 2);
    assert_eq!(collector.messages(), vec!["patient"]);
    agent.stop().await;
}
