//! The pipeline benchmark: the real `logbelt` binary, run as a child process, against the
//! database's own bulk load of the same rows (ARCHITECTURE.md §1).
//!
//! ```sh
//! cargo bench --bench pipeline -- [--lines N] [--backend sqlite|postgres|both]
//!                                 [--only throughput|stall|latency|idle[,…]] [--runs 3]
//!                                 [--stall-secs 10] [--latency-secs 30] [--latency-rate 100]
//!                                 [--idle-files 1000] [--idle-secs 30] [--keep]
//! ```
//!
//! PostgreSQL is measured when `LOGBELT_BENCH_POSTGRES_URL` (or `LOGBELT_TEST_POSTGRES_URL`) is an
//! admin URL: the bench creates `logbelt_bench_<pid>` there, recreates it before every
//! measurement, and drops it at the end. Temporary files go under `$TMPDIR` (default `/tmp`).
//!
//! Four parts, each printing a Markdown table (progress goes to stderr, tables to stdout):
//! 1. **Throughput**: N generated lines (~280 bytes, fixed-seed) in one file; `logbelt run --once`
//!    into a fresh database (wall time, peak RSS from `VmHWM`, CPU from `wait4`) against the
//!    ceiling: the same rows, pre-extracted before timing, loaded by one prepared INSERT in one
//!    transaction (SQLite) or by binary COPY in 10,000-row chunks in one transaction
//!    (PostgreSQL). Median of `--runs`.
//! 2. **Stall**: `logbelt run` on the same file, without and then with the database stalled for
//!    `--stall-secs` once 20% of the file is committed; RSS sampled every 100 ms.
//! 3. **Latency**: `--latency-rate` lines/s for `--latency-secs`, each carrying its write time;
//!    `ingested_at − written_at` per row.
//! 4. **Idle**: `--idle-files` small files, already ingested; logbelt's CPU over `--idle-secs`.
//!
//! Numbers from a shared, noisy machine: compare ratios taken in one run, not absolute numbers
//! across days (the load average is printed first for that reason).

use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Utc};
use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sql_types::BigInt;

/// The binary under test, built by cargo with the bench's profile.
const LOGBELT: &str = env!("CARGO_BIN_EXE_logbelt");
/// `[agent] host` in every config, and the `host` the ceiling inserts.
const HOST: &str = "bench";
/// `[[sources]] name` in every config, and the `source` the ceiling inserts.
const SOURCE: &str = "bench";
/// The default `pipeline.flush_interval_ms`, written explicitly into the latency config.
const FLUSH_INTERVAL_MS: u64 = 200;
/// Rows per COPY statement in the PostgreSQL ceiling (ARCHITECTURE.md §8: the fastest chunk size).
const COPY_CHUNK_ROWS: usize = 10_000;
/// The stall starts once this share of the input file is committed.
const STALL_AT_FRACTION: f64 = 0.2;
/// RSS sampling period of the daemon runs.
const SAMPLE_EVERY: Duration = Duration::from_millis(100);
/// Lines in each idle file.
const IDLE_LINES_PER_FILE: usize = 3;
/// Wait after the idle files are ingested before the CPU window starts.
const IDLE_SETTLE: Duration = Duration::from_secs(3);
/// How long a graceful exit after SIGINT may take before the bench calls it a failure.
const EXIT_DEADLINE: Duration = Duration::from_secs(60);

// =============================================================================================
// Options
// =============================================================================================

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "SQLite",
            Backend::Postgres => "PostgreSQL",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Throughput,
    Stall,
    Latency,
    Idle,
}

const ALL_PARTS: [Part; 4] = [Part::Throughput, Part::Stall, Part::Latency, Part::Idle];

/// The command line, after `cargo bench --bench pipeline --`.
#[derive(Debug)]
struct Options {
    lines: usize,
    backends: Vec<Backend>,
    parts: Vec<Part>,
    runs: usize,
    stall_secs: u64,
    latency_secs: u64,
    latency_rate: u64,
    idle_files: usize,
    idle_secs: u64,
    /// Admin URL of the PostgreSQL server, when one is configured.
    pg_admin: Option<String>,
    /// Keep every measurement's folder (configs, databases, logbelt's logs) for inspection.
    keep: bool,
}

const USAGE: &str = "usage: cargo bench --bench pipeline -- [--lines N] \
[--backend sqlite|postgres|both] [--only throughput|stall|latency|idle[,...]] [--runs N] \
[--stall-secs S] [--latency-secs S] [--latency-rate LINES_PER_S] [--idle-files N] [--idle-secs S] \
[--keep]
PostgreSQL: set LOGBELT_BENCH_POSTGRES_URL or LOGBELT_TEST_POSTGRES_URL to an admin URL.";

impl Options {
    /// Parses `std::env::args`; exits 2 with the usage on a bad argument.
    fn from_args() -> Options {
        match Options::parse(std::env::args().skip(1)) {
            Ok(o) => o,
            Err(e) => {
                eprintln!("pipeline bench: {e}\n{USAGE}");
                std::process::exit(2);
            }
        }
    }

