//! Storage that lives for months: rows expire by age and by size, and `files` rows of files that
//! are gone are pruned once what they cover has expired (ARCHITECTURE.md, "Retention").
//!
//! The [`Retention`] actor runs beside the pipeline, not in it: every `check_interval` it hands
//! one [`Lifecycle`] (the backend's own way of expiring) to a blocking thread for a run. A run
//! never holds up commits for long: SQLite deletes in chunks, each its own short transaction;
//! PostgreSQL drops whole partitions, detached under a short `lock_timeout`. Expiry never
//! touches the position of a file that still exists, so an expired line is never read again.

mod postgres;
mod sqlite;

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use chrono::{DateTime, Utc};

use crate::config::{Config, DatabaseConfig, DatabaseUrl};
use crate::db::DbError;
use crate::tail::discover::Globs;
use crate::tail::fingerprint::{fnv1a, FINGERPRINT_MAX_BYTES};

/// The limits of one run, from `[retention]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_age: Option<Duration>,
    pub max_bytes: Option<u64>,
}

/// What one run removed, and what is left.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expired {
    pub log_events: u64,
    pub dead_letters: u64,
    pub files: u64,
    pub partitions: u64,
    /// Every row ingested before this instant is gone (the newest such bound this run set).
    pub before: Option<DateTime<Utc>>,
    /// The room the rows take after the run, as `max_bytes` counts it.
    pub stored_bytes: u64,
}

/// A `files` row that may be pruned: the file it names is no longer where it was.
#[derive(Debug, Clone)]
pub struct FileRow {
    pub id: i64,
    pub dev: u64,
    pub inode: u64,
    pub fingerprint_len: u32,
    pub fingerprint: u64,
}

/// A [`FileRow`] as both backends read it: [`FILES_BEFORE_SQL`]'s columns.
#[derive(diesel::QueryableByName)]
struct FileRowSql {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    id: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    dev: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    inode: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    fingerprint_len: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    fingerprint: i64,
}

impl From<FileRowSql> for FileRow {
    fn from(r: FileRowSql) -> Self {
        FileRow {
            id: r.id,
            dev: r.dev as u64,
            inode: r.inode as u64,
            fingerprint_len: r.fingerprint_len as u32,
            fingerprint: r.fingerprint as u64,
        }
    }
}

/// A host's `files` rows last committed before an instant (`?` parameters: host, instant).
const FILES_BEFORE_SQL: &str = "SELECT id, dev, inode, CAST(fingerprint_len AS BIGINT) AS \
     fingerprint_len, fingerprint FROM files WHERE host = ? AND updated_at < ?";

/// One backend's way of keeping storage within the limits. Blocking: run it on a blocking
/// thread.
pub trait Lifecycle: Send {
    /// Makes room for the rows to come (PostgreSQL: the partitions of the next intervals).
    ///
    /// # Errors
    /// When the database refuses; rows still have somewhere to go (the default partition).
    fn prepare(&mut self, now: DateTime<Utc>) -> Result<(), DbError>;

    /// Removes the rows beyond `limits`, oldest first; stops early once `stop` is set.
    ///
    /// # Errors
    /// When the database fails; what was removed before stays removed.
    fn expire(
        &mut self,
        limits: &Limits,
        now: DateTime<Utc>,
        stop: &AtomicBool,
    ) -> Result<Expired, DbError>;

    /// `host`'s `files` rows last committed before `before`.
    ///
    /// # Errors
    /// When the database cannot be read.
    fn files_before(&mut self, host: &str, before: DateTime<Utc>) -> Result<Vec<FileRow>, DbError>;

    /// Deletes the `files` rows `ids` (of `host`) if they were not committed since `before`.
    ///
    /// # Errors
    /// When the database fails.
    fn delete_files(
        &mut self,
        host: &str,
        ids: &[i64],
        before: DateTime<Utc>,
    ) -> Result<u64, DbError>;

