//! Line parsing: validate one JSON line and pick out its timestamp, level and message.
//!
//! [`parse_line`] is the only thing the pipeline needs. It never builds a `serde_json::Value`:
//! one pass of a custom serde [`Visitor`] over the top-level object checks each key against a
//! 128-bit filter of the configured names (and first segments of dotted names), captures the
//! values of keys that pass as borrowed [`RawValue`]s, and skips everything else with
//! [`IgnoredAny`] (which still validates it). Only the few captured values are compared with
//! the names and decoded. Strings without escapes are borrowed from
//! the line, so the common case allocates nothing in this module (serde_json's own scratch
//! buffer may allocate once per line when a skipped value nests two or more levels deep or a
//! decoded string has escapes).
//!
//! # What is a record and what is a dead letter
//!
//! | input | result |
//! | --- | --- |
//! | bytes that are not UTF-8 | [`ParseError::InvalidUtf8`]: `invalid UTF-8 at byte N` |
//! | not JSON (syntax error, trailing text after the object, raw control byte such as 0x00 in a string, bare `NaN`, a whitespace-only line) | [`ParseError::InvalidJson`]: `invalid JSON at column N: <serde_json's message>` |
//! | nesting deeper than [`MAX_DEPTH`] (127, serde_json's limit) anywhere in the line | [`ParseError::InvalidJson`] with serde_json's message `recursion limit exceeded`, at the column `serde_json::from_str::<Value>` reports |
//! | valid JSON that is not an object | [`ParseError::NotObject`]: `not a JSON object (found array)` etc. |
//! | a JSON object | a record ([`Parsed`]), even when no field is found or a value is unusable |
//!
//! Decisions on edge cases, all covered by tests:
//! - **Huge numbers** (`1e400`, `18446744073709551617`) are valid JSON and the line is a record.
//!   (`serde_json::Value` would reject `1e400` as "number out of range"; we only skip it.)
//! - **`\u0000` escapes** are valid JSON; a decoded message may then contain a NUL character.
//!   A *raw* 0x00 byte is invalid JSON (control character). PostgreSQL's `text` columns cannot
//!   hold NUL and `jsonb` rejects `\u0000`: the writer finds such a line by bisection and stores
//!   it as a dead letter (ARCHITECTURE.md §3).
//! - **Lone surrogates** (`"\ud800"`): serde_json accepts them in skipped *values*, so the line
//!   is a record. When the lone surrogate is inside a *captured* string (message, level), that
//!   string is decoded lossily: each lone surrogate becomes U+FFFD. The line's own text (stored
//!   as `fields`) keeps the escape unchanged. In a *top-level key* a lone surrogate makes the
//!   line invalid JSON (`lone leading surrogate in hex escape`): serde_json decodes the keys of
//!   the map it visits (keys inside skipped values are only skipped, and accepted).
//!   PostgreSQL `jsonb` rejects lone surrogates anywhere (a dead letter, as for `\u0000`).
//! - **Duplicate keys**: the *first occurrence that yields a usable value* wins (a later
//!   duplicate never replaces an earlier usable one). Beware: PostgreSQL `jsonb` keeps the *last*
//!   duplicate in `fields`, SQLite's `json_extract` the first.
//! - **Deep nesting** never recurses on the stack: serde_json skips values iteratively, and a
//!   cheap pre-scan (only when the line holds at least 128 `[`/`{` bytes) rejects lines deeper
//!   than [`MAX_DEPTH`] with the same column and message as `serde_json::from_str::<Value>`
//!   gives for them, so a later `Value` parse of a stored record never hits the recursion
//!   limit.
//!
//! # Field lookup
//!
//! For each of the three lists the first configured name that is present *and yields a usable
//! value* wins: a later name is used only when every earlier one is absent, `null` or
//! unusable (e.g. an unparseable timestamp). A dotted name such as `log.level` is tried first as
//! the literal top-level key `"log.level"`, then as the path `log` → `level` through nested
//! objects (strictly segment by segment; below the top level, the first occurrence of a
//! duplicated key is followed). So `t.$date` finds MongoDB's `{"t":{"$date":"..."}}`.
//!
//! Usable values: timestamps that parse (see [`parse_timestamp_str`]); levels that are a
//! non-empty string or a number (see [`normalize_level`]); messages that are anything but
//! `null` (a string is unescaped, any other value is kept as its JSON text).//!
//! # Modules
//! - this one: the API ([`parse_line`], [`ParseSettings`], [`Parsed`], [`ParseError`]) and the
//!   checks before the object is visited (UTF-8, nesting depth, not an object);
//! - `object`: the serde visitor over the top-level object, the field lookup and the decoding
//!   of the captured values;
//! - `timestamp`: timestamp texts and numbers, and their formatting;
//! - `level`: level names and numbers.

mod cri;
mod format;
mod json_out;
mod level;
mod logfmt;
mod nginx;
mod object;
mod syslog;
mod timestamp;

use std::borrow::Cow;
use std::fmt;

use serde::de::IgnoredAny;

use object::{key_bit, parse_object};

