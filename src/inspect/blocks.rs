//! `--grep` through the search blocks ([`crate::search`]): which id ranges may hold the needle.
//!
//! Every block's filter is tested for the needle's grams; a block without a filter may hold
//! anything. For a block that passes, its sub-blocks' filters are tested the same way. The
//! ranges of the sub-blocks that pass (of the whole block, for one without them) are what the
//! query reads (with the exact filter still applied). When too many blocks pass (a common
//! needle), the query scans instead: newest first, it stops as soon as its page is full.
//!
//! - **SQLite** reads single bytes of each filter through incremental blob I/O (a separate
//!   read-only connection, opened after the query's own snapshot began, so that it sees every
//!   block of the rows that snapshot sees).
//! - **PostgreSQL** tests the bits in SQL: first of the block's coarse filter (its filter
//!   folded to 2 KiB, kept in the row), then with `substring` of the filter stored `EXTERNAL`,
//!   which fetches only the chunk holding the byte.

use std::path::Path;

use chrono::{DateTime, Utc};
use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Nullable, Text, Timestamptz};

use rusqlite::OptionalExtension as _;

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
    /// About how many rows the spans cover (the ranges' widths).
    pub(crate) fn rows(&self) -> Option<i64> {
        match self {
            Candidates::Spans(spans) => Some(spans.iter().map(|s| s.last - s.first + 1).sum()),
            Candidates::Scan => None,
        }
    }

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

/// The blocks that may hold a needle, as they are found.
#[derive(Default)]
struct Passed {
    blocks: usize,
    /// The ranges of the sub-blocks that pass (adjacent ones joined), or of whole blocks.
    fine: Vec<Span>,
    /// The ranges of the blocks.
    whole: Vec<Span>,
}

impl Passed {
    /// A block whose filter passes: read whole (`subs` `None`: it has no sub-blocks), or the
    /// ranges `(first, last)` of its sub-blocks whose filters pass, in order (none: it does not
    /// hold the needle after all).
    fn block(&mut self, block: Span, subs: Option<&[(i64, i64)]>) {
        let Some(subs) = subs else {
            self.blocks += 1;
            self.fine.push(block.clone());
            self.whole.push(block);
            return;
        };
        if subs.is_empty() {
            return;
        }
        self.blocks += 1;
        let mut open: Option<Span> = None;
        for &(first, last) in subs {
            match &mut open {
                Some(o) if o.last + 1 == first => o.last = last,
                _ => {
                    self.fine.extend(open.take());
                    open = Some(Span {
                        first,
                        last,
                        ..block.clone()
                    });
                }
            }
        }
        self.fine.extend(open);
        self.whole.push(block);
    }

    fn too_many(&self) -> bool {
        self.blocks > MAX_BLOCKS
    }

    /// The candidates: the sub-blocks' ranges, or the blocks' if those are too many to list.
    fn candidates(self, of: usize) -> Candidates {
        tracing::debug!(
            "Search blocks: {} of {of} may hold the needle{}.",
            self.blocks,
            if self.too_many() {
                "; scanning instead".to_owned()
            } else {
                format!(" ({} ranges, about {} rows)", self.fine.len(), {
                    let rows: i64 = self.fine.iter().map(|s| s.last - s.first + 1).sum();
                    rows
                })
            }
        );
        if self.too_many() {
            Candidates::Scan
        } else if self.fine.len() > MAX_BLOCKS {
            Candidates::Spans(self.whole)
        } else {
            Candidates::Spans(self.fine)
        }
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
    let count = |sql: &str| {
        conn.query_row(sql, [], |r| r.get::<_, i64>(0))
            .map_err(failed)
    };
    if count("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'search_blocks'")?
        == 0
    {
        return Ok(Candidates::Scan);
    }
    // The sub-blocks' columns are read only for the blocks that pass: the columns after the
    // filter cost a walk past it. (A database last written by a version without sub-blocks
    // has no such columns: the read-only commands never migrate.)
    let with_subs =
        count("SELECT count(*) FROM pragma_table_info('search_blocks') WHERE name = 'subs'")? > 0;
    let tx = conn.unchecked_transaction().map_err(failed)?;
    let mut blocks = tx
        .prepare("SELECT id, host, first_id, last_id, ingested_at, bits FROM search_blocks")
        .map_err(failed)?;
    let mut sub_layout = if with_subs {
        Some(
            tx.prepare(
                "SELECT sub_bits, sub_last FROM search_blocks WHERE id = ?1 AND subs IS NOT NULL",
            )
            .map_err(failed)?,
        )
    } else {
        None
    };
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
    let mut passed = Passed::default();
    let mut of = 0;
    let mut filters = Filters::default();
    let mut subs = Vec::new();
    for row in rows {
        let (id, span, bits) = row.map_err(failed)?;
        of += 1;
        let bits = u64::try_from(bits).unwrap_or(0);
        if bits == 0 {
            passed.block(span, None);
        } else if filters
            .hold(&tx, "bloom", id, 0, bits, &hashes)
            .map_err(failed)?
        {
            let layout = match &mut sub_layout {
                Some(st) => st
                    .query_row([id], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?)))
                    .optional()
                    .map_err(failed)?,
                None => None,
            };
            match layout {
                Some((sub_bits, last)) if sub_bits > 0 => {
                    let sub_bits = sub_bits as u64;
                    subs.clear();
                    let mut first = span.first;
                    for (i, last) in crate::search::ids_from_bytes(&last).into_iter().enumerate() {
                        let at = i as u64 * sub_bits;
                        if filters
                            .hold(&tx, "subs", id, at, sub_bits, &hashes)
                            .map_err(failed)?
                        {
                            subs.push((first, last));
                        }
                        first = last + 1;
                    }
                    passed.block(span, Some(&subs));
                }
                _ => passed.block(span, None),
            }
        }
        if passed.too_many() {
            // A common needle: the rest of the filters would not change the answer.
            tracing::debug!("Search blocks: more than {MAX_BLOCKS} may hold the needle; scanning.");
            return Ok(Candidates::Scan);
        }
    }
    Ok(passed.candidates(of))
}

