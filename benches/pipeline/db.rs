//! Databases: where each measurement writes, the bench's own connections, and logbelt's config.

use std::fs;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sql_types::BigInt;
use rusqlite::OpenFlags;

use crate::child::Logbelt;
use crate::{HOST, SOURCE};

/// One database as logbelt's config names it.
#[derive(Debug, Clone)]
pub enum DbSpec {
    Sqlite { path: PathBuf },
    Postgres { url: String },
}

impl DbSpec {
    pub fn config_url(&self) -> String {
        match self {
            DbSpec::Sqlite { path } => format!("sqlite://{}", path.display()),
            DbSpec::Postgres { url } => url.clone(),
        }
    }

    /// Connects the bench to the database (the SQLite file must exist: logbelt creates it).
    pub fn connect(&self) -> Result<Db, String> {
        match self {
            DbSpec::Sqlite { path } => open_sqlite(path).map(Db::Sqlite),
            DbSpec::Postgres { url } => PgConnection::establish(url)
                .map(Db::Pg)
                .map_err(|e| format!("connect to the bench database: {e}")),
        }
    }

    /// Connects once logbelt has created its tables (polling until `deadline`).
    pub fn connect_when_migrated(&self, deadline: Instant) -> Result<Db, String> {
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

/// Opens an existing SQLite file read-write (logbelt creates it), with a 10 s busy timeout.
pub fn open_sqlite(path: &Path) -> Result<rusqlite::Connection, String> {
    let conn = rusqlite::Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE)
        .map_err(|e| format!("open {}: {e}", path.display()))?;
    conn.busy_timeout(Duration::from_secs(10))
        .map_err(|e| format!("busy timeout on {}: {e}", path.display()))?;
    Ok(conn)
}

/// A bench-side connection.
pub enum Db {
    Sqlite(rusqlite::Connection),
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
            Db::Sqlite(c) => c
                .query_row(sql, [], |row| row.get(0))
                .map_err(|e| format!("{sql}: {e}")),
            Db::Pg(c) => diesel::sql_query(sql)
                .get_result::<Scalar>(c)
                .map(|s| s.v)
                .map_err(|e| format!("{sql}: {e}")),
        }
    }

    pub fn exec(&mut self, sql: &str) -> Result<(), String> {
        match self {
            Db::Sqlite(c) => c.execute_batch(sql).map_err(|e| format!("{sql}: {e}")),
            Db::Pg(c) => c.batch_execute(sql).map_err(|e| format!("{sql}: {e}")),
        }
    }

    pub fn events(&mut self) -> Result<i64, String> {
        self.scalar("SELECT count(*) AS v FROM log_events")
    }

    pub fn dead_letters(&mut self) -> Result<i64, String> {
        self.scalar("SELECT count(*) AS v FROM dead_letters")
    }

    /// Bytes committed, all files together: cheap to poll, and readable while `log_events` is
    /// locked.
    pub fn committed_bytes(&mut self) -> Result<i64, String> {
        self.scalar("SELECT CAST(COALESCE(SUM(committed_offset), 0) AS BIGINT) AS v FROM files")
    }
}

/// The PostgreSQL database `logbelt_bench_<pid>`, recreated for every measurement and dropped
/// on drop.
pub struct PgBenchDb {
    admin_url: String,
    name: String,
}

impl PgBenchDb {
    pub fn new(admin_url: String) -> PgBenchDb {
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
    pub fn recreate(&mut self) -> Result<String, String> {
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

    pub fn server_version(&self) -> String {
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
pub fn write_config(dir: &Path, db: &DbSpec, include: &str, extra: &str) -> PathBuf {
    write_config_with_database(dir, db, "", include, extra)
}

/// [`write_config`] with more `[database]` keys (`database`, lines of TOML).
pub fn write_config_with_database(
    dir: &Path,
    db: &DbSpec,
    database: &str,
    include: &str,
    extra: &str,
) -> PathBuf {
    let path = dir.join("logbelt.toml");
    let text = format!(
        "[database]\nurl = {}\n{database}\n[agent]\nhost = {}\n\n[[sources]]\nname = {}\ninclude = [{}]\n\n{extra}",
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
pub fn create_schema(dir: &Path, db: &DbSpec) -> Result<(), String> {
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
/// Polls until `log_events` holds `n` rows (fails if it holds more, if logbelt exits, or at the
/// deadline).
pub fn wait_rows(
    db: &mut Db,
    child: &mut Logbelt,
    n: i64,
    deadline: Instant,
) -> Result<(), String> {
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
