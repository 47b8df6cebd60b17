//! causeway-agent: tails services' log files (found by path, directory or
//! glob; standard input and a loopback push receiver spooled to files
//! too) and ships their records to the collector, each indexed exactly
//! once.
//!
//! Each line (or a multiline record) becomes a [`causeway_model::Record`]
//! as its source's format says ([`LineParser`]; [`parse_line`] for JSON
//! lines, which go out as they are and are parsed by the collector with
//! that same function); records
//! are sent in versioned wire batches to `POST {collector_url}/v1/ingest`,
//! each record with its stream (a file's content, named by its fingerprint
//! and generation) and the offset just past it, so the collector drops one
//! it already indexed; a stream's offset is checkpointed only after the
//! collector has acknowledged the batch holding its lines. The daemon is [`run`]; its
//! thin `main` lives in the `causeway` binary.

mod checkpoint;
mod config;
mod daemon;
mod deadletter;
mod error;
mod formats;
mod longline;
mod push;
mod ship;
mod spool;
mod stats;
mod status;
mod stdin;
mod tail;
mod watch;

pub use causeway_model::lenient::parse_line;
pub use config::{AgentConfig, Compression, ReadFrom, SourceConfig};
pub use daemon::run;
pub use error::AgentError;
pub use formats::{Format, Joined, LineParser, Multiline, ParseSpec};
pub use stats::FileStatus;
