//! The `flow-lookup` command: one flow read two ways, alternating in one
//! run, on the keys `build-index` sampled.
//!
//! - A, raw tantivy: the index opened read-only with plain
//!   `tantivy::Index::open_in_dir`, the read the query API makes for a
//!   flow's records (`RecordReader::records_newest`): a `TermQuery` on the
//!   `flow` field (only record documents carry it; a flow's digest
//!   document has `flow_key` instead, so this is `flow:key AND
//!   _doc:record`), `TopDocs` by the `timestamp_us` fast field, newest
//!   first, with the limit the query API uses, and each hit's `_source`
//!   fetched: the floor for any flow read on this index. Its reader
//!   reloads on commit as the query API's does (`OnCommitWithDelay`), so
//!   while a collector ingests both see the same segments.
//! - B, the query API: `GET /api/v1/flows/{key}` on one keep-alive
//!   connection, the whole body read (the same read, plus the flow's
//!   digest, parsing the records, analyzing the flow and writing it as JSON
//!   over HTTP).
//!
//! The order alternates (A B, then B A) so neither always runs on a cache
//! the other warmed. It only reads the index; it never writes.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use causeway_bench::SampledFlow;
use tantivy::collector::TopDocs;
use tantivy::query::TermQuery;
use tantivy::schema::{Field, IndexRecordOption, Value};
use tantivy::{Index, IndexReader, Order, ReloadPolicy, TantivyDocument, Term};

use crate::http::{HttpClient, path_segment};
use crate::ingest::{read_flow_sample, segment_count};
use crate::latency::{Latencies, Summary};

/// The record documents' flow key field, as `index/src/schema.rs` names
/// it (`FLOW`, not exported).
const FLOW: &str = "flow";
/// The fast field of the record time, as `index/src/schema.rs` names it
/// (`TIMESTAMP_US`, not exported by `causeway_index`).
const TIMESTAMP_US: &str = "timestamp_us";
/// The stored field with the whole record, as `index/src/schema.rs` names
/// it (`SOURCE`, not exported).
const SOURCE: &str = "_source";

/// What `flow-lookup` does.
#[derive(Debug, Clone)]
pub struct LookupOptions {
    pub requests: usize,
    /// Unmeasured requests of each kind first.
    pub warmup: usize,
    /// Most records one read returns, as the query API's
    /// `max_flow_records`; A asks for one more, as the API does.
    pub flow_limit: usize,
}

/// The raw tantivy read of one flow.
struct RawIndex {
    reader: IndexReader,
    key: Field,
    source: Field,
    limit: usize,
}

impl RawIndex {
    fn open(index_dir: &Path, flow_limit: usize) -> anyhow::Result<Self> {
        let index = Index::open_in_dir(index_dir)
            .with_context(|| format!("opening {}", index_dir.display()))?;
        let schema = index.schema();
        let key = schema.get_field(FLOW)?;
        let source = schema.get_field(SOURCE)?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::OnCommitWithDelay)
            .try_into()?;
        Ok(Self {
            reader,
            key,
            source,
            limit: flow_limit.saturating_add(1),
        })
    }

    /// The flow's records, newest first: how many, their bytes of JSON,
    /// and how long the search alone took (the rest is fetching `_source`).
    fn read(&self, key: &str) -> anyhow::Result<RawRead> {
        let started = Instant::now();
        let query = TermQuery::new(
            Term::from_field_text(self.key, key),
            IndexRecordOption::Basic,
        );
        let top =
            TopDocs::with_limit(self.limit).order_by_fast_field::<i64>(TIMESTAMP_US, Order::Desc);
        let searcher = self.reader.searcher();
        let hits = searcher.search(&query, &top)?;
        let search = started.elapsed();
        let mut bytes = 0;
        for (_, address) in &hits {
            let doc: TantivyDocument = searcher.doc(*address)?;
            let source = doc
                .get_first(self.source)
                .and_then(|v| v.as_str())
                .context("a document without _source")?;
            bytes += source.len();
        }
        Ok(RawRead {
            records: hits.len(),
            bytes,
            search,
        })
    }
}

/// What one raw read found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RawRead {
    records: usize,
    bytes: usize,
    search: Duration,
}

#[derive(Debug, Default)]
struct Side {
    latencies: Latencies,
    /// For the raw read: the search alone, without fetching `_source`.
    search: Latencies,
    bytes: u64,
    errors: usize,
    /// The start of the first error answer's body.
    first_error: Option<String>,
}

/// One set of keys and the two ways of reading them.
#[derive(Debug)]
struct KeySet<'a> {
    name: String,
    flows: &'a [SampledFlow],
    raw: Side,
    http: Side,
}

