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
//!   A *raw* 0x00 byte is invalid JSON (control character). Note for the PostgreSQL writer:
//!   `text` columns cannot hold NUL and `jsonb` rejects `\u0000`; see
//!   [`find_jsonb_incompatible_escape`].
//! - **Lone surrogates** (`"\ud800"`): serde_json accepts them in skipped *values*, so the line
//!   is a record. When the lone surrogate is inside a *captured* string (message, level), that
//!   string is decoded lossily: each lone surrogate becomes U+FFFD. The line's own text (stored
//!   as `fields`) keeps the escape unchanged. In a *top-level key* a lone surrogate makes the
//!   line invalid JSON (`lone leading surrogate in hex escape`): serde_json decodes the keys of
//!   the map it visits (keys inside skipped values are only skipped, and accepted).
//!   PostgreSQL `jsonb` rejects lone surrogates anywhere; see [`find_jsonb_incompatible_escape`].
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
//! `null` (a string is unescaped, any other value is kept as its JSON text).

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer as _, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

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

/// Smallest timestamp kept: 0000-01-01T00:00:00Z, in microseconds since the epoch.
pub const MIN_TS_MICROS: i64 = -62_167_219_200_000_000;
/// Largest timestamp kept: 9999-12-31T23:59:59.999999Z. Outside [`MIN_TS_MICROS`]..=this range
/// a timestamp is treated as unparseable, so [`format_timestamp_micros`] text always has a
/// 4-digit year and sorts in time order.
pub const MAX_TS_MICROS: i64 = 253_402_300_799_999_999;

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

fn parse_object<'a>(text: &'a str, settings: &ParseSettings) -> Result<Parsed<'a>, ParseError> {
    let mut de = serde_json::Deserializer::from_str(text);
    let visitor = ObjectVisitor { settings };
    let parsed = (&mut de)
        .deserialize_map(visitor)
        .map_err(|e| ParseError::from_json(&e))?;
    de.end().map_err(|e| ParseError::from_json(&e))?;
    Ok(parsed)
}

fn filter_of(fields: &[FieldPath]) -> u128 {
    fields
        .iter()
        .fold(0, |acc, f| acc | f.name_bit | f.head_bit)
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

// ---------------------------------------------------------------------------------------------
// The top-level visitor
// ---------------------------------------------------------------------------------------------

/// A 1-in-128 bit for a key, from its length and first and last bytes: a cheap pre-filter so
/// that most keys are rejected without comparing them with every configured name.
fn key_bit(key: &str) -> u128 {
    let b = key.as_bytes();
    let first = u32::from(b.first().copied().unwrap_or(0));
    let last = u32::from(b.last().copied().unwrap_or(0));
    // Truncating the length is fine: this is only a hash.
    let len = b.len() as u32;
    let h = len.wrapping_mul(0x9E37_79B9)
        ^ first.wrapping_mul(0x85EB_CA6B)
        ^ last.wrapping_mul(0xC2B2_AE35);
    1u128 << (h.wrapping_mul(0x2545_F491) >> 25)
}

/// The best value found so far for one field list. Rank `2*i` is the literal name `i`,
/// `2*i + 1` its dotted path; lower is better.
struct Slot<'s, T> {
    fields: &'s [FieldPath],
    rank: usize,
    value: Option<T>,
    /// Filter bits of the names that could still improve on `rank` (0 when none can).
    filter: u128,
}

impl<'s, T> Slot<'s, T> {
    fn new(fields: &'s [FieldPath]) -> Self {
        Slot {
            fields,
            rank: usize::MAX,
            value: None,
            filter: filter_of(fields),
        }
    }

    fn set(&mut self, rank: usize, value: T) {
        self.rank = rank;
        self.value = Some(value);
        // Only names ranked before this one can still replace it.
        let better = self.fields.get(..rank / 2).unwrap_or_default();
        self.filter = filter_of(better);
        if rank % 2 == 1 {
            if let Some(field) = self.fields.get(rank / 2) {
                self.filter |= field.name_bit;
            }
        }
    }

    /// Offer the value of top-level `key` (whose [`key_bit`] is `bit`) to this list.
    fn offer<'de>(
        &mut self,
        (key, bit): (&str, u128),
        raw: &'de RawValue,
        decode: impl Fn(&'de RawValue, &FieldPath) -> Option<T>,
    ) {
        if self.filter & bit == 0 {
            return;
        }
        for (i, field) in self.fields.iter().enumerate() {
            let literal = 2 * i;
            if literal >= self.rank {
                return;
            }
            if field.name_bit & bit != 0 && field.name == key {
                if let Some(v) = decode(raw, field) {
                    self.set(literal, v);
                    return;
                }
            }
            if field.head_bit & bit != 0
                && literal + 1 < self.rank
                && field.path_head() == Some(key)
            {
                let found = field
                    .segments
                    .get(1..)
                    .and_then(|rest| descend(raw, rest))
                    .and_then(|inner| decode(inner, field));
                if let Some(v) = found {
                    self.set(literal + 1, v);
                    return;
                }
            }
        }
    }
}

struct ObjectVisitor<'s> {
    settings: &'s ParseSettings,
}

impl<'de> Visitor<'de> for ObjectVisitor<'_> {
    type Value = Parsed<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Parsed<'de>, A::Error> {
        let s = self.settings;
        let mut ts = Slot::new(&s.timestamp_fields);
        let mut level = Slot::new(&s.level_fields);
        let mut message = Slot::new(&s.message_fields);
        loop {
            let seed = KeySeed {
                filter: ts.filter | level.filter | message.filter,
            };
            match map.next_key_seed(seed)? {
                None => break,
                Some(None) => {
                    map.next_value::<IgnoredAny>()?;
                }
                Some(Some((key, bit))) => {
                    let raw: &'de RawValue = map.next_value()?;
                    let key = (&*key, bit);
                    ts.offer(key, raw, |r, _| decode_timestamp(r.get(), 0));
                    level.offer(key, raw, decode_level);
                    message.offer(key, raw, |r, _| decode_message(r.get()));
                }
            }
        }
        Ok(Parsed {
            ts_micros: ts.value,
            level: level.value,
            message: message.value,
        })
    }
}

/// Deserializes a top-level key: `Some(key)` when it passes the filter, so that some configured
/// field may use it; `None` (without allocating, even for an escaped key) otherwise. Keys that
/// pass the filter are compared with the names by [`Slot::offer`].
struct KeySeed {
    filter: u128,
}

impl KeySeed {
    /// The key's filter bit, if it passes the filter.
    fn wanted(&self, key: &str) -> Option<u128> {
        let bit = key_bit(key);
        (self.filter & bit != 0).then_some(bit)
    }
}

/// A top-level key that passed the filter, and its [`key_bit`].
type WantedKey<'de> = Option<(Cow<'de, str>, u128)>;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = WantedKey<'de>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = WantedKey<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_borrowed_str<E: de::Error>(self, key: &'de str) -> Result<Self::Value, E> {
        Ok(self.wanted(key).map(|bit| (Cow::Borrowed(key), bit)))
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Self::Value, E> {
        Ok(self
            .wanted(key)
            .map(|bit| (Cow::Owned(key.to_owned()), bit)))
    }
}

// ---------------------------------------------------------------------------------------------
// Nested lookup
// ---------------------------------------------------------------------------------------------

/// Follow `path` through nested objects, from the object `raw`.
fn descend<'de>(raw: &'de RawValue, path: &[String]) -> Option<&'de RawValue> {
    path.iter()
        .try_fold(raw, |value, key| member(value.get(), key))
}

