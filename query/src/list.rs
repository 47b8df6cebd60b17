//! The flow list: flow digests newest activity first, each analyzed as of
//! the request, kept when it passes the filters, until the page is full or
//! the scan budget is spent.
//!
//! Statuses and anomalies depend on the time of reading and on the
//! topology, so they cannot be indexed; what can (services, event types,
//! activity, duration, and the digest facets that are necessary conditions
//! of a status or an anomaly) narrows the digests the index hands over.
//! This module reads through the index crate and never writes.

use causeway_index::{DigestCursor, DigestFilter, RecordReader};
use causeway_model::{AnomalyKind, DigestFacet, FlowStatus, FlowSummary, FlowsPage, Timestamp};

use crate::error::RequestError;
use crate::flow::{FlowContext, summarize};

/// What the caller asked the list for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FlowFilter {
    pub statuses: Vec<FlowStatus>,
    pub anomalies: Vec<AnomalyKind>,
    pub services: Vec<String>,
    pub event_types: Vec<String>,
    /// Active at or after this time.
    pub since: Option<Timestamp>,
    /// Started at or before this time.
    pub until: Option<Timestamp>,
    pub min_duration_us: Option<u64>,
    /// Only flows with a record matching this search.
    pub q: Option<String>,
}

/// The facet a status needs, when it needs one.
fn status_facet(status: FlowStatus) -> Option<DigestFacet> {
    match status {
        FlowStatus::Failed => Some(DigestFacet::Failed),
        FlowStatus::DeadLettered => Some(DigestFacet::DeadLettered),
        FlowStatus::Compensated => Some(DigestFacet::Compensated),
        // Open work can be expected work nobody began (learned topology):
        // no record fact is necessary for these.
        FlowStatus::InProgress | FlowStatus::Stuck | FlowStatus::Completed => None,
    }
}

/// The facet an anomaly needs, when it needs one.
fn anomaly_facet(kind: AnomalyKind) -> Option<DigestFacet> {
    match kind {
        AnomalyKind::DuplicateDelivery => Some(DigestFacet::HandledTwice),
        AnomalyKind::Redelivery => Some(DigestFacet::Redelivered),
        AnomalyKind::PoisonLoop => Some(DigestFacet::FailedRepeatedly),
        AnomalyKind::ClockSkew => Some(DigestFacet::ReceivedBeforePublished),
        AnomalyKind::OutOfOrder => Some(DigestFacet::SharedDestination),
        // These also come from the topology.
        AnomalyKind::ContextLost | AnomalyKind::MissingConsumer | AnomalyKind::SlowStep => None,
    }
}

/// The facets of which a flow must have one to pass `wanted`, or none
/// when some wanted value needs no facet.
fn facets_any<T: Copy>(wanted: &[T], facet: impl Fn(T) -> Option<DigestFacet>) -> Vec<DigestFacet> {
    let facets: Option<Vec<DigestFacet>> = wanted.iter().map(|&w| facet(w)).collect();
    let mut facets = facets.unwrap_or_default();
    facets.sort();
    facets.dedup();
    facets
}

impl FlowFilter {
    fn digest_filter(&self, keys: Option<Vec<String>>) -> DigestFilter {
        // One "any of" group narrows: the status's when it has one, else the
        // anomaly's. Evaluation checks both anyway.
        let mut facets = facets_any(&self.statuses, status_facet);
        if facets.is_empty() {
            facets = facets_any(&self.anomalies, anomaly_facet);
        }
        DigestFilter {
            services: self.services.clone(),
            event_types: self.event_types.clone(),
            facets_any: facets,
            active_since_us: self.since.map(Timestamp::as_micros),
            active_until_us: self.until.map(Timestamp::as_micros),
            min_duration_us: self.min_duration_us,
            keys,
        }
    }

    /// Whether a flow, as analyzed now, passes the filters that depend on
    /// the analysis.
    pub fn keeps(&self, summary: &FlowSummary) -> bool {
        (self.statuses.is_empty() || self.statuses.contains(&summary.status))
            && (self.anomalies.is_empty()
                || self.anomalies.iter().any(|k| summary.anomalies.contains(k)))
            && self
                .min_duration_us
                .is_none_or(|min| summary.duration_us >= min)
    }
}

/// An opaque page cursor: the last flow's activity and key.
pub fn encode_cursor(cursor: &DigestCursor) -> String {
    let key: String = cursor.key.bytes().map(|b| format!("{b:02x}")).collect();
    format!("{}.{key}", cursor.last_us)
}