pub use cri::{cri_line, write_cri_event, CriLine};
pub use format::{
    infer_year, parse_text, text_event, Event, Format, Formats, Multiline, MultilineRule,
    OnMismatch, Scratch, SourceFormat, SourceParser, TimestampFormats,
};
pub use level::{normalize_level, LevelValue};
pub use timestamp::{
    format_timestamp_micros, parse_timestamp_str, write_timestamp_micros, MAX_TS_MICROS,
    MIN_TS_MICROS,
};

/// Recommended `timestamp_fields`: the first release's list plus Serilog CLEF's `@t` and journald's
/// `__REALTIME_TIMESTAMP`. MongoDB's `{"t":{"$date":...}}` is covered by `t` (an object with
/// `$date` is understood), so `t.$date` is not needed.
pub const DEFAULT_TIMESTAMP_FIELDS: &[&str] = &[
    "timestamp",
    "@timestamp",
    "ts",
    "time",
    "t",
    "@t",
    "__REALTIME_TIMESTAMP",
];

/// Recommended `level_fields`: the first release's list plus Serilog CLEF's `@l` and journald's
/// `PRIORITY` (syslog severity 0-7). MongoDB's `s` is left out on purpose: it is too common a
/// key (Zeek uses `s` for strings); add it for MongoDB sources (its letters are mapped).
pub const DEFAULT_LEVEL_FIELDS: &[&str] =
    &["level", "severity", "lvl", "log.level", "@l", "PRIORITY"];

/// Recommended `message_fields`: the first release's list plus journald's `MESSAGE`, Serilog CLEF's
/// rendered `@m` and template `@mt`, and Rust tracing's nested `fields.message`.
pub const DEFAULT_MESSAGE_FIELDS: &[&str] = &[
    "message",
    "msg",
    "log",
    "MESSAGE",
    "@m",
    "@mt",
    "fields.message",
];

/// Deepest nesting accepted: serde_json's recursion limit (128) allows 127 nested arrays/objects.
pub const MAX_DEPTH: usize = 127;

// ---------------------------------------------------------------------------------------------
// Settings
// ---------------------------------------------------------------------------------------------

/// One configured field name, e.g. "level" or "log.level" or "t.$date".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldPath {
    name: String,
    segments: Vec<String>,
    /// The last segment is `priority` or `severity` (any case): numbers 0-7 are syslog severities.
    syslog: bool,
    /// Filter bit of the literal name (see [`key_bit`]).
    name_bit: u128,
    /// Filter bit of the first segment when there are several segments, else 0.
    head_bit: u128,
}

impl FieldPath {
    /// Any string is accepted; it is split on `.` into segments (empty segments are kept and
    /// match empty keys).
    pub fn new(name: &str) -> FieldPath {
        let segments: Vec<String> = name.split('.').map(str::to_owned).collect();
        let last = segments.last().map_or(name, String::as_str);
        let syslog = last.eq_ignore_ascii_case("priority") || last.eq_ignore_ascii_case("severity");
        let head_bit = match segments.as_slice() {
            [first, _, ..] => key_bit(first),
            _ => 0,
        };
        FieldPath {
            name: name.to_owned(),
            name_bit: key_bit(name),
            head_bit,
            segments,
            syslog,
        }
    }

    /// The configured name, as given.
    pub fn as_str(&self) -> &str {
        &self.name
    }

    /// The dot-separated segments (one segment for a name without dots).
    pub fn segments(&self) -> &[String] {
        &self.segments
    }

    /// Whether a numeric value 0..=7 under this field is a syslog severity (the last segment is
    /// `priority` or `severity`, ASCII case-insensitive).
    pub fn is_syslog_level_field(&self) -> bool {
        self.syslog
    }

