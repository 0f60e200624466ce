//! Read-only views of the database for people and scripts: `logbelt status` (every file's
//! committed position, its size on disk and the lag between them) and `logbelt query` (the
//! stored events, filtered).
//!
//! Both commands only read. SQLite is opened read-only (`mode=ro`), and a missing database file
//! is reported rather than created; PostgreSQL work runs in a `READ ONLY` transaction. Neither
//! migrates: a database without logbelt's tables is reported ("run `logbelt run` first").
//! Every value the user gives is a bind parameter, never SQL text.
//!
//! - [`status`]: `logbelt status`.
//! - [`query`]: `logbelt query`; [`filter`]: its WHERE clause (search index, `--field`,
//!   cursors); [`count`]: `query --count`.
//!
//! Errors are one line for stderr with an exit code: [`Exit::Runtime`] (1) for a database that
//! cannot be read, [`Exit::Usage`] (2) for bad arguments. Texts that may hold a database URL pass
//! through [`redact`].

mod blocks;
pub mod count;
pub mod filter;
pub mod query;
mod rollup;
pub mod status;

use std::borrow::Cow;
use std::fmt;
use std::io::{self, Write};
use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool};
use diesel::sqlite::SqliteConnection;

use crate::config::{DatabaseConfig, DatabaseUrl};
use crate::exit::Exit;
use crate::parse::{format_timestamp_micros, MAX_TS_MICROS, MIN_TS_MICROS};
use crate::redact::redact;

/// A failed `status` or `query`: one line for stderr, and the exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InspectError {
    /// [`Exit::Runtime`] (the database cannot be opened or read) or [`Exit::Usage`] (arguments
    /// that make no sense).
    pub code: Exit,
    /// The line to print (already redacted).
    pub message: String,
}

impl InspectError {
    /// A runtime failure (exit 1); `message` is redacted.
    pub fn runtime(message: impl AsRef<str>) -> Self {
        InspectError {
            code: Exit::Runtime,
            message: redact(message.as_ref()),
        }
    }

    /// Bad usage (exit 2); `message` is redacted.
    pub fn usage(message: impl AsRef<str>) -> Self {
        InspectError {
            code: Exit::Usage,
            message: redact(message.as_ref()),
        }
    }
}

impl fmt::Display for InspectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for InspectError {}

