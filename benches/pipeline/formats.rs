//! Part 6 (`--only formats`, SQLite): text formats against the SQLite ceiling of the same rows,
//! and the latency of a multiline source.
//!
//! 1. **Throughput**: `--lines` generated events written three ways — JSON lines (the
//!    throughput part's generator), nginx's `combined` access log and logfmt (the same events
//!    rendered) — each read by `logbelt run --once` with its `format` into a fresh database.
//!    The ceiling loads the rows logbelt stored (read back after its run, so the very same
//!    columns) with one prepared INSERT in one transaction, as in the throughput part. Median
//!    of `--runs`; ratio = ceiling time ÷ logbelt time (target ≥ 0.8 for nginx_combined and
//!    logfmt; JSON's must not fall below the throughput part's).
//! 2. **Multiline latency**: `--latency-rate` lines/s for `--latency-secs`, 5% of them stack-trace
//!    lines that continue the event before (`[sources.multiline] start`); per event,
//!    `ingested_at` − the write time of its first line, against `flush_interval_ms +
//!    timeout_ms + 100 ms`.

use std::fmt::Write as _;
use std::fs;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat};

use crate::db::{create_schema, open_sqlite, wait_rows, write_config, DbSpec};
use crate::input::LineGen;
use crate::latency::follow_warm_up;
use crate::options::Backend;
use crate::throughput::{once_into_fresh, sqlite_ceiling, Row};
use crate::util::{
    fmt_int, fmt_secs_list, format_rfc3339, median, now_micros, parse_rfc3339_micros, progress,
    rate,
};
use crate::Bench;

/// `pipeline.flush_interval_ms` and `multiline.timeout_ms` of the latency source.
const FLUSH_INTERVAL_MS: u64 = 200;
const TIMEOUT_MS: u64 = 1000;
/// Of every 100 lines of the latency source, this many continue the event before.
const TRACE_PERCENT: u64 = 5;

/// The formats measured, with their file name and source keys.
const FORMATS: [(&str, &str); 3] = [
    ("json", "events.jsonl"),
    ("nginx_combined", "access.log"),
    ("logfmt", "events.logfmt"),
];

struct Measured {
    format: &'static str,
    bytes: u64,
    logbelt: Vec<Duration>,
    ceiling: Vec<Duration>,
}

pub fn run(bench: &mut Bench) {
    if !bench.opts.backends.contains(&Backend::Sqlite) {
        progress("formats: SQLite only; skipped");
        return;
    }
    let dir = bench.work.join("formats-input");
    progress(&format!(
        "formats: writing {} events as JSON, nginx_combined and logfmt",
        fmt_int(bench.opts.lines)
    ));
    let bytes = match write_inputs(&dir, bench.opts.lines) {
        Ok(b) => b,
        Err(e) => return bench.fail(format!("formats: {e}")),
    };
    let mut results = Vec::new();
    for ((format, file), bytes) in FORMATS.iter().zip(bytes) {
        match measure(bench, format, &dir.join(file).join(file), bytes) {
            Ok(m) => results.push(m),
            Err(e) => bench.fail(format!("formats, {format}: {e}")),
        }
    }
    print_throughput(bench, &results);
    match multiline_latency(bench) {
        Ok(l) => print_latency(bench, &l),
        Err(e) => bench.fail(format!("formats, multiline latency: {e}")),
    }
}

/// Writes the same `lines` events in each of [`FORMATS`] (one folder per file); their sizes.
fn write_inputs(dir: &Path, lines: usize) -> Result<Vec<u64>, String> {
    let io = |e: std::io::Error| format!("write the inputs under {}: {e}", dir.display());
    let mut outs = Vec::new();
    for (_, file) in FORMATS {
        let sub = dir.join(file);
        fs::create_dir_all(&sub).map_err(io)?;
        let f = fs::File::create(sub.join(file)).map_err(io)?;
        outs.push(BufWriter::with_capacity(1 << 20, f));
    }
    let mut sizes = vec![0u64; FORMATS.len()];
    let mut gen = LineGen::new(0x6c6f_6762_656c_7400);
    for _ in 0..lines {
        let json = gen.line(None);
        let e: serde_json::Value = serde_json::from_str(&json).map_err(|e| e.to_string())?;
        for (i, text) in [json.clone(), nginx_line(&e), logfmt_line(&e)]
            .iter()
            .enumerate()
        {
            outs[i].write_all(text.as_bytes()).map_err(io)?;
            sizes[i] += text.len() as u64;
        }
    }
    for mut o in outs {
        o.flush().map_err(io)?;
    }
    Ok(sizes)
}

