//! Failures inside the pipeline (ARCHITECTURE.md §1: "a panic"): the supervisor restarts
//! the pipeline from the committed positions and every line is still stored exactly once.
//! Faults are injected through `LOGBELT_FAULTS`, which only a build with the `fault-injection`
//! feature reads: `cargo nextest run --features fault-injection -E 'test(/^faults::/)'`.

use crate::restart::BACKLOG_FILES;
use crate::util::{json_lines, logbelt_command, Backend, Daemon, TestEnv, Written, DEADLINE};

/// Lines per file: enough batches for the fault to hit in the middle.
const LINES: usize = 5_000;

/// `logbelt run --once` with `LOGBELT_FAULTS=faults`; asserts exit 0 and that the fault fired
/// (its message is in stderr).
fn run_once_with_faults(env: &TestEnv, faults: &str) {
    let stderr_path = env.path("faulty.stderr");
    let mut cmd = logbelt_command(env.dir.path(), &stderr_path);
    cmd.env("LOGBELT_FAULTS", faults)
        .args(["run", "--once", "--config"])
        .arg(env.config_path());
    let mut d = Daemon::from_command(cmd, &stderr_path);
    let status = d.wait_exit(DEADLINE);
    let stderr = d.stderr();
    assert_eq!(status.code(), Some(0), "{status}\n--- stderr ---\n{stderr}");
    assert!(
        stderr.contains("fault injection"),
        "the fault did not fire (is the `fault-injection` feature on?)\n{stderr}"
    );
}

fn write_files(env: &TestEnv) -> Written {
    let mut w = Written::new();
    for f in 0..BACKLOG_FILES {
        let tag = format!("f{f}");
        w.append(
            &env.log(&format!("{tag}.jsonl")),
            &json_lines(&tag, 0, LINES),
        );
    }
    w
}

both_backends!(a_parser_panic_restarts_the_pipeline_and_every_line_is_stored_once);
fn a_parser_panic_restarts_the_pipeline_and_every_line_is_stored_once(b: Backend) {
    let Some(env) = TestEnv::new(b) else { return };
    env.config().small_batches().write(&env);
    let w = write_files(&env);
    run_once_with_faults(&env, "parser_panic_on_batch=7");
    w.assert_offsets_stored(&env.db);
    w.assert_positions_at_end(&env.db);
}

both_backends!(failed_commits_restart_the_pipeline_and_every_line_is_stored_once);
fn failed_commits_restart_the_pipeline_and_every_line_is_stored_once(b: Backend) {
    let Some(env) = TestEnv::new(b) else { return };
    env.config().small_batches().write(&env);
    let w = write_files(&env);
    run_once_with_faults(&env, "failed_commits=2");
    w.assert_offsets_stored(&env.db);
    w.assert_positions_at_end(&env.db);
}
