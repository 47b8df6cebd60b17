//! The causeway terminal UI: a live list of flows and, for one flow, its
//! causal tree, both read from the query API over HTTP.
//!
//! It knows the query API and nothing else: no index, no collector, no
//! records on disk. State lives in `App`, input becomes an `Action`,
//! `App::update` changes the state and `ui::draw` only paints it; HTTP runs
//! on a background thread that reports back as `Fetched` messages. Every
//! string that came from the API goes through
//! [`causeway_model::strip_control`] before it reaches the screen.

mod action;
mod app;
mod client;
mod config;
mod error;
mod format;
mod layout;
mod runner;
mod terminal;
mod theme;
mod tree;
mod ui;
mod worker;

#[cfg(test)]
mod fixtures;

pub use {config::TuiConfig, error::TuiError, runner::run};
