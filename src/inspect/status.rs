//! `logbelt status`: every file logbelt has committed a position for (all hosts), how far that
//! position is behind the file on disk, and the row totals.
//!
//! The size is read from the file itself only for this host's rows (`[agent] host`), and only
//! when the path still holds the same file (same device and inode as the row): after a
//! rotation, the name may belong to a newer file, whose size says nothing about this row.
//! Otherwise size and lag are unknown (`-` in the table, `null` in JSON).
//!
//! `--json` prints one JSON document (see [`Status`]): `{"database", "host", "files": [...],
//! "totals": {...}}`, keys in a fixed order, sizes and offsets in bytes.

use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde::Serialize;

use super::{ago, format_ts, human_size, printable, read_only, thousands, Align, Table};
use super::{with_stdout, InspectError};
use crate::config::{shown_span, Config, DatabaseUrl};
use crate::db::schema::{postgres as pg, sqlite};

/// What `status` reports; serialised as is by `--json`.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// The database, password redacted.
    pub database: String,
    /// This host (`[agent] host`).
    pub host: String,
    /// One entry per `files` row: this host's first, then by host, source, path.
    pub files: Vec<FileStatus>,
    pub totals: Totals,
    pub retention: RetentionStatus,
}

/// `[retention]` as configured, and what this host's retention did last.
#[derive(Debug, Clone, Serialize)]
pub struct RetentionStatus {
    /// `max_age` (`"30d"`), or None: no limit by age.
    pub max_age: Option<String>,
    /// `max_bytes` in bytes, or None: no limit by size.
    pub max_bytes: Option<u64>,
    pub check_interval: String,
    /// PostgreSQL's `partition_interval`; None for SQLite.
    pub partition_interval: Option<String>,
    /// This host's last check, if retention has run here.
    pub last: Option<LastExpiry>,
}

/// A host's row of `expiry`; times RFC 3339 UTC.
#[derive(Debug, Clone, Serialize)]
pub struct LastExpiry {
    /// The last check.
    pub ran_at: String,
    /// The last check that removed anything, and what it removed.
    pub expired_at: Option<String>,
    pub log_events: i64,
    pub dead_letters: i64,
    pub files: i64,
    pub partitions: i64,
    /// Every row ingested before this is gone.
    pub expired_before: Option<String>,
    /// The room the rows took after the last check, as `max_bytes` counts it.
    pub stored_bytes: i64,
}

type ExpiryTuple<T> = (T, Option<T>, Option<T>, i64, i64, i64, i64, i64);

/// This host's `expiry` row through `$schema`; `$ts` turns an instant into text.
macro_rules! last_expiry {
    ($conn:expr, $schema:ident, $host:expr, $ts:expr) => {{
        use $schema::expiry as x;
        let row: Option<ExpiryTuple<_>> = x::table
            .filter(x::host.eq($host))
            .select((
                x::ran_at,
                x::expired_at,
                x::expired_before,
                x::log_events,
                x::dead_letters,
                x::files,
                x::partitions,
                x::stored_bytes,
            ))
            .first($conn)
            .optional()?;
        Ok(row.map(
            |(ran, at, before, log_events, dead_letters, files, partitions, bytes)| LastExpiry {
                ran_at: $ts(ran),
                expired_at: at.map($ts),
                log_events,
                dead_letters,
                files,
                partitions,
                expired_before: before.map($ts),
                stored_bytes: bytes,
            },
        ))
    }};
}

/// One `files` row.
#[derive(Debug, Clone, Serialize)]
pub struct FileStatus {
    /// `files.id` (the `file_id` of its events).
    pub id: i64,
    pub host: String,
    /// Whether `host` is this host.
    pub this_host: bool,
    pub source: String,
    /// The file's latest path as committed.
    pub path: String,
    /// Every line before this byte is stored.
    pub committed_offset: i64,
    /// The file's size now, in bytes; None when unknown (another host's file, gone, or the
    /// path now holds another file).
    pub size: Option<i64>,
    /// `size - committed_offset`: bytes not stored yet (negative: the file was truncated and
    /// is about to be read again from 0). None when the size is unknown.
    pub lag: Option<i64>,
    /// Time of the last commit for this file, RFC 3339 UTC with microseconds.
    pub updated_at: String,
}

