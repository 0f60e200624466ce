//! Domain types that travel through the pipeline: which file a line came from, the batches of raw
//! lines the tailer produces, and the batches of records and dead letters the parser produces.
//!
//! Batches own one contiguous byte buffer and refer to lines by range, so a batch of thousands
//! of lines costs a handful of allocations, not one per line.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use crate::parse::ParseError;

/// Key of a row in the `files` table. Chosen by the tailer (random, positive) when it meets a file
/// it has no committed position for; the writer inserts the row with the batch's first commit.
pub type FileId = i64;

/// What makes a file the same file across renames and restarts: device and inode, plus a hash of
/// its first bytes (inodes are reused after deletion, so the inode alone is not enough).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileIdentity {
    pub dev: u64,
    pub inode: u64,
    /// How many leading bytes `fingerprint` covers (at most [`crate::tail::FINGERPRINT_MAX_BYTES`]).
    pub fingerprint_len: u32,
    /// FNV-1a 64 of the first `fingerprint_len` bytes.
    pub fingerprint: u64,
}

impl FileIdentity {
    /// The identity of content that is on no inode any more (truncated away): device and
    /// inode 0, the fingerprint kept, so that a copy can still be recognised as its continuation.
    pub fn detached(self) -> Self {
        FileIdentity {
            dev: 0,
            inode: 0,
            ..self
        }
    }

    /// Whether this is the identity of content on no inode (see [`FileIdentity::detached`]).
    pub fn is_detached(&self) -> bool {
        self.dev == 0 && self.inode == 0
    }
}

/// A committed position, as the database has it: what the stores read back at start and the
/// tailer resumes from.
#[derive(Debug, Clone)]
pub struct StoredPosition {
    pub file_id: FileId,
    pub source: String,
    pub path: String,
    pub identity: FileIdentity,
    pub offset: u64,
}

/// The file a batch belongs to. Shared by every batch of that file.
#[derive(Debug)]
pub struct FileMeta {
    pub id: FileId,
    pub source: Arc<str>,
}

/// Where a batch leaves its file: the position to commit with the batch's rows.
#[derive(Debug, Clone)]
pub struct FilePosition {
    pub file: Arc<FileMeta>,
    /// Path the file had when the batch was read (it changes when the file is rotated).
    pub path: Arc<str>,
    pub identity: FileIdentity,
    /// Byte offset just past the last byte the batch covers (its last newline). Committing it
    /// means every line before it is stored.
    pub offset: u64,
    /// The file is deleted and read to its end: this (empty) batch removes its position instead
    /// of storing it (ARCHITECTURE.md §4: positions of files that are gone are forgotten once fully
    /// committed). It travels behind the file's last batch, so everything before it is committed
    /// first.
    pub forget: bool,
}

/// One line inside a [`LineBatch`].
#[derive(Debug, Clone)]
pub struct LineRef {
    /// File offset of the line's first byte.
    pub offset: u64,
    /// The line's bytes in the batch buffer, without the newline (and without a final `\r`).
    pub range: Range<u32>,
    /// `Some(full length)` when the line was longer than `max_line_bytes`: `range` then holds
    /// only its first `max_line_bytes` bytes.
    pub too_long: Option<u64>,
}

/// Lines of one file, in file order, as the tailer read them. Sent tail task → Reader → Parser.
#[derive(Debug)]
pub struct LineBatch {
    pub buf: Vec<u8>,
    pub lines: Vec<LineRef>,
    /// Empty lines the batch skipped (counted, never stored).
    pub empty_lines: u32,
    /// Bytes of the file the batch covers (from the previous batch's position to its own).
    pub bytes: u64,
    pub position: FilePosition,
}

/// A piece of text stored with a record: a span of the batch buffer when the line held it
/// verbatim, a static canonical name, or an owned string when it had to be unescaped.
#[derive(Debug, Clone)]
pub enum Text {
    Span(Range<u32>),
    Static(&'static str),
    Owned(Box<str>),
}

impl Text {
    /// The text, reading spans from `buf` (the buffer of the batch that owns this text).
    pub fn get<'a>(&'a self, buf: &'a [u8]) -> &'a str {
        match self {
            Text::Span(r) => buf
                .get(r.start as usize..r.end as usize)
                .and_then(|b| std::str::from_utf8(b).ok())
                .unwrap_or(""),
            Text::Static(s) => s,
            Text::Owned(s) => s,
        }
    }

    /// Turns a value borrowed from `line` (which starts at `line_start` in the buffer) into a
    /// `Text` without copying when it is a plain slice of the line.
    pub fn from_cow(value: Cow<'_, str>, line: &[u8], line_start: u32) -> Text {
        /// The parser's canonical level names (`Cow::Borrowed` of `'static` strings).
        const CANONICAL: &[&str] = &["trace", "debug", "info", "warn", "error", "fatal"];
        if let Some(name) = CANONICAL.iter().find(|c| **c == value) {
            return Text::Static(name);
        }
        match value {
            Cow::Borrowed(s) => {
                let base = line.as_ptr() as usize;
                let ptr = s.as_ptr() as usize;
                if ptr >= base && ptr + s.len() <= base + line.len() {
                    let start = line_start + (ptr - base) as u32;
                    Text::Span(start..start + s.len() as u32)
                } else {
                    Text::Owned(s.into())
                }
            }
            Cow::Owned(s) => Text::Owned(s.into_boxed_str()),
        }
    }
}

/// A line that parsed as a JSON object.
#[derive(Debug, Clone)]
pub struct Record {
    pub offset: u64,
    /// The whole line: the JSON object as the service wrote it.
    pub line: Range<u32>,
    pub ts_micros: Option<i64>,
    pub level: Option<Text>,
    pub message: Option<Text>,
}

/// A line that cannot be a record.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub offset: u64,
    /// The line's bytes (cut to `max_line_bytes`).
    pub raw: Range<u32>,
    /// The full length of the line in bytes.
    pub line_bytes: u64,
    /// Why: its `Display` is the dead letter's `error` column, its `kind()` the metric label.
    pub reason: DeadLetterReason,
}

