//! `logbelt query`: stored events, filtered, oldest first.
//!
//! Of the matching events, the `limit` most recent are shown, oldest first (like `tail`).
//! Events are ordered by `ts`, then by row id (the order they were stored in, which is file
//! order within a file); an event without a timestamp counts as older than any with one.
//!
//! Filters, all combined with AND, every value a bind parameter:
//! - `since` ≤ `ts` < `until` (an event without `ts` never matches a time filter);
//! - `level` is one of the given levels, compared lower-cased (levels are stored lower-cased);
//! - `grep`: the message or the whole JSON object (its text, as stored) contains the text,
//!   ignoring case. SQLite: `instr(lower(…), lower(?))` (case folding of ASCII letters only);
//!   PostgreSQL: `ILIKE` with `%`, `_` and `\` escaped, on `message` and `fields::text`
//!   (case folding per the database's collation). In the object's text, a `"` or `\` inside a
//!   string is escaped (`\"`), so such text is best found in the message. The search blocks
//!   narrow down the rows to read first ([`super::blocks`]);
//! - `fields`: `--field KEY=VALUE`, the object's value at a dotted path;
//! - `source`, `host`: equal;
//! - `before`/`after`: cursors (`ts`, `id`) for paging without OFFSET.
//!
//! `--count` counts the matches instead, per group and time bucket ([`super::count`]).
//!
//! Output: one line per event for people (`ts  level  source  message`, columns aligned, `-`
//! for a missing timestamp or level, the whole JSON object when there is no message), or JSON
//! lines with `--json` (see [`EventJson`]).

use std::io::{self, Write};

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable, Text, Timestamptz};
use serde::Serialize;
use serde_json::value::RawValue;

use super::blocks::{self, Candidates};
use super::count::{Bucket, GroupBy};
use super::filter::{Conditions, Dialect, GrepIndex, Part, Sql};
use super::{format_ts, printable, read_only, with_stdout, Align, InspectError, Table};
use crate::config::Config;
use crate::db::search::PG_SEARCH_INDEX;

/// `--limit` when not given.
pub const DEFAULT_LIMIT: u32 = 100;

/// Largest `--limit`: the matches are held in memory to print them oldest first (about 1 KiB
/// each), so a limit is a memory bound too; for bulk export, query the tables directly.
pub const MAX_LIMIT: u32 = 100_000;

/// What to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryOptions {
    /// Which events: the filters (time, levels, `--grep`, `--field`, source, host, cursors).
    pub conditions: Conditions,
    /// The most recent `limit` matches are shown (at least 1).
    pub limit: u32,
    /// Count the matches instead of printing them.
    pub count: bool,
    /// With `count`: one count per value of this column.
    pub by: Option<GroupBy>,
    /// With `count`: one count per time bucket of `ts`.
    pub bucket: Option<Bucket>,
    /// JSON lines instead of the aligned text.
    pub json: bool,
}

/// One stored event, as both backends give it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The row id: with `ts`, the event's place in the order of events (its cursor).
    pub id: i64,
    /// RFC 3339 UTC with 6 fractional digits, or None.
    pub ts: Option<String>,
    pub level: Option<String>,
    pub message: Option<String>,
    pub source: String,
    pub host: String,
    pub file_id: i64,
    pub file_offset: i64,
    /// The JSON object's text: the line as written in SQLite, `jsonb`'s rendering in
    /// PostgreSQL.
    pub fields: String,
}

/// A `--json` line. Keys in this order; `fields` is the object itself.
#[derive(Debug, Serialize)]
pub struct EventJson<'a> {
    pub ts: Option<&'a str>,
    pub level: Option<&'a str>,
    pub message: Option<&'a str>,
    pub source: &'a str,
    pub host: &'a str,
    pub file_id: i64,
    pub file_offset: i64,
    /// The row id (a cursor is `ts,id`).
    pub id: i64,
    pub fields: Fields<'a>,
}

