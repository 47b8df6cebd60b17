//! The shared input of causeway's benchmarks: [`Corpus`], a seeded,
//! deterministic stream of realistic records (order, signup and return
//! sagas over fifteen services, with retries, dead letters, compensations
//! and stack traces), and [`FlowSample`], the flow keys it finished, for
//! lookups.
//!
//! The `causeway-bench` binary writes the corpus as NDJSON, builds an index
//! from it through the collector's write path and times flow lookups; other
//! benchmarks take the corpus from here so that every figure is measured on
//! the same records. Nothing here reads a clock or does I/O.

mod catalogue;
mod corpus;
mod flow;

pub use corpus::{Corpus, CorpusConfig, FlowSample, SampledFlow};
pub use flow::FLOW_EVENTS;