/// SQLite's filters, read a byte at a time through incremental blob I/O (one open handle per
/// column, moved from row to row).
#[derive(Default)]
struct Filters<'c> {
    bloom: Option<rusqlite::blob::Blob<'c>>,
    subs: Option<rusqlite::blob::Blob<'c>>,
}

impl<'c> Filters<'c> {
    /// Whether the filter of `bits` bits at bit `at` of column `column` of block `id` holds
    /// every gram of `hashes`.
    fn hold(
        &mut self,
        tx: &'c rusqlite::Transaction<'c>,
        column: &'static str,
        id: i64,
        at: u64,
        bits: u64,
        hashes: &[u64],
    ) -> rusqlite::Result<bool> {
        let handle = if column == "subs" {
            &mut self.subs
        } else {
            &mut self.bloom
        };
        let blob = match handle {
            Some(b) => {
                b.reopen(id)?;
                b
            }
            None => {
                handle.insert(tx.blob_open(rusqlite::MAIN_DB, "search_blocks", column, id, true)?)
            }
        };
        let mut byte = [0u8; 1];
        for &h in hashes {
            let p = at + position(h, bits);
            blob.read_at_exact(&mut byte, (p / 8) as usize)?;
            if !bloom::Bloom::bit_in(&byte, p % 8) {
                return Ok(false);
            }
        }
        Ok(true)
    }
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
    // A database last written by a version without sub-blocks and coarse filters lacks their
    // columns (the read-only commands never migrate): then blocks are read whole.
    let fine: Count = diesel::sql_query(
        "SELECT count(*) AS n FROM pg_attribute WHERE attrelid = to_regclass('search_blocks') \
         AND attname IN ('coarse', 'subs') AND NOT attisdropped",
    )
    .get_result(conn)?;
    let fine = fine.n == 2;
    // The blocks whose filter passes (at most one more than are of use), then, if they are
    // few enough to be of use, for each the sub-blocks whose filter passes: one row per
    // sub-block, or one with `sub` NULL.
    let mut sql = Sql::new(
        Dialect::Pg,
        "WITH b AS MATERIALIZED (SELECT id, host, first_id, last_id, ingested_at \
         FROM search_blocks WHERE bloom IS NULL OR ((true",
    );
    if fine {
        // The coarse filter first: it is in the row.
        sql.push(" AND (coarse IS NULL OR (true");
        pg_tests(&mut sql, &hashes, "coarse", "coarse_bits", None);
        sql.push("))");
    }
    sql.push(")");
    pg_tests(&mut sql, &hashes, "bloom", "bits", None);
    sql.push(") LIMIT ")
        .int(MAX_BLOCKS as i64 + 1)
        .push(
            ") SELECT b.id, b.host, b.first_id, b.last_id, b.ingested_at, NULL::text AS counts, \
             f.subs IS NOT NULL AS fine, \
             CASE WHEN s.i > 1 THEN f.sub_last[s.i - 1] + 1 ELSE b.first_id END AS sub_first, \
             f.sub_last[s.i] AS sub_last FROM b JOIN ",
        )
        .push(if fine {
            "search_blocks"
        } else {
            "(SELECT id, NULL::bytea AS subs, NULL::bigint[] AS sub_last, 0::bigint AS sub_bits \
             FROM search_blocks)"
        })
        .push(
            " f ON f.id = b.id \
             LEFT JOIN LATERAL (SELECT i FROM generate_series(1, cardinality(f.sub_last)) i \
             WHERE f.subs IS NOT NULL AND (SELECT count(*) FROM b) <= ",
        )
        .int(MAX_BLOCKS as i64);
    pg_tests(
        &mut sql,
        &hashes,
        "f.subs",
        "f.sub_bits",
        Some("(i - 1) * f.sub_bits"),
    );
    sql.push(") s ON true ORDER BY b.id, s.i");
    // The planner prices the filter tests high enough to compile the query (JIT): ~100 ms,
    // ten times what the tests take (measured on 10M rows). Off for this query only (and set
    // back transaction-locally: a pooled server connection keeps its session settings).
    let jit: Setting =
        diesel::sql_query("SELECT current_setting('jit') AS value").get_result(conn)?;
    conn.batch_execute("SET LOCAL jit = off")?;
    let rows: Vec<PgPassed> = sql.pg().load(conn)?;
    diesel::sql_query("SELECT set_config('jit', $1, true) AS value")
        .bind::<Text, _>(&jit.value)
        .get_result::<Setting>(conn)?;
    let mut ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    ids.dedup();
    if ids.len() > MAX_BLOCKS {
        tracing::debug!("Search blocks: more than {MAX_BLOCKS} may hold the needle; scanning.");
        return Ok(Candidates::Scan);
    }
    let mut passed = Passed::default();
    let mut subs = Vec::new();
    let mut rows = rows.into_iter().peekable();
    while let Some(row) = rows.next() {
        let block = Stored::from(row.block).span;
        if !row.fine {
            passed.block(block, None);
            continue;
        }
        subs.clear();
        subs.extend(row.sub_first.zip(row.sub_last));
        while let Some(next) = rows.next_if(|r| r.id == row.id) {
            subs.extend(next.sub_first.zip(next.sub_last));
        }
        passed.block(block, Some(&subs));
    }
    // How many there are, for the debug line only.
    let of = if tracing::enabled!(tracing::Level::DEBUG) {
        diesel::sql_query("SELECT count(*) AS n FROM search_blocks")
            .get_result::<Count>(conn)?
            .n as usize
    } else {
        0
    };
    Ok(passed.candidates(of))
}

