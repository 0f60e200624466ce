//! The queries of `serve` that `query` has no form of: events newer than a row id (the tail;
//! `query`'s order is by time, a tail's is by commit), the newest row id, and dead letters.
//! Same rules: read-only transactions, every value bound, `query`'s WHERE clause.

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Binary, Text};
use serde::Serialize;

use crate::config::Config;
use crate::inspect::filter::{Conditions, Dialect, GrepIndex, Part, Sql};
use crate::inspect::query::{Event, TextRow};
use crate::inspect::{open, read_only, Db, InspectError};

/// `ts` as `query` prints it (RFC 3339 UTC, 6 fractional digits), in SQL.
fn ts_text(dialect: Dialect, column: &str) -> String {
    match dialect {
        Dialect::Sqlite => column.to_owned(),
        Dialect::Pg => {
            format!("to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')")
        }
    }
}

fn newer_sql(dialect: Dialect, c: &Conditions, after_id: i64, upto: i64, limit: i64) -> Sql {
    let fields = match dialect {
        Dialect::Sqlite => "fields",
        Dialect::Pg => "fields::text",
    };
    let mut sql = Sql::new(
        dialect,
        &format!(
            "SELECT id, {} AS ts, level, message, source, host, file_id, file_offset, \
             {fields} AS fields FROM log_events WHERE id > ",
            ts_text(dialect, "ts")
        ),
    );
    sql.int(after_id).push(" AND id <= ").int(upto);
    // No search index: the rows after `after_id` are few, the exact filter is enough.
    c.write(&mut sql, Part::All, &GrepIndex::SCAN);
    sql.push(" ORDER BY id LIMIT ").int(limit);
    sql
}

const MAX_ID: &str = "SELECT coalesce(max(id), 0) AS n FROM log_events";

/// Up to `limit` events with a row id above `after_id` that match `c`, by row id, and the row
/// id the next call may start after: the last event's when `limit` were found, else the
/// newest row's (the rows between matched nothing; they are not read again).
///
/// `db` is the caller's connection, kept between calls (a tail polls twice a second): opened
/// when None, dropped after an error (the next call opens another).
///
/// # Errors
/// A database that cannot be read.
pub(crate) fn newer(
    db: &mut Option<Db>,
    config: &Config,
    c: &Conditions,
    after_id: i64,
    limit: i64,
) -> Result<(Vec<Event>, i64), InspectError> {
    let conn = match db {
        Some(conn) => conn,
        None => db.insert(open(&config.database)?),
    };
    let read = read_only(
        conn,
        &config.database,
        |conn| {
            let upto = diesel::sql_query(MAX_ID).get_result::<MaxId>(conn)?.n;
            let sql = newer_sql(Dialect::Sqlite, c, after_id, upto, limit);
            Ok((sql.sqlite().load(conn)?, upto))
        },
        |conn| {
            let upto = diesel::sql_query(MAX_ID).get_result::<MaxId>(conn)?.n;
            let sql = newer_sql(Dialect::Pg, c, after_id, upto, limit);
            Ok((sql.pg().load(conn)?, upto))
        },
    );
    let (rows, upto): (Vec<TextRow>, i64) = match read {
        Ok(r) => r,
        Err(e) => {
            *db = None;
            return Err(e);
        }
    };
    let next = match rows.last() {
        Some(r) if rows.len() as i64 >= limit => r.id,
        _ => upto.max(after_id),
    };
    let events = rows.into_iter().map(Event::from).collect();
    Ok((events, next))
}