/// The stored object, embedded verbatim when it is valid JSON (it always is: the parser
/// checked it), else as a string.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Fields<'a> {
    Json(&'a RawValue),
    Text(&'a str),
}

/// The matching events, oldest first, and whether older matches were left out by the limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub events: Vec<Event>,
    /// More matches beyond the page: older ones, or (`forward`) newer ones.
    pub more: bool,
    /// The page runs forward from `--after`.
    pub forward: bool,
}

impl Event {
    /// This event's place in the order of events, for `--before`/`--after`.
    pub fn cursor(&self) -> String {
        format!("{},{}", self.ts.as_deref().unwrap_or("-"), self.id)
    }
}

/// `logbelt query`: prints the matching events on stdout.
///
/// # Errors
/// Bad options (exit 2); a database that cannot be read (exit 1).
pub fn query(config: &Config, options: &QueryOptions) -> Result<(), InspectError> {
    if options.count {
        return super::count::count(config, options);
    }
    if options.by.is_some() || options.bucket.is_some() {
        return Err(InspectError::usage("--by and --bucket go with --count"));
    }
    let found = fetch(config, options)?;
    with_stdout(|out| {
        if options.json {
            write_json(&found.events, out)
        } else {
            write_human(&found.events, out)
        }
    })?;
    if !options.json {
        if found.events.is_empty() {
            crate::logging::report("(no matching events)");
        } else if found.more && found.forward {
            let last = found.events.last().map(Event::cursor).unwrap_or_default();
            crate::logging::report(&format!(
                "(showing the {} oldest matching events after the cursor; next page: --after {last})",
                found.events.len()
            ));
        } else if found.more {
            let first = found.events.first().map(Event::cursor).unwrap_or_default();
            crate::logging::report(&format!(
                "(showing the {} most recent matching events; raise --limit to see older ones, \
                 or page back with --before {first})",
                found.events.len()
            ));
        }
    }
    Ok(())
}

/// The newest events a common needle is first looked for in: about 20 ms of reading.
const PROBE_ROWS: i64 = 20_000;
/// More candidate rows than this (several times the probe's): look among the newest events
/// first ([`PROBE_ROWS`]).
const PROBE_ABOVE: i64 = 4 * PROBE_ROWS;

/// Normalised filters: levels lower-cased, the limit checked.
pub(crate) struct Filters {
    pub conditions: Conditions,
    /// Rows to fetch: one more than the limit, to tell whether there are more.
    fetch: i64,
}

pub(crate) fn filters(o: &QueryOptions) -> Result<Filters, InspectError> {
    let c = &o.conditions;
    if let (Some(since), Some(until)) = (c.since, c.until) {
        if since > until {
            return Err(InspectError::usage(format!(
                "--since ({}) is after --until ({})",
                format_ts(since),
                format_ts(until)
            )));
        }
    }
    if o.limit == 0 {
        return Err(InspectError::usage("--limit: expected at least 1, found 0"));
    }
    if o.limit > MAX_LIMIT {
        return Err(InspectError::usage(format!(
            "--limit: expected at most {MAX_LIMIT}, found {} (for bulk export, query the tables with SQL)",
            o.limit
        )));
    }
    let levels: Vec<String> = c
        .levels
        .iter()
        .map(|l| l.trim().to_lowercase())
        .filter(|l| !l.is_empty())
        .collect();
    if levels.is_empty() && !c.levels.is_empty() {
        return Err(InspectError::usage(
            "--level: expected level names such as `error` or `warn,error`, found nothing",
        ));
    }
    Ok(Filters {
        conditions: Conditions {
            levels,
            ..c.clone()
        },
        fetch: i64::from(o.limit) + 1,
    })
}

/// Reads the matching events.
///
/// # Errors
/// Bad options (exit 2); a database that cannot be read (exit 1).
pub fn fetch(config: &Config, options: &QueryOptions) -> Result<Found, InspectError> {
    let f = filters(options)?;
    let mut db = super::open(&config.database)?;
    let path = sqlite_path(config);
    let mut events = read_only(
        &mut db,
        &config.database,
        |c| fetch_sqlite(c, path, &f),
        |c| fetch_pg(c, &f),
    )?;
    let more = events.len() as i64 == f.fetch;
    if more {
        events.pop();
    }
    let forward = f.forward();
    if !forward {
        // Fetched newest first.
        events.reverse();
    }
    Ok(Found {
        events,
        more,
        forward,
    })
}

