//! SQLite store: the embedded default. WAL journal (readers such as `sqlite3` or `logbelt query`
//! never block the writer), `synchronous=NORMAL`, a busy timeout, and the embedded
//! `migrations/sqlite` applied at open. diesel applies the migrations and reads; each commit is
//! one transaction of single-row INSERTs through statements prepared once (rusqlite), so no SQL
//! is built or parsed per row and SQLite's variable limit never applies.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel::sqlite::SqliteConnection;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use super::schema::sqlite::files;
use super::{final_positions, positions_query, DbError, FileCheck, PositionRow, Store};
use crate::parse::{format_timestamp_micros, write_timestamp_micros};
use crate::record::RecordBatch;
use crate::record::StoredPosition;
use crate::search::{block_rows, id_chunks, ids_to_bytes, Block, Bloom};

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");

pub struct SqliteStore {
    /// The database file as opened: a commit first checks that the path still names it.
    file: FileCheck,
    /// diesel: migrations and reads.
    conn: SqliteConnection,
    /// The write path: prepared statements compiled once and reused for every row
    /// (rusqlite's statement cache). diesel builds and binds SQL per statement, and SQLite then
    /// parses it again: measured, that held the committer to ~60% of SQLite's own bulk-load rate.
    fast: rusqlite::Connection,
}

/// How logbelt opens a SQLite database file: the one place that knows.
pub enum OpenMode {
    /// The daemon: read-write (creating the file if needed), WAL, `synchronous = NORMAL`.
    ReadWrite,
    /// `status`, `query`, `validate`: `mode=ro`, never creating or changing anything.
    ReadOnly,
}

/// Opens the database at `path` with diesel in `mode`, waiting up to `busy_timeout` for locks.
///
/// # Errors
/// When it cannot be opened or configured (the message names the path).
pub fn connect(
    path: &Path,
    mode: OpenMode,
    busy_timeout: Duration,
) -> Result<SqliteConnection, DbError> {
    let shown = path.to_string_lossy();
    let url = match mode {
        OpenMode::ReadWrite => shown.to_string(),
        OpenMode::ReadOnly => read_only_uri(path),
    };
    let mut conn = SqliteConnection::establish(&url).map_err(|e| {
        DbError::transient(format!("cannot open SQLite database {shown}: {e}")).with_source(e)
    })?;
    diesel::connection::SimpleConnection::batch_execute(&mut conn, &pragmas(&mode, busy_timeout))
        .map_err(|e| classify(&format!("cannot configure SQLite database {shown}"), e))?;
    Ok(conn)
}

/// The size a WAL file is cut back to when it is reset (`journal_size_limit`).
const WAL_SIZE_LIMIT: u64 = 64 << 20;

/// The pragmas every connection in `mode` starts with.
fn pragmas(mode: &OpenMode, busy_timeout: Duration) -> String {
    let busy = busy_timeout.as_millis().min(i32::MAX as u128);
    match mode {
        // auto_vacuum takes effect only in a database with no tables yet (a new one): retention
        // can then give freed pages back to the file system (ARCHITECTURE.md, retention).
        // journal_size_limit: a WAL that a large expiry (or a burst) grew is cut back to 64 MiB
        // when it is next reset, instead of keeping its largest size on disk.
        OpenMode::ReadWrite => format!(
            "PRAGMA auto_vacuum = INCREMENTAL; PRAGMA busy_timeout = {busy}; \
             PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
             PRAGMA journal_size_limit = {WAL_SIZE_LIMIT};"
        ),
        // A reader waits for a lock rather than failing (WAL readers rarely meet one).
        OpenMode::ReadOnly => format!("PRAGMA busy_timeout = {busy};"),
    }
}

