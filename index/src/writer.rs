//! Adding records and committing, and keeping one digest document per flow
//! up to date. Only the collector holds a writer; tantivy allows one per
//! index and locks the directory to enforce it.
//!
//! Each record with a flow key is also folded into a digest of the records
//! added since the last commit (one per flow). [`RecordWriter::commit`]
//! merges each into the flow's committed digest, taken from a bounded cache
//! of the digests this writer committed or else read back from the index as
//! of the last commit, replaces the flow's digest document, and commits
//! records and digests in one tantivy commit: after a crash the index holds
//! both or neither, so digests never disagree with the committed records. A
//! commit that fails is rolled back whole (records included), so nothing
//! half-done is ever committed later.
//!
//! Commits block (they fsync): callers run them off the async runtime.
//! This module imports the schema and the digest document only; it never
//! opens an index itself.

use std::collections::HashMap;

use causeway_model::{FlowDigest, Record};
use std::ops::Bound;

use rustc_hash::FxHashMap;
use tantivy::collector::Count;
use tantivy::query::{BooleanQuery, Occur, Query, RangeQuery, TermQuery};
use tantivy::schema::{Field, IndexRecordOption};
use tantivy::{Index, IndexReader, IndexWriter, ReloadPolicy, Searcher, SegmentReader, Term};

use crate::digest_doc;
use crate::error::IndexError;
use crate::partition::{DayMergePolicy, Span, segment_span};
use crate::recent_hashes::{MAX_RECENT_HASHES, RecentHashes};
use crate::schema::Fields;
use crate::schema::INGESTED_US;

/// Most indexing threads a writer may have (tantivy's own bound, which it
/// does not export).
pub const MAX_INDEX_THREADS: usize = 8;

/// Least indexing memory each indexing thread needs (tantivy's own bound).
pub const MIN_HEAP_BYTES_PER_THREAD: usize = 15_000_000;

/// Why `threads` indexing threads sharing `heap_bytes` cannot index, if
/// they cannot: said in the terms of the collector's settings.
pub fn check_writer_threads(threads: usize, heap_bytes: usize) -> Result<(), IndexError> {
    if !(1..=MAX_INDEX_THREADS).contains(&threads) {
        return Err(IndexError::Settings(format!(
            "{threads} indexing threads: between 1 and {MAX_INDEX_THREADS} are possible"
        )));
    }
    if heap_bytes / threads < MIN_HEAP_BYTES_PER_THREAD {
        return Err(IndexError::Settings(format!(
            "an indexing memory budget of {heap_bytes} bytes is too small for {threads} indexing threads: each needs at least {MIN_HEAP_BYTES_PER_THREAD}"
        )));
    }
    Ok(())
}

/// Most flows whose committed digest the writer keeps in memory.
const MAX_CACHED_FLOWS: usize = 100_000;
/// Most bytes of stored JSON the cached digests may add up to (in memory a
/// digest takes a small multiple of its JSON).
const MAX_CACHED_BYTES: usize = 64 * 1024 * 1024;

/// How long before its own time [`RecordWriter::add_once`] looks for a
/// record's copy: a record its sender gave no time is stamped on arrival,
/// so a copy sent again later (an OpenTelemetry Collector retries for 5
/// minutes by default) is stamped later than the first.
pub const DEDUPE_WINDOW_US: i64 = 10 * 60 * 1_000_000;

/// The oldest and newest ingest stamps of `segment`'s documents (deleted
/// ones included), if it has any.
fn stamps(segment: &SegmentReader) -> tantivy::Result<Option<(i64, i64)>> {
    let Some(column) = segment.fast_fields().column_opt::<i64>(INGESTED_US)? else {
        return Ok(None);
    };
    if column.values.num_vals() == 0 {
        return Ok(None);
    }
    Ok(Some((column.min_value(), column.max_value())))
}