    /// Records `host`'s run, for `logbelt status`.
    ///
    /// # Errors
    /// When the database fails.
    fn record(&mut self, host: &str, now: DateTime<Utc>, run: &Expired) -> Result<(), DbError>;
}

/// Opens the backend's lifecycle on its own connection.
///
/// # Errors
/// When the database cannot be opened.
pub fn open(config: &DatabaseConfig) -> Result<Box<dyn Lifecycle>, DbError> {
    match &config.url {
        DatabaseUrl::Sqlite { path } => Ok(Box::new(sqlite::SqliteLifecycle::open(
            path,
            config.busy_timeout,
        )?)),
        DatabaseUrl::Postgres { url } => Ok(Box::new(postgres::PgLifecycle::open(
            url,
            config.partition_interval,
        )?)),
    }
}

/// Whether this database needs a [`Retention`] actor: PostgreSQL always (its partitions are
/// created ahead of time), SQLite when a limit is set.
pub fn needed(config: &Config) -> bool {
    matches!(config.database.url, DatabaseUrl::Postgres { .. })
        || config.retention.limits_anything()
}

/// Prepares the database for the rows to come before the pipeline commits its first batch
/// (PostgreSQL: the partitions of now and the next intervals). A failure is only a warning:
/// rows still land in the default partition.
pub fn prepare_at_start(config: &DatabaseConfig) {
    if !matches!(config.url, DatabaseUrl::Postgres { .. }) {
        return;
    }
    if let Err(e) = open(config).and_then(|mut l| l.prepare(Utc::now())) {
        tracing::warn!(error = %e, "Cannot create the partitions ahead; rows go to the default partition until a later check can.");
    }
}

/// One run: prepare, expire, prune the `files` rows of gone files, record.
fn run_once(
    lifecycle: &mut dyn Lifecycle,
    config: &Config,
    globs: &Globs,
    stop: &AtomicBool,
) -> Result<Expired, DbError> {
    let now = Utc::now();
    // Expiry goes on when the room for new rows cannot be made (no right to create partitions:
    // rows go to the default partition, which expiry still cleans); the error is reported after.
    let prepared = lifecycle.prepare(now);
    let limits = Limits {
        max_age: config.retention.max_age,
        max_bytes: config.retention.max_bytes,
    };
    if limits.max_age.is_none() && limits.max_bytes.is_none() {
        return prepared.map(|()| Expired::default());
    }
    let mut run = lifecycle.expire(&limits, now, stop)?;
    // A `files` row covers rows ingested up to its last commit: once that is before the
    // expired bound (or older than max_age), every row it covers is gone.
    let by_age = limits
        .max_age
        .and_then(|age| chrono::Duration::from_std(age).ok())
        .map(|age| now - age);
    let before = run.before.max(by_age);
    if let Some(before) = before {
        let host = &config.agent.host;
        let candidates = lifecycle.files_before(host, before)?;
        if !candidates.is_empty() {
            let matched = MatchedFiles::scan(globs);
            let gone: Vec<i64> = candidates
                .iter()
                .filter(|row| !matched.holds(row))
                .map(|row| row.id)
                .collect();
            if !gone.is_empty() {
                run.files = lifecycle.delete_files(host, &gone, before)?;
            }
        }
    }
    lifecycle.record(&config.agent.host, now, &run)?;
    prepared.map(|()| run)
}

/// The files the include globs match now, for "does a file still hold this row's content?".
struct MatchedFiles {
    files: Vec<(PathBuf, u64, u64)>,
    /// The first bytes of each matched file, read when a detached row first needs them.
    heads: Vec<Option<Vec<u8>>>,
}

impl MatchedFiles {
    fn scan(globs: &Globs) -> MatchedFiles {
        let files: Vec<(PathBuf, u64, u64)> = globs
            .expand()
            .into_iter()
            .filter_map(|(_, path, meta)| meta.ok().map(|m| (path, m.dev(), m.ino())))
            .collect();
        let heads = files.iter().map(|(path, ..)| head(path)).collect();
        MatchedFiles { files, heads }
    }

