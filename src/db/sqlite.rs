//! SQLite store: the embedded default. WAL journal (readers such as `sqlite3` or `logbelt query`
//! never block the writer), `synchronous=NORMAL`, a busy timeout, and the embedded
//! `migrations/sqlite` applied at open. Each commit is one transaction of single-row prepared
//! INSERTs, which diesel caches, so SQLite's variable limit never applies.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel::sqlite::SqliteConnection;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use super::schema::sqlite::{dead_letters, files, log_events};
use super::{final_positions, DbError, PositionRow, Store};
use crate::parse::format_timestamp_micros;
use crate::record::RecordBatch;
use crate::tail::StoredPosition;

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");

/// Rows per multi-row INSERT: 9 columns × 3,600 stays under bundled SQLite's 32,766 variables.
const EVENTS_PER_INSERT: usize = 3_600;

pub struct SqliteStore {
    conn: SqliteConnection,
}

#[derive(Insertable)]
#[diesel(table_name = log_events)]
struct NewEvent<'a> {
    host: &'a str,
    source: &'a str,
    file_id: i64,
    file_offset: i64,
    ts: Option<String>,
    level: Option<&'a str>,
    message: Option<&'a str>,
    fields: &'a str,
    ingested_at: &'a str,
}

#[derive(Insertable)]
#[diesel(table_name = dead_letters)]
struct NewDeadLetter<'a> {
    host: &'a str,
    source: &'a str,
    file_id: i64,
    file_offset: i64,
    raw: &'a [u8],
    line_bytes: i64,
    error: &'a str,
    ingested_at: &'a str,
}

#[derive(Insertable, AsChangeset)]
#[diesel(table_name = files)]
struct FileRow<'a> {
    id: i64,
    host: &'a str,
    source: &'a str,
    path: &'a str,
    dev: i64,
    inode: i64,
    fingerprint_len: i32,
    fingerprint: i64,
    committed_offset: i64,
    updated_at: &'a str,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and migrates it.
    ///
    /// # Errors
    /// When the file cannot be opened or migrated.
    pub fn open(path: &Path, busy_timeout: Duration) -> Result<Self, DbError> {
        let url = path.to_string_lossy();
        let mut conn = SqliteConnection::establish(&url)
            .map_err(|e| DbError::transient(format!("cannot open SQLite database {url}: {e}")))?;
        let pragmas = format!(
            "PRAGMA busy_timeout = {}; PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;",
            busy_timeout.as_millis()
        );
        diesel::connection::SimpleConnection::batch_execute(&mut conn, &pragmas)
            .map_err(|e| classify(&format!("cannot configure SQLite database {url}"), e))?;
        conn.run_pending_migrations(MIGRATIONS).map_err(|e| {
            DbError::transient(format!("cannot migrate SQLite database {url}: {e}"))
        })?;
        Ok(SqliteStore { conn })
    }

    /// The connection, for read-only commands (`status`, `query`) and tests.
    pub fn connection(&mut self) -> &mut SqliteConnection {
        &mut self.conn
    }
}

/// Checks that the database file can be opened, or created where it is configured.
pub fn check_reachable(path: &Path) -> Result<(), DbError> {
    if path.exists() {
        let url = path.to_string_lossy();
        let mut conn = SqliteConnection::establish(&url)
            .map_err(|e| DbError::permanent(format!("cannot open SQLite database {url}: {e}")))?;
        diesel::connection::SimpleConnection::batch_execute(&mut conn, "SELECT 1")
            .map_err(|e| DbError::permanent(format!("cannot read SQLite database {url}: {e}")))?;
        return Ok(());
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() && !m.permissions().readonly() => Ok(()),
        Ok(_) => Err(DbError::permanent(format!(
            "cannot create SQLite database {}: {} is not a writable directory",
            path.display(),
            dir.display()
        ))),
        Err(e) => Err(DbError::permanent(format!(
            "cannot create SQLite database {}: {}: {e}",
            path.display(),
            dir.display()
        ))),
    }
}

