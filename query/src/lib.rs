//! The query daemon: searches records and reconstructs cross-service flows
//! over an HTTP JSON API.
//!
//! It opens the index read-only and never writes it; new commits from the
//! collector become visible within about a second. [`reconstruct`] is the
//! pure heart: records in, flow out.

mod alerts;
mod config;
mod error;
mod flow;
mod list;
mod openapi;
mod params;
mod server;
mod state;
mod tail;
mod topology;

pub use alerts::{
    AlertBook, AlertRule, AlertState, AlertView, Alerts, AlertsConfig, AlertsPage,
    MAX_SAMPLE_FLOWS, Notification, NotificationStatus, RuleKind, RuleResult, WebhookUrl, evaluate,
    run_alerts,
};
pub use config::QueryConfig;
pub use error::{QueryError, RequestError};
pub use flow::{
    Analysis, FlowContext, FlowSettings, analyze, detail, reconstruct, sort_records, summarize,
};
pub use list::FlowFilter;
pub use server::{route_paths, router, run};
pub use state::QueryState;
pub use topology::{
    Contract, Contracts, ContractsError, EdgeStats, EventTypeStats, Topology, TopologySettings,
};
