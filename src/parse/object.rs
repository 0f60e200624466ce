//! The one pass over a line's top-level object: a serde [`Visitor`] that keeps the values of the
//! configured fields (as borrowed [`RawValue`]s) and skips the rest, the lookup of dotted names
//! in nested objects, and the decoding of the captured values.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer as _, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

use super::level::{normalize_level, LevelValue};
use super::timestamp::{parse_epoch_number, parse_timestamp_str};
use super::{FieldPath, ParseError, ParseSettings, Parsed};

/// Visits the object `text` (a line starting with `{`).
pub(super) fn parse_object<'a>(
    text: &'a str,
    settings: &ParseSettings,
) -> Result<Parsed<'a>, ParseError> {
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

// ---------------------------------------------------------------------------------------------
// The top-level visitor
// ---------------------------------------------------------------------------------------------

/// A 1-in-128 bit for a key, from its length and first and last bytes: a cheap pre-filter so
/// that most keys are rejected without comparing them with every configured name.
pub(super) fn key_bit(key: &str) -> u128 {
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
                    ts.offer(key, raw, |r, _| decode_timestamp(r.get(), 0, s));
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
fn decode_timestamp(raw: &str, depth: u8, s: &ParseSettings) -> Option<i64> {
    match raw.as_bytes().first()? {
        b'"' if !s.timestamp_formats.is_empty() => {
            s.timestamp(&decode_string(raw)?, chrono::Utc::now())
        }
        b'"' => parse_timestamp_str(&decode_string(raw)?),
        b'-' | b'0'..=b'9' => parse_epoch_number(raw),
        b'{' if depth < 2 => {
            let inner = member(raw, "$date").or_else(|| member(raw, "$numberLong"))?;
            decode_timestamp(inner.get(), depth + 1, s)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::tests::{defaults, err, ok, settings};
    use crate::parse::*;

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
}
