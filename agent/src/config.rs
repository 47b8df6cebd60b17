//! The agent's configuration: which files to tail, where to ship, where to
//! keep the checkpoint, and the batch and line limits.
//!
//! The field docs are the user documentation (they end up in the CLI's and
//! the config file's help). This module only describes and checks settings;
//! it must not open files or sockets.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::AgentError;
use crate::formats::{LineParser, ParseSpec};

/// Where a file is read from when the agent first meets it at start, with
/// nothing about it in the checkpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadFrom {
    /// From its first byte: every line it holds is shipped.
    #[default]
    Beginning,
    /// From its end (its last complete line): only lines written from now
    /// on are shipped. Files that appear while the agent runs are new, and
    /// are always read from their beginning.
    End,
}

/// How batch bodies are sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    /// `Content-Encoding: gzip` (dropped by itself if the collector shows
    /// it does not take it).
    #[default]
    Gzip,
    /// Plain NDJSON.
    None,
}

/// One `[[agent.sources]]`: files read the same way.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SourceConfig {
    /// Files and directories, as [`AgentConfig::paths`].
    pub paths: Vec<PathBuf>,
    /// How its lines are read: `format`, `pattern`, `fields`,
    /// `multiline_start`, `multiline_timeout_ms`.
    #[serde(flatten)]
    pub parse: ParseSpec,
    /// The service of its lines that name none (unset: the agent's
    /// `default_service`, else the file name).
    pub service: Option<String>,
    /// Where a file met at start with no checkpoint is read from.
    pub read_from: ReadFrom,
}

/// Settings of one agent, the `[agent]` section of `causeway.toml`.
///
/// In a config file every field may be left out (the defaults are those of
/// [`AgentConfig::default`]); unknown keys are rejected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentConfig {
    /// Files, directories and glob patterns to tail. A directory means
    /// every `*.log`, `*.json`, `*.jsonl` and `*.ndjson` file directly in
    /// it; a pattern (`*`, `?`, `[...]`, `**` for any depth of
    /// directories: `/var/log/app/**/*.log`) every file it matches. Both
    /// are looked at again at every poll (and at once when a watched
    /// directory changes), so files created later are picked up. A path
    /// that does not exist yet is waited for.
    pub paths: Vec<PathBuf>,
    /// More sources, each with its own paths, format, service and start
    /// (`[[agent.sources]]`); [`Self::paths`], when given, is one more
    /// source of JSON lines read from the beginning.
    pub sources: Vec<SourceConfig>,
    /// The collector's base URL, such as `http://127.0.0.1:4318`; batches
    /// are sent to `POST {collector_url}/v1/ingest`.
    pub collector_url: String,
    /// Where the agent remembers how far each file's content (its stream)
    /// has been shipped and acknowledged, and which file is read as which
    /// stream. Written atomically after every acknowledged batch (and when
    /// a stream is named, before its lines are sent); a missing file means
    /// every file is read from its start and its lines sent again.
    pub checkpoint_path: PathBuf,
    /// The agent's name in each batch header, for diagnostics on the
    /// collector. Defaults to `agent@<hostname>`, the host's name.
    pub source: String,
    /// The most records sent in one batch.
    pub batch_max_records: usize,
    /// The largest batch body, in bytes. A single record larger than this
    /// is still sent, alone.
    pub batch_max_bytes: usize,
    /// The longest line read as a record, in bytes (without the newline).
    /// A longer line is kept as a malformed record holding its cut start.
    pub max_line_bytes: usize,
    /// How often files are checked for new lines, in milliseconds.
    pub poll_interval_ms: u64,
    /// The service name of lines that do not say which service wrote them.
    /// When unset, the file name without its extension is used.
    pub default_service: Option<String>,
    /// The bearer token sent to the collector (one of its `tokens`), when
    /// it asks for one.
    pub token: Option<String>,
    /// How batch bodies are sent: `gzip` or `none`.
    pub compression: Compression,
    /// The most bytes the dead-letter file (records the collector refused
    /// for good, next to the checkpoint) and its one older generation
    /// hold together.
    pub dead_letter_max_bytes: u64,
    /// Where `GET /status` (JSON) and `GET /metrics` (Prometheus) are
    /// served; loopback only (port 0: a free port).
    pub status_addr: SocketAddr,
    /// The most bytes standard input (`causeway agent -`) is spooled on
    /// disk ahead of what the collector acknowledged; past it, stdin is
    /// read no further until the spool is shipped.
    pub stdin_buffer_bytes: u64,
    /// Where `POST /v1/push` takes NDJSON from local processes (loopback
    /// only); unset: no push receiver.
    pub push_addr: Option<SocketAddr>,
    /// The most bytes pushed lines are spooled on disk ahead of what the
    /// collector acknowledged; past it a push is answered 503.
    pub push_buffer_bytes: u64,
}

