//! `causeway-bench`: the corpus as NDJSON, an index built from it through
//! the collector's write path, and flow lookups timed raw and over the
//! query API. Arguments only; the work is in `ingest` and `lookup`.

mod http;
mod ingest;
mod latency;
mod lookup;

use std::path::PathBuf;

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
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Corpus { records, seed, out } => {
            ingest::write_corpus(records, seed, out.as_deref())
        }
        Command::BuildIndex {
            records,
            seed,
            data_dir,
            heap_mib,
            commit_every,
            no_merge_wait,
        } => ingest::build_index(&ingest::BuildOptions {
            records,
            seed,
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
    }
}
