//! Retention (ARCHITECTURE.md, "Retention"): rows expire by age and by size on both backends,
//! an expired line is never read again, the `files` rows of gone files are pruned while those
//! of files still there are kept, PostgreSQL drops whole partitions, and an existing unpartitioned
//! PostgreSQL database is converted without losing a row.

use std::time::Duration;

use diesel::sql_types::{BigInt, Nullable, Text};
use diesel::QueryableByName;

use crate::util::{
    append_lines, json_lines, toml_str, wait_until, write_config_with, Backend, TestEnv,
};

/// PostgreSQL partitions of a minute expire only once the minute is over: a wait may take that
/// long plus a check.
const PARTITION_DEADLINE: Duration = Duration::from_secs(150);

#[derive(QueryableByName, Debug)]
struct Expiry {
    #[diesel(sql_type = Nullable<Text>)]
    expired_at: Option<String>,
    #[diesel(sql_type = BigInt)]
    partitions: i64,
    #[diesel(sql_type = BigInt)]
    stored_bytes: i64,
}

/// This host's `expiry` row, if retention has recorded a run.
fn expiry(env: &TestEnv) -> Option<Expiry> {
    let exists: Vec<crate::util::Count> = env.db.load(match env.db.backend {
        Backend::Sqlite => {
            "SELECT count(*) AS n FROM sqlite_master WHERE type = 'table' AND name = 'expiry'"
        }
        Backend::Postgres => "SELECT count(*) AS n FROM pg_tables WHERE tablename = 'expiry'",
    });
    if exists[0].n == 0 {
        return None;
    }
    env.db
        .load::<Expiry>(
            "SELECT CAST(expired_at AS TEXT) AS expired_at, partitions, stored_bytes FROM expiry",
        )
        .into_iter()
        .next()
}

fn retention(env: &TestEnv, keys: &[(&str, String)]) {
    let mut extra: Vec<(&str, &str, String)> = keys
        .iter()
        .map(|(k, v)| ("retention", *k, v.clone()))
        .collect();
    extra.push(("retention", "check_interval", toml_str("1s")));
    let mut cfg = env.config();
    if env.db.backend == Backend::Postgres {
        cfg.database_extra
            .push(("partition_interval".into(), toml_str("1m")));
    }
    write_config_with(env, &cfg, &extra);
}

fn size(path: &std::path::Path) -> i64 {
    std::fs::metadata(path).map_or(0, |m| m.len() as i64)
}

crate::both_backends!(expired_lines_are_gone_and_never_read_again);
fn expired_lines_are_gone_and_never_read_again(b: Backend) {
    let Some(env) = TestEnv::new(b) else { return };
    retention(&env, &[("max_age", toml_str("1s"))]);
    let kept = env.log("kept.jsonl");
    let gone = env.log("gone.jsonl");
    let mut lines = json_lines("kept", 0, 2_000);
    lines.push("not json".to_string());
    append_lines(&kept, &lines);
    append_lines(&gone, &json_lines("gone", 0, 500));

    // Stored while no retention runs (`--once` starts none); then the file goes away while
    // logbelt is stopped, so no tail task sees it go and its row stays behind.
    env.run_once();
    assert_eq!(env.db.rows(), 2_501);
    std::fs::remove_file(&gone).unwrap();

    let mut daemon = env.start();
    daemon.wait_started();
    wait_until(
        "every row expired and the gone file's row pruned",
        PARTITION_DEADLINE,
        || {
            daemon.assert_running();
            let files = env.db.files();
            env.db.rows() == 0
                && files.len() == 1
                && files[0].path.ends_with("kept.jsonl")
                && expiry(&env).is_some_and(|e| e.expired_at.is_some())
        },
    );
    // Retention pruned it (not the tail task).
    assert!(daemon.stderr().contains(" files=1 "), "{}", daemon.stderr());
    // The position of the file still there stays at its end.
    assert_eq!(env.db.files()[0].committed_offset, size(&kept));
    daemon.sigint();
    daemon.assert_exit_ok();

    // A restart reads nothing again: the expired lines are not stored a second time.
    env.run_once();
    assert_eq!(env.db.rows(), 0, "expired lines were read again");
    assert_eq!(env.db.files()[0].committed_offset, size(&kept));

    // New lines are stored as usual.
    append_lines(&kept, &json_lines("kept", 2_000, 10));
    env.run_once();
    assert_eq!(env.db.events_count(), 10);
    env.db.assert_no_duplicates();

    // `status` shows the limit and the last expiry.
    let status = crate::inspect::ok(&env, &["status"]);
    assert!(status.contains("retention: max_age 1s"), "{status}");
    assert!(status.contains("last expiry: "), "{status}");
}