/// Prints the error (if any) as `logbelt: …` on stderr and returns the exit code: what the
/// binary's `status` and `query` arms return.
pub fn exit_code(result: Result<(), InspectError>) -> Exit {
    match result {
        Ok(()) => Exit::Ok,
        Err(e) => {
            crate::logging::report(&format!("logbelt: {e}"));
            e.code
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Opening the database, read-only
// ---------------------------------------------------------------------------------------------

/// A read-only connection to the configured database.
pub(crate) enum Db {
    Sqlite(SqliteConnection),
    Pg(PgConnection),
}

/// Opens the configured database for reading. SQLite: the file must exist (it is never
/// created) and is opened with `mode=ro`. PostgreSQL: a plain connection; callers read inside a
/// `READ ONLY` transaction ([`read_only`]).
///
/// # Errors
/// When the file does not exist or the database cannot be opened (exit 1).
pub(crate) fn open(config: &DatabaseConfig) -> Result<Db, InspectError> {
    match &config.url {
        DatabaseUrl::Sqlite { path } => {
            match std::fs::metadata(path) {
                Ok(m) if m.is_file() => {}
                Ok(_) => {
                    return Err(InspectError::runtime(format!(
                        "database file {} is not a regular file",
                        path.display()
                    )))
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Err(InspectError::runtime(format!(
                        "database file {} does not exist yet: run `logbelt run` first",
                        path.display()
                    )))
                }
                Err(e) => {
                    return Err(InspectError::runtime(format!(
                        "cannot open SQLite database {}: {e}",
                        path.display()
                    )))
                }
            }
            let conn = crate::db::sqlite::connect(
                path,
                crate::db::sqlite::OpenMode::ReadOnly,
                config.busy_timeout,
            )
            .map_err(|e| InspectError::runtime(e.message))?;
            Ok(Db::Sqlite(conn))
        }
        DatabaseUrl::Postgres { url } => {
            let conn = PgConnection::establish(url).map_err(|e| {
                // The URL is redacted by InspectError::runtime.
                InspectError::runtime(format!("cannot connect to PostgreSQL {url}: {e}"))
            })?;
            Ok(Db::Pg(conn))
        }
    }
}

/// Runs `sqlite` or `pg` on the connection inside one read-only transaction (a consistent
/// snapshot: in PostgreSQL `REPEATABLE READ, READ ONLY`), after checking that logbelt's tables
/// exist.
///
/// # Errors
/// When the tables do not exist yet or a query fails (exit 1), or what the closures return.
pub(crate) fn read_only<R>(
    db: &mut Db,
    config: &DatabaseConfig,
    sqlite: impl FnOnce(&mut SqliteConnection) -> Result<R, InspectError>,
    pg: impl FnOnce(&mut PgConnection) -> Result<R, InspectError>,
) -> Result<R, InspectError> {
    let url = &config.url;
    let failed = |e: diesel::result::Error| {
        InspectError::runtime(format!("cannot read the database {url}: {e}"))
    };
    match db {
        Db::Sqlite(conn) => conn.transaction(|conn| {
            let tables: i64 = diesel::sql_query(
                "SELECT count(*) AS n FROM sqlite_master WHERE type = 'table' \
                 AND name IN ('files', 'log_events', 'dead_letters')",
            )
            .get_result::<CountRow>(conn)
            .map_err(failed)?
            .n;
            if tables != 3 {
                return Err(no_tables(url));
            }
            sqlite(conn)
        }),
        Db::Pg(conn) => conn
            .build_transaction()
            .read_only()
            .repeatable_read()
            .run(|conn| {
                let ok = diesel::sql_query(
                    "SELECT (to_regclass('files') IS NOT NULL \
                     AND to_regclass('log_events') IS NOT NULL \
                     AND to_regclass('dead_letters') IS NOT NULL) AS ok",
                )
                .get_result::<OkRow>(conn)
                .map_err(failed)?
                .ok;
                if !ok {
                    return Err(no_tables(url));
                }
                pg(conn)
            }),
    }
}

fn no_tables(url: &DatabaseUrl) -> InspectError {
    InspectError::runtime(format!(
        "database {url} has no logbelt tables yet (files, log_events, dead_letters): \
         run `logbelt run` first"
    ))
}

impl From<diesel::result::Error> for InspectError {
    fn from(e: diesel::result::Error) -> Self {
        InspectError::runtime(format!("cannot read the database: {e}"))
    }
}

#[derive(QueryableByName)]
struct CountRow {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

#[derive(QueryableByName)]
struct OkRow {
    #[diesel(sql_type = Bool)]
    ok: bool,
}

// ---------------------------------------------------------------------------------------------
// Output
// ---------------------------------------------------------------------------------------------

/// Runs `f` on a buffered stdout and flushes. A closed pipe (`logbelt query | head`) ends the
/// output quietly and counts as success.
///
/// # Errors
/// When stdout cannot be written for any other reason (exit 1).
pub(crate) fn with_stdout(
    f: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> Result<(), InspectError> {
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    match f(&mut out).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(InspectError::runtime(format!(
            "cannot write to stdout: {e}"
        ))),
    }
}

/// Text made safe for one line of a terminal: control characters (newlines, tabs, escape
/// sequences) are written as `\n`, `\t`, `\r`, `\u{1b}`…, and a backslash stays as is.
pub fn printable(s: &str) -> Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", u32::from(c))),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Display width of `s` in a terminal, counted in characters.
pub(crate) fn width(s: &str) -> usize {
    s.chars().count()
}

/// How a column is aligned in a [`Table`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Align {
    Left,
    Right,
}

/// A text table: columns two spaces apart, each as wide as its widest cell; the last column
/// is never padded (so a long last column, such as a path, is never cut or followed by blanks).
pub(crate) struct Table {
    pub align: Vec<Align>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    pub fn write(&self, out: &mut dyn Write) -> io::Result<()> {
        let columns = self.align.len();
        let mut widths = vec![0; columns];
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(width(cell));
            }
        }
        for row in &self.rows {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                let pad = widths[i] - width(cell);
                let last = i + 1 == columns;
                if i > 0 {
                    line.push_str("  ");
                }
                match self.align[i] {
                    Align::Right => {
                        line.extend(std::iter::repeat_n(' ', pad));
                        line.push_str(cell);
                    }
                    Align::Left => {
                        line.push_str(cell);
                        if !last {
                            line.extend(std::iter::repeat_n(' ', pad));
                        }
                    }
                }
            }
            writeln!(out, "{line}")?;
        }
        Ok(())
    }
}

