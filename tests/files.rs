//! Odd things that globs match, files that change under logbelt, and config/environment
//! failures: a directory, a FIFO, symlinks (once, loops), unreadable and compressed files,
//! deletion and shrinking while running; an unreachable PostgreSQL, an unwritable SQLite
//! location, a missing `${VAR}` (exit codes 2 for config, 1 for runtime: README, "Commands").

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use crate::util::{
    append_bytes, append_lines, json_lines, Backend, Daemon, SourceSpec, TestEnv, Written, DEADLINE,
};

/// Whether this process can read files whatever their mode (root, or CAP_DAC_OVERRIDE).
fn permissions_do_not_apply(dir: &Path) -> bool {
    let probe = dir.join("permission-probe");
    std::fs::write(&probe, b"x").unwrap();
    std::fs::set_permissions(&probe, std::fs::Permissions::from_mode(0o000)).unwrap();
    let readable = std::fs::read(&probe).is_ok();
    std::fs::remove_file(&probe).unwrap();
    readable
}

/// WARN and ERROR lines of logbelt's own log.
fn problems(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .collect()
}

fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path; mkfifo(3) touches no memory of ours.
    let r = unsafe { libc::mkfifo(c.as_ptr(), 0o644) };
    assert_eq!(r, 0, "mkfifo {}", path.display());
}

// ---------------------------------------------------------------------------------------------
// What a glob matches
// ---------------------------------------------------------------------------------------------

#[test]
fn a_directory_that_matches_the_glob_is_ignored_without_a_warning() {
    let env = TestEnv::new(Backend::Sqlite).unwrap();
    env.config().write(&env);
    std::fs::create_dir(env.log("dir.jsonl")).unwrap();
    append_bytes(&env.log("dir.jsonl/inner.jsonl"), b"{\"inner\":1}\n");
    let mut w = Written::new();
    w.append(&env.log("a.jsonl"), &json_lines("a", 0, 5));
    let stderr = env.run_once();
    w.assert_stored(&env.db);
    assert!(
        !stderr.contains("dir.jsonl"),
        "the directory is mentioned:\n{stderr}"
    );
    assert!(problems(&stderr).is_empty(), "warnings:\n{stderr}");
}

#[test]
fn a_glob_does_not_walk_into_proc_unless_it_names_it() {
    let env = TestEnv::new(Backend::Sqlite).unwrap();
    // `/pro*/version` would match `/proc/version` if the walk from `/` entered `/proc`.
    let mut cfg = env.config();
    cfg.sources[0].include = vec!["/pro*/version".into()];
    cfg.write(&env);
    env.run_once();
    assert_eq!(env.db.rows(), 0, "something under /proc was read");

    // Named in the glob's literal part, it is read (one line, not JSON: a dead letter).
    cfg.sources[0].include = vec!["/proc/versio[n]".into()];
    cfg.write(&env);
    env.run_once();
    assert_eq!(env.db.dead_count(), 1, "/proc/version named: read");
}

#[test]
fn file_names_with_control_characters_are_logged_escaped() {
    let env = TestEnv::new(Backend::Sqlite).unwrap();
    env.config().write(&env);
    let mut w = Written::new();
    w.append(&env.log("evil\u{1b}[2J\r.jsonl"), &json_lines("e", 0, 3));
    let stderr = env.run_once();
    w.assert_stored(&env.db);
    // (`stderr()` strips raw ANSI sequences, so the escaped form is what shows they were not
    // written raw.)
    assert!(
        stderr.contains("evil\\u{1b}[2J\\r.jsonl"),
        "escaped name:\n{stderr}"
    );
    assert!(!stderr.contains('\r'), "a raw CR in the log:\n{stderr:?}");
}

