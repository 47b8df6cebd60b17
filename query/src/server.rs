//! The query HTTP API.
//!
//! - `GET /api/v1/flows`: flows newest activity first, filtered by
//!   `status`, `anomaly`, `service`, `event_type` (each comma-separated, any
//!   of), `since`, `until`, `min_duration_ms`, `q`; paged by `cursor`
//! - `GET /api/v1/flows/{correlation_id}`, `.../by-trace/{trace_id}`,
//!   `.../by-event/{event_id}`: one flow, its tree, anomalies and records
//! - `GET /api/v1/traces/{trace_id}`: the records of one trace
//! - `GET /api/v1/search`: query syntax plus field filters and a time
//!   range, with a histogram of matches per time bucket
//! - `GET /api/v1/services`, `GET /api/v1/topology`: learned and declared
//! - `GET /api/v1/tail`: server-sent events (`tail.rs`)
//! - `GET /api/v1/alerts`: the alert rules' state (`alerts.rs`)
//! - `GET /api/v1/openapi.json`: the OpenAPI document (`openapi.rs`)
//! - `GET /healthz`
//!
//! Every route is one entry of `routes()`, at the path its
//! `#[utoipa::path]` names, so a route cannot be served undocumented. Index
//! work goes through `QueryState::read` (`state.rs`); parameters are read
//! by `params.rs`. Statuses and anomalies are derived at read time from
//! each flow's digest, the topology and the clock.

use std::future::Future;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::routing::{MethodRouter, get};
use causeway_model::{
    FlowDetail, FlowsPage, SearchHits, ServicesPage, Timestamp, TraceId, TraceRecords,
};
use tokio::net::TcpListener;
use utoipa::openapi::path::{Paths, PathsBuilder};

use crate::alerts::{AlertsPage, run_alerts};
use crate::config::QueryConfig;
use crate::error::{QueryError, RequestError};
use crate::list::{decode_cursor, list_flows};
use crate::params::{FlowsParams, MAX_BUCKETS, SearchParams, record_query, time_param};
use crate::state::QueryState;

/// One route: the handler, at the path its `#[utoipa::path]` names, and
/// the operation that annotation describes.
struct Route {
    path: String,
    handler: MethodRouter<QueryState>,
    doc: Paths,
}

/// `handler` where its `#[utoipa::path]` (`P`, the struct it generates)
/// puts it.
fn route<P: utoipa::Path>(handler: MethodRouter<QueryState>) -> Route {
    Route {
        path: P::path(),
        handler,
        doc: PathsBuilder::new().path_from::<P>().build(),
    }
}

/// Every route of the API. [`router`] serves these and nothing else, and
/// the OpenAPI document lists these and nothing else, each path written
/// once, in its handler's `#[utoipa::path]`.
fn routes() -> Vec<Route> {
    use crate::openapi::{__path_openapi_json, openapi_json};
    use crate::tail::{__path_tail, tail};
    vec![
        route::<__path_get_flows>(get(get_flows)),
        route::<__path_get_flow>(get(get_flow)),
        route::<__path_get_flow_by_trace>(get(get_flow_by_trace)),
        route::<__path_get_flow_by_event>(get(get_flow_by_event)),
        route::<__path_get_trace>(get(get_trace)),
        route::<__path_search>(get(search)),
        route::<__path_get_services>(get(get_services)),
        route::<__path_get_topology>(get(get_topology)),
        route::<__path_tail>(get(tail)),
        route::<__path_get_alerts>(get(get_alerts)),
        route::<__path_openapi_json>(get(openapi_json)),
        route::<__path_healthz>(get(healthz)),
    ]
}

/// The paths [`router`] serves, for the test that holds the OpenAPI
/// document to them.
#[doc(hidden)]
pub fn route_paths() -> Vec<String> {
    routes().into_iter().map(|route| route.path).collect()
}

/// The API app, hardened: JSON errors everywhere, panics contained,
/// request targets bounded.
pub fn router(state: QueryState) -> Router {
    let limits = state.config.http.clone();
    let access = state.config.access();
    let routes = routes();
    crate::openapi::document(|| {
        let mut paths = Paths::new();
        for route in &routes {
            paths.merge(route.doc.clone());
        }
        paths
    });
    let app = routes
        .into_iter()
        .fold(Router::new(), |app, route| {
            app.route(&route.path, route.handler)
        })
        .fallback(|| async { RequestError::NotFound("no such endpoint".into()) })
        .with_state(state);
    causeway_server::authorize(causeway_server::harden(app, &limits), &access)
}

