//! The pipeline benchmark: the real `logbelt` binary, run as a child process, against the
//! database's own bulk load of the same rows (ARCHITECTURE.md §1).
//!
//! ```sh
//! cargo bench --bench pipeline -- [--lines N] [--backend sqlite|postgres|both]
//!                                 [--only throughput|stall|latency|idle|retention|formats[,…]]
//!                                 [--runs 3]
//!                                 [--stall-secs 10] [--latency-secs 30] [--latency-rate 100]
//!                                 [--idle-files 1000] [--idle-secs 30] [--keep]
//! ```
//!
//! PostgreSQL is measured when `LOGBELT_BENCH_POSTGRES_URL` (or `LOGBELT_TEST_POSTGRES_URL`) is an
//! admin URL: the bench creates `logbelt_bench_<pid>` there, recreates it before every
//! measurement, and drops it at the end. Temporary files go under `$TMPDIR` (default `/tmp`).
//!
//! Four parts, each printing a Markdown table (progress goes to stderr, tables to stdout):
//! 1. **Throughput** (`throughput.rs`): N generated lines (~280 bytes, fixed-seed) in one file;
//!    `logbelt run --once` into a fresh database (wall time, peak RSS from `VmHWM`, CPU of the
//!    reaped child) against the ceiling: the same rows, pre-extracted before timing, loaded by one
//!    prepared INSERT in one transaction (SQLite) or by binary COPY in 10,000-row chunks in one
//!    transaction (PostgreSQL). Median of `--runs`.
//! 2. **Stall** (`stall.rs`): `logbelt run` on the same file, without and then with the database
//!    stalled for `--stall-secs` once 20% of the file is committed; RSS sampled every 100 ms.
//! 3. **Latency** (`latency.rs`): `--latency-rate` lines/s for `--latency-secs`, each carrying its
//!    write time; `ingested_at − written_at` per row.
//! 4. **Idle** (`idle.rs`): `--idle-files` small files, already ingested; logbelt's CPU over
//!    `--idle-secs`.
//! 5. **Retention** (`retention.rs`, only with `--only retention`): rows/s with expiry running
//!    against without, and commit p99 during a large expiry against without.
//! 6. **Formats** (`formats.rs`, only with `--only formats`, SQLite): JSON, nginx_combined and
//!    logfmt lines of the same events against the ceiling of the rows logbelt stored; the
//!    latency of a multiline source with 5% stack-trace lines.
//!
//! Shared pieces: the command line (`options.rs`), the generated input (`input.rs`), the
//! databases and logbelt's configs (`db.rs`), the child process (`child.rs`), and time,
//! formatting and statistics helpers (`util.rs`).
//!
//! Numbers from a shared, noisy machine: compare ratios taken in one run, not absolute numbers
//! across days (the load average is printed first for that reason).

#![forbid(unsafe_code)]

mod child;
mod db;
mod formats;
mod idle;
mod input;
mod latency;
mod options;
mod retention;
mod rng;
mod stall;
mod throughput;
mod util;

use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::thread;
use std::time::Duration;

use crate::child::proc_field_kib;
use crate::db::{DbSpec, PgBenchDb};
use crate::input::Input;
use crate::options::{Backend, Options, Part};
use crate::util::{fmt_int, now_micros, progress};

/// The binary under test, built by cargo with the bench's profile.
const LOGBELT: &str = env!("CARGO_BIN_EXE_logbelt");
/// `[agent] host` in every config, and the `host` the ceiling inserts.
const HOST: &str = "bench";
/// `[[sources]] name` in every config, and the `source` the ceiling inserts.
const SOURCE: &str = "bench";
/// How long a graceful exit after SIGINT may take before the bench calls it a failure.
const EXIT_DEADLINE: Duration = Duration::from_secs(60);

