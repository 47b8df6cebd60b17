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
use causeway_server::{TlsFiles, Token};
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
    /// 100000.
    pub orders: u64,
    /// Exit once the query API shows every flow settled (0 if all did, 1
    /// if not) instead of staying up until Ctrl-C.
    pub exit: bool,
    /// How long to wait for the flows to settle, in seconds.
    pub timeout_secs: u64,
    /// The broker the orders services talk over: `amqp://...` (RabbitMQ)
    /// or `nats://...` (NATS JetStream); unset, the in-process bus.
    pub broker: Option<String>,
    /// What goes wrong: a name of `causeway_orders::Scenario::NAMES`.
    pub scenario: String,
    /// How the services are coordinated: `choreography` (each reacts to
    /// events) or `orchestration` (an orchestrator's commands and replies).
    pub style: String,
    /// Orders per second, placed steadily (unset: all at once).
    pub rate: Option<u32>,
    /// With `rate`: place orders for this long (`orders` is then `rate`
    /// x `duration`), written `"30s"`, `"2m"` or a number of seconds.
    #[serde(alias = "duration_secs")]
    pub duration: Option<DemoDuration>,
}

/// How long `causeway demo` places orders: text as humantime reads it
/// (`"90s"`, `"2m"`, `"1h 30m"`) or a bare number of seconds, in the file
/// and on the command line alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DemoDuration(pub std::time::Duration);

impl std::str::FromStr for DemoDuration {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        let duration = match text.parse::<u64>() {
            Ok(secs) => std::time::Duration::from_secs(secs),
            Err(_) => humantime::parse_duration(text).map_err(|e| {
                format!("{text:?} is not a duration such as \"30s\" or \"2m\": {e}")
            })?,
        };
        if duration.is_zero() {
            return Err(format!("{text:?} is no time at all"));
        }
        Ok(Self(duration))
    }
}

impl std::fmt::Display for DemoDuration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        humantime::format_duration(self.0).fmt(f)
    }
}

impl Serialize for DemoDuration {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DemoDuration {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            Seconds(u64),
            Text(String),
        }
        match Written::deserialize(deserializer)? {
            Written::Seconds(secs) => secs.to_string().parse(),
            Written::Text(text) => text.parse(),
        }
        .map_err(serde::de::Error::custom)
    }
}

impl Default for DemoConfig {
    fn default() -> Self {
        Self {
            orders: 5,
            exit: false,
            timeout_secs: 120,
            broker: None,
            scenario: "happy".to_owned(),
            style: "choreography".to_owned(),
            rate: None,
            duration: None,
        }
    }
}

/// What `check-config` prints in place of a token.
const REDACTED: &str = "<redacted>";

/// The most orders one demo places.
pub(crate) const MAX_DEMO_ORDERS: u64 = 100_000;

