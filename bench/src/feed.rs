//! The `ingest` command: corpus records posted to a running collector's
//! `POST /v1/ingest` as wire batches, at a set rate or as fast as the
//! collector acknowledges, with what it achieved: records/s acknowledged,
//! acknowledgement latency, 503s and errors.
//!
//! One thread generates the batches (a corpus starting now, its order
//! numbers offset so that none of its flows is one of `build-index`'s), a
//! bounded queue hands them to `concurrency` posters, each on its own
//! keep-alive connection. A 429 or 503 is retried after its `Retry-After`, as the
//! agent does; a batch refused otherwise is counted and dropped. It writes
//! nothing itself: the collector does.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::Context;
use causeway_bench::{Corpus, CorpusConfig};
use causeway_model::Timestamp;
use causeway_model::wire;

use crate::http::HttpClient;
use crate::latency::Latencies;

/// Order numbers of the posted corpus start past any `build-index` made
/// (those are below 10^7 for any size this bench builds).
const ORDER_NO_OFFSET: u64 = 1_000_000_000;
/// The wire batch's `source`.
const SOURCE: &str = "causeway-bench";
/// A 429 or 503 without `Retry-After` is retried after this.
const DEFAULT_RETRY: Duration = Duration::from_millis(200);

/// How fast to post.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rate {
    /// Records per second, batches spaced evenly.
    PerSecond(f64),
    /// As fast as the collector acknowledges with `concurrency` posters.
    Max,
}

/// What `ingest` does.
#[derive(Debug, Clone)]
pub struct FeedOptions {
    pub collector_url: String,
    pub rate: Rate,
    pub duration: Duration,
    pub seed: u64,
    pub batch: usize,
    pub concurrency: usize,
}

/// A batch ready to post.
struct Batch {
    body: Vec<u8>,
    records: u64,
}

/// What the posters share.
#[derive(Default)]
struct Counters {
    acked: AtomicU64,
    busy: AtomicU64,
    errors: AtomicU64,
    first_error: Mutex<Option<String>>,
}

