//! The `[metrics]` endpoint (README "Monitoring"): exact counters after a known input, and
//! backpressure observed through them — with the database's writes blocked, reading stops
//! after what the bounded queues can hold (ARCHITECTURE.md §1 "Bounded memory", §2).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use diesel::sql_types::BigInt;
use diesel::QueryableByName;

use crate::util::{
    append_bytes, free_addr, health, json_lines, scrape, toml_str, wait_endpoint,
    write_config_with, Backend, Scrape, TestDb, TestEnv, Written, DEADLINE,
};

/// `[metrics] listen = addr`.
fn listen(addr: std::net::SocketAddr) -> (&'static str, &'static str, String) {
    ("metrics", "listen", toml_str(&addr.to_string()))
}

/// Scrapes until `cond` holds on a scrape; returns that scrape. Fails at the deadline with the
/// last page.
fn wait_scrape(
    addr: std::net::SocketAddr,
    what: &str,
    mut cond: impl FnMut(&Scrape) -> bool,
) -> Scrape {
    let mut last = None;
    let start = Instant::now();
    loop {
        let m = scrape(addr);
        if cond(&m) {
            return m;
        }
        if start.elapsed() > DEADLINE {
            panic!(
                "timed out waiting for {what}; last /metrics:\n{}",
                last.map(|m: Scrape| m.text).unwrap_or_default()
            );
        }
        last = Some(m);
        std::thread::sleep(Duration::from_millis(100));
    }
}

// ---------------------------------------------------------------------------------------------
// Exact counters
// ---------------------------------------------------------------------------------------------

/// `parse.max_line_bytes` for the counters test: small, so that a too-long line is cheap.
const MAX_LINE: usize = 256;