/// The newest ingest stamp in the index, 0 if it has none.
fn newest_stamp(searcher: &Searcher) -> tantivy::Result<i64> {
    let mut newest = 0;
    for segment in searcher.segment_readers() {
        if let Some((_, max)) = stamps(segment)? {
            newest = newest.max(max);
        }
    }
    Ok(newest)
}

/// The committed digests of recently written flows, so that a commit need
/// not read back the digests it wrote a moment ago. Past either bound it is
/// dropped whole and fills again: a miss only costs a read of the index.
#[derive(Debug)]
struct DigestCache {
    digests: HashMap<String, (FlowDigest, usize)>,
    bytes: usize,
    max_flows: usize,
    max_bytes: usize,
}

impl DigestCache {
    fn new(max_flows: usize, max_bytes: usize) -> Self {
        Self {
            digests: HashMap::new(),
            bytes: 0,
            max_flows,
            max_bytes,
        }
    }

    fn take(&mut self, key: &str) -> Option<FlowDigest> {
        let (digest, bytes) = self.digests.remove(key)?;
        self.bytes -= bytes;
        Some(digest)
    }

    /// Keeps `digest`, whose stored JSON is `bytes` long, unless it alone
    /// is past the bounds.
    fn insert(&mut self, key: String, digest: FlowDigest, bytes: usize) {
        if self.digests.len() >= self.max_flows || self.bytes.saturating_add(bytes) > self.max_bytes
        {
            self.clear();
        }
        if self.max_flows > 0 && bytes <= self.max_bytes {
            self.bytes += bytes;
            if let Some((_, replaced)) = self.digests.insert(key, (digest, bytes)) {
                self.bytes -= replaced;
            }
        }
    }

    fn clear(&mut self) {
        self.digests.clear();
        self.bytes = 0;
    }
}

/// What [`RecordWriter::expire_before`] deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Expired {
    pub records: u64,
    pub flows: u64,
}

/// The index writer.
pub struct RecordWriter {
    writer: IndexWriter,
    fields: Fields,
    /// Sees the index as of the last commit: where a commit reads the
    /// digests the cache does not hold.
    committed: IndexReader,
    uncommitted: usize,
    /// Per flow, the digest of the records added since the last commit.
    delta: HashMap<String, FlowDigest>,
    cache: DigestCache,
    /// Content hashes added since the last commit, with their records'
    /// times.
    pending_hashes: FxHashMap<u64, i64>,
    /// Content hashes committed lately.
    recent_hashes: RecentHashes,
    /// The last commit's segments with their time spans, read at the
    /// first [`Self::add_once`] after it (`None`: not read yet); `None`
    /// for a segment [`Self::recent_hashes`] answers for.
    committed_spans: Option<(Searcher, Vec<Option<Span>>)>,
    /// Set when a rollback failed: tantivy's writer is then unusable.
    broken: Option<String>,
    /// The last ingest stamp given out.
    last_ingested_us: i64,
}

impl std::fmt::Debug for RecordWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordWriter")
            .field("uncommitted", &self.uncommitted)
            .field("flows_touched", &self.delta.len())
            .field("flows_cached", &self.cache.digests.len())
            .finish()
    }
}

impl RecordWriter {
    /// The writer of `index`, whose `fields` the caller resolved.
    pub(crate) fn new(
        index: &Index,
        fields: Fields,
        threads: usize,
        heap_bytes: usize,
    ) -> Result<Self, IndexError> {
        let committed = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        let writer = index.writer_with_num_threads(threads, heap_bytes)?;
        writer.set_merge_policy(Box::new(DayMergePolicy::new(index.clone())));
        // Stamps go on from the newest in the index, even if the clock went
        // back: the hashes remembered are those stamped since.
        let last_ingested_us = newest_stamp(&committed.searcher())?;
        Ok(Self {
            writer,
            fields,
            committed,
            uncommitted: 0,
            delta: HashMap::new(),
            cache: DigestCache::new(MAX_CACHED_FLOWS, MAX_CACHED_BYTES),
            pending_hashes: FxHashMap::default(),
            recent_hashes: RecentHashes::new(last_ingested_us.saturating_add(1), MAX_RECENT_HASHES),
            committed_spans: None,
            broken: None,
            last_ingested_us,
        })
    }

