//! What `up`, `collector`, `query` and `demo` share to start daemons:
//! logging on stderr, binding a listener (loopback only), and running
//! collector and query side by side. It starts what it is handed and parses
//! no arguments; it must not import `commands` or `demo`, which both use it.

use std::net::SocketAddr;
use std::path::Path;

use anyhow::{Context, bail};
use causeway_collector::CollectorConfig;
use causeway_query::QueryConfig;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tracing_subscriber::EnvFilter;

use crate::shutdown::Shutdown;

/// Our own logs: human-readable on stderr, `RUST_LOG` overrides `default`.
pub fn init_logging(default: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Binds `addr`, refusing anything but loopback: token auth for wider
/// binds is not built yet, and an open ingest or query port must not be
/// the default.
pub async fn bind(addr: SocketAddr, what: &str, env: &str) -> anyhow::Result<TcpListener> {
    if !addr.ip().is_loopback() {
        bail!(
            "refusing to bind the {what} to {addr}: only loopback addresses are allowed until \
             token authentication lands (set {env} to a 127.0.0.1 address)"
        );
    }
    TcpListener::bind(addr).await.with_context(|| {
        format!("cannot bind the {what} to {addr} (is another causeway running? set {env})")
    })
}

/// The running collector and query of `causeway up`.
pub struct Up {
    pub collector: JoinHandle<anyhow::Result<()>>,
    pub query: JoinHandle<anyhow::Result<()>>,
}

impl Up {
    /// Starts collector and query on bound listeners over one data dir.
    pub fn start(
        data_dir: &Path,
        collector: TcpListener,
        query: TcpListener,
        shutdown: &Shutdown,
    ) -> Self {
        let collector_config = CollectorConfig::new(data_dir);
        let query_config = QueryConfig::new(data_dir);
        let stop = shutdown.wait();
        let collector = tokio::spawn(async move {
            causeway_collector::run(collector, collector_config, stop)
                .await
                .context("collector")
        });
        let stop = shutdown.wait();
        let query = tokio::spawn(async move {
            causeway_query::run(query, query_config, stop)
                .await
                .context("query")
        });
        Self { collector, query }
    }

    /// Waits for both to stop; the first error wins.
    pub async fn join(self) -> anyhow::Result<()> {
        let collector = self.collector.await.context("collector task")?;
        let query = self.query.await.context("query task")?;
        collector.and(query)
    }
}
