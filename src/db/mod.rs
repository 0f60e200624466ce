//! The stores: one per backend behind the small [`Store`] trait the writer calls (ARCHITECTURE.md §6:
//! diesel's `MultiConnection` cannot batch-insert or COPY). A store commits one batch —
//! rows, dead letters and the files' new positions — in one transaction, and reads the committed
//! positions back at start. Stores are blocking: callers run them on blocking threads.

#[cfg(feature = "fault-injection")]
pub mod faults;
mod pg_schema;
pub mod postgres;
#[rustfmt::skip]
pub mod schema;
pub mod search;
pub mod sqlite;

use std::collections::HashMap;
use std::sync::Arc;

use crate::config::{DatabaseConfig, DatabaseUrl};
use crate::record::StoredPosition;
use crate::record::{FileIdentity, FilePosition, RecordBatch};
use crate::search::Block;

/// Whether trying again can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The database is unreachable, locked, restarting, read-only for now, or the transaction
    /// lost a serialization race: retry with backoff, holding the batch.
    Transient,
    /// The batch itself cannot be stored (a value the database rejects): retrying the same rows
    /// fails again. If one line is to blame, it becomes a dead letter.
    Permanent,
    /// The database refuses logbelt itself, whatever the lines: a missing grant, a table or
    /// column that is not there, a constraint, a read-only database file. Neither retrying nor
    /// restarting helps and no line is to blame: the operator must act. logbelt stops without
    /// moving any position.
    Fatal,
}

/// What an error is known to be, beyond its [`ErrorKind`], when the operator should hear it by
/// name: set by the classifiers (the drivers' codes, or the server's message), read by the
/// writer and the metrics instead of the message text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// The database's disk is full: SQLite's `SQLITE_FULL` (the file system holding the file,
    /// its `-wal` or `-shm` is full, or `max_page_count` is reached), PostgreSQL's `53100
    /// disk_full` ("could not extend file", "No space left on device"). Transient: the writer
    /// holds the batch and retries until space is freed; nothing becomes a dead letter.
    DiskFull,
}

impl Cause {
    /// The `kind` label of `logbelt_database_errors_total`.
    pub fn label(self) -> &'static str {
        match self {
            Cause::DiskFull => "disk_full",
        }
    }
}

