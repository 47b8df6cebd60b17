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
//! - `GET /healthz`
//!
//! Index work is blocking and runs on the blocking pool, at most
//! `max_concurrent_reads` at once. The index is opened lazily, so query may
//! start before the collector created it. Statuses and anomalies are
//! derived at read time from each flow's digest, the topology and the
//! clock; the topology is learned again from the digests of the recent
//! window when it is older than `topology_refresh_ms`.

use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::routing::get;
use causeway_index::{DigestFilter, RecordIndex, RecordReader, RecordsRead};
use causeway_model::{
    AnomalyKind, FlowDetail, FlowStatus, FlowsPage, SearchHits, ServicesPage, Timestamp, TraceId,
    TraceRecords,
};
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::alerts::{Alerts, AlertsPage, run_alerts};
use crate::config::QueryConfig;
use crate::error::{QueryError, RequestError};
use crate::flow::{FlowContext, FlowSettings, analyze, detail, sort_records};
use crate::list::{FlowFilter, decode_cursor, list_flows};
use crate::topology::{Contracts, Topology};

/// A topology and when it was learned.
type Learned = (Instant, Arc<Topology>);

/// Shared state of the API: the config, the (lazily opened) reader and
/// the topology learned last.
#[derive(Debug, Clone)]
pub struct QueryState {
    config: Arc<QueryConfig>,
    reader: Arc<Mutex<Option<RecordReader>>>,
    /// Index reads running or queued on the blocking pool.
    reads: Arc<Semaphore>,
    contracts: Arc<Contracts>,
    topology: Arc<Mutex<Option<Learned>>>,
    /// Held while one read learns the topology again, so others go on
    /// with the previous one instead of learning it too.
    learning: Arc<Mutex<()>>,
    flow_settings: Arc<FlowSettings>,
    /// The alert rules' state, kept by `run_alerts`.
    alerts: Alerts,
}

impl QueryState {
    /// The state of `config`, with no declared contracts.
    pub fn new(config: QueryConfig) -> Self {
        Self {
            reads: Arc::new(Semaphore::new(config.max_concurrent_reads.max(1))),
            reader: Arc::new(Mutex::new(None)),
            contracts: Arc::new(Contracts::default()),
            topology: Arc::new(Mutex::new(None)),
            learning: Arc::new(Mutex::new(())),
            flow_settings: Arc::new(config.flow_settings()),
            alerts: Alerts::new(&config.alerts),
            config: Arc::new(config),
        }
    }

    /// The state of `config`, with the contracts of its `contracts_file`.
    pub fn load(config: QueryConfig) -> Result<Self, QueryError> {
        let contracts = match &config.contracts_file {
            Some(path) => Contracts::load(path)?,
            None => Contracts::default(),
        };
        Ok(Self::new(config).with_contracts(contracts))
    }

    /// The same state with these declared contracts.
    pub fn with_contracts(mut self, contracts: Contracts) -> Self {
        self.contracts = Arc::new(contracts);
        self.topology = Arc::new(Mutex::new(None));
        self
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

    /// The topology, learned again from the recent flows when it is older
    /// than the refresh interval. Blocking.
    fn topology(
        &self,
        reader: &RecordReader,
        now: Timestamp,
    ) -> Result<Arc<Topology>, RequestError> {
        let refresh = Duration::from_millis(self.config.topology_refresh_ms);
        let current = self
            .topology
            .lock()
            .map_err(|_| RequestError::Internal("topology lock poisoned".into()))?
            .clone();
        if let Some((learned_at, topology)) = &current
            && learned_at.elapsed() < refresh
        {
            return Ok(topology.clone());
        }
        // Someone else is learning it: go on with the previous one.
        let Ok(_learning) = self.learning.try_lock() else {
            if let Some((_, topology)) = current {
                return Ok(topology);
            }
            let _wait = self
                .learning
                .lock()
                .map_err(|_| RequestError::Internal("topology lock poisoned".into()))?;
            return self.topology(reader, now);
        };
        let window = i64::try_from(self.config.topology_window_secs)
            .unwrap_or(i64::MAX)
            .saturating_mul(1_000_000);
        let filter = DigestFilter {
            active_since_us: Some(now.as_micros().saturating_sub(window)),
            ..DigestFilter::default()
        };
        let digests = reader.flow_digests(&filter, None, self.config.topology_max_flows)?;
        let topology = Arc::new(Topology::learn(
            self.config.topology_settings(),
            (*self.contracts).clone(),
            &digests,
        ));
        *self
            .topology
            .lock()
            .map_err(|_| RequestError::Internal("topology lock poisoned".into()))? =
            Some((Instant::now(), topology.clone()));
        Ok(topology)
    }

    /// Runs `f` with a read context on the blocking pool, if fewer than
    /// `max_concurrent_reads` reads are under way; otherwise answers 503
    /// with `Retry-After` at once, so reads never queue without bound.
    pub(crate) async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Read<'_>) -> Result<T, RequestError> + Send + 'static,
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
            let now = Timestamp::now();
            let topology = state.topology(&reader, now)?;
            f(&Read {
                reader: &reader,
                config: &state.config,
                context: FlowContext {
                    now,
                    topology: &topology,
                    settings: &state.flow_settings,
                },
            })
        })
        .await
        .map_err(|e| RequestError::Internal(format!("query task: {e}")))?
    }

    /// The flows active within `window` before `now`, analyzed as of the
    /// read, for the alert rules: the newest `max_flow_scan` of them.
    async fn alert_snapshot(
        &self,
        now: Timestamp,
        window: Duration,
    ) -> Result<Vec<causeway_model::FlowSummary>, String> {
        let window_us = i64::try_from(window.as_micros()).unwrap_or(i64::MAX);
        let filter = FlowFilter {
            since: Some(Timestamp::from_micros(
                now.as_micros().saturating_sub(window_us),
            )),
            ..FlowFilter::default()
        };
        let page = self
            .read(move |read| {
                let most = read.config.max_flow_scan;
                list_flows(read.reader, &filter, None, most, most, read.context)
            })
            .await
            .map_err(|error| error.to_string())?;
        if page.scan_limited || page.next_cursor.is_some() {
            tracing::warn!(
                flows = page.flows.len(),
                "alert rules saw only the newest flows of their window"
            );
        }
        Ok(page.flows)
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

/// What a read has at hand.
pub(crate) struct Read<'a> {
    pub(crate) reader: &'a RecordReader,
    pub(crate) config: &'a QueryConfig,
    pub(crate) context: FlowContext<'a>,
}