fn str_of<'a>(e: &'a serde_json::Value, key: &str) -> &'a str {
    e[key].as_str().unwrap_or("-")
}

/// The event as nginx's `combined` format writes it.
fn nginx_line(e: &serde_json::Value) -> String {
    let micros = parse_rfc3339_micros(str_of(e, "timestamp")).unwrap_or(0);
    let time = DateTime::from_timestamp_micros(micros)
        .map(|t| t.format("%d/%b/%Y:%H:%M:%S +0000").to_string())
        .unwrap_or_default();
    let http = &e["http"];
    let id = str_of(e, "request_id");
    format!(
        "10.{}.{}.{} - - [{time}] \"{} {} HTTP/1.1\" {} {} \"-\" \"Mozilla/5.0 ({}; {})\"\n",
        id.len(),
        id.as_bytes().first().copied().unwrap_or(0),
        id.as_bytes().last().copied().unwrap_or(0),
        http["method"].as_str().unwrap_or("GET"),
        http["path"].as_str().unwrap_or("/"),
        http["status"],
        http["bytes"],
        str_of(e, "service"),
        str_of(e, "host"),
    )
}

/// The event as a logfmt writer (Go's slog text handler) writes it.
fn logfmt_line(e: &serde_json::Value) -> String {
    let http = &e["http"];
    let quoted = |s: &str| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
    let mut s = String::with_capacity(300);
    let _ = write!(
        s,
        "ts={} level={} msg={} service={} host={} request_id={} latency_ms={} method={} path={} \
         status={} bytes={}",
        str_of(e, "timestamp"),
        str_of(e, "level"),
        quoted(str_of(e, "message")),
        str_of(e, "service"),
        str_of(e, "host"),
        str_of(e, "request_id"),
        e["latency_ms"],
        http["method"].as_str().unwrap_or("GET"),
        http["path"].as_str().unwrap_or("/"),
        http["status"],
        http["bytes"],
    );
    if let Some(tags) = e["tags"].as_array() {
        let tags: Vec<&str> = tags.iter().filter_map(|t| t.as_str()).collect();
        let _ = write!(s, " tags={}", tags.join(","));
    }
    s.push('\n');
    s
}

/// The rows logbelt stored, as the ceiling inserts them: (offset, ts, level, message, fields).
type Stored = (i64, Option<String>, Option<String>, Option<String>, String);

fn measure(
    bench: &mut Bench,
    format: &'static str,
    file: &Path,
    bytes: u64,
) -> Result<Measured, String> {
    let lines = bench.opts.lines;
    let mut m = Measured {
        format,
        bytes,
        logbelt: Vec::new(),
        ceiling: Vec::new(),
    };
    let include = format!("{}/*", file.parent().unwrap_or(file).display());
    let n = bench.opts.runs;
    for i in 1..=n {
        progress(&format!("formats, {format}: logbelt run {i}/{n}"));
        let extra = format!("format = \"{format}\"\n");
        let label = format!("formats-{format}-{i}");
        let (time, _, spec) =
            once_into_fresh(bench, Backend::Sqlite, &label, (&include, &extra), lines)?;
        let DbSpec::Sqlite { path } = &spec else {
            return Err("not SQLite".into());
        };
        let stored = read_rows(path)?;
        progress(&format!(
            "  {:.2} s, {} rows/s",
            time.as_secs_f64(),
            fmt_int(rate(lines, time) as usize)
        ));
        m.logbelt.push(time);

        progress(&format!("formats, {format}: ceiling run {i}/{n}"));
        let (spec, dir) = bench.fresh(Backend::Sqlite, &format!("formats-{format}-ceiling-{i}"))?;
        create_schema(&dir, &spec)?;
        let DbSpec::Sqlite { path } = &spec else {
            return Err("not SQLite".into());
        };
        let rows: Vec<Row<'_>> = stored
            .iter()
            .map(|(offset, ts, level, message, fields)| Row {
                offset: *offset,
                ts_micros: None,
                ts_text: ts.clone(),
                level: level.clone(),
                message: message.clone(),
                fields,
            })
            .collect();
        let time = sqlite_ceiling(path, &rows)?;
        progress(&format!(
            "  {:.2} s, {} rows/s",
            time.as_secs_f64(),
            fmt_int(rate(lines, time) as usize)
        ));
        m.ceiling.push(time);
    }
    Ok(m)
}