/// The first member named `key` of the JSON object `text`; None if `text` is not an object.
fn member<'de>(text: &'de str, key: &str) -> Option<&'de RawValue> {
    if !text.starts_with('{') {
        return None;
    }
    let mut de = serde_json::Deserializer::from_str(text);
    (&mut de)
        .deserialize_map(MemberVisitor { key })
        .ok()
        .flatten()
}

struct MemberVisitor<'k> {
    key: &'k str,
}

impl<'de> Visitor<'de> for MemberVisitor<'_> {
    type Value = Option<&'de RawValue>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        while let Some(is_key) = map.next_key_seed(KeyEquals(self.key))? {
            if is_key && found.is_none() {
                found = Some(map.next_value::<&'de RawValue>()?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }
}

/// Deserializes a key into "is it equal to this string".
struct KeyEquals<'k>(&'k str);

impl<'de> DeserializeSeed<'de> for KeyEquals<'_> {
    type Value = bool;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for KeyEquals<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<bool, E> {
        Ok(key == self.0)
    }
}

// ---------------------------------------------------------------------------------------------
// Decoding captured values
// ---------------------------------------------------------------------------------------------

/// Unescape the JSON string `raw` (with its quotes). Borrowed when it has no escapes. A lone
/// surrogate escape becomes U+FFFD. None if `raw` is not a string.
fn decode_string(raw: &str) -> Option<Cow<'_, str>> {
    let inner = raw.strip_prefix('"')?.strip_suffix('"')?;
    if !inner.as_bytes().contains(&b'\\') {
        return Some(Cow::Borrowed(inner));
    }
    let mut de = serde_json::Deserializer::from_str(raw);
    match (&mut de).deserialize_str(CowStrVisitor) {
        Ok(s) => Some(s),
        Err(_) => {
            // serde_json refuses lone surrogates in strings; bytes mode gives WTF-8.
            let mut de = serde_json::Deserializer::from_str(raw);
            let bytes = (&mut de).deserialize_bytes(BytesVisitor).ok()?;
            Some(Cow::Owned(wtf8_to_string(bytes)))
        }
    }
}

/// Replace the 3-byte WTF-8 encodings of surrogates (ED A0..BF xx) with U+FFFD (EF BF BD, also
/// 3 bytes). In WTF-8 that came from valid UTF-8 plus escapes, ED A0..BF only starts a surrogate.
fn wtf8_to_string(mut bytes: Vec<u8>) -> String {
    let mut i = 0;
    while let Some(window) = bytes.get_mut(i..i + 3) {
        if window[0] == 0xED && (0xA0..=0xBF).contains(&window[1]) {
            window.copy_from_slice("\u{FFFD}".as_bytes());
            i += 3;
        } else {
            i += 1;
        }
    }
    match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }
}

struct CowStrVisitor;

impl<'de> Visitor<'de> for CowStrVisitor {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(s))
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(s.to_owned()))
    }
}

struct BytesVisitor;

impl Visitor<'_> for BytesVisitor {
    type Value = Vec<u8>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_bytes<E: de::Error>(self, b: &[u8]) -> Result<Vec<u8>, E> {
        Ok(b.to_vec())
    }
}

/// A message: a string unescaped, `null` unusable, anything else its JSON text.
fn decode_message(raw: &str) -> Option<Cow<'_, str>> {
    match raw.as_bytes().first() {
        Some(b'"') => decode_string(raw),
        Some(b'n') => None,
        _ => Some(Cow::Borrowed(raw)),
    }
}

fn decode_level<'de>(raw: &'de RawValue, field: &FieldPath) -> Option<Cow<'de, str>> {
    let text = raw.get();
    let value = match text.as_bytes().first() {
        Some(b'"') => LevelValue::Text(decode_string(text)?),
        Some(b'-' | b'0'..=b'9') => LevelValue::Number(text),
        _ => return None,
    };
    normalize_level(value, field.is_syslog_level_field())
}

