//! Searching records: by query string (optionally within a time range, or
//! counted per time bucket), by flow key (oldest or newest first), by trace
//! id, the flow key of a trace or an event, and the flows whose records
//! match a query. Readers never write.
//!
//! Every read here is of record documents only: a query is always combined
//! with `_doc:record`, so the digest documents that share the index (read
//! by `digests.rs`) never show up as hits or in counts.
//!
//! A reader reloads by itself when a commit lands (tantivy watches
//! `meta.json`, also across processes); [`RecordReader::reload`] forces it.

use std::collections::HashMap;
use std::ops::Bound;

use causeway_model::{FlowDigest, Record, RecordField, TraceId};
use tantivy::collector::{Collector, Count, HistogramCollector, SegmentCollector, TopDocs};
use tantivy::columnar::{Column, StrColumn};
use tantivy::query::{
    AllQuery, BooleanQuery, ExistsQuery, Occur, Query, QueryParser, QueryParserError, RangeQuery,
    TermQuery,
};
use tantivy::schema::{Field, IndexRecordOption, Value};
use tantivy::{
    DocAddress, DocId, Index, IndexReader, Order, ReloadPolicy, Score, Searcher, SegmentOrdinal,
    SegmentReader, TantivyDocument, Term,
};

use crate::digest_doc;
use crate::error::IndexError;
use crate::partition::{DAY_US, TimePruned, segment_span};
use crate::query::{ReadBounds, check_query};
use crate::schema::{FLOW, Fields, INGESTED_US, TIMESTAMP_US};

/// The stack of the thread a query string is parsed on. Only the pages a
/// parse touches are ever allocated.
const PARSE_STACK_BYTES: usize = 64 * 1024 * 1024;

/// Most buckets one histogram counts.
pub const MAX_HISTOGRAM_BUCKETS: usize = 1_000;

/// Records read back, oldest or newest first, and whether more matched
/// than were returned.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RecordsRead {
    pub records: Vec<Record>,
    /// True when the read stopped at its byte budget, or (for a flow or a
    /// trace) at the count it was asked for, with more records left.
    pub truncated: bool,
}

/// One UTC day of the index: the segments whose newest document falls on
/// it (records by their time, digests by their flow's last record).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partition {
    /// The day's first microsecond, since the Unix epoch.
    pub day_start_us: i64,
    pub segments: usize,
    /// Live documents (records and flow digests).
    pub documents: u64,
}

/// A searcher over the index; cheap to clone, safe to share.
#[derive(Clone)]
pub struct RecordReader {
    reader: IndexReader,
    fields: Fields,
    parser: QueryParser,
    bounds: ReadBounds,
}

impl std::fmt::Debug for RecordReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordReader").finish_non_exhaustive()
    }
}

