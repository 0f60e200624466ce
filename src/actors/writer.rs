//! Writer actor and its committer task. The actor gathers [`RecordBatch`]es into a pending
//! transaction of up to `batch_rows` rows (or `flush_interval` old) and hands it to the committer
//! over a bounded channel of one: while one transaction commits, the next fills, and when both
//! are full the actor stops taking messages, its mailbox fills, and the backpressure reaches
//! the parser. The committer runs the blocking store on a blocking thread, retries transient
//! errors with exponential backoff (holding the batch: nothing is dropped, and positions only
//! move when a commit succeeds) and reports a permanent failure to the supervisor. A failing
//! database (down, locked, its disk full) is reported at once, then at growing intervals
//! ([`Outage`]), and once more when it takes writes again.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use tokio::sync::{mpsc, oneshot};

use super::StageGuard;
use crate::db::{Cause, DbError, Store};
use crate::messages::{Flush, Records, StageGone};
use crate::metrics;
use crate::record::{DeadLetter, DeadLetterReason, Record, RecordBatch};
use crate::search::{Block, BlockBuilder};

/// How the committer retries transient database errors.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

/// Work for the committer.
pub enum CommitJob {
    /// Commit these batches in one transaction, with their search blocks
    /// ([`crate::search`]).
    Commit(Vec<RecordBatch>, Vec<Block>),
    /// Answer once every earlier job is done: `Ok` if all committed.
    Sync(oneshot::Sender<Result<(), StageGone>>),
}

pub struct Writer {
    batch_rows: usize,
    flush_interval: Duration,
    pending: Vec<RecordBatch>,
    pending_rows: usize,
    /// Bumped each time the pending transaction is handed over; a flush timer armed for an
    /// earlier one does nothing.
    epoch: u64,
    /// The committers' queues (capacity 1 each): one per database connection. A file always goes
    /// to the same committer (by its id), so its batches commit in order. Dropped when the actor
    /// stops: the committers then finish what they hold and end.
    committers: Vec<mpsc::Sender<CommitJob>>,
    /// The search blocks of the pending transaction, one builder per committer.
    blocks: Vec<BlockBuilder>,
    guard: StageGuard,
}

impl Writer {
    pub fn new(
        batch_rows: usize,
        flush_interval: Duration,
        committers: Vec<mpsc::Sender<CommitJob>>,
        index: bool,
        guard: StageGuard,
    ) -> Self {
        let blocks = (0..committers.len().max(1))
            .map(|_| BlockBuilder::new(index))
            .collect();
        Writer {
            batch_rows,
            flush_interval,
            pending: Vec::new(),
            pending_rows: 0,
            epoch: 0,
            committers,
            blocks,
            guard,
        }
    }

    /// The committer of a file: always the same one, so that its batches commit in order.
    fn committer_of(&self, batch: &RecordBatch) -> usize {
        (batch.position.file.id as u64 % self.committers.len().max(1) as u64) as usize
    }

    /// Hands the pending transaction to the committer; the actor takes no message until the
    /// committer has room for it.
    fn hand_over(&mut self, ctx: &mut Context<Self>) {
        if self.pending.is_empty() {
            return;
        }
        self.epoch += 1;
        self.pending_rows = 0;
        let n = self.committers.len().max(1);
        let mut jobs: Vec<Vec<RecordBatch>> = (0..n).map(|_| Vec::new()).collect();
        for batch in std::mem::take(&mut self.pending) {
            jobs[self.committer_of(&batch)].push(batch);
        }
        let blocks: Vec<Vec<Block>> = self.blocks.iter_mut().map(BlockBuilder::take).collect();
        let committers = self.committers.clone();
        let sends = async move {
            for ((committer, job), blocks) in committers.iter().zip(jobs).zip(blocks) {
                if !job.is_empty() {
                    committer
                        .send(CommitJob::Commit(job, blocks))
                        .await
                        .map_err(|_| ())?;
                }
            }
            Ok::<(), ()>(())
        };
        ctx.wait(sends.into_actor(self).map(|sent, act, ctx| {
            if sent.is_err() {
                // The committer's own guard reports why it is gone.
                act.guard.disarm();
                ctx.stop();
            }
        }));
    }
}

