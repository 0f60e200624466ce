//! Part 4: idle cost of many tailed files.

use std::fs;
use std::thread;
use std::time::{Duration, Instant};

use crate::child::{clock_ticks_per_sec, Exit, Logbelt};
use crate::db::{wait_rows, write_config};
use crate::input::LineGen;
use crate::options::Backend;
use crate::util::{fmt_int, fmt_mib, progress};
use crate::Bench;

/// Lines in each idle file.
const IDLE_LINES_PER_FILE: usize = 3;
/// Wait after the idle files are ingested before the CPU window starts.
const IDLE_SETTLE: Duration = Duration::from_secs(3);

struct Result_ {
    files: usize,
    window: Duration,
    cpu: Duration,
    rss_kib: u64,
    fds: Option<usize>,
    threads: Option<u64>,
    settled_after: Duration,
    exit: Exit,
    exit_took: Duration,
}

pub fn run(bench: &mut Bench) {
    let mut results = Vec::new();
    for backend in bench.opts.backends.clone() {
        progress(&format!(
            "idle, {}: {} files, {} s window",
            backend.name(),
            bench.opts.idle_files,
            bench.opts.idle_secs
        ));
        match measure(bench, backend) {
            Ok(r) => results.push((backend, r)),
            Err(e) => bench.fail(format!("idle, {}: {e}", backend.name())),
        }
    }
    print_table(bench, &results);
}

fn measure(bench: &mut Bench, backend: Backend) -> Result<Result_, String> {
    let (spec, dir) = bench.fresh(backend, &format!("idle-{}", backend.name()))?;
    let logs = dir.join("logs");
    fs::create_dir_all(&logs).map_err(|e| format!("create {}: {e}", logs.display()))?;
    let files = bench.opts.idle_files;
    let mut gen = LineGen::new(11);
    for i in 0..files {
        let path = logs.join(format!("svc-{i:04}.jsonl"));
        let text: String = (0..IDLE_LINES_PER_FILE).map(|_| gen.line(None)).collect();
        fs::write(&path, text).map_err(|e| format!("write {}: {e}", path.display()))?;
    }
    let config = write_config(&dir, &spec, &format!("{}/*.jsonl", logs.display()), "");
    let start = Instant::now();
    let mut child = Logbelt::spawn(&config, false, &dir.join("logbelt.log"))?;
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut db = spec.connect_when_migrated(deadline)?;
    let expected = (files * IDLE_LINES_PER_FILE) as i64;
    wait_rows(&mut db, &mut child, expected, deadline)?;
    let settled_after = start.elapsed();
    thread::sleep(IDLE_SETTLE);

    let window = Duration::from_secs(bench.opts.idle_secs);
    let (t0, c0) = (Instant::now(), child.cpu_ticks()?);
    while t0.elapsed() < window {
        child.assert_running()?;
        thread::sleep(Duration::from_millis(500).min(window.saturating_sub(t0.elapsed())));
    }
    let (elapsed, c1) = (t0.elapsed(), child.cpu_ticks()?);
    let cpu = Duration::from_secs_f64((c1 - c0) as f64 / clock_ticks_per_sec() as f64);
    let rss_kib = child.status_kib("VmRSS:").unwrap_or(0);
    let threads = child.status_kib("Threads:");
    let fds = child.open_fds();
    let rows = db.events()?;
    if rows != expected {
        return Err(format!(
            "{rows} rows after the idle window, expected {expected}"
        ));
    }
    let (exit, exit_took) = child.interrupt()?;
    if exit.code != Some(0) {
        return Err(format!(
            "logbelt {} after SIGINT\n{}",
            exit.describe(),
            child.log_tail()
        ));
    }
    Ok(Result_ {
        files,
        window: elapsed,
        cpu,
        rss_kib,
        fds,
        threads,
        settled_after,
        exit,
        exit_took,
    })
}

fn print_table(bench: &Bench, results: &[(Backend, Result_)]) {
    println!(
        "\n## Idle: {} tailed files ({IDLE_LINES_PER_FILE} lines each, already ingested), {} s window\n",
        fmt_int(bench.opts.idle_files),
        bench.opts.idle_secs
    );
    println!(
        "| backend | files | ingested in | CPU in window | % of one core | target | RSS | threads | open fds | SIGINT → exit |"
    );
    println!("|---|---:|---:|---:|---:|---|---:|---:|---:|---|");
    for (backend, r) in results {
        let pct = r.cpu.as_secs_f64() / r.window.as_secs_f64() * 100.0;
        println!(
            "| {} | {} | {:.1} s | {:.2} s / {:.0} s | {:.2}% | < 1%: {} | {} | {} | {} | {} in {:.2} s |",
            backend.name(),
            fmt_int(r.files),
            r.settled_after.as_secs_f64(),
            r.cpu.as_secs_f64(),
            r.window.as_secs_f64(),
            pct,
            if pct < 1.0 { "met" } else { "**missed**" },
            fmt_mib(r.rss_kib),
            r.threads.map_or_else(|| "?".into(), |t| t.to_string()),
            r.fds.map_or_else(|| "?".into(), |f| f.to_string()),
            r.exit.describe(),
            r.exit_took.as_secs_f64()
        );
    }
    println!(
        "\n- CPU = utime + stime of /proc/<pid>/stat (all threads) over the window, which starts \
         {} s after the last row is committed; the database server's own CPU is not counted.",
        IDLE_SETTLE.as_secs()
    );
}
