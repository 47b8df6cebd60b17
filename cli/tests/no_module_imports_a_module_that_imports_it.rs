//! Inside every workspace crate the modules form no circle: if `a` uses
//! `crate::b`, nothing `b` reaches uses `crate::a`. A module's `tests`
//! submodule and comments do not count; `lib.rs` and `main.rs`, which only
//! declare and re-export, are left out.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The names a module uses as `crate::name`, also inside `crate::{...}`.
fn used_modules(source: &str, modules: &BTreeSet<String>) -> BTreeSet<String> {
    let code: String = source
        .split("#[cfg(test)]\nmod tests")
        .next()
        .unwrap()
        .lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut used = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        let names: Vec<String> = if let Some(group) = rest.strip_prefix('{') {
            // The names at the group's top level: `crate::{a, b::{c, d}}`.
            let mut depth = 0;
            let mut top = String::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    _ if depth == 0 => top.push(c),
                    _ => {}
                }
            }
            top.split(',')
                .map(|item| item.trim().split("::").next().unwrap().to_owned())
                .collect()
        } else {
            vec![
                rest.chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect(),
            ]
        };
        used.extend(names.into_iter().filter(|name| modules.contains(name)));
    }
    used
}

/// Module -> modules it uses, for one crate's `src/*.rs`.
fn graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let files: Vec<_> = std::fs::read_dir(src)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "rs"))
        .collect();
    let modules: BTreeSet<String> = files
        .iter()
        .map(|p| p.file_stem().unwrap().to_str().unwrap().to_owned())
        .filter(|name| name != "lib" && name != "main")
        .collect();
    modules
        .iter()
        .map(|module| {
            let source = std::fs::read_to_string(src.join(format!("{module}.rs"))).unwrap();
            let mut used = used_modules(&source, &modules);
            used.remove(module);
            (module.clone(), used)
        })
        .collect()
}

/// A path of modules from `from` back to itself, if there is one.
fn circle_through(graph: &BTreeMap<String, BTreeSet<String>>, from: &str) -> Option<Vec<String>> {
    let mut stack = vec![vec![from.to_owned()]];
    let mut seen = BTreeSet::new();
    while let Some(path) = stack.pop() {
        let last = path.last().unwrap();
        for next in &graph[last] {
            if next == from {
                let mut circle = path.clone();
                circle.push(next.clone());
                return Some(circle);
            }
            if seen.insert(next.clone()) {
                let mut longer = path.clone();
                longer.push(next.clone());
                stack.push(longer);
            }
        }
    }
    None
}

#[test]
fn the_scanner_sees_plain_and_grouped_imports() {
    let modules: BTreeSet<String> = ["app", "ui", "tree", "layout"].map(String::from).into();
    let source = "//! see crate::tree\nuse crate::app::App;\nuse crate::{layout, ui::{self, draw}};\n\
                  #[cfg(test)]\nmod tests {\n    use crate::tree;\n}\n";
    let used = used_modules(source, &modules);
    assert_eq!(used, ["app", "layout", "ui"].map(String::from).into());
}

#[test]
fn a_circle_like_the_old_commands_and_demo_one_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
    write("main.rs", "mod commands;\nmod demo;\nmod shutdown;\n");
    write(
        "commands.rs",
        "use crate::shutdown::Shutdown;\nfn f() { crate::demo::run(); }\n",
    );
    write("demo.rs", "use crate::commands::{Up, bind};\n");
    write("shutdown.rs", "");
    let graph = graph(dir.path());
    let circle = circle_through(&graph, "demo").unwrap();
    assert_eq!(circle, ["demo", "commands", "demo"]);
    assert_eq!(circle_through(&graph, "shutdown"), None);
}

#[test]
fn no_crate_has_a_circle_of_modules() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let manifest: toml::Table =
        toml::from_str(&std::fs::read_to_string(root.join("Cargo.toml")).unwrap()).unwrap();
    let crates = manifest["workspace"]["members"].as_array().unwrap();
    assert!(crates.len() > 5, "{crates:?}");
    for krate in crates {
        let krate = krate.as_str().unwrap();
        let graph = graph(&root.join(krate).join("src"));
        for module in graph.keys() {
            if let Some(circle) = circle_through(&graph, module) {
                panic!(
                    "{krate}: modules import each other: {}",
                    circle.join(" -> ")
                );
            }
        }
    }
}
