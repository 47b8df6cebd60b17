//! Searching records: by query string, by flow key, by trace id, and the
//! most recently active flows. Readers never write.
//!
//! A reader reloads by itself when a commit lands (tantivy watches
//! `meta.json`, also across processes); [`RecordReader::reload`] forces it.

use causeway_model::{Record, Timestamp, TraceId};
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
use crate::schema::{DEFAULT_SEARCH_FIELDS, Fields};

/// A flow key and when it was last active.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowKeyHit {
    pub key: String,
    pub last_activity_at: Timestamp,
    pub record_count: u64,
}

/// A searcher over the index; cheap to clone, safe to share.
#[derive(Clone)]
pub struct RecordReader {
    reader: IndexReader,
    fields: Fields,
    parser: QueryParser,
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
        let default_fields = DEFAULT_SEARCH_FIELDS
            .iter()
            .filter_map(|name| index.schema().get_field(name).ok())
            .collect();
        let mut parser = QueryParser::for_index(index, default_fields);
        parser.set_conjunction_by_default();
        Ok(Self {
            reader,
            fields,
            parser,
        })
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
    /// all), newest first, at most `limit`; also the total number matched.
    pub fn search(&self, query: &str, limit: usize) -> Result<(usize, Vec<Record>), IndexError> {
        let query: Box<dyn Query> = match query.trim() {
            "" | "*" => Box::new(AllQuery),
            q => self
                .parser
                .parse_query(q)
                .map_err(|e| IndexError::Query(e.to_string()))?,
        };
        let searcher = self.reader.searcher();
        if limit == 0 {
            return Ok((searcher.search(&query, &Count)?, Vec::new()));
        }
        let top =
            TopDocs::with_limit(limit).order_by_fast_field::<i64>("timestamp_us", Order::Desc);
        let (total, hits) = searcher.search(&query, &(Count, top))?;
        let records = load(&searcher, &self.fields, hits.into_iter().map(|(_, a)| a))?;
        Ok((total, records))
    }

    /// Every record of one flow (by correlation id, or trace id for flows
    /// without one), oldest first, at most `limit`.
    pub fn flow_records(&self, key: &str, limit: usize) -> Result<Vec<Record>, IndexError> {
        self.oldest_first(self.fields.flow, key, limit)
    }

    /// Every record of one trace, oldest first, at most `limit`.
    pub fn trace_records(
        &self,
        trace_id: TraceId,
        limit: usize,
    ) -> Result<Vec<Record>, IndexError> {
        let field = self
            .fields
            .keyword("trace_id")
            .ok_or_else(|| IndexError::Query("schema has no trace_id field".into()))?;
        self.oldest_first(field, &trace_id.to_string(), limit)
    }

    fn oldest_first(
        &self,
        field: Field,
        value: &str,
        limit: usize,
    ) -> Result<Vec<Record>, IndexError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let query = TermQuery::new(
            Term::from_field_text(field, value),
            IndexRecordOption::Basic,
        );
        let top = TopDocs::with_limit(limit).order_by_fast_field::<i64>("timestamp_us", Order::Asc);
        let searcher = self.reader.searcher();
        let hits = searcher.search(&query, &top)?;
        load(&searcher, &self.fields, hits.into_iter().map(|(_, a)| a))
    }

    /// The `limit` flows with the most recent activity, newest first.
    pub fn recent_flows(&self, limit: usize) -> Result<Vec<FlowKeyHit>, IndexError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let request = serde_json::json!({
            "flows": {
                "terms": { "field": "flow", "size": limit, "order": { "last": "desc" } },
                "aggs": { "last": { "max": { "field": "timestamp_us" } } }
            }
        });
        let aggs: Aggregations = serde_json::from_value(request)
            .map_err(|e| IndexError::Query(format!("flows aggregation: {e}")))?;
        let collector = AggregationCollector::from_aggs(aggs, AggContextParams::default());
        let searcher = self.reader.searcher();
        let results: AggregationResults = searcher.search(&AllQuery, &collector)?;
        let value = serde_json::to_value(&results)
            .map_err(|e| IndexError::Query(format!("flows aggregation result: {e}")))?;
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

fn load(
    searcher: &Searcher,
    fields: &Fields,
    addresses: impl Iterator<Item = DocAddress>,
) -> Result<Vec<Record>, IndexError> {
    addresses
        .map(|address| {
            let doc: TantivyDocument = searcher.doc(address)?;
            let source = doc
                .get_first(fields.source)
                .and_then(|v| v.as_str())
                .ok_or_else(|| IndexError::Source("document has no _source".into()))?;
            serde_json::from_str(source).map_err(|e| IndexError::Source(e.to_string()))
        })
        .collect()
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
        assert_eq!(reader.flow_records("order-1", 10).unwrap(), vec![r.clone()]);
        assert_eq!(
            reader.trace_records(r.trace_id.unwrap(), 10).unwrap(),
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
        assert_eq!(hits[0].message, "card charged");
        let (total, hits) = reader.search("correlation_id:c", 10).unwrap();
        assert_eq!((total, hits[0].message.as_str()), (1, "parcel shipped"));
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
        assert_eq!(hits[0].correlation_id.as_ref().unwrap().as_str(), "a");
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