impl RecordReader {
    /// A reader of `index`, whose `fields` the caller resolved.
    pub(crate) fn new(index: &Index, fields: Fields) -> Result<Self, IndexError> {
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::OnCommitWithDelay)
            .try_into()?;
        let mut parser = QueryParser::for_index(index, fields.default_search());
        parser.set_conjunction_by_default();
        Ok(Self {
            reader,
            fields,
            parser,
            bounds: ReadBounds::default(),
        })
    }

    /// The same reader with other bounds on queries and reads.
    pub fn with_bounds(mut self, bounds: ReadBounds) -> Self {
        self.bounds = bounds;
        self
    }

    /// Sees every commit made so far, now rather than within a second.
    pub fn reload(&self) -> Result<(), IndexError> {
        Ok(self.reader.reload()?)
    }

    /// Records in the index (digest documents are not counted).
    pub fn record_count(&self) -> Result<u64, IndexError> {
        let query = TermQuery::new(self.fields.record_term(), IndexRecordOption::Basic);
        let count = self.reader.searcher().search(&query, &Count)?;
        Ok(count as u64)
    }

    /// Records matching `query` (tantivy query syntax; empty or `*` matches
    /// all), newest first, at most `limit` and at most the byte budget; also
    /// the total number matched. A query longer or deeper than the bounds
    /// is refused before it is parsed.
    pub fn search(&self, query: &str, limit: usize) -> Result<(usize, RecordsRead), IndexError> {
        self.search_in_range(query, None, None, limit)
    }

    /// As [`Self::search`], of the records stamped within
    /// `since_us..=until_us` (either end open when `None`).
    pub fn search_in_range(
        &self,
        query: &str,
        since_us: Option<i64>,
        until_us: Option<i64>,
        limit: usize,
    ) -> Result<(usize, RecordsRead), IndexError> {
        let query = self.records_matching(self.parse(query)?, since_us, until_us);
        let searcher = self.reader.searcher();
        if limit == 0 {
            let count = TimePruned::new(Count, since_us, until_us);
            return Ok((searcher.search(&query, &count)?, RecordsRead::default()));
        }
        let top = TopDocs::with_limit(limit).order_by_fast_field::<i64>(TIMESTAMP_US, Order::Desc);
        let collector = TimePruned::new((Count, top), since_us, until_us);
        let (total, hits) = searcher.search(&query, &collector)?;
        let read = self.load(&searcher, hits.into_iter().map(|(_, a)| a))?;
        Ok((total, read))
    }

    /// How many of the index's segments a read bounded to
    /// `since_us..=until_us` skips without evaluating its query there
    /// (their time span lies outside), and how many it searches.
    pub fn segments_in_range(
        &self,
        since_us: Option<i64>,
        until_us: Option<i64>,
    ) -> Result<(usize, usize), IndexError> {
        let searcher = self.reader.searcher();
        let pruned = TimePruned::new(Count, since_us, until_us);
        searcher.search(&AllQuery, &pruned)?;
        let skipped = pruned.skipped();
        Ok((skipped, searcher.segment_readers().len() - skipped))
    }

    /// The index's time partitions (UTC days, see `partition.rs`), oldest
    /// first: per day, its segments and their live documents.
    pub fn partitions(&self) -> Result<Vec<Partition>, IndexError> {
        let searcher = self.reader.searcher();
        let mut days: std::collections::BTreeMap<i64, Partition> = Default::default();
        for segment in searcher.segment_readers() {
            let Some(span) = segment_span(segment)? else {
                continue;
            };
            let day = days.entry(span.day()).or_insert(Partition {
                day_start_us: span.day() * DAY_US,
                segments: 0,
                documents: 0,
            });
            day.segments += 1;
            day.documents += u64::from(segment.num_docs());
        }
        Ok(days.into_values().collect())
    }

    /// How many records matching `query` fall in each of at most `buckets`
    /// (and at most [`MAX_HISTOGRAM_BUCKETS`]) equal spans covering
    /// `start_us..=end_us`: each bucket's start and count, oldest first.
    /// The counts add up to the total of [`Self::search_in_range`] over the
    /// same range. Empty when there are no buckets or the range is empty.
    pub fn histogram(
        &self,
        query: &str,
        start_us: i64,
        end_us: i64,
        buckets: usize,
    ) -> Result<Vec<(i64, u64)>, IndexError> {
        let query = self.parse(query)?;
        let buckets = buckets.min(MAX_HISTOGRAM_BUCKETS);
        if buckets == 0 || end_us < start_us {
            return Ok(Vec::new());
        }
        // The span counts both ends, so it may be 2^64: u128 holds it.
        let span = (i128::from(end_us) - i128::from(start_us) + 1) as u128;
        let width = span.div_ceil(buckets as u128);
        let count = span.div_ceil(width);
        // `width` is at most `span`, at most 2^64, and is 2^64 only for one
        // bucket over all of i64, where u64::MAX loses only a record stamped
        // i64::MAX.
        let width = u64::try_from(width).unwrap_or(u64::MAX);
        let count = usize::try_from(count).unwrap_or(buckets);
        let query = self.records_matching(query, Some(start_us), Some(end_us));
        let collector = TimePruned::new(
            HistogramCollector::new::<i64>(TIMESTAMP_US.to_owned(), start_us, width, count),
            Some(start_us),
            Some(end_us),
        );
        let counts = self.reader.searcher().search(&query, &collector)?;
        Ok(counts
            .into_iter()
            .enumerate()
            .map(|(i, n)| {
                let offset = i128::from(width) * i as i128;
                let start = i128::from(start_us) + offset;
                // Every bucket starts within the range, so within i64.
                (i64::try_from(start).unwrap_or(i64::MAX), n)
            })
            .collect())
    }

    /// The flow keys of the records matching `query`, the most recently
    /// active (by their newest matching record) first, at most `limit`:
    /// exact, and holding at most twice `limit` keys per segment at a time.
    pub fn flow_keys_matching(&self, query: &str, limit: usize) -> Result<Vec<String>, IndexError> {
        let query = self.records_matching(self.parse(query)?, None, None);
        if limit == 0 {
            return Ok(Vec::new());
        }
        let newest = self
            .reader
            .searcher()
            .search(&query, &NewestFlows { limit })?;
        Ok(newest.into_iter().map(|(_, key)| key).collect())
    }

    /// Up to `limit` records matching `query` (empty: all) that were
    /// written after the ingest stamp `after_us`, in the order they were
    /// written, each with its stamp: what a tail sends next. Within the
    /// byte budget, so possibly fewer.
    pub fn records_ingested_after(
        &self,
        after_us: i64,
        query: &str,
        limit: usize,
    ) -> Result<Vec<(i64, Record)>, IndexError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let query = self.records_matching(self.parse(query)?, None, None);
        let query = BooleanQuery::new(vec![
            (Occur::Must, Box::new(query) as Box<dyn Query>),
            (Occur::Must, self.ingested_after(after_us)),
        ]);
        let searcher = self.reader.searcher();
        let top = TopDocs::with_limit(limit).order_by_fast_field::<i64>(INGESTED_US, Order::Asc);
        let hits = searcher.search(&query, &top)?;
        let read = self.load(&searcher, hits.iter().map(|&(_, a)| a))?;
        Ok(hits
            .into_iter()
            // The range clause matched the stamp, so every hit has one.
            .map(|(at, _)| at.unwrap_or(after_us))
            .zip(read.records)
            .collect())
    }

    /// Up to `limit` flow digests written after the ingest stamp
    /// `after_us`, in the order they were written, each with its stamp.
    pub fn digests_ingested_after(
        &self,
        after_us: i64,
        limit: usize,
    ) -> Result<Vec<(i64, FlowDigest)>, IndexError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let query = BooleanQuery::new(vec![
            (
                Occur::Must,
                Box::new(TermQuery::new(
                    self.fields.flow_term(),
                    IndexRecordOption::Basic,
                )) as Box<dyn Query>,
            ),
            (Occur::Must, self.ingested_after(after_us)),
        ]);
        let searcher = self.reader.searcher();
        let top = TopDocs::with_limit(limit).order_by_fast_field::<i64>(INGESTED_US, Order::Asc);
        searcher
            .search(&query, &top)?
            .into_iter()
            .map(|(at, address)| {
                let digest = digest_doc::load(&searcher, &self.fields, address)?;
                Ok((at.unwrap_or(after_us), digest))
            })
            .collect()
    }

    fn ingested_after(&self, after_us: i64) -> Box<dyn Query> {
        Box::new(RangeQuery::new(
            Bound::Excluded(Term::from_field_i64(self.fields.ingested, after_us)),
            Bound::Unbounded,
        ))
    }

    /// `query` restricted to record documents, and to records stamped
    /// within `since_us..=until_us` when either is given.
    fn records_matching(
        &self,
        query: Box<dyn Query>,
        since_us: Option<i64>,
        until_us: Option<i64>,
    ) -> BooleanQuery {
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = vec![
            (
                Occur::Must,
                Box::new(TermQuery::new(
                    self.fields.record_term(),
                    IndexRecordOption::Basic,
                )),
            ),
            (Occur::Must, query),
        ];
        if since_us.is_some() || until_us.is_some() {
            let bound = |t: Option<i64>| match t {
                Some(t) => Bound::Included(Term::from_field_i64(self.fields.timestamp, t)),
                None => Bound::Unbounded,
            };
            clauses.push((
                Occur::Must,
                Box::new(RangeQuery::new(bound(since_us), bound(until_us))),
            ));
        }
        BooleanQuery::new(clauses)
    }

    /// `query` as tantivy's parser reads it, once it is within the bounds.
    pub fn parse(&self, query: &str) -> Result<Box<dyn Query>, IndexError> {
        check_query(query, &self.bounds)?;
        let q = match query.trim() {
            "" | "*" => return Ok(Box::new(AllQuery)),
            q => q,
        };
        // tantivy's grammar recurses; the bounds keep a query shallow, and the
        // parse runs on its own thread with a large stack besides, so even a
        // shape the bounds misjudge cannot overflow a worker's 2 MiB stack
        // (an overflow aborts the process). tantivy also asserts on some
        // inputs instead of returning an error: a panic there is the
        // client's 400, not the server's 500.
        let parser = &self.parser;
        std::thread::scope(|scope| {
            let parsing = std::thread::Builder::new()
                .name("query-parse".to_owned())
                .stack_size(PARSE_STACK_BYTES)
                .spawn_scoped(scope, move || parse_allowing_exclusions(parser, q))
                .map_err(|e| IndexError::Internal(format!("starting the parse thread: {e}")))?;
            match parsing.join() {
                Ok(parsed) => parsed.map_err(|e| IndexError::Query(e.to_string())),
                Err(_) => Err(IndexError::Query(
                    "the query could not be parsed".to_owned(),
                )),
            }
        })
    }

    /// Every record of one flow (by correlation id, or trace id for flows
    /// without one), oldest first, at most `limit` and the byte budget;
    /// `truncated` says whether there were more.
    pub fn flow_records(&self, key: &str, limit: usize) -> Result<RecordsRead, IndexError> {
        self.by_term(self.fields.flow, key, limit, Order::Asc)
    }

    /// The newest `limit` records of one flow, returned oldest first; as
    /// [`Self::flow_records`], but a cut (by count or byte budget) drops
    /// the oldest records, never the end of the flow.
    pub fn records_newest(&self, key: &str, limit: usize) -> Result<RecordsRead, IndexError> {
        let mut read = self.by_term(self.fields.flow, key, limit, Order::Desc)?;
        read.records.reverse();
        Ok(read)
    }

    /// Every record of one trace, oldest first, as [`Self::flow_records`].
    pub fn trace_records(
        &self,
        trace_id: TraceId,
        limit: usize,
    ) -> Result<RecordsRead, IndexError> {
        let field = self.keyword(RecordField::TraceId)?;
        self.by_term(field, &trace_id.to_string(), limit, Order::Asc)
    }

    /// The flow key of the newest record of trace `trace_id` that has one.
    pub fn flow_key_of_trace(&self, trace_id: TraceId) -> Result<Option<String>, IndexError> {
        let field = self.keyword(RecordField::TraceId)?;
        self.newest_flow_key(field, &trace_id.to_string())
    }

    /// The flow key of the newest record of event `event_id` that has one.
    pub fn flow_key_of_event(&self, event_id: &str) -> Result<Option<String>, IndexError> {
        let field = self.keyword(RecordField::EventId)?;
        self.newest_flow_key(field, event_id)
    }

    fn keyword(&self, field: RecordField) -> Result<Field, IndexError> {
        self.fields
            .keyword(field)
            .ok_or_else(|| IndexError::Internal(format!("schema has no {} field", field.name())))
    }

    /// The key the writer gave the newest record with `value` in `field`
    /// and a flow (read back from its `_source`, as the writer computed it).
    fn newest_flow_key(&self, field: Field, value: &str) -> Result<Option<String>, IndexError> {
        let query = BooleanQuery::new(vec![
            (
                Occur::Must,
                Box::new(TermQuery::new(
                    Term::from_field_text(field, value),
                    IndexRecordOption::Basic,
                )) as Box<dyn Query>,
            ),
            (
                Occur::Must,
                Box::new(ExistsQuery::new(FLOW.to_owned(), false)),
            ),
        ]);
        let top = TopDocs::with_limit(1).order_by_fast_field::<i64>(TIMESTAMP_US, Order::Desc);
        let searcher = self.reader.searcher();
        let hits = searcher.search(&query, &top)?;
        let read = self.load(&searcher, hits.into_iter().map(|(_, a)| a))?;
        Ok(read.records.first().and_then(Record::flow_key))
    }

    /// The records with `value` in the keyword `field`, ordered by time as
    /// `order` says (and the byte budget cutting from that end), at most
    /// `limit`; `truncated` when more matched.
    fn by_term(
        &self,
        field: Field,
        value: &str,
        limit: usize,
        order: Order,
    ) -> Result<RecordsRead, IndexError> {
        if limit == 0 {
            return Ok(RecordsRead::default());
        }
        let query = TermQuery::new(
            Term::from_field_text(field, value),
            IndexRecordOption::Basic,
        );
        // One more than asked tells whether the answer is cut by count.
        let top = TopDocs::with_limit(limit.saturating_add(1))
            .order_by_fast_field::<i64>(TIMESTAMP_US, order);
        let searcher = self.reader.searcher();
        let hits = searcher.search(&query, &top)?;
        let more = hits.len() > limit;
        let mut read = self.load(&searcher, hits.into_iter().take(limit).map(|(_, a)| a))?;
        read.truncated |= more;
        Ok(read)
    }
}