impl Actor for Writer {
    type Context = Context<Self>;
}

impl Handler<Records> for Writer {
    type Result = ();

    fn handle(&mut self, Records(batch): Records, ctx: &mut Context<Self>) {
        // A transaction holds at most `batch_rows` rows (a batch never holds more). A forget
        // batch commits alone: a transaction without rows can always be tried again, whatever
        // the outcome of an earlier try (see `db::already_committed`).
        let rows = batch.rows().max(1);
        let forget = batch.position.forget;
        if self.pending_rows + rows > self.batch_rows || forget {
            self.hand_over(ctx);
        }
        if self.pending.is_empty() {
            let epoch = self.epoch;
            ctx.run_later(self.flush_interval, move |act, ctx| {
                if act.epoch == epoch {
                    act.hand_over(ctx);
                }
            });
        }
        self.pending_rows += rows;
        let slot = self.committer_of(&batch);
        if let Some(block) = self.blocks.get_mut(slot) {
            block.add(&batch);
        }
        self.pending.push(batch);
        if self.pending_rows >= self.batch_rows || forget {
            self.hand_over(ctx);
        }
    }
}

impl Handler<Flush> for Writer {
    type Result = ResponseActFuture<Self, Result<(), StageGone>>;

    fn handle(&mut self, _: Flush, ctx: &mut Context<Self>) -> Self::Result {
        self.hand_over(ctx);
        let committers = self.committers.clone();
        Box::pin(
            async move {
                for committer in committers {
                    let (tx, rx) = oneshot::channel();
                    committer
                        .send(CommitJob::Sync(tx))
                        .await
                        .map_err(|_| StageGone("committer"))?;
                    rx.await.map_err(|_| StageGone("committer"))??;
                }
                Ok(())
            }
            .into_actor(self)
            .map(|synced, act, _| {
                if synced.is_ok() {
                    act.guard.disarm();
                }
                synced
            }),
        )
    }
}

/// What a committer shares with the other committers of its pipeline.
#[derive(Clone)]
pub struct CommitterShared {
    pub host: Arc<str>,
    pub retry: RetryPolicy,
    /// Set when the pipeline is torn down: stop retrying.
    pub cancel: Arc<AtomicBool>,
    /// Held by every committer and every commit in progress; when all are dropped, the
    /// supervisor knows no commit of this pipeline can still land.
    pub alive: mpsc::Sender<()>,
}

/// The committer: owns the store, commits jobs in order on a blocking thread. Ends when the
/// writer drops its sender; the store (and `alive`) are dropped then.
pub async fn run_committer(
    mut store: Box<dyn Store>,
    mut jobs: mpsc::Receiver<CommitJob>,
    shared: CommitterShared,
    mut guard: StageGuard,
) {
    let CommitterShared {
        host,
        retry,
        cancel,
        alive,
    } = shared;
    let mut failed: Option<String> = None;
    // The database's failures since the last commit that landed (it spans commits: a commit
    // cancelled by a restart leaves it to the next pipeline's warnings, not this one's).
    let mut outage: Option<Outage> = None;
    while let Some(job) = jobs.recv().await {
        match job {
            CommitJob::Sync(reply) => {
                let _ = reply.send(match &failed {
                    None => Ok(()),
                    Some(_) => Err(StageGone("committer")),
                });
            }
            CommitJob::Commit(..) if failed.is_some() => {}
            CommitJob::Commit(mut batches, blocks) => {
                let (host, retry, cancel) = (host.clone(), retry.clone(), cancel.clone());
                let alive = alive.clone();
                let mut held = outage.take();
                let done = tokio::task::spawn_blocking(move || {
                    let started = Instant::now();
                    let watch = metrics::CommitWatch::start();
                    let result = commit_with_retry(
                        &mut *store,
                        &host,
                        &mut batches,
                        Some(&blocks),
                        Retries {
                            policy: &retry,
                            cancel: &cancel,
                        },
                        &watch,
                        &mut held,
                    );
                    drop(watch);
                    if result.is_ok() {
                        let ended = held.take();
                        if let Some(ended) = &ended {
                            ended.report_end(Instant::now());
                        }
                        report_commit(&batches, started.elapsed(), ended.is_some());
                    }
                    drop(alive);
                    (store, result, held)
                })
                .await;
                match done {
                    Ok((s, result, held)) => {
                        store = s;
                        outage = held;
                        if let Err(e) = result {
                            if e.is_fatal() {
                                // The supervisor says it, once, and stops.
                                guard.fail_fatal(e.message.clone());
                            } else {
                                tracing::error!(error = %e, "Commit failed; nothing of the batch is stored.");
                                guard.fail(format!("commit failed: {e}"));
                            }
                            failed = Some(e.message);
                        }
                    }
                    Err(e) => {
                        guard.fail(format!("committer panicked: {e}"));
                        return;
                    }
                }
            }
        }
    }
    if failed.is_none() {
        guard.disarm();
    }
}

