//! CRI: pieces of lines joined across batches, exactly once.

use super::line_bytes;
use super::rows::{HeldRow, Rows};
use crate::parse::{cri_line, text_event, write_cri_event, OnMismatch, ParseError, SourceParser};
use crate::record::{DeadLetterReason, LineBatch, RecordBatch, Text};

/// A CRI file's rows not stored yet: pieces (`P`) waiting for their stream's `F` line, and every
/// row of the file that comes after the first of them. While anything is pending, the file's
/// batches carry the offset of that first piece as their position: a committed position never
/// falls inside an event, nor passes a row that is not stored. After a restart the file is read
/// again from there, and the pending pieces and held rows are made again, whole. Nothing here
/// outlives the Parser actor, so a restarted pipeline starts empty.
#[derive(Debug, Default)]
pub struct CriPending {
    /// Offset of the first pending piece (`None`: nothing pending).
    pub(super) start: Option<u64>,
    open: Vec<OpenPiece>,
    /// Rows finished since `start`, in file order.
    held: Vec<HeldRow>,
    /// Bytes of `open` texts and `held` rows.
    bytes: usize,
}

impl CriPending {
    pub(super) fn is_empty(&self) -> bool {
        self.start.is_none() && self.open.is_empty() && self.held.is_empty()
    }
}

/// One stream's line being joined.
#[derive(Debug)]
struct OpenPiece {
    stream: String,
    /// Offset of its first piece: the event's offset.
    offset: u64,
    time: String,
    ts_micros: i64,
    text: String,
}

/// A CRI source's batch: `P` pieces are joined with the stream's next lines up to its `F` line
/// into one event at the first piece's offset (their texts concatenated, as the runtime split
/// one line). A joined text reaching `max_line_bytes` is stored as an event marked
/// `"partial": true` and the rest goes on as a new one; pending rows past four times
/// `max_line_bytes` (a stream that never ends its line while others write) are stored the same
/// way. A batch that forgets its file (deleted, read to its end) stores what is pending.
pub fn parse_cri_batch(
    mut batch: LineBatch,
    source: &SourceParser,
    pending: &mut CriPending,
    max_line_bytes: usize,
) -> RecordBatch {
    let mut out: Vec<u8> = Vec::new();
    let base = batch.buf.len();
    let mut rows = Rows {
        base,
        out: &mut out,
        records: Vec::with_capacity(batch.lines.len()),
        dead_letters: Vec::new(),
    };
    let hold_limit = max_line_bytes.saturating_mul(4);
    for line in &batch.lines {
        let bytes = line_bytes(&batch.buf, line);
        let dead = |reason, line_bytes| HeldRow::Dead {
            offset: line.offset,
            raw: bytes.to_vec(),
            line_bytes,
            reason,
        };
        let row = if let Some(full) = line.too_long {
            Some(dead(
                DeadLetterReason::TooLong {
                    len: full,
                    limit: max_line_bytes as u64,
                },
                full,
            ))
        } else {
            match std::str::from_utf8(bytes) {
                Err(e) => Some(dead(
                    ParseError::InvalidUtf8 {
                        at: e.valid_up_to(),
                    }
                    .into(),
                    bytes.len() as u64,
                )),
                Ok(text) => match cri_line(text) {
                    None if source.on_mismatch == OnMismatch::Text => {
                        let mut json = Vec::new();
                        text_event(text, &mut json);
                        Some(HeldRow::Event {
                            offset: line.offset,
                            json,
                            ts_micros: None,
                            message: text.to_owned(),
                        })
                    }
                    None => Some(dead(
                        DeadLetterReason::NoMatch {
                            source: source.source.clone(),
                            format: "cri",
                        },
                        bytes.len() as u64,
                    )),
                    Some(l) => {
                        match pending.open.iter().position(|o| o.stream == l.stream) {
                            Some(i) => {
                                pending.open[i].text.push_str(l.text);
                                pending.bytes += l.text.len();
                                let full = pending.open[i].text.len() >= max_line_bytes;
                                (!l.partial || full).then(|| {
                                    let piece = pending.open.remove(i);
                                    pending.bytes = pending.bytes.saturating_sub(piece.text.len());
                                    joined(piece, l.partial)
                                })
                            }
                            None if l.partial => {
                                pending.start.get_or_insert(line.offset);
                                pending.bytes += l.text.len();
                                pending.open.push(OpenPiece {
                                    stream: l.stream.to_owned(),
                                    offset: line.offset,
                                    time: l.time.to_owned(),
                                    ts_micros: l.ts_micros,
                                    text: l.text.to_owned(),
                                });
                                None
                            }
                            None if pending.start.is_none() => {
                                // The common case, a full line with nothing pending: stored
                                // from the batch, its message a span of the line.
                                let start = rows.out.len();
                                write_cri_event(rows.out, l.time, l.stream, l.text, false);
                                rows.record(
                                    line.offset,
                                    start,
                                    Some(l.ts_micros),
                                    Some(Text::from_cow(
                                        std::borrow::Cow::Borrowed(l.text),
                                        bytes,
                                        line.range.start,
                                    )),
                                );
                                continue;
                            }
                            None => {
                                let mut json = Vec::new();
                                write_cri_event(&mut json, l.time, l.stream, l.text, false);
                                Some(HeldRow::Event {
                                    offset: line.offset,
                                    json,
                                    ts_micros: Some(l.ts_micros),
                                    message: l.text.to_owned(),
                                })
                            }
                        }
                    }
                },
            }
        };
        if let Some(row) = row {
            if pending.start.is_some() {
                pending.bytes += row.bytes();
                pending.held.push(row);
            } else {
                rows.release(row);
            }
        }
        if pending.open.is_empty() || pending.bytes > hold_limit {
            release_all(pending, &mut rows);
        }
    }
    if batch.position.forget {
        release_all(pending, &mut rows);
    }
    if let Some(start) = pending.start {
        batch.position.offset = start;
    }
    rows.into_batch(batch)
}

/// The event of a joined line (`cut`: stored before its `F` line).
fn joined(piece: OpenPiece, cut: bool) -> HeldRow {
    let mut json = Vec::new();
    write_cri_event(&mut json, &piece.time, &piece.stream, &piece.text, cut);
    HeldRow::Event {
        offset: piece.offset,
        json,
        ts_micros: Some(piece.ts_micros),
        message: piece.text,
    }
}

/// Stores every pending row: open pieces as cut events, then the held rows.
fn release_all(pending: &mut CriPending, rows: &mut Rows<'_>) {
    for piece in std::mem::take(&mut pending.open) {
        let row = joined(piece, true);
        pending.held.push(row);
    }
    for row in std::mem::take(&mut pending.held) {
        rows.release(row);
    }
    pending.start = None;
    pending.bytes = 0;
}
