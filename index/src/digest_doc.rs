//! A flow's digest document: [`FlowDigest`] <-> its stored JSON, digest ->
//! document, and reading a flow's committed digest back from a searcher
//! (the writer's before it merges, the reader's for query).
//!
//! The stored JSON is this crate's own form of the digest, not serde_json
//! of `FlowDigest` itself: the digest's `steps` map is keyed by a struct,
//! which JSON objects cannot hold, so the steps are stored as a list of
//! `[key, step]` pairs. Both directions name every field of `FlowDigest`,
//! so a field added to the model does not compile here until it is stored.
//!
//! It imports the schema only; it never writes and never opens an index.

use std::collections::{BTreeMap, BTreeSet};

use causeway_model::{EventDigest, EventId, FlowDigest, Record, StepDigest, StepKey, TraceId};
use serde::{Deserialize, Serialize, Serializer};
use tantivy::collector::DocSetCollector;
use tantivy::query::TermQuery;
use tantivy::schema::{IndexRecordOption, Value};
use tantivy::{DocAddress, DocSet, Searcher, TERMINATED, TantivyDocument, TantivyError, Term};

use crate::error::IndexError;
use crate::schema::{DOC_FLOW, Fields};

/// The steps map as a list of `[key, step]` pairs.
struct StepPairs<'a>(&'a BTreeMap<StepKey, StepDigest>);

impl Serialize for StepPairs<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter())
    }
}

#[derive(Serialize)]
struct StoredRef<'a> {
    key: &'a str,
    first_us: i64,
    last_us: i64,
    record_count: u64,
    failure_count: u64,
    services: &'a BTreeSet<String>,
    trace_ids: &'a BTreeSet<TraceId>,
    events: &'a BTreeMap<EventId, EventDigest>,
    steps: StepPairs<'a>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    truncated: bool,
}

#[derive(Deserialize)]
struct Stored {
    key: String,
    first_us: i64,
    last_us: i64,
    record_count: u64,
    #[serde(default)]
    failure_count: u64,
    #[serde(default)]
    services: BTreeSet<String>,
    #[serde(default)]
    trace_ids: BTreeSet<TraceId>,
    #[serde(default)]
    events: BTreeMap<EventId, EventDigest>,
    #[serde(default)]
    steps: Vec<(StepKey, StepDigest)>,
    #[serde(default)]
    truncated: bool,
}

/// The stored JSON of `digest`.
pub(crate) fn to_json(digest: &FlowDigest) -> Result<String, IndexError> {
    let FlowDigest {
        key,
        first_us,
        last_us,
        record_count,
        failure_count,
        services,
        trace_ids,
        events,
        steps,
        truncated,
    } = digest;
    serde_json::to_string(&StoredRef {
        key,
        first_us: *first_us,
        last_us: *last_us,
        record_count: *record_count,
        failure_count: *failure_count,
        services,
        trace_ids,
        events,
        steps: StepPairs(steps),
        truncated: *truncated,
    })
    .map_err(|e| IndexError::Internal(format!("digest of flow {key:?} as JSON: {e}")))
}

/// The digest [`to_json`] stored.
pub(crate) fn from_json(json: &str) -> Result<FlowDigest, IndexError> {
    let Stored {
        key,
        first_us,
        last_us,
        record_count,
        failure_count,
        services,
        trace_ids,
        events,
        steps,
        truncated,
    } = serde_json::from_str(json)
        .map_err(|e| IndexError::Source(format!("stored flow digest: {e}")))?;
    Ok(FlowDigest {
        key,
        first_us,
        last_us,
        record_count,
        failure_count,
        services,
        trace_ids,
        events,
        steps: steps.into_iter().collect(),
        truncated,
    })
}