/// A timestamp value: string, number, or MongoDB's `{"$date": ...}` /
/// `{"$numberLong": "..."}` (nested at most twice).
fn decode_timestamp(raw: &str, depth: u8) -> Option<i64> {
    match raw.as_bytes().first()? {
        b'"' => parse_timestamp_str(&decode_string(raw)?),
        b'-' | b'0'..=b'9' => parse_epoch_number(raw),
        b'{' if depth < 2 => {
            let inner = member(raw, "$date").or_else(|| member(raw, "$numberLong"))?;
            decode_timestamp(inner.get(), depth + 1)
        }
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Levels
// ---------------------------------------------------------------------------------------------

/// A raw level value as found in a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LevelValue<'a> {
    /// A JSON string, already unescaped.
    Text(Cow<'a, str>),
    /// A JSON number, as its JSON text (e.g. `30`, `55.5`, `1e400`).
    Number(&'a str),
}

/// Normalise a level to lower case, mapping common names and numbers to the canonical
/// `trace`, `debug`, `info`, `warn`, `error`, `fatal` (`Cow::Borrowed(&'static str)`).
///
/// Strings are trimmed and compared ASCII case-insensitively:
///
/// | canonical | strings | bunyan/pino number | syslog severity (`syslog_field` only) |
/// | --- | --- | --- | --- |
/// | `trace` | trace, trc, trce, verbose, vrb, finer, finest, t | 10–19 | |
/// | `debug` | debug, dbg, dbug, fine, d, d1–d5 (MongoDB) | 20–29 | 7 debug |
/// | `info` | info, inf, information, informational, notice, i | 30–39 | 6 info, 5 notice |
/// | `warn` | warn, warning, wrn, w | 40–49 | 4 warning |
/// | `error` | error, err, eror, fail, severe, e | 50–59 | 3 err |
/// | `fatal` | fatal, ftl, critical, crit, emerg, emergency, alert, panic, dpanic, f | ≥ 60 | 0 emerg, 1 alert, 2 crit |
///
/// - A number is a JSON number or a string of ASCII digits (journald writes `"6"`). Bunyan
///   numbers between the standard ones map to the nearest lower one (55 → `error`).
/// - `syslog_field` (see [`FieldPath::is_syslog_level_field`]: the field's last segment is
///   `priority` or `severity`): integers 0..=7 are syslog severities; other numbers follow the
///   bunyan column.
/// - Numbers below 10 (outside a syslog field), negative or non-finite numbers, and unknown
///   strings are kept as they are, lower-cased (information is never dropped).
/// - An empty (or all-whitespace) string gives None (unusable: the next level field is tried).
pub fn normalize_level(raw: LevelValue<'_>, syslog_field: bool) -> Option<Cow<'_, str>> {
    match raw {
        LevelValue::Number(text) => {
            let n: f64 = text.parse().ok()?;
            Some(numeric_level(n, syslog_field).map_or(Cow::Borrowed(text), Cow::Borrowed))
        }
        LevelValue::Text(text) => {
            let trimmed = trim_cow(text);
            if trimmed.is_empty() {
                return None;
            }
            if let Some(canonical) = canonical_level_name(&trimmed) {
                return Some(Cow::Borrowed(canonical));
            }
            if trimmed.len() <= 18 && trimmed.bytes().all(|b| b.is_ascii_digit()) {
                let n: u64 = trimmed.parse().ok()?;
                // A u64 below 10^18 converts to f64 closely enough for bucketing.
                #[allow(clippy::cast_precision_loss)]
                if let Some(canonical) = numeric_level(n as f64, syslog_field) {
                    return Some(Cow::Borrowed(canonical));
                }
                return Some(trimmed);
            }
            if trimmed.chars().any(char::is_uppercase) {
                Some(Cow::Owned(trimmed.to_lowercase()))
            } else {
                Some(trimmed)
            }
        }
    }
}

fn trim_cow(text: Cow<'_, str>) -> Cow<'_, str> {
    match text {
        Cow::Borrowed(s) => Cow::Borrowed(s.trim_ascii()),
        Cow::Owned(s) if s.trim_ascii().len() == s.len() => Cow::Owned(s),
        Cow::Owned(s) => Cow::Owned(s.trim_ascii().to_owned()),
    }
}

fn numeric_level(n: f64, syslog_field: bool) -> Option<&'static str> {
    if !n.is_finite() {
        return None;
    }
    if syslog_field && n.fract() == 0.0 && (0.0..=7.0).contains(&n) {
        return Some(match n as u8 {
            0..=2 => "fatal",
            3 => "error",
            4 => "warn",
            5 | 6 => "info",
            _ => "debug",
        });
    }
    Some(match n {
        n if n >= 60.0 => "fatal",
        n if n >= 50.0 => "error",
        n if n >= 40.0 => "warn",
        n if n >= 30.0 => "info",
        n if n >= 20.0 => "debug",
        n if n >= 10.0 => "trace",
        _ => return None,
    })
}

fn canonical_level_name(s: &str) -> Option<&'static str> {
    let mut buf = [0u8; 13];
    let lower = buf.get_mut(..s.len())?;
    lower.copy_from_slice(s.as_bytes());
    lower.make_ascii_lowercase();
    Some(match &*lower {
        b"trace" | b"trc" | b"trce" | b"verbose" | b"vrb" | b"finer" | b"finest" | b"t" => "trace",
        b"debug" | b"dbg" | b"dbug" | b"fine" | b"d" | b"d1" | b"d2" | b"d3" | b"d4" | b"d5" => {
            "debug"
        }
        b"info" | b"inf" | b"information" | b"informational" | b"notice" | b"i" => "info",
        b"warn" | b"warning" | b"wrn" | b"w" => "warn",
        b"error" | b"err" | b"eror" | b"fail" | b"severe" | b"e" => "error",
        b"fatal" | b"ftl" | b"critical" | b"crit" | b"emerg" | b"emergency" | b"alert"
        | b"panic" | b"dpanic" | b"f" => "fatal",
        _ => return None,
    })
}

// ---------------------------------------------------------------------------------------------
// Timestamps
// ---------------------------------------------------------------------------------------------

/// Parse a timestamp string into microseconds since the epoch (UTC).
///
/// Accepted:
/// - RFC 3339 / ISO 8601: `YYYY-MM-DD` then `T`, `t` or a space, then `hh:mm:ss`, an optional
///   fraction after `.` or `,` (any number of digits; beyond microseconds it is truncated, i.e.
///   rounded down), then `Z`/`z`, `±hh:mm`, `±hhmm`, `±hh`, or nothing (no offset: taken as
///   UTC). A leap second `:60` is accepted (it lands on the next second).
/// - Epoch numbers written as text: `-`? digits, optionally `.` digits or an exponent. The unit
///   is decided by the magnitude of the absolute value (`|x|`):
///
///   | `|x|` | unit | covers |
///   | --- | --- | --- |
///   | < 1e11 | seconds | up to year 5138 |
///   | < 1e14 | milliseconds | 1973-03-03 to year 5138 |
///   | < 1e17 | microseconds | 1973-03-03 to year 5138 |
///   | otherwise | nanoseconds | from 1973-03-03 |
///
///   Decimal text is converted exactly (no float rounding) and rounded down to the
///   microsecond; text with an exponent goes through `f64`.
///
/// None for anything else, and for instants outside years 0000–9999
/// ([`MIN_TS_MICROS`]..=[`MAX_TS_MICROS`]).
pub fn parse_timestamp_str(s: &str) -> Option<i64> {
    parse_rfc3339(s.as_bytes()).or_else(|| parse_epoch_number(s))
}

fn in_range(micros: i64) -> Option<i64> {
    (MIN_TS_MICROS..=MAX_TS_MICROS)
        .contains(&micros)
        .then_some(micros)
}

/// Two ASCII digits at `i`.
fn two_digits(b: &[u8], i: usize) -> Option<u32> {
    let hi = b.get(i)?.wrapping_sub(b'0');
    let lo = b.get(i + 1)?.wrapping_sub(b'0');
    (hi < 10 && lo < 10).then(|| u32::from(hi) * 10 + u32::from(lo))
}

fn expect_byte(b: &[u8], i: usize, want: u8) -> Option<()> {
    (b.get(i) == Some(&want)).then_some(())
}

fn parse_rfc3339(b: &[u8]) -> Option<i64> {
    if b.len() < 19 || b.get(4) != Some(&b'-') {
        return None;
    }
    let year = two_digits(b, 0)? * 100 + two_digits(b, 2)?;
    let month = two_digits(b, 5)?;
    expect_byte(b, 7, b'-')?;
    let day = two_digits(b, 8)?;
    if !matches!(b.get(10), Some(b'T' | b't' | b' ')) {
        return None;
    }
    let hour = two_digits(b, 11)?;
    expect_byte(b, 13, b':')?;
    let minute = two_digits(b, 14)?;
    expect_byte(b, 16, b':')?;
    let second = two_digits(b, 17)?;
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut i = 19;
    let mut nanos: i64 = 0;
    if matches!(b.get(i), Some(b'.' | b',')) {
        i += 1;
        let start = i;
        while let Some(d) = b.get(i).filter(|c| c.is_ascii_digit()) {
            if i - start < 9 {
                nanos = nanos * 10 + i64::from(d - b'0');
            }
            i += 1;
        }
        let digits = i - start;
        if digits == 0 {
            return None;
        }
        for _ in digits..9 {
            nanos *= 10;
        }
    }
    let offset_secs: i64 = match b.get(i) {
        None => 0,
        Some(b'Z' | b'z') => {
            i += 1;
            0
        }
        Some(&sign @ (b'+' | b'-')) => {
            let oh = two_digits(b, i + 1)?;
            i += 3;
            let om = if b.get(i) == Some(&b':') {
                let m = two_digits(b, i + 1)?;
                i += 3;
                m
            } else if b.get(i).is_some_and(u8::is_ascii_digit) {
                let m = two_digits(b, i)?;
                i += 2;
                m
            } else {
                0
            };
            if oh > 23 || om > 59 {
                return None;
            }
            let secs = i64::from(oh * 3600 + om * 60);
            if sign == b'-' {
                -secs
            } else {
                secs
            }
        }
        Some(_) => return None,
    };
    if i != b.len() {
        return None;
    }
    let date = chrono::NaiveDate::from_ymd_opt(i32::try_from(year).ok()?, month, day)?;
    let days = i64::from(chrono::Datelike::num_days_from_ce(&date)) - 719_163;
    let secs = days * 86_400 + i64::from(hour * 3600 + minute * 60 + second) - offset_secs;
    in_range(secs.checked_mul(1_000_000)?.checked_add(nanos / 1000)?)
}

/// An epoch number as JSON-number-like text (see [`parse_timestamp_str`]).
fn parse_epoch_number(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    let (negative, rest) = match b.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, b),
    };
    let int_len = rest.iter().take_while(|c| c.is_ascii_digit()).count();
    if int_len == 0 {
        return None;
    }
    let (int_digits, after) = rest.split_at(int_len);
    let (frac_digits, after) = match after.split_first() {
        Some((b'.', f)) => {
            let n = f.iter().take_while(|c| c.is_ascii_digit()).count();
            if n == 0 {
                return None;
            }
            f.split_at(n)
        }
        _ => (&[][..], after),
    };
    match after.first() {
        None => epoch_exact(negative, int_digits, frac_digits),
        Some(b'e' | b'E') => epoch_float(text.parse().ok()?),
        Some(_) => None,
    }
}

/// Exact conversion of decimal text, rounded down to the microsecond.
fn epoch_exact(negative: bool, int_digits: &[u8], frac_digits: &[u8]) -> Option<i64> {
    let significant = int_digits
        .iter()
        .position(|&d| d != b'0')
        .map_or(&[][..], |p| &int_digits[p..]);
    // The first `keep` fraction digits, as a number of 10^-keep units.
    let fraction = |keep: usize| -> u64 {
        (0..keep).fold(0, |acc, i| {
            acc * 10 + frac_digits.get(i).map_or(0, |&d| u64::from(d - b'0'))
        })
    };
    // Whether a fraction digit from position `from` on is not zero (precision lost).
    let nonzero_from = |from: usize| {
        frac_digits
            .get(from..)
            .is_some_and(|tail| tail.iter().any(|&d| d != b'0'))
    };
    let (micros_abs, inexact): (u64, bool) = if significant.len() <= 19 {
        let int = significant
            .iter()
            .fold(0u64, |acc, &d| acc * 10 + u64::from(d - b'0'));
        if int < 100_000_000_000 {
            (int * 1_000_000 + fraction(6), nonzero_from(6))
        } else if int < 100_000_000_000_000 {
            (int * 1000 + fraction(3), nonzero_from(3))
        } else if int < 100_000_000_000_000_000 {
            (int, nonzero_from(0))
        } else {
            (int / 1000, int % 1000 != 0 || nonzero_from(0))
        }
    } else if significant.len() <= 21 {
        // Nanoseconds from 1e19 (year 2286) to 1e21 (past year 9999).
        let int = significant
            .iter()
            .fold(0u128, |acc, &d| acc * 10 + u128::from(d - b'0'));
        let micros = u64::try_from(int / 1000).ok()?;
        (micros, int % 1000 != 0 || nonzero_from(0))
    } else {
        return None;
    };
    let magnitude = i64::try_from(micros_abs).ok()?;
    let micros = if negative {
        -magnitude - i64::from(inexact)
    } else {
        magnitude
    };
    in_range(micros)
}

/// (multiplier, divisor) from the unit to microseconds, by magnitude (see
/// [`parse_timestamp_str`]).
fn epoch_unit(abs: f64) -> (f64, f64) {
    if abs < 1e11 {
        (1e6, 1.0)
    } else if abs < 1e14 {
        (1e3, 1.0)
    } else if abs < 1e17 {
        (1.0, 1.0)
    } else {
        (1.0, 1e3)
    }
}

fn epoch_float(x: f64) -> Option<i64> {
    if !x.is_finite() {
        return None;
    }
    let (mul, div) = epoch_unit(x.abs());
    let micros = (x * mul / div).floor();
    #[allow(clippy::cast_precision_loss)]
    let range = MIN_TS_MICROS as f64..=MAX_TS_MICROS as f64;
    if !range.contains(&micros) {
        return None;
    }
    #[allow(clippy::cast_possible_truncation)]
    in_range(micros as i64)
}

/// RFC 3339 UTC text with exactly 6 fractional digits, e.g. `2024-05-26T11:42:52.601480Z`.
///
/// Within [`MIN_TS_MICROS`]..=[`MAX_TS_MICROS`] (everything [`parse_line`] produces) the text
/// has a fixed width and sorts in time order. Outside it, the year is written ISO 8601's
/// expanded way (`-0001`, `+10000`), which does not sort.
pub fn format_timestamp_micros(micros: i64) -> String {
    let mut out = String::with_capacity(27);
    write_timestamp_micros(&mut out, micros);
    out
}

/// [`format_timestamp_micros`] into a caller's buffer (no allocation per row on the hot path).
pub fn write_timestamp_micros(out: &mut String, micros: i64) {
    use std::fmt::Write as _;
    let secs = micros.div_euclid(1_000_000);
    let frac = micros.rem_euclid(1_000_000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let (h, m, s) = (sod / 3600, sod % 3600 / 60, sod % 60);
    // Writing into a String cannot fail.
    let _ = if (0..=9999).contains(&year) {
        write!(
            out,
            "{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{frac:06}Z"
        )
    } else {
        write!(
            out,
            "{year:+05}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{frac:06}Z"
        )
    };
}

/// Howard Hinnant's `civil_from_days`: days since 1970-01-01 → (year, month, day).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL helper
// ---------------------------------------------------------------------------------------------

/// Byte offset of the first escape in `json` that PostgreSQL's `jsonb` input rejects although
/// it is valid JSON: `\u0000`, or a `\uD800`-`\uDFFF` surrogate escape not part of a valid pair.
///
/// For the PostgreSQL writer (SQLite stores the text as it is): a line where this returns
/// `Some` would make a `jsonb` COPY fail. Cheap when the line has no backslash.
pub fn find_jsonb_incompatible_escape(json: &str) -> Option<usize> {
    let b = json.as_bytes();
    let hex4 = |i: usize| -> Option<u16> {
        let s = std::str::from_utf8(b.get(i..i + 4)?).ok()?;
        u16::from_str_radix(s, 16).ok()
    };
    let mut i = json.find('\\')?;
    while i < b.len() {
        if b[i] != b'\\' {
            i += 1;
            continue;
        }
        if b.get(i + 1) != Some(&b'u') {
            i += 2;
            continue;
        }
        let Some(unit) = hex4(i + 2) else {
            i += 2;
            continue;
        };
        match unit {
            0 => return Some(i),
            0xD800..=0xDBFF => {
                let low = if b.get(i + 6) == Some(&b'\\') && b.get(i + 7) == Some(&b'u') {
                    hex4(i + 8)
                } else {
                    None
                };
                if !matches!(low, Some(0xDC00..=0xDFFF)) {
                    return Some(i);
                }
                i += 12;
            }
            0xDC00..=0xDFFF => return Some(i),
            _ => i += 6,
        }
    }
    None
}

impl ParseSettings {
    /// The settings of a `[parse]` config table.
    pub fn from_config(c: &crate::config::ParseConfig) -> Self {
        ParseSettings::from_names(&c.timestamp_fields, &c.level_fields, &c.message_fields)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::path::PathBuf;

    fn defaults() -> ParseSettings {
        ParseSettings::default()
    }

    fn settings(ts: &[&str], level: &[&str], msg: &[&str]) -> ParseSettings {
        ParseSettings::from_names(ts, level, msg)
    }

    fn err(line: &[u8]) -> String {
        match parse_line(line, &defaults()) {
            Ok(p) => panic!(
                "expected an error for {:?}, got {p:?}",
                String::from_utf8_lossy(line)
            ),
            Err(e) => e.to_string(),
        }
    }

    fn ok<'a>(line: &'a str, s: &ParseSettings) -> Parsed<'a> {
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
        let brackets = "[".repeat(10_000);
        assert_eq!(
            err(brackets.as_bytes()),
            "invalid JSON at column 128: recursion limit exceeded"
        );
        assert_depth_matches_value(&brackets);

        let objects = "{\"a\":".repeat(100_000);
        assert_eq!(
            err(objects.as_bytes()),
            "invalid JSON at column 636: recursion limit exceeded"
        );
        assert_depth_matches_value(&objects);

        // Balanced, so valid JSON: still refused past the limit, like serde_json::Value does.
        let balanced = format!("{}{}", "[".repeat(128), "]".repeat(128));
        assert_depth_matches_value(&balanced);
        let inside = format!(
            "{{\"msg\":\"x\",\"a\":{}{}}}",
            "[".repeat(127),
            "]".repeat(127)
        );
        assert_eq!(
            err(inside.as_bytes()),
            "invalid JSON at column 142: recursion limit exceeded"
        );
        assert_depth_matches_value(&inside);
        // 100,000 levels inside a skipped field, balanced: no stack overflow either.
        let huge = format!("{{\"a\":{}{}}}", "[".repeat(100_000), "]".repeat(100_000));
        assert_depth_matches_value(&huge);
        // Also inside a captured timestamp field, which is decoded.
        let ts = format!(
            "{{\"t\":{}{}}}",
            "{\"$date\":".repeat(50_000),
            "}".repeat(50_000)
        );
        assert_depth_matches_value(&ts);

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

    // ----- timestamps -----------------------------------------------------------------------

    #[test]
    fn timestamp_strings() {
        let cases: &[(&str, Option<i64>)] = &[
            // RFC 3339 with Z, fractions of 0-9 digits
            ("2025-10-28T19:15:10.821315Z", Some(1_761_678_910_821_315)), // tracing
            ("2025-10-28T19:15:10Z", Some(1_761_678_910_000_000)),
            ("2025-10-28T19:15:10.8Z", Some(1_761_678_910_800_000)),
            ("2025-01-13T09:58:13.631Z", Some(1_736_762_293_631_000)), // ECS
            ("2017-04-20T04:24:47.0251719Z", Some(1_492_662_287_025_171)), // serilog, 7 digits
            (
                "2018-09-21T02:56:06.978292233Z",
                Some(1_537_498_566_978_292),
            ), // docker, 9 digits
            (
                "2018-09-21T02:56:06.9782922339999Z",
                Some(1_537_498_566_978_292),
            ), // 13 digits
            ("2025-10-28t19:15:10z", Some(1_761_678_910_000_000)),
            // offsets
            (
                "2017-01-30T16:12:26.985026+0100",
                Some(1_485_789_146_985_026),
            ), // suricata
            (
                "2017-01-30T16:12:26.985026+01:00",
                Some(1_485_789_146_985_026),
            ),
            ("2017-01-30T16:12:26.985026+01", Some(1_485_789_146_985_026)),
            ("2022-07-05T13:13:20.632+03:00", Some(1_657_016_000_632_000)), // MongoDB
            ("2024-02-29T23:59:59-05:30", Some(1_709_270_999_000_000)),
            (
                "2016-06-08T20:01:52.875791+0000",
                Some(1_465_416_112_875_791),
            ),
            // comma decimal separator (Elasticsearch), space separator, no offset (UTC)
            ("2022-01-27T14:16:25,271+0100", Some(1_643_289_385_271_000)),
            ("2025-10-28 19:15:10.821315Z", Some(1_761_678_910_821_315)),
            ("2025-10-28 19:15:10.821315", Some(1_761_678_910_821_315)),
            ("2025-10-28T19:15:10", Some(1_761_678_910_000_000)),
            // leap second, range ends, before the epoch (rounded down)
            ("2016-12-31T23:59:60.5Z", Some(1_483_228_800_500_000)),
            ("0000-01-01T00:00:00Z", Some(MIN_TS_MICROS)),
            ("9999-12-31T23:59:59.999999999Z", Some(MAX_TS_MICROS)),
            ("0000-01-01T00:00:00+00:01", None), // before year 0
            ("9999-12-31T23:59:59-00:01", None), // after year 9999
            ("1969-12-31T23:59:59.9999999Z", Some(-1)),
            // epoch numbers as strings: journald's microseconds, seconds, ms, ns
            ("1534860261221373", Some(1_534_860_261_221_373)),
            ("1716723772", Some(1_716_723_772_000_000)),
            ("1716723772.6014807", Some(1_716_723_772_601_480)),
            ("1745532517537", Some(1_745_532_517_537_000)),
            ("1537498566978292233", Some(1_537_498_566_978_292)),
            ("1.7167237726e9", Some(1_716_723_772_600_000)),
            ("1716723772.000001", Some(1_716_723_772_000_001)), // exact, no f64 rounding
            ("1716723772.0000019", Some(1_716_723_772_000_001)),
            ("-1716723772.0000001", Some(-1_716_723_772_000_001)), // rounded down
            ("-1537498566978292233", Some(-1_537_498_566_978_293)), // ns, rounded down
            ("-1537498566978292000", Some(-1_537_498_566_978_292)),
            ("1745532517537.9", Some(1_745_532_517_537_900)), // ms with a fraction
            ("1745532517537123.9", Some(1_745_532_517_537_123)), // µs with a fraction
            ("00001716723772", Some(1_716_723_772_000_000)), // leading zeros do not change the unit
            ("-1.5", Some(-1_500_000)),
            ("-0.0000005", Some(-1)),
            ("0", Some(0)),
            // unparseable
            ("", None),
            ("now", None),
            ("2017-01-30T16:12:26.985025+0100asloefbnjhowebfg", None), // corrupted suricata
            ("2017-01-30", None),
            ("2017-01-30T16:12Z", None),
            ("2017-02-30T16:12:26Z", None),
            ("2017-13-01T16:12:26Z", None),
            ("2017-01-30T24:00:00Z", None),
            ("2017-01-30T16:12:26.Z", None),
            ("2017-01-30T16:12:26+2400", None),
            ("2017-01-30T16:12:26+01:0", None),
            ("2017-01-30T16:12:26 +0100", None),
            (" 2017-01-30T16:12:26Z", None),
            ("17-01-30T16:12:26Z", None),
            ("1e400", None),
            ("-99999999999", None),                // seconds: year -1199
            ("-1e11", Some(-100_000_000_000_000)), // |x| = 1e11: milliseconds, 1966
            ("99999999999999999999999", None),
            ("12a", None),
            ("1.", None),
            ("+5", None),
            ("٣٤٥", None),
        ];
        for (s, want) in cases {
            assert_eq!(parse_timestamp_str(s), *want, "timestamp {s:?}");
        }
    }

    #[test]
    fn timestamp_values_in_lines() {
        let s = defaults();
        let cases: &[(&str, Option<i64>)] = &[
            (r#"{"ts":1716723772.6014807}"#, Some(1_716_723_772_601_480)), // caddy float seconds
            (r#"{"ts":1716723772}"#, Some(1_716_723_772_000_000)),
            (r#"{"time":1745532517537}"#, Some(1_745_532_517_537_000)), // pino ms
            (r#"{"time":1745532517537123}"#, Some(1_745_532_517_537_123)), // µs
            (
                r#"{"time":1745532517537123456}"#,
                Some(1_745_532_517_537_123),
            ), // ns
            (r#"{"time":1.745532517537E12}"#, Some(1_745_532_517_537_000)),
            (r#"{"ts":-0.5}"#, Some(-500_000)),
            (r#"{"ts":1e400}"#, None),
            (
                r#"{"ts":18446744073709551617}"#,
                Some(18_446_744_073_709_551),
            ), // 2^64+1 ns
            (
                r#"{"ts":99999999999999999999}"#,
                Some(99_999_999_999_999_999),
            ), // ns, year 5138
            (r#"{"ts":999999999999999999999}"#, None),
            (r#"{"ts":true}"#, None),
            (r#"{"ts":null}"#, None),
            (r#"{"ts":[1]}"#, None),
            (
                r#"{"__REALTIME_TIMESTAMP" : "1534860261221373"}"#,
                Some(1_534_860_261_221_373),
            ),
            (
                r#"{"@t":"2017-04-20T04:24:47.0251719Z"}"#,
                Some(1_492_662_287_025_171),
            ),
            // MongoDB: {"$date": string | ms number | {"$numberLong": "ms"}}
            (
                r#"{"t":{"$date":"2022-07-05T13:13:20.632+03:00"}}"#,
                Some(1_657_016_000_632_000),
            ),
            (
                r#"{"t":{"$date":1657016000632}}"#,
                Some(1_657_016_000_632_000),
            ),
            (
                r#"{"t":{"$date":{"$numberLong":"1657016000632"}}}"#,
                Some(1_657_016_000_632_000),
            ),
            (
                r#"{"t":{"$date":{"$date":{"$date":"2022-07-05T13:13:20Z"}}}}"#,
                None,
            ), // too nested
            (r#"{"t":{"other":1}}"#, None),
            // escapes in a timestamp string
            (
                r#"{"time":"2017-04-20T04:24:47\u002e5Z"}"#,
                Some(1_492_662_287_500_000),
            ),
        ];
        for (line, want) in cases {
            assert_eq!(ok(line, &s).ts_micros, *want, "line {line}");
        }
    }

    #[test]
    fn format_timestamp() {
        let cases: &[(i64, &str)] = &[
            (1_716_723_772_601_480, "2024-05-26T11:42:52.601480Z"),
            (0, "1970-01-01T00:00:00.000000Z"),
            (-1, "1969-12-31T23:59:59.999999Z"),
            (951_782_400_000_000, "2000-02-29T00:00:00.000000Z"),
            (MIN_TS_MICROS, "0000-01-01T00:00:00.000000Z"),
            (MAX_TS_MICROS, "9999-12-31T23:59:59.999999Z"),
            (MIN_TS_MICROS - 1, "-0001-12-31T23:59:59.999999Z"),
            (MAX_TS_MICROS + 1, "+10000-01-01T00:00:00.000000Z"),
        ];
        for (micros, want) in cases {
            assert_eq!(format_timestamp_micros(*micros), *want);
            if (MIN_TS_MICROS..=MAX_TS_MICROS).contains(micros) {
                assert_eq!(
                    parse_timestamp_str(want),
                    Some(*micros),
                    "round trip {want}"
                );
            }
        }
        // Extremes do not panic.
        format_timestamp_micros(i64::MIN);
        format_timestamp_micros(i64::MAX);
        // Cross-check with chrono over the whole kept range, and check the text sorts.
        let mut previous = String::new();
        let step = (MAX_TS_MICROS - MIN_TS_MICROS) / 20_011;
        let mut m = MIN_TS_MICROS;
        while m <= MAX_TS_MICROS {
            let ours = format_timestamp_micros(m);
            let chrono = chrono::DateTime::from_timestamp_micros(m)
                .unwrap()
                .format("%Y-%m-%dT%H:%M:%S%.6fZ")
                .to_string();
            assert_eq!(ours, chrono);
            assert_eq!(parse_timestamp_str(&ours), Some(m));
            assert!(ours > previous);
            previous = ours;
            m += step;
        }
    }

    #[test]
    fn rfc3339_agrees_with_chrono() {
        let samples = [
            "2024-05-26T11:42:52.601480Z",
            "1999-12-31T23:59:59.999999999+14:00",
            "2000-01-01T00:00:00-23:59",
            "1900-03-01T12:00:00.5+05:45",
            "2400-02-29T00:00:00Z",
            "0001-01-01T00:00:00Z",
        ];
        for s in samples {
            let chrono = chrono::DateTime::parse_from_rfc3339(s).unwrap();
            let want = chrono.timestamp_micros();
            assert_eq!(parse_timestamp_str(s), Some(want), "{s}");
        }
    }

    // ----- levels ---------------------------------------------------------------------------

    fn level(value: LevelValue<'_>, syslog: bool) -> Option<String> {
        normalize_level(value, syslog).map(Cow::into_owned)
    }

    #[test]
    fn level_mapping() {
        let text = |s: &'static str| LevelValue::Text(Cow::Borrowed(s));
        let cases: &[(LevelValue<'static>, bool, Option<&str>)] = &[
            (text("INFO"), false, Some("info")),
            (text("Information"), false, Some("info")),
            (text("informational"), false, Some("info")),
            (text("notice"), false, Some("info")),
            (text("Warning"), false, Some("warn")),
            (text("WARN"), false, Some("warn")),
            (text("wrn"), false, Some("warn")),
            (text("err"), false, Some("error")),
            (text("Error"), false, Some("error")),
            (text("fail"), false, Some("error")),
            (text("SEVERE"), false, Some("error")),
            (text("critical"), false, Some("fatal")),
            (text("CRIT"), false, Some("fatal")),
            (text("emerg"), false, Some("fatal")),
            (text("emergency"), false, Some("fatal")),
            (text("alert"), false, Some("fatal")),
            (text("panic"), false, Some("fatal")),
            (text("DPANIC"), false, Some("fatal")),
            (text("FTL"), false, Some("fatal")),
            (text("Verbose"), false, Some("trace")),
            (text("TRACE"), false, Some("trace")),
            (text("trce"), false, Some("trace")),
            (text("dbug"), false, Some("debug")),
            (text("DBG"), false, Some("debug")),
            (text(" debug "), false, Some("debug")),
            // MongoDB / glog letters
            (text("F"), false, Some("fatal")),
            (text("E"), false, Some("error")),
            (text("W"), false, Some("warn")),
            (text("I"), false, Some("info")),
            (text("D1"), false, Some("debug")),
            (text("D5"), false, Some("debug")),
            // unknown strings: kept, lower-cased
            (text("Audit"), false, Some("audit")),
            (text("ÉVÉNEMENT"), false, Some("événement")),
            (text("d6"), false, Some("d6")),
            (text("informationally"), false, Some("informationally")),
            (text(""), false, None),
            (text("  "), false, None),
            // bunyan / pino numbers
            (LevelValue::Number("10"), false, Some("trace")),
            (LevelValue::Number("20"), false, Some("debug")),
            (LevelValue::Number("30"), false, Some("info")),
            (LevelValue::Number("40"), false, Some("warn")),
            (LevelValue::Number("50"), false, Some("error")),
            (LevelValue::Number("55"), false, Some("error")),
            (LevelValue::Number("59.9"), false, Some("error")),
            (LevelValue::Number("60"), false, Some("fatal")),
            (LevelValue::Number("100"), false, Some("fatal")),
            (LevelValue::Number("3e1"), false, Some("info")),
            (LevelValue::Number("6"), false, Some("6")),
            (LevelValue::Number("-1"), false, Some("-1")),
            (LevelValue::Number("1e400"), false, Some("1e400")),
            (text("30"), false, Some("info")),
            (text("6"), false, Some("6")),
            // syslog severities, only for priority/severity fields
            (LevelValue::Number("0"), true, Some("fatal")),
            (LevelValue::Number("1"), true, Some("fatal")),
            (LevelValue::Number("2"), true, Some("fatal")),
            (LevelValue::Number("3"), true, Some("error")),
            (LevelValue::Number("4"), true, Some("warn")),
            (LevelValue::Number("5"), true, Some("info")),
            (LevelValue::Number("6"), true, Some("info")),
            (LevelValue::Number("7"), true, Some("debug")),
            (LevelValue::Number("8"), true, Some("8")),
            (LevelValue::Number("6.5"), true, Some("6.5")),
            (LevelValue::Number("30"), true, Some("info")),
            (text("1"), true, Some("fatal")),
            (text("6"), true, Some("info")),
            (text("INFO"), true, Some("info")),
        ];
        for (value, syslog, want) in cases {
            assert_eq!(
                level(value.clone(), *syslog).as_deref(),
                *want,
                "{value:?} syslog={syslog}"
            );
        }
        // Canonical names and already-lower-case unknown strings are not allocated.
        assert!(matches!(
            normalize_level(text("INFO"), false),
            Some(Cow::Borrowed("info"))
        ));
        assert!(matches!(
            normalize_level(text("audit"), false),
            Some(Cow::Borrowed("audit"))
        ));
        assert!(matches!(
            normalize_level(LevelValue::Number("7"), false),
            Some(Cow::Borrowed("7"))
        ));
    }

    #[test]
    fn syslog_rule_follows_the_field_name() {
        for (name, syslog) in [
            ("PRIORITY", true),
            ("priority", true),
            ("severity", true),
            ("log.syslog.severity", true),
            ("level", false),
            ("prio", false),
            ("severity_number", false),
        ] {
            assert_eq!(
                FieldPath::new(name).is_syslog_level_field(),
                syslog,
                "{name}"
            );
        }
        let s = settings(&[], &["level", "PRIORITY", "severity"], &[]);
        let lvl = |line: &'static str| ok(line, &s).level.map(Cow::into_owned);
        assert_eq!(lvl(r#"{"PRIORITY":"6"}"#).as_deref(), Some("info"));
        assert_eq!(lvl(r#"{"PRIORITY":3}"#).as_deref(), Some("error"));
        assert_eq!(lvl(r#"{"severity":0}"#).as_deref(), Some("fatal"));
        assert_eq!(lvl(r#"{"severity":"WARNING"}"#).as_deref(), Some("warn"));
        assert_eq!(lvl(r#"{"level":6}"#).as_deref(), Some("6"));
        assert_eq!(lvl(r#"{"level":30}"#).as_deref(), Some("info"));
    }

    #[test]
    fn levels_in_lines() {
        let s = defaults();
        let cases: &[(&str, Option<&str>)] = &[
            (r#"{"level":"INFO"}"#, Some("info")),
            (r#"{"level":30}"#, Some("info")),
            (r#"{"level":null,"severity":"ERROR"}"#, Some("error")),
            (r#"{"level":"","lvl":"warn"}"#, Some("warn")),
            (r#"{"level":true,"lvl":"warn"}"#, Some("warn")),
            (r#"{"level":{"a":1}}"#, None),
            (r#"{"@l":"Error"}"#, Some("error")),
            (r#"{"PRIORITY":"1"}"#, Some("fatal")),
            (r#"{"level":"\u0057ARN"}"#, Some("warn")),
            (r#"{"s":"I"}"#, None), // MongoDB's s is not a default
            (r#"{"level":1e400}"#, Some("1e400")),
        ];
        for (line, want) in cases {
            assert_eq!(ok(line, &s).level.as_deref(), *want, "line {line}");
        }
        let mongo = settings(&["t"], &["s"], &["msg"]);
        assert_eq!(
            ok(
                r#"{"t":{"$date":"2021-03-22T21:21:20.349+00:00"},"s":"D2"}"#,
                &mongo
            )
            .level
            .as_deref(),
            Some("debug")
        );
    }

    // ----- field lookup ---------------------------------------------------------------------

    #[test]
    fn dotted_names_literal_then_path() {
        let s = settings(&["t.$date"], &["log.level"], &["fields.message"]);
        // literal key "log.level" alongside an object "log" (ECS)
        let ecs = r#"{"log.level":"debug","log":{"logger":"app","level":"error"}}"#;
        assert_eq!(ok(ecs, &s).level.as_deref(), Some("debug"));
        // the literal key wins even when it comes after the object
        let ecs_late = r#"{"log":{"level":"error"},"log.level":"debug"}"#;
        assert_eq!(ok(ecs_late, &s).level.as_deref(), Some("debug"));
        // only the nested path
        assert_eq!(
            ok(r#"{"log":{"level":"error"}}"#, &s).level.as_deref(),
            Some("error")
        );
        // the literal is unusable (null): the path is used
        let null_literal = r#"{"log.level":null,"log":{"level":"error"}}"#;
        assert_eq!(ok(null_literal, &s).level.as_deref(), Some("error"));
        // the path does not lead anywhere
        assert_eq!(ok(r#"{"log":"text"}"#, &s).level, None);
        assert_eq!(ok(r#"{"log":{"lvl":"x"}}"#, &s).level, None);
        assert_eq!(ok(r#"{"log":[{"level":"x"}]}"#, &s).level, None);
        // MongoDB's nested timestamp through a path
        let mongo = r#"{"t":{"$date":"2021-03-22T21:21:20.349+00:00"},"s":"I"}"#;
        assert_eq!(ok(mongo, &s).ts_micros, Some(1_616_448_080_349_000));
        // tracing's nested message; a nested string with escapes
        let tracing = r#"{"fields":{"message":"shaving \"yaks\"","n":3}}"#;
        assert_eq!(ok(tracing, &s).message.as_deref(), Some("shaving \"yaks\""));
        // three segments, and an escaped key on the way
        let deep = settings(&[], &[], &["a.b.c"]);
        assert_eq!(
            ok(r#"{"a":{"x":1,"\u0062":{"c":"found"}}}"#, &deep)
                .message
                .as_deref(),
            Some("found")
        );
        assert_eq!(
            ok(r#"{"a.b.c":"literal","a":{"b":{"c":"path"}}}"#, &deep)
                .message
                .as_deref(),
            Some("literal")
        );
        // "a.b" then "c" is not tried (paths are strict, segment by segment)
        assert_eq!(ok(r#"{"a.b":{"c":"mixed"}}"#, &deep).message, None);
    }

    #[test]
    fn first_configured_field_wins() {
        let s = defaults();
        // "message" is configured before "msg", whatever the order in the line
        let p = ok(r#"{"msg":"second","message":"first"}"#, &s);
        assert_eq!(p.message.as_deref(), Some("first"));
        // "timestamp" before "time"
        let p = ok(
            r#"{"time":"2020-01-01T00:00:00Z","timestamp":"2021-01-01T00:00:00Z"}"#,
            &s,
        );
        assert_eq!(p.ts_micros, parse_timestamp_str("2021-01-01T00:00:00Z"));
        // an unparseable earlier field falls back to the next usable one
        let p = ok(
            r#"{"timestamp":"garbage","time":"2020-01-01T00:00:00Z"}"#,
            &s,
        );
        assert_eq!(p.ts_micros, parse_timestamp_str("2020-01-01T00:00:00Z"));
        let p = ok(r#"{"message":null,"msg":"used"}"#, &s);
        assert_eq!(p.message.as_deref(), Some("used"));
        // the same key can feed two lists ("log" is a message field and the head of log.level)
        let p = ok(r#"{"log":{"level":"warn"}}"#, &s);
        assert_eq!(p.level.as_deref(), Some("warn"));
        assert_eq!(p.message.as_deref(), Some(r#"{"level":"warn"}"#));
        // empty lists never match
        let none = settings(&[], &[], &[]);
        assert_eq!(
            ok(r#"{"msg":"x","level":"info","ts":1}"#, &none),
            Parsed::default()
        );
        // a name listed under two lists
        let both = settings(&["x"], &["x"], &["x"]);
        let p = ok(r#"{"x":"30"}"#, &both);
        assert_eq!(
            (p.ts_micros, p.level.as_deref(), p.message.as_deref()),
            (Some(30_000_000), Some("info"), Some("30"))
        );
    }

    #[test]
    fn duplicate_keys_first_usable_occurrence_wins() {
        let s = defaults();
        let p = ok(
            r#"{"msg":"first","msg":"second","level":"info","level":"error"}"#,
            &s,
        );
        assert_eq!(p.message.as_deref(), Some("first"));
        assert_eq!(p.level.as_deref(), Some("info"));
        // an unusable first occurrence does not hide a later usable one
        let p = ok(r#"{"msg":null,"msg":"second"}"#, &s);
        assert_eq!(p.message.as_deref(), Some("second"));
        let p = ok(r#"{"ts":"bad","ts":1}"#, &s);
        assert_eq!(p.ts_micros, Some(1_000_000));
        // serde_json::Value would keep the last one (and so does PostgreSQL jsonb)
        let v: serde_json::Value =
            serde_json::from_str(r#"{"msg":"first","msg":"second"}"#).unwrap();
        assert_eq!(v["msg"], "second");
        // nested duplicates: the first occurrence is followed
        let nested = settings(&[], &[], &["a.b"]);
        assert_eq!(
            ok(r#"{"a":{"b":"one","b":"two"}}"#, &nested)
                .message
                .as_deref(),
            Some("one")
        );
    }

    // ----- messages and strings -------------------------------------------------------------

    #[test]
    fn messages_and_escapes() {
        let s = defaults();
        let p = ok(r#"{"msg":"plain text"}"#, &s);
        assert!(matches!(p.message, Some(Cow::Borrowed("plain text"))));
        let cases: &[(&str, Option<&str>)] = &[
            (r#"{"msg":"multi\nline"}"#, Some("multi\nline")),
            (
                r#"{"msg":"tab\there \"quoted\" back\\slash"}"#,
                Some("tab\there \"quoted\" back\\slash"),
            ),
            (
                r#"{"msg":"\/download\/eicar.com"}"#,
                Some("/download/eicar.com"),
            ),
            (r#"{"msg":"\u00e9\u20ac \ud83d\ude80"}"#, Some("é€ 🚀")),
            (r#"{"msg":"raw é€ 🚀"}"#, Some("raw é€ 🚀")),
            (r#"{"msg":""}"#, Some("")),
            (r#"{"msg":42}"#, Some("42")),
            (r#"{"msg":-1.5e3}"#, Some("-1.5e3")),
            (r#"{"msg":true}"#, Some("true")),
            (
                r#"{"msg":{"a": "json object"}}"#,
                Some(r#"{"a": "json object"}"#),
            ),
            (
                r#"{"msg":["a", "json", "array"]}"#,
                Some(r#"["a", "json", "array"]"#),
            ),
            (r#"{"msg":null}"#, None),
            (r#"{"other":"x"}"#, None),
            (r#"{ "MESSAGE" : "journald" }"#, Some("journald")),
            (
                r#"{"@mt":"Loop {Counter}","Counter":0}"#,
                Some("Loop {Counter}"),
            ),
            (r#"{"@m":"Loop 0","@mt":"Loop {Counter}"}"#, Some("Loop 0")),
            // an escaped key still matches a configured name
            (r#"{"\u006dsg":"escaped key"}"#, Some("escaped key")),
        ];
        for (line, want) in cases {
            assert_eq!(ok(line, &s).message.as_deref(), *want, "line {line}");
        }
        let p = ok(r#"{"msg":"a\nb"}"#, &s);
        assert!(matches!(p.message, Some(Cow::Owned(_))));
    }

    #[test]
    fn lone_surrogates() {
        let s = defaults();
        // serde_json refuses them when decoding a string...
        assert!(serde_json::from_str::<serde_json::Value>(r#"{"a":"\ud800"}"#).is_err());
        // ...but a skipped field with one is still valid JSON: the line is a record.
        let p = ok(r#"{"other":"\ud800","msg":"fine"}"#, &s);
        assert_eq!(p.message.as_deref(), Some("fine"));
        let p = ok(r#"{"k":"\ud800x\udc00"}"#, &s);
        assert_eq!(p, Parsed::default());
        // Top-level keys are decoded by serde_json, so a lone surrogate there is an error;
        // in a nested (skipped) key it is accepted.
        assert_eq!(
            ok(r#"{"a":{"k\ud800":1},"msg":"x"}"#, &s)
                .message
                .as_deref(),
            Some("x")
        );
        assert_eq!(
            err(br#"{"k\udfff":1}"#),
            "invalid JSON at column 9: lone leading surrogate in hex escape"
        );
        // In a captured string, each lone surrogate becomes U+FFFD; the rest is decoded.
        let cases: &[(&str, &str)] = &[
            (r#"{"msg":"\ud800"}"#, "\u{FFFD}"),
            (r#"{"msg":"a\ud800b\nc"}"#, "a\u{FFFD}b\nc"),
            (r#"{"msg":"\udc00\ud83d\ude80"}"#, "\u{FFFD}🚀"),
            (r#"{"msg":"\ud800\ud800\udc00"}"#, "\u{FFFD}𐀀"),
            (r#"{"msg":"é\udbff"}"#, "é\u{FFFD}"),
        ];
        for (line, want) in cases {
            assert_eq!(ok(line, &s).message.as_deref(), Some(*want), "line {line}");
        }
        assert_eq!(
            ok(r#"{"level":"\ud800WARN"}"#, &s).level.as_deref(),
            Some("\u{FFFD}warn")
        );
        assert_eq!(ok(r#"{"ts":"\ud800"}"#, &s).ts_micros, None);
    }

    #[test]
    fn nul_bytes() {
        let s = defaults();
        // A \u0000 escape is valid JSON.
        let p = ok(r#"{"msg":"a\u0000b","x":"\u0000"}"#, &s);
        assert_eq!(p.message.as_deref(), Some("a\0b"));
        // A raw NUL byte is not, inside or outside a string.
        assert_eq!(
            err(b"{\"msg\":\"a\0b\"}"),
            "invalid JSON at column 9: control character (\\u0000-\\u001F) found while parsing a string"
        );
        assert_eq!(
            err(b"{\"msg\":1,\0}"),
            "invalid JSON at column 10: key must be a string"
        );
        assert_eq!(
            err(b"{\"msg\":\"x\"\0}"),
            "invalid JSON at column 11: expected `,` or `}`"
        );
    }

    #[test]
    fn huge_numbers_are_valid() {
        let s = defaults();
        let p = ok(
            r#"{"a":1e400,"b":18446744073709551617,"c":-1e400,"d":1e-400,"msg":1e400}"#,
            &s,
        );
        assert_eq!(p.message.as_deref(), Some("1e400"));
        let big = format!(r#"{{"n":{}}}"#, "9".repeat(10_000));
        assert!(parse_line(big.as_bytes(), &s).is_ok());
        let p = ok(r#"{"msg":18446744073709551617}"#, &s);
        assert_eq!(p.message.as_deref(), Some("18446744073709551617"));
    }

    #[test]
    fn postgres_jsonb_escapes() {
        let cases: &[(&str, Option<usize>)] = &[
            (r#"{"a":"plain"}"#, None),
            (r#"{"a":"\n\"\\u0000"}"#, None), // an escaped backslash then "u0000"
            (r#"{"a":"x\u0000"}"#, Some(7)),
            (r#"{"a":"\ud800"}"#, Some(6)),
            (r#"{"a":"\udc00"}"#, Some(6)),
            (r#"{"a":"\ud83d\ude80 \ud83d"}"#, Some(19)),
            (r#"{"a":"\ud83d\ude80\u00e9"}"#, None),
            (r#"{"a":"\ud800\n"}"#, Some(6)),
        ];
        for (json, want) in cases {
            assert_eq!(find_jsonb_incompatible_escape(json), *want, "{json}");
        }
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
            let _ = find_jsonb_incompatible_escape(text);
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
