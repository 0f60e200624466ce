//! Fixtures shared by every test module: a temporary folder per test, the config file, the
//! database (a SQLite file in the folder, or a fresh PostgreSQL database dropped afterwards), a
//! model of the lines written, queries over the three tables, and the `logbelt` child process.
//!
//! - [`db`]: the database and the queries over it.
//! - [`model`]: the lines written, and the assertions against the tables.
//! - [`daemon`]: the child process.
//! - [`endpoint`]: the `/metrics` and `/health` endpoint, extra config tables, `LOGBELT_FAULTS`.
//! - [`logrotate`]: the real `logrotate`, its config and state file, skipped when missing.
//!
//! Waiting is always "poll a condition under a deadline" ([`wait_until`]): a test never sleeps in
//! place of a signal it could observe.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use tempfile::TempDir;

mod daemon;
mod db;
mod endpoint;
mod logrotate;
mod model;

pub use daemon::*;
pub use db::*;
pub use endpoint::*;
pub use logrotate::*;
pub use model::*;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_logbelt");

/// How long any wait may take before the test fails. Generous: the machine is shared and the
/// build is a debug build; a passing test never waits this long.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// How often a polled condition is checked again.
const POLL: Duration = Duration::from_millis(20);

/// The admin URL of a PostgreSQL server to create test databases on.
pub const PG_URL_VAR: &str = "LOGBELT_TEST_POSTGRES_URL";
/// When `1`, a PostgreSQL test without [`PG_URL_VAR`] fails instead of being skipped.
pub const PG_REQUIRE_VAR: &str = "LOGBELT_REQUIRE_POSTGRES";

