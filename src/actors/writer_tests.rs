//! The committer's heart, against an in-memory store whose failures are scripted: transient
//! errors retried until the commit lands, a commit whose outcome is unknown not committed twice,
//! a refused line isolated as a dead letter, a database that refuses every row or fails fatally
//! left without a moved position, a full disk waited out without a dead letter and reported at
//! growing intervals.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{commit_with_retry, Outage, Retries, RetryPolicy};
use crate::db::{Cause, DbError, Store};
use crate::metrics::CommitWatch;
use crate::record::StoredPosition;
use crate::record::{FileIdentity, FileMeta, FilePosition, Record, RecordBatch};

/// What the next `commit` does.
#[derive(Debug, Clone, Copy)]
enum Outcome {
    Commits,
    /// Fails without storing anything (the database is away).
    Transient,
    /// Fails without storing anything: the database's disk is full.
    DiskFull,
    /// Stores everything, then reports a transient error (the connection broke during COMMIT).
    TransientAfterCommitting,
    Fatal,
}

#[derive(Default)]
struct FakeStore {
    /// Outcomes of the next commits; `Commits` once it is empty.
    script: VecDeque<Outcome>,
    /// Lines containing this are refused on their own (invalid data).
    refuse_lines_with: Option<&'static str>,
    /// Every row is refused (a missing grant).
    refuse_every_row: bool,
    commits_tried: usize,
    /// Trial writes (the search for a refused line).
    probes: usize,
    /// Stored rows: (file id, offset).
    records: Vec<(i64, u64)>,
    dead_letters: Vec<(u64, String)>,
    positions: HashMap<i64, u64>,
}

impl FakeStore {
    /// A store whose next commits have these outcomes.
    fn scripted(outcomes: &[Outcome]) -> Self {
        FakeStore {
            script: outcomes.iter().copied().collect(),
            ..FakeStore::default()
        }
    }

    /// The error the database gives for these batches' rows, if it refuses one.
    fn refusal(&self, batches: &[RecordBatch]) -> Option<DbError> {
        for b in batches {
            for r in &b.records {
                let line = b.str(&r.line);
                let bad = self.refuse_lines_with.is_some_and(|m| line.contains(m));
                if self.refuse_every_row || bad {
                    return Some(DbError::permanent(format!("refuses {line}")));
                }
            }
        }
        None
    }

    fn store(&mut self, batches: &[RecordBatch]) {
        for b in batches {
            let id = b.position.file.id;
            self.records
                .extend(b.records.iter().map(|r| (id, r.offset)));
            self.dead_letters.extend(
                b.dead_letters
                    .iter()
                    .map(|d| (d.offset, d.reason.to_string())),
            );
            self.positions.insert(id, b.position.offset);
        }
    }
}

impl Store for FakeStore {
    fn load_positions(&mut self, _host: &str) -> Result<Vec<StoredPosition>, DbError> {
        Ok(Vec::new())
    }

    fn commit(
        &mut self,
        _host: &str,
        batches: &[RecordBatch],
        _bloom: Option<&[crate::search::Block]>,
    ) -> Result<(), DbError> {
        self.commits_tried += 1;
        let outcome = self.script.pop_front().unwrap_or(Outcome::Commits);
        if let Some(e) = self.refusal(batches) {
            return Err(e);
        }
        match outcome {
            Outcome::Commits => {
                self.store(batches);
                Ok(())
            }
            Outcome::Transient => Err(DbError::transient("connection refused")),
            Outcome::DiskFull => Err(DbError::disk_full("database or disk is full")),
            Outcome::TransientAfterCommitting => {
                self.store(batches);
                Err(DbError::transient("connection lost during COMMIT"))
            }
            Outcome::Fatal => Err(DbError::fatal("permission denied")),
        }
    }

    fn probe(&mut self, _host: &str, batches: &[RecordBatch]) -> Result<(), DbError> {
        self.probes += 1;
        self.refusal(batches).map_or(Ok(()), Err)
    }

    fn committed_offsets(&mut self, ids: &[i64]) -> Result<HashMap<i64, u64>, DbError> {
        Ok(ids
            .iter()
            .filter_map(|id| self.positions.get(id).map(|o| (*id, *o)))
            .collect())
    }
}

/// A batch of file `id` holding `lines`, one per line, its position just past the last.
fn batch(id: i64, lines: &[&str]) -> RecordBatch {
    let mut buf = Vec::new();
    let mut records = Vec::new();
    for line in lines {
        let start = buf.len() as u32;
        buf.extend_from_slice(line.as_bytes());
        records.push(Record {
            offset: u64::from(start) + records.len() as u64,
            line: start..buf.len() as u32,
            ts_micros: None,
            level: None,
            message: None,
        });
    }
    let end = (buf.len() + lines.len()) as u64;
    RecordBatch {
        buf,
        records,
        dead_letters: Vec::new(),
        empty_lines: 0,
        bytes: end,
        position: FilePosition {
            file: Arc::new(FileMeta {
                id,
                source: "app".into(),
            }),
            path: "/var/log/app.jsonl".into(),
            identity: FileIdentity {
                dev: 1,
                inode: 2,
                fingerprint_len: 0,
                fingerprint: 0,
            },
            offset: end,
            forget: false,
        },
    }
}

fn commit(store: &mut FakeStore, batches: &mut [RecordBatch]) -> Result<(), DbError> {
    commit_seeing(store, batches, &mut None)
}

/// [`commit`], with the outage its failures report.
fn commit_seeing(
    store: &mut FakeStore,
    batches: &mut [RecordBatch],
    outage: &mut Option<Outage>,
) -> Result<(), DbError> {
    let retry = RetryPolicy {
        initial_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(2),
    };
    let cancel = AtomicBool::new(false);
    commit_with_retry(
        store,
        "host",
        batches,
        None,
        Retries {
            policy: &retry,
            cancel: &cancel,
        },
        &CommitWatch::start(),
        outage,
    )
}

