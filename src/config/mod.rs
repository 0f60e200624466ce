//! The config file `logbelt.toml`: the structs below are deserialised straight from it.
//!
//! Each key is one field, and its attributes say all there is to know about reading it: its
//! name in the file, its default, what it may hold (`ranged::<1, 100_000, _, _>`: an integer
//! from 1 to 100000). Beside this file:
//! - `kinds`: what a value may be, and the "expected …, found …" message when it is not;
//! - `rules`: `${VAR}` expansion, `~`, database URLs, glob patterns, names, and the rules
//!   across keys (backoff pairs in order, source names unique, one SQLite writer);
//! - `error`: [`ConfigError`], and how a serde error becomes one line.
//!
//! Every error is one line naming the file, the 1-based line and column, the key and what
//! was expected (`/etc/logbelt.toml:7:14: pipeline.batch_rows: expected an integer from 1 to
//! 100000, found 0`), and every error is an exit-code-2 error for the binary. Error messages
//! never show a database password: they pass through [`redact`](crate::redact::redact).
//!
//! Rules a user may trip over:
//! - `${NAME}` in any string value is replaced by the environment variable `NAME`; `$$` is a
//!   literal `$`; any other `$` is an error, as is a variable that is not set.
//! - Relative `include` globs, relative `exclude` globs that contain a `/`, and relative
//!   `sqlite://` paths are relative to the folder of the config file (not the working
//!   directory). `~` is **not** expanded: a pattern or path starting with `~/` is rejected with
//!   a hint to write `${HOME}/...`.
//! - `*` and `?` never match `/`; `**` (a whole path component) matches any number of folders;
//!   `{a,b}` matches either.
//!
//! This module does no I/O besides reading the file and asking for the hostname: it never
//! touches the database or the log files.

mod error;
mod kinds;
mod retention;
mod rules;
mod search;
#[cfg(test)]
mod tests;
mod web;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use globset::GlobSet;
use serde::Deserialize;
use toml::de::DeTable;

pub use error::{cap_echo, ConfigError, Location, ECHO_MAX_CHARS};
use kinds::{default_int, default_ms, defaults, ranged, ranged_ms, read, table, Flag, List, Table};
pub use retention::{shown_size, shown_span, RetentionConfig};
use rules::{FieldName, Host, IncludePattern, Listen, SourceName};
pub use search::SearchConfig;
pub use web::WebConfig;

use crate::parse::{Format, OnMismatch, SourceFormat, TimestampFormats};
use crate::redact::redact;

/// Default `database.url`, also when there is no `[database]` table: a SQLite file in the
/// config file's folder.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://logbelt.db";

/// A validated config: every default applied, every path absolute, every `${VAR}` expanded.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Absolute path of the config file (made absolute lexically: symlinks are not resolved).
    #[serde(skip)]
    pub path: PathBuf,
    /// The folder holding the config file; relative globs and SQLite paths were joined to it.
    #[serde(skip)]
    pub base_dir: PathBuf,
    /// `[database]`: where rows and positions go.
    #[serde(default = "defaults", deserialize_with = "table")]
    pub database: DatabaseConfig,
    /// `[agent]`: who this logbelt is.
    #[serde(default = "defaults", deserialize_with = "table")]
    pub agent: AgentConfig,
    /// `[[sources]]`: the files to tail, at least one source, names unique.
    #[serde(default, deserialize_with = "read::<List<Table<SourceConfig>>, _>")]
    pub sources: Vec<SourceConfig>,
    /// `[pipeline]`: batch sizes, queue bounds, read sizes.
    #[serde(default = "defaults", deserialize_with = "table")]
    pub pipeline: PipelineConfig,
    /// `[parse]`: how a line becomes a record.
    #[serde(default = "defaults", deserialize_with = "table")]
    pub parse: ParseConfig,
    /// `[shutdown]`: how long a graceful stop may take.
    #[serde(default = "defaults", deserialize_with = "table")]
    pub shutdown: ShutdownConfig,
    /// `[supervisor]`: restarts of failed stages.
    #[serde(default = "defaults", deserialize_with = "table")]
    pub supervisor: SupervisorConfig,
    /// `[metrics]`: the Prometheus and health endpoint.
    #[serde(default = "defaults", deserialize_with = "table")]
    pub metrics: MetricsConfig,
    /// `[retention]`: how long rows are kept and how much room they may take.
    #[serde(default = "defaults", deserialize_with = "table")]
    pub retention: RetentionConfig,
    /// `[search]`: the search index.
    #[serde(default = "defaults", deserialize_with = "table")]
    pub search: SearchConfig,
    /// `[web]`: the web console served by `run` too.
    #[serde(default = "defaults", deserialize_with = "table")]
    pub web: WebConfig,
}

