//! The agent's start-up error type: what can stop [`crate::run`].
//!
//! Only conditions the agent cannot work around end up here (bad settings,
//! an unreadable or unwritable checkpoint at start, a file task that died).
//! What goes wrong with one request is kept apart: a collector that is down
//! or refuses a batch is an attempt to retry (`ship::Attempt`), logged and
//! never returned, so this enum must not grow a variant that would make
//! `run` drop records.

use std::path::PathBuf;

/// Why the agent stopped.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// A setting is unusable.
    #[error("invalid agent setting `{field}`: {reason}")]
    Config { field: &'static str, reason: String },
    /// The checkpoint exists but could not be read.
    #[error("cannot read the checkpoint {}: {source}", path.display())]
    CheckpointRead {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The checkpoint is not a checkpoint this build understands.
    #[error("the checkpoint {} is not valid: {reason}", path.display())]
    CheckpointInvalid { path: PathBuf, reason: String },
    /// The checkpoint could not be written (checked once at start, so that a
    /// read-only or missing directory is reported before anything is sent).
    #[error("cannot write the checkpoint {}: {source}", path.display())]
    CheckpointWrite {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {source}")]
    HttpClient { source: reqwest::Error },
    /// A listener the settings ask for could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    /// A spool file could not be opened.
    #[error("cannot open the spool {}: {source}", path.display())]
    Spool {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A blocking file task panicked or was cancelled.
    #[error("the file reading task failed: {source}")]
    Worker { source: tokio::task::JoinError },
}
