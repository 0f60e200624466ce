//! Glob patterns: `include` and `exclude` entries, expanded, checked, made absolute.

use std::fmt;
use std::path::Path;

use globset::{Glob, GlobBuilder, GlobSetBuilder};
use serde::de::{self, Deserializer};

use super::{starts_with_tilde, text, tilde_message, with_context};
use crate::config::kinds::{read, Found, Item, Kind, List};
use crate::config::Exclude;

/// One `include` entry: expanded, checked, made absolute.
pub(in crate::config) struct IncludePattern;

impl Kind for IncludePattern {
    type Value = String;

    fn expected(f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a glob pattern string")
    }

    fn scalar<E: de::Error>(found: Found) -> Result<String, E> {
        let pattern = glob_text::<Self, E>(found)?;
        if starts_with_tilde(&pattern) {
            return Err(E::custom(tilde_message(&pattern)));
        }
        if let Some(problem) = double_star_problem(&pattern) {
            return Err(E::custom(format_args!(
                "invalid glob {pattern:?}: {problem}"
            )));
        }
        let absolute = absolutize(&pattern).map_err(E::custom)?;
        compile_glob(&absolute, &pattern).map_err(E::custom)?;
        Ok(absolute)
    }
}

impl Item for IncludePattern {
    const ARRAY: &'static str = "an array of glob pattern strings";
    const EMPTY: Option<&'static str> =
        Some("expected a non-empty array of glob patterns, found []");
}

/// One `exclude` entry: expanded, checked, made absolute if it is a path pattern (has a `/`).
pub(in crate::config) struct ExcludePattern;

impl Kind for ExcludePattern {
    type Value = (String, Glob);

    fn expected(f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a glob pattern string")
    }

    fn scalar<E: de::Error>(found: Found) -> Result<(String, Glob), E> {
        let pattern = glob_text::<Self, E>(found)?;
        let full = if pattern.contains('/') {
            if starts_with_tilde(&pattern) {
                return Err(E::custom(tilde_message(&pattern)));
            }
            absolutize(&pattern).map_err(E::custom)?
        } else {
            pattern.clone()
        };
        let glob = compile_glob(&full, &pattern).map_err(E::custom)?;
        Ok((full, glob))
    }
}

impl Item for ExcludePattern {
    const ARRAY: &'static str = "an array of glob pattern strings";
    const EMPTY: Option<&'static str> = None;
}

/// `sources[].exclude`, compiled into one set.
pub(in crate::config) fn exclude<'de, D: Deserializer<'de>>(d: D) -> Result<Exclude, D::Error> {
    let mut builder = GlobSetBuilder::new();
    let mut patterns = Vec::new();
    for (pattern, glob) in read::<List<ExcludePattern>, D>(d)? {
        builder.add(glob);
        patterns.push(pattern);
    }
    let set = builder.build().map_err(|e| {
        <D::Error as de::Error>::custom(format_args!("cannot compile the patterns: {e}"))
    })?;
    Ok(Exclude { set, patterns })
}

/// A glob pattern string, expanded and not empty.
fn glob_text<K: Kind, E: de::Error>(found: Found) -> Result<String, E> {
    match text::<K, E>(found)? {
        pattern if pattern.is_empty() => {
            Err(E::custom("expected a non-empty glob pattern, found \"\""))
        }
        pattern => Ok(pattern),
    }
}

/// Joins a relative glob to the config file's folder, escaping the folder's own glob
/// metacharacters (`[`, `*`, `{`, ...) so they match literally.
fn absolutize(pattern: &str) -> Result<String, String> {
    if Path::new(pattern).is_absolute() {
        return Ok(pattern.to_owned());
    }
    with_context(|cx| {
        let Some(base) = cx.base_dir.to_str() else {
            return Err(format!(
                "the config file's folder {:?} is not valid UTF-8, so the relative pattern {pattern:?} cannot be joined to it; write an absolute pattern",
                cx.base_dir
            ));
        };
        let mut relative = pattern;
        while let Some(rest) = relative.strip_prefix("./") {
            relative = rest.trim_start_matches('/');
        }
        Ok(format!(
            "{}/{relative}",
            globset::escape(base).trim_end_matches('/')
        ))
    })
}

/// Compiles one pattern as logbelt matches it: `*` and `?` stop at `/`.
fn compile_glob(pattern: &str, as_written: &str) -> Result<Glob, String> {
    GlobBuilder::new(pattern)
        .literal_separator(true)
        .build()
        .map_err(|e| format!("invalid glob {as_written:?}: {}", e.kind()))
}

/// `**` inside a path component (`logs/a**/x.log`): `globset` reads it as two `*`, which is
/// surely not what was meant.
fn double_star_problem(pattern: &str) -> Option<&'static str> {
    let mut chars = pattern.chars().peekable();
    let mut component = String::new();
    let mut components = Vec::new();
    while let Some(c) = chars.next() {
        match c {
            '[' => {
                // A class: `]` right after `[` or `[!` is a member, not the end.
                component.push_str("[]");
                if chars.peek() == Some(&'!') {
                    chars.next();
                }
                if chars.peek() == Some(&']') {
                    chars.next();
                }
                for c in chars.by_ref() {
                    if c == ']' {
                        break;
                    }
                }
            }
            '/' => components.push(std::mem::take(&mut component)),
            c => component.push(c),
        }
    }
    components.push(component);
    components
        .iter()
        .any(|c| c.contains("**") && c != "**")
        .then_some("`**` must be a whole path component, as in \"logs/**/*.jsonl\"")
}
