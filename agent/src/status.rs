//! The agent's own loopback HTTP endpoint: `GET /status` (JSON: per file
//! its stream, position and lag, records shipped; the agent's retries,
//! last error, and whether it is holding back because the collector is
//! away) and `GET /metrics` (Prometheus text). Read only; nothing from a
//! log line reaches it but paths and stream names, with control
//! characters removed.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;
use tracing::{info, warn};

use crate::stats::Stats;

/// Binds `addr` and serves the status until the task is dropped or
/// aborted. A port taken is a warning, not a failure: shipping goes on
/// without the endpoint.
pub(crate) async fn serve(
    addr: SocketAddr,
    stats: Arc<Stats>,
) -> Option<tokio::task::JoinHandle<()>> {
    let listener = match TcpListener::bind(addr).await {
        Ok(listener) => listener,
        Err(error) => {
            warn!(%addr, %error, "cannot serve the agent's status and metrics");
            return None;
        }
    };
    if let Ok(addr) = listener.local_addr() {
        info!(%addr, "agent status on http://{addr}/status and /metrics");
    }
    let app = Router::new()
        .route("/status", get(status))
        .route("/metrics", get(metrics))
        .with_state(stats);
    Some(tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            warn!(%error, "the agent's status endpoint stopped");
        }
    }))
}

async fn status(State(stats): State<Arc<Stats>>) -> impl IntoResponse {
    axum::Json(stats.status())
}

async fn metrics(State(stats): State<Arc<Stats>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        stats.render_metrics(),
    )
}
