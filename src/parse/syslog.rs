//! syslog lines as syslog files hold them.
//!
//! - **RFC 5424**: `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID STRUCTURED-DATA MSG`; `-` is
//!   an absent value; structured data becomes `{"structured_data": {"id": {"param": "value"}}}`
//!   (`\"`, `\\`, `\]` decoded).
//! - **RFC 3164** (rsyslog's traditional file format, and what `/var/log/syslog` holds):
//!   `[<PRI>]Mmm dd hh:mm:ss HOSTNAME TAG[PID]: MSG`, or with an RFC 3339 time in place of
//!   `Mmm dd hh:mm:ss` (rsyslog's default file format). A year-less time takes the year that
//!   puts it closest to now, not in the future ([`super::format::infer_year`]), and is UTC.
//!   The tag is the word after the host when it looks like one (letters, digits, `_-./:`),
//!   with an optional `[pid]` and `:`; otherwise the whole rest is the message.
//!
//! Fields: `hostname`, `appname`, `procid`, `msgid`, `structured_data`, `message`, `version`
//! (5424), and `facility` and `severity` (names) when the line starts with a valid `<PRI>`
//! (0-191); the level comes from the severity (0-2 `fatal`, 3 `error`, 4 `warn`, 5-6 `info`,
//! 7 `debug`). Leading spaces of the message are dropped. rsyslog's `#012`-style escapes are
//! kept as written.

use std::borrow::Cow;

use chrono::{DateTime, Utc};

use super::format::{civil_micros, infer_year, severity_level, Event, Obj, SourceParser};
use super::logfmt::quoted;
use super::nginx::{digits_at, month};
use super::parse_timestamp_str;
use super::Parsed;

const FACILITIES: [&str; 24] = [
    "kern",
    "user",
    "mail",
    "daemon",
    "auth",
    "syslog",
    "lpr",
    "news",
    "uucp",
    "cron",
    "authpriv",
    "ftp",
    "ntp",
    "security",
    "console",
    "solaris-cron",
    "local0",
    "local1",
    "local2",
    "local3",
    "local4",
    "local5",
    "local6",
    "local7",
];

const SEVERITIES: [&str; 8] = [
    "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug",
];

/// One structured-data element: its id and params.
type SdElement<'a> = (&'a str, Vec<(&'a str, Cow<'a, str>)>);

/// A syslog line.
pub fn parse<'a>(
    line: &'a str,
    parser: &SourceParser,
    now: DateTime<Utc>,
    out: &mut Vec<u8>,
) -> Option<Event<'a>> {
    // `<PRI>`: a valid priority, or another `<…>` (rsyslog writes `<invld>`).
    let (priority, rest) = match line.strip_prefix('<') {
        Some(after) => {
            let end = after.bytes().take(7).position(|b| b == b'>')?;
            let pri = after[..end]
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= 191 && end <= 3);
            (pri, &after[end + 1..])
        }
        None => (None, line),
    };
    let five = rest
        .strip_prefix('1')
        .and_then(|r| r.strip_prefix(' '))
        .filter(|_| line.starts_with('<'));
    match five {
        Some(body) => rfc5424(body, priority, parser, now, out),
        None => rfc3164(rest, priority, parser, now, out),
    }
}

fn word(s: &str) -> Option<(&str, &str)> {
    let end = s.find(' ')?;
    Some((&s[..end], &s[end + 1..]))
}

fn nil(s: &str) -> Option<&str> {
    (s != "-").then_some(s)
}

