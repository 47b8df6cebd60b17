//! The loopback push receiver: `POST /v1/push` NDJSON is spooled to disk
//! (answered once it is there), shipped like a log file's lines, once;
//! while the spool is full the answer is 503 with `Retry-After`, and the
//! lines pushed again later arrive too.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers, like tests, report a failure by panicking"
)]

mod common;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

use common::{Agent, Collector, Workdir, config, wait_until};

fn lines(prefix: &str, count: usize, pad: usize) -> String {
    (0..count)
        .map(|n| {
            format!(
                "{{\"message\":\"{prefix}-{n}\",\"pad\":\"{}\"}}\n",
                "x".repeat(pad)
            )
        })
        .collect()
}

#[tokio::test]
async fn pushed_lines_are_shipped_once_and_a_full_spool_says_when_to_come_back() {
    let work = Workdir::new();
    let collector = Collector::start().await;
    collector.busy_when(Some("held"));
    let mut settings = config(&collector, &work.checkpoint(), &[]);
    let port = free_port();
    settings.push_addr = Some(format!("127.0.0.1:{port}").parse().unwrap());
    settings.push_buffer_bytes = 4096;
    let url = format!("http://127.0.0.1:{port}/v1/push");
    let agent = Agent::start(settings);
    let client = reqwest::Client::new();
    let push = |body: String| {
        let request = client.post(&url).body(body);
        async move {
            for _ in 0..1000 {
                // Retried only until the receiver listens.
                match request.try_clone().unwrap().send().await {
                    Ok(response) => {
                        let status = response.status().as_u16();
                        let retry_after = response
                            .headers()
                            .get("retry-after")
                            .map(|v| v.to_str().unwrap().to_owned());
                        return (status, retry_after, response.text().await.unwrap());
                    }
                    Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
                }
            }
            panic!("the push receiver never answered");
        }
    };

    let (status, _, body) = push(format!("{}\n\n", lines("first", 2, 10))).await;
    assert_eq!((status, body.as_str()), (200, r#"{"accepted":2}"#));
    wait_until("the pushed lines arrive", || {
        collector.messages().len() == 2
    })
    .await;

    // Held by the collector: nothing of these is acknowledged, so once
    // the spool was rotated once, the next rotation must wait.
    let (status, _, _) = push(lines("held-a", 10, 100)).await;
    assert_eq!(status, 200);
    let (status, _, _) = push(lines("held-b", 8, 100)).await;
    assert_eq!(status, 200);
    let (status, retry_after, body) = push(lines("held-c", 10, 100)).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(retry_after.as_deref(), Some("1"));

    collector.busy_when(None);
    wait_until("the held lines arrive", || {
        collector.messages().len() == 2 + 10 + 8
    })
    .await;
    // Room again once the rotated spool is acknowledged to its end.
    let mut status = 503;
    for _ in 0..500 {
        status = push(lines("held-c", 10, 100)).await.0;
        if status != 503 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(status, 200);
    wait_until("the last lines arrive", || collector.messages().len() == 30).await;
    agent.stop().await;

    let mut messages = collector.messages();
    messages.sort();
    messages.dedup();
    assert_eq!(messages.len(), 30, "each line once");
}
