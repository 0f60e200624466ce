//! Text formats (issue 16): real logs in `tests/data/formats` (their origin in its `README.md`),
//! one source per format, on both backends. Every line is stored once — an event with the
//! expected fields, level and time, or a dead letter naming the source and the format — and
//! `on_mismatch = "text"` stores the lines that do not fit as text events.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use std::io::Write;

use crate::util::{
    free_addr, scrape, toml_str, wait_endpoint, wait_until, write_config_with, Backend, DeadRow,
    EventRow, SourceSpec, TestEnv, DEADLINE,
};

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/formats")
        .join(name)
}

/// One source: its name, the file it reads in `logs/`, the sample copied there, and its format
/// keys.
pub(crate) struct Source {
    pub name: &'static str,
    pub file: &'static str,
    pub sample: PathBuf,
    pub keys: String,
}

impl Source {
    /// `name` reads `logs/<file>`, a copy of `sample`.
    pub(crate) fn new(name: &'static str, file: &'static str, sample: PathBuf, keys: &str) -> Self {
        Source {
            name,
            file,
            sample,
            keys: keys.to_owned(),
        }
    }
}

fn source(name: &'static str, file: &'static str, keys: &str) -> Source {
    Source::new(name, file, data(file), keys)
}

const PG_PATTERN: &str = r"^(?P<time>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} UTC) \[(?P<pid>\d+)\] (?P<level>[A-Z]+):  (?P<message>.*)$";

/// The PostgreSQL server log read with a regex: `keys` for its source.
fn pg_keys(on_mismatch: &str) -> String {
    format!(
        "format = \"regex\"\npattern = '{PG_PATTERN}'\n\
         timestamp_format = \"%Y-%m-%d %H:%M:%S%.3f UTC\"\non_mismatch = \"{on_mismatch}\"\n"
    )
}

/// Writes the config with `sources`, copies their samples (unless the test wrote the file in
/// `logs/` already), runs `logbelt run --once`.
pub(crate) fn run(env: &TestEnv, sources: &[Source]) {
    configure(env, sources, 5000);
    let stderr = env.run_once();
    assert!(!stderr.contains("panicked"), "logbelt panicked:\n{stderr}");
    env.db.assert_no_duplicates();
}

/// Writes the config with `sources` and `batch_rows`, and copies their samples.
pub(crate) fn configure(env: &TestEnv, sources: &[Source], batch_rows: u64) {
    let mut config = env.config();
    config.batch_rows = batch_rows;
    config.sources = sources
        .iter()
        .map(|s| SourceSpec {
            name: s.name.to_owned(),
            include: vec![format!("logs/{}", s.file)],
            exclude: vec![],
            start_at: None,
        })
        .collect();
    let mut toml = config.to_toml();
    for s in sources {
        // After `name` and `include`, the table's last keys (a `[sources.multiline]` table
        // must come last).
        let header = format!("name = \"{}\"\ninclude = [\"logs/{}\"]\n", s.name, s.file);
        assert!(toml.contains(&header), "{toml}");
        toml = toml.replacen(&header, &format!("{header}{}", s.keys), 1);
        if !env.log(s.file).exists() {
            std::fs::copy(&s.sample, env.log(s.file)).expect("copy a sample");
        }
    }
    std::fs::write(env.config_path(), toml).expect("write logbelt.toml");
}

/// The sample's lines, with the offset of each.
fn lines(file: &str) -> Vec<(i64, Vec<u8>)> {
    lines_at(&data(file))
}

/// The lines of the file at `path` (split on `\n` only), with the offset of each.
pub(crate) fn lines_at(path: &Path) -> Vec<(i64, Vec<u8>)> {
    let bytes = std::fs::read(path).expect("read a sample");
    let mut out = Vec::new();
    let mut offset = 0;
    for line in bytes.split_inclusive(|b| *b == b'\n') {
        let text = line
            .strip_suffix(b"\n")
            .expect("samples end with a newline");
        out.push((offset, text.to_vec()));
        offset += i64::try_from(line.len()).unwrap();
    }
    out
}

