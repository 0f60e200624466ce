//! Many logbelt processes into one PostgreSQL database (issue 13 §6, §7): a fleet of agents,
//! each with its own `[agent] host` and its own files, all at once — directly, and through a
//! PgBouncer in transaction pooling mode that the test starts itself; a client refused by
//! PgBouncer's `max_client_conn` at start; and a commit held up by a table lock, which
//! `lock_timeout` turns into a warning and a retry instead of a silent hang.
//!
//! PgBouncer tests are skipped (with the reason on stderr) when `pgbouncer` is not installed,
//! and fail instead when `LOGBELT_REQUIRE_PGBOUNCER=1` (CI sets it). PgBouncer refuses to run as
//! root: as root it runs as `postgres` (`setpriv`), its files in a folder that user owns.
//!
//! The fleet's size can be changed for a measurement only (`LOGBELT_FLEET_AGENTS`, default 16,
//! e.g. 1 for the single-agent baseline; `LOGBELT_FLEET_LINES` per agent, default 5,000;
//! `LOGBELT_FLEET_BIN`, e.g. a release build of `logbelt`): each fleet test prints its rows/s
//! and the most server connections it saw.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use diesel::pg::PgConnection;
use diesel::sql_types::{BigInt, Text};
use diesel::{Connection, QueryableByName, RunQueryDsl};

use crate::util::{
    append_lines, json_lines, logbelt_command, poll_until, test_name, wait_until, Backend,
    ConfigBuilder, Daemon, TestEnv, DEADLINE, PG_URL_VAR,
};

/// When `1`, a PgBouncer test on a machine without pgbouncer fails instead of being skipped.
const PGBOUNCER_REQUIRE_VAR: &str = "LOGBELT_REQUIRE_PGBOUNCER";

/// Where Debian installs pgbouncer (not on a non-root `PATH`).
const PGBOUNCER_PATHS: &[&str] = &["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"];

/// Agents in a fleet test (at least), and lines each writes.
const AGENTS: usize = 16;
const LINES: usize = 5_000;

/// How long a whole fleet may take before the test fails: sixteen debug builds sharing two
/// cores with the database. A passing run takes a fraction of it.
const FLEET_DEADLINE: Duration = Duration::from_secs(300);

#[derive(QueryableByName, Debug, PartialEq, Eq)]
struct HostRows {
    #[diesel(sql_type = Text)]
    host: String,
    #[diesel(sql_type = BigInt)]
    n: i64,
    #[diesel(sql_type = BigInt)]
    offsets: i64,
    #[diesel(sql_type = BigInt)]
    seqs: i64,
}

#[derive(QueryableByName, Debug, PartialEq, Eq)]
struct HostPosition {
    #[diesel(sql_type = Text)]
    host: String,
    #[diesel(sql_type = BigInt)]
    committed_offset: i64,
}

fn env_usize(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The test database's name (the last part of its URL).
fn database_name(url: &str) -> String {
    let base = url.split('?').next().unwrap_or(url);
    base.rsplit('/').next().unwrap_or(base).to_string()
}

/// `host:port` of the admin URL's server (what PgBouncer points at); 127.0.0.1:5432 when the
/// URL leaves them out.
fn server_of(url: &str) -> (String, u16) {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) => (h, p.parse().unwrap_or(5432)),
        None => (hostport, 5432),
    };
    let host = if host.is_empty() { "127.0.0.1" } else { host };
    (host.to_string(), port)
}

