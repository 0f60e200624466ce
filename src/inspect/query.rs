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
//!   string is escaped (`\"`), so such text is best found in the message;
//! - `source`, `host`: equal.
//!
//! Output: one line per event for people (`ts  level  source  message`, columns aligned, `-`
//! for a missing timestamp or level, the whole JSON object when there is no message), or JSON
//! lines with `--json` (see [`EventJson`]).

use std::io::{self, Write};

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::Text;
use serde::Serialize;
use serde_json::value::RawValue;

use super::{format_ts, printable, read_only, with_stdout, Align, InspectError, Table};
use crate::config::Config;
use crate::db::schema::{postgres as pg, sqlite};
use crate::parse::format_timestamp_micros;

/// `--limit` when not given.
pub const DEFAULT_LIMIT: u32 = 100;

/// Largest `--limit`: the matches are held in memory to print them oldest first (about 1 KiB
/// each), so a limit is a memory bound too; for bulk export, query the tables directly.
pub const MAX_LIMIT: u32 = 100_000;

/// What to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryOptions {
    /// Only events with `ts` at or after this.
    pub since: Option<DateTime<Utc>>,
    /// Only events with `ts` before this.
    pub until: Option<DateTime<Utc>>,
    /// Only these levels (compared lower-cased); empty: any level, or none.
    pub levels: Vec<String>,
    /// Only events whose message or JSON text contains this, ignoring case.
    pub grep: Option<String>,
    /// Only this source.
    pub source: Option<String>,
    /// Only this host.
    pub host: Option<String>,
    /// The most recent `limit` matches are shown (at least 1).
    pub limit: u32,
    /// JSON lines instead of the aligned text.
    pub json: bool,
}

impl Default for QueryOptions {
    fn default() -> Self {
        QueryOptions {
            since: None,
            until: None,
            levels: Vec::new(),
            grep: None,
            source: None,
            host: None,
            limit: DEFAULT_LIMIT,
            json: false,
        }
    }
}

/// One stored event, as both backends give it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
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
    pub more: bool,
}

/// `logbelt query`: prints the matching events on stdout.
///
/// # Errors
/// Bad options (exit 2); a database that cannot be read (exit 1).
pub fn query(config: &Config, options: &QueryOptions) -> Result<(), InspectError> {
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
        } else if found.more {
            crate::logging::report(&format!(
                "(showing the {} most recent matching events; raise --limit to see older ones)",
                found.events.len()
            ));
        }
    }
    Ok(())
}

/// Normalised filters: levels lower-cased, the limit checked.
struct Filters {
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    levels: Vec<String>,
    grep: Option<String>,
    source: Option<String>,
    host: Option<String>,
    /// Rows to fetch: one more than the limit, to tell whether there are more.
    fetch: i64,
}