/// The events and dead letters of `source`.
pub(crate) fn rows_of(env: &TestEnv, source: &str) -> (Vec<EventRow>, Vec<DeadRow>) {
    let events = env
        .db
        .events()
        .into_iter()
        .filter(|e| e.source == source)
        .collect();
    let dead = env
        .db
        .dead_letters()
        .into_iter()
        .filter(|d| d.source == source)
        .collect();
    (events, dead)
}

/// Every line of `file` is one row of `source`: same offsets, nothing else.
fn every_line_once(file: &str, events: &[EventRow], dead: &[DeadRow]) {
    let want: HashSet<i64> = lines(file).iter().map(|(o, _)| *o).collect();
    let mut got: Vec<i64> = events.iter().map(|e| e.file_offset).collect();
    got.extend(dead.iter().map(|d| d.file_offset));
    let n = got.len();
    let got: HashSet<i64> = got.into_iter().collect();
    assert_eq!(n, got.len(), "{file}: an offset stored twice");
    assert_eq!(got, want, "{file}: every line once");
}

pub(crate) fn levels(events: &[EventRow]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for e in events {
        *m.entry(e.level.clone().unwrap_or_else(|| "-".into()))
            .or_insert(0) += 1;
    }
    m
}

pub(crate) fn counts(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
    pairs.iter().map(|(k, n)| ((*k).to_owned(), *n)).collect()
}

pub(crate) fn fields(e: &EventRow) -> serde_json::Value {
    serde_json::from_str(&e.fields).expect("fields is JSON")
}

fn at(events: &[EventRow], offset: i64) -> &EventRow {
    events
        .iter()
        .find(|e| e.file_offset == offset)
        .unwrap_or_else(|| panic!("no event at offset {offset}"))
}

