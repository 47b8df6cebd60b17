//! Every record names its stream and the offset just past it; a file
//! renamed by rotation goes on as the same stream; a copy of a file (what
//! copytruncate leaves) is not shipped twice, and the file truncated in
//! place is a new stream read from its start, even when its new content
//! starts with the same line. The stand-in collector keeps whatever it is
//! sent, so "once" here means the agent itself sent nothing twice.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers, like tests, report a failure by panicking"
)]

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use common::{
    Agent, Collector, Workdir, append, checkpoint_offset, checkpoint_stream, config, file_len,
    line, wait_until,
};

/// Every accepted record as (stream name, offset, message), in order.
fn positioned(collector: &Collector) -> Vec<(String, u64, String)> {
    let mut out = Vec::new();
    for (header, records) in collector.batches() {
        assert_eq!(
            header.positions.len(),
            records.len(),
            "every record has a position"
        );
        for (position, record) in header.positions.iter().zip(records) {
            let stream = header.streams[position.0 as usize].clone();
            out.push((stream, position.1, record.message));
        }
    }
    out
}

fn sorted(mut messages: Vec<String>) -> Vec<String> {
    messages.sort();
    messages
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

fn inode(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().ino()
}

#[tokio::test]
async fn every_record_names_its_stream_and_the_offset_just_past_its_line() {
    let work = Workdir::new();
    let collector = Collector::start().await;
    let log = work.path("app.log");
    let lines = [line("one"), "\n".to_owned(), line("two"), line("three")];
    for text in &lines[..3] {
        append(&log, text);
    }
    append(&log, "{\"message\":\"th");
    let mut config = config(&collector, &work.checkpoint(), &[&log]);
    config.source = "agent@test-host".to_owned();
    let agent = Agent::start(config);
    wait_until("the complete lines arrive", || {
        collector.records().len() == 2
    })
    .await;
    append(&log, "ree\"}\n");
    wait_until("the completed line arrives", || {
        collector.records().len() == 3
    })
    .await;
    let len = file_len(&log);
    wait_until("the checkpoint reaches the end", || {
        checkpoint_offset(&work.checkpoint(), &log) == Some(len)
    })
    .await;
    agent.stop().await;

    let got = positioned(&collector);
    let ends: Vec<u64> = lines
        .iter()
        .scan(0u64, |end, text| {
            *end += text.len() as u64;
            Some(*end)
        })
        .collect();
    // The blank line is skipped, but counted in the offsets after it.
    let expected: Vec<(u64, String)> = vec![
        (ends[0], "one".into()),
        (ends[2], "two".into()),
        (ends[3], "three".into()),
    ];
    let offsets: Vec<(u64, String)> = got.iter().map(|(_, o, m)| (*o, m.clone())).collect();
    assert_eq!(offsets, expected);
    let stream = &got[0].0;
    assert!(got.iter().all(|(s, _, _)| s == stream), "{got:?}");
    assert!(
        stream.contains(&format!(":{}:", inode(&log))),
        "the name holds the inode: {stream}"
    );
    assert!(stream.ends_with("@agent@test-host"), "{stream}");
    let (_, in_checkpoint) = checkpoint_stream(&work.checkpoint(), &log).unwrap();
    assert_eq!(&in_checkpoint, stream);
}

#[tokio::test]
async fn a_file_renamed_by_rotation_goes_on_as_the_same_stream_across_a_restart() {
    let work = Workdir::new();
    let collector = Collector::start().await;
    let logs = work.path("logs");
    std::fs::create_dir(&logs).unwrap();
    let log = logs.join("app.log");
    let rotated = logs.join("app.1.log");
    for i in 1..=3 {
        append(&log, &line(&format!("before-{i}")));
    }
    let agent = Agent::start(config(&collector, &work.checkpoint(), &[&logs]));
    let len = file_len(&log);
    wait_until("the first lines are acknowledged", || {
        checkpoint_offset(&work.checkpoint(), &log) == Some(len)
    })
    .await;

    // Rename-and-create rotation, to a name the directory still matches:
    // the renamed file is the same stream, and is not read again.
    std::fs::rename(&log, &rotated).unwrap();
    append(&rotated, &line("late-in-rotated"));
    append(&log, &line("fresh-1"));
    wait_until("the late and fresh lines arrive", || {
        collector.records().len() == 5
    })
    .await;
    let rotated_len = file_len(&rotated);
    let fresh_len = file_len(&log);
    wait_until("both files are acknowledged", || {
        checkpoint_offset(&work.checkpoint(), &rotated) == Some(rotated_len)
            && checkpoint_offset(&work.checkpoint(), &log) == Some(fresh_len)
    })
    .await;
    agent.stop().await;

    // A restart finds the renamed file in the checkpoint by its inode.
    append(&rotated, &line("after-restart-in-rotated"));
    append(&log, &line("fresh-2"));
    let agent = Agent::start(config(&collector, &work.checkpoint(), &[&logs]));
    wait_until("the lines written while stopped arrive", || {
        collector.records().len() == 7
    })
    .await;
    agent.stop().await;

    let got = positioned(&collector);
    let messages: Vec<String> = got.iter().map(|(_, _, m)| m.clone()).collect();
    assert_eq!(
        sorted(messages),
        sorted(strings(&[
            "after-restart-in-rotated",
            "before-1",
            "before-2",
            "before-3",
            "fresh-1",
            "fresh-2",
            "late-in-rotated",
        ]))
    );
    let stream_of = |message: &str| {
        got.iter()
            .find(|(_, _, m)| m == message)
            .map(|(s, o, _)| (s.clone(), *o))
            .unwrap()
    };
    let (first, _) = stream_of("before-1");
    let (late, late_offset) = stream_of("late-in-rotated");
    let (after, after_offset) = stream_of("after-restart-in-rotated");
    assert_eq!(late, first, "the renamed file is the same stream");
    assert_eq!(after, first);
    assert_eq!(late_offset, len + line("late-in-rotated").len() as u64);
    assert_eq!(
        after_offset,
        rotated_len + line("after-restart-in-rotated").len() as u64
    );
    assert_ne!(
        stream_of("fresh-1").0,
        first,
        "the new file is a new stream"
    );
}

/// copytruncate while the agent is stopped: lines written after its last
/// read are only in the copy; the original starts again with the same
/// first line.
#[tokio::test]
async fn after_copytruncate_the_copy_ships_only_what_was_not_acknowledged_and_the_truncated_file_is_a_new_stream()
 {
    let work = Workdir::new();
    let collector = Collector::start().await;
    let logs = work.path("logs");
    std::fs::create_dir(&logs).unwrap();
    let log = logs.join("app.log");
    let copy = logs.join("app.1.log");
    for message in ["first", "old-2", "old-3"] {
        append(&log, &line(message));
    }
    let agent = Agent::start(config(&collector, &work.checkpoint(), &[&logs]));
    let acked = file_len(&log);
    wait_until("the first lines are acknowledged", || {
        checkpoint_offset(&work.checkpoint(), &log) == Some(acked)
    })
    .await;
    agent.stop().await;

    append(&log, &line("unread-4"));
    append(&log, &line("unread-5"));
    std::fs::copy(&log, &copy).unwrap();
    // Truncated in place, then written again: the same first line, and
    // longer than what was acknowledged, so only the bytes before the
    // acknowledged offset tell the new content from the old.
    let rewritten = format!(
        "{}{}",
        line("first"),
        line("second-incarnation-with-enough-padding-to-pass-the-old-offset")
    );
    assert!(rewritten.len() as u64 > acked);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&log)
        .unwrap()
        .set_len(0)
        .unwrap();
    append(&log, &rewritten);

    let agent = Agent::start(config(&collector, &work.checkpoint(), &[&logs]));
    wait_until("the unread and the new lines arrive", || {
        collector.records().len() == 7
    })
    .await;
    let len = file_len(&log);
    wait_until("the new stream is acknowledged", || {
        checkpoint_offset(&work.checkpoint(), &log) == Some(len)
    })
    .await;
    agent.stop().await;

    let got = positioned(&collector);
    let messages: Vec<String> = got.iter().map(|(_, _, m)| m.clone()).collect();
    assert_eq!(
        sorted(messages),
        sorted(strings(&[
            "first",
            "first",
            "old-2",
            "old-3",
            "second-incarnation-with-enough-padding-to-pass-the-old-offset",
            "unread-4",
            "unread-5",
        ]))
    );
    let old_stream = got[0].0.clone();
    for (stream, _, message) in &got {
        let old = message.starts_with("old") || message.starts_with("unread");
        if old {
            assert_eq!(stream, &old_stream, "{message} belongs to the old content");
        }
        if message.starts_with("second") {
            assert_ne!(stream, &old_stream, "the truncated file is a new stream");
        }
    }
    let unread_4 = got.iter().find(|(_, _, m)| m == "unread-4").unwrap().1;
    assert_eq!(unread_4, acked + line("unread-4").len() as u64);
}

