//! The search blocks (README, "Searching"): a rare needle reads only the blocks that may hold
//! it; `[search] index = false` writes blocks that may hold anything; and over the real JSON
//! corpus (`tests/data/corpus`), needles cut from its lines — raw text, decoded strings, other
//! case, escapes — find through the blocks exactly the rows a scan finds.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::inspect::{logbelt_with, query_json};
use crate::util::{append_lines, Backend, TestEnv};

/// `query --json --limit 100000 ARGS`: the ids found, in order.
fn ids(env: &TestEnv, args: &[&str]) -> Vec<i64> {
    query_json(env, &[&["--limit", "100000"], args].concat())
        .iter()
        .map(|v| v["id"].as_i64().unwrap())
        .collect()
}

/// `(blocks that may hold the needle, blocks)` as `query --grep NEEDLE` reports them (debug).
fn blocks_read(env: &TestEnv, needle: &str) -> (usize, usize) {
    let line = search_line(env, needle);
    let rest = &line[line.find("Search blocks: ").unwrap() + "Search blocks: ".len()..];
    let mut words = rest.split_whitespace();
    let n = words.next().unwrap().parse().unwrap();
    assert_eq!(words.next(), Some("of"), "{line}");
    let of = words.next().unwrap().parse().unwrap();
    (n, of)
}

/// The rows `query --grep NEEDLE` reads through the blocks (the width of the id ranges).
fn rows_read(env: &TestEnv, needle: &str) -> i64 {
    let line = search_line(env, needle);
    let at = line
        .find("about ")
        .unwrap_or_else(|| panic!("no rows in {line}"));
    line[at + "about ".len()..]
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no rows in {line}"))
}

/// The debug line of `query --grep NEEDLE` that says what the blocks narrowed it to.
fn search_line(env: &TestEnv, needle: &str) -> String {
    let out = logbelt_with(
        env,
        &["query", "--grep", needle],
        &[("RUST_LOG", "logbelt=debug")],
    );
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let line = out
        .stderr
        .lines()
        .find(|l| l.contains("Search blocks: "))
        .unwrap_or_else(|| panic!("no search-blocks line:\n{}", out.stderr))
        .to_owned();
    line
}

/// Lines with a trace id each (hexadecimal, as in real logs) and a rare token in one.
fn traced_lines(n: usize, rare_at: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let trace = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let extra = if i == rare_at { " quasar-9931" } else { "" };
            format!(r#"{{"msg":"request {i} served{extra}","trace":"{trace:016x}"}}"#)
        })
        .collect()
}