both_backends!(presets_store_every_line_once_with_their_fields);
fn presets_store_every_line_once_with_their_fields(b: Backend) {
    let Some(env) = TestEnv::new(b) else { return };
    run(
        &env,
        &[
            source(
                "access",
                "nginx-access.log",
                "format = \"nginx_combined\"\n",
            ),
            source("errors", "nginx-error.log", "format = \"nginx_error\"\n"),
            source("bsd", "syslog-rfc3164.log", "format = \"syslog\"\n"),
            source("ietf", "syslog-rfc5424.log", "format = \"syslog\"\n"),
            source("kv", "logfmt.log", "format = \"logfmt\"\n"),
        ],
    );

    // nginx access log: every line an event, level from the status, time from time_local.
    let (events, dead) = rows_of(&env, "access");
    every_line_once("nginx-access.log", &events, &dead);
    assert!(dead.is_empty(), "{dead:?}");
    assert_eq!(
        levels(&events),
        counts(&[("info", 72), ("warn", 37), ("error", 21)])
    );
    assert!(events.iter().all(|e| e.ts.is_some()));
    let first = at(&events, 0);
    assert_eq!(
        fields(first),
        serde_json::json!({"remote_addr": "127.0.0.1", "time_local": "27/Nov/2026:13:37:44 +0000",
            "request": "GET / HTTP/1.1", "request_method": "GET", "request_uri": "/",
            "server_protocol": "HTTP/1.1", "status": 200, "body_bytes_sent": 47,
            "http_user_agent": "curl/7.88.1"})
    );
    assert_eq!(first.ts.as_deref(), Some("2026-11-27T13:37:44.000000Z"));
    assert_eq!(first.message.as_deref(), Some("GET / HTTP/1.1"));
    let lines_of_access = lines("nginx-access.log");
    let garbage = lines_of_access
        .iter()
        .find(|(_, l)| l.windows(9).any(|w| w == b"\"GARBAGE\""))
        .expect("the GARBAGE request is in the sample");
    let g = fields(at(&events, garbage.0));
    assert_eq!(
        (g["request"].as_str(), g["status"].as_u64()),
        (Some("GARBAGE"), Some(400))
    );
    assert!(g.get("request_method").is_none());

    // nginx error log: the line with raw bytes (not UTF-8) is a dead letter, bytes kept.
    let (events, dead) = rows_of(&env, "errors");
    every_line_once("nginx-error.log", &events, &dead);
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(
        dead[0].error.starts_with("invalid UTF-8 at byte "),
        "{dead:?}"
    );
    let raw = &lines("nginx-error.log")[55];
    assert_eq!((dead[0].file_offset, &dead[0].raw), (raw.0, &raw.1));
    assert_eq!(levels(&events), counts(&[("info", 63), ("error", 9)]));
    assert!(events.iter().all(|e| e.ts.is_some()));
    let e = at(&events, 0);
    assert_eq!(
        fields(e),
        serde_json::json!({"time": "2026/11/27 13:37:43", "severity": "notice", "pid": 13466,
            "tid": 13466, "message": "using the \"epoll\" event method"})
    );
    assert_eq!(e.ts.as_deref(), Some("2026-11-27T13:37:43.000000Z"));
    let with_client = events
        .iter()
        .map(fields)
        .find(|f| f["severity"] == "error")
        .expect("an error line");
    assert_eq!(with_client["client"], "127.0.0.1");
    assert_eq!(with_client["server"], "localhost");

    // RFC 3164: no priority in the file, so no level; a year-less time placed in a year.
    let (events, dead) = rows_of(&env, "bsd");
    every_line_once("syslog-rfc3164.log", &events, &dead);
    assert!(dead.is_empty(), "{dead:?}");
    assert_eq!(levels(&events), counts(&[("-", 186)]));
    assert!(events.iter().all(|e| e.ts.is_some()));
    let e = at(&events, 0);
    assert_eq!(
        fields(e),
        serde_json::json!({"timestamp": "Nov 27 13:40:13", "hostname": "vm", "appname": "CRON",
            "message": "event 1 without pid via unix socket"})
    );
    assert!(
        e.ts.as_deref()
            .is_some_and(|t| t.ends_with("-11-27T13:40:13.000000Z")),
        "{e:?}"
    );

    // RFC 5424: facility and severity from the priority, level from the severity.
    let (events, dead) = rows_of(&env, "ietf");
    every_line_once("syslog-rfc5424.log", &events, &dead);
    assert!(dead.is_empty(), "{dead:?}");
    let by_level = levels(&events);
    assert_eq!(
        by_level.get("-"),
        Some(&1),
        "only <invld> has no level: {by_level:?}"
    );
    assert_eq!(by_level.values().sum::<usize>(), 186);
    let e = at(&events, 0);
    assert_eq!(e.level.as_deref(), Some("fatal"));
    assert_eq!(e.ts.as_deref(), Some("2026-11-27T13:40:13.750186Z"));
    let f = fields(e);
    assert_eq!(
        (f["facility"].as_str(), f["severity"].as_str()),
        (Some("user"), Some("emerg"))
    );
    let sd = events
        .iter()
        .map(fields)
        .find(|f| f["msgid"] == "ORDER" && f["message"] == "order note with escapes")
        .expect("the structured-data line");
    assert_eq!(
        sd["structured_data"]["order@32473"]["note"],
        "has \"quotes\" and ] bracket"
    );

    // logfmt: level and message from the default field names.
    let (events, dead) = rows_of(&env, "kv");
    every_line_once("logfmt.log", &events, &dead);
    assert!(dead.is_empty(), "{dead:?}");
    assert_eq!(
        levels(&events),
        counts(&[("info", 46), ("warn", 7), ("error", 4), ("debug", 3)])
    );
    let e = at(&events, 0);
    assert_eq!(e.message.as_deref(), Some("server started"));
    assert_eq!(e.ts.as_deref(), Some("2026-11-27T13:40:36.000000Z"));
    assert_eq!(fields(e)["workers"], "4");
}

