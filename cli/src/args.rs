//! Command-line arguments, and how they lay over `causeway.toml`.
//!
//! Every setting is a key in the config file (see `config`); the common ones
//! (data dir, listen addresses, collector and query URLs, the agent's
//! checkpoint and service) are also a flag and a `CAUSEWAY_*` variable. A
//! flag wins over its variable, a variable over the file, the file over the
//! defaults: an argument left out here is `None` and leaves the file's value
//! alone. This module only parses and overlays; it must not read files,
//! bind or start anything.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::{CausewayConfig, DemoDuration, MAX_DEMO_ORDERS};

#[derive(Debug, Parser)]
#[command(
    name = "causeway",
    version,
    about = "Correlation tracing for event-driven systems"
)]
pub struct Cli {
    /// The configuration file (TOML, a section per daemon). Without it no
    /// file is read: a `causeway.toml` in the working directory is not
    /// picked up on its own.
    #[arg(long, global = true, env = "CAUSEWAY_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// How the daemons write their own logs on stderr: `text` for people,
    /// `json` (one object per line) for a log pipeline.
    #[arg(
        long,
        global = true,
        env = "CAUSEWAY_LOG_FORMAT",
        value_enum,
        default_value_t = LogFormat::Text
    )]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

/// The format of the daemons' own logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Collector and query in one process, the index under the data dir.
    Up(UpArgs),
    /// The collector alone: ingest API and indexer.
    Collector(CollectorArgs),
    /// The query API alone, over the collector's data dir.
    Query(QueryArgs),
    /// Tail log files and ship their records to the collector.
    Agent(AgentArgs),
    /// The terminal UI.
    Tui(TuiArgs),
    /// Run `up`, the orders example and an agent, place orders, show flows.
    Demo(DemoArgs),
    /// Check a configuration and print it as it takes effect (file,
    /// variables and flags applied), every section, as TOML.
    CheckConfig(CheckConfigArgs),
}

#[derive(Debug, Clone, Args)]
pub struct DataDirArg {
    /// Where the collector keeps its index and query reads it
    /// (`collector.data_dir` and `query.data_dir`).
    #[arg(long, env = "CAUSEWAY_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct CollectorAddrs {
    /// Native ingest and OTLP/HTTP address (`collector.http_addr`).
    #[arg(long, env = "CAUSEWAY_COLLECTOR_HTTP_ADDR")]
    pub collector_http_addr: Option<SocketAddr>,
    /// OTLP/gRPC address (`collector.grpc_addr`).
    #[arg(long, env = "CAUSEWAY_COLLECTOR_GRPC_ADDR")]
    pub collector_grpc_addr: Option<SocketAddr>,
    /// Bearer tokens the collector accepts, comma-separated
    /// (`collector.tokens`); prefer the variable, since a flag shows in the
    /// process list.
    #[arg(
        long,
        env = "CAUSEWAY_COLLECTOR_TOKENS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub collector_tokens: Option<Vec<String>>,
}

#[derive(Debug, Clone, Args)]
pub struct QueryAddr {
    /// Query API address (`query.addr`).
    #[arg(long, env = "CAUSEWAY_QUERY_ADDR")]
    pub query_addr: Option<SocketAddr>,
    /// Bearer tokens the query API accepts, comma-separated
    /// (`query.tokens`); prefer the variable, since a flag shows in the
    /// process list.
    #[arg(
        long,
        env = "CAUSEWAY_QUERY_TOKENS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub query_tokens: Option<Vec<String>>,
    /// More tokens the query API accepts, for readers such as the TUI,
    /// comma-separated (`query.read_tokens`).
    #[arg(
        long,
        env = "CAUSEWAY_QUERY_READ_TOKENS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub query_read_tokens: Option<Vec<String>>,
}

#[derive(Debug, Clone, Args)]
pub struct AgentSettings {
    /// The collector's base URL (`agent.collector_url`).
    #[arg(long, env = "CAUSEWAY_COLLECTOR_URL")]
    pub collector_url: Option<String>,
    /// Where the agent remembers how far it shipped each file
    /// (`agent.checkpoint_path`).
    #[arg(long, env = "CAUSEWAY_AGENT_CHECKPOINT")]
    pub checkpoint: Option<PathBuf>,
    /// Service name for lines that carry none, instead of the file name
    /// (`agent.default_service`).
    #[arg(long, env = "CAUSEWAY_AGENT_SERVICE")]
    pub service: Option<String>,
    /// The bearer token sent to the collector (`agent.token`); prefer the
    /// variable, since a flag shows in the process list.
    #[arg(long, env = "CAUSEWAY_AGENT_TOKEN", hide_env_values = true)]
    pub agent_token: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct TuiSettings {
    /// The query API's base URL (`tui.query_url`).
    #[arg(long, env = "CAUSEWAY_QUERY_URL")]
    pub query_url: Option<String>,
    /// The bearer token sent to the query API (`tui.token`); prefer the
    /// variable, since a flag shows in the process list.
    #[arg(long, env = "CAUSEWAY_TUI_TOKEN", hide_env_values = true)]
    pub tui_token: Option<String>,
}

#[derive(Debug, Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub data: DataDirArg,
    #[command(flatten)]
    pub collector: CollectorAddrs,
    #[command(flatten)]
    pub query: QueryAddr,
}