/// Writes the known input: 100 good lines, 2 invalid JSON, 1 not an object, 1 too long, 3 empty
/// lines, over two files. Returns the good lines' model.
fn write_known_input(env: &TestEnv) -> Written {
    let mut w = Written::new();
    let a = env.log("a.jsonl");
    let b = env.log("b.jsonl");
    w.append(&a, &json_lines("a", 0, 30));
    append_bytes(&a, b"\n"); // empty
    append_bytes(&a, b"{\"msg\": \"cut\"\n"); // invalid JSON
    w.append(&a, &json_lines("a", 30, 30));
    append_bytes(&a, b"\r\n"); // empty (CRLF)

    w.append(&b, &json_lines("b", 0, 20));
    append_bytes(&b, b"[1, 2, 3]\n"); // not an object
    append_bytes(&b, b"not json at all\n"); // invalid JSON
    let long = format!(r#"{{"msg":"long","pad":"{}"}}"#, "y".repeat(3 * MAX_LINE));
    append_bytes(&b, format!("{long}\n").as_bytes()); // too long
    append_bytes(&b, b"\n"); // empty
    w.append(&b, &json_lines("b", 20, 20));
    w
}

both_backends!(metrics_count_exactly_what_was_read_and_stored);
fn metrics_count_exactly_what_was_read_and_stored(b: Backend) {
    let Some(env) = TestEnv::new(b) else { return };
    let addr = free_addr();
    let mut cfg = env.config();
    cfg.max_line_bytes = MAX_LINE as u64;
    write_config_with(&env, &cfg, &[listen(addr)]);
    let w = write_known_input(&env);
    let (good, dead, empty) = (100.0, 4.0, 3.0);
    assert_eq!(w.total(), 100);

    let mut d = env.start();
    d.wait_started();
    wait_endpoint(addr, &mut d);
    env.db.wait_rows(104, Some(&mut d));
    // The counters move right after the commit that the rows show; the lag gauges right after
    // the counters; queue depths are sampled once a second.
    let m = wait_scrape(addr, "the counters of every committed row, lag 0", |m| {
        let lags = m.all("logbelt_file_lag_bytes");
        m.counter("logbelt_rows_written_total", &[]) >= good
            && m.sum("logbelt_dead_letters_total") >= dead
            && lags.len() >= 2
            && lags.iter().all(|s| s.value == 0.0)
            && m.all("logbelt_queue_depth").len() == 4
            && m.sum("logbelt_queue_depth") == 0.0
    });
    let t = &m.text;
    let src = [("source", "app")];
    assert_eq!(
        m.get("logbelt_lines_read_total", &src),
        Some(good + dead + empty),
        "lines read (empty ones included)\n{t}"
    );
    let size = |p: &std::path::Path| std::fs::metadata(p).unwrap().len() as f64;
    let (a, bf) = (env.log("a.jsonl"), env.log("b.jsonl"));
    assert_eq!(
        m.get("logbelt_bytes_read_total", &src),
        Some(size(&a) + size(&bf)),
        "bytes read\n{t}"
    );
    assert_eq!(
        m.get("logbelt_rows_written_total", &[]),
        Some(good),
        "rows written\n{t}"
    );
    for (reason, n) in [
        ("invalid_json", 2.0),
        ("not_an_object", 1.0),
        ("too_long", 1.0),
    ] {
        assert_eq!(
            m.get("logbelt_dead_letters_total", &[("reason", reason)]),
            Some(n),
            "dead letters {reason}\n{t}"
        );
    }
    assert_eq!(
        m.sum("logbelt_dead_letters_total"),
        dead,
        "dead letters of all reasons\n{t}"
    );
    assert_eq!(m.get("logbelt_files_tailed", &[]), Some(2.0), "files\n{t}");
    for p in [&a, &bf] {
        let path = p.display().to_string();
        assert_eq!(
            m.get("logbelt_file_lag_bytes", &[("path", &path)]),
            Some(0.0),
            "lag of {path}\n{t}"
        );
    }
    assert_eq!(m.all("logbelt_file_lag_bytes").len(), 2, "lag gauges\n{t}");
    assert_eq!(m.get("logbelt_up", &[]), Some(1.0), "logbelt_up\n{t}");
    assert_eq!(m.sum("logbelt_restarts_total"), 0.0, "restarts\n{t}");
    let batches = m.counter("logbelt_batches_committed_total", &[]);
    assert!(batches >= 1.0, "batches committed\n{t}");
    assert_eq!(
        m.get("logbelt_commit_duration_seconds_count", &[]),
        Some(batches),
        "one commit latency per batch\n{t}"
    );
    assert_eq!(health(addr), 200, "/health");

    // The tables agree.
    assert_eq!(env.db.events_count(), 100, "log_events");
    assert_eq!(env.db.dead_count(), 4, "dead_letters");
    let mut reasons: BTreeMap<&str, usize> = BTreeMap::new();
    let dls = env.db.dead_letters();
    for dl in &dls {
        let kind = if dl.error.starts_with("invalid JSON") {
            "invalid_json"
        } else if dl.error.starts_with("not a JSON object") {
            "not_an_object"
        } else if dl.error.starts_with("line of") {
            "too_long"
        } else {
            "other"
        };
        *reasons.entry(kind).or_default() += 1;
    }
    assert_eq!(
        reasons,
        BTreeMap::from([("invalid_json", 2), ("not_an_object", 1), ("too_long", 1)]),
        "{dls:?}"
    );

    d.sigint();
    d.assert_exit_ok();
}

/// A logbelt with the endpoint on that has committed 10 good lines, and its page once the
/// commit is counted.
fn clean_run(env: &TestEnv) -> (crate::util::Daemon, Scrape) {
    let addr = free_addr();
    write_config_with(env, &env.config(), &[listen(addr)]);
    let mut w = Written::new();
    w.append(&env.log("a.jsonl"), &json_lines("a", 0, 10));
    let mut d = env.start();
    d.wait_started();
    wait_endpoint(addr, &mut d);
    env.db.wait_rows(10, Some(&mut d));
    let m = wait_scrape(addr, "the commit counted", |m| {
        m.counter("logbelt_rows_written_total", &[]) >= 10.0
    });
    (d, m)
}

both_backends!(restart_counters_are_rendered_at_zero);
/// README "Monitoring": a clean run's page shows `logbelt_restarts_total{stage="parser"} 0`
/// (a counter that alerting can `increase()` over from the start).
fn restart_counters_are_rendered_at_zero(b: Backend) {
    let Some(env) = TestEnv::new(b) else { return };
    let (mut d, m) = clean_run(&env);
    assert_eq!(
        m.get("logbelt_restarts_total", &[("stage", "parser")]),
        Some(0.0),
        "logbelt_restarts_total{{stage=\"parser\"}}\n{}",
        m.text
    );
    d.sigint();
    d.assert_exit_ok();
}

both_backends!(dead_letter_counters_are_rendered_at_zero_before_any_dead_letter);
/// Issue 10 §4: every counter exists from the start — `logbelt_dead_letters_total` has a series
/// at 0 for each reason before any dead letter, so that `increase()` and alerts work from 0.
fn dead_letter_counters_are_rendered_at_zero_before_any_dead_letter(b: Backend) {
    let Some(env) = TestEnv::new(b) else { return };
    let (mut d, m) = clean_run(&env);
    assert_eq!(env.db.dead_count(), 0, "no dead letter in this input");
    for reason in [
        "invalid_utf8",
        "invalid_json",
        "not_an_object",
        "too_long",
        "refused_by_database",
        "no_match",
    ] {
        assert_eq!(
            m.get("logbelt_dead_letters_total", &[("reason", reason)]),
            Some(0.0),
            "logbelt_dead_letters_total{{reason=\"{reason}\"}} before any dead letter\n{}",
            m.text
        );
    }
    assert!(
        m.text.contains("# HELP logbelt_dead_letters_total"),
        "described\n{}",
        m.text
    );
    d.sigint();
    d.assert_exit_ok();
}

// ---------------------------------------------------------------------------------------------
// Backpressure: a blocked database stops reading
// ---------------------------------------------------------------------------------------------

/// Lines of the large file.
const BIG: usize = 200_000;

/// Most lines that logbelt may read past what is committed while commits are blocked, with
/// `small_batches()` (batch_rows = 500, channel_capacity = 2, mailbox_capacity = 2) and one file
/// being read. Counting the batches that can exist at once (src/tail, src/actors,
/// src/supervisor.rs):
///
/// - the tail task: 1, counted as read (`lines_read` counts before `send`) and waiting in `send`
///   on the full bridge;
/// - the bridge (tokio mpsc): channel_capacity = 2;
/// - the reader: 1, taken from the bridge, waiting for a window permit to the parser;
/// - the parser: its window/mailbox, mailbox_capacity = 2, plus 1 it holds while it waits for a
///   permit to the writer;
/// - the writer: its window/mailbox, mailbox_capacity = 2, plus 1 transaction being handed
///   over, waiting for room in the committer's queue (a batch of batch_rows lines is a
///   transaction of its own: the writer hands over as soon as it has batch_rows rows);
/// - per committer: 1 transaction queued and 1 committing (blocked on the lock). One file's
///   batches all go to one committer; count PostgreSQL's 2 (`writers` default) anyway.
///
/// That is 1 + 2 + 1 + 3 + 3 + 2 × 2 = 14 batches. A batch holds at most batch_rows = 500
/// lines (and at most 64 KiB of line bytes), so 14 × 500 = 7,000 lines. Tripled for slack:
/// 21,000. (Today's batches run over batch_rows — see
/// `a_transaction_holds_at_most_batch_rows_rows` — and the plateau is some 12 batches of ~770
/// lines, ~9,500 lines; the slack covers that.) Far below the 200,000 lines of the file, so a
/// reader that did not stop would show.
const READ_AHEAD_BOUND: f64 = 21_000.0;

#[derive(QueryableByName, Debug)]
struct IdRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = BigInt)]
    file_id: i64,
    #[diesel(sql_type = BigInt)]
    file_offset: i64,
}

