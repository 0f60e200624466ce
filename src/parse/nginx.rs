//! nginx's access log in the `combined` format (Apache's too), and nginx's error log.
//!
//! `combined` is `$remote_addr - $remote_user [$time_local] "$request" $status
//! $body_bytes_sent "$http_referer" "$http_user_agent"`. The fields are named after those
//! variables; a value nginx writes as `-` (empty) is left out; `status` and `body_bytes_sent`
//! are JSON numbers; `request_method`, `request_uri` and `server_protocol` are added when the
//! request has those three parts. The quoted texts are kept as written (nginx writes `"`, `\`
//! and bytes outside ASCII as `\xHH`). The Common Log Format (no referer and user agent), and
//! one more quoted field (`"$http_x_forwarded_for"`, nginx's `main`) are accepted too. Apache's
//! `%l` (ident) in place of `-` is kept as `remote_ident`. Level: 5xx `error`, 4xx `warn`, else
//! `info`; the message is the request line.
//!
//! The error log is `YYYY/MM/DD HH:MM:SS [level] pid#tid: *connection message`, the message
//! followed by `, client: …, server: …, request: "…", upstream: "…", host: "…", referrer: "…"`
//! as nginx adds them; those become fields of their own (quotes removed).

use std::borrow::Cow;

use chrono::{DateTime, Utc};

use super::format::{civil_micros, Event, Obj, SourceParser};
use super::level::{normalize_level, LevelValue};
use super::Parsed;

/// A cursor over a line.
struct Cur<'a> {
    s: &'a str,
    i: usize,
}

impl<'a> Cur<'a> {
    fn byte(&self) -> Option<u8> {
        self.s.as_bytes().get(self.i).copied()
    }

    fn eat(&mut self, b: u8) -> Option<()> {
        (self.byte()? == b).then(|| self.i += 1)
    }

    /// A non-empty run up to (not including) the next space.
    fn token(&mut self) -> Option<&'a str> {
        let start = self.i;
        while self.byte().is_some_and(|b| b != b' ') {
            self.i += 1;
        }
        (self.i > start).then(|| self.s.get(start..self.i))?
    }

    /// A run up to `end` (not included; `end` is consumed).
    fn until(&mut self, end: u8) -> Option<&'a str> {
        let start = self.i;
        let rel = self
            .s
            .as_bytes()
            .get(start..)?
            .iter()
            .position(|b| *b == end)?;
        self.i = start + rel + 1;
        self.s.get(start..start + rel)
    }

    /// A `"…"` text (a backslash escapes the next byte), without its quotes.
    fn quoted(&mut self) -> Option<&'a str> {
        self.eat(b'"')?;
        let start = self.i;
        loop {
            match self.byte()? {
                b'"' => break,
                b'\\' => self.i += 2,
                _ => self.i += 1,
            }
        }
        let text = self.s.get(start..self.i)?;
        self.i += 1;
        Some(text)
    }

    fn rest(&self) -> &'a str {
        self.s.get(self.i..).unwrap_or("")
    }
}

/// `n` ASCII digits as a number.
fn digits(s: &str) -> Option<u64> {
    (!s.is_empty() && s.len() <= 18 && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())?
}