fn main() {
    let opts = Options::from_args();
    let mut work = tempfile::Builder::new()
        .prefix("logbelt-bench-")
        .tempdir()
        .expect("create the bench's temporary folder");
    work.disable_cleanup(opts.keep);
    let mut bench = Bench {
        opts,
        work: work.path().to_path_buf(),
        failures: Vec::new(),
        pg: None,
        last_dir: None,
    };
    bench.pg = bench.opts.pg_admin.clone().map(PgBenchDb::new);

    print_header(&bench);

    let needs_input = bench
        .opts
        .parts
        .iter()
        .any(|p| matches!(p, Part::Throughput | Part::Stall | Part::Retention));
    let input = needs_input.then(|| {
        progress(&format!("generating {} lines", fmt_int(bench.opts.lines)));
        Input::generate(&bench.work.join("input"), bench.opts.lines)
    });

    for part in bench.opts.parts.clone() {
        match part {
            Part::Throughput => throughput::run(&mut bench, input.as_ref().expect("input")),
            Part::Stall => stall::run(&mut bench, input.as_ref().expect("input")),
            Part::Latency => latency::run(&mut bench),
            Part::Idle => idle::run(&mut bench),
            Part::Retention => retention::run(&mut bench, input.as_ref().expect("input")),
            Part::Formats => formats::run(&mut bench),
        }
    }

    println!(
        "\n- load average at the end: {} (1, 5, 15 min)",
        load_average()
    );
    if bench.opts.keep {
        println!("- kept: {}", bench.work.display());
    }
    let failed = !bench.failures.is_empty();
    if failed {
        println!("\n## Failures\n");
        for f in &bench.failures {
            println!("- {f}");
        }
    }
    // Drop the PostgreSQL database and the temporary folder before exiting.
    drop(bench);
    drop(work);
    if failed {
        std::process::exit(1);
    }
}

/// What every part needs: the options, a scratch folder, and the failures to report at the end.
pub struct Bench {
    pub opts: Options,
    pub work: PathBuf,
    failures: Vec<String>,
    /// The PostgreSQL bench database (created on first use, dropped on drop).
    pg: Option<PgBenchDb>,
    /// The previous measurement's folder: removed by the next [`Bench::fresh`] (a 1M-row SQLite
    /// file is ~0.5 GB).
    last_dir: Option<PathBuf>,
}

impl Bench {
    /// A new, empty database for one measurement, and a folder (`work/<label>`) for its config
    /// and logs. The SQLite file does not exist yet; the PostgreSQL database exists, empty.
    pub fn fresh(&mut self, backend: Backend, label: &str) -> Result<(DbSpec, PathBuf), String> {
        let dir = self.work.join(label);
        let last = self.last_dir.take().filter(|_| !self.opts.keep);
        for old in last.into_iter().chain([dir.clone()]) {
            if old.exists() {
                fs::remove_dir_all(&old).map_err(|e| format!("remove {}: {e}", old.display()))?;
            }
        }
        fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        self.last_dir = Some(dir.clone());
        let spec = match backend {
            Backend::Sqlite => DbSpec::Sqlite {
                path: dir.join("bench.db"),
            },
            Backend::Postgres => {
                let pg = self
                    .pg
                    .as_mut()
                    .ok_or("no PostgreSQL admin URL configured")?;
                DbSpec::Postgres {
                    url: pg.recreate()?,
                }
            }
        };
        Ok((spec, dir))
    }

    pub fn fail(&mut self, what: String) {
        eprintln!("FAILED: {what}");
        self.failures.push(what);
    }
}

/// The first three fields of /proc/loadavg.
fn load_average() -> String {
    let text = fs::read_to_string("/proc/loadavg").unwrap_or_else(|e| format!("? ({e})"));
    text.split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn print_header(bench: &Bench) {
    let cores = thread::available_parallelism().map_or(0, |n| n.get());
    let mem_kib = proc_field_kib("/proc/meminfo", "MemTotal:").unwrap_or(0);
    let commit = Command::new("git")
        .args([
            "-C",
            env!("CARGO_MANIFEST_DIR"),
            "describe",
            "--always",
            "--dirty",
        ])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    println!("# logbelt pipeline benchmark\n");
    println!(
        "- load average at start: {} (1, 5, 15 min) on {cores} cores, {:.1} GiB RAM",
        load_average(),
        mem_kib as f64 / 1024.0 / 1024.0
    );
    println!("- logbelt {commit} ({LOGBELT})");
    println!("- SQLite {} (bundled)", rusqlite::version());
    if let Some(pg) = &bench.pg {
        println!("- {}", pg.server_version());
    }
    let backends: Vec<&str> = bench.opts.backends.iter().map(|b| b.name()).collect();
    println!(
        "- backends: {}; temporary files under {}",
        backends.join(", "),
        bench.work.display()
    );
    println!("- unix time at start: {}", now_micros() / 1_000_000);
}