/// Asserts that within each file, rows were inserted in file order: `file_offset` increases
/// with `id`.
pub fn assert_file_order(db: &TestDb) {
    let rows: Vec<IdRow> = db.load("SELECT id, file_id, file_offset FROM log_events ORDER BY id");
    let mut last: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
    for r in &rows {
        if let Some((id, off)) = last.get(&r.file_id) {
            assert!(
                r.file_offset > *off,
                "file {}: row id {} at offset {} comes after row id {id} at offset {off}",
                r.file_id,
                r.id,
                r.file_offset
            );
        }
        last.insert(r.file_id, (r.id, r.file_offset));
    }
}

both_backends!(a_blocked_database_stops_reading_within_the_queue_bounds);
fn a_blocked_database_stops_reading_within_the_queue_bounds(b: Backend) {
    let Some(env) = TestEnv::new(b) else { return };
    let addr = free_addr();
    let mut cfg = env.config().small_batches();
    if b == Backend::Sqlite {
        // Fail fast on the lock: the commit is retried (and logged) while the lock is held.
        cfg.database_extra
            .push(("busy_timeout_ms".into(), "100".into()));
    }
    write_config_with(&env, &cfg, &[listen(addr)]);
    let mut w = Written::new();
    w.append(&env.log("a.jsonl"), &json_lines("a", 0, 100));
    let mut d = env.start();
    d.wait_started();
    wait_endpoint(addr, &mut d);
    env.db.wait_rows(100, Some(&mut d));
    let src = [("source", "app")];
    let before = wait_scrape(addr, "100 lines read", |m| {
        m.counter("logbelt_lines_read_total", &src) == 100.0
    })
    .counter("logbelt_lines_read_total", &src);

    let block = env.db.block_writes();
    let started = Instant::now();
    w.append(&env.log("big.jsonl"), &json_lines("big", 0, BIG));
    env.db.wait_commit_blocked(&mut d);

    // Wait until reading has stopped: the counter unchanged over 2 s of scrapes.
    let mut history: Vec<f64> = Vec::new();
    let mut stable_since = Instant::now();
    let plateau = loop {
        d.assert_running();
        let read = scrape(addr).counter("logbelt_lines_read_total", &src) - before;
        if history.last() != Some(&read) {
            stable_since = Instant::now();
            history.push(read);
        }
        assert!(
            read <= READ_AHEAD_BOUND,
            "{read} lines read past the committed ones while commits are blocked (bound \
             {READ_AHEAD_BOUND}): reading does not stop; history {history:?}"
        );
        if read > 0.0 && stable_since.elapsed() >= Duration::from_secs(2) {
            break read;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "reading never settled: {history:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let m = scrape(addr);
    eprintln!(
        "reading stopped at {plateau} lines, {} bytes, after {:?}; queue depths {:?}",
        m.counter("logbelt_bytes_read_total", &src),
        started.elapsed(),
        m.all("logbelt_queue_depth")
            .iter()
            .map(|s| (s.labels[0].1.clone(), s.value))
            .collect::<Vec<_>>()
    );
    // Proving that something does NOT happen: no event to wait for, so watch for a while. Three
    // more scrapes over 3 s must show the same count, and nothing committed through the lock.
    for _ in 0..3 {
        std::thread::sleep(Duration::from_secs(1));
        d.assert_running();
        let read = scrape(addr).counter("logbelt_lines_read_total", &src) - before;
        assert_eq!(read, plateau, "reading went on while commits were blocked");
    }
    assert_eq!(env.db.rows(), 100, "rows committed through the lock");

    block.release();
    env.db.wait_rows(w.total(), Some(&mut d));
    w.assert_offsets_stored(&env.db);
    assert_file_order(&env.db);
    let m = scrape(addr);
    assert_eq!(
        m.counter("logbelt_lines_read_total", &src),
        w.total() as f64,
        "every line read exactly once (no restart)\n{}",
        m.text
    );
    d.sigint();
    d.assert_exit_ok();
    w.assert_positions_at_end(&env.db);
}

both_backends!(a_transaction_holds_at_most_batch_rows_rows);
/// README "Configuration": `batch_rows` = "rows per transaction (upper bound)". Then N lines
/// take at least ⌈N / batch_rows⌉ transactions.
fn a_transaction_holds_at_most_batch_rows_rows(b: Backend) {
    let Some(env) = TestEnv::new(b) else { return };
    let addr = free_addr();
    let mut cfg = env.config();
    cfg.batch_rows = 500;
    write_config_with(&env, &cfg, &[listen(addr)]);
    let n = 20_000;
    let mut w = Written::new();
    w.append(&env.log("a.jsonl"), &json_lines("a", 0, n));
    let mut d = env.start();
    d.wait_started();
    wait_endpoint(addr, &mut d);
    env.db.wait_rows(n as i64, Some(&mut d));
    let m = wait_scrape(addr, "every row counted", |m| {
        m.counter("logbelt_rows_written_total", &[]) >= n as f64
    });
    let batches = m.counter("logbelt_batches_committed_total", &[]);
    let least = n.div_ceil(500) as f64;
    assert!(
        batches >= least,
        "{n} rows in {batches} transactions, {:.0} rows each on average: more than batch_rows = \
         500 (at least {least} transactions expected)",
        n as f64 / batches
    );
    d.sigint();
    d.assert_exit_ok();
    w.assert_stored(&env.db);
}

/// Issue 11 §4: a flood of idle connections to the endpoint took every descriptor; `accept` then
/// failed at once (EMFILE), the loop retried at once, spun a core and starved the handlers that
/// would have freed descriptors, so `/health` never answered again. Now the endpoint serves a
/// bounded number of connections at a time: the pipeline keeps its descriptors and goes on, and
/// the endpoint answers once the flood is gone.
#[test]
fn a_flood_of_connections_to_the_endpoint_takes_no_descriptor_from_the_pipeline() {
    let env = TestEnv::new(Backend::Sqlite).unwrap();
    let addr = free_addr();
    write_config_with(&env, &env.config(), &[listen(addr)]);
    let mut d = crate::util::spawn_with_fd_limit(&env, 128, &["run", "--config"]);
    d.wait_started();
    wait_endpoint(addr, &mut d);
    let pid = d.pid();
    let sockets = || {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
            .filter(|l| l.to_string_lossy().starts_with("socket:"))
            .count()
    };
    let idle_sockets = sockets();
    let mut w = Written::new();
    w.append(&env.log("a.jsonl"), &json_lines("a", 0, 5));
    env.db.wait_rows(w.total(), Some(&mut d));

    // More idle connections than the descriptors the process has left.
    let held: Vec<std::net::TcpStream> = (0..140)
        .filter_map(|_| {
            std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(300)).ok()
        })
        .collect();
    assert!(held.len() > 100, "only {} connections", held.len());
    // The endpoint holds at most 16 of them (the rest wait in the kernel's backlog).
    let during = sockets();
    assert!(
        during <= idle_sockets + 16,
        "{during} sockets open during the flood, {idle_sockets} before it"
    );
    // Meanwhile the pipeline reads, opens and commits as usual.
    w.append(&env.log("b.jsonl"), &json_lines("b", 0, 5));
    env.db.wait_rows(w.total(), Some(&mut d));
    drop(held);
    wait_endpoint(addr, &mut d);
    assert_eq!(health(addr), 200);
    d.sigint();
    d.assert_exit_ok();
    w.assert_stored(&env.db);
}
