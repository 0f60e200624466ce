//! Fixtures shared by every test module: a temporary folder per test, the config file, the
//! database (a SQLite file in the folder, or a fresh PostgreSQL database dropped afterwards), a
//! model of the lines written, queries over the three tables, and the `logbelt` child process.
//!
//! Waiting is always "poll a condition under a deadline" ([`wait_until`]): a test never sleeps in
//! place of a signal it could observe.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use diesel::pg::{Pg, PgConnection};
use diesel::sql_types::{BigInt, Binary, Nullable, Text};
use diesel::sqlite::{Sqlite, SqliteConnection};
use diesel::{Connection, QueryableByName, RunQueryDsl};
use tempfile::TempDir;

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
/// `name::postgres`. Attributes before the name (e.g. `#[ignore = "…"]`) go on both.
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

    /// A SQLite environment (always available).
    pub fn sqlite() -> TestEnv {
        TestEnv::new(Backend::Sqlite).expect("SQLite is always available")
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
        t += &format!("[agent]\nhost = {}\n\n", q(&self.host));
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
// Database
// ---------------------------------------------------------------------------------------------

/// The test's database: its URL for the config, and a lazily opened connection for queries.
pub struct TestDb {
    pub backend: Backend,
    /// What goes into `database.url`.
    pub config_url: String,
    /// SQLite: the database file.
    sqlite_path: Option<PathBuf>,
    /// PostgreSQL: the admin URL and the name of the database created for this test.
    pg: Option<(String, String)>,
    conn: RefCell<Option<Conn>>,
}

static DB_COUNTER: AtomicUsize = AtomicUsize::new(0);

impl TestDb {
    fn new(backend: Backend, dir: &Path) -> Option<TestDb> {
        match backend {
            Backend::Sqlite => Some(TestDb {
                backend,
                config_url: "sqlite://logbelt.db".to_string(),
                sqlite_path: Some(dir.join("logbelt.db")),
                pg: None,
                conn: RefCell::new(None),
            }),
            Backend::Postgres => {
                let admin = match std::env::var(PG_URL_VAR) {
                    Ok(url) if !url.is_empty() => url,
                    _ => {
                        if std::env::var(PG_REQUIRE_VAR).as_deref() == Ok("1") {
                            panic!(
                                "{}: {PG_URL_VAR} is unset and {PG_REQUIRE_VAR}=1",
                                test_name()
                            );
                        }
                        eprintln!("skipping {}: {PG_URL_VAR} is unset", test_name());
                        return None;
                    }
                };
                let nanos = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .subsec_nanos();
                let name = format!(
                    "logbelt_test_{}_{}_{}",
                    std::process::id(),
                    DB_COUNTER.fetch_add(1, Ordering::SeqCst),
                    nanos
                );
                let mut conn = PgConnection::establish(&admin)
                    .unwrap_or_else(|e| panic!("cannot connect to {PG_URL_VAR}: {e}"));
                diesel::sql_query(format!("CREATE DATABASE \"{name}\""))
                    .execute(&mut conn)
                    .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
                Some(TestDb {
                    backend,
                    config_url: with_database(&admin, &name),
                    sqlite_path: None,
                    pg: Some((admin, name)),
                    conn: RefCell::new(None),
                })
            }
        }
    }

    fn with_conn<R>(&self, f: impl FnOnce(&mut Conn) -> R) -> R {
        let mut slot = self.conn.borrow_mut();
        if slot.is_none() {
            *slot = Some(self.connect());
        }
        f(slot.as_mut().unwrap())
    }

    fn connect(&self) -> Conn {
        match self.backend {
            Backend::Sqlite => {
                let path = self.sqlite_path.as_ref().unwrap();
                assert!(
                    path.exists(),
                    "the SQLite database {} does not exist (yet)",
                    path.display()
                );
                // mode=rw: never create the file ourselves.
                let url = format!("file:{}?mode=rw", path.display());
                let mut c =
                    SqliteConnection::establish(&url).unwrap_or_else(|e| panic!("open {url}: {e}"));
                diesel::sql_query("PRAGMA busy_timeout = 10000")
                    .execute(&mut c)
                    .expect("set busy_timeout");
                Conn::Sqlite(c)
            }
            Backend::Postgres => Conn::Pg(
                PgConnection::establish(&self.config_url)
                    .unwrap_or_else(|e| panic!("connect to the test database: {e}")),
            ),
        }
    }

    /// Runs a query whose rows are `T`.
    pub fn load<T>(&self, sql: &str) -> Vec<T>
    where
        T: QueryableByName<Sqlite> + QueryableByName<Pg> + 'static,
    {
        self.with_conn(|c| c.load(sql))
    }

    /// `count(*)` of a table (or any FROM clause).
    pub fn count(&self, from: &str) -> i64 {
        let rows: Vec<Count> = self.load(&format!("SELECT count(*) AS n FROM {from}"));
        rows[0].n
    }

    pub fn events_count(&self) -> i64 {
        self.count("log_events")
    }

    pub fn dead_count(&self) -> i64 {
        self.count("dead_letters")
    }

    /// Rows in both tables: one per stored line.
    pub fn rows(&self) -> i64 {
        self.events_count() + self.dead_count()
    }

    /// Every record with its file's path, ordered by path and offset.
    pub fn events(&self) -> Vec<EventRow> {
        // Both as text: PostgreSQL's ts in SQLite's format (RFC 3339 UTC, 6 fractional digits).
        let (fields, ts) = match self.backend {
            Backend::Sqlite => ("e.fields", "e.ts"),
            Backend::Postgres => (
                "e.fields::text",
                r#"to_char(e.ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')"#,
            ),
        };
        self.load(&format!(
            "SELECT f.path AS path, e.file_id, e.file_offset, e.host, e.source, {ts} AS ts, \
             e.level, e.message, {fields} AS fields \
             FROM log_events e LEFT JOIN files f ON f.id = e.file_id \
             ORDER BY f.path, e.file_offset"
        ))
    }

    /// (path, offset) of every record, ordered.
    pub fn event_offsets(&self) -> Vec<OffsetRow> {
        self.load(
            "SELECT f.path AS path, e.file_id, e.file_offset \
             FROM log_events e LEFT JOIN files f ON f.id = e.file_id \
             ORDER BY f.path, e.file_offset",
        )
    }

    /// Every dead letter with its file's path, ordered by path and offset.
    pub fn dead_letters(&self) -> Vec<DeadRow> {
        self.load(
            "SELECT f.path AS path, d.file_id, d.file_offset, d.host, d.source, d.raw, \
             d.line_bytes, d.error \
             FROM dead_letters d LEFT JOIN files f ON f.id = d.file_id \
             ORDER BY f.path, d.file_offset",
        )
    }

    /// The `files` table, ordered by path.
    pub fn files(&self) -> Vec<FileRow> {
        self.load("SELECT id, host, source, path, committed_offset FROM files ORDER BY path, id")
    }

    /// (file_id, file_offset) pairs stored more than once, across records and dead letters.
    pub fn duplicates(&self) -> Vec<DuplicateRow> {
        self.load(
            "SELECT file_id, file_offset, count(*) AS n FROM ( \
               SELECT file_id, file_offset FROM log_events \
               UNION ALL SELECT file_id, file_offset FROM dead_letters) t \
             GROUP BY file_id, file_offset HAVING count(*) > 1 \
             ORDER BY file_id, file_offset",
        )
    }

    pub fn assert_no_duplicates(&self) {
        let dups = self.duplicates();
        assert!(
            dups.is_empty(),
            "{} (file_id, file_offset) pairs stored more than once, e.g. {:?}",
            dups.len(),
            &dups[..dups.len().min(10)]
        );
    }

    /// Blocks logbelt's commits until the returned guard is dropped, while reads go on: SQLite
    /// holds the write lock (`BEGIN IMMEDIATE`); PostgreSQL locks the three tables in EXCLUSIVE
    /// mode (readers still pass).
    pub fn block_writes(&self) -> WriteBlock {
        let conn = match self.backend {
            Backend::Sqlite => {
                let Conn::Sqlite(mut c) = self.connect() else {
                    unreachable!()
                };
                diesel::sql_query("BEGIN IMMEDIATE")
                    .execute(&mut c)
                    .expect("take SQLite's write lock");
                Conn::Sqlite(c)
            }
            Backend::Postgres => {
                let Conn::Pg(mut c) = self.connect() else {
                    unreachable!()
                };
                diesel::sql_query("BEGIN").execute(&mut c).expect("BEGIN");
                diesel::sql_query("LOCK TABLE log_events, dead_letters, files IN EXCLUSIVE MODE")
                    .execute(&mut c)
                    .expect("lock the tables");
                Conn::Pg(c)
            }
        };
        WriteBlock { conn: Some(conn) }
    }

    /// Polls until both tables together hold `n` rows; fails at once if they hold more, and at
    /// the deadline. `daemon`, if given, must stay alive meanwhile.
    pub fn wait_rows(&self, n: i64, mut daemon: Option<&mut Daemon>) {
        let mut last = -1;
        wait_until(&format!("{n} rows"), DEADLINE, || {
            if let Some(d) = daemon.as_deref_mut() {
                d.assert_running();
            }
            last = self.rows();
            assert!(
                last <= n,
                "expected {n} rows, found {last} (lines stored twice?)"
            );
            last == n
        });
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        self.conn.borrow_mut().take();
        if let Some((admin, name)) = &self.pg {
            let dropped = PgConnection::establish(admin).and_then(|mut c| {
                diesel::sql_query(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                    .execute(&mut c)
                    .map_err(|e| diesel::ConnectionError::BadConnection(e.to_string()))
            });
            if let Err(e) = dropped {
                eprintln!("warning: cannot drop test database {name}: {e}");
            }
        }
    }
}

/// Holds the database's write lock until dropped (the transaction is rolled back).
pub struct WriteBlock {
    conn: Option<Conn>,
}

impl WriteBlock {
    /// Releases the lock.
    pub fn release(mut self) {
        self.rollback();
    }

    fn rollback(&mut self) {
        if let Some(conn) = self.conn.take() {
            let r = match conn {
                Conn::Sqlite(mut c) => diesel::sql_query("ROLLBACK").execute(&mut c),
                Conn::Pg(mut c) => diesel::sql_query("ROLLBACK").execute(&mut c),
            };
            r.expect("ROLLBACK");
        }
    }
}

impl Drop for WriteBlock {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            self.rollback();
        }
    }
}

