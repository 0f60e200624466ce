//! A hostile host: what logbelt's process is given can be broken — a stderr that cannot be
//! written (`/dev/full`, a closed pipe), a stdout that cannot be written, a PostgreSQL role
//! without the grants, a SQLite database the user cannot write — and logbelt must go on (the daemon), or stop in one line with a
//! non-zero exit, never hang, panic, or turn good lines into dead letters.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use crate::util::{
    free_addr, health, json_lines, logbelt_command, scrape, toml_str, wait_endpoint, wait_until,
    write_config_with, Backend, Count, Daemon, TestEnv, Written, DEADLINE,
};

/// Exit code of a Rust panic: must never be seen.
const PANIC_EXIT: i32 = 101;

/// `/dev/full`, opened for writing: every write fails with ENOSPC.
fn dev_full() -> Stdio {
    Stdio::from(
        File::options()
            .write(true)
            .open("/dev/full")
            .expect("open /dev/full"),
    )
}

/// The write end of a pipe whose read end is already closed: every write fails with EPIPE.
fn closed_pipe() -> Stdio {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    Stdio::from(writer)
}

/// `logbelt ARGS --config <env's config>` with the given stdout and stderr.
fn spawn(env: &TestEnv, args: &[&str], stdout: Stdio, stderr: Stdio) -> Daemon {
    let unused = env.path("unused.stderr");
    let mut cmd = logbelt_command(env.dir.path(), &unused);
    cmd.stdout(stdout)
        .stderr(stderr)
        .args(args)
        .arg("--config")
        .arg(env.config_path());
    Daemon::from_command(cmd, &unused)
}

/// `[metrics] listen = addr`.
fn listen(addr: std::net::SocketAddr) -> (&'static str, &'static str, String) {
    ("metrics", "listen", toml_str(&addr.to_string()))
}

// ---------------------------------------------------------------------------------------------
// stderr that cannot be written
// ---------------------------------------------------------------------------------------------

both_backends!(run_once_with_stderr_on_dev_full_stores_everything_and_exits_0);
/// Issue 11 §1: `run --once 2>/dev/full` committed nothing and never exited (the log writer
/// panicked in whichever thread logged).
fn run_once_with_stderr_on_dev_full_stores_everything_and_exits_0(b: Backend) {
    let Some(env) = TestEnv::new(b) else { return };
    env.config().write(&env);
    let mut w = Written::new();
    w.append(&env.log("a.jsonl"), &json_lines("a", 0, 500));
    let mut d = spawn(&env, &["run", "--once"], Stdio::null(), dev_full());
    let status = d.wait_exit(DEADLINE);
    assert_eq!(status.code(), Some(0), "run --once 2>/dev/full: {status}");
    w.assert_stored(&env.db);
    w.assert_positions_at_end(&env.db);
}

both_backends!(run_once_with_stderr_a_closed_pipe_stores_everything_and_exits_0);
/// Issue 11 §1: `run --once 2>&1 | head -c 10` — stderr a pipe nobody reads any more.
fn run_once_with_stderr_a_closed_pipe_stores_everything_and_exits_0(b: Backend) {
    let Some(env) = TestEnv::new(b) else { return };
    env.config().write(&env);
    let mut w = Written::new();
    w.append(&env.log("a.jsonl"), &json_lines("a", 0, 500));
    let mut d = spawn(&env, &["run", "--once"], Stdio::null(), closed_pipe());
    let status = d.wait_exit(DEADLINE);
    assert_eq!(
        status.code(),
        Some(0),
        "run --once, stderr a closed pipe: {status}"
    );
    w.assert_stored(&env.db);
    w.assert_positions_at_end(&env.db);
}

both_backends!(daemon_with_stderr_on_dev_full_follows_drains_and_counts_lost_log_lines);
/// The daemon with an unwritable stderr follows files, answers `/metrics` and `/health`, counts
/// the log lines it could not write (`logbelt_log_lines_dropped_total`), and drains on SIGINT.
fn daemon_with_stderr_on_dev_full_follows_drains_and_counts_lost_log_lines(b: Backend) {
    let Some(env) = TestEnv::new(b) else { return };
    let addr = free_addr();
    write_config_with(&env, &env.config(), &[listen(addr)]);
    let mut w = Written::new();
    w.append(&env.log("a.jsonl"), &json_lines("a", 0, 100));
    let mut d = spawn(&env, &["run"], Stdio::null(), dev_full());
    wait_endpoint(addr, &mut d);
    // No log to watch: /health turns 200 once the pipeline (and so the database) is up.
    wait_until("/health 200", DEADLINE, || {
        d.assert_running();
        health(addr) == 200
    });
    env.db.wait_rows(100, Some(&mut d));
    w.append(&env.log("a.jsonl"), &json_lines("a", 100, 100));
    env.db.wait_rows(200, Some(&mut d));
    assert_eq!(health(addr), 200, "/health with stderr on /dev/full");
    // At least "Serving /metrics and /health." and "Pipeline started." were lost; the logging
    // thread counts a line once its write has failed.
    wait_until("lost log lines counted", DEADLINE, || {
        d.assert_running();
        scrape(addr).counter("logbelt_log_lines_dropped_total", &[]) >= 2.0
    });
    d.sigint();
    let status = d.wait_exit(DEADLINE);
    assert_eq!(
        status.code(),
        Some(0),
        "drain with stderr on /dev/full: {status}"
    );
    w.assert_stored(&env.db);
    w.assert_positions_at_end(&env.db);
}