/// Why a line is a dead letter.
#[derive(Debug, Clone, PartialEq)]
pub enum DeadLetterReason {
    /// Not a JSON object (not UTF-8, not JSON, or another JSON value): [`crate::parse::parse_line`]'s
    /// error.
    Unparsable(ParseError),
    /// The line has `len` bytes, more than `max_line_bytes` (`limit`); only the first `limit`
    /// bytes are kept.
    TooLong { len: u64, limit: u64 },
    /// The database refused the line itself (ARCHITECTURE.md §3), with the database's message.
    RefusedByDatabase(String),
    /// The line does not fit its source's text format (`sources[].format`; see
    /// [`crate::parse::Format`]).
    NoMatch {
        source: Arc<str>,
        format: &'static str,
    },
}

impl DeadLetterReason {
    /// Every [`kind`](DeadLetterReason::kind), so that each metric label is shown from the start.
    pub const KINDS: [&'static str; 6] = [
        "invalid_utf8",
        "invalid_json",
        "not_an_object",
        "too_long",
        "refused_by_database",
        "no_match",
    ];

    /// The reason's class, a stable label of bounded cardinality (the `reason` label of
    /// `logbelt_dead_letters_total`): one of [`KINDS`](DeadLetterReason::KINDS).
    pub fn kind(&self) -> &'static str {
        match self {
            DeadLetterReason::Unparsable(ParseError::InvalidUtf8 { .. }) => "invalid_utf8",
            DeadLetterReason::Unparsable(ParseError::InvalidJson { .. }) => "invalid_json",
            DeadLetterReason::Unparsable(ParseError::NotObject { .. }) => "not_an_object",
            DeadLetterReason::TooLong { .. } => "too_long",
            DeadLetterReason::RefusedByDatabase(_) => "refused_by_database",
            DeadLetterReason::NoMatch { .. } => "no_match",
        }
    }
}

/// The text stored in the dead letter's `error` column.
impl fmt::Display for DeadLetterReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeadLetterReason::Unparsable(e) => e.fmt(f),
            DeadLetterReason::TooLong { len, limit } => {
                write!(f, "line of {len} bytes over the limit of {limit} bytes")
            }
            DeadLetterReason::RefusedByDatabase(why) => write!(f, "refused by the database: {why}"),
            DeadLetterReason::NoMatch { source, format } => {
                write!(f, "no match for format {format} (source {source})")
            }
        }
    }
}

impl From<ParseError> for DeadLetterReason {
    fn from(e: ParseError) -> Self {
        DeadLetterReason::Unparsable(e)
    }
}

/// The parser's output for one [`LineBatch`]: the same buffer, with every line classified.
/// Sent Parser → Writer.
#[derive(Debug)]
pub struct RecordBatch {
    pub buf: Vec<u8>,
    pub records: Vec<Record>,
    pub dead_letters: Vec<DeadLetter>,
    pub empty_lines: u32,
    /// Bytes of the file the batch covers.
    pub bytes: u64,
    pub position: FilePosition,
}

impl RecordBatch {
    /// Rows this batch writes (records plus dead letters).
    pub fn rows(&self) -> usize {
        self.records.len() + self.dead_letters.len()
    }

    /// The bytes of a range of this batch's buffer.
    pub fn bytes(&self, r: &Range<u32>) -> &[u8] {
        self.buf
            .get(r.start as usize..r.end as usize)
            .unwrap_or(&[])
    }

    /// The text of a range of this batch's buffer (ranges of records are valid UTF-8).
    pub fn str(&self, r: &Range<u32>) -> &str {
        std::str::from_utf8(self.bytes(r)).unwrap_or("")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::JsonKind;

    #[test]
    fn dead_letter_reasons_keep_their_texts_and_labels() {
        let cases = [
            (
                DeadLetterReason::from(ParseError::InvalidUtf8 { at: 3 }),
                "invalid UTF-8 at byte 3",
                "invalid_utf8",
            ),
            (
                ParseError::InvalidJson {
                    column: 5,
                    message: "expected value".into(),
                }
                .into(),
                "invalid JSON at column 5: expected value",
                "invalid_json",
            ),
            (
                ParseError::NotObject {
                    found: JsonKind::Array,
                }
                .into(),
                "not a JSON object (found array)",
                "not_an_object",
            ),
            (
                DeadLetterReason::TooLong {
                    len: 100_000,
                    limit: 65_536,
                },
                "line of 100000 bytes over the limit of 65536 bytes",
                "too_long",
            ),
            (
                DeadLetterReason::RefusedByDatabase("invalid input syntax".into()),
                "refused by the database: invalid input syntax",
                "refused_by_database",
            ),
            (
                DeadLetterReason::NoMatch {
                    source: Arc::from("web"),
                    format: "nginx_combined",
                },
                "no match for format nginx_combined (source web)",
                "no_match",
            ),
        ];
        for (reason, text, kind) in &cases {
            assert_eq!(reason.to_string(), *text);
            assert_eq!(reason.kind(), *kind);
        }
        let kinds: Vec<_> = cases.iter().map(|(r, _, _)| r.kind()).collect();
        assert_eq!(kinds, DeadLetterReason::KINDS);
    }
}
