//! The subcommands: bind, start the daemons' libraries, wait for shutdown.
//! The shared start-up pieces live in `daemons`, which `demo` uses too;
//! neither of those may import this module.

use std::process::ExitCode;

use anyhow::Context;
use causeway_agent::AgentConfig;
use causeway_collector::CollectorConfig;
use causeway_query::QueryConfig;

use crate::args::{Cli, Command};
use crate::daemons::{Up, bind, init_logging};
use crate::shutdown::Shutdown;

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
            let config = causeway_tui::TuiConfig {
                query_url: args.query_url,
                ..causeway_tui::TuiConfig::default()
            };
            tokio::task::spawn_blocking(move || causeway_tui::run(&config))
                .await
                .context("tui thread")??;
        }
        Command::Demo(args) => return crate::demo::run(args, shutdown).await,
    }
    Ok(ExitCode::SUCCESS)
}
