//! The one error type the TUI returns to its caller. It names what was
//! being attempted; it does not carry fetch failures, which are shown on
//! screen and retried instead of ending the program.

use std::io;

/// Why the terminal UI could not start or had to stop.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TuiError {
    /// The query API base URL could not be used.
    #[error("invalid query API URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    /// A setting is unusable.
    #[error("invalid tui setting `{field}`: {reason}")]
    Config { field: &'static str, reason: String },
    /// The HTTP client could not be built.
    #[error("could not build the HTTP client")]
    HttpClient(#[source] reqwest::Error),
    /// The background thread that fetches from the query API could not start.
    #[error("could not start the fetch thread")]
    Spawn(#[source] io::Error),
    /// The background fetch thread ended while the UI was running.
    #[error("the fetch thread stopped unexpectedly")]
    WorkerStopped,
    /// The terminal refused an operation.
    #[error("terminal error while trying to {action}")]
    Terminal {
        action: &'static str,
        #[source]
        source: io::Error,
    },
}
