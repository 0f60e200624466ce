//! PostgreSQL store: the production backend, many hosts into one database. Rows go in by binary
//! `COPY` (`diesel::copy_from`, ~3× batched INSERT: ARCHITECTURE.md §8); dead letters and positions in the
//! same transaction. Migrations (`migrations/postgres`) run in one transaction that first takes a
//! transaction-level advisory lock, so several logbelt processes may start at the same moment,
//! also through PgBouncer in transaction pooling mode (no session state is relied on: no
//! session advisory lock, no named prepared statement, `SET LOCAL` only); when the schema is
//! current nothing is created or locked, so a role without CREATE can run logbelt, and its
//! grants are checked at start (a missing one is named, with its `GRANT`). Every transaction runs
//! with `lock_timeout` and `statement_timeout` ([`Timeouts`]): a held lock or a stuck statement
//! becomes a transient error, retried, never a silent hang. A broken connection is
//! re-established at the next commit.

use std::collections::HashMap;
use std::io::Write;
use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::connection::{CacheSize, SimpleConnection};
use diesel::deserialize::FromSqlRow;
use diesel::expression::AsExpression;
use diesel::pg::{Pg, PgConnection};
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel::serialize::{IsNull, Output, ToSql};
use diesel::sql_types::{Array, BigInt, Bytea, Jsonb, Nullable, Text, Timestamptz};

use super::pg_schema::{migrate, missing_grants};
use super::schema::postgres::{dead_letters, files, log_events};
use super::{final_positions, positions_query, DbError, ErrorKind, PositionRow, Store};
use crate::record::RecordBatch;
use crate::record::StoredPosition;
use crate::redact::redact;
use crate::search::{block_rows, id_chunks, Block, Bloom};

/// `statement_timeout` is this many times `lock_timeout`…
const STATEMENT_TIMEOUT_FACTOR: u32 = 10;
/// …and at least this: a COPY of `batch_rows` rows into a loaded server takes well under a
/// second; a statement that runs this long is stuck (a full disk that blocks, a frozen server),
/// and failing it lets logbelt say so and retry.
const STATEMENT_TIMEOUT_FLOOR: Duration = Duration::from_secs(30);

/// Most dead letters per INSERT statement: 8 columns × 4,000 stays under PostgreSQL's 65,535
/// bind parameters.
const DEAD_LETTERS_PER_INSERT: usize = 4000;

pub struct PgStore {
    url: String,
    /// None after a connection-level failure: the next commit reconnects.
    conn: Option<PgConnection>,
    timeouts: Timeouts,
}

/// What every transaction of logbelt sets with `SET LOCAL` (session settings would not survive
/// PgBouncer's transaction pooling): `lock_timeout` is `[database] busy_timeout_ms` (0 there,
/// "fail at once", is 1 ms here: PostgreSQL reads 0 as "wait forever"); `statement_timeout` is
/// [`STATEMENT_TIMEOUT_FACTOR`] times that, at least [`STATEMENT_TIMEOUT_FLOOR`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub lock: Duration,
    pub statement: Duration,
}

impl Timeouts {
    pub fn from_busy_timeout(busy_timeout: Duration) -> Timeouts {
        let lock = busy_timeout.max(Duration::from_millis(1));
        Timeouts {
            lock,
            statement: lock
                .saturating_mul(STATEMENT_TIMEOUT_FACTOR)
                .max(STATEMENT_TIMEOUT_FLOOR),
        }
    }

    /// What a timeout in `message` means, for the warning.
    fn explain(&self, message: &str) -> Option<String> {
        if message.contains("canceling statement due to lock timeout") {
            Some(format!(
                "another session held a lock logbelt needs for more than lock_timeout = \
                 [database] busy_timeout_ms = {} ms (see pg_locks); the batch is held and retried",
                self.lock.as_millis()
            ))
        } else if message.contains("canceling statement due to statement timeout") {
            Some(format!(
                "a statement ran for more than statement_timeout = {} ms (10 × \
                 busy_timeout_ms, at least 30 s); the batch is held and retried",
                self.statement.as_millis()
            ))
        } else {
            None
        }
    }

