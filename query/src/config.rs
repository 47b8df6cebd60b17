//! Query settings, the `[query]` section of `causeway.toml`. Field docs are
//! the user docs. This module only describes settings; it must not open
//! files or sockets (the binary binds the address and hands `run` the
//! listener).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use causeway_index::ReadBounds;
use causeway_server::{Access, HttpLimits, TlsFiles, Token};
use serde::{Deserialize, Serialize};

use crate::alerts::AlertsConfig;
use crate::flow::FlowSettings;
use crate::topology::TopologySettings;

/// What the query API reads and how much it returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueryConfig {
    /// The collector's data directory; the index is `<data_dir>/index`.
    pub data_dir: PathBuf,
    /// Where the query API listens. An address wider than loopback needs
    /// `tokens` or `read_tokens`; port 0 picks a free port.
    pub addr: SocketAddr,
    /// Bearer tokens, any of which lets a client read the whole API
    /// (`Authorization: Bearer <token>`); several so that one can be
    /// rotated out. Empty (and `read_tokens` too): no token is asked for,
    /// and only loopback addresses may be bound. `/healthz` is always open.
    pub tokens: Vec<Token>,
    /// More tokens accepted like `tokens`. The query API only reads: these
    /// exist so a deployment can hand the TUI and dashboards a token that
    /// is not the collector's ingest token.
    pub read_tokens: Vec<Token>,
    /// A PEM certificate chain: with `tls_key`, the API speaks TLS.
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Most records read for one flow or trace.
    pub max_flow_records: usize,
    /// Most flows one `GET /api/v1/flows` returns (`limit` is capped to it).
    pub max_flows: usize,
    /// Most hits one search returns (`limit` is capped to it).
    pub max_search_hits: usize,
    /// Largest response body, in bytes: a search, flow or trace that would
    /// pass it is cut at the last whole record and says `"truncated": true`.
    pub max_response_bytes: usize,
    /// Longest search query string, in bytes; a longer one is answered 400.
    pub max_query_bytes: usize,
    /// Most nesting operators in a search query: every `(`, `NOT` and
    /// leading `+` or `-` counts, wherever it stands, since each could open a
    /// level of tantivy's recursive parser; more is answered 400 before the
    /// query reaches the parser.
    pub max_query_depth: usize,
    /// Index reads (searches, flows, traces) under way at once; one more
    /// is answered 503 with `Retry-After` rather than queued. `/healthz` is
    /// not counted.
    pub max_concurrent_reads: usize,
    /// Most flow digests one list request evaluates (statuses and
    /// anomalies are derived at read time); a list that stops here before
    /// it has `limit` flows says so and hands out a cursor to go on.
    pub max_flow_scan: usize,
    /// A TOML file of declared contracts (event type -> expected consumers,
    /// optional thresholds) that overrides the learned topology.
    pub contracts_file: Option<PathBuf>,
    /// The topology is learned from the flows active in this many seconds
    /// before now...
    pub topology_window_secs: u64,
    /// ...at most this many of them, the newest...
    pub topology_max_flows: usize,
    /// ...and learned again this often.
    pub topology_refresh_ms: u64,
    /// Stuck threshold when none is declared: this many times the learned
    /// p99 of the step (queue wait plus processing)...
    pub stuck_p99_factor: u64,
    /// ...at least this long...
    pub stuck_min_ms: u64,
    /// ...at most this long, which is also the threshold of a step nothing
    /// was learned about.
    pub stuck_max_ms: u64,
    /// A step whose processing passes this many times the learned p99 of
    /// its edge is a `slow_step`.
    pub slow_step_factor: u32,
    /// Failures of one event in one consumer group that make a
    /// `poison_loop`.
    pub poison_failures: u32,
    /// What one client may hold of the HTTP listener.
    pub http: HttpLimits,
    /// Alert rules and their webhook (`[query.alerts]`, one
    /// `[[query.alerts.rules]]` per rule).
    pub alerts: AlertsConfig,
}

impl Default for QueryConfig {
    fn default() -> Self {
        let bounds = ReadBounds::default();
        Self {
            data_dir: PathBuf::from("causeway-data"),
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 8686)),
            tokens: Vec::new(),
            read_tokens: Vec::new(),
            tls_cert: None,
            tls_key: None,
            max_flow_records: 10_000,
            max_flows: 500,
            max_search_hits: 1_000,
            max_response_bytes: bounds.max_response_bytes,
            max_query_bytes: bounds.max_query_bytes,
            max_query_depth: bounds.max_query_depth,
            max_concurrent_reads: 16,
            max_flow_scan: 20_000,
            contracts_file: None,
            topology_window_secs: 3_600,
            topology_max_flows: 20_000,
            topology_refresh_ms: 10_000,
            stuck_p99_factor: 10,
            stuck_min_ms: 30_000,
            stuck_max_ms: 3_600_000,
            slow_step_factor: 3,
            poison_failures: 3,
            http: HttpLimits::default(),
            alerts: AlertsConfig::default(),
        }
    }
}

impl QueryConfig {
    /// Defaults with the given data directory.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            ..Self::default()
        }
    }

    /// Who may use the API: any of `tokens` and `read_tokens`.
    pub fn access(&self) -> Access {
        Access::new(self.tokens.iter().chain(&self.read_tokens))
    }

    /// The listener's certificate and key, when both are set (the binary
    /// checks that one is not set without the other).
    pub fn tls(&self) -> Option<TlsFiles> {
        TlsFiles::from_settings(self.tls_cert.as_deref(), self.tls_key.as_deref(), "query")
            .ok()
            .flatten()
    }

    /// The index directory under the data directory.
    pub fn index_dir(&self) -> PathBuf {
        self.data_dir.join("index")
    }

    /// How the topology is learned and thresholds derived.
    pub fn topology_settings(&self) -> TopologySettings {
        TopologySettings {
            stuck_p99_factor: self.stuck_p99_factor,
            stuck_min_us: self.stuck_min_ms.saturating_mul(1_000),
            stuck_max_us: self.stuck_max_ms.saturating_mul(1_000),
            ..TopologySettings::default()
        }
    }

    /// How anomalies are detected.
    pub fn flow_settings(&self) -> FlowSettings {
        FlowSettings {
            poison_failures: usize::try_from(self.poison_failures).unwrap_or(usize::MAX),
            slow_step_factor: f64::from(self.slow_step_factor),
            ..FlowSettings::default()
        }
    }

    /// The bounds every read of the index keeps.
    pub fn read_bounds(&self) -> ReadBounds {
        ReadBounds {
            max_query_bytes: self.max_query_bytes,
            max_query_depth: self.max_query_depth,
            max_response_bytes: self.max_response_bytes,
        }
    }
}
