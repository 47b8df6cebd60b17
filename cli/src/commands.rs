//! The subcommands: bind, start the daemons' libraries, wait for shutdown.

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, bail};
use causeway_agent::AgentConfig;
use causeway_collector::CollectorConfig;
use causeway_query::QueryConfig;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tracing_subscriber::EnvFilter;

use crate::args::{Cli, Command};
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

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let shutdown = Shutdown::new();
    match cli.command {
        Command::Up(args) => {
            init_logging("info");
            let collector = bind(
                args.collector.collector_http_addr,
                "collector",
                "CAUSEWAY_COLLECTOR_HTTP_ADDR",
            )
            .await?;
            let query = bind(args.query.query_addr, "query API", "CAUSEWAY_QUERY_ADDR").await?;
            shutdown.on_signals();
            Up::start(&args.data.data_dir, collector, query, &shutdown)
                .join()
                .await?;
        }
        Command::Collector(args) => {
            init_logging("info");
            let listener = bind(
                args.collector.collector_http_addr,
                "collector",
                "CAUSEWAY_COLLECTOR_HTTP_ADDR",
            )
            .await?;
            shutdown.on_signals();
            causeway_collector::run(
                listener,
                CollectorConfig::new(&args.data.data_dir),
                shutdown.wait(),
            )
            .await?;
        }
        Command::Query(args) => {
            init_logging("info");
            let listener = bind(args.query.query_addr, "query API", "CAUSEWAY_QUERY_ADDR").await?;
            shutdown.on_signals();
            causeway_query::run(
                listener,
                QueryConfig::new(&args.data.data_dir),
                shutdown.wait(),
            )
            .await?;
        }
        Command::Agent(args) => {
            init_logging("info");
            let mut config = AgentConfig::new(args.collector_url, args.checkpoint);
            config.paths = args.paths;
            config.default_service = args.service;
            shutdown.on_signals();
            causeway_agent::run(config, shutdown.wait()).await?;
        }
        Command::Tui(args) => {
            // No stderr logging: it would scribble over the screen.
            tokio::task::spawn_blocking(move || causeway_tui::run(&args.query_url))
                .await
                .context("tui thread")??;
        }
        Command::Demo(args) => return crate::demo::run(args, shutdown).await,
    }
    Ok(ExitCode::SUCCESS)
}
