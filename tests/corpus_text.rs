//! Whole real text logs (`tests/data/corpus-text`, their origin and expected counts in its
//! `PROVENANCE.md`), each read with the format, preset and multiline rule that fits it, on both
//! backends. Each file gives exactly the events its `PROVENANCE.md` counts (events + dead
//! letters = the expected number), the levels, status classes and fields it lists, and the only
//! dead letter is a deliberate one (nginx copying raw non-UTF-8 bytes into its error log).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::formats::{
    configure, counts, fields, joined_at, levels, lines_at, rows_of, run, run_until_rows, Source,
};
use crate::util::{Backend, DeadRow, EventRow, TestEnv};

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/corpus-text")
        .join(name)
}

/// The file's lines (split on `\n` only, as `count_events.py` does), with their offsets.
fn lines(file: &str) -> Vec<(i64, Vec<u8>)> {
    lines_at(&data(file))
}
/// How a multiline rule splits lines into events.
enum Rule {
    Start(&'static str),
    Continue(&'static str),
}

/// The events `rule` makes of `file`: (offset of the first line, the lines joined by `\n`).
/// An empty line never starts an event: it continues the open one; an event's trailing empty
/// lines are not part of its text.
fn joined(file: &str, rule: &Rule) -> Vec<(i64, String)> {
    let (re, starts) = match rule {
        Rule::Start(p) => (regex::Regex::new(p).unwrap(), true),
        Rule::Continue(p) => (regex::Regex::new(p).unwrap(), false),
    };
    joined_at(&data(file), |line| re.is_match(line) == starts)
}

/// A source reading the corpus file `file`.
fn source(name: &'static str, file: &'static str, keys: &str) -> Source {
    Source::new(name, file, data(file), keys)
}

/// How many events have each value of `key` (`-`: none).
fn tally(
    events: &[EventRow],
    key: impl Fn(&EventRow) -> Option<String>,
) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for e in events {
        *m.entry(key(e).unwrap_or_else(|| "-".into())).or_insert(0) += 1;
    }
    m
}

fn field(name: &'static str) -> impl Fn(&EventRow) -> Option<String> {
    move |e| {
        fields(e).get(name).map(|v| match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    }
}

/// Every line of a one-line-per-event `file` is one row of the source, at its offset.
fn one_row_per_line(file: &str, events: &[EventRow], dead: &[DeadRow]) {
    let mut got: Vec<i64> = events.iter().map(|e| e.file_offset).collect();
    got.extend(dead.iter().map(|d| d.file_offset));
    got.sort_unstable();
    let want: Vec<i64> = lines(file).iter().map(|(o, _)| *o).collect();
    assert_eq!(got, want, "{file}: one row per line, each once");
}

const NGINX_ERROR_LINES: usize = 722;

both_backends!(one_line_formats_store_every_real_line);
fn one_line_formats_store_every_real_line(b: Backend) {
    let Some(env) = TestEnv::new(b) else { return };
    run(
        &env,
        &[
            source("access", "nginx-access-combined.log", "format = \"nginx_combined\"\n"),
            source("errors", "nginx-error.log", "format = \"nginx_error\"\n"),
            source(
                "bsd",
                "syslog-rfc3164.log",
                "format = \"syslog\"\ndefault_level = \"Information\"\n",
            ),
            source("ietf", "syslog-rfc5424.log", "format = \"syslog\"\n"),
            source("kv", "logfmt.log", "format = \"logfmt\"\n"),
            source(
                "rabbit",
                "rabbitmq.log",
                "format = \"regex\"\npattern = '^(?P<time>\\S+ \\S+) \\[(?P<level>[a-z]+)\\] \
                 <(?P<pid>[^>]+)> (?P<message>.*)$'\ntimestamp_format = \"%Y-%m-%d %H:%M:%S%.6f%:z\"\n",
            ),
        ],
    );

    // nginx access log: 604 events, none dead; level and status classes as PROVENANCE counts.
    let (events, dead) = rows_of(&env, "access");
    assert!(dead.is_empty(), "{dead:?}");
    assert_eq!(events.len(), 604);
    one_row_per_line("nginx-access-combined.log", &events, &dead);
    let class = |e: &EventRow| {
        fields(e)["status"]
            .as_u64()
            .map(|s| format!("{}xx", s / 100))
    };
    assert_eq!(
        tally(&events, class),
        counts(&[("2xx", 319), ("3xx", 21), ("4xx", 201), ("5xx", 63)])
    );
    assert_eq!(
        levels(&events),
        counts(&[("info", 340), ("warn", 201), ("error", 63)])
    );
    assert!(
        events.iter().all(|e| e.ts.is_some()),
        "every time_local read"
    );
    assert_eq!(tally(&events, field("remote_addr"))["::1"], 76);
    // The 8 KB line is one event, its URI whole; nginx's \xHH escapes are kept as written.
    let longest = events
        .iter()
        .max_by_key(|e| fields(e)["request"].as_str().map_or(0, str::len))
        .unwrap();
    assert_eq!(
        lines("nginx-access-combined.log")
            .iter()
            .find(|(o, _)| *o == longest.file_offset)
            .unwrap()
            .1
            .len(),
        8253
    );
    assert_eq!(fields(longest)["status"], 414);
    assert!(events.iter().any(|e| fields(e)["request"]
        .as_str()
        .is_some_and(|r| r.starts_with("\\x16\\x03\\x01"))));
    assert!(events.iter().any(|e| fields(e)["http_user_agent"]
        .as_str()
        .is_some_and(|r| r.contains("tab\\x09here"))));

    // nginx error log: 722 lines = 721 events + 1 dead letter: line 705, where nginx copied a
    // TLS ClientHello's raw bytes (not UTF-8, with NULs): kept byte for byte as a dead letter.
    let (events, dead) = rows_of(&env, "errors");
    assert_eq!(events.len() + dead.len(), NGINX_ERROR_LINES);
    assert_eq!(dead.len(), 1, "{dead:?}");
    one_row_per_line("nginx-error.log", &events, &dead);
    let all = lines("nginx-error.log");
    let (offset, raw) = &all[704];
    assert_eq!((dead[0].file_offset, &dead[0].raw), (*offset, raw));
    assert_eq!(raw.iter().filter(|b| **b == 0).count(), 3);
    assert_eq!(dead[0].error, "invalid UTF-8 at byte 159");
    // Line 706, cut at nginx's 2 KB limit (no closing quote, no `host:`), is still an event.
    let cut = events.iter().find(|e| e.file_offset == all[705].0).unwrap();
    let cut = fields(cut);
    assert_eq!(cut["severity"], "info");
    assert!(
        cut["request"].as_str().unwrap().starts_with("GET /aaaa"),
        "{cut}"
    );
    assert!(cut.get("host").is_none(), "{cut}");
    // By severity, with the dead letter's `[info]`: error 167, warn 5, notice 13, info 537.
    assert!(raw.starts_with(b"2026/11/27 13:38:11 [info] "));
    assert_eq!(
        tally(&events, field("severity")),
        counts(&[("error", 167), ("warn", 5), ("notice", 13), ("info", 536)])
    );
    assert_eq!(
        levels(&events),
        counts(&[("error", 167), ("warn", 5), ("info", 549)]),
        "notice is info"
    );
    assert!(events.iter().all(|e| e.ts.is_some()));

    // Syslog, the same 186 messages twice. RFC 3164 files hold no priority: the source's
    // default_level ("Information", normalised) is every event's level.
    let (events, dead) = rows_of(&env, "bsd");
    assert!(dead.is_empty(), "{dead:?}");
    one_row_per_line("syslog-rfc3164.log", &events, &dead);
    assert_eq!(levels(&events), counts(&[("info", 186)]));
    assert!(events.iter().all(|e| fields(e).get("severity").is_none()));
    assert!(events.iter().all(|e| e.ts.is_some()));
    // RFC 5424: facility and severity from the priority; `<invld>` (PRI 999) has neither.
    let (events, dead) = rows_of(&env, "ietf");
    assert!(dead.is_empty(), "{dead:?}");
    one_row_per_line("syslog-rfc5424.log", &events, &dead);
    assert_eq!(tally(&events, field("severity"))["-"], 1);
    assert_eq!(levels(&events)["-"], 1);
    // Facility `kern` sent by `logger` arrives as `user`.
    assert!(!tally(&events, field("facility")).contains_key("kern"));

    // logfmt: 464 events, levels as PROVENANCE counts (CRITICAL is fatal, WARNING warn).
    let (events, dead) = rows_of(&env, "kv");
    assert!(dead.is_empty(), "{dead:?}");
    one_row_per_line("logfmt.log", &events, &dead);
    assert_eq!(
        levels(&events),
        counts(&[
            ("info", 328),
            ("warn", 86),
            ("error", 32),
            ("debug", 17),
            ("fatal", 1)
        ])
    );
    assert!(events.iter().all(|e| e.ts.is_some()));
    let odd = events
        .iter()
        .map(fields)
        .find(|f| f.get("backslash").is_some())
        .expect("the line with odd values");
    assert_eq!(
        (&odd["backslash"], &odd["empty"], &odd["tab"], &odd["job"]),
        (
            &serde_json::json!("C:\\temp\\x"),
            &serde_json::json!(""),
            &serde_json::json!("a\tb"),
            &serde_json::json!("report=weekly")
        )
    );
    let trace = events
        .iter()
        .map(fields)
        .find(|f| f.get("exc_info").is_some())
        .expect("an exc_info traceback");
    assert!(trace["exc_info"]
        .as_str()
        .unwrap()
        .starts_with("Traceback (most recent call last):\n  File \""));

    // RabbitMQ, one event per line (its repeated prefixes are separate events): 354; notice
    // is info.
    let (events, dead) = rows_of(&env, "rabbit");
    assert!(dead.is_empty(), "{dead:?}");
    one_row_per_line("rabbitmq.log", &events, &dead);
    assert_eq!(
        levels(&events),
        counts(&[("info", 339), ("warn", 3), ("error", 12)])
    );
    assert_eq!(tally(&events, field("level"))["notice"], 4);
    assert!(events.iter().all(|e| e.ts.is_some()));
}

const JUL_START: &str = r"^[A-Z][a-z]{2} \d{2}, \d{4} \d{1,2}:\d{2}:\d{2} [AP]M ";
const JAVA_START: &str = r"^(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{3} |Exception in thread )";
const PYTHON_START: &str = r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2},\d{3} ";
/// PostgreSQL: a TAB continues a message, and DETAIL/HINT/… lines belong to the one above.
const PG_CONTINUE: &str =
    r"^(\t|\S+ \S+ UTC \[\d+\] (DETAIL|HINT|CONTEXT|STATEMENT|QUERY|LOCATION):  )";

fn multiline(format: &str, rule: &str, pattern: &str) -> String {
    format!("{format}[sources.multiline]\n{rule} = '{pattern}'\ntimeout_ms = 100\n")
}

/// A regex source whose `(?s)` pattern reads the joined event.
fn regex_keys(pattern: &str, timestamp_format: &str) -> String {
    format!(
        "format = \"regex\"\npattern = '(?s){pattern}'\ntimestamp_format = \"{timestamp_format}\"\n\
         on_mismatch = \"text\"\n"
    )
}

const JUL_PATTERN: &str = r"^(?P<time>\S+ \d+, \d+ \S+ [AP]M) (?P<class>\S+) (?P<method>\S+)\n(?P<level>[A-Z]+): (?P<message>.*)$";
const JAVA_PATTERN: &str = r"^(?P<time>\S+ \S+) \[(?P<thread>[^\]]*)\] (?P<level>[A-Z]+) +(?P<logger>\S+) - (?P<message>.*)$";
const PYTHON_PATTERN: &str =
    r"^(?P<time>\S+ \S+) (?P<level>[A-Z]+) (?P<logger>[^:]+): (?P<message>.*)$";
const PG_PATTERN: &str =
    r"^(?P<time>\S+ \S+ UTC) \[(?P<pid>\d+)\] (?P<level>[A-Z]+):  (?P<message>.*)$";

both_backends!(multiline_logs_give_their_expected_events);
fn multiline_logs_give_their_expected_events(b: Backend) {
    let Some(env) = TestEnv::new(b) else { return };
    #[rustfmt::skip]
    let cases: [(&str, &str, Rule, &str, usize); 4] = [
        ("jul", "java-jul.log", Rule::Start(JUL_START), JUL_PATTERN, 133),
        ("java", "java-stacktrace.log", Rule::Start(JAVA_START), JAVA_PATTERN, 76),
        ("python", "python-traceback.log", Rule::Start(PYTHON_START), PYTHON_PATTERN, 149),
        ("pg", "postgresql.log", Rule::Continue(PG_CONTINUE), PG_PATTERN, 376),
    ];
    let formats = [
        regex_keys(JUL_PATTERN, "%b %d, %Y %I:%M:%S %p"),
        regex_keys(JAVA_PATTERN, "%Y-%m-%d %H:%M:%S%.3f") + "default_level = \"error\"\n",
        regex_keys(PYTHON_PATTERN, "%Y-%m-%d %H:%M:%S,%3f"),
        regex_keys(PG_PATTERN, "%Y-%m-%d %H:%M:%S%.3f UTC"),
    ];
    let sources: Vec<Source> = cases
        .iter()
        .zip(&formats)
        .map(|((name, file, rule, _, _), format)| {
            let (key, pattern) = match rule {
                Rule::Start(p) => ("start", p),
                Rule::Continue(p) => ("continue", p),
            };
            source(name, file, &multiline(format, key, pattern))
        })
        .collect();
    configure(&env, &sources, 5000);
    let total: usize = cases.iter().map(|c| c.4).sum();
    run_until_rows(&env, total as i64);

    for (name, file, rule, pattern, expected) in &cases {
        let want = joined(file, rule);
        assert_eq!(
            want.len(),
            *expected,
            "{file}: the rule gives PROVENANCE's count"
        );
        let (events, _) = rows_of(&env, name);
        assert_eq!(events.len(), *expected, "{name}");
        // Each event starts at its first line and holds its lines (blank ones inside too) as
        // the pattern reads them from the joined text.
        let re = regex::Regex::new(&format!("(?s){pattern}")).unwrap();
        for (e, (offset, text)) in events.iter().zip(&want) {
            assert_eq!(e.file_offset, *offset, "{name}");
            let message = re
                .captures(text)
                .map_or(text.as_str(), |c| c.name("message").unwrap().as_str());
            assert_eq!(e.message.as_deref(), Some(message), "{name} at {offset}");
        }
    }

    let (jul, _) = rows_of(&env, "jul");
    assert_eq!(
        levels(&jul),
        counts(&[
            ("error", 18),
            ("warn", 22),
            ("info", 37),
            ("config", 1),
            ("debug", 55)
        ]),
        "SEVERE is error, FINE debug"
    );
    assert!(jul.iter().all(|e| e.ts.is_some()));
    let all: String = jul.iter().filter_map(|e| e.message.clone()).collect();
    assert_eq!(
        (
            all.matches("Caused by:").count(),
            all.matches("Suppressed:").count()
        ),
        (36, 5)
    );

    // The two uncaught exceptions (`Exception in thread …`) are events of their own, text
    // events (the pattern is for the program's own lines), with the source's default_level.
    let (java, _) = rows_of(&env, "java");
    assert_eq!(
        levels(&java),
        counts(&[("error", 28), ("warn", 1), ("info", 12), ("debug", 35)])
    );
    let uncaught: Vec<&EventRow> = java
        .iter()
        .filter(|e| fields(e).get("level").is_none())
        .collect();
    assert_eq!(uncaught.len(), 2);
    for e in uncaught {
        let message = e.message.as_deref().unwrap();
        assert!(message.starts_with("Exception in thread "), "{message}");
        assert_eq!(e.level.as_deref(), Some("error"));
    }
    let all: String = java.iter().filter_map(|e| e.message.clone()).collect();
    assert_eq!(all.matches("Caused by:").count(), 45);

    // Python: chained tracebacks keep their blank lines.
    let (python, _) = rows_of(&env, "python");
    assert_eq!(
        levels(&python),
        counts(&[
            ("fatal", 1),
            ("error", 44),
            ("warn", 4),
            ("info", 35),
            ("debug", 65)
        ])
    );
    let all: String = python.iter().filter_map(|e| e.message.clone()).collect();
    for (sentence, n) in [
        (
            "The above exception was the direct cause of the following exception:",
            8,
        ),
        (
            "During handling of the above exception, another exception occurred:",
            18,
        ),
    ] {
        let in_file = lines("python-traceback.log")
            .iter()
            .filter(|(_, l)| l == sentence.as_bytes())
            .count();
        assert_eq!(in_file, n);
        assert_eq!(all.matches(&format!("\n\n{sentence}\n\n")).count(), n);
    }

    // PostgreSQL: an error keeps its DETAIL/HINT/STATEMENT lines; levels by the first line.
    let (pg, _) = rows_of(&env, "pg");
    assert_eq!(
        levels(&pg),
        counts(&[("log", 349), ("error", 21), ("fatal", 3), ("warn", 3)])
    );
    assert!(pg.iter().all(|e| e.ts.is_some()));
    let unique = pg
        .iter()
        .filter_map(|e| e.message.as_deref())
        .find(|m| m.starts_with("duplicate key value violates unique constraint"))
        .expect("the unique violation");
    assert!(unique.contains(" DETAIL:  Key (email)="), "{unique}");
}
