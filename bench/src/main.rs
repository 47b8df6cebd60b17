//! `causeway-bench`: the corpus as NDJSON, an index built from it through
//! the collector's write path, corpus batches posted to a running
//! collector, flow lookups timed raw and over the query API, the API's
//! list reads, the API's read phases timed one by one, and the collector
//! ingest benchmark (raw tantivy, native batches, OTLP/HTTP). Arguments
//! only; the work is in `ingest`, `feed`, `lookup`, `listing`, `phases`,
//! `raw_index`, `ingest_run`, `results` and `sink` (the agent benchmark's
//! discard receivers).

mod feed;
mod http;
mod ingest;
mod ingest_run;
mod latency;
mod listing;
mod lookup;
mod otlp;
mod phases;
mod procfs;
mod prom;
mod raw_index;
mod results;
mod sink;

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use causeway_model::Timestamp;
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Writes the corpus as NDJSON, one record per line.
    Corpus {
        #[arg(long, default_value_t = 100_000)]
        records: u64,
        #[arg(long, default_value_t = 7)]
        seed: u64,
        /// The file to write; stdout when absent.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Writes the corpus into `<data-dir>/index` as the collector does, and
    /// the sampled flow keys into `<data-dir>/bench-flows.json`.
    BuildIndex {
        #[arg(long)]
        records: u64,
        #[arg(long, default_value_t = 7)]
        seed: u64,
        /// The time of the first record: RFC 3339, or `now` (for the query
        /// API's windows on the recent past, such as the topology's hour).
        /// The default, 2026-11-23T08:00:00Z, keeps the corpus byte for
        /// byte the same between runs.
        #[arg(long, value_parser = parse_start)]
        start: Option<Timestamp>,
        #[arg(long)]
        data_dir: PathBuf,
        /// tantivy's indexing budget in MiB (the collector's default
        /// `writer_heap_bytes` is 64 MiB).
        #[arg(long, default_value_t = 64)]
        heap_mib: usize,
        /// Records between commits.
        #[arg(long, default_value_t = 100_000)]
        commit_every: u64,
        /// Measure the index as the last commit left it, without letting
        /// tantivy finish the merges a running collector would.
        #[arg(long)]
        no_merge_wait: bool,
    },
    /// Times flow reads: raw tantivy against `GET /api/v1/flows/{key}`.
    FlowLookup {
        #[arg(long)]
        data_dir: PathBuf,
        /// The query API, e.g. `http://127.0.0.1:8686`.
        #[arg(long)]
        query_url: String,
        /// Reads of each kind.
        #[arg(long, default_value_t = 2_000)]
        requests: usize,
        /// Unmeasured reads of each kind first.
        #[arg(long, default_value_t = 200)]
        warmup: usize,
        /// Most records one read returns (the query API's default
        /// `max_flow_records` is 10000).
        #[arg(long, default_value_t = 10_000)]
        flow_limit: usize,
    },
    /// Posts corpus records (new flows, timestamps from now) to a running
    /// collector's `POST /v1/ingest` as wire batches, for `--duration`
    /// seconds; run it in another process while reads are measured.
    Ingest {
        /// The collector, e.g. `http://127.0.0.1:4318`.
        #[arg(long)]
        collector_url: String,
        /// Records per second, or `max`: as fast as the collector
        /// acknowledges with `--concurrency` posters.
        #[arg(long, value_parser = feed::parse_rate)]
        rate: feed::Rate,
        /// Seconds to post for.
        #[arg(long, default_value_t = 60)]
        duration: u64,
        /// The corpus seed (its order numbers are offset past any
        /// `build-index` corpus, so every flow is new).
        #[arg(long, default_value_t = 8)]
        seed: u64,
        /// Records per batch.
        #[arg(long, default_value_t = 1_000)]
        batch: usize,
        /// Batches in flight, each poster on its own keep-alive connection.
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
    },
    /// Times the query API's list reads, in turn: `GET /api/v1/flows?limit=50`,
    /// the same with `&status=failed`, and `GET /api/v1/topology`.
    FlowList {
        #[arg(long)]
        query_url: String,
        /// Reads of each kind.
        #[arg(long, default_value_t = 300)]
        requests: usize,
        #[arg(long, default_value_t = 20)]
        warmup: usize,
    },
    /// Times the phases of the query API's reads in this process, through
    /// the calls its handlers make (digest, records, analysis, JSON).
    Phases {
        #[arg(long)]
        data_dir: PathBuf,
        /// Flow lookups timed.
        #[arg(long, default_value_t = 500)]
        requests: usize,
        #[arg(long, default_value_t = 50)]
        warmup: usize,
        /// List pages of each kind timed, after one unmeasured.
        #[arg(long, default_value_t = 5)]
        list_requests: usize,
    },
    /// The collector ingest benchmark's baseline: plain tantivy indexes a
    /// corpus file (from `corpus --out`) with the causeway schema, one
    /// writer, one commit; writes its figures as JSON.
    RawIndex {
        /// The corpus as NDJSON.
        #[arg(long)]
        corpus: PathBuf,
        /// Where to create the index (`<data-dir>/index`).
        #[arg(long)]
        data_dir: PathBuf,
        /// tantivy's indexing budget in MiB (the collector's default
        /// `writer_heap_bytes` is 64 MiB).
        #[arg(long, default_value_t = 64)]
        heap_mib: usize,
        /// Commit whenever this long has passed since the last commit, as
        /// the collector does (its `commit_interval_ms` is 500), instead
        /// of once at the end.
        #[arg(long)]
        commit_interval_ms: Option<u64>,
        /// The JSON file of the figures; stdout when absent.
        #[arg(long)]
        result: Option<PathBuf>,
        /// A second JSON file: the same run measured until the merges
        /// tantivy starts after the commit have ended.
        #[arg(long)]
        merged_result: Option<PathBuf>,
        /// Before the measurement, encode the corpus as OTLP logs exports
        /// of this many records (the bodies `ingest-run --protocol otlp`
        /// posts); then decode each export with prost before indexing its
        /// records' lines: raw tantivy plus the protobuf decode.
        #[arg(long)]
        decode_otlp_batch: Option<NonZeroUsize>,
    },
    /// Posts a corpus file to a collector started fresh for the run, and
    /// measures it (the collector's CPU, peak RSS, index size, ingest to
    /// searchable); writes its figures as JSON.
    IngestRun {
        /// The row's name in the report.
        #[arg(long)]
        case: String,
        #[arg(long)]
        corpus: PathBuf,
        /// The collector, e.g. `http://127.0.0.1:14318`.
        #[arg(long)]
        collector_url: String,
        /// The collector's process id, for its CPU time and memory.
        #[arg(long)]
        collector_pid: u32,
        /// The collector's data dir, for the index's size.
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long, value_enum)]
        protocol: ingest_run::Protocol,
        /// Records per request.
        #[arg(long, default_value_t = 1_000)]
        batch: usize,
        /// Requests in flight, each poster on its own keep-alive connection.
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
        /// Post for this many seconds, cycling over the corpus, instead of
        /// each record once.
        #[arg(long)]
        overload_secs: Option<u64>,
        #[arg(long)]
        result: Option<PathBuf>,
    },
    /// Prints the JSON figures of `raw-index` and `ingest-run` as one table,
    /// each run against the raw tantivy one (and an OTLP run also against
    /// raw tantivy decoding OTLP exports, when given).
    IngestReport {
        /// The result files, in the order of the rows.
        results: Vec<PathBuf>,
    },
    /// Takes what a shipper sends and discards it, counting records and
    /// bytes (`GET /count`): `ingest` answers `POST /v1/ingest` as the
    /// collector does for a good batch; `tcp` reads raw bytes (the
    /// listener of `cat | nc` and rsyslog's `omfwd`). Runs until killed.
    DiscardReceiver {
        #[arg(long, value_enum, default_value = "ingest")]
        mode: sink::Mode,
        #[arg(long, default_value = "127.0.0.1:4318")]
        addr: String,
        /// Where `GET /count` is served besides `--addr` (needed by `tcp`).
        #[arg(long)]
        count_addr: Option<String>,
    },
}

