//! Search (issue 14): `query --grep` through the search blocks (and PostgreSQL's optional
//! `pg_trgm` index) gives exactly the rows the scan gives and what the definition says (a
//! case-insensitive substring of the message or of the object), `%`, `_`, quotes, backslashes
//! and non-ASCII included, and short needles (scanned); `--field` with numbers, strings,
//! booleans, null and nested keys; `--count` by group and bucket; `--before`/`--after` cursors
//! cover every event once; PostgreSQL without the right to create its indexes still runs and
//! searches. The blocks themselves: `tests/search_blocks.rs`.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::inspect::{ok, query_json};
use crate::util::{append_lines, Backend, TestEnv};

/// Lines in the dataset.
const N: usize = 420;

/// One written line.
struct Line {
    k: String,
    /// As stored (microseconds), or None.
    ts: Option<String>,
    level: Option<&'static str>,
    message: Option<String>,
    object: Value,
    text: String,
}

/// The messages lines take in turn: plain words, LIKE and query-language syntax, quotes, backslashes,
/// non-ASCII.
const MESSAGES: &[&str] = &[
    "GET /api/checkout 200",
    "job 100%_done",
    "say \"hi\" to the user",
    r"path C:\back\slash\dir",
    "Grüße from the ÉCOLE, naïve",
    "plain event",
    "POST /api/Checkout 500",
    "an OR b AND NOT c*",
];

fn dataset() -> Vec<Line> {
    let statuses = [
        json!(200),
        json!(500),
        json!(404),
        json!(500.0),
        json!("500"),
    ];
    let names = ["ann", "bob", "Ann"];
    (0..N)
        .map(|i| {
            let k = format!("l{i}");
            // Pairs share a timestamp (ties ordered by id); every 17th has none.
            let ts = (i % 17 != 0).then(|| {
                let secs = (i / 2) as i64 * 41;
                let t = chrono::DateTime::from_timestamp(1_764_061_200 + secs, 0).unwrap();
                t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
            });
            let level = (i % 13 != 0).then_some(["info", "warn", "error", "debug"][i % 4]);
            let message = if i == 57 || i == 311 {
                Some(format!("rare xyzzy-token {i}"))
            } else {
                (i % 11 != 0).then(|| format!("{} #{i}", MESSAGES[i % MESSAGES.len()]))
            };
            let mut o = serde_json::Map::new();
            o.insert("k".into(), json!(k));
            if let Some(t) = &ts {
                o.insert("timestamp".into(), json!(t));
            }
            if let Some(l) = level {
                o.insert("level".into(), json!(l));
            }
            if let Some(m) = &message {
                o.insert("message".into(), json!(m));
            }
            o.insert(
                "http".into(),
                json!({"status": statuses[i % statuses.len()], "path": format!("/p/{}", i % 3)}),
            );
            o.insert(
                "user".into(),
                json!({"id": i % 7, "name": names[i % names.len()]}),
            );
            match i % 6 {
                0 => {
                    o.insert("ok".into(), json!(true));
                }
                1 => {
                    o.insert("ok".into(), json!(false));
                }
                2 => {
                    o.insert("ok".into(), Value::Null);
                }
                _ => {}
            }
            if i % 9 == 0 {
                o.insert("note".into(), json!("deep value user-42 ünïcode"));
            }
            let object = Value::Object(o);
            Line {
                k,
                ts,
                level,
                message,
                text: object.to_string(),
                object,
            }
        })
        .collect()
}

/// `logbelt run --once` asking for PostgreSQL's search indexes (`LOGBELT_SEARCH_INDEX=on`);
/// its stderr.
fn run_once_indexed(env: &TestEnv) -> String {
    let stderr = env.path("indexed-run.stderr");
    let mut cmd = crate::util::logbelt_command(env.dir.path(), &stderr);
    cmd.env("LOGBELT_SEARCH_INDEX", "on")
        .args(["run", "--once", "--config"])
        .arg(env.config_path());
    let mut d = crate::util::Daemon::from_command(cmd, &stderr);
    let status = d.wait_exit(crate::util::DEADLINE);
    assert_eq!(status.code(), Some(0), "{}", d.stderr());
    d.stderr()
}

