//! The config file: parsing `logbelt.toml`, validating it, and the defaults.
//!
//! Loading happens in two steps, as in ripgrep's `lowargs` → `hiargs`: the TOML text is
//! deserialised into private `Raw*` structs that mirror the file (every table
//! `deny_unknown_fields`, every value wrapped in [`Spanned`] so it knows where it came from),
//! then validated into the public [`Config`] that the rest of logbelt reads. Nothing outside
//! this module sees a raw value, a span or a default.
//!
//! Every error is one line naming the file, the 1-based line and column, the key and what
//! was expected (`/etc/logbelt.toml:7:14: pipeline.batch_rows: expected an integer from 1 to
//! 100000, found 0`), and every error is an exit-code-2 error for the binary. Error messages
//! never show a database password: they pass through [`redact`].
//!
//! Rules a user may trip over:
//! - `${NAME}` in any string value is replaced by the environment variable `NAME`; `$$` is a
//!   literal `$`; any other `$` is an error, as is a variable that is not set.
//! - Relative `include` globs, relative `exclude` globs that contain a `/`, and relative
//!   `sqlite://` paths are relative to the folder of the config file (not the working
//!   directory). `~` is **not** expanded: a pattern or path starting with `~/` is rejected with
//!   a hint to write `${HOME}/...`.
//! - `*` and `?` never match `/`; `**` (a whole path component) matches any number of folders.
//!
//! This module does no I/O besides reading the file and asking for the hostname: it never
//! touches the database or the log files.

use std::ffi::OsString;
use std::fmt;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};
use serde::Deserialize;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

// ---------------------------------------------------------------------------------------------
// Defaults
// ---------------------------------------------------------------------------------------------

/// Default `database.writers`: PostgreSQL connections committing batches in parallel.
///
/// More writers raise throughput until the database's own ceiling; each one is a connection
/// held open for the whole run. SQLite always uses one writer, whatever this says.
pub const DEFAULT_WRITERS: usize = 2;

/// Default `database.busy_timeout_ms`: how long SQLite waits on a locked database.
///
/// When another process holds the write lock longer than this, the commit fails with a
/// transient error and is retried after [`DEFAULT_RETRY_INITIAL_BACKOFF_MS`]; nothing is lost.
pub const DEFAULT_BUSY_TIMEOUT_MS: u64 = 5_000;

/// Default `database.retry_initial_backoff_ms`: the first delay after a transient database
/// error (connection lost, lock timeout, serialization failure).
///
/// Each further failure doubles the delay up to [`DEFAULT_RETRY_MAX_BACKOFF_MS`]. While the
/// writer waits, the queues in front of it fill and the readers stop reading.
pub const DEFAULT_RETRY_INITIAL_BACKOFF_MS: u64 = 100;

/// Default `database.retry_max_backoff_ms`: the cap of the retry delay.
///
/// A database outage is retried forever at this pace; a recovered database is noticed at
/// most this long after it comes back.
pub const DEFAULT_RETRY_MAX_BACKOFF_MS: u64 = 30_000;

/// Default `sources[].start_at` for a file that has no committed position yet.
pub const DEFAULT_START_AT: StartAt = StartAt::Beginning;

/// Default `pipeline.batch_rows`: the most rows committed in one transaction.
///
/// A batch is committed when it reaches this many rows or when
/// [`DEFAULT_FLUSH_INTERVAL_MS`] has passed, whichever comes first. Bigger batches amortise
/// the commit; the database layer splits a batch into statements under its bind-parameter
/// cap, so this is not limited by it.
pub const DEFAULT_BATCH_ROWS: usize = 5_000;

/// Default `pipeline.flush_interval_ms`: a partial batch is committed after this long.
///
/// It bounds how stale the table can be behind a quiet file.
pub const DEFAULT_FLUSH_INTERVAL_MS: u64 = 200;

/// Default `pipeline.channel_capacity`: batches queued in the bounded tokio channel from the
/// file tail tasks to the reader actor.
///
/// When it is full the tail tasks wait (they stop reading); nothing is dropped. Memory held
/// is at most about `channel_capacity × read_buffer_bytes`.
pub const DEFAULT_CHANNEL_CAPACITY: usize = 64;

/// Default `pipeline.mailbox_capacity`: batches queued in each actor's mailbox.
///
/// When a mailbox is full the sender's `send().await` waits: that is the backpressure from
/// the database to the readers. (actix's own default is also 16.)
pub const DEFAULT_MAILBOX_CAPACITY: usize = 16;

/// Default `pipeline.read_buffer_bytes`: bytes asked for in each `read()` call on a file.
///
/// A line longer than the buffer is assembled over several reads, so this bounds the cost of
/// one read, not the line length (that is `parse.max_line_bytes`).
pub const DEFAULT_READ_BUFFER_BYTES: usize = 65_536;

/// Default `pipeline.poll_interval_ms`: how often the include globs are scanned again for new
/// files and known files are checked for growth, rotation and truncation.
///
/// File-system notifications may wake the tailer sooner; this is the upper bound on how late
/// a change is seen when they are unavailable.
pub const DEFAULT_POLL_INTERVAL_MS: u64 = 1_000;

/// Default `parse.max_line_bytes`: the longest line stored as a record.
///
/// A longer line becomes a dead letter holding its first `max_line_bytes` bytes and its full
/// length; the rest of the line is skipped and the file goes on.
pub const DEFAULT_MAX_LINE_BYTES: usize = 1_048_576;

/// Default `parse.timestamp_fields`: the event time comes from the first of these fields
/// present in the object (RFC 3339, epoch seconds or epoch milliseconds).
///
/// When none is present or parseable, `ts` is NULL; the line is still stored.
pub const DEFAULT_TIMESTAMP_FIELDS: &[&str] = &["timestamp", "@timestamp", "ts", "time", "t"];

/// Default `parse.level_fields`: the level comes from the first of these fields present,
/// lower-cased. When none is present, `level` is NULL.
pub const DEFAULT_LEVEL_FIELDS: &[&str] = &["level", "severity", "lvl", "log.level"];

/// Default `parse.message_fields`: the message comes from the first of these fields present.
/// When none is present, `message` is NULL.
pub const DEFAULT_MESSAGE_FIELDS: &[&str] = &["message", "msg", "log"];

/// Default `shutdown.drain_timeout_ms`: how long a graceful stop waits for queued batches to
/// be committed.
///
/// After this, logbelt exits without waiting further; lines not yet committed are read again
/// at the next start (positions only move with commits), so nothing is lost or duplicated.
pub const DEFAULT_DRAIN_TIMEOUT_MS: u64 = 30_000;