/// `[database]`.
///
/// `Debug` is safe to log: the password inside the URL is redacted by [`DatabaseUrl`]'s
/// hand-written `Debug`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `url`: which database, SQLite or PostgreSQL. Default: [`DEFAULT_DATABASE_URL`].
    #[serde(
        default = "rules::default_database_url",
        deserialize_with = "read::<DatabaseUrl, _>"
    )]
    pub url: DatabaseUrl,
    /// `writers`: PostgreSQL connections committing batches in parallel, 1 to 64 (default 2).
    /// More writers raise throughput until the database's own ceiling; each is a connection
    /// held open for the whole run. Always 1 for SQLite (one writer at a time is all SQLite
    /// allows), whatever the file says.
    #[serde(
        default = "default_int::<2, _>",
        deserialize_with = "ranged::<1, 64, _, _>"
    )]
    pub writers: usize,
    /// `busy_timeout_ms`: how long a commit waits for a lock held by another session before it
    /// fails with a transient error (then retried; nothing is lost), 0 (fail at once) to 1 hour
    /// (default 5 s). SQLite: its busy timeout. PostgreSQL: the `lock_timeout` of every
    /// transaction logbelt runs (0 is 1 ms there: PostgreSQL reads 0 as "wait forever"), and
    /// `statement_timeout` ten times that, at least 30 s; both set with `SET LOCAL`, so they
    /// hold through PgBouncer's transaction pooling.
    #[serde(
        rename = "busy_timeout_ms",
        default = "default_ms::<5_000>",
        deserialize_with = "ranged_ms::<0, 3_600_000, _>"
    )]
    pub busy_timeout: Duration,
    /// `retry_initial_backoff_ms`: the first delay after a transient database error
    /// (connection lost, lock timeout, serialization failure), 1 ms to 1 hour (default 100 ms).
    /// It doubles on every further failure; while the writer waits, the queues in front of it
    /// fill and the readers stop reading.
    #[serde(
        rename = "retry_initial_backoff_ms",
        default = "default_ms::<100>",
        deserialize_with = "ranged_ms::<1, 3_600_000, _>"
    )]
    pub retry_initial_backoff: Duration,
    /// `retry_max_backoff_ms`: the cap of that delay, at least `retry_initial_backoff`, 1 ms to
    /// 1 hour (default 30 s). An outage is retried forever at this pace; a recovered database
    /// is noticed at most this long after it comes back.
    #[serde(
        rename = "retry_max_backoff_ms",
        default = "default_ms::<30_000>",
        deserialize_with = "ranged_ms::<1, 3_600_000, _>"
    )]
    pub retry_max_backoff: Duration,
    /// `partition_interval`: PostgreSQL only: the time each partition of `log_events` and
    /// `dead_letters` covers, by `ingested_at`, from `"1m"` to `"400d"` (default `"1d"`).
    /// Retention drops whole partitions, so rows live up to one interval past `max_age`.
    /// Partitions start at multiples of the interval since 1970-01-01 UTC.
    #[serde(
        default = "default_partition_interval",
        deserialize_with = "read::<retention::Span<60, { retention::MAX_SPAN_SECS }>, _>"
    )]
    pub partition_interval: Duration,
}

fn default_partition_interval() -> Duration {
    Duration::from_secs(86_400)
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
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// `host`: stored with every row and every file position, so several machines can share
    /// one PostgreSQL database. Default: the machine's hostname.
    #[serde(default = "rules::hostname", deserialize_with = "read::<Host, _>")]
    pub host: String,
}

