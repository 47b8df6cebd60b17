//! The `ingest-run` command: the corpus posted to a running collector
//! (started fresh for the run, with its write-ahead log), measured from
//! the first post to the commit that makes the last batch searchable.
//!
//! Before the clock starts, the corpus's NDJSON lines are read, parsed and
//! encoded into request bodies of `batch` records: native wire batches for
//! `POST /v1/ingest`, or OTLP logs exports (protobuf) for `POST /v1/logs`.
//! Then `concurrency` posters, each on its own keep-alive connection, post
//! them, retrying a 429 or 503 after its `Retry-After`. With `overload`,
//! the posters cycle over the bodies for that long instead of posting each
//! once (the same records again: the collector indexes them again, as it
//! would any batch without stream positions).
//!
//! The figures: the collector's CPU seconds (`/proc/<pid>/stat`) and peak
//! RSS (`VmHWM`) over the run, the index's size on disk, and the
//! ingest-to-searchable latency from the collector's histogram
//! `causeway_collector_ingest_to_searchable_seconds` (from a batch's
//! acknowledgement to the commit that makes it searchable), the difference
//! of its buckets over the run. The end of the run is the moment that
//! histogram has counted every acknowledged batch (polled every 50 ms).

use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use causeway_model::{Record, wire};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse;
use prost::Message;

use crate::http::HttpClient;
use crate::latency::Latencies;
use crate::otlp;
use crate::procfs::Process;
use crate::prom;
use crate::raw_index::read_corpus;
use crate::results::{Acks, RunResult, disk_usage, write_result};

/// The wire batch's `source`.
const SOURCE: &str = "causeway-bench";
/// A 429 or 503 without `Retry-After` is retried after this.
const DEFAULT_RETRY: Duration = Duration::from_millis(200);
const SEARCHABLE: &str = "causeway_collector_ingest_to_searchable_seconds";
/// How long to wait for the last batch to become searchable.
const SEARCHABLE_TIMEOUT: Duration = Duration::from_secs(300);

/// How the records are posted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Protocol {
    /// Wire batches (NDJSON) to `POST /v1/ingest`.
    Native,
    /// OTLP logs exports (protobuf) to `POST /v1/logs`.
    Otlp,
    /// Wire batches as the agent sends a JSON-lines file: the lines as
    /// written (version 2 raw lines, parsed by the collector), each with
    /// its offset in a stream of its own per batch.
    Lines,
}

/// What `ingest-run` does.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub case: String,
    pub corpus: PathBuf,
    pub collector_url: String,
    pub collector_pid: u32,
    /// The collector's data dir (its index is `<data dir>/index`).
    pub data_dir: PathBuf,
    pub protocol: Protocol,
    pub batch: usize,
    pub concurrency: usize,
    /// Cycle over the bodies for this long instead of posting each once.
    pub overload: Option<Duration>,
    pub result: Option<PathBuf>,
    pub load: String,
}

/// A request body ready to post.
struct Body {
    bytes: Vec<u8>,
    records: u64,
    /// The size of its records as NDJSON lines.
    ndjson: u64,
}

/// What the posters share.
#[derive(Default)]
struct Counters {
    acked_bodies: AtomicU64,
    records: AtomicU64,
    ndjson: AtomicU64,
    wire: AtomicU64,
    busy: AtomicU64,
    errors: AtomicU64,
    /// Log records the collector rejected (OTLP partial success).
    rejected: AtomicU64,
    first_error: Mutex<Option<String>>,
}