both_backends!(a_fifo_is_skipped_with_a_warning_and_never_blocks_the_other_files);
fn a_fifo_is_skipped_with_a_warning_and_never_blocks_the_other_files(b: Backend) {
    let Some(env) = TestEnv::new(b) else { return };
    env.config().write(&env);
    // Sorted first, so that a blocking open of it would hold up the files after it.
    mkfifo(&env.log("0-fifo.jsonl"));
    let mut w = Written::new();
    w.append(&env.log("a.jsonl"), &json_lines("a", 0, 5));

    // --once finishes (opening a FIFO for reading would block until a writer comes).
    let stderr = env.run_once();
    w.assert_stored(&env.db);
    let warning: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("0-fifo.jsonl"))
        .collect();
    assert_eq!(warning.len(), 1, "one warning naming the FIFO:\n{stderr}");
    assert!(
        warning[0].contains("WARN") && warning[0].contains("not a regular file"),
        "{}",
        warning[0]
    );

    // Running: the FIFO is warned about once, not at every scan, and the other files are
    // followed.
    let mut d = env.start();
    d.wait_started();
    w.append(&env.log("a.jsonl"), &json_lines("a", 5, 3));
    w.append(&env.log("b.jsonl"), &json_lines("b", 0, 3));
    env.db.wait_rows(w.total(), Some(&mut d));
    // Several scans (poll_interval_ms = 200).
    std::thread::sleep(Duration::from_millis(800));
    d.sigint();
    d.assert_exit_ok();
    w.assert_stored(&env.db);
    let stderr = d.stderr();
    assert_eq!(
        stderr.matches("0-fifo.jsonl").count(),
        1,
        "the FIFO is warned about once:\n{stderr}"
    );
}

both_backends!(a_symlink_to_a_file_is_followed_once);
fn a_symlink_to_a_file_is_followed_once(b: Backend) {
    let Some(env) = TestEnv::new(b) else { return };
    env.config().write(&env);
    std::fs::create_dir(env.path("elsewhere")).unwrap();
    // Only the link matches the glob.
    let outside = env.path("elsewhere/outside.log");
    append_lines(&outside, &json_lines("outside", 0, 4));
    std::os::unix::fs::symlink(&outside, env.log("link-to-outside.jsonl")).unwrap();
    // Both the link and its target match.
    let target = env.log("target.jsonl");
    append_lines(&target, &json_lines("target", 0, 6));
    std::os::unix::fs::symlink("target.jsonl", env.log("link-to-target.jsonl")).unwrap();

    env.run_once();
    let db = &env.db;
    db.assert_no_duplicates();
    assert_eq!(db.events_count(), 4 + 6, "each line once");
    assert_eq!(db.dead_count(), 0);
    let files = db.files();
    assert_eq!(files.len(), 2, "one files row per file: {files:?}");

    // Again, running, with appends through both names: still once each.
    let mut d = env.start();
    d.wait_started();
    append_lines(
        &env.log("link-to-target.jsonl"),
        &json_lines("target", 6, 2),
    );
    append_lines(&target, &json_lines("target", 8, 2));
    append_lines(&outside, &json_lines("outside", 4, 3));
    db.wait_rows(4 + 6 + 4 + 3, Some(&mut d));
    std::thread::sleep(Duration::from_millis(600));
    d.sigint();
    d.assert_exit_ok();
    db.assert_no_duplicates();
    assert_eq!(db.rows(), 4 + 6 + 4 + 3);
    assert_eq!(db.files().len(), 2, "{:?}", db.files());
}

#[test]
fn file_symlink_loops_are_warned_about_once_and_do_not_hang() {
    let env = TestEnv::new(Backend::Sqlite).unwrap();
    env.config().write(&env);
    std::os::unix::fs::symlink("self.jsonl", env.log("self.jsonl")).unwrap();
    std::os::unix::fs::symlink("pong.jsonl", env.log("ping.jsonl")).unwrap();
    std::os::unix::fs::symlink("ping.jsonl", env.log("pong.jsonl")).unwrap();
    let mut w = Written::new();
    w.append(&env.log("a.jsonl"), &json_lines("a", 0, 5));

    let stderr = env.run_once();
    w.assert_stored(&env.db);
    for name in ["self.jsonl", "ping.jsonl", "pong.jsonl"] {
        let lines: Vec<&str> = stderr.lines().filter(|l| l.contains(name)).collect();
        assert_eq!(lines.len(), 1, "{name}: one warning:\n{stderr}");
        assert!(lines[0].contains("WARN"), "{}", lines[0]);
    }

    // Running: several scans, one warning each still, and the other file followed.
    let mut d = env.start();
    d.wait_started();
    w.append(&env.log("a.jsonl"), &json_lines("a", 5, 2));
    env.db.wait_rows(w.total(), Some(&mut d));
    std::thread::sleep(Duration::from_millis(800));
    d.sigint();
    d.assert_exit_ok();
    w.assert_stored(&env.db);
    assert_eq!(
        d.stderr().matches("self.jsonl").count(),
        1,
        "{}",
        d.stderr()
    );
}

