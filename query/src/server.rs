//! The query HTTP API.
//!
//! - `GET /api/v1/flows?limit=N`: recent flows, newest activity first
//! - `GET /api/v1/flows/{correlation_id}`: one flow as a causal tree
//! - `GET /api/v1/traces/{trace_id}`: the records of one trace
//! - `GET /api/v1/search?q=...&limit=N`: tantivy query syntax, newest first
//! - `GET /healthz`
//!
//! Index work is blocking and runs on the blocking pool. The index is
//! opened lazily, so query may start before the collector created it.

use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::routing::get;
use causeway_index::{RecordIndex, RecordReader};
use causeway_model::{FlowDetail, FlowsPage, SearchHits, TraceId, TraceRecords};
use serde::Deserialize;
use tokio::net::TcpListener;

use crate::config::QueryConfig;
use crate::error::QueryError;
use crate::flow::reconstruct;

/// Shared state of the API: the config and the (lazily opened) reader.
#[derive(Debug, Clone)]
pub struct QueryState {
    config: Arc<QueryConfig>,
    reader: Arc<Mutex<Option<RecordReader>>>,
}

impl QueryState {
    pub fn new(config: QueryConfig) -> Self {
        Self {
            config: Arc::new(config),
            reader: Arc::new(Mutex::new(None)),
        }
    }

    fn index_dir(&self) -> PathBuf {
        self.config.index_dir()
    }

    /// The reader, opening the index on first use. Blocking.
    fn reader(&self) -> Result<RecordReader, QueryError> {
        let mut slot = self
            .reader
            .lock()
            .map_err(|_| QueryError::Internal("reader lock poisoned".into()))?;
        if let Some(reader) = slot.as_ref() {
            return Ok(reader.clone());
        }
        let reader = RecordIndex::open_existing(&self.index_dir())?.reader()?;
        *slot = Some(reader.clone());
        Ok(reader)
    }

    /// Runs `f` with the reader on the blocking pool.
    async fn with_reader<T: Send + 'static>(
        &self,
        f: impl FnOnce(&RecordReader, &QueryConfig) -> Result<T, QueryError> + Send + 'static,
    ) -> Result<T, QueryError> {
        let state = self.clone();
        tokio::task::spawn_blocking(move || {
            let reader = state.reader()?;
            f(&reader, &state.config)
        })
        .await
        .map_err(|e| QueryError::Internal(format!("query task: {e}")))?
    }
}

/// The API app.
pub fn router(state: QueryState) -> Router {
    Router::new()
        .route("/api/v1/flows", get(list_flows))
        .route("/api/v1/flows/{correlation_id}", get(get_flow))
        .route("/api/v1/traces/{trace_id}", get(get_trace))
        .route("/api/v1/search", get(search))
        .route("/healthz", get(healthz))
        .fallback(|| async { QueryError::NotFound("no such endpoint".into()) })
        .with_state(state)
}

#[derive(Debug, Deserialize)]
struct LimitParams {
    limit: Option<usize>,
}

async fn list_flows(
    State(state): State<QueryState>,
    Query(params): Query<LimitParams>,
) -> Result<Json<FlowsPage>, QueryError> {
    let page = state
        .with_reader(move |reader, config| {
            let limit = params.limit.unwrap_or(50).min(config.max_flows);
            let flows = reader
                .recent_flows(limit)?
                .into_iter()
                .map(|hit| {
                    let records = reader.flow_records(&hit.key, config.max_flow_records)?;
                    Ok(reconstruct(&hit.key, records).summary)
                })
                .collect::<Result<Vec<_>, QueryError>>()?;
            Ok(FlowsPage { flows })
        })
        .await?;
    Ok(Json(page))
}

async fn get_flow(
    State(state): State<QueryState>,
    Path(correlation_id): Path<String>,
) -> Result<Json<FlowDetail>, QueryError> {
    let flow = state
        .with_reader(move |reader, config| {
            let records = reader.flow_records(&correlation_id, config.max_flow_records)?;
            if records.is_empty() {
                return Err(QueryError::NotFound(format!(
                    "no flow with correlation id {:?}",
                    correlation_id.chars().take(128).collect::<String>()
                )));
            }
            Ok(reconstruct(&correlation_id, records))
        })
        .await?;
    Ok(Json(flow))
}

async fn get_trace(
    State(state): State<QueryState>,
    Path(trace_id): Path<String>,
) -> Result<Json<TraceRecords>, QueryError> {
    let trace_id: TraceId = trace_id
        .parse()
        .map_err(|e| QueryError::BadRequest(format!("invalid trace id: {e}")))?;
    let records = state
        .with_reader(move |reader, config| {
            Ok(reader.trace_records(trace_id, config.max_flow_records)?)
        })
        .await?;
    if records.is_empty() {
        return Err(QueryError::NotFound(format!("no trace with id {trace_id}")));
    }
    Ok(Json(TraceRecords { trace_id, records }))
}

#[derive(Debug, Deserialize)]
struct SearchParams {
    #[serde(default)]
    q: String,
    limit: Option<usize>,
}

async fn search(
    State(state): State<QueryState>,
    Query(params): Query<SearchParams>,
) -> Result<Json<SearchHits>, QueryError> {
    let hits = state
        .with_reader(move |reader, config| {
            let limit = params.limit.unwrap_or(100).min(config.max_search_hits);
            let (total, hits) = reader.search(&params.q, limit)?;
            Ok(SearchHits {
                query: params.q,
                total,
                hits,
            })
        })
        .await?;
    Ok(Json(hits))
}

async fn healthz(State(state): State<QueryState>) -> Json<serde_json::Value> {
    let ready = state.with_reader(|_, _| Ok(())).await.is_ok();
    Json(serde_json::json!({
        "status": "ok",
        "index": if ready { "ready" } else { "waiting for the collector" },
    }))
}

/// Serves the query API on `listener` until `shutdown` completes.
pub async fn run(
    listener: TcpListener,
    config: QueryConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), QueryError> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, index = %config.index_dir().display(), "query listening");
    }
    axum::serve(listener, router(QueryState::new(config)))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(QueryError::Serve)
}
