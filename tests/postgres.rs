//! PostgreSQL as the production backend: many hosts into one database, and a server restart in
//! the middle of ingestion (on a private server this test starts itself, so the shared one is
//! untouched).

use std::path::{Path, PathBuf};
use std::process::Command;

use diesel::pg::PgConnection;
use diesel::sql_types::{BigInt, Text};
use diesel::{Connection, QueryableByName, RunQueryDsl};

use crate::util::{
    append_lines, json_lines, wait_until, Backend, Daemon, TestEnv, DEADLINE, PG_REQUIRE_VAR,
    PG_URL_VAR,
};

#[derive(QueryableByName, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct HostCount {
    #[diesel(sql_type = Text)]
    host: String,
    #[diesel(sql_type = BigInt)]
    n: i64,
}

#[derive(QueryableByName, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct HostPosition {
    #[diesel(sql_type = Text)]
    host: String,
    #[diesel(sql_type = Text)]
    path: String,
    #[diesel(sql_type = BigInt)]
    committed_offset: i64,
}

fn count(conn: &mut PgConnection, sql: &str) -> i64 {
    diesel::sql_query(sql)
        .load::<crate::util::Count>(conn)
        .expect(sql)[0]
        .n
}

fn per_host(conn: &mut PgConnection) -> Vec<HostCount> {
    diesel::sql_query("SELECT host, count(*) AS n FROM log_events GROUP BY host ORDER BY host")
        .load(conn)
        .expect("rows per host")
}

fn positions(conn: &mut PgConnection) -> Vec<HostPosition> {
    diesel::sql_query("SELECT host, path, committed_offset FROM files ORDER BY host, path")
        .load(conn)
        .expect("positions")
}

fn size(path: &Path) -> i64 {
    std::fs::metadata(path).expect("stat").len() as i64
}

/// Two logbelt processes with different `[agent] host` tail the same files into one database at
/// the same time: each stores every line once under its host, and their positions never mix.
#[test]
#[cfg_attr(
    not(logbelt_postgres_tests),
    ignore = "PostgreSQL: set LOGBELT_TEST_POSTGRES_URL to run"
)]
fn two_hosts_into_one_database_keep_their_own_rows_and_positions() {
    let Some(env) = TestEnv::new(Backend::Postgres) else {
        return;
    };
    let (a, b) = (env.log("a.jsonl"), env.log("b.jsonl"));
    append_lines(&a, &json_lines("a", 0, 3000));
    append_lines(&b, &json_lines("b", 0, 2000));
    let config_for = |host: &str| {
        let mut cfg = env.config().small_batches();
        cfg.host = host.to_string();
        let path = env.path(&format!("{host}.toml"));
        std::fs::write(&path, cfg.to_toml()).expect("write config");
        path
    };
    let (web1, web2) = (config_for("web-1"), config_for("web-2"));
    let once = |config: &PathBuf| {
        Daemon::spawn_in(
            env.dir.path(),
            &[
                "run".as_ref(),
                "--once".as_ref(),
                "--config".as_ref(),
                config.as_os_str(),
            ],
        )
    };
    // Both at once: their migrations race (advisory lock) and their commits interleave.
    let (mut d1, mut d2) = (once(&web1), once(&web2));
    d1.assert_exit_ok();
    d2.assert_exit_ok();

    let mut conn = PgConnection::establish(&env.db.config_url).expect("connect");
    let both = |n: i64| {
        vec![
            HostCount {
                host: "web-1".into(),
                n,
            },
            HostCount {
                host: "web-2".into(),
                n,
            },
        ]
    };
    assert_eq!(per_host(&mut conn), both(5000));
    for host in ["web-1", "web-2"] {
        let dups = count(
            &mut conn,
            &format!(
                "SELECT count(*) AS n FROM (SELECT fields->>'seq', fields->>'file' FROM log_events \
                 WHERE host = '{host}' GROUP BY 1, 2 HAVING count(*) > 1) d"
            ),
        );
        assert_eq!(dups, 0, "{host}: lines stored twice");
    }
    let at_end = |a_end: i64, b_end: i64, b2_end: i64| {
        let (a, b) = (a.display().to_string(), b.display().to_string());
        vec![
            HostPosition {
                host: "web-1".into(),
                path: a.clone(),
                committed_offset: a_end,
            },
            HostPosition {
                host: "web-1".into(),
                path: b.clone(),
                committed_offset: b_end,
            },
            HostPosition {
                host: "web-2".into(),
                path: a,
                committed_offset: a_end,
            },
            HostPosition {
                host: "web-2".into(),
                path: b,
                committed_offset: b2_end,
            },
        ]
    };
    let (a_end, b_end) = (size(&a), size(&b));
    assert_eq!(positions(&mut conn), at_end(a_end, b_end, b_end));

    // Only web-1 runs after more lines arrive: web-2's position stays where it was.
    append_lines(&b, &json_lines("b", 2000, 500));
    once(&web1).assert_exit_ok();
    assert_eq!(
        per_host(&mut conn),
        vec![
            HostCount {
                host: "web-1".into(),
                n: 5500
            },
            HostCount {
                host: "web-2".into(),
                n: 5000
            }
        ]
    );
    assert_eq!(positions(&mut conn), at_end(a_end, size(&b), b_end));
    once(&web2).assert_exit_ok();
    assert_eq!(per_host(&mut conn), both(5500));
}