/// Writes the dataset into two files and ingests it.
fn ingest(env: &TestEnv) -> Vec<Line> {
    let lines = dataset();
    for (file, part) in [("a.jsonl", 0), ("b.jsonl", 1)] {
        let texts: Vec<String> = lines
            .iter()
            .enumerate()
            .filter(|(i, _)| (i / 30) % 2 == part)
            .map(|(_, l)| l.text.clone())
            .collect();
        append_lines(&env.log(file), &texts);
    }
    env.config().write(env);
    run_once_indexed(env);
    lines
}

/// The `k` of each event `query --json ARGS` prints, in order.
fn keys(env: &TestEnv, args: &[&str]) -> Vec<String> {
    query_json(env, &[&["--limit", "100000"], args].concat())
        .iter()
        .map(|v| v["fields"]["k"].as_str().unwrap().to_owned())
        .collect()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// What `--grep g` means: the message or the object's text contains `g`, ASCII case ignored.
fn grep_expected(lines: &[Line], g: &str) -> Vec<String> {
    let g = g.to_ascii_lowercase();
    sorted(
        lines
            .iter()
            .filter(|l| {
                l.message
                    .as_ref()
                    .is_some_and(|m| m.to_ascii_lowercase().contains(&g))
                    || l.text.to_ascii_lowercase().contains(&g)
            })
            .map(|l| l.k.clone())
            .collect(),
    )
}

fn count(env: &TestEnv, args: &[&str]) -> i64 {
    let mut all = vec!["query", "--count"];
    all.extend_from_slice(args);
    ok(env, &all).trim().parse().unwrap()
}

/// Needles: words in any case, LIKE's `%` and `_`, query-language syntax, quotes,
/// backslashes, non-ASCII, short, absent.
const NEEDLES: &[&str] = &[
    "checkout",
    "CHECKOUT",
    "xyzzy-token",
    "100%_done",
    "%_d",
    "%",
    "_",
    "say \"hi\"",
    "\"hi",
    r"back\slash",
    r"\",
    "Grüße",
    "GRüßE",
    "ünïcode",
    "naï",
    "OR b AND NOT c*",
    "c*",
    "user-42",
    "ok",
    "#1",
    "e",
    "not-there-at-all",
];

fn grep_same_as_scan_and_definition(b: Backend) {
    let Some(env) = TestEnv::new(b) else { return };
    let lines = ingest(&env);
    for g in NEEDLES {
        let want = grep_expected(&lines, g);
        let indexed = keys(&env, &["--grep", g]);
        let scanned = keys(&env, &["--grep", g, "--scan"]);
        assert_eq!(indexed, scanned, "--grep {g:?}: index and scan differ");
        assert_eq!(sorted(indexed), want, "--grep {g:?}");
        assert_eq!(count(&env, &["--grep", g]), want.len() as i64, "{g:?}");
        // With other filters too.
        let errors = sorted(keys(&env, &["--grep", g, "--level", "error"]));
        let want_errors: Vec<String> = want
            .iter()
            .filter(|k| lines.iter().any(|l| &&l.k == k && l.level == Some("error")))
            .cloned()
            .collect();
        assert_eq!(errors, want_errors, "--grep {g:?} --level error");
    }
    // A page of a common needle: the same.
    for g in ["checkout", "user-42", "#1"] {
        let page = |extra: &[&str]| -> Vec<String> {
            let mut a = vec!["query", "--json", "--limit", "5", "--grep", g];
            a.extend_from_slice(extra);
            ok(&env, &a)
                .lines()
                .map(|l| serde_json::from_str::<Value>(l).unwrap()["fields"]["k"].to_string())
                .collect()
        };
        assert_eq!(page(&[]), page(&["--scan"]), "--grep {g:?} --limit 5");
        assert_eq!(page(&[]).len(), 5, "{g:?}");
    }
    // The rare token: exactly its two lines.
    assert_eq!(keys(&env, &["--grep", "XYZZY-token"]), ["l57", "l311"]);
}
both_backends!(grep_same_as_scan_and_definition);

/// The value at `path` in `o`.
fn at<'a>(o: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(o, |v, p| v.get(p))
}

