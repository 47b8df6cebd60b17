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
//! Every answer is bounded: a search query by length and nesting before it
//! is parsed, a response by count and by bytes (a cut one says
//! `"truncated": true`); clients by `causeway_server`'s limits.

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
use tokio::sync::Semaphore;

use crate::config::QueryConfig;
use crate::error::{QueryError, RequestError};
use crate::flow::{FlowContext, FlowSettings, reconstruct};
use crate::topology::{Contracts, Topology, TopologySettings};

/// Shared state of the API: the config and the (lazily opened) reader.
#[derive(Debug, Clone)]
pub struct QueryState {
    config: Arc<QueryConfig>,
    reader: Arc<Mutex<Option<RecordReader>>>,
    /// Index reads running or queued on the blocking pool.
    reads: Arc<Semaphore>,
    topology: Arc<Topology>,
    flow_settings: Arc<FlowSettings>,
}

impl QueryState {
    pub fn new(config: QueryConfig) -> Self {
        Self {
            reads: Arc::new(Semaphore::new(config.max_concurrent_reads.max(1))),
            config: Arc::new(config),
            reader: Arc::new(Mutex::new(None)),
            topology: Arc::new(Topology::empty(
                TopologySettings::default(),
                Contracts::default(),
            )),
            flow_settings: Arc::new(FlowSettings::default()),
        }
    }

    fn flow_context(&self) -> FlowContext<'_> {
        FlowContext {
            now: causeway_model::Timestamp::now(),
            topology: &self.topology,
            settings: &self.flow_settings,
        }
    }

    fn index_dir(&self) -> PathBuf {
        self.config.index_dir()
    }

    /// The reader, opening the index on first use. Blocking.
    fn reader(&self) -> Result<RecordReader, RequestError> {
        let mut slot = self
            .reader
            .lock()
            .map_err(|_| RequestError::Internal("reader lock poisoned".into()))?;
        if let Some(reader) = slot.as_ref() {
            return Ok(reader.clone());
        }
        let reader = RecordIndex::open_existing(&self.index_dir())?
            .reader()?
            .with_bounds(self.config.read_bounds());
        *slot = Some(reader.clone());
        Ok(reader)
    }

    /// Runs `f` with the reader on the blocking pool, if fewer than
    /// `max_concurrent_reads` reads are under way; otherwise answers 503
    /// with `Retry-After` at once, so reads never queue without bound.
    async fn with_reader<T: Send + 'static>(
        &self,
        f: impl FnOnce(&RecordReader, &QueryState) -> Result<T, RequestError> + Send + 'static,
    ) -> Result<T, RequestError> {
        let permit = self
            .reads
            .clone()
            .try_acquire_owned()
            .map_err(|_| RequestError::Busy)?;
        let state = self.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let reader = state.reader()?;
            f(&reader, &state)
        })
        .await
        .map_err(|e| RequestError::Internal(format!("query task: {e}")))?
    }

    /// Whether the index can be read; cheap once it has been opened, and
    /// never held up by reads in progress.
    async fn index_ready(&self) -> bool {
        let opened = self
            .reader
            .lock()
            .map(|slot| slot.is_some())
            .unwrap_or(false);
        if opened {
            return true;
        }
        let state = self.clone();
        tokio::task::spawn_blocking(move || state.reader().is_ok())
            .await
            .unwrap_or(false)
    }
}

/// The API app, hardened: JSON errors everywhere, panics contained,
/// request targets bounded.
pub fn router(state: QueryState) -> Router {
    let limits = state.config.http.clone();
    let app = Router::new()
        .route("/api/v1/flows", get(list_flows))
        .route("/api/v1/flows/{correlation_id}", get(get_flow))
        .route("/api/v1/traces/{trace_id}", get(get_trace))
        .route("/api/v1/search", get(search))
        .route("/healthz", get(healthz))
        .fallback(|| async { RequestError::NotFound("no such endpoint".into()) })
        .with_state(state);
    causeway_server::harden(app, &limits)
}