    /// The `SET LOCAL` statements (one round trip, simple protocol).
    fn set_local(&self) -> String {
        format!(
            "SET LOCAL lock_timeout = {}; SET LOCAL statement_timeout = {}",
            self.lock.as_millis().max(1),
            self.statement.as_millis().max(1)
        )
    }
}

/// Runs `f` in a transaction with `timeouts` set for it.
fn with_timeouts<T>(
    conn: &mut PgConnection,
    timeouts: Timeouts,
    f: impl FnOnce(&mut PgConnection) -> QueryResult<T>,
) -> QueryResult<T> {
    conn.transaction(|conn| {
        conn.batch_execute(&timeouts.set_local())?;
        f(conn)
    })
}

/// A JSON text that is already valid JSON (the parser checked it): sent to a `jsonb` column as
/// is, without building a `serde_json::Value`.
#[derive(Debug, AsExpression, FromSqlRow)]
#[diesel(sql_type = Jsonb)]
pub struct RawJson<'a>(pub &'a str);

impl ToSql<Jsonb, Pg> for RawJson<'_> {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> diesel::serialize::Result {
        out.write_all(&[1])?; // jsonb binary format version
        out.write_all(self.0.as_bytes())?;
        Ok(IsNull::No)
    }
}

impl diesel::deserialize::FromSql<Jsonb, Pg> for RawJson<'_> {
    fn from_sql(_: diesel::pg::PgValue<'_>) -> diesel::deserialize::Result<Self> {
        Err("RawJson is write-only".into())
    }
}

/// One `log_events` row as COPY writes it (also the benchmark's ceiling rows: the same rows,
/// the same path into PostgreSQL).
#[derive(Insertable)]
#[diesel(table_name = log_events)]
#[diesel(treat_none_as_default_value = false)]
pub struct NewEvent<'a> {
    /// Reserved from the sequence first ([`reserve_ids`]): the search blocks need each row's.
    pub id: i64,
    pub host: &'a str,
    pub source: &'a str,
    pub file_id: i64,
    pub file_offset: i64,
    pub ts: Option<DateTime<Utc>>,
    pub level: Option<&'a str>,
    pub message: Option<&'a str>,
    pub fields: RawJson<'a>,
    pub ingested_at: DateTime<Utc>,
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
    /// The reason's text (dead letters are rare: one allocation each is fine).
    error: String,
    ingested_at: DateTime<Utc>,
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
    updated_at: DateTime<Utc>,
}

/// A URL (already redacted: a cut must not fall inside a password) in an error message: whole
/// up to 200 characters (a URL of megabytes is cut; libpq's own reason after it must still
/// show).
fn shown_url(url: &str) -> std::borrow::Cow<'_, str> {
    match url.char_indices().nth(200) {
        None => url.into(),
        Some((cut, _)) => format!("{}… ({} bytes)", &url[..cut], url.len()).into(),
    }
}

/// A connection without diesel's prepared-statement cache: every statement is unnamed (diesel
/// sends parse, bind and execute in one `PQsendQueryParams`), so nothing outlives a transaction
/// on the server connection — a named `__diesel_stmt_N` would be missing, or already exist, on
/// whichever server connection PgBouncer's transaction pooling hands out next. The cost is a
/// parse per statement: a handful per commit, next to a COPY of thousands of rows.
fn connect(url: &str) -> Result<PgConnection, DbError> {
    let mut conn = PgConnection::establish(url).map_err(|e| {
        DbError::transient(redact(&format!(
            "cannot connect to PostgreSQL {}: {e}",
            shown_url(&redact(url))
        )))
    })?;
    conn.set_prepared_statement_cache_size(CacheSize::Disabled);
    Ok(conn)
}

