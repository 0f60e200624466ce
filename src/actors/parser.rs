//! Parser actor: turns each [`LineBatch`] into a [`RecordBatch`] — records for lines that are JSON
//! objects, dead letters (with the reason) for everything else — and forwards it to the writer
//! through a bounded [`Window`]. The batch's buffer moves along; nothing is copied per line.

use std::sync::Arc;

use actix::prelude::*;

use super::{GuardedStage, StageGuard, Window};
use crate::messages::{Flush, Lines, Records, StageGone};
use crate::parse::{parse_line, ParseSettings};
use crate::record::{DeadLetter, DeadLetterReason, LineBatch, Record, RecordBatch, Text};

pub struct Parser {
    settings: Arc<ParseSettings>,
    max_line_bytes: usize,
    writer: Window<Records>,
    writer_flush: Recipient<Flush>,
    guard: StageGuard,
    /// Batches parsed so far (for fault injection).
    batches: u64,
    /// Test hook: panic on this batch number (1-based).
    panic_on_batch: Option<u64>,
}

impl Parser {
    pub fn new(
        settings: Arc<ParseSettings>,
        max_line_bytes: usize,
        writer: Window<Records>,
        writer_flush: Recipient<Flush>,
        guard: StageGuard,
        panic_on_batch: Option<u64>,
    ) -> Self {
        Parser {
            settings,
            max_line_bytes,
            writer,
            writer_flush,
            guard,
            batches: 0,
            panic_on_batch,
        }
    }
}

impl Actor for Parser {
    type Context = Context<Self>;
}

impl GuardedStage for Parser {
    fn guard(&mut self) -> &mut StageGuard {
        &mut self.guard
    }
}

impl Handler<Lines> for Parser {
    type Result = ();

    fn handle(&mut self, Lines(batch): Lines, ctx: &mut Context<Self>) {
        self.batches += 1;
        if self.panic_on_batch == Some(self.batches) {
            panic!("fault injection: parser panics on batch {}", self.batches);
        }
        let records = parse_batch(batch, &self.settings, self.max_line_bytes);
        self.writer.forward(ctx, Records(records));
    }
}

impl Handler<Flush> for Parser {
    type Result = ResponseActFuture<Self, Result<(), StageGone>>;

    fn handle(&mut self, _: Flush, _: &mut Context<Self>) -> Self::Result {
        let writer = self.writer.clone();
        let flush = self.writer_flush.clone();
        Box::pin(
            async move {
                writer.drain().await?;
                flush.send(Flush).await.map_err(|_| StageGone("writer"))?
            }
            .into_actor(self)
            .map(|flushed, act, _| {
                if flushed.is_ok() {
                    act.guard.disarm();
                }
                flushed
            }),
        )
    }
}

/// Classifies every line of `batch`.
pub fn parse_batch(
    batch: LineBatch,
    settings: &ParseSettings,
    max_line_bytes: usize,
) -> RecordBatch {
    let mut records = Vec::with_capacity(batch.lines.len());
    let mut dead_letters = Vec::new();
    for line in &batch.lines {
        let bytes = batch
            .buf
            .get(line.range.start as usize..line.range.end as usize)
            .unwrap_or(&[]);
        if let Some(full) = line.too_long {
            dead_letters.push(DeadLetter {
                offset: line.offset,
                raw: line.range.clone(),
                line_bytes: full,
                reason: DeadLetterReason::TooLong {
                    len: full,
                    limit: max_line_bytes as u64,
                },
            });
            continue;
        }
        match parse_line(bytes, settings) {
            Ok(parsed) => records.push(Record {
                offset: line.offset,
                line: line.range.clone(),
                ts_micros: parsed.ts_micros,
                level: parsed
                    .level
                    .map(|l| Text::from_cow(l, bytes, line.range.start)),
                message: parsed
                    .message
                    .map(|m| Text::from_cow(m, bytes, line.range.start)),
            }),
            Err(e) => dead_letters.push(DeadLetter {
                offset: line.offset,
                raw: line.range.clone(),
                line_bytes: bytes.len() as u64,
                reason: e.into(),
            }),
        }
    }
    RecordBatch {
        buf: batch.buf,
        records,
        dead_letters,
        empty_lines: batch.empty_lines,
        bytes: batch.bytes,
        position: batch.position,
    }
}
