//! Searching records: by query string, by flow key, by trace id, and the
//! most recently active flows. Readers never write.
//!
//! A reader reloads by itself when a commit lands (tantivy watches
//! `meta.json`, also across processes); [`RecordReader::reload`] forces it.

use causeway_model::{Record, RecordField, Timestamp, TraceId};
use tantivy::aggregation::agg_req::Aggregations;
use tantivy::aggregation::agg_result::AggregationResults;
use tantivy::aggregation::{AggContextParams, AggregationCollector};
use tantivy::collector::{Count, TopDocs};
use tantivy::query::{AllQuery, Query, QueryParser, TermQuery};
use tantivy::schema::{Field, IndexRecordOption, Value};
use tantivy::{
    DocAddress, Index, IndexReader, Order, ReloadPolicy, Searcher, TantivyDocument, Term,
};

use crate::error::IndexError;
use crate::query::{ReadBounds, check_query};
use crate::schema::{FLOW, Fields, TIMESTAMP_US};

/// The stack of the thread a query string is parsed on. Only the pages a
/// parse touches are ever allocated.
const PARSE_STACK_BYTES: usize = 64 * 1024 * 1024;

/// A flow key and when it was last active.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowKeyHit {
    pub key: String,
    pub last_activity_at: Timestamp,
    pub record_count: u64,
}

/// Records read back, oldest or newest first, and whether more matched
/// than were returned.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RecordsRead {
    pub records: Vec<Record>,
    /// True when the read stopped at its byte budget, or (for a flow or a
    /// trace) at the count it was asked for, with more records left.
    pub truncated: bool,
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

    /// Records in the index.
    pub fn record_count(&self) -> u64 {
        self.reader.searcher().num_docs()
    }

    /// Records matching `query` (tantivy query syntax; empty or `*` matches
    /// all), newest first, at most `limit` and at most the byte budget; also
    /// the total number matched. A query longer or deeper than the bounds
    /// is refused before it is parsed.
    pub fn search(&self, query: &str, limit: usize) -> Result<(usize, RecordsRead), IndexError> {
        let query = self.parse(query)?;
        let searcher = self.reader.searcher();
        if limit == 0 {
            return Ok((searcher.search(&query, &Count)?, RecordsRead::default()));
        }
        let top = TopDocs::with_limit(limit).order_by_fast_field::<i64>(TIMESTAMP_US, Order::Desc);
        let (total, hits) = searcher.search(&query, &(Count, top))?;
        let read = self.load(&searcher, hits.into_iter().map(|(_, a)| a))?;
        Ok((total, read))
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
                .spawn_scoped(scope, move || parser.parse_query(q))
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
        self.oldest_first(self.fields.flow, key, limit)
    }

    /// Every record of one trace, oldest first, as [`Self::flow_records`].
    pub fn trace_records(
        &self,
        trace_id: TraceId,
        limit: usize,
    ) -> Result<RecordsRead, IndexError> {
        let field = self
            .fields
            .keyword(RecordField::TraceId)
            .ok_or_else(|| IndexError::Internal("schema has no trace_id field".into()))?;
        self.oldest_first(field, &trace_id.to_string(), limit)
    }

    fn oldest_first(
        &self,
        field: Field,
        value: &str,
        limit: usize,
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
            .order_by_fast_field::<i64>(TIMESTAMP_US, Order::Asc);
        let searcher = self.reader.searcher();
        let hits = searcher.search(&query, &top)?;
        let more = hits.len() > limit;
        let mut read = self.load(&searcher, hits.into_iter().take(limit).map(|(_, a)| a))?;
        read.truncated |= more;
        Ok(read)
    }

    /// The `limit` flows with the most recent activity, newest first.
    pub fn recent_flows(&self, limit: usize) -> Result<Vec<FlowKeyHit>, IndexError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let request = serde_json::json!({
            "flows": {
                "terms": { "field": FLOW, "size": limit, "order": { "last": "desc" } },
                "aggs": { "last": { "max": { "field": TIMESTAMP_US } } }
            }
        });
        let aggs: Aggregations = serde_json::from_value(request)
            .map_err(|e| IndexError::Internal(format!("flows aggregation: {e}")))?;
        let collector = AggregationCollector::from_aggs(aggs, AggContextParams::default());
        let searcher = self.reader.searcher();
        let results: AggregationResults = searcher.search(&AllQuery, &collector)?;
        let value = serde_json::to_value(&results)
            .map_err(|e| IndexError::Internal(format!("flows aggregation result: {e}")))?;
        let buckets = value
            .pointer("/flows/buckets")
            .and_then(serde_json::Value::as_array)
            .cloned()
            .unwrap_or_default();
        Ok(buckets
            .iter()
            .filter_map(|bucket| {
                let key = bucket.get("key")?.as_str()?.to_owned();
                let record_count = bucket.get("doc_count")?.as_u64()?;
                // Microsecond timestamps stay below 2^53 until year 2255, so
                // the f64 of the max aggregation holds them exactly.
                let last = bucket.pointer("/last/value")?.as_f64()? as i64;
                Some(FlowKeyHit {
                    key,
                    last_activity_at: Timestamp::from_micros(last),
                    record_count,
                })
            })
            .collect())
    }
}

impl RecordReader {
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

#[cfg(test)]
mod tests {
    use causeway_model::{CorrelationId, Stage};

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
    /// to tantivy's parser directly on a thread with a quarter of a tokio
    /// worker's stack, without the large stack `parse` gives them: the
    /// gate alone must keep the parser's recursion shallow.
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
                .stack_size(512 * 1024)
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
    fn recent_flows_orders_by_last_activity() {
        let records = [
            record(100, "old", "x"),
            record(500, "old", "x"),
            record(300, "new", "x"),
            record(900, "new", "x"),
            record(200, "mid", "x"),
        ];
        let (_dir, index) = index_with(&records);
        let flows = index.reader().unwrap().recent_flows(2).unwrap();
        let keys: Vec<_> = flows
            .iter()
            .map(|f| (f.key.as_str(), f.last_activity_at.as_micros()))
            .collect();
        assert_eq!(keys, vec![("new", 900), ("old", 500)]);
        assert_eq!(flows[0].record_count, 2);
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
