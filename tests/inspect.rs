//! `logbelt status` and `logbelt query`, through the binary, on a known dataset ingested with
//! `run --once`: exact positions, sizes, lag and totals; every query filter, the order (oldest
//! first, NULL timestamps oldest), `--limit` (the most recent N, still oldest first), the JSON
//! forms; `--grep` values that would be SQL or LIKE syntax if they were not bound and escaped;
//! errors and exit codes; and that neither command writes.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use chrono::{Duration as ChronoDuration, SecondsFormat, Utc};
use serde_json::{json, Value};

use crate::util::{
    append_lines, logbelt_command, Backend, ConfigBuilder, SourceSpec, TestEnv, DEADLINE, HOST,
};

const OTHER_HOST: &str = "other-host";

/// The value that would break an unescaped, unbound query.
const TRICKY: &str = r#"it's 100%_done"; DROP TABLE log_events; --"#;

// ---------------------------------------------------------------------------------------------
// Running the commands
// ---------------------------------------------------------------------------------------------

pub(crate) struct Output {
    pub(crate) code: Option<i32>,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

static RUNS: AtomicUsize = AtomicUsize::new(0);

/// Runs `logbelt ARGS --config <env's config>`; waits (under the deadline) and returns the exit
/// code, stdout and stderr.
pub(crate) fn logbelt(env: &TestEnv, args: &[&str]) -> Output {
    logbelt_with(env, args, &[])
}

/// [`logbelt`] with more environment variables.
pub(crate) fn logbelt_with(env: &TestEnv, args: &[&str], vars: &[(&str, &str)]) -> Output {
    let n = RUNS.fetch_add(1, Ordering::SeqCst);
    let dir = env.dir.path();
    let out_path = dir.join(format!("inspect-{n}.stdout"));
    let err_path = dir.join(format!("inspect-{n}.stderr"));
    let mut cmd = logbelt_command(dir, &err_path);
    cmd.args(args)
        .arg("--config")
        .arg(env.config_path())
        .envs(vars.iter().copied())
        .stdout(File::create(&out_path).unwrap());
    let mut child = cmd.spawn().expect("spawn logbelt");
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!("logbelt {args:?} did not exit within {DEADLINE:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    Output {
        code: status.code(),
        stdout: std::fs::read_to_string(&out_path).unwrap(),
        stderr: std::fs::read_to_string(&err_path).unwrap(),
    }
}

/// `logbelt ARGS`, asserting exit 0; its stdout.
pub(crate) fn ok(env: &TestEnv, args: &[&str]) -> String {
    let out = logbelt(env, args);
    assert_eq!(
        out.code,
        Some(0),
        "logbelt {args:?} exited {:?}\n--- stderr ---\n{}",
        out.code,
        out.stderr
    );
    out.stdout
}

/// `logbelt query --json ARGS`: each line parsed.
pub(crate) fn query_json(env: &TestEnv, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["query", "--json"];
    all.extend_from_slice(args);
    ok(env, &all)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// The `k` of each event `query --json ARGS` prints, in order.
fn keys(env: &TestEnv, args: &[&str]) -> Vec<String> {
    query_json(env, args)
        .iter()
        .map(|e| e["fields"]["k"].as_str().unwrap().to_owned())
        .collect()
}

fn status_json(env: &TestEnv) -> Value {
    let text = ok(env, &["status", "--json"]);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}):\n{text}"))
}

// ---------------------------------------------------------------------------------------------
// The dataset
// ---------------------------------------------------------------------------------------------

/// One line written, and what its row must hold.
#[derive(Debug, Clone)]
struct Line {
    /// `fields.k`: names the line in assertions.
    k: &'static str,
    path: PathBuf,
    offset: i64,
    source: &'static str,
    host: &'static str,
    /// As stored: RFC 3339 UTC with microseconds.
    ts: Option<String>,
    level: Option<&'static str>,
    message: Option<String>,
    /// The line as written.
    text: String,
}

struct Dataset {
    lines: Vec<Line>,
    /// The non-JSON line's file.
    dead_path: PathBuf,
}