fn rfc5424<'a>(
    body: &'a str,
    priority: Option<u8>,
    parser: &SourceParser,
    now: DateTime<Utc>,
    out: &mut Vec<u8>,
) -> Option<Event<'a>> {
    let (time, rest) = word(body)?;
    let (host, rest) = word(rest)?;
    let (app, rest) = word(rest)?;
    let (procid, rest) = word(rest)?;
    let (msgid, rest) = match word(rest) {
        Some(w) => w,
        None => (rest, ""),
    };
    let (sd, message) = structured_data(rest)?;
    let ts_micros = match nil(time) {
        None => None,
        Some(t) => Some(parser.settings.timestamp(t, now)?),
    };
    let message = message.trim_start_matches(' ');
    let message = message.strip_prefix('\u{feff}').unwrap_or(message);

    let mut obj = Obj::new(out);
    priority_fields(&mut obj, priority);
    obj.uint("version", 1);
    if let Some(t) = nil(time) {
        obj.str("timestamp", t);
    }
    for (k, v) in [
        ("hostname", host),
        ("appname", app),
        ("procid", procid),
        ("msgid", msgid),
    ] {
        if let Some(v) = nil(v) {
            obj.str(k, v);
        }
    }
    if !sd.is_empty() {
        obj.object("structured_data", |o| {
            for (id, params) in &sd {
                o.object(id, |p| {
                    for (k, v) in params {
                        p.str(k, v);
                    }
                });
            }
        });
    }
    obj.str("message", message);
    obj.finish();
    Some(Parsed {
        ts_micros,
        level: priority.map(|p| Cow::Borrowed(severity_level(p & 7))),
        message: Some(Cow::Borrowed(message)),
    })
}

/// `-` or `[id k="v" …]…`, and the rest after one space.
fn structured_data(s: &str) -> Option<(Vec<SdElement<'_>>, &str)> {
    if let Some(rest) = s.strip_prefix('-') {
        return match rest.as_bytes().first() {
            None => Some((Vec::new(), "")),
            Some(b' ') => Some((Vec::new(), &rest[1..])),
            Some(_) => None,
        };
    }
    let b = s.as_bytes();
    let mut i = 0;
    let mut elements = Vec::new();
    while b.get(i) == Some(&b'[') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(|c| !matches!(c, b' ' | b']')) {
            i += 1;
        }
        let id = s.get(start..i).filter(|id| !id.is_empty())?;
        let mut params = Vec::new();
        loop {
            match *b.get(i)? {
                b']' => {
                    i += 1;
                    break;
                }
                b' ' => i += 1,
                _ => {
                    let k_start = i;
                    while b.get(i).is_some_and(|c| *c != b'=') {
                        i += 1;
                    }
                    let key = s.get(k_start..i)?;
                    if b.get(i + 1) != Some(&b'"') {
                        return None;
                    }
                    i += 2;
                    let (value, end) = quoted(s, i, param_escape)?;
                    params.push((key, value));
                    i = end;
                }
            }
        }
        elements.push((id, params));
    }
    if elements.is_empty() {
        return None;
    }
    match b.get(i) {
        None => Some((elements, "")),
        Some(b' ') => Some((elements, s.get(i + 1..)?)),
        Some(_) => None,
    }
}

/// A PARAM-VALUE's escape: `\"`, `\\` or `\]` stands for the character itself.
fn param_escape(c: u8) -> Option<char> {
    matches!(c, b'"' | b'\\' | b']').then_some(char::from(c))
}

fn priority_fields(obj: &mut Obj<'_>, priority: Option<u8>) {
    if let Some(p) = priority {
        if let Some(facility) = FACILITIES.get(usize::from(p >> 3)) {
            obj.str("facility", facility);
        }
        if let Some(severity) = SEVERITIES.get(usize::from(p & 7)) {
            obj.str("severity", severity);
        }
    }
}

/// `Mmm dd hh:mm:ss` (day space-padded), in microseconds: the year closest to `now`.
fn bsd_time(s: &str, now: DateTime<Utc>) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 15 || b[3] != b' ' || b[6] != b' ' || b[9] != b':' || b[12] != b':' {
        return None;
    }
    let mon = month(s.get(0..3)?)?;
    let day: u32 = s.get(4..6)?.trim_start().parse().ok()?;
    let n = |r| digits_at(s, r);
    let (h, m, sec) = (n(7..9)?, n(10..12)?, n(13..15)?);
    infer_year(now, |year| {
        civil_micros((year, mon, day), (h, m, sec), 0, 0)
    })
}