pub fn ingest_run(options: &RunOptions) -> anyhow::Result<()> {
    let bodies = bodies(options)?;
    let collector = Process::Pid(options.collector_pid);
    let mut client = HttpClient::new(&options.collector_url)?;
    wait_ready(&mut client)?;
    let before = scrape(&mut client)?;
    let total_records: u64 = bodies.iter().map(|b| b.records).sum();
    eprintln!(
        "{}: {} bodies of {} records ({} in all, {:.1} MB on the wire), {} posters{}",
        options.case,
        bodies.len(),
        options.batch,
        total_records,
        bodies.iter().map(|b| b.bytes.len() as f64).sum::<f64>() / 1e6,
        options.concurrency,
        options.overload.map_or(String::new(), |d| format!(
            ", cycling for {} s",
            d.as_secs()
        ))
    );

    let counters = Counters::default();
    let next = AtomicUsize::new(0);
    let cpu_before = collector.cpu_seconds()?;
    let client_cpu_before = Process::This.cpu_seconds()?;
    let started = Instant::now();
    let deadline = options.overload.map(|d| started + d);
    let path = match options.protocol {
        Protocol::Native | Protocol::Lines => "/v1/ingest",
        Protocol::Otlp => otlp::LOGS_PATH,
    };
    let content_type = match options.protocol {
        Protocol::Native | Protocol::Lines => wire::CONTENT_TYPE,
        Protocol::Otlp => otlp::CONTENT_TYPE,
    };
    let sampling = AtomicBool::new(true);
    let outcome = thread::scope(|scope| -> anyhow::Result<Outcome> {
        let sampler = scope.spawn(|| sample_memory(collector, started, &sampling));
        let posters: Vec<_> = (0..options.concurrency.max(1))
            .map(|_| {
                let poster = Poster {
                    url: &options.collector_url,
                    path,
                    content_type,
                    protocol: options.protocol,
                    bodies: &bodies,
                    next: &next,
                    deadline,
                    counters: &counters,
                };
                scope.spawn(move || poster.run())
            })
            .collect();
        let mut latencies = Latencies::default();
        let mut failed = None;
        for poster in posters {
            match poster.join() {
                Ok(Ok(l)) => latencies.extend(&l),
                Ok(Err(error)) => failed = Some(error),
                Err(_) => failed = Some(anyhow::anyhow!("a poster panicked")),
            }
        }
        let posted = started.elapsed().as_secs_f64();
        let client_cpu = Process::This.cpu_seconds();
        // Every acknowledged batch counted by the histogram: all searchable.
        let searchable = match failed {
            Some(error) => Err(error),
            None => wait_searchable(&mut client, &before, &counters, started, posted),
        };
        let cpu = collector.cpu_seconds();
        sampling.store(false, Ordering::Relaxed);
        let memory = sampler.join().unwrap_or_default();
        let (after, wall) = searchable?;
        Ok(Outcome {
            latencies,
            posted,
            client_cpu: client_cpu? - client_cpu_before,
            after,
            wall,
            cpu: cpu? - cpu_before,
            memory,
        })
    })?;
    let Outcome {
        latencies,
        posted,
        client_cpu,
        after,
        wall,
        cpu,
        memory,
    } = outcome;
    let peak_rss = collector.peak_rss_kib()?;
    let rss_now = collector.rss_kib()?;
    let (index_bytes, _) = disk_usage(&options.data_dir.join("index"))?;

    let lag = bucket_difference(
        &prom::buckets(&after, SEARCHABLE),
        &prom::buckets(&before, SEARCHABLE),
    );
    let summary = latencies.summary();
    let overloaded_name = "causeway_collector_requests_rejected_total";
    let overloaded = prom::value(&after, overloaded_name, "overloaded")
        - prom::value(&before, overloaded_name, "overloaded");
    let received_name = "causeway_collector_records_received_total";
    let received = prom::value(&after, received_name, "") - prom::value(&before, received_name, "");
    let documents = prom::value(&after, "causeway_collector_index_documents", "");
    let bucket = |q| {
        prom::quantile_bucket(&lag, q).map_or("-".to_owned(), |(low, high)| {
            format!("({low:.3}, {high:.3}]")
        })
    };
    let mut note = format!(
        "{} posters, batches of {} records, posting took {posted:.1} s; the collector counted {received:.0} records received and {documents:.0} records in the index at the end; searchable p50 in the histogram's bucket {} s, p99 in {} s (the figures in the table interpolate within it); ack max {:.0} ms",
        options.concurrency,
        options.batch,
        bucket(0.5),
        bucket(0.99),
        summary.max as f64 / 1000.0
    );
    let rejected = counters.rejected.load(Ordering::Relaxed);
    if rejected > 0 {
        note.push_str(&format!(
            "; {rejected} log records rejected (partial success)"
        ));
    }
    if let Some(error) = counters.first_error.lock().ok().and_then(|e| e.clone()) {
        note.push_str(&format!("; first error: {error}"));
    }
    let result = RunResult {
        case: options.case.clone(),
        records: counters.records.load(Ordering::Relaxed),
        ndjson_bytes: counters.ndjson.load(Ordering::Relaxed),
        wire_bytes: counters.wire.load(Ordering::Relaxed),
        wall_secs: wall,
        cpu_secs: cpu,
        client_cpu_secs: Some(client_cpu),
        peak_rss_kib: peak_rss,
        rss_note: format!(
            "the collector's VmHWM since it started; of resident memory sampled every {} ms, anonymous at most {} MiB, {} MiB at the end (all resident {} MiB); anonymous MiB every 5 s: {}",
            SAMPLE_EVERY.as_millis(),
            memory.max_anon_kib / 1024,
            memory.last_anon_kib / 1024,
            rss_now / 1024,
            memory.series
        ),
        index_bytes,
        searchable_p50_secs: prom::quantile(&lag, 0.5),
        searchable_p99_secs: prom::quantile(&lag, 0.99),
        ack: Some(Acks {
            batches: summary.count as u64,
            p50_ms: summary.p50 as f64 / 1000.0,
            p99_ms: summary.p99 as f64 / 1000.0,
            max_ms: summary.max as f64 / 1000.0,
        }),
        busy: counters.busy.load(Ordering::Relaxed),
        overloaded: overloaded.max(0.0) as u64,
        errors: counters.errors.load(Ordering::Relaxed),
        load: options.load.clone(),
        note,
    };
    write_result(&result, options.result.as_deref())
}

