//! The collector's HTTP surface: `POST /v1/ingest` (NDJSON wire batch) and
//! `GET /healthz`.
//!
//! Ingest answers 200 only once the batch is durable; 400 for a batch that
//! cannot be read as a whole (bad header, wrong version, truncated), 413
//! for an oversized body, 503 with `Retry-After` when the indexer queue is
//! full. Bad lines inside a good batch are kept as malformed records.

use std::future::Future;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::routing::{get, post};
use causeway_model::Timestamp;
use causeway_model::wire::{self, BatchError};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;

use crate::config::CollectorConfig;
use crate::error::{CollectorError, IngestError};
use crate::indexer::Indexer;

/// The body of a successful ingest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngestReply {
    /// Records made durable, malformed ones included.
    pub accepted: usize,
    /// How many of them were kept as malformed.
    pub malformed: usize,
}

/// The HTTP app over a running indexer, hardened: JSON errors everywhere,
/// panics contained, bodies and request targets bounded.
pub fn router(indexer: Indexer, config: &CollectorConfig) -> Router {
    let app = Router::new()
        .route("/v1/ingest", post(ingest))
        .route("/healthz", get(healthz))
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .with_state(IngestState {
            indexer,
            max_batch_records: config.max_batch_records,
        });
    causeway_server::harden(app, &config.http)
}

/// What the ingest handler needs.
#[derive(Debug, Clone)]
struct IngestState {
    indexer: Indexer,
    max_batch_records: usize,
}

async fn ingest(
    State(IngestState {
        indexer,
        max_batch_records,
    }): State<IngestState>,
    body: Bytes,
) -> Result<Json<IngestReply>, IngestError> {
    // Decoding a 16 MiB body is CPU work: off the async workers.
    let decoded = tokio::task::spawn_blocking(move || {
        // Invalid UTF-8 is replaced rather than refused, so the line
        // survives as text (and, failing to parse, as a malformed record).
        let text = String::from_utf8_lossy(&body);
        wire::decode_at_most(&text, Timestamp::now(), max_batch_records)
    })
    .await
    .map_err(|error| IngestError::Internal(format!("decoding task: {error}")))?;
    let (_, records) = decoded.map_err(|error| match error {
        BatchError::TooManyRecords { .. } => IngestError::TooLarge(error.to_string()),
        other => IngestError::BadBatch(other.to_string()),
    })?;
    let reply = IngestReply {
        accepted: records.len(),
        malformed: records.iter().filter(|r| r.malformed.is_some()).count(),
    };
    indexer.ingest(records).await?;
    Ok(Json(reply))
}

async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// Serves the collector on `listener` until `shutdown` completes, then
/// commits what is pending and returns.
pub async fn run(
    listener: TcpListener,
    config: CollectorConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), CollectorError> {
    let (indexer, thread) = Indexer::start(&config)?;
    let app = router(indexer, &config);
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, index = %config.index_dir().display(), "collector listening");
    }
    let served = causeway_server::serve(listener, app, config.http.clone(), shutdown)
        .await
        .map_err(CollectorError::Serve);
    // The router (and with it the last Indexer) is gone: the thread makes its
    // final commit and exits.
    tokio::task::spawn_blocking(move || thread.join())
        .await
        .ok();
    served
}
