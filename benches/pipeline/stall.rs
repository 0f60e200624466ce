//! Part 2: a stalled database — bounded memory, and reading resumes.

use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::child::{Exit, Logbelt};
use crate::db::{write_config, DbSpec};
use crate::input::Input;
use crate::options::Backend;
use crate::util::{fmt_int, fmt_mib, ingest_deadline, progress};
use crate::Bench;

/// The stall starts once this share of the input file is committed.
const STALL_AT_FRACTION: f64 = 0.2;
/// RSS sampling period of the daemon runs.
const SAMPLE_EVERY: Duration = Duration::from_millis(100);

/// Messages from the thread holding the lock.
enum LockEvent {
    /// The lock is held; `rows` in `log_events` at that moment.
    Locked {
        rows: i64,
    },
    /// About to release; `rows` in `log_events` just before, and how long the lock was held.
    Releasing {
        rows: i64,
        held: Duration,
    },
    Failed(String),
}

/// One daemon run over the whole input file.
#[derive(Default)]
struct DaemonRun {
    /// Start to the last byte committed.
    ingest: Duration,
    /// Peak sampled VmRSS (KiB) before / during / after the stall (all in `before` without one).
    peak_before: u64,
    peak_during: u64,
    peak_after: u64,
    /// VmHWM just before SIGINT (KiB).
    hwm: u64,
    /// Rows in `log_events` when the lock was taken and when it was released.
    stall_rows: Option<(i64, i64)>,
    /// Committed bytes that advanced during the stall, as the bench's monitor saw them.
    stall_bytes: i64,
    /// Release → first new committed position.
    resumed_after: Option<Duration>,
    /// The stall really lasted (lock taken → release).
    stalled_for: Duration,
    rows: i64,
    exit: Option<Exit>,
    exit_took: Duration,
}

pub fn run(bench: &mut Bench, input: &Input) {
    let mut results = Vec::new();
    let stall = Duration::from_secs(bench.opts.stall_secs);
    for backend in bench.opts.backends.clone() {
        let mut one = |stall: Option<Duration>, label: &str| {
            progress(&format!("stall, {}: {label}", backend.name()));
            let r = daemon_run(bench, backend, input, stall, label);
            if let Err(e) = &r {
                bench.fail(format!("stall, {}, {label}: {e}", backend.name()));
            }
            r.ok()
        };
        let base = one(None, "stall-baseline");
        let stalled = one(Some(stall), "stall-stalled");
        results.push((backend, base, stalled));
    }
    print_table(bench, input, &results);
}

fn daemon_run(
    bench: &mut Bench,
    backend: Backend,
    input: &Input,
    stall: Option<Duration>,
    label: &str,
) -> Result<DaemonRun, String> {
    let (spec, dir) = bench.fresh(backend, &format!("{label}-{}", backend.name()))?;
    let config = write_config(&dir, &spec, &input.include(), "");
    let deadline = Instant::now() + ingest_deadline(input.lines) + stall.unwrap_or_default();
    let start = Instant::now();
    let mut child = Logbelt::spawn(&config, false, &dir.join("logbelt.log"))?;
    let mut mon = spec.connect_when_migrated(deadline)?;
    let total = input.bytes as i64;
    let threshold = (input.bytes as f64 * STALL_AT_FRACTION) as i64;

    let mut r = DaemonRun::default();
    let (tx, rx) = mpsc::channel();
    let mut locker: Option<thread::JoinHandle<()>> = None;
    #[derive(PartialEq)]
    enum Phase {
        Before,
        During,
        After,
    }
    let mut phase = Phase::Before;
    let mut released_at = None;
    let mut offset_in_stall = (0i64, 0i64);
    loop {
        child.assert_running()?;
        let rss = child.status_kib("VmRSS:").unwrap_or(0);
        let peak = match phase {
            Phase::Before => &mut r.peak_before,
            Phase::During => &mut r.peak_during,
            Phase::After => &mut r.peak_after,
        };
        *peak = (*peak).max(rss);
        let offset = mon.committed_bytes()?;
        if let (Some(stall), None) = (stall, &locker) {
            if offset >= threshold {
                let (spec, tx) = (spec.clone(), tx.clone());
                locker = Some(thread::spawn(move || hold_lock(&spec, stall, &tx)));
            }
        }
        while let Ok(ev) = rx.try_recv() {
            match ev {
                LockEvent::Locked { rows } => {
                    phase = Phase::During;
                    offset_in_stall = (offset, offset);
                    r.stall_rows = Some((rows, rows));
                }
                LockEvent::Releasing { rows, held } => {
                    phase = Phase::After;
                    released_at = Some(Instant::now());
                    r.stalled_for = held;
                    if let Some((at_lock, _)) = r.stall_rows {
                        r.stall_rows = Some((at_lock, rows));
                    }
                }
                LockEvent::Failed(e) => return Err(format!("stalling the database: {e}")),
            }
        }
        match phase {
            Phase::During => offset_in_stall.1 = offset,
            Phase::After if r.resumed_after.is_none() && offset > offset_in_stall.1 => {
                r.resumed_after = released_at.map(|t| t.elapsed());
            }
            _ => {}
        }
        if offset >= total && (stall.is_none() || phase == Phase::After) {
            break;
        }
        if offset >= total && phase == Phase::Before {
            return Err("logbelt finished before the stall could start: use more --lines".into());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "{} of {} bytes committed at the deadline ({})\n{}",
                fmt_int(offset as usize),
                fmt_int(total as usize),
                if phase == Phase::After {
                    "after the stall: reading did not resume"
                } else {
                    "no stall yet"
                },
                child.log_tail()
            ));
        }
        thread::sleep(SAMPLE_EVERY);
    }
    r.ingest = start.elapsed();
    r.stall_bytes = offset_in_stall.1 - offset_in_stall.0;
    if let Some(h) = locker {
        let _ = h.join();
    }
    r.hwm = child.status_kib("VmHWM:").unwrap_or(0);
    let (exit, took) = child.interrupt()?;
    r.exit = Some(exit);
    r.exit_took = took;
    r.rows = mon.events()?;
    if exit.code != Some(0) {
        return Err(format!(
            "logbelt {} after SIGINT\n{}",
            exit.describe(),
            child.log_tail()
        ));
    }
    if r.rows != input.lines as i64 {
        return Err(format!("{} rows stored, expected {}", r.rows, input.lines));
    }
    Ok(r)
}