/// Row counts.
#[derive(Debug, Clone, Serialize)]
pub struct Totals {
    /// Rows in `files`.
    pub files: i64,
    /// Rows in `log_events`.
    pub log_events: i64,
    /// Rows in `dead_letters`.
    pub dead_letters: i64,
}

/// A `files` row as read.
struct Row {
    id: i64,
    host: String,
    source: String,
    path: String,
    dev: i64,
    inode: i64,
    committed_offset: i64,
    updated_at: String,
}

type RowTuple<T> = (i64, String, String, String, i64, i64, i64, T);

fn row<T>(t: RowTuple<T>, ts: impl Fn(T) -> String) -> Row {
    let (id, host, source, path, dev, inode, committed_offset, updated_at) = t;
    Row {
        id,
        host,
        source,
        path,
        dev,
        inode,
        committed_offset,
        updated_at: ts(updated_at),
    }
}

/// The `files` rows and the totals, read through `$schema` (the backend's table definitions:
/// the same tables, but not the same Rust types); `$ts` turns its `updated_at` into text.
macro_rules! status_rows {
    ($conn:expr, $schema:ident, $ts:expr) => {{
        use $schema::{dead_letters, files, log_events};
        let rows: Vec<RowTuple<_>> = files::table
            .select((
                files::id,
                files::host,
                files::source,
                files::path,
                files::dev,
                files::inode,
                files::committed_offset,
                files::updated_at,
            ))
            .load($conn)?;
        let totals = Totals {
            files: rows.len() as i64,
            log_events: log_events::table.count().get_result($conn)?,
            dead_letters: dead_letters::table.count().get_result($conn)?,
        };
        Ok((
            rows.into_iter().map(|t| row(t, $ts)).collect::<Vec<Row>>(),
            totals,
        ))
    }};
}

/// `logbelt status`: prints the table (or the JSON document) on stdout.
///
/// # Errors
/// When the database cannot be read (exit 1).
pub fn status(config: &Config, json: bool) -> Result<(), InspectError> {
    let status = collect(config)?;
    with_stdout(|out| {
        if json {
            write_json(&status, out)
        } else {
            write_human(&status, Utc::now(), out)
        }
    })
}

/// Reads the `files` rows and totals, and the sizes of this host's files.
///
/// # Errors
/// When the database cannot be read (exit 1).
pub fn collect(config: &Config) -> Result<Status, InspectError> {
    let mut db = super::open(&config.database)?;
    let (rows, totals) = read_only(
        &mut db,
        &config.database,
        |c| status_rows!(c, sqlite, |s| s),
        |c| status_rows!(c, pg, format_ts),
    )?;
    let this_host = &config.agent.host;
    // A database that no retention has run on yet may not have the table (an older schema
    // that `status`, read-only, does not migrate): then there is nothing to show.
    let last = read_only(
        &mut db,
        &config.database,
        |c| last_expiry!(c, sqlite, this_host, |s| s),
        |c| last_expiry!(c, pg, this_host, format_ts),
    )
    .unwrap_or(None);
    let mut files: Vec<FileStatus> = rows
        .into_iter()
        .map(|r: Row| {
            let mine = r.host == *this_host;
            let size = if mine { size_of(&r) } else { None };
            FileStatus {
                id: r.id,
                this_host: mine,
                lag: size.map(|s| s - r.committed_offset),
                size,
                host: r.host,
                source: r.source,
                path: r.path,
                committed_offset: r.committed_offset,
                updated_at: r.updated_at,
            }
        })
        .collect();
    files.sort_by(|a, b| {
        (!a.this_host, &a.host, &a.source, &a.path, a.id).cmp(&(
            !b.this_host,
            &b.host,
            &b.source,
            &b.path,
            b.id,
        ))
    });
    Ok(Status {
        database: config.database.url.to_string(),
        host: this_host.clone(),
        files,
        totals,
        retention: retention_status(config, last),
    })
}