/// The number written in `s[r]`, ASCII digits only (no sign, no spaces).
pub(super) fn digits_at(s: &str, r: std::ops::Range<usize>) -> Option<u32> {
    let t = s.get(r)?;
    t.bytes()
        .all(|c| c.is_ascii_digit())
        .then(|| t.parse().ok())?
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Month number (1-12) of a three-letter English name.
pub(super) fn month(name: &str) -> Option<u32> {
    MONTHS
        .iter()
        .position(|m| *m == name)
        .and_then(|i| u32::try_from(i + 1).ok())
}

/// nginx's `$time_local`: `27/Nov/2026:13:37:44 +0000`.
fn time_local(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 26 || b[2] != b'/' || b[6] != b'/' || b[11] != b':' || b[20] != b' ' {
        return None;
    }
    let n = |r| digits_at(s, r);
    let (day, mon, year) = (n(0..2)?, month(s.get(3..6)?)?, n(7..11)?);
    let (h, m, sec) = (n(12..14)?, n(15..17)?, n(18..20)?);
    if b[14] != b':' || b[17] != b':' {
        return None;
    }
    let sign = match b[21] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let offset = sign * i64::from(n(22..24)? * 3600 + n(24..26)? * 60);
    civil_micros(
        (i32::try_from(year).ok()?, mon, day),
        (h, m, sec),
        0,
        offset,
    )
}

/// A `combined` access-log line.
pub fn combined<'a>(
    line: &'a str,
    parser: &SourceParser,
    now: DateTime<Utc>,
    out: &mut Vec<u8>,
) -> Option<Event<'a>> {
    let mut c = Cur { s: line, i: 0 };
    let remote_addr = c.token()?;
    c.eat(b' ')?;
    let ident = c.token()?;
    c.eat(b' ')?;
    let remote_user = c.token()?;
    c.eat(b' ')?;
    c.eat(b'[')?;
    let time = c.until(b']')?;
    c.eat(b' ')?;
    let request = c.quoted()?;
    c.eat(b' ')?;
    let status_text = c.token()?;
    let status = digits(status_text).filter(|_| status_text.len() == 3)?;
    c.eat(b' ')?;
    let bytes_text = c.token()?;
    let bytes = if bytes_text == "-" {
        None
    } else {
        Some(digits(bytes_text)?)
    };
    let mut quoted = Vec::with_capacity(3);
    while c.byte().is_some() && quoted.len() < 3 {
        c.eat(b' ')?;
        quoted.push(c.quoted()?);
    }
    if !c.rest().trim_end().is_empty() || quoted.len() == 1 {
        return None;
    }

    let present = |v: &'a str| (v != "-" && !v.is_empty()).then_some(v);
    let mut obj = Obj::new(out);
    obj.str("remote_addr", remote_addr);
    if let Some(ident) = present(ident) {
        obj.str("remote_ident", ident);
    }
    if let Some(user) = present(remote_user) {
        obj.str("remote_user", user);
    }
    obj.str("time_local", time);
    obj.str("request", request);
    let mut parts = request.splitn(4, ' ');
    if let (Some(method), Some(uri), Some(protocol), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    {
        if !method.is_empty() && !uri.is_empty() && protocol.starts_with("HTTP/") {
            obj.str("request_method", method);
            obj.str("request_uri", uri);
            obj.str("server_protocol", protocol);
        }
    }
    obj.uint("status", status);
    if let Some(bytes) = bytes {
        obj.uint("body_bytes_sent", bytes);
    }
    let names = ["http_referer", "http_user_agent", "http_x_forwarded_for"];
    for (name, value) in names.iter().zip(&quoted) {
        if let Some(value) = present(value) {
            obj.str(name, value);
        }
    }
    obj.finish();

    let ts_micros = if parser.settings.timestamp_formats.is_empty() {
        time_local(time)
    } else {
        parser
            .settings
            .timestamp(time, now)
            .or_else(|| time_local(time))
    };
    let level = match status {
        500..=599 => "error",
        400..=499 => "warn",
        _ => "info",
    };
    Some(Parsed {
        ts_micros,
        level: Some(Cow::Borrowed(level)),
        message: Some(Cow::Borrowed(request)),
    })
}

/// nginx's error-log time: `2026/11/27 13:37:43` (local time without an offset: UTC).
fn error_time(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 19 || b[4] != b'/' || b[7] != b'/' || b[10] != b' ' || b[13] != b':' {
        return None;
    }
    let n = |r| digits_at(s, r);
    if b[16] != b':' {
        return None;
    }
    civil_micros(
        (i32::try_from(n(0..4)?).ok()?, n(5..7)?, n(8..10)?),
        (n(11..13)?, n(14..16)?, n(17..19)?),
        0,
        0,
    )
}

/// The keys nginx appends to an error message, in the order it writes them.
const ERROR_CONTEXT: [&str; 7] = [
    "client",
    "server",
    "request",
    "subrequest",
    "upstream",
    "host",
    "referrer",
];

