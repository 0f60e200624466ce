//! Part 3: latency at light load.

use std::fs;
use std::io::Write;
use std::thread;
use std::time::{Duration, Instant};

use diesel::prelude::*;
use diesel::sql_types::BigInt;

use crate::child::{Exit, Logbelt};
use crate::db::{wait_rows, write_config, Db, DbSpec};
use crate::input::LineGen;
use crate::options::Backend;
use crate::util::{fmt_int, fmt_mib, now_micros, parse_rfc3339_micros, progress};
use crate::Bench;

/// The default `pipeline.flush_interval_ms`, written explicitly into the latency config.
const FLUSH_INTERVAL_MS: u64 = 200;

#[derive(QueryableByName)]
struct PgLatency {
    #[diesel(sql_type = BigInt)]
    w: i64,
    #[diesel(sql_type = BigInt)]
    i: i64,
}

struct Result_ {
    lines: usize,
    /// ingested_at − written_at per row, sorted, µs.
    latencies: Vec<i64>,
    exit: Exit,
}

pub fn run(bench: &mut Bench) {
    let mut results = Vec::new();
    for backend in bench.opts.backends.clone() {
        progress(&format!(
            "latency, {}: {} lines/s for {} s",
            backend.name(),
            bench.opts.latency_rate,
            bench.opts.latency_secs
        ));
        match measure(bench, backend) {
            Ok(r) => results.push((backend, r)),
            Err(e) => bench.fail(format!("latency, {}: {e}", backend.name())),
        }
    }
    print_table(bench, &results);
}

fn measure(bench: &mut Bench, backend: Backend) -> Result<Result_, String> {
    let (spec, dir) = bench.fresh(backend, &format!("latency-{}", backend.name()))?;
    let logs = dir.join("logs");
    fs::create_dir_all(&logs).map_err(|e| format!("create {}: {e}", logs.display()))?;
    let path = logs.join("latency.jsonl");
    let mut gen = LineGen::new(7);
    // One warm-up line (no written_at_us), so timing starts with the file already tailed.
    fs::write(&path, gen.line(None)).map_err(|e| format!("write {}: {e}", path.display()))?;
    let config = write_config(
        &dir,
        &spec,
        &format!("{}/*.jsonl", logs.display()),
        &format!("[pipeline]\nflush_interval_ms = {FLUSH_INTERVAL_MS}\n"),
    );
    let (mut child, mut db, mut file) = follow_warm_up(&spec, &config, &path)?;
    let n = append_at_rate(bench, &mut file, &path, &mut gen, &mut child)?;
    wait_rows(
        &mut db,
        &mut child,
        1 + n as i64,
        Instant::now() + Duration::from_secs(30),
    )?;
    let mut latencies = match &mut db {
        Db::Sqlite(c) => sqlite_latencies(c)?,
        Db::Pg(c) => diesel::sql_query(
            "SELECT (fields->>'written_at_us')::bigint AS w, \
             (extract(epoch FROM ingested_at) * 1000000)::bigint AS i \
             FROM log_events WHERE fields->>'written_at_us' IS NOT NULL",
        )
        .load::<PgLatency>(c)
        .map_err(|e| format!("read the latencies: {e}"))?
        .into_iter()
        .map(|r| r.i - r.w)
        .collect(),
    };
    let exit = child.interrupt_ok()?;
    if latencies.len() != n {
        return Err(format!(
            "{} timed rows stored, expected {n}",
            latencies.len()
        ));
    }
    latencies.sort_unstable();
    Ok(Result_ {
        lines: n,
        latencies,
        exit,
    })
}

/// Starts `logbelt run` with `config` and waits until it stored the one warm-up row that `path`
/// holds: the child, the database, and `path` open for appending.
pub fn follow_warm_up(
    spec: &DbSpec,
    config: &std::path::Path,
    path: &std::path::Path,
) -> Result<(Logbelt, Db, fs::File), String> {
    let log = config.with_file_name("logbelt.log");
    let mut child = Logbelt::spawn(config, false, &log)?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut db = spec.connect_when_migrated(deadline)?;
    wait_rows(&mut db, &mut child, 1, deadline)?;
    let file = fs::OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(|e| format!("open {}: {e}", path.display()))?;
    Ok((child, db, file))
}

/// Appends `--latency-rate` timed lines a second for `--latency-secs` to `file` (one write(2)
/// per line: logbelt never sees half a line), checking that `child` still runs; returns how many.
pub fn append_at_rate(
    bench: &Bench,
    file: &mut fs::File,
    path: &std::path::Path,
    gen: &mut LineGen,
    child: &mut Logbelt,
) -> Result<usize, String> {
    let n = (bench.opts.latency_rate * bench.opts.latency_secs) as usize;
    let period = Duration::from_secs_f64(1.0 / bench.opts.latency_rate as f64);
    let start = Instant::now();
    for i in 0..n {
        if let Some(wait) = (start + period * i as u32).checked_duration_since(Instant::now()) {
            thread::sleep(wait);
        }
        file.write_all(gen.line(Some(now_micros())).as_bytes())
            .map_err(|e| format!("append to {}: {e}", path.display()))?;
        if i % 100 == 0 {
            child.assert_running()?;
        }
    }
    Ok(n)
}

/// `ingested_at − written_at_us` of every timed row (µs), read from SQLite.
fn sqlite_latencies(c: &rusqlite::Connection) -> Result<Vec<i64>, String> {
    let read = |e: rusqlite::Error| format!("read the latencies: {e}");
    let mut q = c
        .prepare(
            "SELECT json_extract(fields, '$.written_at_us'), ingested_at FROM log_events \
             WHERE json_extract(fields, '$.written_at_us') IS NOT NULL",
        )
        .map_err(read)?;
    let rows = q
        .query_map([], |row| {
            Ok((row.get::<_, i64>(0)?, row.get::<_, Option<String>>(1)?))
        })
        .map_err(read)?;
    rows.map(|row| {
        let (written, ingested) = row.map_err(read)?;
        let ingested = ingested.unwrap_or_default();
        let ingested = parse_rfc3339_micros(&ingested)
            .ok_or_else(|| format!("unparseable ingested_at `{ingested}`"))?;
        Ok(ingested - written)
    })
    .collect()
}

fn print_table(bench: &Bench, results: &[(Backend, Result_)]) {
    let target = FLUSH_INTERVAL_MS + 100;
    println!(
        "\n## Latency: {} lines/s for {} s, `flush_interval_ms = {FLUSH_INTERVAL_MS}`\n",
        bench.opts.latency_rate, bench.opts.latency_secs
    );
    println!("| backend | lines | p50 | p99 | max | target (flush_interval_ms + 100) | peak RSS |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (backend, r) in results {
        let ms = |us: i64| format!("{:.1} ms", us as f64 / 1000.0);
        let p = |q: f64| r.latencies[((r.latencies.len() - 1) as f64 * q).round() as usize];
        let p99 = p(0.99);
        println!(
            "| {} | {} | {} | {} | {} | {target} ms: {} | {} |",
            backend.name(),
            fmt_int(r.lines),
            ms(p(0.5)),
            ms(p99),
            ms(*r.latencies.last().unwrap_or(&0)),
            if p99 <= target as i64 * 1000 {
                "p99 met"
            } else {
                "**p99 missed**"
            },
            fmt_mib(r.exit.peak_rss_kib)
        );
    }
    println!(
        "\n- latency = `ingested_at` (set by logbelt at commit) − the line's `written_at_us` \
         (taken just before its single write(2)); same clock."
    );
}