/// `file:PATH?mode=ro`, with the characters that mean something in a URI percent-encoded.
fn read_only_uri(path: &Path) -> String {
    let mut uri = String::from("file:");
    for b in path.as_os_str().as_encoded_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'/' | b'-' | b'_' | b'.' | b'~' => {
                uri.push(char::from(*b))
            }
            _ => uri.push_str(&format!("%{b:02X}")),
        }
    }
    uri.push_str("?mode=ro");
    uri
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and migrates it.
    ///
    /// # Errors
    /// When the file cannot be opened or migrated.
    pub fn open(path: &Path, busy_timeout: Duration) -> Result<Self, DbError> {
        check_writable(path)?;
        let url = path.to_string_lossy();
        let mut conn = connect(path, OpenMode::ReadWrite, busy_timeout)?;
        conn.run_pending_migrations(MIGRATIONS).map_err(|e| {
            DbError::transient(format!("cannot migrate SQLite database {url}: {e}"))
        })?;
        let fast = rusqlite::Connection::open(path).map_err(|e| {
            DbError::transient(format!("cannot open SQLite database {url}: {e}")).with_source(e)
        })?;
        fast.execute_batch(&pragmas(&OpenMode::ReadWrite, busy_timeout))
            .map_err(|e| classify_fast(&format!("cannot configure SQLite database {url}"), e))?;
        // The file system may refuse what the permission bits allow (a read-only mount, an
        // immutable file): SQLite then opens read-only without a word. Ask it for a write lock.
        fast.execute_batch("BEGIN IMMEDIATE; ROLLBACK;")
            .map_err(|e| classify_fast(&format!("SQLite database {url} cannot be written"), e))?;
        let file = FileCheck::of(path).map_err(|e| {
            DbError::transient(format!("SQLite database {url}: {e}")).with_source(e)
        })?;
        Ok(SqliteStore { file, conn, fast })
    }
}

/// The folder a database file lives in (`.` for a bare file name).
fn folder_of(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// Whether this process (its effective uid and gids) may write `path`: `Err` with the reason
/// (permission bits, a read-only file system, a missing path).
fn may_write(path: &Path) -> Result<(), std::io::Error> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: faccessat(2) only reads the NUL-terminated path it is given.
    let r = unsafe { libc::faccessat(libc::AT_FDCWD, c.as_ptr(), libc::W_OK, libc::AT_EACCESS) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The user logbelt runs as, for error messages.
fn whoami() -> String {
    // SAFETY: geteuid(2) cannot fail and touches no memory.
    let uid = unsafe { libc::geteuid() };
    format!("uid {uid}")
}

/// Checks that the database can be written where it is configured: the file (when it exists)
/// and its folder, where SQLite creates the file and its `-wal` and `-shm` companions. A
/// database that cannot be written is fatal: retrying cannot help, the operator must fix the
/// permissions (or point `database.url` at a writable place).
///
/// # Errors
/// One line naming the path, what is wrong and the user.
pub fn check_writable(path: &Path) -> Result<(), DbError> {
    let dir = folder_of(path);
    let fix = "make it writable by this user, or point database.url at a writable place";
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(DbError::fatal(format!(
                "cannot use SQLite database {}: {} is not a folder",
                path.display(),
                dir.display()
            )))
        }
        Err(e) => {
            return Err(DbError::fatal(format!(
                "cannot use SQLite database {}: folder {}: {e}",
                path.display(),
                dir.display()
            )))
        }
    }
    if path.exists() {
        if let Err(e) = may_write(path) {
            return Err(DbError::fatal(format!(
                "SQLite database {} cannot be written by {}: {e}; {fix}",
                path.display(),
                whoami()
            )));
        }
    }
    if let Err(e) = may_write(dir) {
        return Err(DbError::fatal(format!(
            "SQLite database {}: its folder {} cannot be written by {} ({e}), and SQLite keeps \
             its -wal and -shm files there; {fix}",
            path.display(),
            dir.display(),
            whoami()
        )));
    }
    Ok(())
}

/// Checks that the database file can be opened and written, or created where it is configured
/// (`logbelt validate`: nothing is created or changed).
pub fn check_reachable(path: &Path) -> Result<(), DbError> {
    check_writable(path)?;
    if path.exists() {
        let url = path.to_string_lossy();
        let mut conn = connect(path, OpenMode::ReadOnly, Duration::ZERO)?;
        diesel::connection::SimpleConnection::batch_execute(&mut conn, "SELECT 1").map_err(
            |e| {
                DbError::permanent(format!("cannot read SQLite database {url}: {e}")).with_source(e)
            },
        )?;
    }
    Ok(())
}

