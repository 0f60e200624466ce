//! The rows of a batch being built, and the rows held back before they are stored.

use crate::record::{DeadLetter, DeadLetterReason, LineBatch, Record, RecordBatch, Text};

/// A row held while pieces before it are pending.
#[derive(Debug)]
pub(super) enum HeldRow {
    Event {
        offset: u64,
        json: Vec<u8>,
        ts_micros: Option<i64>,
        message: String,
    },
    Dead {
        offset: u64,
        raw: Vec<u8>,
        line_bytes: u64,
        reason: DeadLetterReason,
    },
}

impl HeldRow {
    pub(super) fn bytes(&self) -> usize {
        match self {
            HeldRow::Event { json, message, .. } => json.len() + message.len(),
            HeldRow::Dead { raw, .. } => raw.len(),
        }
    }
}

/// The rows of a batch being built; events are written to `out`, which is appended to the
/// batch's buffer (at `base`).
pub(super) struct Rows<'o> {
    pub(super) base: usize,
    pub(super) out: &'o mut Vec<u8>,
    pub(super) records: Vec<Record>,
    pub(super) dead_letters: Vec<DeadLetter>,
}

impl Rows<'_> {
    /// The parsed `batch`: its buffer with `out` appended, its counts and position.
    pub(super) fn into_batch(self, batch: LineBatch) -> RecordBatch {
        let mut buf = batch.buf;
        buf.extend_from_slice(self.out);
        RecordBatch {
            buf,
            records: self.records,
            dead_letters: self.dead_letters,
            empty_lines: batch.empty_lines,
            bytes: batch.bytes,
            position: batch.position,
        }
    }

    /// The range in the final buffer of `out[start..]`, if it fits the buffer's `u32` ranges.
    pub(super) fn range(&self, start: usize) -> Option<std::ops::Range<u32>> {
        let s = u32::try_from(self.base + start).ok()?;
        let e = u32::try_from(self.base + self.out.len()).ok()?;
        Some(s..e)
    }

    pub(super) fn record(
        &mut self,
        offset: u64,
        start: usize,
        ts_micros: Option<i64>,
        message: Option<Text>,
    ) {
        self.record_with_level(offset, start, ts_micros, None, message);
    }

    pub(super) fn record_with_level(
        &mut self,
        offset: u64,
        start: usize,
        ts_micros: Option<i64>,
        level: Option<Text>,
        message: Option<Text>,
    ) {
        match self.range(start) {
            Some(line) => self.records.push(Record {
                offset,
                line,
                ts_micros,
                level,
                message,
            }),
            None => {
                // Past 4 GiB in one batch: not storable; kept as a line too long.
                let len = (self.out.len() - start) as u64;
                self.out.truncate(start);
                self.dead_letters.push(DeadLetter {
                    offset,
                    raw: 0..0,
                    line_bytes: len,
                    reason: DeadLetterReason::TooLong {
                        len,
                        limit: u64::from(u32::MAX),
                    },
                });
            }
        }
    }

    pub(super) fn release(&mut self, row: HeldRow) {
        let start = self.out.len();
        match row {
            HeldRow::Event {
                offset,
                json,
                ts_micros,
                message,
            } => {
                self.out.extend_from_slice(&json);
                self.record(
                    offset,
                    start,
                    ts_micros,
                    Some(Text::Owned(message.into_boxed_str())),
                );
            }
            HeldRow::Dead {
                offset,
                raw,
                line_bytes,
                reason,
            } => {
                self.out.extend_from_slice(&raw);
                let raw = self.range(start).unwrap_or(0..0);
                self.dead_letters.push(DeadLetter {
                    offset,
                    raw,
                    line_bytes,
                    reason,
                });
            }
        }
    }
}