impl DemoConfig {
    /// The orders to place: `rate` x `duration` (rounded) when both are
    /// set, else `orders`.
    pub fn order_count(&self) -> u64 {
        match (self.rate, self.duration) {
            (Some(rate), Some(DemoDuration(time))) => {
                (f64::from(rate) * time.as_secs_f64()).round() as u64
            }
            _ => self.orders,
        }
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        if causeway_orders::Style::parse(&self.style).is_none() {
            bail!(
                "invalid demo setting `style`: {:?} is not one of {}",
                self.style,
                causeway_orders::Style::NAMES.join(", ")
            );
        }
        if self.rate.is_some_and(|rate| !(1..=10_000).contains(&rate)) {
            bail!("invalid demo setting `rate`: must be 1 to 10000 orders per second");
        }
        if self.duration.is_some() && self.rate.is_none() {
            bail!("invalid demo setting `duration`: it needs `rate`");
        }
        if !(1..=MAX_DEMO_ORDERS).contains(&self.order_count()) {
            bail!(
                "invalid demo setting `orders` (or `rate` x `duration`): must come to 1 \
                 to {MAX_DEMO_ORDERS}"
            );
        }
        if self.timeout_secs == 0 {
            bail!("invalid demo setting `timeout_secs`: must be at least 1");
        }
        if !causeway_orders::Scenario::NAMES.contains(&self.scenario.as_str()) {
            bail!(
                "invalid demo setting `scenario`: {:?} is not one of {}",
                self.scenario,
                causeway_orders::Scenario::NAMES.join(", ")
            );
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

    /// The tokens that let this listener bind wider than loopback, and the
    /// variable that sets them too.
    pub(crate) fn tokens_setting(self) -> (&'static str, &'static str) {
        match self {
            Self::CollectorHttp | Self::CollectorGrpc => {
                ("collector.tokens", "CAUSEWAY_COLLECTOR_TOKENS")
            }
            Self::Query => ("query.tokens", "CAUSEWAY_QUERY_TOKENS"),
        }
    }

    /// The config section this listener belongs to.
    fn section(self) -> &'static str {
        match self {
            Self::CollectorHttp | Self::CollectorGrpc => "collector",
            Self::Query => "query",
        }
    }

    /// Whether this listener asks for a token.
    fn has_tokens(self, config: &CausewayConfig) -> bool {
        match self {
            Self::CollectorHttp | Self::CollectorGrpc => !config.collector.access().is_open(),
            Self::Query => !config.query.access().is_open(),
        }
    }

    /// The section's token lists, by setting.
    fn token_lists(self, config: &CausewayConfig) -> Vec<(&'static str, &[Token])> {
        match self {
            Self::CollectorHttp | Self::CollectorGrpc => {
                vec![("collector.tokens", &config.collector.tokens)]
            }
            Self::Query => vec![
                ("query.tokens", &config.query.tokens),
                ("query.read_tokens", &config.query.read_tokens),
            ],
        }
    }

    /// The section's TLS settings, checked: both or neither, and files
    /// that make a certificate and key.
    fn check_tls(self, config: &CausewayConfig) -> anyhow::Result<()> {
        let (cert, key) = match self {
            Self::CollectorHttp | Self::CollectorGrpc => {
                (&config.collector.tls_cert, &config.collector.tls_key)
            }
            Self::Query => (&config.query.tls_cert, &config.query.tls_key),
        };
        let files = TlsFiles::from_settings(cert.as_deref(), key.as_deref(), self.section())
            .map_err(anyhow::Error::msg)?;
        if let Some(files) = files {
            files.acceptor().with_context(|| {
                format!(
                    "`{0}.tls_cert` and `{0}.tls_key` are set by the config file",
                    self.section()
                )
            })?;
        }
        Ok(())
    }

    pub fn addr(self, config: &CausewayConfig) -> SocketAddr {
        match self {
            Self::CollectorHttp => config.collector.http_addr,
            Self::CollectorGrpc => config.collector.grpc_addr,
            Self::Query => config.query.addr,
        }
    }

    /// Everything that decides who may reach this listener: its tokens
    /// are sendable, its TLS files (if any) load, and the one loopback
    /// check, [`causeway_server::check_listen_addr`] (an address wider than
    /// loopback needs tokens), whatever layer the address came from; the
    /// error says where it can be changed and never repeats a token.
    pub fn check(self, config: &CausewayConfig) -> anyhow::Result<SocketAddr> {
        for (setting, tokens) in self.token_lists(config) {
            causeway_server::check_tokens(tokens, setting)?;
        }
        self.check_tls(config)?;
        let (flag, variable) = self.flag_and_variable();
        let (tokens, tokens_variable) = self.tokens_setting();
        causeway_server::check_listen_addr(
            self.addr(config),
            self.setting(),
            tokens,
            self.has_tokens(config),
        )
        .with_context(|| {
            format!(
                "`{}` is set by the config file, {variable} or {flag}; `{tokens}` by the \
                 config file or {tokens_variable}",
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

    /// The configuration as `causeway.toml` text, every section, each
    /// token written as `"<redacted>"` (the text is for reading: it never
    /// repeats a secret).
    pub fn to_toml(&self) -> anyhow::Result<String> {
        toml::to_string(&self.redacted()).context("writing the configuration as TOML")
    }

    /// A copy with every token replaced by `<redacted>`.
    fn redacted(&self) -> Self {
        let hide = |tokens: &mut Vec<Token>| {
            for token in tokens {
                *token = Token::from(REDACTED);
            }
        };
        let mut copy = self.clone();
        hide(&mut copy.collector.tokens);
        hide(&mut copy.query.tokens);
        hide(&mut copy.query.read_tokens);
        for token in [&mut copy.agent.token, &mut copy.tui.token]
            .into_iter()
            .flatten()
        {
            REDACTED.clone_into(token);
        }
        copy
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
    /// listener (address, tokens, TLS files), the agent's settings (its paths may still come
    /// from the command line), the TUI's and the demo's.
    pub fn validate(&self) -> anyhow::Result<()> {
        for listener in Listener::ALL {
            listener.check(self)?;
        }
        self.collector.check_indexing().context(
            "`collector.index_threads` and `collector.writer_heap_bytes` are set by the config file",
        )?;
        self.agent.validate_settings()?;
        self.query.alerts.check().map_err(anyhow::Error::msg)?;
        self.tui.validate()?;
        self.demo.validate()
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

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
    fn agent_sources_are_read_from_toml_and_an_unknown_key_in_one_is_named() {
        let config = CausewayConfig::from_toml(
            r#"
            [agent]
            paths = ["/var/log/orders"]

            [[agent.sources]]
            paths = ["/var/log/py/*.log"]
            format = "regex"
            pattern = '(?P<level>\w+) (?P<message>.*)'
            multiline_start = '^\w+ '
            service = "py"
            read_from = "end"
            fields = { "ctx.order" = "correlation_id" }
            "#,
        )
        .unwrap();
        let source = &config.agent.sources[0];
        assert_eq!(source.service.as_deref(), Some("py"));
        assert_eq!(source.parse.fields["ctx.order"], "correlation_id");
        assert_eq!(config.agent.all_sources().len(), 2);
        config.validate().unwrap();
        let err =
            CausewayConfig::from_toml("[[agent.sources]]\npaths = [\"/x\"]\nformt = \"json\"\n")
                .unwrap_err()
                .to_string();
        assert!(err.contains("formt"), "{err}");
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
    fn a_wide_listener_is_accepted_once_its_section_has_tokens() {
        let wide: SocketAddr = "0.0.0.0:4317".parse().unwrap();
        let mut config = CausewayConfig::default();
        config.collector.grpc_addr = wide;
        config.query.addr = wide;
        let error = format!("{:#}", config.validate().unwrap_err());
        assert!(error.contains("collector.tokens"), "{error}");
        assert!(error.contains("CAUSEWAY_COLLECTOR_TOKENS"), "{error}");
        config.collector.tokens = vec![Token::from("collector-secret")];
        let error = format!("{:#}", config.validate().unwrap_err());
        assert!(error.contains("query.addr"), "{error}");
        assert!(error.contains("query.tokens"), "{error}");
        // A read token alone is a token too.
        config.query.read_tokens = vec![Token::from("reader-secret")];
        config.validate().unwrap();

        config.query.tokens = vec![Token::from("has a space")];
        let error = format!("{:#}", config.validate().unwrap_err());
        assert!(error.contains("query.tokens"), "{error}");
        assert!(!error.contains("has a space"), "{error}");
    }

    #[test]
    fn indexing_threads_the_writer_cannot_have_are_refused_naming_the_settings() {
        let mut config = CausewayConfig::from_toml("[collector]\nindex_threads = 2\n").unwrap();
        assert_eq!(config.collector.index_threads, 2);
        config.validate().unwrap();
        config.collector.index_threads = 0;
        let error = format!("{:#}", config.validate().unwrap_err());
        assert!(error.contains("collector.index_threads"), "{error}");
        assert!(error.contains("between 1 and 8"), "{error}");
        config.collector.index_threads = 8;
        let error = format!("{:#}", config.validate().unwrap_err());
        assert!(error.contains("collector.writer_heap_bytes"), "{error}");
        assert!(error.contains("each needs at least"), "{error}");
    }

    #[test]
    fn tls_needs_both_files_and_files_that_load() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = CausewayConfig::default();
        config.query.tls_cert = Some(dir.path().join("cert.pem"));
        let error = format!("{:#}", config.validate().unwrap_err());
        assert!(error.contains("query.tls_key"), "{error}");
        config.query.tls_key = Some(dir.path().join("key.pem"));
        let error = format!("{:#}", config.validate().unwrap_err());
        assert!(error.contains("cert.pem"), "{error}");
    }

    #[test]
    fn the_printed_configuration_never_holds_a_token() {
        let mut config = CausewayConfig::default();
        config.collector.tokens = vec![Token::from("collector-secret")];
        config.query.tokens = vec![Token::from("query-secret")];
        config.query.read_tokens = vec![Token::from("reader-secret")];
        config.agent.token = Some("agent-secret".into());
        config.tui.token = Some("tui-secret".into());
        let text = config.to_toml().unwrap();
        assert!(!text.contains("secret"), "{text}");
        assert_eq!(text.matches(REDACTED).count(), 5, "{text}");
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
        config.demo.orders = MAX_DEMO_ORDERS + 1;
        assert!(config.validate().is_err());
        config.demo.orders = MAX_DEMO_ORDERS;
        config.validate().unwrap();
        // A rate and a duration make the count; a duration alone is refused.
        config.demo.duration = Some(DemoDuration(Duration::from_secs(10)));
        assert!(config.validate().is_err());
        config.demo.rate = Some(50);
        assert_eq!(config.demo.order_count(), 500);
        config.validate().unwrap();
        config.demo.rate = Some(10_001);
        assert!(config.validate().is_err());
        config.demo.rate = Some(10_000);
        config.demo.duration = Some(DemoDuration(Duration::from_secs(11)));
        assert!(config.validate().is_err(), "110 000 orders");
        config.demo.duration = None;
        config.demo.style = "orchestration".into();
        config.validate().unwrap();
        config.demo.style = "anarchy".into();
        assert!(config.validate().is_err());
        config.demo.style = "choreography".into();
        config.demo.scenario = "chaos".into();
        assert!(config.validate().is_err());
    }

    #[test]
    fn a_demo_duration_is_read_as_text_or_seconds() {
        let read = |toml: &str| CausewayConfig::from_toml(toml).map(|c| c.demo.duration);
        let secs = |s| Some(DemoDuration(Duration::from_secs(s)));
        assert_eq!(
            read("[demo]\nrate = 2\nduration = \"2m\"").unwrap(),
            secs(120)
        );
        assert_eq!(
            read("[demo]\nrate = 2\nduration = \"1m 30s\"").unwrap(),
            secs(90)
        );
        assert_eq!(read("[demo]\nrate = 2\nduration = 45").unwrap(), secs(45));
        // The name of earlier versions still reads.
        assert_eq!(
            read("[demo]\nrate = 2\nduration_secs = 7").unwrap(),
            secs(7)
        );
        for bad in ["\"0s\"", "0", "\"soon\"", "-3"] {
            let error = read(&format!("[demo]\nrate = 2\nduration = {bad}")).unwrap_err();
            assert!(error.to_string().contains("duration"), "{bad}: {error:#}");
        }
        let mut config = CausewayConfig::default();
        config.demo.rate = Some(3);
        config.demo.duration = Some(DemoDuration(Duration::from_millis(2500)));
        assert_eq!(config.demo.order_count(), 8, "3/s for 2.5 s, rounded");
        assert_eq!("90s".parse::<DemoDuration>().unwrap().to_string(), "1m 30s");
    }
}
