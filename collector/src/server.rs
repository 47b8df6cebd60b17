//! The collector's surface: on the HTTP listener `POST /v1/ingest` (NDJSON
//! wire batch), OTLP/HTTP `POST /v1/traces` and `POST /v1/logs`, and
//! `GET /healthz`; on the gRPC listener, OTLP/gRPC (`otlp`).
//!
//! Ingest answers 200 only once the batch is durable; 400 for a batch that
//! cannot be read as a whole (bad header, wrong version, truncated), 413
//! for an oversized body (a `Content-Encoding: gzip` body is inflated up to
//! the same limit; another encoding is 415), 503 with `Retry-After` when the indexer queue is
//! full. Bad lines inside a good batch are kept as malformed records. The
//! OTLP routes answer as the OTLP specification says (`otlp/http.rs`).

use std::future::Future;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use causeway_model::Timestamp;
use causeway_model::wire::{self, BatchError};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::CollectorConfig;
use crate::error::{CollectorError, IngestError};
use crate::indexer::{Batch, Indexer, Origins};
use crate::metrics::Protocol;
use crate::otlp::{self, Otlp};

/// The body of a successful ingest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngestReply {
    /// Records made durable, malformed ones included.
    pub accepted: usize,
    /// How many of them were kept as malformed.
    pub malformed: usize,
    /// The body's line numbers (from 1, the header's line included) of
    /// the malformed ones.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub malformed_lines: Vec<usize>,
}

/// The HTTP app over a running indexer, hardened: JSON errors everywhere,
/// panics contained, bodies and request targets bounded.
pub fn router(indexer: Indexer, config: &CollectorConfig) -> Router {
    let otlp_routes = Router::new()
        .route("/v1/traces", post(otlp::http_traces))
        .route("/v1/logs", post(otlp::http_logs))
        .with_state(Otlp::new(indexer.clone(), config));
    let app = Router::new()
        .route("/v1/ingest", post(ingest))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(IngestState {
            indexer,
            max_batch_records: config.max_batch_records,
            max_body_bytes: config.max_body_bytes,
        })
        .merge(otlp_routes)
        .layer(DefaultBodyLimit::max(config.max_body_bytes));
    causeway_server::authorize(causeway_server::harden(app, &config.http), &config.access())
}

/// The OTLP/gRPC app (`TraceService`, `LogsService`) over a running
/// indexer, for the gRPC listener.
pub fn grpc_router(indexer: Indexer, config: &CollectorConfig) -> Router {
    causeway_server::authorize(
        otlp::grpc_router(Otlp::new(indexer, config)),
        &config.access(),
    )
}

/// The listeners the collector serves: HTTP (native batches, OTLP/HTTP)
/// and, when given, gRPC (OTLP/gRPC). A lone `TcpListener` is HTTP only.
#[derive(Debug)]
pub struct Listeners {
    pub http: TcpListener,
    pub grpc: Option<TcpListener>,
}

impl From<TcpListener> for Listeners {
    fn from(http: TcpListener) -> Self {
        Self { http, grpc: None }
    }
}

/// What the ingest handler needs.
#[derive(Debug, Clone)]
struct IngestState {
    indexer: Indexer,
    max_batch_records: usize,
    max_body_bytes: usize,
}