impl Filters {
    /// Whether the page runs forward from `--after` (the oldest matches after it) rather than
    /// back from the newest (or from `--before`).
    fn forward(&self) -> bool {
        self.conditions.after.is_some() && self.conditions.before.is_none()
    }

    /// The queries to run, in order, each for the rows the previous ones left: newest first,
    /// events with a timestamp (by `ts`, `id`) then those without (by `id`), which count as the
    /// oldest; forward, the other way round.
    fn parts(&self) -> [Part; 2] {
        if self.forward() {
            [Part::Untimed, Part::Timed]
        } else {
            [Part::Timed, Part::Untimed]
        }
    }

    fn order(&self, part: Part) -> &'static str {
        match (part, self.forward()) {
            (Part::Untimed, false) => " ORDER BY id DESC",
            (Part::Untimed, true) => " ORDER BY id ASC",
            (_, false) => " ORDER BY ts DESC, id DESC",
            (_, true) => " ORDER BY ts ASC, id ASC",
        }
    }

    /// A needle in many search blocks, newest first: the query over only the newest
    /// [`PROBE_ROWS`] events in the time range, by the exact filter. A common needle fills the
    /// page there, where the blocks would have the query read (and sort) every row that holds
    /// it. If it fills the page, the page is right: every event outside the window is older
    /// than every one inside. Otherwise the blocks are read.
    fn probe(
        &self,
        dialect: Dialect,
        select: &str,
        part: Part,
        index: &GrepIndex,
        missing: i64,
    ) -> Option<Sql> {
        let c = &self.conditions;
        let many = index.blocks.rows().is_some_and(|rows| rows > PROBE_ABOVE);
        let applies = many
            && part == Part::Timed
            && !self.forward()
            && c.before.is_none()
            && c.grep_indexable();
        if !applies {
            return None;
        }
        // The window first (by the `ts` index), then the filters on its rows only.
        let mut sql = Sql::new(
            dialect,
            "WITH recent AS MATERIALIZED (SELECT * FROM log_events WHERE ts IS NOT NULL",
        );
        if let Some(t) = c.since {
            sql.push(" AND ts >= ").time(t);
        }
        if let Some(t) = c.until {
            sql.push(" AND ts < ").time(t);
        }
        sql.push(" ORDER BY ts DESC, id DESC LIMIT ")
            .int(PROBE_ROWS)
            .push(") ")
            .push(&select.replacen("FROM log_events", "FROM recent", 1));
        c.write(&mut sql, part, &GrepIndex::SCAN);
        sql.push(self.order(part)).push(" LIMIT ").int(missing);
        Some(sql)
    }

    /// Runs the parts' queries through `load` until `fetch` rows are found.
    fn run<R>(
        &self,
        dialect: Dialect,
        select: &str,
        index: &GrepIndex,
        mut load: impl FnMut(&Sql) -> Result<Vec<R>, InspectError>,
    ) -> Result<Vec<R>, InspectError> {
        let mut rows = Vec::new();
        for part in self.parts() {
            let missing = self.fetch - rows.len() as i64;
            if missing <= 0 || !self.conditions.may_match(part) {
                continue;
            }
            if let Some(sql) = self.probe(dialect, select, part, index, missing) {
                let found = load(&sql)?;
                if found.len() as i64 >= missing {
                    rows.extend(found);
                    continue;
                }
            }
            // With search blocks, their rows are read first, and only then sorted: ordered
            // by time under a LIMIT, a planner would rather walk the `ts` index past them all.
            let narrowed = matches!(&index.blocks, Candidates::Spans(spans) if !spans.is_empty());
            let mut sql = Sql::new(
                dialect,
                if narrowed {
                    "WITH hits AS MATERIALIZED ("
                } else {
                    ""
                },
            );
            sql.push(select);
            self.conditions.write(&mut sql, part, index);
            if narrowed {
                sql.push(") SELECT * FROM hits");
            }
            sql.push(self.order(part)).push(" LIMIT ").int(missing);
            rows.extend(load(&sql)?);
        }
        Ok(rows)
    }
}

