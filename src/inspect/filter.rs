//! The WHERE clause of `query` (events and counts) for both backends, as SQL text with bind
//! parameters (every value the user gives is bound, never spliced into SQL), and the parsing of
//! `--field KEY=VALUE` and of the `--before`/`--after` cursors.
//!
//! `--grep` (README, "Searching"): the exact filter is always applied — the message or the
//! object text contains the needle, ignoring case (SQLite: `instr(lower(…), lower(?))`, ASCII
//! folding; PostgreSQL: `ILIKE` with `%`, `_`, `\` escaped). Before it come the conditions of a
//! [`GrepIndex`]: the id ranges of the search blocks that may hold the needle
//! ([`super::blocks`]) and, on PostgreSQL, `ILIKE` on the expression of the optional `pg_trgm`
//! index. Each finds a superset of the matching rows.
//! Index or not, the rows are the same.

use chrono::{DateTime, Utc};
use diesel::pg::Pg;
use diesel::query_builder::{BoxedSqlQuery, SqlQuery};
use diesel::sql_types::{BigInt, Double, Text, Timestamptz};
use diesel::sqlite::Sqlite;

use super::blocks::Candidates;
use super::query::escape_like;
use crate::db::search::PG_SEARCH_EXPR;
use crate::parse::format_timestamp_micros;

/// Trigram indexes cannot serve a shorter needle: it is found by scanning (bounded by the other
/// filters).
pub const INDEX_MIN_CHARS: usize = 3;

/// What `--grep` may use besides its exact filter.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct GrepIndex {
    /// PostgreSQL's optional `pg_trgm` index exists.
    pub trigram: bool,
    /// What the search blocks say.
    pub blocks: Candidates,
}

impl GrepIndex {
    /// Nothing but the exact filter.
    pub(crate) const SCAN: GrepIndex = GrepIndex {
        trigram: false,
        blocks: Candidates::Scan,
    };
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Pg,
}

/// A bound value.
#[derive(Debug, Clone)]
enum Arg {
    Text(String),
    Int(i64),
    Float(f64),
    Time(DateTime<Utc>),
}

/// SQL text and its bind parameters, in order.
pub(crate) struct Sql {
    dialect: Dialect,
    text: String,
    args: Vec<Arg>,
}

impl Sql {
    pub fn new(dialect: Dialect, text: &str) -> Sql {
        Sql {
            dialect,
            text: text.to_owned(),
            args: Vec::new(),
        }
    }

    pub fn push(&mut self, text: &str) -> &mut Sql {
        self.text.push_str(text);
        self
    }

    fn arg(&mut self, arg: Arg) -> &mut Sql {
        self.args.push(arg);
        match self.dialect {
            Dialect::Sqlite => self.text.push('?'),
            Dialect::Pg => self.text.push_str(&format!("${}", self.args.len())),
        }
        self
    }

    pub fn text(&mut self, s: &str) -> &mut Sql {
        self.arg(Arg::Text(s.to_owned()))
    }

    pub fn int(&mut self, n: i64) -> &mut Sql {
        self.arg(Arg::Int(n))
    }

    pub fn time(&mut self, t: DateTime<Utc>) -> &mut Sql {
        self.arg(Arg::Time(t))
    }

    pub fn sqlite(&self) -> BoxedSqlQuery<'static, Sqlite, SqlQuery> {
        let mut q = diesel::sql_query(self.text.clone()).into_boxed::<Sqlite>();
        for a in &self.args {
            q = match a {
                Arg::Text(s) => q.bind::<Text, _>(s.clone()),
                Arg::Int(n) => q.bind::<BigInt, _>(*n),
                Arg::Float(x) => q.bind::<Double, _>(*x),
                // SQLite stores `ts` as fixed-width RFC 3339 text, which sorts and compares as
                // time.
                Arg::Time(t) => q.bind::<Text, _>(format_timestamp_micros(t.timestamp_micros())),
            };
        }
        q
    }

    pub fn pg(&self) -> BoxedSqlQuery<'static, Pg, SqlQuery> {
        let mut q = diesel::sql_query(self.text.clone()).into_boxed::<Pg>();
        for a in &self.args {
            q = match a {
                Arg::Text(s) => q.bind::<Text, _>(s.clone()),
                Arg::Int(n) => q.bind::<BigInt, _>(*n),
                Arg::Float(x) => q.bind::<Double, _>(*x),
                Arg::Time(t) => q.bind::<Timestamptz, _>(*t),
            };
        }
        q
    }
}

