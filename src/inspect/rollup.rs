//! `query --count` from the counts the search blocks keep (rows per minute, level and source:
//! [`crate::search::Block`]), instead of reading every row.
//!
//! The blocks answer when the filters are ones they keep (time, level, source, host: not
//! `--grep` or `--field`; `--scan` asks for the rows). The rows of a block whose counts are gone
//! (retention marks a block before it deletes any of its rows; rows stored before the blocks
//! existed) are counted with `GROUP BY` over the block's id range, and so are the rows of the
//! partial minutes at the edges of `--since`/`--until`. Each row is counted once: by its
//! block's counts when its minute lies wholly inside the time range, else by a query.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sqlite::SqliteConnection;

use super::blocks::{
    pg_present, sqlite_present, Candidates, PgBlock, SqliteBlock, Stored, BLOCK_COLUMNS, MAX_BLOCKS,
};
use super::count::{exact_pg, exact_sqlite, Counted, GroupBy};
use super::filter::{Conditions, GrepIndex};
use super::query::QueryOptions;
use super::InspectError;

const MINUTE_MICROS: i64 = 60_000_000;

/// Every block, as [`Stored`].
fn blocks_sql() -> String {
    format!("SELECT {BLOCK_COLUMNS} FROM search_blocks")
}

/// The time range in whole minutes (minutes since 1970): `[since rounded up, until rounded
/// down)`; `None` when it holds no whole minute.
fn whole_minutes(c: &Conditions) -> Option<(Option<i64>, Option<i64>)> {
    let lo = c.since.map(|t| {
        t.timestamp_micros().div_euclid(MINUTE_MICROS)
            + i64::from(t.timestamp_micros().rem_euclid(MINUTE_MICROS) != 0)
    });
    let hi = c
        .until
        .map(|t| t.timestamp_micros().div_euclid(MINUTE_MICROS));
    match (lo, hi) {
        (Some(l), Some(h)) if l >= h => None,
        range => Some(range),
    }
}

fn minute_time(m: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(m * MINUTE_MICROS).unwrap_or_default()
}

/// Whether the blocks can answer `c`.
fn applies(c: &Conditions) -> bool {
    c.grep.is_none() && c.fields.is_empty() && !c.scan && c.before.is_none() && c.after.is_none()
}

/// What to ask the database for, besides the blocks' counts: the rows of the blocks without
/// counts (in the whole minutes), and the partial minutes at the edges (all rows).
struct Queries {
    uncounted: Option<(Conditions, Candidates)>,
    edges: Vec<Conditions>,
}

/// Adds up the blocks' counts into `sums`; the queries for the rest, or `None` when too many
/// blocks lack counts (the caller counts everything by a query).
fn plan(
    blocks: Vec<Stored>,
    o: &QueryOptions,
    c: &Conditions,
    (lo, hi): (Option<i64>, Option<i64>),
    sums: &mut BTreeMap<(Option<String>, Option<String>), i64>,
) -> Option<Queries> {
    let timed = c.since.is_some() || c.until.is_some();
    let mut uncounted = Vec::new();
    let mut counted = 0;
    for b in blocks {
        if c.host.is_some() && b.span.host.is_some() && b.span.host != c.host {
            continue;
        }
        let parsed = b.counts.as_deref().and_then(|t| {
            serde_json::from_str::<Vec<(Option<i64>, Option<String>, String, i64)>>(t).ok()
        });
        let Some(entries) = parsed.filter(|_| b.span.host.is_some()) else {
            uncounted.push(b.span);
            continue;
        };
        counted += 1;
        for (minute, level, source, n) in entries {
            if c.source.as_ref().is_some_and(|s| *s != source)
                || (!c.levels.is_empty() && !level.as_ref().is_some_and(|l| c.levels.contains(l)))
            {
                continue;
            }
            if timed {
                let Some(m) = minute else { continue };
                if lo.is_some_and(|lo| m < lo) || hi.is_some_and(|hi| m >= hi) {
                    continue;
                }
            }
            let bucket = o.bucket.and_then(|k| minute.map(|m| k.of_minute(m)));
            let group = match o.by {
                None => None,
                Some(GroupBy::Level) => level,
                Some(GroupBy::Source) => Some(source),
                Some(GroupBy::Host) => b.span.host.clone(),
            };
            *sums.entry((bucket, group)).or_insert(0) += n;
        }
    }
    tracing::debug!(
        "Counts: {counted} blocks by their counts, {} by their rows.",
        uncounted.len()
    );
    if uncounted.len() > MAX_BLOCKS {
        return None;
    }
    let whole = Conditions {
        since: lo.map(minute_time),
        until: hi.map(minute_time),
        ..c.clone()
    };
    let mut edges = Vec::new();
    if let (Some(since), Some(lo)) = (c.since, lo) {
        if since < minute_time(lo) {
            edges.push(Conditions {
                since: Some(since),
                until: Some(minute_time(lo)),
                ..c.clone()
            });
        }
    }
    if let (Some(until), Some(hi)) = (c.until, hi) {
        if minute_time(hi) < until {
            edges.push(Conditions {
                since: Some(minute_time(hi)),
                until: Some(until),
                ..c.clone()
            });
        }
    }
    Some(Queries {
        uncounted: (!uncounted.is_empty()).then_some((whole, Candidates::Spans(uncounted))),
        edges,
    })
}

