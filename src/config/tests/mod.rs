//! The config's tests: shared helpers here; every error class with its exact line in
//! [`errors`]; defaults, paths, the environment, redaction and exclusion in [`values`].

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::error::line_column;
use super::*;

const PATH: &str = "/tmp/x/logbelt.toml";

const MINIMAL: &str = r#"
[database]
url = "sqlite://logbelt.db"

[[sources]]
name = "app"
include = ["logs/*.jsonl"]
"#;

fn no_env() -> rules::Env {
    Box::new(|_| None)
}

fn load(text: &str) -> Result<Config, ConfigError> {
    parse(text, PathBuf::from(PATH), no_env())
}

fn load_with_env(text: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let vars: Vec<(String, OsString)> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), OsString::from(v)))
        .collect();
    let lookup = move |name: &str| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    parse(text, PathBuf::from(PATH), Box::new(lookup))
}

fn error(text: &str) -> String {
    match load(text) {
        Ok(config) => panic!("expected an error, got {config:?}"),
        Err(e) => e.to_string(),
    }
}

/// MINIMAL plus `extra` appended (new tables).
fn error_with(extra: &str) -> String {
    error(&format!("{MINIMAL}{extra}"))
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

mod errors;
mod values;