#[utoipa::path(
    get,
    path = "/api/v1/flows",
    summary = "List flows, newest activity first",
    description = "Flows from their digests, filtered (every filter given must hold; a \
        list filter matches any of its values) and paged by `cursor`. Statuses and \
        anomalies are derived as of the request.",
    params(FlowsParams),
    responses(
        (status = 200, description = "A page of flows", body = FlowsPage),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 503, response = crate::openapi::Unavailable),
        (status = 500, response = crate::openapi::Internal),
    )
)]
async fn get_flows(
    State(state): State<QueryState>,
    Query(params): Query<FlowsParams>,
) -> Result<Json<FlowsPage>, RequestError> {
    // Checked before a read is spent on them.
    let filter = params.filter(Timestamp::now())?;
    let cursor = params.cursor.as_deref().map(decode_cursor).transpose()?;
    let page = state
        .read(move |read| {
            let limit = params.limit.unwrap_or(50).min(read.config.max_flows);
            list_flows(
                read.reader,
                &filter,
                cursor,
                limit,
                read.config.max_flow_scan,
                read.context,
            )
        })
        .await?;
    Ok(Json(page))
}

fn no_flow(what: &str, id: &str) -> RequestError {
    RequestError::NotFound(format!(
        "no flow with {what} {:?}",
        causeway_model::strip_control(causeway_model::char_prefix(id, 128))
    ))
}

#[utoipa::path(
    get,
    path = "/api/v1/flows/{correlation_id}",
    summary = "One flow by its key",
    description = "The flow's causal tree, anomalies, clock corrections and records.",
    params(("correlation_id" = String, Path,
        description = "The flow's key: its correlation id, or the trace id of a flow without one")),
    responses(
        (status = 200, description = "The flow", body = FlowDetail),
        (status = 404, response = crate::openapi::NotFound),
        (status = 503, response = crate::openapi::Unavailable),
        (status = 500, response = crate::openapi::Internal),
    )
)]
async fn get_flow(
    State(state): State<QueryState>,
    Path(correlation_id): Path<String>,
) -> Result<Json<FlowDetail>, RequestError> {
    let flow = state
        .read(move |read| {
            read.flow(&correlation_id)?
                .ok_or_else(|| no_flow("correlation id", &correlation_id))
        })
        .await?;
    Ok(Json(flow))
}

#[utoipa::path(
    get,
    path = "/api/v1/flows/by-trace/{trace_id}",
    summary = "The flow a trace belongs to",
    params(("trace_id" = TraceId, Path, description = "A W3C trace id")),
    responses(
        (status = 200, description = "The flow", body = FlowDetail),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 404, response = crate::openapi::NotFound),
        (status = 503, response = crate::openapi::Unavailable),
        (status = 500, response = crate::openapi::Internal),
    )
)]
async fn get_flow_by_trace(
    State(state): State<QueryState>,
    Path(trace_id): Path<String>,
) -> Result<Json<FlowDetail>, RequestError> {
    let trace: TraceId = trace_id
        .parse()
        .map_err(|e| RequestError::BadRequest(format!("invalid trace id: {e}")))?;
    let flow = state
        .read(move |read| {
            let key = read.reader.flow_key_of_trace(trace)?;
            key.map(|key| read.flow(&key))
                .transpose()?
                .flatten()
                .ok_or_else(|| no_flow("trace id", &trace_id))
        })
        .await?;
    Ok(Json(flow))
}

#[utoipa::path(
    get,
    path = "/api/v1/flows/by-event/{event_id}",
    summary = "The flow an event belongs to",
    params(("event_id" = causeway_model::EventId, Path, description = "An event id")),
    responses(
        (status = 200, description = "The flow", body = FlowDetail),
        (status = 404, response = crate::openapi::NotFound),
        (status = 503, response = crate::openapi::Unavailable),
        (status = 500, response = crate::openapi::Internal),
    )
)]
async fn get_flow_by_event(
    State(state): State<QueryState>,
    Path(event_id): Path<String>,
) -> Result<Json<FlowDetail>, RequestError> {
    let flow = state
        .read(move |read| {
            let key = read.reader.flow_key_of_event(&event_id)?;
            key.map(|key| read.flow(&key))
                .transpose()?
                .flatten()
                .ok_or_else(|| no_flow("event id", &event_id))
        })
        .await?;
    Ok(Json(flow))
}