fn finish(
    mut sums: BTreeMap<(Option<String>, Option<String>), i64>,
    parts: Vec<Vec<Counted>>,
) -> Vec<Counted> {
    for c in parts.into_iter().flatten() {
        *sums.entry((c.bucket, c.group)).or_insert(0) += c.count;
    }
    sums.into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|((bucket, group), count)| Counted {
            bucket,
            group,
            count,
        })
        .collect()
}

/// The counts from `blocks`, the rest asked of the database through `exact`.
fn answer(
    blocks: Vec<Stored>,
    o: &QueryOptions,
    c: &Conditions,
    range: (Option<i64>, Option<i64>),
    mut exact: impl FnMut(&Conditions, Option<&Candidates>) -> Result<Vec<Counted>, InspectError>,
) -> Result<Option<Vec<Counted>>, InspectError> {
    let mut sums = BTreeMap::new();
    let Some(q) = plan(blocks, o, c, range, &mut sums) else {
        return Ok(None);
    };
    let mut parts = Vec::new();
    if let Some((whole, spans)) = &q.uncounted {
        parts.push(exact(whole, Some(spans))?);
    }
    for edge in &q.edges {
        parts.push(exact(edge, None)?);
    }
    Ok(Some(finish(sums, parts)))
}

/// SQLite: the counts from the blocks, or `None` when they cannot answer.
///
/// # Errors
/// When the database cannot be read.
pub(crate) fn sqlite(
    conn: &mut SqliteConnection,
    o: &QueryOptions,
    c: &Conditions,
) -> Result<Option<Vec<Counted>>, InspectError> {
    let Some(range) = whole_minutes(c).filter(|_| applies(c)) else {
        return Ok(None);
    };
    if !sqlite_present(conn)? {
        return Ok(None);
    }
    let blocks = diesel::sql_query(blocks_sql())
        .load::<SqliteBlock>(conn)?
        .into_iter()
        .map(Stored::from)
        .collect();
    answer(blocks, o, c, range, |c, within| {
        exact_sqlite(conn, o, &GrepIndex::SCAN, c, within)
    })
}

/// PostgreSQL: [`sqlite`].
///
/// # Errors
/// When the database cannot be read.
pub(crate) fn pg(
    conn: &mut PgConnection,
    o: &QueryOptions,
    c: &Conditions,
) -> Result<Option<Vec<Counted>>, InspectError> {
    let Some(range) = whole_minutes(c).filter(|_| applies(c)) else {
        return Ok(None);
    };
    if !pg_present(conn)? {
        return Ok(None);
    }
    let blocks = diesel::sql_query(blocks_sql())
        .load::<PgBlock>(conn)?
        .into_iter()
        .map(Stored::from)
        .collect();
    answer(blocks, o, c, range, |c, within| {
        exact_pg(conn, o, &GrepIndex::SCAN, c, within)
    })
}