/// copytruncate while the agent runs, and a plain copy of a file still
/// written to: neither copy is read again.
#[tokio::test]
async fn copies_of_a_followed_file_are_not_shipped_again() {
    let work = Workdir::new();
    let collector = Collector::start().await;
    let logs = work.path("logs");
    std::fs::create_dir(&logs).unwrap();
    let log = logs.join("app.log");
    let other = logs.join("other.log");
    for message in ["first", "a-2", "a-3"] {
        append(&log, &line(message));
    }
    append(&other, &line("other-first"));
    let agent = Agent::start(config(&collector, &work.checkpoint(), &[&logs]));
    let acked = file_len(&log);
    wait_until("the first lines are acknowledged", || {
        checkpoint_offset(&work.checkpoint(), &log) == Some(acked) && collector.records().len() == 4
    })
    .await;

    // A backup copy of a file that goes on growing.
    std::fs::copy(&other, logs.join("other-backup.log")).unwrap();
    append(&other, &line("other-2"));
    // copytruncate, the same first line written again.
    std::fs::copy(&log, logs.join("app.1.log")).unwrap();
    std::fs::write(&log, line("first")).unwrap();
    append(&log, &line("b-2"));
    wait_until("the new lines arrive", || collector.records().len() == 7).await;
    let len = file_len(&log);
    let other_len = file_len(&other);
    wait_until("everything is acknowledged", || {
        checkpoint_offset(&work.checkpoint(), &log) == Some(len)
            && checkpoint_offset(&work.checkpoint(), &other) == Some(other_len)
    })
    .await;
    // More polls, in which a copy read again would show.
    append(&other, &line("other-3"));
    wait_until("the last line arrives", || collector.records().len() == 8).await;
    agent.stop().await;
    assert_eq!(
        sorted(collector.messages()),
        sorted(strings(&[
            "a-2",
            "a-3",
            "b-2",
            "first",
            "first",
            "other-2",
            "other-3",
            "other-first",
        ]))
    );
}