both_backends!(lines_that_do_not_match_are_dead_letters_naming_source_and_format);
fn lines_that_do_not_match_are_dead_letters_naming_source_and_format(b: Backend) {
    let Some(env) = TestEnv::new(b) else { return };
    run(
        &env,
        &[source("pg", "postgresql.log", &pg_keys("dead_letter"))],
    );
    let (events, dead) = rows_of(&env, "pg");
    every_line_once("postgresql.log", &events, &dead);
    // The 57 continuation lines (a TAB, then a statement's next line) do not match.
    assert_eq!((events.len(), dead.len()), (93, 57));
    let sample = lines("postgresql.log");
    for d in &dead {
        assert_eq!(d.error, "no match for format regex (source pg)");
        let line = sample.iter().find(|(o, _)| *o == d.file_offset).unwrap();
        assert_eq!(d.raw, line.1, "raw bytes kept");
        assert!(
            d.raw.starts_with(b"\t"),
            "{:?}",
            String::from_utf8_lossy(&d.raw)
        );
    }
    let e = at(&events, 0);
    assert_eq!(e.ts.as_deref(), Some("2026-11-27T13:38:47.909000Z"));
    assert_eq!(e.level.as_deref(), Some("log"));
    assert_eq!(fields(e)["pid"], "17451");
    assert!(e
        .message
        .as_deref()
        .unwrap()
        .starts_with("starting PostgreSQL 15.20"));
    let by_level = levels(&events);
    assert_eq!(by_level.get("error"), Some(&14), "{by_level:?}");
    assert_eq!(by_level.get("warn"), Some(&3), "{by_level:?}");
}

both_backends!(on_mismatch_text_stores_them_as_text_events);
fn on_mismatch_text_stores_them_as_text_events(b: Backend) {
    let Some(env) = TestEnv::new(b) else { return };
    std::fs::write(
        env.log("mixed.jsonl"),
        "{\"level\":\"warn\",\"msg\":\"json\"}\nplain text, not JSON\n[1,2]\n",
    )
    .unwrap();
    run(
        &env,
        &[
            source("pg", "postgresql.log", &pg_keys("text")),
            source("mixed", "mixed.jsonl", "on_mismatch = \"text\"\n"),
        ],
    );
    let (events, dead) = rows_of(&env, "pg");
    every_line_once("postgresql.log", &events, &dead);
    assert!(dead.is_empty(), "{dead:?}");
    let sample = lines("postgresql.log");
    let text: Vec<&EventRow> = events.iter().filter(|e| e.level.is_none()).collect();
    assert_eq!(text.len(), 57);
    for e in text {
        let line = &sample.iter().find(|(o, _)| *o == e.file_offset).unwrap().1;
        let line = std::str::from_utf8(line).unwrap();
        assert_eq!(fields(e), serde_json::json!({ "message": line }));
        assert_eq!(e.message.as_deref(), Some(line));
        assert_eq!(e.ts, None);
    }

    // A JSON source with on_mismatch = "text": objects as always, anything else as text.
    let (events, dead) = rows_of(&env, "mixed");
    assert!(dead.is_empty(), "{dead:?}");
    let got: Vec<(Option<&str>, Option<&str>, serde_json::Value)> = events
        .iter()
        .map(|e| (e.level.as_deref(), e.message.as_deref(), fields(e)))
        .collect();
    assert_eq!(
        got,
        [
            (
                Some("warn"),
                Some("json"),
                serde_json::json!({"level": "warn", "msg": "json"})
            ),
            (
                None,
                Some("plain text, not JSON"),
                serde_json::json!({"message": "plain text, not JSON"})
            ),
            (None, Some("[1,2]"), serde_json::json!({"message": "[1,2]"})),
        ]
    );
}

// ----- CRI: pieces joined, across reads and restarts -------------------------------------------

const CRI_FIRST: [&str; 3] = [
    "2026-11-27T13:40:00.000000001Z stdout F a",
    "2026-11-27T13:40:01.000000001Z stdout P piece one, ",
    "2026-11-27T13:40:02.000000001Z stdout P piece two, ",
];
const CRI_REST: [&str; 3] = [
    "2026-11-27T13:40:02.500000001Z stderr F an error",
    "2026-11-27T13:40:03.000000001Z stdout F the end",
    "2026-11-27T13:40:04.000000001Z stdout F b",
];

