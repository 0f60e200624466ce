//! The graceful stop: SIGINT in the middle of a backlog drains what was read, exits 0, and leaves
//! the tables holding exactly the lines before each file's committed position.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::restart::write_backlog;
use crate::util::{
    json_lines, wait_until, Backend, Daemon, TestDb, TestEnv, WriteBlock, Written, DEADLINE,
};

/// Asserts that the rows of each file are exactly its lines before its committed position (no
/// gap, none past it), that every position is a line boundary, and that no row lacks a position.
/// Returns the number of rows.
fn assert_rows_match_positions(w: &Written, db: &TestDb) -> usize {
    db.assert_no_duplicates();
    assert_eq!(db.dead_count(), 0, "dead letters");
    let files = db.files();
    let mut stored: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for r in db.event_offsets() {
        assert!(
            r.path.is_some(),
            "a row of file_id {} without a files row: {r:?}",
            r.file_id
        );
        stored.entry(r.file_id).or_default().push(r.file_offset);
    }
    let mut total = 0;
    for f in &files {
        let lines = w
            .files
            .get(std::path::Path::new(&f.path))
            .unwrap_or_else(|| panic!("a files row for a file never written: {f:?}"));
        let len = std::fs::metadata(&f.path).unwrap().len() as i64;
        assert!(
            f.committed_offset == len || lines.iter().any(|(o, _)| *o == f.committed_offset),
            "{}: committed_offset {} is not a line boundary",
            f.path,
            f.committed_offset
        );
        let want: Vec<i64> = lines
            .iter()
            .map(|(o, _)| *o)
            .filter(|o| *o < f.committed_offset)
            .collect();
        let got = stored.remove(&f.id).unwrap_or_default();
        if got != want {
            let past = got.iter().filter(|o| **o >= f.committed_offset).count();
            panic!(
                "{}: {} rows, but {} lines before committed_offset {} ({past} rows past it)",
                f.path,
                got.len(),
                want.len(),
                f.committed_offset
            );
        }
        total += got.len();
    }
    assert!(
        stored.is_empty(),
        "rows of unknown files: {:?}",
        stored.keys()
    );
    total
}

both_backends!(sigint_drain_commits_exactly_the_lines_before_each_position);
fn sigint_drain_commits_exactly_the_lines_before_each_position(b: Backend) {
    let Some(env) = TestEnv::new(b) else { return };
    env.config().small_batches().write(&env);
    let w = write_backlog(&env);
    let n = w.total();

    let mut d = env.start();
    d.wait_started();
    wait_until("some rows", DEADLINE, || {
        d.assert_running();
        env.db.rows() > 0
    });
    d.sigint();
    d.assert_exit_ok();

    let committed = assert_rows_match_positions(&w, &env.db);
    assert!(
        (committed as i64) < n,
        "all {n} lines were stored before the drain ended: the test proves little, raise \
         BACKLOG_LINES"
    );
    eprintln!("drained with {committed} of {n} rows committed");

    env.run_once();
    assert_eq!(env.db.rows(), n, "rows after the restart");
    w.assert_offsets_stored(&env.db);
    w.assert_positions_at_end(&env.db);
}

/// Starts logbelt, lets it store 100 lines, then blocks the database's writes and appends
/// more lines, which logbelt reads but cannot commit. Returns the daemon (still running), the
/// model and the lock.
fn start_then_block_writes(env: &TestEnv, drain_timeout_ms: u64) -> (Daemon, Written, WriteBlock) {
    let mut cfg = env.config();
    cfg.drain_timeout_ms = drain_timeout_ms;
    if env.db.backend == Backend::Sqlite {
        cfg.database_extra
            .push(("busy_timeout_ms".into(), "100".into()));
    }
    cfg.write(env);
    let mut w = Written::new();
    w.append(&env.log("a.jsonl"), &json_lines("a", 0, 100));
    let mut d = env.start();
    d.wait_started();
    env.db.wait_rows(100, Some(&mut d));

    let block = env.db.block_writes();
    w.append(&env.log("a.jsonl"), &json_lines("a", 100, 50));
    w.append(&env.log("b.jsonl"), &json_lines("b", 0, 20));
    env.db.wait_commit_blocked(&mut d);
    assert_eq!(env.db.rows(), 100, "rows committed through the lock");
    (d, w, block)
}

both_backends!(second_signal_during_a_blocked_drain_exits_at_once);
fn second_signal_during_a_blocked_drain_exits_at_once(b: Backend) {
    let Some(env) = TestEnv::new(b) else { return };
    let (mut d, w, block) = start_then_block_writes(&env, 60_000);
    d.sigint();
    // The drain cannot finish while writes are blocked: give a wrong early exit the time to
    // happen.
    std::thread::sleep(Duration::from_millis(1000));
    d.assert_running();
    let asked = Instant::now();
    d.sigint();
    let status = d.wait_exit(Duration::from_secs(10));
    eprintln!("second signal: {status} after {:?}", asked.elapsed());
    assert_ne!(
        status.code(),
        Some(0),
        "an interrupted drain reported success\n{}",
        d.stderr()
    );

    block.release();
    env.run_once();
    w.assert_stored(&env.db);
    w.assert_positions_at_end(&env.db);
}

both_backends!(drain_timeout_bounds_a_blocked_drain);
fn drain_timeout_bounds_a_blocked_drain(b: Backend) {
    let Some(env) = TestEnv::new(b) else { return };
    let (mut d, w, block) = start_then_block_writes(&env, 1000);
    let asked = Instant::now();
    d.sigint();
    // 1 s of drain timeout, plus time for a commit attempt in progress to give up.
    let status = d.wait_exit(Duration::from_secs(15));
    let took = asked.elapsed();
    eprintln!("drain timed out: {status} after {took:?}");
    assert!(
        took >= Duration::from_millis(900),
        "exited after {took:?}, before the 1 s drain timeout, with commits blocked: {status}"
    );
    assert_ne!(
        status.code(),
        Some(0),
        "a drain that could not commit reported success\n{}",
        d.stderr()
    );

    block.release();
    env.run_once();
    w.assert_stored(&env.db);
    w.assert_positions_at_end(&env.db);
}