/// The digest document of `digest`, whose stored JSON is `json`.
pub(crate) fn document(fields: &Fields, digest: &FlowDigest, json: String) -> TantivyDocument {
    let f = &fields.digest;
    let mut doc = TantivyDocument::new();
    doc.add_text(fields.doc_kind, DOC_FLOW);
    doc.add_text(f.key, &digest.key);
    doc.add_text(f.json, json);
    doc.add_i64(f.first_us, digest.first_us);
    doc.add_i64(f.last_us, digest.last_us);
    let duration = u64::try_from(digest.last_us.saturating_sub(digest.first_us)).unwrap_or(0);
    doc.add_u64(f.duration_us, duration);
    for service in &digest.services {
        doc.add_text(f.services, service);
    }
    let event_types: BTreeSet<&str> = digest
        .events
        .values()
        .filter_map(EventDigest::event_type)
        .collect();
    for event_type in event_types {
        doc.add_text(f.event_types, event_type);
    }
    for facet in digest.facets() {
        doc.add_text(f.facets, facet.as_str());
    }
    doc.add_u64(f.record_count, digest.record_count);
    doc
}

/// The digest stored in the document at `address`.
pub(crate) fn load(
    searcher: &Searcher,
    fields: &Fields,
    address: DocAddress,
) -> Result<FlowDigest, IndexError> {
    let doc: TantivyDocument = searcher.doc(address)?;
    let json = doc
        .get_first(fields.digest.json)
        .and_then(|v| v.as_str())
        .ok_or_else(|| IndexError::Source("digest document has no flow_digest".into()))?;
    from_json(json)
}

/// The digest document of flow `key` as `searcher` sees the index: its
/// address, if the flow has one. There is one live digest document per
/// flow: the writer deletes the old one in the commit that adds the new.
/// Read straight from each segment's postings: a search would gather
/// scoring statistics or open a fast column per segment, which the writer,
/// reading back many digests per commit, would pay for each.
fn address(
    searcher: &Searcher,
    fields: &Fields,
    key: &str,
) -> Result<Option<DocAddress>, IndexError> {
    let term = Term::from_field_text(fields.digest.key, key);
    for (ord, segment) in searcher.segment_readers().iter().enumerate() {
        let postings = segment
            .inverted_index(fields.digest.key)?
            .read_postings(&term, IndexRecordOption::Basic)
            .map_err(TantivyError::from)?;
        let Some(mut postings) = postings else {
            continue;
        };
        let mut doc = postings.doc();
        while doc != TERMINATED {
            if !segment.is_deleted(doc) {
                // Segment ordinals index the searcher's segments, which
                // tantivy counts in u32.
                let ord = u32::try_from(ord)
                    .map_err(|_| IndexError::Internal("more than 2^32 segments".into()))?;
                return Ok(Some(DocAddress::new(ord, doc)));
            }
            doc = postings.advance();
        }
    }
    Ok(None)
}

/// The committed digest of flow `key`, `None` when it has none. A stored
/// digest this build cannot read is rebuilt from the flow's records (and
/// logged), so a digest format change without a schema version costs time,
/// never a flow.
pub(crate) fn find(
    searcher: &Searcher,
    fields: &Fields,
    key: &str,
) -> Result<Option<FlowDigest>, IndexError> {
    let Some(address) = address(searcher, fields, key)? else {
        return Ok(None);
    };
    load_or_rebuild(searcher, fields, address, key).map(Some)
}

/// The digest at `address` (of flow `key`), or if it does not read back,
/// the digest of the flow's records.
pub(crate) fn load_or_rebuild(
    searcher: &Searcher,
    fields: &Fields,
    address: DocAddress,
    key: &str,
) -> Result<FlowDigest, IndexError> {
    match load(searcher, fields, address) {
        Ok(digest) => Ok(digest),
        Err(IndexError::Source(error)) => {
            tracing::warn!(%error, flow = key, "stored flow digest unreadable, rebuilt from records");
            rebuild(searcher, fields, key)
        }
        Err(other) => Err(other),
    }
}

