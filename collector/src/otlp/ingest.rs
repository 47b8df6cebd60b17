//! What OTLP/HTTP and OTLP/gRPC share: the limits, and an export mapped
//! onto records off the async workers and handed to the indexer, answered
//! once durable with the partial-success counts.
//!
//! It knows nothing of HTTP or gRPC answers; `http` and `grpc` turn its
//! results into theirs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use causeway_model::{CorrelationId, Record, Timestamp, TraceId};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use prost::bytes::Bytes;

use crate::config::CollectorConfig;
use crate::error::IngestError;
use crate::indexer::{Batch, Indexer, Origins, Reserved};
use crate::metrics::Protocol;
use crate::otlp::map::{self, Mapped};

/// The OTLP receiver: the indexer and the limits every export is held to.
#[derive(Debug, Clone)]
pub(crate) struct Otlp {
    indexer: Indexer,
    flows: Arc<TraceFlows>,
    /// Largest body, compressed or inflated.
    pub max_body_bytes: usize,
    /// Most spans or log records in one export.
    pub max_records: usize,
}

/// An export made durable: how many of its spans or log records were
/// rejected (kept as malformed records) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Accepted {
    pub rejected: i64,
    pub message: String,
}

impl Otlp {
    pub(crate) fn new(indexer: Indexer, config: &CollectorConfig) -> Self {
        Self {
            indexer,
            flows: Arc::default(),
            max_body_bytes: config.max_body_bytes,
            max_records: config.max_batch_records,
        }
    }

    /// Maps a trace export (decoded from the protobuf bytes `encoded`, if
    /// it was) and waits until its records are durable.
    pub(crate) async fn traces(
        &self,
        request: ExportTraceServiceRequest,
        encoded: Option<Bytes>,
    ) -> Result<Accepted, IngestError> {
        let count = map::span_count(&request);
        self.check_count(count, "spans")?;
        let wire = wire_bytes(&request, encoded.as_ref());
        let reserved = self.indexer.reserve(wire)?;
        self.ingest(
            reserved,
            move || map::spans(request, encoded.as_deref(), Timestamp::now()),
            "spans",
            Protocol::OtlpTraces,
        )
        .await
    }

    /// Maps a logs export (decoded from the protobuf bytes `encoded`, if it
    /// was) and waits until its records are durable.
    pub(crate) async fn logs(
        &self,
        request: ExportLogsServiceRequest,
        encoded: Option<Bytes>,
    ) -> Result<Accepted, IngestError> {
        let count = map::log_count(&request);
        self.check_count(count, "log records")?;
        let wire = wire_bytes(&request, encoded.as_ref());
        let reserved = self.indexer.reserve(wire)?;
        self.ingest(
            reserved,
            move || map::logs(request, encoded.as_deref(), Timestamp::now()),
            "log records",
            Protocol::OtlpLogs,
        )
        .await
    }

    fn check_count(&self, count: usize, what: &str) -> Result<(), IngestError> {
        if count > self.max_records {
            self.indexer.rejected("batch_too_large");
            return Err(IngestError::TooLarge(format!(
                "the request holds {count} {what}, the limit is {}",
                self.max_records
            )));
        }
        Ok(())
    }

    /// Maps an export (which took `reserved` of the queue's budget before
    /// it is mapped) and hands its records to the indexer.
    async fn ingest(
        &self,
        reserved: Reserved,
        map: impl FnOnce() -> Mapped + Send + 'static,
        what: &'static str,
        protocol: Protocol,
    ) -> Result<Accepted, IngestError> {
        // Mapping thousands of spans is CPU work: off the async workers.
        let flows = self.flows.clone();
        let mapped = tokio::task::spawn_blocking(move || {
            let mut mapped = map();
            flows.join(&mut mapped.records);
            mapped
        })
        .await
        .map_err(|error| IngestError::Internal(format!("mapping task: {error}")))?;
        let accepted = Accepted {
            rejected: mapped.rejected,
            message: mapped.error_message(what),
        };
        if !mapped.records.is_empty() {
            let origins = Origins {
                hashes: mapped.hashes,
                ..Origins::default()
            };
            let batch = Batch {
                records: mapped.records,
                origins,
            };
            self.indexer.ingest_batch(batch, protocol, reserved).await?;
        }
        Ok(accepted)
    }
}

/// The size of an export's body (inflated): its bytes when they are at
/// hand, else what encoding it gives, without encoding it.
fn wire_bytes(request: &impl Message, encoded: Option<&Bytes>) -> usize {
    encoded.map_or_else(|| request.encoded_len(), Bytes::len)
}

/// Most traces [`TraceFlows`] remembers; past it, it starts afresh.
const MAX_TRACE_FLOWS: usize = 100_000;

/// The flows of traces seen under a correlation id other than their own
/// trace id (a conversation id, or the trace a span link points to), so
/// that a span or log record of such a trace exported later, naming
/// neither, joins the same flow instead of one of its own. An SDK exports
/// a consumer's log records apart from its spans, and a batch processor
/// splits one trace over several exports. In memory and bounded: after a
/// restart, or past [`MAX_TRACE_FLOWS`], such a record keeps its trace's
/// flow.
#[derive(Debug, Default)]
struct TraceFlows {
    known: Mutex<HashMap<TraceId, CorrelationId>>,
}

impl TraceFlows {
    /// Learns from `records` which traces belong to another flow, then
    /// puts the records that name no correlation id in their trace's flow.
    fn join(&self, records: &mut [Record]) {
        let Ok(mut known) = self.known.lock() else {
            return;
        };
        for record in records.iter() {
            if let (Some(trace), Some(correlation)) = (record.trace_id, &record.correlation_id)
                && correlation.as_str() != trace.to_string()
            {
                if known.len() >= MAX_TRACE_FLOWS && !known.contains_key(&trace) {
                    known.clear();
                }
                known.insert(trace, correlation.clone());
            }
        }
        for record in records.iter_mut() {
            if record.correlation_id.is_none()
                && let Some(correlation) = record.trace_id.and_then(|t| known.get(&t))
            {
                record.correlation_id = Some(correlation.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(trace: u8, correlation: Option<&str>) -> Record {
        let mut r = Record::new(Timestamp::from_micros(1), "svc", "m");
        r.trace_id = TraceId::from_bytes([trace; 16]);
        r.correlation_id = correlation.map(|c| CorrelationId::new(c).unwrap());
        r
    }

    #[test]
    fn a_later_record_of_a_trace_joins_the_flow_its_trace_was_seen_in() {
        let flows = TraceFlows::default();
        let producer = TraceId::from_bytes([1; 16]).unwrap().to_string();
        // A consumer span of trace 2 that joined trace 1's flow by its link.
        let mut first = [record(2, Some(&producer)), record(3, None)];
        flows.join(&mut first);
        assert_eq!(first[1].correlation_id, None, "trace 3 is in no other flow");
        // Its log record, exported on its own.
        let mut later = [record(2, None), record(3, None)];
        flows.join(&mut later);
        assert_eq!(
            later[0].correlation_id.as_ref().map(CorrelationId::as_str),
            Some(producer.as_str())
        );
        assert_eq!(later[1].correlation_id, None);
        // A record naming its own trace as its flow teaches nothing.
        let own = TraceId::from_bytes([4; 16]).unwrap().to_string();
        let mut plain = [record(4, Some(&own)), record(4, None)];
        flows.join(&mut plain);
        assert_eq!(plain[1].correlation_id, None);
    }
}