    fn parse(args: impl Iterator<Item = String>) -> Result<Options, String> {
        let pg_admin = ["LOGBELT_BENCH_POSTGRES_URL", "LOGBELT_TEST_POSTGRES_URL"]
            .iter()
            .find_map(|v| std::env::var(v).ok().filter(|u| !u.is_empty()));
        let mut o = Options {
            lines: 1_000_000,
            backends: Vec::new(),
            parts: Vec::new(),
            runs: 3,
            stall_secs: 10,
            latency_secs: 30,
            latency_rate: 100,
            idle_files: 1000,
            idle_secs: 30,
            pg_admin,
            keep: false,
        };
        let mut backend = None;
        let mut args = args.peekable();
        while let Some(arg) = args.next() {
            // `cargo bench` passes `--bench` to every harness-less bench.
            if arg == "--bench" {
                continue;
            }
            if arg == "--keep" {
                o.keep = true;
                continue;
            }
            if arg == "-h" || arg == "--help" {
                println!("{USAGE}");
                std::process::exit(0);
            }
            let (key, inline) = match arg.split_once('=') {
                Some((k, v)) => (k.to_string(), Some(v.to_string())),
                None => (arg.clone(), None),
            };
            let mut value = || {
                inline
                    .clone()
                    .or_else(|| args.next())
                    .ok_or_else(|| format!("{key} needs a value"))
            };
            match key.as_str() {
                "--lines" => o.lines = number(&key, &value()?)?,
                "--runs" => o.runs = number(&key, &value()?)?,
                "--stall-secs" => o.stall_secs = number(&key, &value()?)?,
                "--latency-secs" => o.latency_secs = number(&key, &value()?)?,
                "--latency-rate" => o.latency_rate = number(&key, &value()?)?,
                "--idle-files" => o.idle_files = number(&key, &value()?)?,
                "--idle-secs" => o.idle_secs = number(&key, &value()?)?,
                "--backend" => backend = Some(value()?),
                "--only" => {
                    for p in value()?.split(',') {
                        let part = match p.trim() {
                            "throughput" => Part::Throughput,
                            "stall" => Part::Stall,
                            "latency" => Part::Latency,
                            "idle" => Part::Idle,
                            other => return Err(format!("--only: unknown part `{other}`")),
                        };
                        if !o.parts.contains(&part) {
                            o.parts.push(part);
                        }
                    }
                }
                _ => return Err(format!("unknown argument `{arg}`")),
            }
        }
        if o.lines == 0 || o.runs == 0 || o.latency_rate == 0 || o.idle_files == 0 {
            return Err("--lines, --runs, --latency-rate and --idle-files must be > 0".into());
        }
        if o.parts.is_empty() {
            o.parts = ALL_PARTS.to_vec();
        } else {
            o.parts
                .sort_by_key(|p| ALL_PARTS.iter().position(|q| q == p));
        }
        let no_pg = "PostgreSQL asked for, but neither LOGBELT_BENCH_POSTGRES_URL nor \
                     LOGBELT_TEST_POSTGRES_URL is set";
        o.backends = match backend.as_deref() {
            None if o.pg_admin.is_some() => vec![Backend::Sqlite, Backend::Postgres],
            None | Some("sqlite") => vec![Backend::Sqlite],
            Some("postgres") if o.pg_admin.is_some() => vec![Backend::Postgres],
            Some("both") if o.pg_admin.is_some() => vec![Backend::Sqlite, Backend::Postgres],
            Some("postgres" | "both") => return Err(no_pg.into()),
            Some(other) => return Err(format!("--backend: unknown backend `{other}`")),
        };
        Ok(o)
    }
}

/// A non-negative integer; `_` and `,` are allowed as digit separators (`1_000_000`).
fn number<T: std::str::FromStr>(key: &str, text: &str) -> Result<T, String> {
    let digits: String = text.chars().filter(|c| *c != '_' && *c != ',').collect();
    digits
        .parse()
        .map_err(|_| format!("{key}: expected a non-negative integer, found `{text}`"))
}

