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
/// the commit. The database layer has to split a batch into statements under its
/// bind-parameter cap (65,535 for a PostgreSQL INSERT, 32,766 for bundled SQLite); COPY has
/// no cap.
pub const DEFAULT_BATCH_ROWS: usize = 5_000;

/// Default `pipeline.flush_interval_ms`: a partial batch is committed after this long.
///
/// It bounds how stale the table can be behind a quiet file.
pub const DEFAULT_FLUSH_INTERVAL_MS: u64 = 200;

/// Default `pipeline.channel_capacity`: batches queued in the bounded tokio channel from the
/// file tail tasks to the reader actor.
///
/// When it is full the tail tasks wait (they stop reading); nothing is dropped. The memory
/// it can hold is `channel_capacity` times the size of a batch.
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
pub const DEFAULT_TIMESTAMP_FIELDS: &[&str] = crate::parse::DEFAULT_TIMESTAMP_FIELDS;

/// Default `parse.level_fields`: the level comes from the first of these fields present,
/// lower-cased. When none is present, `level` is NULL.
pub const DEFAULT_LEVEL_FIELDS: &[&str] = crate::parse::DEFAULT_LEVEL_FIELDS;

/// Default `parse.message_fields`: the message comes from the first of these fields present.
/// When none is present, `message` is NULL.
pub const DEFAULT_MESSAGE_FIELDS: &[&str] = crate::parse::DEFAULT_MESSAGE_FIELDS;

/// Default `database.url`, also when there is no `[database]` table: a SQLite file in the
/// config file's folder.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://logbelt.db";

/// Default `shutdown.drain_timeout_ms`: how long a graceful stop waits for queued batches to
/// be committed.
///
/// After this, logbelt exits without waiting further; lines not yet committed are read again
/// at the next start (positions only move with commits), so nothing is lost or duplicated.
pub const DEFAULT_DRAIN_TIMEOUT_MS: u64 = 30_000;

/// Default `metrics.unhealthy_after_ms`: `/health` answers 503 once a commit has been failing
/// or waiting (database down, locked, full, refusing) for longer than this.
///
/// Long enough that an ordinary database restart or a lock held by a reader for a while does not
/// page anyone; short enough that a database that cannot take writes shows within a minute.
pub const DEFAULT_UNHEALTHY_AFTER_MS: u64 = 60_000;

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

