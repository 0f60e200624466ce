//! The test database: a SQLite file in the test's folder, or a fresh PostgreSQL database
//! dropped afterwards; the queries the tests check the three tables with; a lock that blocks
//! logbelt's commits.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use diesel::pg::{Pg, PgConnection};
use diesel::sql_types::{BigInt, Binary, Nullable, Text};
use diesel::sqlite::{Sqlite, SqliteConnection};
use diesel::{Connection, QueryableByName, RunQueryDsl};

use super::{test_name, wait_until, Backend, Daemon, DEADLINE, PG_REQUIRE_VAR, PG_URL_VAR};

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
    pub(super) fn new(backend: Backend, dir: &Path) -> Option<TestDb> {
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

    /// Runs `sql` (several statements allowed), for a test that sets up a database by hand.
    pub fn execute(&self, sql: &str) {
        use diesel::connection::SimpleConnection;
        self.with_conn(|c| {
            let done = match c {
                Conn::Sqlite(c) => c.batch_execute(sql),
                Conn::Pg(c) => c.batch_execute(sql),
            };
            done.unwrap_or_else(|e| panic!("{e}\n{sql}"))
        })
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

    /// Waits until a commit of `daemon` is held up by a [`WriteBlock`]: PostgreSQL shows a lock
    /// wait in `pg_locks`; SQLite's commit fails on the lock after `busy_timeout_ms` and logbelt
    /// logs that it holds the batch and retries (the only sign there is).
    pub fn wait_commit_blocked(&self, daemon: &mut Daemon) {
        wait_until("a commit waiting on the lock", DEADLINE, || {
            daemon.assert_running();
            match self.backend {
                Backend::Postgres => {
                    let waiting: Vec<Count> = self.load(
                        "SELECT count(*) AS n FROM pg_locks l JOIN pg_database d \
                         ON d.oid = l.database \
                         WHERE NOT l.granted AND d.datname = current_database()",
                    );
                    waiting[0].n > 0
                }
                Backend::Sqlite => daemon.stderr().contains("retrying"),
            }
        });
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
    #[allow(dead_code)] // shown in failure messages
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

#[allow(dead_code)] // shown in failure messages
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