/// Default `supervisor.max_restarts`: the restart budget.
///
/// A stage that fails is restarted; when more than this many restarts happen within
/// [`DEFAULT_RESTART_WINDOW_MS`], logbelt gives up and exits with code 1.
pub const DEFAULT_MAX_RESTARTS: u32 = 5;

/// Default `supervisor.restart_window_ms`: the sliding window the restart budget counts over.
pub const DEFAULT_RESTART_WINDOW_MS: u64 = 60_000;

/// Default `supervisor.restart_backoff_initial_ms`: the delay before the first restart of a
/// failed stage; each further restart within the window doubles it, up to
/// [`DEFAULT_RESTART_BACKOFF_MAX_MS`].
pub const DEFAULT_RESTART_BACKOFF_INITIAL_MS: u64 = 100;

/// Default `supervisor.restart_backoff_max_ms`: the cap of the restart delay.
pub const DEFAULT_RESTART_BACKOFF_MAX_MS: u64 = 10_000;

// ---------------------------------------------------------------------------------------------
// Integer keys and their ranges
// ---------------------------------------------------------------------------------------------

/// An integer key's dotted name and its inclusive range. The same table answers validation
/// ("found 0") and type errors ("found \"5\""), so the two messages never disagree.
struct IntKey {
    path: &'static str,
    min: i64,
    max: i64,
}

impl IntKey {
    fn expected(&self) -> String {
        format!("an integer from {} to {}", self.min, self.max)
    }
}

const WRITERS: IntKey = IntKey {
    path: "database.writers",
    min: 1,
    max: 64,
};
const BUSY_TIMEOUT_MS: IntKey = IntKey {
    path: "database.busy_timeout_ms",
    min: 0,
    max: 3_600_000,
};
const RETRY_INITIAL_BACKOFF_MS: IntKey = IntKey {
    path: "database.retry_initial_backoff_ms",
    min: 1,
    max: 3_600_000,
};
const RETRY_MAX_BACKOFF_MS: IntKey = IntKey {
    path: "database.retry_max_backoff_ms",
    min: 1,
    max: 3_600_000,
};
const BATCH_ROWS: IntKey = IntKey {
    path: "pipeline.batch_rows",
    min: 1,
    max: 100_000,
};
const FLUSH_INTERVAL_MS: IntKey = IntKey {
    path: "pipeline.flush_interval_ms",
    min: 1,
    max: 3_600_000,
};
const CHANNEL_CAPACITY: IntKey = IntKey {
    path: "pipeline.channel_capacity",
    min: 1,
    max: 65_536,
};
const MAILBOX_CAPACITY: IntKey = IntKey {
    path: "pipeline.mailbox_capacity",
    min: 1,
    max: 65_536,
};
const READ_BUFFER_BYTES: IntKey = IntKey {
    path: "pipeline.read_buffer_bytes",
    min: 4_096,
    max: 16_777_216,
};
const POLL_INTERVAL_MS: IntKey = IntKey {
    path: "pipeline.poll_interval_ms",
    min: 10,
    max: 3_600_000,
};
const MAX_LINE_BYTES: IntKey = IntKey {
    path: "parse.max_line_bytes",
    min: 16,
    max: 1_073_741_824,
};
const DRAIN_TIMEOUT_MS: IntKey = IntKey {
    path: "shutdown.drain_timeout_ms",
    min: 1,
    max: 86_400_000,
};
const MAX_RESTARTS: IntKey = IntKey {
    path: "supervisor.max_restarts",
    min: 0,
    max: 10_000,
};
const RESTART_WINDOW_MS: IntKey = IntKey {
    path: "supervisor.restart_window_ms",
    min: 1,
    max: 86_400_000,
};
const RESTART_BACKOFF_INITIAL_MS: IntKey = IntKey {
    path: "supervisor.restart_backoff_initial_ms",
    min: 1,
    max: 3_600_000,
};
const RESTART_BACKOFF_MAX_MS: IntKey = IntKey {
    path: "supervisor.restart_backoff_max_ms",
    min: 1,
    max: 3_600_000,
};

const INT_KEYS: &[&IntKey] = &[
    &WRITERS,
    &BUSY_TIMEOUT_MS,
    &RETRY_INITIAL_BACKOFF_MS,
    &RETRY_MAX_BACKOFF_MS,
    &BATCH_ROWS,
    &FLUSH_INTERVAL_MS,
    &CHANNEL_CAPACITY,
    &MAILBOX_CAPACITY,
    &READ_BUFFER_BYTES,
    &POLL_INTERVAL_MS,
    &MAX_LINE_BYTES,
    &DRAIN_TIMEOUT_MS,
    &MAX_RESTARTS,
    &RESTART_WINDOW_MS,
    &RESTART_BACKOFF_INITIAL_MS,
    &RESTART_BACKOFF_MAX_MS,
];

/// What a key holds, for "expected ..., found ..." messages. `path` is the key with array
/// indices removed (`sources[].include[]`).
fn expected_for(path: &str) -> Option<String> {
    if let Some(key) = INT_KEYS.iter().find(|k| k.path == path) {
        return Some(key.expected());
    }
    let what = match path {
        "database" | "agent" | "pipeline" | "parse" | "shutdown" | "supervisor" | "sources[]" => {
            "a table"
        }
        "sources" => "an array of tables ([[sources]])",
        "database.url" => "a database URL string",
        "agent.host" | "sources[].name" => "a string",
        "sources[].include" | "sources[].exclude" => "an array of glob pattern strings",
        "sources[].include[]" | "sources[].exclude[]" => "a glob pattern string",
        "sources[].start_at" => "\"beginning\" or \"end\"",
        "parse.timestamp_fields" | "parse.level_fields" | "parse.message_fields" => {
            "an array of field name strings"
        }
        "parse.timestamp_fields[]" | "parse.level_fields[]" | "parse.message_fields[]" => {
            "a field name string"
        }
        _ => return None,
    };
    Some(what.to_owned())
}

// ---------------------------------------------------------------------------------------------
// Public, validated types
// ---------------------------------------------------------------------------------------------

/// A validated config: every default applied, every path absolute, every `${VAR}` expanded.
#[derive(Debug, Clone)]
pub struct Config {
    /// Absolute path of the config file (made absolute lexically: symlinks are not resolved).
    pub path: PathBuf,
    /// The folder holding the config file; relative globs and SQLite paths were joined to it.
    pub base_dir: PathBuf,
    /// `[database]`: where rows and positions go.
    pub database: DatabaseConfig,
    /// `[agent]`: who this logbelt is.
    pub agent: AgentConfig,
    /// `[[sources]]`: the files to tail, at least one source, names unique.
    pub sources: Vec<SourceConfig>,
    /// `[pipeline]`: batch sizes, queue bounds, read sizes.
    pub pipeline: PipelineConfig,
    /// `[parse]`: how a line becomes a record.
    pub parse: ParseConfig,
    /// `[shutdown]`: how long a graceful stop may take.
    pub shutdown: ShutdownConfig,
    /// `[supervisor]`: restarts of failed stages.
    pub supervisor: SupervisorConfig,
}