// ---------------------------------------------------------------------------------------------
// --field KEY=VALUE
// ---------------------------------------------------------------------------------------------

/// `--field KEY=VALUE`: the object's value at the path KEY (dotted: `http.status`) equals VALUE,
/// a JSON number, `true`, `false`, `null` or a string (any other text; a JSON-quoted string
/// such as `"500"` is that string).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldFilter {
    pub path: Vec<String>,
    pub value: serde_json::Value,
}

/// Parses `KEY=VALUE` (for clap).
///
/// # Errors
/// A message saying what was expected.
pub fn parse_field(s: &str) -> Result<FieldFilter, String> {
    let Some((key, value)) = s.split_once('=') else {
        return Err(format!(
            "expected KEY=VALUE (e.g. http.status=500 or user.name=ann), found {s:?}"
        ));
    };
    let path: Vec<String> = key.split('.').map(str::to_owned).collect();
    if path.iter().any(|p| p.is_empty()) {
        return Err(format!(
            "expected a key of dot-separated names (e.g. http.status), found {key:?}"
        ));
    }
    if path.iter().any(|p| p.contains('"')) {
        return Err(format!("a key cannot contain '\"', found {key:?}"));
    }
    let value = match serde_json::from_str::<serde_json::Value>(value) {
        Ok(
            v @ (serde_json::Value::Number(_)
            | serde_json::Value::Bool(_)
            | serde_json::Value::Null
            | serde_json::Value::String(_)),
        ) => v,
        Ok(_) => {
            return Err(format!(
                "expected a number, a string, true, false or null, found {value:?}"
            ))
        }
        Err(_) => serde_json::Value::String(value.to_owned()),
    };
    Ok(FieldFilter { path, value })
}

/// SQLite's JSON path for `path`: `$.http.status`, names other than `[A-Za-z0-9_]` quoted.
fn sqlite_path(path: &[String]) -> String {
    let mut out = String::from("$");
    for p in path {
        out.push('.');
        if p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            out.push_str(p);
        } else {
            out.push('"');
            out.push_str(p);
            out.push('"');
        }
    }
    out
}

/// The object `{"a":{"b":value}}` that contains `path = value` (PostgreSQL's `@>`).
fn containing(f: &FieldFilter) -> serde_json::Value {
    f.path.iter().rev().fold(f.value.clone(), |inner, key| {
        let mut m = serde_json::Map::new();
        m.insert(key.clone(), inner);
        serde_json::Value::Object(m)
    })
}