/// What the posting part of a run measured.
struct Outcome {
    latencies: Latencies,
    /// Seconds from the first post to the last answer.
    posted: f64,
    client_cpu: f64,
    /// The scrape that found every batch searchable.
    after: Vec<prom::Sample>,
    /// Seconds from the first post to that scrape.
    wall: f64,
    /// The collector's CPU seconds over `wall`.
    cpu: f64,
    memory: Memory,
}

/// The corpus as request bodies of `batch` records.
fn bodies(options: &RunOptions) -> anyhow::Result<Vec<Body>> {
    let corpus = read_corpus(&options.corpus)?;
    let lines: Vec<&[u8]> = corpus
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    let mut bodies = Vec::with_capacity(lines.len() / options.batch.max(1) + 1);
    for (n, chunk) in lines.chunks(options.batch.max(1)).enumerate() {
        let records = || {
            chunk
                .iter()
                .map(|line| serde_json::from_slice::<Record>(line))
                .collect::<Result<Vec<_>, _>>()
                .context("a corpus line")
        };
        let bytes = match options.protocol {
            Protocol::Native => wire::encode(SOURCE, &records()?).into_bytes(),
            Protocol::Otlp => otlp::encode_logs(&records()?),
            Protocol::Lines => lines_body(n, chunk)?,
        };
        bodies.push(Body {
            bytes,
            records: chunk.len() as u64,
            ndjson: chunk.iter().map(|l| l.len() as u64 + 1).sum(),
        });
    }
    Ok(bodies)
}

/// One poster's share of the work.
struct Poster<'a> {
    url: &'a str,
    path: &'a str,
    content_type: &'a str,
    protocol: Protocol,
    bodies: &'a [Body],
    next: &'a AtomicUsize,
    /// Cycle over the bodies until then; without it, each body once.
    deadline: Option<Instant>,
    counters: &'a Counters,
}

impl Poster<'_> {
    fn over(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
    }

    fn run(&self) -> anyhow::Result<Latencies> {
        let mut client = HttpClient::new(self.url)?;
        let mut latencies = Latencies::default();
        loop {
            let i = self.next.fetch_add(1, Ordering::Relaxed);
            let body = match self.deadline {
                Some(_) if self.over() => break,
                Some(_) => &self.bodies[i % self.bodies.len()],
                None => match self.bodies.get(i) {
                    Some(body) => body,
                    None => break,
                },
            };
            self.post(&mut client, body, &mut latencies);
        }
        Ok(latencies)
    }

    /// Posts `body` until it is acknowledged, refused for good, or the
    /// deadline passes while it waits to retry.
    fn post(&self, client: &mut HttpClient, body: &Body, latencies: &mut Latencies) {
        let c = self.counters;
        loop {
            let began = Instant::now();
            match client.post(self.path, self.content_type, &body.bytes) {
                Ok(response) if (200..300).contains(&response.status) => {
                    latencies.record(began.elapsed());
                    c.acked_bodies.fetch_add(1, Ordering::Relaxed);
                    c.records.fetch_add(body.records, Ordering::Relaxed);
                    c.ndjson.fetch_add(body.ndjson, Ordering::Relaxed);
                    c.wire.fetch_add(body.bytes.len() as u64, Ordering::Relaxed);
                    if self.protocol == Protocol::Otlp {
                        let rejected = ExportLogsServiceResponse::decode(client.body())
                            .ok()
                            .and_then(|r| r.partial_success)
                            .map_or(0, |p| p.rejected_log_records);
                        c.rejected
                            .fetch_add(u64::try_from(rejected).unwrap_or(0), Ordering::Relaxed);
                    }
                    return;
                }
                Ok(response) if response.status == 429 || response.status == 503 => {
                    c.busy.fetch_add(1, Ordering::Relaxed);
                    thread::sleep(
                        response
                            .retry_after
                            .map_or(DEFAULT_RETRY, Duration::from_secs),
                    );
                }
                Ok(response) => {
                    c.errors.fetch_add(1, Ordering::Relaxed);
                    let text: String = String::from_utf8_lossy(client.body())
                        .chars()
                        .take(300)
                        .collect();
                    note_error(c, format!("{}: {text}", response.status));
                    return;
                }
                Err(error) => {
                    c.errors.fetch_add(1, Ordering::Relaxed);
                    note_error(c, format!("{error:#}"));
                    thread::sleep(DEFAULT_RETRY);
                }
            }
            if self.over() {
                return;
            }
        }
    }
}

