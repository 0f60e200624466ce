//! Writer actor and its committer task. The actor gathers [`RecordBatch`]es into a pending
//! transaction of up to `batch_rows` rows (or `flush_interval` old) and hands it to the committer
//! over a bounded channel of one: while one transaction commits, the next fills, and when both
//! are full the actor stops taking messages, its mailbox fills, and the backpressure reaches
//! the parser. The committer runs the blocking store on a blocking thread, retries transient
//! errors with exponential backoff (holding the batch: nothing is dropped, and positions only
//! move when a commit succeeds) and reports a permanent failure to the supervisor.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use tokio::sync::{mpsc, oneshot};

use super::StageGuard;
use crate::db::{DbError, Store};
use crate::messages::{Flush, Records, StageGone};
use crate::record::RecordBatch;

/// How the committer retries transient database errors.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

/// Work for the committer.
pub enum CommitJob {
    /// Commit these batches in one transaction.
    Commit(Vec<RecordBatch>),
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
    /// The committer's queue (capacity 1). Dropped when the actor stops: the committer then
    /// finishes what it holds and ends.
    committer: mpsc::Sender<CommitJob>,
    guard: StageGuard,
}

impl Writer {
    pub fn new(
        batch_rows: usize,
        flush_interval: Duration,
        committer: mpsc::Sender<CommitJob>,
        guard: StageGuard,
    ) -> Self {
        Writer {
            batch_rows,
            flush_interval,
            pending: Vec::new(),
            pending_rows: 0,
            epoch: 0,
            committer,
            guard,
        }
    }

    /// Hands the pending transaction to the committer; the actor takes no message until the
    /// committer has room for it.
    fn hand_over(&mut self, ctx: &mut Context<Self>) {
        if self.pending.is_empty() {
            return;
        }
        self.epoch += 1;
        self.pending_rows = 0;
        let job = CommitJob::Commit(std::mem::take(&mut self.pending));
        let committer = self.committer.clone();
        ctx.wait(
            async move { committer.send(job).await }
                .into_actor(self)
                .map(|sent, act, ctx| {
                    if sent.is_err() {
                        act.guard.fail("committer is gone".into());
                        ctx.stop();
                    }
                }),
        );
    }
}

impl Actor for Writer {
    type Context = Context<Self>;

    fn stopped(&mut self, _: &mut Context<Self>) {
        tracing::debug!(generation = self.guard.generation, "Writer stopped.");
    }
}

impl Handler<Records> for Writer {
    type Result = ();

    fn handle(&mut self, Records(batch): Records, ctx: &mut Context<Self>) {
        if self.pending.is_empty() {
            let epoch = self.epoch;
            ctx.run_later(self.flush_interval, move |act, ctx| {
                if act.epoch == epoch {
                    act.hand_over(ctx);
                }
            });
        }
        self.pending_rows += batch.rows().max(1);
        self.pending.push(batch);
        if self.pending_rows >= self.batch_rows {
            self.hand_over(ctx);
        }
    }
}

impl Handler<Flush> for Writer {
    type Result = ResponseActFuture<Self, Result<(), StageGone>>;

    fn handle(&mut self, _: Flush, ctx: &mut Context<Self>) -> Self::Result {
        self.hand_over(ctx);
        let committer = self.committer.clone();
        Box::pin(
            async move {
                let (tx, rx) = oneshot::channel();
                committer
                    .send(CommitJob::Sync(tx))
                    .await
                    .map_err(|_| StageGone("committer"))?;
                rx.await.map_err(|_| StageGone("committer"))?
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

/// The committer: owns the store, commits jobs in order on a blocking thread. Ends when the
/// writer drops its sender; the store (and `alive`) are dropped then, which is how the supervisor
/// knows no commit of this pipeline can still land.
pub async fn run_committer(
    mut store: Box<dyn Store>,
    mut jobs: mpsc::Receiver<CommitJob>,
    host: Arc<str>,
    retry: RetryPolicy,
    cancel: Arc<AtomicBool>,
    mut guard: StageGuard,
    fail_commits: u32,
    alive: mpsc::Sender<()>,
) {
    let mut failed: Option<String> = None;
    let mut fail_commits = fail_commits;
    while let Some(job) = jobs.recv().await {
        match job {
            CommitJob::Sync(reply) => {
                let _ = reply.send(match &failed {
                    None => Ok(()),
                    Some(_) => Err(StageGone("committer")),
                });
            }
            CommitJob::Commit(_) if failed.is_some() => {}
            CommitJob::Commit(batches) => {
                let (host, retry, cancel) = (host.clone(), retry.clone(), cancel.clone());
                let alive = alive.clone();
                let injected = fail_commits;
                fail_commits = fail_commits.saturating_sub(1);
                let done = tokio::task::spawn_blocking(move || {
                    let started = Instant::now();
                    let result =
                        commit_with_retry(&mut *store, &host, &batches, &retry, &cancel, injected);
                    let rows: usize = batches.iter().map(RecordBatch::rows).sum();
                    tracing::debug!(
                        rows,
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        "Committed."
                    );
                    drop(alive);
                    (store, result)
                })
                .await;
                match done {
                    Ok((s, result)) => {
                        store = s;
                        if let Err(e) = result {
                            tracing::error!(error = %e, "Commit failed; nothing of the batch is stored.");
                            guard.fail(format!("commit failed: {e}"));
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

/// Commits, retrying transient errors with exponential backoff until it works, the error turns
/// permanent, or `cancel` is set (pipeline torn down).
fn commit_with_retry(
    store: &mut dyn Store,
    host: &str,
    batches: &[RecordBatch],
    retry: &RetryPolicy,
    cancel: &AtomicBool,
    mut injected_failures: u32,
) -> Result<(), DbError> {
    let mut backoff = retry.initial_backoff;
    loop {
        let result = if injected_failures > 0 {
            injected_failures -= 1;
            Err(DbError::transient("fault injection: commit fails"))
        } else {
            store.commit(host, batches)
        };
        match result {
            Ok(()) => return Ok(()),
            Err(e) if e.is_transient() && !cancel.load(Ordering::Relaxed) => {
                tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "Database unavailable; holding the batch and retrying.");
                let until = Instant::now() + backoff;
                while Instant::now() < until {
                    if cancel.load(Ordering::Relaxed) {
                        return Err(e);
                    }
                    std::thread::sleep(Duration::from_millis(20).min(backoff));
                }
                backoff = (backoff * 2).min(retry.max_backoff);
            }
            Err(e) => return Err(e),
        }
    }
}
