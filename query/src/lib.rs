//! The query daemon: searches records and reconstructs cross-service flows
//! over an HTTP JSON API.
//!
//! It opens the index read-only and never writes it; new commits from the
//! collector become visible within about a second. [`reconstruct`] is the
//! pure heart: records in, flow out.

mod config;
mod error;
mod flow;
mod server;
mod topology;

pub use config::QueryConfig;
pub use error::{QueryError, RequestError};
pub use flow::{
    Analysis, FlowContext, FlowSettings, analyze, detail, reconstruct, sort_records, summarize,
};
pub use server::{QueryState, router, run};
pub use topology::{
    Contract, Contracts, ContractsError, EdgeStats, EventTypeStats, Topology, TopologySettings,
};
