//! The one configuration of every daemon: `causeway.toml`, a section per
//! daemon (`[collector]`, `[query]`, `[agent]`, `[tui]`, `[demo]`), each
//! section the daemon crate's own config struct, every key optional and
//! every unknown key refused with its line.
//!
//! Layers, lowest first: the structs' defaults, the file, `CAUSEWAY_*`
//! variables, flags. This module does the first two and the checks; `args`
//! lays variables and flags on top (clap already lets a flag win over its
//! variable). A file is read only when named (`--config` or
//! `CAUSEWAY_CONFIG`): a `causeway.toml` in the working directory is not
//! picked up on its own. This module must not bind, start a daemon or read
//! the environment.

use std::net::SocketAddr;
use std::path::Path;

use anyhow::{Context, bail};
use causeway_agent::AgentConfig;
use causeway_collector::CollectorConfig;
use causeway_query::QueryConfig;
use causeway_tui::TuiConfig;
use serde::{Deserialize, Serialize};

/// Every daemon's settings, as `causeway.toml` holds them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CausewayConfig {
    pub collector: CollectorConfig,
    pub query: QueryConfig,
    pub agent: AgentConfig,
    pub tui: TuiConfig,
    pub demo: DemoConfig,
}

/// What `causeway demo` does, the `[demo]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DemoConfig {
    /// How many orders to place (every fourth is declined by payment), 1 to
    /// 10000.
    pub orders: u64,
    /// Exit once the query API shows every flow settled (0 if all did, 1
    /// if not) instead of staying up until Ctrl-C.
    pub exit: bool,
    /// How long to wait for the flows to settle, in seconds.
    pub timeout_secs: u64,
}

impl Default for DemoConfig {
    fn default() -> Self {
        Self {
            orders: 5,
            exit: false,
            timeout_secs: 120,
        }
    }
}

/// The most orders one demo places.
pub(crate) const MAX_DEMO_ORDERS: u64 = 10_000;

impl DemoConfig {
    pub fn validate(&self) -> anyhow::Result<()> {
        if !(1..=MAX_DEMO_ORDERS).contains(&self.orders) {
            bail!("invalid demo setting `orders`: must be 1 to {MAX_DEMO_ORDERS}");
        }
        if self.timeout_secs == 0 {
            bail!("invalid demo setting `timeout_secs`: must be at least 1");
        }
        Ok(())
    }
}

/// A listener address and the setting that names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    CollectorHttp,
    CollectorGrpc,
    Query,
}

impl Listener {
    pub const ALL: [Self; 3] = [Self::CollectorHttp, Self::CollectorGrpc, Self::Query];

    /// The key in `causeway.toml`, as error messages name it.
    pub fn setting(self) -> &'static str {
        match self {
            Self::CollectorHttp => "collector.http_addr",
            Self::CollectorGrpc => "collector.grpc_addr",
            Self::Query => "query.addr",
        }
    }

    /// The flag and the variable that set it too.
    pub(crate) fn flag_and_variable(self) -> (&'static str, &'static str) {
        match self {
            Self::CollectorHttp => ("--collector-http-addr", "CAUSEWAY_COLLECTOR_HTTP_ADDR"),
            Self::CollectorGrpc => ("--collector-grpc-addr", "CAUSEWAY_COLLECTOR_GRPC_ADDR"),
            Self::Query => ("--query-addr", "CAUSEWAY_QUERY_ADDR"),
        }
    }

    pub fn addr(self, config: &CausewayConfig) -> SocketAddr {
        match self {
            Self::CollectorHttp => config.collector.http_addr,
            Self::CollectorGrpc => config.collector.grpc_addr,
            Self::Query => config.query.addr,
        }
    }

    /// The one loopback check, [`causeway_server::check_listen_addr`],
    /// whatever layer the address came from; the error says where it can
    /// be changed.
    pub fn check(self, config: &CausewayConfig) -> anyhow::Result<SocketAddr> {
        let (flag, variable) = self.flag_and_variable();
        causeway_server::check_listen_addr(self.addr(config), self.setting()).with_context(|| {
            format!(
                "`{}` is set by the config file, {variable} or {flag}",
                self.setting()
            )
        })
    }
}

impl CausewayConfig {
    /// The defaults, overlaid with the file at `path` if one is named.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Self> {
        let Some(path) = path else {
            return Ok(Self::default());
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the config file {}", path.display()))?;
        Self::from_toml(&text).with_context(|| format!("in the config file {}", path.display()))
    }

    /// Parses `causeway.toml`'s text; an unknown key or a bad value is an
    /// error that names it with its line and column.
    pub fn from_toml(text: &str) -> anyhow::Result<Self> {
        toml::from_str(text).map_err(|error| anyhow::anyhow!("{error}"))
    }

    /// The configuration as `causeway.toml` text, every section.
    pub fn to_toml(&self) -> anyhow::Result<String> {
        toml::to_string(self).context("writing the configuration as TOML")
    }

    /// `up` and `demo` run collector and query over one index.
    pub fn check_one_data_dir(&self) -> anyhow::Result<()> {
        if self.collector.data_dir != self.query.data_dir {
            bail!(
                "collector.data_dir ({}) and query.data_dir ({}) differ, but collector and query \
                 in one process serve one index: set both, or use --data-dir / CAUSEWAY_DATA_DIR",
                self.collector.data_dir.display(),
                self.query.data_dir.display()
            );
        }
        Ok(())
    }