    /// The first segment when the name has more than one segment.
    fn path_head(&self) -> Option<&str> {
        match self.segments.as_slice() {
            [first, _, ..] => Some(first),
            _ => None,
        }
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

/// Which fields to look for, each list in order of preference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseSettings {
    pub timestamp_fields: Vec<FieldPath>,
    pub level_fields: Vec<FieldPath>,
    pub message_fields: Vec<FieldPath>,
    /// `sources[].timestamp_format` of the source being parsed: tried on timestamp strings
    /// before RFC 3339 and epoch numbers. Empty in the `[parse]` settings.
    pub timestamp_formats: TimestampFormats,
    /// Each source's format, from `[[sources]]` (a source not listed is JSON).
    pub sources: Vec<SourceFormat>,
}

impl ParseSettings {
    /// Settings from plain names.
    pub fn from_names<S: AsRef<str>>(timestamp: &[S], level: &[S], message: &[S]) -> ParseSettings {
        fn paths<S: AsRef<str>>(names: &[S]) -> Vec<FieldPath> {
            names.iter().map(|n| FieldPath::new(n.as_ref())).collect()
        }
        ParseSettings {
            timestamp_fields: paths(timestamp),
            level_fields: paths(level),
            message_fields: paths(message),
            timestamp_formats: TimestampFormats::default(),
            sources: Vec::new(),
        }
    }
}

impl Default for ParseSettings {
    /// The recommended defaults: [`DEFAULT_TIMESTAMP_FIELDS`], [`DEFAULT_LEVEL_FIELDS`],
    /// [`DEFAULT_MESSAGE_FIELDS`].
    fn default() -> Self {
        ParseSettings::from_names(
            DEFAULT_TIMESTAMP_FIELDS,
            DEFAULT_LEVEL_FIELDS,
            DEFAULT_MESSAGE_FIELDS,
        )
    }
}

impl ParseSettings {
    /// The settings of a `[parse]` config table, with the formats of the `[[sources]]` the
    /// config loader put beside it ([`crate::config::ParseConfig::sources`]).
    pub fn from_config(c: &crate::config::ParseConfig) -> Self {
        ParseSettings {
            sources: c.sources.clone(),
            ..ParseSettings::from_names(&c.timestamp_fields, &c.level_fields, &c.message_fields)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Results and errors
// ---------------------------------------------------------------------------------------------

/// What logbelt extracts from one valid line. Borrowed from the line where possible.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Parsed<'a> {
    /// Event time, microseconds since the Unix epoch, UTC. None when absent or unparseable.
    pub ts_micros: Option<i64>,
    /// Normalised, lower-case level (see [`normalize_level`]). None when absent.
    pub level: Option<Cow<'a, str>>,
    /// The message. A JSON string value is unescaped (Cow::Borrowed when it had no escapes); a
    /// non-string value (number, object...) is stored as its JSON text. None when absent or null.
    pub message: Option<Cow<'a, str>>,
}

/// The kind of a top-level JSON value that is not an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonKind {
    Array,
    String,
    Number,
    Boolean,
    Null,
}

impl fmt::Display for JsonKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            JsonKind::Array => "array",
            JsonKind::String => "string",
            JsonKind::Number => "number",
            JsonKind::Boolean => "boolean",
            JsonKind::Null => "null",
        })
    }
}

/// Why a line is not a record. Its `Display` is the dead-letter reason stored in the database
/// (through [`crate::record::DeadLetterReason`]).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ParseError {
    /// `at` is the byte offset of the first invalid byte (`Utf8Error::valid_up_to`).
    #[error("invalid UTF-8 at byte {at}")]
    InvalidUtf8 { at: usize },
    /// `column` is serde_json's 1-based column (a byte count, as lines hold no newline);
    /// `message` is serde_json's message without its " at line 1 column N" suffix.
    #[error("invalid JSON at column {column}: {message}")]
    InvalidJson { column: usize, message: String },
    /// Valid JSON whose top-level value is not an object.
    #[error("not a JSON object (found {found})")]
    NotObject { found: JsonKind },
}

