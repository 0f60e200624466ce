//! The search benchmark (issue 14): is `logbelt query` faster than `grep` over the raw files?
//!
//! ```sh
//! LOGBELT_BENCH_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test \
//!   cargo bench --bench search -- [--rows 10000000] [--backend sqlite|postgres|both] [--runs 3] [--keep]
//! ```
//!
//! It writes `--rows` generated JSON lines (~290 bytes, fixed seed, timestamps over the last 24
//! hours, into 4 files) with a rare token planted in 20 known lines, then, per backend:
//! 1. ingests them with the real binary (`run --once`) into a database with the search index
//!    (`[search] index = true`, the default) and into one without it (`index = false`), both
//!    timed: rows/s with against without;
//! 2. runs the same queries against both (`logbelt query`, a process each, median of `--runs`):
//!    the rare token, a common token with `--limit 100`, `--field http.status=500 --since 1h`,
//!    `--count --by level --bucket 1h`; each also as `grep -c` (and `rg -c` when installed) over
//!    the raw files;
//! 3. reports the index's size against the table's.
//!
//! Each query's answer is checked: the same count with and without the index, the rare token
//! exactly its 20 lines. PostgreSQL databases are `VACUUM ANALYZE`d after ingest (what
//! autovacuum does for a live one). Progress goes to stderr, Markdown tables to stdout.

#![forbid(unsafe_code)]

use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::BigInt;

// The pipeline benchmark's generator (this benchmark does not use all of it).
#[allow(dead_code)]
#[path = "pipeline/rng.rs"]
mod rng;
use rng::SplitMix64;

const LOGBELT: &str = env!("CARGO_BIN_EXE_logbelt");
const FILES: usize = 4;
const RARE: &str = "xylophone-7741";
const PLANTED: usize = 20;
const COMMON: &str = "timed out";

struct Options {
    rows: usize,
    sqlite: bool,
    postgres: Option<String>,
    runs: usize,
    keep: bool,
}

fn options() -> Options {
    let pg = std::env::var("LOGBELT_BENCH_POSTGRES_URL")
        .or_else(|_| std::env::var("LOGBELT_TEST_POSTGRES_URL"))
        .ok()
        .filter(|u| !u.is_empty());
    let mut o = Options {
        rows: 10_000_000,
        sqlite: true,
        postgres: pg.clone(),
        runs: 3,
        keep: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .unwrap_or_else(|| panic!("{name}: expected a value"))
        };
        match a.as_str() {
            "--rows" => {
                o.rows = value("--rows")
                    .replace('_', "")
                    .parse()
                    .expect("--rows: a number")
            }
            "--runs" => o.runs = value("--runs").parse().expect("--runs: a number"),
            "--backend" => match value("--backend").as_str() {
                "sqlite" => {
                    o.sqlite = true;
                    o.postgres = None;
                }
                "postgres" => {
                    o.sqlite = false;
                    o.postgres = Some(
                        pg.clone()
                            .expect("--backend postgres needs LOGBELT_BENCH_POSTGRES_URL"),
                    );
                }
                "both" => {
                    o.sqlite = true;
                    o.postgres = Some(
                        pg.clone()
                            .expect("--backend both needs LOGBELT_BENCH_POSTGRES_URL"),
                    );
                }
                other => panic!("--backend: sqlite, postgres or both, not {other}"),
            },
            "--keep" => o.keep = true,
            // cargo bench passes --bench.
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    o
}

fn progress(msg: &str) {
    eprintln!("[search bench] {msg}");
}

// ---------------------------------------------------------------------------------------------
// Input
// ---------------------------------------------------------------------------------------------

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
];