/// Writes `cfg` with `follow_symlinks = true` in every source.
fn write_following_symlinks(cfg: &crate::util::ConfigBuilder, env: &TestEnv) {
    let toml = cfg
        .to_toml()
        .replace("\ninclude = ", "\nfollow_symlinks = true\ninclude = ");
    assert!(toml.contains("follow_symlinks"), "{toml}");
    std::fs::write(env.config_path(), toml).unwrap();
}

/// A link to a directory is walked into only with `follow_symlinks = true`; a link to a file is
/// followed either way.
#[test]
fn directory_symlinks_are_followed_only_when_asked() {
    let env = TestEnv::new(Backend::Sqlite).unwrap();
    let outside = env.path("elsewhere");
    std::fs::create_dir(&outside).unwrap();
    append_lines(&outside.join("x.jsonl"), &json_lines("x", 0, 4));
    std::os::unix::fs::symlink(&outside, env.log("linked-dir")).unwrap();
    std::os::unix::fs::symlink(outside.join("x.jsonl"), env.log("file-link.jsonl")).unwrap();
    let mut cfg = env.config();
    cfg.sources[0].include = vec!["logs/**/*.jsonl".into()];
    cfg.write(&env);
    env.run_once();
    let paths: Vec<String> = env.db.files().into_iter().map(|f| f.path).collect();
    assert_eq!(
        paths,
        vec![env.log("file-link.jsonl").display().to_string()],
        "only the file link"
    );

    // Another folder, followed through its link when asked.
    let other = env.path("other");
    std::fs::create_dir(&other).unwrap();
    append_lines(&other.join("y.jsonl"), &json_lines("y", 0, 3));
    std::os::unix::fs::symlink(&other, env.log("other-dir")).unwrap();
    write_following_symlinks(&cfg, &env);
    env.run_once();
    assert_eq!(
        env.db.rows(),
        7,
        "x once (one file, two names), y through its link"
    );
}

/// `logs/**/*.jsonl` over a folder with a link back to its parent: the walk ends (the kernel
/// stops resolving after 40 links) and each file is stored once.
#[test]
fn a_directory_symlink_loop_under_double_star_does_not_hang() {
    let env = TestEnv::new(Backend::Sqlite).unwrap();
    let mut cfg = env.config();
    cfg.sources[0].include = vec!["logs/**/*.jsonl".into()];
    write_following_symlinks(&cfg, &env);
    std::fs::create_dir(env.log("sub")).unwrap();
    std::os::unix::fs::symlink("..", env.log("sub/up")).unwrap();
    append_lines(&env.log("a.jsonl"), &json_lines("a", 0, 5));
    append_lines(&env.log("sub/b.jsonl"), &json_lines("b", 0, 2));

    // `run_once` fails the test if logbelt has not exited by its deadline: a walk that loops.
    let stderr = env.run_once();
    env.db.assert_no_duplicates();
    assert_eq!(env.db.rows(), 7, "each line once");
    assert_eq!(env.db.files().len(), 2, "{:?}", env.db.files());
    eprintln!(
        "{} warnings for {} bytes of stderr",
        problems(&stderr).len(),
        stderr.len()
    );
}

/// Two links back to the parent: a walk without loop detection visits 2^40 paths. Regression
/// test: with the `glob` crate's `**`, `run --once` read nothing for over 60 s (the first scan
/// never ended, so no file was tailed, not even `logs/a.jsonl`), and SIGINT then ended in
/// "Drain timed out" and exit 1.
#[test]
fn two_directory_symlink_loops_under_double_star_do_not_stall() {
    let env = TestEnv::new(Backend::Sqlite).unwrap();
    let mut cfg = env.config();
    cfg.sources[0].include = vec!["logs/**/*.jsonl".into()];
    write_following_symlinks(&cfg, &env);
    std::fs::create_dir(env.log("sub")).unwrap();
    std::os::unix::fs::symlink("..", env.log("sub/up")).unwrap();
    std::os::unix::fs::symlink("..", env.log("sub/up2")).unwrap();
    append_lines(&env.log("a.jsonl"), &json_lines("a", 0, 5));
    let config = env.config_path();
    let mut d = Daemon::spawn_in(
        env.dir.path(),
        &[
            "run".as_ref(),
            "--once".as_ref(),
            "--config".as_ref(),
            config.as_os_str(),
        ],
    );
    let status = d.wait_exit(Duration::from_secs(30));
    assert_eq!(status.code(), Some(0), "{}", d.stderr());
    assert_eq!(env.db.rows(), 5);
}