/// Every row of `log_events`, in insertion order.
fn read_rows(path: &Path) -> Result<Vec<Stored>, String> {
    let conn = open_sqlite(path)?;
    let read = |e: rusqlite::Error| format!("read logbelt's rows back: {e}");
    let mut q = conn
        .prepare("SELECT file_offset, ts, level, message, fields FROM log_events ORDER BY id")
        .map_err(read)?;
    let rows = q
        .query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .map_err(read)?;
    rows.map(|r| r.map_err(read)).collect()
}

fn print_throughput(bench: &Bench, results: &[Measured]) {
    println!(
        "\n## Text formats into SQLite: {} events each, median of {} run(s)\n",
        fmt_int(bench.opts.lines),
        bench.opts.runs
    );
    println!("| format | bytes/line | logbelt | rows/s | ceiling (same rows) | ratio | target |");
    println!("|---|---:|---:|---:|---:|---:|---|");
    for m in results {
        let lb = median(&m.logbelt);
        let ceil = median(&m.ceiling);
        let ratio = ceil.as_secs_f64() / lb.as_secs_f64();
        let target = match m.format {
            "json" => "no regression (throughput part)".to_owned(),
            _ if ratio >= 0.8 => "≥ 0.8: met".to_owned(),
            _ => "≥ 0.8: **missed**".to_owned(),
        };
        println!(
            "| {} | {} | {:.2} s | {} | {:.2} s | **{ratio:.2}** | {target} |",
            m.format,
            m.bytes / bench.opts.lines as u64,
            lb.as_secs_f64(),
            fmt_int(rate(bench.opts.lines, lb) as usize),
            ceil.as_secs_f64(),
        );
    }
    println!();
    for m in results {
        println!(
            "- {} runs (s): logbelt {}; ceiling {}",
            m.format,
            fmt_secs_list(&m.logbelt),
            fmt_secs_list(&m.ceiling)
        );
    }
    println!(
        "- ratio = ceiling time ÷ logbelt time. The ceiling inserts the rows logbelt stored (read \
         back after its run: the event's JSON object, time, level, message) with one prepared \
         INSERT in one transaction; logbelt's time is the whole `run --once` process."
    );
}

struct Latency {
    lines: usize,
    events: usize,
    /// Per event: ingested_at − the write time of its first line, sorted, µs.
    latencies: Vec<i64>,
}