impl Dataset {
    fn get(&self, k: &str) -> &Line {
        self.lines.iter().find(|l| l.k == k).unwrap()
    }
}

/// Every key in the order `query` must print them: NULL timestamp first, then by time (and
/// file order for equal times).
const ALL: &[&str] = &[
    "a4", "a1", "w1", "a2", "o1", "a3", "w2", "a5", "a6", "a7", "a8", "a9", "a10", "a11", "a12",
    "a13", "r1", "r2", "r3",
];

/// The config of this host: `app` over `logs/app-*.jsonl`, `web` over `logs/web-*.jsonl`.
fn config_this_host(env: &TestEnv) -> ConfigBuilder {
    let mut cfg = env.config();
    cfg.sources[0].include = vec!["logs/app-*.jsonl".into()];
    cfg.sources.push(SourceSpec {
        name: "web".into(),
        include: vec!["logs/web-*.jsonl".into()],
        exclude: vec![],
        start_at: None,
    });
    cfg
}

/// Writes the dataset, ingests `logs/other-*.jsonl` as host `other-host` and the rest as
/// `test-host` (`run --once` each), and leaves this host's config in place.
fn ingest(env: &TestEnv) -> Dataset {
    let t = |hms: &str| format!("2024-03-01T{hms}Z");
    let stored = |hms: &str| format!("2024-03-01T{hms}.000000Z");
    let now = Utc::now();
    let recent = |minutes: i64| {
        (now - ChronoDuration::minutes(minutes)).to_rfc3339_opts(SecondsFormat::Micros, true)
    };
    // (k, file, source, host, ts as written, ts as stored, level as written, message, extra)
    type Spec = (
        &'static str,
        &'static str,
        &'static str,
        &'static str,
        Option<String>,
        Option<String>,
        Option<&'static str>,
        Option<&'static str>,
        Value,
    );
    let mut specs: Vec<Spec> = Vec::new();
    let mut app = |k, ts: Option<&str>, level, msg, extra| {
        specs.push((
            k,
            "app-1.jsonl",
            "app",
            HOST,
            ts.map(t),
            ts.map(stored),
            level,
            msg,
            extra,
        ))
    };
    app(
        "a1",
        Some("10:00:00"),
        Some("INFO"),
        Some("service started"),
        json!({"port": 8080}),
    );
    app(
        "a2",
        Some("10:01:00"),
        Some("WARN"),
        Some("disk 91% full"),
        json!({"disk": "sda_1"}),
    );
    app(
        "a3",
        Some("10:02:00"),
        Some("ERROR"),
        Some("payment failed"),
        json!({"order": {"id": "A_1"}}),
    );
    app(
        "a4",
        None,
        Some("error"),
        Some("no timestamp here"),
        json!({}),
    );
    app(
        "a5",
        Some("10:03:00"),
        Some("Debug"),
        Some("cache miss"),
        json!({"key": "user:42"}),
    );
    app(
        "a6",
        Some("10:04:00"),
        Some("info"),
        Some(TRICKY),
        json!({}),
    );
    // Near misses: what `_`, `%` or a lost quote would also match.
    app(
        "a7",
        Some("10:05:00"),
        Some("info"),
        Some(r#"it's 100%Xdone"; DROP TABLE log_events; --"#),
        json!({}),
    );
    app(
        "a8",
        Some("10:05:00"),
        Some("info"),
        Some(r#"its 100%_done"; DROP TABLE log_events; --"#),
        json!({}),
    );
    app(
        "a9",
        Some("10:06:00"),
        Some("info"),
        Some(r#"it's 100 percent_done"; DROP TABLE log_events; --"#),
        json!({}),
    );
    // The same text in other case: grep ignores case.
    app(
        "a10",
        Some("10:07:00"),
        Some("info"),
        Some(r#"IT'S 100%_DONE"; drop table LOG_EVENTS; --"#),
        json!({}),
    );
    app(
        "a11",
        Some("10:08:00"),
        Some("info"),
        None,
        json!({"event": "heartbeat"}),
    );
    app(
        "a12",
        Some("10:09:00"),
        Some("info"),
        Some(r"C:\temp\x"),
        json!({}),
    );
    app(
        "a13",
        Some("10:10:00"),
        Some("info"),
        Some("C:temp"),
        json!({}),
    );
    specs.push((
        "w1",
        "web-1.jsonl",
        "web",
        HOST,
        Some(t("10:00:30")),
        Some(stored("10:00:30")),
        Some("info"),
        Some("GET /index"),
        json!({}),
    ));
    specs.push((
        "w2",
        "web-1.jsonl",
        "web",
        HOST,
        Some(t("10:02:30")),
        Some(stored("10:02:30")),
        Some("error"),
        Some("upstream timeout"),
        json!({}),
    ));
    specs.push((
        "o1",
        "other-1.jsonl",
        "app",
        OTHER_HOST,
        Some(t("10:01:30")),
        Some(stored("10:01:30")),
        Some("warn"),
        Some("remote warning"),
        json!({}),
    ));
    for (k, minutes, level, msg) in [
        ("r1", 120, "info", "two hours ago"),
        ("r2", 30, "warn", "half an hour ago"),
        ("r3", 1, "error", "a minute ago"),
    ] {
        let ts = recent(minutes);
        specs.push((
            k,
            "app-2.jsonl",
            "app",
            HOST,
            Some(ts.clone()),
            Some(ts),
            Some(level),
            Some(msg),
            json!({}),
        ));
    }

    let mut lines = Vec::new();
    for (k, file, source, host, ts, stored_ts, level, msg, extra) in specs {
        let mut obj = serde_json::Map::new();
        obj.insert("k".into(), json!(k));
        if let Some(ts) = &ts {
            obj.insert("ts".into(), json!(ts));
        }
        if let Some(level) = level {
            obj.insert("level".into(), json!(level));
        }
        if let Some(msg) = msg {
            obj.insert("msg".into(), json!(msg));
        }
        for (key, v) in extra.as_object().unwrap() {
            obj.insert(key.clone(), v.clone());
        }
        let text = Value::Object(obj).to_string();
        let path = env.log(file);
        let offset = append_lines(&path, std::slice::from_ref(&text))[0];
        lines.push(Line {
            k,
            path,
            offset,
            source,
            host,
            ts: stored_ts,
            level: level.map(|l| match l {
                "INFO" => "info",
                "WARN" => "warn",
                "ERROR" => "error",
                "Debug" => "debug",
                l => l,
            }),
            message: msg.map(str::to_owned),
            text,
        });
    }
    let dead_path = env.log("app-1.jsonl");
    append_lines(&dead_path, &["this is not json".to_owned()]);

    // The other host first: only its file.
    let mut other = env.config();
    other.host = OTHER_HOST.into();
    other.sources[0].include = vec!["logs/other-*.jsonl".into()];
    other.write(env);
    env.run_once();
    config_this_host(env).write(env);
    env.run_once();
    assert_eq!(env.db.events_count(), ALL.len() as i64, "events stored");
    assert_eq!(env.db.dead_count(), 1, "dead letters stored");
    Dataset { lines, dead_path }
}

fn len(path: &Path) -> i64 {
    std::fs::metadata(path).unwrap().len() as i64
}

// ---------------------------------------------------------------------------------------------
// status
// ---------------------------------------------------------------------------------------------

both_backends!(status_reports_positions_sizes_lag_and_totals);
fn status_reports_positions_sizes_lag_and_totals(b: Backend) {
    let Some(env) = TestEnv::new(b) else { return };
    let data = ingest(&env);
    let (app1, app2, web1, other1) = (
        env.log("app-1.jsonl"),
        env.log("app-2.jsonl"),
        env.log("web-1.jsonl"),
        env.log("other-1.jsonl"),
    );

    let s = status_json(&env);
    assert_eq!(s["host"], HOST);
    assert_eq!(
        s["totals"],
        json!({"files": 4, "log_events": ALL.len(), "dead_letters": 1})
    );
    let files = s["files"].as_array().unwrap();
    // This host's files first (by source, path), then the other host's.
    let expected = [
        (&app1, "app", HOST, true),
        (&app2, "app", HOST, true),
        (&web1, "web", HOST, true),
        (&other1, "app", OTHER_HOST, false),
    ];
    assert_eq!(files.len(), expected.len(), "{s:#}");
    for (f, (path, source, host, mine)) in files.iter().zip(expected) {
        let keys: Vec<&str> = f.as_object().unwrap().keys().map(String::as_str).collect();
        let mut want_keys = vec![
            "committed_offset",
            "host",
            "id",
            "lag",
            "path",
            "size",
            "source",
            "this_host",
            "updated_at",
        ];
        want_keys.sort();
        assert_eq!(keys, want_keys, "{f}");
        assert_eq!(f["path"], path.to_str().unwrap(), "{f}");
        assert_eq!(f["source"], source, "{f}");
        assert_eq!(f["host"], host, "{f}");
        assert_eq!(f["this_host"], mine, "{f}");
        assert_eq!(f["committed_offset"], len(path), "{f}");
        if mine {
            assert_eq!(f["size"], len(path), "{f}");
            assert_eq!(f["lag"], 0, "{f}");
        } else {
            // Another host's file: its size here says nothing.
            assert_eq!(f["size"], Value::Null, "{f}");
            assert_eq!(f["lag"], Value::Null, "{f}");
        }
        let updated = f["updated_at"].as_str().unwrap();
        let updated = chrono::DateTime::parse_from_rfc3339(updated).unwrap();
        let age = Utc::now() - updated.with_timezone(&Utc);
        assert!(age < ChronoDuration::minutes(10), "{f}");
        // The id is the file_id of the file's events.
        let events = query_json(&env, &["--host", host, "--limit", "1000"]);
        let of_file: Vec<&Value> = events.iter().filter(|e| e["file_id"] == f["id"]).collect();
        let want = data.lines.iter().filter(|l| l.path == *path).count();
        assert_eq!(of_file.len(), want, "events of {f}");
    }
    assert!(data.dead_path == app1);

    // The table for people: header, every path in full, columns aligned.
    let text = ok(&env, &["status"]);
    let lines: Vec<&str> = text.lines().collect();
    let header_at = lines
        .iter()
        .position(|l| l.contains("SOURCE"))
        .unwrap_or_else(|| panic!("no header:\n{text}"));
    let header = lines[header_at];
    let cols = [
        "SOURCE",
        "HOST",
        "COMMITTED",
        "SIZE",
        "LAG",
        "LAST COMMIT",
        "PATH",
    ];
    let mut last = 0;
    for c in cols {
        let at = header
            .find(c)
            .unwrap_or_else(|| panic!("{c} not in {header:?}"));
        assert!(at >= last, "{c} out of order in {header:?}");
        last = at;
    }
    let path_col = header.find("PATH").unwrap();
    let source_col = header.find("SOURCE").unwrap();
    let rows = &lines[header_at + 1..header_at + 1 + expected.len()];
    for (row, (path, source, host, mine)) in rows.iter().zip(expected) {
        let path = path.to_str().unwrap();
        assert_eq!(&row[path_col..], path, "path column of {row:?}\n{text}");
        assert_eq!(
            &row[source_col..source_col + source.len()],
            source,
            "{row:?}"
        );
        assert!(row.contains(host), "{row:?}");
        assert_eq!(row.starts_with('*'), mine, "this-host mark of {row:?}");
        let lag_size: Vec<&str> = row[..path_col].split_whitespace().collect();
        if mine {
            assert!(row.contains(" 0 B "), "lag 0 in {row:?}");
        } else {
            assert_eq!(lag_size.iter().filter(|c| **c == "-").count(), 2, "{row:?}");
        }
    }
    assert!(
        text.contains(&format!(
            "4 files (3 on this host), {} events, 1 dead letter",
            ALL.len()
        )),
        "{text}"
    );

    // A line appended and not ingested yet: that is the lag.
    let line = r#"{"k":"late","msg":"not ingested yet"}"#;
    let before = len(&app2);
    append_lines(&app2, &[line.to_owned()]);
    let s = status_json(&env);
    let f = s["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == app2.to_str().unwrap())
        .unwrap();
    assert_eq!(f["committed_offset"], before);
    assert_eq!(f["size"], before + line.len() as i64 + 1);
    assert_eq!(f["lag"], line.len() as i64 + 1);
    let text = ok(&env, &["status"]);
    let row = text.lines().find(|l| l.ends_with("app-2.jsonl")).unwrap();
    assert!(row.contains(&format!(" {} B ", line.len() + 1)), "{row:?}");
}

// ---------------------------------------------------------------------------------------------
// query
// ---------------------------------------------------------------------------------------------

both_backends!(query_filters_order_and_limit);
fn query_filters_order_and_limit(b: Backend) {
    let Some(env) = TestEnv::new(b) else { return };
    let data = ingest(&env);
    let s = status_json(&env);
    let file_ids: BTreeMap<String, i64> = s["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap().to_owned(),
                f["id"].as_i64().unwrap(),
            )
        })
        .collect();

    // Everything, oldest first (NULL ts first), every key of every event exact.
    let all = query_json(&env, &[]);
    let got: Vec<&str> = all
        .iter()
        .map(|e| e["fields"]["k"].as_str().unwrap())
        .collect();
    assert_eq!(got, ALL);
    let out = ok(&env, &["query", "--json"]);
    for (raw, e) in out.lines().zip(&all) {
        assert!(raw.starts_with(r#"{"ts":"#), "{raw}");
        let keys: Vec<&str> = e.as_object().unwrap().keys().map(String::as_str).collect();
        let mut want = vec![
            "fields",
            "file_id",
            "file_offset",
            "host",
            "id",
            "level",
            "message",
            "source",
            "ts",
        ];
        want.sort();
        assert_eq!(keys, want, "{raw}");
        let line = data.get(e["fields"]["k"].as_str().unwrap());
        assert_eq!(e["ts"], json!(line.ts), "{raw}");
        assert_eq!(e["level"], json!(line.level), "{raw}");
        assert_eq!(e["message"], json!(line.message), "{raw}");
        assert_eq!(e["source"], line.source, "{raw}");
        assert_eq!(e["host"], line.host, "{raw}");
        assert_eq!(e["file_offset"], line.offset, "{raw}");
        assert_eq!(e["file_id"], file_ids[line.path.to_str().unwrap()], "{raw}");
        // The object itself, equal to the line written.
        assert!(e["fields"].is_object(), "{raw}");
        let written: Value = serde_json::from_str(&line.text).unwrap();
        assert_eq!(e["fields"], written, "{raw}");
    }

    // Each filter.
    assert_eq!(keys(&env, &["--level", "error"]), ["a4", "a3", "w2", "r3"]);
    assert_eq!(keys(&env, &["--level", "ERROR"]), ["a4", "a3", "w2", "r3"]);
    assert_eq!(
        keys(&env, &["--level", "WARN,Error"]),
        ["a4", "a2", "o1", "a3", "w2", "r2", "r3"]
    );
    assert_eq!(
        keys(&env, &["--level", "debug", "--level", "warn"]),
        ["a2", "o1", "a5", "r2"]
    );
    assert!(keys(&env, &["--level", "fatal"]).is_empty());
    assert_eq!(keys(&env, &["--source", "web"]), ["w1", "w2"]);
    assert!(keys(&env, &["--source", "we"]).is_empty());
    assert_eq!(keys(&env, &["--host", OTHER_HOST]), ["o1"]);
    let this_host: Vec<&str> = ALL.iter().copied().filter(|k| *k != "o1").collect();
    assert_eq!(keys(&env, &["--host", HOST]), this_host);
    // since ≤ ts < until; no timestamp never matches a time filter.
    let window = ["a3", "w2", "a5", "a6"];
    assert_eq!(
        keys(
            &env,
            &[
                "--since",
                "2024-03-01T10:02:00Z",
                "--until",
                "2024-03-01T10:05:00Z"
            ]
        ),
        window
    );
    assert_eq!(
        keys(
            &env,
            &[
                "--since",
                "2024-03-01T11:02:00+01:00",
                "--until",
                "2024-03-01T11:05:00+01:00"
            ]
        ),
        window
    );
    assert_eq!(keys(&env, &["--since", "1h"]), ["r2", "r3"]);
    assert_eq!(
        keys(&env, &["--since", "3h", "--until", "10m"]),
        ["r1", "r2"]
    );
    assert_eq!(
        keys(&env, &["--since", "90m", "--until", "0s"]),
        ["r2", "r3"]
    );
    let until_1h: Vec<&str> = ALL
        .iter()
        .copied()
        .filter(|k| !["a4", "r2", "r3"].contains(k))
        .collect();
    assert_eq!(keys(&env, &["--until", "1h"]), until_1h);
    // Combined.
    assert_eq!(
        keys(
            &env,
            &[
                "--source",
                "app",
                "--level",
                "info",
                "--grep",
                "done",
                "--since",
                "2024-03-01T10:05:00Z"
            ]
        ),
        ["a7", "a8", "a9", "a10"]
    );

    // --limit N: the N most recent matches, oldest first.
    assert_eq!(keys(&env, &["--limit", "3"]), ["r1", "r2", "r3"]);
    assert_eq!(
        keys(&env, &["--level", "info", "--limit", "2"]),
        ["a13", "r1"]
    );
    assert_eq!(keys(&env, &["--level", "error", "--limit", "1"]), ["r3"]);
    assert_eq!(
        keys(&env, &["--level", "error", "--limit", "4"]),
        ["a4", "a3", "w2", "r3"]
    );
    // The event without a timestamp is the oldest: the first to go.
    assert_eq!(
        keys(&env, &["--level", "error", "--limit", "3"]),
        ["a3", "w2", "r3"]
    );
    assert_eq!(
        keys(&env, &["--level", "warn", "--limit", "100"]),
        ["a2", "o1", "r2"]
    );
    // The default limit is 100: more events than that show the last 100.
    let many: Vec<String> = (0..150)
        .map(|i| format!(r#"{{"k":"m{i}","ts":"2024-03-02T00:00:{:02}.{i:03}Z","level":"trace","msg":"many {i}"}}"#, i % 60))
        .collect();
    // Sorted by ts: the 150 lines are written in time order.
    let mut sorted = many.clone();
    sorted.sort_by_key(|l| {
        serde_json::from_str::<Value>(l).unwrap()["ts"]
            .as_str()
            .unwrap()
            .to_owned()
    });
    append_lines(&env.log("app-3.jsonl"), &sorted);
    env.run_once();
    let last100: Vec<String> = sorted[50..]
        .iter()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["k"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(keys(&env, &["--level", "trace"]), last100);
    let human = logbelt(&env, &["query", "--level", "trace", "--limit", "10"]);
    assert_eq!(human.code, Some(0), "{}", human.stderr);
    assert_eq!(human.stdout.lines().count(), 10);
    assert!(human.stderr.contains("raise --limit"), "{}", human.stderr);
}

both_backends!(query_human_output_is_aligned);
fn query_human_output_is_aligned(b: Backend) {
    let Some(env) = TestEnv::new(b) else { return };
    let data = ingest(&env);
    let out = logbelt(&env, &["query"]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), ALL.len(), "{}", out.stdout);
    // ts (27 characters, or `-`), level (as wide as `error`), source (as wide as `app`), message.
    let (level_at, source_at, message_at) = (27 + 2, 27 + 2 + 5 + 2, 27 + 2 + 5 + 2 + 3 + 2);
    for (row, k) in lines.iter().zip(ALL) {
        let line = data.get(k);
        assert_eq!(
            row[..27].trim_end(),
            line.ts.as_deref().unwrap_or("-"),
            "{row:?}"
        );
        assert_eq!(&row[27..level_at], "  ", "{row:?}");
        assert_eq!(
            row[level_at..source_at].trim_end(),
            line.level.unwrap_or("-"),
            "{row:?}"
        );
        assert_eq!(
            row[source_at..message_at].trim_end(),
            line.source,
            "{row:?}"
        );
        match &line.message {
            Some(m) => assert_eq!(&row[message_at..], m, "{row:?}"),
            // No message: the whole object.
            None => {
                let shown: Value = serde_json::from_str(&row[message_at..]).unwrap();
                assert_eq!(shown["event"], "heartbeat", "{row:?}");
            }
        }
    }
    // Nothing matches: no output, a note on stderr, exit 0.
    let none = logbelt(&env, &["query", "--grep", "no such text anywhere"]);
    assert_eq!(none.code, Some(0), "{}", none.stderr);
    assert_eq!(none.stdout, "");
    assert!(
        none.stderr.contains("no matching events"),
        "{}",
        none.stderr
    );
}

both_backends!(query_grep_is_literal_case_insensitive_and_bound);
fn query_grep_is_literal_case_insensitive_and_bound(b: Backend) {
    let Some(env) = TestEnv::new(b) else { return };
    ingest(&env);
    // Exactly the lines that contain it (ignoring case); `_`, `%`, `'`, `"` and `--` are text.
    assert_eq!(keys(&env, &["--grep", TRICKY]), ["a6", "a10"]);
    assert_eq!(
        keys(&env, &["--grep", "%"]),
        ["a2", "a6", "a7", "a8", "a10"]
    );
    // (`log_events` in the near misses has one too.)
    assert_eq!(
        keys(&env, &["--grep", "_"]),
        ["a2", "a3", "a6", "a7", "a8", "a9", "a10"]
    );
    assert_eq!(keys(&env, &["--grep", "100%_"]), ["a6", "a8", "a10"]);
    assert_eq!(keys(&env, &["--grep", "'"]), ["a6", "a7", "a9", "a10"]);
    assert_eq!(
        keys(&env, &["--grep", "'; DROP TABLE log_events; --"]),
        Vec::<String>::new()
    );
    // Backslashes are text too, also at the end.
    assert_eq!(keys(&env, &["--grep", r"C:\temp"]), ["a12"]);
    assert_eq!(keys(&env, &["--grep", r"temp\"]), ["a12"]);
    // The object's text is searched too: values and keys not in the message.
    assert_eq!(keys(&env, &["--grep", "HEARTBEAT"]), ["a11"]);
    assert_eq!(keys(&env, &["--grep", "SDA_1"]), ["a2"]);
    assert_eq!(keys(&env, &["--grep", "a_1"]), ["a2", "a3"]);
    // All the tables are still there, untouched.
    assert_eq!(env.db.events_count(), ALL.len() as i64);
    assert_eq!(env.db.dead_count(), 1);
    assert_eq!(env.db.files().len(), 4);
    // Other values with quotes: bound, not SQL.
    assert!(keys(&env, &["--source", "app' OR '1'='1"]).is_empty());
    assert!(keys(&env, &["--host", "x\" OR 1=1 --"]).is_empty());
    assert!(keys(&env, &["--level", "info') OR ('1'='1"]).is_empty());
    assert_eq!(env.db.events_count(), ALL.len() as i64);
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

both_backends!(status_and_query_before_the_first_run);
fn status_and_query_before_the_first_run(b: Backend) {
    let Some(env) = TestEnv::new(b) else { return };
    config_this_host(&env).write(&env);
    for cmd in [
        &["status"][..],
        &["status", "--json"],
        &["query"],
        &["query", "--json"],
    ] {
        let out = logbelt(&env, cmd);
        assert_eq!(out.code, Some(1), "{cmd:?}: {}", out.stderr);
        assert_eq!(out.stdout, "", "{cmd:?}");
        assert_eq!(
            out.stderr.lines().count(),
            1,
            "{cmd:?}: one line: {}",
            out.stderr
        );
        match b {
            Backend::Sqlite => {
                let db = env.path("logbelt.db");
                assert!(
                    out.stderr.contains(&format!(
                        "database file {} does not exist yet: run `logbelt run` first",
                        db.display()
                    )),
                    "{cmd:?}: {}",
                    out.stderr
                );
                assert!(!db.exists(), "{cmd:?} created the database file");
            }
            Backend::Postgres => {
                assert!(
                    out.stderr.contains("has no logbelt tables yet")
                        && out.stderr.contains("run `logbelt run` first"),
                    "{cmd:?}: {}",
                    out.stderr
                );
                // Nothing was migrated.
                let tables = env.db.count(
                    "information_schema.tables WHERE table_schema = current_schema() \
                     AND table_name IN ('files', 'log_events', 'dead_letters', \
                     '__diesel_schema_migrations')",
                );
                assert_eq!(tables, 0, "{cmd:?} created tables");
            }
        }
    }
    if b == Backend::Sqlite {
        // A file that is a database without logbelt's tables.
        std::fs::write(env.path("logbelt.db"), b"").unwrap();
        let out = logbelt(&env, &["status"]);
        assert_eq!(out.code, Some(1), "{}", out.stderr);
        assert!(
            out.stderr.contains("has no logbelt tables yet"),
            "{}",
            out.stderr
        );
        assert_eq!(std::fs::metadata(env.path("logbelt.db")).unwrap().len(), 0);
    }
}

#[test]
fn bad_usage_exits_2() {
    let Some(env) = TestEnv::new(Backend::Sqlite) else {
        return;
    };
    config_this_host(&env).write(&env);
    for (args, says) in [
        (&["query", "--since", "yesterday"][..], "--since"),
        (&["query", "--until", "5"], "--until"),
        (&["query", "--since", "2024-03-01"], "RFC 3339"),
        (&["query", "--limit", "0"], "--limit"),
        (&["query", "--limit=-3"], "--limit"),
        (&["query", "--limit", "4294967295"], "at most 100000"),
        (
            &[
                "query",
                "--since",
                "2024-03-02T00:00:00Z",
                "--until",
                "2024-03-01T00:00:00Z",
            ],
            "is after --until",
        ),
        (&["query", "--level", ","], "--level"),
        (&["status", "--grep", "x"], "--grep"),
    ] {
        let out = logbelt(&env, args);
        assert_eq!(out.code, Some(2), "{args:?}: {}", out.stderr);
        assert!(out.stderr.contains(says), "{args:?}: {}", out.stderr);
    }
    // A bad config: exit 2, like `run`.
    std::fs::write(env.config_path(), "[database]\nurl = 5\n").unwrap();
    for cmd in ["status", "query"] {
        let out = logbelt(&env, &[cmd]);
        assert_eq!(out.code, Some(2), "{cmd}: {}", out.stderr);
        assert!(out.stderr.contains("database.url"), "{cmd}: {}", out.stderr);
    }
}

#[test]
fn postgres_password_is_never_printed() {
    let Some(env) = TestEnv::new(Backend::Sqlite) else {
        return;
    };
    let mut cfg = config_this_host(&env);
    // Nothing listens on port 1.
    cfg.url = "postgres://logbelt:hunter2secret@127.0.0.1:1/logs".into();
    cfg.write(&env);
    for cmd in [&["status"][..], &["query", "--json"]] {
        let out = logbelt(&env, cmd);
        assert_eq!(out.code, Some(1), "{cmd:?}: {}", out.stderr);
        assert!(
            !out.stderr.contains("hunter2secret"),
            "{cmd:?}: {}",
            out.stderr
        );
        assert!(
            out.stderr.contains("logbelt:***@127.0.0.1:1"),
            "{cmd:?}: {}",
            out.stderr
        );
    }
}

#[test]
fn status_and_query_never_write_sqlite() {
    let Some(env) = TestEnv::new(Backend::Sqlite) else {
        return;
    };
    ingest(&env);
    let read = |name: &str| std::fs::read(env.path(name)).unwrap_or_default();
    let before = (read("logbelt.db"), read("logbelt.db-wal"));
    ok(&env, &["status"]);
    ok(&env, &["status", "--json"]);
    ok(&env, &["query", "--grep", TRICKY]);
    ok(&env, &["query", "--json", "--since", "1h"]);
    let after = (read("logbelt.db"), read("logbelt.db-wal"));
    assert!(before == after, "the database or its WAL changed");
}
