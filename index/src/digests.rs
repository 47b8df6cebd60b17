//! Reading flow digests: one flow's by key, and pages of flows newest first
//! narrowed by a [`DigestFilter`], for query's flow list and topology.
//!
//! A page is one tantivy search: the filter and the cursor become a query
//! on the digest documents' indexed fields, and a collector keeps the top
//! `limit` in the order (`flow_last_us` descending, then `flow_key`
//! descending), which is total since a flow has one live digest document;
//! only those are read from the document store. A cursor is the
//! (last activity, key) of the last digest of the previous page; the next
//! page is what comes strictly after it in that order, so flows sharing a
//! last activity are neither skipped nor repeated. Reads only; it adds
//! nothing to what the writer stores.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::ops::Bound;

use causeway_model::{DigestFacet, FlowDigest};
use tantivy::collector::{Collector, SegmentCollector};
use tantivy::columnar::{Column, StrColumn};
use tantivy::query::{BooleanQuery, Query, RangeQuery, TermQuery, TermSetQuery};
use tantivy::schema::{Field, IndexRecordOption};
use tantivy::{DocAddress, DocId, Score, SegmentOrdinal, SegmentReader, Term};

use crate::digest_doc;
use crate::error::IndexError;
use crate::partition::TimePruned;
use crate::reader::{RecordReader, with_terms};
use crate::schema::{FLOW_KEY, FLOW_LAST_US, Fields};

/// Which flows a digest read returns; every constraint given must hold.
/// The default lets every flow through.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DigestFilter {
    /// Flows with a record of any of these services (none: no constraint).
    pub services: Vec<String>,
    /// Flows with an event of any of these types (none: no constraint).
    pub event_types: Vec<String>,
    /// Flows with at least one of these facets (none: no constraint).
    pub facets_any: Vec<DigestFacet>,
    /// Flows whose last record is at or after this time.
    pub active_since_us: Option<i64>,
    /// Flows whose first record is at or before this time.
    pub active_until_us: Option<i64>,
    /// Flows whose first and last records are at least this far apart.
    pub min_duration_us: Option<u64>,
    /// Only the flows of these keys (an empty list lets none through).
    pub keys: Option<Vec<String>>,
}

/// Where a page of digests ended: the last digest's last activity and key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestCursor {
    pub last_us: i64,
    pub key: String,
}

impl DigestCursor {
    /// The cursor after `digest`.
    pub fn after(digest: &FlowDigest) -> Self {
        Self {
            last_us: digest.last_us,
            key: digest.key.clone(),
        }
    }
}

/// Documents with any of `values` in `field`.
fn any_of<'a>(field: Field, values: impl IntoIterator<Item = &'a str>) -> Box<dyn Query> {
    Box::new(TermSetQuery::new(
        values.into_iter().map(|v| Term::from_field_text(field, v)),
    ))
}

fn i64_range(field: Field, lower: Bound<i64>, upper: Bound<i64>) -> Box<dyn Query> {
    let term = |b: Bound<i64>| b.map(|v| Term::from_field_i64(field, v));
    Box::new(RangeQuery::new(term(lower), term(upper)))
}

