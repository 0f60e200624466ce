//! Part 1: throughput against the ceiling, the database's own bulk load of the same rows.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use diesel::pg::PgConnection;
use diesel::prelude::*;
// The PostgreSQL ceiling writes into logbelt's own table, with logbelt's `RawJson` (a JSON text
// sent to `jsonb` as is), so that the two sides load the very same columns.
use logbelt::db::postgres::{NewEvent, RawJson};

use crate::child::{Exit, Logbelt};
use crate::db::{create_schema, open_sqlite, write_config, DbSpec};
use crate::input::Input;
use crate::options::Backend;
use crate::util::{
    fmt_int, fmt_mib, fmt_secs_list, format_rfc3339, ingest_deadline, median, median_u64,
    now_micros, parse_rfc3339_micros, progress, rate,
};
use crate::{Bench, HOST, SOURCE};

/// Rows per COPY statement in the PostgreSQL ceiling (ARCHITECTURE.md §8: the fastest chunk size).
const COPY_CHUNK_ROWS: usize = 10_000;

/// One row as logbelt would store it, extracted before the ceiling's timing starts.
pub struct Row<'a> {
    pub offset: i64,
    pub ts_micros: Option<i64>,
    pub ts_text: Option<String>,
    pub level: Option<String>,
    pub message: Option<String>,
    /// The line itself (logbelt stores the whole object as written).
    pub fields: &'a str,
}

#[derive(serde::Deserialize)]
struct Probe<'a> {
    #[serde(borrow)]
    timestamp: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    level: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    message: Option<std::borrow::Cow<'a, str>>,
}

/// Parses every line with serde_json into the row the ceiling inserts.
fn extract(content: &str) -> Vec<Row<'_>> {
    let mut rows = Vec::with_capacity(content.len() / 200);
    let mut offset = 0usize;
    for line in content.split_inclusive('\n') {
        let fields = line.trim_end_matches('\n');
        let p: Probe<'_> = serde_json::from_str(fields).expect("generated lines are JSON");
        let ts_micros = p.timestamp.as_deref().and_then(parse_rfc3339_micros);
        rows.push(Row {
            offset: offset as i64,
            ts_micros,
            ts_text: ts_micros.map(|t| format_rfc3339(t, SecondsFormat::Micros)),
            level: p.level.map(|l| l.to_lowercase()),
            message: p.message.map(|m| m.into_owned()),
            fields,
        });
        offset += line.len();
    }
    rows
}

/// One backend's results: seconds per run, and logbelt's exits.
struct Runs {
    logbelt: Vec<Duration>,
    logbelt_exits: Vec<Exit>,
    ceiling: Vec<Duration>,
}

pub fn run(bench: &mut Bench, input: &Input) {
    progress("throughput: reading and extracting the rows for the ceiling");
    let content = fs::read_to_string(&input.path).expect("read the input file back");
    let rows = extract(&content);
    assert_eq!(rows.len(), input.lines, "extracted rows");

    let mut results = Vec::new();
    for backend in bench.opts.backends.clone() {
        match measure(bench, backend, input, &rows) {
            Ok(r) => results.push((backend, r)),
            Err(e) => bench.fail(format!("throughput, {}: {e}", backend.name())),
        }
    }
    print_table(bench, input, &results);
}

