//! Parser actor: turns each [`LineBatch`] into a [`RecordBatch`] — records for lines that fit
//! their source's format, dead letters (with the reason) for everything else — and forwards it
//! to the writer through a bounded [`Window`]. The batch's buffer moves along; nothing is
//! copied per line. The source's format is looked up once per batch: a JSON source takes the
//! path it always took; a text source's events (JSON objects logbelt writes) are appended to
//! the batch's buffer, after its lines.

use std::collections::HashMap;
use std::sync::Arc;

use actix::prelude::*;

use super::{GuardedStage, StageGuard, Window};
use crate::messages::{Flush, Lines, Records, StageGone};
use crate::parse::{
    parse_line, parse_text, text_event, Event, Format, Formats, OnMismatch, ParseError,
    ParseSettings, Scratch, SourceParser,
};
mod cri;
mod multiline;
mod rows;

pub use cri::{parse_cri_batch, CriPending};
use multiline::emit_pending;
pub use multiline::{parse_multiline_batch, MultiPending};
use rows::Rows;

use crate::record::{
    DeadLetter, DeadLetterReason, FileId, LineBatch, LineRef, Record, RecordBatch, Text,
};

pub struct Parser {
    formats: Formats,
    /// CRI files with pieces of lines waiting for their `F` line.
    cri: HashMap<FileId, CriPending>,
    /// Multiline sources' files with an event not ended yet.
    multi: HashMap<FileId, MultiPending>,
    /// The input is over (`Flush`): no more rows from timeouts; what is pending is read
    /// again at the next start.
    draining: bool,
    /// Numbers the batches that leave a multiline event open, across files and events: a
    /// timer stores the event only if its batch was the file's last.
    timer_seq: u64,
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
            formats: Formats::new(&settings),
            cri: HashMap::new(),
            multi: HashMap::new(),
            draining: false,
            timer_seq: 0,
            max_line_bytes,
            writer,
            writer_flush,
            guard,
            batches: 0,
            panic_on_batch,
        }
    }
}

impl Parser {
    /// No line has come for `timeout_ms` since batch `seq` of file `id` left an event pending:
    /// the event is stored, in a batch of its own with the file's position past it.
    fn quiet(&mut self, id: FileId, seq: u64, ctx: &mut Context<Self>) {
        if self.draining || self.multi.get(&id).is_none_or(|p| p.seq != seq) {
            return;
        }
        let Some(mut pending) = self.multi.remove(&id) else {
            return;
        };
        let Some(position) = pending.position.take() else {
            return;
        };
        let source = self.formats.get(&position.file.source);
        let mut out = Vec::new();
        let mut rows = Rows {
            base: 0,
            out: &mut out,
            records: Vec::new(),
            dead_letters: Vec::new(),
        };
        let mut scratch = Scratch::new(source);
        emit_pending(&mut pending, source, &mut scratch, &mut rows);
        let Rows {
            records,
            dead_letters,
            ..
        } = rows;
        let mut batch = RecordBatch {
            buf: out,
            records,
            dead_letters,
            empty_lines: 0,
            bytes: 0,
            position,
        };
        default_level(&mut batch, source);
        self.writer.forward(ctx, Records(batch));
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
        let source = self.formats.get(&batch.position.file.source);
        let mut records = if let Some(multiline) = &source.multiline {
            let id = batch.position.file.id;
            let timeout = multiline.timeout;
            let mut pending = self.multi.remove(&id).unwrap_or_default();
            let records = parse_multiline_batch(batch, source, &mut pending, self.max_line_bytes);
            if pending.start.is_some() {
                self.timer_seq += 1;
                let seq = self.timer_seq;
                pending.seq = seq;
                self.multi.insert(id, pending);
                ctx.run_later(timeout, move |act, ctx| act.quiet(id, seq, ctx));
            }
            records
        } else if let Format::Cri = source.format {
            let id = batch.position.file.id;
            let mut pending = self.cri.remove(&id).unwrap_or_default();
            let records = parse_cri_batch(batch, source, &mut pending, self.max_line_bytes);
            if !pending.is_empty() {
                self.cri.insert(id, pending);
            }
            records
        } else {
            parse_batch(batch, source, self.max_line_bytes)
        };
        default_level(&mut records, source);
        self.writer.forward(ctx, Records(records));
    }
}