/// A PostgreSQL server of the test's own, in a temporary folder on a free port. Stopped (and
/// its folder removed) on drop.
struct PrivateServer {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
}

impl PrivateServer {
    /// Starts one, or returns `None` (with the reason printed) where no PostgreSQL server
    /// binaries are installed and the PostgreSQL tests are not required.
    fn start() -> Option<PrivateServer> {
        let required = std::env::var(PG_REQUIRE_VAR).as_deref() == Ok("1");
        if std::env::var(PG_URL_VAR).map_or(true, |u| u.is_empty()) && !required {
            eprintln!("skipping: {PG_URL_VAR} is unset");
            return None;
        }
        let Some(bin) = server_bindir() else {
            assert!(
                !required,
                "no PostgreSQL server binaries (initdb, pg_ctl) found"
            );
            eprintln!("skipping: no PostgreSQL server binaries (initdb, pg_ctl) found");
            return None;
        };
        let dir = tempfile::Builder::new()
            .prefix("logbelt-pg-")
            .tempdir()
            .expect("temp dir");
        // initdb refuses to run as root: run the server as the `postgres` user then.
        if is_root() {
            let ok = Command::new("chown")
                .arg("-R")
                .arg("postgres:")
                .arg(dir.path())
                .status();
            assert!(
                ok.is_ok_and(|s| s.success()),
                "chown the server folder to postgres"
            );
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let server = PrivateServer { dir, bin, port };
        server.pg(
            "initdb",
            &[
                "-D",
                &server.data(),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
                "-E",
                "UTF8",
            ],
        );
        server.ctl_start();
        Some(server)
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Runs a server binary (as `postgres` when we are root) and asserts it succeeded.
    fn pg(&self, tool: &str, args: &[&str]) {
        let exe = self.bin.join(tool);
        let mut cmd = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        let out = cmd.args(args).output().expect("run a PostgreSQL tool");
        assert!(
            out.status.success(),
            "{tool} {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn ctl_start(&self) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("server.log").display().to_string();
        self.pg(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-o",
                &opts,
                "-l",
                &log,
                "-w",
                "-t",
                "60",
                "start",
            ],
        );
    }

    fn ctl_stop(&self, mode: &str) {
        self.pg(
            "pg_ctl",
            &["-D", &self.data(), "-m", mode, "-w", "-t", "60", "stop"],
        );
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        let _ = Command::new(if is_root() { "runuser" } else { "true" })
            .args(if is_root() {
                vec!["-u", "postgres", "--"]
            } else {
                vec![]
            })
            .arg(self.bin.join("pg_ctl"))
            .args(["-D", &self.data(), "-m", "immediate", "-w", "stop"])
            .output();
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The folder of `initdb` and `pg_ctl`: `pg_config --bindir`, else Debian's layout.
fn server_bindir() -> Option<PathBuf> {
    let from_pg_config = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    let debian = std::fs::read_dir("/usr/lib/postgresql")
        .ok()
        .and_then(|dirs| {
            let mut versions: Vec<PathBuf> = dirs.flatten().map(|d| d.path().join("bin")).collect();
            versions.sort();
            versions.pop()
        });
    [from_pg_config, debian]
        .into_iter()
        .flatten()
        .find(|b| b.join("initdb").is_file() && b.join("pg_ctl").is_file())
}

/// The server stops in the middle of ingestion and comes back: logbelt holds what it read,
/// retries, reconnects, and every line is stored exactly once.
#[test]
#[cfg_attr(
    not(logbelt_postgres_tests),
    ignore = "PostgreSQL: set LOGBELT_TEST_POSTGRES_URL to run"
)]
fn server_restart_during_ingestion_loses_and_doubles_nothing() {
    let Some(server) = PrivateServer::start() else {
        return;
    };
    let dir = tempfile::Builder::new()
        .prefix("logbelt-test-")
        .tempdir()
        .expect("temp dir");
    std::fs::create_dir(dir.path().join("logs")).expect("logs/");
    let total = 60_000;
    append_lines(&dir.path().join("logs/a.jsonl"), &json_lines("a", 0, total));
    let mut cfg = crate::util::ConfigBuilder::new(&server.url()).small_batches();
    cfg.database_extra
        .push(("retry_max_backoff_ms".into(), "500".into()));
    let config = dir.path().join("logbelt.toml");
    std::fs::write(&config, cfg.to_toml()).expect("write config");
    let mut d = Daemon::spawn_in(
        dir.path(),
        &["run".as_ref(), "--config".as_ref(), config.as_os_str()],
    );

    let rows = |conn: &mut Option<PgConnection>| -> Option<i64> {
        if conn.is_none() {
            *conn = PgConnection::establish(&server.url()).ok();
        }
        let c = conn.as_mut()?;
        match diesel::sql_query("SELECT count(*) AS n FROM log_events")
            .load::<crate::util::Count>(c)
        {
            Ok(r) => Some(r[0].n),
            Err(_) => {
                *conn = None;
                None
            }
        }
    };
    let mut conn = None;
    wait_until("the first rows", DEADLINE, || {
        rows(&mut conn).is_some_and(|n| n > 0)
    });
    conn = None;
    server.ctl_stop("fast");
    // logbelt notices: its commit fails and it starts retrying (a log line, not a sleep).
    d.wait_for_log("Database unavailable");
    // Issue 11 §8: while the server is down, each retry logs the real cause (it used to say
    // "database still unreachable" after the first one).
    d.wait_for_log_n("Database unavailable", 3);
    let stderr = d.stderr();
    let retries: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("Database unavailable"))
        .collect();
    assert!(
        retries[1..]
            .iter()
            .all(|l| l.contains("cannot connect to PostgreSQL")),
        "retries name the cause:\n{}",
        retries.join("\n")
    );
    assert!(
        !stderr.contains("database still unreachable"),
        "the cause is hidden:\n{stderr}"
    );
    d.assert_running();
    server.ctl_start();
    wait_until("every row after the restart", DEADLINE, || {
        rows(&mut conn) == Some(total as i64)
    });
    d.sigint();
    d.assert_exit_ok();

    let c = conn.as_mut().expect("connected");
    assert_eq!(
        count(
            c,
            "SELECT count(*) AS n FROM (SELECT file_offset FROM log_events GROUP BY file_id, file_offset \
             HAVING count(*) > 1) d"
        ),
        0,
        "lines stored twice"
    );
    assert_eq!(
        count(
            c,
            "SELECT count(DISTINCT fields->>'seq') AS n FROM log_events"
        ),
        total as i64
    );
    assert_eq!(count(c, "SELECT count(*) AS n FROM dead_letters"), 0);
}