fn field_filters(b: Backend) {
    let Some(env) = TestEnv::new(b) else { return };
    let lines = ingest(&env);
    let expect = |pred: &dyn Fn(&Line) -> bool| -> Vec<String> {
        sorted(
            lines
                .iter()
                .filter(|l| pred(l))
                .map(|l| l.k.clone())
                .collect(),
        )
    };
    let num = |path: &str, n: f64| {
        let path = path.to_owned();
        move |l: &Line| at(&l.object, &path).and_then(Value::as_f64) == Some(n)
    };
    let cases: Vec<(Vec<&str>, Vec<String>)> = vec![
        // 500 and 500.0, not "500".
        (vec!["http.status=500"], expect(&num("http.status", 500.0))),
        (
            vec!["http.status=\"500\""],
            expect(&|l| at(&l.object, "http.status") == Some(&json!("500"))),
        ),
        (
            vec!["user.name=ann"],
            expect(&|l| at(&l.object, "user.name") == Some(&json!("ann"))),
        ),
        (vec!["user.id=3"], expect(&num("user.id", 3.0))),
        (
            vec!["ok=true"],
            expect(&|l| l.object.get("ok") == Some(&json!(true))),
        ),
        (
            vec!["ok=false"],
            expect(&|l| l.object.get("ok") == Some(&json!(false))),
        ),
        (
            vec!["ok=null"],
            expect(&|l| l.object.get("ok") == Some(&Value::Null)),
        ),
        (
            vec!["http.path=/p/1"],
            expect(&|l| at(&l.object, "http.path") == Some(&json!("/p/1"))),
        ),
        (vec!["no.such.key=1"], vec![]),
        (
            vec!["http.status=500", "user.name=bob"],
            expect(&|l| {
                num("http.status", 500.0)(l) && at(&l.object, "user.name") == Some(&json!("bob"))
            }),
        ),
    ];
    for (fields, want) in cases {
        let mut args = Vec::new();
        for f in &fields {
            args.extend(["--field", f]);
        }
        assert!(
            !want.is_empty() || fields[0].starts_with("no."),
            "{fields:?}"
        );
        assert_eq!(sorted(keys(&env, &args)), want, "{fields:?}");
        assert_eq!(count(&env, &args), want.len() as i64, "{fields:?}");
    }
    // With --level and --grep.
    let want = expect(&|l| num("http.status", 500.0)(l) && l.level == Some("warn"));
    assert_eq!(
        sorted(keys(
            &env,
            &["--field", "http.status=500", "--level", "warn"]
        )),
        want
    );
    // A bad one: exit 2.
    let out = crate::util::logbelt_command(env.dir.path(), &env.path("bad.stderr"))
        .args(["query", "--field", "http.status", "--config"])
        .arg(env.config_path())
        .status()
        .unwrap();
    assert_eq!(out.code(), Some(2));
}
both_backends!(field_filters);

/// (bucket, level) of a count.
type Group = (Option<String>, Option<String>);