// ---------------------------------------------------------------------------------------------
// Unreadable and compressed files
// ---------------------------------------------------------------------------------------------

#[test]
fn an_unreadable_file_is_reported_the_others_go_on_and_it_is_read_once_allowed() {
    let env = TestEnv::new(Backend::Sqlite).unwrap();
    if permissions_do_not_apply(env.dir.path()) {
        eprintln!(
            "skipping {}: this process reads files whatever their mode (running as root?)",
            crate::util::test_name()
        );
        return;
    }
    env.config().write(&env);
    let locked = env.log("locked.jsonl");
    let mut w = Written::new();
    w.append(&locked, &json_lines("locked", 0, 3));
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).unwrap();
    w.append(&env.log("open.jsonl"), &json_lines("open", 0, 4));

    let mut d = env.start();
    d.wait_started();
    env.db.wait_rows(4, Some(&mut d));
    d.wait_for_log("locked.jsonl");
    let stderr = d.stderr();
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("locked.jsonl"))
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("WARN") || l.contains("ERROR")),
        "{stderr}"
    );
    // Appends to the other file go on.
    w.append(&env.log("open.jsonl"), &json_lines("open", 4, 2));
    env.db.wait_rows(6, Some(&mut d));
    // Readable again: read at a later scan.
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o644)).unwrap();
    env.db.wait_rows(9, Some(&mut d));
    d.sigint();
    d.assert_exit_ok();
    w.assert_stored(&env.db);
    // Reported once, not at every scan.
    assert_eq!(
        d.stderr()
            .lines()
            .filter(|l| l.contains("locked.jsonl") && l.contains("WARN"))
            .count(),
        1,
        "{}",
        d.stderr()
    );
}