/// The digest documents `filter` lets through, strictly after `after`.
/// `None` when none can pass (an empty key list).
fn digest_query(
    fields: &Fields,
    filter: &DigestFilter,
    after: Option<&DigestCursor>,
) -> Option<BooleanQuery> {
    let f = &fields.digest;
    let mut must: Vec<Box<dyn Query>> = vec![Box::new(TermQuery::new(
        fields.flow_term(),
        IndexRecordOption::Basic,
    ))];
    if let Some(keys) = &filter.keys {
        if keys.is_empty() {
            return None;
        }
        must.push(any_of(f.key, keys.iter().map(String::as_str)));
    }
    if !filter.services.is_empty() {
        must.push(any_of(
            f.services,
            filter.services.iter().map(String::as_str),
        ));
    }
    if !filter.event_types.is_empty() {
        must.push(any_of(
            f.event_types,
            filter.event_types.iter().map(String::as_str),
        ));
    }
    if !filter.facets_any.is_empty() {
        must.push(any_of(
            f.facets,
            filter.facets_any.iter().map(|facet| facet.as_str()),
        ));
    }
    if let Some(since) = filter.active_since_us {
        must.push(i64_range(
            f.last_us,
            Bound::Included(since),
            Bound::Unbounded,
        ));
    }
    if let Some(until) = filter.active_until_us {
        must.push(i64_range(
            f.first_us,
            Bound::Unbounded,
            Bound::Included(until),
        ));
    }
    if let Some(min) = filter.min_duration_us {
        must.push(Box::new(RangeQuery::new(
            Bound::Included(Term::from_field_u64(f.duration_us, min)),
            Bound::Unbounded,
        )));
    }
    if let Some(cursor) = after {
        // Older, or as old with a smaller key.
        let older = i64_range(f.last_us, Bound::Unbounded, Bound::Excluded(cursor.last_us));
        let tied = BooleanQuery::intersection(vec![
            i64_range(
                f.last_us,
                Bound::Included(cursor.last_us),
                Bound::Included(cursor.last_us),
            ),
            Box::new(RangeQuery::new(
                Bound::Unbounded,
                Bound::Excluded(Term::from_field_text(f.key, &cursor.key)),
            )),
        ]);
        must.push(Box::new(BooleanQuery::union(vec![older, Box::new(tied)])));
    }
    Some(BooleanQuery::intersection(must))
}

/// Collects the `limit` digest documents greatest by (last activity, key),
/// greatest first, with both.
struct NewestDigests {
    limit: usize,
}

/// One segment's part of [`NewestDigests`]. Within a segment a key's term
/// ordinal sorts as the key does, so the segment's top `limit` are found by
/// (time, ordinal) and only those keys are read from the dictionary.
struct SegmentNewestDigests {
    limit: usize,
    segment: SegmentOrdinal,
    last_us: Option<Column<i64>>,
    keys: Option<StrColumn>,
    /// The least on top, to be replaced by anything greater.
    top: BinaryHeap<Reverse<(i64, u64, DocId)>>,
}

impl SegmentCollector for SegmentNewestDigests {
    type Fruit = std::io::Result<Vec<(i64, String, DocAddress)>>;

    fn collect(&mut self, doc: DocId, _score: Score) {
        let (Some(last_us), Some(keys)) = (&self.last_us, &self.keys) else {
            return;
        };
        let (Some(t), Some(ord)) = (last_us.first(doc), keys.ords().first(doc)) else {
            return;
        };
        let hit = (t, ord, doc);
        if self.top.len() < self.limit {
            self.top.push(Reverse(hit));
        } else if self.top.peek().is_some_and(|Reverse(least)| hit > *least) {
            self.top.pop();
            self.top.push(Reverse(hit));
        }
    }

    fn harvest(self) -> Self::Fruit {
        let Some(keys) = &self.keys else {
            return Ok(Vec::new());
        };
        let hits = self
            .top
            .into_iter()
            .map(|Reverse((t, ord, doc))| (ord, (t, doc)))
            .collect();
        let segment = self.segment;
        Ok(with_terms(keys, hits)?
            .into_iter()
            .map(|(key, (t, doc))| (t, key, DocAddress::new(segment, doc)))
            .collect())
    }
}

impl Collector for NewestDigests {
    type Fruit = Vec<(i64, String, DocAddress)>;
    type Child = SegmentNewestDigests;

    fn for_segment(
        &self,
        segment: SegmentOrdinal,
        reader: &SegmentReader,
    ) -> tantivy::Result<Self::Child> {
        Ok(SegmentNewestDigests {
            limit: self.limit,
            segment,
            last_us: reader.fast_fields().column_opt::<i64>(FLOW_LAST_US)?,
            keys: reader.fast_fields().str(FLOW_KEY)?,
            top: BinaryHeap::new(),
        })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(
        &self,
        segments: Vec<std::io::Result<Vec<(i64, String, DocAddress)>>>,
    ) -> tantivy::Result<Self::Fruit> {
        let mut hits = Vec::new();
        for segment in segments {
            hits.extend(segment?);
        }
        hits.sort_unstable_by(|a, b| (b.0, &b.1).cmp(&(a.0, &a.1)));
        hits.truncate(self.limit);
        Ok(hits)
    }
}

impl RecordReader {
    /// The digest of flow `key`, `None` when the index has none (no record
    /// of that flow was committed).
    pub fn flow_digest(&self, key: &str) -> Result<Option<FlowDigest>, IndexError> {
        digest_doc::find(&self.searcher(), self.fields(), key)
    }