#[utoipa::path(
    get,
    path = "/api/v1/traces/{trace_id}",
    summary = "The records of one trace, oldest first",
    params(("trace_id" = TraceId, Path, description = "A W3C trace id")),
    responses(
        (status = 200, description = "The trace's records", body = TraceRecords),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 404, response = crate::openapi::NotFound),
        (status = 503, response = crate::openapi::Unavailable),
        (status = 500, response = crate::openapi::Internal),
    )
)]
async fn get_trace(
    State(state): State<QueryState>,
    Path(trace_id): Path<String>,
) -> Result<Json<TraceRecords>, RequestError> {
    let trace_id: TraceId = trace_id
        .parse()
        .map_err(|e| RequestError::BadRequest(format!("invalid trace id: {e}")))?;
    let read = state
        .read(move |read| {
            Ok(read
                .reader
                .trace_records(trace_id, read.config.max_flow_records)?)
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

#[utoipa::path(
    get,
    path = "/api/v1/search",
    summary = "Search records",
    description = "The best matches, newest first, with the total count and, when a time \
        range is given, a histogram of matches per time bucket.",
    params(SearchParams),
    responses(
        (status = 200, description = "The matching records", body = SearchHits),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 503, response = crate::openapi::Unavailable),
        (status = 500, response = crate::openapi::Internal),
    )
)]
async fn search(
    State(state): State<QueryState>,
    Query(params): Query<SearchParams>,
) -> Result<Json<SearchHits>, RequestError> {
    let now = Timestamp::now();
    let since = time_param("since", params.since.as_deref(), now)?;
    let until = time_param("until", params.until.as_deref(), now)?;
    let query = record_query(
        &params.q,
        &[
            ("service", params.service.as_deref()),
            ("event_type", params.event_type.as_deref()),
            ("stage", params.stage.as_deref()),
            ("level", params.level.as_deref()),
        ],
    )?;
    let buckets = match (params.buckets, since) {
        (Some(n), _) => n.min(MAX_BUCKETS),
        (None, Some(_)) => 60,
        (None, None) => 0,
    };
    let hits = state
        .read(move |read| {
            let limit = params.limit.unwrap_or(100).min(read.config.max_search_hits);
            let since_us = since.map(Timestamp::as_micros);
            let until_us = until.map(Timestamp::as_micros);
            let (total, found) = read
                .reader
                .search_in_range(&query, since_us, until_us, limit)?;
            let histogram = if buckets > 0 {
                let start = since_us.unwrap_or_else(|| now.as_micros() - 3_600_000_000);
                let end = until_us.unwrap_or_else(|| now.as_micros());
                read.reader
                    .histogram(&query, start, end, buckets)?
                    .into_iter()
                    .map(|(start, count)| causeway_model::HistogramBucket {
                        start: Timestamp::from_micros(start),
                        count,
                    })
                    .collect()
            } else {
                Vec::new()
            };
            Ok(SearchHits {
                query: params.q,
                total,
                hits: found.records,
                truncated: found.truncated,
                histogram,
            })
        })
        .await?;
    Ok(Json(hits))
}

#[utoipa::path(
    get,
    path = "/api/v1/services",
    summary = "Every service, what it publishes and consumes",
    description = "Learned from the flows of the recent window and the declared contracts.",
    responses(
        (status = 200, description = "The services", body = ServicesPage),
        (status = 503, response = crate::openapi::Unavailable),
        (status = 500, response = crate::openapi::Internal),
    )
)]
async fn get_services(State(state): State<QueryState>) -> Result<Json<ServicesPage>, RequestError> {
    let page = state
        .read(|read| Ok(read.context.topology.services()))
        .await?;
    Ok(Json(page))
}

#[utoipa::path(
    get,
    path = "/api/v1/topology",
    summary = "What publishes and consumes each event type, and how each edge behaves",
    description = "Learned from the flows of the recent window and overridden by the \
        declared contracts.",
    responses(
        (status = 200, description = "The topology", body = causeway_model::TopologyPage),
        (status = 503, response = crate::openapi::Unavailable),
        (status = 500, response = crate::openapi::Internal),
    )
)]
async fn get_topology(
    State(state): State<QueryState>,
) -> Result<Json<causeway_model::TopologyPage>, RequestError> {
    let page = state.read(|read| Ok(read.context.topology.page())).await?;
    Ok(Json(page))
}

#[utoipa::path(
    get,
    path = "/api/v1/alerts",
    summary = "Every alert rule and its state, in config order",
    responses((status = 200, description = "The alert rules", body = AlertsPage))
)]
async fn get_alerts(State(state): State<QueryState>) -> Json<AlertsPage> {
    Json(state.alerts.list())
}

#[utoipa::path(
    get,
    path = "/healthz",
    summary = "Liveness, and whether the index can be read yet",
    responses((status = 200, description = "The daemon is up", body = crate::openapi::Health))
)]
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
        tracing::info!(%addr, "query listening");
    }
    let limits = config.http.clone();
    let listener = causeway_server::Listener::new(listener, config.tls());
    config.alerts.check().map_err(QueryError::Alerts)?;
    let alerts_config = config.alerts.clone();
    let state = QueryState::load(config)?;
    let (stop_alerts, alerts_stopped) = tokio::sync::oneshot::channel::<()>();
    let alerts = tokio::spawn(run_alerts(
        alerts_config,
        state.alerts.clone(),
        {
            let state = state.clone();
            move |now, window| {
                let state = state.clone();
                async move { state.alert_snapshot(now, window).await }
            }
        },
        async {
            let _ = alerts_stopped.await;
        },
    ));
    let served = causeway_server::serve(listener, router(state), limits, shutdown).await;
    let _ = stop_alerts.send(());
    let _ = alerts.await;
    served.map_err(QueryError::Serve)
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use causeway_index::RecordIndex;
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