/// The allocator the `causeway` binary has, so that raw tantivy is
/// measured on the same footing.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Corpus { records, seed, out } => {
            ingest::write_corpus(records, seed, out.as_deref())
        }
        Command::BuildIndex {
            records,
            seed,
            start,
            data_dir,
            heap_mib,
            commit_every,
            no_merge_wait,
        } => ingest::build_index(&ingest::BuildOptions {
            records,
            seed,
            start,
            data_dir,
            heap_bytes: heap_mib << 20,
            commit_every,
            wait_for_merges: !no_merge_wait,
        }),
        Command::FlowLookup {
            data_dir,
            query_url,
            requests,
            warmup,
            flow_limit,
        } => lookup::flow_lookup(
            &data_dir,
            &query_url,
            &lookup::LookupOptions {
                requests,
                warmup,
                flow_limit,
            },
        ),
        Command::Ingest {
            collector_url,
            rate,
            duration,
            seed,
            batch,
            concurrency,
        } => feed::ingest(&feed::FeedOptions {
            collector_url,
            rate,
            duration: Duration::from_secs(duration),
            seed,
            batch,
            concurrency,
        }),
        Command::FlowList {
            query_url,
            requests,
            warmup,
        } => listing::flow_list(&query_url, &listing::ListOptions { requests, warmup }),
        Command::Phases {
            data_dir,
            requests,
            warmup,
            list_requests,
        } => phases::phases(
            &data_dir,
            &phases::PhaseOptions {
                requests,
                warmup,
                list_requests,
            },
        ),
        Command::RawIndex {
            corpus,
            data_dir,
            heap_mib,
            commit_interval_ms,
            result,
            merged_result,
            decode_otlp_batch,
        } => raw_index::raw_index(&raw_index::RawOptions {
            corpus,
            data_dir,
            heap_bytes: heap_mib << 20,
            commit_interval: commit_interval_ms.map(Duration::from_millis),
            result,
            merged_result,
            decode_otlp_batch,
            load: results::load_average(),
        }),
        Command::IngestRun {
            case,
            corpus,
            collector_url,
            collector_pid,
            data_dir,
            protocol,
            batch,
            concurrency,
            overload_secs,
            result,
        } => ingest_run::ingest_run(&ingest_run::RunOptions {
            case,
            corpus,
            collector_url,
            collector_pid,
            data_dir,
            protocol,
            batch,
            concurrency,
            overload: overload_secs.map(Duration::from_secs),
            result,
            load: results::load_average(),
        }),
        Command::IngestReport { results } => results::report(&results),
        Command::DiscardReceiver {
            mode,
            addr,
            count_addr,
        } => sink::run(mode, &addr, count_addr.as_deref()),
    }
}

/// `now`, or an RFC 3339 time.
fn parse_start(text: &str) -> Result<Timestamp, String> {
    if text == "now" {
        return Ok(Timestamp::now());
    }
    text.parse::<Timestamp>()
        .map_err(|e| format!("{text:?}: not `now` nor an RFC 3339 time: {e}"))
}