/// `url` with its database name replaced by `name` (query parameters kept).
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let authority_start = base.find("://").map(|i| i + 3).unwrap_or(0);
    let prefix = match base[authority_start..].find('/') {
        Some(i) => &base[..authority_start + i],
        None => base,
    };
    match query {
        Some(q) => format!("{prefix}/{name}?{q}"),
        None => format!("{prefix}/{name}"),
    }
}

/// A connection to the test database, whichever the backend.
pub enum Conn {
    Sqlite(SqliteConnection),
    Pg(PgConnection),
}

impl Conn {
    pub fn load<T>(&mut self, sql: &str) -> Vec<T>
    where
        T: QueryableByName<Sqlite> + QueryableByName<Pg> + 'static,
    {
        let q = diesel::sql_query(sql);
        let result = match self {
            Conn::Sqlite(c) => q.load(c),
            Conn::Pg(c) => q.load(c),
        };
        result.unwrap_or_else(|e| panic!("query failed: {e}\n{sql}"))
    }
}

#[derive(QueryableByName, Debug)]
pub struct Count {
    #[diesel(sql_type = BigInt)]
    pub n: i64,
}

#[derive(QueryableByName, Debug, Clone)]
pub struct EventRow {
    /// NULL when no `files` row covers the record (which must never happen).
    #[diesel(sql_type = Nullable<Text>)]
    pub path: Option<String>,
    #[diesel(sql_type = BigInt)]
    pub file_id: i64,
    #[diesel(sql_type = BigInt)]
    pub file_offset: i64,
    #[diesel(sql_type = Text)]
    pub host: String,
    #[diesel(sql_type = Text)]
    pub source: String,
    /// RFC 3339 UTC with 6 fractional digits, whatever the backend.
    #[diesel(sql_type = Nullable<Text>)]
    pub ts: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub level: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub message: Option<String>,
    #[diesel(sql_type = Text)]
    pub fields: String,
}