// =============================================================================================
// Main
// =============================================================================================

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
        .any(|p| matches!(p, Part::Throughput | Part::Stall));
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
struct Bench {
    opts: Options,
    work: PathBuf,
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
    fn fresh(&mut self, backend: Backend, label: &str) -> Result<(DbSpec, PathBuf), String> {
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

    fn fail(&mut self, what: String) {
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
    let sqlite_version = sqlite::version();
    println!("# logbelt pipeline benchmark\n");
    println!(
        "- load average at start: {} (1, 5, 15 min) on {cores} cores, {:.1} GiB RAM",
        load_average(),
        mem_kib as f64 / 1024.0 / 1024.0
    );
    println!("- logbelt {commit} ({LOGBELT})");
    println!("- SQLite {sqlite_version} (bundled)");
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

// =============================================================================================
// Input: deterministic, realistic JSON lines
// =============================================================================================

/// splitmix64: a tiny, fixed-seed PRNG, so every run and every machine gets the same lines.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// True with probability `percent`/100.
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

const SERVICES: &[&str] = &[
    "checkout",
    "orders",
    "payments",
    "search",
    "auth",
    "inventory",
    "gateway",
    "notifications",
];
const PATHS: &[&str] = &[
    "/api/v1/orders",
    "/api/v1/users",
    "/api/v1/cart/items",
    "/api/v1/search",
    "/api/v2/payments",
    "/api/v1/inventory/sku",
];
const TAGS: &[&str] = &[
    "retry",
    "cache-miss",
    "canary",
    "eu-west-1",
    "slow",
    "batch",
];

/// Generates log lines: `timestamp` (RFC 3339, ms), `level`, `message`, `service`, `host`,
/// `request_id`, `latency_ms`, a nested `http` object, sometimes a `tags` array or an
/// `error` object with an array, rarely an escaped quote or non-ASCII text in the message.
struct LineGen {
    rng: SplitMix64,
    ts_micros: i64,
}

impl LineGen {
    fn new(seed: u64) -> LineGen {
        LineGen {
            rng: SplitMix64(seed),
            // 2026-11-25T08:00:00Z
            ts_micros: days_from_civil(2026, 11, 25) * 86_400_000_000 + 8 * 3_600_000_000,
        }
    }

    /// One line, with its final newline. `written_at_us`, when given, is added as a field.
    fn line(&mut self, written_at_us: Option<i64>) -> String {
        let r = &mut self.rng;
        self.ts_micros += 1_000 + r.below(2_000) as i64;
        let level = match r.below(100) {
            0..=9 => "debug",
            10..=84 => "info",
            85..=94 => "warn",
            _ => "error",
        };
        let service = r.pick(SERVICES);
        let upstream = r.pick(SERVICES);
        let method = match r.below(20) {
            0..=13 => "GET",
            14..=17 => "POST",
            18 => "PUT",
            _ => "DELETE",
        };
        let path = r.pick(PATHS);
        let id = 10_000 + r.below(90_000);
        let status = match level {
            "warn" => [404, 409, 429][r.below(3) as usize],
            "error" => [500, 502, 503, 504][r.below(4) as usize],
            _ => [200, 200, 200, 201, 204, 304][r.below(6) as usize],
        };
        let latency = r.below(2_500_000) as f64 / 1000.0;
        let mut message = match level {
            "debug" => format!(
                "cache {} for key user:{id}",
                if r.chance(50) { "hit" } else { "miss" }
            ),
            "info" => format!("{method} request completed"),
            "warn" => format!("slow response from upstream \\\"{upstream}\\\" ({latency:.0} ms)"),
            _ => format!("upstream {upstream} timed out after {latency:.0} ms"),
        };
        if r.chance(1) {
            message.push_str(" — Zahlung für Bestellung abgelehnt");
        }
        let mut s = String::with_capacity(400);
        let _ = write!(
            s,
            "{{\"timestamp\":\"{}\",\"level\":\"{level}\",\"message\":\"{message}\",\
             \"service\":\"{service}\",\"host\":\"{service}-{:02}\",\"request_id\":\"{:016x}\",\
             \"latency_ms\":{latency:.1},\"http\":{{\"method\":\"{method}\",\"path\":\"{path}/{id}\",\
             \"status\":{status},\"bytes\":{}}}",
            format_rfc3339(self.ts_micros, 3),
            r.below(16),
            r.next(),
            r.below(200_000),
        );
        if r.chance(20) {
            let _ = write!(s, ",\"tags\":[\"{}\",\"{}\"]", r.pick(TAGS), r.pick(TAGS));
        }
        if level == "error" {
            let _ = write!(
                s,
                ",\"error\":{{\"kind\":\"timeout\",\"retries\":[100,200,400]}}"
            );
        }
        if let Some(w) = written_at_us {
            let _ = write!(s, ",\"written_at_us\":{w}");
        }
        s.push_str("}\n");
        s
    }
}

/// The generated input file.
struct Input {
    /// The folder holding only `bench.jsonl`.
    logs: PathBuf,
    path: PathBuf,
    lines: usize,
    bytes: u64,
    /// The first line, to show what the input looks like.
    sample: String,
}

impl Input {
    fn generate(dir: &Path, lines: usize) -> Input {
        let logs = dir.join("logs");
        fs::create_dir_all(&logs).expect("create the input folder");
        let path = logs.join("bench.jsonl");
        let file = File::create(&path).expect("create the input file");
        let mut out = BufWriter::with_capacity(1 << 20, file);
        let mut gen = LineGen::new(0x6c6f_6762_656c_7400);
        let mut bytes = 0u64;
        let mut sample = String::new();
        for i in 0..lines {
            let line = gen.line(None);
            if i == 0 {
                sample = line.trim_end().to_string();
            }
            bytes += line.len() as u64;
            out.write_all(line.as_bytes())
                .expect("write the input file");
        }
        out.flush().expect("write the input file");
        Input {
            logs,
            path,
            lines,
            bytes,
            sample,
        }
    }

    /// The include pattern for a config.
    fn include(&self) -> String {
        format!("{}/*.jsonl", self.logs.display())
    }
}

// =============================================================================================
// Databases: where each measurement writes, and the bench's own connections
// =============================================================================================

/// One database as logbelt's config names it.
#[derive(Debug, Clone)]
enum DbSpec {
    Sqlite { path: PathBuf },
    Postgres { url: String },
}

impl DbSpec {
    fn config_url(&self) -> String {
        match self {
            DbSpec::Sqlite { path } => format!("sqlite://{}", path.display()),
            DbSpec::Postgres { url } => url.clone(),
        }
    }

    /// Connects the bench to the database (the SQLite file must exist: logbelt creates it).
    fn connect(&self) -> Result<Db, String> {
        match self {
            DbSpec::Sqlite { path } => sqlite::Conn::open(path, false).map(Db::Sqlite),
            DbSpec::Postgres { url } => PgConnection::establish(url)
                .map(Db::Pg)
                .map_err(|e| format!("connect to the bench database: {e}")),
        }
    }

    /// Connects once logbelt has created its tables (polling until `deadline`).
    fn connect_when_migrated(&self, deadline: Instant) -> Result<Db, String> {
        loop {
            let tried = self
                .connect()
                .and_then(|mut db| db.scalar("SELECT count(*) AS v FROM files").map(|_| db));
            match tried {
                Ok(db) => return Ok(db),
                Err(e) if Instant::now() > deadline => {
                    return Err(format!("logbelt's tables never appeared: {e}"))
                }
                Err(_) => thread::sleep(Duration::from_millis(50)),
            }
        }
    }
}

/// A bench-side connection.
enum Db {
    Sqlite(sqlite::Conn),
    Pg(PgConnection),
}

#[derive(QueryableByName)]
struct Scalar {
    #[diesel(sql_type = BigInt)]
    v: i64,
}

impl Db {
    /// The single integer `v` of a one-row query.
    fn scalar(&mut self, sql: &str) -> Result<i64, String> {
        match self {
            Db::Sqlite(c) => c.scalar_i64(sql),
            Db::Pg(c) => diesel::sql_query(sql)
                .get_result::<Scalar>(c)
                .map(|s| s.v)
                .map_err(|e| format!("{sql}: {e}")),
        }
    }

    fn exec(&mut self, sql: &str) -> Result<(), String> {
        match self {
            Db::Sqlite(c) => c.exec(sql),
            Db::Pg(c) => c.batch_execute(sql).map_err(|e| format!("{sql}: {e}")),
        }
    }

    fn events(&mut self) -> Result<i64, String> {
        self.scalar("SELECT count(*) AS v FROM log_events")
    }

    fn dead_letters(&mut self) -> Result<i64, String> {
        self.scalar("SELECT count(*) AS v FROM dead_letters")
    }

    /// Bytes committed, all files together: cheap to poll, and readable while `log_events` is
    /// locked.
    fn committed_bytes(&mut self) -> Result<i64, String> {
        self.scalar("SELECT CAST(COALESCE(SUM(committed_offset), 0) AS BIGINT) AS v FROM files")
    }
}

/// The PostgreSQL database `logbelt_bench_<pid>`, recreated for every measurement and dropped
/// on drop.
struct PgBenchDb {
    admin_url: String,
    name: String,
}

impl PgBenchDb {
    fn new(admin_url: String) -> PgBenchDb {
        PgBenchDb {
            admin_url,
            name: format!("logbelt_bench_{}", std::process::id()),
        }
    }

    fn admin(&self) -> Result<PgConnection, String> {
        PgConnection::establish(&self.admin_url)
            .map_err(|e| format!("connect to the PostgreSQL admin URL: {e}"))
    }

    /// Drops and creates the database; returns its URL.
    fn recreate(&mut self) -> Result<String, String> {
        let mut admin = self.admin()?;
        let name = &self.name;
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
            .map_err(|e| format!("drop database {name}: {e}"))?;
        admin
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .map_err(|e| format!("create database {name}: {e}"))?;
        Ok(with_database(&self.admin_url, name))
    }

    fn server_version(&self) -> String {
        #[derive(QueryableByName)]
        struct Version {
            #[diesel(sql_type = diesel::sql_types::Text)]
            v: String,
        }
        self.admin()
            .and_then(|mut c| {
                diesel::sql_query("SELECT version() AS v")
                    .get_result::<Version>(&mut c)
                    .map_err(|e| e.to_string())
            })
            .map(|v| v.v)
            .unwrap_or_else(|e| format!("PostgreSQL: version unknown ({e})"))
    }
}

impl Drop for PgBenchDb {
    fn drop(&mut self) {
        let name = &self.name;
        let dropped = self.admin().and_then(|mut c| {
            c.batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                .map_err(|e| e.to_string())
        });
        if let Err(e) = dropped {
            eprintln!("warning: cannot drop the bench database {name}: {e}");
        }
    }
}

/// `url` with its database name replaced by `name` (query parameters kept).
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let authority = base.find("://").map_or(0, |i| i + 3);
    let prefix = match base[authority..].find('/') {
        Some(i) => &base[..authority + i],
        None => base,
    };
    match query {
        Some(q) => format!("{prefix}/{name}?{q}"),
        None => format!("{prefix}/{name}"),
    }
}

/// Writes `dir/logbelt.toml`: the database, one source `bench` with `include`, host `bench`,
/// and `extra` appended (e.g. a `[pipeline]` table).
fn write_config(dir: &Path, db: &DbSpec, include: &str, extra: &str) -> PathBuf {
    let path = dir.join("logbelt.toml");
    let text = format!(
        "[database]\nurl = {}\n\n[agent]\nhost = {}\n\n[[sources]]\nname = {}\ninclude = [{}]\n\n{extra}",
        toml_str(&db.config_url()),
        toml_str(HOST),
        toml_str(SOURCE),
        toml_str(include),
    );
    fs::write(&path, text).expect("write the bench's logbelt.toml");
    path
}

fn toml_str(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Creates logbelt's schema in `db` by running `logbelt run --once` on an empty folder.
fn create_schema(dir: &Path, db: &DbSpec) -> Result<(), String> {
    let empty = dir.join("empty");
    fs::create_dir_all(&empty).map_err(|e| format!("create {}: {e}", empty.display()))?;
    let config = write_config(dir, db, &format!("{}/*.jsonl", empty.display()), "");
    let mut child = Logbelt::spawn(&config, true, &dir.join("schema.log"))?;
    let exit = child.wait(Duration::from_secs(60))?;
    if exit.code != Some(0) {
        return Err(format!(
            "logbelt run --once on an empty folder (to create the schema) {}\n{}",
            exit.describe(),
            child.log_tail()
        ));
    }
    Ok(())
}

// =============================================================================================
// The child process: spawn, wait4, /proc sampling, signals
// =============================================================================================

/// A running `logbelt` child. Killed (SIGKILL) and reaped on drop if still running.
struct Logbelt {
    pid: libc::pid_t,
    /// Kept so its pipes/handles live as long as the process; reaped with `wait4`, not by it.
    _child: std::process::Child,
    log: PathBuf,
    reaped: bool,
    /// The largest `VmHWM` read so far (KiB); see [`Exit::peak_rss_kib`].
    hwm_kib: u64,
    last_sample: Option<Instant>,
}

/// Period of the `VmHWM` reads while waiting for a child.
const HWM_SAMPLE_EVERY: Duration = Duration::from_millis(10);

/// How a child ended, with its resource usage.
#[derive(Debug, Clone, Copy)]
struct Exit {
    code: Option<i32>,
    signal: Option<i32>,
    /// Peak RSS of the child (KiB): its `VmHWM`, read every 10 ms while the bench waits and
    /// last read just before the exit. Not `ru_maxrss`: Linux carries the pre-`exec` high-water
    /// mark over `exec`, and the child starts as a copy of the bench's address space (hundreds of
    /// MiB of input and extracted rows), so `ru_maxrss` reports the bench, not logbelt.
    peak_rss_kib: u64,
    /// User + system CPU time.
    cpu: Duration,
}

impl Exit {
    fn describe(&self) -> String {
        match (self.code, self.signal) {
            (Some(c), _) => format!("exited with {c}"),
            (_, Some(s)) => format!("was killed by signal {s}"),
            _ => "ended".into(),
        }
    }
}

impl Logbelt {
    /// `logbelt run --config CONFIG [--once]`, stdout and stderr into `log`.
    fn spawn(config: &Path, once: bool, log: &Path) -> Result<Logbelt, String> {
        let out = File::create(log).map_err(|e| format!("create {}: {e}", log.display()))?;
        let err = out
            .try_clone()
            .map_err(|e| format!("clone {}: {e}", log.display()))?;
        let mut cmd = Command::new(LOGBELT);
        cmd.arg("run").arg("--config").arg(config);
        if once {
            cmd.arg("--once");
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("start {LOGBELT}: {e}"))?;
        Ok(Logbelt {
            pid: child.id() as libc::pid_t,
            _child: child,
            log: log.to_path_buf(),
            reaped: false,
            hwm_kib: 0,
            last_sample: None,
        })
    }

    /// Reads `VmHWM` if the last read is older than [`HWM_SAMPLE_EVERY`] (a zombie has none:
    /// the last read before the exit stays).
    fn sample_hwm(&mut self) {
        if self
            .last_sample
            .is_some_and(|t| t.elapsed() < HWM_SAMPLE_EVERY)
        {
            return;
        }
        self.last_sample = Some(Instant::now());
        if let Some(hwm) = self.status_kib("VmHWM:") {
            self.hwm_kib = self.hwm_kib.max(hwm);
        }
    }

    /// Reaps the child if it has exited.
    fn try_wait(&mut self) -> Result<Option<Exit>, String> {
        if self.reaped {
            return Err("logbelt was already reaped".into());
        }
        self.sample_hwm();
        let mut status: libc::c_int = 0;
        // SAFETY: rusage is plain data; wait4 fills it.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: pid is our own child; status and ru are valid for writes.
        let r = unsafe { libc::wait4(self.pid, &mut status, libc::WNOHANG, &mut ru) };
        if r == 0 {
            return Ok(None);
        }
        if r < 0 {
            return Err(format!("wait4: {}", std::io::Error::last_os_error()));
        }
        self.reaped = true;
        let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
        Ok(Some(Exit {
            code: libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status)),
            signal: libc::WIFSIGNALED(status).then(|| libc::WTERMSIG(status)),
            peak_rss_kib: self.hwm_kib,
            cpu: tv(ru.ru_utime) + tv(ru.ru_stime),
        }))
    }

    /// Waits for the child to exit (polling every millisecond, reading `VmHWM` every 10), up to
    /// `timeout`.
    fn wait(&mut self, timeout: Duration) -> Result<Exit, String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(exit) = self.try_wait()? {
                return Ok(exit);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "logbelt (pid {}) did not exit within {timeout:?}\n{}",
                    self.pid,
                    self.log_tail()
                ));
            }
            thread::sleep(Duration::from_millis(1));
        }
    }

    /// Fails if the child has exited (it should be running).
    fn assert_running(&mut self) -> Result<(), String> {
        match self.try_wait()? {
            None => Ok(()),
            Some(exit) => Err(format!(
                "logbelt {} unexpectedly\n{}",
                exit.describe(),
                self.log_tail()
            )),
        }
    }

    fn signal(&self, sig: libc::c_int) {
        if !self.reaped {
            // SAFETY: kill(2) on our own, not yet reaped child.
            unsafe { libc::kill(self.pid, sig) };
        }
    }

    /// SIGINT, then waits for the graceful exit; returns it and how long it took.
    fn interrupt(&mut self) -> Result<(Exit, Duration), String> {
        self.last_sample = None;
        self.sample_hwm();
        let start = Instant::now();
        self.signal(libc::SIGINT);
        let exit = self.wait(EXIT_DEADLINE)?;
        Ok((exit, start.elapsed()))
    }

    /// A `VmRSS:`-style field of `/proc/<pid>/status`, in KiB.
    fn status_kib(&self, key: &str) -> Option<u64> {
        proc_field_kib(&format!("/proc/{}/status", self.pid), key)
    }

    /// utime + stime of `/proc/<pid>/stat`, in clock ticks (all threads).
    fn cpu_ticks(&self) -> Result<u64, String> {
        let path = format!("/proc/{}/stat", self.pid);
        let stat = fs::read_to_string(&path).map_err(|e| format!("read {path}: {e}"))?;
        // Fields after the `(comm)`: state is field 3, utime 14, stime 15.
        let after = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest)
            .ok_or_else(|| format!("{path}: unexpected format"))?;
        let fields: Vec<&str> = after.split_whitespace().collect();
        let get = |i: usize| -> Result<u64, String> {
            fields
                .get(i)
                .and_then(|f| f.parse().ok())
                .ok_or_else(|| format!("{path}: no field {}", i + 3))
        };
        Ok(get(11)? + get(12)?)
    }

    fn open_fds(&self) -> Option<usize> {
        fs::read_dir(format!("/proc/{}/fd", self.pid))
            .ok()
            .map(|d| d.count())
    }

    /// The last lines of the child's output, for error messages.
    fn log_tail(&self) -> String {
        let mut text = String::new();
        if let Ok(mut f) = File::open(&self.log) {
            let len = f.metadata().map(|m| m.len()).unwrap_or(0);
            let _ = f.seek(SeekFrom::Start(len.saturating_sub(4000)));
            let _ = f.read_to_string(&mut text);
        }
        format!("--- tail of {} ---\n{text}", self.log.display())
    }
}