fn retention_status(config: &Config, last: Option<LastExpiry>) -> RetentionStatus {
    let r = &config.retention;
    let postgres = matches!(config.database.url, DatabaseUrl::Postgres { .. });
    RetentionStatus {
        max_age: r.max_age.map(|a| shown_span(a.as_secs())),
        max_bytes: r.max_bytes,
        check_interval: shown_span(r.check_interval.as_secs()),
        partition_interval: postgres
            .then(|| shown_span(config.database.partition_interval.as_secs())),
        last,
    }
}

/// The size of the row's file, if its path still holds that file (same device and inode).
fn size_of(r: &Row) -> Option<i64> {
    let m = std::fs::metadata(&r.path).ok()?;
    let same = m.is_file() && m.dev() as i64 == r.dev && m.ino() as i64 == r.inode;
    same.then(|| i64::try_from(m.len()).unwrap_or(i64::MAX))
}

/// The JSON document, pretty-printed, then a newline.
pub fn write_json(status: &Status, out: &mut dyn Write) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, status)?;
    writeln!(out)
}

/// The table for people.
pub fn write_human(status: &Status, now: DateTime<Utc>, out: &mut dyn Write) -> io::Result<()> {
    writeln!(out, "database:  {}", printable(&status.database))?;
    writeln!(
        out,
        "this host: {} (rows marked *)",
        printable(&status.host)
    )?;
    writeln!(out)?;
    if status.files.is_empty() {
        writeln!(out, "no files yet: nothing has been committed")?;
    } else {
        let mut rows = vec![[
            "",
            "SOURCE",
            "HOST",
            "COMMITTED",
            "SIZE",
            "LAG",
            "LAST COMMIT",
            "PATH",
        ]
        .map(String::from)
        .to_vec()];
        let unknown = || "-".to_owned();
        for f in &status.files {
            rows.push(vec![
                if f.this_host { "*" } else { "" }.to_owned(),
                printable(&f.source).into_owned(),
                printable(&f.host).into_owned(),
                human_size(f.committed_offset),
                f.size.map_or_else(unknown, human_size),
                f.lag.map_or_else(unknown, human_size),
                last_commit(&f.updated_at, now),
                printable(&f.path).into_owned(),
            ]);
        }
        use Align::{Left, Right};
        Table {
            align: vec![Left, Left, Left, Right, Right, Right, Left, Left],
            rows,
        }
        .write(out)?;
    }
    writeln!(out)?;
    let t = &status.totals;
    let mine = status.files.iter().filter(|f| f.this_host).count();
    writeln!(
        out,
        "{} ({} on this host), {}, {}",
        plural(t.files, "file", "files"),
        thousands(mine as i64),
        plural(t.log_events, "event", "events"),
        plural(t.dead_letters, "dead letter", "dead letters"),
    )?;
    write_retention(&status.retention, now, out)
}

/// `retention: …` and, once it has removed anything, `last expiry: …`.
fn write_retention(r: &RetentionStatus, now: DateTime<Utc>, out: &mut dyn Write) -> io::Result<()> {
    let mut limits = Vec::new();
    if let Some(age) = &r.max_age {
        limits.push(format!("max_age {age}"));
    }
    if let Some(bytes) = r.max_bytes {
        limits.push(format!("max_bytes {}", human_size(bytes as i64)));
    }
    let partitions = r
        .partition_interval
        .as_ref()
        .map(|p| format!(" (partitions of {p})"))
        .unwrap_or_default();
    if limits.is_empty() {
        writeln!(out, "retention: none, everything is kept{partitions}")?;
    } else {
        writeln!(
            out,
            "retention: {}, checked every {}{partitions}",
            limits.join(", "),
            r.check_interval
        )?;
    }
    let Some(last) = &r.last else {
        return Ok(());
    };
    let Some(at) = &last.expired_at else {
        return writeln!(
            out,
            "last expiry: none yet (last check {})",
            last_commit(&last.ran_at, now)
        );
    };
    let before = last
        .expired_before
        .as_ref()
        .map(|b| {
            format!(
                "; everything ingested before {} is gone",
                last_commit(b, now)
            )
        })
        .unwrap_or_default();
    writeln!(
        out,
        "last expiry: {}: {}, {}, {}, {}{before}; {} stored",
        last_commit(at, now),
        plural(last.log_events, "event", "events"),
        plural(last.dead_letters, "dead letter", "dead letters"),
        plural(last.partitions, "partition", "partitions"),
        plural(last.files, "file row", "file rows"),
        human_size(last.stored_bytes),
    )
}