    /// Whether a matched file is the row's file (same device and inode) or starts with the
    /// bytes the row's fingerprint covers (its content, renamed or copied).
    fn holds(&self, row: &FileRow) -> bool {
        self.files
            .iter()
            .zip(&self.heads)
            .any(|((_, dev, ino), head)| {
                let same_inode = row.inode != 0 && (row.dev, row.inode) == (*dev, *ino);
                let len = row.fingerprint_len as usize;
                let same_content = len > 0
                    && head
                        .as_deref()
                        .is_some_and(|h| h.len() >= len && fnv1a(&h[..len]) == row.fingerprint);
                same_inode || same_content
            })
    }
}

/// The first bytes of the file at `path` (at most the fingerprint's length), if it can be read.
fn head(path: &std::path::Path) -> Option<Vec<u8>> {
    use std::io::Read;
    let file = std::fs::File::open(path).ok()?;
    let mut head = Vec::with_capacity(FINGERPRINT_MAX_BYTES);
    file.take(FINGERPRINT_MAX_BYTES as u64)
        .read_to_end(&mut head)
        .ok()?;
    Some(head)
}

/// Applies `[retention]` every `check_interval`, one run at a time, beside the pipeline.
pub struct Retention {
    config: Arc<Config>,
    /// The backend, while no run holds it; opened at the first run.
    lifecycle: Option<Box<dyn Lifecycle>>,
    globs: Arc<Globs>,
    running: bool,
    /// Set when the process exits (or the actor stops): a run in progress ends after its
    /// current chunk.
    stop: Arc<AtomicBool>,
    /// The last error warned about, so that one failing every check is said once.
    last_error: Option<String>,
}

impl Retention {
    /// `stop`: set by the owner when the process exits; a run in progress then ends after its
    /// current chunk.
    pub fn new(config: Arc<Config>, stop: Arc<AtomicBool>) -> Self {
        let globs = Arc::new(Globs::new(&config.sources));
        Retention {
            config,
            lifecycle: None,
            globs,
            running: false,
            stop,
            last_error: None,
        }
    }

    fn check(&mut self, ctx: &mut Context<Self>) {
        if self.running || self.stop.load(Ordering::Relaxed) {
            return;
        }
        self.running = true;
        let held = self.lifecycle.take();
        let config = self.config.clone();
        let globs = self.globs.clone();
        let stop = self.stop.clone();
        let run = tokio::task::spawn_blocking(move || {
            let mut lifecycle = match held {
                Some(l) => l,
                None => match open(&config.database) {
                    Ok(l) => l,
                    Err(e) => return (None, Err(e)),
                },
            };
            let result = run_once(lifecycle.as_mut(), &config, &globs, &stop);
            (Some(lifecycle), result)
        });
        ctx.spawn(run.into_actor(self).map(|joined, act, _| {
            act.running = false;
            match joined {
                Ok((lifecycle, result)) => {
                    // After an error the connection may be broken: open a new one next time.
                    if result.is_ok() {
                        act.lifecycle = lifecycle;
                    }
                    act.report(result);
                }
                Err(e) => tracing::error!(error = %e, "A retention run panicked."),
            }
        }));
    }

    fn report(&mut self, result: Result<Expired, DbError>) {
        match result {
            Ok(run) => {
                crate::metrics::expired(
                    [run.log_events, run.dead_letters, run.files],
                    run.partitions,
                    run.stored_bytes,
                );
                if self.last_error.take().is_some() {
                    tracing::info!("Retention runs again.");
                }
                if run.removed_anything() {
                    tracing::info!(
                        log_events = run.log_events,
                        dead_letters = run.dead_letters,
                        files = run.files,
                        partitions = run.partitions,
                        before = ?run.before.map(|t| t.to_rfc3339()),
                        stored_bytes = run.stored_bytes,
                        "Expired."
                    );
                }
            }
            Err(e) => {
                crate::metrics::retention_failed();
                let message = e.to_string();
                if self.last_error.as_deref() == Some(message.as_str()) {
                    tracing::debug!(error = %e, "Retention failed again; trying at the next check.");
                } else {
                    tracing::warn!(error = %e, "Retention failed; trying at the next check.");
                    self.last_error = Some(message);
                }
            }
        }
    }
}

