//! `logbelt serve` (issue 15): the JSON API on both backends against a known dataset — paging
//! through every event once with cursors, the filters, the histogram's counts, files, dead
//! letters (invalid UTF-8 shown escaped), one-line 400s, the live tail over SSE (only matching
//! rows, in order; a client that stops reading is dropped), the security headers, access (a
//! non-loopback address refused without a token, 401 without the token when there is one),
//! `[web] listen` in `run`, and PostgreSQL connections with a deadline that cannot write.
//! [`browser`]: the page in a real headless Chromium.

mod browser;
mod http;
mod webdriver;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};

use crate::util::{
    append_bytes, append_lines, free_addr, logbelt_command, toml_str, wait_endpoint, wait_until,
    write_config_with, Backend, Daemon, TestEnv, DEADLINE,
};
use http::{get, Sse};

const LEVELS: [&str; 5] = ["info", "info", "warn", "error", "debug"];

/// Lines in the last hour.
const RECENT: usize = 300;
/// Lines five hours before.
const OLD: usize = 20;
/// Lines without a timestamp.
const UNTIMED: usize = 2;

/// One line of the dataset.
pub struct Line {
    pub ts: Option<DateTime<Utc>>,
    pub level: &'static str,
    pub message: String,
    pub status: i64,
    pub json: String,
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// The dataset, written relative to `now`: [`RECENT`] lines ten seconds apart ending at `now`,
/// [`OLD`] five hours earlier, [`UNTIMED`] without `ts`.
pub fn dataset(now: DateTime<Utc>) -> Vec<Line> {
    let mut lines = Vec::new();
    for i in 0..RECENT + OLD + UNTIMED {
        let ts = if i < OLD {
            Some(now - chrono::Duration::hours(5) + chrono::Duration::seconds(i as i64))
        } else if i < OLD + RECENT {
            Some(now - chrono::Duration::seconds(10 * (OLD + RECENT - i) as i64))
        } else {
            None
        };
        let level = LEVELS[i % LEVELS.len()];
        let message = format!("req {i} ok");
        let status = if i % 10 == 0 { 500 } else { 200 };
        let mut obj = json!({
            "level": level,
            "msg": message,
            "http": { "status": status },
            "user": if i % 2 == 0 { "ann" } else { "bob" },
        });
        if let Some(t) = ts {
            obj["ts"] = json!(rfc3339(t));
        }
        lines.push(Line {
            ts,
            level,
            message,
            status,
            json: obj.to_string(),
        });
    }
    lines
}

/// A running `logbelt serve`.
pub struct Served {
    pub daemon: Daemon,
    pub addr: SocketAddr,
}

static SERVES: AtomicUsize = AtomicUsize::new(0);

/// `logbelt serve --config … --listen ADDR` with `vars` set (and no inherited token); with
/// `wait`, waits for `/health` to answer.
pub fn serve(env: &TestEnv, listen: &str, vars: &[(&str, &str)], wait: bool) -> Served {
    let n = SERVES.fetch_add(1, Ordering::SeqCst);
    let stderr = env.path(&format!("serve-{n}.stderr"));
    let mut cmd = logbelt_command(env.dir.path(), &stderr);
    cmd.env_remove("LOGBELT_WEB_TOKEN");
    for (k, v) in vars {
        cmd.env(k, v);
    }
    cmd.arg("serve")
        .arg("--config")
        .arg(env.config_path())
        .args(["--listen", listen]);
    let mut daemon = Daemon::from_command(cmd, &stderr);
    let addr: SocketAddr = listen.parse().expect("a socket address");
    if wait {
        wait_endpoint(addr, &mut daemon);
    }
    Served { daemon, addr }
}

/// A dataset ingested with `run --once`, and `serve` on it.
pub fn served_dataset(b: Backend) -> Option<(TestEnv, Vec<Line>, DateTime<Utc>, Served)> {
    let env = TestEnv::new(b)?;
    env.config().write(&env);
    let now = Utc::now();
    let lines = dataset(now);
    let texts: Vec<String> = lines.iter().map(|l| l.json.clone()).collect();
    append_lines(&env.log("app.jsonl"), &texts);
    append_bytes(&env.log("app.jsonl"), b"\xff\xfe not json \x1b[31m\n");
    env.run_once();
    let s = serve(&env, &free_addr().to_string(), &[], true);
    Some((env, lines, now, s))
}

fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn ok_json(addr: SocketAddr, path: &str) -> Value {
    let r = get(addr, path, &[]);
    assert_eq!(r.status, 200, "GET {path}: {}", r.body);
    r.json()
}

/// Every page of `/api/events?QUERY`, following `next`: the messages, in the order given.
fn all_pages(addr: SocketAddr, query: &str) -> Vec<String> {
    let mut messages = Vec::new();
    let mut next: Option<String> = None;
    for _ in 0..1000 {
        let before = next
            .as_deref()
            .map(|c| format!("&before={}", enc(c)))
            .unwrap_or_default();
        let page = ok_json(addr, &format!("/api/events?{query}{before}"));
        for ev in page["events"].as_array().expect("events") {
            messages.push(ev["message"].as_str().unwrap_or_default().to_owned());
        }
        match page["next"].as_str() {
            Some(c) => next = Some(c.to_owned()),
            None => {
                assert_eq!(page["more"], json!(false));
                return messages;
            }
        }
    }
    panic!("more than 1000 pages");
}

fn api(b: Backend) {
    let Some((env, lines, now, s)) = served_dataset(b) else {
        return;
    };
    let addr = s.addr;
    let since = enc(&rfc3339(now - chrono::Duration::hours(2)));
    let recent = |keep: &dyn Fn(&Line) -> bool| -> Vec<String> {
        // Newest first: the recent lines were written oldest first, one timestamp each.
        lines
            .iter()
            .filter(|l| l.ts.is_some_and(|t| t > now - chrono::Duration::hours(2)))
            .filter(|l| keep(l))
            .rev()
            .map(|l| l.message.clone())
            .collect()
    };

    // Paging: every recent event once, newest first, 7 at a time.
    let pages = all_pages(addr, &format!("since={since}&limit=7"));
    assert_eq!(pages, recent(&|_| true));
    // The shape of an event: `query --json`'s.
    let first = ok_json(addr, &format!("/api/events?since={since}&limit=1"));
    let ev = &first["events"][0];
    for key in [
        "ts",
        "level",
        "message",
        "source",
        "host",
        "file_id",
        "file_offset",
        "id",
        "fields",
    ] {
        assert!(ev.get(key).is_some(), "event without {key}: {ev}");
    }
    assert_eq!(
        ev["fields"]["http"]["status"],
        json!(lines[OLD + RECENT - 1].status)
    );
    assert_eq!(first["more"], json!(true));

    // Filters.
    let by_level = all_pages(addr, &format!("since={since}&level=error,WARN&limit=1000"));
    assert_eq!(
        by_level,
        recent(&|l| l.level == "error" || l.level == "warn")
    );
    let by_text = all_pages(
        addr,
        &format!("since={since}&q={}&limit=1000", enc("REQ 31")),
    );
    assert_eq!(by_text, recent(&|l| l.message.contains("req 31")));
    assert!(!by_text.is_empty());
    let by_field = all_pages(
        addr,
        &format!("field={}&limit=1000", enc("http.status=500")),
    );
    let mut want: Vec<&Line> = lines.iter().filter(|l| l.status == 500).collect();
    // All time: the timed ones newest first, then those without a timestamp (the oldest).
    want.sort_by_key(|l| std::cmp::Reverse(l.ts));
    assert_eq!(
        by_field,
        want.iter().map(|l| l.message.clone()).collect::<Vec<_>>()
    );

    // Histogram: the counts of the range, by level and minute; untimed events apart.
    let h = ok_json(addr, &format!("/api/histogram?since={since}&bucket=1m"));
    assert_eq!(h["bucket"], json!("1m"));
    let mut per_level = std::collections::BTreeMap::<String, i64>::new();
    for bucket in h["buckets"].as_array().expect("buckets") {
        let t = bucket["t"].as_str().expect("t");
        assert!(t.ends_with(":00.000000Z"), "{t}");
        for (lv, n) in bucket["levels"].as_object().expect("levels") {
            *per_level.entry(lv.clone()).or_default() += n.as_i64().expect("a count");
        }
    }
    for lv in ["info", "warn", "error", "debug"] {
        let want = recent(&|l| l.level == lv).len() as i64;
        assert_eq!(per_level.get(lv).copied().unwrap_or(0), want, "{lv}");
    }
    let all = ok_json(addr, "/api/histogram");
    assert_eq!(all["bucket"], json!("1d"));
    assert_eq!(all["untimed"], json!(UNTIMED));

    // Files and dead letters.
    let files = ok_json(addr, "/api/files");
    assert_eq!(files["totals"]["log_events"], json!(lines.len()));
    assert_eq!(files["files"][0]["lag"], json!(0));
    let dead = ok_json(addr, "/api/dead_letters");
    let raw = dead["dead_letters"][0]["raw"].as_str().expect("raw");
    assert_eq!(raw, "\\xFF\\xFE not json \u{1b}[31m");

    // Bad parameters: 400 and one line of JSON.
    for (path, want) in [
        ("/api/events?since=yesterday", "since: expected a duration"),
        (
            "/api/events?limit=100000",
            "limit: expected a number from 1 to 1000",
        ),
        ("/api/events?sort=asc", "unknown parameter \"sort\""),
        ("/api/events?since=1h&until=2h", "since"),
        (
            "/api/histogram?bucket=5m",
            "bucket: expected 1m, 1h, 1d or auto",
        ),
        ("/api/histogram?before=x", "unknown parameter"),
        (
            "/api/dead_letters?before=x",
            "before: expected a dead letter id",
        ),
        ("/api/tail?since=1h", "a tail is of new events"),
    ] {
        let r = get(addr, path, &[]);
        assert_eq!(r.status, 400, "{path}: {}", r.body);
        let e = r.json()["error"].as_str().expect("error").to_owned();
        assert!(e.contains(want) && !e.contains('\n'), "{path}: {e}");
    }

    // Every answer carries the CSP; the page and its script are served.
    let page = get(addr, "/", &[]);
    assert_eq!(page.status, 200);
    let csp = page.header("content-security-policy").expect("a CSP");
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe"),
        "{csp}"
    );
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
    assert!(page.body.contains("<script src=\"/app.js\""));
    assert_eq!(get(addr, "/app.js", &[]).status, 200);

