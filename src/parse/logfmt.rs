//! logfmt: `key=value key2="quoted value" flag`, as Go's `slog` text handler, Heroku and
//! Python's logfmter write it.
//!
//! - A key is a run of bytes other than space, `=` and `"`; a bare key (no `=`) is `true`.
//! - A value is a run of bytes up to the next space (it may hold `=` and `"`), or a quoted
//!   string: `\"`, `\\`, `\n`, `\r`, `\t` are decoded, any other backslash is kept as written.
//!   `key=` is the empty string.
//! - Values are stored as JSON strings: logfmt has no types (`status=200` is `"200"`).
//! - Not logfmt (a mismatch): no `key=value` pair at all, an unterminated quoted value, a
//!   quoted value followed by something other than a space, a `"` or `=` where a key should be.

use std::borrow::Cow;

use chrono::{DateTime, Utc};

use super::format::{columns, Event, Obj, SourceParser};

/// One pair: the key and the value (`None` for a bare key).
type Pair<'a> = (&'a str, Option<Cow<'a, str>>);

/// Splits `line` into pairs; `None` when it is not logfmt.
pub fn pairs(line: &str) -> Option<Vec<Pair<'_>>> {
    let b = line.as_bytes();
    let mut i = 0;
    let mut out = Vec::new();
    let mut valued = false;
    loop {
        while b.get(i).is_some_and(|c| c.is_ascii_whitespace()) {
            i += 1;
        }
        if i >= b.len() {
            break;
        }
        let key_start = i;
        while b
            .get(i)
            .is_some_and(|c| !c.is_ascii_whitespace() && *c != b'=' && *c != b'"')
        {
            i += 1;
        }
        let key = line.get(key_start..i)?;
        if key.is_empty() {
            return None;
        }
        match b.get(i) {
            Some(b'=') => {
                i += 1;
                valued = true;
                if b.get(i) == Some(&b'"') {
                    let (value, end) = quoted(line, i + 1, logfmt_escape)?;
                    i = end;
                    if b.get(i).is_some_and(|c| !c.is_ascii_whitespace()) {
                        return None;
                    }
                    out.push((key, Some(value)));
                } else {
                    let start = i;
                    while b.get(i).is_some_and(|c| !c.is_ascii_whitespace()) {
                        i += 1;
                    }
                    out.push((key, Some(Cow::Borrowed(line.get(start..i)?))));
                }
            }
            Some(b'"') => return None,
            _ => out.push((key, None)),
        }
    }
    valued.then_some(out)
}

/// The quoted value starting at byte `start` (just past its opening `"`): the decoded value and
/// the index just past the closing `"`. A `\` escape that `escape` decodes (given the byte after
/// the `\`) is replaced; any other `\` stays as it is.
pub(super) fn quoted(
    line: &str,
    start: usize,
    escape: impl Fn(u8) -> Option<char>,
) -> Option<(Cow<'_, str>, usize)> {
    let b = line.as_bytes();
    let mut i = start;
    let mut owned: Option<String> = None;
    let mut from = start;
    loop {
        match *b.get(i)? {
            b'"' => {
                let value = match owned {
                    None => Cow::Borrowed(line.get(start..i)?),
                    Some(mut s) => {
                        s.push_str(line.get(from..i)?);
                        Cow::Owned(s)
                    }
                };
                return Some((value, i + 1));
            }
            b'\\' => match b.get(i + 1).copied().and_then(&escape) {
                Some(decoded) => {
                    let s = owned.get_or_insert_with(String::new);
                    s.push_str(line.get(from..i)?);
                    s.push(decoded);
                    i += 2;
                    from = i;
                }
                None => i += 1,
            },
            _ => i += 1,
        }
    }
}

/// A logfmt escape: `\"`, `\\`, `\n`, `\r` or `\t`.
fn logfmt_escape(c: u8) -> Option<char> {
    match c {
        b'"' => Some('"'),
        b'\\' => Some('\\'),
        b'n' => Some('\n'),
        b'r' => Some('\r'),
        b't' => Some('\t'),
        _ => None,
    }
}

/// The event of a logfmt line.
pub fn parse<'a>(
    line: &'a str,
    parser: &SourceParser,
    now: DateTime<Utc>,
    out: &mut Vec<u8>,
) -> Option<Event<'a>> {
    let pairs = pairs(line)?;
    let mut obj = Obj::new(out);
    for (k, v) in &pairs {
        match v {
            Some(v) => obj.str(k, v),
            None => obj.bool(k, true),
        }
    }
    obj.finish();
    let strings: Vec<(&str, Cow<'a, str>)> = pairs
        .into_iter()
        .filter_map(|(k, v)| Some((k, v?)))
        .collect();
    Some(columns(&strings, parser, now))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::format::tests::{parser_of, run};
    use crate::parse::format::Format;
    use serde_json::json;

    #[test]
    fn pairs_quotes_escapes_and_bare_keys() {
        let p = parser_of(Format::Logfmt, &[]);
        let line = r#"ts=2026-11-27T13:40:36+0000 level=WARNING logger=api.db msg="slow query" sql="SELECT *\nFROM \"t\"" empty= flag backslash=C:\temp\x job="report=weekly""#;
        let (e, v) = run(line, &p).unwrap();
        assert_eq!(
            v,
            json!({"ts": "2026-11-27T13:40:36+0000", "level": "WARNING", "logger": "api.db",
                "msg": "slow query", "sql": "SELECT *\nFROM \"t\"", "empty": "", "flag": true,
                "backslash": "C:\\temp\\x", "job": "report=weekly"})
        );
        assert_eq!(e.level.as_deref(), Some("warn"));
        assert_eq!(e.message.as_deref(), Some("slow query"));
        assert_eq!(
            e.ts_micros,
            crate::parse::parse_timestamp_str("2026-11-27T13:40:36Z")
        );
        assert!(matches!(e.message, Some(Cow::Borrowed(_))));
    }

    #[test]
    fn not_logfmt() {
        let p = parser_of(Format::Logfmt, &[]);
        for line in [
            "just some words",
            "a=\"unterminated",
            "a=\"x\"y b=1",
            "=value",
            "\"quoted key\"=1",
            "a=1 \"b\"",
        ] {
            assert!(run(line, &p).is_none(), "{line}");
        }
        // A lone pair is enough; unicode passes through.
        let (_, v) = run("unicode=\"ünï ✓\"", &p).unwrap();
        assert_eq!(v, json!({"unicode": "ünï ✓"}));
    }
}