impl Actor for Retention {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.check(ctx);
        ctx.run_interval(self.config.retention.check_interval, Self::check);
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Drop for Retention {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// `t` as SQL text both backends compare correctly: RFC 3339 UTC with 6 fractional digits
/// (SQLite's `ingested_at`; PostgreSQL parses it as a `timestamptz`).
fn sql_instant(t: DateTime<Utc>) -> String {
    crate::parse::format_timestamp_micros(t.timestamp_micros())
}

impl Expired {
    /// The counts [`RECORD_SQL`] takes after the instants: rows of log_events, dead_letters and
    /// files, partitions, stored bytes.
    fn counts(&self) -> [i64; 5] {
        [
            self.log_events,
            self.dead_letters,
            self.files,
            self.partitions,
            self.stored_bytes,
        ]
        .map(|n| i64::try_from(n).unwrap_or(i64::MAX))
    }

    /// Whether the run removed anything.
    pub fn removed_anything(&self) -> bool {
        self.log_events + self.dead_letters + self.files + self.partitions > 0
    }
}

/// Records a host's run in `expiry` (the same SQL for both backends, with `?` parameters:
/// host, ran_at, expired_at, expired_before, log_events, dead_letters, files, partitions,
/// stored_bytes). A run that removed nothing keeps the counts of the last one that did.
const RECORD_SQL: &str = "INSERT INTO expiry (host, ran_at, expired_at, expired_before, \
     log_events, dead_letters, files, partitions, stored_bytes) \
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) \
     ON CONFLICT (host) DO UPDATE SET ran_at = excluded.ran_at, \
     stored_bytes = excluded.stored_bytes, \
     expired_before = COALESCE(excluded.expired_before, expiry.expired_before), \
     expired_at = COALESCE(excluded.expired_at, expiry.expired_at), \
     log_events = CASE WHEN excluded.expired_at IS NULL THEN expiry.log_events \
         ELSE excluded.log_events END, \
     dead_letters = CASE WHEN excluded.expired_at IS NULL THEN expiry.dead_letters \
         ELSE excluded.dead_letters END, \
     files = CASE WHEN excluded.expired_at IS NULL THEN expiry.files ELSE excluded.files END, \
     partitions = CASE WHEN excluded.expired_at IS NULL THEN expiry.partitions \
         ELSE excluded.partitions END";

/// Forgets the search blocks whose rows are all gone (their ids lie below every id left; with no
/// rows left, every block): run after a run that removed rows. A block commits with its rows,
/// so none of a commit still in flight can be taken.
const FORGET_BLOCKS_SQL: &str = "DELETE FROM search_blocks WHERE last_id < \
     (SELECT coalesce(min(id), 9223372036854775807) FROM log_events)";

/// After a run that removed rows: [`FORGET_BLOCKS_SQL`].
fn forget_blocks<C>(conn: &mut C, run: &Expired) -> Result<(), DbError>
where
    C: diesel::Connection,
    diesel::query_builder::SqlQuery: diesel::query_dsl::methods::ExecuteDsl<C>,
{
    use diesel::RunQueryDsl;
    if run.log_events > 0 || run.partitions > 0 {
        diesel::sql_query(FORGET_BLOCKS_SQL)
            .execute(conn)
            .map_err(|e| failed("cannot forget the search blocks of expired rows", e))?;
    }
    Ok(())
}

/// A database error of a retention run: transient (the next check tries again), redacted.
fn failed(context: &str, e: impl std::fmt::Display) -> DbError {
    DbError::transient(crate::redact::redact(&format!("{context}: {e}")))
}