impl Read<'_> {
    /// The flow `key` from its digest and its newest records.
    fn flow(&self, key: &str) -> Result<Option<FlowDetail>, RequestError> {
        let Some(digest) = self.reader.flow_digest(key)? else {
            return Ok(None);
        };
        let RecordsRead {
            mut records,
            truncated,
        } = self
            .reader
            .records_newest(key, self.config.max_flow_records)?;
        sort_records(&mut records);
        Ok(Some(detail(
            analyze(&digest, self.context),
            records,
            truncated,
        )))
    }
}

/// The API app, hardened: JSON errors everywhere, panics contained,
/// request targets bounded.
pub fn router(state: QueryState) -> Router {
    let limits = state.config.http.clone();
    let app = Router::new()
        .route("/api/v1/flows", get(get_flows))
        .route("/api/v1/flows/{correlation_id}", get(get_flow))
        .route("/api/v1/flows/by-trace/{trace_id}", get(get_flow_by_trace))
        .route("/api/v1/flows/by-event/{event_id}", get(get_flow_by_event))
        .route("/api/v1/traces/{trace_id}", get(get_trace))
        .route("/api/v1/search", get(search))
        .route("/api/v1/services", get(get_services))
        .route("/api/v1/topology", get(get_topology))
        .route("/api/v1/tail", get(crate::tail::tail))
        .route("/api/v1/alerts", get(get_alerts))
        .route("/healthz", get(healthz))
        .fallback(|| async { RequestError::NotFound("no such endpoint".into()) })
        .with_state(state);
    causeway_server::harden(app, &limits)
}

/// A comma-separated list parameter, each item read by `parse`.
fn list_param<T>(
    name: &str,
    value: Option<&str>,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<Vec<T>, RequestError> {
    let Some(value) = value else {
        return Ok(Vec::new());
    };
    value
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(|item| {
            parse(item).ok_or_else(|| {
                RequestError::BadRequest(format!(
                    "unknown {name} {:?}",
                    causeway_model::char_prefix(&causeway_model::strip_control(item), 64)
                ))
            })
        })
        .collect()
}

/// A time parameter: RFC 3339, or a span before now (`90s`, `15m`, `2h`,
/// `7d`).
fn time_param(
    name: &str,
    value: Option<&str>,
    now: Timestamp,
) -> Result<Option<Timestamp>, RequestError> {
    let Some(value) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    if let Ok(t) = value.parse::<Timestamp>() {
        return Ok(Some(t));
    }
    let bad = || {
        RequestError::BadRequest(format!(
            "{name} must be an RFC 3339 time or a span before now such as 15m"
        ))
    };
    let (number, unit) = value.split_at(value.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?);
    let n: i64 = number.parse().map_err(|_| bad())?;
    let unit_us: i64 = match unit {
        "ms" => 1_000,
        "s" => 1_000_000,
        "m" => 60_000_000,
        "h" => 3_600_000_000,
        "d" => 86_400_000_000,
        _ => return Err(bad()),
    };
    let span = n.checked_mul(unit_us).ok_or_else(bad)?;
    Ok(Some(Timestamp::from_micros(
        now.as_micros().saturating_sub(span),
    )))
}

/// The filters of `GET /api/v1/tail`: the flow list's, and `q` for the
/// records sent.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct TailParams {
    status: Option<String>,
    anomaly: Option<String>,
    service: Option<String>,
    event_type: Option<String>,
    q: Option<String>,
}

