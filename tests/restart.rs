//! Exactly once across restarts: after a graceful stop, and after `kill -9` in the middle of a
//! backlog. Positions are committed with the rows, so the next start resumes exactly.

use crate::util::{json_lines, Backend, TestEnv, Written};

both_backends!(restart_after_graceful_stop_stores_every_line_once);
fn restart_after_graceful_stop_stores_every_line_once(b: Backend) {
    let Some(env) = TestEnv::new(b) else { return };
    env.config().write(&env);
    let mut w = Written::new();
    for f in ["a", "b", "c"] {
        w.append(&env.log(&format!("{f}.jsonl")), &json_lines(f, 0, 40));
    }

    // Run 1: everything there is, then SIGINT.
    let mut d = env.start();
    d.wait_started();
    env.db.wait_rows(w.total(), Some(&mut d));
    d.sigint();
    d.assert_exit_ok();
    w.assert_stored(&env.db);

    // Written while stopped: appended lines and a new file.
    w.append(&env.log("a.jsonl"), &json_lines("a", 40, 25));
    w.append(&env.log("b.jsonl"), &json_lines("b", 40, 7));
    w.append(&env.log("d.jsonl"), &json_lines("d", 0, 10));

    // Run 2 (--once) resumes each file at its committed position.
    env.run_once();
    w.assert_stored(&env.db);
    w.assert_positions_at_end(&env.db);

    // Run 3 (--once) with nothing new stores nothing.
    env.run_once();
    w.assert_stored(&env.db);

    // Run 4: live again, stopped with SIGTERM this time.
    let mut d = env.start();
    d.wait_started();
    w.append(&env.log("c.jsonl"), &json_lines("c", 40, 5));
    env.db.wait_rows(w.total(), Some(&mut d));
    d.sigterm();
    d.assert_exit_ok();
    w.assert_stored(&env.db);
    w.assert_positions_at_end(&env.db);
}

/// Lines per file and files for the backlog tests: enough that ingestion is still going when
/// logbelt is killed (a debug build stores some 50k rows/s here), small enough to stay quick.
pub const BACKLOG_FILES: usize = 4;
pub const BACKLOG_LINES: usize = 50_000;

/// Writes the backlog; returns the model.
pub fn write_backlog(env: &TestEnv) -> Written {
    let mut w = Written::new();
    for f in 0..BACKLOG_FILES {
        let tag = format!("f{f}");
        w.append(
            &env.log(&format!("{tag}.jsonl")),
            &json_lines(&tag, 0, BACKLOG_LINES),
        );
    }
    w
}

both_backends!(kill_9_mid_ingestion_then_run_once_stores_every_line_once);
fn kill_9_mid_ingestion_then_run_once_stores_every_line_once(b: Backend) {
    let Some(env) = TestEnv::new(b) else { return };
    env.config().small_batches().write(&env);
    let w = write_backlog(&env);
    let n = w.total();

    // Two rounds of kill -9, each once another tenth of the lines is committed (files are
    // then being read and committed in the middle).
    let mut at_kill = 0;
    for round in 1..=2 {
        let mut d = env.start();
        d.wait_started();
        let target = at_kill + n / 10;
        crate::util::wait_until(
            &format!("round {round}: at least {target} rows"),
            crate::util::DEADLINE,
            || {
                d.assert_running();
                env.db.rows() >= target
            },
        );
        d.kill9();
        at_kill = env.db.rows();
        assert!(
            at_kill < n,
            "round {round}: all {n} lines were stored before the kill: the test proves \
             nothing, raise BACKLOG_LINES"
        );
        env.db.assert_no_duplicates();
        eprintln!("round {round}: killed with {at_kill} of {n} rows committed");
    }

    env.run_once();
    assert_eq!(env.db.rows(), n, "rows after the restart");
    w.assert_offsets_stored(&env.db);
    w.assert_positions_at_end(&env.db);
}