    // Live tail: only matching events, in commit order, from a running `logbelt run`.
    let mut run = env.start();
    let mut tail = Sse::open(addr, "/api/tail?level=error", &[]);
    assert_eq!(tail.status, 200);
    let tailed = [
        json!({"level": "error", "msg": "tail-a"}),
        json!({"level": "info", "msg": "tail-b"}),
        json!({"level": "error", "msg": "tail-c"}),
    ];
    append_lines(
        &env.log("app.jsonl"),
        &tailed.iter().map(Value::to_string).collect::<Vec<_>>(),
    );
    let got = tail
        .read_until(DEADLINE, |d| d.iter().any(|x| x.contains("tail-c")))
        .unwrap_or_else(|| {
            run.assert_running();
            panic!("tail-c never arrived over /api/tail")
        });
    let messages: Vec<String> = got
        .iter()
        .map(|d| {
            let v: Value = serde_json::from_str(d).expect("an event");
            v["message"].as_str().unwrap_or_default().to_owned()
        })
        .collect();
    assert_eq!(messages, ["tail-a", "tail-c"]);
    run.sigint();
    run.assert_exit_ok();
}
both_backends!(api);

/// No database yet: exit 1, nothing created. A non-loopback address without a token: refused
/// at start, one line, exit 2. With a token: `/api/` needs it, `/health` and the page do not.
#[test]
fn access() {
    let Some(env) = TestEnv::new(Backend::Sqlite) else {
        return;
    };
    env.config().write(&env);
    // No database yet: `serve` never creates one.
    let mut early = serve(&env, &free_addr().to_string(), &[], false);
    assert_eq!(early.daemon.wait_exit(DEADLINE).code(), Some(1));
    assert!(
        early.daemon.stderr().contains("does not exist yet"),
        "{}",
        early.daemon.stderr()
    );
    assert!(!env.path("logbelt.db").exists());

    append_lines(&env.log("app.jsonl"), &["{\"msg\":\"x\"}".to_owned()]);
    env.run_once();

    let port = free_addr().port();
    let mut open = serve(&env, &format!("0.0.0.0:{port}"), &[], false);
    let status = open.daemon.wait_exit(DEADLINE);
    assert_eq!(status.code(), Some(2));
    let err = open.daemon.stderr();
    let line = err
        .lines()
        .find(|l| l.starts_with("logbelt: "))
        .expect("an error line");
    assert!(
        line.contains("not a loopback address") && line.contains("LOGBELT_WEB_TOKEN"),
        "{err}"
    );

    let token = "s3cret-token-0123456789";
    let s = serve(
        &env,
        &free_addr().to_string(),
        &[("LOGBELT_WEB_TOKEN", token)],
        true,
    );
    let r = get(s.addr, "/api/events", &[]);
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(r.json()["error"]
        .as_str()
        .unwrap_or_default()
        .contains("Bearer"));
    let wrong = get(
        s.addr,
        "/api/events",
        &[("Authorization", "Bearer s3cret-token-012345678X")],
    );
    assert_eq!(wrong.status, 401);
    let bearer = format!("Bearer {token}");
    let r = get(s.addr, "/api/events", &[("Authorization", &bearer)]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["events"][0]["message"], json!("x"));
    assert_eq!(get(s.addr, "/health", &[]).status, 200);
    assert_eq!(get(s.addr, "/", &[]).status, 200);

    // SIGINT stops it, with a tail stream open: exit 0.
    let mut s = s;
    let tail = Sse::open(s.addr, "/api/tail", &[("Authorization", &bearer)]);
    assert_eq!(tail.status, 200);
    s.daemon.sigint();
    assert_eq!(
        s.daemon.wait_exit(DEADLINE).code(),
        Some(0),
        "{}",
        s.daemon.stderr()
    );
}

