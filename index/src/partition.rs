//! Time partitions: the index's segments grouped by UTC day, so that
//! retention drops whole segments and a read within a time range never
//! opens the postings of a segment outside it.
//!
//! One tantivy index holds every day (a commit must cover the records, the
//! flows' digests and the collector's checkpoint at once, which separate
//! indexes per day could not). What makes a segment a partition is the
//! merge policy: [`DayMergePolicy`] merges only segments whose newest
//! document falls on the same day, so, as records arrive roughly in time
//! order, each day ends up in a few segments of its own and a segment
//! never mixes a week-old day with today. A segment's span is read from
//! its fast-field columns' minimum and maximum (record time and digest
//! last time), which tantivy keeps per segment: reading it costs no scan.
//!
//! Retention deletes the records (and flow digests) older than the cutoff
//! with a delete query; a segment left with no live document is dropped
//! whole at the commit and its files removed. Records that arrive late
//! (an agent catching up on a week-old file) land in today's segment and
//! are still deleted exactly on time; only their bytes wait for the day.
//!
//! [`TimePruned`] wraps a collector so that a search bounded in time
//! skips every segment whose span lies outside the bounds before its
//! query is evaluated there, and counts the segments it skipped.
//!
//! This module imports the schema's field names only.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use tantivy::collector::{Collector, SegmentCollector};
use tantivy::index::SegmentId;
use tantivy::merge_policy::{LogMergePolicy, MergeCandidate, MergePolicy};
use tantivy::query::Weight;
use tantivy::{Index, SegmentMeta, SegmentOrdinal, SegmentReader};

use crate::schema::{FLOW_LAST_US, TIMESTAMP_US};

/// Microseconds in a day: the width of a partition.
pub(crate) const DAY_US: i64 = 86_400 * 1_000_000;

/// Segment spans the merge policy remembers before it starts over.
const MAX_REMEMBERED_SPANS: usize = 10_000;

/// The oldest and newest time a segment's documents hold (records by
/// their time, digests by their flow's last record), deleted documents
/// included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Span {
    pub(crate) min_us: i64,
    pub(crate) max_us: i64,
}

impl Span {
    /// Whether any time of the span lies within `since..=until` (either
    /// end open when `None`).
    pub(crate) fn meets(&self, since_us: Option<i64>, until_us: Option<i64>) -> bool {
        since_us.is_none_or(|since| self.max_us >= since)
            && until_us.is_none_or(|until| self.min_us <= until)
    }

    /// The UTC day (days since 1970-01-01) of the newest time: the
    /// partition the segment belongs to.
    pub(crate) fn day(&self) -> i64 {
        self.max_us.div_euclid(DAY_US)
    }
}

/// The span of a segment's documents, from its columns' statistics; `None`
/// for a segment with no time at all.
pub(crate) fn segment_span(reader: &SegmentReader) -> tantivy::Result<Option<Span>> {
    let mut span: Option<Span> = None;
    for name in [TIMESTAMP_US, FLOW_LAST_US] {
        let Some(column) = reader.fast_fields().column_opt::<i64>(name)? else {
            continue;
        };
        if column.values.num_vals() == 0 {
            continue;
        }
        let (min_us, max_us) = (column.min_value(), column.max_value());
        span = Some(match span {
            None => Span { min_us, max_us },
            Some(s) => Span {
                min_us: s.min_us.min(min_us),
                max_us: s.max_us.max(max_us),
            },
        });
    }
    Ok(span)
}

/// tantivy's log merge policy, applied to each day's segments on their
/// own: segments of different days are never merged together.
pub(crate) struct DayMergePolicy {
    index: Index,
    inner: LogMergePolicy,
    /// Per segment, its span once read (`None`: no time in it). Segments
    /// are immutable, so a span never goes stale.
    spans: Mutex<HashMap<SegmentId, Option<Span>>>,
}

impl std::fmt::Debug for DayMergePolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DayMergePolicy")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl DayMergePolicy {
    pub(crate) fn new(index: Index) -> Self {
        Self {
            index,
            inner: LogMergePolicy::default(),
            spans: Mutex::new(HashMap::new()),
        }
    }

    /// The span of `meta`'s segment, read once. A segment that cannot be
    /// opened has no known day and is left out of merges this time.
    fn span(&self, meta: &SegmentMeta) -> Result<Option<Span>, ()> {
        let mut spans = self.spans.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(span) = spans.get(&meta.id()) {
            return Ok(*span);
        }
        let read = SegmentReader::open(&self.index.segment(meta.clone()))
            .and_then(|reader| segment_span(&reader));
        match read {
            Ok(span) => {
                if spans.len() >= MAX_REMEMBERED_SPANS {
                    spans.clear();
                }
                spans.insert(meta.id(), span);
                Ok(span)
            }
            Err(error) => {
                tracing::warn!(segment = %meta.id().short_uuid_string(), %error,
                    "reading a segment's time span failed; it is not merged this time");
                Err(())
            }
        }
    }
}