fn rfc3164<'a>(
    rest: &'a str,
    priority: Option<u8>,
    parser: &SourceParser,
    now: DateTime<Utc>,
    out: &mut Vec<u8>,
) -> Option<Event<'a>> {
    // The time: `Mmm dd hh:mm:ss`, or an RFC 3339 word.
    let (time, after) = match rest.get(..15).and_then(|t| Some((t, bsd_time(t, now)?))) {
        Some((t, micros)) => (t, Some((micros, rest.get(15..)?))),
        None => {
            let (t, after) = word(rest)?;
            (t, parse_timestamp_str(t).map(|m| (m, after)))
        }
    };
    let formatted = if parser.settings.timestamp_formats.is_empty() {
        None
    } else {
        parser.settings.timestamp_formats.parse(time, now)
    };
    let (micros, after) = after?;
    let ts_micros = formatted.or(Some(micros));
    let after = after.strip_prefix(' ').unwrap_or(after);
    let (host, body) = match word(after) {
        Some(w) => w,
        None if !after.is_empty() => (after, ""),
        None => return None,
    };
    if host.is_empty() {
        return None;
    }
    let (tag, message) = tag(body);
    let message = message.trim_start_matches(' ');

    let mut obj = Obj::new(out);
    priority_fields(&mut obj, priority);
    obj.str("timestamp", time);
    if let Some(host) = nil(host) {
        obj.str("hostname", host);
    }
    if let Some((app, pid)) = tag {
        obj.str("appname", app);
        if let Some(pid) = pid {
            obj.str("procid", pid);
        }
    }
    obj.str("message", message);
    obj.finish();
    Some(Parsed {
        ts_micros,
        level: priority.map(|p| Cow::Borrowed(severity_level(p & 7))),
        message: Some(Cow::Borrowed(message)),
    })
}

/// The tag at the start of `body` (`app`, `app:`, `app[pid]`, `app[pid]:`) and the message.
fn tag(body: &str) -> (Option<(&str, Option<&str>)>, &str) {
    let word_end = body.find(' ').unwrap_or(body.len());
    let word = &body[..word_end];
    let rest = body.get(word_end + 1..).unwrap_or("");
    let word = word.strip_suffix(':').unwrap_or(word);
    let (name, pid) = match word.strip_suffix(']').and_then(|w| w.split_once('[')) {
        Some((name, pid)) if !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()) => {
            (name, Some(pid))
        }
        _ => (word, None),
    };
    let is_tag = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'/' | b':'));
    if is_tag {
        (Some((name, pid)), rest)
    } else {
        (None, body)
    }
}

#[cfg(test)]
mod tests {
    use crate::parse::format::tests::{at, parser_of, run};
    use crate::parse::format::Format;
    use serde_json::json;

    #[test]
    fn rfc5424_with_structured_data() {
        let p = parser_of(Format::Syslog, &[]);
        let (e, v) = run(
            r#"<134>1 2026-11-27T13:40:14.083575+00:00 vm orders 777 ORDER [timeQuality tzKnown="1" isSynced="0"][order@32473 note="has \"quotes\" and \] bracket"] order 1001 accepted"#,
            &p,
        )
        .unwrap();
        assert_eq!(
            v,
            json!({"facility": "local0", "severity": "info", "version": 1,
                "timestamp": "2026-11-27T13:40:14.083575+00:00", "hostname": "vm",
                "appname": "orders", "procid": "777", "msgid": "ORDER",
                "structured_data": {"timeQuality": {"tzKnown": "1", "isSynced": "0"},
                    "order@32473": {"note": "has \"quotes\" and ] bracket"}},
                "message": "order 1001 accepted"})
        );
        assert_eq!(e.level.as_deref(), Some("info"));
        assert_eq!(e.ts_micros, Some(at(2026, 11, 27, 13, 40, 14) + 83_575));

        let (e, v) = run(
            "<8>1 2026-11-27T13:40:13.750186+00:00 vm CRON - - -  event 1 without pid",
            &p,
        )
        .unwrap();
        assert_eq!(
            v,
            json!({"facility": "user", "severity": "emerg", "version": 1,
                "timestamp": "2026-11-27T13:40:13.750186+00:00", "hostname": "vm",
                "appname": "CRON", "message": "event 1 without pid"})
        );
        assert_eq!(e.level.as_deref(), Some("fatal"));
        // An invalid priority: no facility or severity, no level; an empty message.
        let (e, v) = run(
            "<invld>1 2026-11-27T13:40:14.240780+00:00 localhost - - - - <999>bad priority value",
            &p,
        )
        .unwrap();
        assert!(v.get("facility").is_none());
        assert_eq!(v["message"], "<999>bad priority value");
        assert_eq!(e.level, None);
        let (_, v) = run(
            "<13>1 2026-11-27T13:40:14.240780+00:00 localhost - - - - ",
            &p,
        )
        .unwrap();
        assert_eq!(v["message"], "");
        assert!(run("<13>1 2026-11-27T13:40:14Z vm app - - [broken", &p).is_none());
        assert!(run("<13>1 yesterday vm app - - - m", &p).is_none());
    }

