//! `logbelt query --count [--by level|source|host] [--bucket 1m|1h|1d]`: how many events match,
//! per group and per time bucket — the data behind a histogram. One `GROUP BY` in the database;
//! no row is loaded.
//!
//! Buckets are of the event's own time, `ts` (as `--since`/`--until` filter it), in UTC; events
//! without a timestamp are counted in a bucket of their own, shown `-` (JSON `null`), first.
//! Groups without a value (no level) are shown `-` (JSON `null`).

use chrono::NaiveDateTime;
use clap::ValueEnum;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable, Text, Timestamp};
use serde::Serialize;

use super::blocks::Candidates;
use super::filter::{Conditions, GrepIndex};
use super::filter::{Dialect, Part, Sql};
use super::query::{filters, pg_grep_index, sqlite_grep_index, sqlite_path, QueryOptions};
use super::rollup;
use super::{read_only, thousands, with_stdout, Align, InspectError, Table};
use crate::config::Config;
use crate::parse::format_timestamp_micros;

/// `--by`: the column to group by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GroupBy {
    Level,
    Source,
    Host,
}

impl GroupBy {
    fn column(self) -> &'static str {
        match self {
            GroupBy::Level => "level",
            GroupBy::Source => "source",
            GroupBy::Host => "host",
        }
    }
}

/// `--bucket`: the width of a time bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Bucket {
    #[value(name = "1m")]
    Minute,
    #[value(name = "1h")]
    Hour,
    #[value(name = "1d")]
    Day,
}

impl Bucket {
    /// SQLite: `ts` is fixed-width RFC 3339 text; a bucket is a prefix of it, completed.
    fn sqlite(self) -> &'static str {
        match self {
            Bucket::Minute => "substr(ts, 1, 16) || ':00.000000Z'",
            Bucket::Hour => "substr(ts, 1, 13) || ':00:00.000000Z'",
            Bucket::Day => "substr(ts, 1, 10) || 'T00:00:00.000000Z'",
        }
    }

    /// The bucket (as the queries print it) of the minute `minute` (minutes since 1970).
    pub(crate) fn of_minute(self, minute: i64) -> String {
        let width: i64 = match self {
            Bucket::Minute => 1,
            Bucket::Hour => 60,
            Bucket::Day => 1440,
        };
        format_timestamp_micros((minute - minute.rem_euclid(width)) * 60_000_000)
    }

    fn pg(self) -> &'static str {
        match self {
            Bucket::Minute => "date_trunc('minute', ts AT TIME ZONE 'UTC')",
            Bucket::Hour => "date_trunc('hour', ts AT TIME ZONE 'UTC')",
            Bucket::Day => "date_trunc('day', ts AT TIME ZONE 'UTC')",
        }
    }
}

/// One line of the counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counted {
    /// The bucket's start (RFC 3339, UTC, 6 fractional digits); None: events without `ts`, or
    /// no `--bucket`.
    pub bucket: Option<String>,
    /// The group's value; None: no value, or no `--by`.
    pub group: Option<String>,
    pub count: i64,
}

#[derive(QueryableByName)]
struct SqliteCount {
    #[diesel(sql_type = Nullable<Text>)]
    bucket: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    grp: Option<String>,
    #[diesel(sql_type = BigInt)]
    n: i64,
}

#[derive(QueryableByName)]
struct PgCount {
    #[diesel(sql_type = Nullable<Timestamp>)]
    bucket: Option<NaiveDateTime>,
    #[diesel(sql_type = Nullable<Text>)]
    grp: Option<String>,
    #[diesel(sql_type = BigInt)]
    n: i64,
}

fn count_sql(
    dialect: Dialect,
    o: &QueryOptions,
    index: &GrepIndex,
    f: &Conditions,
    within: Option<&Candidates>,
) -> Sql {
    let bucket = match (o.bucket, dialect) {
        (Some(b), Dialect::Sqlite) => b.sqlite(),
        (Some(b), Dialect::Pg) => b.pg(),
        (None, Dialect::Sqlite) => "NULL",
        (None, Dialect::Pg) => "NULL::timestamp",
    };
    let group = match (o.by, dialect) {
        (Some(g), _) => g.column(),
        (None, Dialect::Sqlite) => "NULL",
        (None, Dialect::Pg) => "NULL::text",
    };
    let mut sql = Sql::new(
        dialect,
        &format!(
            "SELECT {bucket} AS bucket, {group} AS grp, count(*) AS n FROM log_events WHERE 1 = 1"
        ),
    );
    f.write(&mut sql, Part::All, index);
    if let Some(spans) = within {
        spans.write(&mut sql);
    }
    sql.push(" GROUP BY 1, 2 ORDER BY 1 NULLS FIRST, 2 NULLS FIRST");
    sql
}

