//! What OTLP/HTTP and OTLP/gRPC share: the limits, and an export mapped
//! onto records off the async workers and handed to the indexer, answered
//! once durable with the partial-success counts.
//!
//! It knows nothing of HTTP or gRPC answers; `http` and `grpc` turn its
//! results into theirs.

use causeway_model::Timestamp;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;

use crate::config::CollectorConfig;
use crate::error::IngestError;
use crate::indexer::Indexer;
use crate::metrics::Protocol;
use crate::otlp::map::{self, Mapped};

/// The OTLP receiver: the indexer and the limits every export is held to.
#[derive(Debug, Clone)]
pub(crate) struct Otlp {
    indexer: Indexer,
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
            max_body_bytes: config.max_body_bytes,
            max_records: config.max_batch_records,
        }
    }

    /// Maps a trace export and waits until its records are durable.
    pub(crate) async fn traces(
        &self,
        request: ExportTraceServiceRequest,
    ) -> Result<Accepted, IngestError> {
        let count = map::span_count(&request);
        self.check_count(count, "spans")?;
        self.ingest(
            move || map::spans(&request, Timestamp::now()),
            "spans",
            Protocol::OtlpTraces,
        )
        .await
    }

    /// Maps a logs export and waits until its records are durable.
    pub(crate) async fn logs(
        &self,
        request: ExportLogsServiceRequest,
    ) -> Result<Accepted, IngestError> {
        let count = map::log_count(&request);
        self.check_count(count, "log records")?;
        self.ingest(
            move || map::logs(&request, Timestamp::now()),
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

    async fn ingest(
        &self,
        map: impl FnOnce() -> Mapped + Send + 'static,
        what: &'static str,
        protocol: Protocol,
    ) -> Result<Accepted, IngestError> {
        // Mapping thousands of spans is CPU work: off the async workers.
        let mapped = tokio::task::spawn_blocking(map)
            .await
            .map_err(|error| IngestError::Internal(format!("mapping task: {error}")))?;
        let accepted = Accepted {
            rejected: mapped.rejected,
            message: mapped.error_message(what),
        };
        if !mapped.records.is_empty() {
            self.indexer.ingest(mapped.records, protocol).await?;
        }
        Ok(accepted)
    }
}