/// The deadline of a test that waits on the page.
pub const PAGE_DEADLINE: Duration = DEADLINE;

/// A tail client that stops reading is dropped (its stream ends), not buffered for: 100,000
/// matching lines are committed while it reads nothing.
#[test]
fn a_slow_tail_client_is_dropped() {
    let Some(env) = TestEnv::new(Backend::Sqlite) else {
        return;
    };
    env.config().write(&env);
    append_lines(&env.log("app.jsonl"), &["{\"msg\":\"start\"}".to_owned()]);
    env.run_once();
    let mut s = serve(&env, &free_addr().to_string(), &[], true);
    let mut tail = Sse::open(s.addr, "/api/tail", &[]);
    assert_eq!(tail.status, 200);
    let mut run = env.start();
    let lines: Vec<String> = (0..100_000)
        .map(|i| {
            json!({"level": "info", "msg": format!("flood {i}"), "pad": "x".repeat(200)})
                .to_string()
        })
        .collect();
    append_lines(&env.log("app.jsonl"), &lines);
    s.daemon.wait_for_log("dropping a live-tail client");
    // The stream ends without the last line.
    let got = tail.read_until(DEADLINE, |_| false).unwrap_or_default();
    assert!(tail.ended(), "the stream did not end");
    assert!(
        !got.iter().any(|d| d.contains("flood 99999")),
        "{} events",
        got.len()
    );
    run.sigint();
    run.assert_exit_ok();
}

