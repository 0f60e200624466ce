//! Multiline events, exactly once.

use super::rows::{HeldRow, Rows};
use super::{line_bytes, parse_batch};
use crate::parse::{
    parse_line, parse_text, text_event, Event, Format, OnMismatch, ParseError, Scratch,
    SourceParser,
};
use crate::record::{DeadLetter, DeadLetterReason, LineBatch, RecordBatch, Text};

/// A multiline source's file with an event not ended yet: its lines joined by `\n`. While it
/// is pending, the file's batches leave with the offset of its first line as their position
/// (as for CRI pieces): a restart reads it again whole.
#[derive(Debug, Default)]
pub struct MultiPending {
    /// Offset of the event's first line (`None`: nothing pending).
    pub(super) start: Option<u64>,
    text: String,
    lines: usize,
    /// The last batch's own position (past every line read), for a timeout's batch.
    pub(super) position: Option<crate::record::FilePosition>,
    /// The number of the last batch that left this event open (`Parser::timer_seq`): a
    /// timeout is for that batch only.
    pub(super) seq: u64,
}

/// Stores the pending event (if any) through the source's format.
pub(super) fn emit_pending(
    pending: &mut MultiPending,
    source: &SourceParser,
    scratch: &mut Scratch,
    rows: &mut Rows<'_>,
) {
    let Some(offset) = pending.start.take() else {
        return;
    };
    let mut text = std::mem::take(&mut pending.text);
    pending.lines = 0;
    // Blank lines that end an event (a Java record's closing blank line) are not its text.
    text.truncate(text.trim_end_matches('\n').len());
    let start = rows.out.len();
    let event: Result<Event<'_>, DeadLetterReason> = match &source.format {
        Format::Json => {
            rows.out.extend_from_slice(text.as_bytes());
            match parse_line(text.as_bytes(), &source.settings) {
                Ok(parsed) => {
                    let level = parsed.level.map(|l| Text::from_cow(l, &[], 0));
                    let message = parsed.message.map(|m| Text::from_cow(m, &[], 0));
                    rows.record_with_level(offset, start, parsed.ts_micros, level, message);
                    return;
                }
                Err(e) => {
                    rows.out.truncate(start);
                    Err(e.into())
                }
            }
        }
        format => {
            parse_text(&text, source, scratch, rows.out).ok_or_else(|| DeadLetterReason::NoMatch {
                source: source.source.clone(),
                format: format.name(),
            })
        }
    };
    let event = match (event, source.on_mismatch) {
        (Ok(event), _) => event,
        (Err(_), OnMismatch::Text) => text_event(&text, rows.out),
        (Err(reason), OnMismatch::DeadLetter) => {
            rows.release(HeldRow::Dead {
                offset,
                line_bytes: text.len() as u64,
                raw: text.into_bytes(),
                reason,
            });
            return;
        }
    };
    let level = event.level.map(|l| Text::from_cow(l, &[], 0));
    let message = event.message.map(|m| Text::from_cow(m, &[], 0));
    rows.record_with_level(offset, start, event.ts_micros, level, message);
}

/// A multiline source's batch: each line starts an event or continues the pending one (by the
/// source's `start` or `continue` pattern); an event is stored once the next one starts, when
/// it reaches `max_lines` or `max_bytes` (the rest starts a new one), when the file is
/// forgotten, or after `timeout_ms` without a line (`Parser::quiet`). The joined text is then
/// read by the source's format. A blank line continues the open event (one before any event is
/// only counted); an event's trailing blank lines are dropped from its text. A line that is
/// not UTF-8 or too long ends the pending event and is a dead letter.
pub fn parse_multiline_batch(
    mut batch: LineBatch,
    source: &SourceParser,
    pending: &mut MultiPending,
    max_line_bytes: usize,
) -> RecordBatch {
    let Some(multiline) = &source.multiline else {
        return parse_batch(batch, source, max_line_bytes);
    };
    let mut out: Vec<u8> = Vec::new();
    let mut rows = Rows {
        base: batch.buf.len(),
        out: &mut out,
        records: Vec::with_capacity(batch.lines.len()),
        dead_letters: Vec::new(),
    };
    let mut scratch = Scratch::new(source);
    for line in &batch.lines {
        let bytes = line_bytes(&batch.buf, line);
        let text = match (line.too_long, std::str::from_utf8(bytes)) {
            (None, Ok(text)) => text,
            (too_long, utf8) => {
                emit_pending(pending, source, &mut scratch, &mut rows);
                let reason = match (too_long, utf8) {
                    (Some(full), _) => DeadLetterReason::TooLong {
                        len: full,
                        limit: max_line_bytes as u64,
                    },
                    (None, Err(e)) => ParseError::InvalidUtf8 {
                        at: e.valid_up_to(),
                    }
                    .into(),
                    (None, Ok(_)) => continue,
                };
                rows.dead_letters.push(DeadLetter {
                    offset: line.offset,
                    raw: line.range.clone(),
                    line_bytes: too_long.unwrap_or(bytes.len() as u64),
                    reason,
                });
                continue;
            }
        };
        if text.is_empty() {
            // A blank line (the tailer keeps them for multiline sources) continues the open
            // event, never starts one: a Python traceback's blank lines are in its event.
            if pending.start.is_some() {
                pending.text.push('\n');
                pending.lines += 1;
            } else {
                batch.empty_lines += 1;
            }
        } else if pending.start.is_some() && !multiline.rule.starts(text) {
            pending.text.push('\n');
            pending.text.push_str(text);
            pending.lines += 1;
        } else {
            emit_pending(pending, source, &mut scratch, &mut rows);
            pending.start = Some(line.offset);
            pending.text.push_str(text);
            pending.lines = 1;
        }
        if pending.lines >= multiline.max_lines || pending.text.len() >= multiline.max_bytes {
            emit_pending(pending, source, &mut scratch, &mut rows);
        }
    }
    if batch.position.forget {
        emit_pending(pending, source, &mut scratch, &mut rows);
    }
    pending.position = Some(batch.position.clone());
    if let Some(start) = pending.start {
        batch.position.offset = start;
    }
    rows.into_batch(batch)
}