/// Holds the database's write lock for `stall`: SQLite `BEGIN EXCLUSIVE`; PostgreSQL
/// `LOCK TABLE log_events IN ACCESS EXCLUSIVE MODE`, in an open transaction.
fn hold_lock(spec: &DbSpec, stall: Duration, tx: &mpsc::Sender<LockEvent>) {
    let held = (|| -> Result<(), String> {
        let mut db = spec.connect()?;
        match spec {
            DbSpec::Sqlite { .. } => db.exec("BEGIN EXCLUSIVE")?,
            DbSpec::Postgres { .. } => {
                db.exec("BEGIN; LOCK TABLE log_events IN ACCESS EXCLUSIVE MODE")?
            }
        }
        let locked_at = Instant::now();
        let _ = tx.send(LockEvent::Locked { rows: db.events()? });
        thread::sleep(stall);
        let rows = db.events()?;
        let held = locked_at.elapsed();
        let _ = tx.send(LockEvent::Releasing { rows, held });
        db.exec("COMMIT")
    })();
    if let Err(e) = held {
        let _ = tx.send(LockEvent::Failed(e));
    }
}

fn print_table(
    bench: &Bench,
    input: &Input,
    results: &[(Backend, Option<DaemonRun>, Option<DaemonRun>)],
) {
    println!(
        "\n## Stall: `logbelt run` on {} lines, the database stalled for {} s once {:.0}% is committed\n",
        fmt_int(input.lines),
        bench.opts.stall_secs,
        STALL_AT_FRACTION * 100.0
    );
    println!(
        "| backend | run | peak RSS before | during stall | after (catching up) | VmHWM | \
         rows committed during stall | resumed after release | rows | SIGINT → exit |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---|");
    for (backend, base, stalled) in results {
        for (what, r) in [("no stall", base), ("stalled", stalled)] {
            let Some(r) = r else {
                println!("| {} | {what} | failed | | | | | | | |", backend.name());
                continue;
            };
            let stalled = r.stall_rows.is_some();
            let dash = || "—".to_string();
            println!(
                "| {} | {what} ({:.1} s) | {} | {} | {} | {} | {} | {} | {} | {} in {:.2} s |",
                backend.name(),
                r.ingest.as_secs_f64(),
                fmt_mib(r.peak_before),
                if stalled {
                    fmt_mib(r.peak_during)
                } else {
                    dash()
                },
                if stalled {
                    fmt_mib(r.peak_after)
                } else {
                    dash()
                },
                fmt_mib(r.hwm),
                match r.stall_rows {
                    Some((a, b)) => format!(
                        "{} (lock held {:.1} s)",
                        fmt_int((b - a) as usize),
                        r.stalled_for.as_secs_f64()
                    ),
                    None => dash(),
                },
                r.resumed_after.map_or_else(dash, |d| if d <= SAMPLE_EVERY {
                    format!("≤ {:.1} s", SAMPLE_EVERY.as_secs_f64())
                } else {
                    format!("{:.1} s", d.as_secs_f64())
                }),
                fmt_int(r.rows as usize),
                r.exit.map_or_else(|| "?".into(), |e| e.describe()),
                r.exit_took.as_secs_f64()
            );
        }
    }
    println!(
        "\n- RSS sampled from /proc/<pid>/status every {} ms; VmHWM is the process's peak over \
         the whole run (the kernel updates it lazily: it can read a little below a sample). \
         \"Resumed\": release → the first position committed after it (polled \
         every {} ms).",
        SAMPLE_EVERY.as_millis(),
        SAMPLE_EVERY.as_millis()
    );
    for (backend, _, stalled) in results {
        if let Some(r) = stalled.as_ref().filter(|r| r.stall_bytes != 0) {
            println!(
                "- **{}: committed positions advanced by {} bytes while the lock was held.**",
                backend.name(),
                fmt_int(r.stall_bytes as usize)
            );
        }
    }
}