fn field_condition(sql: &mut Sql, f: &FieldFilter) {
    match sql.dialect {
        // `@>` with `jsonb_path_ops`: the GIN index on fields. Numbers compare as numbers
        // (500 = 500.0), as in SQLite.
        Dialect::Pg => {
            sql.push(" AND fields @> CAST(")
                .text(&containing(f).to_string())
                .push(" AS jsonb)");
        }
        // json_type tells the JSON type (so "500" the string never matches 500 the number).
        Dialect::Sqlite => {
            let path = sqlite_path(&f.path);
            sql.push(" AND json_type(fields, ").text(&path);
            match &f.value {
                serde_json::Value::Number(n) => {
                    sql.push(") IN ('integer', 'real') AND json_extract(fields, ")
                        .text(&path)
                        .push(") = ");
                    match n.as_i64() {
                        Some(i) => sql.int(i),
                        None => sql.arg(Arg::Float(n.as_f64().unwrap_or(f64::NAN))),
                    };
                }
                serde_json::Value::String(s) => {
                    sql.push(") = 'text' AND json_extract(fields, ")
                        .text(&path)
                        .push(") = ")
                        .text(s);
                }
                serde_json::Value::Bool(true) => {
                    sql.push(") = 'true'");
                }
                serde_json::Value::Bool(false) => {
                    sql.push(") = 'false'");
                }
                _ => {
                    sql.push(") = 'null'");
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Cursors
// ---------------------------------------------------------------------------------------------

/// A position in the order of events: (`ts`, `id`), an event without `ts` older than any with
/// one. Written `TS,ID` (`-,ID` without a timestamp), as the notes of `query` print it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub ts: Option<DateTime<Utc>>,
    pub id: i64,
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.ts {
            Some(t) => write!(
                f,
                "{},{}",
                format_timestamp_micros(t.timestamp_micros()),
                self.id
            ),
            None => write!(f, "-,{}", self.id),
        }
    }
}

/// Parses `TS,ID` (for clap).
///
/// # Errors
/// A message saying what was expected.
pub fn parse_cursor(s: &str) -> Result<Cursor, String> {
    let expected = || {
        format!(
            "expected a cursor TS,ID as query prints it (2026-11-25T09:00:04.970000Z,1234 or -,1234), found {s:?}"
        )
    };
    let (ts, id) = s.rsplit_once(',').ok_or_else(expected)?;
    let id: i64 = id.trim().parse().map_err(|_| expected())?;
    let ts = match ts.trim() {
        "-" => None,
        t => Some(
            DateTime::parse_from_rfc3339(t)
                .map_err(|_| expected())?
                .with_timezone(&Utc),
        ),
    };
    Ok(Cursor { ts, id })
}

// ---------------------------------------------------------------------------------------------
// The conditions
// ---------------------------------------------------------------------------------------------

/// Which events a query is about (`query`'s filters; normalised by `query::filters`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conditions {
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub levels: Vec<String>,
    pub grep: Option<String>,
    pub fields: Vec<FieldFilter>,
    pub source: Option<String>,
    pub host: Option<String>,
    /// Only events before this one (in the order of events).
    pub before: Option<Cursor>,
    /// Only events after this one.
    pub after: Option<Cursor>,
    /// Never use the search index (`--scan`).
    pub scan: bool,
}

/// Which events of a query: those with a timestamp, or those without (each part is ordered by
/// its own index: `ts` then `id`, or `id`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Part {
    Timed,
    Untimed,
    /// Both (counts).
    All,
}

impl Conditions {
    /// Whether the needle is long enough for the trigram index.
    pub fn grep_indexable(&self) -> bool {
        self.grep
            .as_ref()
            .is_some_and(|g| g.chars().count() >= INDEX_MIN_CHARS)
    }

    /// Whether `part` can hold any match at all (a time filter or cursor may rule it out).
    pub(crate) fn may_match(&self, part: Part) -> bool {
        match part {
            Part::Untimed => {
                self.since.is_none()
                    && self.until.is_none()
                    && self.after.as_ref().is_none_or(|c| c.ts.is_none())
            }
            Part::Timed => self.before.as_ref().is_none_or(|c| c.ts.is_some()),
            Part::All => true,
        }
    }

    /// Appends ` AND …` for every filter, `--grep` narrowed down by `index`.
    pub(crate) fn write(&self, sql: &mut Sql, part: Part, index: &GrepIndex) {
        match part {
            Part::Timed => {
                sql.push(" AND ts IS NOT NULL");
            }
            Part::Untimed => {
                sql.push(" AND ts IS NULL");
            }
            Part::All => {}
        }
        if let Some(t) = self.since {
            sql.push(" AND ts >= ").time(t);
        }
        if let Some(t) = self.until {
            sql.push(" AND ts < ").time(t);
        }
        if !self.levels.is_empty() {
            sql.push(" AND level IN (");
            for (i, l) in self.levels.iter().enumerate() {
                if i > 0 {
                    sql.push(", ");
                }
                sql.text(l);
            }
            sql.push(")");
        }
        if let Some(s) = &self.source {
            sql.push(" AND source = ").text(s);
        }
        if let Some(h) = &self.host {
            sql.push(" AND host = ").text(h);
        }
        for f in &self.fields {
            field_condition(sql, f);
        }
        if let Some(g) = &self.grep {
            if !self.scan {
                index.blocks.write(sql);
            }
            self.grep_condition(sql, g, index.trigram && !self.scan && self.grep_indexable());
        }
        if let Some(c) = &self.before {
            cursor_condition(sql, part, c, "<");
        }
        if let Some(c) = &self.after {
            cursor_condition(sql, part, c, ">");
        }
    }

    fn grep_condition(&self, sql: &mut Sql, g: &str, index: bool) {
        match sql.dialect {
            Dialect::Sqlite => {
                sql.push(" AND (instr(lower(message), lower(")
                    .text(g)
                    .push(")) > 0 OR instr(lower(fields), lower(")
                    .text(g)
                    .push(")) > 0)");
            }
            Dialect::Pg => {
                let pattern = format!("%{}%", escape_like(g));
                if index {
                    sql.push(&format!(" AND {PG_SEARCH_EXPR} ILIKE "))
                        .text(&pattern)
                        .push(" ESCAPE '\\'");
                }
                sql.push(" AND (message ILIKE ")
                    .text(&pattern)
                    .push(" ESCAPE '\\' OR fields::text ILIKE ")
                    .text(&pattern)
                    .push(" ESCAPE '\\')");
            }
        }
    }
}

/// `(ts, id) < c` (`op` `<`) or `> c`, within `part`. An event without `ts` is older than any
/// with one. The redundant `ts <=`/`ts >=` lets the `ts` index bound the range.
fn cursor_condition(sql: &mut Sql, part: Part, c: &Cursor, op: &str) {
    let older = op == "<";
    match (c.ts, part) {
        (Some(t), Part::Timed | Part::All) => {
            let (bound, strict) = if older { ("<=", "<") } else { (">=", ">") };
            let none = if part == Part::All && older {
                "ts IS NULL OR "
            } else {
                ""
            };
            sql.push(&format!(" AND ({none}(ts {bound} "))
                .time(t)
                .push(&format!(" AND (ts {strict} "))
                .time(t)
                .push(&format!(" OR id {strict} "))
                .int(c.id)
                .push(")))");
        }
        (Some(_), Part::Untimed) => {
            // Every untimed event is older than a timed cursor.
            if !older {
                sql.push(" AND 1 = 0");
            }
        }
        (None, Part::Timed) => {
            // Every timed event is newer than an untimed cursor.
            if older {
                sql.push(" AND 1 = 0");
            }
        }
        (None, Part::Untimed) => {
            sql.push(&format!(" AND id {op} ")).int(c.id);
        }
        (None, Part::All) => {
            if older {
                sql.push(" AND ts IS NULL AND id < ").int(c.id);
            } else {
                sql.push(" AND (ts IS NOT NULL OR id > ")
                    .int(c.id)
                    .push(")");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fields_parse() {
        let f = parse_field("http.status=500").unwrap();
        assert_eq!(f.path, ["http", "status"]);
        assert_eq!(f.value, json!(500));
        assert_eq!(parse_field("user=ann").unwrap().value, json!("ann"));
        assert_eq!(parse_field("code=\"500\"").unwrap().value, json!("500"));
        assert_eq!(parse_field("ok=true").unwrap().value, json!(true));
        assert_eq!(parse_field("x=null").unwrap().value, json!(null));
        assert_eq!(parse_field("q=a=b").unwrap().value, json!("a=b"));
        assert_eq!(parse_field("e=").unwrap().value, json!(""));
        for bad in ["nokey", "=1", "a..b=1", "a.=1", "a=[1]", "a={}", "a\"b=1"] {
            assert!(parse_field(bad).is_err(), "{bad}");
        }
        assert_eq!(
            containing(&parse_field("http.status=500").unwrap()),
            json!({"http": {"status": 500}})
        );
        assert_eq!(
            sqlite_path(&["http".into(), "x-y z".into()]),
            "$.http.\"x-y z\""
        );
    }

    #[test]
    fn cursors_round_trip() {
        for s in ["2026-11-25T09:00:04.970000Z,1234", "-,7"] {
            assert_eq!(parse_cursor(s).unwrap().to_string(), s);
        }
        for bad in ["", "1234", "x,1", "2026-11-25T09:00:04Z,", "-,a"] {
            assert!(parse_cursor(bad).is_err(), "{bad}");
        }
    }
}