fn measure(
    bench: &mut Bench,
    backend: Backend,
    input: &Input,
    rows: &[Row<'_>],
) -> Result<Runs, String> {
    let mut runs = Runs {
        logbelt: Vec::new(),
        logbelt_exits: Vec::new(),
        ceiling: Vec::new(),
    };
    let n = bench.opts.runs;
    // Alternate logbelt and the ceiling, so drift in the machine's load hits both alike.
    for i in 1..=n {
        let label = format!("throughput-{}-logbelt-{i}", backend.name());
        progress(&format!(
            "throughput, {}: logbelt run {i}/{n}",
            backend.name()
        ));
        let (time, exit) = logbelt_once(bench, backend, &label, input)?;
        progress(&format!(
            "  {:.2} s, {} rows/s, peak RSS {}",
            time.as_secs_f64(),
            fmt_int(rate(input.lines, time) as usize),
            fmt_mib(exit.peak_rss_kib)
        ));
        runs.logbelt.push(time);
        runs.logbelt_exits.push(exit);

        let label = format!("throughput-{}-ceiling-{i}", backend.name());
        progress(&format!(
            "throughput, {}: ceiling run {i}/{n}",
            backend.name()
        ));
        let (spec, dir) = bench.fresh(backend, &label)?;
        create_schema(&dir, &spec)?;
        let time = match &spec {
            DbSpec::Sqlite { path } => sqlite_ceiling(path, rows)?,
            DbSpec::Postgres { url } => pg_ceiling(url, rows)?,
        };
        let count = spec.connect()?.events()?;
        if count != input.lines as i64 {
            return Err(format!(
                "the ceiling stored {count} rows, expected {}",
                input.lines
            ));
        }
        progress(&format!(
            "  {:.2} s, {} rows/s",
            time.as_secs_f64(),
            fmt_int(rate(input.lines, time) as usize)
        ));
        runs.ceiling.push(time);
    }
    Ok(runs)
}

/// `logbelt run --once` into a fresh database: wall time and exit (peak RSS).
fn logbelt_once(
    bench: &mut Bench,
    backend: Backend,
    label: &str,
    input: &Input,
) -> Result<(Duration, Exit), String> {
    once_into_fresh(bench, backend, label, (&input.include(), ""), input.lines)
        .map(|(time, exit, _)| (time, exit))
}

/// `logbelt run --once` into a fresh database with the source's `include` and `extra` keys
/// (`(include, extra)`), which must store `lines` rows and no dead letter: wall time, exit
/// and the database.
pub fn once_into_fresh(
    bench: &mut Bench,
    backend: Backend,
    label: &str,
    (include, extra): (&str, &str),
    lines: usize,
) -> Result<(Duration, Exit, DbSpec), String> {
    let (spec, dir) = bench.fresh(backend, label)?;
    let config = write_config(&dir, &spec, include, extra);
    let start = Instant::now();
    let mut child = Logbelt::spawn(&config, true, &dir.join("logbelt.log"))?;
    let exit = child.wait(ingest_deadline(lines))?;
    let time = start.elapsed();
    if exit.code != Some(0) {
        return Err(format!(
            "logbelt run --once {}\n{}",
            exit.describe(),
            child.log_tail()
        ));
    }
    let mut db = spec.connect()?;
    let (events, dead) = (db.events()?, db.dead_letters()?);
    if events != lines as i64 || dead != 0 {
        return Err(format!(
            "logbelt stored {events} rows and {dead} dead letters, expected {lines} rows"
        ));
    }
    Ok((time, exit, spec))
}

/// SQLite's ceiling: one prepared INSERT reused for every row, in one transaction, WAL and
/// `synchronous=NORMAL` as logbelt sets them. Times prepare, inserts, commit and close (the
/// close checkpoints the WAL, as logbelt's exit does).
pub fn sqlite_ceiling(path: &Path, rows: &[Row<'_>]) -> Result<Duration, String> {
    let conn = open_sqlite(path)?;
    let exec = |sql: &str| conn.execute_batch(sql).map_err(|e| format!("{sql}: {e}"));
    exec("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;")?;
    let ingested_at = format_rfc3339(now_micros(), SecondsFormat::Micros);
    let start = Instant::now();
    exec("BEGIN")?;
    {
        let sql = "INSERT INTO log_events \
                   (host, source, file_id, file_offset, ts, level, message, fields, ingested_at) \
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)";
        let mut insert = conn
            .prepare(sql)
            .map_err(|e| format!("prepare {sql}: {e}"))?;
        for r in rows {
            insert
                .execute(rusqlite::params![
                    HOST,
                    SOURCE,
                    1_i64,
                    r.offset,
                    r.ts_text,
                    r.level,
                    r.message,
                    r.fields,
                    ingested_at,
                ])
                .map_err(|e| format!("insert: {e}"))?;
        }
    }
    exec("COMMIT")?;
    conn.close().map_err(|(_, e)| format!("close: {e}"))?;
    Ok(start.elapsed())
}

/// PostgreSQL's ceiling: binary COPY (`diesel::copy_from(..).from_insertable(..)`) in
/// 10,000-row chunks, in one transaction, with ids reserved from the sequence first (as logbelt
/// does). Times the transaction.
fn pg_ceiling(url: &str, rows: &[Row<'_>]) -> Result<Duration, String> {
    let mut conn =
        PgConnection::establish(url).map_err(|e| format!("connect for the ceiling: {e}"))?;
    let ingested_at = Utc::now();
    let mut events: Vec<NewEvent<'_>> = rows
        .iter()
        .map(|r| NewEvent {
            id: 0,
            host: HOST,
            source: SOURCE,
            file_id: 1,
            file_offset: r.offset,
            ts: r.ts_micros.and_then(DateTime::from_timestamp_micros),
            level: r.level.as_deref(),
            message: r.message.as_deref(),
            fields: RawJson(r.fields),
            ingested_at,
        })
        .collect();
    let start = Instant::now();
    conn.transaction(|c| {
        for chunk in events.chunks_mut(COPY_CHUNK_ROWS) {
            let ids = logbelt::db::postgres::reserve_ids(c, chunk.len())?;
            for (e, id) in chunk.iter_mut().zip(ids) {
                e.id = id;
            }
            diesel::copy_from(logbelt::db::schema::postgres::log_events::table)
                .from_insertable(&*chunk)
                .execute(c)?;
        }
        Ok::<_, diesel::result::Error>(())
    })
    .map_err(|e| format!("COPY into log_events: {e}"))?;
    Ok(start.elapsed())
}

fn print_table(bench: &Bench, input: &Input, results: &[(Backend, Runs)]) {
    let mb = input.bytes as f64 / 1e6;
    println!(
        "\n## Throughput: {} lines, {:.1} MB ({} bytes/line), median of {} run(s)\n",
        fmt_int(input.lines),
        mb,
        input.bytes / input.lines as u64,
        bench.opts.runs
    );
    println!(
        "A line (one of {}): `{}`\n",
        fmt_int(input.lines),
        input.sample
    );
    println!("| backend | loader | time | rows/s | MB/s | peak RSS | CPU | ratio |");
    println!("|---|---|---:|---:|---:|---:|---:|---:|");
    for (backend, runs) in results {
        let lb = median(&runs.logbelt);
        let ceil = median(&runs.ceiling);
        let ratio = ceil.as_secs_f64() / lb.as_secs_f64();
        let rss = median_u64(runs.logbelt_exits.iter().map(|e| e.peak_rss_kib));
        let cpu = median(&runs.logbelt_exits.iter().map(|e| e.cpu).collect::<Vec<_>>());
        println!(
            "| {} | logbelt `run --once` | {:.2} s | {} | {:.1} | {} | {:.2} s | **{:.2}** |",
            backend.name(),
            lb.as_secs_f64(),
            fmt_int(rate(input.lines, lb) as usize),
            mb / lb.as_secs_f64(),
            fmt_mib(rss),
            cpu.as_secs_f64(),
            ratio
        );
        let how = match backend {
            Backend::Sqlite => "ceiling: one prepared INSERT, one transaction",
            Backend::Postgres => "ceiling: binary COPY, 10k-row chunks, one transaction",
        };
        println!(
            "| {} | {how} | {:.2} s | {} | {:.1} | — | — | 1.00 |",
            backend.name(),
            ceil.as_secs_f64(),
            fmt_int(rate(input.lines, ceil) as usize),
            mb / ceil.as_secs_f64(),
        );
    }
    println!();
    for (backend, runs) in results {
        println!(
            "- {} runs (s): logbelt {} (peak RSS {}); ceiling {}",
            backend.name(),
            fmt_secs_list(&runs.logbelt),
            runs.logbelt_exits
                .iter()
                .map(|e| fmt_mib(e.peak_rss_kib))
                .collect::<Vec<_>>()
                .join(", "),
            fmt_secs_list(&runs.ceiling)
        );
    }
    println!(
        "- ratio = logbelt rows/s ÷ ceiling rows/s. logbelt's time is the whole process \
         (start, migrations, reading, parsing, commits, exit); peak RSS is logbelt's `VmHWM` (read every 10 ms until it exits); CPU is \
         user + system. The ceiling loads rows extracted beforehand (no JSON parsing). \
         The input file is in the page cache for both."
    );
}
