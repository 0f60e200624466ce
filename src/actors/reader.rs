//! Reader actor: the head of the actor pipeline. Drains the bounded tail bridge (`add_stream`)
//! and forwards each [`LineBatch`] to the parser through a bounded [`Window`]. While the window is
//! full the actor waits (`ctx.wait`), the stream is not polled, the bridge fills, and the tail
//! tasks wait in `send`: that is how the database's pace reaches the files. When the bridge closes
//! (shutdown, or `--once` at the end of every file) it flushes the stages behind it and reports
//! the drain to the supervisor.

use actix::prelude::*;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::{GuardedStage, StageGuard, Window};
use crate::messages::{Drained, Flush, Lines};
use crate::record::LineBatch;

pub struct Reader {
    /// The bridge's receiving end; moved into the actor's stream when it starts.
    bridge: Option<mpsc::Receiver<LineBatch>>,
    parser: Window<Lines>,
    parser_flush: Recipient<Flush>,
    drained: Recipient<Drained>,
    guard: StageGuard,
}

impl Reader {
    pub fn new(
        bridge: mpsc::Receiver<LineBatch>,
        parser: Window<Lines>,
        parser_flush: Recipient<Flush>,
        drained: Recipient<Drained>,
        guard: StageGuard,
    ) -> Self {
        Reader {
            bridge: Some(bridge),
            parser,
            parser_flush,
            drained,
            guard,
        }
    }
}

impl Actor for Reader {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if let Some(rx) = self.bridge.take() {
            ctx.add_stream(ReceiverStream::new(rx));
        }
    }
}

impl GuardedStage for Reader {
    fn guard(&mut self) -> &mut StageGuard {
        &mut self.guard
    }
}

impl StreamHandler<LineBatch> for Reader {
    fn handle(&mut self, batch: LineBatch, ctx: &mut Context<Self>) {
        self.parser.forward(ctx, Lines(batch));
    }

    fn finished(&mut self, ctx: &mut Context<Self>) {
        tracing::debug!(
            generation = self.guard.generation,
            "Bridge closed; draining."
        );
        let parser = self.parser.clone();
        let flush = self.parser_flush.clone();
        ctx.wait(
            async move {
                parser.drain().await?;
                flush
                    .send(Flush)
                    .await
                    .map_err(|_| crate::messages::StageGone("parser"))?
            }
            .into_actor(self)
            .map(|flushed, act, ctx| {
                match flushed {
                    Ok(()) => {
                        act.guard.disarm();
                        act.drained.do_send(Drained {
                            generation: act.guard.generation,
                        });
                    }
                    Err(e) => act.guard.fail(format!("drain failed: {e}")),
                }
                ctx.stop();
            }),
        );
    }
}