both_backends!(a_rare_needle_reads_only_its_block);
fn a_rare_needle_reads_only_its_block(b: Backend) {
    let Some(env) = TestEnv::new(b) else { return };
    let lines = traced_lines(3000, 2345);
    append_lines(&env.log("a.jsonl"), &lines);
    let mut config = env.config();
    config.batch_rows = 100;
    config.write(&env);
    env.run_once();

    let (n, of) = blocks_read(&env, "QUASAR-9931");
    assert!(of >= 30, "{of} blocks for 3000 rows in commits of 100");
    assert!(n <= 2, "{n} of {of} blocks read for a needle in one line");
    let found = ids(&env, &["--grep", "QUASAR-9931"]);
    assert_eq!(found.len(), 1);
    assert_eq!(found, ids(&env, &["--grep", "QUASAR-9931", "--scan"]));
    // A trace id of another line: its block, not all of them.
    let trace = format!("{:016x}", 1001u64.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let (n, _) = blocks_read(&env, &trace);
    assert!(n <= 2, "{n} blocks read for one trace id");
    assert_eq!(ids(&env, &["--grep", &trace]).len(), 1);
    // Absent: no block, no row.
    assert_eq!(blocks_read(&env, "not-in-any-line").0, 0);
    assert!(ids(&env, &["--grep", "not-in-any-line"]).is_empty());
}

both_backends!(a_rare_needle_reads_only_its_sub_blocks);
fn a_rare_needle_reads_only_its_sub_blocks(b: Backend) {
    let Some(env) = TestEnv::new(b) else { return };
    // Commits of up to 5,000 rows: blocks of 1,024 rows, sub-blocks of 128 (wherever the
    // commits end, a sub-block holds at most 128 rows). The rare token is in row 1,500; another
    // in rows 2,100 and 2,200 (two sub-blocks, adjacent in one commit, read as one range).
    let mut lines = traced_lines(3000, 1500);
    for i in [2100, 2200] {
        lines[i] = lines[i].replace(" served", " served nebula-4417");
    }
    append_lines(&env.log("a.jsonl"), &lines);
    let mut config = env.config();
    config.batch_rows = 5000;
    config.write(&env);
    env.run_once();

    assert_eq!(blocks_read(&env, "quasar-9931").0, 1);
    let rows = rows_read(&env, "quasar-9931");
    assert!(rows <= 128, "{rows} rows read for a needle in one line");
    assert_eq!(ids(&env, &["--grep", "quasar-9931"]).len(), 1);
    let rows = rows_read(&env, "NEBULA-4417");
    assert!(rows <= 256, "{rows} rows read for a needle in two lines");
    let found = ids(&env, &["--grep", "NEBULA-4417"]);
    assert_eq!(found.len(), 2);
    assert_eq!(found, ids(&env, &["--grep", "NEBULA-4417", "--scan"]));
    // A word of every line: every row.
    assert_eq!(ids(&env, &["--grep", "served"]).len(), 3000);
}

both_backends!(a_needle_in_more_blocks_than_are_of_use_is_found_by_scanning);
fn a_needle_in_more_blocks_than_are_of_use_is_found_by_scanning(b: Backend) {
    let Some(env) = TestEnv::new(b) else { return };
    // Commits of 150 rows: 520 blocks of two sub-blocks, every one holding "served".
    append_lines(&env.log("a.jsonl"), &traced_lines(78_000, 0));
    let mut config = env.config();
    config.batch_rows = 150;
    config.write(&env);
    env.run_once();
    let line = search_line(&env, "served");
    assert!(
        line.contains("more than 512") && line.contains("scanning"),
        "{line}"
    );
    let found = ids(&env, &["--grep", "served"]);
    assert_eq!(found.len(), 78_000);
    assert_eq!(found, ids(&env, &["--grep", "served", "--scan"]));
    // A rare needle among them still reads its block only (and perhaps a false positive).
    let (n, of) = blocks_read(&env, "quasar-9931");
    assert!(of >= 520 && (1..=2).contains(&n), "{n} of {of}");
}

both_backends!(blocks_written_before_sub_blocks_are_read_whole);
fn blocks_written_before_sub_blocks_are_read_whole(b: Backend) {
    let Some(env) = TestEnv::new(b) else { return };
    append_lines(&env.log("a.jsonl"), &traced_lines(3000, 1500));
    let mut config = env.config();
    // One commit, whatever the machine's load: blocks of 1,024 rows.
    config.flush_interval_ms = 2000;
    config.write(&env);
    env.run_once();
    // The database as the version before sub-blocks left it (the read-only commands never
    // migrate): its blocks are read whole.
    env.db.execute(match b {
        Backend::Sqlite => {
            "ALTER TABLE search_blocks DROP COLUMN sub_last; \
             ALTER TABLE search_blocks DROP COLUMN subs; \
             ALTER TABLE search_blocks DROP COLUMN sub_bits;"
        }
        Backend::Postgres => {
            "ALTER TABLE search_blocks DROP COLUMN sub_last, DROP COLUMN subs, \
             DROP COLUMN sub_bits, DROP COLUMN coarse, DROP COLUMN coarse_bits;"
        }
    });
    assert_eq!(blocks_read(&env, "quasar-9931").0, 1);
    assert!(rows_read(&env, "quasar-9931") > 128);
    let found = ids(&env, &["--grep", "quasar-9931"]);
    assert_eq!(found.len(), 1);
    assert_eq!(found, ids(&env, &["--grep", "quasar-9931", "--scan"]));
}

both_backends!(without_the_index_every_block_may_hold_anything);
fn without_the_index_every_block_may_hold_anything(b: Backend) {
    let Some(env) = TestEnv::new(b) else { return };
    append_lines(&env.log("a.jsonl"), &traced_lines(500, 250));
    let mut config = env.config();
    config.batch_rows = 100;
    let toml = config.to_toml() + "\n[search]\nindex = false\n";
    std::fs::write(env.config_path(), toml).unwrap();
    env.run_once();
    let (n, of) = blocks_read(&env, "quasar-9931");
    assert!(of >= 5, "{of} blocks");
    assert_eq!(n, of, "a block without a filter may hold anything");
    assert_eq!(ids(&env, &["--grep", "quasar-9931"]).len(), 1);
}

/// Needles cut from a line: pieces of its text as written and of its decoded string values, in
/// other case too.
fn needles_of(line: &str, i: usize, out: &mut BTreeSet<String>) {
    let chars: Vec<char> = line.chars().collect();
    if chars.len() > 12 {
        let start = (i * 7) % (chars.len() - 8);
        let len = 4 + i % 14;
        let piece: String = chars[start..(start + len).min(chars.len())]
            .iter()
            .collect();
        out.insert(piece.to_uppercase());
        out.insert(piece);
    }
    if let Ok(Value::Object(o)) = serde_json::from_str::<Value>(line) {
        let strings: Vec<&str> = o
            .values()
            .filter_map(Value::as_str)
            .filter(|s| s.chars().count() >= 6)
            .collect();
        if let Some(s) = strings.get(i % strings.len().max(1)) {
            let chars: Vec<char> = s.chars().collect();
            let start = (i * 3) % (chars.len() - 5);
            let piece: String = chars[start..(start + 5 + i % 9).min(chars.len())]
                .iter()
                .collect();
            out.insert(piece);
        }
    }
}

both_backends!(corpus_needles_find_the_same_rows_through_the_blocks_as_by_scanning);
fn corpus_needles_find_the_same_rows_through_the_blocks_as_by_scanning(b: Backend) {
    let Some(env) = TestEnv::new(b) else { return };
    let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/corpus");
    let mut needles = BTreeSet::new();
    let mut files: Vec<_> = std::fs::read_dir(&corpus)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    files.sort();
    for src in &files {
        std::fs::copy(src, env.path("logs").join(src.file_name().unwrap())).unwrap();
        let text = String::from_utf8_lossy(&std::fs::read(src).unwrap()).into_owned();
        for (i, line) in text.lines().enumerate().filter(|(i, _)| i % 11 == 5) {
            needles_of(line, i, &mut needles);
        }
    }
    // Escapes and decoded forms the corpus holds.
    needles.extend(["\\u00e9", "é", "\\\"", "\\n", "GET /", "null"].map(String::from));
    let mut config = env.config();
    config.batch_rows = 300;
    config.write(&env);
    env.run_once();
    let mut narrowed = 0;
    for needle in &needles {
        let indexed = ids(&env, &["--grep", needle]);
        let scanned = ids(&env, &["--grep", needle, "--scan"]);
        assert_eq!(
            indexed, scanned,
            "--grep {needle:?}: blocks and scan differ"
        );
        if indexed.len() < 5 {
            narrowed += 1;
        }
    }
    assert!(needles.len() >= 100, "{} needles", needles.len());
    eprintln!("{} needles, {narrowed} of them rare", needles.len());
}

/// `logbelt query --count ARGS` (JSON lines) and the debug line saying how it counted.
fn counted(env: &TestEnv, args: &[&str]) -> (String, String) {
    let mut all = vec!["query", "--count", "--json"];
    all.extend_from_slice(args);
    let out = logbelt_with(env, &all, &[("RUST_LOG", "logbelt=debug")]);
    assert_eq!(out.code, Some(0), "{args:?}: {}", out.stderr);
    let how = out
        .stderr
        .lines()
        .find_map(|l| l.split_once("Counts: ").map(|(_, how)| how.to_owned()))
        .unwrap_or_default();
    (out.stdout, how)
}

both_backends!(counts_from_the_blocks_equal_the_rows_counted);
fn counts_from_the_blocks_equal_the_rows_counted(b: Backend) {
    let Some(env) = TestEnv::new(b) else { return };
    // Three hours of lines every 7 s, levels in turn, every 13th without a level, every 29th
    // without a time.
    let start = 1_764_061_200i64;
    let levels = ["info", "warn", "error", "debug"];
    let lines: Vec<String> = (0..1500)
        .map(|i| {
            let mut o = serde_json::Map::new();
            o.insert("msg".into(), format!("event {i}").into());
            if i % 29 != 0 {
                let t = chrono::DateTime::from_timestamp(start + i * 7, 0).unwrap();
                o.insert("ts".into(), t.to_rfc3339().into());
            }
            if i % 13 != 0 {
                o.insert("level".into(), levels[i as usize % 4].into());
            }
            Value::Object(o).to_string()
        })
        .collect();
    append_lines(&env.log("a.jsonl"), &lines);
    let mut config = env.config();
    config.batch_rows = 100;
    config.write(&env);
    env.run_once();

    let at = |secs: i64| {
        chrono::DateTime::from_timestamp(start + secs, 0)
            .unwrap()
            .to_rfc3339()
    };
    // Edges inside a minute and on one.
    let (mid_since, mid_until) = (at(1234), at(7777));
    let (on_since, on_until) = (at(1200), at(7800));
    let cases: Vec<Vec<&str>> = vec![
        vec![],
        vec!["--by", "level"],
        vec!["--by", "level", "--bucket", "1h"],
        vec!["--by", "source", "--bucket", "1m"],
        vec!["--by", "host", "--bucket", "1d"],
        vec![
            "--since", &mid_since, "--until", &mid_until, "--by", "level", "--bucket", "1m",
        ],
        vec!["--since", &on_since, "--until", &on_until, "--bucket", "1h"],
        vec!["--since", &mid_since, "--bucket", "1h"],
        vec!["--until", &mid_until, "--by", "level"],
        vec!["--level", "error,warn", "--bucket", "1h"],
        vec!["--source", "app", "--host", "test-host", "--by", "level"],
        vec!["--host", "another-host"],
    ];
    let compare = |why: &str| {
        for args in &cases {
            let (blocks, how) = counted(&env, args);
            let mut scan_args = args.clone();
            scan_args.push("--scan");
            let (rows, _) = counted(&env, &scan_args);
            assert_eq!(blocks, rows, "{why}: --count {args:?}");
            assert!(
                !how.is_empty(),
                "{why}: --count {args:?} did not use the blocks"
            );
        }
    };
    compare("all blocks counted");
    let (total, how) = counted(&env, &[]);
    assert_eq!(total.trim(), r#"{"count":1500}"#);
    assert!(how.ends_with(" 0 by their rows."), "{how}");
    // As retention leaves blocks whose rows it is removing: counted by reading their rows.
    env.db
        .execute("UPDATE search_blocks SET counts = NULL WHERE id % 3 = 0");
    compare("a third of the blocks without counts");
    let (_, how) = counted(&env, &[]);
    assert!(!how.ends_with(" 0 by their rows."), "{how}");
}