fn counts(b: Backend) {
    let Some(env) = TestEnv::new(b) else { return };
    let lines = ingest(&env);
    assert_eq!(count(&env, &[]), N as i64);
    // By level and hour, as JSON: every (bucket, level) once, NULLs shown as null, first.
    let mut want: BTreeMap<Group, i64> = BTreeMap::new();
    for l in &lines {
        let bucket = l.ts.as_ref().map(|t| format!("{}:00:00.000000Z", &t[..13]));
        *want
            .entry((bucket, l.level.map(str::to_owned)))
            .or_default() += 1;
    }
    let out = ok(
        &env,
        &[
            "query", "--count", "--by", "level", "--bucket", "1h", "--json",
        ],
    );
    let got: Vec<(Group, i64)> = out
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            let s = |k: &str| v[k].as_str().map(str::to_owned);
            ((s("bucket"), s("level")), v["count"].as_i64().unwrap())
        })
        .collect();
    assert_eq!(got, want.into_iter().collect::<Vec<_>>());
    // By source (one), per day, as a table.
    let table = ok(
        &env,
        &["query", "--count", "--by", "source", "--bucket", "1d"],
    );
    let untimed = lines.iter().filter(|l| l.ts.is_none()).count();
    let day = lines[1].ts.as_ref().unwrap()[..10].to_owned();
    assert_eq!(
        table,
        format!(
            "BUCKET                       SOURCE  COUNT\n\
             -                            app     {untimed:>5}\n\
             {day}T00:00:00.000000Z  app     {:>5}\n",
            N - untimed
        )
    );
    // Filters apply: --since counts timed events only.
    let minute = ok(
        &env,
        &[
            "query",
            "--count",
            "--bucket",
            "1m",
            "--since",
            "2000-01-01T00:00:00Z",
            "--json",
        ],
    );
    let total: i64 = minute
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["count"]
                .as_i64()
                .unwrap()
        })
        .sum();
    assert_eq!(total as usize, N - untimed);
}
both_backends!(counts);

