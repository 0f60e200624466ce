//! Config errors and exit codes through the binary: `validate` exits 2 with one line naming
//! `file:line:col` and the key; `run` with a bad config exits 2; database passwords never show.

use std::path::{Path, PathBuf};

use diesel::{Connection, RunQueryDsl};

use crate::util::{Daemon, DEADLINE};

/// A valid config; each case below breaks one thing in it.
const GOOD: &str = r#"[database]
url = "sqlite://logbelt.db"

[agent]
host = "test-host"

[[sources]]
name = "app"
include = ["logs/*.jsonl"]
exclude = ["*.gz"]
start_at = "beginning"

[pipeline]
batch_rows = 5000
flush_interval_ms = 200
channel_capacity = 64
mailbox_capacity = 16
poll_interval_ms = 1000

[parse]
max_line_bytes = 1048576

[shutdown]
drain_timeout_ms = 30000
"#;

/// An environment variable no test sets.
const UNSET_VAR: &str = "LOGBELT_TEST_SURELY_UNSET_VARIABLE";

/// Writes `text` as `logbelt.toml` in a new folder; returns the folder and the file's path.
fn config_dir(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::Builder::new()
        .prefix("logbelt-cli-")
        .tempdir()
        .unwrap();
    std::fs::create_dir(dir.path().join("logs")).unwrap();
    let path = dir.path().join("logbelt.toml");
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

/// Runs `logbelt <cmd> --config <config>`; returns the exit code and stderr.
fn logbelt(dir: &Path, cmd: &[&str], config: &Path) -> (Option<i32>, String) {
    let mut args: Vec<&std::ffi::OsStr> = cmd.iter().map(|a| a.as_ref()).collect();
    args.push("--config".as_ref());
    args.push(config.as_os_str());
    let mut d = Daemon::spawn_in(dir, &args);
    let status = d.wait_exit(DEADLINE);
    (status.code(), d.stderr())
}

/// One broken config: `GOOD` with `from` replaced by `to`.
struct Case {
    what: &'static str,
    from: &'static str,
    to: &'static str,
    /// The error's line is the line of the broken text that contains this.
    line_of: &'static str,
    /// Acceptable columns: where one of these starts on that line (the key, the value, or an
    /// element of it). Empty: any column on the line.
    cols_at: &'static [&'static str],
    /// The message must contain all of these (the key, and what is wrong).
    mentions: &'static [&'static str],
}

const CASES: &[Case] = &[
    Case {
        what: "TOML syntax error",
        from: "[agent]",
        to: "[agent",
        line_of: "[agent",
        cols_at: &[],
        mentions: &["syntax"],
    },
    Case {
        what: "unknown key",
        from: "batch_rows = 5000",
        to: "batch_rowz = 5000",
        line_of: "batch_rowz",
        cols_at: &["batch_rowz", "5000"],
        mentions: &["batch_rowz"],
    },
    Case {
        what: "wrong type",
        from: "batch_rows = 5000",
        to: "batch_rows = \"5000\"",
        line_of: "batch_rows",
        cols_at: &["batch_rows", "\"5000\""],
        mentions: &["pipeline.batch_rows"],
    },
    Case {
        what: "missing include",
        from: "include = [\"logs/*.jsonl\"]\n",
        to: "",
        line_of: "[[sources]]",
        cols_at: &[],
        mentions: &["include"],
    },
    Case {
        what: "empty include list",
        from: "include = [\"logs/*.jsonl\"]",
        to: "include = []",
        line_of: "include = []",
        cols_at: &["include", "[]"],
        mentions: &["include"],
    },
    Case {
        what: "bad glob",
        from: "include = [\"logs/*.jsonl\"]",
        to: "include = [\"logs/[.jsonl\"]",
        line_of: "logs/[.jsonl",
        cols_at: &["include", "[\"logs", "\"logs"],
        mentions: &["include", "logs/[.jsonl"],
    },
    Case {
        what: "unknown URL scheme",
        from: "url = \"sqlite://logbelt.db\"",
        to: "url = \"mysql://db.example/logs\"",
        line_of: "mysql://",
        cols_at: &["url", "\"mysql"],
        mentions: &["database.url", "mysql://"],
    },
    Case {
        what: "missing ${VAR}",
        from: "url = \"sqlite://logbelt.db\"",
        to: "url = \"sqlite://${LOGBELT_TEST_SURELY_UNSET_VARIABLE}/logbelt.db\"",
        line_of: "LOGBELT_TEST_SURELY_UNSET_VARIABLE",
        cols_at: &["url", "\"sqlite"],
        mentions: &["database.url", UNSET_VAR],
    },
];