/// The user of a URL (`postgres` when it names none).
fn user_of(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    match authority.rsplit_once('@') {
        Some((userinfo, _)) => userinfo.split(':').next().unwrap_or("postgres").to_string(),
        None => "postgres".to_string(),
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

// ---------------------------------------------------------------------------------------------
// PgBouncer
// ---------------------------------------------------------------------------------------------

/// A PgBouncer of the test's own on a free port, in transaction pooling mode, in front of the
/// test server. Killed (and its folder removed) on drop.
struct PgBouncer {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl PgBouncer {
    /// Starts one with `pool_size` server connections per database and user and at most
    /// `max_client_conn` clients, or returns `None` (with the reason printed) when pgbouncer is
    /// not installed and [`PGBOUNCER_REQUIRE_VAR`] is not `1`.
    fn start(admin_url: &str, pool_size: usize, max_client_conn: usize) -> Option<PgBouncer> {
        let Some(bin) = PGBOUNCER_PATHS
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
        else {
            if std::env::var(PGBOUNCER_REQUIRE_VAR).as_deref() == Ok("1") {
                panic!(
                    "{}: pgbouncer is not installed and {PGBOUNCER_REQUIRE_VAR}=1 \
                     (apt-get install pgbouncer)",
                    test_name()
                );
            }
            eprintln!(
                "skipping {}: pgbouncer is not installed (looked in {PGBOUNCER_PATHS:?}; \
                 apt-get install pgbouncer)",
                test_name()
            );
            return None;
        };
        let dir = tempfile::Builder::new()
            .prefix("logbelt-pgbouncer-")
            .tempdir()
            .expect("temp dir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let (server_host, server_port) = server_of(admin_url);
        let user = user_of(admin_url);
        let d = dir.path().display();
        let ini = dir.path().join("pgbouncer.ini");
        std::fs::write(
            &ini,
            format!(
                "[databases]\n\
                 * = host={server_host} port={server_port}\n\
                 [pgbouncer]\n\
                 listen_addr = 127.0.0.1\n\
                 listen_port = {port}\n\
                 unix_socket_dir =\n\
                 auth_type = trust\n\
                 auth_file = {d}/userlist.txt\n\
                 pool_mode = transaction\n\
                 default_pool_size = {pool_size}\n\
                 max_client_conn = {max_client_conn}\n\
                 logfile = {d}/pgbouncer.log\n\
                 pidfile = {d}/pgbouncer.pid\n\
                 ignore_startup_parameters = extra_float_digits\n"
            ),
        )
        .expect("write pgbouncer.ini");
        std::fs::write(
            dir.path().join("userlist.txt"),
            format!("\"{user}\" \"\"\n"),
        )
        .expect("write userlist.txt");
        let mut cmd = if is_root() {
            // setpriv execs pgbouncer itself (no process in between to outlive a kill).
            let ok = Command::new("chown")
                .arg("-R")
                .arg("postgres:")
                .arg(dir.path())
                .status();
            assert!(
                ok.is_ok_and(|s| s.success()),
                "chown the pgbouncer folder to postgres"
            );
            let mut c = Command::new("setpriv");
            c.args([
                "--reuid=postgres",
                "--regid=postgres",
                "--init-groups",
                "--",
            ])
            .arg(&bin);
            c
        } else {
            Command::new(&bin)
        };
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod the pgbouncer folder");
        let child = cmd
            .arg(&ini)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn pgbouncer");
        let mut bouncer = PgBouncer { child, port, dir };
        // Ready when it lets a client through to the server.
        let probe = bouncer.url("postgres");
        wait_until("pgbouncer to accept connections", DEADLINE, || {
            if let Ok(Some(status)) = bouncer.child.try_wait() {
                panic!("pgbouncer exited: {status}\n{}", bouncer.log());
            }
            PgConnection::establish(&probe).is_ok()
        });
        Some(bouncer)
    }

    /// A URL of `database` through this PgBouncer.
    fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pgbouncer.log")).unwrap_or_default()
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The PgBouncer tests' admin URL, or `None` when the PostgreSQL tests are skipped.
fn admin_url() -> Option<String> {
    std::env::var(PG_URL_VAR).ok().filter(|u| !u.is_empty())
}

// ---------------------------------------------------------------------------------------------
// The fleet
// ---------------------------------------------------------------------------------------------

/// The `logbelt` to run: the one under test, or `LOGBELT_FLEET_BIN` (a release build, for a measurement).
fn fleet_command(cwd: &Path, stderr: &Path) -> Command {
    match std::env::var_os("LOGBELT_FLEET_BIN") {
        Some(bin) => {
            let mut cmd = Command::new(bin);
            cmd.current_dir(cwd)
                .env("NO_COLOR", "1")
                .env("RUST_LOG", "info")
                .env_remove("LOGBELT_FAULTS")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(stderr).expect("create the stderr file"));
            cmd
        }
        None => logbelt_command(cwd, stderr),
    }
}

/// What a fleet run measured.
struct FleetRun {
    rows: i64,
    elapsed: Duration,
    /// The most server connections to the test database seen at once (sampled).
    peak_connections: i64,
}

/// `agents` logbelt processes (`run --once`), host `fleet-NN` each, each reading its own file of
/// `lines` lines, all started at once against `url`; waits for every one to exit 0 and checks
/// that every host's rows are exact: as many rows, distinct offsets and distinct lines as it
/// wrote, its position at the end of its file, no dead letter, nothing twice.
fn run_fleet(
    env: &TestEnv,
    url: &str,
    agents: usize,
    lines: usize,
    tweak: &dyn Fn(&mut ConfigBuilder),
) -> FleetRun {
    let mut sizes = Vec::with_capacity(agents);
    let mut configs = Vec::with_capacity(agents);
    for i in 0..agents {
        let host = format!("fleet-{i:02}");
        let dir = env.path(&host);
        std::fs::create_dir_all(dir.join("logs")).expect("agent folder");
        let log = dir.join("logs/a.jsonl");
        append_lines(&log, &json_lines(&host, 0, lines));
        sizes.push(std::fs::metadata(&log).expect("stat").len() as i64);
        let mut cfg = ConfigBuilder::new(url);
        cfg.host = host;
        cfg.database_extra
            .push(("retry_max_backoff_ms".into(), "1000".into()));
        tweak(&mut cfg);
        let config = dir.join("logbelt.toml");
        std::fs::write(&config, cfg.to_toml()).expect("write config");
        configs.push((dir, config));
    }

    let mut watch = PgConnection::establish(&env.db.config_url).expect("connect");
    let db = database_name(&env.db.config_url);
    let connections = |c: &mut PgConnection| -> i64 {
        diesel::sql_query(format!(
            "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = '{db}' \
             AND pid <> pg_backend_pid()"
        ))
        .load::<crate::util::Count>(c)
        .map(|r| r[0].n)
        .unwrap_or(0)
    };

    let started = Instant::now();
    let mut daemons: Vec<Daemon> = configs
        .iter()
        .map(|(dir, config)| {
            let stderr = dir.join("logbelt.stderr");
            let mut cmd = fleet_command(dir, &stderr);
            cmd.args(["run", "--once", "--config"]).arg(config);
            Daemon::from_command(cmd, &stderr)
        })
        .collect();
    let mut peak = 0;
    let all_exited = poll_until(FLEET_DEADLINE, || {
        peak = peak.max(connections(&mut watch));
        daemons.iter_mut().all(|d| d.exited())
    });
    let elapsed = started.elapsed();
    let stuck: Vec<String> = daemons
        .iter_mut()
        .enumerate()
        .filter_map(|(i, d)| (!d.exited()).then(|| format!("fleet-{i:02}:\n{}", d.stderr())))
        .collect();
    assert!(
        all_exited,
        "{} of {agents} agents still running after {FLEET_DEADLINE:?}:\n{}",
        stuck.len(),
        stuck.join("\n")
    );
    for (i, d) in daemons.iter_mut().enumerate() {
        let status = d.wait_exit(DEADLINE);
        assert_eq!(
            status.code(),
            Some(0),
            "fleet-{i:02} exited with {status}\n--- stderr ---\n{}",
            d.stderr()
        );
    }

    let per_host: Vec<HostRows> = diesel::sql_query(
        "SELECT host, count(*) AS n, count(DISTINCT file_offset) AS offsets, \
         count(DISTINCT fields->>'seq') AS seqs FROM log_events GROUP BY host ORDER BY host",
    )
    .load(&mut watch)
    .expect("rows per host");
    let expected: Vec<HostRows> = (0..agents)
        .map(|i| HostRows {
            host: format!("fleet-{i:02}"),
            n: lines as i64,
            offsets: lines as i64,
            seqs: lines as i64,
        })
        .collect();
    assert_eq!(per_host, expected, "rows per host");
    let positions: Vec<HostPosition> =
        diesel::sql_query("SELECT host, committed_offset FROM files ORDER BY host, path")
            .load(&mut watch)
            .expect("positions");
    let expected: Vec<HostPosition> = (0..agents)
        .map(|i| HostPosition {
            host: format!("fleet-{i:02}"),
            committed_offset: sizes[i],
        })
        .collect();
    assert_eq!(
        positions, expected,
        "one position per host, at its file's end"
    );
    assert_eq!(env.db.dead_count(), 0, "dead letters");
    env.db.assert_no_duplicates();

    let rows = (agents * lines) as i64;
    eprintln!(
        "{}: {agents} agents × {lines} lines = {rows} rows in {:.2} s: {:.0} rows/s together; \
         at most {peak} server connections seen",
        test_name(),
        elapsed.as_secs_f64(),
        rows as f64 / elapsed.as_secs_f64()
    );
    FleetRun {
        rows,
        elapsed,
        peak_connections: peak,
    }
}

/// Sixteen agents straight into one database: their migrations race (one transaction under a
/// transaction-level advisory lock wins, the others find the schema current), their commits
/// interleave, and every host's rows are exact.
#[test]
#[cfg_attr(
    not(logbelt_postgres_tests),
    ignore = "PostgreSQL: set LOGBELT_TEST_POSTGRES_URL to run"
)]
fn sixteen_agents_directly_into_one_database_are_exact() {
    let Some(env) = TestEnv::new(Backend::Postgres) else {
        return;
    };
    let agents = env_usize("LOGBELT_FLEET_AGENTS", AGENTS);
    let lines = env_usize("LOGBELT_FLEET_LINES", LINES);
    let url = env.db.config_url.clone();
    let run = run_fleet(&env, &url, agents, lines, &|_| {});
    assert_eq!(run.rows, (agents * lines) as i64);
    // Each agent holds its `writers` (2) connections, plus one of retention's (issue 13 §1),
    // and only while it runs.
    assert!(
        run.peak_connections <= (agents * 3) as i64,
        "{} connections for {agents} agents of 2 writers",
        run.peak_connections
    );
    let _ = run.elapsed;
}

/// The same fleet through PgBouncer in transaction pooling mode with a pool of 8 server
/// connections: no prepared statement, session advisory lock or session setting is relied on,
/// so migrations still run once and every host's rows are exact; the server never sees more
/// than the pool.
#[test]
#[cfg_attr(
    not(logbelt_postgres_tests),
    ignore = "PostgreSQL: set LOGBELT_TEST_POSTGRES_URL to run"
)]
fn sixteen_agents_through_pgbouncer_transaction_pooling_are_exact() {
    let Some(env) = TestEnv::new(Backend::Postgres) else {
        return;
    };
    let Some(admin) = admin_url() else {
        return;
    };
    let Some(bouncer) = PgBouncer::start(&admin, 8, 200) else {
        return;
    };
    let agents = env_usize("LOGBELT_FLEET_AGENTS", AGENTS);
    let lines = env_usize("LOGBELT_FLEET_LINES", LINES);
    let url = bouncer.url(&database_name(&env.db.config_url));
    let run = run_fleet(&env, &url, agents, lines, &|_| {});
    assert_eq!(run.rows, (agents * lines) as i64);
    assert!(
        run.peak_connections <= 8,
        "{} server connections through a pool of 8\n--- pgbouncer.log ---\n{}",
        run.peak_connections,
        bouncer.log()
    );
}