impl RecordReader {
    /// A searcher over the index as last reloaded.
    pub(crate) fn searcher(&self) -> Searcher {
        self.reader.searcher()
    }

    pub(crate) fn fields(&self) -> &Fields {
        &self.fields
    }

    /// Reads the stored records at `addresses`, in order, until the byte
    /// budget would be passed: a record is read whole or not at all, so a
    /// cut answer is a prefix of the full one.
    fn load(
        &self,
        searcher: &Searcher,
        addresses: impl Iterator<Item = DocAddress>,
    ) -> Result<RecordsRead, IndexError> {
        let mut read = RecordsRead::default();
        let mut bytes = 0usize;
        for address in addresses {
            let doc: TantivyDocument = searcher.doc(address)?;
            let source = doc
                .get_first(self.fields.source)
                .and_then(|v| v.as_str())
                .ok_or_else(|| IndexError::Source("document has no _source".into()))?;
            bytes = bytes.saturating_add(source.len());
            if bytes > self.bounds.max_response_bytes {
                read.truncated = true;
                break;
            }
            read.records
                .push(serde_json::from_str(source).map_err(|e| IndexError::Source(e.to_string()))?);
        }
        Ok(read)
    }
}

/// `query` as tantivy parses it, except that a query of exclusions only
/// (`NOT card`), which tantivy refuses, means everything but those: reads
/// combine every query with `_doc:record`, so "everything" is every record.
fn parse_allowing_exclusions(
    parser: &QueryParser,
    query: &str,
) -> Result<Box<dyn Query>, QueryParserError> {
    match parser.parse_query(query) {
        Err(QueryParserError::AllButQueryForbidden) => {
            let ast = tantivy::query_grammar::parse_query(query)
                .map_err(|_| QueryParserError::SyntaxError(query.to_owned()))?;
            let (parsed, mut errors) = parser.build_query_from_user_input_ast_lenient(ast);
            errors.retain(|e| !matches!(e, QueryParserError::AllButQueryForbidden));
            match errors.into_iter().next() {
                Some(error) => Err(error),
                None => Ok(parsed),
            }
        }
        parsed => parsed,
    }
}