/// The multiline source's lines: an event line carries its write time; a trace line continues
/// the event before.
fn multiline_latency(bench: &mut Bench) -> Result<Latency, String> {
    progress(&format!(
        "formats, multiline latency: {} lines/s for {} s, {TRACE_PERCENT}% trace lines",
        bench.opts.latency_rate, bench.opts.latency_secs
    ));
    let (spec, dir) = bench.fresh(Backend::Sqlite, "formats-multiline-latency")?;
    let DbSpec::Sqlite { path: db_path } = spec.clone() else {
        return Err("not SQLite".into());
    };
    let logs = dir.join("logs");
    fs::create_dir_all(&logs).map_err(|e| format!("create {}: {e}", logs.display()))?;
    let path = logs.join("app.log");
    // A warm-up event (no write time), so timing starts with the file already tailed.
    fs::write(&path, "2026-11-27T13:40:00.000Z INFO warm-up\n")
        .map_err(|e| format!("write {}: {e}", path.display()))?;
    let keys = format!(
        "format = \"regex\"\n\
         pattern = '(?s)^(?P<time>\\S+) (?P<level>[A-Z]+) (?:written_at_us=(?P<written_at_us>\\d+) )?(?P<message>.*)$'\n\
         [sources.multiline]\nstart = '^\\d{{4}}-'\ntimeout_ms = {TIMEOUT_MS}\n\n\
         [pipeline]\nflush_interval_ms = {FLUSH_INTERVAL_MS}\n"
    );
    let config = write_config(&dir, &spec, &format!("{}/*.log", logs.display()), &keys);
    let (mut child, mut db, mut file) = follow_warm_up(&spec, &config, &path)?;
    let n = (bench.opts.latency_rate * bench.opts.latency_secs) as usize;
    let period = Duration::from_secs_f64(1.0 / bench.opts.latency_rate as f64);
    let start = Instant::now();
    let mut events = 0usize;
    let mut gen = LineGen::new(11);
    for i in 0..n {
        if let Some(wait) = (start + period * i as u32).checked_duration_since(Instant::now()) {
            thread::sleep(wait);
        }
        // `i * 37 % 100` spreads the trace lines evenly; never the first line.
        let line = if i > 0 && (i as u64 * 37) % 100 < TRACE_PERCENT {
            format!("\tat com.example.shop.OrderService.reserve(OrderService.java:{i})\n")
        } else {
            events += 1;
            let now = now_micros();
            let json: serde_json::Value =
                serde_json::from_str(&gen.line(None)).map_err(|e| e.to_string())?;
            format!(
                "{} INFO written_at_us={now} {}\n",
                format_rfc3339(now, SecondsFormat::Millis),
                json["message"].as_str().unwrap_or("")
            )
        };
        file.write_all(line.as_bytes())
            .map_err(|e| format!("append to {}: {e}", path.display()))?;
        if i % 100 == 0 {
            child.assert_running()?;
        }
    }
    // The last event is stored by the timeout: no line comes after it.
    wait_rows(
        &mut db,
        &mut child,
        1 + events as i64,
        Instant::now() + Duration::from_secs(30),
    )?;
    child.interrupt_ok()?;
    let mut latencies = sqlite_event_latencies(&db_path)?;
    if latencies.len() != events {
        return Err(format!(
            "{} timed events stored, expected {events}",
            latencies.len()
        ));
    }
    latencies.sort_unstable();
    Ok(Latency {
        lines: n,
        events,
        latencies,
    })
}

/// `ingested_at − written_at_us` of every timed event (µs).
fn sqlite_event_latencies(path: &Path) -> Result<Vec<i64>, String> {
    let conn = open_sqlite(path)?;
    let read = |e: rusqlite::Error| format!("read the latencies: {e}");
    let mut q = conn
        .prepare(
            "SELECT CAST(json_extract(fields, '$.written_at_us') AS INTEGER), ingested_at \
             FROM log_events WHERE json_extract(fields, '$.written_at_us') IS NOT NULL",
        )
        .map_err(read)?;
    let rows = q
        .query_map([], |row| {
            Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?))
        })
        .map_err(read)?;
    rows.map(|row| {
        let (written, ingested) = row.map_err(read)?;
        let ingested = parse_rfc3339_micros(&ingested)
            .ok_or_else(|| format!("unparseable ingested_at `{ingested}`"))?;
        Ok(ingested - written)
    })
    .collect()
}

fn print_latency(bench: &Bench, l: &Latency) {
    let target = FLUSH_INTERVAL_MS + TIMEOUT_MS + 100;
    println!(
        "\n## Multiline latency (SQLite): {} lines/s for {} s, {TRACE_PERCENT}% stack-trace lines, \
         `flush_interval_ms = {FLUSH_INTERVAL_MS}`, `timeout_ms = {TIMEOUT_MS}`\n",
        bench.opts.latency_rate, bench.opts.latency_secs
    );
    println!("| lines | events | p50 | p99 | max | target (flush + timeout + 100 ms) |");
    println!("|---:|---:|---:|---:|---:|---:|");
    let ms = |us: i64| format!("{:.1} ms", us as f64 / 1000.0);
    let p = |q: f64| l.latencies[((l.latencies.len() - 1) as f64 * q).round() as usize];
    let p99 = p(0.99);
    println!(
        "| {} | {} | {} | {} | {} | {target} ms: {} |",
        fmt_int(l.lines),
        fmt_int(l.events),
        ms(p(0.5)),
        ms(p99),
        ms(*l.latencies.last().unwrap_or(&0)),
        if p99 <= target as i64 * 1000 {
            "p99 met"
        } else {
            "**p99 missed**"
        },
    );
    println!(
        "\n- latency = `ingested_at` (set at commit) − the write time of the event's first line \
         (taken just before its write(2)). An event is complete when the next one starts (or \
         after `timeout_ms` for the last one)."
    );
}