// The backoff pairs must be ordered when both are left at their defaults.
const _: () = assert!(DEFAULT_RETRY_INITIAL_BACKOFF_MS <= DEFAULT_RETRY_MAX_BACKOFF_MS);
const _: () = assert!(DEFAULT_RESTART_BACKOFF_INITIAL_MS <= DEFAULT_RESTART_BACKOFF_MAX_MS);

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
const UNHEALTHY_AFTER_MS: IntKey = IntKey {
    path: "metrics.unhealthy_after_ms",
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
    &UNHEALTHY_AFTER_MS,
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
        "database" | "agent" | "pipeline" | "parse" | "shutdown" | "supervisor" | "metrics"
        | "sources[]" => "a table",
        "sources" => "an array of tables ([[sources]])",
        "database.url" => "a database URL string",
        "agent.host" | "sources[].name" => "a string",
        "metrics.listen" => "an address string such as \"127.0.0.1:9464\"",
        "sources[].include" | "sources[].exclude" => "an array of glob pattern strings",
        "sources[].include[]" | "sources[].exclude[]" => "a glob pattern string",
        "sources[].start_at" => "\"beginning\" or \"end\"",
        "sources[].follow_symlinks" => "true or false",
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
    pub metrics: MetricsConfig,
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
    /// `follow_symlinks`: whether globs walk into symbolic links to directories (default
    /// false). A link to a file that a glob matches is always followed.
    pub follow_symlinks: bool,
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

/// `[metrics]`: the Prometheus and health endpoint. Off unless `listen` is set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsConfig {
    /// `listen`: the address to serve `/metrics` and `/health` on, e.g. `127.0.0.1:9464`.
    /// A non-loopback address exposes the endpoint to the network: only on the operator's word.
    pub listen: Option<std::net::SocketAddr>,
    /// `unhealthy_after_ms`: `/health` is 503 once a commit has been failing or waiting this
    /// long, 1 ms to 24 hours.
    pub unhealthy_after: Duration,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            listen: None,
            unhealthy_after: Duration::from_millis(DEFAULT_UNHEALTHY_AFTER_MS),
        }
    }
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
    let metrics = cx.metrics(&raw.metrics.map(Spanned::into_inner).unwrap_or_default())?;
    Ok(Config {
        path,
        base_dir,
        database,
        agent,
        sources,
        pipeline,
        parse,
        shutdown,
        supervisor,
        metrics,
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
    metrics: Sp<RawMetrics>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    listen: Sp<String>,
    unhealthy_after_ms: Sp<i64>,
}

#[derive(Deserialize, Default)]
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
    follow_symlinks: Sp<bool>,
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
            message: cap_echo(&redact(message).replace(['\r', '\n'], " ")),
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
            // Both defaults: ordered, checked at compile time below the defaults.
            (None, None) => Ok(()),
        }
    }

    /// A string value with `${VAR}` expanded.
    fn string(&self, raw: &Spanned<String>, key: &str) -> Result<String, ConfigError> {
        expand_env(raw.get_ref(), self.env).map_err(|detail| self.error(raw.span(), key, detail))
    }

    fn database(&self, raw: Option<&Spanned<RawDatabase>>) -> Result<DatabaseConfig, ConfigError> {
        // Without [database] (or its url): SQLite, the zero-set-up default, next to the config.
        let empty = RawDatabase::default();
        let db = raw.map_or(&empty, Spanned::get_ref);
        let url = match &db.url {
            Some(url_raw) => {
                let text = self.string(url_raw, "database.url")?;
                self.database_url(&text)
                    .map_err(|detail| self.error(url_raw.span(), "database.url", detail))?
            }
            None => self
                .database_url(DEFAULT_DATABASE_URL)
                .map_err(|detail| self.error_at(0, Some("database.url"), &detail))?,
        };
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
        if let Some(rest) = strip_prefix_ignore_case(url, "postgres://")
            .or_else(|| strip_prefix_ignore_case(url, "postgresql://"))
        {
            // libpq ends the user and password at the first '@', so in `u:sec@ret@host` the host
            // is `ret@host`, and its error messages would show that piece of the password.
            let authority = rest.split(['/', '?']).next().unwrap_or("");
            if authority.matches('@').count() > 1 {
                return Err(
                    "more than one '@' before the host: write an '@' in the user name \
                     or password as %40"
                        .to_owned(),
                );
            }
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

        let follow_symlinks = raw.follow_symlinks.as_ref().is_some_and(|f| *f.get_ref());

        Ok(SourceConfig {
            name,
            include,
            exclude,
            exclude_patterns,
            start_at,
            follow_symlinks,
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

    fn metrics(&self, raw: &RawMetrics) -> Result<MetricsConfig, ConfigError> {
        let unhealthy_after = self.millis(
            &raw.unhealthy_after_ms,
            &UNHEALTHY_AFTER_MS,
            DEFAULT_UNHEALTHY_AFTER_MS,
        )?;
        let Some(listen_raw) = raw.listen.as_ref() else {
            return Ok(MetricsConfig {
                listen: None,
                unhealthy_after,
            });
        };
        let text = self.string(listen_raw, "metrics.listen")?;
        match text.parse::<std::net::SocketAddr>() {
            Ok(addr) => Ok(MetricsConfig {
                listen: Some(addr),
                unhealthy_after,
            }),
            Err(_) => Err(self.error(
                listen_raw.span(),
                "metrics.listen",
                format!(
                    "expected an IP address and port such as \"127.0.0.1:9464\", found {text:?}"
                ),
            )),
        }
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
                return Some("`{a,b}` alternatives are not supported in include patterns (they are in exclude); write one pattern per alternative, and `[{]` for a literal `{`")
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

#[cfg(test)]
mod tests {
    use super::*;

    const PATH: &str = "/tmp/x/logbelt.toml";

    const MINIMAL: &str = r#"
[database]
url = "sqlite://logbelt.db"

[[sources]]
name = "app"
include = ["logs/*.jsonl"]
"#;

    fn no_env(_: &str) -> Option<OsString> {
        None
    }

    fn load(text: &str) -> Result<Config, ConfigError> {
        parse(text, PathBuf::from(PATH), &no_env)
    }

    fn load_with_env(text: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let lookup = |name: &str| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| OsString::from(v))
        };
        parse(text, PathBuf::from(PATH), &lookup)
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

    // --- every error class, exact message -------------------------------------------------

    #[test]
    fn syntax_error_has_line_and_column() {
        let text = "[database]\nurl = \"sqlite://x.db\n";
        assert_eq!(
            error(text),
            "/tmp/x/logbelt.toml:2:21: TOML syntax error: invalid basic string, expected `\"`"
        );
    }

    #[test]
    fn syntax_error_duplicate_key_names_the_key() {
        let text = "[database]\nurl = \"sqlite://a.db\"\nurl = \"sqlite://b.db\"\n";
        assert_eq!(
            error(text),
            "/tmp/x/logbelt.toml:3:1: TOML syntax error: duplicate key `url`"
        );
    }

    #[test]
    fn unknown_key_in_source_lists_the_expected_keys() {
        let text = "[[sources]]\nname = \"app\"\ninclde = [\"a\"]\n\n[database]\nurl = \"sqlite://x.db\"\n";
        let e = parse(text, PathBuf::from("/etc/logbelt.toml"), &no_env).unwrap_err();
        assert_eq!(
            e.to_string(),
            "/etc/logbelt.toml:3:1: sources[0]: unknown key `inclde`, expected one of `name`, `include`, `exclude`, `start_at`, `follow_symlinks`"
        );
    }

    #[test]
    fn unknown_key_at_top_level() {
        assert_eq!(
            error(&format!("foo = 1\n{MINIMAL}")),
            "/tmp/x/logbelt.toml:1:1: unknown key `foo`, expected one of `database`, `agent`, `sources`, `pipeline`, `parse`, `shutdown`, `supervisor`, `metrics`"
        );
    }

    #[test]
    fn unknown_key_in_agent_and_subtable() {
        assert_eq!(
            error_with("[agent]\nhots = \"a\"\n"),
            "/tmp/x/logbelt.toml:9:1: agent: unknown key `hots`, expected `host`"
        );
        assert_eq!(
            error_with("[pipeline.extra]\nx = 1\n"),
            "/tmp/x/logbelt.toml:8:11: pipeline: unknown key `extra`, expected one of `batch_rows`, `flush_interval_ms`, `channel_capacity`, `mailbox_capacity`, `read_buffer_bytes`, `poll_interval_ms`"
        );
    }

    #[test]
    fn out_of_range_integer() {
        let text = "[database]\nurl = \"sqlite://x.db\"\n[[sources]]\nname = \"app\"\ninclude = [\"a\"]\n[pipeline]\nbatch_rows = 0\n";
        let e = parse(text, PathBuf::from("/etc/logbelt.toml"), &no_env).unwrap_err();
        assert_eq!(
            e.to_string(),
            "/etc/logbelt.toml:7:14: pipeline.batch_rows: expected an integer from 1 to 100000, found 0"
        );
        match e {
            ConfigError::Invalid { location, key, .. } => {
                assert_eq!((location.line, location.column), (7, 14));
                assert_eq!(key.as_deref(), Some("pipeline.batch_rows"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn wrong_type_uses_the_same_expectation_as_the_range_check() {
        assert_eq!(
            error_with("[pipeline]\nbatch_rows = \"5\"\n"),
            "/tmp/x/logbelt.toml:9:14: pipeline.batch_rows: expected an integer from 1 to 100000, found \"5\""
        );
        assert_eq!(
            error_with("[pipeline]\nbatch_rows = 5.0\n"),
            "/tmp/x/logbelt.toml:9:14: pipeline.batch_rows: expected an integer from 1 to 100000, found a float 5.0"
        );
        assert_eq!(
            error_with("[shutdown]\ndrain_timeout_ms = 99999999999999999999\n"),
            "/tmp/x/logbelt.toml:9:20: shutdown.drain_timeout_ms: expected an integer from 1 to 86400000, found 99999999999999999999"
        );
    }

    #[test]
    fn wrong_type_of_tables_strings_and_lists() {
        assert_eq!(
            error(&format!("pipeline = 5\n{MINIMAL}")),
            "/tmp/x/logbelt.toml:1:12: pipeline: expected a table, found 5"
        );
        assert_eq!(
            error("[database]\nurl = 5\n"),
            "/tmp/x/logbelt.toml:2:7: database.url: expected a database URL string, found 5"
        );
        assert_eq!(
            error("[database]\nurl = \"sqlite://x.db\"\n[[sources]]\nname = \"a\"\ninclude = \"logs/*.jsonl\"\n"),
            "/tmp/x/logbelt.toml:5:11: sources[0].include: expected an array of glob pattern strings, found \"logs/*.jsonl\""
        );
        assert_eq!(
            error("[database]\nurl = \"sqlite://x.db\"\n[[sources]]\nname = \"a\"\ninclude = [\"x\"]\n[[sources]]\nname = \"b\"\ninclude = [\"y\", 3]\n"),
            "/tmp/x/logbelt.toml:8:17: sources[1].include[1]: expected a glob pattern string, found 3"
        );
        assert_eq!(
            error("[database]\nurl = \"sqlite://x.db\"\n[sources]\nname = \"a\"\n"),
            "/tmp/x/logbelt.toml:3:1: sources: expected an array of tables ([[sources]]), found a table"
        );
        assert_eq!(
            error_with("[[pipeline]]\nbatch_rows = 1\n"),
            "/tmp/x/logbelt.toml:8:1: pipeline: expected a table, found an array of tables"
        );
        assert_eq!(
            error_with("[parse]\nlevel_fields = [\"level\", true]\n"),
            "/tmp/x/logbelt.toml:9:26: parse.level_fields[1]: expected a field name string, found true"
        );
        assert_eq!(
            error_with("[agent]\nhost = 1979-05-27\n"),
            "/tmp/x/logbelt.toml:9:8: agent.host: expected a string, found a date-time 1979-05-27"
        );
    }

    #[test]
    fn every_type_error_path_has_an_expectation() {
        // A type error at any key must not fall back to serde's own wording.
        let cases = [
            "[database]\nurl = \"sqlite://x.db\"\nwriters = \"2\"\n[[sources]]\nname = \"a\"\ninclude = [\"x\"]\n",
            "[database]\nurl = \"sqlite://x.db\"\n[[sources]]\nname = 1\ninclude = [\"x\"]\n",
            "[database]\nurl = \"sqlite://x.db\"\n[[sources]]\nname = \"a\"\ninclude = [\"x\"]\nexclude = \"y\"\n",
            "[database]\nurl = \"sqlite://x.db\"\n[[sources]]\nname = \"a\"\ninclude = [\"x\"]\nstart_at = 1\n",
            "sources = [1]\n[database]\nurl = \"sqlite://x.db\"\n",
            "sources = 1\n[database]\nurl = \"sqlite://x.db\"\n",
            "database = 1\n",
            "[database]\nurl = \"sqlite://x.db\"\n[[sources]]\nname = \"a\"\ninclude = [\"x\"]\n[parse]\nmessage_fields = \"msg\"\n",
            "[database]\nurl = \"sqlite://x.db\"\n[[sources]]\nname = \"a\"\ninclude = [\"x\"]\n[supervisor]\nmax_restarts = false\n",
        ];
        for text in cases {
            let message = error(text);
            assert!(!message.contains("invalid type"), "{message}");
            assert!(message.contains(": expected "), "{message}");
        }
    }

    #[test]
    fn missing_required_keys() {
        assert_eq!(
            error("[database]\nurl = \"sqlite://x.db\"\n\n[[sources]]\nname = \"app\"\n"),
            "/tmp/x/logbelt.toml:4:1: sources[0].include is required"
        );
        assert_eq!(
            error("[database]\nurl = \"sqlite://x.db\"\n\n[[sources]]\ninclude = [\"x\"]\n"),
            "/tmp/x/logbelt.toml:4:1: sources[0].name is required"
        );
        assert_eq!(
            error("[database]\nurl = \"sqlite://x.db\"\n"),
            "/tmp/x/logbelt.toml:1:1: at least one [[sources]] table is required"
        );
        assert_eq!(
            error("sources = []\n[database]\nurl = \"sqlite://x.db\"\n"),
            "/tmp/x/logbelt.toml:1:11: sources: at least one [[sources]] table is required"
        );
    }

    #[test]
    fn without_a_database_url_sqlite_next_to_the_config_file() {
        for text in [
            "[[sources]]\nname = \"a\"\ninclude = [\"x\"]\n",
            "\n[database]\nbusy_timeout_ms = 100\n[[sources]]\nname = \"a\"\ninclude = [\"x\"]\n",
        ] {
            let config = load(text).unwrap();
            assert_eq!(
                config.database.url,
                DatabaseUrl::Sqlite {
                    path: PathBuf::from("/tmp/x/logbelt.db")
                },
                "{text}"
            );
        }
    }

    #[test]
    fn empty_include_list_and_empty_pattern() {
        assert_eq!(
            error("[database]\nurl = \"sqlite://x.db\"\n[[sources]]\nname = \"a\"\ninclude = []\n"),
            "/tmp/x/logbelt.toml:5:11: sources[0].include: expected a non-empty array of glob patterns, found []"
        );
        assert_eq!(
            error("[database]\nurl = \"sqlite://x.db\"\n[[sources]]\nname = \"a\"\ninclude = [\"\"]\n"),
            "/tmp/x/logbelt.toml:5:12: sources[0].include[0]: expected a non-empty glob pattern, found \"\""
        );
    }

    #[test]
    fn duplicate_and_invalid_source_names() {
        assert_eq!(
            error_with("\n[[sources]]\nname = \"app\"\ninclude = [\"other/*.jsonl\"]\n"),
            "/tmp/x/logbelt.toml:10:8: sources[1].name: duplicate source name \"app\" (already used by sources[0] at line 6)"
        );
        assert_eq!(
            error("[database]\nurl = \"sqlite://x.db\"\n[[sources]]\nname = \"my app\"\ninclude = [\"x\"]\n"),
            "/tmp/x/logbelt.toml:4:8: sources[0].name: expected a name of letters, digits, '_', '.' or '-', found \"my app\""
        );
        assert_eq!(
            error("[database]\nurl = \"sqlite://x.db\"\n[[sources]]\nname = \"\"\ninclude = [\"x\"]\n"),
            "/tmp/x/logbelt.toml:4:8: sources[0].name: expected a name of letters, digits, '_', '.' or '-', found \"\""
        );
    }

    #[test]
    fn unknown_url_scheme_is_rejected_without_showing_the_password() {
        let e = error("[database]\nurl = \"mysql://root:hunter2@db:3306/logs\"\n[[sources]]\nname = \"a\"\ninclude = [\"x\"]\n");
        assert_eq!(
            e,
            "/tmp/x/logbelt.toml:2:7: database.url: expected a URL starting with sqlite:// or postgres:// (or postgresql://), found \"mysql://root:***@db:3306/logs\""
        );
        assert!(!e.contains("hunter2"));
        assert_eq!(
            error("[database]\nurl = \"sqlite://\"\n[[sources]]\nname = \"a\"\ninclude = [\"x\"]\n"),
            "/tmp/x/logbelt.toml:2:7: database.url: expected a file path after sqlite://, found \"sqlite://\""
        );
    }

    #[test]
    fn writers_out_of_range() {
        let text = |n: i64| {
            format!("[database]\nurl = \"postgres://u:p@h/db\"\nwriters = {n}\n[[sources]]\nname = \"a\"\ninclude = [\"x\"]\n")
        };
        assert_eq!(
            error(&text(0)),
            "/tmp/x/logbelt.toml:3:11: database.writers: expected an integer from 1 to 64, found 0"
        );
        assert_eq!(
            error(&text(-3)),
            "/tmp/x/logbelt.toml:3:11: database.writers: expected an integer from 1 to 64, found -3"
        );
        assert_eq!(
            error(&text(65)),
            "/tmp/x/logbelt.toml:3:11: database.writers: expected an integer from 1 to 64, found 65"
        );
        assert_eq!(load(&text(64)).unwrap().database.writers, 64);
    }

    #[test]
    fn backoff_bounds_must_be_ordered() {
        assert_eq!(
            error("[database]\nurl = \"sqlite://x.db\"\nretry_initial_backoff_ms = 50000\n[[sources]]\nname = \"a\"\ninclude = [\"x\"]\n"),
            "/tmp/x/logbelt.toml:3:28: database.retry_initial_backoff_ms: expected at most database.retry_max_backoff_ms (30000), found 50000"
        );
        assert_eq!(
            error_with("[supervisor]\nrestart_backoff_max_ms = 50\n"),
            "/tmp/x/logbelt.toml:9:26: supervisor.restart_backoff_max_ms: expected at least supervisor.restart_backoff_initial_ms (100), found 50"
        );
    }

    #[test]
    fn missing_environment_variable() {
        let text =
            "[database]\nurl = \"${DB_URL}\"\n[[sources]]\nname = \"a\"\ninclude = [\"x\"]\n";
        let e = parse(text, PathBuf::from("/etc/logbelt.toml"), &no_env).unwrap_err();
        assert_eq!(
            e.to_string(),
            "/etc/logbelt.toml:2:7: database.url: environment variable `DB_URL` is not set (in \"${DB_URL}\")"
        );
    }

    #[test]
    fn malformed_dollar_signs() {
        let text = |url: &str| {
            format!("[database]\nurl = \"{url}\"\n[[sources]]\nname = \"a\"\ninclude = [\"x\"]\n")
        };
        assert_eq!(
            error(&text("postgres://u:pa$word@h/db")),
            "/tmp/x/logbelt.toml:2:7: database.url: `$` must start `${NAME}` or be doubled as `$$` (in \"postgres://u:***@h/db\")"
        );
        assert_eq!(
            error(&text("sqlite://${DIR")),
            "/tmp/x/logbelt.toml:2:7: database.url: unclosed `${` (in \"sqlite://${DIR\")"
        );
        assert_eq!(
            error(&text("sqlite://${1X}/a.db")),
            "/tmp/x/logbelt.toml:2:7: database.url: invalid environment variable name \"1X\" (in \"sqlite://${1X}/a.db\")"
        );
    }

    #[test]
    fn invalid_glob() {
        let text = "[database]\nurl = \"sqlite://x.db\"\n\n[[sources]]\nname = \"a\"\ninclude = [\"x\"]\n\n\n[[sources]]\nname = \"b\"\n\ninclude = [\"logs/[a\"]\n";
        let e = parse(text, PathBuf::from("/etc/logbelt.toml"), &no_env).unwrap_err();
        assert_eq!(
            e.to_string(),
            "/etc/logbelt.toml:12:12: sources[1].include[0]: invalid glob \"logs/[a\": unclosed character class; missing ']'"
        );
        assert_eq!(
            error_with("exclude = [\"*.{gz\"]\n"),
            "/tmp/x/logbelt.toml:8:12: sources[0].exclude[0]: invalid glob \"*.{gz\": unclosed alternate group; missing '}' (maybe escape '{' with '[{]'?)"
        );
    }

    #[test]
    fn include_syntax_the_walker_does_not_support() {
        let text = |pattern: &str| {
            format!("[database]\nurl = \"sqlite://x.db\"\n[[sources]]\nname = \"a\"\ninclude = [\"{pattern}\"]\n")
        };
        assert_eq!(
            error(&text("logs/*.{jsonl,log}")),
            "/tmp/x/logbelt.toml:5:12: sources[0].include[0]: invalid glob \"logs/*.{jsonl,log}\": `{a,b}` alternatives are not supported in include patterns (they are in exclude); write one pattern per alternative, and `[{]` for a literal `{`"
        );
        assert_eq!(
            error(&text("logs/a**/x.log")),
            "/tmp/x/logbelt.toml:5:12: sources[0].include[0]: invalid glob \"logs/a**/x.log\": `**` must be a whole path component, as in \"logs/**/*.jsonl\""
        );
        let ok = load(&text("logs/**/[{]x[]]*.log")).unwrap();
        assert_eq!(ok.sources[0].include, ["/tmp/x/logs/**/[{]x[]]*.log"]);
    }

    #[test]
    fn tilde_is_not_expanded() {
        assert_eq!(
            error("[database]\nurl = \"sqlite://x.db\"\n[[sources]]\nname = \"a\"\ninclude = [\"~/logs/*.log\"]\n"),
            "/tmp/x/logbelt.toml:5:12: sources[0].include[0]: `~` is not expanded; write \"${HOME}/...\" or an absolute path, found \"~/logs/*.log\""
        );
        assert_eq!(
            error("[database]\nurl = \"sqlite://~/x.db\"\n[[sources]]\nname = \"a\"\ninclude = [\"x\"]\n"),
            "/tmp/x/logbelt.toml:2:7: database.url: `~` is not expanded; write \"${HOME}/...\" or an absolute path, found \"sqlite://~/x.db\""
        );
        // A file *name* pattern may start with `~` (Office lock files).
        let config = load(&format!("{MINIMAL}exclude = [\"~$$*\"]\n")).unwrap();
        assert!(config.sources[0].is_excluded(Path::new("/tmp/x/logs/~$report.jsonl")));
    }

    #[test]
    fn bad_start_at_and_field_lists() {
        assert_eq!(
            error_with("start_at = \"middle\"\n"),
            "/tmp/x/logbelt.toml:8:12: sources[0].start_at: expected \"beginning\" or \"end\", found \"middle\""
        );
        assert_eq!(
            error_with("[parse]\ntimestamp_fields = []\n"),
            "/tmp/x/logbelt.toml:9:20: parse.timestamp_fields: expected a non-empty array of field names, found []"
        );
        assert_eq!(
            error_with("[parse]\nmessage_fields = [\"msg\", \"\"]\n"),
            "/tmp/x/logbelt.toml:9:26: parse.message_fields[1]: expected a non-empty field name, found \"\""
        );
        assert_eq!(
            error_with("[agent]\nhost = \"\"\n"),
            "/tmp/x/logbelt.toml:9:8: agent.host: expected a non-empty string, found \"\""
        );
    }

    #[test]
    fn unreadable_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("y.toml");
        let e = Config::load(&path).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "cannot read config file {}: No such file or directory (os error 2)",
                path.display()
            )
        );
        assert!(matches!(e, ConfigError::Read { .. }));
        let e = Config::load(dir.path()).unwrap_err();
        assert!(e.to_string().starts_with("cannot read config file "), "{e}");
    }

    #[test]
    fn file_that_is_not_utf8() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logbelt.toml");
        std::fs::write(&path, b"[database]\nurl = \"sqlite://\xff.db\"\n").unwrap();
        assert_eq!(
            Config::load(&path).unwrap_err().to_string(),
            format!("{}:2:17: the file is not valid UTF-8", path.display())
        );
    }

    #[test]
    fn line_and_column_count_characters_and_skip_a_bom() {
        let text = format!(
            "\u{feff}# é ü\nparse = {{ timestamp_fields = [\"ä\"], max_line_bytes = 0 }}\n{MINIMAL}"
        );
        assert_eq!(
            error(&text),
            "/tmp/x/logbelt.toml:2:54: parse.max_line_bytes: expected an integer from 16 to 1073741824, found 0"
        );
        assert_eq!(line_column("ab\ncé", 6), (2, 3));
        assert_eq!(line_column("ab\ncé", 5), (2, 2)); // inside `é`: its start
        assert_eq!(line_column("ab\ncé", 4), (2, 2));
        assert_eq!(line_column("", 10), (1, 1));
    }

    // --- defaults, paths, environment ------------------------------------------------------

    #[test]
    fn defaults_apply_when_tables_are_omitted() {
        let config = load(MINIMAL).unwrap();
        assert_eq!(config.path, Path::new(PATH));
        assert_eq!(config.base_dir, Path::new("/tmp/x"));
        let db = &config.database;
        assert_eq!(
            db.url,
            DatabaseUrl::Sqlite {
                path: PathBuf::from("/tmp/x/logbelt.db")
            }
        );
        assert_eq!(db.writers, 1, "SQLite always has one writer");
        assert_eq!(
            db.busy_timeout,
            Duration::from_millis(DEFAULT_BUSY_TIMEOUT_MS)
        );
        assert_eq!(
            db.retry_initial_backoff,
            Duration::from_millis(DEFAULT_RETRY_INITIAL_BACKOFF_MS)
        );
        assert_eq!(
            db.retry_max_backoff,
            Duration::from_millis(DEFAULT_RETRY_MAX_BACKOFF_MS)
        );
        let host = gethostname::gethostname().into_string().unwrap();
        assert_eq!(config.agent.host, host);
        assert_eq!(config.sources.len(), 1);
        let source = &config.sources[0];
        assert_eq!(source.name, "app");
        assert_eq!(source.include, ["/tmp/x/logs/*.jsonl"]);
        assert!(source.exclude_patterns.is_empty());
        assert_eq!(source.start_at, DEFAULT_START_AT);
        assert_eq!(
            config.pipeline,
            PipelineConfig {
                batch_rows: DEFAULT_BATCH_ROWS,
                flush_interval: Duration::from_millis(DEFAULT_FLUSH_INTERVAL_MS),
                channel_capacity: DEFAULT_CHANNEL_CAPACITY,
                mailbox_capacity: DEFAULT_MAILBOX_CAPACITY,
                read_buffer_bytes: DEFAULT_READ_BUFFER_BYTES,
                poll_interval: Duration::from_millis(DEFAULT_POLL_INTERVAL_MS),
            }
        );
        assert_eq!(
            config.parse,
            ParseConfig {
                max_line_bytes: DEFAULT_MAX_LINE_BYTES,
                timestamp_fields: strings(DEFAULT_TIMESTAMP_FIELDS),
                level_fields: strings(DEFAULT_LEVEL_FIELDS),
                message_fields: strings(DEFAULT_MESSAGE_FIELDS),
            }
        );
        assert_eq!(
            config.shutdown.drain_timeout,
            Duration::from_millis(DEFAULT_DRAIN_TIMEOUT_MS)
        );
        assert_eq!(
            config.supervisor,
            SupervisorConfig {
                max_restarts: DEFAULT_MAX_RESTARTS,
                restart_window: Duration::from_millis(DEFAULT_RESTART_WINDOW_MS),
                restart_backoff_initial: Duration::from_millis(DEFAULT_RESTART_BACKOFF_INITIAL_MS),
                restart_backoff_max: Duration::from_millis(DEFAULT_RESTART_BACKOFF_MAX_MS),
            }
        );
        // Empty tables are the same as absent ones.
        let with_empty_tables = load(&format!(
            "{MINIMAL}[agent]\n[pipeline]\n[parse]\n[shutdown]\n[supervisor]\n"
        ))
        .unwrap();
        assert_eq!(with_empty_tables.pipeline, config.pipeline);
        assert_eq!(with_empty_tables.supervisor, config.supervisor);
    }

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn defaults_are_within_their_ranges() {
        let defaults: [(&IntKey, u64); 17] = [
            (&WRITERS, DEFAULT_WRITERS as u64),
            (&BUSY_TIMEOUT_MS, DEFAULT_BUSY_TIMEOUT_MS),
            (&RETRY_INITIAL_BACKOFF_MS, DEFAULT_RETRY_INITIAL_BACKOFF_MS),
            (&RETRY_MAX_BACKOFF_MS, DEFAULT_RETRY_MAX_BACKOFF_MS),
            (&BATCH_ROWS, DEFAULT_BATCH_ROWS as u64),
            (&FLUSH_INTERVAL_MS, DEFAULT_FLUSH_INTERVAL_MS),
            (&CHANNEL_CAPACITY, DEFAULT_CHANNEL_CAPACITY as u64),
            (&MAILBOX_CAPACITY, DEFAULT_MAILBOX_CAPACITY as u64),
            (&READ_BUFFER_BYTES, DEFAULT_READ_BUFFER_BYTES as u64),
            (&POLL_INTERVAL_MS, DEFAULT_POLL_INTERVAL_MS),
            (&MAX_LINE_BYTES, DEFAULT_MAX_LINE_BYTES as u64),
            (&DRAIN_TIMEOUT_MS, DEFAULT_DRAIN_TIMEOUT_MS),
            (&UNHEALTHY_AFTER_MS, DEFAULT_UNHEALTHY_AFTER_MS),
            (&MAX_RESTARTS, u64::from(DEFAULT_MAX_RESTARTS)),
            (&RESTART_WINDOW_MS, DEFAULT_RESTART_WINDOW_MS),
            (
                &RESTART_BACKOFF_INITIAL_MS,
                DEFAULT_RESTART_BACKOFF_INITIAL_MS,
            ),
            (&RESTART_BACKOFF_MAX_MS, DEFAULT_RESTART_BACKOFF_MAX_MS),
        ];
        assert_eq!(defaults.len(), INT_KEYS.len());
        for (key, default) in defaults {
            let default = i64::try_from(default).unwrap();
            assert!((key.min..=key.max).contains(&default), "{}", key.path);
        }
    }

    #[test]
    fn relative_paths_are_relative_to_the_config_folder() {
        let text = r#"
[database]
url = "sqlite://./data/../logbelt.db"

[[sources]]
name = "app"
include = ["logs/*.jsonl", "./other/**/*.log", "/var/log/app/*.jsonl"]
exclude = ["*.gz", "logs/old/*", "/var/log/app/skip.jsonl"]
"#;
        let config = parse(text, PathBuf::from("/srv/[prod]/logbelt.toml"), &no_env).unwrap();
        assert_eq!(config.base_dir, Path::new("/srv/[prod]"));
        assert_eq!(
            config.database.url,
            DatabaseUrl::Sqlite {
                path: PathBuf::from("/srv/[prod]/data/../logbelt.db")
            }
        );
        let source = &config.sources[0];
        assert_eq!(
            source.include,
            [
                "/srv/[[]prod[]]/logs/*.jsonl",
                "/srv/[[]prod[]]/other/**/*.log",
                "/var/log/app/*.jsonl"
            ]
        );
        assert_eq!(
            source.exclude_patterns,
            [
                "*.gz",
                "/srv/[[]prod[]]/logs/old/*",
                "/var/log/app/skip.jsonl"
            ]
        );
        assert!(source.is_excluded(Path::new("/srv/[prod]/logs/old/a.jsonl")));
        assert!(!source.is_excluded(Path::new("/srv/p/logs/old/a.jsonl")));

        let absolute = load("[database]\nurl = \"sqlite:///var/lib/logbelt/db.sqlite\"\n[[sources]]\nname = \"a\"\ninclude = [\"x\"]\n").unwrap();
        assert_eq!(
            absolute.database.url,
            DatabaseUrl::Sqlite {
                path: PathBuf::from("/var/lib/logbelt/db.sqlite")
            }
        );
    }

    #[test]
    fn load_reads_a_real_file_and_anchors_paths_to_its_folder() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logbelt.toml");
        std::fs::write(&path, MINIMAL).unwrap();
        let config = Config::load(&path).unwrap();
        assert_eq!(config.path, path);
        assert_eq!(config.base_dir, dir.path());
        let base = globset::escape(dir.path().to_str().unwrap());
        assert_eq!(config.sources[0].include, [format!("{base}/logs/*.jsonl")]);
        assert_eq!(
            config.database.url,
            DatabaseUrl::Sqlite {
                path: dir.path().join("logbelt.db")
            }
        );
    }

    #[test]
    fn environment_variables_expand_in_every_string() {
        let text = r#"
[database]
url = "postgres://${PGUSER}:${PGPASS}@db:5432/logs"
[agent]
host = "${HOST_NAME}"
[[sources]]
name = "${NAME}"
include = ["${LOG_DIR}/*.jsonl", "price$$/*.log"]
exclude = ["*.${EXT}"]
start_at = "${START}"
[parse]
level_fields = ["${LEVEL}"]
"#;
        let vars = [
            ("PGUSER", "logbelt"),
            ("PGPASS", "s3cr$t"),
            ("HOST_NAME", "web-1"),
            ("NAME", "api"),
            ("LOG_DIR", "/var/log/api"),
            ("EXT", "gz"),
            ("START", "end"),
            ("LEVEL", "lvl"),
        ];
        let config = load_with_env(text, &vars).unwrap();
        assert_eq!(
            config.database.url,
            DatabaseUrl::Postgres {
                url: "postgres://logbelt:s3cr$t@db:5432/logs".to_owned()
            }
        );
        assert_eq!(config.database.writers, DEFAULT_WRITERS);
        assert_eq!(config.agent.host, "web-1");
        let source = &config.sources[0];
        assert_eq!(source.name, "api");
        assert_eq!(
            source.include,
            ["/var/log/api/*.jsonl", "/tmp/x/price$/*.log"]
        );
        assert_eq!(source.exclude_patterns, ["*.gz"]);
        assert_eq!(source.start_at, StartAt::End);
        assert_eq!(config.parse.level_fields, ["lvl"]);
    }

    #[test]
    fn environment_variables_come_from_the_process_environment() {
        // The name is unique to this test; no other test reads or writes it.
        let name = "LOGBELT_CONFIG_RS_TEST_SOURCE_NAME_91D2";
        std::env::set_var(name, "from-env");
        let text = MINIMAL.replace("name = \"app\"", &format!("name = \"${{{name}}}\""));
        let config = Config::from_toml_str(&text, Path::new(PATH)).unwrap();
        assert_eq!(config.sources[0].name, "from-env");
        std::env::remove_var(name);
    }

    #[test]
    fn sqlite_path_from_environment_variable() {
        let text = "[database]\nurl = \"sqlite://${DATA}/logbelt.db\"\n[[sources]]\nname = \"a\"\ninclude = [\"x\"]\n";
        let config = load_with_env(text, &[("DATA", "state")]).unwrap();
        assert_eq!(
            config.database.url,
            DatabaseUrl::Sqlite {
                path: PathBuf::from("/tmp/x/state/logbelt.db")
            }
        );
        let config = load_with_env(text, &[("DATA", "/var/lib")]).unwrap();
        assert_eq!(
            config.database.url,
            DatabaseUrl::Sqlite {
                path: PathBuf::from("/var/lib/logbelt.db")
            }
        );
    }

    // --- redaction -------------------------------------------------------------------------

    #[test]
    fn password_is_redacted_in_display_and_debug() {
        let text = "[database]\nurl = \"postgresql://logbelt:hunter2@db.internal:5432/logs?sslmode=require\"\n[[sources]]\nname = \"a\"\ninclude = [\"x\"]\n";
        let config = load(text).unwrap();
        assert_eq!(
            config.database.url.to_string(),
            "postgresql://logbelt:***@db.internal:5432/logs?sslmode=require"
        );
        for shown in [
            format!("{:?}", config.database.url),
            format!("{:?}", config.database),
            format!("{config:?}"),
            format!("{config:#?}"),
        ] {
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(shown.contains("logbelt:***@db.internal"), "{shown}");
        }
        // The real URL is still there to connect with.
        assert!(
            matches!(&config.database.url, DatabaseUrl::Postgres { url } if url.contains("hunter2"))
        );
        let sqlite = DatabaseUrl::Sqlite {
            path: PathBuf::from("/var/lib/l.db"),
        };
        assert_eq!(sqlite.to_string(), "sqlite:///var/lib/l.db");
    }

    #[test]
    fn password_is_redacted_in_errors() {
        // A password that came from the environment, in a URL rejected after expansion.
        let text = "[database]\nurl = \"${URL}\"\n[[sources]]\nname = \"a\"\ninclude = [\"x\"]\n";
        let e = load_with_env(text, &[("URL", "pg://u:topsecret@h/db")])
            .unwrap_err()
            .to_string();
        assert!(!e.contains("topsecret"), "{e}");
        assert!(e.ends_with("found \"pg://u:***@h/db\""), "{e}");
        // A URL in the wrong place, shown as "found ...".
        let e = error_with("[agent]\nhost = [\"postgres://u:topsecret@h/db\"]\n");
        assert!(!e.contains("topsecret"), "{e}");
    }

    #[test]
    fn redact_handles_urls_and_keyword_strings() {
        let cases = [
            (
                "postgres://user:pass@host:5432/db",
                "postgres://user:***@host:5432/db",
            ),
            ("postgres://user@host/db", "postgres://user@host/db"),
            ("postgres://host/db", "postgres://host/db"),
            ("postgres://user:@host/db", "postgres://user:@host/db"),
            ("postgres://[::1]:5432/db", "postgres://[::1]:5432/db"),
            ("postgres://u:p@ss/w@rd@host/db", "postgres://u:***@host/db"),
            (
                "connection to \"postgres://a:b@h/d\" failed; retry postgres://c:d@h2/e now",
                "connection to \"postgres://a:***@h/d\" failed; retry postgres://c:***@h2/e now",
            ),
            (
                "postgres://h/db?user=u&password=secret&sslmode=require",
                "postgres://h/db?user=u&password=***&sslmode=require",
            ),
            (
                "host=h user=u password=secret dbname=d",
                "host=h user=u password=*** dbname=d",
            ),
            (
                "host=h PASSWORD = 'sec ret\\' x' dbname=d",
                "host=h PASSWORD = *** dbname=d",
            ),
            ("no password here", "no password here"),
            ("password=", "password="),
            ("", ""),
        ];
        for (input, expected) in cases {
            assert_eq!(redact(input), expected, "{input}");
        }
    }

    // --- exclude ---------------------------------------------------------------------------

    #[test]
    fn exclude_matches_names_without_slash_and_paths_with_slash() {
        let text = format!(
            "{MINIMAL}exclude = [\"*.gz\", \"x*\", \"archive/*.jsonl\", \"/var/log/**/debug.jsonl\"]\n"
        );
        let config = load(&text).unwrap();
        let source = &config.sources[0];
        let excluded = |p: &str| source.is_excluded(Path::new(p));
        // Name patterns: any folder.
        assert!(excluded("/tmp/x/logs/app.jsonl.gz"));
        assert!(excluded("/elsewhere/deep/a.gz"));
        assert!(excluded("/tmp/x/logs/xyz.jsonl"));
        // ... but only the name: `x*` does not match through the folder `/x/`.
        assert!(!excluded("/tmp/x/logs/app.jsonl"));
        // Path patterns: relative ones are anchored at the config folder; `*` stops at `/`.
        assert!(excluded("/tmp/x/archive/a.jsonl"));
        assert!(!excluded("/tmp/x/archive/2024/a.jsonl"));
        assert!(!excluded("/other/archive/a.jsonl"));
        assert!(excluded("/var/log/a/b/debug.jsonl"));
        assert!(excluded("/var/log/debug.jsonl"));
        assert!(!excluded("/var/log/a/info.jsonl"));

        let none = load(MINIMAL).unwrap();
        assert!(!none.sources[0].is_excluded(Path::new("/tmp/x/logs/a.gz")));
    }

    // --- everything set --------------------------------------------------------------------

    #[test]
    fn every_key_set() {
        let text = r#"
[database]
url = "postgres://logbelt:pw@db:5432/logs"
writers = 4
busy_timeout_ms = 2500
retry_initial_backoff_ms = 50
retry_max_backoff_ms = 10000

[agent]
host = "web-7"

[[sources]]
name = "app"
include = ["logs/*.jsonl"]
exclude = ["*.gz"]
start_at = "beginning"

[[sources]]
name = "nginx.access-1"
include = ["/var/log/nginx/*.json", "/var/log/nginx/*.json.1"]
start_at = "end"

[pipeline]
batch_rows = 10_000
flush_interval_ms = 500
channel_capacity = 8
mailbox_capacity = 4
read_buffer_bytes = 0x2_0000
poll_interval_ms = 250

[parse]
max_line_bytes = 65536
timestamp_fields = ["ts"]
level_fields = ["level", "lvl"]
message_fields = ["msg"]

[shutdown]
drain_timeout_ms = 5000

[supervisor]
max_restarts = 0
restart_window_ms = 1000
restart_backoff_initial_ms = 10
restart_backoff_max_ms = 10
"#;
        let config = load(text).unwrap();
        let db = &config.database;
        assert_eq!(
            db.url,
            DatabaseUrl::Postgres {
                url: "postgres://logbelt:pw@db:5432/logs".to_owned()
            }
        );
        assert_eq!(db.writers, 4);
        assert_eq!(db.busy_timeout, Duration::from_millis(2500));
        assert_eq!(db.retry_initial_backoff, Duration::from_millis(50));
        assert_eq!(db.retry_max_backoff, Duration::from_secs(10));
        assert_eq!(
            config.agent,
            AgentConfig {
                host: "web-7".to_owned()
            }
        );
        assert_eq!(config.sources.len(), 2);
        assert_eq!(config.sources[0].include, ["/tmp/x/logs/*.jsonl"]);
        assert_eq!(config.sources[0].exclude_patterns, ["*.gz"]);
        assert_eq!(config.sources[0].start_at, StartAt::Beginning);
        assert_eq!(config.sources[1].name, "nginx.access-1");
        assert_eq!(
            config.sources[1].include,
            ["/var/log/nginx/*.json", "/var/log/nginx/*.json.1"]
        );
        assert_eq!(config.sources[1].start_at, StartAt::End);
        assert_eq!(
            config.pipeline,
            PipelineConfig {
                batch_rows: 10_000,
                flush_interval: Duration::from_millis(500),
                channel_capacity: 8,
                mailbox_capacity: 4,
                read_buffer_bytes: 131_072,
                poll_interval: Duration::from_millis(250),
            }
        );
        assert_eq!(
            config.parse,
            ParseConfig {
                max_line_bytes: 65_536,
                timestamp_fields: strings(&["ts"]),
                level_fields: strings(&["level", "lvl"]),
                message_fields: strings(&["msg"]),
            }
        );
        assert_eq!(
            config.shutdown,
            ShutdownConfig {
                drain_timeout: Duration::from_secs(5)
            }
        );
        assert_eq!(
            config.supervisor,
            SupervisorConfig {
                max_restarts: 0,
                restart_window: Duration::from_secs(1),
                restart_backoff_initial: Duration::from_millis(10),
                restart_backoff_max: Duration::from_millis(10),
            }
        );
    }
}