/// Where a default agent ships: the collector's default address.
const DEFAULT_COLLECTOR_URL: &str = "http://127.0.0.1:4318";
/// A default agent's checkpoint, in the working directory.
const DEFAULT_CHECKPOINT_PATH: &str = "causeway-agent.checkpoint.json";

/// The status endpoint's default port, next to the query API's 8686.
const DEFAULT_STATUS_PORT: u16 = 8687;
/// The dead-letter file's default bound: 64 MiB.
const DEFAULT_DEAD_LETTER_MAX_BYTES: u64 = 64 * 1024 * 1024;

fn default_source() -> String {
    format!("agent@{}", hostname())
}

fn default_batch_max_records() -> usize {
    1000
}

fn default_batch_max_bytes() -> usize {
    4 * 1024 * 1024
}

fn default_max_line_bytes() -> usize {
    256 * 1024
}

fn default_poll_interval_ms() -> u64 {
    200
}

/// The host name from the kernel, falling back to `localhost`.
fn hostname() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .chain(std::env::var("HOSTNAME").ok())
        .map(|name| name.trim().to_owned())
        .find(|name| !name.is_empty() && !name.chars().any(char::is_control))
        .unwrap_or_else(|| "localhost".to_owned())
}

impl Default for AgentConfig {
    /// Every default: no paths yet, the collector on its default loopback
    /// address, the checkpoint in the working directory.
    fn default() -> Self {
        Self::new(DEFAULT_COLLECTOR_URL, DEFAULT_CHECKPOINT_PATH)
    }
}

impl AgentConfig {
    /// A configuration with every default and no paths yet.
    pub fn new(collector_url: impl Into<String>, checkpoint_path: impl Into<PathBuf>) -> Self {
        Self {
            paths: Vec::new(),
            sources: Vec::new(),
            collector_url: collector_url.into(),
            checkpoint_path: checkpoint_path.into(),
            source: default_source(),
            batch_max_records: default_batch_max_records(),
            batch_max_bytes: default_batch_max_bytes(),
            max_line_bytes: default_max_line_bytes(),
            poll_interval_ms: default_poll_interval_ms(),
            default_service: None,
            token: None,
            compression: Compression::Gzip,
            dead_letter_max_bytes: DEFAULT_DEAD_LETTER_MAX_BYTES,
            status_addr: SocketAddr::from(([127, 0, 0, 1], DEFAULT_STATUS_PORT)),
            stdin_buffer_bytes: DEFAULT_DEAD_LETTER_MAX_BYTES,
            push_addr: None,
            push_buffer_bytes: DEFAULT_DEAD_LETTER_MAX_BYTES,
        }
    }

    /// [`Self::poll_interval_ms`] as a duration.
    pub fn poll_interval(&self) -> Duration {
        Duration::from_millis(self.poll_interval_ms)
    }

    /// The URL batches are posted to.
    pub fn ingest_url(&self) -> String {
        format!("{}/v1/ingest", self.collector_url.trim_end_matches('/'))
    }