/// `[database]`.
///
/// `Debug` is safe to log: the password inside the URL is redacted by [`DatabaseUrl`]'s
/// hand-written `Debug`.
#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    /// `url`: which database, SQLite or PostgreSQL.
    pub url: DatabaseUrl,
    /// `writers`: writer connections committing in parallel, 1 to 64. Always 1 for SQLite
    /// (one writer at a time is all SQLite allows), whatever the file says.
    pub writers: usize,
    /// `busy_timeout_ms`: how long SQLite waits for a lock before the commit fails with a
    /// transient error (then retried). 0 means fail at once. Unused for PostgreSQL.
    pub busy_timeout: Duration,
    /// `retry_initial_backoff_ms`: the first delay after a transient database error; it
    /// doubles on every further failure.
    pub retry_initial_backoff: Duration,
    /// `retry_max_backoff_ms`: the cap of that delay; at least `retry_initial_backoff`.
    pub retry_max_backoff: Duration,
}

/// Which database, from `database.url`.
///
/// `Display` and `Debug` redact the password (`postgres://user:***@host/db`); read the
/// `url` field itself only to connect.
#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// `sqlite://PATH`: a relative PATH is relative to the config file's folder;
    /// `sqlite:///abs/path` is absolute.
    Sqlite {
        /// Absolute path of the database file.
        path: PathBuf,
    },
    /// `postgres://...` or `postgresql://...`, passed to libpq as written (after `${VAR}`
    /// expansion).
    Postgres {
        /// The full connection URL, password included.
        url: String,
    },
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DatabaseUrl::Sqlite { path } => write!(f, "sqlite://{}", path.display()),
            DatabaseUrl::Postgres { url } => f.write_str(&redact(url)),
        }
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DatabaseUrl::Sqlite { path } => f.debug_struct("Sqlite").field("path", path).finish(),
            DatabaseUrl::Postgres { url } => f
                .debug_struct("Postgres")
                .field("url", &redact(url))
                .finish(),
        }
    }
}

/// `[agent]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentConfig {
    /// `host`: stored with every row and every file position, so several machines can share
    /// one PostgreSQL database. Default: the machine's hostname.
    pub host: String,
}

/// One `[[sources]]` table.
#[derive(Debug, Clone)]
pub struct SourceConfig {
    /// `name`: stored with every row; unique among sources; letters, digits, `_`, `.`, `-`.
    pub name: String,
    /// `include`: absolute glob patterns (relative ones were joined to the config file's
    /// folder, whose glob metacharacters were escaped as `[*]`). Every file that matches is
    /// tailed; new matches are picked up at each poll. Validated to suit both `globset` and
    /// the `glob` crate: no `{a,b}` alternatives, and `**` only as a whole path component.
    pub include: Vec<String>,
    /// `exclude`, compiled; index `i` of the set is `exclude_patterns[i]`. Use
    /// [`SourceConfig::is_excluded`] rather than matching the set directly.
    pub exclude: GlobSet,
    /// `exclude` as strings: a pattern without `/` is kept as written and matches the file
    /// name; one with `/` is absolute (relative ones were joined to the config file's folder)
    /// and matches the whole path.
    pub exclude_patterns: Vec<String>,
    /// `start_at`: where to start a file that has no committed position.
    pub start_at: StartAt,
}

impl SourceConfig {
    /// Whether `path` (absolute, as produced by expanding `include`) is excluded: a pattern
    /// without `/` is matched against the file name, one with `/` against the whole path.
    pub fn is_excluded(&self, path: &Path) -> bool {
        if self.exclude.is_empty() {
            return false;
        }
        let is_name_pattern = |i: &usize| {
            self.exclude_patterns
                .get(*i)
                .is_some_and(|p| !p.contains('/'))
        };
        let by_name = path
            .file_name()
            .is_some_and(|name| self.exclude.matches(name).iter().any(is_name_pattern));
        by_name
            || self
                .exclude
                .matches(path)
                .iter()
                .any(|i| !is_name_pattern(i))
    }
}

/// Where to start reading a file that has no committed position. A file with a committed
/// position always resumes there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// `"beginning"`: read the whole file.
    Beginning,
    /// `"end"`: skip what the file holds when first seen; read only what is appended.
    End,
}

/// `[pipeline]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineConfig {
    /// `batch_rows`: the most rows per transaction, 1 to 100000.
    pub batch_rows: usize,
    /// `flush_interval_ms`: a partial batch is committed after this long, 1 ms to 1 hour.
    pub flush_interval: Duration,
    /// `channel_capacity`: batches in the tail → reader channel, 1 to 65536; when full,
    /// tail tasks stop reading.
    pub channel_capacity: usize,
    /// `mailbox_capacity`: batches in each actor mailbox, 1 to 65536; when full, the sender
    /// waits.
    pub mailbox_capacity: usize,
    /// `read_buffer_bytes`: bytes per `read()` call, 4096 to 16777216.
    pub read_buffer_bytes: usize,
    /// `poll_interval_ms`: how often globs are scanned again and files checked, 10 ms to
    /// 1 hour.
    pub poll_interval: Duration,
}

/// `[parse]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseConfig {
    /// `max_line_bytes`: longer lines become dead letters (first bytes kept, length
    /// recorded), 16 to 1073741824.
    pub max_line_bytes: usize,
    /// `timestamp_fields`: the first present one gives the event time; non-empty.
    pub timestamp_fields: Vec<String>,
    /// `level_fields`: the first present one gives the level; non-empty.
    pub level_fields: Vec<String>,
    /// `message_fields`: the first present one gives the message; non-empty.
    pub message_fields: Vec<String>,
}

/// `[shutdown]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShutdownConfig {
    /// `drain_timeout_ms`: how long a graceful stop waits for commits, 1 ms to 24 hours.
    pub drain_timeout: Duration,
}

/// `[supervisor]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SupervisorConfig {
    /// `max_restarts`: more than this many restarts within `restart_window` ends the process
    /// (exit 1); 0 to 10000. 0 means the first failure is fatal.
    pub max_restarts: u32,
    /// `restart_window_ms`: the window the budget counts over, 1 ms to 24 hours.
    pub restart_window: Duration,
    /// `restart_backoff_initial_ms`: delay before the first restart; doubles on each further
    /// restart in the window.
    pub restart_backoff_initial: Duration,
    /// `restart_backoff_max_ms`: the cap of that delay; at least `restart_backoff_initial`.
    pub restart_backoff_max: Duration,
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------------------------