/// Collects the `limit` flow keys whose newest matching record is the
/// newest, with that record's time, newest first.
struct NewestFlows {
    limit: usize,
}

/// One segment's part of [`NewestFlows`]: per flow (by its term ordinal in
/// the segment), the newest matching record's time.
struct SegmentNewestFlows {
    limit: usize,
    flows: Option<StrColumn>,
    times: Option<Column<i64>>,
    newest: HashMap<u64, i64>,
    /// Once `newest` was cut to `limit` flows, the oldest time kept: a
    /// record older than it cannot bring a flow into the top `limit`.
    floor: i64,
}

impl SegmentNewestFlows {
    /// Keeps the `limit` flows with the newest records.
    fn cut(&mut self) {
        let mut flows: Vec<(i64, u64)> = self.newest.drain().map(|(ord, t)| (t, ord)).collect();
        flows.sort_unstable_by(|a, b| b.cmp(a));
        flows.truncate(self.limit);
        if flows.len() == self.limit
            && let Some(&(oldest, _)) = flows.last()
        {
            self.floor = oldest;
        }
        self.newest = flows.into_iter().map(|(t, ord)| (ord, t)).collect();
    }
}

impl SegmentCollector for SegmentNewestFlows {
    type Fruit = std::io::Result<Vec<(i64, String)>>;