/// A byte count for people: `512 B`, `1.5 KiB`, `12.4 MiB`, `3.0 GiB` (binary units, one
/// decimal). Negative counts (a file shorter than its committed position) keep their sign.
pub fn human_size(bytes: i64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let sign = if bytes < 0 { "-" } else { "" };
    let abs = bytes.unsigned_abs();
    if abs < 1024 {
        return format!("{sign}{abs} B");
    }
    let mut value = abs as f64 / 1024.0;
    let mut unit = 0;
    // Round first, so that 1023.96 KiB is shown as 1.0 MiB rather than 1024.0 KiB.
    while (value * 10.0).round() / 10.0 >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{sign}{value:.1} {}", UNITS[unit])
}

/// `1234567` → `1,234,567`.
pub fn thousands(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if n < 0 {
        out.push('-');
    }
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// How long ago `then` was, for people: `just now`, `42s ago`, `5m ago`, `3h ago`, `2d ago`
/// (or `in 5s` for a time ahead of this machine's clock).
pub fn ago(then: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let secs = (now - then).num_seconds();
    let (n, future) = (secs.unsigned_abs(), secs < 0);
    let amount = match n {
        0 => return "just now".to_owned(),
        1..=119 => format!("{n}s"),
        120..=7_199 => format!("{}m", n / 60),
        7_200..=172_799 => format!("{}h", n / 3600),
        _ => format!("{}d", n / 86_400),
    };
    if future {
        format!("in {amount}")
    } else {
        format!("{amount} ago")
    }
}

/// A timestamp as logbelt stores it: RFC 3339 UTC with 6 fractional digits.
pub(crate) fn format_ts(ts: DateTime<Utc>) -> String {
    format_timestamp_micros(ts.timestamp_micros())
}

// ---------------------------------------------------------------------------------------------
// --since / --until
// ---------------------------------------------------------------------------------------------

/// Parses a `--since`/`--until` value: a duration before now (`30s`, `15m`, `1h`, `2d`, `1w`,
/// or several, `1h30m`) or an RFC 3339 time (`2025-01-31T12:00:00Z`,
/// `2025-01-31T13:00:00+01:00`). Times outside the years 0000–9999 are clamped into them.
///
/// # Errors
/// A message for clap saying what was expected.
pub fn parse_time(s: &str) -> Result<DateTime<Utc>, String> {
    parse_time_at(s, Utc::now())
}

/// [`parse_time`] with "now" given.
///
/// # Errors
/// As [`parse_time`].
pub fn parse_time_at(s: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let expected = || {
        format!(
            "expected a duration before now (30s, 15m, 1h, 2d, 1w, 1h30m) or an RFC 3339 time \
             (2025-01-31T12:00:00Z), found {s:?}"
        )
    };
    let s_trimmed = s.trim();
    let at = if let Some(d) = parse_duration(s_trimmed) {
        let d = chrono::Duration::from_std(d).map_err(|_| expected())?;
        now.checked_sub_signed(d)
            .unwrap_or(DateTime::<Utc>::MIN_UTC)
    } else {
        DateTime::parse_from_rfc3339(s_trimmed)
            .map_err(|_| expected())?
            .with_timezone(&Utc)
    };
    let micros = at.timestamp_micros().clamp(MIN_TS_MICROS, MAX_TS_MICROS);
    DateTime::from_timestamp_micros(micros).ok_or_else(expected)
}

/// `30s`, `15m`, `1h`, `2d`, `1w`, `1h30m`: one or more (number, unit) pairs. None for anything
/// else (a bare number has no unit, so it is not a duration).
fn parse_duration(s: &str) -> Option<Duration> {
    let mut total: u64 = 0;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = match &rest[..unit_len] {
            "s" => 1,
            "m" => 60,
            "h" => 3_600,
            "d" => 86_400,
            "w" => 604_800,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total = total.checked_add(n.checked_mul(unit)?)?;
    }
    Some(Duration::from_secs(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_for_people() {
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(1023), "1023 B");
        assert_eq!(human_size(1024), "1.0 KiB");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(13_002_342), "12.4 MiB");
        assert_eq!(human_size(1024 * 1024 - 1), "1.0 MiB");
        assert_eq!(human_size(-2048), "-2.0 KiB");
        assert_eq!(human_size(i64::MAX), "8.0 EiB");
        assert_eq!(human_size(i64::MIN), "-8.0 EiB");
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(-12_345), "-12,345");
    }

    #[test]
    fn durations_and_times() {
        let now = DateTime::parse_from_rfc3339("2025-06-01T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let at = |s: &str| parse_time_at(s, now).map(format_ts);
        assert_eq!(at("30s").unwrap(), "2025-06-01T11:59:30.000000Z");
        assert_eq!(at("15m").unwrap(), "2025-06-01T11:45:00.000000Z");
        assert_eq!(at("1h").unwrap(), "2025-06-01T11:00:00.000000Z");
        assert_eq!(at("2d").unwrap(), "2025-05-30T12:00:00.000000Z");
        assert_eq!(at("1w").unwrap(), "2025-05-25T12:00:00.000000Z");
        assert_eq!(at("1h30m").unwrap(), "2025-06-01T10:30:00.000000Z");
        assert_eq!(at("0s").unwrap(), "2025-06-01T12:00:00.000000Z");
        assert_eq!(
            at("2025-01-31T13:00:00.5+01:00").unwrap(),
            "2025-01-31T12:00:00.500000Z"
        );
        // Far back: clamped to the first instant logbelt stores.
        assert_eq!(at("99999999w").unwrap(), "0000-01-01T00:00:00.000000Z");
        for bad in [
            "",
            "1",
            "h",
            "1x",
            "1h 30m",
            "-1h",
            "yesterday",
            "2025-01-31",
            "1.5h",
        ] {
            let e = at(bad).unwrap_err();
            assert!(e.contains("expected a duration"), "{bad}: {e}");
        }
        assert!(at("99999999999999999999s").is_err());
    }

    #[test]
    fn ago_for_people() {
        let now = DateTime::from_timestamp(1_000_000, 0).unwrap();
        let before = |s: i64| ago(DateTime::from_timestamp(1_000_000 - s, 0).unwrap(), now);
        assert_eq!(before(0), "just now");
        assert_eq!(before(42), "42s ago");
        assert_eq!(before(300), "5m ago");
        assert_eq!(before(3 * 3600), "3h ago");
        assert_eq!(before(3 * 86_400), "3d ago");
        assert_eq!(before(-5), "in 5s");
    }

    #[test]
    fn printable_escapes_control_characters() {
        assert_eq!(printable("plain"), "plain");
        assert_eq!(
            printable("a\nb\tc\r\u{1b}[31mred"),
            "a\\nb\\tc\\r\\u{1b}[31mred"
        );
    }

    #[test]
    fn table_aligns_and_never_pads_the_last_column() {
        let t = Table {
            align: vec![Align::Left, Align::Right, Align::Left],
            rows: vec![
                vec!["NAME".into(), "SIZE".into(), "PATH".into()],
                vec!["a".into(), "1.5 KiB".into(), "/x/y".into()],
                vec!["longer".into(), "0 B".into(), "/z".into()],
            ],
        };
        let mut out = Vec::new();
        t.write(&mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "NAME       SIZE  PATH\na       1.5 KiB  /x/y\nlonger      0 B  /z\n"
        );
    }
}