#[derive(Debug, Clone)]
pub struct DbError {
    pub kind: ErrorKind,
    /// What the error is known to be, when a classifier could tell (see [`Cause`]).
    pub cause: Option<Cause>,
    /// One line, redacted, bounded; it already quotes the driver's error when there is one, so
    /// reports print this alone.
    pub message: String,
    /// The driver's error this one wraps (diesel, rusqlite, I/O), when there is one: for code
    /// that needs more than the text. Not redacted: never print it in place of `message`.
    pub source: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DbError {
    /// The driver's error itself (not the `Arc` around it), so that it can be downcast.
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl DbError {
    pub fn transient(message: impl Into<String>) -> Self {
        DbError::new(ErrorKind::Transient, message.into())
    }

    pub fn permanent(message: impl Into<String>) -> Self {
        DbError::new(ErrorKind::Permanent, message.into())
    }

    fn new(kind: ErrorKind, message: String) -> Self {
        DbError {
            kind,
            cause: None,
            message: one_line(message),
            source: None,
        }
    }

    /// A transient error whose cause is a full disk (see [`Cause::DiskFull`]).
    pub fn disk_full(message: impl Into<String>) -> Self {
        DbError::transient(message).with_cause(Cause::DiskFull)
    }

    /// The same error, known to be caused by `cause`.
    pub fn with_cause(self, cause: Cause) -> Self {
        DbError {
            cause: Some(cause),
            ..self
        }
    }

    /// Whether the database's disk is full (a transient error: space may be freed).
    pub fn is_disk_full(&self) -> bool {
        self.cause == Some(Cause::DiskFull)
    }

    /// The same error, keeping `source` as its cause.
    pub fn with_source(self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        DbError {
            source: Some(Arc::new(source)),
            ..self
        }
    }

    pub fn is_transient(&self) -> bool {
        self.kind == ErrorKind::Transient
    }

    pub fn fatal(message: impl Into<String>) -> Self {
        DbError::new(ErrorKind::Fatal, message.into())
    }

    pub fn is_fatal(&self) -> bool {
        self.kind == ErrorKind::Fatal
    }

    /// A transient error of a database that is there but cannot take logbelt now: out of
    /// connection slots, or starting up or shutting down. (The drivers do not expose the
    /// SQLSTATE of a failed connection: PostgreSQL's messages are matched.)
    pub fn is_busy(&self) -> bool {
        const BUSY: &[&str] = &[
            "too many clients",
            "too many connections",
            "remaining connection slots",
            // PgBouncer at its `max_client_conn`.
            "no more connections allowed",
            "the database system is starting up",
            "the database system is shutting down",
            "the database system is in recovery mode",
        ];
        self.is_transient() && BUSY.iter().any(|m| self.message.contains(m))
    }
}

/// Database messages (libpq's especially) carry newlines; an error is reported on one line, and
/// at a bounded length (a message may quote a host name or URL of any size).
fn one_line(message: String) -> String {
    let message = if message.len() > crate::config::ECHO_MAX_CHARS {
        crate::config::cap_echo(&message)
    } else {
        message
    };
    if message.contains('\n') {
        let lines: Vec<&str> = message
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        lines.join("; ")
    } else {
        message
    }
}

/// A database that logbelt writes into.
pub trait Store: Send {
    /// The committed positions of `host`'s files, oldest update first.
    ///
    /// # Errors
    /// When the database cannot be read.
    fn load_positions(&mut self, host: &str) -> Result<Vec<StoredPosition>, DbError>;

    /// Stores `batches` (in order), the files' new positions and the rows' search blocks (with
    /// their `blocks`, one per [`crate::search::BLOCK_ROWS`] rows, or none:
    /// [`crate::search::block_rows`]) in one transaction: all or nothing.
    ///
    /// # Errors
    /// When the transaction did not commit; nothing of it is stored then.
    fn commit(
        &mut self,
        host: &str,
        batches: &[RecordBatch],
        blocks: Option<&[Block]>,
    ) -> Result<(), DbError>;

    /// Writes `batches` as [`Store::commit`] would, then rolls back: tells whether the database
    /// accepts them, without storing anything. Used to find the one line a database refuses.
    ///
    /// # Errors
    /// The error the commit would have met.
    fn probe(&mut self, host: &str, batches: &[RecordBatch]) -> Result<(), DbError>;

    /// The committed positions of the files `ids`.
    ///
    /// # Errors
    /// When the database cannot be read.
    fn committed_offsets(&mut self, ids: &[i64]) -> Result<HashMap<i64, u64>, DbError>;

    /// For a database that is a file (SQLite): how to tell that its path still names the file
    /// that was opened.
    fn file_check(&self) -> Option<FileCheck> {
        None
    }
}

/// The file a store opened, by device and inode, to tell when its path stops naming it: the
/// file deleted (writes would go into a file nobody can open) or replaced (by an old copy, say).
/// Either is fatal: logbelt stops rather than write where nobody will read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileCheck {
    pub path: std::path::PathBuf,
    pub dev: u64,
    pub inode: u64,
}

impl FileCheck {
    /// The file now at `path`.
    ///
    /// # Errors
    /// When it cannot be looked at.
    pub fn of(path: &std::path::Path) -> std::io::Result<FileCheck> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(path)?;
        Ok(FileCheck {
            path: path.to_path_buf(),
            dev: m.dev(),
            inode: m.ino(),
        })
    }

