//! Conservation under repeated `kill -9` (Vector's kill-while-writing scenario; ARCHITECTURE.md §1): while a writer thread
//! appends numbered lines to `app.jsonl` and rotates it (rename to `app.jsonl.1`, `.2`, …, then
//! create a new `app.jsonl`), a live logbelt is killed with SIGKILL at random moments and
//! started again. Once the writer stops, a final `run --once` must leave every line written
//! stored exactly once.
//!
//! The moments come from a seeded PRNG; the seed is printed, and `LOGBELT_CHAOS_SEED=<seed>`
//! replays the same kill schedule (the writer's timing still varies with the machine).

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel::sql_types::BigInt;
use diesel::QueryableByName;

use crate::metrics::assert_file_order;
use crate::util::{Backend, TestDb, TestEnv};

/// How many times logbelt is killed.
const KILLS: usize = 8;

/// The writer: appends batches of numbered lines with short pauses, and now and then rotates
/// the file, writing a few more lines through the old handle after the rename (as an
/// application that reopens its log a moment late). Stops when `stop` is set; returns how many
/// lines it wrote (numbered 0..n) and how many rotations it made.
fn write_and_rotate(logs: PathBuf, seed: u64, stop: Arc<AtomicBool>) -> (u64, usize) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let app = logs.join("app.jsonl");
    let open = |p: &Path| -> File {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .unwrap_or_else(|e| panic!("open {}: {e}", p.display()))
    };
    let mut file = open(&app);
    let mut seq: u64 = 0;
    let mut rotations = 0;
    let mut write = |file: &mut File, rng: &mut fastrand::Rng, n: usize| {
        let mut buf = String::new();
        for _ in 0..n {
            buf += &format!(
                "{{\"seq\":{seq},\"level\":\"info\",\"msg\":\"chaos {seq}\",\"pad\":\"{}\"}}\n",
                "z".repeat(rng.usize(0..60))
            );
            seq += 1;
        }
        file.write_all(buf.as_bytes()).expect("append");
    };
    while !stop.load(Ordering::Relaxed) {
        let n = rng.usize(1..=20);
        write(&mut file, &mut rng, n);
        if rng.usize(0..60) == 0 {
            rotations += 1;
            std::fs::rename(&app, logs.join(format!("app.jsonl.{rotations}"))).expect("rotate");
            let late = rng.usize(0..=3);
            write(&mut file, &mut rng, late);
            file = open(&app);
        }
        std::thread::sleep(Duration::from_millis(rng.u64(1..8)));
    }
    drop(file);
    (seq, rotations)
}

#[derive(QueryableByName, Debug)]
struct SeqRow {
    #[diesel(sql_type = BigInt)]
    seq: i64,
}

/// The `seq` of every stored record.
fn stored_seqs(db: &TestDb) -> Vec<i64> {
    let sql = match db.backend {
        Backend::Sqlite => {
            "SELECT CAST(json_extract(fields, '$.seq') AS INTEGER) AS seq FROM log_events"
        }
        Backend::Postgres => "SELECT (fields->>'seq')::bigint AS seq FROM log_events",
    };
    let rows: Vec<SeqRow> = db.load(sql);
    rows.into_iter().map(|r| r.seq).collect()
}

/// Asserts that the records hold each of `0..n` exactly once.
fn assert_every_seq_once(db: &TestDb, n: u64) {
    let mut counts: BTreeMap<i64, usize> = BTreeMap::new();
    for s in stored_seqs(db) {
        *counts.entry(s).or_default() += 1;
    }
    let missing: Vec<i64> = (0..n as i64).filter(|s| !counts.contains_key(s)).collect();
    let twice: Vec<(i64, usize)> = counts
        .iter()
        .filter(|(_, c)| **c > 1)
        .map(|(s, c)| (*s, *c))
        .collect();
    let unknown: Vec<i64> = counts
        .keys()
        .copied()
        .filter(|s| *s < 0 || *s >= n as i64)
        .collect();
    if !twice.is_empty() {
        // Where the doubles are: which files (ids, paths, positions) hold them.
        let seq = twice[0].0;
        let sql = match db.backend {
            Backend::Sqlite => format!(
                "SELECT e.file_id AS file_id, e.file_offset AS file_offset, f.path AS path \
                 FROM log_events e LEFT JOIN files f ON f.id = e.file_id \
                 WHERE CAST(json_extract(e.fields, '$.seq') AS INTEGER) = {seq}"
            ),
            Backend::Postgres => format!(
                "SELECT e.file_id AS file_id, e.file_offset AS file_offset, f.path AS path \
                 FROM log_events e LEFT JOIN files f ON f.id = e.file_id \
                 WHERE (e.fields->>'seq')::bigint = {seq}"
            ),
        };
        let rows: Vec<crate::util::OffsetRow> = db.load(&sql);
        eprintln!("seq {seq} stored at {rows:?}");
        eprintln!("files: {:?}", db.files());
    }
    assert!(
        missing.is_empty() && twice.is_empty() && unknown.is_empty(),
        "{n} lines written, {} records: {} missing (e.g. {:?}), {} stored more than once (e.g. \
         {:?}), {} never written (e.g. {:?})",
        counts.values().sum::<usize>(),
        missing.len(),
        &missing[..missing.len().min(10)],
        twice.len(),
        &twice[..twice.len().min(10)],
        unknown.len(),
        &unknown[..unknown.len().min(10)]
    );
}

both_backends!(kill_9_at_random_moments_during_writes_and_rotations_loses_and_duplicates_nothing);
fn kill_9_at_random_moments_during_writes_and_rotations_loses_and_duplicates_nothing(b: Backend) {
    let Some(env) = TestEnv::new(b) else { return };
    let seed = std::env::var("LOGBELT_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    eprintln!("chaos seed {seed} (replay with LOGBELT_CHAOS_SEED={seed})");
    let mut rng = fastrand::Rng::with_seed(seed);

    let mut cfg = env.config();
    // Rotated names must match, or a file renamed while logbelt is down loses its unread tail
    // (README "Files").
    cfg.sources[0].include = vec!["logs/app.jsonl*".into()];
    cfg.write(&env);

    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (logs, stop, seed) = (env.path("logs"), stop.clone(), rng.u64(..));
        std::thread::spawn(move || write_and_rotate(logs, seed, stop))
    };
    let started = Instant::now();
    for round in 1..=KILLS {
        let mut d = env.start();
        d.wait_started();
        // A random moment, not a condition to wait for: the point is not to choose it.
        let alive_ms = rng.u64(50..2000);
        std::thread::sleep(Duration::from_millis(alive_ms));
        d.assert_running();
        d.kill9();
        env.db.assert_no_duplicates();
        eprintln!(
            "round {round}: killed after {alive_ms} ms, {} rows committed",
            env.db.rows()
        );
        // Down for a moment too, so that rotations also happen while logbelt is stopped.
        std::thread::sleep(Duration::from_millis(rng.u64(0..500)));
    }
    stop.store(true, Ordering::Relaxed);
    let (n, rotations) = writer.join().expect("the writer thread panicked");
    eprintln!(
        "{n} lines written with {rotations} rotations in {:?}",
        started.elapsed()
    );
    assert!(
        rotations >= 2,
        "only {rotations} rotations: the test proves little"
    );

    env.run_once();
    assert_eq!(env.db.dead_count(), 0, "dead letters");
    env.db.assert_no_duplicates();
    assert_every_seq_once(&env.db, n);
    assert_file_order(&env.db);
    eprintln!("all {n} lines stored once after {:?}", started.elapsed());
}
