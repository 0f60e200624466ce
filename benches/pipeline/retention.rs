//! Part 5: retention's cost to ingestion.
//!
//! 1. **Throughput with retention running**: `logbelt run` (retention runs only in the daemon, not
//!    with `--once`) ingests the input into a fresh database, without limits, then again with
//!    `max_bytes` at a quarter of what the input takes stored and `check_interval = "1s"`, so that
//!    expiry runs all along. rows/s of both, and their ratio.
//! 2. **Commit latency during a large expiry**: the input is stored first (`--once`); then
//!    `logbelt run` starts with `max_age = "1s"`, so that its first check removes all of it (SQLite:
//!    chunked deletes; PostgreSQL: one partition dropped), while `--latency-rate` lines/s are
//!    appended for `--latency-secs`. The p99 of `logbelt_commit_duration_seconds` (from
//!    `/metrics`) over that time, against the same run without retention.

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use crate::child::Logbelt;
use crate::db::{write_config_with_database, Db, DbSpec};
use crate::input::{Input, LineGen};
use crate::latency::append_at_rate;
use crate::options::Backend;
use crate::util::{fmt_int, ingest_deadline, progress, rate};
use crate::Bench;

struct Throughput {
    without: f64,
    with: f64,
}

struct Latency {
    baseline_p99: f64,
    expiry_p99: f64,
    expired_rows: u64,
    commits: u64,
}

pub fn run(bench: &mut Bench, input: &Input) {
    let mut results = Vec::new();
    for backend in bench.opts.backends.clone() {
        progress(&format!("retention, {}: throughput", backend.name()));
        let throughput = throughput(bench, backend, input);
        progress(&format!(
            "retention, {}: commit latency during expiry",
            backend.name()
        ));
        let latency = latency(bench, backend, input);
        match (throughput, latency) {
            (Ok(t), Ok(l)) => results.push((backend, t, l)),
            (Err(e), _) | (_, Err(e)) => bench.fail(format!("retention, {}: {e}", backend.name())),
        }
    }
    print_table(bench, input, &results);
}

/// rows/s of `logbelt run` on the input, without and with a `max_bytes` that keeps expiry busy.
fn throughput(bench: &mut Bench, backend: Backend, input: &Input) -> Result<Throughput, String> {
    let (without, stored) = ingest(bench, backend, input, "")?;
    let cap = (stored / 4).max(1 << 20);
    let (with, _) = ingest(
        bench,
        backend,
        input,
        &format!("[retention]\nmax_bytes = {cap}\ncheck_interval = \"1s\"\n"),
    )?;
    Ok(Throughput { without, with })
}

/// Ingests the input with `logbelt run` and `extra` config; rows/s and the bytes stored.
fn ingest(
    bench: &mut Bench,
    backend: Backend,
    input: &Input,
    extra: &str,
) -> Result<(f64, u64), String> {
    let label = if extra.is_empty() {
        "plain"
    } else {
        "retention"
    };
    let (spec, dir) = bench.fresh(backend, &format!("retention-{label}-{}", backend.name()))?;
    let config = bench_config(&dir, &spec, backend, &input.include(), extra);
    let start = Instant::now();
    let mut child = Logbelt::spawn(&config, false, &dir.join("logbelt.log"))?;
    let deadline = start + ingest_deadline(input.lines);
    let mut db = spec.connect_when_migrated(deadline)?;
    while db.committed_bytes()? < input.bytes as i64 {
        child.assert_running()?;
        if Instant::now() > deadline {
            return Err(format!(
                "not committed by the deadline\n{}",
                child.log_tail()
            ));
        }
        thread::sleep(Duration::from_millis(20));
    }
    let took = start.elapsed();
    let stored = stored_bytes(&spec, &mut db)?;
    child.interrupt_ok()?;
    Ok((rate(input.lines, took), stored))
}

