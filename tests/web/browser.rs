//! The page in a real headless Chromium (through chromedriver; skipped with a reason when it is
//! missing, failing when `LOGBELT_REQUIRE_CHROMIUM=1`): load, `/` focuses the search, search,
//! hostile lines rendered as text without running, a level toggle, zoom by dragging over the
//! histogram, an event's JSON, and a line appended to a tailed file arriving through live tail.
//! With `LOGBELT_WEB_SCREENSHOT=PATH` the main view is saved there as a PNG (the README's).

use std::time::Instant;

use chrono::Duration as ChronoDuration;
use serde_json::{json, Value};

use super::webdriver::Browser;
use super::{dataset, serve, Line, PAGE_DEADLINE};
use crate::util::{append_bytes, append_lines, free_addr, wait_until, Backend, TestEnv, DEADLINE};

/// The number of rows once the page has finished loading (`false` while it loads).
const LOADED: &str = "return document.body.dataset.loading === '0' \
                      && document.getElementById('events').childElementCount";

/// Every row's text (the message span), in order.
const TEXTS: &str = "return Array.from(document.querySelectorAll('#events li .msg > .text'))\
                     .map(e => e.textContent)";

fn search(b: &Browser, text: &str) {
    b.clear("#q");
    b.type_into("#q", &format!("{text}\u{E007}"));
}

/// Waits for the list to hold `n` rows with the search `q` applied, and returns their texts.
fn rows(b: &Browser, what: &str, n: usize) -> Vec<String> {
    b.wait_for(
        what,
        PAGE_DEADLINE,
        &format!(
            "return document.body.dataset.loading === '0' \
             && document.getElementById('events').childElementCount === {n}"
        ),
    );
    serde_json::from_value(b.js(TEXTS, json!([]))).expect("texts")
}