#[derive(QueryableByName, Debug, Clone)]
pub struct OffsetRow {
    #[diesel(sql_type = Nullable<Text>)]
    pub path: Option<String>,
    #[diesel(sql_type = BigInt)]
    pub file_id: i64,
    #[diesel(sql_type = BigInt)]
    pub file_offset: i64,
}

#[derive(QueryableByName, Debug, Clone)]
pub struct DeadRow {
    #[diesel(sql_type = Nullable<Text>)]
    pub path: Option<String>,
    #[diesel(sql_type = BigInt)]
    pub file_id: i64,
    #[diesel(sql_type = BigInt)]
    pub file_offset: i64,
    #[diesel(sql_type = Text)]
    pub host: String,
    #[diesel(sql_type = Text)]
    pub source: String,
    #[diesel(sql_type = Binary)]
    pub raw: Vec<u8>,
    #[diesel(sql_type = BigInt)]
    pub line_bytes: i64,
    #[diesel(sql_type = Text)]
    pub error: String,
}

#[derive(QueryableByName, Debug, Clone)]
pub struct FileRow {
    #[diesel(sql_type = BigInt)]
    pub id: i64,
    #[diesel(sql_type = Text)]
    pub host: String,
    #[diesel(sql_type = Text)]
    pub source: String,
    #[diesel(sql_type = Text)]
    pub path: String,
    #[diesel(sql_type = BigInt)]
    pub committed_offset: i64,
}

