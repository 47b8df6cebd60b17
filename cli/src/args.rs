//! Command-line arguments. Every setting has a flag and a `CAUSEWAY_*`
//! environment variable; flags win.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "causeway",
    version,
    about = "Correlation tracing for event-driven systems"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
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
}

#[derive(Debug, Clone, Args)]
pub struct DataDirArg {
    /// Where the collector keeps its index.
    #[arg(long, env = "CAUSEWAY_DATA_DIR", default_value = "causeway-data")]
    pub data_dir: PathBuf,
}

#[derive(Debug, Clone, Args)]
pub struct CollectorAddrs {
    /// Native ingest (and, later, OTLP/HTTP) address.
    #[arg(
        long,
        env = "CAUSEWAY_COLLECTOR_HTTP_ADDR",
        default_value = "127.0.0.1:4318"
    )]
    pub collector_http_addr: SocketAddr,
    /// OTLP/gRPC address; reserved until OTLP/gRPC ingest lands.
    #[arg(
        long,
        env = "CAUSEWAY_COLLECTOR_GRPC_ADDR",
        default_value = "127.0.0.1:4317"
    )]
    pub collector_grpc_addr: SocketAddr,
}

#[derive(Debug, Clone, Args)]
pub struct QueryAddr {
    /// Query API address.
    #[arg(long, env = "CAUSEWAY_QUERY_ADDR", default_value = "127.0.0.1:8686")]
    pub query_addr: SocketAddr,
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
    /// Files or directories to tail (directories: every *.log, *.json,
    /// *.jsonl, *.ndjson inside, including files created later).
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// The collector's base URL.
    #[arg(
        long,
        env = "CAUSEWAY_COLLECTOR_URL",
        default_value = "http://127.0.0.1:4318"
    )]
    pub collector_url: String,
    /// Where the agent remembers how far it shipped each file.
    #[arg(
        long,
        env = "CAUSEWAY_AGENT_CHECKPOINT",
        default_value = "causeway-agent.checkpoint.json"
    )]
    pub checkpoint: PathBuf,
    /// Service name for lines that carry none (default: the file name).
    #[arg(long)]
    pub service: Option<String>,
}

#[derive(Debug, Args)]
pub struct TuiArgs {
    /// The query API's base URL.
    #[arg(
        long,
        env = "CAUSEWAY_QUERY_URL",
        default_value = "http://127.0.0.1:8686"
    )]
    pub query_url: String,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// How many orders to place (every fourth is declined by payment).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub orders: u64,
    /// Exit once the query API shows every flow settled: 0 if all did, 1 if not.
    #[arg(long)]
    pub exit: bool,
    /// With `--exit`: how long to wait for the flows, in seconds.
    #[arg(long, default_value_t = 120)]
    pub timeout_secs: u64,
    #[command(flatten)]
    pub data: DataDirArg,
    #[command(flatten)]
    pub collector: CollectorAddrs,
    #[command(flatten)]
    pub query: QueryAddr,
}