impl PgStore {
    /// Connects and applies pending migrations (under an advisory lock); `busy_timeout` gives
    /// the [`Timeouts`] of every transaction.
    ///
    /// # Errors
    /// When the server cannot be reached or migrated.
    pub fn open(url: &str, busy_timeout: Duration) -> Result<Self, DbError> {
        let mut conn = connect(url)?;
        migrate(&mut conn).map_err(|e| DbError {
            message: redact(&e.message),
            ..e
        })?;
        if let Some(e) = missing_grants(&mut conn) {
            return Err(e);
        }
        Ok(PgStore {
            url: url.to_string(),
            conn: Some(conn),
            timeouts: Timeouts::from_busy_timeout(busy_timeout),
        })
    }

    fn conn(&mut self) -> Result<&mut PgConnection, DbError> {
        if self.conn.is_none() {
            self.conn = Some(connect(&self.url)?);
        }
        self.conn
            .as_mut()
            .ok_or_else(|| DbError::transient("no PostgreSQL connection"))
    }

    /// Classifies an error, and drops the connection when it is the connection that failed. A
    /// refusal that a missing grant (or table) explains is fatal, with the grant named: it is
    /// not the lines' fault, and must not make dead letters of them.
    fn failed(&mut self, context: &str, e: DieselError) -> DbError {
        let mut err = classify(context, e);
        if let Some(why) = self.timeouts.explain(&err.message) {
            err.message = format!("{} ({why})", err.message);
        }
        if err.is_transient() {
            self.conn = None;
        } else if let Some(conn) = self.conn.as_mut() {
            if let Some(grants) = missing_grants(conn) {
                return DbError {
                    message: format!("{}: {}", err.message, grants.message),
                    kind: ErrorKind::Fatal,
                    ..err
                };
            }
        }
        err
    }
}

/// Checks that the server answers (`logbelt validate`).
pub fn check_reachable(url: &str) -> Result<(), DbError> {
    let mut conn = PgConnection::establish(url).map_err(|e| {
        DbError::permanent(redact(&format!(
            "cannot connect to PostgreSQL {}: {e}",
            shown_url(&redact(url))
        )))
    })?;
    diesel::sql_query("SELECT 1")
        .execute(&mut conn)
        .map_err(|e| {
            DbError::permanent(redact(&format!("PostgreSQL does not answer: {e}"))).with_source(e)
        })?;
    Ok(())
}

impl Store for PgStore {
    fn load_positions(&mut self, host: &str) -> Result<Vec<StoredPosition>, DbError> {
        let timeouts = self.timeouts;
        let loaded: QueryResult<Vec<PositionRow>> = with_timeouts(self.conn()?, timeouts, |c| {
            positions_query!(files, host).load(c)
        });
        let rows = loaded.map_err(|e| self.failed("cannot read file positions", e))?;
        Ok(rows.into_iter().map(StoredPosition::from).collect())
    }

    fn committed_offsets(&mut self, ids: &[i64]) -> Result<HashMap<i64, u64>, DbError> {
        let timeouts = self.timeouts;
        let rows: QueryResult<Vec<(i64, i64)>> = with_timeouts(self.conn()?, timeouts, |c| {
            files::table
                .filter(files::id.eq_any(ids))
                .select((files::id, files::committed_offset))
                .load(c)
        });
        let rows = rows.map_err(|e| self.failed("cannot read file positions", e))?;
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
        let now = Utc::now();
        let timeouts = self.timeouts;
        let result = with_timeouts(self.conn()?, timeouts, |conn| {
            write(conn, host, batches, blocks, now)
        });
        result.map_err(|e| self.failed("commit failed", e))
    }

    fn probe(&mut self, host: &str, batches: &[RecordBatch]) -> Result<(), DbError> {
        let now = Utc::now();
        let timeouts = self.timeouts;
        let tried = with_timeouts(self.conn()?, timeouts, |conn| {
            write(conn, host, batches, None, now)?;
            Err::<(), _>(DieselError::RollbackTransaction)
        });
        match tried {
            Ok(()) | Err(DieselError::RollbackTransaction) => Ok(()),
            Err(e) => Err(self.failed("", e)),
        }
    }
}