/// An event as read with `ts` as text (SQLite's column; PostgreSQL's formatted as `query` prints
/// it).
#[derive(QueryableByName)]
pub(crate) struct TextRow {
    #[diesel(sql_type = BigInt)]
    pub(crate) id: i64,
    #[diesel(sql_type = Nullable<Text>)]
    ts: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    level: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    message: Option<String>,
    #[diesel(sql_type = Text)]
    source: String,
    #[diesel(sql_type = Text)]
    host: String,
    #[diesel(sql_type = BigInt)]
    file_id: i64,
    #[diesel(sql_type = BigInt)]
    file_offset: i64,
    #[diesel(sql_type = Text)]
    fields: String,
}

impl From<TextRow> for Event {
    fn from(r: TextRow) -> Event {
        Event {
            id: r.id,
            ts: r.ts,
            level: r.level,
            message: r.message,
            source: r.source,
            host: r.host,
            file_id: r.file_id,
            file_offset: r.file_offset,
            fields: r.fields,
        }
    }
}

#[derive(QueryableByName)]
struct PgRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    ts: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<Text>)]
    level: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    message: Option<String>,
    #[diesel(sql_type = Text)]
    source: String,
    #[diesel(sql_type = Text)]
    host: String,
    #[diesel(sql_type = BigInt)]
    file_id: i64,
    #[diesel(sql_type = BigInt)]
    file_offset: i64,
    #[diesel(sql_type = Text)]
    fields: String,
}

const SQLITE_SELECT: &str = "SELECT id, ts, level, message, source, host, file_id, file_offset, \
                             fields FROM log_events WHERE 1 = 1";
const PG_SELECT: &str = "SELECT id, ts, level, message, source, host, file_id, file_offset, \
                         fields::text AS fields FROM log_events WHERE 1 = 1";

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// Whether the PostgreSQL trigram index exists (it may not: README, "Searching").
fn pg_trigram(c: &mut diesel::pg::PgConnection) -> Result<bool, InspectError> {
    let n: Count = diesel::sql_query(format!(
        "SELECT count(*) AS n FROM pg_class WHERE oid = to_regclass('{PG_SEARCH_INDEX}')"
    ))
    .get_result(c)?;
    Ok(n.n > 0)
}

/// What `--grep` may use on SQLite (the database file at `path`).
pub(crate) fn sqlite_grep_index(
    path: Option<&std::path::Path>,
    c: &Conditions,
) -> Result<GrepIndex, InspectError> {
    match (&c.grep, path) {
        (Some(g), Some(path)) if !c.scan => Ok(GrepIndex {
            trigram: false,
            blocks: blocks::sqlite(path, g)?,
        }),
        _ => Ok(GrepIndex::SCAN),
    }
}

/// What `--grep` may use on PostgreSQL.
pub(crate) fn pg_grep_index(
    conn: &mut diesel::pg::PgConnection,
    c: &Conditions,
) -> Result<GrepIndex, InspectError> {
    match &c.grep {
        Some(g) if !c.scan => Ok(GrepIndex {
            trigram: c.grep_indexable() && pg_trigram(conn)?,
            blocks: blocks::pg(conn, g)?,
        }),
        _ => Ok(GrepIndex::SCAN),
    }
}

/// The file of a SQLite database.
pub(crate) fn sqlite_path(config: &Config) -> Option<&std::path::Path> {
    match &config.database.url {
        crate::config::DatabaseUrl::Sqlite { path } => Some(path),
        crate::config::DatabaseUrl::Postgres { .. } => None,
    }
}

fn fetch_sqlite(
    c: &mut diesel::sqlite::SqliteConnection,
    path: Option<&std::path::Path>,
    f: &Filters,
) -> Result<Vec<Event>, InspectError> {
    let index = sqlite_grep_index(path, &f.conditions)?;
    let rows = f.run(Dialect::Sqlite, SQLITE_SELECT, &index, |sql| {
        Ok(sql.sqlite().load::<TextRow>(c)?)
    })?;
    Ok(rows.into_iter().map(Event::from).collect())
}

