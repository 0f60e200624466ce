//! Rotation, truncation and file identity (DESIGN.md §5–6): rename+create while running and
//! while stopped, copytruncate, truncation while stopped, a new file where an old one was. A
//! file's rows may then sit under several paths or file ids, so these tests check the lines
//! themselves: every `(file tag, seq)` written is stored exactly once.

use std::fs::OpenOptions;
use std::io::Write;
use std::ops::Range;

use crate::util::{append_lines, json_lines, Backend, TestDb, TestEnv};

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
    // The rotated name must match for its unread tail to be read (DESIGN.md §6).
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
    OpenOptions::new()
        .write(true)
        .open(&a)
        .unwrap()
        .set_len(0)
        .unwrap();
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
/// the pairs of the old content (DESIGN.md §5: a file's committed position only moves forward).
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
    OpenOptions::new()
        .write(true)
        .open(&short)
        .unwrap()
        .set_len(0)
        .unwrap();
    append_lines(&short, &json_lines("s2", 0, 5));
    OpenOptions::new()
        .write(true)
        .open(&long)
        .unwrap()
        .set_len(0)
        .unwrap();
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
    OpenOptions::new()
        .write(true)
        .open(&a)
        .unwrap()
        .set_len(0)
        .unwrap();
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
/// DESIGN.md §6: the position of a file that is gone is forgotten once everything in it is
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