/// One `[[sources]]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// `name`: stored with every row; unique among sources; letters, digits, `_`, `.`, `-`.
    #[serde(deserialize_with = "read::<SourceName, _>")]
    pub name: String,
    /// `include`: absolute glob patterns (relative ones were joined to the config file's
    /// folder, whose glob metacharacters were escaped as `[*]`), at least one. Every file that
    /// matches is tailed; new matches are picked up at each poll. `**` only as a whole path
    /// component.
    #[serde(deserialize_with = "read::<List<IncludePattern>, _>")]
    pub include: Vec<String>,
    /// `exclude`: files not to tail, although `include` matches them. Use
    /// [`SourceConfig::is_excluded`].
    #[serde(default, deserialize_with = "rules::exclude")]
    pub exclude: Exclude,
    /// `start_at`: where to start a file that has no committed position (default
    /// `"beginning"`).
    #[serde(default, deserialize_with = "read::<StartAt, _>")]
    pub start_at: StartAt,
    /// `follow_symlinks`: whether globs walk into symbolic links to directories (default
    /// false). A link to a file that a glob matches is always followed.
    #[serde(default, deserialize_with = "read::<Flag, _>")]
    pub follow_symlinks: bool,
    /// `format`: what the lines are, one of [`Format::NAMES`] (default `"json"`); see
    /// [`crate::parse::Format`]. [`SourceConfig::format`] is it compiled, with `pattern`.
    #[serde(
        rename = "format",
        default = "rules::default_format",
        deserialize_with = "read::<rules::FormatName, _>"
    )]
    pub format_name: String,
    /// `pattern`: the regular expression of `format = "regex"` (and only of it), compiled
    /// once here; named captures become fields.
    #[serde(default, deserialize_with = "read::<rules::Pattern, _>")]
    pub pattern: Option<regex::Regex>,
    /// `timestamp_format`: a strftime format or a list of them, tried in order on the
    /// timestamp text before RFC 3339 and epoch numbers.
    #[serde(default, deserialize_with = "read::<rules::TimestampFormatList, _>")]
    pub timestamp_format: TimestampFormats,
    /// `on_mismatch`: what a line that does not fit `format` becomes: `"dead_letter"` (the
    /// default) or `"text"` (an event `{"message": line}`).
    #[serde(default, deserialize_with = "read::<OnMismatch, _>")]
    pub on_mismatch: OnMismatch,
    /// `default_level`: the level of an event whose line gives none (CLEF omits `@l` for
    /// Information; RFC 3164 files hold no priority), normalised like a line's level.
    #[serde(default, deserialize_with = "read::<rules::DefaultLevel, _>")]
    pub default_level: Option<String>,
    /// `[sources.multiline]`: lines joined into one event.
    #[serde(default, deserialize_with = "multiline_table")]
    pub multiline: Option<MultilineConfig>,
    /// `format` and `pattern` together (set once the whole file is read).
    #[serde(skip)]
    pub format: Format,
}

/// `[sources.multiline]`: which lines make one event. Exactly one of `start` and `continue`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MultilineConfig {
    /// `start`: a line matching this starts an event; the others continue the one before.
    #[serde(default, deserialize_with = "read::<rules::Pattern, _>")]
    pub start: Option<regex::Regex>,
    /// `continue`: a line matching this continues the event before; the others start one.
    #[serde(
        rename = "continue",
        default,
        deserialize_with = "read::<rules::Pattern, _>"
    )]
    pub continue_: Option<regex::Regex>,
    /// `max_lines`: an event reaching this many lines is stored and the rest starts a new
    /// one, 1 to 100000 (default 500).
    #[serde(
        default = "default_int::<500, _>",
        deserialize_with = "ranged::<1, 100_000, _, _>"
    )]
    pub max_lines: usize,
    /// `max_bytes`: likewise for its bytes, 16 to 1073741824 (default 1 MiB).
    #[serde(
        default = "default_int::<1_048_576, _>",
        deserialize_with = "ranged::<16, 1_073_741_824, _, _>"
    )]
    pub max_bytes: usize,
    /// `timeout_ms`: an event is stored when no line has come for this long, 1 ms to 1 hour
    /// (default 1 s).
    #[serde(
        rename = "timeout_ms",
        default = "default_ms::<1_000>",
        deserialize_with = "ranged_ms::<1, 3_600_000, _>"
    )]
    pub timeout: Duration,
}

fn multiline_table<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<MultilineConfig>, D::Error> {
    table(d).map(Some)
}

impl SourceConfig {
    /// Whether `path` (absolute, as produced by expanding `include`) is excluded.
    pub fn is_excluded(&self, path: &Path) -> bool {
        self.exclude.matches(path)
    }
}

/// `sources[].exclude`, compiled: a pattern without `/` is kept as written and matches the
/// file name; one with `/` is absolute (relative ones were joined to the config file's folder)
/// and matches the whole path.
#[derive(Debug, Clone, Default)]
pub struct Exclude {
    /// Index `i` of the set is `patterns[i]`.
    set: GlobSet,
    patterns: Vec<String>,
}

impl Exclude {
    /// The patterns as they are matched.
    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }

    /// Whether `path` (absolute) matches one of the patterns.
    pub fn matches(&self, path: &Path) -> bool {
        if self.set.is_empty() {
            return false;
        }
        let is_name_pattern = |i: &usize| self.patterns.get(*i).is_some_and(|p| !p.contains('/'));
        let by_name = path
            .file_name()
            .is_some_and(|name| self.set.matches(name).iter().any(is_name_pattern));
        by_name || self.set.matches(path).iter().any(|i| !is_name_pattern(i))
    }
}