#[derive(Debug, Args)]
pub struct CollectorArgs {
    #[command(flatten)]
    pub data: DataDirArg,
    #[command(flatten)]
    pub collector: CollectorAddrs,
}

#[derive(Debug, Args)]
pub struct QueryArgs {
    #[command(flatten)]
    pub data: DataDirArg,
    #[command(flatten)]
    pub query: QueryAddr,
}

#[derive(Debug, Args)]
pub struct AgentArgs {
    /// Files, directories or glob patterns to tail (directories: every
    /// *.log, *.json, *.jsonl, *.ndjson inside; patterns, quoted so the
    /// agent expands them: 'logs/app.log*', '/var/log/app/**/*.log'; files
    /// created later included), or `-` for standard input (the agent exits
    /// once it ended and is shipped); replaces `agent.paths`.
    pub paths: Vec<PathBuf>,
    #[command(flatten)]
    pub agent: AgentSettings,
}

#[derive(Debug, Args)]
pub struct TuiArgs {
    #[command(flatten)]
    pub tui: TuiSettings,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// How many orders to place, every fourth declined by payment
    /// (`demo.orders`).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=MAX_DEMO_ORDERS))]
    pub orders: Option<u64>,
    /// Exit once the query API shows every flow settled: 0 if all did, 1 if
    /// not (`demo.exit`); `--exit=false` stays up even if the file says
    /// otherwise.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub exit: Option<bool>,
    /// How long to wait for the flows, in seconds (`demo.timeout_secs`).
    #[arg(long)]
    pub timeout_secs: Option<u64>,
    /// The broker the services talk over, `amqp://...` or `nats://...`
    /// (`demo.broker`); none: the in-process bus.
    #[arg(long)]
    pub broker: Option<String>,
    /// choreography or orchestration (`demo.style`).
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(causeway_orders::Style::NAMES))]
    pub style: Option<String>,
    /// Orders per second, placed steadily (`demo.rate`); unset: all at once.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub rate: Option<u32>,
    /// With --rate, place orders for this long: `30s`, `2m`, or seconds
    /// (`demo.duration`).
    #[arg(long, alias = "duration-secs")]
    pub duration: Option<DemoDuration>,
    /// What goes wrong, see examples/README.md (`demo.scenario`).
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(causeway_orders::Scenario::NAMES))]
    pub scenario: Option<String>,
    #[command(flatten)]
    pub up: UpArgs,
}

#[derive(Debug, Args)]
pub struct CheckConfigArgs {
    /// The file to check; `--config` / `CAUSEWAY_CONFIG` when left out, and
    /// the defaults when neither names one.
    #[arg(value_name = "FILE")]
    pub file: Option<PathBuf>,
    #[command(flatten)]
    pub up: UpArgs,
    #[command(flatten)]
    pub agent: AgentSettings,
    #[command(flatten)]
    pub tui: TuiSettings,
}

fn set<T: Clone>(target: &mut T, value: Option<&T>) {
    if let Some(value) = value {
        target.clone_from(value);
    }
}

fn set_tokens(target: &mut Vec<causeway_server::Token>, value: Option<&Vec<String>>) {
    if let Some(tokens) = value {
        *target = tokens
            .iter()
            .map(|token| causeway_server::Token(token.clone()))
            .collect();
    }
}

impl DataDirArg {
    fn apply(&self, config: &mut CausewayConfig) {
        set(&mut config.collector.data_dir, self.data_dir.as_ref());
        set(&mut config.query.data_dir, self.data_dir.as_ref());
    }
}

impl CollectorAddrs {
    fn apply(&self, config: &mut CausewayConfig) {
        set(
            &mut config.collector.http_addr,
            self.collector_http_addr.as_ref(),
        );
        set(
            &mut config.collector.grpc_addr,
            self.collector_grpc_addr.as_ref(),
        );
        set_tokens(&mut config.collector.tokens, self.collector_tokens.as_ref());
    }
}

impl QueryAddr {
    fn apply(&self, config: &mut CausewayConfig) {
        set(&mut config.query.addr, self.query_addr.as_ref());
        set_tokens(&mut config.query.tokens, self.query_tokens.as_ref());
        set_tokens(
            &mut config.query.read_tokens,
            self.query_read_tokens.as_ref(),
        );
    }
}

impl UpArgs {
    fn apply(&self, config: &mut CausewayConfig) {
        self.data.apply(config);
        self.collector.apply(config);
        self.query.apply(config);
    }
}

impl AgentSettings {
    fn apply(&self, config: &mut CausewayConfig) {
        set(&mut config.agent.collector_url, self.collector_url.as_ref());
        set(&mut config.agent.checkpoint_path, self.checkpoint.as_ref());
        if let Some(service) = &self.service {
            config.agent.default_service = Some(service.clone());
        }
        if let Some(token) = &self.agent_token {
            config.agent.token = Some(token.clone());
        }
    }
}