    /// The ingest time of the next document: now, and always after the
    /// previous one, so a tail that read up to one stamp misses nothing
    /// committed later.
    fn ingest_stamp(&mut self) -> i64 {
        let now = causeway_model::Timestamp::now().as_micros();
        self.last_ingested_us = now.max(self.last_ingested_us.saturating_add(1));
        self.last_ingested_us
    }

    /// The same writer remembering at most `max` committed hashes.
    #[cfg(test)]
    pub(crate) fn with_recent_hashes(mut self, max: usize) -> Self {
        self.recent_hashes = RecentHashes::new(self.last_ingested_us.saturating_add(1), max);
        self
    }

    /// The same writer with other bounds on its digest cache (none at all
    /// with zeros: every commit reads the digests back).
    #[cfg(test)]
    pub(crate) fn with_digest_cache(mut self, max_flows: usize, max_bytes: usize) -> Self {
        self.cache = DigestCache::new(max_flows, max_bytes);
        self
    }

    fn check_usable(&self) -> Result<(), IndexError> {
        match &self.broken {
            Some(reason) => Err(IndexError::Internal(format!(
                "the index writer is unusable since a rollback failed ({reason}); reopen the index"
            ))),
            None => Ok(()),
        }
    }

    /// Queues a record, and its flow's digest; both become durable and
    /// visible at the next commit.
    pub fn add(&mut self, record: &Record) -> Result<(), IndexError> {
        self.check_usable()?;
        self.add_document(record, None, None)
    }

    /// [`Self::add`], unless a record of the same content hash (the
    /// sender's, stable across its retries) was added since the last
    /// commit or is committed in a segment whose time span meets the
    /// [`DEDUPE_WINDOW_US`] up to this record's time. A record sent again
    /// carries its time as before, or, when its sender gave it none and it
    /// was stamped on arrival, a later one; so only those segments, the
    /// newest few for live traffic, need looking at; and of those, only the
    /// ones older than the hashes this writer remembers (`recent_hashes`).
    /// False when the record was there already.
    pub fn add_once(&mut self, record: &Record, hash: u64) -> Result<bool, IndexError> {
        self.check_usable()?;
        self.add_unseen(record, Some(hash), None)
    }

    /// Adds `record` unless it has a content hash [`Self::seen`] already.
    fn add_unseen(
        &mut self,
        record: &Record,
        hash: Option<u64>,
        json_line: Option<&str>,
    ) -> Result<bool, IndexError> {
        if let Some(hash) = hash {
            if self.seen(record, hash)? {
                return Ok(false);
            }
            self.pending_hashes
                .insert(hash, record.timestamp.as_micros());
        }
        self.add_document(record, hash, json_line)?;
        Ok(true)
    }

    /// Whether a record of content hash `hash` was added since the last
    /// commit or is committed where [`Self::add_once`] says it looks.
    fn seen(&mut self, record: &Record, hash: u64) -> Result<bool, IndexError> {
        let time = record.timestamp.as_micros();
        let since = time.saturating_sub(DEDUPE_WINDOW_US);
        Ok(self.pending_hashes.contains_key(&hash)
            || self.recent_hashes.holds(hash, since, time)
            || self.committed_holds(hash, since, time)?)
    }

    /// [`Self::add_once`] with `hash`, else [`Self::add`], of a record
    /// whose JSON line ([`Record::to_json_line`]) the caller has at hand:
    /// the index stores that line rather than making it again. False when
    /// the record was there already.
    pub fn add_serialized(
        &mut self,
        record: &Record,
        hash: Option<u64>,
        json_line: &str,
    ) -> Result<bool, IndexError> {
        self.check_usable()?;
        debug_assert_eq!(json_line, record.to_json_line(), "not the record's line");
        self.add_unseen(record, hash, Some(json_line))
    }

