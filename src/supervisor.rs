//! Supervisor actor: builds the pipeline — writer, then parser, then reader, then the tail tasks —
//! restarts it when a stage fails, and orders the shutdown: stop reading, let parsing drain, let
//! the writer commit, exit.
//!
//! A restart tears the whole pipeline down (tail tasks, actors, the committer), waits until no
//! commit of it can still land, and builds a new one from the positions the database committed.
//! Batches that were in flight are therefore read again and stored exactly once: the positions
//! committed with the rows say exactly where to resume.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use actix_rt::Arbiter;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::actors::parser::Parser;
use crate::actors::reader::Reader;
use crate::actors::writer::{run_committer, CommitterShared, RetryPolicy, Writer};
use crate::actors::{start_on, StageGuard, Window, WindowDepth};
use crate::config::Config;
use crate::db::{self, Store};
use crate::exit::Exit;
use crate::messages::{Drained, Shutdown, Stage, StageFailed};
use crate::parse::ParseSettings;
use crate::record::StoredPosition;
use crate::retention::Retention;
use crate::tail::{TailSettings, Tailer, LINE_BATCH_MAX_BYTES};

/// Test-only faults (feature `fault-injection`, env `LOGBELT_FAULTS`), applied to the first
/// pipeline only.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Panic the parser on its Nth batch.
    pub parser_panic_on_batch: Option<u64>,
    /// Make this many commits fail permanently (counted across restarts).
    pub failed_commits: Arc<AtomicU32>,
}

impl Faults {
    /// Reads `LOGBELT_FAULTS` (`parser_panic_on_batch=N,failed_commits=K`) in builds with the
    /// `fault-injection` feature; nothing otherwise.
    pub fn from_env() -> Faults {
        let mut faults = Faults::default();
        if !cfg!(feature = "fault-injection") {
            return faults;
        }
        let spec = std::env::var("LOGBELT_FAULTS").unwrap_or_default();
        for item in spec.split(',').filter(|s| !s.is_empty()) {
            match item.split_once('=') {
                Some(("parser_panic_on_batch", n)) => faults.parser_panic_on_batch = n.parse().ok(),
                Some(("failed_commits", n)) => {
                    faults.failed_commits = Arc::new(AtomicU32::new(n.parse().unwrap_or(0)))
                }
                _ => tracing::warn!(item, "Unknown fault ignored."),
            }
        }
        faults
    }

    /// The store, failing the commits asked for (`fault-injection` builds only).
    fn wrap(&self, store: Box<dyn Store>) -> Box<dyn Store> {
        #[cfg(feature = "fault-injection")]
        let store: Box<dyn Store> = Box::new(db::faults::FailingCommits::new(
            store,
            self.failed_commits.clone(),
        ));
        store
    }
}

/// One running pipeline and what it takes to tear it down.
struct Pipeline {
    generation: u64,
    tail_cancel: CancellationToken,
    /// Tells the committer to stop retrying.
    commit_cancel: Arc<AtomicBool>,
    arbiters: Vec<Arbiter>,
    /// Closes when the committer and every commit it started are gone.
    committer_alive: mpsc::Receiver<()>,
}

pub struct Supervisor {
    config: Arc<Config>,
    once: bool,
    generation: u64,
    pipeline: Option<Pipeline>,
    shutting_down: bool,
    /// When recent restarts happened (the restart budget's window).
    restarts: VecDeque<Instant>,
    /// When the run started (for the summary of `--once`).
    started: Instant,
    /// Whether a pipeline has been built: before, an error opening the database ends the run
    /// (a wrong URL, a server that is not there), unless the database is only busy.
    built_once: bool,
    /// Attempts to open a busy database in a row (the backoff grows with them).
    busy_attempts: u32,
    faults: Faults,
    /// The retention actor, once started, and the flag that stops its runs at exit.
    retention: Option<(Addr<Retention>, Arc<AtomicBool>)>,
}

