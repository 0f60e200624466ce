//! Parser actor: turns each [`LineBatch`] into a [`RecordBatch`] — records for lines that fit
//! their source's format, dead letters (with the reason) for everything else — and forwards it
//! to the writer through a bounded [`Window`]. The batch's buffer moves along; nothing is
//! copied per line. The source's format is looked up once per batch: a JSON source takes the
//! path it always took; a text source's events (JSON objects logbelt writes) are appended to
//! the batch's buffer, after its lines.

use std::sync::Arc;

use actix::prelude::*;

use super::{GuardedStage, StageGuard, Window};
use crate::messages::{Flush, Lines, Records, StageGone};
use crate::parse::{
    parse_line, parse_text, text_event, Event, Format, Formats, OnMismatch, ParseError,
    ParseSettings, Scratch, SourceParser,
};
use crate::record::{DeadLetter, DeadLetterReason, LineBatch, LineRef, Record, RecordBatch, Text};

pub struct Parser {
    formats: Formats,
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
        let source = self.formats.get(&batch.position.file.source);
        let records = parse_batch(batch, source, self.max_line_bytes);
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

/// Classifies every line of `batch`, a batch of `source`'s lines.
pub fn parse_batch(batch: LineBatch, source: &SourceParser, max_line_bytes: usize) -> RecordBatch {
    match (&source.format, source.on_mismatch) {
        (Format::Json, OnMismatch::DeadLetter) => {
            parse_json_batch(batch, &source.settings, max_line_bytes)
        }
        _ => parse_text_batch(batch, source, max_line_bytes),
    }
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

/// A JSON source's batch (without `on_mismatch = "text"`): the path JSON always took.
fn parse_json_batch(
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
            dead_letters.push(too_long(line, full, max_line_bytes));
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
        let bytes = batch
            .buf
            .get(line.range.start as usize..line.range.end as usize)
            .unwrap_or(&[]);
        if let Some(full) = line.too_long {
            dead_letters.push(too_long(line, full, max_line_bytes));
            continue;
        }
        let dead = |reason| DeadLetter {
            offset: line.offset,
            raw: line.range.clone(),
            line_bytes: bytes.len() as u64,
            reason,
        };
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
                    records.push(Record {
                        offset: line.offset,
                        line: line.range.clone(),
                        ts_micros: parsed.ts_micros,
                        level: parsed
                            .level
                            .map(|l| Text::from_cow(l, bytes, line.range.start)),
                        message: parsed
                            .message
                            .map(|m| Text::from_cow(m, bytes, line.range.start)),
                    });
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
            dead_letters.push(DeadLetter {
                offset: line.offset,
                raw: line.range.clone(),
                line_bytes: bytes.len() as u64,
                reason: DeadLetterReason::TooLong {
                    len: bytes.len() as u64,
                    limit: max_line_bytes as u64,
                },
            });
            continue;
        };
        records.push(Record {
            offset: line.offset,
            line: range,
            ts_micros: event.ts_micros,
            level: event
                .level
                .map(|l| Text::from_cow(l, bytes, line.range.start)),
            message: event
                .message
                .map(|m| Text::from_cow(m, bytes, line.range.start)),
        });
    }
    let mut buf = batch.buf;
    buf.extend_from_slice(&out);
    RecordBatch {
        buf,
        records,
        dead_letters,
        empty_lines: batch.empty_lines,
        bytes: batch.bytes,
        position: batch.position,
    }
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

    fn formats(specs: &[(&str, Format, OnMismatch)]) -> Formats {
        let settings = ParseSettings {
            sources: specs
                .iter()
                .map(|(name, format, on_mismatch)| SourceFormat {
                    source: (*name).to_owned(),
                    format: format.clone(),
                    timestamp_formats: TimestampFormats::default(),
                    on_mismatch: *on_mismatch,
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