impl MergePolicy for DayMergePolicy {
    fn compute_merge_candidates(&self, segments: &[SegmentMeta]) -> Vec<MergeCandidate> {
        let mut days: HashMap<Option<i64>, Vec<SegmentMeta>> = HashMap::new();
        for meta in segments {
            if let Ok(span) = self.span(meta) {
                days.entry(span.map(|s| s.day()))
                    .or_default()
                    .push(meta.clone());
            }
        }
        days.values()
            .flat_map(|day| self.inner.compute_merge_candidates(day))
            .collect()
    }
}

/// A collector that skips the segments whose span lies outside
/// `since..=until` without evaluating the query there (their fruit is
/// that of a segment with no match), and counts them.
pub(crate) struct TimePruned<C> {
    inner: C,
    since_us: Option<i64>,
    until_us: Option<i64>,
    skipped: AtomicUsize,
}

impl<C> TimePruned<C> {
    pub(crate) fn new(inner: C, since_us: Option<i64>, until_us: Option<i64>) -> Self {
        Self {
            inner,
            since_us,
            until_us,
            skipped: AtomicUsize::new(0),
        }
    }

    /// Segments skipped by the searches made with this collector.
    pub(crate) fn skipped(&self) -> usize {
        self.skipped.load(Ordering::Relaxed)
    }

    fn outside(&self, reader: &SegmentReader) -> tantivy::Result<bool> {
        if self.since_us.is_none() && self.until_us.is_none() {
            return Ok(false);
        }
        Ok(match segment_span(reader)? {
            Some(span) => !span.meets(self.since_us, self.until_us),
            None => true,
        })
    }
}

impl<C: Collector> Collector for TimePruned<C> {
    type Fruit = C::Fruit;
    type Child = C::Child;

    fn for_segment(
        &self,
        segment_local_id: SegmentOrdinal,
        segment: &SegmentReader,
    ) -> tantivy::Result<Self::Child> {
        self.inner.for_segment(segment_local_id, segment)
    }

    fn requires_scoring(&self) -> bool {
        self.inner.requires_scoring()
    }

    fn merge_fruits(
        &self,
        segment_fruits: Vec<<Self::Child as SegmentCollector>::Fruit>,
    ) -> tantivy::Result<Self::Fruit> {
        self.inner.merge_fruits(segment_fruits)
    }

    fn collect_segment(
        &self,
        weight: &dyn Weight,
        segment_ord: u32,
        reader: &SegmentReader,
    ) -> tantivy::Result<<Self::Child as SegmentCollector>::Fruit> {
        if self.outside(reader)? {
            self.skipped.fetch_add(1, Ordering::Relaxed);
            return Ok(self.inner.for_segment(segment_ord, reader)?.harvest());
        }
        self.inner.collect_segment(weight, segment_ord, reader)
    }
}

#[cfg(test)]
mod tests {
    use causeway_model::{CorrelationId, Record, Timestamp};

    use super::*;
    use crate::RecordIndex;

    /// A day far from the epoch, so that day numbers are not all zero.
    const BASE_US: i64 = 20_000 * DAY_US;
    const DAYS: i64 = 10;
    const COMMITS_PER_DAY: i64 = 9;
    const RECORDS_PER_COMMIT: i64 = 20;

    /// The spans of the committed segments, read straight from tantivy.
    fn segment_spans(dir: &std::path::Path) -> Vec<(String, Span)> {
        let index = Index::open_in_dir(dir).unwrap();
        let searcher = index.reader().unwrap().searcher();
        searcher
            .segment_readers()
            .iter()
            .map(|r| {
                let span = segment_span(r).unwrap().unwrap();
                (r.segment_id().uuid_string(), span)
            })
            .collect()
    }

    /// Ten days of records, each day written in nine commits (one flow
    /// each), then tantivy's merges finished.
    fn ten_days(dir: &std::path::Path) -> RecordIndex {
        let index = RecordIndex::open_or_create(dir).unwrap();
        let mut writer = index.writer(15_000_000).unwrap();
        for day in 0..DAYS {
            for commit in 0..COMMITS_PER_DAY {
                let flow = CorrelationId::new(format!("flow-{day}-{commit}")).unwrap();
                for i in 0..RECORDS_PER_COMMIT {
                    let second = commit * RECORDS_PER_COMMIT + i;
                    let t = BASE_US + day * DAY_US + second * 1_000_000;
                    let mut record = Record::new(Timestamp::from_micros(t), "svc", "step");
                    record.correlation_id = Some(flow.clone());
                    writer.add(&record).unwrap();
                }
                writer.commit().unwrap();
            }
        }
        writer.finish_merges().unwrap();
        index
    }