impl Drop for Logbelt {
    fn drop(&mut self) {
        if !self.reaped {
            self.signal(libc::SIGKILL);
            let mut status = 0;
            // SAFETY: reaping our own killed child.
            unsafe { libc::waitpid(self.pid, &mut status, 0) };
        }
    }
}

/// A `Key:  123 kB` field of a /proc file, in KiB.
fn proc_field_kib(path: &str, key: &str) -> Option<u64> {
    let text = fs::read_to_string(path).ok()?;
    let line = text.lines().find(|l| l.starts_with(key))?;
    line[key.len()..].split_whitespace().next()?.parse().ok()
}

fn clock_ticks_per_sec() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

// =============================================================================================
// Part 1: throughput against the ceiling
// =============================================================================================

mod throughput {
    use super::*;

    /// One row as logbelt would store it, extracted before the ceiling's timing starts.
    pub struct Row<'a> {
        offset: i64,
        ts_micros: Option<i64>,
        ts_text: Option<String>,
        level: Option<String>,
        message: Option<String>,
        /// The line itself (logbelt stores the whole object as written).
        fields: &'a str,
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
                ts_text: ts_micros.map(|t| format_rfc3339(t, 6)),
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
        let (spec, dir) = bench.fresh(backend, label)?;
        let config = write_config(&dir, &spec, &input.include(), "");
        let start = Instant::now();
        let mut child = Logbelt::spawn(&config, true, &dir.join("logbelt.log"))?;
        let exit = child.wait(ingest_deadline(input.lines))?;
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
        if events != input.lines as i64 || dead != 0 {
            return Err(format!(
                "logbelt stored {events} rows and {dead} dead letters, expected {} rows",
                input.lines
            ));
        }
        Ok((time, exit))
    }

    /// SQLite's ceiling: one prepared INSERT reused for every row, in one transaction, WAL and
    /// `synchronous=NORMAL` as logbelt sets them. Times prepare, inserts, commit and close (the
    /// close checkpoints the WAL, as logbelt's exit does).
    fn sqlite_ceiling(path: &Path, rows: &[Row<'_>]) -> Result<Duration, String> {
        use sqlite::Value::{Int, Null, Text};
        let conn = sqlite::Conn::open(path, false)?;
        conn.exec("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;")?;
        let ingested_at = format_rfc3339(now_micros(), 6);
        fn opt(v: &Option<String>) -> sqlite::Value<'_> {
            v.as_deref().map_or(Null, Text)
        }
        let start = Instant::now();
        conn.exec("BEGIN")?;
        {
            let mut insert = conn.prepare(
                "INSERT INTO log_events \
                 (host, source, file_id, file_offset, ts, level, message, fields, ingested_at) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )?;
            for r in rows {
                insert.execute(&[
                    Text(HOST),
                    Text(SOURCE),
                    Int(1),
                    Int(r.offset),
                    opt(&r.ts_text),
                    opt(&r.level),
                    opt(&r.message),
                    Text(r.fields),
                    Text(&ingested_at),
                ])?;
            }
        }
        conn.exec("COMMIT")?;
        conn.close()?;
        Ok(start.elapsed())
    }

    /// PostgreSQL's ceiling: binary COPY (`diesel::copy_from(..).from_insertable(..)`) in
    /// 10,000-row chunks, in one transaction. Times the transaction.
    fn pg_ceiling(url: &str, rows: &[Row<'_>]) -> Result<Duration, String> {
        let mut conn =
            PgConnection::establish(url).map_err(|e| format!("connect for the ceiling: {e}"))?;
        let ingested_at = Utc::now();
        let events: Vec<PgEvent<'_>> = rows
            .iter()
            .map(|r| PgEvent {
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
            for chunk in events.chunks(COPY_CHUNK_ROWS) {
                diesel::copy_from(logbelt::db::schema::postgres::log_events::table)
                    .from_insertable(chunk)
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
}

// The PostgreSQL ceiling writes into logbelt's own table, with logbelt's `RawJson` (a JSON text
// sent to `jsonb` as is), so that the two sides load the very same columns.
use logbelt::db::postgres::RawJson;

#[derive(Insertable)]
#[diesel(table_name = logbelt::db::schema::postgres::log_events)]
#[diesel(treat_none_as_default_value = false)]
struct PgEvent<'a> {
    host: &'a str,
    source: &'a str,
    file_id: i64,
    file_offset: i64,
    ts: Option<DateTime<Utc>>,
    level: Option<&'a str>,
    message: Option<&'a str>,
    fields: RawJson<'a>,
    ingested_at: DateTime<Utc>,
}

// =============================================================================================
// Part 2: a stalled database — bounded memory, and reading resumes
// =============================================================================================

mod stall {
    use super::*;

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
                return Err(
                    "logbelt finished before the stall could start: use more --lines".into(),
                );
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
}

// =============================================================================================
// Part 3: latency at light load
// =============================================================================================

mod latency {
    use super::*;

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
        let mut child = Logbelt::spawn(&config, false, &dir.join("logbelt.log"))?;
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut db = spec.connect_when_migrated(deadline)?;
        wait_rows(&mut db, &mut child, 1, deadline)?;

        let mut file = fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(|e| format!("open {}: {e}", path.display()))?;
        let n = (bench.opts.latency_rate * bench.opts.latency_secs) as usize;
        let period = Duration::from_secs_f64(1.0 / bench.opts.latency_rate as f64);
        let start = Instant::now();
        for i in 0..n {
            let due = start + period * i as u32;
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                thread::sleep(wait);
            }
            let line = gen.line(Some(now_micros()));
            // One write(2) per line: logbelt never sees half a line.
            file.write_all(line.as_bytes())
                .map_err(|e| format!("append to {}: {e}", path.display()))?;
            if i % 100 == 0 {
                child.assert_running()?;
            }
        }
        wait_rows(
            &mut db,
            &mut child,
            1 + n as i64,
            Instant::now() + Duration::from_secs(30),
        )?;
        let mut latencies = match (&mut db, &spec) {
            (Db::Sqlite(c), _) => {
                let mut out = Vec::with_capacity(n);
                let mut q = c.prepare(
                    "SELECT json_extract(fields, '$.written_at_us'), ingested_at FROM log_events \
                     WHERE json_extract(fields, '$.written_at_us') IS NOT NULL",
                )?;
                while q.next_row()? {
                    let written = q.column_i64(0);
                    let ingested = q.column_text(1).unwrap_or_default();
                    let ingested = parse_rfc3339_micros(&ingested)
                        .ok_or_else(|| format!("unparseable ingested_at `{ingested}`"))?;
                    out.push(ingested - written);
                }
                out
            }
            (Db::Pg(c), _) => diesel::sql_query(
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
        let (exit, _) = child.interrupt()?;
        if exit.code != Some(0) {
            return Err(format!(
                "logbelt {} after SIGINT\n{}",
                exit.describe(),
                child.log_tail()
            ));
        }
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

    fn print_table(bench: &Bench, results: &[(Backend, Result_)]) {
        let target = FLUSH_INTERVAL_MS + 100;
        println!(
            "\n## Latency: {} lines/s for {} s, `flush_interval_ms = {FLUSH_INTERVAL_MS}`\n",
            bench.opts.latency_rate, bench.opts.latency_secs
        );
        println!(
            "| backend | lines | p50 | p99 | max | target (flush_interval_ms + 100) | peak RSS |"
        );
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
}

// =============================================================================================
// Part 4: idle cost of many tailed files
// =============================================================================================

mod idle {
    use super::*;

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
}

/// Polls until `log_events` holds `n` rows (fails if it holds more, if logbelt exits, or at the
/// deadline).
fn wait_rows(db: &mut Db, child: &mut Logbelt, n: i64, deadline: Instant) -> Result<(), String> {
    loop {
        child.assert_running()?;
        let rows = db.events()?;
        if rows == n {
            return Ok(());
        }
        if rows > n {
            return Err(format!(
                "{rows} rows stored, expected {n}: lines stored twice?"
            ));
        }
        if Instant::now() > deadline {
            return Err(format!(
                "{rows} of {n} rows at the deadline\n{}",
                child.log_tail()
            ));
        }
        thread::sleep(Duration::from_millis(20));
    }
}

// =============================================================================================
// SQLite through the C API (the ceiling, and the bench's reads and locks)
// =============================================================================================

mod sqlite {
    use std::ffi::{CStr, CString};
    use std::os::unix::ffi::OsStrExt;
    use std::path::Path;
    use std::ptr;

    use libsqlite3_sys as ffi;

    /// The linked SQLite's version.
    pub fn version() -> String {
        // SAFETY: sqlite3_libversion returns a static NUL-terminated string.
        unsafe { CStr::from_ptr(ffi::sqlite3_libversion()) }
            .to_string_lossy()
            .into_owned()
    }

    /// One connection; closed on drop.
    pub struct Conn {
        db: *mut ffi::sqlite3,
    }

    /// A value to bind.
    pub enum Value<'a> {
        Null,
        Int(i64),
        /// Bound without copying (`SQLITE_STATIC`): it outlives the step that reads it.
        Text(&'a str),
    }

    impl Conn {
        /// Opens `path` read-write (creating it only if `create`), with a 10 s busy timeout.
        pub fn open(path: &Path, create: bool) -> Result<Conn, String> {
            let c_path = CString::new(path.as_os_str().as_bytes())
                .map_err(|_| format!("{}: NUL in path", path.display()))?;
            let mut flags = ffi::SQLITE_OPEN_READWRITE;
            if create {
                flags |= ffi::SQLITE_OPEN_CREATE;
            }
            let mut db = ptr::null_mut();
            // SAFETY: valid C string and out-pointer.
            let rc = unsafe { ffi::sqlite3_open_v2(c_path.as_ptr(), &mut db, flags, ptr::null()) };
            let conn = Conn { db };
            if rc != ffi::SQLITE_OK {
                return Err(format!("open {}: {}", path.display(), conn.errmsg()));
            }
            // SAFETY: open connection.
            unsafe { ffi::sqlite3_busy_timeout(db, 10_000) };
            Ok(conn)
        }

        fn errmsg(&self) -> String {
            if self.db.is_null() {
                return "out of memory".into();
            }
            // SAFETY: errmsg of a live connection is a valid C string.
            unsafe { CStr::from_ptr(ffi::sqlite3_errmsg(self.db)) }
                .to_string_lossy()
                .into_owned()
        }

        /// Runs one or more statements without results.
        pub fn exec(&self, sql: &str) -> Result<(), String> {
            let c_sql = CString::new(sql).map_err(|_| "NUL in SQL".to_string())?;
            // SAFETY: live connection, valid C string, no callback.
            let rc = unsafe {
                ffi::sqlite3_exec(
                    self.db,
                    c_sql.as_ptr(),
                    None,
                    ptr::null_mut(),
                    ptr::null_mut(),
                )
            };
            if rc != ffi::SQLITE_OK {
                return Err(format!("{sql}: {}", self.errmsg()));
            }
            Ok(())
        }

        pub fn prepare(&self, sql: &str) -> Result<Stmt<'_>, String> {
            let mut st = ptr::null_mut();
            // SAFETY: live connection; the SQL pointer and length describe valid UTF-8.
            let rc = unsafe {
                ffi::sqlite3_prepare_v2(
                    self.db,
                    sql.as_ptr().cast(),
                    sql.len() as i32,
                    &mut st,
                    ptr::null_mut(),
                )
            };
            if rc != ffi::SQLITE_OK {
                return Err(format!("prepare {sql}: {}", self.errmsg()));
            }
            Ok(Stmt { st, conn: self })
        }

        /// The first column of the first row, as an integer.
        pub fn scalar_i64(&self, sql: &str) -> Result<i64, String> {
            let mut st = self.prepare(sql)?;
            if !st.next_row()? {
                return Err(format!("{sql}: no row"));
            }
            Ok(st.column_i64(0))
        }

        /// Closes now (a close checkpoints the WAL when it is the last connection).
        pub fn close(mut self) -> Result<(), String> {
            // SAFETY: every statement of this connection is finalized (they borrow it).
            let rc = unsafe { ffi::sqlite3_close(self.db) };
            if rc != ffi::SQLITE_OK {
                return Err(format!("close: {}", self.errmsg()));
            }
            self.db = ptr::null_mut();
            Ok(())
        }
    }

    impl Drop for Conn {
        fn drop(&mut self) {
            if !self.db.is_null() {
                // SAFETY: statements borrow the connection, so they are finalized already.
                unsafe { ffi::sqlite3_close(self.db) };
            }
        }
    }

    /// A prepared statement; finalized on drop.
    pub struct Stmt<'c> {
        st: *mut ffi::sqlite3_stmt,
        conn: &'c Conn,
    }

    impl Stmt<'_> {
        /// Binds `values` to ?1…?n, runs the statement to completion, and resets it.
        pub fn execute(&mut self, values: &[Value<'_>]) -> Result<(), String> {
            for (i, v) in values.iter().enumerate() {
                let idx = i as i32 + 1;
                // SAFETY: live statement; text pointers stay valid until the step below, and the
                // statement is reset (and rebound before any further step) before we return.
                let rc = unsafe {
                    match v {
                        Value::Null => ffi::sqlite3_bind_null(self.st, idx),
                        Value::Int(n) => ffi::sqlite3_bind_int64(self.st, idx, *n),
                        Value::Text(s) => ffi::sqlite3_bind_text(
                            self.st,
                            idx,
                            s.as_ptr().cast(),
                            s.len() as i32,
                            ffi::SQLITE_STATIC(),
                        ),
                    }
                };
                if rc != ffi::SQLITE_OK {
                    return Err(format!("bind ?{idx}: {}", self.conn.errmsg()));
                }
            }
            // SAFETY: live statement.
            let rc = unsafe { ffi::sqlite3_step(self.st) };
            // SAFETY: live statement.
            unsafe { ffi::sqlite3_reset(self.st) };
            if rc != ffi::SQLITE_DONE {
                return Err(format!("step: {}", self.conn.errmsg()));
            }
            Ok(())
        }

        /// Steps to the next row: true if there is one.
        pub fn next_row(&mut self) -> Result<bool, String> {
            // SAFETY: live statement.
            match unsafe { ffi::sqlite3_step(self.st) } {
                ffi::SQLITE_ROW => Ok(true),
                ffi::SQLITE_DONE => Ok(false),
                _ => Err(format!("step: {}", self.conn.errmsg())),
            }
        }

        pub fn column_i64(&self, i: i32) -> i64 {
            // SAFETY: live statement positioned on a row.
            unsafe { ffi::sqlite3_column_int64(self.st, i) }
        }

        pub fn column_text(&self, i: i32) -> Option<String> {
            // SAFETY: live statement positioned on a row; the text is valid until the next step.
            unsafe {
                let p = ffi::sqlite3_column_text(self.st, i);
                if p.is_null() {
                    return None;
                }
                let len = ffi::sqlite3_column_bytes(self.st, i) as usize;
                let bytes = std::slice::from_raw_parts(p, len);
                Some(String::from_utf8_lossy(bytes).into_owned())
            }
        }
    }

    impl Drop for Stmt<'_> {
        fn drop(&mut self) {
            // SAFETY: finalizing our own statement once.
            unsafe { ffi::sqlite3_finalize(self.st) };
        }
    }
}

// =============================================================================================
// Time, formatting and statistics helpers
// =============================================================================================

fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_micros() as i64
}

/// A generous deadline for ingesting `lines` lines (20k lines/s, plus a minute).
fn ingest_deadline(lines: usize) -> Duration {
    Duration::from_secs(60 + lines as u64 / 20_000)
}

fn progress(msg: &str) {
    eprintln!("[pipeline bench] {msg}");
}

fn rate(lines: usize, time: Duration) -> f64 {
    lines as f64 / time.as_secs_f64()
}

fn median(values: &[Duration]) -> Duration {
    let mut v = values.to_vec();
    v.sort();
    match v.len() {
        0 => Duration::ZERO,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2,
    }
}

fn median_u64(values: impl Iterator<Item = u64>) -> u64 {
    let mut v: Vec<u64> = values.collect();
    v.sort_unstable();
    match v.len() {
        0 => 0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2,
    }
}

/// 1234567 → "1,234,567".
fn fmt_int(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn fmt_mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn fmt_secs_list(values: &[Duration]) -> String {
    values
        .iter()
        .map(|d| format!("{:.2}", d.as_secs_f64()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// (year, month, day) of a day count since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

/// `2026-11-25T08:00:00.123Z` (3 digits) or `…00.123456Z` (6 digits, logbelt's stored form).
fn format_rfc3339(micros: i64, digits: u32) -> String {
    let secs = micros.div_euclid(1_000_000);
    let frac = micros.rem_euclid(1_000_000);
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    let (h, mi, s) = (sod / 3600, sod % 3600 / 60, sod % 60);
    let frac = frac / 10_i64.pow(6 - digits);
    format!(
        "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{frac:0width$}Z",
        width = digits as usize
    )
}

/// `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)` → microseconds since the epoch.
fn parse_rfc3339_micros(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    if !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let num = |from: usize, to: usize| -> Option<i64> {
        let part = &b[from..to];
        if !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(part).ok()?.parse().ok()
    };
    let (y, mo, d) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (h, mi, se) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    let mut i = 19;
    let mut frac = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let digits = &b[start..i];
        for k in 0..6 {
            frac = frac * 10 + digits.get(k).map_or(0, |c| i64::from(c - b'0'));
        }
    }
    let offset_secs = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        sign @ (b'+' | b'-') if i + 6 == b.len() && b[i + 3] == b':' => {
            let off = num(i + 1, i + 3)? * 3600 + num(i + 4, i + 6)? * 60;
            if *sign == b'+' {
                off
            } else {
                -off
            }
        }
        _ => return None,
    };
    let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + se - offset_secs;
    Some(secs * 1_000_000 + frac)
}
