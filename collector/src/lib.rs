//! The collector daemon: receives record batches over HTTP, makes them
//! durable in a write-ahead log and acknowledges then, and indexes them
//! with tantivy right after.
//!
//! It takes OpenTelemetry's OTLP too, over HTTP and gRPC (`otlp`).
//!
//! It is a library with a thin main: [`run`] serves on the listeners the
//! caller bound (HTTP, and gRPC for OTLP), [`router`] and [`grpc_router`]
//! build the apps for in-process tests. The collector never answers
//! queries; query reads the index it writes.

mod config;
mod error;
mod indexer;
mod metrics;
mod otlp;
mod server;
mod wal;

pub use config::{CollectorConfig, Retention};
pub use error::CollectorError;
pub use indexer::{Indexer, IndexerThread};
pub use server::{IngestReply, Listeners, grpc_router, router, run};