#[test]
fn transient_errors_are_retried_until_the_commit_lands() {
    let mut store = FakeStore::scripted(&[Outcome::Transient, Outcome::Transient]);
    let mut batches = [batch(7, &["{\"a\":1}", "{\"a\":2}"])];
    commit(&mut store, &mut batches).expect("commits");
    assert_eq!(store.commits_tried, 3);
    assert_eq!(store.records, [(7, 0), (7, 8)]);
    assert_eq!(store.positions[&7], batches[0].position.offset);
}

#[test]
fn a_commit_whose_outcome_is_unknown_is_not_committed_twice() {
    let mut store = FakeStore::scripted(&[Outcome::TransientAfterCommitting]);
    let mut batches = [batch(7, &["{\"a\":1}", "{\"a\":2}"]), batch(8, &["{}"])];
    commit(&mut store, &mut batches).expect("commits");
    assert_eq!(store.commits_tried, 1, "the positions showed it had landed");
    assert_eq!(store.records, [(7, 0), (7, 8), (8, 0)]);
}

#[test]
fn a_failed_commit_whose_positions_are_not_there_is_committed_again() {
    let mut store = FakeStore::scripted(&[Outcome::Transient]);
    let mut batches = [batch(7, &["{\"a\":1}"])];
    commit(&mut store, &mut batches).expect("commits");
    assert_eq!(store.commits_tried, 2);
    assert_eq!(store.records, [(7, 0)]);
}

#[test]
fn a_refused_line_is_isolated_as_a_dead_letter_and_the_rest_commits() {
    let mut store = FakeStore {
        refuse_lines_with: Some("BAD"),
        ..FakeStore::default()
    };
    let lines = [
        "{\"a\":0}",
        "{\"a\":1}",
        "{\"a\":2}",
        "{\"BAD\":3}",
        "{\"a\":4}",
    ];
    let mut batches = [batch(7, &lines[..2]), batch(9, &lines)];
    commit(&mut store, &mut batches).expect("commits");
    let bad_offset = batch(9, &lines).records[3].offset;
    assert_eq!(store.records.len(), 6, "{:?}", store.records);
    assert!(!store.records.contains(&(9, bad_offset)));
    assert_eq!(store.dead_letters.len(), 1);
    let (offset, reason) = &store.dead_letters[0];
    assert_eq!(*offset, bad_offset);
    assert!(
        reason.starts_with("refused by the database: refuses {\"BAD\":3}"),
        "{reason}"
    );
    assert_eq!(store.positions[&9], batches[1].position.offset);
}

#[test]
fn a_database_that_refuses_every_row_is_fatal_and_no_position_moves() {
    let mut store = FakeStore {
        refuse_every_row: true,
        ..FakeStore::default()
    };
    let mut batches = [batch(7, &["{\"a\":1}", "{\"a\":2}", "{\"a\":3}"])];
    let e = commit(&mut store, &mut batches).expect_err("refused");
    assert!(e.is_fatal(), "{e}");
    assert!(e.message.contains("refuses any row"), "{e}");
    assert!(store.positions.is_empty());
    assert!(store.dead_letters.is_empty());
}

#[test]
fn a_fatal_error_is_not_retried() {
    let mut store = FakeStore::scripted(&[Outcome::Fatal]);
    let mut batches = [batch(7, &["{\"a\":1}"])];
    let e = commit(&mut store, &mut batches).expect_err("fatal");
    assert!(e.is_fatal());
    assert_eq!(store.commits_tried, 1);
    assert!(store.positions.is_empty());
}

#[test]
fn a_full_disk_is_waited_out_and_no_line_becomes_a_dead_letter() {
    let mut store = FakeStore::scripted(&[Outcome::DiskFull; 5]);
    let mut batches = [batch(7, &["{\"a\":1}", "{\"a\":2}"])];
    let mut outage = None;
    commit_seeing(&mut store, &mut batches, &mut outage).expect("commits once space returns");
    assert_eq!(store.commits_tried, 6);
    assert_eq!(store.probes, 0, "no line was suspected");
    assert!(store.dead_letters.is_empty());
    assert_eq!(store.records, [(7, 0), (7, 8)]);
    let outage = outage.expect("the failures were reported");
    assert_eq!(outage.failures, 5);
    assert_eq!(outage.cause, Some(Cause::DiskFull));
}

#[test]
fn an_outage_is_reported_at_once_then_at_growing_intervals_not_per_retry() {
    // A retry every second for an hour.
    let t0 = Instant::now();
    let mut outage = Outage::new(t0, Some(Cause::DiskFull));
    let warned: Vec<u64> = (0..3600)
        .filter(|s| outage.failed(t0 + Duration::from_secs(*s), Some(Cause::DiskFull)))
        .collect();
    assert_eq!(
        warned,
        [0, 10, 30, 70, 150, 310, 630, 1230, 1830, 2430, 3030],
        "first at once, then 10 s, 20 s, 40 s … later, at most 10 min apart"
    );
    assert_eq!(outage.failures, 3600);
    assert_eq!(
        outage.lasted(t0 + Duration::from_secs(3599)),
        Duration::from_secs(3599)
    );
    // Another cause is said at once, and its intervals start again.
    let later = t0 + Duration::from_secs(3601);
    assert!(outage.failed(later, None));
    assert!(!outage.failed(later + Duration::from_secs(9), None));
    assert!(outage.failed(later + Duration::from_secs(10), None));
}