fn append(env: &TestEnv, lines: &[&str]) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(env.log("pod.log"))
        .expect("open pod.log");
    for l in lines {
        writeln!(f, "{l}").expect("append");
    }
}

/// The offset of line `i` of CRI_FIRST then CRI_REST.
fn cri_offset(i: usize) -> i64 {
    CRI_FIRST
        .iter()
        .chain(CRI_REST.iter())
        .take(i)
        .map(|l| l.len() as i64 + 1)
        .sum()
}

/// What the pod log holds once every line is there: (offset, stream, message), by offset.
fn cri_want() -> Vec<(i64, String, String)> {
    let row =
        |i, stream: &str, message: &str| (cri_offset(i), stream.to_owned(), message.to_owned());
    vec![
        row(0, "stdout", "a"),
        row(1, "stdout", "piece one, piece two, the end"),
        row(3, "stderr", "an error"),
        row(5, "stdout", "b"),
    ]
}

fn cri_got(env: &TestEnv) -> Vec<(i64, String, String)> {
    env.db.assert_no_duplicates();
    assert!(env.db.dead_letters().is_empty());
    env.db
        .events()
        .iter()
        .map(|e| {
            let f = fields(e);
            assert_eq!(e.message.as_deref(), f["message"].as_str());
            assert!(e.ts.is_some());
            (
                e.file_offset,
                f["stream"].as_str().unwrap().to_owned(),
                f["message"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn committed(env: &TestEnv) -> i64 {
    let files = env.db.files();
    assert_eq!(files.len(), 1, "{files:?}");
    files[0].committed_offset
}

both_backends!(cri_pieces_are_joined_across_reads_and_runs);
fn cri_pieces_are_joined_across_reads_and_runs(b: Backend) {
    let Some(env) = TestEnv::new(b) else { return };
    append(&env, &CRI_FIRST);
    // One line per batch: the pieces of one line are in different batches.
    configure(&env, &[source("k8s", "pod.log", "format = \"cri\"\n")], 1);
    env.run_once();
    // Only "a" is stored; the position stays at the first piece, not inside the line.
    assert_eq!(cri_got(&env), cri_want()[..1]);
    assert_eq!(committed(&env), cri_offset(1));
    append(&env, &CRI_REST);
    env.run_once();
    assert_eq!(cri_got(&env), cri_want());
    assert_eq!(committed(&env), cri_offset(6));
}

both_backends!(cri_a_line_in_pieces_survives_kill_9);
fn cri_a_line_in_pieces_survives_kill_9(b: Backend) {
    let Some(env) = TestEnv::new(b) else { return };
    append(&env, &CRI_FIRST);
    configure(&env, &[source("k8s", "pod.log", "format = \"cri\"\n")], 1);
    let mut d = env.start();
    d.wait_started();
    // Killed while the line's pieces are read and not yet ended.
    wait_until(
        "\"a\" committed, position at the first piece",
        DEADLINE,
        || {
            d.assert_running();
            env.db.rows() == 1
                && env.db.files().first().map(|f| f.committed_offset) == Some(cri_offset(1))
        },
    );
    d.kill9();
    append(&env, &CRI_REST);
    env.run_once();
    assert_eq!(cri_got(&env), cri_want());
    assert_eq!(committed(&env), cri_offset(6));
}

// ----- multiline events -------------------------------------------------------------------------

const JAVA_START: &str = r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} ";
const PYTHON_START: &str = r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ";

/// The events `start` makes of `file`: (offset of the first line, lines joined by `\n`); an
/// empty line continues the open event, and an event's trailing empty lines are not its text.
fn joined_events(file: &str, start: &str) -> Vec<(i64, String)> {
    let start = regex::Regex::new(start).unwrap();
    joined_at(&data(file), |line| start.is_match(line))
}

/// The events of the file at `path` when `starts` tells the lines that start one: (offset of
/// the first line, lines joined by `\n`); an empty line continues the open event, and an
/// event's trailing empty lines are not its text.
pub(crate) fn joined_at(path: &Path, starts: impl Fn(&str) -> bool) -> Vec<(i64, String)> {
    let mut events: Vec<(i64, String)> = Vec::new();
    for (offset, line) in lines_at(path) {
        let line = String::from_utf8(line).expect("multiline samples are UTF-8");
        match events.last_mut() {
            Some((_, text)) if line.is_empty() || !starts(&line) => {
                text.push('\n');
                text.push_str(&line);
            }
            _ => events.push((offset, line)),
        }
    }
    for (_, text) in &mut events {
        text.truncate(text.trim_end_matches('\n').len());
    }
    events
}

/// Runs logbelt until the tables hold `rows` rows (each file's last event is stored by the
/// timeout: no line comes after it), stops it, and checks that every row is an event, once.
pub(crate) fn run_until_rows(env: &TestEnv, rows: i64) {
    let mut d = env.start();
    d.wait_started();
    env.db.wait_rows(rows, Some(&mut d));
    d.sigterm();
    d.assert_exit_ok();
    env.db.assert_no_duplicates();
    assert!(
        env.db.dead_letters().is_empty(),
        "{:?}",
        env.db.dead_letters()
    );
}

fn multiline_keys(format: &str, rule: &str, pattern: &str, timeout_ms: u64) -> String {
    format!("format = \"{format}\"\n[sources.multiline]\n{rule} = '{pattern}'\ntimeout_ms = {timeout_ms}\n")
}

both_backends!(multiline_stack_traces_and_statements_are_one_event_each);
fn multiline_stack_traces_and_statements_are_one_event_each(b: Backend) {
    let Some(env) = TestEnv::new(b) else { return };
    let pg = format!(
        "format = \"regex\"\npattern = '(?s){}'\ntimestamp_format = \"%Y-%m-%d %H:%M:%S%.3f UTC\"\n\
         [sources.multiline]\ncontinue = '^\\t'\ntimeout_ms = 100\n",
        PG_PATTERN
    );
    configure(
        &env,
        &[
            source(
                "java",
                "java-stacktrace.log",
                &multiline_keys("text", "start", JAVA_START, 100),
            ),
            source(
                "python",
                "python-traceback.log",
                &multiline_keys("text", "start", PYTHON_START, 100),
            ),
            source("pg", "postgresql.log", &pg),
        ],
        5000,
    );
    let java = joined_events("java-stacktrace.log", JAVA_START);
    let python = joined_events("python-traceback.log", PYTHON_START);
    let pg_events = joined_events("postgresql.log", r"^\S+ \S+ UTC \[");
    assert_eq!((java.len(), python.len(), pg_events.len()), (23, 34, 93));
    run_until_rows(&env, 150);
    for (name, want) in [("java", &java), ("python", &python), ("pg", &pg_events)] {
        let (events, _) = rows_of(&env, name);
        let got: Vec<(i64, String)> = events
            .iter()
            .map(|e| (e.file_offset, e.message.clone().unwrap_or_default()))
            .collect();
        if name == "pg" {
            // The regex's message is the text after the prefix, continuation lines included.
            for ((offset, text), (want_offset, want_text)) in got.iter().zip(want.iter()) {
                assert_eq!(offset, want_offset);
                assert!(
                    want_text.ends_with(text.as_str()),
                    "{text:?} / {want_text:?}"
                );
            }
            assert_eq!(got.len(), want.len());
        } else {
            assert_eq!(&got, want, "{name}");
        }
    }
    // A Java stack trace with its causes is one event.
    let (events, _) = rows_of(&env, "java");
    let trace = events
        .iter()
        .find(|e| {
            e.message
                .as_deref()
                .is_some_and(|m| m.contains("Caused by:"))
        })
        .expect("a trace with a cause");
    assert!(trace.message.as_deref().unwrap().contains("\n\tat "));
    // A PostgreSQL statement over several lines keeps its time and level.
    let (events, _) = rows_of(&env, "pg");
    let statement = events
        .iter()
        .find(|e| e.message.as_deref().is_some_and(|m| m.contains("\n\t")))
        .expect("a statement over several lines");
    assert!(
        statement.ts.is_some() && statement.level.is_some(),
        "{statement:?}"
    );
}

both_backends!(a_multiline_event_survives_kill_9);
fn a_multiline_event_survives_kill_9(b: Backend) {
    let Some(env) = TestEnv::new(b) else { return };
    let events = joined_events("java-stacktrace.log", JAVA_START);
    let all = lines("java-stacktrace.log");
    // The file up to the middle of the 4th event (a stack trace), then the rest.
    let (cut_event, _) = events
        .iter()
        .skip(3)
        .find(|(_, text)| text.lines().count() > 3)
        .expect("a trace");
    let cut_line = all.iter().position(|(o, _)| o == cut_event).unwrap() + 2;
    let write = |range: std::ops::Range<usize>| {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(env.log("app.log"))
            .unwrap();
        for (_, l) in &all[range] {
            f.write_all(l).unwrap();
            f.write_all(b"\n").unwrap();
        }
    };
    write(0..cut_line);
    let before = events.iter().filter(|(o, _)| o < cut_event).count() as i64;
    configure(
        &env,
        &[source(
            "java",
            "app.log",
            &multiline_keys("text", "start", JAVA_START, 3_600_000),
        )],
        1,
    );
    let mut d = env.start();
    d.wait_started();
    wait_until(
        "the events before the cut one, position at its first line",
        DEADLINE,
        || {
            d.assert_running();
            env.db.rows() == before
                && env.db.files().first().map(|f| f.committed_offset) == Some(*cut_event)
        },
    );
    d.kill9();
    write(cut_line..all.len());
    // The next start stores every event that a later line ends (the last one waits).
    env.run_once();
    env.db.assert_no_duplicates();
    let got: Vec<(i64, String)> = rows_of(&env, "java")
        .0
        .iter()
        .map(|e| (e.file_offset, e.message.clone().unwrap_or_default()))
        .collect();
    assert_eq!(got, events[..events.len() - 1]);
}

// ----- NUL bytes before a line (a copytruncate hole) -------------------------------------------

both_backends!(nul_bytes_before_a_line_are_dropped_and_counted);
fn nul_bytes_before_a_line_are_dropped_and_counted(b: Backend) {
    let Some(env) = TestEnv::new(b) else { return };
    let addr = free_addr();
    let mut cfg = env.config();
    // The hole is longer than a line may be: it is dropped whatever its length.
    cfg.max_line_bytes = 1024;
    write_config_with(
        &env,
        &cfg,
        &[("metrics", "listen", toml_str(&addr.to_string()))],
    );
    let mut d = env.start();
    d.wait_started();
    wait_endpoint(addr, &mut d);
    let counted = |m: &crate::util::Scrape| m.get("logbelt_nul_bytes_dropped_total", &[]);
    assert_eq!(
        counted(&scrape(addr)),
        Some(0.0),
        "the counter exists from the start"
    );

    // A line, the hole a writer leaves when it goes on at its old offset after a truncation, a
    // line after it, a line of NULs only (an empty line), one more line.
    let mut data = b"{\"n\":1}\n".to_vec();
    data.extend(std::iter::repeat_n(0u8, 4096));
    let second = data.len() as i64;
    data.extend_from_slice(b"{\"n\":2}\n\0\0\n");
    let third = data.len() as i64;
    data.extend_from_slice(b"{\"n\":3}\n");
    std::fs::write(env.log("app.jsonl"), &data).unwrap();
    env.db.wait_rows(3, Some(&mut d));
    let got: Vec<(i64, serde_json::Value)> = env
        .db
        .events()
        .iter()
        .map(|e| (e.file_offset, fields(e)))
        .collect();
    assert_eq!(
        got,
        [
            (0, serde_json::json!({"n": 1})),
            (second, serde_json::json!({"n": 2})),
            (third, serde_json::json!({"n": 3})),
        ]
    );
    let m = scrape(addr);
    assert_eq!(counted(&m), Some(4098.0), "{}", m.text);
    d.sigterm();
    d.assert_exit_ok();
}