fn filters(o: &QueryOptions) -> Result<Filters, InspectError> {
    if let (Some(since), Some(until)) = (o.since, o.until) {
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
    let levels: Vec<String> = o
        .levels
        .iter()
        .map(|l| l.trim().to_lowercase())
        .filter(|l| !l.is_empty())
        .collect();
    if levels.is_empty() && !o.levels.is_empty() {
        return Err(InspectError::usage(
            "--level: expected level names such as `error` or `warn,error`, found nothing",
        ));
    }
    Ok(Filters {
        since: o.since,
        until: o.until,
        levels,
        grep: o.grep.clone(),
        source: o.source.clone(),
        host: o.host.clone(),
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
    let mut events = read_only(
        &mut db,
        &config.database,
        |c| fetch_sqlite(c, &f),
        |c| fetch_pg(c, &f),
    )?;
    let more = events.len() as i64 == f.fetch;
    if more {
        events.pop();
    }
    // Fetched newest first.
    events.reverse();
    Ok(Found { events, more })
}

mod functions {
    use diesel::sql_types::{Nullable, Text};

    diesel::define_sql_function! {
        /// SQLite `lower(x)`: ASCII letters lower-cased.
        fn lower(x: Nullable<Text>) -> Nullable<Text>;
    }

    diesel::define_sql_function! {
        /// SQLite `instr(haystack, needle)`: 1-based position of needle, 0 when absent.
        fn instr(haystack: Nullable<Text>, needle: Nullable<Text>) -> Nullable<diesel::sql_types::Integer>;
    }
}

type EventTuple<T> = (
    Option<T>,
    Option<String>,
    Option<String>,
    String,
    String,
    i64,
    i64,
    String,
);

fn event<T>(t: EventTuple<T>, ts: impl Fn(T) -> String) -> Event {
    let (t_ts, level, message, source, host, file_id, file_offset, fields) = t;
    Event {
        ts: t_ts.map(ts),
        level,
        message,
        source,
        host,
        file_id,
        file_offset,
        fields,
    }
}

/// SQLite stores `ts` as fixed-width RFC 3339 text, which sorts and compares as time.
fn sqlite_ts(t: DateTime<Utc>) -> String {
    format_timestamp_micros(t.timestamp_micros())
}

/// A boxed query of `log_events` through `$e` (the backend's table: the same columns, but not
/// the same Rust types) with `$fields` as the object's text and the filters both backends apply
/// alike: time (`$ts` turns an instant into what the `ts` column holds), levels, source, host.
macro_rules! events_query {
    ($e:ident, $fields:expr, $f:expr, $ts:expr) => {{
        let mut q = $e::table
            .select((
                $e::ts,
                $e::level,
                $e::message,
                $e::source,
                $e::host,
                $e::file_id,
                $e::file_offset,
                $fields,
            ))
            .into_boxed();
        if let Some(t) = $f.since {
            q = q.filter($e::ts.ge($ts(t)));
        }
        if let Some(t) = $f.until {
            q = q.filter($e::ts.lt($ts(t)));
        }
        if !$f.levels.is_empty() {
            q = q.filter($e::level.eq_any($f.levels.clone()));
        }
        if let Some(s) = &$f.source {
            q = q.filter($e::source.eq(s.clone()));
        }
        if let Some(h) = &$f.host {
            q = q.filter($e::host.eq(h.clone()));
        }
        q
    }};
}

fn fetch_sqlite(
    c: &mut diesel::sqlite::SqliteConnection,
    f: &Filters,
) -> Result<Vec<Event>, InspectError> {
    use functions::{instr, lower};
    use sqlite::log_events as e;
    let mut q = events_query!(e, e::fields, f, sqlite_ts);
    if let Some(g) = &f.grep {
        q = q.filter(
            instr(lower(e::message), lower(g.clone())).gt(0).or(instr(
                lower(e::fields.nullable()),
                lower(g.clone()),
            )
            .gt(0)),
        );
    }
    // Newest first; in SQLite a NULL sorts last in DESC order: the oldest.
    let rows: Vec<EventTuple<String>> = q
        .order((e::ts.desc(), e::id.desc()))
        .limit(f.fetch)
        .load(c)?;
    Ok(rows.into_iter().map(|t| event(t, |s| s)).collect())
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
    use pg::log_events as e;
    // A constant SQL fragment (no user input): the object as text.
    let fields_text = || diesel::dsl::sql::<Text>(r#""log_events"."fields"::text"#);
    let filtered = || {
        let mut q = events_query!(e, fields_text(), f, std::convert::identity);
        if let Some(g) = &f.grep {
            let pattern = format!("%{}%", escape_like(g));
            q = q.filter(
                e::message
                    .ilike(pattern.clone())
                    .escape('\\')
                    .or(fields_text().ilike(pattern).escape('\\')),
            );
        }
        q
    };
    // Newest first. `ORDER BY ts DESC` (NULLs first) with `ts IS NOT NULL` walks the `ts` index
    // backwards and stops at the limit; `DESC NULLS LAST` would sort the whole table.
    let mut rows: Vec<EventTuple<DateTime<Utc>>> = filtered()
        .filter(e::ts.is_not_null())
        .order((e::ts.desc(), e::id.desc()))
        .limit(f.fetch)
        .load(c)?;
    // Then the events without a timestamp, the oldest (as in SQLite, where NULL sorts first).
    let missing = f.fetch - rows.len() as i64;
    if missing > 0 && f.since.is_none() && f.until.is_none() {
        let untimed: Vec<EventTuple<DateTime<Utc>>> = filtered()
            .filter(e::ts.is_null())
            .order(e::id.desc())
            .limit(missing)
            .load(c)?;
        rows.extend(untimed);
    }
    Ok(rows.into_iter().map(|t| event(t, format_ts)).collect())
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
             \"file_id\":7,\"file_offset\":42,\
             \"fields\":{\"a\": [1, 2.50], \"big\": 123456789012345678901234567890}}\n"
        );
    }
}