/// Files that only start alike are not copies: both are shipped whole.
#[tokio::test]
async fn files_that_only_start_with_the_same_line_are_both_shipped() {
    let work = Workdir::new();
    let collector = Collector::start().await;
    let logs = work.path("logs");
    std::fs::create_dir(&logs).unwrap();
    append(&logs.join("a.log"), &line("same-first"));
    append(&logs.join("a.log"), &line("a-second-line"));
    let agent = Agent::start(config(&collector, &work.checkpoint(), &[&logs]));
    wait_until("the first file arrives", || collector.records().len() == 2).await;
    // Shorter than a.log and different where it ends...
    append(&logs.join("b.log"), &line("same-first"));
    append(&logs.join("b.log"), &line("b-2"));
    // ...and longer than it.
    append(&logs.join("c.log"), &line("same-first"));
    append(&logs.join("c.log"), &line("a-second-line"));
    append(&logs.join("c.log"), &line("c-3"));
    wait_until("both other files arrive", || collector.records().len() == 7).await;
    agent.stop().await;
    assert_eq!(
        sorted(collector.messages()),
        sorted(strings(&[
            "a-second-line",
            "a-second-line",
            "b-2",
            "c-3",
            "same-first",
            "same-first",
            "same-first",
        ]))
    );
}

#[tokio::test]
async fn a_version_1_checkpoint_is_taken_up_where_it_left_each_file() {
    let work = Workdir::new();
    let collector = Collector::start().await;
    let log = work.path("app.log");
    append(&log, &line("shipped-by-the-old-agent"));
    let offset = file_len(&log);
    append(&log, &line("not-yet-shipped"));
    let meta = std::fs::metadata(&log).unwrap();
    std::fs::create_dir_all(work.checkpoint().parent().unwrap()).unwrap();
    std::fs::write(
        work.checkpoint(),
        format!(
            r#"{{"version":1,"files":[{{"path":"{}","dev":{},"inode":{},"offset":{offset}}}]}}"#,
            log.display(),
            meta.dev(),
            meta.ino()
        ),
    )
    .unwrap();
    let agent = Agent::start(config(&collector, &work.checkpoint(), &[&log]));
    wait_until("the unshipped line arrives", || {
        collector.records().len() == 1
    })
    .await;
    let len = file_len(&log);
    wait_until("the checkpoint is version 2 and at the end", || {
        checkpoint_offset(&work.checkpoint(), &log) == Some(len)
    })
    .await;
    agent.stop().await;
    assert_eq!(collector.messages(), vec!["not-yet-shipped"]);
}

/// A stream's name is in the checkpoint before any of its lines is sent
/// (so a resend after a crash uses it), and new content never gets an old
/// name, not even with the checkpoint gone.
#[tokio::test]
async fn a_stream_is_checkpointed_before_its_lines_are_sent_and_no_name_is_used_twice() {
    let work = Workdir::new();
    let collector = Collector::start().await;
    let log = work.path("app.log");
    append(&log, &line("first"));
    collector.refuse_next(usize::MAX, 503);
    let agent = Agent::start(config(&collector, &work.checkpoint(), &[&log]));
    wait_until("the first batch is being retried", || {
        collector.refused() >= 1
    })
    .await;
    let (_, named) = checkpoint_stream(&work.checkpoint(), &log).unwrap();
    assert_eq!(checkpoint_offset(&work.checkpoint(), &log), Some(0));
    collector.refuse_next(0, 503);
    wait_until("the line arrives", || collector.records().len() == 1).await;
    agent.stop().await;
    assert_eq!(positioned(&collector)[0].0, named);

    // The checkpoint lost, the file truncated and written again with the
    // same first line: the same bytes at the same offset, another name.
    std::fs::remove_file(work.checkpoint()).unwrap();
    std::fs::write(&log, line("first")).unwrap();
    let agent = Agent::start(config(&collector, &work.checkpoint(), &[&log]));
    wait_until("the line arrives again", || collector.records().len() == 2).await;
    agent.stop().await;
    let got = positioned(&collector);
    assert_eq!(got[0].1, got[1].1);
    assert_ne!(got[1].0, named);
}
