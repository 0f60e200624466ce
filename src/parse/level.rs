//! Level values: names and numbers (bunyan/pino, syslog severities) mapped to the canonical
//! `trace`, `debug`, `info`, `warn`, `error`, `fatal`.

use std::borrow::Cow;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::tests::{defaults, ok, settings};
    use crate::parse::*;

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
}