/// 1-based (line, columns) where `case` expects its error.
fn expected_location(text: &str, case: &Case) -> (usize, Vec<usize>, usize) {
    let (idx, line) = text
        .lines()
        .enumerate()
        .find(|(_, l)| l.contains(case.line_of))
        .unwrap_or_else(|| panic!("{}: no line contains {:?}", case.what, case.line_of));
    let cols = case
        .cols_at
        .iter()
        .map(|m| {
            line.find(m)
                .unwrap_or_else(|| panic!("{}: {m:?} not on line {line:?}", case.what))
                + 1
        })
        .collect();
    (idx + 1, cols, line.chars().count())
}

/// Parses `<path>:<line>:<col>:` at the start of `message` (after an optional `logbelt: `).
fn location(message: &str, path: &Path) -> Option<(usize, usize)> {
    let message = message.strip_prefix("logbelt: ").unwrap_or(message);
    let rest = message.strip_prefix(&format!("{}:", path.display()))?;
    let mut parts = rest.splitn(3, ':');
    let line = parts.next()?.parse().ok()?;
    let col = parts.next()?.parse().ok()?;
    Some((line, col))
}

#[test]
fn validate_rejects_each_bad_config_with_location_and_key() {
    let mut failures = Vec::new();
    for case in CASES {
        assert!(
            GOOD.contains(case.from),
            "{}: {:?} not in GOOD",
            case.what,
            case.from
        );
        let text = GOOD.replacen(case.from, case.to, 1);
        let (dir, path) = config_dir(&text);
        let (code, stderr) = logbelt(dir.path(), &["validate"], &path);
        let (want_line, want_cols, line_len) = expected_location(&text, case);
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        let mut problems = Vec::new();
        if code != Some(2) {
            problems.push(format!("exit code {code:?}, expected 2"));
        }
        if lines.len() != 1 {
            problems.push(format!("{} lines on stderr, expected 1", lines.len()));
        }
        let message = lines.first().copied().unwrap_or("");
        match location(message, &path) {
            None => problems.push(format!("no {}:LINE:COL: prefix", path.display())),
            Some((line, col)) => {
                if line != want_line {
                    problems.push(format!("line {line}, expected {want_line}"));
                }
                let col_ok = if want_cols.is_empty() {
                    (1..=line_len + 1).contains(&col)
                } else {
                    want_cols.contains(&col)
                };
                if !col_ok {
                    problems.push(format!("column {col}, expected one of {want_cols:?}"));
                }
            }
        }
        for m in case.mentions {
            if !message.to_lowercase().contains(&m.to_lowercase()) {
                problems.push(format!("does not mention {m:?}"));
            }
        }
        if !problems.is_empty() {
            failures.push(format!(
                "{}: {}\n    stderr: {stderr:?}",
                case.what,
                problems.join("; ")
            ));
        }
    }
    assert!(failures.is_empty(), "bad configs:\n{}", failures.join("\n"));
}

#[test]
fn validate_accepts_a_good_config() {
    let (dir, path) = config_dir(GOOD);
    let (code, stderr) = logbelt(dir.path(), &["validate"], &path);
    assert_eq!(code, Some(0), "stderr: {stderr}");
}

#[test]
fn validate_does_not_create_the_sqlite_database() {
    let (dir, path) = config_dir(GOOD);
    let (code, stderr) = logbelt(dir.path(), &["validate"], &path);
    assert_eq!(code, Some(0), "stderr: {stderr}");
    assert!(
        !dir.path().join("logbelt.db").exists(),
        "validate created the database file"
    );
}

#[test]
fn run_with_a_bad_config_exits_2() {
    for case in CASES {
        let text = GOOD.replacen(case.from, case.to, 1);
        let (dir, path) = config_dir(&text);
        let (code, stderr) = logbelt(dir.path(), &["run"], &path);
        assert_eq!(
            code,
            Some(2),
            "{}: run exited {code:?}; stderr: {stderr}",
            case.what
        );
        assert!(
            stderr.contains(&format!("{}:", path.display())),
            "{}: the error does not name the file: {stderr}",
            case.what
        );
        assert!(
            !dir.path().join("logbelt.db").exists(),
            "{}: run created the database despite the bad config",
            case.what
        );
    }
}

