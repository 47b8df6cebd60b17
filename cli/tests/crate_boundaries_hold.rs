//! The crate boundaries of DESIGN.md, checked on `cargo metadata`: each
//! crate depends only on the workspace crates it may, and none pulls in a
//! library it must stay free of (model without tokio or tantivy, the tui
//! without the index, ...). Only normal (non-dev) dependencies count.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use serde_json::Value;

/// (crate, workspace crates it may depend on directly)
const ALLOWED: [(&str, &[&str]); 11] = [
    ("causeway-model", &[]),
    ("causeway-server", &["causeway-model"]),
    ("causeway-middleware", &["causeway-model"]),
    ("causeway-index", &["causeway-model"]),
    ("causeway-agent", &["causeway-model"]),
    (
        "causeway-collector",
        &["causeway-model", "causeway-index", "causeway-server"],
    ),
    (
        "causeway-query",
        &["causeway-model", "causeway-index", "causeway-server"],
    ),
    ("causeway-tui", &["causeway-model"]),
    // Benchmarks write and read the index as the collector and query do,
    // time query's phases in-process, and reach the daemons over HTTP only.
    (
        "causeway-bench",
        &["causeway-model", "causeway-index", "causeway-query"],
    ),
    (
        "causeway-orders",
        &["causeway-middleware", "causeway-model"],
    ),
    (
        "causeway",
        &[
            "causeway-model",
            "causeway-middleware",
            "causeway-index",
            "causeway-server",
            "causeway-agent",
            "causeway-collector",
            "causeway-query",
            "causeway-tui",
            "causeway-orders",
        ],
    ),
];

/// (crate, packages that must not appear anywhere in its dependency tree)
const FORBIDDEN: [(&str, &[&str]); 7] = [
    (
        "causeway-model",
        &[
            "tokio",
            "tantivy",
            "hyper",
            "axum",
            "reqwest",
            "lapin",
            "async-nats",
            "rdkafka",
            "opentelemetry",
        ],
    ),
    (
        "causeway-tui",
        &[
            "tantivy",
            "causeway-index",
            "causeway-collector",
            "causeway-query",
            "axum",
        ],
    ),
    ("causeway-query", &["causeway-collector", "causeway-agent"]),
    ("causeway-collector", &["causeway-query", "causeway-agent"]),
    ("causeway-middleware", &["tantivy", "causeway-index"]),
    ("causeway-agent", &["tantivy", "causeway-index"]),
    (
        "causeway-server",
        &[
            "tantivy",
            "causeway-index",
            "causeway-collector",
            "causeway-query",
        ],
    ),
];

struct Graph {
    /// package id -> package name
    names: BTreeMap<String, String>,
    /// package id -> ids of its normal dependencies
    normal: BTreeMap<String, Vec<String>>,
    /// workspace crate name -> package id
    members: BTreeMap<String, String>,
}

fn graph() -> Graph {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--locked"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: Value = serde_json::from_slice(&output.stdout).unwrap();
    let names: BTreeMap<String, String> = metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["id"].as_str().unwrap().to_owned(),
                p["name"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let members = metadata["workspace_members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| {
            let id = id.as_str().unwrap().to_owned();
            (names[&id].clone(), id)
        })
        .collect();
    let normal = metadata["resolve"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|node| {
            let deps = node["deps"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|dep| {
                    dep["dep_kinds"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|k| k["kind"].is_null() || k["kind"] == "build")
                })
                .map(|dep| dep["pkg"].as_str().unwrap().to_owned())
                .collect();
            (node["id"].as_str().unwrap().to_owned(), deps)
        })
        .collect();
    Graph {
        names,
        normal,
        members,
    }
}

impl Graph {
    fn direct_workspace_deps(&self, member: &str) -> BTreeSet<String> {
        self.normal[&self.members[member]]
            .iter()
            .map(|id| self.names[id].clone())
            .filter(|name| self.members.contains_key(name))
            .collect()
    }

    fn all_deps(&self, member: &str) -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![self.members[member].clone()];
        while let Some(id) = stack.pop() {
            for dep in &self.normal[&id] {
                if seen.insert(dep.clone()) {
                    stack.push(dep.clone());
                }
            }
        }
        seen.into_iter().map(|id| self.names[&id].clone()).collect()
    }
}

#[test]
fn every_workspace_crate_depends_only_on_what_it_may() {
    let graph = graph();
    let listed: BTreeSet<&str> = ALLOWED.iter().map(|(name, _)| *name).collect();
    let members: BTreeSet<&str> = graph.members.keys().map(String::as_str).collect();
    assert_eq!(
        listed, members,
        "a crate was added or removed: state its boundaries here"
    );
    for (name, allowed) in ALLOWED {
        let allowed: BTreeSet<String> = allowed.iter().map(|s| (*s).to_owned()).collect();
        let actual = graph.direct_workspace_deps(name);
        let extra: Vec<_> = actual.difference(&allowed).collect();
        assert!(extra.is_empty(), "{name} may not depend on {extra:?}");
    }
}

#[test]
fn no_crate_pulls_in_what_it_must_stay_free_of() {
    let graph = graph();
    for (name, forbidden) in FORBIDDEN {
        let deps = graph.all_deps(name);
        let found: Vec<_> = forbidden.iter().filter(|f| deps.contains(**f)).collect();
        assert!(
            found.is_empty(),
            "{name} must not depend (even indirectly) on {found:?}"
        );
    }
}