/// The digest of every record of flow `key` that `searcher` sees, read one
/// record at a time.
pub(crate) fn rebuild(
    searcher: &Searcher,
    fields: &Fields,
    key: &str,
) -> Result<FlowDigest, IndexError> {
    let query = TermQuery::new(
        Term::from_field_text(fields.flow, key),
        IndexRecordOption::Basic,
    );
    let mut digest = FlowDigest::new(key);
    for address in searcher.search(&query, &DocSetCollector)? {
        let doc: TantivyDocument = searcher.doc(address)?;
        let source = doc
            .get_first(fields.source)
            .and_then(|v| v.as_str())
            .ok_or_else(|| IndexError::Source("document has no _source".into()))?;
        let record: Record =
            serde_json::from_str(source).map_err(|e| IndexError::Source(e.to_string()))?;
        digest.add(&record);
    }
    Ok(digest)
}

#[cfg(test)]
mod tests {
    use causeway_model::{CorrelationId, Stage, Timestamp};

    use super::*;

    fn record(t: i64, service: &str, stage: Stage, event: &str) -> Record {
        let mut r = Record::new(Timestamp::from_micros(t), service, stage.as_str());
        r.stage = stage;
        r.correlation_id = Some(CorrelationId::new("order-1").unwrap());
        r.trace_id = Some(TraceId::random());
        r.event_id = Some(EventId::new(event).unwrap());
        r.event_type = Some(format!("Type-{event}"));
        r.consumer_group = (stage != Stage::Published).then(|| "g".to_owned());
        r.error_type = (stage == Stage::Failed).then(|| "Declined".to_owned());
        r
    }

    #[test]
    fn a_digest_reads_back_from_its_json_identical() {
        let records = [
            record(1, "order", Stage::Published, "e1"),
            record(2, "payment", Stage::Received, "e1"),
            record(3, "payment", Stage::Failed, "e1"),
            record(4, "payment", Stage::Retried, "e1"),
            record(5, "payment", Stage::Handled, "e1"),
            record(6, "payment", Stage::Published, "e2"),
        ];
        let mut digest = FlowDigest::of("order-1", &records);
        digest.truncated = true;
        assert!(!digest.steps.is_empty());
        let json = to_json(&digest).unwrap();
        assert_eq!(from_json(&json).unwrap(), digest);
        assert!(matches!(from_json("{}"), Err(IndexError::Source(_))));
    }

    #[test]
    fn an_unreadable_stored_digest_is_rebuilt_from_the_records() {
        let dir = tempfile::tempdir().unwrap();
        let records = [
            record(1, "order", Stage::Published, "e1"),
            record(2, "payment", Stage::Received, "e1"),
        ];
        let index = crate::RecordIndex::open_or_create(dir.path()).unwrap();
        let mut writer = index.writer(15_000_000).unwrap();
        writer.add(&records[0]).unwrap();
        writer.commit().unwrap();
        drop(writer);
        // A digest this build cannot read, in place of the written one.
        let raw = tantivy::Index::open_in_dir(dir.path()).unwrap();
        let fields = Fields::resolve(&raw.schema()).unwrap();
        let mut tantivy_writer: tantivy::IndexWriter = raw.writer(15_000_000).unwrap();
        let mut broken = document(
            &fields,
            &FlowDigest::of("order-1", &records[..1]),
            "{}".into(),
        );
        broken.add_text(fields.digest.services, "ghost");
        tantivy_writer.delete_term(Term::from_field_text(fields.digest.key, "order-1"));
        tantivy_writer.add_document(broken).unwrap();
        tantivy_writer.commit().unwrap();
        drop(tantivy_writer);

        let reader = index.reader().unwrap();
        reader.reload().unwrap();
        assert_eq!(
            reader.flow_digest("order-1").unwrap(),
            Some(FlowDigest::of("order-1", &records[..1]))
        );
        // The writer rebuilds it too, then merges what it adds.
        let mut writer = index.writer(15_000_000).unwrap();
        writer.add(&records[1]).unwrap();
        writer.commit().unwrap();
        reader.reload().unwrap();
        assert_eq!(
            reader.flow_digest("order-1").unwrap(),
            Some(FlowDigest::of("order-1", &records))
        );
        let listed = reader.flow_digests(&Default::default(), None, 10).unwrap();
        assert_eq!(listed, [FlowDigest::of("order-1", &records)]);
    }
}
