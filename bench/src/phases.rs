//! The `phases` command: the query API's reads taken apart, phase by
//! phase, in this process, through the same calls its handlers make
//! (`query/src/server.rs` `Read::flow`, `query/src/list.rs` `list_flows`,
//! `QueryState::topology`), each timed on its own, so that where an HTTP
//! read's time goes is measured rather than guessed. What the server adds
//! on top (HTTP, the blocking pool) is the HTTP read's time minus the sum.
//!
//! The steps of `Read::flow` and `list_flows` are written out here, as the
//! server has them; a change there must be made here too. It opens the
//! index read-only (`RecordIndex::open_existing`) and never writes.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use causeway_index::{DigestCursor, DigestFilter, RecordIndex, RecordReader, RecordsRead};
use causeway_model::{DigestFacet, FlowDigest, FlowStatus, FlowSummary, Timestamp};
use causeway_query::{
    Contracts, FlowContext, FlowFilter, QueryConfig, Topology, analyze, detail, sort_records,
    summarize,
};
use tantivy::collector::{Count, TopDocs};
use tantivy::query::TermQuery;
use tantivy::schema::IndexRecordOption;
use tantivy::{Index, Order, Term};

use crate::ingest::read_flow_sample;
use crate::latency::Latencies;

/// Most unreceived events of one flow the server looks up
/// (`MAX_LOST_LOOKUPS` in `query/src/server.rs`).
const MAX_LOST_LOOKUPS: usize = 32;
/// The stored-document kind field and the digest kind, as
/// `index/src/schema.rs` names them (not exported).
const DOC_KIND: &str = "_doc";
const DOC_FLOW: &str = "flow";
const FLOW_LAST_US: &str = "flow_last_us";

/// What `phases` does.
#[derive(Debug, Clone)]
pub struct PhaseOptions {
    /// Flow lookups timed.
    pub requests: usize,
    pub warmup: usize,
    /// List pages timed (a filtered page can take seconds).
    pub list_requests: usize,
}

/// Named phases, each with its latencies, printed in order.
#[derive(Default)]
struct Phases {
    rows: Vec<(String, Latencies)>,
}

impl Phases {
    fn record(&mut self, name: &str, elapsed: Duration) {
        match self.rows.iter_mut().find(|(n, _)| n == name) {
            Some((_, latencies)) => latencies.record(elapsed),
            None => {
                let mut latencies = Latencies::default();
                latencies.record(elapsed);
                self.rows.push((name.to_owned(), latencies));
            }
        }
    }

    /// Adds one sample per phase of `request`: the phase's total in it.
    fn add_totals(&mut self, request: Phases) {
        for (name, latencies) in request.rows {
            self.record(&name, Duration::from_micros(latencies.total_micros()));
        }
    }

    fn print(&self, title: &str) {
        println!();
        println!("| {title} | count | p50 µs | p90 µs | p99 µs | max µs |");
        println!("|---|---:|---:|---:|---:|---:|");
        for (name, latencies) in &self.rows {
            let s = latencies.summary();
            println!(
                "| {name} | {} | {} | {} | {} | {} |",
                s.count, s.p50, s.p90, s.p99, s.max
            );
        }
    }
}

/// Times `f` into `phases` under `name`.
fn timed<T>(phases: &mut Phases, name: &str, f: impl FnOnce() -> T) -> T {
    let began = Instant::now();
    let value = f();
    phases.record(name, began.elapsed());
    value
}