/// A clean run's `/metrics` shows `logbelt_log_lines_dropped_total 0`.
#[test]
fn lost_log_lines_counter_is_rendered_at_zero() {
    let Some(env) = TestEnv::new(Backend::Sqlite) else {
        return;
    };
    let addr = free_addr();
    write_config_with(&env, &env.config(), &[listen(addr)]);
    let mut d = env.start();
    d.wait_started();
    wait_endpoint(addr, &mut d);
    let m = scrape(addr);
    assert_eq!(
        m.get("logbelt_log_lines_dropped_total", &[]),
        Some(0.0),
        "{}",
        m.text
    );
    d.sigint();
    d.assert_exit_ok();
}

both_backends!(second_signal_with_stderr_a_closed_pipe_exits_at_once);
/// Issue 11 §1: the second signal's message went through `eprintln!`, which panicked on a
/// broken stderr and took the signal thread with it: no signal could end the process any more.
/// Here stderr is read until the first signal is acknowledged, then closed; commits are blocked
/// so that the drain cannot finish; the second signal must end the process (130).
fn second_signal_with_stderr_a_closed_pipe_exits_at_once(b: Backend) {
    let Some(env) = TestEnv::new(b) else { return };
    let mut cfg = env.config();
    if b == Backend::Sqlite {
        cfg.database_extra
            .push(("busy_timeout_ms".into(), "100".into()));
    }
    cfg.drain_timeout_ms = 600_000;
    cfg.write(&env);
    let mut w = Written::new();
    w.append(&env.log("a.jsonl"), &json_lines("a", 0, 100));
    let mut d = spawn(&env, &["run"], Stdio::null(), Stdio::piped());
    let pipe = d.take_stderr_pipe().expect("piped stderr");
    // Reads stderr into `log` until the shutdown is acknowledged, then closes the pipe.
    let log = Arc::new(Mutex::new(String::new()));
    let reader = {
        let log = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                let done = line.contains("Shutting down");
                let mut log = log.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
                if done {
                    break;
                }
            }
        })
    };
    let logged = |needle: &str| log.lock().unwrap().contains(needle);
    wait_until("the pipeline to start", DEADLINE, || {
        d.assert_running();
        logged("Pipeline started.")
    });
    env.db.wait_rows(100, Some(&mut d));

    let block = env.db.block_writes();
    w.append(&env.log("a.jsonl"), &json_lines("a", 100, 50));
    wait_until("a commit held up by the lock", DEADLINE, || {
        d.assert_running();
        match b {
            Backend::Sqlite => logged("retrying"),
            Backend::Postgres => {
                let waiting: Vec<Count> = env.db.load(
                    "SELECT count(*) AS n FROM pg_locks l JOIN pg_database d \
                     ON d.oid = l.database \
                     WHERE NOT l.granted AND d.datname = current_database()",
                );
                waiting[0].n > 0
            }
        }
    });
    d.sigint();
    wait_until(
        "the shutdown acknowledged and stderr closed",
        DEADLINE,
        || {
            d.assert_running();
            reader.is_finished()
        },
    );
    d.assert_running();
    d.sigint();
    let status = d.wait_exit(DEADLINE);
    assert_eq!(
        status.code(),
        Some(130),
        "second signal with stderr a closed pipe: {status}\n--- stderr until closed ---\n{}",
        log.lock().unwrap()
    );

    block.release();
    env.run_once();
    w.assert_stored(&env.db);
    w.assert_positions_at_end(&env.db);
}

// ---------------------------------------------------------------------------------------------
// stdout that cannot be written
// ---------------------------------------------------------------------------------------------