    /// Whether the path still names the opened file.
    ///
    /// # Errors
    /// Fatal, when it does not (deleted, or another file in its place).
    pub fn check(&self) -> Result<(), DbError> {
        match FileCheck::of(&self.path) {
            Ok(now) if now == *self => Ok(()),
            Ok(_) => Err(DbError::fatal(format!(
                "SQLite database {} was replaced while logbelt ran (another file is at that path \
                 now): stopping rather than writing into the file that was opened",
                self.path.display()
            ))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(DbError::fatal(format!(
                "SQLite database {} was deleted while logbelt ran: stopping rather than writing \
                 into a file nobody can open",
                self.path.display()
            ))
            .with_source(e)),
            // Cannot look (e.g. a permission change on the folder): the commit will tell.
            Err(_) => Ok(()),
        }
    }
}

/// Whether the transaction of `batches` is already committed: after a connection failure
/// during COMMIT the outcome is unknown, and retrying a transaction that did land would store
/// its rows twice. Positions commit with their rows, so they tell: the transaction landed iff
/// every file's committed position has reached the batch's final position.
///
/// # Errors
/// When the positions cannot be read.
pub fn already_committed(store: &mut dyn Store, batches: &[RecordBatch]) -> Result<bool, DbError> {
    let finals = final_positions(batches);
    if finals.iter().all(|p| p.forget) {
        // Only forgets (they commit alone, without rows): doing it again is harmless.
        return Ok(false);
    }
    let ids: Vec<i64> = finals.iter().map(|p| p.file.id).collect();
    let committed = store.committed_offsets(&ids)?;
    Ok(!finals.is_empty()
        && finals
            .iter()
            .all(|p| committed.get(&p.file.id).is_some_and(|&c| c >= p.offset)))
}

/// Connects to the configured database and applies pending migrations (PostgreSQL: and creates
/// the search indexes when asked for and allowed, [`search::prepare_pg`]).
///
/// # Errors
/// When the database cannot be opened or migrated.
pub fn open(config: &DatabaseConfig) -> Result<Box<dyn Store>, DbError> {
    match &config.url {
        DatabaseUrl::Sqlite { path } => Ok(Box::new(sqlite::SqliteStore::open(
            path,
            config.busy_timeout,
        )?)),
        DatabaseUrl::Postgres { url } => {
            let store = postgres::PgStore::open(url, config.busy_timeout)?;
            // The search indexes, once the schema is there (never fails: see search.rs).
            search::prepare_pg(url);
            Ok(Box::new(store))
        }
    }
}

/// Checks that the database can be reached, without creating or changing anything
/// (`logbelt validate`).
///
/// # Errors
/// When it cannot.
pub fn check_reachable(config: &DatabaseConfig) -> Result<(), DbError> {
    match &config.url {
        DatabaseUrl::Sqlite { path } => sqlite::check_reachable(path),
        DatabaseUrl::Postgres { url } => postgres::check_reachable(url),
    }
}

/// One host's rows of `files` as [`PositionRow`]s, oldest commit first: the query both backends
/// run at start, for the `files` table of either schema module (their instant types differ).
macro_rules! positions_query {
    ($files:ident, $host:expr) => {
        $files::table
            .filter($files::host.eq($host))
            .order($files::updated_at.asc())
            .select((
                $files::id,
                $files::source,
                $files::path,
                $files::dev,
                $files::inode,
                $files::fingerprint_len,
                $files::fingerprint,
                $files::committed_offset,
            ))
    };
}
pub(crate) use positions_query;

/// A row of `files` as both backends read it back.
#[derive(diesel::Queryable)]
pub struct PositionRow {
    pub id: i64,
    pub source: String,
    pub path: String,
    pub dev: i64,
    pub inode: i64,
    pub fingerprint_len: i32,
    pub fingerprint: i64,
    pub committed_offset: i64,
}

impl From<PositionRow> for StoredPosition {
    fn from(r: PositionRow) -> Self {
        StoredPosition {
            file_id: r.id,
            source: r.source,
            path: r.path,
            identity: FileIdentity {
                dev: r.dev as u64,
                inode: r.inode as u64,
                fingerprint_len: r.fingerprint_len as u32,
                fingerprint: r.fingerprint as u64,
            },
            offset: r.committed_offset as u64,
        }
    }
}

/// The last position of each file among `batches`: what the transaction commits.
pub fn final_positions(batches: &[RecordBatch]) -> Vec<&FilePosition> {
    let mut last: HashMap<i64, usize> = HashMap::new();
    let mut order = Vec::new();
    for (i, b) in batches.iter().enumerate() {
        if last.insert(b.position.file.id, i).is_none() {
            order.push(b.position.file.id);
        }
    }
    order
        .into_iter()
        .filter_map(|id| last.get(&id).map(|&i| &batches[i].position))
        .collect()
}

/// Now, as stored in `ingested_at` and `updated_at` text columns.
pub fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}
