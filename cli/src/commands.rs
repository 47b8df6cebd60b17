//! The subcommands: load the configuration, bind, start the daemons'
//! libraries, wait for shutdown; `check-config` prints the configuration.
//! The shared start-up pieces live in `daemons`, which `demo` uses too;
//! neither of those may import this module.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::args::{Cli, Command};
use crate::config::{CausewayConfig, Listener};
use crate::daemons::{Up, bind, bind_collector, bind_up, init_logging};
use crate::shutdown::Shutdown;

/// Loads the configuration (defaults, then the file, then variables and
/// flags), checks what the command needs, and runs it.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let mut config = CausewayConfig::load(cli.config_file().map(PathBuf::as_path))?;
    cli.command.apply(&mut config);
    let shutdown = Shutdown::new();
    match cli.command {
        Command::Up(_) => {
            init_logging("info", cli.log_format);
            let (collector, query) = bind_up(&config).await?;
            shutdown.on_signals();
            Up::start(config.collector, config.query, collector, query, &shutdown)
                .join()
                .await?;
        }
        Command::Collector(_) => {
            init_logging("info", cli.log_format);
            let listener = bind_collector(&config).await?;
            shutdown.on_signals();
            causeway_collector::run(listener, config.collector, shutdown.wait()).await?;
        }
        Command::Query(_) => {
            init_logging("info", cli.log_format);
            let listener = bind(Listener::Query, &config).await?;
            shutdown.on_signals();
            causeway_query::run(listener, config.query, shutdown.wait()).await?;
        }
        Command::Agent(_) => {
            init_logging("info", cli.log_format);
            shutdown.on_signals();
            causeway_agent::run(config.agent, shutdown.wait()).await?;
        }
        Command::Tui(_) => {
            // No stderr logging: it would scribble over the screen.
            tokio::task::spawn_blocking(move || causeway_tui::run(&config.tui))
                .await
                .context("tui thread")??;
        }
        Command::Demo(_) => return crate::demo::run(config, shutdown).await,
        Command::CheckConfig(_) => {
            config.validate()?;
            print!("{}", config.to_toml()?);
        }
    }
    Ok(ExitCode::SUCCESS)
}