/// `[web] listen` makes `run` serve the console too; SIGINT still drains `run`. A non-loopback
/// address without a token stops `run` at start (exit 2).
#[test]
fn run_serves_the_console_with_web_listen() {
    let Some(env) = TestEnv::new(Backend::Sqlite) else {
        return;
    };
    let addr = free_addr();
    write_config_with(
        &env,
        &env.config(),
        &[("web", "listen", toml_str(&addr.to_string()))],
    );
    append_lines(
        &env.log("app.jsonl"),
        &["{\"msg\":\"served by run\"}".to_owned()],
    );
    let mut run = env.start();
    wait_endpoint(addr, &mut run);
    wait_until("the line through /api/events", DEADLINE, || {
        let r = get(addr, "/api/events", &[]);
        r.status == 200 && r.json()["events"][0]["message"] == json!("served by run")
    });
    run.sigint();
    run.assert_exit_ok();

    let open = format!("0.0.0.0:{}", free_addr().port());
    write_config_with(&env, &env.config(), &[("web", "listen", toml_str(&open))]);
    let mut refused = env.start();
    assert_eq!(refused.wait_exit(DEADLINE).code(), Some(2));
    assert!(
        refused.stderr().contains("not a loopback address"),
        "{}",
        refused.stderr()
    );
}

/// PostgreSQL: every connection `serve` opens stops a statement at the deadline and refuses to
/// write (both set by the URL's `options`).
#[test]
#[cfg_attr(
    not(logbelt_postgres_tests),
    ignore = "PostgreSQL: set LOGBELT_TEST_POSTGRES_URL to run"
)]
fn pg_connections_have_a_deadline_and_cannot_write() {
    use diesel::{Connection, RunQueryDsl};
    let Some(env) = TestEnv::new(Backend::Postgres) else {
        return;
    };
    let url = logbelt::web::bounds::pg_url(&env.db.config_url, Duration::from_millis(50));
    let mut c = diesel::pg::PgConnection::establish(&url).expect("connect with the options");
    let e = diesel::sql_query("SELECT pg_sleep(5)")
        .execute(&mut c)
        .expect_err("the deadline");
    assert!(e.to_string().contains("statement timeout"), "{e}");
    let e = diesel::sql_query("CREATE TABLE t (x int)")
        .execute(&mut c)
        .expect_err("read-only");
    assert!(e.to_string().contains("read-only transaction"), "{e}");
}