impl Config {
    /// Reads and validates the config file at `path` (relative paths are taken from the
    /// current directory).
    ///
    /// # Errors
    ///
    /// [`ConfigError::Read`] if the file cannot be read; [`ConfigError::Invalid`] if it is not
    /// UTF-8 or not a valid config.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let path = absolute(path)?;
        let bytes = std::fs::read(&path).map_err(|error| ConfigError::Read {
            path: path.clone(),
            error,
        })?;
        match std::str::from_utf8(&bytes) {
            Ok(text) => parse(text, path, &|name| std::env::var_os(name)),
            Err(e) => {
                let valid = String::from_utf8_lossy(&bytes[..e.valid_up_to()]);
                let (line, column) = line_column(&valid, valid.len());
                Err(ConfigError::Invalid {
                    location: Location { path, line, column },
                    key: None,
                    message: "the file is not valid UTF-8".to_owned(),
                })
            }
        }
    }

    /// Validates config `text` as if it had been read from `path`: `path` names the file in
    /// errors and its folder anchors relative paths; the file itself is not read. `${VAR}`
    /// is expanded from the process environment.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] if `text` is not a valid config; [`ConfigError::Read`] only if
    /// `path` cannot be made absolute (it is empty, or the current directory is gone).
    pub fn from_toml_str(text: &str, path: &Path) -> Result<Config, ConfigError> {
        parse(text, absolute(path)?, &|name| std::env::var_os(name))
    }
}

/// `path` made absolute against the current directory, without resolving symlinks: relative
/// paths in the config are relative to the folder the user sees the file in.
fn absolute(path: &Path) -> Result<PathBuf, ConfigError> {
    std::path::absolute(path).map_err(|error| ConfigError::Read {
        path: path.to_owned(),
        error,
    })
}

/// Looks up an environment variable; injected so tests need not mutate the process
/// environment.
type Env<'a> = &'a dyn Fn(&str) -> Option<OsString>;

fn parse(text: &str, path: PathBuf, env: Env<'_>) -> Result<Config, ConfigError> {
    // A byte-order mark is invisible to the user: columns are counted without it.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let base_dir = path
        .parent()
        .map_or_else(|| path.clone(), Path::to_path_buf);
    let cx = Cx {
        path: &path,
        text,
        base_dir: &base_dir,
        env,
    };

    let tree = DeTable::parse(text).map_err(|e| cx.syntax_error(&e))?;
    let raw = RawConfig::deserialize(toml::de::Deserializer::from(tree.clone()))
        .map_err(|e| cx.serde_error(&tree, &e))?;

    let database = cx.database(raw.database.as_ref())?;
    let agent = cx.agent(raw.agent.as_ref())?;
    let sources = cx.sources(raw.sources.as_ref())?;
    let pipeline = cx.pipeline(&raw.pipeline.map(Spanned::into_inner).unwrap_or_default())?;
    let parse = cx.parse(&raw.parse.map(Spanned::into_inner).unwrap_or_default())?;
    let shutdown = cx.shutdown(&raw.shutdown.map(Spanned::into_inner).unwrap_or_default())?;
    let supervisor = cx.supervisor(&raw.supervisor.map(Spanned::into_inner).unwrap_or_default())?;
    Ok(Config {
        path: path.clone(),
        base_dir: base_dir.clone(),
        database,
        agent,
        sources,
        pipeline,
        parse,
        shutdown,
        supervisor,
    })
}

// ---------------------------------------------------------------------------------------------
// Raw structs: the file as written
// ---------------------------------------------------------------------------------------------

/// An optional value that remembers where it was written.
type Sp<T> = Option<Spanned<T>>;