#[test]
fn compressed_files_are_skipped_with_a_warning() {
    let env = TestEnv::new(Backend::Sqlite).unwrap();
    env.config().write(&env);
    let mut w = Written::new();
    w.append(&env.log("plain.jsonl"), &json_lines("p", 0, 3));
    let magics: &[(&str, &[u8], &str)] = &[
        (
            "gz.jsonl",
            b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03",
            "gzip",
        ),
        ("zst.jsonl", b"\x28\xb5\x2f\xfd\x00\x58", "zstd"),
        ("bz2.jsonl", b"BZh91AY&SY", "bzip2"),
        ("xz.jsonl", b"\xfd7zXZ\x00\x00\x04", "xz"),
        ("lz4.jsonl", b"\x04\x22\x4d\x18\x64\x40", "lz4"),
    ];
    for (name, magic, _) in magics {
        append_bytes(&env.log(name), &[*magic, b"\n{\"a\":1}\n"].concat());
    }
    let stderr = env.run_once();
    w.assert_stored(&env.db);
    assert_eq!(env.db.files().len(), 1, "{:?}", env.db.files());
    for (name, _, kind) in magics {
        let lines: Vec<&str> = stderr.lines().filter(|l| l.contains(name)).collect();
        assert_eq!(lines.len(), 1, "{name}: one line:\n{stderr}");
        assert!(
            lines[0].contains("WARN") && lines[0].contains(&format!("{kind}-compressed")),
            "{name}: {}",
            lines[0]
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Files that change under logbelt
// ---------------------------------------------------------------------------------------------

both_backends!(a_file_deleted_while_being_read_keeps_what_was_read);
fn a_file_deleted_while_being_read_keeps_what_was_read(b: Backend) {
    let Some(env) = TestEnv::new(b) else { return };
    env.config().write(&env);
    let a = env.log("a.jsonl");
    let mut w = Written::new();
    w.append(&a, &json_lines("a", 0, 10));
    let mut d = env.start();
    d.wait_started();
    env.db.wait_rows(10, Some(&mut d));

    // Lines appended right before the delete: logbelt still holds the file open, so it reads
    // them to the end.
    w.append(&a, &json_lines("a", 10, 5));
    std::fs::remove_file(&a).unwrap();
    env.db.wait_rows(15, Some(&mut d));
    // The file is let go after its grace period (5 s without new bytes), without an error.
    d.wait_for_log("Tailing file.");
    std::thread::sleep(Duration::from_millis(5_600));
    d.assert_running();
    // A new file under the same name is a new file, read from its start.
    let mut w2 = Written::new();
    w2.append(&a, &json_lines("new", 0, 3));
    env.db.wait_rows(18, Some(&mut d));
    d.sigint();
    d.assert_exit_ok();
    env.db.assert_no_duplicates();
    let stderr = d.stderr();
    assert!(
        problems(&stderr).is_empty(),
        "warnings or errors:\n{stderr}"
    );
    let ids: std::collections::BTreeSet<i64> = env.db.events().iter().map(|e| e.file_id).collect();
    assert_eq!(ids.len(), 2, "the old and the new file");
}

#[test]
fn a_file_deleted_during_run_once_does_not_fail_the_run() {
    let env = TestEnv::new(Backend::Sqlite).unwrap();
    env.config().small_batches().write(&env);
    let a = env.log("a.jsonl");
    // Big enough that the delete lands while it is being read.
    append_lines(&a, &json_lines("a", 0, 60_000));
    let total = 60_000;
    let config = env.config_path();
    let mut d = Daemon::spawn_in(
        env.dir.path(),
        &[
            "run".as_ref(),
            "--once".as_ref(),
            "--config".as_ref(),
            config.as_os_str(),
        ],
    );
    crate::util::wait_until("some rows", DEADLINE, || {
        env.path("logbelt.db").exists()
            && std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| env.db.rows())).unwrap_or(0)
                > 0
    });
    std::fs::remove_file(&a).unwrap();
    d.assert_exit_ok();
    let rows = env.db.rows();
    env.db.assert_no_duplicates();
    assert_eq!(rows, total, "the open file is read to its end");
    assert!(problems(&d.stderr()).is_empty(), "{}", d.stderr());
}

both_backends!(a_file_that_shrinks_while_running_is_read_again_from_the_start);
fn a_file_that_shrinks_while_running_is_read_again_from_the_start(b: Backend) {
    let Some(env) = TestEnv::new(b) else { return };
    env.config().write(&env);
    let a = env.log("a.jsonl");
    let first = json_lines("a", 0, 20);
    append_lines(&a, &first);
    let mut d = env.start();
    d.wait_started();
    env.db.wait_rows(20, Some(&mut d));

    // Shrink to the first 5 lines (a partial truncation), then append 3 lines.
    let keep: usize = first[..5].iter().map(|l| l.len() + 1).sum();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&a)
        .unwrap()
        .set_len(keep as u64)
        .unwrap();
    let added = json_lines("b", 0, 3);
    append_lines(&a, &added);
    // Read again from 0 as a new file: the 5 kept lines and the 3 new ones, under a new id.
    env.db.wait_rows(20 + 5 + 3, Some(&mut d));
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(env.db.rows(), 28);

    // Truncated to zero, then new lines: read from 0 again.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&a)
        .unwrap()
        .set_len(0)
        .unwrap();
    append_lines(&a, &json_lines("c", 0, 2));
    env.db.wait_rows(30, Some(&mut d));
    d.sigint();
    d.assert_exit_ok();
    env.db.assert_no_duplicates();
    assert_eq!(env.db.dead_count(), 0);
    let events = env.db.events();
    let ids: std::collections::BTreeSet<i64> = events.iter().map(|e| e.file_id).collect();
    assert_eq!(ids.len(), 3, "one file id per content");
    let len = std::fs::metadata(&a).unwrap().len() as i64;
    let files = env.db.files();
    assert!(
        files.iter().any(|f| f.committed_offset == len),
        "the current content is committed to its end: {files:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Config and environment: exit codes 2 (config) and 1 (runtime)
// ---------------------------------------------------------------------------------------------

/// A config with `url` for the database, in a new folder with a `logs/` folder.
fn config_with_url(url: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::Builder::new()
        .prefix("logbelt-files-")
        .tempdir()
        .unwrap();
    std::fs::create_dir(dir.path().join("logs")).unwrap();
    std::fs::write(dir.path().join("logs/a.jsonl"), "{\"k\":1}\n").unwrap();
    let mut cfg = crate::util::ConfigBuilder::new(url);
    cfg.sources = vec![SourceSpec {
        name: "app".into(),
        include: vec!["logs/*.jsonl".into()],
        exclude: vec![],
        start_at: None,
    }];
    let path = dir.path().join("logbelt.toml");
    std::fs::write(&path, cfg.to_toml()).unwrap();
    (dir, path)
}

/// `logbelt ARGS --config PATH` with extra environment variables: exit code and stderr.
fn logbelt(
    dir: &Path,
    args: &[&str],
    config: &Path,
    env: &[(&str, &str)],
) -> (Option<i32>, String) {
    let stderr_path = dir.join(format!("stderr-{}", args.join("-")));
    let mut cmd = crate::util::logbelt_command(dir, &stderr_path);
    cmd.args(args).arg("--config").arg(config);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut d = Daemon::from_command(cmd, &stderr_path);
    let status = d.wait_exit(DEADLINE);
    (status.code(), d.stderr())
}

/// Lines of stderr that are not blank.
fn lines(stderr: &str) -> Vec<&str> {
    stderr.lines().filter(|l| !l.trim().is_empty()).collect()
}

/// `run` exits 1 with error lines that name `what`; every ERROR line must be about the
/// database (no noise from a pipeline that never started).
fn assert_runtime_failure(code: Option<i32>, stderr: &str, what: &str) {
    assert_eq!(
        code,
        Some(1),
        "a runtime failure exits 1; stderr:\n{stderr}"
    );
    // Every line but logbelt's INFO lines (continuation lines of a message count).
    let errors: Vec<&str> = lines(stderr)
        .into_iter()
        .filter(|l| !l.contains(" INFO "))
        .collect();
    assert!(!errors.is_empty(), "no error line:\n{stderr}");
    assert!(
        errors.iter().any(|l| l.contains(what)),
        "no error line names {what:?}:\n{stderr}"
    );
    assert_eq!(
        errors.len(),
        1,
        "one clear error line, not {}:\n{stderr}",
        errors.len()
    );
}

const UNREACHABLE_PG: &str = "postgres://u:hunter2@127.0.0.1:1/logs";

#[test]
fn unreachable_postgres_run_exits_1_and_validate_exits_2() {
    let (dir, path) = config_with_url(UNREACHABLE_PG);
    for args in [&["run", "--once"][..], &["run"]] {
        let (code, stderr) = logbelt(dir.path(), args, &path, &[]);
        assert_eq!(
            code,
            Some(1),
            "{args:?}: a runtime failure exits 1:\n{stderr}"
        );
        assert!(
            stderr.contains("127.0.0.1"),
            "{args:?}: the server is named:\n{stderr}"
        );
        assert!(
            !stderr.contains("hunter2"),
            "{args:?}: password leaked:\n{stderr}"
        );
    }
    let (code, stderr) = logbelt(dir.path(), &["validate"], &path, &[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("database.url") && stderr.contains("127.0.0.1"),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2"), "password leaked:\n{stderr}");
}

/// Regression test: libpq's message kept its newline and tab, so the error took two lines (and
/// a blank one): `… Connection refused` / `\tIs the server running on that host and accepting TCP/IP
/// connections?`.
#[test]
fn unreachable_postgres_error_is_one_line() {
    let (dir, path) = config_with_url(UNREACHABLE_PG);
    let (code, stderr) = logbelt(dir.path(), &["run", "--once"], &path, &[]);
    assert_runtime_failure(code, &stderr, "127.0.0.1");
    let (code, stderr) = logbelt(dir.path(), &["validate"], &path, &[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert_eq!(lines(&stderr).len(), 1, "one line:\n{stderr}");
}

#[test]
fn an_sqlite_database_that_cannot_be_created_fails_run_with_exit_1() {
    // Locations where even root cannot create a file: under a regular file, in a missing
    // folder, in /proc.
    let cases = [
        (
            "under a file",
            "sqlite://logs/a.jsonl/logbelt.db",
            "logbelt.db",
        ),
        (
            "missing folder",
            "sqlite://no/such/dir/logbelt.db",
            "logbelt.db",
        ),
        (
            "in /proc",
            "sqlite:///proc/logbelt-test.db",
            "/proc/logbelt-test.db",
        ),
    ];
    let mut failures = vec![];
    for (what, url, name) in cases {
        let (dir, path) = config_with_url(url);
        let (code, stderr) = logbelt(dir.path(), &["run", "--once"], &path, &[]);
        if let Err(e) = std::panic::catch_unwind(|| assert_runtime_failure(code, &stderr, name)) {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .unwrap_or_else(|| "?".into());
            failures.push(format!("{what}: {msg}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_read_only_sqlite_folder_fails_run_with_exit_1() {
    let (dir, path) = config_with_url("sqlite://db/logbelt.db");
    let db_dir = dir.path().join("db");
    std::fs::create_dir(&db_dir).unwrap();
    std::fs::set_permissions(&db_dir, std::fs::Permissions::from_mode(0o555)).unwrap();
    if std::fs::write(db_dir.join("probe"), b"x").is_ok() {
        eprintln!(
            "skipping {}: this process writes into read-only folders (running as root?)",
            crate::util::test_name()
        );
        return;
    }
    let (code, stderr) = logbelt(dir.path(), &["run", "--once"], &path, &[]);
    std::fs::set_permissions(&db_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    assert_runtime_failure(code, &stderr, "logbelt.db");
}

#[test]
fn a_missing_env_var_is_a_config_error_exit_2() {
    let (dir, path) = config_with_url("sqlite://${LOGBELT_TEST_FILES_UNSET_VAR}.db");
    for args in [&["run"][..], &["run", "--once"], &["validate"]] {
        let (code, stderr) = logbelt(dir.path(), args, &path, &[]);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        let l = lines(&stderr);
        assert_eq!(l.len(), 1, "{args:?}: one line:\n{stderr}");
        assert!(
            l[0].contains("LOGBELT_TEST_FILES_UNSET_VAR") && l[0].contains("database.url"),
            "{args:?}: {}",
            l[0]
        );
    }
    // Set, it works.
    let (code, stderr) = logbelt(
        dir.path(),
        &["run", "--once"],
        &path,
        &[("LOGBELT_TEST_FILES_UNSET_VAR", "set")],
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(dir.path().join("set.db").exists());
    // Set but empty: the URL becomes `sqlite://.db`, a file named `.db`. Whatever logbelt
    // decides, it must be an exit code, not a hang or a panic.
    let (code, stderr) = logbelt(
        dir.path(),
        &["run", "--once"],
        &path,
        &[("LOGBELT_TEST_FILES_UNSET_VAR", "")],
    );
    assert!(matches!(code, Some(0..=2)), "{code:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

// ---------------------------------------------------------------------------------------------
// File descriptors
// ---------------------------------------------------------------------------------------------

#[test]
fn more_files_than_descriptors_are_all_read_by_run_once() {
    let env = TestEnv::new(Backend::Sqlite).unwrap();
    env.config().write(&env);
    let mut w = Written::new();
    for i in 0..300 {
        w.append(
            &env.log(&format!("f{i:03}.jsonl")),
            &json_lines(&format!("f{i}"), 0, 3),
        );
    }
    let mut d = crate::util::spawn_with_fd_limit(&env, 128, &["run", "--once", "--config"]);
    let status = d.wait_exit(DEADLINE);
    assert_eq!(status.code(), Some(0), "{}", d.stderr());
    w.assert_stored(&env.db);
}

#[test]
fn more_files_than_descriptors_are_all_followed_while_running() {
    let env = TestEnv::new(Backend::Sqlite).unwrap();
    env.config().write(&env);
    let mut w = Written::new();
    let paths: Vec<_> = (0..300)
        .map(|i| env.log(&format!("f{i:03}.jsonl")))
        .collect();
    for (i, p) in paths.iter().enumerate() {
        w.append(p, &json_lines(&format!("f{i}"), 0, 2));
    }
    let mut d = crate::util::spawn_with_fd_limit(&env, 128, &["run", "--config"]);
    d.wait_started();
    env.db.wait_rows(600, Some(&mut d));
    // 300 files stay followed, more than the budget under a limit of 128: some waited.
    d.wait_for_log("More files than file descriptors");
    // Every file again, the idle ones closed for others included.
    for (i, p) in paths.iter().enumerate() {
        w.append(p, &json_lines(&format!("f{i}"), 2, 1));
    }
    env.db.wait_rows(900, Some(&mut d));
    d.sigint();
    d.assert_exit_ok();
    w.assert_stored(&env.db);
}