    /// Up to `limit` digests that `filter` lets through, the most recently
    /// active first (ties: the greater key first), strictly after `after`
    /// in that order. Fewer than `limit` means there are no more.
    pub fn flow_digests(
        &self,
        filter: &DigestFilter,
        after: Option<&DigestCursor>,
        limit: usize,
    ) -> Result<Vec<FlowDigest>, IndexError> {
        let Some(query) = digest_query(self.fields(), filter, after) else {
            return Ok(Vec::new());
        };
        if limit == 0 {
            return Ok(Vec::new());
        }
        let searcher = self.searcher();
        // A segment all older than `since`, or all newer than the cursor,
        // holds no digest this page wants (see `partition.rs`).
        let collector = TimePruned::new(
            NewestDigests { limit },
            filter.active_since_us,
            after.map(|cursor| cursor.last_us),
        );
        let hits = searcher.search(&query, &collector)?;
        hits.into_iter()
            .map(|(_, key, address)| {
                digest_doc::load_or_rebuild(&searcher, self.fields(), address, &key)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use causeway_model::{CorrelationId, EventId, Record, Stage, Timestamp};

    use super::*;
    use crate::RecordIndex;

    fn record(t: i64, flow: &str, service: &str, stage: Stage, event_type: &str) -> Record {
        let mut r = Record::new(Timestamp::from_micros(t), service, stage.as_str());
        r.stage = stage;
        r.correlation_id = Some(CorrelationId::new(flow).unwrap());
        r.event_id = Some(EventId::new(format!("{flow}-{event_type}")).unwrap());
        r.event_type = Some(event_type.to_owned());
        r
    }

    /// Writes `records`, one commit per chunk of three, so digests span
    /// segments.
    fn index_with(records: &[Record]) -> (tempfile::TempDir, RecordIndex) {
        let dir = tempfile::tempdir().unwrap();
        let index = RecordIndex::open_or_create(dir.path()).unwrap();
        let mut writer = index.writer(15_000_000).unwrap();
        for chunk in records.chunks(3) {
            for r in chunk {
                writer.add(r).unwrap();
            }
            writer.commit().unwrap();
        }
        (dir, index)
    }

    fn keys(digests: &[FlowDigest]) -> Vec<&str> {
        digests.iter().map(|d| d.key.as_str()).collect()
    }

    /// Every page of `limit`, joined, following the cursor.
    fn all_pages(reader: &RecordReader, filter: &DigestFilter, limit: usize) -> Vec<String> {
        let mut out = Vec::new();
        let mut cursor = None;
        loop {
            let page = reader.flow_digests(filter, cursor.as_ref(), limit).unwrap();
            out.extend(page.iter().map(|d| d.key.clone()));
            match page.last() {
                Some(last) if page.len() == limit => cursor = Some(DigestCursor::after(last)),
                _ => return out,
            }
        }
    }

    #[test]
    fn digests_come_newest_first_and_pages_neither_skip_nor_repeat_ties() {
        // Flows f0..f9: f3..f8 share their last activity (500).
        let mut records = Vec::new();
        for i in 0..10 {
            let flow = format!("f{i}");
            let last = if (3..=8).contains(&i) { 500 } else { i * 100 };
            records.push(record(1, &flow, "order", Stage::Published, "Placed"));
            records.push(record(last, &flow, "payment", Stage::Handled, "Placed"));
        }
        let (_dir, index) = index_with(&records);
        let reader = index.reader().unwrap();
        let all = reader
            .flow_digests(&DigestFilter::default(), None, 100)
            .unwrap();
        assert_eq!(
            keys(&all),
            ["f9", "f8", "f7", "f6", "f5", "f4", "f3", "f2", "f1", "f0"]
        );
        for limit in 1..=11 {
            assert_eq!(
                all_pages(&reader, &DigestFilter::default(), limit),
                keys(&all),
                "pages of {limit}"
            );
        }
    }

    #[test]
    fn each_filter_field_narrows_as_documented() {
        let mut failed = record(150, "b", "payment", Stage::Failed, "Charge");
        failed.consumer_group = Some("payments".into());
        let records = vec![
            // a: order only, 100..200 (100 long).
            record(100, "a", "order", Stage::Published, "Placed"),
            record(200, "a", "order", Stage::Log, "Placed"),
            // b: order and payment, 100..160, one failure.
            record(100, "b", "order", Stage::Published, "Charge"),
            record(120, "b", "payment", Stage::Received, "Charge"),
            failed,
            record(160, "b", "payment", Stage::Log, "Charge"),
            // c: shipping, 300..1300 (1000 long).
            record(300, "c", "shipping", Stage::Published, "Shipped"),
            record(1_300, "c", "shipping", Stage::Log, "Shipped"),
        ];
        let (_dir, index) = index_with(&records);
        let reader = index.reader().unwrap();
        let read = |filter: DigestFilter| {
            let digests = reader.flow_digests(&filter, None, 100).unwrap();
            keys(&digests).join(",")
        };
        assert_eq!(read(DigestFilter::default()), "c,a,b");
        let services = |s: &[&str]| DigestFilter {
            services: s.iter().map(|s| s.to_string()).collect(),
            ..DigestFilter::default()
        };
        assert_eq!(read(services(&["payment"])), "b");
        assert_eq!(read(services(&["payment", "shipping"])), "c,b");
        assert_eq!(read(services(&["nobody"])), "");
        assert_eq!(
            read(DigestFilter {
                event_types: vec!["Placed".into(), "Shipped".into()],
                ..DigestFilter::default()
            }),
            "c,a"
        );
        assert_eq!(
            read(DigestFilter {
                facets_any: vec![DigestFacet::Failed, DigestFacet::DeadLettered],
                ..DigestFilter::default()
            }),
            "b"
        );
        assert_eq!(
            read(DigestFilter {
                facets_any: vec![DigestFacet::DeadLettered],
                ..DigestFilter::default()
            }),
            ""
        );
        assert_eq!(
            read(DigestFilter {
                active_since_us: Some(200),
                ..DigestFilter::default()
            }),
            "c,a"
        );
        assert_eq!(
            read(DigestFilter {
                active_until_us: Some(100),
                ..DigestFilter::default()
            }),
            "a,b"
        );
        assert_eq!(
            read(DigestFilter {
                active_since_us: Some(161),
                active_until_us: Some(299),
                ..DigestFilter::default()
            }),
            "a"
        );
        assert_eq!(
            read(DigestFilter {
                min_duration_us: Some(100),
                ..DigestFilter::default()
            }),
            "c,a"
        );
        assert_eq!(
            read(DigestFilter {
                keys: Some(vec!["a".into(), "b".into(), "zz".into()]),
                ..DigestFilter::default()
            }),
            "a,b"
        );
        assert_eq!(
            read(DigestFilter {
                keys: Some(Vec::new()),
                ..DigestFilter::default()
            }),
            ""
        );
        // Filters and the cursor together.
        let filter = services(&["order"]);
        let first = reader.flow_digests(&filter, None, 1).unwrap();
        assert_eq!(keys(&first), ["a"]);
        let rest = reader
            .flow_digests(&filter, Some(&DigestCursor::after(&first[0])), 10)
            .unwrap();
        assert_eq!(keys(&rest), ["b"]);
    }

    #[test]
    fn a_flow_reads_back_by_key_and_an_unknown_one_is_none() {
        let records = [
            record(1, "a", "order", Stage::Published, "Placed"),
            record(2, "a", "payment", Stage::Received, "Placed"),
        ];
        let (_dir, index) = index_with(&records);
        let reader = index.reader().unwrap();
        assert_eq!(
            reader.flow_digest("a").unwrap(),
            Some(FlowDigest::of("a", &records))
        );
        assert_eq!(reader.flow_digest("b").unwrap(), None);
    }
}