/// Issue 11 §1: `validate >/dev/full` panicked (exit 101). `validate`, `status` and `query`
/// with stdout on `/dev/full` exit 1 and say why on stderr; with stderr broken as well they
/// still exit 1, without a panic.
#[test]
fn commands_with_stdout_on_dev_full_exit_1_without_panic() {
    let Some(env) = TestEnv::new(Backend::Sqlite) else {
        return;
    };
    env.config().write(&env);
    let mut w = Written::new();
    w.append(&env.log("a.jsonl"), &json_lines("a", 0, 10));
    env.run_once();
    w.assert_stored(&env.db);

    for args in [
        &["validate"][..],
        &["status"],
        &["status", "--json"],
        &["query"],
        &["query", "--json"],
    ] {
        let err = env.path("cmd.stderr");
        let mut d = spawn(
            &env,
            args,
            dev_full(),
            Stdio::from(File::create(&err).expect("create cmd.stderr")),
        );
        let status = d.wait_exit(DEADLINE);
        let stderr = std::fs::read_to_string(&err).unwrap_or_default();
        assert_eq!(
            status.code(),
            Some(1),
            "{args:?} >/dev/full: {status}\n{stderr}"
        );
        assert!(
            stderr.contains("cannot write to stdout") && !stderr.contains("panicked"),
            "{args:?} >/dev/full: stderr {stderr:?}"
        );
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr:?}");

        for broken_stderr in [dev_full(), closed_pipe()] {
            let mut d = spawn(&env, args, dev_full(), broken_stderr);
            let status = d.wait_exit(DEADLINE);
            assert_ne!(status.code(), Some(PANIC_EXIT), "{args:?}: panicked");
            assert_eq!(
                status.code(),
                Some(1),
                "{args:?} >/dev/full 2>(broken): {status}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL: a role without the grants
// ---------------------------------------------------------------------------------------------

/// A PostgreSQL login role for one test (roles are global to the server: named after the
/// test's database), dropped with everything granted to it when the guard goes.
struct Role {
    name: String,
    /// The test database, as its owner.
    admin_url: String,
}

impl Role {
    /// Creates the role; `None` (the test then skips) unless the backend is PostgreSQL.
    fn create(env: &TestEnv) -> Option<Role> {
        if env.db.backend != Backend::Postgres {
            return None;
        }
        let db_name = env.db.config_url.rsplit('/').next().unwrap().to_string();
        let role = Role {
            name: format!("lb_role_{}", db_name.trim_start_matches("logbelt_test_")),
            admin_url: env.db.config_url.clone(),
        };
        role.sql(&format!(
            "DROP ROLE IF EXISTS {0}; CREATE ROLE {0} LOGIN",
            role.name
        ));
        Some(role)
    }

    /// Runs `sql` on the test database as its owner.
    fn sql(&self, sql: &str) {
        use diesel::connection::SimpleConnection;
        use diesel::Connection;
        let mut c = diesel::PgConnection::establish(&self.admin_url)
            .unwrap_or_else(|e| panic!("connect as the owner: {e}"));
        c.batch_execute(sql)
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// The test database's URL, logging in as this role (the server trusts local logins).
    fn url(&self) -> String {
        let (scheme, rest) = self.admin_url.split_once("://").unwrap();
        let host = rest.split_once('@').map_or(rest, |(_, h)| h);
        format!("{scheme}://{}@{host}", self.name)
    }

    /// The grants the README's least-privilege role lists.
    fn grant_least_privilege(&self) {
        self.sql(&format!(
            "GRANT SELECT, INSERT ON log_events, dead_letters, search_blocks TO {0}; \
             GRANT USAGE ON SEQUENCE log_events_id_seq, dead_letters_id_seq, search_blocks_id_seq TO {0}; \
             GRANT SELECT, INSERT, UPDATE, DELETE ON files TO {0}; \
             GRANT SELECT ON __diesel_schema_migrations TO {0};",
            self.name
        ));
    }
}

impl Drop for Role {
    fn drop(&mut self) {
        use diesel::connection::SimpleConnection;
        use diesel::Connection;
        let dropped = diesel::PgConnection::establish(&self.admin_url).map(|mut c| {
            c.batch_execute(&format!(
                "DROP OWNED BY {0}; DROP ROLE IF EXISTS {0}",
                self.name
            ))
        });
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("warning: cannot drop role {}: {dropped:?}", self.name);
        }
    }
}

/// A PostgreSQL environment whose schema is migrated (by a first `run --once` as the database's
/// owner, with no files yet) and a role without any grant on it yet.
fn migrated_with_role() -> Option<(TestEnv, Role)> {
    let env = TestEnv::new(Backend::Postgres)?;
    env.config().write(&env);
    env.run_once();
    let role = Role::create(&env)?;
    Some((env, role))
}

/// `status`/`query`/`run` stderr lines that are not logbelt's INFO lines.
fn error_lines(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.contains(" INFO "))
        .collect()
}

/// Issue 11 §2: with INSERT on `dead_letters` and `files` but not on `log_events`, `run --once`
/// exited 0 and stored every valid line as a dead letter ("permission denied for table
/// log_events"), moving the positions past them. Now: exit 1, one error line naming the missing
/// grant and the GRANT statement, nothing stored, no position.
#[test]
#[cfg_attr(
    not(logbelt_postgres_tests),
    ignore = "PostgreSQL: set LOGBELT_TEST_POSTGRES_URL to run"
)]
fn postgres_role_without_insert_on_log_events_stops_and_names_the_grant() {
    let Some((env, role)) = migrated_with_role() else {
        return;
    };
    role.grant_least_privilege();
    // CREATE too, so that only the missing INSERT is in the way (not the migrations).
    role.sql(&format!(
        "REVOKE INSERT ON log_events FROM {0}; GRANT CREATE ON SCHEMA public TO {0}",
        role.name
    ));
    let mut cfg = env.config();
    cfg.url = role.url();
    cfg.write(&env);
    let mut w = Written::new();
    w.append(&env.log("a.jsonl"), &json_lines("a", 0, 3000));
    let mut d = Daemon::spawn_in(
        env.dir.path(),
        &[
            "run",
            "--once",
            "--config",
            env.config_path().to_str().unwrap(),
        ],
    );
    let status = d.wait_exit(DEADLINE);
    let stderr = d.stderr();
    assert_eq!(status.code(), Some(1), "{status}\n{stderr}");
    let errors = error_lines(&stderr);
    assert_eq!(errors.len(), 1, "one error line:\n{stderr}");
    assert!(
        errors[0].contains("INSERT on log_events")
            && errors[0].contains(&format!("GRANT INSERT ON log_events TO {}", role.name)),
        "the missing grant is named:\n{stderr}"
    );
    assert_eq!(env.db.dead_count(), 0, "dead letters");
    assert_eq!(env.db.events_count(), 0, "rows");
    assert!(env.db.files().is_empty(), "positions: {:?}", env.db.files());
}