impl Supervisor {
    pub fn new(config: Config, once: bool, faults: Faults) -> Self {
        Supervisor {
            config: Arc::new(config),
            once,
            generation: 0,
            pipeline: None,
            shutting_down: false,
            restarts: VecDeque::new(),
            started: Instant::now(),
            built_once: false,
            busy_attempts: 0,
            faults,
            retention: None,
        }
    }

    /// Opens the store, reads the committed positions, then builds the pipeline.
    fn start_pipeline(&mut self, ctx: &mut Context<Self>) {
        self.generation += 1;
        let generation = self.generation;
        let config = self.config.clone();
        let opened = tokio::task::spawn_blocking(move || {
            let mut stores = Vec::with_capacity(config.database.writers);
            for _ in 0..config.database.writers.max(1) {
                stores.push(db::open(&config.database)?);
            }
            let positions = stores[0].load_positions(&config.agent.host)?;
            crate::retention::prepare_at_start(&config.database);
            Ok::<_, db::DbError>((stores, positions))
        });
        // Spawned, not waited for: a signal must be heard while the database is being opened.
        ctx.spawn(opened.into_actor(self).map(move |opened, act, ctx| {
            if act.shutting_down && act.pipeline.is_none() {
                act.exit(ctx, Exit::Ok);
                return;
            }
            match opened {
                Ok(Ok((stores, positions))) => {
                    act.busy_attempts = 0;
                    act.built_once = true;
                    act.build(ctx, generation, stores, positions)
                }
                Ok(Err(e)) if e.is_busy() => act.retry_busy(ctx, e),
                Ok(Err(e)) if !act.built_once || e.is_fatal() => {
                    tracing::error!(error = %e, "Cannot start.");
                    act.exit(ctx, Exit::Runtime);
                }
                Ok(Err(e)) => act.restart(ctx, "database", e.to_string()),
                Err(e) => {
                    tracing::error!(error = %e, "Opening the database panicked.");
                    act.exit(ctx, Exit::Runtime);
                }
            }
        }));
    }