/// Writes the lines into `FILES` files under `dir`; returns their paths and total bytes.
fn generate(dir: &Path, rows: usize) -> (Vec<PathBuf>, u64) {
    fs::create_dir_all(dir).expect("create the logs folder");
    let paths: Vec<PathBuf> = (0..FILES)
        .map(|i| dir.join(format!("app-{i}.jsonl")))
        .collect();
    let mut outs: Vec<BufWriter<File>> = paths
        .iter()
        .map(|p| BufWriter::with_capacity(1 << 20, File::create(p).expect("create a log file")))
        .collect();
    let mut r = SplitMix64(42);
    let end = chrono::Utc::now().timestamp_micros();
    let span: i64 = 24 * 3600 * 1_000_000;
    let plant_every = rows / PLANTED;
    let mut bytes = 0u64;
    let mut s = String::with_capacity(512);
    for i in 0..rows {
        s.clear();
        let ts = end - span + (span as i128 * i as i128 / rows as i128) as i64;
        let t = chrono::DateTime::from_timestamp_micros(ts)
            .expect("a time")
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let level = match r.below(100) {
            0..=9 => "debug",
            10..=84 => "info",
            85..=94 => "warn",
            _ => "error",
        };
        let service = r.pick(SERVICES);
        let upstream = r.pick(SERVICES);
        let path = r.pick(PATHS);
        let id = 10_000 + r.below(90_000);
        let status = match level {
            "warn" => [404, 409, 429][r.below(3) as usize],
            "error" => [500, 502, 503, 504][r.below(4) as usize],
            _ => [200, 200, 200, 201, 204, 304][r.below(6) as usize],
        };
        let latency = r.below(2_500_000) as f64 / 1000.0;
        let mut message = match level {
            "debug" => format!("cache miss for key user:{id}"),
            "info" => "GET request completed".to_owned(),
            "warn" => format!("slow response from upstream {upstream} ({latency:.0} ms)"),
            _ => format!("upstream {upstream} {COMMON} after {latency:.0} ms"),
        };
        if plant_every > 0 && i % plant_every == plant_every / 2 {
            let _ = write!(message, " {RARE}");
        }
        let _ = writeln!(
            s,
            "{{\"timestamp\":\"{t}\",\"level\":\"{level}\",\"message\":\"{message}\",\
             \"service\":\"{service}\",\"host\":\"{service}-{:02}\",\"request_id\":\"{:016x}\",\
             \"latency_ms\":{latency:.1},\"http\":{{\"method\":\"GET\",\"path\":\"{path}/{id}\",\
             \"status\":{status},\"bytes\":{}}}}}",
            r.below(16),
            r.next(),
            r.below(200_000),
        );
        bytes += s.len() as u64;
        outs[i % FILES]
            .write_all(s.as_bytes())
            .expect("write a log line");
    }
    for o in &mut outs {
        o.flush().expect("flush a log file");
    }
    (paths, bytes)
}

// ---------------------------------------------------------------------------------------------
// Databases
// ---------------------------------------------------------------------------------------------

#[derive(Clone)]
enum Db {
    Sqlite(PathBuf),
    Pg(String),
}

impl Db {
    fn url(&self) -> String {
        match self {
            Db::Sqlite(p) => format!("sqlite://{}", p.display()),
            Db::Pg(u) => u.clone(),
        }
    }
}

fn write_config(path: &Path, db: &Db, include: &str, index: bool) {
    let text = format!(
        "[database]\nurl = {:?}\n\n[agent]\nhost = \"bench\"\n\n[[sources]]\nname = \"bench\"\n\
         include = [{include:?}]\nstart_at = \"beginning\"\n\n[pipeline]\nbatch_rows = 10000\n\n\
         [search]\nindex = {index}\n",
        db.url()
    );
    fs::write(path, text).expect("write a config");
}