/// Issue 11 §2, the grant revoked while logbelt runs: commits then fail on every line. Not one
/// may become a dead letter and no position may move: logbelt stops (exit 1) naming the grant,
/// and once it is given back, the next run stores every line once.
#[test]
#[cfg_attr(
    not(logbelt_postgres_tests),
    ignore = "PostgreSQL: set LOGBELT_TEST_POSTGRES_URL to run"
)]
fn postgres_grant_revoked_while_running_stops_without_dead_letters() {
    let Some((env, role)) = migrated_with_role() else {
        return;
    };
    role.grant_least_privilege();
    role.sql(&format!("GRANT CREATE ON SCHEMA public TO {0}", role.name));
    let mut cfg = env.config();
    cfg.url = role.url();
    cfg.write(&env);
    let log = env.log("a.jsonl");
    let mut w = Written::new();
    w.append(&log, &json_lines("a", 0, 100));
    let mut d = env.start();
    d.wait_started();
    env.db.wait_rows(100, Some(&mut d));
    let committed = std::fs::metadata(&log).unwrap().len() as i64;

    role.sql(&format!("REVOKE INSERT ON log_events FROM {0}", role.name));
    w.append(&log, &json_lines("a", 100, 50));
    let status = d.wait_exit(DEADLINE);
    let stderr = d.stderr();
    assert_eq!(status.code(), Some(1), "{status}\n{stderr}");
    assert!(
        stderr.contains("INSERT on log_events")
            && stderr.contains(&format!("GRANT INSERT ON log_events TO {}", role.name)),
        "the missing grant is named:\n{stderr}"
    );
    assert_eq!(env.db.dead_count(), 0, "dead letters");
    assert_eq!(env.db.events_count(), 100, "rows");
    let files = env.db.files();
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(files[0].committed_offset, committed, "the position moved");

    role.sql(&format!("GRANT INSERT ON log_events TO {0}", role.name));
    env.run_once();
    w.assert_stored(&env.db);
    w.assert_positions_at_end(&env.db);
}