    #[test]
    fn segments_are_merged_within_a_day_and_never_across_days() {
        let dir = tempfile::tempdir().unwrap();
        let index = ten_days(dir.path());
        let spans = segment_spans(dir.path());
        for (id, span) in &spans {
            assert_eq!(
                span.min_us.div_euclid(DAY_US),
                span.day(),
                "segment {id} mixes days: {span:?}"
            );
        }
        let reader = index.reader().unwrap();
        let partitions = reader.partitions().unwrap();
        assert_eq!(partitions.len(), DAYS as usize);
        for (day, partition) in partitions.iter().enumerate() {
            assert_eq!(partition.day_start_us, BASE_US + day as i64 * DAY_US);
            // Nine commits wrote nine segments; the log policy merged them.
            assert!(
                partition.segments < COMMITS_PER_DAY as usize,
                "{partition:?}"
            );
            // The day's records and its flows' digests.
            let per_day = COMMITS_PER_DAY * (RECORDS_PER_COMMIT + 1);
            assert_eq!(partition.documents, per_day as u64);
        }
    }

    #[test]
    fn expired_days_are_dropped_as_whole_segments_and_reads_skip_other_days() {
        let dir = tempfile::tempdir().unwrap();
        let index = ten_days(dir.path());
        let before = segment_spans(dir.path());

        let mut writer = index.writer(15_000_000).unwrap();
        let cutoff = BASE_US + 3 * DAY_US;
        let expired = writer.expire_before(cutoff).unwrap();
        assert_eq!(
            expired.records,
            (3 * COMMITS_PER_DAY * RECORDS_PER_COMMIT) as u64
        );
        assert_eq!(expired.flows, (3 * COMMITS_PER_DAY) as u64);
        writer.commit().unwrap();
        let reader = index.reader().unwrap();
        reader.reload().unwrap();
        writer.collect_garbage().unwrap();

        let kept = (7 * COMMITS_PER_DAY * RECORDS_PER_COMMIT) as u64;
        assert_eq!(reader.record_count().unwrap(), kept);
        let partitions = reader.partitions().unwrap();
        assert_eq!(partitions.len(), 7);
        assert_eq!(partitions[0].day_start_us, cutoff);

        // Every segment of an expired day is gone, files and all; every
        // other segment is untouched.
        let after = segment_spans(dir.path());
        let files: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        for (id, span) in &before {
            let on_disk = files.iter().any(|f| f.starts_with(id.as_str()));
            let live = after.iter().any(|(other, _)| other == id);
            let expired = span.max_us < cutoff;
            assert_eq!(
                (live, on_disk),
                (!expired, !expired),
                "segment {id} {span:?}"
            );
        }

        // A read of the last two days evaluates its query only in their
        // segments, and finds exactly their records.
        let since = BASE_US + 8 * DAY_US;
        let in_range = after.iter().filter(|(_, s)| s.max_us >= since).count();
        let (skipped, searched) = reader.segments_in_range(Some(since), None).unwrap();
        assert_eq!((skipped, searched), (after.len() - in_range, in_range));
        assert!(skipped > 0);
        let (total, _) = reader.search_in_range("*", Some(since), None, 5).unwrap();
        assert_eq!(total as i64, 2 * COMMITS_PER_DAY * RECORDS_PER_COMMIT);
        // So does a page of flows active since then, and one after a cursor.
        let filter = crate::DigestFilter {
            active_since_us: Some(since),
            ..Default::default()
        };
        let flows = reader.flow_digests(&filter, None, 100).unwrap();
        assert_eq!(flows.len(), 2 * COMMITS_PER_DAY as usize);
        let cursor = crate::DigestCursor::after(flows.last().unwrap());
        assert!(
            reader
                .flow_digests(&filter, Some(&cursor), 100)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn a_span_meets_a_range_when_they_share_a_time() {
        let span = Span {
            min_us: 10,
            max_us: 20,
        };
        assert!(span.meets(None, None));
        assert!(span.meets(Some(20), None));
        assert!(!span.meets(Some(21), None));
        assert!(span.meets(None, Some(10)));
        assert!(!span.meets(None, Some(9)));
        assert!(span.meets(Some(0), Some(100)));
        assert!(!span.meets(Some(21), Some(100)));
    }

    #[test]
    fn a_span_belongs_to_the_utc_day_of_its_newest_time() {
        let span = |min_us, max_us| Span { min_us, max_us };
        assert_eq!(span(0, DAY_US - 1).day(), 0);
        assert_eq!(span(0, DAY_US).day(), 1);
        assert_eq!(span(-5, -1).day(), -1);
    }
}