/// `s` for `LIKE`/`ILIKE` with `\` as the escape character: `\`, `%` and `_` match themselves.
pub fn escape_like(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 4);
    for c in s.chars() {
        if matches!(c, '\\' | '%' | '_') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn fetch_pg(c: &mut diesel::pg::PgConnection, f: &Filters) -> Result<Vec<Event>, InspectError> {
    let index = pg_grep_index(c, &f.conditions)?;
    let rows = f.run(Dialect::Pg, PG_SELECT, &index, |sql| {
        Ok(sql.pg().load::<PgRow>(c)?)
    })?;
    Ok(rows
        .into_iter()
        .map(|r| Event {
            id: r.id,
            ts: r.ts.map(format_ts),
            level: r.level,
            message: r.message,
            source: r.source,
            host: r.host,
            file_id: r.file_id,
            file_offset: r.file_offset,
            fields: r.fields,
        })
        .collect())
}

/// One JSON object per line.
pub fn write_json(events: &[Event], out: &mut dyn Write) -> io::Result<()> {
    for ev in events {
        let fields = match serde_json::from_str::<&RawValue>(&ev.fields) {
            Ok(raw) => Fields::Json(raw),
            Err(_) => Fields::Text(&ev.fields),
        };
        let line = EventJson {
            ts: ev.ts.as_deref(),
            level: ev.level.as_deref(),
            message: ev.message.as_deref(),
            source: &ev.source,
            host: &ev.host,
            file_id: ev.file_id,
            file_offset: ev.file_offset,
            id: ev.id,
            fields,
        };
        serde_json::to_writer(&mut *out, &line)?;
        writeln!(out)?;
    }
    Ok(())
}

/// `ts  level  source  message`, columns aligned; control characters escaped.
pub fn write_human(events: &[Event], out: &mut dyn Write) -> io::Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    let rows = events
        .iter()
        .map(|ev| {
            vec![
                ev.ts.clone().unwrap_or_else(|| "-".to_owned()),
                printable(ev.level.as_deref().unwrap_or("-")).into_owned(),
                printable(&ev.source).into_owned(),
                printable(ev.message.as_deref().unwrap_or(&ev.fields)).into_owned(),
            ]
        })
        .collect();
    Table {
        align: vec![Align::Left; 4],
        rows,
    }
    .write(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(ts: Option<&str>, level: Option<&str>, message: Option<&str>) -> Event {
        Event {
            id: 1,
            ts: ts.map(str::to_owned),
            level: level.map(str::to_owned),
            message: message.map(str::to_owned),
            source: "app".into(),
            host: "web-1".into(),
            file_id: 7,
            file_offset: 42,
            fields: r#"{"a": [1, 2.50], "big": 123456789012345678901234567890}"#.into(),
        }
    }

    #[test]
    fn like_escaping() {
        assert_eq!(escape_like(r"a%b_c\d'e"), r"a\%b\_c\\d'e");
    }

    #[test]
    fn human_lines() {
        let events = [
            ev(None, Some("error"), Some("no time")),
            ev(
                Some("2025-06-01T12:00:00.000000Z"),
                Some("info"),
                Some("line\nbreak"),
            ),
            ev(Some("2025-06-01T12:00:01.000000Z"), None, None),
        ];
        let mut out = Vec::new();
        write_human(&events, &mut out).unwrap();
        let expected = concat!(
            "-                            error  app  no time\n",
            "2025-06-01T12:00:00.000000Z  info   app  line\\nbreak\n",
            "2025-06-01T12:00:01.000000Z  -      app  {\"a\": [1, 2.50], \"big\": 123456789012345678901234567890}\n",
        );
        assert_eq!(String::from_utf8(out).unwrap(), expected);
    }

    #[test]
    fn json_lines_embed_the_object_verbatim() {
        let mut out = Vec::new();
        write_json(&[ev(None, None, Some("m"))], &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"ts\":null,\"level\":null,\"message\":\"m\",\"source\":\"app\",\"host\":\"web-1\",\
             \"file_id\":7,\"file_offset\":42,\"id\":1,\
             \"fields\":{\"a\": [1, 2.50], \"big\": 123456789012345678901234567890}}\n"
        );
    }
}
