//! What `up`, `collector`, `query` and `demo` share to start daemons:
//! logging on stderr, binding a listener (loopback unless its daemon has
//! tokens, checked however the address was set), and running
//! collector and query side by side. It starts what it is handed and parses
//! no arguments; it must not import `commands` or `demo`, which both use it.

use anyhow::Context;
use causeway_collector::{CollectorConfig, Listeners};
use causeway_query::QueryConfig;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tracing_subscriber::EnvFilter;

use crate::args::LogFormat;
use crate::config::{CausewayConfig, Listener};
use crate::shutdown::Shutdown;

/// Our own logs on stderr, human-readable or one JSON object per line;
/// `RUST_LOG` overrides `default`.
pub fn init_logging(default: &str, format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => logs.try_init(),
        LogFormat::Json => logs.json().flatten_event(true).try_init(),
    };
}

/// Binds `listener`'s address after the one check every listener goes
/// through ([`Listener::check`]: its tokens, its TLS files, and loopback
/// unless it has tokens): an open ingest or query port must not be
/// possible, let alone the default.
pub async fn bind(listener: Listener, config: &CausewayConfig) -> anyhow::Result<TcpListener> {
    let addr = listener.check(config)?;
    let setting = listener.setting();
    TcpListener::bind(addr).await.with_context(|| {
        format!("cannot bind `{setting}` to {addr} (is another causeway running?)")
    })
}

/// The collector's listeners: HTTP (native batches, OTLP/HTTP) and gRPC
/// (OTLP/gRPC), both checked.
pub async fn bind_collector(config: &CausewayConfig) -> anyhow::Result<Listeners> {
    Listener::CollectorGrpc.check(config)?;
    let http = bind(Listener::CollectorHttp, config).await?;
    let grpc = bind(Listener::CollectorGrpc, config).await?;
    Ok(Listeners {
        http,
        grpc: Some(grpc),
    })
}

/// The collector's and query's listeners for `up` and `demo`, which run
/// both over one data directory.
pub async fn bind_up(config: &CausewayConfig) -> anyhow::Result<(Listeners, TcpListener)> {
    config.check_one_data_dir()?;
    let collector = bind_collector(config).await?;
    let query = bind(Listener::Query, config).await?;
    Ok((collector, query))
}

/// The running collector and query of `causeway up`.
pub struct Up {
    pub collector: JoinHandle<anyhow::Result<()>>,
    pub query: JoinHandle<anyhow::Result<()>>,
}

impl Up {
    /// Starts collector and query on bound listeners.
    pub fn start(
        collector_config: CollectorConfig,
        query_config: QueryConfig,
        collector: Listeners,
        query: TcpListener,
        shutdown: &Shutdown,
    ) -> Self {
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