/// Appends ` AND` a test of each gram of `hashes` against the filter of `bits` bits in
/// `column`, starting at bit `at` (0 when `None`): the byte that holds its bit (1-based for
/// `substring`) and the bit in it. A filter has at most 2^32 bits: the hash's low half is
/// enough.
fn pg_tests(sql: &mut Sql, hashes: &[u64], column: &str, bits: &str, at: Option<&str>) {
    for &h in hashes {
        let h = (h & 0xffff_ffff) as i64;
        sql.push(" AND get_bit(substring(")
            .push(column)
            .push(" FROM ((")
            .push(at.unwrap_or("0"))
            .push(" + (")
            .int(h)
            .push(" & (")
            .push(bits)
            .push(" - 1))) >> 3)::int + 1 FOR 1), ((")
            .int(h)
            .push(" & (")
            .push(bits)
            .push(" - 1)) & 7)::int) = 1");
    }
}

#[derive(QueryableByName)]
struct Setting {
    #[diesel(sql_type = Text)]
    value: String,
}

/// A row of [`pg`]'s query: a block that passes, and one of its sub-blocks that pass.
#[derive(QueryableByName)]
struct PgPassed {
    #[diesel(sql_type = BigInt)]
    id: i64,
    /// Without counts (NULL).
    #[diesel(embed)]
    block: PgBlock,
    /// Whether the block has sub-blocks (then the row is one that passes, or none does).
    #[diesel(sql_type = Bool)]
    fine: bool,
    #[diesel(sql_type = Nullable<BigInt>)]
    sub_first: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    sub_last: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(first: i64, last: i64) -> Span {
        Span {
            host: Some("h".to_owned()),
            first,
            last,
            ingested_at: None,
        }
    }

    #[test]
    fn adjacent_sub_blocks_are_read_as_one_range() {
        let mut p = Passed::default();
        p.block(span(1, 1024), Some(&[(1, 128), (129, 256), (513, 640)]));
        p.block(span(2000, 2100), None);
        // No sub-block passes: the block's filter was wrong about it.
        p.block(span(3000, 4023), Some(&[]));
        assert_eq!(p.blocks, 2);
        let Candidates::Spans(spans) = p.candidates(3) else {
            panic!("spans")
        };
        let ranges: Vec<(i64, i64)> = spans.iter().map(|s| (s.first, s.last)).collect();
        assert_eq!(ranges, [(1, 256), (513, 640), (2000, 2100)]);
        assert!(spans.iter().all(|s| s.host.as_deref() == Some("h")));
    }

    #[test]
    fn too_many_ranges_are_read_as_whole_blocks_and_too_many_blocks_scanned() {
        let mut p = Passed::default();
        for b in 0..300 {
            let at = b * 1024;
            p.block(
                span(at, at + 1023),
                Some(&[(at, at + 9), (at + 20, at + 29)]),
            );
        }
        let Candidates::Spans(spans) = p.candidates(300) else {
            panic!("spans")
        };
        assert_eq!(spans.len(), 300);
        assert_eq!((spans[1].first, spans[1].last), (1024, 2047));
        let mut p = Passed::default();
        for b in 0..=MAX_BLOCKS as i64 {
            p.block(span(b * 10, b * 10 + 9), None);
        }
        assert!(p.too_many());
        assert_eq!(p.candidates(1000), Candidates::Scan);
    }
}