    /// Whether the last commit holds a record of content hash `hash` in a
    /// segment whose span meets `since..=time` and that holds documents
    /// older than the remembered hashes.
    fn committed_holds(&mut self, hash: u64, since: i64, time: i64) -> Result<bool, IndexError> {
        if self.committed_spans.is_none() {
            self.committed.reload()?;
            let searcher = self.committed.searcher();
            let remembered_since = self.recent_hashes.since_us();
            let spans = searcher
                .segment_readers()
                .iter()
                .map(|segment| {
                    let oldest = stamps(segment)?.map(|(oldest, _)| oldest);
                    if oldest.is_some_and(|oldest| oldest >= remembered_since) {
                        return Ok(None);
                    }
                    segment_span(segment)
                })
                .collect::<tantivy::Result<Vec<_>>>()?;
            self.committed_spans = Some((searcher, spans));
        }
        let Some((searcher, spans)) = &self.committed_spans else {
            return Ok(false);
        };
        let term = Term::from_field_u64(self.fields.content_hash, hash);
        for (segment, span) in searcher.segment_readers().iter().zip(spans) {
            if !span.is_some_and(|s| s.meets(Some(since), Some(time))) {
                continue;
            }
            let postings = segment.inverted_index(self.fields.content_hash)?;
            if postings
                .get_term_info(&term)
                .map_err(tantivy::TantivyError::from)?
                .is_some()
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn add_document(
        &mut self,
        record: &Record,
        hash: Option<u64>,
        json_line: Option<&str>,
    ) -> Result<(), IndexError> {
        let key = record.flow_key();
        let mut doc = self.fields.document(record, key.as_deref(), json_line);
        doc.add_i64(self.fields.ingested, self.ingest_stamp());
        if let Some(hash) = hash {
            doc.add_u64(self.fields.content_hash, hash);
        }
        self.writer.add_document(doc)?;
        self.uncommitted += 1;
        if let Some(key) = key {
            self.delta
                .entry(key)
                .or_insert_with_key(|key| FlowDigest::new(key.as_str()))
                .add(record);
        }
        Ok(())
    }

    /// Deletes the records stamped before `cutoff_us`, and the digests of
    /// the flows whose last record is, as of the next commit; returns how
    /// many the last commit held. A segment left with no live document is
    /// dropped whole at that commit (see `partition.rs`). A digest whose
    /// flow goes on past the cutoff stays, and still counts the records
    /// deleted from under it.
    pub fn expire_before(&mut self, cutoff_us: i64) -> Result<Expired, IndexError> {
        self.check_usable()?;
        self.committed.reload()?;
        let searcher = self.committed.searcher();
        let older = |kind: Term, time: Field| {
            BooleanQuery::new(vec![
                (
                    Occur::Must,
                    Box::new(TermQuery::new(kind, IndexRecordOption::Basic)) as Box<dyn Query>,
                ),
                (
                    Occur::Must,
                    Box::new(RangeQuery::new(
                        Bound::Unbounded,
                        Bound::Excluded(Term::from_field_i64(time, cutoff_us)),
                    )),
                ),
            ])
        };
        let records = older(self.fields.record_term(), self.fields.timestamp);
        let flows = older(self.fields.flow_term(), self.fields.digest.last_us);
        let expired = Expired {
            records: searcher.search(&records, &Count)? as u64,
            flows: searcher.search(&flows, &Count)? as u64,
        };
        if expired.records > 0 {
            self.writer.delete_query(Box::new(records))?;
        }
        if expired.flows > 0 {
            self.writer.delete_query(Box::new(flows))?;
            // The cache may hold a digest just deleted; merging a late
            // record into it would bring the expired flow back.
            self.cache.clear();
        }
        Ok(expired)
    }

    /// Removes the files of segments no commit and no open searcher uses
    /// any more, such as those retention dropped; tantivy also does this
    /// after each commit, but then a reader may still hold them.
    pub fn collect_garbage(&mut self) -> Result<(), IndexError> {
        self.check_usable()?;
        self.committed.reload()?;
        self.writer.garbage_collect_files().wait()?;
        Ok(())
    }

    /// Waits for the merges under way, and those they lead to, then closes
    /// the writer. Dropping it instead abandons them.
    pub fn finish_merges(self) -> Result<(), IndexError> {
        self.check_usable()?;
        self.writer.wait_merging_threads()?;
        Ok(())
    }

    /// Records added since the last commit.
    pub fn uncommitted(&self) -> usize {
        self.uncommitted
    }

    /// Makes every added record, and the digest of every flow they belong
    /// to, durable and visible to readers, in one commit. On an error
    /// nothing added since the last commit is kept: the caller adds it
    /// again.
    pub fn commit(&mut self) -> Result<u64, IndexError> {
        self.commit_with_payload(None)
    }

    /// [`RecordWriter::commit`], storing `payload` in the same commit: it
    /// is durable exactly when the records are, and
    /// [`RecordIndex::commit_payload`](crate::RecordIndex::commit_payload)
    /// reads the last one back (the collector keeps there how far its
    /// write-ahead log is indexed). A commit without a payload clears it.
    pub fn commit_with_payload(&mut self, payload: Option<&str>) -> Result<u64, IndexError> {
        self.check_usable()?;
        match self.commit_with_digests(payload) {
            Ok(opstamp) => Ok(opstamp),
            Err(error) => {
                self.abandon();
                Err(error)
            }
        }
    }

    fn commit_with_digests(&mut self, payload: Option<&str>) -> Result<u64, IndexError> {
        let delta = std::mem::take(&mut self.delta);
        let mut written = Vec::with_capacity(delta.len());
        if !delta.is_empty() {
            // The reader must see the last commit, ours included, before a
            // digest is read back and merged.
            self.committed.reload()?;
            let searcher = self.committed.searcher();
            for (key, delta) in delta {
                let mut digest = match self.cache.take(&key) {
                    Some(digest) => digest,
                    None => digest_doc::find(&searcher, &self.fields, &key)?
                        .unwrap_or_else(|| FlowDigest::new(key.as_str())),
                };
                digest.merge(&delta);
                let json = digest_doc::to_json(&digest)?;
                let bytes = json.len();
                self.writer
                    .delete_term(Term::from_field_text(self.fields.digest.key, &key));
                let mut doc = digest_doc::document(&self.fields, &digest, json);
                doc.add_i64(self.fields.ingested, self.ingest_stamp());
                self.writer.add_document(doc)?;
                written.push((key, digest, bytes));
            }
        }
        let mut prepared = self.writer.prepare_commit()?;
        if let Some(payload) = payload {
            prepared.set_payload(payload);
        }
        let opstamp = prepared.commit()?;
        self.uncommitted = 0;
        self.recent_hashes.committed(
            self.pending_hashes.drain(),
            self.last_ingested_us.saturating_add(1),
        );
        self.committed_spans = None;
        for (key, digest, bytes) in written {
            self.cache.insert(key, digest, bytes);
        }
        Ok(opstamp)
    }

    /// Drops every record added since the last commit, with the digests
    /// they changed. A writer whose rollback failed (now or before)
    /// refuses this and all further work.
    pub fn rollback(&mut self) -> Result<(), IndexError> {
        self.check_usable()?;
        self.abandon();
        self.check_usable()
    }

    /// Drops everything since the last commit: tantivy's queued documents
    /// and deletes, the pending digests, and the cache (which may hold
    /// digests of that work).
    fn abandon(&mut self) {
        self.delta.clear();
        self.pending_hashes.clear();
        self.cache.clear();
        self.uncommitted = 0;
        if let Err(error) = self.writer.rollback() {
            tracing::error!(%error, "rolling back the index writer failed");
            self.broken = Some(error.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use causeway_model::{CorrelationId, EventId, Stage, Timestamp, TraceId};

    use super::*;
    use crate::{RecordIndex, RecordReader};

    fn record(t: i64, flow: &str, service: &str, stage: Stage, event: &str) -> Record {
        let mut r = Record::new(Timestamp::from_micros(t), service, stage.as_str());
        r.stage = stage;
        r.correlation_id = Some(CorrelationId::new(flow).unwrap());
        r.event_id = Some(EventId::new(event).unwrap());
        r.event_type = Some(format!("Type-{event}"));
        r
    }

    /// Records of a few flows, each flow's spread over its whole length.
    fn records() -> Vec<Record> {
        let mut out = Vec::new();
        for (i, flow) in ["a", "b", "c"].into_iter().enumerate() {
            let t = 1_000 * i as i64;
            out.push(record(
                t,
                flow,
                "order",
                Stage::Published,
                &format!("{flow}1"),
            ));
            out.push(record(
                t + 5,
                flow,
                "payment",
                Stage::Received,
                &format!("{flow}1"),
            ));
            out.push(record(
                t + 9,
                flow,
                "payment",
                Stage::Failed,
                &format!("{flow}1"),
            ));
            out.push(record(
                t + 20,
                flow,
                "payment",
                Stage::Handled,
                &format!("{flow}1"),
            ));
            out.push(record(
                t + 21,
                flow,
                "payment",
                Stage::Published,
                &format!("{flow}2"),
            ));
        }
        // A flow keyed by its trace id, and a record of no flow.
        let mut traced = Record::new(Timestamp::from_micros(50), "edge", "hello");
        traced.trace_id = Some(TraceId::random());
        out.push(traced);
        out.push(Record::new(Timestamp::from_micros(60), "edge", "lonely"));
        out
    }

    fn expected(records: &[Record]) -> BTreeMap<String, FlowDigest> {
        let mut by_flow: BTreeMap<String, Vec<&Record>> = BTreeMap::new();
        for r in records {
            if let Some(key) = r.flow_key() {
                by_flow.entry(key).or_default().push(r);
            }
        }
        by_flow
            .into_iter()
            .map(|(key, rs)| (key.clone(), FlowDigest::of(key, rs)))
            .collect()
    }

    /// Every digest document in the index, by key, and how many there are.
    fn stored(reader: &RecordReader) -> (BTreeMap<String, FlowDigest>, usize) {
        reader.reload().unwrap();
        let all = reader
            .flow_digests(&Default::default(), None, 1_000)
            .unwrap();
        let count = all.len();
        (all.into_iter().map(|d| (d.key.clone(), d)).collect(), count)
    }

    fn digests_match_records_over_several_commits(cache: usize) {
        let dir = tempfile::tempdir().unwrap();
        let index = RecordIndex::open_or_create(dir.path()).unwrap();
        let mut writer = index
            .writer(15_000_000)
            .unwrap()
            .with_digest_cache(cache, cache << 20);
        let records = records();
        // Each commit takes every third record, so every flow spans commits.
        for phase in 0..3 {
            for r in records.iter().skip(phase).step_by(3) {
                writer.add(r).unwrap();
            }
            writer.commit().unwrap();
        }
        let reader = index.reader().unwrap();
        let (digests, count) = stored(&reader);
        assert_eq!(digests, expected(&records));
        assert_eq!(count, 4, "one digest document per flow");
        assert_eq!(reader.record_count().unwrap(), records.len() as u64);
    }

    #[test]
    fn a_record_added_with_its_line_reads_back_as_itself_and_once_by_its_hash() {
        let dir = tempfile::tempdir().unwrap();
        let index = RecordIndex::open_or_create(dir.path()).unwrap();
        let reader = index.reader().unwrap();
        let one = record(1_000, "a", "order", Stage::Published, "a1");
        let two = record(2_000, "a", "payment", Stage::Handled, "a2");
        let mut writer = index.writer(15_000_000).unwrap();
        assert!(
            writer
                .add_serialized(&one, Some(1), &one.to_json_line())
                .unwrap()
        );
        assert!(
            !writer.add_once(&one, 1).unwrap(),
            "pending, whichever way added"
        );
        // Without a hash, added whatever it holds.
        assert!(
            writer
                .add_serialized(&two, None, &two.to_json_line())
                .unwrap()
        );
        writer.commit().unwrap();
        assert!(
            !writer
                .add_serialized(&one, Some(1), &one.to_json_line())
                .unwrap(),
            "committed"
        );
        reader.reload().unwrap();
        let read = reader.flow_records("a", 10).unwrap();
        assert_eq!(read.records, vec![one, two]);
        let (digests, _) = stored(&reader);
        assert_eq!(digests["a"].record_count, 2, "the digest counts both");
    }

    #[test]
    fn a_content_hash_is_added_once_pending_committed_or_after_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let index = RecordIndex::open_or_create(dir.path()).unwrap();
        let reader = index.reader().unwrap();
        let one = record(1_000, "a", "order", Stage::Published, "a1");
        let two = record(2_000, "b", "order", Stage::Published, "b1");
        let mut writer = index.writer(15_000_000).unwrap();
        assert!(writer.add_once(&one, 1).unwrap());
        assert!(!writer.add_once(&one, 1).unwrap(), "pending");
        writer.commit().unwrap();
        assert!(!writer.add_once(&one, 1).unwrap(), "committed");
        // Rolled back, a hash is free again.
        assert!(writer.add_once(&two, 2).unwrap());
        writer.rollback().unwrap();
        assert!(writer.add_once(&two, 2).unwrap());
        writer.commit().unwrap();
        drop(writer);

        let mut writer = index.writer(15_000_000).unwrap();
        assert!(!writer.add_once(&one, 1).unwrap(), "after reopening");
        assert!(!writer.add_once(&two, 2).unwrap(), "after reopening");
        // Only segments whose time span meets the window up to the
        // record's time are looked at: the same hash much later is another
        // record.
        let within = record(
            1_000 + DEDUPE_WINDOW_US,
            "a",
            "order",
            Stage::Published,
            "a1",
        );
        assert!(!writer.add_once(&within, 1).unwrap(), "within the window");
        let later = record(
            1_001 + DEDUPE_WINDOW_US,
            "a",
            "order",
            Stage::Published,
            "a1",
        );
        assert!(writer.add_once(&later, 1).unwrap());
        writer.commit().unwrap();
        reader.reload().unwrap();
        assert_eq!(reader.record_count().unwrap(), 3);
    }

    #[test]
    fn a_hash_this_writer_forgot_is_still_found_in_its_segment() {
        let dir = tempfile::tempdir().unwrap();
        let index = RecordIndex::open_or_create(dir.path()).unwrap();
        let at = |i: u64| {
            let time = 1_000 + i64::try_from(i).unwrap();
            record(time, "a", "order", Stage::Published, &format!("a{i}"))
        };
        let mut writer = index.writer(15_000_000).unwrap().with_recent_hashes(16);
        assert!(writer.add_once(&at(0), 0).unwrap());
        writer.commit().unwrap();
        // What this writer committed is answered from memory: no segment
        // is left to look up.
        assert!(!writer.add_once(&at(0), 0).unwrap());
        assert!(writer.add_once(&at(1), 1).unwrap());
        let (_, spans) = writer.committed_spans.as_ref().unwrap();
        assert!(spans.iter().all(Option::is_none), "{spans:?}");
        writer.commit().unwrap();
        // Past the bound, the first hashes are forgotten, and the segments
        // holding them are looked up again.
        for i in 2..40 {
            assert!(writer.add_once(&at(i), i).unwrap());
            writer.commit().unwrap();
        }
        assert!(writer.recent_hashes.len() <= 16);
        assert!(!writer.recent_hashes.holds(0, 0, i64::MAX));
        for i in 0..40 {
            assert!(
                !writer.add_once(&at(i), i).unwrap(),
                "record {i} added twice"
            );
        }
        let (_, spans) = writer.committed_spans.as_ref().unwrap();
        assert!(spans.iter().any(Option::is_some), "{spans:?}");
        writer.commit().unwrap();
        let reader = index.reader().unwrap();
        assert_eq!(reader.record_count().unwrap(), 40);

        // Reopened, the writer stamps after the newest stamp in the index,
        // whatever the clock says, and remembers nothing of before.
        let newest = newest_stamp(&writer.committed.searcher()).unwrap();
        drop(writer);
        let mut writer = index.writer(15_000_000).unwrap();
        assert_eq!(writer.last_ingested_us, newest);
        assert_eq!(writer.recent_hashes.since_us(), newest + 1);
        assert!(!writer.add_once(&at(39), 39).unwrap());
        let (_, spans) = writer.committed_spans.as_ref().unwrap();
        assert!(spans.iter().all(Option::is_some), "{spans:?}");
    }

    #[test]
    fn digests_equal_the_digest_of_all_records_over_several_commits() {
        digests_match_records_over_several_commits(100);
    }

    #[test]
    fn digests_read_back_from_the_index_equal_those_from_the_cache() {
        digests_match_records_over_several_commits(0);
    }

    #[test]
    fn a_record_added_twice_across_commits_leaves_one_digest_document() {
        let dir = tempfile::tempdir().unwrap();
        let index = RecordIndex::open_or_create(dir.path()).unwrap();
        let mut writer = index.writer(15_000_000).unwrap();
        let r = record(10, "a", "payment", Stage::Handled, "e1");
        writer.add(&r).unwrap();
        writer.commit().unwrap();
        writer.add(&r).unwrap();
        writer.commit().unwrap();
        let (digests, count) = stored(&index.reader().unwrap());
        assert_eq!(count, 1);
        assert_eq!(digests["a"], FlowDigest::of("a", [&r, &r]));
    }

    #[test]
    fn a_writer_dropped_before_its_commit_leaves_digests_equal_to_the_committed_records() {
        let dir = tempfile::tempdir().unwrap();
        let records = records();
        let (committed, lost) = records.split_at(records.len() / 2);
        {
            let index = RecordIndex::open_or_create(dir.path()).unwrap();
            let mut writer = index.writer(15_000_000).unwrap();
            for r in committed {
                writer.add(r).unwrap();
            }
            writer.commit().unwrap();
            for r in lost {
                writer.add(r).unwrap();
            }
            // Dropped here, as a crash would, without a commit.
        }
        let index = RecordIndex::open_existing(dir.path()).unwrap();
        let reader = index.reader().unwrap();
        assert_eq!(stored(&reader).0, expected(committed));
        assert_eq!(reader.record_count().unwrap(), committed.len() as u64);

        // A new writer goes on from the committed digests.
        let index = RecordIndex::open_or_create(dir.path()).unwrap();
        let mut writer = index.writer(15_000_000).unwrap();
        for r in lost {
            writer.add(r).unwrap();
        }
        writer.commit().unwrap();
        assert_eq!(stored(&reader).0, expected(&records));
    }

    #[test]
    fn the_cache_keeps_within_its_bounds() {
        let mut cache = DigestCache::new(2, 100);
        cache.insert("a".into(), FlowDigest::new("a"), 40);
        cache.insert("b".into(), FlowDigest::new("b"), 40);
        assert_eq!((cache.digests.len(), cache.bytes), (2, 80));
        cache.insert("c".into(), FlowDigest::new("c"), 40);
        assert_eq!((cache.digests.len(), cache.bytes), (1, 40));
        cache.insert("d".into(), FlowDigest::new("d"), 70);
        assert_eq!((cache.digests.len(), cache.bytes), (1, 70));
        cache.insert("e".into(), FlowDigest::new("e"), 101);
        assert_eq!((cache.digests.len(), cache.bytes), (0, 0));
        assert!(cache.take("d").is_none());
    }
}
