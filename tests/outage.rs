//! The database stops taking writes for a while: logbelt holds what it read, retries, and
//! commits it once, with nothing lost, when the database takes writes again.

use std::time::Duration;

use crate::util::{json_lines, Backend, TestEnv, Written};

both_backends!(commits_held_up_by_a_locked_database_land_once_it_is_free);
fn commits_held_up_by_a_locked_database_land_once_it_is_free(b: Backend) {
    let Some(env) = TestEnv::new(b) else { return };
    let mut cfg = env.config();
    if b == Backend::Sqlite {
        // Fail fast on the lock, so that the commit is retried several times meanwhile.
        cfg.database_extra
            .push(("busy_timeout_ms".into(), "100".into()));
    }
    cfg.write(&env);
    let mut w = Written::new();
    w.append(&env.log("a.jsonl"), &json_lines("a", 0, 100));
    let mut d = env.start();
    d.wait_started();
    env.db.wait_rows(100, Some(&mut d));

    let block = env.db.block_writes();
    w.append(&env.log("a.jsonl"), &json_lines("a", 100, 50));
    w.append(&env.log("b.jsonl"), &json_lines("b", 0, 30));
    env.db.wait_commit_blocked(&mut d);
    // Hold the lock a little longer, so that SQLite's commit fails and is retried a few times
    // (busy_timeout_ms = 100): nothing to observe but that nothing is committed meanwhile.
    std::thread::sleep(Duration::from_millis(500));
    d.assert_running();
    assert_eq!(env.db.rows(), 100, "rows committed through the lock");
    block.release();

    env.db.wait_rows(w.total(), Some(&mut d));
    w.assert_stored(&env.db);
    d.sigint();
    d.assert_exit_ok();
    w.assert_stored(&env.db);
    w.assert_positions_at_end(&env.db);
}