impl ParseError {
    fn from_json(e: &serde_json::Error) -> ParseError {
        let full = e.to_string();
        let suffix = format!(" at line {} column {}", e.line(), e.column());
        let message = full.strip_suffix(&suffix).unwrap_or(&full).to_owned();
        ParseError::InvalidJson {
            column: e.column(),
            message,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// parse_line
// ---------------------------------------------------------------------------------------------

/// Parse one line (without its line ending and BOM; never empty).
///
/// Returns a record for every JSON object, whatever fields it has; an error (the dead-letter
/// reason) otherwise. See the module documentation for the exact rules.
pub fn parse_line<'a>(line: &'a [u8], settings: &ParseSettings) -> Result<Parsed<'a>, ParseError> {
    let text = std::str::from_utf8(line).map_err(|e| ParseError::InvalidUtf8 {
        at: e.valid_up_to(),
    })?;
    if let Some(index) = too_deep_at(text.as_bytes()) {
        return Err(depth_error(text, index));
    }
    match text.bytes().find(|b| !is_json_whitespace(*b)) {
        Some(b'{') => parse_object(text, settings),
        first => Err(non_object_error(text, first)),
    }
}

fn is_json_whitespace(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// The line does not start with `{`: either invalid JSON or another kind of value.
fn non_object_error(text: &str, first: Option<u8>) -> ParseError {
    if let Err(e) = serde_json::from_str::<IgnoredAny>(text) {
        return ParseError::from_json(&e);
    }
    let found = match first {
        Some(b'[') => JsonKind::Array,
        Some(b'"') => JsonKind::String,
        Some(b't' | b'f') => JsonKind::Boolean,
        Some(b'n') => JsonKind::Null,
        _ => JsonKind::Number,
    };
    ParseError::NotObject { found }
}

/// Byte index of the first `[`/`{` that opens nesting level `MAX_DEPTH + 1`, if any.
///
/// Exact for any valid JSON prefix (it tracks strings and escapes); on invalid JSON,
/// [`depth_error`] lets the earlier syntax error win. Only lines with at least
/// `MAX_DEPTH + 1` opening brackets are scanned, so the common case costs one vectorised count.
fn too_deep_at(bytes: &[u8]) -> Option<usize> {
    // `b | 0x20 == b'{'` holds exactly for `[` (0x5B) and `{` (0x7B). Counting in u8 lanes,
    // 255 bytes at a time, lets the compiler vectorise this loop (10x faster than a usize count).
    let openers: usize = bytes
        .chunks(255)
        .map(|chunk| {
            let n = chunk
                .iter()
                .fold(0u8, |n, &b| n + u8::from((b | 0x20) == b'{'));
            usize::from(n)
        })
        .sum();
    if openers <= MAX_DEPTH {
        return None;
    }
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for (i, &b) in bytes.iter().enumerate() {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Some(i);
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}

/// The error for a line nested too deep at byte `index`, unless a syntax error comes first
/// (the same answer as `serde_json::from_str::<Value>`, which stops at the first problem).
fn depth_error(text: &str, index: usize) -> ParseError {
    // serde_json reports the recursion limit at the column of the offending bracket.
    let column = index + 1;
    match serde_json::from_str::<IgnoredAny>(text) {
        Err(e) if e.column() < column => ParseError::from_json(&e),
        _ => ParseError::InvalidJson {
            column,
            message: "recursion limit exceeded".to_owned(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::path::PathBuf;

    pub(super) fn defaults() -> ParseSettings {
        ParseSettings::default()
    }

    pub(super) fn settings(ts: &[&str], level: &[&str], msg: &[&str]) -> ParseSettings {
        ParseSettings::from_names(ts, level, msg)
    }

    pub(super) fn err(line: &[u8]) -> String {
        match parse_line(line, &defaults()) {
            Ok(p) => panic!(
                "expected an error for {:?}, got {p:?}",
                String::from_utf8_lossy(line)
            ),
            Err(e) => e.to_string(),
        }
    }

    pub(super) fn ok<'a>(line: &'a str, s: &ParseSettings) -> Parsed<'a> {
        match parse_line(line.as_bytes(), s) {
            Ok(p) => p,
            Err(e) => panic!("expected a record for {line:?}, got {e}"),
        }
    }
    // ----- errors ---------------------------------------------------------------------------

    #[test]
    fn error_classes_and_their_display() {
        let cases: &[(&[u8], &str)] = &[
            (b"\xff", "invalid UTF-8 at byte 0"),
            (b"{\"a\":\"\xc3\"}", "invalid UTF-8 at byte 6"),
            (b"{\"msg\":\"ok\"} \xed\xa0\x80", "invalid UTF-8 at byte 13"), // CESU surrogate bytes
            (
                b"\xef\xbb\xbf{}",
                "invalid JSON at column 1: expected value",
            ), // BOM not stripped
            (
                b"{",
                "invalid JSON at column 1: EOF while parsing an object",
            ),
            (b"{}x", "invalid JSON at column 3: trailing characters"),
            (b"{} {}", "invalid JSON at column 4: trailing characters"),
            (b"[1", "invalid JSON at column 2: EOF while parsing a list"),
            (b"{\"a\":1,}", "invalid JSON at column 8: trailing comma"),
            (b"{\"a\" 1}", "invalid JSON at column 6: expected `:`"),
            (b"{'a':1}", "invalid JSON at column 2: key must be a string"),
            (
                b"{\"a\":\"\\x\"}",
                "invalid JSON at column 8: invalid escape",
            ),
            (b"{\"a\":NaN}", "invalid JSON at column 6: expected value"),
            (b"{\"a\":01}", "invalid JSON at column 7: invalid number"),
            (
                b"   ",
                "invalid JSON at column 3: EOF while parsing a value",
            ),
            (b"# levels", "invalid JSON at column 1: expected value"),
            (
                b"not a JSON line",
                "invalid JSON at column 2: expected ident",
            ),
            (
                b"{\"a\":\"\0\"}",
                "invalid JSON at column 6: control character (\\u0000-\\u001F) found while parsing a string",
            ),
            (b"\0", "invalid JSON at column 1: expected value"),
            (
                b"{\"a\":1}\0",
                "invalid JSON at column 8: trailing characters",
            ),
            (b"[1]", "not a JSON object (found array)"),
            (b" [ ] ", "not a JSON object (found array)"),
            (b"\"s\"", "not a JSON object (found string)"),
            (b"1", "not a JSON object (found number)"),
            (b"-1.5", "not a JSON object (found number)"),
            (b"1e400", "not a JSON object (found number)"),
            (b"true", "not a JSON object (found boolean)"),
            (b"false", "not a JSON object (found boolean)"),
            (b"null", "not a JSON object (found null)"),
            (b"[1]x", "invalid JSON at column 4: trailing characters"),
            (b"", "invalid JSON at column 0: EOF while parsing a value"), // never passed
        ];
        for (line, want) in cases {
            assert_eq!(err(line), *want, "line {:?}", String::from_utf8_lossy(line));
        }
        let e = parse_line(b"{\"a\":\"\xc3\"}", &defaults()).unwrap_err();
        assert_eq!(e, ParseError::InvalidUtf8 { at: 6 });
        let e = parse_line(b"[1]", &defaults()).unwrap_err();
        assert_eq!(
            e,
            ParseError::NotObject {
                found: JsonKind::Array
            }
        );
        let e = parse_line(b"{}x", &defaults()).unwrap_err();
        assert_eq!(
            e,
            ParseError::InvalidJson {
                column: 3,
                message: "trailing characters".into()
            }
        );
    }

    /// Our message and column for a line nested too deep are exactly serde_json::Value's.
    fn assert_depth_matches_value(line: &str) {
        let ours = parse_line(line.as_bytes(), &defaults()).unwrap_err();
        let value_err = serde_json::from_str::<serde_json::Value>(line).unwrap_err();
        assert_eq!(
            ours,
            ParseError::from_json(&value_err),
            "line starting {:?}",
            &line[..20.min(line.len())]
        );
    }

    #[test]
    fn deep_nesting_is_a_clean_error() {
        // Too deep: refused at the column where the 128th level opens.
        let inside = format!(
            "{{\"msg\":\"x\",\"a\":{}{}}}",
            "[".repeat(127),
            "]".repeat(127)
        );
        for (line, column) in [
            ("[".repeat(10_000), 128),
            ("{\"a\":".repeat(100_000), 636),
            (inside, 142),
        ] {
            assert_eq!(
                err(line.as_bytes()),
                format!("invalid JSON at column {column}: recursion limit exceeded")
            );
            assert_depth_matches_value(&line);
        }
        for line in [
            // Balanced, so valid JSON: still refused past the limit, like serde_json::Value does.
            format!("{}{}", "[".repeat(128), "]".repeat(128)),
            // 100,000 levels inside a skipped field, balanced: no stack overflow either.
            format!("{{\"a\":{}{}}}", "[".repeat(100_000), "]".repeat(100_000)),
            // Also inside a captured timestamp field, which is decoded.
            format!(
                "{{\"t\":{}{}}}",
                "{\"$date\":".repeat(50_000),
                "}".repeat(50_000)
            ),
        ] {
            assert_depth_matches_value(&line);
        }

        // Exactly at the limit: accepted (127 levels, the top-level object included).
        let at_limit = format!(
            "{{\"msg\":\"x\",\"a\":{}{}}}",
            "[".repeat(126),
            "]".repeat(126)
        );
        assert!(serde_json::from_str::<serde_json::Value>(&at_limit).is_ok());
        assert_eq!(ok(&at_limit, &defaults()).message.as_deref(), Some("x"));
        // Many brackets but shallow: accepted.
        let wide = format!("{{\"a\":[{}[]]}}", "[],".repeat(500));
        assert!(parse_line(wide.as_bytes(), &defaults()).is_ok());
        // Brackets inside strings do not count.
        let in_string = format!("{{\"a\":\"{}\"}}", "[{".repeat(500));
        assert!(parse_line(in_string.as_bytes(), &defaults()).is_ok());
        let escaped_quote = format!("{{\"a\":\"\\\"{}\"}}", "[".repeat(500));
        assert!(parse_line(escaped_quote.as_bytes(), &defaults()).is_ok());

        // A syntax error before the deep part wins, as with serde_json::Value.
        let early = format!("x{}", "[".repeat(300));
        assert_eq!(
            err(early.as_bytes()),
            "invalid JSON at column 1: expected value"
        );
        assert_depth_matches_value(&early);
        let late = format!("{}x", "[".repeat(300));
        assert_depth_matches_value(&late);
    }

    #[test]
    fn field_path_basics() {
        let f = FieldPath::new("t.$date");
        assert_eq!(f.as_str(), "t.$date");
        assert_eq!(f.segments(), ["t", "$date"]);
        assert_eq!(f.to_string(), "t.$date");
        assert_eq!(FieldPath::new("level").segments(), ["level"]);
        assert_eq!(FieldPath::new("a..b").segments(), ["a", "", "b"]);
        // odd names do not panic and match what they say
        let s = settings(&[""], &["."], &[".x"]);
        let p = ok(r#"{"":1,".":"info","":{"x":"nested"}}"#, &s);
        assert_eq!(p.ts_micros, Some(1_000_000));
        assert_eq!(p.level.as_deref(), Some("info"));
        assert_eq!(p.message.as_deref(), Some("nested"));
    }

    /// Random byte mutations of realistic lines: never a panic, and the verdict agrees with
    /// serde_json (a line serde_json::Value parses as an object is a record; a line it cannot
    /// skip as JSON is an error).
    #[test]
    fn mutated_lines_never_panic_and_agree_with_serde_json() {
        let s = defaults();
        let seeds: &[&str] = &[
            r#"{"level":"info","ts":1716723772.6014807,"msg":"handled \"request\"\n","request":{"h":["*/*"]},"n":-1.5e3}"#,
            r#"{"t":{"$date":"2021-03-22T21:21:20.349+00:00"},"s":"I","msg":"x","attr":{"a":[1,{"b":null}]}}"#,
            r#"{"@timestamp":"2025-01-13T09:58:13.631Z","log.level":"debug","message":"\u00e9\ud83d\ude80","log":{"level":"x"}}"#,
            r#"{ "__REALTIME_TIMESTAMP" : "1534860261221373", "PRIORITY" : "6", "MESSAGE" : "GPS" }"#,
            r#"{"fields":{"message":"m"},"timestamp":"2022-01-27T14:16:25,271+0100","level":30}"#,
        ];
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let alphabet = b"{}[]:,\"\\u0123456789abcdefnrtlse.-+ \x00\xff\xc3\xa9$";
        for round in 0..30_000 {
            let seed = seeds[round % seeds.len()];
            let mut line = seed.as_bytes().to_vec();
            for _ in 0..=(next() % 3) {
                let at = (next() as usize) % (line.len() + 1);
                let byte = alphabet[(next() as usize) % alphabet.len()];
                match next() % 3 {
                    0 if at < line.len() => line[at] = byte,
                    1 if at < line.len() => {
                        line.remove(at);
                    }
                    _ => line.insert(at, byte),
                }
            }
            let ours = parse_line(&line, &s);
            let Ok(text) = std::str::from_utf8(&line) else {
                assert!(matches!(ours, Err(ParseError::InvalidUtf8 { .. })));
                continue;
            };
            let skipped = serde_json::from_str::<IgnoredAny>(text);
            let value = serde_json::from_str::<serde_json::Value>(text);
            match &ours {
                Ok(_) => assert!(skipped.is_ok(), "{text}"),
                Err(ParseError::InvalidJson { .. }) => assert!(value.is_err(), "{text}"),
                Err(ParseError::NotObject { .. }) => {
                    assert!(
                        skipped.is_ok() && !text.trim_start().starts_with('{'),
                        "{text}"
                    )
                }
                Err(e) => panic!("{e} for {text}"),
            }
            if let Ok(serde_json::Value::Object(_)) = value {
                assert!(ours.is_ok(), "{text}");
            }
            // Timestamp parsing of arbitrary text does not panic either.
            let _ = parse_timestamp_str(text);
        }
    }

    // ----- allocations ----------------------------------------------------------------------

    struct CountingAllocator;

    thread_local! {
        static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
    }

    // SAFETY: forwards to the system allocator; only counts.
    unsafe impl std::alloc::GlobalAlloc for CountingAllocator {
        unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
            ALLOCATIONS.with(|c| c.set(c.get() + 1));
            // SAFETY: same contract as ours.
            unsafe { std::alloc::System.alloc(layout) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
            // SAFETY: same contract as ours.
            unsafe { std::alloc::System.dealloc(ptr, layout) }
        }
    }

    #[global_allocator]
    static GLOBAL: CountingAllocator = CountingAllocator;

    fn allocations_of(line: &str, s: &ParseSettings) -> usize {
        let before = ALLOCATIONS.with(Cell::get);
        let p = parse_line(line.as_bytes(), s);
        let after = ALLOCATIONS.with(Cell::get);
        assert!(p.is_ok());
        drop(p);
        after - before
    }

    #[test]
    fn common_case_does_not_allocate() {
        let s = defaults();
        let flat = r#"{"level":"info","ts":1716723772.6014807,"logger":"http.log.access","msg":"handled request","status":200,"tags":["a","b"],"request":{"host":"example.net","uri":"/x"}}"#;
        assert_eq!(allocations_of(flat, &s), 0);
        let ecs = r#"{"@timestamp":"2025-01-13T09:58:13.631Z","log.level":"debug","message":"m","log":{"logger":"app"}}"#;
        assert_eq!(allocations_of(ecs, &s), 0);
        let mongo =
            r#"{"t":{"$date":"2021-03-22T21:21:20.349+00:00"},"s":"I","msg":"MongoDB starting"}"#;
        assert_eq!(allocations_of(mongo, &s), 0);
        // serde_json's scratch stack grows once when a skipped value nests two levels deep.
        let nested = r#"{"level":"info","msg":"m","request":{"headers":{"Accept":["*/*"]}}}"#;
        assert!(allocations_of(nested, &s) <= 1);
    }

    // ----- corpus ---------------------------------------------------------------------------

    fn corpus_dir() -> PathBuf {
        let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let candidates = [
            std::env::var_os("LOGBELT_CORPUS_DIR").map(PathBuf::from),
            Some(manifest.join("tests/data/corpus")),
        ];
        candidates
            .into_iter()
            .flatten()
            .find(|p| p.join("PROVENANCE.md").is_file())
            .expect("corpus not found: set LOGBELT_CORPUS_DIR")
    }

    /// file, non-empty lines, records, errors, records with a timestamp, level, message
    const CORPUS: &[(&str, usize, usize, usize, usize, usize, usize)] = &[
        ("bunyan-corpus-all.jsonl", 18, 14, 4, 13, 13, 13),
        ("bunyan-express-crasher-144.jsonl", 1, 1, 0, 1, 1, 1),
        ("bunyan-renovate.jsonl", 10, 10, 0, 10, 10, 10),
        ("bunyan-restify-withreq.jsonl", 3, 3, 0, 3, 3, 3),
        ("caddy-access.jsonl", 4, 4, 0, 4, 4, 4),
        ("docker-json-file-istio-proxy.jsonl", 1, 1, 0, 1, 0, 1),
        ("ecs-logging-python.jsonl", 5, 5, 0, 5, 5, 5),
        ("elasticsearch-audit-8.0.jsonl", 3, 3, 0, 3, 0, 0),
        ("journald-export.jsonl", 2, 2, 0, 2, 2, 2),
        ("mongodb-4.4-json.jsonl", 10, 10, 0, 10, 0, 10),
        ("pino-otel-demo-payment.jsonl", 1, 1, 0, 1, 1, 1),
        ("rust-tracing-json.jsonl", 5, 5, 0, 5, 5, 5),
        ("serilog-clef-bom.jsonl", 15, 15, 0, 15, 6, 15),
        ("suricata-eve-broken.jsonl", 269, 263, 6, 262, 0, 0),
        ("suricata-eve.jsonl", 266, 266, 0, 266, 0, 0),
        ("suricata-verify-fileinfo.jsonl", 1, 1, 0, 1, 0, 0),
        ("zeek-json-doubles.jsonl", 23, 22, 1, 0, 0, 0),
        ("zeek-json-utf8-escaping.jsonl", 50, 49, 1, 0, 0, 0),
    ];

    /// file, 1-based line number (counting empty lines), dead-letter reason
    const CORPUS_ERRORS: &[(&str, usize, &str)] = &[
        (
            "bunyan-corpus-all.jsonl",
            1,
            "invalid JSON at column 1: expected value",
        ),
        (
            "bunyan-corpus-all.jsonl",
            10,
            "invalid JSON at column 1: expected value",
        ),
        (
            "bunyan-corpus-all.jsonl",
            18,
            "invalid JSON at column 1: expected value",
        ),
        (
            "bunyan-corpus-all.jsonl",
            19,
            "invalid JSON at column 2: expected ident",
        ),
        (
            "suricata-eve-broken.jsonl",
            1,
            "invalid JSON at column 3: trailing characters",
        ),
        (
            "suricata-eve-broken.jsonl",
            4,
            "invalid JSON at column 16: expected `,` or `}`",
        ),
        (
            "suricata-eve-broken.jsonl",
            5,
            "invalid JSON at column 18: expected `,` or `}`",
        ),
        (
            "suricata-eve-broken.jsonl",
            104,
            "invalid JSON at column 1: expected value",
        ),
        (
            "suricata-eve-broken.jsonl",
            160,
            "invalid JSON at column 1: expected value",
        ),
        (
            "suricata-eve-broken.jsonl",
            270,
            "invalid JSON at column 1: expected value",
        ),
        (
            "zeek-json-doubles.jsonl",
            1,
            "invalid JSON at column 1: expected value",
        ),
        (
            "zeek-json-utf8-escaping.jsonl",
            1,
            "invalid JSON at column 1: expected value",
        ),
    ];

    #[test]
    fn corpus_files() {
        let dir = corpus_dir();
        let s = defaults();
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".jsonl"))
            .collect();
        names.sort();
        let expected: Vec<&str> = CORPUS.iter().map(|c| c.0).collect();
        assert_eq!(names, expected, "corpus files changed");

        for &(name, lines, records, errors, with_ts, with_level, with_msg) in CORPUS {
            let data = std::fs::read(dir.join(name)).unwrap();
            let data = data.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&data);
            let mut got = (0, 0, 0, 0, 0, 0);
            let mut got_errors = Vec::new();
            let body = data.strip_suffix(b"\n").unwrap_or(data);
            for (i, line) in body.split(|&b| b == b'\n').enumerate() {
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                if line.is_empty() {
                    continue;
                }
                got.0 += 1;
                match parse_line(line, &s) {
                    Ok(p) => {
                        got.1 += 1;
                        got.3 += usize::from(p.ts_micros.is_some());
                        got.4 += usize::from(p.level.is_some());
                        got.5 += usize::from(p.message.is_some());
                    }
                    Err(e) => {
                        got.2 += 1;
                        got_errors.push((name, i + 1, e.to_string()));
                    }
                }
            }
            assert_eq!(
                got,
                (lines, records, errors, with_ts, with_level, with_msg),
                "{name}"
            );
            let want_errors: Vec<(&str, usize, String)> = CORPUS_ERRORS
                .iter()
                .filter(|e| e.0 == name)
                .map(|e| (e.0, e.1, e.2.to_owned()))
                .collect();
            assert_eq!(got_errors, want_errors, "{name}");
        }
    }

    #[test]
    fn corpus_values_spot_checks() {
        let dir = corpus_dir();
        let s = defaults();
        let first_record =
            |name: &str, n: usize| -> (Option<String>, Option<String>, Option<String>) {
                let data = std::fs::read(dir.join(name)).unwrap();
                let data = data.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&data).to_vec();
                let line = data.split(|&b| b == b'\n').nth(n - 1).unwrap().to_vec();
                let p = parse_line(&line, &s).unwrap();
                (
                    p.ts_micros.map(format_timestamp_micros),
                    p.level.map(Cow::into_owned),
                    p.message.map(|m| m.chars().take(40).collect()),
                )
            };
        let o = |s: &str| Some(s.to_owned());
        let cases = [
            (
                "caddy-access.jsonl",
                1,
                (
                    o("2024-05-26T11:42:52.601480Z"),
                    o("info"),
                    o("handled request"),
                ),
            ),
            (
                "journald-export.jsonl",
                1,
                (
                    o("2018-08-21T14:04:21.221373Z"),
                    o("fatal"),
                    o("GPS Reference longitude: 7.358143333"),
                ),
            ),
            (
                "journald-export.jsonl",
                2,
                (
                    o("2018-08-21T14:04:21.221373Z"),
                    o("info"),
                    o("GPS Reference latitude: 46.908706667"),
                ),
            ),
            (
                "ecs-logging-python.jsonl",
                3,
                (
                    o("2025-01-13T09:58:13.633000Z"),
                    o("warn"),
                    o("this is a warning message num=83"),
                ),
            ),
            (
                "ecs-logging-python.jsonl",
                5,
                (
                    o("2025-01-13T09:58:13.634000Z"),
                    o("fatal"),
                    o("this is a critical message num=52"),
                ),
            ),
            (
                "rust-tracing-json.jsonl",
                3,
                (
                    o("2025-10-28T19:15:10.821495Z"),
                    o("trace"),
                    o("hello! I'm gonna shave a yak"),
                ),
            ),
            (
                "pino-otel-demo-payment.jsonl",
                1,
                (
                    o("2025-04-24T22:08:37.537000Z"),
                    o("info"),
                    o("Charge request received."),
                ),
            ),
            (
                "bunyan-corpus-all.jsonl",
                7,
                (
                    o("2012-02-08T22:56:55.856000Z"),
                    o("error"),
                    o("My message"),
                ),
            ),
            (
                "serilog-clef-bom.jsonl",
                1,
                (o("2017-04-20T04:24:47.025171Z"), None, o("Loop {Counter}")),
            ),
            (
                "serilog-clef-bom.jsonl",
                10,
                (
                    o("2017-04-20T04:24:47.037168Z"),
                    o("warn"),
                    o("Loop {Counter}"),
                ),
            ),
            (
                "mongodb-4.4-json.jsonl",
                8,
                (
                    o("2022-07-05T10:13:20.632000Z"),
                    None,
                    o("Authentication failed"),
                ),
            ),
            (
                "elasticsearch-audit-8.0.jsonl",
                1,
                (o("2022-01-27T13:16:25.271000Z"), None, None),
            ),
            (
                "docker-json-file-istio-proxy.jsonl",
                1,
                (
                    o("2018-09-21T02:56:06.978292Z"),
                    None,
                    o(r#"{"level":"info","time":"2018-09-21T02:56"#),
                ),
            ),
            (
                "suricata-eve.jsonl",
                1,
                (o("2017-01-30T15:12:26.985026Z"), None, None),
            ),
        ];
        for (name, n, want) in cases {
            assert_eq!(first_record(name, n), want, "{name}:{n}");
        }
    }

    // ----- speed ----------------------------------------------------------------------------

    /// `cargo test --release -- --ignored --nocapture parse_speed`
    #[test]
    #[ignore = "timing; run in release mode"]
    fn parse_speed() {
        let s = defaults();
        let lines = [
            r#"{"level":"info","ts":1716723772.6014807,"logger":"http.log.access.log17","msg":"handled request","request":{"remote_ip":"10.5.1.1","proto":"HTTP/2.0","method":"GET","host":"mirrors.example.net","uri":"/gentoo/distfiles/9b/tl.tar.xz"},"status":200,"size":53817}"#,
            r#"{"timestamp":"2025-10-28T19:15:10.821422Z","level":"INFO","fields":{"message":"shaving yaks","number_of_yaks":3},"target":"fmt_json::yak_shave","spans":[{"yaks":3,"name":"shaving_yaks"}],"threadName":"main","threadId":1,"span_id":"17c4a60ca4297cf1"}"#,
        ];
        // Baselines on the same machine: serde_json validation alone, and a borrowed struct
        // with three fixed fields (no timestamp parsing, no level mapping, no fallbacks).
        #[derive(serde::Deserialize)]
        struct Fixed<'a> {
            #[serde(borrow)]
            level: Option<&'a str>,
            #[serde(borrow)]
            msg: Option<&'a str>,
        }
        let time = |what: &str, line: &str, f: &dyn Fn(&str) -> bool| {
            let n = 1_000_000u32;
            let start = std::time::Instant::now();
            let mut found = 0u32;
            for _ in 0..n {
                found += u32::from(f(std::hint::black_box(line)));
            }
            let secs = start.elapsed().as_secs_f64();
            assert_eq!(found, n, "{what}");
            println!(
                "{what:>22}, {} bytes: {:.2} M lines/s, {:.0} MB/s",
                line.len(),
                f64::from(n) / secs / 1e6,
                f64::from(n) * line.len() as f64 / secs / 1e6
            );
        };
        for line in lines {
            time("parse_line", line, &|l| {
                let p = parse_line(l.as_bytes(), &s).unwrap();
                p.ts_micros.is_some() && p.level.is_some() && p.message.is_some()
            });
            time("IgnoredAny (baseline)", line, &|l| {
                serde_json::from_str::<IgnoredAny>(l).is_ok()
            });
            time("struct (baseline)", line, &|l| {
                let f: Fixed<'_> = serde_json::from_str(l).unwrap();
                f.level.is_some() || f.msg.is_some()
            });
        }
    }
}