    #[test]
    fn rfc3164_lines() {
        let p = parser_of(Format::Syslog, &[]);
        let (e, v) = run(
            "Nov 27 13:40:13 vm kernel[1005]: event 5 via unix socket",
            &p,
        )
        .unwrap();
        assert_eq!(
            v,
            json!({"timestamp": "Nov 27 13:40:13", "hostname": "vm", "appname": "kernel",
                "procid": "1005", "message": "event 5 via unix socket"})
        );
        assert_eq!(e.ts_micros, Some(at(2026, 11, 27, 13, 40, 13)));
        assert_eq!(e.level, None);
        let (e, v) = run("<34>Oct  1 22:14:15 mymachine su: 'su root' failed", &p).unwrap();
        assert_eq!(v["facility"], "auth");
        assert_eq!(v["severity"], "crit");
        assert_eq!(v["appname"], "su");
        assert_eq!(v["message"], "'su root' failed");
        assert_eq!(e.level.as_deref(), Some("fatal"));
        assert_eq!(e.ts_micros, Some(at(2026, 10, 1, 22, 14, 15)));
        // Tags without a colon, a tag with a space, no tag, host `-`, an empty message.
        let cases = [
            (
                "Nov 27 13:40:13 vm nginx[3003] event 3",
                Some("nginx"),
                "event 3",
            ),
            (
                "Nov 27 13:40:13 vm my app[2007]: event 7",
                Some("my"),
                "app[2007]: event 7",
            ),
            (
                "Nov 27 13:40:14 no priority, just text",
                None,
                "priority, just text",
            ),
            (
                "Nov 27 13:40:14 localhost  <999>bad priority value",
                None,
                "<999>bad priority value",
            ),
            ("Nov 27 13:40:14 localhost  ", None, ""),
            (
                "Nov 27 13:40:14 vm tag:with:colons: tag containing colons",
                Some("tag:with:colons"),
                "tag containing colons",
            ),
            (
                "Nov 27 13:40:14 vm sudo:    alice : 3 incorrect",
                Some("sudo"),
                "alice : 3 incorrect",
            ),
        ];
        for (line, app, message) in cases {
            let (_, v) = run(line, &p).unwrap();
            assert_eq!(v.get("appname").and_then(|a| a.as_str()), app, "{line}");
            assert_eq!(v["message"], message, "{line}");
        }
        let (_, v) = run("Nov 27 13:40:14 - billing[888] no hostname field", &p).unwrap();
        assert!(v.get("hostname").is_none());
        // rsyslog's default file format: an RFC 3339 time.
        let (e, v) = run(
            "2026-11-27T13:40:13.750186+01:00 vm CRON[5]: (root) CMD (x)",
            &p,
        )
        .unwrap();
        assert_eq!(v["appname"], "CRON");
        assert_eq!(e.ts_micros, Some(at(2026, 11, 27, 12, 40, 13) + 750_186));
        for bad in [
            "hello world",
            "Nov 27 25:40:14 vm x: y",
            "Xyz 27 13:40:14 vm x: y",
            "",
        ] {
            assert!(run(bad, &p).is_none(), "{bad:?}");
        }
    }
}
