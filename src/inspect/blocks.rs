//! `--grep` through the search blocks ([`crate::search`]): which id ranges may hold the needle.
//!
//! Every block's filter is tested for the needle's grams; a block without a filter may hold
//! anything. The ranges of the blocks that pass are what the query reads (with the exact filter
//! still applied). When too many pass (a common needle), the query scans instead: newest first,
//! it stops as soon as its page is full.
//!
//! - **SQLite** reads single bytes of each filter through incremental blob I/O (a separate
//!   read-only connection, opened after the query's own snapshot began, so that it sees every
//!   block of the rows that snapshot sees).
//! - **PostgreSQL** tests the bits in SQL with `substring` of a filter stored `EXTERNAL`, which
//!   fetches only the chunk holding the byte.

use std::path::Path;

use chrono::{DateTime, Utc};
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable, Text, Timestamptz};

use super::filter::{Dialect, Sql};
use super::InspectError;
use crate::search::bloom::{self, position};

/// More candidate blocks than this: scan instead (the query would read most rows anyway, and
/// an `OR` of thousands of ranges costs more to plan than it saves).
pub const MAX_BLOCKS: usize = 512;
/// At most this many of a needle's grams are tested (a block that holds them all is read).
const MAX_GRAMS: usize = 16;

/// When a block's rows were stored: the text SQLite keeps, or PostgreSQL's time.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Stamp {
    Text(String),
    Time(DateTime<Utc>),
}

/// The rows of one candidate block: `host`'s rows (any host's when `None`) with ids in
/// `first..=last`, stored at `ingested_at` (any time when `None`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Span {
    pub host: Option<String>,
    pub first: i64,
    pub last: i64,
    pub ingested_at: Option<Stamp>,
}

/// What the blocks say about a needle.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Candidates {
    /// Read only these rows (none: no row holds the needle).
    Spans(Vec<Span>),
    /// The blocks cannot narrow it down: scan.
    Scan,
}

impl Candidates {
    /// Appends ` AND (…)`: the rows of the spans.
    pub(crate) fn write(&self, sql: &mut Sql) {
        let Candidates::Spans(spans) = self else {
            return;
        };
        if spans.is_empty() {
            sql.push(" AND 1 = 0");
            return;
        }
        sql.push(" AND (");
        for (i, s) in spans.iter().enumerate() {
            if i > 0 {
                sql.push(" OR ");
            }
            sql.push("(id BETWEEN ")
                .int(s.first)
                .push(" AND ")
                .int(s.last);
            if let Some(h) = &s.host {
                sql.push(" AND host = ").text(h);
            }
            match &s.ingested_at {
                Some(Stamp::Text(t)) => {
                    sql.push(" AND ingested_at = ").text(t);
                }
                Some(Stamp::Time(t)) => {
                    sql.push(" AND ingested_at = ").time(*t);
                }
                None => {}
            }
            sql.push(")");
        }
        sql.push(")");
    }
}

fn hashes(needle: &str, reordered: bool) -> Option<Vec<u64>> {
    if !crate::search::needle_fits(needle, reordered) {
        return None;
    }
    let mut h = bloom::needle_hashes(needle)?;
    h.truncate(MAX_GRAMS);
    Some(h)
}

fn narrowed(spans: Vec<Span>, of: usize) -> Candidates {
    tracing::debug!(
        "Search blocks: {} of {of} may hold the needle{}.",
        spans.len(),
        if spans.len() > MAX_BLOCKS {
            "; scanning instead"
        } else {
            ""
        }
    );
    if spans.len() > MAX_BLOCKS {
        Candidates::Scan
    } else {
        Candidates::Spans(spans)
    }
}

/// SQLite: the blocks of the database at `path` that may hold `needle`.
///
/// # Errors
/// When the blocks cannot be read.
pub(crate) fn sqlite(path: &Path, needle: &str) -> Result<Candidates, InspectError> {
    let Some(hashes) = hashes(needle, false) else {
        return Ok(Candidates::Scan);
    };
    let failed = |e: rusqlite::Error| {
        InspectError::runtime(format!(
            "cannot read the search index of {}: {e}",
            path.display()
        ))
    };
    let conn = rusqlite::Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(failed)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(failed)?;
    let exists: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'search_blocks'",
            [],
            |r| r.get(0),
        )
        .map_err(failed)?;
    if exists == 0 {
        return Ok(Candidates::Scan);
    }
    let tx = conn.unchecked_transaction().map_err(failed)?;
    let mut blocks = tx
        .prepare("SELECT id, host, first_id, last_id, ingested_at, bits FROM search_blocks")
        .map_err(failed)?;
    let rows = blocks
        .query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                Span {
                    host: r.get(1)?,
                    first: r.get(2)?,
                    last: r.get(3)?,
                    ingested_at: r.get::<_, Option<String>>(4)?.map(Stamp::Text),
                },
                r.get::<_, i64>(5)?,
            ))
        })
        .map_err(failed)?;
    let mut spans = Vec::new();
    let mut of = 0;
    let mut blob: Option<rusqlite::blob::Blob<'_>> = None;
    let mut byte = [0u8; 1];
    for row in rows {
        let (id, span, bits) = row.map_err(failed)?;
        of += 1;
        let bits = u64::try_from(bits).unwrap_or(0);
        let holds = if bits == 0 {
            true
        } else {
            let b = match blob.as_mut() {
                Some(b) => {
                    b.reopen(id).map_err(failed)?;
                    b
                }
                None => blob.insert(
                    tx.blob_open(rusqlite::MAIN_DB, "search_blocks", "bloom", id, true)
                        .map_err(failed)?,
                ),
            };
            let mut all = true;
            for &h in &hashes {
                let p = position(h, bits);
                b.read_at_exact(&mut byte, (p / 8) as usize)
                    .map_err(failed)?;
                if !bloom::Bloom::bit_in(&byte, p % 8) {
                    all = false;
                    break;
                }
            }
            all
        };
        if holds {
            spans.push(span);
            if spans.len() > MAX_BLOCKS {
                // A common needle: the rest of the filters would not change the answer.
                tracing::debug!(
                    "Search blocks: more than {MAX_BLOCKS} may hold the needle; scanning."
                );
                return Ok(Candidates::Scan);
            }
        }
    }
    Ok(narrowed(spans, of))
}