#[test]
fn page_in_chromium() {
    let Some(b) = Browser::start() else {
        return;
    };
    let Some(env) = TestEnv::new(Backend::Sqlite) else {
        return;
    };
    env.config().write(&env);
    let now = chrono::Utc::now();
    let mut lines: Vec<Line> = dataset(now);
    let hostile_at = now - ChronoDuration::minutes(45);
    let hostile_ts = hostile_at.to_rfc3339();
    let big = format!("big-line {}END", "A".repeat(1_000_000));
    let hostile = [
        (
            "error",
            "<script>window.__pwned='script'</script>".to_owned(),
        ),
        (
            "error",
            "<img src=x onerror=\"window.__pwned='img'\">".to_owned(),
        ),
        (
            "warn",
            "<a href=\"javascript:window.__pwned='link'\">__pwned link</a>".to_owned(),
        ),
        ("info", "\u{1b}[31mred\u{1b}[0m ansi-line".to_owned()),
        ("info", big.clone()),
    ];
    for (level, msg) in &hostile {
        lines.push(Line {
            ts: Some(hostile_at),
            level,
            message: msg.clone(),
            status: 200,
            json: json!({"ts": hostile_ts, "level": level, "msg": msg}).to_string(),
        });
    }
    let texts: Vec<String> = lines.iter().map(|l| l.json.clone()).collect();
    append_lines(&env.log("app.jsonl"), &texts);
    append_bytes(
        &env.log("app.jsonl"),
        b"<img src=x onerror=\"window.__pwned='dead'\"> \xff\xfe\n",
    );
    let mut run = env.start();
    run.wait_started();
    wait_until("every line stored", DEADLINE, || {
        run.assert_running();
        env.db.events_count() == lines.len() as i64
    });
    let s = serve(&env, &free_addr().to_string(), &[], true);
    let base = format!("http://{}", s.addr);

    // The main view: the last hour, newest first, a histogram.
    b.goto(&format!("{base}/?range=1h"));
    let n = b.wait_for("the first page of events", PAGE_DEADLINE, LOADED);
    assert_eq!(n, json!(100));
    b.wait_for(
        "the histogram",
        PAGE_DEADLINE,
        "return Number(document.getElementById('hist').dataset.buckets || 0) > 0",
    );
    let first: Vec<String> = serde_json::from_value(b.js(TEXTS, json!([]))).expect("texts");
    assert_eq!(first[0], lines[super::OLD + super::RECENT - 1].message);
    if let Ok(path) = std::env::var("LOGBELT_WEB_SCREENSHOT") {
        std::fs::write(&path, b.screenshot()).expect("write the screenshot");
    }

    // Infinite scroll: the next page comes when the end of the list is reached.
    b.js("window.scrollTo(0, document.body.scrollHeight)", json!([]));
    b.wait_for(
        "the second page",
        PAGE_DEADLINE,
        "return document.getElementById('events').childElementCount === 200",
    );

    // A field value under a message becomes a filter (and goes into the URL).
    b.click("#events li:first-child .kv");
    let url = b.wait_for(
        "the field filter",
        PAGE_DEADLINE,
        "return document.body.dataset.loading === '0' && location.search.includes('field=') \
         && location.search",
    );
    let chip = b.js(
        "return document.getElementById('chips').textContent",
        json!([]),
    );
    assert!(
        chip.as_str()
            .unwrap_or_default()
            .contains("http.status=200"),
        "{chip} {url}"
    );
    b.click("#chips button");
    b.wait_for(
        "the filter removed",
        PAGE_DEADLINE,
        "return document.body.dataset.loading === '0' && !location.search.includes('field=')",
    );

    // Files and dead letters (the dead letter's bytes as text, nothing run).
    search(&b, "req 2");
    b.wait_for(
        "the search",
        PAGE_DEADLINE,
        "return location.search.includes('q=req+2')",
    );
    b.click("#nav-files");
    let files = b.wait_for(
        "the files table",
        PAGE_DEADLINE,
        "return document.querySelector('#files-table tbody td:nth-child(3)')?.textContent",
    );
    assert_eq!(files, json!(env.log("app.jsonl").display().to_string()));
    b.click("#nav-dead");
    let dead = b.wait_for(
        "the dead letter",
        PAGE_DEADLINE,
        "return document.querySelector('#dead-list li .text')?.textContent",
    );
    assert_eq!(
        dead,
        json!("<img src=x onerror=\"window.__pwned='dead'\"> \\xFF\\xFE")
    );
    assert_eq!(
        b.js(
            "return document.querySelectorAll('#dead-list img').length",
            json!([])
        ),
        json!(0)
    );
    // Back to the events: the filters they had are kept.
    b.click("#nav-events");
    b.wait_for("the events again", PAGE_DEADLINE, LOADED);
    let url = b.js("return location.search", json!([]));
    assert!(
        url.as_str().unwrap_or_default().contains("q=req+2"),
        "{url}"
    );
    assert_eq!(
        b.js("return document.getElementById('q').value", json!([])),
        json!("req 2")
    );

    // `/` focuses the search box.
    b.js("document.activeElement.blur()", json!([]));
    b.press("/");
    assert_eq!(
        b.js("return document.activeElement.id", json!([])),
        json!("q")
    );

    // Search.
    search(&b, "req 31");
    let found = rows(&b, "the rows of `req 31`", 11);
    assert!(found.iter().all(|t| t.contains("req 31")), "{found:?}");
    let url = b.js("return location.search", json!([]));
    assert!(
        url.as_str().unwrap_or_default().contains("q=req+31"),
        "{url}"
    );

    // Hostile lines: shown as text, nothing runs, no element made of them.
    search(&b, "__pwned");
    let found = rows(&b, "the hostile rows", 3);
    for (_, msg) in &hostile[..3] {
        assert!(found.contains(msg), "{msg} not shown as text in {found:?}");
    }
    let made = b.js(
        "return document.querySelectorAll('#events img, #events script, #events a, #events iframe').length",
        json!([]),
    );
    assert_eq!(made, json!(0));
    for i in 0..3 {
        // Clicking the rows (a link would be followed here) runs nothing either.
        b.click(&format!("#events li:nth-child({}) .msg", i + 1));
        b.click("#close");
    }
    assert_eq!(
        b.js("return window.__pwned === undefined", json!([])),
        json!(true)
    );
    search(&b, "ansi-line");
    assert_eq!(
        rows(&b, "the ANSI row", 1),
        ["\u{241b}[31mred\u{241b}[0m ansi-line"]
    );
    search(&b, "big-line");
    let shown = rows(&b, "the 1 MB row", 1);
    assert!(
        shown[0].len() < 3_000 && shown[0].contains("show all"),
        "{} chars",
        shown[0].len()
    );
    b.click("#events .show-all");
    let full: Vec<String> = serde_json::from_value(b.js(TEXTS, json!([]))).expect("texts");
    assert_eq!(full[0], big);

    // A level toggle: only errors (the recent ones and two hostile ones).
    search(&b, "");
    b.click("button[data-level=error]");
    let errors = lines
        .iter()
        .filter(|l| l.level == "error" && l.ts > Some(now - ChronoDuration::hours(1)))
        .count();
    rows(&b, "only errors", errors);
    let levels = b.js(
        "return Array.from(document.querySelectorAll('#events .lv')).every(e => e.textContent === 'error')",
        json!([]),
    );
    assert_eq!(levels, json!(true));

    // Zoom: a drag over the histogram selects a range; the rows shown are inside it.
    b.drag("#hist", -300, -100);
    b.wait_for(
        "the zoomed range",
        PAGE_DEADLINE,
        "return document.getElementById('range').value === 'custom' \
         && document.body.dataset.loading === '0' && location.search.includes('until=')",
    );
    let zoomed = b.js(
        "const s = Date.parse(document.getElementById('since').value), \
               u = Date.parse(document.getElementById('until').value); \
         const ts = Array.from(document.querySelectorAll('#events li')).map(li => \
               Date.parse(li.dataset.cursor.split(',')[0])); \
         return { n: ts.length, inside: ts.every(t => t >= s - 1 && t < u), span: u - s }",
        json!([]),
    );
    let n = zoomed["n"].as_u64().unwrap_or(0);
    assert!(n > 0 && n < errors as u64, "{zoomed}");
    assert_eq!(zoomed["inside"], json!(true), "{zoomed}");

    // An event's whole JSON, and the copy button.
    let id = b.js(
        "return document.querySelector('#events li').dataset.id",
        json!([]),
    );
    b.click("#events li .ts");
    b.wait_for(
        "the detail",
        PAGE_DEADLINE,
        "return document.getElementById('detail').open",
    );
    let detail: Value = serde_json::from_str(
        b.js(
            "return document.getElementById('detail-json').textContent",
            json!([]),
        )
        .as_str()
        .unwrap_or_default(),
    )
    .expect("the detail is JSON");
    assert_eq!(json!(detail["id"].to_string()), id);
    assert_eq!(detail["level"], json!("error"));
    b.click("#copy");
    b.wait_for(
        "the copy note",
        PAGE_DEADLINE,
        "return document.getElementById('copied').textContent",
    );
    b.click("#close");

    // Live tail: a line appended to the tailed file shows up on top.
    b.goto(&format!("{base}/?range=15m"));
    b.wait_for("the page", PAGE_DEADLINE, LOADED);
    b.click("#live");
    b.wait_for(
        "the tail stream",
        PAGE_DEADLINE,
        "return document.getElementById('live').dataset.open === '1'",
    );
    let written = Instant::now();
    append_lines(
        &env.log("app.jsonl"),
        &[json!({"level": "warn", "msg": "live-marker"}).to_string()],
    );
    b.wait_for(
        "the appended line",
        PAGE_DEADLINE,
        "const t = document.querySelector('#events li .msg > .text'); \
         return t !== null && t.textContent === 'live-marker'",
    );
    eprintln!(
        "live tail: the line was on the page {:?} after it was written",
        written.elapsed()
    );
    assert!(b
        .js("return location.search", json!([]))
        .as_str()
        .unwrap_or_default()
        .contains("live=1"));
    run.assert_running();

    // A server with a token: the page asks once, then keeps it for the tab.
    let token = "browser-token-0123456789";
    let locked = serve(
        &env,
        &free_addr().to_string(),
        &[("LOGBELT_WEB_TOKEN", token)],
        true,
    );
    let url = format!("http://{}/?range=1h", locked.addr);
    b.goto(&url);
    b.wait_for(
        "the token prompt",
        PAGE_DEADLINE,
        "return !document.getElementById('token-box').hidden",
    );
    b.type_into("#token-input", &format!("{token}\u{E007}"));
    assert_eq!(
        b.wait_for("events with the token", PAGE_DEADLINE, LOADED),
        json!(100)
    );
    b.goto(&url);
    assert_eq!(
        b.wait_for("events after a reload", PAGE_DEADLINE, LOADED),
        json!(100)
    );
    assert_eq!(
        b.js(
            "return document.getElementById('token-box').hidden",
            json!([])
        ),
        json!(true)
    );
}