/// A config for the bench: PostgreSQL partitions of a minute, so that expiry has whole
/// partitions to drop within a bench's time.
fn bench_config(
    dir: &Path,
    spec: &DbSpec,
    backend: Backend,
    include: &str,
    extra: &str,
) -> PathBuf {
    let database = match backend {
        Backend::Postgres => "partition_interval = \"1m\"\n",
        Backend::Sqlite => "",
    };
    write_config_with_database(dir, spec, database, include, extra)
}

/// What the rows take, as `max_bytes` counts it.
fn stored_bytes(spec: &DbSpec, db: &mut Db) -> Result<u64, String> {
    match (spec, db) {
        (DbSpec::Sqlite { path }, _) => {
            let size = |p: &std::path::Path| fs::metadata(p).map_or(0, |m| m.len());
            let mut wal = path.clone().into_os_string();
            wal.push("-wal");
            Ok(size(path) + size(std::path::Path::new(&wal)))
        }
        (DbSpec::Postgres { .. }, Db::Pg(c)) => {
            use diesel::prelude::*;
            #[derive(QueryableByName)]
            struct Bytes {
                #[diesel(sql_type = diesel::sql_types::BigInt)]
                n: i64,
            }
            diesel::sql_query(
                "SELECT COALESCE(sum(pg_total_relation_size(i.inhrelid)), 0)::bigint AS n \
                 FROM pg_inherits i WHERE i.inhparent IN ('log_events'::regclass, \
                 'dead_letters'::regclass)",
            )
            .get_result::<Bytes>(c)
            .map(|b| b.n.max(0) as u64)
            .map_err(|e| format!("measure the tables: {e}"))
        }
        _ => Err("a PostgreSQL spec with a SQLite connection".into()),
    }
}

/// Commit p99 while light load runs, without retention and during a large expiry.
fn latency(bench: &mut Bench, backend: Backend, input: &Input) -> Result<Latency, String> {
    let (baseline_p99, _, _) = light_load(bench, backend, input, "")?;
    let (expiry_p99, expired_rows, commits) = light_load(
        bench,
        backend,
        input,
        "[retention]\nmax_age = \"1s\"\ncheck_interval = \"1s\"\n",
    )?;
    Ok(Latency {
        baseline_p99,
        expiry_p99,
        expired_rows,
        commits,
    })
}

/// Stores the input (`--once`), then runs `logbelt run` with `extra` while lines are appended at
/// `--latency-rate`; the commit p99 over that time (s), rows expired, commits counted.
fn light_load(
    bench: &mut Bench,
    backend: Backend,
    input: &Input,
    extra: &str,
) -> Result<(f64, u64, u64), String> {
    let label = if extra.is_empty() { "plain" } else { "expiry" };
    let (spec, dir) = bench.fresh(
        backend,
        &format!("retention-latency-{label}-{}", backend.name()),
    )?;
    let logs = dir.join("logs");
    fs::create_dir_all(&logs).map_err(|e| format!("create {}: {e}", logs.display()))?;
    let include = format!("{}/*.jsonl", logs.display());
    // The stored input is a copy in this folder, so that logbelt's positions cover it.
    fs::copy(&input.path, logs.join("stored.jsonl")).map_err(|e| format!("copy the input: {e}"))?;
    let config = bench_config(&dir, &spec, backend, &include, "");
    let mut once = Logbelt::spawn(&config, true, &dir.join("once.log"))?;
    let exit = once.wait(ingest_deadline(input.lines))?;
    if exit.code != Some(0) {
        return Err(format!(
            "logbelt run --once {}\n{}",
            exit.describe(),
            once.log_tail()
        ));
    }

    let addr = free_addr()?;
    let config = bench_config(
        &dir,
        &spec,
        backend,
        &include,
        &format!("{extra}\n[metrics]\nlisten = \"{addr}\"\n"),
    );
    let mut child = Logbelt::spawn(&config, false, &dir.join("logbelt.log"))?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let before = loop {
        child.assert_running()?;
        if let Ok(text) = scrape(addr) {
            break text;
        }
        if Instant::now() > deadline {
            return Err("the metrics endpoint never answered".into());
        }
        thread::sleep(Duration::from_millis(20));
    };
    let path = logs.join("light.jsonl");
    let mut file = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| format!("open {}: {e}", path.display()))?;
    let mut gen = LineGen::new(11);
    append_at_rate(bench, &mut file, &path, &mut gen, &mut child)?;
    let after = scrape(addr)?;
    child.interrupt_ok()?;
    let (p99, commits) = p99_between(&before, &after)?;
    let expired = ["log_events", "dead_letters"]
        .iter()
        .map(|t| {
            sample(
                &after,
                &format!("logbelt_expired_rows_total{{table=\"{t}\"}}"),
            )
        })
        .sum::<f64>() as u64;
    Ok((p99, expired, commits))
}

