//! Rotation, truncation and file identity (ARCHITECTURE.md §4, §7): rename+create while running and
//! while stopped, copytruncate, truncation while stopped, a new file where an old one was. A
//! file's rows may then sit under several paths or file ids, so these tests check the lines
//! themselves: every `(file tag, seq)` written is stored exactly once.

use std::fs::OpenOptions;
use std::io::Write;
use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::util::{append_lines, json_lines, logbelt_command, Backend, Daemon, TestDb, TestEnv};

/// `(tag, seq)` of every line `json_lines(tag, …)` wrote, for each `(tag, seqs)`.
fn expected(spec: &[(&str, Range<usize>)]) -> Vec<(String, i64)> {
    let mut v: Vec<(String, i64)> = spec
        .iter()
        .flat_map(|(tag, r)| r.clone().map(move |k| (tag.to_string(), k as i64)))
        .collect();
    v.sort();
    v
}

/// `(tag, seq)` of every stored record, sorted.
fn stored(db: &TestDb) -> Vec<(String, i64)> {
    let mut v: Vec<(String, i64)> = db
        .events()
        .iter()
        .map(|e| {
            let f: serde_json::Value = serde_json::from_str(&e.fields).unwrap();
            (
                f["file"].as_str().unwrap().to_string(),
                f["seq"].as_i64().unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

/// Asserts that the records are exactly the lines of `spec`, each once, and that no
/// (file_id, file_offset) pair is stored twice.
fn assert_lines_once(db: &TestDb, spec: &[(&str, Range<usize>)]) {
    assert_lines(db, spec);
    db.assert_no_duplicates();
}

/// Asserts that the records are exactly the lines of `spec`, each once.
fn assert_lines(db: &TestDb, spec: &[(&str, Range<usize>)]) {
    assert_eq!(db.dead_count(), 0, "dead letters");
    let want = expected(spec);
    let got = stored(db);
    if got != want {
        let missing: Vec<_> = want
            .iter()
            .filter(|x| got.binary_search(x).is_err())
            .collect();
        let mut extra = got.clone();
        for w in &want {
            if let Ok(i) = extra.binary_search(w) {
                extra.remove(i);
            }
        }
        panic!(
            "{} lines stored, {} written; missing {:?}…; extra or twice {:?}…",
            got.len(),
            want.len(),
            &missing[..missing.len().min(10)],
            &extra[..extra.len().min(10)]
        );
    }
}

both_backends!(rename_and_create_while_running_keeps_every_line_once);
fn rename_and_create_while_running_keeps_every_line_once(b: Backend) {
    let Some(env) = TestEnv::new(b) else { return };
    env.config().write(&env);
    let a = env.log("a.jsonl");
    append_lines(&a, &json_lines("a", 0, 20));
    let mut d = env.start();
    d.wait_started();
    env.db.wait_rows(20, Some(&mut d));

    // The application keeps its handle across the rename and writes a little more, then opens
    // the new file.
    let mut old = OpenOptions::new().append(true).open(&a).unwrap();
    std::fs::rename(&a, env.log("a.jsonl.1")).unwrap();
    for line in json_lines("a", 20, 10) {
        writeln!(old, "{line}").unwrap();
    }
    drop(old);
    append_lines(&a, &json_lines("a2", 0, 15));

    env.db.wait_rows(45, Some(&mut d));
    assert_lines_once(&env.db, &[("a", 0..30), ("a2", 0..15)]);
    d.sigint();
    d.assert_exit_ok();
    assert_lines_once(&env.db, &[("a", 0..30), ("a2", 0..15)]);
}

both_backends!(rotation_while_stopped_resumes_the_renamed_file_by_identity);
fn rotation_while_stopped_resumes_the_renamed_file_by_identity(b: Backend) {
    let Some(env) = TestEnv::new(b) else { return };
    let mut cfg = env.config();
    // The rotated name must match for its unread tail to be read (ARCHITECTURE.md §7).
    cfg.sources[0].include = vec!["logs/app.jsonl*".into()];
    cfg.write(&env);
    let app = env.log("app.jsonl");
    append_lines(&app, &json_lines("app", 0, 20));
    env.run_once();
    assert_lines_once(&env.db, &[("app", 0..20)]);

    // While stopped: more lines, then rename+create.
    append_lines(&app, &json_lines("app", 20, 5));
    std::fs::rename(&app, env.log("app.jsonl.1")).unwrap();
    append_lines(&app, &json_lines("new", 0, 10));

    env.run_once();
    assert_lines_once(&env.db, &[("app", 0..25), ("new", 0..10)]);
}

/// Copies `a.jsonl` (40 lines, stored) away and truncates it while logbelt runs, then writes
/// 10 new lines to it and waits until they are stored.
fn copytruncate_while_running(env: &TestEnv) {
    env.config().write(env);
    let a = env.log("a.jsonl");
    append_lines(&a, &json_lines("a", 0, 40));
    let mut d = env.start();
    d.wait_started();
    env.db.wait_rows(40, Some(&mut d));

    // copytruncate: copy away (to a name the glob does not match), truncate in place, go on
    // writing; the new content is shorter than the old position.
    std::fs::copy(&a, env.log("a.jsonl.1")).unwrap();
    truncate(&a);
    append_lines(&a, &json_lines("t", 0, 10));

    env.db.wait_rows(50, Some(&mut d));
    d.sigint();
    d.assert_exit_ok();
}

both_backends!(copytruncate_while_running_stores_every_line_once);
fn copytruncate_while_running_stores_every_line_once(b: Backend) {
    let Some(env) = TestEnv::new(b) else { return };
    copytruncate_while_running(&env);
    assert_lines(&env.db, &[("a", 0..40), ("t", 0..10)]);
}

both_backends!(copytruncate_while_running_keeps_file_id_and_offset_unique);
/// (file_id, file_offset) names one line: the new content after a truncation must not reuse
/// the pairs of the old content (ARCHITECTURE.md §3: a file's committed position only moves forward).
fn copytruncate_while_running_keeps_file_id_and_offset_unique(b: Backend) {
    let Some(env) = TestEnv::new(b) else { return };
    copytruncate_while_running(&env);
    env.db.assert_no_duplicates();
}

both_backends!(copytruncate_then_growth_past_the_old_position_reads_the_new_content_whole);
/// The file is truncated and has grown past logbelt's position again before logbelt looks: the
/// size alone no longer shows the truncation, the first bytes do.
fn copytruncate_then_growth_past_the_old_position_reads_the_new_content_whole(b: Backend) {
    let Some(env) = TestEnv::new(b) else { return };
    env.config().write(&env);
    let a = env.log("a.jsonl");
    append_lines(&a, &json_lines("a", 0, 20));
    let mut d = env.start();
    d.wait_started();
    env.db.wait_rows(20, Some(&mut d));

    std::fs::copy(&a, env.log("a.jsonl.1")).unwrap();
    let f = OpenOptions::new().write(true).open(&a).unwrap();
    f.set_len(0).unwrap();
    drop(f);
    append_lines(&a, &json_lines("t", 0, 60));

    env.db.wait_rows(80, Some(&mut d));
    d.sigint();
    d.assert_exit_ok();
    assert_lines(&env.db, &[("a", 0..20), ("t", 0..60)]);
}

both_backends!(truncation_while_stopped_reads_the_new_content_from_the_start);
fn truncation_while_stopped_reads_the_new_content_from_the_start(b: Backend) {
    let Some(env) = TestEnv::new(b) else { return };
    env.config().write(&env);
    let short = env.log("short.jsonl");
    let long = env.log("long.jsonl");
    append_lines(&short, &json_lines("s", 0, 30));
    append_lines(&long, &json_lines("l", 0, 30));
    env.run_once();
    assert_lines_once(&env.db, &[("s", 0..30), ("l", 0..30)]);

    // Truncated and rewritten while stopped, same inode: shorter than the committed position,
    // and longer than it (only the first bytes tell that it is new content).
    truncate(&short);
    append_lines(&short, &json_lines("s2", 0, 5));
    truncate(&long);
    append_lines(&long, &json_lines("l2", 0, 60));

    env.run_once();
    assert_lines_once(
        &env.db,
        &[("s", 0..30), ("l", 0..30), ("s2", 0..5), ("l2", 0..60)],
    );
}

/// Truncated while stopped and rewritten with the same first lines (so the same fingerprint),
/// shorter than the committed position: `a.jsonl` holds 100 lines, stored; then 20 of them
/// again and 5 new ones.
fn truncated_while_stopped_with_the_same_start(env: &TestEnv) {
    env.config().write(env);
    let a = env.log("a.jsonl");
    append_lines(&a, &json_lines("a", 0, 100));
    env.run_once();
    truncate(&a);
    append_lines(&a, &json_lines("a", 0, 20));
    append_lines(&a, &json_lines("u", 0, 5));
    env.run_once();
}

both_backends!(truncation_while_stopped_with_the_same_start_stores_the_new_lines);
fn truncation_while_stopped_with_the_same_start_stores_the_new_lines(b: Backend) {
    let Some(env) = TestEnv::new(b) else { return };
    truncated_while_stopped_with_the_same_start(&env);
    assert_lines(&env.db, &[("a", 0..100), ("a", 0..20), ("u", 0..5)]);
}

both_backends!(truncation_while_stopped_keeps_file_id_and_offset_unique);
fn truncation_while_stopped_keeps_file_id_and_offset_unique(b: Backend) {
    let Some(env) = TestEnv::new(b) else { return };
    truncated_while_stopped_with_the_same_start(&env);
    env.db.assert_no_duplicates();
}

both_backends!(a_new_file_in_place_of_a_deleted_one_is_read_from_the_start);
fn a_new_file_in_place_of_a_deleted_one_is_read_from_the_start(b: Backend) {
    let Some(env) = TestEnv::new(b) else { return };
    env.config().write(&env);
    let a = env.log("a.jsonl");
    append_lines(&a, &json_lines("a", 0, 30));
    env.run_once();

    // Deleted and created again while stopped; the file system may well hand out the same
    // inode, so only the fingerprint tells the files apart.
    std::fs::remove_file(&a).unwrap();
    append_lines(&a, &json_lines("n", 0, 60));
    env.run_once();
    assert_lines_once(&env.db, &[("a", 0..30), ("n", 0..60)]);
}

both_backends!(a_deleted_file_is_forgotten_once_read_to_its_end);
/// ARCHITECTURE.md §4: the position of a file that is gone is forgotten once everything in it is
/// committed. A deleted file (no name left) is read to its end, its rows stay, its `files` row
/// goes; the other files go on; a later run stores nothing twice.
fn a_deleted_file_is_forgotten_once_read_to_its_end(b: Backend) {
    let Some(env) = TestEnv::new(b) else { return };
    env.config().write(&env);
    let (a, b_log) = (env.log("a.jsonl"), env.log("b.jsonl"));
    append_lines(&a, &json_lines("a", 0, 20));
    append_lines(&b_log, &json_lines("b", 0, 10));
    let mut d = env.start();
    d.wait_started();
    env.db.wait_rows(30, Some(&mut d));
    let a_path = a.display().to_string();
    assert!(
        env.db.files().iter().any(|f| f.path == a_path),
        "a.jsonl has a position"
    );

    std::fs::remove_file(&a).unwrap();
    crate::util::wait_until(
        "the deleted file's position to be forgotten",
        crate::util::DEADLINE,
        || !env.db.files().iter().any(|f| f.path == a_path),
    );
    append_lines(&b_log, &json_lines("b", 10, 5));
    env.db.wait_rows(35, Some(&mut d));
    d.sigint();
    d.assert_exit_ok();

    let paths: Vec<String> = env.db.files().into_iter().map(|f| f.path).collect();
    assert_eq!(paths, vec![b_log.display().to_string()], "positions left");
    env.run_once();
    assert_lines_once(&env.db, &[("a", 0..20), ("b", 0..15)]);
}

// ---------------------------------------------------------------------------------------------
// Rotation while running, as logrotate does it: wake-ups, copies, paths.
// ---------------------------------------------------------------------------------------------

/// A config whose fallback poll is an hour: a line that arrives within the test's deadline was
/// woken by a file-system notification, never by the poll.
fn notified_only(env: &TestEnv, include: &str) {
    let mut cfg = env.config();
    cfg.poll_interval_ms = 3_600_000;
    cfg.sources[0].include = vec![include.into()];
    cfg.write(env);
}

/// `logbelt run` with debug logging (for the log lines that mark internal steps).
fn start_with_debug_log(env: &TestEnv) -> Daemon {
    let stderr = env.path("logbelt-debug.stderr");
    let mut cmd = logbelt_command(env.dir.path(), &stderr);
    cmd.env("RUST_LOG", "debug")
        .arg("run")
        .arg("--config")
        .arg(env.config_path());
    Daemon::from_command(cmd, &stderr)
}

/// A running logbelt that follows `logs/app.jsonl` through `include` (fallback poll at an hour)
/// and has stored the `n` lines `tag` 0.. it was started with.
fn following_app(env: &TestEnv, include: &str, tag: &str, n: usize) -> (Daemon, PathBuf) {
    notified_only(env, include);
    let app = env.log("app.jsonl");
    append_lines(&app, &json_lines(tag, 0, n));
    let mut d = env.start();
    d.wait_started();
    env.db.wait_rows(n as i64, Some(&mut d));
    (d, app)
}

/// Truncates `path` in place (as `> path` or copytruncate's second step does).
fn truncate(path: &Path) {
    OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(0)
        .unwrap();
}

/// Renames `app.jsonl` to `app.jsonl.1` (after shifting `.1`… up by one), as logrotate's
/// `create` does, and creates an empty `app.jsonl`.
fn rotate_by_rename(env: &TestEnv, name: &str, keep: usize) {
    for k in (1..keep).rev() {
        let from = env.log(&format!("{name}.{k}"));
        if from.exists() {
            std::fs::rename(&from, env.log(&format!("{name}.{}", k + 1))).unwrap();
        }
    }
    std::fs::rename(env.log(name), env.log(&format!("{name}.1"))).unwrap();
    std::fs::File::create(env.log(name)).unwrap();
}

both_backends!(after_rename_and_create_the_new_file_is_woken_at_once_rotation_after_rotation);
/// Issue: after a rename-and-create rotation the new file was looked at only by the fallback
/// poll (wake-ups were filed by path, and the old file's entry took the new file's along). With
/// the poll at an hour, each rotation's new lines must still arrive.
fn after_rename_and_create_the_new_file_is_woken_at_once_rotation_after_rotation(b: Backend) {
    let Some(env) = TestEnv::new(b) else { return };
    let (mut d, app) = following_app(&env, "logs/app.jsonl*", "r0", 10);
    let mut spec = vec![("r0", 0..10)];
    let tags = ["r1", "r2", "r3", "r4"];
    for (i, tag) in tags.iter().enumerate() {
        rotate_by_rename(&env, "app.jsonl", 3);
        // One line, then more after a pause: each must be woken, not polled.
        append_lines(&app, &json_lines(tag, 0, 1));
        env.db.wait_rows(10 + 10 * i as i64 + 1, Some(&mut d));
        append_lines(&app, &json_lines(tag, 1, 9));
        env.db.wait_rows(10 + 10 * (i as i64 + 1), Some(&mut d));
        spec.push((tag, 0..10));
    }
    d.sigint();
    d.assert_exit_ok();
    assert_lines_once(&env.db, &spec);
}

both_backends!(after_rename_and_create_with_an_exact_include_the_new_file_stays_woken);
/// With an exact include the old file's task ends once it idles after the rename; its ending
/// must not take the new file's wake-ups along.
fn after_rename_and_create_with_an_exact_include_the_new_file_stays_woken(b: Backend) {
    let Some(env) = TestEnv::new(b) else { return };
    notified_only(&env, "logs/app.jsonl");
    let app = env.log("app.jsonl");
    append_lines(&app, &json_lines("old", 0, 10));
    let mut d = start_with_debug_log(&env);
    d.wait_started();
    env.db.wait_rows(10, Some(&mut d));
    rotate_by_rename(&env, "app.jsonl", 2);
    append_lines(&app, &json_lines("new", 0, 5));
    env.db.wait_rows(15, Some(&mut d));
    d.wait_for_log("Rotated file is idle; done with it.");
    append_lines(&app, &json_lines("new", 5, 5));
    env.db.wait_rows(20, Some(&mut d));
    d.sigint();
    d.assert_exit_ok();
    assert_lines_once(&env.db, &[("old", 0..10), ("new", 0..10)]);
}

both_backends!(many_files_rotated_at_once_are_all_woken);
fn many_files_rotated_at_once_are_all_woken(b: Backend) {
    let Some(env) = TestEnv::new(b) else { return };
    notified_only(&env, "logs/*.jsonl*");
    let names: Vec<String> = (0..20).map(|i| format!("f{i:02}.jsonl")).collect();
    let tags: Vec<String> = (0..20).map(|i| format!("f{i:02}")).collect();
    for (n, t) in names.iter().zip(&tags) {
        append_lines(&env.log(n), &json_lines(t, 0, 5));
    }
    let mut d = env.start();
    d.wait_started();
    env.db.wait_rows(100, Some(&mut d));
    for n in &names {
        rotate_by_rename(&env, n, 2);
    }
    let new_tags: Vec<String> = tags.iter().map(|t| format!("{t}n")).collect();
    for (n, t) in names.iter().zip(&new_tags) {
        append_lines(&env.log(n), &json_lines(t, 0, 3));
    }
    env.db.wait_rows(160, Some(&mut d));
    d.sigint();
    d.assert_exit_ok();
    let mut spec: Vec<(&str, Range<usize>)> = tags.iter().map(|t| (t.as_str(), 0..5)).collect();
    spec.extend(new_tags.iter().map(|t| (t.as_str(), 0..3)));
    assert_lines_once(&env.db, &spec);
}

both_backends!(a_renamed_file_s_position_follows_it_to_its_new_path);
/// `status`, metrics and the `files` table name a file where it is now, not where it was first
/// met, even when it has no new line to commit after the rename.
fn a_renamed_file_s_position_follows_it_to_its_new_path(b: Backend) {
    let Some(env) = TestEnv::new(b) else { return };
    let (mut d, app) = following_app(&env, "logs/app.jsonl*", "a", 10);
    rotate_by_rename(&env, "app.jsonl", 3);
    append_lines(&app, &json_lines("b", 0, 10));
    rotate_by_rename(&env, "app.jsonl", 3);
    append_lines(&app, &json_lines("c", 0, 10));
    env.db.wait_rows(30, Some(&mut d));
    let want: Vec<String> = ["app.jsonl", "app.jsonl.1", "app.jsonl.2"]
        .iter()
        .map(|n| env.log(n).display().to_string())
        .collect();
    crate::util::wait_until(
        "the files table to name each file at its path",
        crate::util::DEADLINE,
        || {
            let mut paths: Vec<String> = env.db.files().into_iter().map(|f| f.path).collect();
            paths.sort();
            paths == want
        },
    );
    d.sigint();
    d.assert_exit_ok();
    assert_lines_once(&env.db, &[("a", 0..10), ("b", 0..10), ("c", 0..10)]);
}

/// Copies `name` to `name.1` and truncates `name` in place, as logrotate's `copytruncate` does.
fn copy_truncate(env: &TestEnv, name: &str) {
    std::fs::copy(env.log(name), env.log(&format!("{name}.1"))).unwrap();
    truncate(&env.log(name));
}

both_backends!(copytruncate_with_a_glob_matching_the_copy_stores_every_line_once);
/// Issue: with `include = ["app.log*"]` the copy counted as a new file and everything already
/// read was stored again; with an exact include, the lines not yet read when the original was
/// truncated were lost. logbelt is stopped (SIGSTOP) while `b` lines are appended, copied and
/// truncated, so that they are certainly unread: they exist only in the copy.
fn copytruncate_with_a_glob_matching_the_copy_stores_every_line_once(b: Backend) {
    let Some(env) = TestEnv::new(b) else { return };
    let (mut d, app) = following_app(&env, "logs/app.jsonl*", "a", 40);

    d.signal(libc::SIGSTOP);
    append_lines(&app, &json_lines("b", 0, 25));
    copy_truncate(&env, "app.jsonl");
    append_lines(&app, &json_lines("c", 0, 5));
    d.signal(libc::SIGCONT);
    env.db.wait_rows(70, Some(&mut d));

    // A second rotation: the copy of the copy moves on, the new content is copied in turn.
    std::fs::rename(env.log("app.jsonl.1"), env.log("app.jsonl.2")).unwrap();
    copy_truncate(&env, "app.jsonl");
    append_lines(&app, &json_lines("d", 0, 5));
    env.db.wait_rows(75, Some(&mut d));
    d.sigint();
    d.assert_exit_ok();
    assert_lines_once(
        &env.db,
        &[("a", 0..40), ("b", 0..25), ("c", 0..5), ("d", 0..5)],
    );
    // And a restart finds every file where it was left: nothing more.
    env.run_once();
    assert_lines_once(
        &env.db,
        &[("a", 0..40), ("b", 0..25), ("c", 0..5), ("d", 0..5)],
    );
}

both_backends!(copytruncate_while_stopped_with_a_glob_matching_the_copy_stores_every_line_once);
fn copytruncate_while_stopped_with_a_glob_matching_the_copy_stores_every_line_once(b: Backend) {
    let Some(env) = TestEnv::new(b) else { return };
    let mut cfg = env.config();
    cfg.sources[0].include = vec!["logs/app.jsonl*".into()];
    cfg.write(&env);
    let app = env.log("app.jsonl");
    append_lines(&app, &json_lines("a", 0, 40));
    env.run_once();
    append_lines(&app, &json_lines("b", 0, 25));
    copy_truncate(&env, "app.jsonl");
    append_lines(&app, &json_lines("c", 0, 5));
    env.run_once();
    assert_lines_once(&env.db, &[("a", 0..40), ("b", 0..25), ("c", 0..5)]);
}

both_backends!(files_that_share_a_header_are_each_read_whole);
/// The known trap of content-based identity: files that begin with the same bytes (a CSV-style
/// header, a fixed first line). Each is read whole, also when one of them is truncated and
/// the other appears afterwards, and a file holding nothing but the header is stored too.
fn files_that_share_a_header_are_each_read_whole(b: Backend) {
    let Some(env) = TestEnv::new(b) else { return };
    notified_only(&env, "logs/*.jsonl*");
    let header = r#"{"seq":-1,"file":"hdr","msg":"logger started, format v1"}"#.to_string();
    let (x, y, z) = (env.log("x.jsonl"), env.log("y.jsonl"), env.log("z.jsonl"));
    append_lines(&x, std::slice::from_ref(&header));
    append_lines(&x, &json_lines("x", 0, 30));
    let mut d = env.start();
    d.wait_started();
    env.db.wait_rows(31, Some(&mut d));

    // A second file with the same first line, then different lines.
    append_lines(&y, std::slice::from_ref(&header));
    append_lines(&y, &json_lines("y", 0, 30));
    env.db.wait_rows(62, Some(&mut d));

    // The first one truncated (no copy), then a third file with the same header.
    truncate(&x);
    append_lines(&x, &json_lines("x2", 0, 3));
    env.db.wait_rows(65, Some(&mut d));
    append_lines(&z, std::slice::from_ref(&header));
    append_lines(&z, &json_lines("z", 0, 30));
    env.db.wait_rows(96, Some(&mut d));
    d.sigint();
    d.assert_exit_ok();
    let mut got: Vec<(String, i64)> = stored(&env.db);
    got.retain(|(f, _)| f == "hdr");
    assert_eq!(got.len(), 3, "the header line of each file");
    env.db.assert_no_duplicates();
    assert_eq!(env.db.dead_count(), 0);
}

both_backends!(a_plain_copy_of_a_file_being_read_is_not_stored_twice);
/// `cp app.jsonl app.jsonl.bak` under a glob that matches both: the copy's lines are the
/// original's, stored once (from the original).
fn a_plain_copy_of_a_file_being_read_is_not_stored_twice(b: Backend) {
    let Some(env) = TestEnv::new(b) else { return };
    let (mut d, app) = following_app(&env, "logs/app.jsonl*", "a", 50);
    std::fs::copy(&app, env.log("app.jsonl.bak")).unwrap();
    append_lines(&app, &json_lines("a", 50, 10));
    env.db.wait_rows(60, Some(&mut d));
    d.sigint();
    d.assert_exit_ok();
    assert_lines_once(&env.db, &[("a", 0..60)]);
}

both_backends!(a_rotated_file_compressed_after_the_scan_is_skipped_not_read);
/// `compress`: gzip creates `app.jsonl.2.gz` empty and writes it afterwards; the scan may meet
/// it before its first bytes, which must still be recognised.
fn a_rotated_file_compressed_after_the_scan_is_skipped_not_read(b: Backend) {
    let Some(env) = TestEnv::new(b) else { return };
    let (mut d, app) = following_app(&env, "logs/app.jsonl*", "a", 10);
    let gz = env.log("app.jsonl.2.gz");
    std::fs::File::create(&gz).unwrap();
    // The scan meets the empty file (and starts following it) before it has any bytes.
    d.wait_for_log(&format!("path={}", gz.display()));
    append_lines(&app, &json_lines("a", 10, 1));
    env.db.wait_rows(11, Some(&mut d));
    let mut bytes = vec![0x1f, 0x8b, 0x08, 0x00];
    bytes.extend_from_slice(&[0x0a; 64]);
    crate::util::append_bytes(&gz, &bytes);
    append_lines(&app, &json_lines("a", 11, 1));
    env.db.wait_rows(12, Some(&mut d));
    d.wait_for_log("compressed; skipped");
    d.sigint();
    d.assert_exit_ok();
    assert_lines_once(&env.db, &[("a", 0..12)]);
}

both_backends!(copytruncate_while_reading_behind_keeps_every_line_once);
/// The database is blocked, so logbelt reads far behind the writer (backpressure) when the file
/// is copied, truncated, and written past logbelt's read position again. The bytes at that
/// position are now new content: they must not be taken for the old content's continuation.
/// The old content's unread rest comes from the copy; the new content is read from its start.
fn copytruncate_while_reading_behind_keeps_every_line_once(b: Backend) {
    let Some(env) = TestEnv::new(b) else { return };
    let mut cfg = env.config().small_batches();
    cfg.poll_interval_ms = 3_600_000;
    cfg.sources[0].include = vec!["logs/app.jsonl*".into()];
    cfg.write(&env);
    let app = env.log("app.jsonl");
    append_lines(&app, &json_lines("a", 0, 10));
    let mut d = env.start();
    d.wait_started();
    env.db.wait_rows(10, Some(&mut d));

    let block = env.db.block_writes();
    append_lines(&app, &json_lines("a", 10, 20_000));
    env.db.wait_commit_blocked(&mut d);
    copy_truncate(&env, "app.jsonl");
    // Longer than the old content: whatever logbelt's position, the file reaches past it.
    append_lines(&app, &json_lines("t", 0, 25_000));
    block.release();
    env.db.wait_rows(45_010, Some(&mut d));
    d.sigint();
    d.assert_exit_ok();
    assert_lines_once(&env.db, &[("a", 0..20_010), ("t", 0..25_000)]);
}

both_backends!(a_copy_that_ends_before_the_position_is_not_read_again_after_a_restart);
/// logbelt read lines that were written after logrotate's copy and before its truncation: the
/// copy ends before the position. Nothing in it is new, and it must stay so after a restart
/// (its row records it; the truncated content's row names no inode).
fn a_copy_that_ends_before_the_position_is_not_read_again_after_a_restart(b: Backend) {
    let Some(env) = TestEnv::new(b) else { return };
    notified_only(&env, "logs/app.jsonl*");
    let app = env.log("app.jsonl");
    let offsets = append_lines(&app, &json_lines("a", 0, 30));
    append_lines(&app, &json_lines("a", 30, 10));
    let mut d = env.start();
    d.wait_started();
    env.db.wait_rows(40, Some(&mut d));

    // The copy was taken when the file held 30 lines, 10 lines before the truncation.
    let bytes = std::fs::read(&app).unwrap();
    let copied_len = offsets[29] as usize + json_lines("a", 29, 1)[0].len() + 1;
    std::fs::write(env.log("app.jsonl.1"), &bytes[..copied_len]).unwrap();
    truncate(&app);
    append_lines(&app, &json_lines("c", 0, 5));
    env.db.wait_rows(45, Some(&mut d));
    d.wait_for_log("following it from its end");
    d.sigint();
    d.assert_exit_ok();
    assert_lines_once(&env.db, &[("a", 0..40), ("c", 0..5)]);
    env.run_once();
    assert_lines_once(&env.db, &[("a", 0..40), ("c", 0..5)]);
}