    fn collect(&mut self, doc: DocId, _score: Score) {
        let (Some(flows), Some(times)) = (&self.flows, &self.times) else {
            return;
        };
        let Some(ord) = flows.ords().first(doc) else {
            return;
        };
        let t = times.first(doc).unwrap_or(i64::MIN);
        if t < self.floor {
            return;
        }
        let newest = self.newest.entry(ord).or_insert(t);
        *newest = (*newest).max(t);
        if self.newest.len() > self.limit.saturating_mul(2) {
            self.cut();
        }
    }

    fn harvest(mut self) -> Self::Fruit {
        self.cut();
        let Some(flows) = &self.flows else {
            return Ok(Vec::new());
        };
        let newest = self.newest.into_iter().collect();
        Ok(with_terms(flows, newest)?
            .into_iter()
            .map(|(key, t)| (t, key))
            .collect())
    }
}

/// `items` with the terms their ordinals stand for in `column`, in
/// ordinal order. One pass over the dictionary: a lookup per ordinal would
/// decompress a dictionary block each time (tantivy issue #2776), which
/// made a page of 1,024 digests take a third of a second.
pub(crate) fn with_terms<T>(
    column: &StrColumn,
    mut items: Vec<(u64, T)>,
) -> std::io::Result<Vec<(String, T)>> {
    items.sort_unstable_by_key(|&(ord, _)| ord);
    let ords: Vec<u64> = items.iter().map(|&(ord, _)| ord).collect();
    let mut terms = Vec::with_capacity(ords.len());
    // `ords` is sorted, which the bulk lookup asserts; it calls back once
    // per ordinal, in order.
    let complete = column.dictionary().sorted_ords_to_term_cb(&ords, |bytes| {
        terms.push(String::from_utf8_lossy(bytes).into_owned());
    })?;
    if !complete || terms.len() != items.len() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "a term ordinal is past its dictionary",
        ));
    }
    Ok(terms
        .into_iter()
        .zip(items.into_iter().map(|(_, item)| item))
        .collect())
}

impl Collector for NewestFlows {
    type Fruit = Vec<(i64, String)>;
    type Child = SegmentNewestFlows;

    fn for_segment(
        &self,
        _segment: SegmentOrdinal,
        reader: &SegmentReader,
    ) -> tantivy::Result<Self::Child> {
        Ok(SegmentNewestFlows {
            limit: self.limit,
            flows: reader.fast_fields().str(FLOW)?,
            times: reader.fast_fields().column_opt::<i64>(TIMESTAMP_US)?,
            newest: HashMap::new(),
            floor: i64::MIN,
        })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    /// The newest `limit` of the segments' newest: a flow among the newest
    /// overall is among the newest of the segment holding its newest record.
    fn merge_fruits(
        &self,
        segments: Vec<std::io::Result<Vec<(i64, String)>>>,
    ) -> tantivy::Result<Self::Fruit> {
        let mut newest: HashMap<String, i64> = HashMap::new();
        for segment in segments {
            for (t, key) in segment? {
                let slot = newest.entry(key).or_insert(t);
                *slot = (*slot).max(t);
            }
        }
        let mut flows: Vec<(i64, String)> = newest.into_iter().map(|(k, t)| (t, k)).collect();
        flows.sort_unstable_by(|a, b| b.cmp(a));
        flows.truncate(self.limit);
        Ok(flows)
    }
}

#[cfg(test)]
mod tests {
    use causeway_model::{CorrelationId, Stage, Timestamp};