/// An error-log line.
pub fn error<'a>(
    line: &'a str,
    parser: &SourceParser,
    now: DateTime<Utc>,
    out: &mut Vec<u8>,
) -> Option<Event<'a>> {
    let time = line.get(..19)?;
    let from_format = if parser.settings.timestamp_formats.is_empty() {
        None
    } else {
        parser.settings.timestamp(time, now)
    };
    let ts_micros = from_format.or_else(|| error_time(time));
    ts_micros?;
    let mut c = Cur { s: line, i: 19 };
    c.eat(b' ')?;
    c.eat(b'[')?;
    let severity = c.until(b']')?;
    if severity.is_empty() || !severity.bytes().all(|b| b.is_ascii_lowercase()) {
        return None;
    }
    c.eat(b' ')?;
    let pid = digits(c.until(b'#')?)?;
    let tid = digits(c.until(b':')?)?;
    // `: ` then the message; an empty message leaves no space.
    let _ = c.eat(b' ');
    let mut message = c.rest();
    let mut connection = None;
    if let Some(rest) = message.strip_prefix('*') {
        let end = rest.find(' ').unwrap_or(rest.len());
        if let Some(n) = digits(&rest[..end]) {
            connection = Some(n);
            message = rest.get(end + 1..).unwrap_or("");
        }
    }
    let (message, context) = split_context(message);

    let mut obj = Obj::new(out);
    obj.str("time", time);
    obj.str("severity", severity);
    obj.uint("pid", pid);
    obj.uint("tid", tid);
    if let Some(n) = connection {
        obj.uint("connection", n);
    }
    obj.str("message", message);
    for (k, v) in &context {
        obj.str(k, v);
    }
    obj.finish();
    Some(Parsed {
        ts_micros,
        level: normalize_level(LevelValue::Text(Cow::Borrowed(severity)), false),
        message: Some(Cow::Borrowed(message)),
    })
}