/// Reads a cursor [`encode_cursor`] made.
pub fn decode_cursor(text: &str) -> Result<DigestCursor, RequestError> {
    let bad = || RequestError::BadRequest("invalid cursor".into());
    let (last, key) = text.split_once('.').ok_or_else(bad)?;
    let last_us: i64 = last.parse().map_err(|_| bad())?;
    if key.len() % 2 != 0 || key.len() > 512 {
        return Err(bad());
    }
    let bytes = (0..key.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(key.get(i..i + 2).ok_or_else(bad)?, 16).map_err(|_| bad()))
        .collect::<Result<Vec<u8>, _>>()?;
    let key = String::from_utf8(bytes).map_err(|_| bad())?;
    Ok(DigestCursor { last_us, key })
}

/// The most digests one read of the index hands over.
const MAX_CHUNK: usize = 1_024;

/// How many flows one text search may name for the `q` filter.
const MAX_Q_FLOWS: usize = 10_000;

/// One page of the flow list.
pub fn list_flows(
    reader: &RecordReader,
    filter: &FlowFilter,
    after: Option<DigestCursor>,
    limit: usize,
    max_scan: usize,
    context: FlowContext<'_>,
) -> Result<FlowsPage, RequestError> {
    let keys = match &filter.q {
        Some(q) if !q.trim().is_empty() => Some(reader.flow_keys_matching(q, MAX_Q_FLOWS)?),
        _ => None,
    };
    if keys.as_ref().is_some_and(Vec::is_empty) || limit == 0 {
        return Ok(FlowsPage {
            flows: Vec::new(),
            next_cursor: None,
            scanned: 0,
            scan_limited: false,
        });
    }
    let digest_filter = filter.digest_filter(keys);
    // The first read is one page: when the index's facets decide the filter
    // (none, or statuses with an exact facet) every digest read is listed.
    // Later reads double, since each is a search of its own.
    let mut chunk = limit.min(MAX_CHUNK);
    let mut flows = Vec::new();
    let mut scanned = 0usize;
    let mut cursor = after;
    loop {
        let budget = max_scan.saturating_sub(scanned);
        if budget == 0 {
            // Stopped by the budget: the cursor goes on from the last flow
            // examined.
            return Ok(FlowsPage {
                flows,
                next_cursor: cursor.as_ref().map(encode_cursor),
                scanned,
                scan_limited: true,
            });
        }
        let digests = reader.flow_digests(&digest_filter, cursor.as_ref(), chunk.min(budget))?;
        let exhausted = digests.len() < chunk.min(budget);
        for digest in digests {
            scanned += 1;
            cursor = Some(DigestCursor {
                last_us: digest.last_us,
                key: digest.key.clone(),
            });
            let summary = summarize(&digest, context);
            if filter.keeps(&summary) {
                flows.push(summary);
                if flows.len() == limit {
                    return Ok(FlowsPage {
                        flows,
                        next_cursor: cursor.as_ref().map(encode_cursor),
                        scanned,
                        scan_limited: false,
                    });
                }
            }
        }
        if exhausted {
            return Ok(FlowsPage {
                flows,
                next_cursor: None,
                scanned,
                scan_limited: false,
            });
        }
        chunk = chunk.saturating_mul(2).min(MAX_CHUNK);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_reads_back_and_garbage_is_refused() {
        let cursor = DigestCursor {
            last_us: 1_767_225_600_000_000,
            key: "order-1234 ✓.x".into(),
        };
        let text = encode_cursor(&cursor);
        assert!(text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.'));
        let back = decode_cursor(&text).unwrap();
        assert_eq!((back.last_us, back.key), (cursor.last_us, cursor.key));
        for bad in ["", "12", "x.00", "1.0", "1.zz", "1.ff"] {
            assert!(decode_cursor(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_statuses_with_a_necessary_fact_narrow_the_digests() {
        let failed = FlowFilter {
            statuses: vec![FlowStatus::Failed, FlowStatus::DeadLettered],
            ..FlowFilter::default()
        };
        assert_eq!(
            failed.digest_filter(None).facets_any,
            vec![DigestFacet::Failed, DigestFacet::DeadLettered]
        );
        let stuck = FlowFilter {
            statuses: vec![FlowStatus::Failed, FlowStatus::Stuck],
            anomalies: vec![AnomalyKind::PoisonLoop],
            ..FlowFilter::default()
        };
        assert_eq!(
            stuck.digest_filter(None).facets_any,
            vec![DigestFacet::FailedRepeatedly]
        );
    }
}