impl Store for SqliteStore {
    fn load_positions(&mut self, host: &str) -> Result<Vec<StoredPosition>, DbError> {
        let rows: Vec<PositionRow> = positions_query!(files, host)
            .load(&mut self.conn)
            .map_err(|e| classify("cannot read file positions", e))?;
        Ok(rows.into_iter().map(StoredPosition::from).collect())
    }

    fn committed_offsets(&mut self, ids: &[i64]) -> Result<HashMap<i64, u64>, DbError> {
        let rows: QueryResult<Vec<(i64, i64)>> = files::table
            .filter(files::id.eq_any(ids))
            .select((files::id, files::committed_offset))
            .load(&mut self.conn);
        let rows = rows.map_err(|e| classify("cannot read file positions", e))?;
        Ok(rows
            .into_iter()
            .map(|(id, offset)| (id, offset as u64))
            .collect())
    }

    fn commit(
        &mut self,
        host: &str,
        batches: &[RecordBatch],
        blocks: Option<&[Block]>,
    ) -> Result<(), DbError> {
        self.file.check()?;
        let now = format_timestamp_micros(super::now_micros());
        let tx = self
            .fast
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| classify_fast("commit failed", e))?;
        write(&tx, host, batches, blocks, &now).map_err(|e| classify_fast("commit failed", e))?;
        tx.commit().map_err(|e| classify_fast("commit failed", e))
    }

    fn file_check(&self) -> Option<FileCheck> {
        Some(self.file.clone())
    }

    fn probe(&mut self, host: &str, batches: &[RecordBatch]) -> Result<(), DbError> {
        let blocks = None;
        let now = format_timestamp_micros(super::now_micros());
        let tx = self.fast.transaction().map_err(|e| classify_fast("", e))?;
        let written = write(&tx, host, batches, blocks, &now).map_err(|e| classify_fast("", e));
        tx.rollback().map_err(|e| classify_fast("", e))?;
        written
    }
}

