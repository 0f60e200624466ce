//! The pipeline's actors and the plumbing they share: starting an actor with its mailbox bound in
//! force from the first message, a bounded window of outstanding sends (pipelining without
//! losing backpressure, ARCHITECTURE.md §2), and a drop guard that reports a vanished stage.
//!
//! - [`reader`]: drains the tail bridge into the parser.
//! - [`parser`]: lines → records and dead letters.
//! - [`writer`]: gathers records into transactions and hands them to the committer.

pub mod parser;
pub mod reader;
pub mod writer;

use std::sync::Arc;

use actix::dev::channel;
use actix::prelude::*;
use actix_rt::ArbiterHandle;
use tokio::sync::Semaphore;

use crate::messages::{Stage, StageFailed, StageGone};

/// Starts `actor` on `arbiter` with a mailbox of `capacity` messages. The address exists (and the
/// bound holds) before the actor runs, unlike `set_mailbox_capacity` in `started`, which early
/// senders race (ARCHITECTURE.md §8).
pub fn start_on<A>(arbiter: &ArbiterHandle, capacity: usize, actor: A) -> Addr<A>
where
    A: Actor<Context = Context<A>> + Send,
{
    let (tx, rx) = channel::channel(capacity);
    let addr = Addr::new(tx);
    arbiter.spawn_fn(move || {
        Context::with_receiver(rx).run(actor);
    });
    addr
}

/// Sends to the next stage with at most `size` requests outstanding. `send().await` on an actix
/// address resolves only when the handler has finished, so awaiting each send would run the
/// stages in lock-step; a window keeps `size` in flight and makes the sender wait (yielding to
/// the runtime) once they are all taken: bounded memory, overlapping stages.
pub struct Window<M>
where
    M: Message + Send,
    M::Result: Send,
{
    to: Recipient<M>,
    permits: Arc<Semaphore>,
    size: u32,
    name: &'static str,
}

impl<M> Clone for Window<M>
where
    M: Message + Send,
    M::Result: Send,
{
    fn clone(&self) -> Self {
        Window {
            to: self.to.clone(),
            permits: self.permits.clone(),
            size: self.size,
            name: self.name,
        }
    }
}

impl<M> Window<M>
where
    M: Message + Send + 'static,
    M::Result: Send,
{
    pub fn new(to: Recipient<M>, size: usize, name: &'static str) -> Self {
        let size = size.clamp(1, Semaphore::MAX_PERMITS) as u32;
        Window {
            to,
            permits: Arc::new(Semaphore::new(size as usize)),
            size,
            name,
        }
    }

    /// Hands `msg` to the next stage; waits while `size` messages are outstanding.
    ///
    /// # Errors
    /// When the next stage is gone (then every later call fails too).
    pub async fn send(&self, msg: M) -> Result<(), StageGone> {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StageGone(self.name))?;
        let to = self.to.clone();
        let permits = self.permits.clone();
        actix_rt::spawn(async move {
            if to.send(msg).await.is_err() {
                permits.close();
            }
            drop(permit);
        });
        Ok(())
    }

    /// Hands `msg` to the next stage while `ctx`'s actor waits (`ctx.wait`: it takes no other
    /// message meanwhile, which keeps the bound). When the next stage is gone the actor stops
    /// quietly: that stage's own guard reports why (the root cause), and reporting "gone" here
    /// too would race it and blame the wrong stage.
    pub fn forward<A: GuardedStage>(&self, ctx: &mut Context<A>, msg: M) {
        let window = self.clone();
        ctx.wait(
            actix::fut::wrap_future::<_, A>(async move { window.send(msg).await }).map(
                |sent, act, ctx| {
                    if let Err(e) = sent {
                        tracing::debug!(error = %e, "Next stage gone; stopping.");
                        act.guard().disarm();
                        ctx.stop();
                    }
                },
            ),
        );
    }

    /// A reading of how many messages are outstanding that does not keep the next stage alive.
    pub fn depth(&self) -> WindowDepth {
        WindowDepth {
            permits: self.permits.clone(),
            size: self.size,
        }
    }

    /// Waits until every outstanding message has been handled.
    ///
    /// # Errors
    /// When the next stage is gone.
    pub async fn drain(&self) -> Result<(), StageGone> {
        let all = self
            .permits
            .acquire_many(self.size)
            .await
            .map_err(|_| StageGone(self.name))?;
        drop(all);
        Ok(())
    }
}

/// Outstanding messages of a [`Window`] (for the queue-depth gauges).
#[derive(Clone)]
pub struct WindowDepth {
    permits: Arc<Semaphore>,
    size: u32,
}

impl WindowDepth {
    pub fn get(&self) -> usize {
        (self.size as usize).saturating_sub(self.permits.available_permits())
    }
}

/// An actor that holds a [`StageGuard`].
pub trait GuardedStage: Actor<Context = Context<Self>> {
    fn guard(&mut self) -> &mut StageGuard;
}

/// Lives inside an actor; if the actor is dropped without [`StageGuard::disarm`] — a panic in a
/// handler, which actix does not restart (ARCHITECTURE.md §8) — it tells the supervisor.
pub struct StageGuard {
    pub generation: u64,
    pub stage: Stage,
    supervisor: Recipient<StageFailed>,
    armed: bool,
}

impl StageGuard {
    pub fn new(generation: u64, stage: Stage, supervisor: Recipient<StageFailed>) -> Self {
        StageGuard {
            generation,
            stage,
            supervisor,
            armed: true,
        }
    }

    /// The stage is stopping normally.
    pub fn disarm(&mut self) {
        self.armed = false;
    }

    /// Reports a failure now (and disarms: one report per stage).
    pub fn fail(&mut self, reason: String) {
        self.report(reason, false);
    }

    /// Reports a failure that a restart cannot mend (the supervisor stops instead).
    pub fn fail_fatal(&mut self, reason: String) {
        self.report(reason, true);
    }

    fn report(&mut self, reason: String, fatal: bool) {
        if self.armed {
            self.armed = false;
            // A rare control message: do_send is fine here (never on the data path).
            self.supervisor.do_send(StageFailed {
                generation: self.generation,
                stage: self.stage,
                reason,
                fatal,
            });
        }
    }
}

impl Drop for StageGuard {
    /// The actor that holds the guard is gone: logs it, and reports a failure unless disarmed.
    fn drop(&mut self) {
        tracing::debug!(generation = self.generation, "{} stopped.", self.stage);
        let reason = if std::thread::panicking() {
            "panicked".to_string()
        } else {
            "stopped unexpectedly".to_string()
        };
        self.fail(reason);
    }
}