pub fn ingest(options: &FeedOptions) -> anyhow::Result<()> {
    let batch = options.batch.max(1);
    let concurrency = options.concurrency.max(1);
    // Checked before anything starts.
    HttpClient::new(&options.collector_url)?;
    let start = Timestamp::now();
    let stop = Arc::new(AtomicBool::new(false));
    let counters = Arc::new(Counters::default());
    let (send, receive) = mpsc::sync_channel::<Batch>(concurrency * 2);
    let receive = Arc::new(Mutex::new(receive));

    let started = Instant::now();
    let generator = {
        let stop = stop.clone();
        let (seed, rate) = (options.seed, options.rate);
        thread::spawn(move || generate(seed, start, batch, rate, &stop, &send))
    };
    let posters: Vec<_> = (0..concurrency)
        .map(|_| {
            let (stop, counters, receive) = (stop.clone(), counters.clone(), receive.clone());
            let url = options.collector_url.clone();
            thread::spawn(move || post_batches(&url, &stop, &counters, &receive))
        })
        .collect();
    // Only the posters hold the queue now: once they stop, a generator
    // blocked on a full queue gets an error instead of waiting forever.
    drop(receive);

    let mut last = (Instant::now(), 0u64);
    while started.elapsed() < options.duration {
        thread::sleep(
            Duration::from_secs(1).min(options.duration.saturating_sub(started.elapsed())),
        );
        if last.0.elapsed() >= Duration::from_secs(5) {
            let acked = counters.acked.load(Ordering::Relaxed);
            eprintln!(
                "{:.0} s: {acked} records acked, {:.0} records/s over the last {:.0} s, {} 429/503s, {} errors",
                started.elapsed().as_secs_f64(),
                (acked - last.1) as f64 / last.0.elapsed().as_secs_f64(),
                last.0.elapsed().as_secs_f64(),
                counters.busy.load(Ordering::Relaxed),
                counters.errors.load(Ordering::Relaxed),
            );
            last = (Instant::now(), acked);
        }
    }
    stop.store(true, Ordering::Relaxed);
    let generated = generator
        .join()
        .map_err(|_| anyhow::anyhow!("the generator panicked"))?;
    let mut latencies = Latencies::default();
    for poster in posters {
        let poster = poster
            .join()
            .map_err(|_| anyhow::anyhow!("a poster panicked"))??;
        latencies.extend(&poster);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let acked = counters.acked.load(Ordering::Relaxed);
    let s = latencies.summary();
    let rate = match options.rate {
        Rate::Max => "max".to_owned(),
        Rate::PerSecond(n) => format!("{n:.0} records/s"),
    };
    println!(
        "ingest into {} at {rate}: {concurrency} posters, batches of {batch} records, seed {}, \
         timestamps from {start}, for {:.0} s",
        options.collector_url,
        options.seed,
        options.duration.as_secs_f64()
    );
    println!();
    println!("| ingest | value |");
    println!("|---|---:|");
    println!("| records acknowledged | {acked} |");
    println!(
        "| records/s acknowledged (over {elapsed:.1} s, to the last answer) | {:.0} |",
        acked as f64 / elapsed
    );
    println!(
        "| acknowledgement latency p50 / p90 / p99 / max | {} / {} / {} / {} ms |",
        s.p50 / 1000,
        s.p90 / 1000,
        s.p99 / 1000,
        s.max / 1000
    );
    println!("| batches acknowledged | {} |", s.count);
    println!(
        "| 429/503 answers (retried after Retry-After) | {} |",
        counters.busy.load(Ordering::Relaxed)
    );
    println!(
        "| errors (other statuses, I/O) | {} |",
        counters.errors.load(Ordering::Relaxed)
    );
    println!(
        "| generator: corpus + wire encoding, CPU-bound in this process | {:.1} s for {} records |",
        generated.busy.as_secs_f64(),
        generated.records
    );
    if let Some(error) = counters.first_error.lock().ok().and_then(|e| e.clone()) {
        println!();
        println!("first error: {error}");
    }
    Ok(())
}

/// What the generator made.
struct Generated {
    records: u64,
    /// Time spent generating and encoding, without waits.
    busy: Duration,
}

/// Makes batches until `stop`, paced to `rate`.
fn generate(
    seed: u64,
    start: Timestamp,
    batch: usize,
    rate: Rate,
    stop: &AtomicBool,
    send: &mpsc::SyncSender<Batch>,
) -> Generated {
    let mut corpus = Corpus::new(CorpusConfig {
        seed,
        records: u64::MAX,
        start,
        order_no_offset: ORDER_NO_OFFSET,
        ..CorpusConfig::default()
    });
    let interval = match rate {
        Rate::PerSecond(n) if n > 0.0 => Some(Duration::from_secs_f64(batch as f64 / n)),
        _ => None,
    };
    let mut due = Instant::now();
    let mut generated = Generated {
        records: 0,
        busy: Duration::ZERO,
    };
    let mut records = Vec::with_capacity(batch);
    while !stop.load(Ordering::Relaxed) {
        let began = Instant::now();
        records.clear();
        records.extend(corpus.by_ref().take(batch));
        let body = wire::encode(SOURCE, &records).into_bytes();
        generated.busy += began.elapsed();
        generated.records += records.len() as u64;
        if let Some(interval) = interval {
            let now = Instant::now();
            if due > now {
                thread::sleep(due - now);
            } else if now - due > Duration::from_secs(1) {
                // Behind by more than a second (the posters could not keep
                // up): go on from now rather than burst to catch up.
                due = now;
            }
            due += interval;
        }
        let batch = Batch {
            body,
            records: records.len() as u64,
        };
        if send.send(batch).is_err() {
            break;
        }
    }
    generated
}

/// Posts batches from `receive` until `stop`; the latencies of the
/// acknowledged ones.
fn post_batches(
    url: &str,
    stop: &AtomicBool,
    counters: &Counters,
    receive: &Mutex<mpsc::Receiver<Batch>>,
) -> anyhow::Result<Latencies> {
    let mut client = HttpClient::new(url)?;
    let mut latencies = Latencies::default();
    let path = "/v1/ingest";
    while !stop.load(Ordering::Relaxed) {
        let batch = {
            let receive = receive
                .lock()
                .map_err(|_| anyhow::anyhow!("queue lock poisoned"))?;
            match receive.recv_timeout(Duration::from_millis(100)) {
                Ok(batch) => batch,
                Err(mpsc::RecvTimeoutError::Timeout) => continue,
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        };
        loop {
            let began = Instant::now();
            match client.post(path, wire::CONTENT_TYPE, &batch.body) {
                Ok(response) if (200..300).contains(&response.status) => {
                    latencies.record(began.elapsed());
                    counters.acked.fetch_add(batch.records, Ordering::Relaxed);
                    break;
                }
                Ok(response) if response.status == 429 || response.status == 503 => {
                    counters.busy.fetch_add(1, Ordering::Relaxed);
                    let wait = response
                        .retry_after
                        .map_or(DEFAULT_RETRY, Duration::from_secs);
                    thread::sleep(wait);
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                }
                Ok(response) => {
                    counters.errors.fetch_add(1, Ordering::Relaxed);
                    note_error(counters, || {
                        format!(
                            "{}: {}",
                            response.status,
                            String::from_utf8_lossy(client.body())
                                .chars()
                                .take(300)
                                .collect::<String>()
                        )
                    });
                    break;
                }
                Err(error) => {
                    counters.errors.fetch_add(1, Ordering::Relaxed);
                    note_error(counters, || format!("{error:#}"));
                    thread::sleep(DEFAULT_RETRY);
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                }
            }
        }
    }
    Ok(latencies)
}

fn note_error(counters: &Counters, error: impl FnOnce() -> String) {
    if let Ok(mut first) = counters.first_error.lock() {
        first.get_or_insert_with(error);
    }
}

/// `max` or a number of records per second.
pub fn parse_rate(text: &str) -> Result<Rate, String> {
    if text == "max" {
        return Ok(Rate::Max);
    }
    let n: f64 = text
        .parse()
        .with_context(|| format!("{text:?}"))
        .map_err(|e| format!("{e:#}: not `max` nor a number of records per second"))?;
    if n > 0.0 && n.is_finite() {
        Ok(Rate::PerSecond(n))
    } else {
        Err(format!("{text:?}: the rate must be positive"))
    }
}
