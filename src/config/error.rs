//! [`ConfigError`], and how every error becomes one line: `file:line:col: key: what was
//! expected, found what`, without a password, at most [`ECHO_MAX_CHARS`] characters of it
//! quoted from the file.

use std::fmt;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde_path_to_error::Segment;
use toml::de::DeTable;
use toml::Spanned;

use super::kinds::DATETIME_KEY;
use crate::redact::redact;

/// A place in the config file: `path:line:column`, both 1-based, the column in characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The config file's absolute path.
    pub path: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, counted in characters (a tab counts as one).
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.path.display(), self.line, self.column)
    }
}

/// Why a config could not be loaded. Every variant means exit code 2.
///
/// The message is one line, lower-case, without a final period, and never contains a
/// database password.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read (missing, a folder, no permission).
    ///
    /// The I/O error is part of the message rather than a `source()`, so `{:#}` prints it once.
    #[error("cannot read config file {}: {error}", path.display())]
    Read {
        /// The config file's absolute path (or the path as given if it could not be made
        /// absolute).
        path: PathBuf,
        /// What the operating system said.
        error: io::Error,
    },
    /// The file was read but is not a valid config: TOML syntax, an unknown key, a wrong
    /// type, a value out of range, a missing key, an unset variable, a bad glob or URL.
    #[error("{location}: {message}")]
    Invalid {
        /// Where: the offending value, key or table header (`1:1` for a missing table).
        location: Location,
        /// The dotted key (`sources[1].include[0]`), when there is one.
        key: Option<String>,
        /// The rest of the line after the location, starting with the key.
        message: String,
    },
}

/// Most characters of a message that quotes what the user wrote: a value of megabytes (a
/// runaway `${VAR}`, say) must not become an error line of megabytes.
pub const ECHO_MAX_CHARS: usize = 500;

/// `message` cut to [`ECHO_MAX_CHARS`] characters, saying how long it was.
pub fn cap_echo(message: &str) -> String {
    match message.char_indices().nth(ECHO_MAX_CHARS) {
        None => message.to_owned(),
        Some((cut, _)) => format!("{}… (cut: {} bytes in all)", &message[..cut], message.len()),
    }
}

/// The config file being read: its name and text, to turn byte offsets into errors.
pub(super) struct File<'a> {
    pub path: &'a Path,
    pub text: &'a str,
}

impl File<'_> {
    /// An error at byte `offset` whose message is used as is (after redaction).
    pub fn at(&self, offset: usize, key: Option<&str>, message: &str) -> ConfigError {
        let (line, column) = line_column(self.text, offset);
        ConfigError::Invalid {
            location: Location {
                path: self.path.to_owned(),
                line,
                column,
            },
            key: key.map(str::to_owned),
            message: cap_echo(&redact(message).replace(['\r', '\n'], " ")),
        }
    }

    /// An error about `key` at `span`: `key: detail`.
    pub fn about(&self, span: Range<usize>, key: &str, detail: impl fmt::Display) -> ConfigError {
        self.at(span.start, Some(key), &format!("{key}: {detail}"))
    }

    /// The text is not TOML.
    pub fn syntax(&self, e: &toml::de::Error) -> ConfigError {
        let span = e.span().unwrap_or(0..0);
        let mut message = format!("TOML syntax error: {}", e.message());
        if e.message() == "duplicate key" {
            if let Some(key) = self.text.get(span.clone()).filter(|k| !k.is_empty()) {
                message = format!("TOML syntax error: duplicate key `{key}`");
            }
        }
        self.at(span.start, None, &message)
    }

    /// An error while deserialising: `toml` knows where, `serde_path_to_error` which key.
    ///
    /// Values say what they expected themselves (`kinds`); serde's own messages for a key
    /// that is not allowed or is missing are reworded as logbelt says them.
    pub fn serde(&self, e: serde_path_to_error::Error<toml::de::Error>) -> ConfigError {
        let mut keys: Vec<String> = Vec::new();
        for segment in e.path() {
            match segment {
                Segment::Seq { index } => match keys.last_mut() {
                    Some(last) => *last += &format!("[{index}]"),
                    None => keys.push(format!("[{index}]")),
                },
                Segment::Map { key } => keys.push(key.clone()),
                Segment::Enum { variant } => keys.push(variant.clone()),
                Segment::Unknown => keys.push("?".to_owned()),
            }
        }
        let e = e.into_inner();
        let offset = e.span().map_or(0, |span| span.start);
        let message = e.message();
        if let Some(rest) = message.strip_prefix("unknown field") {
            // The path ends at the unknown key: report it against its table.
            let unknown = keys.pop();
            let parent = keys.join(".");
            let detail = if unknown.as_deref() == Some(DATETIME_KEY) {
                // `pipeline = 1979-05-27`: `toml` hands a date-time over as a table.
                "expected a table, found a date-time".to_owned()
            } else {
                format!("unknown key{rest}")
            };
            return match parent.as_str() {
                "" => self.at(offset, None, &detail),
                _ => self.at(offset, Some(&parent), &format!("{parent}: {detail}")),
            };
        }
        let field = message
            .strip_prefix("missing field `")
            .and_then(|rest| rest.strip_suffix('`'));
        if let Some(field) = field {
            keys.push(field.to_owned());
            let key = keys.join(".");
            return self.at(offset, Some(&key), &format!("{key} is required"));
        }
        match keys.join(".") {
            key if key.is_empty() => self.at(offset, None, message),
            key => self.at(offset, Some(&key), &format!("{key}: {message}")),
        }
    }
}

/// One step of a key's path in the file: a table's key or an array's index.
#[derive(Debug, Clone, Copy)]
pub(super) enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

/// Where the value at `path` is written, if it is.
pub(super) fn span_of(root: &Spanned<DeTable<'_>>, path: &[Step<'_>]) -> Option<Range<usize>> {
    let Some((Step::Key(first), rest)) = path.split_first() else {
        return None;
    };
    let mut value = root.get_ref().get(*first)?;
    for step in rest {
        value = match *step {
            Step::Key(key) => value.get_ref().get(key)?,
            Step::Index(i) => value.get_ref().get(i)?,
        };
    }
    Some(value.span())
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
pub(super) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = before.bytes().filter(|b| *b == b'\n').count() + 1;
    (line, before[line_start..].chars().count() + 1)
}