/// README "Least-privilege role": with the schema owned and migrated by someone else, a role
/// with only the listed grants (no CREATE: PostgreSQL 15's default for `public`) runs logbelt,
/// and `status` and `query` work with it. Migrations used to `CREATE TABLE IF NOT EXISTS`
/// their bookkeeping table at every start, which needs CREATE.
#[test]
#[cfg_attr(
    not(logbelt_postgres_tests),
    ignore = "PostgreSQL: set LOGBELT_TEST_POSTGRES_URL to run"
)]
fn postgres_least_privilege_role_runs_on_a_current_schema() {
    let Some((env, role)) = migrated_with_role() else {
        return;
    };
    role.grant_least_privilege();
    role.sql(&format!(
        "REVOKE CREATE ON SCHEMA public FROM PUBLIC, {0}",
        role.name
    ));
    let mut cfg = env.config();
    cfg.url = role.url();
    cfg.write(&env);
    let mut w = Written::new();
    w.append(&env.log("a.jsonl"), &json_lines("a", 0, 200));
    w.append(
        &env.log("b.jsonl"),
        &[r#"{"msg":"nul \u0000 here"}"#.to_string()],
    );
    let mut d = Daemon::spawn_in(
        env.dir.path(),
        &[
            "run",
            "--once",
            "--config",
            env.config_path().to_str().unwrap(),
        ],
    );
    let status = d.wait_exit(DEADLINE);
    assert_eq!(status.code(), Some(0), "{status}\n{}", d.stderr());
    // A line the database refuses on its own still becomes a dead letter.
    let dead = env.db.dead_letters();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(
        dead[0].error.starts_with("refused by the database"),
        "{dead:?}"
    );
    assert_eq!(env.db.events_count(), 200);
    for args in [&["status"][..], &["query", "--limit", "1"]] {
        let out = std::process::Command::new(crate::util::BIN)
            .args(args)
            .arg("--config")
            .arg(env.config_path())
            .output()
            .expect("run logbelt");
        assert!(
            out.status.success(),
            "{args:?} as the least-privilege role: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

// ---------------------------------------------------------------------------------------------
// SQLite that the logbelt user cannot write
// ---------------------------------------------------------------------------------------------

/// The unprivileged user the read-only tests run logbelt as (`nobody`).
const NOBODY: u32 = 65534;

/// `setpriv` arguments that run a command as [`NOBODY`], or `None` (with the reason printed)
/// when that is not possible here: no `setpriv` (util-linux), or the binary is not reachable
/// for that user.
fn as_nobody() -> Option<Vec<String>> {
    let args: Vec<String> = vec![
        format!("--reuid={NOBODY}"),
        format!("--regid={NOBODY}"),
        "--clear-groups".into(),
        crate::util::BIN.into(),
    ];
    let probe = std::process::Command::new("setpriv")
        .args(&args)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    match probe {
        Ok(s) if s.success() => Some(args),
        Ok(s) => {
            eprintln!(
                "skipping {}: `setpriv … {}` as uid {NOBODY} fails ({s}): the binary is not \
                 reachable for that user",
                crate::util::test_name(),
                crate::util::BIN
            );
            None
        }
        Err(e) => {
            eprintln!(
                "skipping {}: no setpriv (util-linux) to run logbelt as uid {NOBODY}: {e}",
                crate::util::test_name()
            );
            None
        }
    }
}

/// How the database is unwritable for [`NOBODY`].
#[derive(Debug, Clone, Copy)]
enum ReadOnly {
    /// The database file (and its -wal/-shm) belongs to root, mode 0644; the folder is
    /// nobody's.
    File,
    /// The file is nobody's, the folder root's (mode 0755): no -wal or -shm can be created.
    Folder,
    /// No database yet, in a folder of root's (mode 0755).
    NewInFolder,
}

/// Issue 11 §3: a database file that the logbelt user cannot write made `run --once` retry
/// `attempt to write a readonly database` without end, while `validate` printed OK. Now both
/// say what is wrong in one line and exit non-zero (validate 2, run 1). Run as uid 65534, with
/// the database made by root.
#[test]
fn read_only_sqlite_fails_validate_and_run_in_one_line() {
    use std::os::unix::fs::{chown, PermissionsExt};
    let Some(nobody) = as_nobody() else { return };
    for case in [ReadOnly::File, ReadOnly::Folder, ReadOnly::NewInFolder] {
        let Some(env) = TestEnv::new(Backend::Sqlite) else {
            return;
        };
        let mode = |p: &std::path::Path, m: u32| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap()
        };
        // The test folder, its config and logs readable by nobody; the database in db/.
        mode(env.dir.path(), 0o755);
        let db_dir = env.path("db");
        std::fs::create_dir(&db_dir).unwrap();
        let mut cfg = env.config();
        cfg.url = "sqlite://db/logbelt.db".into();
        cfg.write(&env);
        mode(&env.config_path(), 0o644);
        let mut w = Written::new();
        w.append(&env.log("a.jsonl"), &json_lines("a", 0, 10));
        if !matches!(case, ReadOnly::NewInFolder) {
            env.run_once(); // as root: the database exists, with positions
        }
        w.append(&env.log("a.jsonl"), &json_lines("a", 10, 10));
        let db = db_dir.join("logbelt.db");
        let companions = ["logbelt.db", "logbelt.db-wal", "logbelt.db-shm"];
        match case {
            ReadOnly::File => {
                chown(&db_dir, Some(NOBODY), Some(NOBODY)).unwrap();
                for f in companions {
                    if db_dir.join(f).exists() {
                        mode(&db_dir.join(f), 0o644);
                    }
                }
            }
            ReadOnly::Folder => {
                for f in companions {
                    if db_dir.join(f).exists() {
                        chown(db_dir.join(f), Some(NOBODY), Some(NOBODY)).unwrap();
                    }
                }
            }
            ReadOnly::NewInFolder => {}
        }

        let run = |args: &[&str]| {
            let err = env.path("nobody.stderr");
            let mut c = std::process::Command::new("setpriv");
            c.args(&nobody)
                .args(args)
                .arg("--config")
                .arg(env.config_path())
                .current_dir(env.dir.path())
                .env("NO_COLOR", "1")
                .env("RUST_LOG", "info")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(File::create(&err).unwrap());
            let mut d = Daemon::from_command(c, &err);
            let status = d.wait_exit(DEADLINE);
            (status.code(), d.stderr())
        };

        let (code, stderr) = run(&["validate"]);
        assert_eq!(code, Some(2), "{case:?}: validate: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{case:?}: one line: {stderr}");
        assert!(
            stderr.contains(&db.display().to_string())
                && stderr.contains("cannot be written")
                && stderr.contains(&format!("uid {NOBODY}")),
            "{case:?}: validate names the database, what is wrong and the user: {stderr}"
        );

        let (code, stderr) = run(&["run", "--once"]);
        assert_eq!(code, Some(1), "{case:?}: run --once: {stderr}");
        let errors = error_lines(&stderr);
        assert_eq!(errors.len(), 1, "{case:?}: one error line:\n{stderr}");
        assert!(
            errors[0].contains(&db.display().to_string())
                && errors[0].contains("cannot be written"),
            "{case:?}: the error names the database and what is wrong:\n{stderr}"
        );
        if matches!(case, ReadOnly::NewInFolder) {
            assert!(!db.exists(), "{case:?}: a database was created");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// /health while nothing can be committed
// ---------------------------------------------------------------------------------------------

both_backends!(health_is_503_with_the_reason_while_commits_fail_longer_than_unhealthy_after);
/// Issue 11 §6: `/health` said ok while nothing could be committed. With commits blocked
/// (SQLite: the write lock held, so each commit fails `database is locked` and is retried;
/// PostgreSQL: the tables locked, so the COPY waits), `/health` turns 503 once that has lasted
/// `[metrics] unhealthy_after_ms`, with the reason in the body, and 200 again once commits go
/// through.
fn health_is_503_with_the_reason_while_commits_fail_longer_than_unhealthy_after(b: Backend) {
    let Some(env) = TestEnv::new(b) else { return };
    let addr = free_addr();
    let mut cfg = env.config();
    if b == Backend::Sqlite {
        cfg.database_extra
            .push(("busy_timeout_ms".into(), "100".into()));
    }
    write_config_with(
        &env,
        &cfg,
        &[
            listen(addr),
            ("metrics", "unhealthy_after_ms", "500".to_string()),
        ],
    );
    let mut w = Written::new();
    w.append(&env.log("a.jsonl"), &json_lines("a", 0, 100));
    let mut d = env.start();
    d.wait_started();
    wait_endpoint(addr, &mut d);
    env.db.wait_rows(100, Some(&mut d));
    assert_eq!(health(addr), 200, "/health before the outage");

    let block = env.db.block_writes();
    w.append(&env.log("a.jsonl"), &json_lines("a", 100, 50));
    let mut body = String::new();
    wait_until("/health 503 while commits are blocked", DEADLINE, || {
        d.assert_running();
        match crate::util::http_get(addr, "/health") {
            Some((503, b)) => {
                body = b;
                true
            }
            _ => false,
        }
    });
    let reason = match b {
        Backend::Sqlite => "database is locked",
        Backend::Postgres => "waiting",
    };
    assert!(
        body.starts_with("nothing committed for") && body.contains(reason),
        "/health body names the reason ({reason:?}): {body:?}"
    );

    block.release();
    env.db.wait_rows(150, Some(&mut d));
    wait_until("/health 200 after the outage", DEADLINE, || {
        d.assert_running();
        health(addr) == 200
    });
    d.sigint();
    d.assert_exit_ok();
    w.assert_stored(&env.db);
}

// ---------------------------------------------------------------------------------------------
// What a new user trips over
// ---------------------------------------------------------------------------------------------

/// Issue 11 §8: PostgreSQL out of connection slots at start (here: the role's CONNECTION
/// LIMIT, taken by another session) made `run` exit 1 at once. Now it is retried like an outage,
/// the log shows the real cause, and once a slot is free the run goes on.
#[test]
#[cfg_attr(
    not(logbelt_postgres_tests),
    ignore = "PostgreSQL: set LOGBELT_TEST_POSTGRES_URL to run"
)]
fn postgres_too_many_connections_at_start_is_retried_with_the_cause_logged() {
    let Some((env, role)) = migrated_with_role() else {
        return;
    };
    role.grant_least_privilege();
    role.sql(&format!("ALTER ROLE {} CONNECTION LIMIT 1", role.name));
    let mut cfg = env.config();
    cfg.url = role.url();
    cfg.database_extra.push(("writers".into(), "1".into()));
    cfg.database_extra
        .push(("retry_max_backoff_ms".into(), "200".into()));
    cfg.write(&env);
    let mut w = Written::new();
    w.append(&env.log("a.jsonl"), &json_lines("a", 0, 100));

    use diesel::Connection;
    let slot = diesel::PgConnection::establish(&role.url()).expect("take the role's one slot");
    let mut d = Daemon::spawn_in(
        env.dir.path(),
        &[
            "run",
            "--once",
            "--config",
            env.config_path().to_str().unwrap(),
        ],
    );
    // Retried: the cause logged twice while the process runs on.
    d.wait_for_log_n("too many connections for role", 2);
    assert!(
        d.stderr().contains("Database busy"),
        "the retry is said:\n{}",
        d.stderr()
    );
    drop(slot);
    let status = d.wait_exit(DEADLINE);
    assert_eq!(status.code(), Some(0), "{status}\n{}", d.stderr());
    w.assert_stored(&env.db);
}

/// Issue 11, a new user: `run --once` ended with "Drained: everything read is committed." and
/// no summary. Now its last lines say how many files, rows, dead letters and bytes were
/// committed, and how long it took.
#[test]
fn run_once_ends_with_a_summary() {
    let Some(env) = TestEnv::new(Backend::Sqlite) else {
        return;
    };
    env.config().write(&env);
    let (a, b) = (env.log("a.jsonl"), env.log("b.jsonl"));
    crate::util::append_lines(&a, &json_lines("a", 0, 30));
    crate::util::append_bytes(&a, b"not json\n");
    crate::util::append_lines(&b, &json_lines("b", 0, 20));
    let bytes = std::fs::metadata(&a).unwrap().len() + std::fs::metadata(&b).unwrap().len();
    let stderr = env.run_once();
    let line = stderr
        .lines()
        .find(|l| l.contains("Done:"))
        .unwrap_or_else(|| panic!("no summary line:\n{stderr}"));
    assert!(
        line.contains("Done: 2 files, 50 rows, 1 dead letter (")
            && line.contains(" committed in ")
            && line.contains(&format!("bytes={bytes}"))
            && line.contains("rows=50")
            && line.contains("dead_letters=1")
            && line.contains("files=2"),
        "summary {line:?} ({bytes} bytes)"
    );
}

/// Issue 11, a new user: `[database]` was required although SQLite needs no set-up. Without
/// it, logbelt uses `logbelt.db` next to the config file (not in the working directory).
#[test]
fn without_database_table_sqlite_next_to_the_config_file() {
    let Some(env) = TestEnv::new(Backend::Sqlite) else {
        return;
    };
    let toml = env.config().to_toml();
    let start = toml.find("[database]").unwrap();
    let end = start + toml[start..].find("\n\n").unwrap() + 2;
    let without = format!("{}{}", &toml[..start], &toml[end..]);
    assert!(!without.contains("[database]"), "{without}");
    std::fs::write(env.config_path(), &without).unwrap();
    let mut w = Written::new();
    w.append(&env.log("a.jsonl"), &json_lines("a", 0, 10));
    let elsewhere = tempfile::tempdir().unwrap();
    let config = env.config_path();
    let mut d = Daemon::spawn_with_cwd(
        elsewhere.path(),
        env.dir.path(),
        &[
            "run".as_ref(),
            "--once".as_ref(),
            "--config".as_ref(),
            config.as_os_str(),
        ],
    );
    let status = d.wait_exit(DEADLINE);
    assert_eq!(status.code(), Some(0), "{status}\n{}", d.stderr());
    assert!(
        env.path("logbelt.db").exists(),
        "logbelt.db next to the config"
    );
    assert!(
        !elsewhere.path().join("logbelt.db").exists(),
        "in the working directory"
    );
    // The test database is that file (its URL is sqlite://logbelt.db in the same folder).
    w.assert_stored(&env.db);
}

/// Issue 11, a new user: the systemd example did not work as written (the database in /etc under
/// `ProtectSystem=strict`, nothing creating /var/lib/logbelt or the user). The unit passes
/// `systemd-analyze verify`; the config it installs keeps the database under the unit's
/// `StateDirectory=`; and that config, with the state directory made as systemd makes it (owned
/// by the service user, mode `StateDirectoryMode=`) and the config in a folder the user cannot
/// write, validates and runs as that user (uid 65534 here).
#[test]
fn systemd_example_is_correct_end_to_end() {
    use std::os::unix::fs::{chown, PermissionsExt};
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let unit = std::fs::read_to_string(examples.join("logbelt.service")).unwrap();
    let config = std::fs::read_to_string(examples.join("logbelt-service.toml")).unwrap();
    let sysusers = std::fs::read_to_string(examples.join("logbelt.sysusers")).unwrap();
    let setting = |key: &str| -> String {
        unit.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("no {key}= in the unit"))
            .trim()
            .to_string()
    };

    // The pieces agree: the user exists (sysusers), the database is in the state directory,
    // the stop timeout outlasts the drain.
    let user = setting("User");
    assert!(
        sysusers
            .lines()
            .any(|l| l.starts_with(&format!("u {user} "))),
        "examples/logbelt.sysusers creates {user}"
    );
    let state = format!("/var/lib/{}", setting("StateDirectory"));
    assert!(
        config.contains(&format!("url = \"sqlite://{state}/logbelt.db\"")),
        "the service's database is under {state}:\n{config}"
    );
    let stop: u64 = setting("TimeoutStopSec").parse().unwrap();
    let drain_ms: u64 = config
        .lines()
        .find_map(|l| l.strip_prefix("drain_timeout_ms = "))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(30_000);
    assert!(
        stop * 1000 > drain_ms,
        "TimeoutStopSec {stop} s vs drain {drain_ms} ms"
    );
    let config_path = setting("ExecStart").rsplit(' ').next().unwrap().to_string();

    // systemd's own check, with the binary and config where the unit expects them replaced by
    // this build and the example.
    let dir = tempfile::tempdir().unwrap();
    let local = unit
        .replace("/usr/local/bin/logbelt", crate::util::BIN)
        .replace(
            &config_path,
            examples.join("logbelt-service.toml").to_str().unwrap(),
        );
    std::fs::write(dir.path().join("logbelt.service"), local).unwrap();
    match std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(dir.path().join("logbelt.service"))
        .output()
    {
        Ok(out) => assert!(
            out.status.success() && out.stderr.is_empty(),
            "systemd-analyze verify: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => eprintln!(
            "{}: no systemd-analyze ({e}): unit not verified",
            crate::util::test_name()
        ),
    }

    // The service as systemd would start it: state directory owned by the user, config in a
    // folder it cannot write.
    let Some(nobody) = as_nobody() else { return };
    let Some(env) = TestEnv::new(Backend::Sqlite) else {
        return;
    };
    let state_dir = env.dir.path();
    let mode: u32 = u32::from_str_radix(&setting("StateDirectoryMode"), 8).unwrap();
    chown(state_dir, Some(NOBODY), Some(NOBODY)).unwrap();
    std::fs::set_permissions(state_dir, std::fs::Permissions::from_mode(mode)).unwrap();
    let etc = env.path("etc");
    std::fs::create_dir(&etc).unwrap();
    let logs = env.path("logs");
    let text = config
        .replace(&state, state_dir.to_str().unwrap())
        .replace("/var/log/app", logs.to_str().unwrap())
        + "\n[agent]\nhost = \"test-host\"\n";
    let cfg = etc.join("logbelt.toml");
    std::fs::write(&cfg, text).unwrap();
    let mut w = Written::new();
    w.append(&env.log("a.jsonl"), &json_lines("a", 0, 20));
    for args in [&["validate"][..], &["run", "--once"]] {
        let err = env.path(&format!("{}.stderr", args[0]));
        let mut c = std::process::Command::new("setpriv");
        c.args(&nobody)
            .args(args)
            .arg("--config")
            .arg(&cfg)
            .current_dir("/")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&err).unwrap());
        let mut d = Daemon::from_command(c, &err);
        let status = d.wait_exit(DEADLINE);
        assert_eq!(
            status.code(),
            Some(0),
            "{args:?} as {user}: {status}\n{}",
            d.stderr()
        );
    }
    w.assert_stored(&env.db);
}

// ---------------------------------------------------------------------------------------------
// The database file deleted or replaced under the daemon
// ---------------------------------------------------------------------------------------------

/// Issue 11 §5: a SQLite database file deleted, or replaced (an old copy moved over it), under
/// a running daemon went unnoticed: it kept committing into the deleted inode. Now the daemon
/// notices that the path no longer names the file it opened — idle, without a commit to make —
/// and stops (exit 1) with one error line saying so.
#[test]
fn sqlite_database_deleted_or_replaced_under_the_daemon_stops_it() {
    for replace in [false, true] {
        let Some(env) = TestEnv::new(Backend::Sqlite) else {
            return;
        };
        env.config().write(&env);
        let mut w = Written::new();
        w.append(&env.log("a.jsonl"), &json_lines("a", 0, 100));
        let mut d = env.start();
        d.wait_started();
        env.db.wait_rows(100, Some(&mut d));
        let db = env.path("logbelt.db");
        if replace {
            let copy = env.path("logbelt.db.copy");
            std::fs::copy(&db, &copy).unwrap();
            std::fs::rename(&copy, &db).unwrap();
        } else {
            std::fs::remove_file(&db).unwrap();
        }
        let status = d.wait_exit(DEADLINE);
        let stderr = d.stderr();
        assert_eq!(
            status.code(),
            Some(1),
            "replace={replace}: {status}\n{stderr}"
        );
        let what = if replace {
            "was replaced"
        } else {
            "was deleted"
        };
        let errors = error_lines(&stderr);
        assert_eq!(
            errors.len(),
            1,
            "replace={replace}: one error line:\n{stderr}"
        );
        assert!(
            errors[0].contains(&db.display().to_string()) && errors[0].contains(what),
            "replace={replace}: the error says {what:?}:\n{stderr}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Database URLs that are too long or split the password
// ---------------------------------------------------------------------------------------------

/// Writes a config whose `database.url` is `url` into a new folder; returns the folder.
fn config_with_url(url: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("logs")).unwrap();
    std::fs::write(
        dir.path().join("logbelt.toml"),
        format!(
            "[database]\nurl = {}\n\n[[sources]]\nname = \"app\"\ninclude = [\"logs/*.jsonl\"]\n",
            toml_str(url)
        ),
    )
    .unwrap();
    dir
}

/// `logbelt ARGS --config <dir>/logbelt.toml`: exit code and stderr.
fn run_in(dir: &std::path::Path, args: &[&str]) -> (Option<i32>, String) {
    let config = dir.join("logbelt.toml");
    let mut all: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_ref()).collect();
    all.push("--config".as_ref());
    all.push(config.as_os_str());
    let mut d = Daemon::spawn_in(dir, &all);
    let status = d.wait_exit(DEADLINE);
    (status.code(), d.stderr())
}

/// Issue 11 §8: a 10 MB `url` was echoed whole in the error (20 MB of stderr for `validate`).
/// Errors quote at most a bounded part of it, and say how long it was.
#[test]
fn a_huge_database_url_is_not_echoed_whole() {
    let huge = 10 * 1024 * 1024;
    // (url, exit code of validate, of run --once): unreachable PostgreSQL, not a URL at all.
    for (url, codes) in [
        (format!("postgres://u:p@{}:1/x", "h".repeat(huge)), [2, 1]),
        ("x".repeat(huge), [2, 2]),
    ] {
        let dir = config_with_url(&url);
        for (args, code) in [&["validate"][..], &["run", "--once"]]
            .into_iter()
            .zip(codes)
        {
            let (got, stderr) = run_in(dir.path(), args);
            let start = &stderr[..stderr.len().min(300)];
            assert_eq!(got, Some(code), "{args:?} {}…: {start}", &url[..10]);
            assert!(
                stderr.len() < 4096 && stderr.contains("bytes"),
                "{args:?} {}…: {} bytes of stderr: {start}",
                &url[..10],
                stderr.len()
            );
        }
    }
}

/// Issue 11 §8: in `u:zq9@xk7@host` libpq ends the password at the first '@', takes `xk7@host`
/// for the host, and its error showed that piece of the password. Such a URL is refused with
/// the fix (`%40`), and nothing of the password is printed.
#[test]
fn a_password_with_a_raw_at_sign_is_refused_without_leaking_it() {
    let dir = config_with_url("postgres://u:zq9@xk7@127.0.0.1:1/x");
    for args in [&["validate"][..], &["run", "--once"]] {
        let (code, stderr) = run_in(dir.path(), args);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains("%40"),
            "{args:?}: the fix is named: {stderr}"
        );
        assert!(
            !stderr.contains("zq9") && !stderr.contains("xk7"),
            "{args:?}: the password leaked: {stderr}"
        );
    }
}