/// SQLite: the counts of the rows matching `c` (and in the blocks `within`), by `GROUP BY`.
pub(crate) fn exact_sqlite(
    conn: &mut diesel::sqlite::SqliteConnection,
    o: &QueryOptions,
    index: &GrepIndex,
    c: &Conditions,
    within: Option<&Candidates>,
) -> Result<Vec<Counted>, InspectError> {
    let rows: Vec<SqliteCount> = count_sql(Dialect::Sqlite, o, index, c, within)
        .sqlite()
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|r| Counted {
            bucket: r.bucket,
            group: r.grp,
            count: r.n,
        })
        .collect())
}

/// PostgreSQL: [`exact_sqlite`].
pub(crate) fn exact_pg(
    conn: &mut diesel::pg::PgConnection,
    o: &QueryOptions,
    index: &GrepIndex,
    c: &Conditions,
    within: Option<&Candidates>,
) -> Result<Vec<Counted>, InspectError> {
    let rows: Vec<PgCount> = count_sql(Dialect::Pg, o, index, c, within)
        .pg()
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|r| Counted {
            bucket: r
                .bucket
                .map(|b| format_timestamp_micros(b.and_utc().timestamp_micros())),
            group: r.grp,
            count: r.n,
        })
        .collect())
}

/// Counts the matching events per bucket and group, in bucket then group order.
///
/// # Errors
/// Bad options (exit 2); a database that cannot be read (exit 1).
pub fn counts(config: &Config, o: &QueryOptions) -> Result<Vec<Counted>, InspectError> {
    let f = filters(o)?;
    if o.conditions.before.is_some() || o.conditions.after.is_some() {
        return Err(InspectError::usage(
            "--count counts every match: --before and --after page through events",
        ));
    }
    let c = f.conditions;
    let path = sqlite_path(config);
    let mut db = super::open(&config.database)?;
    let mut rows = read_only(
        &mut db,
        &config.database,
        |conn| {
            if let Some(counted) = rollup::sqlite(conn, o, &c)? {
                return Ok(counted);
            }
            let index = sqlite_grep_index(path, &c)?;
            exact_sqlite(conn, o, &index, &c, None)
        },
        |conn| {
            if let Some(counted) = rollup::pg(conn, o, &c)? {
                return Ok(counted);
            }
            let index = pg_grep_index(conn, &c)?;
            exact_pg(conn, o, &index, &c, None)
        },
    )?;
    // Nothing matched: a total of 0 when there are no groups to show.
    if rows.is_empty() && o.by.is_none() && o.bucket.is_none() {
        rows.push(Counted {
            bucket: None,
            group: None,
            count: 0,
        });
    }
    Ok(rows)
}

#[derive(Serialize)]
struct CountJson<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    bucket: Option<Option<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    level: Option<Option<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<Option<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    host: Option<Option<&'a str>>,
    count: i64,
}

/// `logbelt query --count`: prints the counts (a table, or JSON lines with `--json`).
///
/// # Errors
/// As [`counts`]; stdout that cannot be written.
pub fn count(config: &Config, o: &QueryOptions) -> Result<(), InspectError> {
    let rows = counts(config, o)?;
    with_stdout(|out| {
        if o.json {
            for r in &rows {
                let group = Some(r.group.as_deref());
                let line = CountJson {
                    bucket: o.bucket.map(|_| r.bucket.as_deref()),
                    level: group.filter(|_| o.by == Some(GroupBy::Level)),
                    source: group.filter(|_| o.by == Some(GroupBy::Source)),
                    host: group.filter(|_| o.by == Some(GroupBy::Host)),
                    count: r.count,
                };
                serde_json::to_writer(&mut *out, &line)?;
                writeln!(out)?;
            }
            return Ok(());
        }
        if o.by.is_none() && o.bucket.is_none() {
            let total = rows.iter().map(|r| r.count).sum::<i64>();
            return writeln!(out, "{total}");
        }
        let mut header = Vec::new();
        let mut align = Vec::new();
        if o.bucket.is_some() {
            header.push("BUCKET".to_owned());
            align.push(Align::Left);
        }
        if let Some(g) = o.by {
            header.push(g.column().to_uppercase());
            align.push(Align::Left);
        }
        header.push("COUNT".to_owned());
        align.push(Align::Right);
        let mut table = vec![header];
        for r in &rows {
            let mut line = Vec::new();
            if o.bucket.is_some() {
                line.push(r.bucket.clone().unwrap_or_else(|| "-".to_owned()));
            }
            if o.by.is_some() {
                line.push(super::printable(r.group.as_deref().unwrap_or("-")).into_owned());
            }
            line.push(thousands(r.count));
            table.push(line);
        }
        Table { align, rows: table }.write(out)
    })
}