impl Handler<Flush> for Parser {
    type Result = ResponseActFuture<Self, Result<(), StageGone>>;

    fn handle(&mut self, _: Flush, _: &mut Context<Self>) -> Self::Result {
        self.draining = true;
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

/// Classifies every line of `batch`, a batch of `source`'s lines.
pub fn parse_batch(batch: LineBatch, source: &SourceParser, max_line_bytes: usize) -> RecordBatch {
    match (&source.format, source.on_mismatch) {
        (Format::Json, OnMismatch::DeadLetter) => {
            parse_json_batch(batch, &source.settings, max_line_bytes)
        }
        _ => parse_text_batch(batch, source, max_line_bytes),
    }
}

/// Gives `source`'s `default_level` to the records whose line gave no level (a text event
/// too).
fn default_level(batch: &mut RecordBatch, source: &SourceParser) {
    let Some(level) = &source.default_level else {
        return;
    };
    for r in batch.records.iter_mut().filter(|r| r.level.is_none()) {
        r.level = Some(Text::from_cow(std::borrow::Cow::Borrowed(level), &[], 0));
    }
}

/// The text of `line` in `buf`, its batch's buffer.
fn line_bytes<'b>(buf: &'b [u8], line: &LineRef) -> &'b [u8] {
    buf.get(line.range.start as usize..line.range.end as usize)
        .unwrap_or(&[])
}

/// The dead letter of a line over `max_line_bytes`.
fn too_long(line: &LineRef, full: u64, max_line_bytes: usize) -> DeadLetter {
    DeadLetter {
        offset: line.offset,
        raw: line.range.clone(),
        line_bytes: full,
        reason: DeadLetterReason::TooLong {
            len: full,
            limit: max_line_bytes as u64,
        },
    }
}

/// The record of `line` (its text `bytes`) whose JSON object is at `json` in the batch's buffer;
/// the event's level and message stay spans of the line when they are slices of it.
fn record(line: &LineRef, bytes: &[u8], json: std::ops::Range<u32>, event: Event<'_>) -> Record {
    Record {
        offset: line.offset,
        line: json,
        ts_micros: event.ts_micros,
        level: event
            .level
            .map(|l| Text::from_cow(l, bytes, line.range.start)),
        message: event
            .message
            .map(|m| Text::from_cow(m, bytes, line.range.start)),
    }
}

/// The dead letter of `line` (its text `bytes`).
fn dead_letter(line: &LineRef, bytes: &[u8], reason: DeadLetterReason) -> DeadLetter {
    DeadLetter {
        offset: line.offset,
        raw: line.range.clone(),
        line_bytes: bytes.len() as u64,
        reason,
    }
}