impl Store for SqliteStore {
    fn load_positions(&mut self, host: &str) -> Result<Vec<StoredPosition>, DbError> {
        let rows: Vec<PositionRow> = files::table
            .filter(files::host.eq(host))
            .order(files::updated_at.asc())
            .select((
                files::id,
                files::source,
                files::path,
                files::dev,
                files::inode,
                files::fingerprint_len,
                files::fingerprint,
                files::committed_offset,
            ))
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

    fn commit(&mut self, host: &str, batches: &[RecordBatch]) -> Result<(), DbError> {
        let now = format_timestamp_micros(super::now_micros());
        self.conn
            .immediate_transaction(|conn| write(conn, host, batches, &now))
            .map_err(|e| classify("commit failed", e))
    }

    fn probe(&mut self, host: &str, batches: &[RecordBatch]) -> Result<(), DbError> {
        let now = format_timestamp_micros(super::now_micros());
        let tried = self.conn.transaction(|conn| {
            write(conn, host, batches, &now)?;
            Err::<(), _>(DieselError::RollbackTransaction)
        });
        match tried {
            Ok(()) | Err(DieselError::RollbackTransaction) => Ok(()),
            Err(e) => Err(classify("", e)),
        }
    }
}

/// Inserts the rows, dead letters and positions of `batches` (inside the caller's transaction).
fn write(
    conn: &mut SqliteConnection,
    host: &str,
    batches: &[RecordBatch],
    now: &str,
) -> QueryResult<()> {
    for batch in batches {
        let source = &*batch.position.file.source;
        let file_id = batch.position.file.id;
        let events: Vec<_> = batch
            .records
            .iter()
            .map(|r| {
                (
                    log_events::host.eq(host),
                    log_events::source.eq(source),
                    log_events::file_id.eq(file_id),
                    log_events::file_offset.eq(r.offset as i64),
                    log_events::ts.eq(r.ts_micros.map(format_timestamp_micros)),
                    log_events::level.eq(r.level.as_ref().map(|t| t.get(&batch.buf))),
                    log_events::message.eq(r.message.as_ref().map(|t| t.get(&batch.buf))),
                    log_events::fields.eq(batch.str(&r.line)),
                    log_events::ingested_at.eq(now),
                )
            })
            .collect();
        // One multi-row statement per chunk: diesel builds SQL per statement, not per row.
        // Bundled SQLite allows 32,766 variables per statement (STACK.md §4).
        for chunk in events.chunks(EVENTS_PER_INSERT) {
            diesel::insert_into(log_events::table)
                .values(chunk)
                .execute(conn)?;
        }
        if !batch.dead_letters.is_empty() {
            let dead: Vec<NewDeadLetter<'_>> = batch
                .dead_letters
                .iter()
                .map(|d| NewDeadLetter {
                    host,
                    source,
                    file_id,
                    file_offset: d.offset as i64,
                    raw: batch.bytes(&d.raw),
                    line_bytes: d.line_bytes as i64,
                    error: &d.reason,
                    ingested_at: now,
                })
                .collect();
            diesel::insert_into(dead_letters::table)
                .values(&dead)
                .execute(conn)?;
        }
    }
    for p in final_positions(batches) {
        let row = FileRow {
            id: p.file.id,
            host,
            source: &p.file.source,
            path: &p.path,
            dev: p.identity.dev as i64,
            inode: p.identity.inode as i64,
            fingerprint_len: p.identity.fingerprint_len as i32,
            fingerprint: p.identity.fingerprint as i64,
            committed_offset: p.offset as i64,
            updated_at: now,
        };
        diesel::insert_into(files::table)
            .values(&row)
            .on_conflict(files::id)
            .do_update()
            .set(&row)
            .execute(conn)?;
    }
    Ok(())
}

/// Sorts a diesel error into transient (locked, busy, read-only, I/O, full: the database may
/// recover) or permanent (the rows themselves are refused).
fn classify(context: &str, e: DieselError) -> DbError {
    let message = if context.is_empty() {
        e.to_string()
    } else {
        format!("{context}: {e}")
    };
    match e {
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
        _ => DbError::transient(message),
    }
}