/// A block as read back: its rows, and its counts (`--count`).
pub(crate) struct Stored {
    pub span: Span,
    pub counts: Option<String>,
}

/// The columns of a [`Stored`] block.
pub(crate) const BLOCK_COLUMNS: &str = "host, first_id, last_id, ingested_at, counts";

/// A block of SQLite ([`BLOCK_COLUMNS`]).
#[derive(QueryableByName)]
pub(crate) struct SqliteBlock {
    #[diesel(sql_type = Nullable<Text>)]
    host: Option<String>,
    #[diesel(sql_type = BigInt)]
    first_id: i64,
    #[diesel(sql_type = BigInt)]
    last_id: i64,
    #[diesel(sql_type = Nullable<Text>)]
    ingested_at: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    counts: Option<String>,
}

/// A block of PostgreSQL ([`BLOCK_COLUMNS`]).
#[derive(QueryableByName)]
pub(crate) struct PgBlock {
    #[diesel(sql_type = Nullable<Text>)]
    host: Option<String>,
    #[diesel(sql_type = BigInt)]
    first_id: i64,
    #[diesel(sql_type = BigInt)]
    last_id: i64,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    ingested_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<Text>)]
    counts: Option<String>,
}

impl From<SqliteBlock> for Stored {
    fn from(b: SqliteBlock) -> Stored {
        Stored {
            span: Span {
                host: b.host,
                first: b.first_id,
                last: b.last_id,
                ingested_at: b.ingested_at.map(Stamp::Text),
            },
            counts: b.counts,
        }
    }
}

impl From<PgBlock> for Stored {
    fn from(b: PgBlock) -> Stored {
        Stored {
            span: Span {
                host: b.host,
                first: b.first_id,
                last: b.last_id,
                ingested_at: b.ingested_at.map(Stamp::Time),
            },
            counts: b.counts,
        }
    }
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// Whether SQLite has the blocks table (see [`pg_present`]).
pub(crate) fn sqlite_present(
    conn: &mut diesel::sqlite::SqliteConnection,
) -> Result<bool, InspectError> {
    let n: Count = diesel::sql_query(
        "SELECT count(*) AS n FROM sqlite_master WHERE type = 'table' AND name = 'search_blocks'",
    )
    .get_result(conn)?;
    Ok(n.n > 0)
}

/// Whether PostgreSQL has the blocks table (a database last written before it has not: the
/// read-only commands never migrate).
pub(crate) fn pg_present(conn: &mut PgConnection) -> Result<bool, InspectError> {
    let n: Count = diesel::sql_query(
        "SELECT count(*) AS n FROM pg_class WHERE oid = to_regclass('search_blocks')",
    )
    .get_result(conn)?;
    Ok(n.n > 0)
}

/// PostgreSQL: the blocks that may hold `needle` (inside the caller's read-only transaction).
///
/// # Errors
/// When the blocks cannot be read.
pub(crate) fn pg(conn: &mut PgConnection, needle: &str) -> Result<Candidates, InspectError> {
    let Some(hashes) = hashes(needle, true) else {
        return Ok(Candidates::Scan);
    };
    if !pg_present(conn)? {
        return Ok(Candidates::Scan);
    }
    let mut sql = Sql::new(
        Dialect::Pg,
        &format!("SELECT {BLOCK_COLUMNS} FROM search_blocks WHERE bloom IS NULL OR (true"),
    );
    for &h in &hashes {
        // The byte (1-based) and the bit of the gram's position in a filter of `bits` bits
        // (at most 2^32: the hash's low half is enough).
        let h = (h & 0xffff_ffff) as i64;
        sql.push(" AND get_bit(substring(bloom FROM ((")
            .int(h)
            .push(" & (bits - 1)) >> 3)::int + 1 FOR 1), ((")
            .int(h)
            .push(" & (bits - 1)) & 7)::int) = 1");
    }
    sql.push(") LIMIT ").int(MAX_BLOCKS as i64 + 1);
    let spans: Vec<Span> = sql
        .pg()
        .load::<PgBlock>(conn)?
        .into_iter()
        .map(|b| Stored::from(b).span)
        .collect();
    // How many there are, for the debug line only.
    let of = if tracing::enabled!(tracing::Level::DEBUG) {
        diesel::sql_query("SELECT count(*) AS n FROM search_blocks")
            .get_result::<Count>(conn)?
            .n as usize
    } else {
        0
    };
    Ok(narrowed(spans, of))
}