#[derive(QueryableByName)]
struct MaxId {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// The highest row id of `log_events` (0 when empty): where a tail starts.
///
/// # Errors
/// A database that cannot be read.
pub fn last_id(config: &Config) -> Result<i64, InspectError> {
    let mut db = open(&config.database)?;
    read_only(
        &mut db,
        &config.database,
        |conn| Ok(diesel::sql_query(MAX_ID).get_result::<MaxId>(conn)?.n),
        |conn| Ok(diesel::sql_query(MAX_ID).get_result::<MaxId>(conn)?.n),
    )
}

/// The bytes of a dead letter sent at most (`raw_bytes` says how long it was).
pub const MAX_RAW: i64 = 64 * 1024;

/// One dead letter, for JSON.
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetter {
    pub id: i64,
    pub host: String,
    pub source: String,
    pub file_id: i64,
    pub file_offset: i64,
    /// Why it is a dead letter.
    pub error: String,
    pub ingested_at: String,
    /// The line as text: valid UTF-8 as is, each invalid byte as `\xNN`; at most [`MAX_RAW`]
    /// bytes of it.
    pub raw: String,
    /// The line's length in bytes, as read.
    pub raw_bytes: i64,
    /// Whether `raw` holds less than the whole line.
    pub truncated: bool,
}

#[derive(QueryableByName)]
struct DeadRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Text)]
    host: String,
    #[diesel(sql_type = Text)]
    source: String,
    #[diesel(sql_type = BigInt)]
    file_id: i64,
    #[diesel(sql_type = BigInt)]
    file_offset: i64,
    #[diesel(sql_type = Text)]
    error: String,
    #[diesel(sql_type = Text)]
    ingested_at: String,
    #[diesel(sql_type = Binary)]
    raw: Vec<u8>,
    #[diesel(sql_type = BigInt)]
    raw_len: i64,
    #[diesel(sql_type = BigInt)]
    line_bytes: i64,
}

fn dead_sql(dialect: Dialect, before_id: Option<i64>, limit: i64) -> Sql {
    let (raw, len) = match dialect {
        Dialect::Sqlite => ("substr(raw, 1, ", "length(raw)"),
        Dialect::Pg => ("substring(raw from 1 for ", "octet_length(raw)::bigint"),
    };
    let mut sql = Sql::new(
        dialect,
        &format!(
            "SELECT id, host, source, file_id, file_offset, error, {} AS ingested_at, \
             {raw}{MAX_RAW}) AS raw, {len} AS raw_len, line_bytes FROM dead_letters WHERE 1 = 1",
            ts_text(dialect, "ingested_at")
        ),
    );
    if let Some(b) = before_id {
        sql.push(" AND id < ").int(b);
    }
    sql.push(" ORDER BY id DESC LIMIT ").int(limit);
    sql
}

/// The newest `limit` dead letters (with `before_id`: those before it), newest first.
///
/// # Errors
/// A database that cannot be read.
pub fn dead_letters(
    config: &Config,
    before_id: Option<i64>,
    limit: i64,
) -> Result<Vec<DeadLetter>, InspectError> {
    let mut db = open(&config.database)?;
    let rows: Vec<DeadRow> = read_only(
        &mut db,
        &config.database,
        |conn| {
            Ok(dead_sql(Dialect::Sqlite, before_id, limit)
                .sqlite()
                .load(conn)?)
        },
        |conn| Ok(dead_sql(Dialect::Pg, before_id, limit).pg().load(conn)?),
    )?;
    Ok(rows
        .into_iter()
        .map(|r| DeadLetter {
            truncated: r.raw_len > r.raw.len() as i64,
            raw: escaped_text(&r.raw),
            raw_bytes: r.line_bytes,
            id: r.id,
            host: r.host,
            source: r.source,
            file_id: r.file_id,
            file_offset: r.file_offset,
            error: r.error,
            ingested_at: r.ingested_at,
        })
        .collect())
}

/// Bytes as text: valid UTF-8 as is, every byte of an invalid sequence as `\xNN`.
pub fn escaped_text(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_utf8_is_escaped() {
        assert_eq!(
            escaped_text(b"ok \xff\xfe end \xc3\xa9"),
            "ok \\xFF\\xFE end é"
        );
    }
}