/// Copies the rows and inserts the dead letters and positions of `batches` (inside the caller's
/// transaction).
fn write(
    conn: &mut PgConnection,
    host: &str,
    batches: &[RecordBatch],
    blocks: Option<&[Block]>,
    now: DateTime<Utc>,
) -> QueryResult<()> {
    let rows = batches.iter().map(|b| b.records.len()).sum();
    // The ids first, from the sequence (ascending; another session's may lie between them):
    // the search blocks' ranges.
    let ids = reserve_ids(conn, rows)?;
    let mut ids_left = ids.iter().copied();
    let mut events = Vec::with_capacity(rows);
    let mut dead = Vec::new();
    for batch in batches {
        let source = &*batch.position.file.source;
        let file_id = batch.position.file.id;
        for (r, id) in batch.records.iter().zip(&mut ids_left) {
            events.push(NewEvent {
                id,
                host,
                source,
                file_id,
                file_offset: r.offset as i64,
                ts: r.ts_micros.and_then(DateTime::from_timestamp_micros),
                level: r.level.as_ref().map(|t| t.get(&batch.buf)),
                message: r.message.as_ref().map(|t| t.get(&batch.buf)),
                fields: RawJson(batch.str(&r.line)),
                ingested_at: now,
            });
        }
        dead.extend(batch.dead_letters.iter().map(|d| NewDeadLetter {
            host,
            source,
            file_id,
            file_offset: d.offset as i64,
            raw: batch.bytes(&d.raw),
            line_bytes: d.line_bytes as i64,
            error: d.reason.to_string(),
            ingested_at: now,
        }));
    }
    if events.len() < rows {
        return Err(DieselError::QueryBuilderError(
            "the id sequence gave fewer ids than there are rows".into(),
        ));
    }
    if !events.is_empty() {
        diesel::copy_from(log_events::table)
            .from_insertable(&events)
            .execute(conn)?;
    }
    for b in block_rows(&id_chunks(ids), blocks) {
        let coarse = b.bloom.map(|f| f.folded_to(COARSE_BITS));
        diesel::sql_query(
            "INSERT INTO search_blocks (host, first_id, last_id, ingested_at, rows, bits, bloom, \
             counts, sub_bits, subs, sub_last, coarse_bits, coarse) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        )
        .bind::<Text, _>(host)
        .bind::<BigInt, _>(b.first_id)
        .bind::<BigInt, _>(b.last_id)
        .bind::<Timestamptz, _>(now)
        .bind::<BigInt, _>(b.rows)
        .bind::<BigInt, _>(b.bloom.map_or(0, |b| b.bits() as i64))
        .bind::<Nullable<Bytea>, _>(b.bloom.map(Bloom::to_bytes))
        .bind::<Nullable<Text>, _>(b.counts)
        .bind::<BigInt, _>(b.sub_bits())
        .bind::<Nullable<Bytea>, _>(b.sub_bytes())
        .bind::<Nullable<Array<BigInt>>, _>(b.sub_last())
        .bind::<BigInt, _>(coarse.as_ref().map_or(0, |c| c.bits() as i64))
        .bind::<Nullable<Bytea>, _>(coarse.as_ref().map(Bloom::to_bytes))
        .execute(conn)?;
    }
    for chunk in dead.chunks(DEAD_LETTERS_PER_INSERT) {
        diesel::insert_into(dead_letters::table)
            .values(chunk)
            .execute(conn)?;
    }
    for p in final_positions(batches) {
        if p.forget {
            diesel::delete(files::table.filter(files::id.eq(p.file.id))).execute(conn)?;
            continue;
        }
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

/// The most bits of a block's coarse filter, kept in its row (with its other columns, three
/// rows fit a page).
const COARSE_BITS: usize = 2048 * 8;

#[derive(QueryableByName)]
struct Reserved {
    #[diesel(sql_type = Nullable<Array<BigInt>>)]
    ids: Option<Vec<i64>>,
}

/// `n` ids from `log_events`' id sequence, ascending (inside the caller's transaction).
///
/// # Errors
/// When the query fails.
pub fn reserve_ids(conn: &mut PgConnection, n: usize) -> QueryResult<Vec<i64>> {
    if n == 0 {
        return Ok(Vec::new());
    }
    let row: Reserved = diesel::sql_query(
        "SELECT array_agg(n ORDER BY n) AS ids FROM \
         (SELECT nextval('log_events_id_seq') AS n FROM generate_series(1, $1)) s",
    )
    .bind::<BigInt, _>(n as i64)
    .get_result(conn)?;
    Ok(row.ids.unwrap_or_default())
}

/// What the server says when the same transaction can succeed if tried again (diesel does not
/// expose the SQLSTATE, so the message is all there is to go by).
const TRANSIENT_MESSAGES: &[&str] = &[
    // Server shutting down / restarting / not accepting connections, admin cancel.
    "terminating connection",
    "shutting down",
    "starting up",
    "server closed the connection",
    "could not connect",
    "no connection",
    // A deadlock, or a lock/statement timeout an operator set.
    "deadlock detected",
    "canceling statement due to",
    // Insufficient resources (SQLSTATE class 53): a full server, disk or memory can recover.
    "too many clients",
    "too many connections",
    "remaining connection slots",
    "out of memory",
    // PgBouncer: its client limit, its wait for a server connection, its server unreachable.
    "no more connections allowed",
    "query_wait_timeout",
    "pgbouncer cannot connect to server",
];

/// PostgreSQL's messages for `53100 disk_full`: a table, index or temporary file cannot grow.
/// Transient and named, so that the operator is told what to free.
const DISK_FULL_MESSAGES: &[&str] = &["could not extend file", "No space left on device"];

/// Transient: the connection failed, the server is going away, restarting or out of resources,
/// or a serialization race. Fatal: an integrity constraint of the schema. Permanent: anything
/// else the server refused — maybe the data of one line, which the writer tells apart by
/// trying a neutral row in its place; a refusal that a missing grant explains is turned fatal
/// by [`PgStore::failed`].
pub(super) fn classify(context: &str, e: DieselError) -> DbError {
    let message = if context.is_empty() {
        redact(&e.to_string())
    } else {
        redact(&format!("{context}: {e}"))
    };
    let err = match &e {
        DieselError::DatabaseError(kind, info) => match kind {
            DatabaseErrorKind::SerializationFailure
            | DatabaseErrorKind::ClosedConnection
            | DatabaseErrorKind::UnableToSendCommand => DbError::transient(message),
            // Integrity constraints (SQLSTATE class 23) are the table's, not a line's: no value
            // logbelt writes for a line can violate the schema's own.
            DatabaseErrorKind::UniqueViolation
            | DatabaseErrorKind::ForeignKeyViolation
            | DatabaseErrorKind::NotNullViolation
            | DatabaseErrorKind::CheckViolation
            | DatabaseErrorKind::RestrictViolation
            | DatabaseErrorKind::ExclusionViolation => DbError::fatal(message),
            // 53100 disk_full, named (diesel keeps the message, not the SQLSTATE).
            _ if DISK_FULL_MESSAGES
                .iter()
                .any(|m| info.message().contains(m)) =>
            {
                DbError::disk_full(message)
            }
            _ if TRANSIENT_MESSAGES
                .iter()
                .any(|needle| info.message().contains(needle)) =>
            {
                DbError::transient(message)
            }
            _ => DbError::permanent(message),
        },
        DieselError::BrokenTransactionManager | DieselError::RollbackErrorOnCommit { .. } => {
            DbError::transient(message)
        }
        _ => DbError::transient(message),
    };
    err.with_source(e)
}
