//! The `flow-list` command: the query API's list reads, taken in turn on
//! one keep-alive connection: `GET /api/v1/flows?limit=50`, the same with
//! `&status=failed`, and `GET /api/v1/topology`, with percentiles for each.
//! After each list answer (untimed) it reads the page's `flows` and
//! `scanned` (digests the server examined for it). It only reads.

use std::time::Instant;

use anyhow::bail;

use crate::http::HttpClient;
use crate::latency::Latencies;

/// What `flow-list` does.
#[derive(Debug, Clone)]
pub struct ListOptions {
    /// Reads of each kind.
    pub requests: usize,
    /// Unmeasured reads of each kind first.
    pub warmup: usize,
}

/// One kind of read and what it gave.
#[derive(Debug)]
struct Kind {
    path: &'static str,
    latencies: Latencies,
    bytes: u64,
    flows: u64,
    scanned: u64,
    errors: usize,
    first_error: Option<String>,
}

const PATHS: [&str; 3] = [
    "/api/v1/flows?limit=50",
    "/api/v1/flows?limit=50&status=failed",
    "/api/v1/topology",
];

pub fn flow_list(query_url: &str, options: &ListOptions) -> anyhow::Result<()> {
    let mut client = HttpClient::new(query_url)?;
    let mut kinds: Vec<Kind> = PATHS
        .iter()
        .map(|&path| Kind {
            path,
            latencies: Latencies::default(),
            bytes: 0,
            flows: 0,
            scanned: 0,
            errors: 0,
            first_error: None,
        })
        .collect();
    for i in 0..options.warmup * kinds.len() {
        client.get(kinds[i % kinds.len()].path)?;
    }
    let started = Instant::now();
    for i in 0..options.requests * kinds.len() {
        let kind = &mut kinds[i % PATHS.len()];
        let began = Instant::now();
        let response = client.get(kind.path)?;
        let elapsed = began.elapsed();
        if response.status != 200 {
            kind.errors += 1;
            kind.first_error.get_or_insert_with(|| {
                format!(
                    "{}: {}",
                    response.status,
                    String::from_utf8_lossy(client.body())
                        .chars()
                        .take(300)
                        .collect::<String>()
                )
            });
            continue;
        }
        kind.latencies.record(elapsed);
        kind.bytes += response.body_len as u64;
        if kind.path.contains("/flows") {
            let page: serde_json::Value = serde_json::from_slice(client.body())?;
            kind.flows += page["flows"].as_array().map_or(0, Vec::len) as u64;
            kind.scanned += page["scanned"].as_u64().unwrap_or(0);
        }
    }
    if kinds.iter().all(|k| k.latencies.summary().count == 0) {
        bail!("every read failed: {:?}", kinds[0].first_error);
    }
    println!(
        "list reads on {query_url}: {} of each kind after {} warm-up, in turn on one keep-alive \
         connection ({} connects), {:.1} s",
        options.requests,
        options.warmup,
        client.connects,
        started.elapsed().as_secs_f64()
    );
    println!();
    println!(
        "| read | count | mean bytes | mean flows | mean digests scanned | p50 µs | p90 µs | p99 µs | max µs | errors |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for kind in &kinds {
        let s = kind.latencies.summary();
        let n = s.count.max(1) as u64;
        let per = |total: u64| {
            if kind.path.contains("/flows") {
                format!("{:.1}", total as f64 / n as f64)
            } else {
                "-".to_owned()
            }
        };
        println!(
            "| `GET {}` | {} | {} B | {} | {} | {} | {} | {} | {} | {} |",
            kind.path,
            s.count,
            kind.bytes / n,
            per(kind.flows),
            per(kind.scanned),
            s.p50,
            s.p90,
            s.p99,
            s.max,
            kind.errors
        );
    }
    for kind in &kinds {
        if let Some(error) = &kind.first_error {
            println!();
            println!("first error ({}): {error}", kind.path);
        }
    }
    Ok(())
}