/// PgBouncer at its `max_client_conn` refuses logbelt at start: logbelt says so in one line
/// (`Database busy`), retries, and once clients leave it starts and stores every line once.
#[test]
#[cfg_attr(
    not(logbelt_postgres_tests),
    ignore = "PostgreSQL: set LOGBELT_TEST_POSTGRES_URL to run"
)]
fn refused_by_pgbouncer_client_limit_retries_then_stores_everything() {
    let Some(env) = TestEnv::new(Backend::Postgres) else {
        return;
    };
    let Some(admin) = admin_url() else {
        return;
    };
    const LIMIT: usize = 3;
    let Some(bouncer) = PgBouncer::start(&admin, 2, LIMIT) else {
        return;
    };
    // The test's own clients fill every slot (idle clients hold no server connection).
    let mut holders: Vec<PgConnection> = Vec::new();
    wait_until("the client slots filled", DEADLINE, || {
        if let Ok(c) = PgConnection::establish(&bouncer.url("postgres")) {
            holders.push(c);
        }
        holders.len() == LIMIT
    });
    let total = 3_000;
    append_lines(&env.log("a.jsonl"), &json_lines("a", 0, total));
    let mut cfg = env.config();
    cfg.url = bouncer.url(&database_name(&env.db.config_url));
    cfg.database_extra
        .push(("retry_max_backoff_ms".into(), "200".into()));
    cfg.write(&env);
    let mut d = env.start();
    d.wait_for_log_n("Database busy", 2);
    let stderr = d.stderr();
    let busy: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("Database busy"))
        .collect();
    assert!(
        busy.iter()
            .all(|l| l.contains("no more connections allowed")),
        "each retry names the cause:\n{stderr}"
    );
    let tables: Vec<crate::util::Count> = env
        .db
        .load("SELECT count(*) AS n FROM pg_class WHERE relname = 'log_events'");
    assert_eq!(
        tables[0].n, 0,
        "logbelt got in while every client slot was taken"
    );
    holders.clear();
    d.wait_started();
    env.db.wait_rows(total as i64, Some(&mut d));
    d.sigint();
    d.assert_exit_ok();
    env.db.assert_no_duplicates();
}