#[test]
fn sqlite_max_bytes_keeps_the_file_under_the_cap() {
    let Some(env) = TestEnv::new(Backend::Sqlite) else {
        return;
    };
    let cap: i64 = 4 << 20;
    retention(&env, &[("max_bytes", toml_str("4MiB"))]);
    let log = env.log("big.jsonl");
    let pad = "p".repeat(200);
    let lines: Vec<String> = (0..40_000)
        .map(|k| format!(r#"{{"seq":{k},"msg":"line {k}","pad":"{pad}"}}"#))
        .collect();
    let offsets = append_lines(&log, &lines);
    assert!(size(&log) > 2 * cap, "the lines alone exceed the cap");

    let mut daemon = env.start();
    daemon.wait_started();
    let db = env.path("logbelt.db");
    let wal = env.path("logbelt.db-wal");
    wait_until(
        "every line committed and the database under the cap",
        crate::util::DEADLINE,
        || {
            daemon.assert_running();
            let files = env.db.files();
            files.len() == 1
                && files[0].committed_offset == size(&log)
                && size(&db) + size(&wal) <= cap
                && expiry(&env).is_some_and(|e| e.expired_at.is_some() && e.stored_bytes <= cap)
        },
    );
    // The oldest went first: the newest line is there, the first is not.
    let newest = *offsets.last().unwrap();
    let stored: Vec<crate::util::Count> = env.db.load(&format!(
        "SELECT count(*) AS n FROM log_events WHERE file_offset = {newest}"
    ));
    assert_eq!(stored[0].n, 1, "the newest line is kept");
    let first: Vec<crate::util::Count> = env
        .db
        .load("SELECT count(*) AS n FROM log_events WHERE file_offset = 0");
    assert_eq!(first[0].n, 0, "the oldest line went first");
    let rows = env.db.events_count();
    assert!(rows > 0 && rows < 40_000, "{rows} rows kept");
    env.db.assert_no_duplicates();
    daemon.sigint();
    daemon.assert_exit_ok();
}

#[test]
#[cfg_attr(
    not(logbelt_postgres_tests),
    ignore = "PostgreSQL: set LOGBELT_TEST_POSTGRES_URL to run"
)]
fn postgres_max_bytes_drops_whole_old_partitions() {
    let Some(env) = TestEnv::new(Backend::Postgres) else {
        return;
    };
    retention(&env, &[("max_bytes", toml_str("1MiB"))]);
    let log = env.log("big.jsonl");
    append_lines(&log, &json_lines("big", 0, 20_000));
    let mut daemon = env.start();
    daemon.wait_started();
    env.db.wait_rows(20_000, Some(&mut daemon));
    // The first partition dropped may be one that held no row (the rows all went into the next
    // minute's): wait until a partition with rows has gone, at the latest once its minute is over.
    wait_until(
        "a partition with rows dropped for size",
        PARTITION_DEADLINE,
        || {
            daemon.assert_running();
            expiry(&env).is_some_and(|e| e.partitions > 0) && env.db.events_count() < 20_000
        },
    );
    // Whole partitions went: no row is older than the bound the run recorded, and the rows
    // of the partition rows go into now are all there.
    let older: Vec<crate::util::Count> = env.db.load(
        "SELECT count(*) AS n FROM log_events, expiry WHERE ingested_at < expiry.expired_before",
    );
    assert_eq!(older[0].n, 0);
    assert_eq!(env.db.files()[0].committed_offset, size(&log));
    daemon.sigint();
    daemon.assert_exit_ok();
    env.run_once();
    assert!(
        env.db.events_count() < 20_000,
        "dropped lines were read again"
    );
}

#[test]
#[cfg_attr(
    not(logbelt_postgres_tests),
    ignore = "PostgreSQL: set LOGBELT_TEST_POSTGRES_URL to run"
)]
fn postgres_unpartitioned_database_is_converted_without_losing_a_row() {
    let Some(env) = TestEnv::new(Backend::Postgres) else {
        return;
    };
    // A database as the first release left it: the first migration only, with rows.
    let init = include_str!("../migrations/postgres/2026-11-25-000000_init/up.sql");
    env.db.execute(init);
    env.db.execute(
        "CREATE TABLE __diesel_schema_migrations (version VARCHAR(50) PRIMARY KEY NOT NULL, \
         run_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP); \
         INSERT INTO __diesel_schema_migrations (version) VALUES ('20261125000000'); \
         INSERT INTO files VALUES (1, 'old-host', 'app', '/old.log', 1, 1, 0, 0, 1000, now()); \
         INSERT INTO log_events (host, source, file_id, file_offset, fields, ingested_at) \
         SELECT 'old-host', 'app', 1, g, '{}', now() - interval '1 day' \
         FROM generate_series(0, 999) g; \
         INSERT INTO dead_letters (host, source, file_id, file_offset, raw, line_bytes, error, \
         ingested_at) VALUES ('old-host', 'app', 1, 1000, 'x', 1, 'old', now());",
    );
    retention(&env, &[]);
    append_lines(&env.log("new.jsonl"), &json_lines("new", 0, 100));
    env.run_once();

    let partitioned: Vec<crate::util::Count> = env.db.load(
        "SELECT count(*) AS n FROM pg_partitioned_table \
         WHERE partrelid IN ('log_events'::regclass, 'dead_letters'::regclass)",
    );
    assert_eq!(partitioned[0].n, 2, "both tables are partitioned");
    let old: Vec<crate::util::Count> = env.db.load(
        "SELECT count(*) AS n FROM log_events WHERE host = 'old-host' AND id BETWEEN 1 AND 1000",
    );
    assert_eq!(old[0].n, 1_000, "every old row kept, with its id");
    let new: Vec<crate::util::Count> = env.db.load(
        "SELECT count(DISTINCT id) AS n FROM log_events WHERE host <> 'old-host' AND id > 1000",
    );
    assert_eq!(new[0].n, 100, "new rows continue the ids");
    assert_eq!(env.db.dead_count(), 1);
    // The partitions of now and the next intervals exist, and a default one.
    let parts: Vec<crate::util::Count> = env
        .db
        .load("SELECT count(*) AS n FROM pg_inherits WHERE inhparent = 'log_events'::regclass");
    assert!(parts[0].n >= 4, "{} partitions", parts[0].n);
    env.db.assert_no_duplicates();
}