fn plural(n: i64, one: &str, many: &str) -> String {
    format!("{} {}", thousands(n), if n == 1 { one } else { many })
}

/// `2025-06-01T12:00:03Z (4m ago)` from the stored time.
fn last_commit(updated_at: &str, now: DateTime<Utc>) -> String {
    match DateTime::parse_from_rfc3339(updated_at) {
        Ok(t) => {
            let t = t.with_timezone(&Utc);
            format!("{} ({})", t.format("%Y-%m-%dT%H:%M:%SZ"), ago(t, now))
        }
        Err(_) => printable(updated_at).into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(this_host: bool, host: &str, path: &str, size: Option<i64>) -> FileStatus {
        FileStatus {
            id: 1,
            host: host.into(),
            this_host,
            source: "app".into(),
            path: path.into(),
            committed_offset: 13_002_342,
            size,
            lag: size.map(|s| s - 13_002_342),
            updated_at: "2025-06-01T11:56:00.123456Z".into(),
        }
    }

    #[test]
    fn human_table() {
        let status = Status {
            database: "sqlite:///srv/logbelt.db".into(),
            host: "web-1".into(),
            files: vec![
                file(
                    true,
                    "web-1",
                    "/var/log/app/app.jsonl",
                    Some(13_002_342 + 2048),
                ),
                file(false, "web-2", "/var/log/app/app.jsonl", None),
            ],
            totals: Totals {
                files: 2,
                log_events: 1234,
                dead_letters: 1,
            },
            retention: RetentionStatus {
                max_age: Some("30d".into()),
                max_bytes: None,
                check_interval: "1m".into(),
                partition_interval: None,
                last: Some(LastExpiry {
                    ran_at: "2025-06-01T11:59:30.000000Z".into(),
                    expired_at: Some("2025-06-01T11:58:00.000000Z".into()),
                    log_events: 20_000,
                    dead_letters: 3,
                    files: 1,
                    partitions: 0,
                    expired_before: Some("2025-05-02T11:58:00.000000Z".into()),
                    stored_bytes: 1 << 30,
                }),
            },
        };
        let now = DateTime::parse_from_rfc3339("2025-06-01T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let mut out = Vec::new();
        write_human(&status, now, &mut out).unwrap();
        let expected = "\
database:  sqlite:///srv/logbelt.db
this host: web-1 (rows marked *)

   SOURCE  HOST   COMMITTED      SIZE      LAG  LAST COMMIT                    PATH
*  app     web-1   12.4 MiB  12.4 MiB  2.0 KiB  2025-06-01T11:56:00Z (3m ago)  /var/log/app/app.jsonl
   app     web-2   12.4 MiB         -        -  2025-06-01T11:56:00Z (3m ago)  /var/log/app/app.jsonl

2 files (1 on this host), 1,234 events, 1 dead letter
retention: max_age 30d, checked every 1m
last expiry: 2025-06-01T11:58:00Z (2m ago): 20,000 events, 3 dead letters, 0 partitions, 1 file row; everything ingested before 2025-05-02T11:58:00Z (30d ago) is gone; 1.0 GiB stored
";
        assert_eq!(String::from_utf8(out).unwrap(), expected);
    }
}