pub fn phases(data_dir: &Path, options: &PhaseOptions) -> anyhow::Result<()> {
    let config = QueryConfig::new(data_dir);
    let index_dir = config.index_dir();
    let sample = read_flow_sample(data_dir)?;
    let reader = RecordIndex::open_existing(&index_dir)?
        .reader()?
        .with_bounds(config.read_bounds());
    let settings = config.flow_settings();

    let raw = Index::open_in_dir(&index_dir)
        .with_context(|| format!("opening {}", index_dir.display()))?;
    let raw_reader = raw.reader()?;
    let kind = raw.schema().get_field(DOC_KIND)?;
    let digest_docs = TermQuery::new(
        Term::from_field_text(kind, DOC_FLOW),
        IndexRecordOption::Basic,
    );
    let searcher = raw_reader.searcher();
    println!(
        "phases on {}: {} segments, {} digest documents (flows), {} documents in all",
        index_dir.display(),
        searcher.segment_readers().len(),
        searcher.search(&digest_docs, &Count)?,
        searcher.num_docs()
    );

    // The topology, as `QueryState::topology` learns it.
    let mut topo = Phases::default();
    let mut topology = None;
    let mut topology_digests = 0;
    for _ in 0..3 {
        let now = Timestamp::now();
        let window = i64::try_from(config.topology_window_secs)?.saturating_mul(1_000_000);
        let filter = DigestFilter {
            active_since_us: Some(now.as_micros().saturating_sub(window)),
            ..DigestFilter::default()
        };
        let digests = timed(
            &mut topo,
            "topology: digests of the window (`flow_digests`, up to `topology_max_flows`)",
            || reader.flow_digests(&filter, None, config.topology_max_flows),
        )?;
        topology_digests = digests.len();
        let learned = timed(&mut topo, "topology: `Topology::learn`", || {
            Topology::learn(config.topology_settings(), Contracts::default(), &digests)
        });
        timed(&mut topo, "topology: `page()` + JSON", || {
            serde_json::to_vec(&learned.page())
        })?;
        topology = Some(learned);
    }
    let topology = topology.context("no topology")?;
    topo.print(&format!(
        "`GET /api/v1/topology`, learned again (3 times, {topology_digests} digests)"
    ));

    // Flow lookups: `Read::flow`.
    let mut lookup = Phases::default();
    let mut lost_lookups = 0usize;
    let flows = &sample.sized;
    for i in 0..options.warmup + options.requests {
        let flow = &flows[i % flows.len().max(1)];
        let mut p = Phases::default();
        let context = FlowContext {
            now: Timestamp::now(),
            topology: &topology,
            settings: &settings,
        };
        let began = Instant::now();
        let digest = timed(&mut p, "1 `flow_digest` (find + load the digest)", || {
            reader.flow_digest(&flow.key)
        })?
        .context("a sampled flow without a digest")?;
        let RecordsRead {
            mut records,
            truncated,
        } = timed(
            &mut p,
            "2 `records_newest` (search + `_source` + parse)",
            || reader.records_newest(&flow.key, config.max_flow_records),
        )?;
        timed(&mut p, "3 `sort_records`", || sort_records(&mut records));
        let analysis = timed(&mut p, "4 `analyze`", || analyze(&digest, context));
        let lost = unreceived_events(&digest);
        timed(
            &mut p,
            "5 lost-event lookups (`flow_keys_matching`)",
            || {
                lost.iter().try_for_each(|event| {
                    let query = format!("event_id:\"{}\"", event.replace('"', "\\\""));
                    reader.flow_keys_matching(&query, 4).map(drop)
                })
            },
        )?;
        if i >= options.warmup {
            lost_lookups += lost.len();
        }
        let detail = timed(&mut p, "6 `detail`", || {
            detail(analysis, records, truncated)
        });
        timed(&mut p, "7 JSON encoding (`serde_json::to_vec`)", || {
            serde_json::to_vec(&detail)
        })?;
        p.record("sum of 1-7", began.elapsed());
        if i >= options.warmup {
            lookup.add_totals(p);
        }
    }
    lookup.print(&format!(
        "`GET /api/v1/flows/{{key}}`, {}-{} record flows ({:.2} lost-event lookups per flow)",
        sample.sized_records.start(),
        sample.sized_records.end(),
        lost_lookups as f64 / options.requests.max(1) as f64
    ));

    // Flow list pages: `list_flows`, as the server runs it for limit=50.
    for (title, filter) in [
        ("`GET /api/v1/flows?limit=50`", FlowFilter::default()),
        (
            "`GET /api/v1/flows?limit=50&status=failed`",
            FlowFilter {
                statuses: vec![FlowStatus::Failed],
                ..FlowFilter::default()
            },
        ),
    ] {
        let mut list = Phases::default();
        let (mut scanned_total, mut calls_total) = (0usize, 0usize);
        for i in 0..1 + options.list_requests {
            let mut p = Phases::default();
            let context = FlowContext {
                now: Timestamp::now(),
                topology: &topology,
                settings: &settings,
            };
            let began = Instant::now();
            let (page, scanned, pages) = list_page(&reader, &filter, 50, context, &mut p)?;
            timed(&mut p, "3 JSON encoding of the page", || {
                serde_json::to_vec(&page)
            })?;
            p.record("sum of 1-3", began.elapsed());
            if i >= 1 {
                list.add_totals(p);
                scanned_total += scanned;
                calls_total += pages;
            }
        }
        // The search alone, for comparison: every digest document matched
        // and the newest 100 kept by a fast field, no document loaded.
        for _ in 0..options.requests.min(200) {
            timed(
                &mut list,
                "(raw tantivy: `_doc:flow` + TopDocs(100) by flow_last_us, no load)",
                || {
                    searcher.search(
                        &digest_docs,
                        &TopDocs::with_limit(100)
                            .order_by_fast_field::<i64>(FLOW_LAST_US, Order::Desc),
                    )
                },
            )?;
        }
        list.print(&format!(
            "{title} ({:.0} digests scanned, {:.1} `flow_digests` calls per page)",
            scanned_total as f64 / options.list_requests.max(1) as f64,
            calls_total as f64 / options.list_requests.max(1) as f64
        ));
    }
    Ok(())
}