    /// The database is there but cannot take logbelt now (too many clients, starting up):
    /// like an outage during a commit, try again after a backoff, whether or not a pipeline
    /// ever ran, without counting a restart; say the real cause each time.
    fn retry_busy(&mut self, ctx: &mut Context<Self>, e: db::DbError) {
        let d = &self.config.database;
        let backoff = d
            .retry_initial_backoff
            .saturating_mul(2u32.saturating_pow(self.busy_attempts.min(30)))
            .min(d.retry_max_backoff);
        self.busy_attempts = self.busy_attempts.saturating_add(1);
        tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "Database busy; opening it again after a backoff.");
        self.start_after(ctx, tokio::time::sleep(backoff));
    }

    /// Starts the pipeline once `wait` is over (a backoff), unless a signal came meanwhile: then
    /// exits at once. Spawned, not waited for, so that the signal is heard during the wait.
    fn start_after(
        &mut self,
        ctx: &mut Context<Self>,
        wait: impl std::future::Future<Output = ()> + 'static,
    ) {
        ctx.spawn(wait.into_actor(self).map(|_, act, ctx| {
            if act.shutting_down {
                act.exit(ctx, Exit::Ok);
            } else {
                act.start_pipeline(ctx);
            }
        }));
    }

    fn build(
        &mut self,
        ctx: &mut Context<Self>,
        generation: u64,
        stores: Vec<Box<dyn Store>>,
        positions: Vec<StoredPosition>,
    ) {
        let c = &self.config;
        let cap = c.pipeline.mailbox_capacity;
        let parser_panic_on_batch = if generation == 1 {
            self.faults.parser_panic_on_batch
        } else {
            None
        };
        let me = ctx.address();
        let guard = |stage| StageGuard::new(generation, stage, me.clone().recipient());
        let (reader_arbiter, parser_arbiter, writer_arbiter) =
            (Arbiter::new(), Arbiter::new(), Arbiter::new());
        let commit_cancel = Arc::new(AtomicBool::new(false));
        let tail_cancel = CancellationToken::new();
        let (alive_tx, committer_alive) = mpsc::channel(1);

        // Writer side first, so that every later stage has somewhere to send.
        let retry = RetryPolicy {
            initial_backoff: c.database.retry_initial_backoff,
            max_backoff: c.database.retry_max_backoff,
        };
        let shared = CommitterShared {
            host: c.agent.host.as_str().into(),
            retry,
            cancel: commit_cancel.clone(),
            alive: alive_tx,
        };
        let database_file = stores.first().and_then(|s| s.file_check());
        let mut committers = Vec::with_capacity(stores.len());
        for store in stores {
            let store = self.faults.wrap(store);
            let (jobs_tx, jobs_rx) = mpsc::channel(1);
            writer_arbiter.spawn(run_committer(
                store,
                jobs_rx,
                shared.clone(),
                guard(Stage::Writer),
            ));
            committers.push(jobs_tx);
        }
        let committer_queues: Vec<_> = committers.iter().map(mpsc::Sender::downgrade).collect();
        drop(shared);
        let writer = start_on(
            &writer_arbiter.handle(),
            cap,
            Writer::new(
                c.pipeline.batch_rows,
                c.pipeline.flush_interval,
                committers,
                c.search.index,
                guard(Stage::Writer),
            ),
        );
        let to_writer = Window::new(writer.clone().recipient(), cap, "writer");
        let writer_depth = to_writer.depth();
        let parser = start_on(
            &parser_arbiter.handle(),
            cap,
            Parser::new(
                Arc::new(ParseSettings::from_config(&c.parse)),
                c.parse.max_line_bytes,
                to_writer,
                writer.recipient(),
                guard(Stage::Parser),
                parser_panic_on_batch,
            ),
        );
        let (bridge_tx, bridge_rx) = mpsc::channel(c.pipeline.channel_capacity);
        let to_parser = Window::new(parser.clone().recipient(), cap, "parser");
        reader_arbiter.spawn(sample_queues(
            bridge_tx.downgrade(),
            to_parser.depth(),
            writer_depth,
            committer_queues,
        ));
        start_on(
            &reader_arbiter.handle(),
            cap,
            Reader::new(
                bridge_rx,
                to_parser,
                parser.recipient(),
                me.clone().recipient(),
                guard(Stage::Reader),
            ),
        );
        let settings = TailSettings {
            read_buffer_bytes: c.pipeline.read_buffer_bytes,
            max_line_bytes: c.parse.max_line_bytes,
            batch_lines: c.pipeline.batch_rows,
            batch_bytes: LINE_BATCH_MAX_BYTES,
            poll_interval: c.pipeline.poll_interval,
            once: self.once,
        };
        let tailer = Tailer::new(
            c.sources.clone(),
            settings,
            positions,
            bridge_tx,
            tail_cancel.clone(),
        );
        reader_arbiter.spawn(tailer.run());
        if let Some(file) = database_file {
            reader_arbiter.spawn(watch_database_file(
                file,
                generation,
                me.clone().recipient(),
            ));
        }
        crate::metrics::set_healthy(true);
        tracing::info!(generation, "Pipeline started.");
        if self.retention.is_none() && !self.once && crate::retention::needed(c) {
            let stop = Arc::new(AtomicBool::new(false));
            let addr = Retention::new(self.config.clone(), stop.clone()).start();
            self.retention = Some((addr, stop));
        }
        self.pipeline = Some(Pipeline {
            generation,
            tail_cancel,
            commit_cancel,
            arbiters: vec![reader_arbiter, parser_arbiter, writer_arbiter],
            committer_alive,
        });
        if self.shutting_down {
            self.stop_reading();
        }
    }

    fn stop_reading(&mut self) {
        if let Some(p) = &self.pipeline {
            p.tail_cancel.cancel();
        }
    }

    /// Stops every part of the running pipeline at once; the future ends when no commit of it
    /// can still land.
    fn tear_down(&mut self) -> impl std::future::Future<Output = ()> {
        let pipeline = self.pipeline.take();
        async move {
            if let Some(mut p) = pipeline {
                p.tail_cancel.cancel();
                p.commit_cancel.store(true, Ordering::Relaxed);
                for a in &p.arbiters {
                    a.stop();
                }
                while p.committer_alive.recv().await.is_some() {}
                tracing::debug!(generation = p.generation, "Pipeline torn down.");
            }
        }
    }

    fn restart(&mut self, ctx: &mut Context<Self>, stage: &str, reason: String) {
        let s = &self.config.supervisor;
        let now = Instant::now();
        while self
            .restarts
            .front()
            .is_some_and(|t| now.duration_since(*t) > s.restart_window)
        {
            self.restarts.pop_front();
        }
        self.restarts.push_back(now);
        if self.restarts.len() as u64 > u64::from(s.max_restarts) {
            tracing::error!(stage, reason = %reason, max_restarts = s.max_restarts, window_ms = s.restart_window.as_millis() as u64, "Restart budget exhausted; exiting. Uncommitted lines will be read again at the next start.");
            self.tear_down_and_exit(ctx, Exit::Runtime);
            return;
        }
        let n = self.restarts.len() as u32;
        let backoff = s
            .restart_backoff_initial
            .saturating_mul(2u32.saturating_pow(n.saturating_sub(1)))
            .min(s.restart_backoff_max);
        tracing::warn!(stage, reason = %reason, restart = n, backoff_ms = backoff.as_millis() as u64, "Restarting the pipeline from the committed positions.");
        let down = self.tear_down();
        self.start_after(ctx, async move {
            down.await;
            tokio::time::sleep(backoff).await;
        });
    }

    /// Exits with `code` once no commit of the running pipeline can still land.
    fn tear_down_and_exit(&mut self, ctx: &mut Context<Self>, code: Exit) {
        let down = self.tear_down();
        ctx.wait(
            down.into_actor(self)
                .map(move |_, act, ctx| act.exit(ctx, code)),
        );
    }

    fn exit(&mut self, ctx: &mut Context<Self>, code: Exit) {
        if let Some(p) = &self.pipeline {
            p.commit_cancel.store(true, Ordering::Relaxed);
        }
        if let Some((_, stop)) = &self.retention {
            stop.store(true, Ordering::Relaxed);
        }
        tracing::info!(code = code.code(), "Exiting.");
        ctx.stop();
        System::current().stop_with_code(code.code());
    }
}