pub fn flow_lookup(
    data_dir: &Path,
    query_url: &str,
    options: &LookupOptions,
) -> anyhow::Result<()> {
    let sample = read_flow_sample(data_dir)?;
    let index_dir = data_dir.join("index");
    let raw = RawIndex::open(&index_dir, options.flow_limit)?;
    let mut client = HttpClient::new(query_url)?;
    let prefix = "/api/v1/flows/";

    let mut sets: Vec<KeySet<'_>> = [
        (
            format!(
                "{}-{} records",
                sample.sized_records.start(),
                sample.sized_records.end()
            ),
            &sample.sized,
        ),
        ("any size".to_owned(), &sample.any),
    ]
    .into_iter()
    .filter(|(_, flows)| !flows.is_empty())
    .map(|(name, flows)| KeySet {
        name,
        flows,
        raw: Side::default(),
        http: Side::default(),
    })
    .collect();
    if sets.is_empty() {
        bail!("{} has no flow keys", data_dir.display());
    }

    // Warm-up: open files, the HTTP connection, the server's reader.
    for i in 0..options.warmup {
        let set = &sets[i % sets.len()];
        let flow = &set.flows[set.flows.len() - 1 - (i / sets.len()) % set.flows.len()];
        raw.read(&flow.key)?;
        client.get(&format!("{prefix}{}", path_segment(&flow.key)))?;
    }

    let mut mismatched = 0usize;
    let set_count = sets.len();
    for i in 0..options.requests {
        // Round r reads the r-th key of every set, A first in even rounds.
        let (set, round) = (&mut sets[i % set_count], i / set_count);
        let flow = &set.flows[round % set.flows.len()];
        let path = format!("{prefix}{}", path_segment(&flow.key));
        let a_first = round % 2 == 0;
        for raw_now in [a_first, !a_first] {
            if raw_now {
                let started = Instant::now();
                let read = raw.read(&flow.key)?;
                set.raw.latencies.record(started.elapsed());
                set.raw.search.record(read.search);
                set.raw.bytes += read.bytes as u64;
                mismatched += usize::from(read.records != flow.records);
            } else {
                let started = Instant::now();
                let response = client.get(&path)?;
                set.http.latencies.record(started.elapsed());
                set.http.bytes += response.body_len as u64;
                if response.status != 200 {
                    set.http.errors += 1;
                    let body = String::from_utf8_lossy(client.body());
                    set.http.first_error.get_or_insert_with(|| {
                        format!(
                            "{} {}: {}",
                            response.status,
                            flow.key,
                            body.chars().take(300).collect::<String>()
                        )
                    });
                }
            }
        }
    }

    let segments = segment_count(&index_dir)?;
    println!(
        "flow lookups on {} ({segments} segments), {} requests of each kind after {} warm-up, alternating A B / B A; \
         A: raw tantivy in this process; B: {query_url}{prefix}{{key}} over one keep-alive std TcpStream HTTP/1.1 \
         connection ({} connects), body read whole",
        index_dir.display(),
        options.requests,
        options.warmup,
        client.connects,
    );
    println!();
    println!("| flows | read | count | mean bytes read | p50 µs | p90 µs | p99 µs | max µs |");
    println!("|---|---|---:|---:|---:|---:|---:|---:|");
    for set in &sets {
        let rows = [
            (
                "A raw tantivy (TermQuery on flow + TopDocs by timestamp_us desc + _source)",
                &set.raw.latencies,
                set.raw.bytes,
            ),
            (
                "A, of which the search alone (no _source)",
                &set.raw.search,
                0,
            ),
            (
                "B GET /api/v1/flows/{key}",
                &set.http.latencies,
                set.http.bytes,
            ),
        ];
        for (label, latencies, bytes) in rows {
            let s = latencies.summary();
            let bytes = match bytes / s.count.max(1) as u64 {
                0 => "-".to_owned(),
                mean => format!("{mean} B"),
            };
            println!(
                "| {} | {label} | {} | {bytes} | {} | {} | {} | {} |",
                set.name, s.count, s.p50, s.p90, s.p99, s.max
            );
        }
    }
    println!();
    println!("| flows | mean records | B/A p50 | B/A p99 | HTTP errors |");
    println!("|---|---:|---:|---:|---:|");
    for set in &sets {
        let (a, b): (Summary, Summary) =
            (set.raw.latencies.summary(), set.http.latencies.summary());
        let mean_records =
            set.flows.iter().map(|f| f.records).sum::<usize>() as f64 / set.flows.len() as f64;
        println!(
            "| {} | {mean_records:.1} | {:.2} | {:.2} | {} |",
            set.name,
            b.p50 as f64 / a.p50.max(1) as f64,
            b.p99 as f64 / a.p99.max(1) as f64,
            set.http.errors
        );
    }
    for set in &sets {
        if let Some(error) = &set.http.first_error {
            println!();
            println!("first HTTP error ({}): {error}", set.name);
        }
    }
    if mismatched > 0 {
        println!();
        println!(
            "warning: {mismatched} raw reads found another record count than bench-flows.json records"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::{BuildOptions, build_index};

    /// The raw read finds exactly the records the corpus gave each sampled
    /// flow, through the field names this module assumes.
    #[test]
    fn a_raw_read_finds_every_record_of_a_sampled_flow() {
        let dir = tempfile::tempdir().unwrap();
        build_index(&BuildOptions {
            records: 5_000,
            seed: 3,
            start: None,
            data_dir: dir.path().to_owned(),
            heap_bytes: 15_000_000,
            commit_every: 2_000,
            wait_for_merges: true,
        })
        .unwrap();
        let sample = read_flow_sample(dir.path()).unwrap();
        assert!(!sample.any.is_empty());
        let raw = RawIndex::open(&dir.path().join("index"), 10_000).unwrap();
        for flow in sample.any.iter().chain(&sample.sized) {
            let read = raw.read(&flow.key).unwrap();
            assert_eq!(read.records, flow.records, "{flow:?}");
            assert!(read.bytes > read.records * 100);
        }
        let none = raw.read("no-such-flow").unwrap();
        assert_eq!((none.records, none.bytes), (0, 0));
        assert!(
            build_index(&BuildOptions {
                records: 10,
                seed: 3,
                start: None,
                data_dir: dir.path().to_owned(),
                heap_bytes: 15_000_000,
                commit_every: 2_000,
                wait_for_merges: false,
            })
            .is_err(),
            "a second build into the same index is refused"
        );
    }
}