#[test]
fn run_once_with_a_bad_config_exits_2() {
    let text = GOOD.replacen("batch_rows = 5000", "batch_rows = 0", 1);
    let (dir, path) = config_dir(&text);
    let (code, stderr) = logbelt(dir.path(), &["run", "--once"], &path);
    assert_eq!(code, Some(2), "stderr: {stderr}");
    assert!(stderr.contains("pipeline.batch_rows"), "stderr: {stderr}");
}

#[test]
fn missing_config_file_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nope.toml");
    for cmd in [&["validate"][..], &["run", "--once"][..]] {
        let (code, stderr) = logbelt(dir.path(), cmd, &path);
        assert_eq!(code, Some(2), "{cmd:?}: stderr: {stderr}");
        assert!(stderr.contains("nope.toml"), "{cmd:?}: stderr: {stderr}");
    }
}

const UNREACHABLE_PG: &str = "postgres://u:secret@127.0.0.1:1/x";

#[test]
fn validate_with_unreachable_postgres_exits_2_without_the_password() {
    let text = GOOD.replacen(
        "url = \"sqlite://logbelt.db\"",
        &format!("url = \"{UNREACHABLE_PG}\""),
        1,
    );
    let (dir, path) = config_dir(&text);
    let (code, stderr) = logbelt(dir.path(), &["validate"], &path);
    assert_eq!(code, Some(2), "stderr: {stderr}");
    assert!(!stderr.contains("secret"), "the password leaked: {stderr}");
    assert!(
        stderr.contains("database.url"),
        "the key is not named: {stderr}"
    );
    assert!(
        stderr.contains("127.0.0.1"),
        "the server is not named: {stderr}"
    );
}

#[test]
fn run_with_unreachable_postgres_exits_1_without_the_password() {
    let text = GOOD.replacen(
        "url = \"sqlite://logbelt.db\"",
        &format!("url = \"{UNREACHABLE_PG}\""),
        1,
    );
    let (dir, path) = config_dir(&text);
    let (code, stderr) = logbelt(dir.path(), &["run"], &path);
    assert_eq!(code, Some(1), "a runtime failure exits 1; stderr: {stderr}");
    assert!(!stderr.contains("secret"), "the password leaked: {stderr}");
}

#[test]
fn relative_paths_are_relative_to_the_config_file_not_the_working_directory() {
    let (dir, path) = config_dir(GOOD);
    std::fs::write(dir.path().join("logs/a.jsonl"), "{\"k\":1}\n{\"k\":2}\n").unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    std::fs::create_dir(elsewhere.path().join("logs")).unwrap();
    std::fs::write(elsewhere.path().join("logs/decoy.jsonl"), "{\"decoy\":1}\n").unwrap();
    let mut d = Daemon::spawn_with_cwd(
        elsewhere.path(),
        dir.path(),
        &[
            "run".as_ref(),
            "--once".as_ref(),
            "--config".as_ref(),
            path.as_os_str(),
        ],
    );
    let status = d.wait_exit(DEADLINE);
    assert_eq!(status.code(), Some(0), "stderr: {}", d.stderr());
    assert!(
        !elsewhere.path().join("logbelt.db").exists(),
        "the database was created in the working directory"
    );
    let db = dir.path().join("logbelt.db");
    assert!(db.exists(), "no database next to the config file");
    let mut conn = diesel::sqlite::SqliteConnection::establish(&db.to_string_lossy()).unwrap();
    let rows: Vec<crate::util::Count> = diesel::sql_query("SELECT count(*) AS n FROM log_events")
        .load(&mut conn)
        .unwrap();
    assert_eq!(rows[0].n, 2, "rows from the config folder's logs/ only");
}

#[test]
fn env_vars_in_the_config_are_expanded() {
    let text = GOOD.replacen(
        "url = \"sqlite://logbelt.db\"",
        "url = \"sqlite://${LOGBELT_TEST_DB_FILE}\"",
        1,
    );
    let (dir, path) = config_dir(&text);
    let stderr_path = dir.path().join("stderr");
    let mut cmd = crate::util::logbelt_command(dir.path(), &stderr_path);
    cmd.env("LOGBELT_TEST_DB_FILE", "expanded.db")
        .args(["run", "--once", "--config"])
        .arg(&path);
    let mut d = Daemon::from_command(cmd, &stderr_path);
    let status = d.wait_exit(DEADLINE);
    let stderr = d.stderr();
    assert_eq!(status.code(), Some(0), "stderr: {stderr}");
    assert!(
        dir.path().join("expanded.db").exists(),
        "the database is not at the expanded path; stderr: {stderr}"
    );
}