    /// Every check a daemon makes at start, for `check-config`: every
    /// listener address, the agent's settings (its paths may still come
    /// from the command line), the TUI's and the demo's.
    pub fn validate(&self) -> anyhow::Result<()> {
        for listener in Listener::ALL {
            listener.check(self)?;
        }
        self.agent.validate_settings()?;
        self.query.alerts.check().map_err(anyhow::Error::msg)?;
        self.tui.validate()?;
        self.demo.validate()
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    #[test]
    fn an_empty_file_is_every_default() {
        assert_eq!(
            CausewayConfig::from_toml("").unwrap(),
            CausewayConfig::default()
        );
        CausewayConfig::default().validate().unwrap();
    }

    #[test]
    fn every_section_and_nested_table_is_read() {
        let config = CausewayConfig::from_toml(
            r#"
            [collector]
            data_dir = "/var/lib/causeway"
            commit_interval_ms = 250
            http_addr = "127.0.0.1:14318"

            [collector.http]
            max_connections = 7

            [query]
            addr = "[::1]:18686"
            max_flows = 50

            [query.http]
            idle_timeout_ms = 1000

            [agent]
            paths = ["/var/log/app"]
            batch_max_records = 10
            default_service = "billing"

            [tui]
            refresh_interval_ms = 500

            [demo]
            orders = 8
            exit = true
            "#,
        )
        .unwrap();
        assert_eq!(
            config.collector.data_dir,
            PathBuf::from("/var/lib/causeway")
        );
        assert_eq!(config.collector.commit_interval_ms, 250);
        assert_eq!(config.collector.http_addr.port(), 14318);
        assert_eq!(config.collector.http.max_connections, 7);
        assert_eq!(config.query.addr, "[::1]:18686".parse().unwrap());
        assert_eq!(config.query.max_flows, 50);
        assert_eq!(config.query.http.idle_timeout_ms, 1000);
        assert_eq!(config.agent.paths, vec![PathBuf::from("/var/log/app")]);
        assert_eq!(config.agent.batch_max_records, 10);
        assert_eq!(config.agent.default_service.as_deref(), Some("billing"));
        assert_eq!(config.tui.refresh_interval_ms, 500);
        assert_eq!((config.demo.orders, config.demo.exit), (8, true));
        // What was left out keeps its default.
        assert_eq!(config.query.data_dir, PathBuf::from("causeway-data"));
        assert_eq!(config.demo.timeout_secs, 120);
    }

    #[test]
    fn an_unknown_key_is_refused_with_its_name_and_line() {
        let error = CausewayConfig::from_toml(
            "[collector]\ncommit_interval_ms = 5\n\n[collector.http]\nmax_conections = 3\n",
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("max_conections"), "{error}");
        assert!(error.contains("line 5"), "{error}");

        let error = CausewayConfig::from_toml("[colector]\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("colector"), "{error}");
        assert!(error.contains("line 1"), "{error}");
    }

    #[test]
    fn a_bad_value_is_refused_with_its_line() {
        let error = CausewayConfig::from_toml("[query]\n\naddr = \"localhost\"\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("line 3"), "{error}");
    }

    #[test]
    fn the_printed_configuration_reads_back_the_same() {
        let mut config = CausewayConfig::default();
        config.agent.paths = vec!["/var/log/app".into()];
        config.agent.default_service = Some("billing".into());
        config.query.http.max_uri_bytes = 100;
        let text = config.to_toml().unwrap();
        for section in [
            "[collector]",
            "[collector.http]",
            "[query]",
            "[query.http]",
            "[agent]",
            "[tui]",
            "[demo]",
        ] {
            assert!(text.contains(section), "{section} missing:\n{text}");
        }
        assert_eq!(CausewayConfig::from_toml(&text).unwrap(), config);
    }

    #[test]
    fn every_listener_is_checked_for_loopback_whatever_set_it() {
        for listener in Listener::ALL {
            let mut config = CausewayConfig::default();
            let wide: SocketAddr = "0.0.0.0:4317".parse().unwrap();
            match listener {
                Listener::CollectorHttp => config.collector.http_addr = wide,
                Listener::CollectorGrpc => config.collector.grpc_addr = wide,
                Listener::Query => config.query.addr = wide,
            }
            let error = format!("{:#}", config.validate().unwrap_err());
            assert!(error.contains(listener.setting()), "{error}");
            assert!(error.contains("only loopback"), "{error}");
            assert!(listener.check(&CausewayConfig::default()).is_ok());
        }
    }

    #[test]
    fn up_refuses_two_data_dirs() {
        let mut config = CausewayConfig::default();
        config.check_one_data_dir().unwrap();
        config.query.data_dir = "elsewhere".into();
        let error = config.check_one_data_dir().unwrap_err().to_string();
        assert!(error.contains("elsewhere"), "{error}");
    }

    #[test]
    fn demo_limits_are_checked() {
        let mut config = CausewayConfig::default();
        config.demo.orders = 0;
        assert!(config.validate().is_err());
        config.demo.orders = 10_001;
        assert!(config.validate().is_err());
        config.demo.orders = 10_000;
        config.validate().unwrap();
    }
}