// ---------------------------------------------------------------------------------------------
// Backends and the macro that runs one test body on each
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// `both_backends!(name)` turns `fn name(b: Backend)` into two tests, `name::sqlite` and
/// `name::postgres`. Attributes before the name go on both. The PostgreSQL one is marked ignored
/// unless the build saw `LOGBELT_TEST_POSTGRES_URL` (see `build.rs`).
#[macro_export]
macro_rules! both_backends {
    ($(#[$attr:meta])* $name:ident) => {
        mod $name {
            #[test]
            $(#[$attr])*
            fn sqlite() {
                super::$name($crate::util::Backend::Sqlite)
            }

            #[test]
            #[cfg_attr(
                not(logbelt_postgres_tests),
                ignore = "PostgreSQL: set LOGBELT_TEST_POSTGRES_URL to run"
            )]
            $(#[$attr])*
            fn postgres() {
                super::$name($crate::util::Backend::Postgres)
            }
        }
    };
}

/// The running test's name (libtest names each test's thread after it).
pub fn test_name() -> String {
    std::thread::current()
        .name()
        .unwrap_or("<unnamed test>")
        .to_string()
}

// ---------------------------------------------------------------------------------------------
// The test environment: folder, database, config
// ---------------------------------------------------------------------------------------------

/// One test's world: a temporary folder holding `logbelt.toml`, `logs/` and (for SQLite) the
/// database, plus the database handle. Dropping it drops the PostgreSQL database and the folder.
pub struct TestEnv {
    pub db: TestDb,
    pub dir: TempDir,
}

impl TestEnv {
    /// A fresh environment, or `None` when the backend is not available (the test then returns
    /// and passes, having said so on stderr).
    pub fn new(backend: Backend) -> Option<TestEnv> {
        let dir = tempfile::Builder::new()
            .prefix("logbelt-test-")
            .tempdir()
            .expect("create a temp dir");
        std::fs::create_dir(dir.path().join("logs")).expect("create logs/");
        let db = TestDb::new(backend, dir.path())?;
        Some(TestEnv { db, dir })
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// `logs/<name>`.
    pub fn log(&self, name: &str) -> PathBuf {
        self.dir.path().join("logs").join(name)
    }

    pub fn config_path(&self) -> PathBuf {
        self.path("logbelt.toml")
    }

    /// A config for this environment's database with the test defaults.
    pub fn config(&self) -> ConfigBuilder {
        ConfigBuilder::new(&self.db.config_url)
    }

    /// Starts `logbelt run` (without `--once`) on this environment's config.
    pub fn start(&self) -> Daemon {
        Daemon::spawn(self, &["run", "--config"])
    }

    /// `logbelt run --once`: waits for it to exit and asserts exit code 0.
    pub fn run_once(&self) -> String {
        let mut d = Daemon::spawn(self, &["run", "--once", "--config"]);
        let status = d.wait_exit(DEADLINE);
        assert_eq!(
            status.code(),
            Some(0),
            "`logbelt run --once` failed: {status}\n--- stderr ---\n{}",
            d.stderr()
        );
        d.stderr()
    }
}

/// A `[[sources]]` table.
#[derive(Debug, Clone)]
pub struct SourceSpec {
    pub name: String,
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    pub start_at: Option<String>,
}

/// Writes `logbelt.toml`. Defaults suit tests: host `test-host`, one source `app` over
/// `logs/*.jsonl`, a short poll interval and flush interval so that changes show up fast.
#[derive(Debug, Clone)]
pub struct ConfigBuilder {
    pub url: String,
    /// `agent.host`; empty: no `[agent]` table (logbelt then uses the machine's hostname).
    pub host: String,
    pub sources: Vec<SourceSpec>,
    pub batch_rows: u64,
    pub flush_interval_ms: u64,
    pub channel_capacity: u64,
    pub mailbox_capacity: u64,
    pub poll_interval_ms: u64,
    pub max_line_bytes: u64,
    pub drain_timeout_ms: u64,
    /// More `[database]` keys: (key, TOML value).
    pub database_extra: Vec<(String, String)>,
}

pub const HOST: &str = "test-host";
pub const SOURCE: &str = "app";

impl ConfigBuilder {
    pub fn new(url: &str) -> Self {
        ConfigBuilder {
            url: url.to_string(),
            host: HOST.to_string(),
            sources: vec![SourceSpec {
                name: SOURCE.to_string(),
                include: vec!["logs/*.jsonl".to_string()],
                exclude: vec![],
                start_at: None,
            }],
            batch_rows: 5000,
            flush_interval_ms: 100,
            channel_capacity: 64,
            mailbox_capacity: 16,
            poll_interval_ms: 200,
            max_line_bytes: 1_048_576,
            drain_timeout_ms: 30_000,
            database_extra: vec![],
        }
    }

    /// Small batches and queues: many commits, little read ahead of the database (for the tests
    /// that stop or kill logbelt in the middle of a backlog).
    pub fn small_batches(mut self) -> Self {
        self.batch_rows = 500;
        self.channel_capacity = 2;
        self.mailbox_capacity = 2;
        self
    }

    pub fn to_toml(&self) -> String {
        let q = |s: &str| serde_json::to_string(s).unwrap();
        let list = |v: &[String]| {
            let items: Vec<String> = v.iter().map(|s| q(s)).collect();
            format!("[{}]", items.join(", "))
        };
        let mut t = String::new();
        t += &format!("[database]\nurl = {}\n", q(&self.url));
        for (k, v) in &self.database_extra {
            t += &format!("{k} = {v}\n");
        }
        t += "\n";
        if !self.host.is_empty() {
            t += &format!("[agent]\nhost = {}\n\n", q(&self.host));
        }
        for s in &self.sources {
            t += &format!(
                "[[sources]]\nname = {}\ninclude = {}\n",
                q(&s.name),
                list(&s.include)
            );
            if !s.exclude.is_empty() {
                t += &format!("exclude = {}\n", list(&s.exclude));
            }
            if let Some(start) = &s.start_at {
                t += &format!("start_at = {}\n", q(start));
            }
            t += "\n";
        }
        t += &format!(
            "[pipeline]\nbatch_rows = {}\nflush_interval_ms = {}\nchannel_capacity = {}\n\
             mailbox_capacity = {}\npoll_interval_ms = {}\n\n",
            self.batch_rows,
            self.flush_interval_ms,
            self.channel_capacity,
            self.mailbox_capacity,
            self.poll_interval_ms
        );
        t += &format!("[parse]\nmax_line_bytes = {}\n\n", self.max_line_bytes);
        t += &format!("[shutdown]\ndrain_timeout_ms = {}\n", self.drain_timeout_ms);
        t
    }

    /// Writes the config to `env`'s `logbelt.toml`.
    pub fn write(&self, env: &TestEnv) -> PathBuf {
        let path = env.config_path();
        std::fs::write(&path, self.to_toml()).expect("write logbelt.toml");
        path
    }
}

// ---------------------------------------------------------------------------------------------
// Waiting
// ---------------------------------------------------------------------------------------------

/// Polls `cond` until it holds; fails the test after `deadline`.
pub fn wait_until(what: &str, deadline: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    loop {
        if cond() {
            return;
        }
        if start.elapsed() > deadline {
            panic!("timed out after {deadline:?} waiting for {what}");
        }
        std::thread::sleep(POLL);
    }
}

/// Polls `cond` until it holds or `deadline` passes, and says which: for a wait whose timeout
/// is a finding to report with others (what is still missing), not a failure on the spot.
pub fn poll_until(deadline: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if cond() {
            return true;
        }
        if start.elapsed() > deadline {
            return false;
        }
        std::thread::sleep(POLL);
    }
}