fn note_error(counters: &Counters, error: String) {
    if let Ok(mut first) = counters.first_error.lock() {
        first.get_or_insert(error);
    }
}

/// Polls `/metrics` until the searchable histogram has counted every
/// acknowledged batch; the last scrape and the seconds since `started`.
fn wait_searchable(
    client: &mut HttpClient,
    before: &[prom::Sample],
    counters: &Counters,
    started: Instant,
    posted: f64,
) -> anyhow::Result<(Vec<prom::Sample>, f64)> {
    let acked = counters.acked_bodies.load(Ordering::Relaxed);
    let count = format!("{SEARCHABLE}_count");
    let before_count = prom::value(before, &count, "");
    loop {
        let now = scrape(client)?;
        let counted = prom::value(&now, &count, "") - before_count;
        if counted >= acked as f64 {
            return Ok((now, started.elapsed().as_secs_f64()));
        }
        if started.elapsed() > SEARCHABLE_TIMEOUT + Duration::from_secs_f64(posted) {
            bail!("only {counted} of {acked} acknowledged batches searchable after the timeout");
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// How often the collector's memory is sampled.
const SAMPLE_EVERY: Duration = Duration::from_millis(250);

/// The collector's anonymous resident memory over a run.
#[derive(Debug, Default)]
struct Memory {
    max_anon_kib: u64,
    last_anon_kib: u64,
    /// MiB every 5 s, space-separated.
    series: String,
}

fn sample_memory(collector: Process, started: Instant, sampling: &AtomicBool) -> Memory {
    let mut memory = Memory::default();
    let mut next_mark = Duration::ZERO;
    while sampling.load(Ordering::Relaxed) {
        if let Ok(anon) = collector.rss_anon_kib() {
            memory.max_anon_kib = memory.max_anon_kib.max(anon);
            memory.last_anon_kib = anon;
            if started.elapsed() >= next_mark {
                if !memory.series.is_empty() {
                    memory.series.push(' ');
                }
                memory.series.push_str(&(anon / 1024).to_string());
                next_mark += Duration::from_secs(5);
            }
        }
        thread::sleep(SAMPLE_EVERY);
    }
    memory
}

/// Waits up to 60 s for `GET /readyz` to answer 200.
fn wait_ready(client: &mut HttpClient) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        if matches!(client.get("/readyz"), Ok(r) if r.status == 200) {
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(60) {
            bail!("the collector is not ready after 60 s");
        }
        thread::sleep(Duration::from_millis(100));
    }
}

fn scrape(client: &mut HttpClient) -> anyhow::Result<Vec<prom::Sample>> {
    let response = client.get("/metrics")?;
    if response.status != 200 {
        bail!("GET /metrics answered {}", response.status);
    }
    Ok(prom::parse(&String::from_utf8_lossy(client.body())))
}

/// `after - before`, bucket by bucket (the same bounds); `after` alone when
/// the bounds differ.
fn bucket_difference(after: &[(f64, f64)], before: &[(f64, f64)]) -> Vec<(f64, f64)> {
    if before.len() != after.len() || before.iter().zip(after).any(|(b, a)| b.0 != a.0) {
        return after.to_vec();
    }
    after
        .iter()
        .zip(before)
        .map(|(a, b)| (a.0, a.1 - b.1))
        .collect()
}

/// One batch of corpus lines as the agent sends them, as batch `n`'s own
/// stream (so batches may arrive in any order).
fn lines_body(n: usize, chunk: &[&[u8]]) -> anyhow::Result<Vec<u8>> {
    let mut entries = Vec::with_capacity(chunk.len());
    let mut positions = Vec::with_capacity(chunk.len());
    let mut offset = 0u64;
    for line in chunk {
        let text = std::str::from_utf8(line).context("a corpus line")?;
        offset += text.len() as u64 + 1;
        entries.push(wire::Entry::Raw(text.to_owned()));
        positions.push(wire::Position(0, offset));
    }
    let text = wire::encode_entries(
        SOURCE,
        &entries,
        &[format!("bench:{n}")],
        &positions,
        causeway_model::Timestamp::now(),
        &[SOURCE.to_owned()],
    );
    Ok(text.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_counts_only_its_own_observations() {
        let before = [(1.0, 2.0), (f64::INFINITY, 2.0)];
        let after = [(1.0, 5.0), (f64::INFINITY, 7.0)];
        assert_eq!(
            bucket_difference(&after, &before),
            [(1.0, 3.0), (f64::INFINITY, 5.0)]
        );
        assert_eq!(bucket_difference(&after, &[]), after);
    }
}