fn run_once(config: &Path) -> Duration {
    let started = Instant::now();
    let mut cmd = Command::new(LOGBELT);
    cmd.args(["run", "--once", "--config"])
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let out = cmd.output().expect("run logbelt");
    assert!(
        out.status.success(),
        "logbelt run --once failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    started.elapsed()
}

#[derive(QueryableByName)]
struct N {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

fn pg_value(url: &str, sql: &str) -> i64 {
    let mut c = PgConnection::establish(url).expect("connect to PostgreSQL");
    diesel::sql_query(sql)
        .get_result::<N>(&mut c)
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .n
}

fn pg_exec(url: &str, sql: &str) {
    let mut c = PgConnection::establish(url).expect("connect to PostgreSQL");
    c.batch_execute(sql)
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

fn with_db(admin: &str, name: &str) -> String {
    let (base, _) = admin.rsplit_once('/').expect("a URL with a database");
    format!("{base}/{name}")
}

/// (index bytes, table bytes): `search_blocks` and `log_events`.
fn sizes(db: &Db) -> (u64, u64) {
    match db {
        Db::Sqlite(p) => {
            let c = rusqlite::Connection::open(p).expect("open the SQLite file");
            let q = |like: &str| -> u64 {
                c.query_row(
                    "SELECT coalesce(sum(pgsize), 0) FROM dbstat WHERE name LIKE ?1",
                    [like],
                    |r| r.get::<_, i64>(0),
                )
                .expect("dbstat") as u64
            };
            (q("search_blocks"), q("log_events"))
        }
        Db::Pg(u) => {
            let part_sum = |rel: &str, f: &str| {
                pg_value(
                    u,
                    &format!(
                        "SELECT coalesce(sum({f}(relid)), 0)::bigint AS n \
                         FROM pg_partition_tree(to_regclass('{rel}'))"
                    ),
                ) as u64
            };
            (
                pg_value(
                    u,
                    "SELECT pg_total_relation_size('search_blocks')::bigint AS n",
                ) as u64,
                part_sum("log_events", "pg_table_size"),
            )
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Measuring
// ---------------------------------------------------------------------------------------------

/// Runs `cmd` `runs` times: the median wall time and the last stdout.
fn timed(runs: usize, mut cmd: impl FnMut() -> Command) -> (Duration, String) {
    let mut times = Vec::new();
    let mut last = String::new();
    for _ in 0..runs {
        let started = Instant::now();
        let out = cmd().stderr(Stdio::null()).output().expect("run a command");
        times.push(started.elapsed());
        last = String::from_utf8_lossy(&out.stdout).into_owned();
    }
    times.sort();
    (times[times.len() / 2], last)
}

fn query(config: &Path, args: &[String]) -> Command {
    let mut c = Command::new(LOGBELT);
    c.arg("query").arg("--config").arg(config).args(args);
    c
}

fn secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 1.0 {
        format!("{:.0} ms", s * 1000.0)
    } else {
        format!("{s:.2} s")
    }
}

fn mib(b: u64) -> String {
    format!("{:.0} MiB", b as f64 / 1048576.0)
}

struct Queries {
    name: &'static str,
    args: Vec<String>,
    /// The same question to grep, when it has one: (pattern, ignore case).
    grep: Option<(&'static str, bool)>,
}

/// The queries; `since`: the time an hour before the run started (one instant for every
/// query, so that repeated runs and both databases are asked the same question).
fn queries(since: &str) -> Vec<Queries> {
    let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    vec![
        Queries {
            name: "rare token: `--grep xylophone-7741`",
            args: args(&["--grep", RARE]),
            grep: Some((RARE, true)),
        },
        Queries {
            name: "common token: `--grep 'timed out' --limit 100`",
            args: args(&["--grep", COMMON, "--limit", "100"]),
            grep: Some((COMMON, true)),
        },
        Queries {
            name: "`--field http.status=500 --since 1h`",
            args: args(&[
                "--field",
                "http.status=500",
                "--since",
                since,
                "--limit",
                "100000",
            ]),
            grep: Some(("\"status\":500", false)),
        },
        Queries {
            name: "`--count --by level --bucket 1h`",
            args: args(&["--count", "--by", "level", "--bucket", "1h"]),
            grep: None,
        },
    ]
}

fn main() {
    let o = options();
    let since = (chrono::Utc::now() - chrono::Duration::hours(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let work = tempfile::Builder::new()
        .prefix("logbelt-search-bench-")
        .tempdir()
        .expect("a temporary folder");
    let dir = work.path().to_path_buf();
    progress(&format!("generating {} lines", o.rows));
    let (paths, bytes) = generate(&dir.join("logs"), o.rows);
    let rg = Command::new("rg")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());

    println!(
        "# logbelt search bench: {} rows, {} of JSON lines in {FILES} files, median of {} runs\n",
        o.rows,
        mib(bytes),
        o.runs
    );

    // grep over the raw files (the page cache is warm for both sides: the files were just
    // written, the databases just filled).
    let grep_times: Vec<Option<(Duration, Option<Duration>, String)>> = queries(&since)
        .iter()
        .map(|q| {
            q.grep.map(|(pat, icase)| {
                let (t, out) = timed(o.runs, || {
                    let mut c = Command::new("grep");
                    c.arg("-cF");
                    if icase {
                        c.arg("-i");
                    }
                    c.arg(pat).args(&paths);
                    c
                });
                let total: u64 = out
                    .lines()
                    .filter_map(|l| l.rsplit(':').next()?.parse::<u64>().ok())
                    .sum();
                let rg_t = rg.then(|| {
                    timed(o.runs, || {
                        let mut c = Command::new("rg");
                        c.arg("-cF");
                        if icase {
                            c.arg("-i");
                        }
                        c.arg(pat).args(&paths);
                        c
                    })
                    .0
                });
                (t, rg_t, total.to_string())
            })
        })
        .collect();

    let mut backends: Vec<(&str, Db, Db, Option<String>)> = Vec::new();
    if o.sqlite {
        backends.push((
            "SQLite",
            Db::Sqlite(dir.join("indexed.db")),
            Db::Sqlite(dir.join("scan.db")),
            None,
        ));
    }
    if let Some(admin) = &o.postgres {
        let pid = std::process::id();
        let (a, b) = (
            format!("logbelt_search_idx_{pid}"),
            format!("logbelt_search_scan_{pid}"),
        );
        for name in [&a, &b] {
            pg_exec(admin, &format!("DROP DATABASE IF EXISTS {name}"));
            pg_exec(admin, &format!("CREATE DATABASE {name}"));
        }
        backends.push((
            "PostgreSQL",
            Db::Pg(with_db(admin, &a)),
            Db::Pg(with_db(admin, &b)),
            Some(admin.clone()),
        ));
    }

    let mut ingest_rows = Vec::new();
    let mut query_rows: Vec<Vec<String>> = queries(&since)
        .iter()
        .map(|q| vec![q.name.to_owned()])
        .collect();
    let mut headers = vec!["query".to_owned()];
    for (name, indexed, scan, _) in &backends {
        let cfg = |db: &Db, label: &str, include: &str, index: bool| {
            let p = dir.join(format!("{name}-{label}.toml"));
            write_config(&p, db, include, index);
            p
        };
        let logs = format!("{}/logs/*.jsonl", dir.display());
        progress(&format!("{name}: ingesting without the index"));
        let without = run_once(&cfg(scan, "scan", &logs, false));
        progress(&format!("{name}: ingesting with the index"));
        let with = run_once(&cfg(indexed, "indexed", &logs, true));
        for db in [indexed, scan] {
            if let Db::Pg(u) = db {
                progress(&format!("{name}: VACUUM ANALYZE"));
                pg_exec(u, "VACUUM ANALYZE log_events");
            }
        }
        let (index_bytes, table_bytes) = sizes(indexed);
        let rate = |d: Duration| o.rows as f64 / d.as_secs_f64();
        ingest_rows.push(format!(
            "| {name} | {:.0} rows/s | {:.0} rows/s | **{:.2}** | {} | {} | {:.2} |",
            rate(with),
            rate(without),
            rate(with) / rate(without),
            mib(index_bytes),
            mib(table_bytes),
            index_bytes as f64 / table_bytes as f64
        ));
        headers.push(format!("{name} indexed"));
        headers.push(format!("{name} without index"));
        let idx_cfg = dir.join(format!("{name}-indexed.toml"));
        let scan_cfg = dir.join(format!("{name}-scan.toml"));
        for (qi, q) in queries(&since).iter().enumerate() {
            progress(&format!("{name}: {}", q.name));
            let (ti, out_i) = timed(o.runs, || query(&idx_cfg, &q.args));
            let (ts, out_s) = timed(o.runs, || query(&scan_cfg, &q.args));
            assert_eq!(
                out_i, out_s,
                "{name}: {}: indexed and unindexed answers differ",
                q.name
            );
            if qi == 0 {
                assert_eq!(
                    out_i.lines().count(),
                    PLANTED,
                    "{name}: the rare token's lines"
                );
            }
            query_rows[qi].push(secs(ti));
            query_rows[qi].push(secs(ts));
        }
    }
    headers.push("grep -c".to_owned());
    if rg {
        headers.push("rg -c".to_owned());
    }
    for (qi, g) in grep_times.iter().enumerate() {
        match g {
            Some((t, r, _)) => {
                query_rows[qi].push(secs(*t));
                if let Some(r) = r {
                    query_rows[qi].push(secs(*r));
                } else if rg {
                    query_rows[qi].push("-".into());
                }
            }
            None => {
                query_rows[qi].push("-".into());
                if rg {
                    query_rows[qi].push("-".into());
                }
            }
        }
    }

    println!("## Ingest\n");
    println!("| backend | with index | without | ratio | index size | table size | index/table |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for r in &ingest_rows {
        println!("{r}");
    }
    println!("\n## Queries (wall time of the command)\n");
    println!("| {} |", headers.join(" | "));
    println!("|---|{}", "---:|".repeat(headers.len() - 1));
    for r in &query_rows {
        println!("| {} |", r.join(" | "));
    }
    let load = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "\n- load average at the end: {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );

    for (_, indexed, scan, admin) in &backends {
        if let (Some(admin), Db::Pg(a), Db::Pg(b)) = (admin, indexed, scan) {
            if !o.keep {
                for u in [a, b] {
                    let name = u.rsplit('/').next().unwrap_or_default();
                    pg_exec(
                        admin,
                        &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
                    );
                }
            }
        }
    }
    if o.keep {
        let kept = work.keep();
        println!("- kept: {}", kept.display());
    }
}
