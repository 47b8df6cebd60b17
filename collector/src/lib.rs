//! The collector daemon: receives record batches over HTTP, makes them
//! durable in the tantivy index and acknowledges only then.
//!
//! It is a library with a thin main: [`run`] serves on a listener the
//! caller bound, [`router`] builds the HTTP app for in-process tests. The
//! collector never answers queries; query reads the index it writes.

mod config;
mod error;
mod indexer;
mod server;

pub use config::CollectorConfig;
pub use error::CollectorError;
pub use indexer::{Indexer, IndexerThread};
pub use server::{IngestReply, router, run};