/// One page of `list_flows` (`query/src/list.rs`), its phases timed:
/// `flow_digests` chunks of `2 * limit` (at least 64) until the page is
/// full, each digest summarized and filtered. Returns the page, digests
/// scanned and the chunks read.
fn list_page(
    reader: &RecordReader,
    filter: &FlowFilter,
    limit: usize,
    context: FlowContext<'_>,
    p: &mut Phases,
) -> anyhow::Result<(Vec<FlowSummary>, usize, usize)> {
    let digest_filter = DigestFilter {
        facets_any: if filter.statuses.contains(&FlowStatus::Failed) {
            vec![DigestFacet::Failed]
        } else {
            Vec::new()
        },
        ..DigestFilter::default()
    };
    let chunk = limit.saturating_mul(2).clamp(64, 1_024);
    let (mut flows, mut scanned, mut pages) = (Vec::new(), 0, 0);
    let mut cursor: Option<DigestCursor> = None;
    loop {
        pages += 1;
        let digests = timed(
            p,
            "1 `flow_digests` (search + load + parse digests)",
            || reader.flow_digests(&digest_filter, cursor.as_ref(), chunk),
        )?;
        let exhausted = digests.len() < chunk;
        let began = Instant::now();
        let mut full = false;
        for digest in &digests {
            scanned += 1;
            cursor = Some(DigestCursor::after(digest));
            let summary = summarize(digest, context);
            if filter.keeps(&summary) {
                flows.push(summary);
                if flows.len() == limit {
                    full = true;
                    break;
                }
            }
        }
        p.record("2 `summarize` + filter", began.elapsed());
        if full || exhausted || scanned >= 20_000 {
            return Ok((flows, scanned, pages));
        }
    }
}

/// Events published in the flow that no step of it received, at most
/// [`MAX_LOST_LOOKUPS`]: `unreceived_events` in `query/src/flow.rs`.
fn unreceived_events(digest: &FlowDigest) -> Vec<String> {
    digest
        .events
        .iter()
        .filter(|(id, event)| {
            event.published.is_some() && !digest.steps.keys().any(|step| &step.event_id == *id)
        })
        .map(|(id, _)| id.as_str().to_owned())
        .take(MAX_LOST_LOOKUPS)
        .collect()
}