    /// Whether a source reads standard input (a path `-`).
    pub fn reads_stdin(&self) -> bool {
        self.all_sources()
            .iter()
            .any(|s| s.paths.iter().any(|p| p.as_os_str() == "-"))
    }

    /// Every source: [`Self::paths`] first (JSON lines, from the
    /// beginning), then [`Self::sources`].
    pub fn all_sources(&self) -> Vec<SourceConfig> {
        let mut all = Vec::with_capacity(self.sources.len() + 1);
        if !self.paths.is_empty() {
            all.push(SourceConfig {
                paths: self.paths.clone(),
                ..SourceConfig::default()
            });
        }
        all.extend(self.sources.iter().cloned());
        all
    }

    /// Checks the settings that `run` would otherwise trip over later.
    pub fn validate(&self) -> Result<(), AgentError> {
        if self.paths.is_empty() && self.sources.is_empty() && self.push_addr.is_none() {
            return Err(AgentError::Config {
                field: "paths",
                reason: "no file or directory to tail".to_owned(),
            });
        }
        self.validate_settings()
    }

    /// Everything [`Self::validate`] checks but the paths, which a command
    /// line may still supply (for checking a config file on its own).
    pub fn validate_settings(&self) -> Result<(), AgentError> {
        let invalid = |field: &'static str, reason: &str| AgentError::Config {
            field,
            reason: reason.to_owned(),
        };
        let url = reqwest::Url::parse(&self.ingest_url())
            .map_err(|e| invalid("collector_url", &format!("not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(invalid("collector_url", "the scheme must be http or https"));
        }
        if self.batch_max_records == 0 {
            return Err(invalid("batch_max_records", "must be at least 1"));
        }
        if self.batch_max_bytes == 0 {
            return Err(invalid("batch_max_bytes", "must be at least 1"));
        }
        if self.max_line_bytes == 0 {
            return Err(invalid("max_line_bytes", "must be at least 1"));
        }
        if self.poll_interval_ms == 0 {
            return Err(invalid("poll_interval_ms", "must be at least 1"));
        }
        for path in self.all_sources().iter().flat_map(|s| s.paths.iter()) {
            let text = path.to_string_lossy();
            if text.contains(['*', '?', '['])
                && let Err(e) = glob::Pattern::new(&text)
            {
                return Err(invalid("paths", &format!("{text:?}: {e}")));
            }
        }
        for source in &self.sources {
            if source.paths.is_empty() {
                return Err(invalid("sources", "a source has no paths"));
            }
            LineParser::new(&source.parse)
                .map_err(|reason| invalid("sources", &format!("{:?}: {reason}", source.paths)))?;
            if let Some(start) = &source.parse.multiline_start {
                regex::Regex::new(start).map_err(|e| {
                    invalid(
                        "sources",
                        &format!("{:?}: multiline_start: {e}", source.paths),
                    )
                })?;
            }
            if source
                .service
                .as_deref()
                .is_some_and(|s| s.is_empty() || s.chars().any(char::is_control))
            {
                return Err(invalid(
                    "sources",
                    "a service must be non-empty, without control characters",
                ));
            }
        }
        if !self.status_addr.ip().is_loopback() {
            return Err(invalid(
                "status_addr",
                "must be a loopback address (the status has no authentication)",
            ));
        }
        if self.push_addr.is_some_and(|addr| !addr.ip().is_loopback()) {
            return Err(invalid(
                "push_addr",
                "must be a loopback address (the receiver has no authentication)",
            ));
        }
        if self.push_buffer_bytes < 4096 {
            return Err(invalid("push_buffer_bytes", "must be at least 4096"));
        }
        if self.stdin_buffer_bytes < 4096 {
            return Err(invalid("stdin_buffer_bytes", "must be at least 4096"));
        }
        if self.dead_letter_max_bytes < 4096 {
            return Err(invalid("dead_letter_max_bytes", "must be at least 4096"));
        }
        if self.checkpoint_path.file_name().is_none() {
            return Err(invalid("checkpoint_path", "must name a file"));
        }
        if self
            .token
            .as_deref()
            .is_some_and(|token| token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()))
        {
            // The reason never repeats the token.
            return Err(invalid("token", "must be visible ASCII without spaces"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_fill_what_a_config_file_leaves_out() {
        let config: AgentConfig = serde_json::from_str(
            r#"{"paths":["/var/log/app"],"collector_url":"http://127.0.0.1:4318/","checkpoint_path":"/tmp/cp.json"}"#,
        )
        .unwrap();
        assert_eq!(config.batch_max_records, 1000);
        assert_eq!(config.batch_max_bytes, 4 * 1024 * 1024);
        assert_eq!(config.max_line_bytes, 256 * 1024);
        assert_eq!(config.poll_interval(), Duration::from_millis(200));
        assert!(config.source.starts_with("agent@"), "{}", config.source);
        assert_eq!(config.ingest_url(), "http://127.0.0.1:4318/v1/ingest");
        config.validate().unwrap();
    }

    #[test]
    fn an_empty_section_is_every_default_and_round_trips() {
        let config: AgentConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(config, AgentConfig::default());
        assert_eq!(config.collector_url, "http://127.0.0.1:4318");
        assert_eq!(
            config.checkpoint_path,
            PathBuf::from("causeway-agent.checkpoint.json")
        );
        let written = serde_json::to_string(&config).unwrap();
        assert_eq!(
            serde_json::from_str::<AgentConfig>(&written).unwrap(),
            config
        );
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let err = serde_json::from_str::<AgentConfig>(
            r#"{"collector_url":"http://x","checkpoint_path":"cp","poll_interval":5}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("poll_interval"), "{err}");
    }

    #[test]
    fn a_source_reads_its_format_flattened_and_refuses_unknown_keys() {
        let config: AgentConfig = serde_json::from_str(
            r#"{"sources":[{"paths":["/var/log/py"],"format":"regex","pattern":"(?P<message>.*)",
                "multiline_start":"^\\d","service":"py","read_from":"end"}]}"#,
        )
        .unwrap();
        let source = &config.sources[0];
        assert_eq!(source.parse.format, crate::formats::Format::Regex);
        assert_eq!(source.parse.multiline_timeout_ms, 1000);
        assert_eq!(source.read_from, ReadFrom::End);
        assert_eq!(source.service.as_deref(), Some("py"));
        config.validate().unwrap();
        assert_eq!(config.all_sources().len(), 1, "no paths: no default source");

        let err = serde_json::from_str::<AgentConfig>(
            r#"{"sources":[{"paths":["/x"],"fromat":"json"}]}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("fromat"), "{err}");

        let mut bad = config.clone();
        bad.sources[0].parse.pattern = None;
        let err = bad.validate().unwrap_err().to_string();
        assert!(err.contains("sources") && err.contains("pattern"), "{err}");
        bad.sources[0].parse.format = crate::formats::Format::Json;
        bad.sources[0].parse.multiline_start = Some("(".into());
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("multiline_start")
        );
        bad.sources[0].parse.multiline_start = None;
        bad.sources[0].paths.clear();
        assert!(bad.validate().unwrap_err().to_string().contains("no paths"));
    }

    #[test]
    fn validation_names_the_bad_field() {
        let mut config = AgentConfig::new("not a url", "/tmp/cp.json");
        config.paths.push("/var/log/app".into());
        assert!(matches!(
            config.validate(),
            Err(AgentError::Config {
                field: "collector_url",
                ..
            })
        ));
        config.collector_url = "http://127.0.0.1:4318".into();
        config.batch_max_records = 0;
        assert!(matches!(
            config.validate(),
            Err(AgentError::Config {
                field: "batch_max_records",
                ..
            })
        ));
        config.batch_max_records = 1;
        config.paths.clear();
        assert!(matches!(
            config.validate(),
            Err(AgentError::Config { field: "paths", .. })
        ));
    }
}