/// Counts a committed transaction and the lag of its files. `after_outage`: its slowness was
/// an outage, already reported.
fn report_commit(batches: &[RecordBatch], elapsed: Duration, after_outage: bool) {
    let records: usize = batches.iter().map(|b| b.records.len()).sum();
    let reasons: Vec<&DeadLetterReason> = batches
        .iter()
        .flat_map(|b| b.dead_letters.iter().map(|d| &d.reason))
        .collect();
    let bytes = batches.iter().map(|b| b.bytes).sum();
    metrics::committed(records as u64, &reasons, bytes, elapsed);
    metrics::files_committed(batches.iter().map(|b| b.position.file.id));
    for p in crate::db::final_positions(batches) {
        if let Ok(m) = std::fs::metadata(&*p.path) {
            metrics::file_lag(&p.path, m.len().saturating_sub(p.offset));
        }
    }
    if elapsed >= SLOW_COMMIT && !after_outage {
        tracing::warn!(
            records,
            elapsed_ms = elapsed.as_millis() as u64,
            "Slow commit: the database was slow, locked or unavailable; reading waited meanwhile."
        );
    } else {
        tracing::debug!(
            records,
            dead_letters = reasons.len(),
            elapsed_ms = elapsed.as_millis() as u64,
            "Committed."
        );
    }
}

/// A commit that takes this long (retries included) is logged as a warning: with PostgreSQL, a
/// COPY waiting on a lock fails nothing and would otherwise stall in silence.
const SLOW_COMMIT: Duration = Duration::from_secs(5);

/// How long after the first warning of an outage the second comes; each later one comes twice
/// as long after the one before, up to [`OUTAGE_WARNING_MAX_INTERVAL`].
const OUTAGE_WARNING_FIRST_INTERVAL: Duration = Duration::from_secs(10);
/// The longest silence while an outage lasts.
const OUTAGE_WARNING_MAX_INTERVAL: Duration = Duration::from_secs(600);

/// A run of failed commit attempts, from the first failure to the commit that lands: said at
/// once, then at growing intervals (10 s, 20 s, 40 s … up to every 10 min) with how long it has
/// lasted, rather than once per retry; said at once again when its cause changes (say, from a
/// lost connection to a full disk), and once when it ends.
#[derive(Debug)]
pub(crate) struct Outage {
    since: Instant,
    cause: Option<Cause>,
    /// Failed attempts so far.
    failures: u64,
    /// When the next warning is due.
    next_warning: Instant,
    /// The silence after the next warning.
    interval: Duration,
}

impl Outage {
    pub(crate) fn new(now: Instant, cause: Option<Cause>) -> Outage {
        Outage {
            since: now,
            cause,
            failures: 0,
            next_warning: now,
            interval: OUTAGE_WARNING_FIRST_INTERVAL,
        }
    }