#[derive(QueryableByName, Debug, Clone)]
pub struct DuplicateRow {
    #[diesel(sql_type = BigInt)]
    pub file_id: i64,
    #[diesel(sql_type = BigInt)]
    pub file_offset: i64,
    #[diesel(sql_type = BigInt)]
    pub n: i64,
}

/// Whether a stored `fields` value is the line: the very text in SQLite; the same JSON value in
/// PostgreSQL (`jsonb` reorders keys and respaces).
pub fn same_json(backend: Backend, stored: &str, line: &str) -> bool {
    match backend {
        Backend::Sqlite => stored == line,
        Backend::Postgres => {
            let a: serde_json::Value = match serde_json::from_str(stored) {
                Ok(v) => v,
                Err(_) => return false,
            };
            let b: serde_json::Value = match serde_json::from_str(line) {
                Ok(v) => v,
                Err(_) => return false,
            };
            a == b
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Lines written: the model the tables are checked against
// ---------------------------------------------------------------------------------------------

/// Every line the test wrote and expects stored, per file: (offset of its first byte, text).
#[derive(Debug, Default, Clone)]
pub struct Written {
    pub files: BTreeMap<PathBuf, Vec<(i64, String)>>,
    /// The source of each file whose source is not [`SOURCE`].
    pub sources: BTreeMap<PathBuf, String>,
}

impl Written {
    pub fn new() -> Self {
        Written::default()
    }

    /// Appends `lines` (each followed by `\n`) to `path`, creating it if needed, and records
    /// them as expected rows.
    pub fn append(&mut self, path: &Path, lines: &[String]) {
        let offsets = append_lines(path, lines);
        let entry = self.files.entry(path.to_path_buf()).or_default();
        for (off, line) in offsets.into_iter().zip(lines) {
            entry.push((off, line.clone()));
        }
    }

    /// Records a line the test wrote itself (e.g. in pieces) at `offset`.
    pub fn record(&mut self, path: &Path, offset: i64, line: &str) {
        self.files
            .entry(path.to_path_buf())
            .or_default()
            .push((offset, line.to_string()));
    }

    /// Expects `path`'s rows under source `name` (instead of [`SOURCE`]).
    pub fn set_source(&mut self, path: &Path, name: &str) {
        self.sources.insert(path.to_path_buf(), name.to_string());
    }

    fn source_of(&self, path: &Path) -> &str {
        self.sources.get(path).map(String::as_str).unwrap_or(SOURCE)
    }

    /// Expected rows in all files.
    pub fn total(&self) -> i64 {
        self.files.values().map(|v| v.len() as i64).sum()
    }

    /// Asserts that the tables hold every expected line exactly once, as a record, at its
    /// offset, with its text, host and source, and nothing else.
    pub fn assert_stored(&self, db: &TestDb) {
        db.assert_no_duplicates();
        let dead = db.dead_letters();
        assert!(
            dead.is_empty(),
            "unexpected dead letters: {:?}",
            &dead[..dead.len().min(5)]
        );
        let events = db.events();
        let mut by_path: BTreeMap<PathBuf, Vec<&EventRow>> = BTreeMap::new();
        for e in &events {
            let path = e.path.as_ref().unwrap_or_else(|| {
                panic!("record without a files row (file_id {}): {e:?}", e.file_id)
            });
            assert_eq!(e.host, HOST, "host of {e:?}");
            by_path.entry(PathBuf::from(path)).or_default().push(e);
        }
        let stored_paths: Vec<&PathBuf> = by_path.keys().collect();
        let expected_paths: Vec<&PathBuf> = self.files.keys().collect();
        assert_eq!(stored_paths, expected_paths, "files with rows");
        for (path, expected) in &self.files {
            let rows = &by_path[path];
            let ids: std::collections::BTreeSet<i64> = rows.iter().map(|r| r.file_id).collect();
            assert_eq!(
                ids.len(),
                1,
                "{}: rows under several file ids {ids:?}",
                path.display()
            );
            for r in rows {
                assert_eq!(r.source, self.source_of(path), "source of {r:?}");
            }
            let got: Vec<i64> = rows.iter().map(|r| r.file_offset).collect();
            let want: Vec<i64> = expected.iter().map(|(o, _)| *o).collect();
            assert_eq!(
                got.len(),
                want.len(),
                "{}: {} rows stored, {} lines written",
                path.display(),
                got.len(),
                want.len()
            );
            assert_eq!(got, want, "{}: offsets of the rows", path.display());
            for (row, (off, line)) in rows.iter().zip(expected) {
                assert!(
                    same_json(db.backend, &row.fields, line),
                    "{} at {off}: stored {:?}, written {:?}",
                    path.display(),
                    row.fields,
                    line
                );
            }
        }
        assert_eq!(db.events_count(), self.total(), "record count");
    }

    /// Asserts that each written file has one `files` row, for this host and its source, whose
    /// committed position is the file's length (every line in it is complete and stored).
    pub fn assert_positions_at_end(&self, db: &TestDb) {
        let files = db.files();
        for path in self.files.keys() {
            let rows: Vec<&FileRow> = files
                .iter()
                .filter(|f| Path::new(&f.path) == path.as_path())
                .collect();
            assert_eq!(rows.len(), 1, "{}: files rows {rows:?}", path.display());
            let len = std::fs::metadata(path).unwrap().len() as i64;
            assert_eq!(
                rows[0].committed_offset,
                len,
                "{}: committed_offset",
                path.display()
            );
            assert_eq!(rows[0].host, HOST, "{}: host", path.display());
            assert_eq!(
                rows[0].source,
                self.source_of(path),
                "{}: source",
                path.display()
            );
        }
    }

    /// Cheaper check for large runs: every expected (path, offset) is stored exactly once as a
    /// record and nothing else is stored.
    pub fn assert_offsets_stored(&self, db: &TestDb) {
        db.assert_no_duplicates();
        assert_eq!(db.dead_count(), 0, "dead letters");
        let rows = db.event_offsets();
        let mut by_path: BTreeMap<PathBuf, Vec<i64>> = BTreeMap::new();
        for r in &rows {
            let path = r.path.as_ref().unwrap_or_else(|| {
                panic!("record without a files row (file_id {}): {r:?}", r.file_id)
            });
            by_path
                .entry(PathBuf::from(path))
                .or_default()
                .push(r.file_offset);
        }
        let expected: BTreeMap<PathBuf, Vec<i64>> = self
            .files
            .iter()
            .map(|(p, v)| (p.clone(), v.iter().map(|(o, _)| *o).collect()))
            .collect();
        for (path, want) in &expected {
            let got = by_path.get(path).map(Vec::as_slice).unwrap_or(&[]);
            if got != want.as_slice() {
                let missing = want
                    .iter()
                    .filter(|o| got.binary_search(o).is_err())
                    .count();
                let extra = got
                    .iter()
                    .filter(|o| want.binary_search(o).is_err())
                    .count();
                panic!(
                    "{}: {} rows stored, {} lines written ({missing} missing, {extra} unexpected)",
                    path.display(),
                    got.len(),
                    want.len()
                );
            }
        }
        assert_eq!(
            by_path.keys().collect::<Vec<_>>(),
            expected.keys().collect::<Vec<_>>(),
            "files with rows"
        );
        assert_eq!(rows.len() as i64, self.total(), "record count");
    }
}

/// Appends `lines`, each followed by `\n`, to `path` in one write; returns each line's offset.
pub fn append_lines(path: &Path, lines: &[String]) -> Vec<i64> {
    let mut buf = Vec::new();
    let mut offsets = Vec::with_capacity(lines.len());
    let start = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0) as i64;
    for line in lines {
        offsets.push(start + buf.len() as i64);
        buf.extend_from_slice(line.as_bytes());
        buf.push(b'\n');
    }
    append_bytes(path, &buf);
    offsets
}

/// Appends raw bytes to `path`, creating it if needed.
pub fn append_bytes(path: &Path, bytes: &[u8]) {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    f.write_all(bytes)
        .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// `n` JSON lines for file `tag`, numbered from `first`, of varying length.
pub fn json_lines(tag: &str, first: usize, n: usize) -> Vec<String> {
    (first..first + n)
        .map(|k| {
            format!(
                r#"{{"seq":{k},"file":"{tag}","level":"INFO","msg":"{tag} line {k}","pad":"{}"}}"#,
                "x".repeat(k % 23)
            )
        })
        .collect()
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

// ---------------------------------------------------------------------------------------------
// The child process
// ---------------------------------------------------------------------------------------------

static RUN_COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A `logbelt` child with its stderr in a file. Killed on drop if still running.
pub struct Daemon {
    child: Child,
    stderr_path: PathBuf,
    status: Option<ExitStatus>,
}

impl Daemon {
    fn spawn(env: &TestEnv, args: &[&str]) -> Daemon {
        let config = env.config_path();
        let mut args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_ref()).collect();
        args.push(config.as_os_str());
        Daemon::spawn_in(env.dir.path(), &args)
    }

    /// Runs `logbelt ARGS` in `dir`, its stderr going to a new file in `dir`.
    pub fn spawn_in<S: AsRef<std::ffi::OsStr>>(dir: &Path, args: &[S]) -> Daemon {
        let n = RUN_COUNTER.fetch_add(1, Ordering::SeqCst);
        let stderr_path = dir.join(format!("logbelt-{n}.stderr"));
        let child = logbelt_command(dir, &stderr_path)
            .args(args)
            .spawn()
            .expect("spawn logbelt");
        Daemon {
            child,
            stderr_path,
            status: None,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// What the child wrote to stderr so far, without ANSI colours.
    pub fn stderr(&self) -> String {
        strip_ansi(&std::fs::read_to_string(&self.stderr_path).unwrap_or_default())
    }

    /// Panics (with the stderr) if the child has exited.
    pub fn assert_running(&mut self) {
        if self.status.is_none() {
            self.status = self.child.try_wait().expect("try_wait");
        }
        if let Some(status) = self.status {
            panic!(
                "logbelt exited unexpectedly: {status}\n--- stderr ---\n{}",
                self.stderr()
            );
        }
    }

    /// Polls stderr until it contains `needle` `times` times.
    pub fn wait_for_log_n(&mut self, needle: &str, times: usize) {
        wait_until(
            &format!("{needle:?} ×{times} in logbelt's stderr"),
            DEADLINE,
            || {
                if self.stderr().matches(needle).count() >= times {
                    return true;
                }
                self.assert_running();
                false
            },
        );
    }

    /// Polls stderr until it contains `needle`.
    pub fn wait_for_log(&mut self, needle: &str) {
        self.wait_for_log_n(needle, 1);
    }

    /// Waits until the pipeline runs (its tail tasks are started).
    pub fn wait_started(&mut self) {
        self.wait_for_log("Pipeline started.");
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        let r = unsafe { libc::kill(self.pid(), sig) };
        assert_eq!(r, 0, "kill({}, {sig}) failed", self.pid());
    }

    pub fn sigint(&self) {
        self.signal(libc::SIGINT);
    }

    pub fn sigterm(&self) {
        self.signal(libc::SIGTERM);
    }

    /// SIGKILL, then reap.
    pub fn kill9(&mut self) {
        self.child.kill().expect("SIGKILL");
        self.status = Some(self.child.wait().expect("wait"));
    }

    /// Waits for the child to exit; fails the test (and kills the child) after `deadline`.
    pub fn wait_exit(&mut self, deadline: Duration) -> ExitStatus {
        if let Some(s) = self.status {
            return s;
        }
        let start = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                self.status = Some(s);
                return s;
            }
            if start.elapsed() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "logbelt did not exit within {deadline:?}\n--- stderr ---\n{}",
                    self.stderr()
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// Waits for the exit and asserts code 0.
    pub fn assert_exit_ok(&mut self) {
        let status = self.wait_exit(DEADLINE);
        assert_eq!(
            status.code(),
            Some(0),
            "logbelt exited with {status}\n--- stderr ---\n{}",
            self.stderr()
        );
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.status.is_none() && matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `logbelt` with a clean environment for tests: plain-text logs at info level, stderr to
/// `stderr_path`, run in `cwd`.
pub fn logbelt_command(cwd: &Path, stderr_path: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(cwd)
        .env("NO_COLOR", "1")
        .env(
            "RUST_LOG",
            std::env::var("LOGBELT_TEST_RUST_LOG").unwrap_or_else(|_| "info".into()),
        )
        .env_remove("LOGBELT_FAULTS")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(stderr_path).expect("create the stderr file"));
    cmd
}

/// Removes ANSI escape sequences (`ESC [ … letter`).
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