/// A JSON source's batch (without `on_mismatch = "text"`): the path JSON always took.
fn parse_json_batch(
    batch: LineBatch,
    settings: &ParseSettings,
    max_line_bytes: usize,
) -> RecordBatch {
    let mut records = Vec::with_capacity(batch.lines.len());
    let mut dead_letters = Vec::new();
    for line in &batch.lines {
        let bytes = line_bytes(&batch.buf, line);
        if let Some(full) = line.too_long {
            dead_letters.push(too_long(line, full, max_line_bytes));
            continue;
        }
        match parse_line(bytes, settings) {
            Ok(parsed) => records.push(record(line, bytes, line.range.clone(), parsed)),
            Err(e) => dead_letters.push(dead_letter(line, bytes, e.into())),
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

/// A text source's batch (or a JSON one with `on_mismatch = "text"`). Each event's JSON object
/// is written to a buffer of its own, appended to the batch's buffer at the end, so a record's
/// `line` is the range of its object there; its level and message stay spans of the line when
/// they are plain slices of it.
fn parse_text_batch(batch: LineBatch, source: &SourceParser, max_line_bytes: usize) -> RecordBatch {
    let mut records = Vec::with_capacity(batch.lines.len());
    let mut dead_letters = Vec::new();
    let mut scratch = Scratch::new(source);
    let mut out: Vec<u8> = Vec::with_capacity(batch.buf.len() + batch.buf.len() / 2);
    let base = batch.buf.len();
    for line in &batch.lines {
        let bytes = line_bytes(&batch.buf, line);
        if let Some(full) = line.too_long {
            dead_letters.push(too_long(line, full, max_line_bytes));
            continue;
        }
        let dead = |reason| dead_letter(line, bytes, reason);
        let text = match std::str::from_utf8(bytes) {
            Ok(text) => text,
            Err(e) => {
                let at = e.valid_up_to();
                dead_letters.push(dead(ParseError::InvalidUtf8 { at }.into()));
                continue;
            }
        };
        let start = out.len();
        let event: Result<Event<'_>, DeadLetterReason> = match &source.format {
            Format::Json => match parse_line(bytes, &source.settings) {
                Ok(parsed) => {
                    // The line is its own JSON object: no copy.
                    records.push(record(line, bytes, line.range.clone(), parsed));
                    continue;
                }
                Err(e) => Err(e.into()),
            },
            format => parse_text(text, source, &mut scratch, &mut out).ok_or_else(|| {
                DeadLetterReason::NoMatch {
                    source: source.source.clone(),
                    format: format.name(),
                }
            }),
        };
        let event = match (event, source.on_mismatch) {
            (Ok(event), _) => event,
            (Err(_), OnMismatch::Text) => text_event(text, &mut out),
            (Err(reason), OnMismatch::DeadLetter) => {
                dead_letters.push(dead(reason));
                continue;
            }
        };
        let range =
            u32::try_from(base + start).and_then(|s| Ok(s..u32::try_from(base + out.len())?));
        let Ok(range) = range else {
            // The batch with this event would pass 4 GiB (a line of about 1 GiB of control
            // characters, each written as `\u00XX`): it is kept as a line too long.
            out.truncate(start);
            let reason = DeadLetterReason::TooLong {
                len: bytes.len() as u64,
                limit: max_line_bytes as u64,
            };
            dead_letters.push(dead_letter(line, bytes, reason));
            continue;
        };
        records.push(record(line, bytes, range, event));
    }
    Rows {
        base,
        out: &mut out,
        records,
        dead_letters,
    }
    .into_batch(batch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::{Formats, SourceFormat, TimestampFormats};
    use crate::record::{FileIdentity, FileMeta, FilePosition};

    /// A batch of `lines` as the tailer makes them.
    fn batch(source: &str, lines: &[&[u8]]) -> LineBatch {
        let mut buf = Vec::new();
        let mut refs = Vec::new();
        let mut offset = 0u64;
        for line in lines {
            let start = u32::try_from(buf.len()).unwrap();
            buf.extend_from_slice(line);
            refs.push(LineRef {
                offset,
                range: start..u32::try_from(buf.len()).unwrap(),
                too_long: None,
            });
            offset += line.len() as u64 + 1;
        }
        LineBatch {
            buf,
            lines: refs,
            empty_lines: 0,
            bytes: offset,
            position: FilePosition {
                file: Arc::new(FileMeta {
                    id: 1,
                    source: Arc::from(source),
                }),
                path: Arc::from("/x.log"),
                identity: FileIdentity {
                    dev: 1,
                    inode: 1,
                    fingerprint_len: 0,
                    fingerprint: 0,
                },
                offset,
                forget: false,
            },
        }
    }

    #[test]
    fn default_level_goes_to_events_without_one() {
        let settings = ParseSettings {
            sources: vec![SourceFormat {
                source: "clef".to_owned(),
                format: Format::Json,
                timestamp_formats: TimestampFormats::default(),
                on_mismatch: OnMismatch::Text,
                multiline: None,
                default_level: Some("info".to_owned()),
            }],
            ..ParseSettings::default()
        };
        let f = Formats::new(&settings);
        let lines: &[&[u8]] = &[
            br#"{"@t":"2026-11-27T13:40:00Z","@mt":"Information omits @l"}"#,
            br#"{"@t":"2026-11-27T13:40:00Z","@mt":"w","@l":"Warning"}"#,
            b"not JSON: a text event",
        ];
        let mut out = parse_batch(batch("clef", lines), f.get("clef"), 1 << 20);
        default_level(&mut out, f.get("clef"));
        let levels: Vec<&str> = out
            .records
            .iter()
            .map(|r| r.level.as_ref().unwrap().get(&out.buf))
            .collect();
        assert_eq!(levels, ["info", "warn", "info"]);
        // Without default_level, nothing changes.
        let f = formats(&[("clef", Format::Json, OnMismatch::Text)]);
        let mut out = parse_batch(batch("clef", lines), f.get("clef"), 1 << 20);
        default_level(&mut out, f.get("clef"));
        let none = out.records.iter().filter(|r| r.level.is_none()).count();
        assert_eq!(none, 2);
    }

    fn formats(specs: &[(&str, Format, OnMismatch)]) -> Formats {
        let settings = ParseSettings {
            sources: specs
                .iter()
                .map(|(name, format, on_mismatch)| SourceFormat {
                    source: (*name).to_owned(),
                    format: format.clone(),
                    timestamp_formats: TimestampFormats::default(),
                    on_mismatch: *on_mismatch,
                    multiline: None,
                    default_level: None,
                })
                .collect(),
            ..ParseSettings::default()
        };
        Formats::new(&settings)
    }

    #[test]
    fn each_batch_is_parsed_by_its_sources_format() {
        let f = formats(&[
            ("web", Format::NginxCombined, OnMismatch::DeadLetter),
            ("loose", Format::Logfmt, OnMismatch::Text),
        ]);
        let access: &[u8] =
            br#"127.0.0.1 - - [27/Nov/2026:13:37:44 +0000] "GET / HTTP/1.1" 200 47 "-" "curl/7.88.1""#;
        let lines: &[&[u8]] = &[
            access,
            b"not an access line",
            b"\xff\xfe",
            b"{\"msg\":\"j\"}",
        ];

        // nginx_combined: the event is appended after the lines; its message a span of the line.
        let out = parse_batch(batch("web", lines), f.get("web"), 1 << 20);
        assert_eq!(out.records.len(), 1);
        let r = &out.records[0];
        assert!(r.line.start as usize >= lines.iter().map(|l| l.len()).sum::<usize>());
        let fields: serde_json::Value = serde_json::from_str(out.str(&r.line)).unwrap();
        assert_eq!(fields["status"], 200);
        assert!(matches!(r.message, Some(Text::Span(_))));
        assert_eq!(r.message.as_ref().unwrap().get(&out.buf), "GET / HTTP/1.1");
        let reasons: Vec<String> = out
            .dead_letters
            .iter()
            .map(|d| d.reason.to_string())
            .collect();
        assert_eq!(
            reasons,
            [
                "no match for format nginx_combined (source web)",
                "invalid UTF-8 at byte 0",
                "no match for format nginx_combined (source web)",
            ]
        );
        assert_eq!(out.bytes(&out.dead_letters[0].raw), b"not an access line");

        // A source the settings do not name is JSON, on the path it always took.
        let out = parse_batch(batch("other", lines), f.get("other"), 1 << 20);
        assert_eq!(out.records.len(), 1);
        assert_eq!(out.str(&out.records[0].line), "{\"msg\":\"j\"}");
        assert_eq!(out.buf.len(), lines.iter().map(|l| l.len()).sum::<usize>());

        // logfmt with on_mismatch = "text": only the bytes that are not UTF-8 are dead.
        let out = parse_batch(batch("loose", lines), f.get("loose"), 1 << 20);
        assert_eq!((out.records.len(), out.dead_letters.len()), (3, 1));
        let texts: Vec<&str> = out.records.iter().map(|r| out.str(&r.line)).collect();
        assert_eq!(texts[1], r#"{"message":"not an access line"}"#);
    }

    /// Lines starting at `from` (a file offset) of `lines`, as one batch.
    fn cri_batch(lines: &[&str], from: u64, forget: bool) -> LineBatch {
        let mut offset = 0u64;
        let mut picked: Vec<&[u8]> = Vec::new();
        let mut first = None;
        for l in lines {
            if offset >= from {
                first.get_or_insert(offset);
                picked.push(l.as_bytes());
            }
            offset += l.len() as u64 + 1;
        }
        let mut b = batch("k8s", &picked);
        let shift = first.unwrap_or(offset);
        for r in &mut b.lines {
            r.offset += shift;
        }
        b.position.offset = offset;
        b.position.forget = forget;
        b
    }

    /// (offset, message, partial) of each record.
    fn cri_events(out: &RecordBatch) -> Vec<(u64, String, bool)> {
        out.records
            .iter()
            .map(|r| {
                let v: serde_json::Value = serde_json::from_str(out.str(&r.line)).unwrap();
                assert_eq!(r.message.as_ref().unwrap().get(&out.buf), v["message"]);
                (
                    r.offset,
                    v["message"].as_str().unwrap().to_owned(),
                    v.get("partial").is_some(),
                )
            })
            .collect()
    }

    const CRI: [&str; 7] = [
        "2026-11-27T13:40:00.000000001Z stdout F a",
        "2026-11-27T13:40:01.000000001Z stdout P x1 ",
        "2026-11-27T13:40:02.000000001Z stdout P x2 ",
        "2026-11-27T13:40:02.500000001Z stderr F e",
        "not a cri line",
        "2026-11-27T13:40:03.000000001Z stdout F x3",
        "2026-11-27T13:40:04.000000001Z stdout F b",
    ];

    fn offset_of(i: usize) -> u64 {
        CRI[..i].iter().map(|l| l.len() as u64 + 1).sum()
    }

    #[test]
    fn cri_pieces_are_joined_across_batches_and_positions_stay_before_them() {
        let f = formats(&[("k8s", Format::Cri, OnMismatch::DeadLetter)]);
        let p = f.get("k8s");
        let mut pending = CriPending::default();
        // Batch 1: "a", and the first piece: the position stays at that piece.
        let b1 = cri_batch(&CRI[..2], 0, false);
        let out = parse_cri_batch(b1, p, &mut pending, 1 << 20);
        assert_eq!(cri_events(&out), [(0, "a".to_owned(), false)]);
        assert_eq!(out.position.offset, offset_of(1));
        assert!(matches!(out.records[0].message, Some(Text::Span(_))));
        // Batch 2: another piece, a stderr line and a line that is not CRI: all held.
        let mut b2 = cri_batch(&CRI[..5], offset_of(2), false);
        b2.lines.retain(|l| l.offset >= offset_of(2));
        let out = parse_cri_batch(b2, p, &mut pending, 1 << 20);
        assert!(out.records.is_empty() && out.dead_letters.is_empty());
        assert_eq!(out.position.offset, offset_of(1));
        // A restart here reads again from offset_of(1), with nothing pending.
        let mut fresh = CriPending::default();
        let again = parse_cri_batch(cri_batch(&CRI, offset_of(1), false), p, &mut fresh, 1 << 20);
        // Batch 3: the F line ends the joined line; everything held is stored.
        let out = parse_cri_batch(
            cri_batch(&CRI, offset_of(5), false),
            p,
            &mut pending,
            1 << 20,
        );
        let want = [
            (offset_of(3), "e".to_owned(), false),
            (offset_of(1), "x1 x2 x3".to_owned(), false),
            (offset_of(6), "b".to_owned(), false),
        ];
        for got in [&out, &again] {
            assert_eq!(cri_events(got), want);
            assert_eq!(got.position.offset, offset_of(7));
            let dead: Vec<(u64, String, &[u8])> = got
                .dead_letters
                .iter()
                .map(|d| (d.offset, d.reason.to_string(), got.bytes(&d.raw)))
                .collect();
            assert_eq!(
                dead,
                [(
                    offset_of(4),
                    "no match for format cri (source ".to_owned() + "k8s)",
                    CRI[4].as_bytes()
                )]
            );
        }
        assert!(pending.is_empty() && fresh.is_empty());
    }

    #[test]
    fn cri_lines_past_the_limit_are_cut_and_a_forgotten_file_stores_what_is_pending() {
        let f = formats(&[("k8s", Format::Cri, OnMismatch::Text)]);
        let p = f.get("k8s");
        let mut pending = CriPending::default();
        let lines = [
            "2026-11-27T13:40:01Z stdout P 12345",
            "2026-11-27T13:40:02Z stdout P 67890",
            "2026-11-27T13:40:03Z stdout P abc",
            "plain",
        ];
        let out = parse_cri_batch(cri_batch(&lines, 0, false), p, &mut pending, 8);
        let first_two = lines[0].len() as u64 + 1 + lines[1].len() as u64 + 1;
        assert_eq!(cri_events(&out), [(0, "1234567890".to_owned(), true)]);
        assert_eq!(out.position.offset, first_two, "the rest is pending");
        let out = parse_cri_batch(cri_batch(&[], 0, true), p, &mut pending, 8);
        assert_eq!(
            cri_events(&out),
            [
                (
                    first_two + lines[2].len() as u64 + 1,
                    "plain".to_owned(),
                    false
                ),
                (first_two, "abc".to_owned(), true),
            ]
        );
        assert!(out.position.forget && pending.is_empty());
    }

    /// A text source whose events start at `E ` lines, cut after `max_lines` lines.
    fn multiline_parser(source: &str, max_lines: usize) -> SourceParser {
        let spec = SourceFormat {
            source: source.into(),
            format: Format::Text,
            timestamp_formats: TimestampFormats::default(),
            on_mismatch: OnMismatch::DeadLetter,
            multiline: Some(crate::parse::Multiline {
                rule: crate::parse::MultilineRule::Start(regex::Regex::new("^E ").unwrap()),
                max_lines,
                max_bytes: 1 << 20,
                timeout: std::time::Duration::from_secs(1),
            }),
            default_level: None,
        };
        SourceParser::new(&ParseSettings::default(), &spec)
    }

    /// The file offset of each of `lines` (each ended by a newline).
    fn line_offsets(lines: &[impl AsRef<[u8]>]) -> Vec<u64> {
        lines
            .iter()
            .scan(0u64, |o, l| {
                let at = *o;
                *o += l.as_ref().len() as u64 + 1;
                Some(at)
            })
            .collect()
    }

    #[test]
    fn multiline_events_keep_the_position_at_their_first_line() {
        let p = multiline_parser("java", 3);
        let lines: [&[u8]; 8] = [
            b"orphan", b"E one", b"\tat a", b"E two", b"\tat b", b"\tat c", b"\tat d", b"\xff",
        ];
        let offsets = line_offsets(&lines);
        let messages = |out: &RecordBatch| -> Vec<(u64, String)> {
            out.records
                .iter()
                .map(|r| {
                    (
                        r.offset,
                        r.message.as_ref().unwrap().get(&out.buf).to_owned(),
                    )
                })
                .collect()
        };
        let mut pending = MultiPending::default();
        // Up to "E two": the orphan line and "E one" are events; "E two" pends.
        let mut b = batch("java", &lines[..5]);
        b.position.offset = offsets[5];
        let out = parse_multiline_batch(b, &p, &mut pending, 1 << 20);
        assert_eq!(
            messages(&out),
            [
                (0, "orphan".to_owned()),
                (offsets[1], "E one\n\tat a".to_owned())
            ]
        );
        assert_eq!(
            out.position.offset, offsets[3],
            "at the pending event's first line"
        );
        // max_lines cuts "E two" after 3 lines; the rest is a new event, ended by bytes that are
        // not UTF-8 (a dead letter); then the file is forgotten: nothing stays pending.
        let mut b = batch("java", &lines[5..]);
        for (r, o) in b.lines.iter_mut().zip(&offsets[5..]) {
            r.offset = *o;
        }
        b.position.forget = true;
        let out = parse_multiline_batch(b, &p, &mut pending, 1 << 20);
        assert_eq!(
            messages(&out),
            [
                (offsets[3], "E two\n\tat b\n\tat c".to_owned()),
                (offsets[6], "\tat d".to_owned())
            ]
        );
        assert_eq!(out.dead_letters.len(), 1);
        assert_eq!(out.dead_letters[0].offset, offsets[7]);
        assert!(pending.start.is_none());
    }

    /// The parser state of one file between batches (a `CriPending` or a `MultiPending`).
    type State = Option<Box<dyn std::any::Any>>;

    /// Feeds `lines` in batches cut at `cuts`; after the batches in `restarts`, the pending state
    /// is dropped (a crash) and reading starts again at the committed position, as the tailer
    /// does. The last batch forgets the file (everything pending is stored). Returns every
    /// committed row: (offset, fields or raw text, reason).
    fn committed_rows(
        lines: &[String],
        cuts: &[usize],
        restarts: &[bool],
        run: &dyn Fn(LineBatch, &mut State) -> RecordBatch,
    ) -> Vec<(u64, String, String)> {
        let offsets = line_offsets(lines);
        let end = offsets
            .last()
            .map_or(0, |o| o + lines.last().map_or(0, |l| l.len() as u64 + 1));
        let mut rows = Vec::new();
        let mut state: State = None;
        let mut next = 0usize; // index of the next line to read
        let mut k = 0usize;
        loop {
            let cut = cuts
                .get(k)
                .copied()
                .unwrap_or(usize::MAX)
                .max(next + 1)
                .min(lines.len());
            let last = cut >= lines.len();
            let refs: Vec<&[u8]> = lines[next..cut].iter().map(|l| l.as_bytes()).collect();
            let mut b = batch("s", &refs);
            for (r, o) in b.lines.iter_mut().zip(&offsets[next..cut]) {
                r.offset = *o;
            }
            b.position.offset = offsets.get(cut).copied().unwrap_or(end);
            b.position.forget = last;
            let out = run(b, &mut state);
            for r in &out.records {
                rows.push((r.offset, out.str(&r.line).to_owned(), String::new()));
            }
            for d in &out.dead_letters {
                let raw = String::from_utf8_lossy(out.bytes(&d.raw)).into_owned();
                rows.push((d.offset, raw, d.reason.to_string()));
            }
            if last {
                break;
            }
            next = cut;
            if restarts.get(k).copied().unwrap_or(false) {
                // A crash: what is pending is gone; the file is read again from the position.
                state = None;
                next = offsets
                    .iter()
                    .position(|o| *o >= out.position.offset)
                    .unwrap_or(lines.len());
            }
            k += 1;
        }
        rows.sort();
        rows
    }

    /// The pending state of type `T` in `state`, a new one if there is none.
    fn pending<T: Default + 'static>(state: &mut State) -> &mut T {
        state
            .get_or_insert_with(|| Box::new(T::default()))
            .downcast_mut::<T>()
            .unwrap()
    }

    fn cri_run(f: &Formats) -> impl Fn(LineBatch, &mut State) -> RecordBatch + '_ {
        move |b, state| parse_cri_batch(b, f.get("s"), pending(state), 64)
    }

    fn multiline_run(p: &SourceParser) -> impl Fn(LineBatch, &mut State) -> RecordBatch + '_ {
        move |b, state| parse_multiline_batch(b, p, pending(state), 1 << 20)
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(200))]

        /// However the lines are cut into reads, and wherever logbelt crashes and starts again
        /// from the committed position, the committed rows are those of one clean read: each once.
        #[test]
        fn cri_and_multiline_rows_do_not_depend_on_reads_or_restarts(
            kinds in proptest::collection::vec(0u8..6, 1..40),
            cuts in proptest::collection::vec(1usize..40, 0..12),
            restarts in proptest::collection::vec(proptest::bool::ANY, 0..12),
        ) {
            let mut cuts = cuts;
            cuts.sort_unstable();
            // CRI: pieces and full lines on two streams, and lines that are not CRI.
            let cri: Vec<String> = kinds
                .iter()
                .enumerate()
                .map(|(i, k)| match k {
                    0 | 1 => format!("2026-11-27T13:40:{:02}Z stdout P p{i}-", i % 60),
                    2 => format!("2026-11-27T13:40:{:02}Z stdout F f{i}", i % 60),
                    3 => format!("2026-11-27T13:40:{:02}Z stderr P e{i}-", i % 60),
                    4 => format!("2026-11-27T13:40:{:02}Z stderr F g{i}", i % 60),
                    _ => format!("noise {i}"),
                })
                .collect();
            let f = formats(&[("s", Format::Cri, OnMismatch::DeadLetter)]);
            let run = cri_run(&f);
            let clean = committed_rows(&cri, &[], &[], &run);
            proptest::prop_assert_eq!(committed_rows(&cri, &cuts, &restarts, &run), clean);

            // Multiline: events start at "E" lines.
            let text: Vec<String> = kinds
                .iter()
                .enumerate()
                .map(|(i, k)| if *k < 2 { format!("E {i}") } else { format!("\tat {i}") })
                .collect();
            let p = multiline_parser("s", 5);
            let run = multiline_run(&p);
            let clean = committed_rows(&text, &[], &[], &run);
            proptest::prop_assert_eq!(committed_rows(&text, &cuts, &restarts, &run), clean);
        }
    }

    /// `cargo test --release --lib -- --ignored --nocapture parse_batch_speed`
    #[test]
    #[ignore = "timing; run in release mode"]
    fn parse_batch_speed() {
        let data = |name: &str| {
            std::fs::read(
                std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("tests/data")
                    .join(name),
            )
            .unwrap()
        };
        let f = formats(&[
            ("json", Format::Json, OnMismatch::DeadLetter),
            ("nginx", Format::NginxCombined, OnMismatch::DeadLetter),
            ("logfmt", Format::Logfmt, OnMismatch::DeadLetter),
            ("syslog", Format::Syslog, OnMismatch::DeadLetter),
            ("text", Format::Text, OnMismatch::DeadLetter),
        ]);
        let cases = [
            ("json", data("corpus/caddy-access.jsonl")),
            ("nginx", data("formats/nginx-access.log")),
            ("logfmt", data("formats/logfmt.log")),
            ("syslog", data("formats/syslog-rfc5424.log")),
            ("text", data("formats/postgresql.log")),
        ];
        for (source, bytes) in cases {
            let lines: Vec<&[u8]> = bytes
                .split(|b| *b == b'\n')
                .filter(|l| !l.is_empty())
                .collect();
            // Batches of about 64 KiB, as the tailer makes them.
            let per_batch = lines.len() * 65_536 / bytes.len().max(1) + 1;
            let mut many: Vec<&[u8]> = Vec::new();
            while many.len() < per_batch {
                many.extend(lines.iter().copied());
            }
            many.truncate(per_batch);
            let batch_bytes: usize = many.iter().map(|l| l.len() + 1).sum();
            let rounds = 400;
            let parser = f.get(source);
            // Built before the clock starts: only parsing is timed.
            let batches: Vec<LineBatch> = (0..rounds).map(|_| batch(source, &many)).collect();
            let start = std::time::Instant::now();
            let mut records = 0;
            for b in batches {
                let out = parse_batch(b, parser, 1 << 20);
                records += out.records.len();
                drop(std::hint::black_box(out));
            }
            let secs = start.elapsed().as_secs_f64();
            assert_eq!(records, rounds * many.len(), "{source}");
            println!(
                "{source:>7}: {:.2} M lines/s, {:.0} MB/s ({} lines of {} bytes per batch)",
                records as f64 / secs / 1e6,
                (rounds * batch_bytes) as f64 / secs / 1e6,
                many.len(),
                batch_bytes
            );
        }
    }
}