/// Where to start reading a file that has no committed position. A file with a committed
/// position always resumes there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StartAt {
    /// `"beginning"`: read the whole file.
    #[default]
    Beginning,
    /// `"end"`: skip what the file holds when first seen; read only what is appended.
    End,
}

/// `[pipeline]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// `batch_rows`: the most rows per transaction, 1 to 100000 (default 5000). A batch is
    /// committed when it has this many rows or after `flush_interval`, whichever comes first.
    /// The database layer splits a batch into statements under its bind-parameter cap (65,535
    /// for a PostgreSQL INSERT, 32,766 for bundled SQLite); COPY has no cap.
    #[serde(
        default = "default_int::<5_000, _>",
        deserialize_with = "ranged::<1, 100_000, _, _>"
    )]
    pub batch_rows: usize,
    /// `flush_interval_ms`: a partial batch is committed after this long, 1 ms to 1 hour
    /// (default 200 ms): how stale the table can be behind a quiet file.
    #[serde(
        rename = "flush_interval_ms",
        default = "default_ms::<200>",
        deserialize_with = "ranged_ms::<1, 3_600_000, _>"
    )]
    pub flush_interval: Duration,
    /// `channel_capacity`: batches in the bounded tokio channel from the tail tasks to the
    /// reader actor, 1 to 65536 (default 64). When it is full the tail tasks stop reading;
    /// nothing is dropped.
    #[serde(
        default = "default_int::<64, _>",
        deserialize_with = "ranged::<1, 65_536, _, _>"
    )]
    pub channel_capacity: usize,
    /// `mailbox_capacity`: batches in each actor mailbox, 1 to 65536 (default 16, as actix's
    /// own). When a mailbox is full the sender waits: the backpressure from the database to
    /// the readers.
    #[serde(
        default = "default_int::<16, _>",
        deserialize_with = "ranged::<1, 65_536, _, _>"
    )]
    pub mailbox_capacity: usize,
    /// `read_buffer_bytes`: bytes per `read()` call on a file, 4096 to 16777216 (default
    /// 65536). A longer line is assembled over several reads: this bounds the cost of one
    /// read, not the line length.
    #[serde(
        default = "default_int::<65_536, _>",
        deserialize_with = "ranged::<4_096, 16_777_216, _, _>"
    )]
    pub read_buffer_bytes: usize,
    /// `poll_interval_ms`: how often the include globs are scanned again and known files
    /// checked for growth, rotation and truncation, 10 ms to 1 hour (default 1 s). inotify
    /// wakes the tailer sooner; this bounds how late a change is seen without it.
    #[serde(
        rename = "poll_interval_ms",
        default = "default_ms::<1_000>",
        deserialize_with = "ranged_ms::<10, 3_600_000, _>"
    )]
    pub poll_interval: Duration,
}

/// `[parse]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParseConfig {
    /// `max_line_bytes`: the longest line stored as a record, 16 to 1073741824 (default
    /// 1 MiB). A longer line becomes a dead letter holding its first `max_line_bytes` bytes
    /// and its full length; the file goes on.
    #[serde(
        default = "default_int::<1_048_576, _>",
        deserialize_with = "ranged::<16, 1_073_741_824, _, _>"
    )]
    pub max_line_bytes: usize,
    /// `timestamp_fields`: the first present one gives the event time (RFC 3339, epoch
    /// seconds or milliseconds; else `ts` is NULL); non-empty.
    #[serde(
        default = "default_timestamp_fields",
        deserialize_with = "read::<List<FieldName>, _>"
    )]
    pub timestamp_fields: Vec<String>,
    /// `level_fields`: the first present one gives the level, lower-cased; non-empty.
    #[serde(
        default = "default_level_fields",
        deserialize_with = "read::<List<FieldName>, _>"
    )]
    pub level_fields: Vec<String>,
    /// `message_fields`: the first present one gives the message; non-empty.
    #[serde(
        default = "default_message_fields",
        deserialize_with = "read::<List<FieldName>, _>"
    )]
    pub message_fields: Vec<String>,
    /// Not a key of `[parse]`: each `[[sources]]` table's format, `timestamp_format` and
    /// `on_mismatch`, put here once the file is read, so that the parser gets them with the
    /// field names ([`crate::parse::ParseSettings::from_config`]).
    #[serde(skip)]
    pub sources: Vec<SourceFormat>,
}

fn default_timestamp_fields() -> Vec<String> {
    rules::owned(crate::parse::DEFAULT_TIMESTAMP_FIELDS)
}

