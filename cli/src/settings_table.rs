//! Keeps README's settings table true: it must list exactly the keys the
//! config structs have, with their defaults, and every flag and variable it
//! names must exist on the command line, set together by one argument.
//! Tests only; it must not be imported by anything but `main`'s test build.

use std::collections::{BTreeMap, BTreeSet};

use clap::CommandFactory;
use serde_json::Value;

use crate::args::Cli;
use crate::config::{CausewayConfig, Listener};

const README: &str = include_str!("../../README.md");

/// One row of the table: default, flags, variables, as written.
#[derive(Debug)]
struct Row {
    default: String,
    flags: Vec<String>,
    variables: Vec<String>,
}

/// The `### Settings` section of the README.
fn settings_section() -> &'static str {
    let start = README
        .find("### Settings\n")
        .expect("README has a Settings section");
    let rest = &README[start + 1..];
    let end = rest
        .find("\n## ")
        .into_iter()
        .chain(rest.find("\n### "))
        .min();
    &rest[..end.unwrap_or(rest.len())]
}

/// The backticked items of a cell.
fn ticked(cell: &str) -> Vec<String> {
    cell.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

fn readme_rows() -> BTreeMap<String, Row> {
    let mut rows = BTreeMap::new();
    for line in settings_section().lines() {
        if !line.starts_with("| `") {
            continue;
        }
        let cells: Vec<&str> = line.trim_matches('|').split(" | ").map(str::trim).collect();
        assert!(cells.len() >= 4, "a settings row has too few cells: {line}");
        let key = cells[0].trim_matches('`').to_owned();
        let default = cells[1].trim_matches('`').to_owned();
        let flags = ticked(cells[2])
            .into_iter()
            .filter(|f| f.starts_with("--"))
            .collect();
        let row = Row {
            default,
            flags,
            variables: ticked(cells[3]),
        };
        assert!(rows.insert(key.clone(), row).is_none(), "{key} twice");
    }
    rows
}

/// A default as the README writes it (a TOML value, or `unset`).
fn render(value: &Value) -> String {
    match value {
        Value::Null => "unset".to_owned(),
        Value::String(text) => format!("{text:?}"),
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(render).collect();
            format!("[{}]", items.join(", "))
        }
        other => other.to_string(),
    }
}

fn flatten(prefix: &str, value: &Value, out: &mut BTreeMap<String, String>) {
    match value {
        Value::Object(fields) => {
            for (name, field) in fields {
                let key = if prefix.is_empty() {
                    name.clone()
                } else {
                    format!("{prefix}.{name}")
                };
                flatten(&key, field, out);
            }
        }
        leaf => {
            out.insert(prefix.to_owned(), render(leaf));
        }
    }
}

/// Every key of the full default configuration with its default.
fn default_keys() -> BTreeMap<String, String> {
    let value = serde_json::to_value(CausewayConfig::default()).expect("the config serializes");
    let mut keys = BTreeMap::new();
    flatten("", &value, &mut keys);
    // Host-dependent: the README says what it is made of.
    let source = keys.get_mut("agent.source").expect("agent.source exists");
    assert!(source.starts_with("\"agent@"), "{source}");
    *source = "\"agent@<hostname>\"".to_owned();
    keys
}

/// Every argument of every subcommand: (long flag, variable).
fn arguments() -> BTreeSet<(Option<String>, Option<String>)> {
    let cli = Cli::command();
    let mut found = BTreeSet::new();
    let commands = std::iter::once(&cli).chain(cli.get_subcommands());
    for command in commands {
        for arg in command.get_arguments() {
            found.insert((
                arg.get_long().map(|long| format!("--{long}")),
                arg.get_env()
                    .and_then(|env| env.to_str())
                    .map(str::to_owned),
            ));
        }
    }
    found
}

/// Every flag's help texts, across the subcommands that have it.
fn flag_help() -> BTreeMap<String, String> {
    let cli = Cli::command();
    let mut help: BTreeMap<String, String> = BTreeMap::new();
    for command in std::iter::once(&cli).chain(cli.get_subcommands()) {
        for arg in command.get_arguments() {
            if let (Some(long), Some(text)) = (arg.get_long(), arg.get_help()) {
                let entry = help.entry(format!("--{long}")).or_default();
                entry.push_str(&text.to_string());
                entry.push('\n');
            }
        }
    }
    help
}

#[test]
fn the_readme_lists_every_key_with_its_default() {
    let rows = readme_rows();
    let documented: BTreeMap<String, String> = rows
        .iter()
        .map(|(key, row)| (key.clone(), row.default.clone()))
        .collect();
    assert_eq!(documented, default_keys());
}

#[test]
fn every_flag_and_variable_the_readme_names_exists_and_sets_that_key() {
    let arguments = arguments();
    let flags: BTreeSet<&str> = arguments.iter().filter_map(|(f, _)| f.as_deref()).collect();
    let help = flag_help();
    for (key, row) in readme_rows() {
        for flag in &row.flags {
            assert!(flags.contains(flag.as_str()), "{key}: no flag {flag}");
            // Each flag's help names the keys it sets.
            let text = help.get(flag).map_or("", String::as_str);
            assert!(
                text.contains(&format!("`{key}`")),
                "{key}: the help of {flag} does not name it: {text}"
            );
        }
        for variable in &row.variables {
            let flag = arguments
                .iter()
                .find(|(_, env)| env.as_deref() == Some(variable))
                .and_then(|(flag, _)| flag.clone());
            let flag = flag.unwrap_or_else(|| panic!("{key}: no variable {variable}"));
            assert!(
                row.flags.contains(&flag),
                "{key}: {variable} belongs to {flag}, which the row does not name"
            );
        }
    }
}

/// The listener errors name a flag and a variable of their own; they must
/// be the ones the command line and the README give that key.
#[test]
fn each_listener_names_the_flag_and_variable_that_set_it() {
    let rows = readme_rows();
    for listener in Listener::ALL {
        let (flag, variable) = listener.flag_and_variable();
        let row = &rows[listener.setting()];
        assert_eq!(row.flags, [flag], "{}", listener.setting());
        assert_eq!(row.variables, [variable], "{}", listener.setting());
    }
}

#[test]
fn every_variable_of_the_command_line_is_in_the_readme() {
    let section = settings_section();
    let documented: BTreeSet<String> = readme_rows()
        .into_values()
        .flat_map(|row| row.variables)
        .collect();
    for (_, variable) in arguments() {
        let Some(variable) = variable else { continue };
        // The two global options are not keys of the file: the section's
        // text names them.
        if variable == "CAUSEWAY_CONFIG" || variable == "CAUSEWAY_LOG_FORMAT" {
            assert!(
                section.contains(&variable),
                "{variable} is not in\n{section}"
            );
        } else {
            assert!(documented.contains(&variable), "{variable} is undocumented");
        }
    }
}

#[test]
fn the_readme_example_file_is_a_valid_configuration() {
    let section = settings_section();
    let start = section
        .find("```toml\n")
        .expect("the Settings section has an example file")
        + "```toml\n".len();
    let end = section[start..].find("```").expect("the example ends") + start;
    let config = CausewayConfig::from_toml(&section[start..end]).unwrap();
    config.validate().unwrap();
    assert_ne!(config, CausewayConfig::default());
}