async fn ingest(
    State(IngestState {
        indexer,
        max_batch_records,
        max_body_bytes,
    }): State<IngestState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, IngestError> {
    let gzip = match headers.get(header::CONTENT_ENCODING).map(|v| v.to_str()) {
        None => false,
        Some(Ok(encoding)) if encoding.trim().eq_ignore_ascii_case("gzip") => true,
        Some(Ok(encoding)) if encoding.trim().eq_ignore_ascii_case("identity") => false,
        Some(_) => {
            return Ok(causeway_server::error_response(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_encoding",
                "Content-Encoding must be gzip or identity",
            ));
        }
    };
    // The queue's budget is taken for what the body will come to hold
    // before anything is decoded: past it, 429 at no cost.
    let mut reserved = indexer.reserve(body.len())?;
    // Inflating and decoding a 16 MiB body is CPU work: off the async
    // workers.
    let grower = indexer.clone();
    let decoded = tokio::task::spawn_blocking(move || {
        let body = if gzip {
            match otlp::gunzip(&body, max_body_bytes) {
                Ok(inflated) => {
                    grower.grow(&mut reserved, inflated.len().saturating_sub(body.len()))?;
                    Bytes::from(inflated)
                }
                Err(otlp::DecodeError::TooLarge(reason)) => {
                    return Err(IngestError::TooLarge(reason));
                }
                Err(otlp::DecodeError::Bad(reason)) => return Err(IngestError::BadBatch(reason)),
            }
        } else {
            body
        };
        // Invalid UTF-8 is replaced rather than refused, so the line
        // survives as text (and, failing to parse, as a malformed record).
        let text = String::from_utf8_lossy(&body);
        let decoded = wire::decode_numbered(&text, Timestamp::now(), max_batch_records);
        drop(text);
        decoded
            .map(|decoded| (decoded, reserved, body))
            .map_err(|error| match error {
                BatchError::TooManyRecords { .. } => IngestError::TooLarge(error.to_string()),
                other => IngestError::BadBatch(other.to_string()),
            })
    })
    .await
    .map_err(|error| IngestError::Internal(format!("decoding task: {error}")))?;
    let (
        wire::Decoded {
            header,
            records,
            malformed_lines,
        },
        reserved,
        body,
    ) = decoded.inspect_err(|error| {
        // A refusal of the budget is counted where it is made.
        if !matches!(error, IngestError::Overloaded) {
            indexer.rejected(error.code());
        }
    })?;
    let reply = IngestReply {
        accepted: records.len(),
        malformed: malformed_lines.len(),
        malformed_lines,
    };
    let origins = Origins {
        streams: header.streams,
        positions: header.positions,
        hashes: Vec::new(),
    };
    indexer
        .ingest_wire(
            Batch { records, origins },
            &body,
            Protocol::Causeway,
            reserved,
        )
        .await?;
    Ok(Json(reply).into_response())
}

/// 200 once the write-ahead log is indexed past the last commit and while
/// the index writer is usable; 503 with `Retry-After` until then.
async fn readyz(State(state): State<IngestState>) -> Response {
    if state.indexer.is_ready() {
        Json(serde_json::json!({ "status": "ready" })).into_response()
    } else {
        causeway_server::error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "replaying the write-ahead log into the index, or the index cannot be written",
        )
    }
}

/// The collector's metrics in Prometheus text format.
async fn metrics(State(state): State<IngestState>) -> Result<Response, IngestError> {
    let text = tokio::task::spawn_blocking(move || state.indexer.render_metrics())
        .await
        .map_err(|error| IngestError::Internal(format!("metrics task: {error}")))?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// Serves the collector on `listeners` until `shutdown` completes, then
/// commits what is pending and returns.
pub async fn run(
    listeners: impl Into<Listeners>,
    config: CollectorConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), CollectorError> {
    let Listeners { http, grpc } = listeners.into();
    let (indexer, thread) = Indexer::start(&config)?;
    let app = router(indexer.clone(), &config);
    if let Ok(addr) = http.local_addr() {
        tracing::info!(%addr, index = %config.index_dir().display(), "collector listening");
    }
    // The two listeners stop together: whichever ends first (shutdown, or
    // an error) ends the other.
    let (stop, stopped) = watch::channel(false);
    let grpc_task = grpc.map(|listener| {
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(%addr, "collector OTLP/gRPC listening");
        }
        let app = grpc_router(indexer.clone(), &config);
        let listener = causeway_server::Listener::new(listener, config.tls());
        let serving =
            causeway_server::serve(listener, app, config.http.clone(), stop_on(stopped.clone()));
        tokio::spawn(serving)
    });
    drop(indexer);
    let http_stopped = stop_on(stopped);
    let shutdown = async move {
        tokio::select! {
            () = shutdown => {}
            () = http_stopped => {}
        }
    };
    let http = causeway_server::Listener::new(http, config.tls());
    let mut served = causeway_server::serve(http, app, config.http.clone(), shutdown)
        .await
        .map_err(CollectorError::Serve);
    let _ = stop.send(true);
    if let Some(task) = grpc_task {
        let grpc_served = match task.await {
            Ok(result) => result.map_err(CollectorError::Serve),
            Err(error) => Err(CollectorError::Serve(std::io::Error::other(error))),
        };
        served = served.and(grpc_served);
    }
    // The router (and with it the last Indexer) is gone: the thread makes its
    // final commit and exits.
    tokio::task::spawn_blocking(move || thread.join())
        .await
        .ok();
    served
}

/// Completes once `stop` says so (or its sender is gone).
async fn stop_on(mut stopped: watch::Receiver<bool>) {
    let _ = stopped.wait_for(|stop| *stop).await;
}