fn cursor_pages(b: Backend) {
    let Some(env) = TestEnv::new(b) else { return };
    ingest(&env);
    let all = keys(&env, &[]);
    assert_eq!(all.len(), N);
    let page = |args: &[&str]| -> Vec<Value> {
        let mut a = vec!["query", "--json", "--limit", "23"];
        a.extend_from_slice(args);
        ok(&env, &a)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let cursor = |e: &Value| {
        format!(
            "{},{}",
            e["ts"].as_str().unwrap_or("-"),
            e["id"].as_i64().unwrap()
        )
    };
    let k = |e: &Value| e["fields"]["k"].as_str().unwrap().to_owned();
    // Back from the newest: each page is the one before, oldest first.
    let mut seen: Vec<String> = Vec::new();
    let mut p = page(&[]);
    loop {
        let mut ks: Vec<String> = p.iter().map(k).collect();
        ks.append(&mut seen);
        seen = ks;
        let Some(first) = p.first() else { break };
        let c = cursor(first);
        p = page(&["--before", &c]);
    }
    assert_eq!(seen, all, "pages back with --before");
    // Forward from before the oldest (`-,0`: no timestamp, id 0).
    let mut seen: Vec<String> = Vec::new();
    let mut p = page(&["--after", "-,0"]);
    loop {
        seen.extend(p.iter().map(k));
        let Some(last) = p.last() else { break };
        let c = cursor(last);
        p = page(&["--after", &c]);
    }
    assert_eq!(seen, all, "pages forward with --after");
    // Between two cursors.
    let full = query_json(&env, &["--limit", "100000"]);
    let (lo, hi) = (&full[100], &full[140]);
    let between = keys(&env, &["--after", &cursor(lo), "--before", &cursor(hi)]);
    assert_eq!(between, all[101..140].to_vec());
    // With a filter.
    let errors = keys(&env, &["--level", "error"]);
    let mid = errors.len() / 2;
    let e_full = query_json(&env, &["--limit", "100000", "--level", "error"]);
    assert_eq!(
        keys(
            &env,
            &["--level", "error", "--before", &cursor(&e_full[mid])]
        ),
        errors[..mid].to_vec()
    );
}
both_backends!(cursor_pages);

/// PostgreSQL: the indexes exist after a run by the owner that asks for them (and not after one
/// that does not); a role that may not create them
/// (no CREATE on the database, not the tables' owner) runs, says once what a DBA must run, and
/// its searches scan with the same results.
#[test]
#[cfg_attr(
    not(logbelt_postgres_tests),
    ignore = "PostgreSQL: set LOGBELT_TEST_POSTGRES_URL to run"
)]
fn postgres_without_the_right_to_index() {
    let Some(env) = TestEnv::new(Backend::Postgres) else {
        return;
    };
    env.config().write(&env);
    // Not asked for: no index.
    env.run_once();
    let indexes = |env: &TestEnv| -> Vec<String> {
        env.db
            .load::<Name>(
                "SELECT indexname::text AS s FROM pg_indexes WHERE tablename = 'log_events' \
                 AND indexname IN ('log_events_search', 'log_events_fields') ORDER BY 1",
            )
            .into_iter()
            .map(|n| n.s)
            .collect()
    };
    assert!(indexes(&env).is_empty());
    run_once_indexed(&env);
    assert_eq!(indexes(&env), ["log_events_fields", "log_events_search"]);
    // Gone, and the extension too; a role with only the least-privilege grants.
    env.db.execute(
        "DROP INDEX log_events_search; DROP INDEX log_events_fields; DROP EXTENSION pg_trgm",
    );
    let db_name = env.db.config_url.rsplit('/').next().unwrap().to_string();
    let role = format!("lb_search_{}", db_name.trim_start_matches("logbelt_test_"));
    env.db.execute(&format!(
        "DROP ROLE IF EXISTS {role}; CREATE ROLE {role} LOGIN; \
         GRANT SELECT, INSERT ON log_events, dead_letters, search_blocks TO {role}; \
         GRANT USAGE ON SEQUENCE log_events_id_seq, dead_letters_id_seq, search_blocks_id_seq TO {role}; \
         GRANT SELECT, INSERT, UPDATE, DELETE ON files TO {role}; \
         GRANT SELECT ON __diesel_schema_migrations TO {role}; \
         GRANT SELECT, INSERT, UPDATE ON expiry TO {role};"
    ));
    let drop_role = DropRole(&env, role.clone());
    let (scheme, rest) = env.db.config_url.split_once("://").unwrap();
    let host = rest.split_once('@').map_or(rest, |(_, h)| h);
    let url = format!("{scheme}://{role}@{host}");
    let lines = dataset();
    append_lines(
        &env.log("a.jsonl"),
        &lines.iter().map(|l| l.text.clone()).collect::<Vec<_>>(),
    );
    crate::util::ConfigBuilder::new(&url).write(&env);
    let stderr = run_once_indexed(&env);
    let warned: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("Search index missing"))
        .collect();
    assert_eq!(warned.len(), 1, "{stderr}");
    assert!(
        warned[0].contains("CREATE EXTENSION IF NOT EXISTS pg_trgm;")
            && warned[0].contains("gin_trgm_ops"),
        "{}",
        warned[0]
    );
    assert!(indexes(&env).is_empty());
    for g in ["checkout", "xyzzy-token", "100%_done", "Grüße"] {
        assert_eq!(
            sorted(keys(&env, &["--grep", g])),
            grep_expected(&lines, g),
            "{g}"
        );
    }
    assert_eq!(
        keys(&env, &["--field", "user.id=3"]).len(),
        lines
            .iter()
            .filter(|l| l.object["user"]["id"] == json!(3))
            .count()
    );
    drop(drop_role);
}

#[derive(diesel::QueryableByName)]
struct Name {
    #[diesel(sql_type = diesel::sql_types::Text)]
    s: String,
}

/// Drops the role (and what was granted to it) at the end of the test.
struct DropRole<'a>(&'a TestEnv, String);

impl Drop for DropRole<'_> {
    fn drop(&mut self) {
        self.0.db.execute(&format!(
            "DROP OWNED BY {0}; DROP ROLE IF EXISTS {0}",
            self.1
        ));
    }
}