impl TuiSettings {
    fn apply(&self, config: &mut CausewayConfig) {
        set(&mut config.tui.query_url, self.query_url.as_ref());
        if let Some(token) = &self.tui_token {
            config.tui.token = Some(token.clone());
        }
    }
}

impl Cli {
    /// The config file to read: `check-config FILE` first, then `--config`
    /// / `CAUSEWAY_CONFIG`.
    pub fn config_file(&self) -> Option<&PathBuf> {
        match &self.command {
            Command::CheckConfig(CheckConfigArgs {
                file: Some(file), ..
            }) => Some(file),
            _ => self.config.as_ref(),
        }
    }
}

impl Command {
    /// Lays this command's variables and flags over `config`.
    pub fn apply(&self, config: &mut CausewayConfig) {
        match self {
            Self::Up(args) => args.apply(config),
            Self::Collector(args) => {
                args.data.apply(config);
                args.collector.apply(config);
            }
            Self::Query(args) => {
                args.data.apply(config);
                args.query.apply(config);
            }
            Self::Agent(args) => {
                if !args.paths.is_empty() {
                    config.agent.paths.clone_from(&args.paths);
                }
                args.agent.apply(config);
            }
            Self::Tui(args) => args.tui.apply(config),
            Self::Demo(args) => {
                set(&mut config.demo.orders, args.orders.as_ref());
                set(&mut config.demo.exit, args.exit.as_ref());
                set(&mut config.demo.timeout_secs, args.timeout_secs.as_ref());
                if let Some(broker) = &args.broker {
                    config.demo.broker = Some(broker.clone());
                }
                set(&mut config.demo.scenario, args.scenario.as_ref());
                set(&mut config.demo.style, args.style.as_ref());
                if let Some(rate) = args.rate {
                    config.demo.rate = Some(rate);
                }
                if let Some(duration) = args.duration {
                    config.demo.duration = Some(duration);
                }
                args.up.apply(config);
            }
            Self::CheckConfig(args) => {
                args.up.apply(config);
                args.agent.apply(config);
                args.tui.apply(config);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn effective(file: &str, args: &[&str]) -> CausewayConfig {
        let cli = Cli::try_parse_from(args).unwrap();
        let mut config = CausewayConfig::from_toml(file).unwrap();
        cli.command.apply(&mut config);
        config
    }

    #[test]
    fn a_flag_overrides_the_file_and_a_left_out_flag_keeps_it() {
        let file = "[query]\naddr = \"127.0.0.1:9000\"\ndata_dir = \"from-file\"\n";
        let config = effective(file, &["causeway", "query"]);
        assert_eq!(config.query.addr.port(), 9000);
        assert_eq!(config.query.data_dir, PathBuf::from("from-file"));

        let config = effective(
            file,
            &["causeway", "query", "--query-addr", "127.0.0.1:9001"],
        );
        assert_eq!(config.query.addr.port(), 9001);
        assert_eq!(config.query.data_dir, PathBuf::from("from-file"));
    }

    #[test]
    fn data_dir_sets_both_collector_and_query() {
        let config = effective("", &["causeway", "up", "--data-dir", "/srv/cw"]);
        assert_eq!(config.collector.data_dir, PathBuf::from("/srv/cw"));
        assert_eq!(config.query.data_dir, PathBuf::from("/srv/cw"));
    }

    #[test]
    fn agent_paths_on_the_command_line_replace_the_files() {
        let file = "[agent]\npaths = [\"/a\"]\nbatch_max_records = 3\n";
        let config = effective(file, &["causeway", "agent"]);
        assert_eq!(config.agent.paths, vec![PathBuf::from("/a")]);
        let config = effective(file, &["causeway", "agent", "/b", "--service", "svc"]);
        assert_eq!(config.agent.paths, vec![PathBuf::from("/b")]);
        assert_eq!(config.agent.default_service.as_deref(), Some("svc"));
        assert_eq!(config.agent.batch_max_records, 3);
    }

    #[test]
    fn demo_flags_override_the_demo_section() {
        let file = "[demo]\norders = 9\ntimeout_secs = 7\n";
        let config = effective(file, &["causeway", "demo", "--orders", "2", "--exit"]);
        assert_eq!(
            (
                config.demo.orders,
                config.demo.exit,
                config.demo.timeout_secs
            ),
            (2, true, 7)
        );
        let file = "[demo]\nexit = true\n";
        assert!(effective(file, &["causeway", "demo"]).demo.exit);
        assert!(
            !effective(file, &["causeway", "demo", "--exit=false"])
                .demo
                .exit
        );
    }

    #[test]
    fn check_config_reads_its_own_file_argument_first() {
        let cli = Cli::try_parse_from(["causeway", "--config", "a.toml", "check-config", "b.toml"])
            .unwrap();
        assert_eq!(cli.config_file(), Some(&PathBuf::from("b.toml")));
        let cli = Cli::try_parse_from(["causeway", "check-config", "--config", "a.toml"]).unwrap();
        assert_eq!(cli.config_file(), Some(&PathBuf::from("a.toml")));
    }
}