    /// An attempt failed at `now` with `cause`: whether to warn about it.
    pub(crate) fn failed(&mut self, now: Instant, cause: Option<Cause>) -> bool {
        self.failures += 1;
        if cause != self.cause {
            self.cause = cause;
            self.next_warning = now;
            self.interval = OUTAGE_WARNING_FIRST_INTERVAL;
        }
        if now < self.next_warning {
            return false;
        }
        self.next_warning = now + self.interval;
        self.interval = (self.interval * 2).min(OUTAGE_WARNING_MAX_INTERVAL);
        true
    }

    /// How long it has lasted at `now`.
    pub(crate) fn lasted(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.since)
    }

    /// Warns about `error`, met at `now`; the next attempt comes after `retry_in`.
    fn warn(&self, error: &DbError, now: Instant, retry_in: Duration) {
        let lasted_s = self.lasted(now).as_secs();
        let retry_in_ms = retry_in.as_millis() as u64;
        let failures = self.failures;
        if error.is_disk_full() {
            tracing::warn!(error = %error, lasted_s, failures, retry_in_ms, "Database disk full: holding the batch and retrying; reading is paused until space is freed, nothing is lost.");
        } else {
            tracing::warn!(error = %error, lasted_s, failures, retry_in_ms, "Database unavailable; holding the batch and retrying.");
        }
    }

    /// The commit landed at `now`: the outage is over.
    fn report_end(&self, now: Instant) {
        let lasted_s = self.lasted(now).as_secs();
        let failures = self.failures;
        if self.cause == Some(Cause::DiskFull) {
            tracing::info!(
                lasted_s,
                failures,
                "Database disk has space again; committing and reading resume."
            );
        } else {
            tracing::info!(
                lasted_s,
                failures,
                "Database takes writes again; committing and reading resume."
            );
        }
    }
}

/// How a commit is retried, and what tells it to give up.
#[derive(Clone, Copy)]
struct Retries<'a> {
    policy: &'a RetryPolicy,
    /// Set when the pipeline is torn down.
    cancel: &'a AtomicBool,
}

/// Commits, retrying transient errors with exponential backoff until it works, the error turns
/// permanent, or `cancel` is set (pipeline torn down). A permanent error caused by one line (a
/// value the database refuses, such as `\u0000` in PostgreSQL's `jsonb`) turns that line into a
/// dead letter, and the rest commits. The failures are reported through `outage` (created by
/// the first; the caller ends it when the commit lands).
fn commit_with_retry(
    store: &mut dyn Store,
    host: &str,
    batches: &mut [RecordBatch],
    mut blocks: Option<&[Block]>,
    retries: Retries<'_>,
    watch: &metrics::CommitWatch,
    outage: &mut Option<Outage>,
) -> Result<(), DbError> {
    let Retries {
        policy: retry,
        cancel,
    } = retries;
    let mut backoff = retry.initial_backoff;
    // Set after a transient failure: the transaction may have landed before the connection
    // broke; look before committing it again.
    let mut outcome_unknown = false;
    // Why the database could not be asked whether the transaction landed.
    let mut unreachable: Option<DbError> = None;
    loop {
        if outcome_unknown {
            match crate::db::already_committed(store, batches) {
                Ok(true) => {
                    tracing::info!("The transaction had committed before the connection failed; not committing it again.");
                    return Ok(());
                }
                Ok(false) => outcome_unknown = false,
                // Still unreachable: back off below and look again, logging why.
                Err(e) => unreachable = Some(e),
            }
        }
        let failed = if let Some(e) = unreachable.take() {
            e
        } else {
            match store.commit(host, batches, blocks) {
                Ok(()) => return Ok(()),
                Err(e) => e,
            }
        };
        if failed.is_fatal() {
            return Err(failed);
        }
        if failed.is_transient() {
            outcome_unknown = true;
        }
        if !failed.is_transient() {
            match find_refused_line(store, host, batches) {
                Ok(Some((b, r, why))) => {
                    let batch = &mut batches[b];
                    let record = batch.records.remove(r);
                    // The rows after it move up a place: the blocks built no longer fit.
                    blocks = None;
                    tracing::warn!(offset = record.offset, reason = %why, "The database refuses a line; storing it as a dead letter.");
                    batch.dead_letters.push(DeadLetter {
                        offset: record.offset,
                        line_bytes: u64::from(record.line.end - record.line.start),
                        raw: record.line,
                        reason: DeadLetterReason::RefusedByDatabase(why.message),
                    });
                    continue;
                }
                Ok(None) => return Err(failed),
                Err(e) if e.is_fatal() => return Err(e),
                Err(e) if !e.is_transient() => return Err(failed),
                Err(_) => {} // the database went away meanwhile: retry below
            }
        }
        if cancel.load(Ordering::Relaxed) {
            return Err(failed);
        }
        watch.failed(&failed);
        let now = Instant::now();
        let outage = outage.get_or_insert_with(|| Outage::new(now, failed.cause));
        if outage.failed(now, failed.cause) {
            outage.warn(&failed, now, backoff);
        }
        let until = Instant::now() + backoff;
        while Instant::now() < until {
            if cancel.load(Ordering::Relaxed) {
                return Err(failed);
            }
            std::thread::sleep(Duration::from_millis(20).min(backoff));
        }
        backoff = (backoff * 2).min(retry.max_backoff);
    }
}