impl TailParams {
    /// The filter of the flows sent.
    pub(crate) fn filter(&self, now: Timestamp) -> Result<FlowFilter, RequestError> {
        FlowsParams {
            status: self.status.clone(),
            anomaly: self.anomaly.clone(),
            service: self.service.clone(),
            event_type: self.event_type.clone(),
            ..FlowsParams::default()
        }
        .filter(now)
    }

    /// The search the records sent must match.
    pub(crate) fn record_query(&self) -> String {
        record_query(
            self.q.as_deref().unwrap_or_default(),
            &[
                ("service", self.service.as_deref()),
                ("event_type", self.event_type.as_deref()),
            ],
        )
        .unwrap_or_default()
    }
}

/// The user's query and the field filters, as one query string.
fn record_query(q: &str, fields: &[(&str, Option<&str>)]) -> Result<String, RequestError> {
    let mut clauses = Vec::new();
    if !q.trim().is_empty() && q.trim() != "*" {
        clauses.push(format!("({q})"));
    }
    for (field, value) in fields {
        clauses.extend(field_clause(field, *value)?);
    }
    Ok(clauses.join(" AND "))
}

#[derive(Debug, Default, Deserialize)]
struct FlowsParams {
    limit: Option<usize>,
    cursor: Option<String>,
    status: Option<String>,
    anomaly: Option<String>,
    service: Option<String>,
    event_type: Option<String>,
    since: Option<String>,
    until: Option<String>,
    min_duration_ms: Option<u64>,
    q: Option<String>,
}

impl FlowsParams {
    fn filter(&self, now: Timestamp) -> Result<FlowFilter, RequestError> {
        let names =
            |value: &Option<String>| list_param("name", value.as_deref(), |s| Some(s.to_owned()));
        Ok(FlowFilter {
            statuses: list_param("status", self.status.as_deref(), FlowStatus::from_name)?,
            anomalies: list_param("anomaly", self.anomaly.as_deref(), AnomalyKind::from_name)?,
            services: names(&self.service)?,
            event_types: names(&self.event_type)?,
            since: time_param("since", self.since.as_deref(), now)?,
            until: time_param("until", self.until.as_deref(), now)?,
            min_duration_us: self.min_duration_ms.map(|ms| ms.saturating_mul(1_000)),
            q: self.q.clone().filter(|q| !q.trim().is_empty()),
        })
    }
}

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

#[derive(Debug, Deserialize)]
struct SearchParams {
    #[serde(default)]
    q: String,
    limit: Option<usize>,
    service: Option<String>,
    event_type: Option<String>,
    stage: Option<String>,
    level: Option<String>,
    since: Option<String>,
    until: Option<String>,
    /// Histogram buckets over `since..until` (default 60 when both or
    /// `since` are given).
    buckets: Option<usize>,
}

/// Most histogram buckets one search returns.
const MAX_BUCKETS: usize = 1_000;

/// `name:"value"` clauses, any of the comma-separated values.
fn field_clause(field: &str, value: Option<&str>) -> Result<Option<String>, RequestError> {
    let values = list_param(field, value, |s| Some(s.to_owned()))?;
    if values.is_empty() {
        return Ok(None);
    }
    let terms: Vec<String> = values
        .iter()
        .map(|v| {
            format!(
                "{field}:\"{}\"",
                v.replace('\\', "\\\\").replace('"', "\\\"")
            )
        })
        .collect();
    Ok(Some(format!("({})", terms.join(" OR "))))
}

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

async fn get_services(State(state): State<QueryState>) -> Result<Json<ServicesPage>, RequestError> {
    let page = state
        .read(|read| Ok(read.context.topology.services()))
        .await?;
    Ok(Json(page))
}

async fn get_topology(
    State(state): State<QueryState>,
) -> Result<Json<causeway_model::TopologyPage>, RequestError> {
    let page = state.read(|read| Ok(read.context.topology.page())).await?;
    Ok(Json(page))
}

async fn get_alerts(State(state): State<QueryState>) -> Json<AlertsPage> {
    Json(state.alerts.list())
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
        tracing::info!(%addr, "query listening");
    }
    let limits = config.http.clone();
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

    #[test]
    fn times_are_rfc3339_or_a_span_before_now() {
        let now = Timestamp::from_micros(10_000_000_000);
        assert_eq!(
            time_param("since", Some("15m"), now).unwrap(),
            Some(Timestamp::from_micros(10_000_000_000 - 900_000_000))
        );
        assert_eq!(
            time_param("since", Some("2026-01-01T00:00:00Z"), now).unwrap(),
            Some(Timestamp::from_micros(1_767_225_600_000_000))
        );
        assert_eq!(time_param("since", None, now).unwrap(), None);
        for bad in ["15", "m", "15 parsecs", "99999999999999999999d", "-5m"] {
            assert!(time_param("since", Some(bad), now).is_err(), "{bad}");
        }
    }

    #[test]
    fn field_filters_are_quoted_terms() {
        assert_eq!(
            field_clause("service", Some("pay\"ment, orders")).unwrap(),
            Some(r#"(service:"pay\"ment" OR service:"orders")"#.to_owned())
        );
        assert_eq!(field_clause("service", Some(" , ")).unwrap(), None);
    }
}