    use super::*;
    use crate::RecordIndex;

    fn record(micros: i64, correlation: &str, message: &str) -> Record {
        let mut r = Record::new(Timestamp::from_micros(micros), "payment", message);
        r.correlation_id = Some(CorrelationId::new(correlation).unwrap());
        r.stage = Stage::Handled;
        r
    }

    fn index_with(records: &[Record]) -> (tempfile::TempDir, RecordIndex) {
        let dir = tempfile::tempdir().unwrap();
        let index = RecordIndex::open_or_create(dir.path()).unwrap();
        let mut writer = index.writer(15_000_000).unwrap();
        for r in records {
            writer.add(r).unwrap();
        }
        writer.commit().unwrap();
        (dir, index)
    }

    #[test]
    fn a_written_record_reads_back_identical() {
        let mut r = record(10, "order-1", "charged card");
        r.trace_id = Some(TraceId::random());
        r.attributes.insert("order_id".into(), 1234.into());
        let (_dir, index) = index_with(std::slice::from_ref(&r));
        let reader = index.reader().unwrap();
        assert_eq!(
            reader.flow_records("order-1", 10).unwrap().records,
            vec![r.clone()]
        );
        assert_eq!(
            reader
                .trace_records(r.trace_id.unwrap(), 10)
                .unwrap()
                .records,
            vec![r]
        );
    }

    #[test]
    fn search_uses_query_syntax_and_orders_newest_first() {
        let records = [
            record(1, "a", "card declined"),
            record(3, "b", "card charged"),
            record(2, "c", "parcel shipped"),
        ];
        let (_dir, index) = index_with(&records);
        let reader = index.reader().unwrap();
        let (total, hits) = reader.search("card", 10).unwrap();
        assert_eq!(total, 2);
        assert_eq!(hits.records[0].message, "card charged");
        let (total, hits) = reader.search("correlation_id:c", 10).unwrap();
        assert_eq!(
            (total, hits.records[0].message.as_str()),
            (1, "parcel shipped")
        );
        let (total, _) = reader.search("*", 1).unwrap();
        assert_eq!(total, 3);
        assert!(matches!(
            reader.search("message:(", 1),
            Err(IndexError::Query(_))
        ));
    }

    #[test]
    fn attributes_are_searchable_by_path() {
        let mut r = record(1, "a", "placed");
        r.attributes.insert("order_id".into(), "1234".into());
        let (_dir, index) = index_with(&[r, record(2, "b", "placed")]);
        let (total, hits) = index
            .reader()
            .unwrap()
            .search("attributes.order_id:1234", 10)
            .unwrap();
        assert_eq!(total, 1);
        assert_eq!(
            hits.records[0].correlation_id.as_ref().unwrap().as_str(),
            "a"
        );
    }

    #[test]
    fn a_read_stops_at_its_byte_budget_and_says_so() {
        let big = "x".repeat(10_000);
        let records: Vec<_> = (0..10).map(|i| record(i, "f", &big)).collect();
        let (_dir, index) = index_with(&records);
        let reader = index.reader().unwrap().with_bounds(ReadBounds {
            max_response_bytes: 35_000,
            ..ReadBounds::default()
        });
        let (total, hits) = reader.search("*", 10).unwrap();
        assert_eq!(total, 10);
        assert_eq!(hits.records.len(), 3);
        assert!(hits.truncated);
        // Newest first: the cut keeps the newest.
        assert_eq!(hits.records[0].timestamp.as_micros(), 9);
        let flow = reader.flow_records("f", 100).unwrap();
        assert_eq!(flow.records.len(), 3);
        assert!(flow.truncated);
        let whole = index.reader().unwrap().flow_records("f", 100).unwrap();
        assert_eq!((whole.records.len(), whole.truncated), (10, false));
        let by_count = index.reader().unwrap().flow_records("f", 4).unwrap();
        assert_eq!((by_count.records.len(), by_count.truncated), (4, true));
        let exactly = index.reader().unwrap().flow_records("f", 10).unwrap();
        assert_eq!((exactly.records.len(), exactly.truncated), (10, false));
    }