/// Inserts the rows, dead letters and positions of `batches` (inside the caller's transaction).
fn write(
    tx: &rusqlite::Transaction<'_>,
    host: &str,
    batches: &[RecordBatch],
    blocks: Option<&[Block]>,
    now: &str,
) -> rusqlite::Result<()> {
    let mut events = tx.prepare_cached(
        "INSERT INTO log_events (host, source, file_id, file_offset, ts, level, message, fields, ingested_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?;
    let mut dead = tx.prepare_cached(
        "INSERT INTO dead_letters (host, source, file_id, file_offset, raw, line_bytes, error, ingested_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?;
    let mut ts = String::new();
    // The ids the rows got, in order: the ranges of their search blocks.
    let mut ids: Vec<i64> = Vec::with_capacity(batches.iter().map(|b| b.records.len()).sum());
    for batch in batches {
        let source = &*batch.position.file.source;
        let file_id = batch.position.file.id;
        for r in &batch.records {
            let ts = r.ts_micros.map(|micros| {
                ts.clear();
                write_timestamp_micros(&mut ts, micros);
                ts.as_str()
            });
            events.execute(rusqlite::params![
                host,
                source,
                file_id,
                r.offset as i64,
                ts,
                r.level.as_ref().map(|t| t.get(&batch.buf)),
                r.message.as_ref().map(|t| t.get(&batch.buf)),
                batch.str(&r.line),
                now,
            ])?;
            ids.push(tx.last_insert_rowid());
        }
        for d in &batch.dead_letters {
            dead.execute(rusqlite::params![
                host,
                source,
                file_id,
                d.offset as i64,
                batch.bytes(&d.raw),
                d.line_bytes as i64,
                d.reason.to_string(),
                now,
            ])?;
        }
    }
    let mut block = tx.prepare_cached(
        "INSERT INTO search_blocks (host, first_id, last_id, ingested_at, rows, bits, bloom, counts, \
         sub_bits, subs, sub_last) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?;
    for b in block_rows(&id_chunks(ids), blocks) {
        block.execute(rusqlite::params![
            host,
            b.first_id,
            b.last_id,
            now,
            b.rows,
            b.bloom.map_or(0, |b| b.bits() as i64),
            b.bloom.map(Bloom::to_bytes),
            b.counts,
            b.sub_bits(),
            b.sub_bytes(),
            b.sub_last().map(ids_to_bytes),
        ])?;
    }
    let mut position = tx.prepare_cached(
        "INSERT INTO files (id, host, source, path, dev, inode, fingerprint_len, fingerprint, committed_offset, updated_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) \
         ON CONFLICT (id) DO UPDATE SET host = excluded.host, source = excluded.source, path = excluded.path, \
         dev = excluded.dev, inode = excluded.inode, fingerprint_len = excluded.fingerprint_len, \
         fingerprint = excluded.fingerprint, committed_offset = excluded.committed_offset, \
         updated_at = excluded.updated_at",
    )?;
    for p in final_positions(batches) {
        if p.forget {
            tx.prepare_cached("DELETE FROM files WHERE id = ?1")?
                .execute([p.file.id])?;
            continue;
        }
        position.execute(rusqlite::params![
            p.file.id,
            host,
            &*p.file.source,
            &*p.path,
            p.identity.dev as i64,
            p.identity.inode as i64,
            p.identity.fingerprint_len,
            p.identity.fingerprint as i64,
            p.offset as i64,
            now,
        ])?;
    }
    Ok(())
}

/// Sorts a rusqlite error like [`classify`]: busy, locked, I/O, full and can't-open are
/// transient (a full disk named as such: [`DbError::is_disk_full`]); constraint and type
/// errors are the rows' own; read-only and permission errors are fatal.
fn classify_fast(context: &str, e: rusqlite::Error) -> DbError {
    use rusqlite::ErrorCode;
    let message = if context.is_empty() {
        e.to_string()
    } else {
        format!("{context}: {e}")
    };
    let err = match &e {
        rusqlite::Error::SqliteFailure(f, _) => match f.code {
            ErrorCode::ConstraintViolation | ErrorCode::TooBig | ErrorCode::TypeMismatch => {
                DbError::permanent(message)
            }
            // SQLITE_FULL: the file system is full (or max_page_count is reached). Freeing
            // space cures it: hold the batch and retry, never a dead letter nor a stop.
            ErrorCode::DiskFull => DbError::disk_full(message),
            // The file (or its folder, or the mount) cannot be written, or access is denied:
            // retrying cannot help, the operator must act.
            ErrorCode::ReadOnly | ErrorCode::PermissionDenied | ErrorCode::AuthorizationForStatementDenied => {
                DbError::fatal(format!(
                    "{message} (the database file, its folder or its -wal/-shm files cannot be written by {})",
                    whoami()
                ))
            }
            _ => DbError::transient(message),
        },
        rusqlite::Error::ToSqlConversionFailure(_) | rusqlite::Error::InvalidParameterCount(..) => {
            DbError::permanent(message)
        }
        _ => DbError::transient(message),
    };
    err.with_source(e)
}

/// Sorts a diesel error into transient (locked, busy, read-only, I/O, full: the database may
/// recover) or permanent (the rows themselves are refused).
fn classify(context: &str, e: DieselError) -> DbError {
    // diesel keeps SQLite's message but not its code; this is `sqlite3_errstr(SQLITE_FULL)`.
    const SQLITE_FULL_MESSAGE: &str = "database or disk is full";
    let message = if context.is_empty() {
        e.to_string()
    } else {
        format!("{context}: {e}")
    };
    let err = match &e {
        DieselError::DatabaseError(
            DatabaseErrorKind::UniqueViolation
            | DatabaseErrorKind::ForeignKeyViolation
            | DatabaseErrorKind::NotNullViolation
            | DatabaseErrorKind::CheckViolation,
            _,
        ) => DbError::permanent(message),
        DieselError::SerializationError(_) | DieselError::DeserializationError(_) => {
            DbError::permanent(message)
        }
        DieselError::DatabaseError(_, info) if info.message().contains(SQLITE_FULL_MESSAGE) => {
            DbError::disk_full(message)
        }
        _ => DbError::transient(message),
    };
    err.with_source(e)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_read_only_uri_escapes_special_characters() {
        assert_eq!(
            read_only_uri(Path::new("/tmp/a b/x?#%.db")),
            "file:/tmp/a%20b/x%3F%23%25.db?mode=ro"
        );
    }

    use super::*;

    #[test]
    fn a_driver_error_is_kept_as_the_source() {
        let e = classify_fast("commit", rusqlite::Error::InvalidParameterCount(1, 2));
        assert!(!e.is_transient() && !e.is_fatal());
        assert_eq!(
            e.to_string(),
            format!("commit: {}", rusqlite::Error::InvalidParameterCount(1, 2))
        );
        let source = std::error::Error::source(&e).expect("the rusqlite error");
        assert!(source.is::<rusqlite::Error>(), "{source:?}");
        assert!(std::error::Error::source(&DbError::transient("no cause")).is_none());
    }

    /// A database whose file may grow to `pages` pages more than it has: past that, SQLite
    /// answers SQLITE_FULL, exactly as on a full disk (the same code and message).
    fn capped(pages: i64) -> (tempfile::TempDir, std::path::PathBuf, rusqlite::Connection) {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("full.db");
        let conn = rusqlite::Connection::open(&path).expect("open");
        conn.execute_batch("CREATE TABLE t (x BLOB);")
            .expect("create");
        let now: i64 = conn
            .query_row("PRAGMA page_count", [], |r| r.get(0))
            .expect("page_count");
        conn.execute_batch(&format!("PRAGMA max_page_count = {};", now + pages))
            .expect("max_page_count");
        (dir, path, conn)
    }

    #[test]
    fn sqlite_full_is_a_transient_disk_full_error_on_the_write_path() {
        let (_dir, _path, conn) = capped(2);
        let e = conn
            .execute("INSERT INTO t VALUES (zeroblob(100000))", [])
            .expect_err("the file cannot grow");
        assert!(
            matches!(&e, rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::DiskFull),
            "{e:?}"
        );
        let e = classify_fast("commit failed", e);
        assert!(e.is_transient(), "{e:?}");
        assert!(e.is_disk_full(), "{e:?}");
        assert!(e.message.starts_with("commit failed: "), "{}", e.message);
        // Other transient errors are not called a full disk.
        let busy = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
            None,
        );
        let busy = classify_fast("commit failed", busy);
        assert!(busy.is_transient() && !busy.is_disk_full(), "{busy:?}");
    }

    #[test]
    fn sqlite_full_is_a_transient_disk_full_error_through_diesel() {
        let (_dir, path, fast) = capped(2);
        drop(fast); // max_page_count is per connection: set it again on diesel's
        let mut conn = SqliteConnection::establish(&path.to_string_lossy()).expect("open");
        let pages: Vec<i64> = diesel::dsl::sql::<diesel::sql_types::BigInt>("PRAGMA page_count")
            .load(&mut conn)
            .expect("page_count");
        diesel::connection::SimpleConnection::batch_execute(
            &mut conn,
            &format!("PRAGMA max_page_count = {};", pages[0] + 2),
        )
        .expect("max_page_count");
        let e = diesel::sql_query("INSERT INTO t VALUES (zeroblob(100000))")
            .execute(&mut conn)
            .expect_err("the file cannot grow");
        let e = classify("cannot write", e);
        assert!(e.is_transient(), "{e:?}");
        assert!(e.is_disk_full(), "{e:?}");
        let other = classify(
            "cannot read",
            DieselError::DatabaseError(
                DatabaseErrorKind::Unknown,
                Box::new("database is locked".to_string()),
            ),
        );
        assert!(other.is_transient() && !other.is_disk_full(), "{other:?}");
    }
}