/// How often the path of a SQLite database is checked to still name the opened file.
const DATABASE_FILE_CHECK_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// Checks, until the pipeline's arbiter stops, that the database's path still names the file
/// that was opened (commits check it too, but an idle pipeline makes none); reports a fatal
/// failure when it does not.
async fn watch_database_file(
    file: db::FileCheck,
    generation: u64,
    supervisor: Recipient<StageFailed>,
) {
    loop {
        tokio::time::sleep(DATABASE_FILE_CHECK_INTERVAL).await;
        if let Err(e) = file.check() {
            supervisor.do_send(StageFailed {
                generation,
                stage: Stage::Writer,
                reason: e.message,
                fatal: true,
            });
            return;
        }
    }
}

/// The line `run --once` ends with: what it committed, and how long it took.
fn summary(elapsed: std::time::Duration) {
    let t = crate::metrics::run_totals();
    let plural = |n: u64, one: &str, many: &str| {
        if n == 1 {
            format!("1 {one}")
        } else {
            format!("{n} {many}")
        }
    };
    tracing::info!(
        files = t.files,
        rows = t.records,
        dead_letters = t.dead_letters,
        bytes = t.bytes,
        elapsed_ms = elapsed.as_millis() as u64,
        "Done: {}, {}, {} ({}) committed in {:.1} s.",
        plural(t.files as u64, "file", "files"),
        plural(t.records, "row", "rows"),
        plural(t.dead_letters, "dead letter", "dead letters"),
        crate::inspect::human_size(i64::try_from(t.bytes).unwrap_or(i64::MAX)),
        elapsed.as_secs_f64()
    );
}