/// A free loopback address for the metrics endpoint.
fn free_addr() -> Result<SocketAddr, String> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
    l.local_addr().map_err(|e| format!("local_addr: {e}"))
}

/// `GET /metrics`.
fn scrape(addr: SocketAddr) -> Result<String, String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .map_err(|e| format!("connect to {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: bench\r\n\r\n")
        .map_err(|e| format!("write to {addr}: {e}"))?;
    let mut text = String::new();
    s.read_to_string(&mut text)
        .map_err(|e| format!("read from {addr}: {e}"))?;
    match text.split_once("\r\n\r\n") {
        Some((head, body))
            if head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.0 200") =>
        {
            Ok(body.to_string())
        }
        _ => Err(format!("unexpected answer from {addr}")),
    }
}

/// The value of the sample written exactly `name` (with its labels), or 0.
fn sample(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0.0)
}

/// The p99 of the commit-duration histogram's observations between two scrapes (the upper bound
/// of the bucket it falls in), and how many commits that was.
fn p99_between(before: &str, after: &str) -> Result<(f64, u64), String> {
    let buckets = |text: &str| -> Vec<(f64, f64)> {
        text.lines()
            .filter_map(|l| l.strip_prefix("logbelt_commit_duration_seconds_bucket{le=\""))
            .filter_map(|rest| {
                let (le, value) = rest.split_once("\"}")?;
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().ok()?
                };
                Some((le, value.trim().parse().ok()?))
            })
            .collect()
    };
    let (b, a) = (buckets(before), buckets(after));
    let deltas: Vec<(f64, f64)> = a
        .iter()
        .map(|(le, n)| {
            let was = b.iter().find(|(l, _)| l == le).map_or(0.0, |(_, v)| *v);
            (*le, n - was)
        })
        .collect();
    let total = deltas.last().map_or(0.0, |(_, n)| *n);
    if total <= 0.0 {
        return Err("no commits between the scrapes".into());
    }
    let p99 = deltas
        .iter()
        .find(|(_, n)| *n >= total * 0.99)
        .map_or(f64::INFINITY, |(le, _)| *le);
    Ok((p99, total as u64))
}

fn print_table(bench: &Bench, input: &Input, results: &[(Backend, Throughput, Latency)]) {
    println!(
        "\n## Retention: {} lines; expiry during ingestion, and commit latency during a large \
         expiry ({} lines/s for {} s)\n",
        fmt_int(input.lines),
        bench.opts.latency_rate,
        bench.opts.latency_secs
    );
    println!(
        "| backend | rows/s without retention | rows/s with max_bytes at ¼ | ratio (target ≥ 0.9) \
         | commit p99 without expiry | commit p99 during expiry | rows expired | commits |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    let ms = |s: f64| {
        if s.is_finite() {
            format!("≤ {:.1} ms", s * 1000.0)
        } else {
            "> 10 s".to_string()
        }
    };
    for (backend, t, l) in results {
        println!(
            "| {} | {} | {} | {:.2} | {} | {} | {} | {} |",
            backend.name(),
            fmt_int(t.without as usize),
            fmt_int(t.with as usize),
            t.with / t.without,
            ms(l.baseline_p99),
            ms(l.expiry_p99),
            fmt_int(l.expired_rows as usize),
            fmt_int(l.commits as usize),
        );
    }
    println!(
        "\n- p99 is the upper bound of the histogram bucket it falls in \
         (`logbelt_commit_duration_seconds`, scraped before and after the light load)."
    );
}