/// The message without nginx's `, client: …, server: …` tail, and the tail's pairs.
fn split_context(message: &str) -> (&str, Vec<(&'static str, &str)>) {
    let Some(start) = message.find(", client: ") else {
        return (message, Vec::new());
    };
    let mut pairs = Vec::new();
    let mut rest = &message[start + 2..];
    let mut keys = ERROR_CONTEXT.iter();
    // Each value ends where the next known key starts (values may hold ", ").
    while !rest.is_empty() {
        let Some(key) = keys
            .by_ref()
            .find(|k| rest.strip_prefix(**k).is_some_and(|r| r.starts_with(": ")))
        else {
            break;
        };
        let value_start = key.len() + 2;
        let after = &rest[value_start..];
        let next = keys
            .clone()
            .filter_map(|k| after.find(&format!(", {k}: ")))
            .min()
            .unwrap_or(after.len());
        let value = &after[..next];
        // A quoted value without its closing quote was cut by nginx (its error line stops at
        // 2 KB): the opening quote goes all the same.
        let value = value
            .strip_prefix('"')
            .map_or(value, |v| v.strip_suffix('"').unwrap_or(v));
        pairs.push((*key, value));
        rest = after.get(next + 2..).unwrap_or("");
    }
    (&message[..start], pairs)
}

#[cfg(test)]
mod tests {
    use crate::parse::format::tests::{at, parser_of, run};
    use crate::parse::format::Format;
    use serde_json::json;

    #[test]
    fn combined_lines() {
        let p = parser_of(Format::NginxCombined, &[]);
        let (e, v) = run(
            r#"::1 - - [27/Nov/2026:13:37:59 +0100] "GET /old-page?x=\x22y HTTP/1.1" 404 169 "https://search.example.org/?q=a" "Mozilla/5.0 \x22quoted\x22""#,
            &p,
        )
        .unwrap();
        assert_eq!(
            v,
            json!({"remote_addr": "::1", "time_local": "27/Nov/2026:13:37:59 +0100",
                "request": "GET /old-page?x=\\x22y HTTP/1.1", "request_method": "GET",
                "request_uri": "/old-page?x=\\x22y", "server_protocol": "HTTP/1.1",
                "status": 404, "body_bytes_sent": 169,
                "http_referer": "https://search.example.org/?q=a",
                "http_user_agent": "Mozilla/5.0 \\x22quoted\\x22"})
        );
        assert_eq!(e.ts_micros, Some(at(2026, 11, 27, 12, 37, 59)));
        assert_eq!(e.level.as_deref(), Some("warn"));
        assert_eq!(
            e.message.as_deref(),
            Some("GET /old-page?x=\\x22y HTTP/1.1")
        );

        let (e, v) = run(
            r#"127.0.0.1 - - [27/Nov/2026:13:38:11 +0000] "GARBAGE" 400 157 "-" "-""#,
            &p,
        )
        .unwrap();
        assert_eq!(
            v,
            json!({"remote_addr": "127.0.0.1", "time_local": "27/Nov/2026:13:38:11 +0000",
                "request": "GARBAGE", "status": 400, "body_bytes_sent": 157})
        );
        assert_eq!(e.level.as_deref(), Some("warn"));
        // Apache: ident and user, no bytes, Common Log Format.
        let (e, v) = run(
            r#"10.0.0.1 ident frank [10/Oct/2000:13:55:36 -0700] "GET /a.gif HTTP/1.0" 503 -"#,
            &p,
        )
        .unwrap();
        assert_eq!(v["remote_ident"], "ident");
        assert_eq!(v["remote_user"], "frank");
        assert!(v.get("body_bytes_sent").is_none());
        assert_eq!(e.level.as_deref(), Some("error"));
        assert_eq!(e.ts_micros, Some(at(2000, 10, 10, 20, 55, 36)));
        // With $http_x_forwarded_for.
        let (_, v) = run(
            r#"1.2.3.4 - - [27/Nov/2026:13:38:11 +0000] "GET / HTTP/1.1" 200 5 "-" "curl" "9.9.9.9""#,
            &p,
        )
        .unwrap();
        assert_eq!(v["http_x_forwarded_for"], "9.9.9.9");
        assert_eq!(v["status"], 200);

        for bad in [
            "hello world",
            r#"1.2.3.4 - - [27/Nov/2026:13:38:11 +0000] "GET / HTTP/1.1" 2000 5"#,
            r#"1.2.3.4 - - [27/Nov/2026:13:38:11 +0000] "GET / HTTP/1.1 200 5"#,
            r#"1.2.3.4 - - [27/Nov/2026:13:38:11 +0000] "GET / HTTP/1.1" 200 5 "-""#,
            r#"1.2.3.4 - - [27/Nov/2026:13:38:11 +0000] "GET / HTTP/1.1" 200 5 "-" "ua" trailing"#,
        ] {
            assert!(run(bad, &p).is_none(), "{bad}");
        }
    }

    #[test]
    fn error_lines() {
        let p = parser_of(Format::NginxError, &[]);
        let (e, v) = run(
            r#"2026/11/27 13:38:11 [error] 13470#13470: *785 open() "/srv/app/ng/html/quote"in"path" failed (2: No such file or directory), client: 127.0.0.1, server: localhost, request: "GET /quote"in"path?x="1" HTTP/1.1", host: "localhost", referrer: "-""#,
            &p,
        )
        .unwrap();
        assert_eq!(
            v,
            json!({"time": "2026/11/27 13:38:11", "severity": "error", "pid": 13470,
                "tid": 13470, "connection": 785,
                "message": "open() \"/srv/app/ng/html/quote\"in\"path\" failed (2: No such file or directory)",
                "client": "127.0.0.1", "server": "localhost",
                "request": "GET /quote\"in\"path?x=\"1\" HTTP/1.1", "host": "localhost",
                "referrer": "-"})
        );
        assert_eq!(e.level.as_deref(), Some("error"));
        assert_eq!(e.ts_micros, Some(at(2026, 11, 27, 13, 38, 11)));

        let (e, v) = run(
            "2026/11/27 13:37:43 [notice] 13466#13466: using the \"epoll\" event method",
            &p,
        )
        .unwrap();
        assert_eq!(v["message"], "using the \"epoll\" event method");
        assert!(v.get("connection").is_none());
        assert_eq!(e.level.as_deref(), Some("info"));
        let (e, _) = run(
            "2026/11/27 13:38:11 [crit] 1#1: *1 SSL_do_handshake() failed",
            &p,
        )
        .unwrap();
        assert_eq!(e.level.as_deref(), Some("fatal"));
        // Cut at nginx's 2 KB limit: no closing quote, no `host:`.
        let (_, v) = run(
            "2026/11/27 13:38:11 [info] 1#1: *789 client sent too long URI while reading client \
             request line, client: 127.0.0.1, server: localhost, request: \"GET /aaaa",
            &p,
        )
        .unwrap();
        assert_eq!(
            (v["request"].as_str(), v.get("host")),
            (Some("GET /aaaa"), None)
        );
        for bad in [
            "hello",
            "2026/11/27 13:38:11 error 1#1: x",
            "2026-11-27 13:38:11 [error] 1#1: x",
            "2026/11/27 13:38:11 [error] x#1: y",
        ] {
            assert!(run(bad, &p).is_none(), "{bad}");
        }
    }
}
