//! The loopback push receiver: `POST /v1/push` takes NDJSON (one record a
//! line, read like the default JSON source) from a local process, spools
//! it (`spool.rs`), flushed to disk, and answers 200 with how many lines
//! it took; from there the lines are shipped like a log file's, once.
//! While the spool is full the answer is 503 with `Retry-After`: the
//! pusher keeps what it has and tries again.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::json;
use tokio::net::TcpListener;
use tracing::{info, warn};

use crate::error::AgentError;
use crate::spool::Spool;
use crate::stats::Stats;

struct Receiver {
    spool: Mutex<Spool>,
    stats: Arc<Stats>,
}

/// Binds `addr` and serves `POST /v1/push` into the spool at `path` until
/// the task is aborted.
pub(crate) async fn serve(
    addr: SocketAddr,
    path: PathBuf,
    max_bytes: u64,
    body_limit: usize,
    stats: Arc<Stats>,
) -> Result<tokio::task::JoinHandle<()>, AgentError> {
    let spool = Spool::open(path.clone(), max_bytes).map_err(|source| AgentError::Spool {
        path: path.clone(),
        source,
    })?;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| AgentError::Listen { addr, source })?;
    if let Ok(addr) = listener.local_addr() {
        info!(%addr, spool = %path.display(), "agent push receiver on http://{addr}/v1/push");
    }
    let receiver = Arc::new(Receiver {
        spool: Mutex::new(spool),
        stats,
    });
    let app = Router::new()
        .route("/v1/push", post(push))
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(receiver);
    Ok(tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            warn!(%error, "the agent's push receiver stopped");
        }
    }))
}

async fn push(State(receiver): State<Arc<Receiver>>, body: Bytes) -> Response {
    let written = tokio::task::spawn_blocking(move || {
        let mut spool = receiver
            .spool
            .lock()
            .map_err(|_| std::io::Error::other("the spool lock is poisoned"))?;
        if spool.full_for(body.len() as u64 + 1, &receiver.stats) {
            return Ok(None);
        }
        spool.append(&body, true).map(Some)
    })
    .await;
    match written {
        Ok(Ok(Some(lines))) => {
            (StatusCode::OK, axum::Json(json!({ "accepted": lines }))).into_response()
        }
        Ok(Ok(None)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "1")],
            axum::Json(
                json!({ "error": "spool_full", "message": "the agent's spool is full; try again" }),
            ),
        )
            .into_response(),
        Ok(Err(error)) => {
            warn!(%error, "cannot spool pushed lines");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                axum::Json(json!({ "error": "spool", "message": "cannot write the spool" })),
            )
                .into_response()
        }
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            axum::Json(json!({ "error": "internal", "message": "the spooling task failed" })),
        )
            .into_response(),
    }
}