    /// The deepest and longest queries the default bounds let through go
    /// to tantivy's parser directly on a thread with half a tokio worker's
    /// stack, without the large stack `parse` gives them: the gate alone
    /// must keep the parser's recursion shallow. (A debug build needs
    /// about 500 KiB for the deepest of them; a quarter of the worker's
    /// stack was within a few KiB of that and overflowed in one CI run.)
    #[test]
    fn queries_the_bounds_let_through_parse_on_a_small_stack() {
        let (_dir, index) = index_with(&[record(1, "a", "x")]);
        let reader = index.reader().unwrap();
        let bounds = ReadBounds::default();
        let depth = bounds.max_query_depth;
        let long = |unit: &str| unit.repeat(bounds.max_query_bytes / unit.len());
        let queries = [
            format!("{}a{}", "(".repeat(depth), ")".repeat(depth)),
            format!("{}a", "NOT ".repeat(depth)),
            format!("{}a", "-".repeat(depth)),
            format!("{}a{}", "NOT (".repeat(depth / 2), ")".repeat(depth / 2)),
            format!("{}a{}", "(a OR ".repeat(depth), ")".repeat(depth)),
            format!("\\\" {}a", "(".repeat(depth - 1)),
            format!("'\"' {}a", "NOT ".repeat(depth)),
            format!("message:/\"/ {}a", "(".repeat(depth)),
            long("a AND "),
            long("a OR "),
            long("a "),
            long("message:a "),
            long("\\"),
            long("a:[b TO c] "),
            long("\"a b\"~2 "),
            long("a^2 "),
        ];
        let mut parsed = 0;
        for query in queries {
            let query = query[..query.len().min(bounds.max_query_bytes)].to_owned();
            if check_query(&query, &bounds).is_err() {
                continue;
            }
            parsed += 1;
            let reader = reader.clone();
            std::thread::Builder::new()
                .stack_size(1024 * 1024)
                .spawn(move || {
                    let _ = reader.parser.parse_query(&query);
                })
                .unwrap()
                .join()
                .unwrap();
        }
        assert!(parsed >= 12, "the gate let only {parsed} of them through");
    }

    /// Past the gate (bounds opened wide), a query deep enough to overflow
    /// a worker's stack still comes back: `parse` runs tantivy on a thread
    /// of its own with a large stack.
    #[test]
    fn a_deep_query_past_loose_bounds_comes_back_from_its_own_stack() {
        let (_dir, index) = index_with(&[record(1, "a", "x")]);
        let reader = index.reader().unwrap().with_bounds(ReadBounds {
            max_query_bytes: 1 << 20,
            max_query_depth: usize::MAX,
            ..ReadBounds::default()
        });
        let deep = format!("{}a{}", "(".repeat(3_000), ")".repeat(3_000));
        let outcome = std::thread::Builder::new()
            .stack_size(512 * 1024)
            .spawn(move || reader.parse(&deep).map(|_| ()).map_err(|e| e.to_string()))
            .unwrap()
            .join();
        assert!(outcome.is_ok(), "parse returned, with a query or an error");
    }

    #[test]
    fn digest_documents_never_show_among_records() {
        let records = [
            record(1, "a", "card declined"),
            record(2, "a", "card charged"),
            record(3, "b", "parcel shipped"),
        ];
        let (_dir, index) = index_with(&records);
        let reader = index.reader().unwrap();
        assert_eq!(
            reader
                .flow_digests(&Default::default(), None, 10)
                .unwrap()
                .len(),
            2
        );
        assert_eq!(reader.record_count().unwrap(), 3);
        for query in [
            "",
            "*",
            "NOT card",
            "NOT payment",
            "-card",
            "NOT (card OR x)",
        ] {
            let (total, hits) = reader.search(query, 10).unwrap();
            assert_eq!(total, hits.records.len(), "{query}");
            assert!(total <= 3, "{query} found {total}");
            let (total, _) = reader.search_in_range(query, Some(0), None, 10).unwrap();
            assert!(total <= 3, "{query} in a range found {total}");
            let histogram = reader.histogram(query, 0, 10, 2).unwrap();
            assert!(histogram.iter().map(|&(_, n)| n).sum::<u64>() <= 3);
        }
        assert_eq!(reader.search("*", 10).unwrap().0, 3);
        assert_eq!(reader.search("NOT card", 10).unwrap().0, 1);
        assert_eq!(reader.search("NOT payment", 10).unwrap().0, 3);
        assert_eq!(reader.flow_keys_matching("NOT card", 10).unwrap(), ["b"]);
    }

    #[test]
    fn the_flow_of_a_trace_or_an_event_is_found() {
        let trace = TraceId::random();
        let mut traced = record(5, "order-1", "paid");
        traced.trace_id = Some(trace);
        traced.event_id = Some(causeway_model::EventId::new("ev-1").unwrap());
        // A trace without a correlation id is its own flow.
        let other = TraceId::random();
        let mut bare = Record::new(Timestamp::from_micros(6), "edge", "hello");
        bare.trace_id = Some(other);
        // An event's newest record with no flow does not hide the flow.
        let mut loose = Record::new(Timestamp::from_micros(9), "edge", "late");
        loose.event_id = Some(causeway_model::EventId::new("ev-1").unwrap());
        let (_dir, index) = index_with(&[traced, bare, loose]);
        let reader = index.reader().unwrap();
        assert_eq!(
            reader.flow_key_of_trace(trace).unwrap().as_deref(),
            Some("order-1")
        );
        assert_eq!(
            reader.flow_key_of_trace(other).unwrap(),
            Some(other.to_string())
        );
        assert_eq!(reader.flow_key_of_trace(TraceId::random()).unwrap(), None);
        assert_eq!(
            reader.flow_key_of_event("ev-1").unwrap().as_deref(),
            Some("order-1")
        );
        assert_eq!(reader.flow_key_of_event("ev-2").unwrap(), None);
    }

