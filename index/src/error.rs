//! The one error type of the index crate.

use std::path::PathBuf;

/// What went wrong opening, writing or searching the index.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("no causeway index at {path} (start the collector first)")]
    Missing { path: PathBuf },
    #[error("index at {path} has schema version {found}, this build reads version {expected}")]
    SchemaVersion {
        path: PathBuf,
        found: u32,
        expected: u32,
    },
    #[error("index I/O at {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid query: {0}")]
    Query(String),
    #[error("stored document is not a record: {0}")]
    Source(String),
    #[error("{0}")]
    Settings(String),
    #[error("index internal error: {0}")]
    Internal(String),
    #[error(transparent)]
    Tantivy(#[from] tantivy::TantivyError),
}