/// Another session holds an ACCESS EXCLUSIVE lock on `files` while logbelt commits: the commit
/// gives up after `lock_timeout` (`busy_timeout_ms`), logbelt warns with the reason, holds the
/// batch and retries; once the lock is released every line arrives exactly once.
#[test]
#[cfg_attr(
    not(logbelt_postgres_tests),
    ignore = "PostgreSQL: set LOGBELT_TEST_POSTGRES_URL to run"
)]
fn held_lock_is_a_warning_and_a_retry_not_a_hang() {
    let Some(env) = TestEnv::new(Backend::Postgres) else {
        return;
    };
    let mut cfg = env.config();
    cfg.database_extra
        .push(("busy_timeout_ms".into(), "200".into()));
    cfg.database_extra
        .push(("retry_max_backoff_ms".into(), "200".into()));
    cfg.write(&env);
    let log = env.log("a.jsonl");
    append_lines(&log, &json_lines("a", 0, 100));
    let mut d = env.start();
    d.wait_started();
    env.db.wait_rows(100, Some(&mut d));

    let mut locker = PgConnection::establish(&env.db.config_url).expect("connect");
    diesel::sql_query("BEGIN")
        .execute(&mut locker)
        .expect("BEGIN");
    diesel::sql_query("LOCK TABLE files IN ACCESS EXCLUSIVE MODE")
        .execute(&mut locker)
        .expect("lock files");
    append_lines(&log, &json_lines("a", 100, 400));
    // Two warnings: the first commit gave up, and so did its retry (the lock is still held).
    d.wait_for_log_n("canceling statement due to lock timeout", 2);
    let stderr = d.stderr();
    let warning = stderr
        .lines()
        .find(|l| l.contains("canceling statement due to lock timeout"))
        .expect("the warning");
    assert!(
        warning.contains("WARN") && warning.contains("busy_timeout_ms = 200 ms"),
        "the warning says what happened and why: {warning}"
    );
    d.assert_running();
    assert_eq!(env.db.rows(), 100, "nothing committed past the lock");
    diesel::sql_query("ROLLBACK")
        .execute(&mut locker)
        .expect("ROLLBACK");

    env.db.wait_rows(500, Some(&mut d));
    d.sigint();
    d.assert_exit_ok();
    env.db.assert_no_duplicates();
    let offsets: Vec<crate::util::Count> = env
        .db
        .load("SELECT count(DISTINCT fields->>'seq') AS n FROM log_events");
    assert_eq!(offsets[0].n, 500);
}