/// Finds, by bisection with rolled-back trial writes, one record that the database refuses on its
/// own: `(batch index, record index, the database's reason)`. `None` when no single record is
/// to blame.
fn find_refused_line(
    store: &mut dyn Store,
    host: &str,
    batches: &[RecordBatch],
) -> Result<Option<(usize, usize, DbError)>, DbError> {
    let subset = |batch: &RecordBatch, r: std::ops::Range<usize>| RecordBatch {
        buf: batch.buf.clone(),
        records: batch.records[r].to_vec(),
        dead_letters: Vec::new(),
        empty_lines: 0,
        bytes: 0,
        position: batch.position.clone(),
    };
    for (b, batch) in batches.iter().enumerate() {
        match store.probe(host, std::slice::from_ref(batch)) {
            Ok(()) => continue,
            Err(e) if e.is_transient() => return Err(e),
            Err(_) => {}
        }
        let (mut lo, mut hi) = (0, batch.records.len());
        if hi == 0 {
            return Ok(None);
        }
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            match store.probe(host, &[subset(batch, lo..mid)]) {
                Ok(()) => lo = mid,
                Err(e) if e.is_transient() => return Err(e),
                Err(_) => hi = mid,
            }
        }
        let refused = match store.probe(host, &[subset(batch, lo..lo + 1)]) {
            Err(e) if e.is_fatal() => return Err(e),
            Err(e) if !e.is_transient() => e,
            Err(e) => return Err(e),
            Ok(()) => return Ok(None),
        };
        // The control: the same row with a neutral line (`{}`, no timestamp, level or message)
        // in its place. Only if that is accepted is the refusal the line's own (invalid data,
        // such as `\u0000` in `jsonb`); if it is refused too, the database refuses any row
        // (a grant, the schema, a constraint): no line is to blame, and none may become a dead
        // letter.
        let record = &batch.records[lo];
        let neutral = RecordBatch {
            buf: b"{}".to_vec(),
            records: vec![Record {
                offset: record.offset,
                line: 0..2,
                ts_micros: None,
                level: None,
                message: None,
            }],
            dead_letters: Vec::new(),
            empty_lines: 0,
            bytes: 0,
            position: batch.position.clone(),
        };
        return match store.probe(host, &[neutral]) {
            Ok(()) => Ok(Some((b, lo, refused))),
            Err(e) if e.is_transient() => Err(e),
            Err(_) => Err(DbError::fatal(format!(
                "the database refuses any row, not one line: {refused}"
            ))),
        };
    }
    Ok(None)
}

#[cfg(test)]
#[path = "writer_tests.rs"]
mod tests;