/// Publishes the depth of every bounded queue of a pipeline, once a second, until the pipeline's
/// arbiter stops. Holds only weak handles: it never keeps a stage alive.
async fn sample_queues(
    bridge: mpsc::WeakSender<crate::record::LineBatch>,
    to_parser: WindowDepth,
    to_writer: WindowDepth,
    committers: Vec<mpsc::WeakSender<crate::actors::writer::CommitJob>>,
) {
    fn depth<T>(tx: Option<mpsc::Sender<T>>) -> usize {
        tx.map_or(0, |tx| tx.max_capacity() - tx.capacity())
    }
    loop {
        tokio::time::sleep(crate::metrics::SAMPLE_INTERVAL).await;
        crate::metrics::queue_depth("bridge", depth(bridge.upgrade()));
        crate::metrics::queue_depth("parser", to_parser.get());
        crate::metrics::queue_depth("writer", to_writer.get());
        let queued: usize = committers.iter().map(|c| depth(c.upgrade())).sum();
        crate::metrics::queue_depth("committer", queued);
    }
}

impl Actor for Supervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.start_pipeline(ctx);
    }
}

impl Handler<Shutdown> for Supervisor {
    type Result = ();

    fn handle(&mut self, _: Shutdown, ctx: &mut Context<Self>) {
        if self.shutting_down {
            return;
        }
        self.shutting_down = true;
        if self.pipeline.is_none() {
            // Starting or restarting: nothing reads, nothing is in flight to drain.
            tracing::info!("Shutting down while no pipeline runs; exiting.");
            self.exit(ctx, Exit::Ok);
            return;
        }
        let timeout = self.config.shutdown.drain_timeout;
        tracing::info!(
            drain_timeout_ms = timeout.as_millis() as u64,
            "Shutting down: stop reading, drain, commit."
        );
        self.stop_reading();
        ctx.run_later(timeout, |act, ctx| {
            tracing::error!(
                "Drain timed out; exiting. Uncommitted lines will be read again at the next start."
            );
            act.exit(ctx, Exit::Runtime);
        });
    }
}

impl Handler<Drained> for Supervisor {
    type Result = ();

    fn handle(&mut self, msg: Drained, ctx: &mut Context<Self>) {
        if self.pipeline.as_ref().map(|p| p.generation) != Some(msg.generation) {
            return;
        }
        if self.shutting_down || self.once {
            tracing::info!("Drained: everything read is committed.");
            if self.once {
                summary(self.started.elapsed());
            }
            self.tear_down_and_exit(ctx, Exit::Ok);
        } else {
            self.restart(ctx, "tailer", "reading ended unexpectedly".into());
        }
    }
}

impl Handler<StageFailed> for Supervisor {
    type Result = ();

    fn handle(&mut self, msg: StageFailed, ctx: &mut Context<Self>) {
        if self.pipeline.as_ref().map(|p| p.generation) != Some(msg.generation) {
            return;
        }
        crate::metrics::set_healthy(false);
        if msg.fatal {
            tracing::error!(stage = %msg.stage, reason = %msg.reason, "Cannot go on: a restart would not help; exiting. Nothing uncommitted is lost: it is read again at the next start.");
            self.tear_down_and_exit(ctx, Exit::Runtime);
            return;
        }
        tracing::error!(stage = %msg.stage, reason = %msg.reason, "Stage failed.");
        crate::metrics::restarted(&msg.stage.to_string());
        if self.shutting_down {
            tracing::error!("Cannot finish the drain; exiting. Uncommitted lines will be read again at the next start.");
            self.tear_down_and_exit(ctx, Exit::Runtime);
            return;
        }
        self.restart(ctx, &msg.stage.to_string(), msg.reason);
    }
}