/// The whole file. Field meanings are documented on the public types.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    database: Sp<RawDatabase>,
    agent: Sp<RawAgent>,
    sources: Sp<Vec<Spanned<RawSource>>>,
    pipeline: Sp<RawPipeline>,
    parse: Sp<RawParse>,
    shutdown: Sp<RawShutdown>,
    supervisor: Sp<RawSupervisor>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDatabase {
    url: Sp<String>,
    writers: Sp<i64>,
    busy_timeout_ms: Sp<i64>,
    retry_initial_backoff_ms: Sp<i64>,
    retry_max_backoff_ms: Sp<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAgent {
    host: Sp<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    name: Sp<String>,
    include: Sp<Vec<Spanned<String>>>,
    exclude: Sp<Vec<Spanned<String>>>,
    start_at: Sp<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawPipeline {
    batch_rows: Sp<i64>,
    flush_interval_ms: Sp<i64>,
    channel_capacity: Sp<i64>,
    mailbox_capacity: Sp<i64>,
    read_buffer_bytes: Sp<i64>,
    poll_interval_ms: Sp<i64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawParse {
    max_line_bytes: Sp<i64>,
    timestamp_fields: Sp<Vec<Spanned<String>>>,
    level_fields: Sp<Vec<Spanned<String>>>,
    message_fields: Sp<Vec<Spanned<String>>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawShutdown {
    drain_timeout_ms: Sp<i64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSupervisor {
    max_restarts: Sp<i64>,
    restart_window_ms: Sp<i64>,
    restart_backoff_initial_ms: Sp<i64>,
    restart_backoff_max_ms: Sp<i64>,
}

// ---------------------------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------------------------

/// What validation needs to know about the file: its name, its text (for line and column),
/// its folder and the environment.
struct Cx<'a> {
    path: &'a Path,
    text: &'a str,
    base_dir: &'a Path,
    env: Env<'a>,
}

impl Cx<'_> {
    /// An error at byte `offset` whose message is used as is (after redaction).
    fn error_at(&self, offset: usize, key: Option<&str>, message: &str) -> ConfigError {
        let (line, column) = line_column(self.text, offset);
        ConfigError::Invalid {
            location: Location {
                path: self.path.to_owned(),
                line,
                column,
            },
            key: key.map(str::to_owned),
            message: redact(message).replace(['\r', '\n'], " "),
        }
    }

    /// An error about `key`, at the start of `span`: `key: detail`.
    fn error(&self, span: Range<usize>, key: &str, detail: impl fmt::Display) -> ConfigError {
        self.error_at(span.start, Some(key), &format!("{key}: {detail}"))
    }

    /// `key` is missing from the table whose header is at `span`.
    fn missing(&self, span: Range<usize>, key: &str) -> ConfigError {
        self.error_at(span.start, Some(key), &format!("{key} is required"))
    }

    fn syntax_error(&self, e: &toml::de::Error) -> ConfigError {
        let span = e.span().unwrap_or(0..0);
        let mut message = format!("TOML syntax error: {}", e.message());
        if e.message() == "duplicate key" {
            if let Some(key) = self.text.get(span.clone()).filter(|k| !k.is_empty()) {
                message = format!("TOML syntax error: duplicate key `{key}`");
            }
        }
        self.error_at(span.start, None, &message)
    }

    /// Rewrites a serde error (unknown key or wrong type: required keys and ranges are
    /// checked later) with the dotted key, found by looking its span up in the parsed tree.
    fn serde_error(&self, tree: &Spanned<DeTable<'_>>, e: &toml::de::Error) -> ConfigError {
        let message = e.message();
        let Some(span) = e.span() else {
            return self.error_at(0, None, message);
        };
        match locate(self.text, tree, &span) {
            Some(Hit::Key { parent, .. }) if message.starts_with("unknown field") => {
                let detail = message.replacen("unknown field", "unknown key", 1);
                if parent.is_empty() {
                    self.error_at(span.start, None, &detail)
                } else {
                    self.error(span, &parent, detail)
                }
            }
            Some(Hit::Key { parent, key }) => self.error(span, &join_key(&parent, &key), message),
            Some(Hit::Value { path, found }) => {
                let is_type_error =
                    message.starts_with("invalid type") || message.starts_with("invalid value");
                match expected_for(&without_indices(&path)) {
                    Some(expected) if is_type_error => self.error(
                        span,
                        &path,
                        format_args!("expected {expected}, found {found}"),
                    ),
                    _ => self.error(span, &path, message),
                }
            }
            None => self.error_at(span.start, None, message),
        }
    }

    /// An integer key: `default` when absent, else checked against `key`'s range.
    fn int<T: TryFrom<i64>>(
        &self,
        raw: &Sp<i64>,
        key: &IntKey,
        default: T,
    ) -> Result<T, ConfigError> {
        let Some(value) = raw else {
            return Ok(default);
        };
        let n = *value.get_ref();
        if (key.min..=key.max).contains(&n) {
            if let Ok(n) = T::try_from(n) {
                return Ok(n);
            }
        }
        Err(self.error(
            value.span(),
            key.path,
            format_args!("expected {}, found {n}", key.expected()),
        ))
    }

    fn millis(&self, raw: &Sp<i64>, key: &IntKey, default: u64) -> Result<Duration, ConfigError> {
        self.int(raw, key, default).map(Duration::from_millis)
    }

    /// Checks `low <= high` for a pair of keys, blaming the one the user wrote.
    fn ordered(
        &self,
        (low_raw, low_key, low): (&Sp<i64>, &IntKey, Duration),
        (high_raw, high_key, high): (&Sp<i64>, &IntKey, Duration),
    ) -> Result<(), ConfigError> {
        if low <= high {
            return Ok(());
        }
        let (low, high) = (low.as_millis(), high.as_millis());
        match (low_raw, high_raw) {
            (Some(raw), _) => Err(self.error(
                raw.span(),
                low_key.path,
                format_args!("expected at most {} ({high}), found {low}", high_key.path),
            )),
            (None, Some(raw)) => Err(self.error(
                raw.span(),
                high_key.path,
                format_args!("expected at least {} ({low}), found {high}", low_key.path),
            )),
            // Both defaults: ordered by construction (tested).
            (None, None) => Ok(()),
        }
    }

    /// A string value with `${VAR}` expanded.
    fn string(&self, raw: &Spanned<String>, key: &str) -> Result<String, ConfigError> {
        expand_env(raw.get_ref(), self.env).map_err(|detail| self.error(raw.span(), key, detail))
    }

    fn database(&self, raw: Option<&Spanned<RawDatabase>>) -> Result<DatabaseConfig, ConfigError> {
        let Some(table) = raw else {
            return Err(self.error_at(0, Some("database"), "the [database] table is required"));
        };
        let db = table.get_ref();
        let Some(url_raw) = &db.url else {
            return Err(self.missing(table.span(), "database.url"));
        };
        let text = self.string(url_raw, "database.url")?;
        let url = self
            .database_url(&text)
            .map_err(|detail| self.error(url_raw.span(), "database.url", detail))?;
        let writers = self.int(&db.writers, &WRITERS, DEFAULT_WRITERS)?;
        let busy_timeout = self.millis(
            &db.busy_timeout_ms,
            &BUSY_TIMEOUT_MS,
            DEFAULT_BUSY_TIMEOUT_MS,
        )?;
        let retry_initial_backoff = self.millis(
            &db.retry_initial_backoff_ms,
            &RETRY_INITIAL_BACKOFF_MS,
            DEFAULT_RETRY_INITIAL_BACKOFF_MS,
        )?;
        let retry_max_backoff = self.millis(
            &db.retry_max_backoff_ms,
            &RETRY_MAX_BACKOFF_MS,
            DEFAULT_RETRY_MAX_BACKOFF_MS,
        )?;
        self.ordered(
            (
                &db.retry_initial_backoff_ms,
                &RETRY_INITIAL_BACKOFF_MS,
                retry_initial_backoff,
            ),
            (
                &db.retry_max_backoff_ms,
                &RETRY_MAX_BACKOFF_MS,
                retry_max_backoff,
            ),
        )?;
        let writers = match url {
            DatabaseUrl::Sqlite { .. } => 1,
            DatabaseUrl::Postgres { .. } => writers,
        };
        Ok(DatabaseConfig {
            url,
            writers,
            busy_timeout,
            retry_initial_backoff,
            retry_max_backoff,
        })
    }

    /// Parses an expanded `database.url`; the error is the detail after `database.url: `.
    fn database_url(&self, url: &str) -> Result<DatabaseUrl, String> {
        if let Some(rest) = strip_prefix_ignore_case(url, "sqlite://") {
            if rest.is_empty() {
                return Err(format!(
                    "expected a file path after sqlite://, found {url:?}"
                ));
            }
            if starts_with_tilde(rest) {
                return Err(tilde_message(url));
            }
            // `join` keeps an absolute `rest` (from `sqlite:///abs`) as it is; collecting
            // the components drops `.` segments.
            let path = self.base_dir.join(rest).components().collect();
            return Ok(DatabaseUrl::Sqlite { path });
        }
        if strip_prefix_ignore_case(url, "postgres://").is_some()
            || strip_prefix_ignore_case(url, "postgresql://").is_some()
        {
            return Ok(DatabaseUrl::Postgres {
                url: url.to_owned(),
            });
        }
        Err(format!(
            "expected a URL starting with sqlite:// or postgres:// (or postgresql://), found {url:?}"
        ))
    }

    fn agent(&self, raw: Option<&Spanned<RawAgent>>) -> Result<AgentConfig, ConfigError> {
        if let Some(host_raw) = raw.and_then(|a| a.get_ref().host.as_ref()) {
            let host = self.string(host_raw, "agent.host")?;
            if host.is_empty() {
                return Err(self.error(
                    host_raw.span(),
                    "agent.host",
                    "expected a non-empty string, found \"\"",
                ));
            }
            return Ok(AgentConfig { host });
        }
        match gethostname::gethostname().into_string() {
            Ok(host) if !host.is_empty() => Ok(AgentConfig { host }),
            _ => Err(self.error_at(
                raw.map_or(0, |a| a.span().start),
                Some("agent.host"),
                "agent.host: the machine's hostname is empty or not UTF-8; set agent.host",
            )),
        }
    }

    fn sources(
        &self,
        raw: Option<&Spanned<Vec<Spanned<RawSource>>>>,
    ) -> Result<Vec<SourceConfig>, ConfigError> {
        const REQUIRED: &str = "at least one [[sources]] table is required";
        let Some(list) = raw else {
            return Err(self.error_at(0, Some("sources"), REQUIRED));
        };
        if list.get_ref().is_empty() {
            return Err(self.error(list.span(), "sources", REQUIRED));
        }
        let mut sources: Vec<SourceConfig> = Vec::with_capacity(list.get_ref().len());
        // (name, index, line) of the sources seen so far, to report duplicates.
        let mut names: Vec<(String, usize, usize)> = Vec::new();
        for (i, table) in list.get_ref().iter().enumerate() {
            let key = format!("sources[{i}]");
            let source = self.source(table, &key)?;
            let name_span = table
                .get_ref()
                .name
                .as_ref()
                .map_or(table.span(), Spanned::span);
            if let Some((_, first, line)) = names.iter().find(|(n, ..)| *n == source.name) {
                return Err(self.error(
                    name_span,
                    &format!("{key}.name"),
                    format_args!(
                        "duplicate source name {:?} (already used by sources[{first}] at line {line})",
                        source.name
                    ),
                ));
            }
            names.push((
                source.name.clone(),
                i,
                line_column(self.text, name_span.start).0,
            ));
            sources.push(source);
        }
        Ok(sources)
    }

    fn source(&self, table: &Spanned<RawSource>, key: &str) -> Result<SourceConfig, ConfigError> {
        let raw = table.get_ref();

        let name_key = format!("{key}.name");
        let Some(name_raw) = &raw.name else {
            return Err(self.missing(table.span(), &name_key));
        };
        let name = self.string(name_raw, &name_key)?;
        let valid_name = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if !valid_name {
            return Err(self.error(
                name_raw.span(),
                &name_key,
                format_args!("expected a name of letters, digits, '_', '.' or '-', found {name:?}"),
            ));
        }

        let include_key = format!("{key}.include");
        let Some(include_raw) = &raw.include else {
            return Err(self.missing(table.span(), &include_key));
        };
        if include_raw.get_ref().is_empty() {
            return Err(self.error(
                include_raw.span(),
                &include_key,
                "expected a non-empty array of glob patterns, found []",
            ));
        }
        let mut include = Vec::with_capacity(include_raw.get_ref().len());
        for (j, pattern) in include_raw.get_ref().iter().enumerate() {
            include.push(self.include_pattern(pattern, &format!("{include_key}[{j}]"))?);
        }

        let exclude_key = format!("{key}.exclude");
        let mut exclude_patterns = Vec::new();
        let mut builder = GlobSetBuilder::new();
        if let Some(exclude_raw) = &raw.exclude {
            for (j, pattern) in exclude_raw.get_ref().iter().enumerate() {
                let (text, glob) = self.exclude_pattern(pattern, &format!("{exclude_key}[{j}]"))?;
                exclude_patterns.push(text);
                builder.add(glob);
            }
        }
        let exclude = builder.build().map_err(|e| {
            let span = raw.exclude.as_ref().map_or(table.span(), Spanned::span);
            self.error(
                span,
                &exclude_key,
                format_args!("cannot compile the patterns: {e}"),
            )
        })?;

        let start_key = format!("{key}.start_at");
        let start_at = match &raw.start_at {
            None => DEFAULT_START_AT,
            Some(start_raw) => match self.string(start_raw, &start_key)?.as_str() {
                "beginning" => StartAt::Beginning,
                "end" => StartAt::End,
                other => {
                    return Err(self.error(
                        start_raw.span(),
                        &start_key,
                        format_args!("expected \"beginning\" or \"end\", found {other:?}"),
                    ))
                }
            },
        };

        Ok(SourceConfig {
            name,
            include,
            exclude,
            exclude_patterns,
            start_at,
        })
    }

    /// One `include` entry: expanded, checked, made absolute.
    fn include_pattern(&self, raw: &Spanned<String>, key: &str) -> Result<String, ConfigError> {
        let pattern = self.string(raw, key)?;
        let fail = |detail: String| self.error(raw.span(), key, detail);
        if pattern.is_empty() {
            return Err(fail(
                "expected a non-empty glob pattern, found \"\"".to_owned(),
            ));
        }
        if starts_with_tilde(&pattern) {
            return Err(fail(tilde_message(&pattern)));
        }
        if let Some(problem) = walk_syntax_problem(&pattern) {
            return Err(fail(format!("invalid glob {pattern:?}: {problem}")));
        }
        let absolute = self.absolutize(&pattern).map_err(fail)?;
        compile_glob(&absolute, &pattern).map_err(fail)?;
        Ok(absolute)
    }

    /// One `exclude` entry: expanded, checked, made absolute if it is a path pattern.
    fn exclude_pattern(
        &self,
        raw: &Spanned<String>,
        key: &str,
    ) -> Result<(String, Glob), ConfigError> {
        let pattern = self.string(raw, key)?;
        let fail = |detail: String| self.error(raw.span(), key, detail);
        if pattern.is_empty() {
            return Err(fail(
                "expected a non-empty glob pattern, found \"\"".to_owned(),
            ));
        }
        let full = if pattern.contains('/') {
            if starts_with_tilde(&pattern) {
                return Err(fail(tilde_message(&pattern)));
            }
            self.absolutize(&pattern).map_err(fail)?
        } else {
            pattern.clone()
        };
        let glob = compile_glob(&full, &pattern).map_err(fail)?;
        Ok((full, glob))
    }

    /// Joins a relative glob to the config file's folder, escaping the folder's own glob
    /// metacharacters (`[`, `*`, `{`, ...) so they match literally.
    fn absolutize(&self, pattern: &str) -> Result<String, String> {
        if Path::new(pattern).is_absolute() {
            return Ok(pattern.to_owned());
        }
        let Some(base) = self.base_dir.to_str() else {
            return Err(format!(
                "the config file's folder {:?} is not valid UTF-8, so the relative pattern {pattern:?} cannot be joined to it; write an absolute pattern",
                self.base_dir
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
    }

    fn pipeline(&self, raw: &RawPipeline) -> Result<PipelineConfig, ConfigError> {
        Ok(PipelineConfig {
            batch_rows: self.int(&raw.batch_rows, &BATCH_ROWS, DEFAULT_BATCH_ROWS)?,
            flush_interval: self.millis(
                &raw.flush_interval_ms,
                &FLUSH_INTERVAL_MS,
                DEFAULT_FLUSH_INTERVAL_MS,
            )?,
            channel_capacity: self.int(
                &raw.channel_capacity,
                &CHANNEL_CAPACITY,
                DEFAULT_CHANNEL_CAPACITY,
            )?,
            mailbox_capacity: self.int(
                &raw.mailbox_capacity,
                &MAILBOX_CAPACITY,
                DEFAULT_MAILBOX_CAPACITY,
            )?,
            read_buffer_bytes: self.int(
                &raw.read_buffer_bytes,
                &READ_BUFFER_BYTES,
                DEFAULT_READ_BUFFER_BYTES,
            )?,
            poll_interval: self.millis(
                &raw.poll_interval_ms,
                &POLL_INTERVAL_MS,
                DEFAULT_POLL_INTERVAL_MS,
            )?,
        })
    }

    fn parse(&self, raw: &RawParse) -> Result<ParseConfig, ConfigError> {
        Ok(ParseConfig {
            max_line_bytes: self.int(
                &raw.max_line_bytes,
                &MAX_LINE_BYTES,
                DEFAULT_MAX_LINE_BYTES,
            )?,
            timestamp_fields: self.field_names(
                &raw.timestamp_fields,
                "parse.timestamp_fields",
                DEFAULT_TIMESTAMP_FIELDS,
            )?,
            level_fields: self.field_names(
                &raw.level_fields,
                "parse.level_fields",
                DEFAULT_LEVEL_FIELDS,
            )?,
            message_fields: self.field_names(
                &raw.message_fields,
                "parse.message_fields",
                DEFAULT_MESSAGE_FIELDS,
            )?,
        })
    }

    fn field_names(
        &self,
        raw: &Sp<Vec<Spanned<String>>>,
        key: &str,
        default: &[&str],
    ) -> Result<Vec<String>, ConfigError> {
        let Some(list) = raw else {
            return Ok(default.iter().map(|s| (*s).to_owned()).collect());
        };
        if list.get_ref().is_empty() {
            return Err(self.error(
                list.span(),
                key,
                "expected a non-empty array of field names, found []",
            ));
        }
        let mut names = Vec::with_capacity(list.get_ref().len());
        for (i, raw_name) in list.get_ref().iter().enumerate() {
            let item_key = format!("{key}[{i}]");
            let name = self.string(raw_name, &item_key)?;
            if name.is_empty() {
                return Err(self.error(
                    raw_name.span(),
                    &item_key,
                    "expected a non-empty field name, found \"\"",
                ));
            }
            names.push(name);
        }
        Ok(names)
    }

    fn shutdown(&self, raw: &RawShutdown) -> Result<ShutdownConfig, ConfigError> {
        Ok(ShutdownConfig {
            drain_timeout: self.millis(
                &raw.drain_timeout_ms,
                &DRAIN_TIMEOUT_MS,
                DEFAULT_DRAIN_TIMEOUT_MS,
            )?,
        })
    }

    fn supervisor(&self, raw: &RawSupervisor) -> Result<SupervisorConfig, ConfigError> {
        let restart_backoff_initial = self.millis(
            &raw.restart_backoff_initial_ms,
            &RESTART_BACKOFF_INITIAL_MS,
            DEFAULT_RESTART_BACKOFF_INITIAL_MS,
        )?;
        let restart_backoff_max = self.millis(
            &raw.restart_backoff_max_ms,
            &RESTART_BACKOFF_MAX_MS,
            DEFAULT_RESTART_BACKOFF_MAX_MS,
        )?;
        self.ordered(
            (
                &raw.restart_backoff_initial_ms,
                &RESTART_BACKOFF_INITIAL_MS,
                restart_backoff_initial,
            ),
            (
                &raw.restart_backoff_max_ms,
                &RESTART_BACKOFF_MAX_MS,
                restart_backoff_max,
            ),
        )?;
        Ok(SupervisorConfig {
            max_restarts: self.int(&raw.max_restarts, &MAX_RESTARTS, DEFAULT_MAX_RESTARTS)?,
            restart_window: self.millis(
                &raw.restart_window_ms,
                &RESTART_WINDOW_MS,
                DEFAULT_RESTART_WINDOW_MS,
            )?,
            restart_backoff_initial,
            restart_backoff_max,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// 1-based line and column (in characters) of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = before.bytes().filter(|b| *b == b'\n').count() + 1;
    (line, before[line_start..].chars().count() + 1)
}

/// Where a serde error's span points in the parsed tree.
enum Hit {
    /// At a key (an unknown key): the dotted path of its table, and the key.
    Key { parent: String, key: String },
    /// At a value: its dotted path, and a description of what is there.
    Value { path: String, found: String },
}

/// Finds the key or value whose span is exactly `target`, preferring the shallowest (the
/// array of `[[sources]]` shares its span with its first table).
fn locate(text: &str, root: &Spanned<DeTable<'_>>, target: &Range<usize>) -> Option<Hit> {
    let mut best = None;
    visit_table(text, root.get_ref(), "", 0, target, &mut best);
    best.map(|(_, hit)| hit)
}

fn visit_table(
    text: &str,
    table: &DeTable<'_>,
    path: &str,
    depth: usize,
    target: &Range<usize>,
    best: &mut Option<(usize, Hit)>,
) {
    for (key, value) in table.iter() {
        let name = display_key(key.get_ref());
        if key.span() == *target {
            consider(best, depth, || Hit::Key {
                parent: path.to_owned(),
                key: name.clone(),
            });
        }
        visit_value(text, value, &join_key(path, &name), depth + 1, target, best);
    }
}

fn visit_value(
    text: &str,
    value: &Spanned<DeValue<'_>>,
    path: &str,
    depth: usize,
    target: &Range<usize>,
    best: &mut Option<(usize, Hit)>,
) {
    if value.span() == *target {
        consider(best, depth, || Hit::Value {
            path: path.to_owned(),
            found: describe(text, value),
        });
    }
    match value.get_ref() {
        DeValue::Table(table) => visit_table(text, table, path, depth + 1, target, best),
        DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                visit_value(text, item, &format!("{path}[{i}]"), depth + 1, target, best);
            }
        }
        _ => {}
    }
}

fn consider(best: &mut Option<(usize, Hit)>, depth: usize, hit: impl FnOnce() -> Hit) {
    if best.as_ref().is_none_or(|(d, _)| depth < *d) {
        *best = Some((depth, hit()));
    }
}

/// A value as the user wrote it, for "found ...".
fn describe(text: &str, value: &Spanned<DeValue<'_>>) -> String {
    let source = text.get(value.span()).unwrap_or_default();
    match value.get_ref() {
        DeValue::String(s) => format!("{:?}", s.as_ref()),
        DeValue::Integer(i) if source.is_empty() => i.to_string(),
        DeValue::Integer(_) => source.to_owned(),
        DeValue::Float(f) => format!("a float {f}"),
        DeValue::Boolean(b) => b.to_string(),
        DeValue::Datetime(d) => format!("a date-time {d}"),
        DeValue::Array(items) if items.is_empty() => "[]".to_owned(),
        DeValue::Array(items) if items.iter().all(|v| v.get_ref().is_table()) => {
            "an array of tables".to_owned()
        }
        DeValue::Array(_) => "an array".to_owned(),
        DeValue::Table(_) => "a table".to_owned(),
    }
}

/// A key as it would be written in TOML: bare if it can be, quoted otherwise.
fn display_key(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        key.to_owned()
    } else {
        format!("{key:?}")
    }
}

fn join_key(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

/// `sources[1].include[0]` → `sources[].include[]`.
fn without_indices(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut in_index = false;
    for c in path.chars() {
        match c {
            '[' => {
                in_index = true;
                out.push('[');
            }
            ']' => {
                in_index = false;
                out.push(']');
            }
            _ if in_index => {}
            c => out.push(c),
        }
    }
    out
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

/// `~` is not expanded (the shell does that, logbelt does not): `~` and `~/...` are rejected
/// rather than silently meaning a folder named `~` next to the config file.
fn starts_with_tilde(path: &str) -> bool {
    path == "~" || path.starts_with("~/")
}

fn tilde_message(found: &str) -> String {
    format!("`~` is not expanded; write \"${{HOME}}/...\" or an absolute path, found {found:?}")
}

/// Compiles one pattern as logbelt matches it: `*` and `?` stop at `/`.
fn compile_glob(pattern: &str, as_written: &str) -> Result<Glob, String> {
    GlobBuilder::new(pattern)
        .literal_separator(true)
        .build()
        .map_err(|e| format!("invalid glob {as_written:?}: {}", e.kind()))
}

/// Syntax that `globset` accepts but the `glob` crate (which walks the include patterns)
/// reads differently: `{a,b}` is literal there, and `**` inside a component is an error.
fn walk_syntax_problem(pattern: &str) -> Option<&'static str> {
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
            '{' | '}' => {
                return Some("`{a,b}` alternatives are not supported in include patterns (they are in exclude); write one pattern per alternative")
            }
            '/' => components.push(std::mem::take(&mut component)),
            c => component.push(c),
        }
    }
    components.push(component);
    if components.iter().any(|c| c.contains("**") && c != "**") {
        return Some("`**` must be a whole path component, as in \"logs/**/*.jsonl\"");
    }
    None
}

/// Expands `${NAME}` from `env` and `$$` to `$`; the error is the detail after the key.
fn expand_env(raw: &str, env: Env<'_>) -> Result<String, String> {
    if !raw.contains('$') {
        return Ok(raw.to_owned());
    }
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(after) = after.strip_prefix('$') {
            out.push('$');
            rest = after;
            continue;
        }
        let Some(body) = after.strip_prefix('{') else {
            return Err(format!(
                "`$` must start `${{NAME}}` or be doubled as `$$` (in {raw:?})"
            ));
        };
        let Some(end) = body.find('}') else {
            return Err(format!("unclosed `${{` (in {raw:?})"));
        };
        let name = &body[..end];
        let valid_name = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid_name {
            return Err(format!(
                "invalid environment variable name {name:?} (in {raw:?})"
            ));
        }
        match env(name).map(OsString::into_string) {
            Some(Ok(value)) => out.push_str(&value),
            Some(Err(_)) => {
                return Err(format!(
                    "environment variable `{name}` is not valid UTF-8 (in {raw:?})"
                ))
            }
            None => {
                return Err(format!(
                    "environment variable `{name}` is not set (in {raw:?})"
                ))
            }
        }
        rest = &body[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Hides passwords in any text that may contain a database URL or connection string: the
/// password of `scheme://user:password@host` and the value of `password=...` (libpq key/value
/// strings and URL query parameters) become `***`.
///
/// Meant for error messages from the database layer, which can echo the URL. It errs on the
/// side of hiding too much: the userinfo ends at the last `@` before the next whitespace or
/// quote.
pub fn redact(text: &str) -> String {
    redact_password_params(&redact_userinfo(text))
}

fn redact_userinfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '`' | '<' | '>'))
            .unwrap_or(tail.len());
        let token = &tail[..end];
        match token
            .rfind('@')
            .and_then(|at| Some((at, token[..at].find(':')?)))
        {
            Some((at, colon)) if colon + 1 < at => {
                out.push_str(&token[..=colon]);
                out.push_str("***");
                out.push_str(&token[at..]);
            }
            _ => out.push_str(token),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

fn redact_password_params(text: &str) -> String {
    const KEY: &str = "password";
    // ASCII lower-casing keeps byte offsets.
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut done = 0;
    let mut from = 0;
    while let Some(found) = lower[from..].find(KEY) {
        let key_end = from + found + KEY.len();
        from = key_end;
        let after_key = &text[key_end..];
        let trimmed = after_key.trim_start_matches([' ', '\t']);
        let Some(after_eq) = trimmed.strip_prefix('=') else {
            continue;
        };
        let value = after_eq.trim_start_matches([' ', '\t']);
        let value_start = text.len() - value.len();
        let value_len = if let Some(quoted) = value.strip_prefix('\'') {
            // libpq quoting: 'it''s' is not a thing, but \' is.
            let mut escaped = false;
            let close = quoted.char_indices().find(|&(_, c)| {
                let is_close = c == '\'' && !escaped;
                escaped = c == '\\' && !escaped;
                is_close
            });
            close.map_or(value.len(), |(i, _)| i + 2)
        } else {
            value
                .find(|c: char| c.is_whitespace() || matches!(c, '&' | '"' | '\'' | '`' | ')'))
                .unwrap_or(value.len())
        };
        if value_len == 0 || value.get(..value_len) == Some("***") {
            continue;
        }
        out.push_str(&text[done..value_start]);
        out.push_str("***");
        done = value_start + value_len;
        from = done;
    }
    out.push_str(&text[done..]);
    out
}