#[derive(Debug, Deserialize)]
struct LimitParams {
    limit: Option<usize>,
}

async fn list_flows(
    State(state): State<QueryState>,
    Query(params): Query<LimitParams>,
) -> Result<Json<FlowsPage>, RequestError> {
    let page = state
        .with_reader(move |reader, state| {
            let config = &state.config;
            let limit = params.limit.unwrap_or(50).min(config.max_flows);
            let flows = reader
                .recent_flows(limit)?
                .into_iter()
                .map(|hit| {
                    let read = reader.flow_records(&hit.key, config.max_flow_records)?;
                    Ok(reconstruct(&hit.key, read.records, state.flow_context()).summary)
                })
                .collect::<Result<Vec<_>, RequestError>>()?;
            Ok(FlowsPage {
                flows,
                next_cursor: None,
                scanned: 0,
                scan_limited: false,
            })
        })
        .await?;
    Ok(Json(page))
}

async fn get_flow(
    State(state): State<QueryState>,
    Path(correlation_id): Path<String>,
) -> Result<Json<FlowDetail>, RequestError> {
    let flow = state
        .with_reader(move |reader, state| {
            let read = reader.flow_records(&correlation_id, state.config.max_flow_records)?;
            if read.records.is_empty() {
                return Err(RequestError::NotFound(format!(
                    "no flow with correlation id {:?}",
                    causeway_model::strip_control(
                        &correlation_id.chars().take(128).collect::<String>()
                    )
                )));
            }
            let mut flow = reconstruct(&correlation_id, read.records, state.flow_context());
            flow.truncated = read.truncated;
            Ok(flow)
        })
        .await?;
    Ok(Json(flow))
}

async fn get_trace(
    State(state): State<QueryState>,
    Path(trace_id): Path<String>,
) -> Result<Json<TraceRecords>, RequestError> {
    let trace_id: TraceId = trace_id
        .parse()
        .map_err(|e| RequestError::BadRequest(format!("invalid trace id: {e}")))?;
    let read = state
        .with_reader(move |reader, state| {
            Ok(reader.trace_records(trace_id, state.config.max_flow_records)?)
        })
        .await?;
    if read.records.is_empty() {
        return Err(RequestError::NotFound(format!(
            "no trace with id {trace_id}"
        )));
    }
    Ok(Json(TraceRecords {
        trace_id,
        records: read.records,
        truncated: read.truncated,
    }))
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
) -> Result<Json<SearchHits>, RequestError> {
    let hits = state
        .with_reader(move |reader, state| {
            let limit = params
                .limit
                .unwrap_or(100)
                .min(state.config.max_search_hits);
            let (total, read) = reader.search(&params.q, limit)?;
            Ok(SearchHits {
                query: params.q,
                total,
                hits: read.records,
                truncated: read.truncated,
                histogram: Vec::new(),
            })
        })
        .await?;
    Ok(Json(hits))
}

async fn healthz(State(state): State<QueryState>) -> Json<serde_json::Value> {
    let ready = state.index_ready().await;
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
    let limits = config.http.clone();
    causeway_server::serve(listener, router(QueryState::new(config)), limits, shutdown)
        .await
        .map_err(QueryError::Serve)
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt;

    use super::*;

    #[tokio::test]
    async fn a_read_past_the_limit_is_answered_503_and_health_still_answers() {
        let dir = tempfile::tempdir().unwrap();
        let config = QueryConfig {
            max_concurrent_reads: 1,
            ..QueryConfig::new(dir.path())
        };
        RecordIndex::open_or_create(&config.index_dir()).unwrap();
        let state = QueryState::new(config);
        // The one read allowed is under way.
        let _busy = state.reads.clone().try_acquire_owned().unwrap();
        let app = router(state);
        let get = |uri: &str| Request::get(uri).body(Body::empty()).unwrap();

        let response = app
            .clone()
            .oneshot(get("/api/v1/search?q=x"))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()["retry-after"], "1");
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"]["code"], "busy");

        let response = app.oneshot(get("/healthz")).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["index"], "ready");
    }
}