fn default_level_fields() -> Vec<String> {
    rules::owned(crate::parse::DEFAULT_LEVEL_FIELDS)
}

fn default_message_fields() -> Vec<String> {
    rules::owned(crate::parse::DEFAULT_MESSAGE_FIELDS)
}

/// `[shutdown]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShutdownConfig {
    /// `drain_timeout_ms`: how long a graceful stop waits for queued batches to be committed,
    /// 1 ms to 24 hours (default 30 s). After this, logbelt exits; lines not yet committed are
    /// read again at the next start (positions only move with commits).
    #[serde(
        rename = "drain_timeout_ms",
        default = "default_ms::<30_000>",
        deserialize_with = "ranged_ms::<1, 86_400_000, _>"
    )]
    pub drain_timeout: Duration,
}

/// `[metrics]`: the Prometheus and health endpoint. Off unless `listen` is set.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// `listen`: the address to serve `/metrics` and `/health` on, e.g. `127.0.0.1:9464`.
    /// A non-loopback address exposes the endpoint to the network: only on the operator's word.
    #[serde(default, deserialize_with = "read::<Listen, _>")]
    pub listen: Option<SocketAddr>,
    /// `unhealthy_after_ms`: `/health` is 503 once a commit has been failing or waiting
    /// (database down, locked, full, refusing) this long, 1 ms to 24 hours (default 60 s):
    /// long enough that a database restart pages nobody, short enough that a database that
    /// cannot take writes shows within a minute.
    #[serde(
        rename = "unhealthy_after_ms",
        default = "default_ms::<60_000>",
        deserialize_with = "ranged_ms::<1, 86_400_000, _>"
    )]
    pub unhealthy_after: Duration,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        defaults()
    }
}

/// `[supervisor]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SupervisorConfig {
    /// `max_restarts`: more than this many restarts within `restart_window` ends the process
    /// (exit 1); 0 (the first failure is fatal) to 10000 (default 5).
    #[serde(
        default = "default_int::<5, _>",
        deserialize_with = "ranged::<0, 10_000, _, _>"
    )]
    pub max_restarts: u32,
    /// `restart_window_ms`: the sliding window the budget counts over, 1 ms to 24 hours
    /// (default 60 s).
    #[serde(
        rename = "restart_window_ms",
        default = "default_ms::<60_000>",
        deserialize_with = "ranged_ms::<1, 86_400_000, _>"
    )]
    pub restart_window: Duration,
    /// `restart_backoff_initial_ms`: delay before the first restart of a failed stage, 1 ms to
    /// 1 hour (default 100 ms); it doubles on each further restart in the window.
    #[serde(
        rename = "restart_backoff_initial_ms",
        default = "default_ms::<100>",
        deserialize_with = "ranged_ms::<1, 3_600_000, _>"
    )]
    pub restart_backoff_initial: Duration,
    /// `restart_backoff_max_ms`: the cap of that delay, at least `restart_backoff_initial`,
    /// 1 ms to 1 hour (default 10 s).
    #[serde(
        rename = "restart_backoff_max_ms",
        default = "default_ms::<10_000>",
        deserialize_with = "ranged_ms::<1, 3_600_000, _>"
    )]
    pub restart_backoff_max: Duration,
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
            Ok(text) => parse(text, path, Box::new(|name| std::env::var_os(name))),
            Err(e) => {
                let valid = String::from_utf8_lossy(&bytes[..e.valid_up_to()]);
                let file = error::File {
                    path: &path,
                    text: &valid,
                };
                Err(file.at(valid.len(), None, "the file is not valid UTF-8"))
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
        parse(
            text,
            absolute(path)?,
            Box::new(|name| std::env::var_os(name)),
        )
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

fn parse(text: &str, path: PathBuf, env: rules::Env) -> Result<Config, ConfigError> {
    // A byte-order mark is invisible to the user: columns are counted without it.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let base_dir = path
        .parent()
        .map_or_else(|| path.clone(), Path::to_path_buf);
    let file = error::File { path: &path, text };
    let tree = DeTable::parse(text).map_err(|e| file.syntax(&e))?;
    let context = rules::Context {
        base_dir: base_dir.clone(),
        env,
    };
    let deserializer = toml::de::Deserializer::from(tree.clone());
    let mut config: Config =
        rules::within(context, || serde_path_to_error::deserialize(deserializer))
            .map_err(|e| file.serde(e))?;
    rules::across(&mut config, &tree, &file)?;
    config.path = path;
    config.base_dir = base_dir;
    Ok(config)
}