    #[test]
    fn the_newest_records_of_a_flow_come_oldest_first() {
        let records: Vec<_> = (0..50)
            .map(|i| record(i, "f", &format!("step {i}")))
            .collect();
        let (_dir, index) = index_with(&records);
        let reader = index.reader().unwrap();
        let newest = reader.records_newest("f", 5).unwrap();
        assert!(newest.truncated);
        assert_eq!(newest.records, records[45..]);
        let all = reader.records_newest("f", 50).unwrap();
        assert_eq!((all.records.len(), all.truncated), (50, false));
        assert_eq!(all.records, records);
        // A byte budget cuts the oldest too.
        let small = index.reader().unwrap().with_bounds(ReadBounds {
            max_response_bytes: 3 * records[0].to_json_line().len() + 10,
            ..ReadBounds::default()
        });
        let cut = small.records_newest("f", 50).unwrap();
        assert!(cut.truncated);
        assert_eq!(cut.records, records[47..]);
    }

    #[test]
    fn a_range_search_and_its_histogram_count_the_same_records() {
        let records: Vec<_> = (0..100)
            .map(|i| record(i * 10, if i % 2 == 0 { "even" } else { "odd" }, "card"))
            .collect();
        let (_dir, index) = index_with(&records);
        let reader = index.reader().unwrap();
        let (total, hits) = reader
            .search_in_range("card", Some(100), Some(290), 100)
            .unwrap();
        assert_eq!(total, 20);
        assert_eq!(hits.records.first().unwrap().timestamp.as_micros(), 290);
        assert_eq!(hits.records.last().unwrap().timestamp.as_micros(), 100);
        assert_eq!(reader.search_in_range("*", None, Some(0), 10).unwrap().0, 1);
        assert_eq!(
            reader.search_in_range("*", Some(990), None, 10).unwrap().0,
            1
        );

        for (start, end, buckets) in [(100, 290, 7), (0, 990, 10), (-5, 2_000, 3), (0, 990, 5_000)]
        {
            let histogram = reader.histogram("card", start, end, buckets).unwrap();
            let sum: u64 = histogram.iter().map(|&(_, n)| n).sum();
            let (total, _) = reader
                .search_in_range("card", Some(start), Some(end), 0)
                .unwrap();
            assert_eq!(sum, total as u64, "{start}..={end} in {buckets}");
            assert!(histogram.len() <= buckets.min(MAX_HISTOGRAM_BUCKETS));
            assert_eq!(histogram[0].0, start);
            assert!(histogram.windows(2).all(|w| w[0].0 < w[1].0));
            assert!(histogram.last().unwrap().0 <= end);
        }
        let histogram = reader.histogram("*", 0, 99, 10).unwrap();
        assert_eq!(histogram, (0..10).map(|i| (i * 10, 1)).collect::<Vec<_>>());
        assert!(reader.histogram("*", 10, 0, 10).unwrap().is_empty());
        assert!(reader.histogram("*", 0, 10, 0).unwrap().is_empty());
        assert_eq!(
            reader.histogram("*", i64::MIN, i64::MAX, 1).unwrap(),
            [(i64::MIN, 100)]
        );
    }

    #[test]
    fn flow_keys_matching_are_the_most_recently_matched_flows() {
        let mut records = Vec::new();
        // Flow k0 matches most recently at 0, k19 at 19; k19 has many more.
        for i in 0..20 {
            records.push(record(i, &format!("k{i}"), "card"));
        }
        for i in 0..500 {
            records.push(record(-i - 1, "k19", "card"));
        }
        records.push(record(1_000, "k3", "parcel"));
        let (_dir, index) = index_with(&records);
        let reader = index.reader().unwrap();
        assert_eq!(
            reader.flow_keys_matching("card", 3).unwrap(),
            ["k19", "k18", "k17"]
        );
        assert_eq!(reader.flow_keys_matching("card", 100).unwrap().len(), 20);
        assert_eq!(reader.flow_keys_matching("parcel", 10).unwrap(), ["k3"]);
        assert!(reader.flow_keys_matching("nothing", 10).unwrap().is_empty());
        assert!(reader.flow_keys_matching("card", 0).unwrap().is_empty());
    }

    #[test]
    fn query_side_refuses_a_missing_index_and_a_wrong_version() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            RecordIndex::open_existing(&dir.path().join("none")),
            Err(IndexError::Missing { .. })
        ));
        RecordIndex::open_or_create(dir.path()).unwrap();
        std::fs::write(
            dir.path().join("causeway-index.json"),
            "{\"schema_version\":99}",
        )
        .unwrap();
        assert!(matches!(
            RecordIndex::open_existing(dir.path()),
            Err(IndexError::SchemaVersion { found: 99, .. })
        ));
    }
}
