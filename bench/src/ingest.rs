//! The `corpus` and `build-index` commands: the corpus as NDJSON, and the
//! corpus written into `<data dir>/index` through the collector's write path
//! (`RecordIndex::open_or_create`, `RecordWriter::add`, a commit every
//! `commit_every` records and at the end), with its cost: records/s, size
//! on disk, peak RSS. It also writes `<data dir>/bench-flows.json`, the flow
//! keys the lookup benchmarks read.
//!
//! It never adds to an existing index: a second run into the same directory
//! would count every record twice.

use std::fs;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use causeway_bench::{Corpus, CorpusConfig, FlowSample};
use causeway_index::RecordIndex;
use causeway_model::Timestamp;

use crate::results::disk_usage;

/// The file beside the index that holds the sampled flow keys.
pub const FLOWS_FILE: &str = "bench-flows.json";

/// Writes `records` records of seed `seed` as NDJSON to `out`, or stdout.
pub fn write_corpus(records: u64, seed: u64, out: Option<&Path>) -> anyhow::Result<()> {
    let corpus = Corpus::new(CorpusConfig {
        seed,
        records,
        ..CorpusConfig::default()
    });
    let result = match out {
        Some(path) => {
            let file =
                fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
            write_lines(corpus, BufWriter::with_capacity(1 << 20, file))
        }
        None => write_lines(
            corpus,
            BufWriter::with_capacity(1 << 20, io::stdout().lock()),
        ),
    };
    match result {
        // `causeway-bench corpus | head` is fine.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

fn write_lines(corpus: Corpus, mut out: impl Write) -> io::Result<()> {
    for record in corpus {
        serde_json::to_writer(&mut out, &record)?;
        out.write_all(b"\n")?;
    }
    out.flush()
}

/// What `build-index` does.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub records: u64,
    pub seed: u64,
    /// The time of the first record; the corpus's default when `None`.
    pub start: Option<Timestamp>,
    pub data_dir: PathBuf,
    /// tantivy's indexing budget (the collector's `writer_heap_bytes`).
    pub heap_bytes: usize,
    pub commit_every: u64,
    /// Whether to let tantivy finish the merges it wants before measuring
    /// the index, as a collector that keeps running would.
    pub wait_for_merges: bool,
}

pub fn build_index(options: &BuildOptions) -> anyhow::Result<()> {
    let index_dir = options.data_dir.join("index");
    if index_dir.join("meta.json").exists() {
        bail!(
            "{} already holds an index: remove it or pick another --data-dir",
            index_dir.display()
        );
    }
    let index = RecordIndex::open_or_create(&index_dir)?;
    let mut writer = index.writer(options.heap_bytes)?;
    let defaults = CorpusConfig::default();
    let mut corpus = Corpus::new(CorpusConfig {
        seed: options.seed,
        records: options.records,
        start: options.start.unwrap_or(defaults.start),
        ..defaults
    });
    eprintln!(
        "building {} records (seed {}) into {}",
        options.records,
        options.seed,
        index_dir.display()
    );
    let started = Instant::now();
    let mut generating = Duration::ZERO;
    let mut json_bytes = 0u64;
    let mut written = 0u64;
    let commit_every = options.commit_every.max(1);
    loop {
        let before = Instant::now();
        let Some(record) = corpus.next() else { break };
        // The size of the record as a log line, which the index's size is
        // compared with. Counted as generation, not indexing.
        json_bytes += record.to_json_line().len() as u64 + 1;
        generating += before.elapsed();
        writer.add(&record)?;
        written += 1;
        if written.is_multiple_of(commit_every) {
            writer.commit()?;
        }
        if written.is_multiple_of(1_000_000) {
            let secs = started.elapsed().as_secs_f64();
            eprintln!(
                "{written} records, {secs:.1} s, {:.0} records/s, peak RSS {} MiB",
                written as f64 / secs,
                peak_rss_kib().unwrap_or(0) / 1024
            );
        }
    }
    writer.commit()?;
    drop(writer);
    let indexed = started.elapsed();
    let segments_written = segment_count(&index_dir)?;

    let merge_started = Instant::now();
    if options.wait_for_merges {
        finish_merges(&index_dir)?;
    }
    let merging = merge_started.elapsed();

    let sample = corpus.flow_sample();
    let flows_path = options.data_dir.join(FLOWS_FILE);
    let file = fs::File::create(&flows_path)
        .with_context(|| format!("creating {}", flows_path.display()))?;
    serde_json::to_writer_pretty(BufWriter::new(file), sample)?;

    let (disk, apparent) = disk_usage(&index_dir)?;
    let secs = indexed.as_secs_f64();
    let index_secs = (indexed - generating).as_secs_f64();
    println!("| build-index | value |");
    println!("|---|---:|");
    println!("| records | {written} |");
    println!("| seed | {} |", options.seed);
    println!(
        "| records as NDJSON | {:.1} MiB ({} bytes/record) |",
        mib(json_bytes),
        json_bytes / written.max(1)
    );
    println!("| wall time (generate + add + commit) | {secs:.1} s |");
    println!("| records/s, end to end | {:.0} |", written as f64 / secs);
    println!(
        "| records/s, generation time subtracted (add + commit; tantivy indexes on its own threads meanwhile) | {:.0} |",
        written as f64 / index_secs
    );
    println!(
        "| commits | every {commit_every} records and at the end, heap {} MiB |",
        options.heap_bytes >> 20
    );
    println!("| segments after the last commit | {segments_written} |");
    if options.wait_for_merges {
        println!(
            "| segments after tantivy's merges | {} (waited {:.1} s) |",
            segment_count(&index_dir)?,
            merging.as_secs_f64()
        );
    }
    println!(
        "| index on disk (du) | {:.1} MiB ({:.2} of the NDJSON; apparent {:.1} MiB) |",
        mib(disk),
        disk as f64 / json_bytes.max(1) as f64,
        mib(apparent)
    );
    println!(
        "| peak RSS (VmHWM) | {} MiB |",
        peak_rss_kib().unwrap_or(0) / 1024
    );
    println!(
        "| flows finished / sampled | {} finished, {} sampled of {} with {}-{} records, {} of any size -> {} |",
        sample.finished_flows,
        sample.sized.len(),
        sample.finished_sized,
        sample.sized_records.start(),
        sample.sized_records.end(),
        sample.any.len(),
        flows_path.display()
    );
    Ok(())
}

/// Reads the flow sample `build-index` wrote into `data_dir`.
pub fn read_flow_sample(data_dir: &Path) -> anyhow::Result<FlowSample> {
    let path = data_dir.join(FLOWS_FILE);
    let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// Lets tantivy run the merges its merge policy wants on the committed
/// segments and waits for them: the state a collector that keeps its
/// writer open reaches by itself. `RecordWriter` has no such call; dropping
/// it abandons merges under way.
fn finish_merges(index_dir: &Path) -> anyhow::Result<()> {
    let index = tantivy::Index::open_in_dir(index_dir)?;
    let mut writer: tantivy::IndexWriter = index.writer(50_000_000)?;
    // An empty commit asks the merge policy about the segments there are.
    writer.commit()?;
    writer.wait_merging_threads()?;
    Ok(())
}

/// Searchable segments of the index in `index_dir`.
pub fn segment_count(index_dir: &Path) -> anyhow::Result<usize> {
    let index = tantivy::Index::open_in_dir(index_dir)?;
    Ok(index.searchable_segment_metas()?.len())
}

/// The process's peak resident set (`VmHWM`), in KiB.
pub fn peak_rss_kib() -> Option<u64> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}
