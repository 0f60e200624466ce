//! Text formats: what a source's lines are (`sources[].format`), and how a line of text becomes
//! an event — a JSON object for `fields` plus the timestamp, level and message columns.
//!
//! `json` (the default) is [`super::parse_line`], untouched: the format is matched once per
//! batch, never per line. Every other format writes the event's JSON object into a buffer the
//! caller appends to the batch, and returns the columns borrowed from the line where it can.
//!
//! | format | event | columns |
//! | --- | --- | --- |
//! | `text` | `{"message": line}` | message = the line |
//! | `logfmt` | every `key=value` (values as strings; a bare `key` is `true`) | the configured `[parse]` field names, literal keys |
//! | `regex` | every named capture that took part (strings) | captures named like the configured field names |
//! | `nginx_combined` | nginx's variable names; `status`, `body_bytes_sent` numbers | ts from `time_local`, level from status, message = `request` |
//! | `nginx_error` | `time`, `severity`, `pid`, `tid`, `connection`, `message`, and `client`, `server`, `request`, `upstream`, `host`, `referrer` when written | ts, level from severity, message |
//! | `syslog` | RFC 5424 or RFC 3164 parts, `facility`/`severity` when the priority is present | ts, level from severity, message |
//! | `cri` | `time`, `stream`, `message` (`P` pieces joined up to their `F` line by the Parser actor) | ts, message |
//!
//! A line that is not valid UTF-8 is a dead letter whatever the format (`invalid UTF-8 at
//! byte N`, its bytes kept): an event's `fields` is JSON text. A valid line that does not fit the
//! format is a mismatch ([`crate::record::DeadLetterReason::NoMatch`]) or, with
//! `on_mismatch = "text"`, a `text` event.
//!
//! Times without an offset (nginx's error log, RFC 3164 syslog, a `timestamp_format` without
//! `%z`) are taken as UTC, as JSON timestamps without an offset are.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use chrono::format::{Item, Parsed as ChronoParsed, StrftimeItems};
use chrono::{DateTime, Datelike, NaiveDate, Utc};
use regex::Regex;

// The format modules (`cri`, `logfmt`, `nginx`, `syslog`) take `Obj` from here.
pub(super) use super::json_out::Obj;
use super::level::{normalize_level, LevelValue};
use super::timestamp::{parse_timestamp_str, MAX_TS_MICROS, MIN_TS_MICROS};
use super::{FieldPath, ParseSettings, Parsed};

// ---------------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------------

/// `sources[].format`: what the lines of a source are.
#[derive(Debug, Clone, Default)]
pub enum Format {
    /// One JSON object per line (the default).
    #[default]
    Json,
    /// `key=value key2="quoted value"` pairs.
    Logfmt,
    /// The whole line is the message.
    Text,
    /// `pattern`, compiled once at config load: named captures become fields.
    Regex(Regex),
    /// nginx's (and Apache's) `combined` access log.
    NginxCombined,
    /// nginx's error log.
    NginxError,
    /// syslog files: RFC 3164 (with or without `<PRI>`, `Mmm dd hh:mm:ss` or RFC 3339 time)
    /// and RFC 5424 with structured data.
    Syslog,
    /// CRI container logs; the Parser actor joins `P` pieces up to their `F` line.
    Cri,
}

impl Format {
    /// Every format name accepted in the config, as written there.
    pub const NAMES: [&'static str; 8] = [
        "json",
        "logfmt",
        "text",
        "regex",
        "nginx_combined",
        "nginx_error",
        "syslog",
        "cri",
    ];

    /// The format's name, as written in the config (for `regex`, without the pattern).
    pub fn name(&self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Logfmt => "logfmt",
            Format::Text => "text",
            Format::Regex(_) => "regex",
            Format::NginxCombined => "nginx_combined",
            Format::NginxError => "nginx_error",
            Format::Syslog => "syslog",
            Format::Cri => "cri",
        }
    }

    /// The format of `name` (one of [`Format::NAMES`]); `regex` needs its pattern.
    pub fn from_name(name: &str, pattern: Option<Regex>) -> Option<Format> {
        Some(match name {
            "json" => Format::Json,
            "logfmt" => Format::Logfmt,
            "text" => Format::Text,
            "regex" => Format::Regex(pattern?),
            "nginx_combined" => Format::NginxCombined,
            "nginx_error" => Format::NginxError,
            "syslog" => Format::Syslog,
            "cri" => Format::Cri,
            _ => return None,
        })
    }
}

impl PartialEq for Format {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Format::Regex(a), Format::Regex(b)) => a.as_str() == b.as_str(),
            (a, b) => a.name() == b.name(),
        }
    }
}

impl Eq for Format {}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `sources[].on_mismatch`: what becomes of a line that does not fit its source's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnMismatch {
    /// `"dead_letter"` (the default): a dead letter, `no match for format …`, bytes kept.
    #[default]
    DeadLetter,
    /// `"text"`: a `text` event, `{"message": line}`.
    Text,
}

/// `sources[].timestamp_format`: strftime formats (chrono's), tried in order on a timestamp
/// text before RFC 3339 and epoch numbers. Each is parsed once, at config load.
#[derive(Debug, Clone, Default)]
pub struct TimestampFormats {
    texts: Vec<String>,
    items: Vec<Vec<Item<'static>>>,
}

impl PartialEq for TimestampFormats {
    fn eq(&self, other: &Self) -> bool {
        self.texts == other.texts
    }
}

impl Eq for TimestampFormats {}

impl TimestampFormats {
    /// Parses each format; the error names the first invalid one.
    pub fn new(texts: Vec<String>) -> Result<TimestampFormats, String> {
        let mut items = Vec::with_capacity(texts.len());
        for text in &texts {
            let parsed = StrftimeItems::new(text)
                .parse_to_owned()
                .map_err(|_| format!("invalid strftime format {text:?}"))?;
            items.push(parsed);
        }
        Ok(TimestampFormats { texts, items })
    }

    /// The formats as written.
    pub fn texts(&self) -> &[String] {
        &self.texts
    }

    pub fn is_empty(&self) -> bool {
        self.texts.is_empty()
    }

    /// `text` by the first format that reads all of it, in microseconds since the epoch; a
    /// format without a year gets the year that puts the time closest to `now` and not in the
    /// future ([`infer_year`]).
    pub fn parse(&self, text: &str, now: DateTime<Utc>) -> Option<i64> {
        self.items.iter().find_map(|items| {
            let mut parsed = ChronoParsed::new();
            chrono::format::parse(&mut parsed, text, items.iter()).ok()?;
            chrono_micros(&parsed, now)
        })
    }
}

/// The time chrono read, in microseconds since the epoch: with its offset, or UTC without one.
fn chrono_micros(parsed: &ChronoParsed, now: DateTime<Utc>) -> Option<i64> {
    if let Some(secs) = parsed.timestamp() {
        let nanos = i64::from(parsed.nanosecond().unwrap_or(0));
        return in_range(secs.checked_mul(1_000_000)?.checked_add(nanos / 1000)?);
    }
    let offset = parsed.offset().unwrap_or(0);
    let has_year =
        parsed.year().is_some() || parsed.year_div_100().is_some() || parsed.isoyear().is_some();
    let at_year = |year: i32| -> Option<i64> {
        let mut p = parsed.clone();
        if !has_year {
            p.set_year(i64::from(year)).ok()?;
        }
        let local = p.to_naive_datetime_with_offset(offset).ok()?;
        let micros = local.and_utc().timestamp_micros() - i64::from(offset) * 1_000_000;
        in_range(micros)
    };
    if has_year {
        at_year(0)
    } else {
        infer_year(now, at_year)
    }
}

fn in_range(micros: i64) -> Option<i64> {
    (MIN_TS_MICROS..=MAX_TS_MICROS)
        .contains(&micros)
        .then_some(micros)
}

/// How far ahead of the clock a year-less time may be and still count as this year: clocks of
/// writer and reader differ, and a file may be read the instant it is written.
const YEARLESS_AHEAD_MICROS: i64 = 86_400 * 1_000_000;

/// The time of a year-less timestamp (syslog's `Nov 27 13:40:14`): of next year, this year and
/// last year (by `at_year`), the first that is not more than a day ahead of `now` — the one
/// closest to now and not in the future.
pub fn infer_year(now: DateTime<Utc>, at_year: impl Fn(i32) -> Option<i64>) -> Option<i64> {
    let now_micros = now.timestamp_micros();
    let year = now.year();
    [year + 1, year, year - 1, year - 2, year - 3, year - 4]
        .into_iter()
        .filter_map(&at_year)
        .find(|micros| *micros <= now_micros + YEARLESS_AHEAD_MICROS)
}

/// `[sources.multiline]`: which lines make one event.
#[derive(Debug, Clone)]
pub enum MultilineRule {
    /// A matching line starts an event; the others continue the one before.
    Start(Regex),
    /// A matching line continues the event before; the others start one.
    Continue(Regex),
}

impl MultilineRule {
    /// Whether `line` starts an event.
    pub fn starts(&self, line: &str) -> bool {
        match self {
            MultilineRule::Start(re) => re.is_match(line),
            MultilineRule::Continue(re) => !re.is_match(line),
        }
    }
}

/// A source's multiline settings (see `config::MultilineConfig`).
#[derive(Debug, Clone)]
pub struct Multiline {
    pub rule: MultilineRule,
    pub max_lines: usize,
    pub max_bytes: usize,
    pub timeout: std::time::Duration,
}

impl PartialEq for Multiline {
    fn eq(&self, other: &Self) -> bool {
        let text = |r: &MultilineRule| match r {
            MultilineRule::Start(re) => ("start", re.as_str().to_owned()),
            MultilineRule::Continue(re) => ("continue", re.as_str().to_owned()),
        };
        text(&self.rule) == text(&other.rule)
            && (self.max_lines, self.max_bytes, self.timeout)
                == (other.max_lines, other.max_bytes, other.timeout)
    }
}

impl Eq for Multiline {}

/// One source's parsing: its format, what a mismatch becomes, and the `[parse]` settings with
/// its own `timestamp_format`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFormat {
    /// The source's name.
    pub source: String,
    pub format: Format,
    pub timestamp_formats: TimestampFormats,
    pub on_mismatch: OnMismatch,
    pub multiline: Option<Multiline>,
    /// `default_level`: the level of an event whose line gives none (normalised).
    pub default_level: Option<String>,
}

/// What the parser needs for the lines of one source.
#[derive(Debug)]
pub struct SourceParser {
    pub source: Arc<str>,
    pub format: Format,
    pub on_mismatch: OnMismatch,
    pub multiline: Option<Multiline>,
    /// The level of an event whose line gives none.
    pub default_level: Option<String>,
    /// The `[parse]` field names, with this source's `timestamp_format`.
    pub settings: ParseSettings,
    /// `regex`: the names of the pattern's named groups, by group index.
    names: Vec<(usize, String)>,
}

impl SourceParser {
    pub fn new(base: &ParseSettings, spec: &SourceFormat) -> SourceParser {
        let names = match &spec.format {
            Format::Regex(re) => re
                .capture_names()
                .enumerate()
                .filter_map(|(i, n)| Some((i, n?.to_owned())))
                .collect(),
            _ => Vec::new(),
        };
        SourceParser {
            source: Arc::from(spec.source.as_str()),
            format: spec.format.clone(),
            on_mismatch: spec.on_mismatch,
            multiline: spec.multiline.clone(),
            default_level: spec.default_level.clone(),
            settings: ParseSettings {
                timestamp_formats: spec.timestamp_formats.clone(),
                sources: Vec::new(),
                ..base.clone()
            },
            names,
        }
    }

    /// The first configured timestamp field of `pairs` that parses.
    fn pick_ts(&self, pairs: &[(&str, Cow<'_, str>)], now: DateTime<Utc>) -> Option<i64> {
        pick(&self.settings.timestamp_fields, pairs, |_, v| {
            self.settings.timestamp(v, now)
        })
    }
}

/// Every source's [`SourceParser`], by name.
#[derive(Debug)]
pub struct Formats {
    by_source: HashMap<String, SourceParser>,
    /// For a source the settings do not name (JSON, the `[parse]` settings).
    fallback: SourceParser,
}

impl Formats {
    pub fn new(settings: &ParseSettings) -> Formats {
        let by_source = settings
            .sources
            .iter()
            .map(|spec| (spec.source.clone(), SourceParser::new(settings, spec)))
            .collect();
        let fallback = SourceParser::new(
            settings,
            &SourceFormat {
                source: String::new(),
                format: Format::Json,
                timestamp_formats: settings.timestamp_formats.clone(),
                on_mismatch: OnMismatch::DeadLetter,
                multiline: None,
                default_level: None,
            },
        );
        Formats {
            by_source,
            fallback,
        }
    }

    /// The parser of `source`'s lines.
    pub fn get(&self, source: &str) -> &SourceParser {
        self.by_source.get(source).unwrap_or(&self.fallback)
    }
}

impl ParseSettings {
    /// A timestamp text: the source's `timestamp_format`s in order, then RFC 3339 or an epoch
    /// number.
    pub fn timestamp(&self, text: &str, now: DateTime<Utc>) -> Option<i64> {
        if !self.timestamp_formats.is_empty() {
            if let Some(micros) = self.timestamp_formats.parse(text.trim(), now) {
                return Some(micros);
            }
        }
        parse_timestamp_str(text)
    }
}

// ---------------------------------------------------------------------------------------------
// One line
// ---------------------------------------------------------------------------------------------

/// What a text line became: the event's columns (borrowed from the line where possible); its
/// JSON object was written to the output buffer.
pub type Event<'a> = Parsed<'a>;

/// Scratch space reused across the lines of a batch.
pub struct Scratch {
    locations: Option<regex::CaptureLocations>,
    /// The time year-less timestamps are placed near (once per batch).
    pub now: DateTime<Utc>,
}

impl Scratch {
    pub fn new(parser: &SourceParser) -> Scratch {
        Scratch {
            locations: match &parser.format {
                Format::Regex(re) => Some(re.capture_locations()),
                _ => None,
            },
            now: Utc::now(),
        }
    }
}

/// Parses one text line (not `json`) of `parser`'s format, writing the event's JSON object to
/// `out`. `None`: the line does not fit the format (and `out` is as it was). A `cri` line is
/// taken alone here (a `P` piece is an event marked `"partial": true`); the Parser actor joins
/// pieces.
pub fn parse_text<'a>(
    line: &'a str,
    parser: &SourceParser,
    scratch: &mut Scratch,
    out: &mut Vec<u8>,
) -> Option<Event<'a>> {
    let start = out.len();
    let event = match &parser.format {
        Format::Json | Format::Text => Some(text_event(line, out)),
        Format::Logfmt => super::logfmt::parse(line, parser, scratch.now, out),
        Format::Regex(re) => regex_event(re, line, parser, scratch, out),
        Format::NginxCombined => super::nginx::combined(line, parser, scratch.now, out),
        Format::NginxError => super::nginx::error(line, parser, scratch.now, out),
        Format::Syslog => super::syslog::parse(line, parser, scratch.now, out),
        Format::Cri => super::cri::cri_line(line).map(|l| {
            super::cri::write_cri_event(out, l.time, l.stream, l.text, l.partial);
            Parsed {
                ts_micros: Some(l.ts_micros),
                level: None,
                message: Some(Cow::Borrowed(l.text)),
            }
        }),
    };
    if event.is_none() {
        out.truncate(start);
    }
    event
}

/// The `text` event of `line`: `{"message": line}`.
pub fn text_event<'a>(line: &'a str, out: &mut Vec<u8>) -> Event<'a> {
    let mut obj = Obj::new(out);
    obj.str("message", line);
    obj.finish();
    Parsed {
        ts_micros: None,
        level: None,
        message: Some(Cow::Borrowed(line)),
    }
}

fn regex_event<'a>(
    re: &Regex,
    line: &'a str,
    parser: &SourceParser,
    scratch: &mut Scratch,
    out: &mut Vec<u8>,
) -> Option<Event<'a>> {
    let locations = scratch.locations.as_mut()?;
    re.captures_read(locations, line)?;
    let mut pairs: Vec<(&str, Cow<'a, str>)> = Vec::with_capacity(parser.names.len());
    for (i, name) in &parser.names {
        if let Some((s, e)) = locations.get(*i) {
            pairs.push((name.as_str(), Cow::Borrowed(line.get(s..e)?)));
        }
    }
    Some(pairs_event(&pairs, parser, scratch.now, out))
}

/// The event of `key = string value` pairs (regex captures, logfmt), with the columns from the
/// configured field names.
pub(super) fn pairs_event<'a>(
    pairs: &[(&str, Cow<'a, str>)],
    parser: &SourceParser,
    now: DateTime<Utc>,
    out: &mut Vec<u8>,
) -> Event<'a> {
    let mut obj = Obj::new(out);
    for (k, v) in pairs {
        obj.str(k, v);
    }
    obj.finish();
    columns(pairs, parser, now)
}

/// The columns of string pairs from the configured `[parse]` field names (literal keys).
pub(super) fn columns<'a>(
    pairs: &[(&str, Cow<'a, str>)],
    parser: &SourceParser,
    now: DateTime<Utc>,
) -> Event<'a> {
    let s = &parser.settings;
    Parsed {
        ts_micros: parser.pick_ts(pairs, now),
        level: pick(&s.level_fields, pairs, |f, v| {
            normalize_level(LevelValue::Text(v.clone()), f.is_syslog_level_field())
        }),
        message: pick(&s.message_fields, pairs, |_, v| Some(v.clone())),
    }
}

/// The first configured field present in `pairs` whose value `usable` accepts.
fn pick<'a, T>(
    fields: &[FieldPath],
    pairs: &[(&str, Cow<'a, str>)],
    usable: impl Fn(&FieldPath, &Cow<'a, str>) -> Option<T>,
) -> Option<T> {
    fields.iter().find_map(|field| {
        pairs
            .iter()
            .filter(|(k, _)| *k == field.as_str())
            .find_map(|(_, v)| usable(field, v))
    })
}

/// The canonical level of a syslog severity (0 emerg … 7 debug).
pub(super) fn severity_level(severity: u8) -> &'static str {
    match severity {
        0..=2 => "fatal",
        3 => "error",
        4 => "warn",
        5 | 6 => "info",
        _ => "debug",
    }
}

/// Microseconds since the epoch of a UTC civil time, or None when it is not a valid one.
pub(super) fn civil_micros(
    (year, month, day): (i32, u32, u32),
    (hour, minute, second): (u32, u32, u32),
    micros: u32,
    offset_secs: i64,
) -> Option<i64> {
    let t = NaiveDate::from_ymd_opt(year, month, day)?.and_hms_micro_opt(
        hour,
        minute,
        second.min(59),
        micros,
    )?;
    let extra = i64::from(second.saturating_sub(59)) * 1_000_000;
    in_range(t.and_utc().timestamp_micros() + extra - offset_secs * 1_000_000)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use chrono::TimeZone;

    pub(crate) fn parser_of(format: Format, ts_formats: &[&str]) -> SourceParser {
        let spec = SourceFormat {
            source: "web".into(),
            format,
            timestamp_formats: TimestampFormats::new(
                ts_formats.iter().map(|s| (*s).to_owned()).collect(),
            )
            .unwrap(),
            on_mismatch: OnMismatch::DeadLetter,
            multiline: None,
            default_level: None,
        };
        SourceParser::new(&ParseSettings::default(), &spec)
    }

    /// The microseconds since the epoch of a UTC time.
    pub(crate) fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> i64 {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s)
            .unwrap()
            .timestamp_micros()
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 27, 14, 0, 0).unwrap()
    }

    pub(crate) fn run<'a>(
        line: &'a str,
        parser: &SourceParser,
    ) -> Option<(Event<'a>, serde_json::Value)> {
        let mut out = b"prefix".to_vec();
        let mut scratch = Scratch::new(parser);
        scratch.now = now();
        let event = parse_text(line, parser, &mut scratch, &mut out);
        let Some(event) = event else {
            assert_eq!(out, b"prefix", "a mismatch leaves the buffer as it was");
            return None;
        };
        let json = std::str::from_utf8(&out[6..]).unwrap();
        let value: serde_json::Value = serde_json::from_str(json).unwrap();
        assert!(value.is_object());
        Some((event, value))
    }

    #[test]
    fn text_format_is_the_line() {
        let p = parser_of(Format::Text, &[]);
        let (e, v) = run("hello \"world\"", &p).unwrap();
        assert_eq!(v, serde_json::json!({"message": "hello \"world\""}));
        assert_eq!(e.message.as_deref(), Some("hello \"world\""));
        assert!(matches!(e.message, Some(Cow::Borrowed(_))));
        assert_eq!((e.ts_micros, e.level), (None, None));
    }

    #[test]
    fn regex_captures_become_fields_and_columns() {
        let re = Regex::new(
            r"^(?P<time>\S+ \S+) (?P<level>[A-Z]+) (?P<logger>\S+): (?P<msg>.*)(?P<never>\x00)?$",
        )
        .unwrap();
        let p = parser_of(Format::Regex(re), &["%Y-%m-%d %H:%M:%S,%3f"]);
        let (e, v) = run("2026-11-27 13:39:51,175 WARNING app.db: slow \"query\"", &p).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"time": "2026-11-27 13:39:51,175", "level": "WARNING",
                "logger": "app.db", "msg": "slow \"query\""})
        );
        assert_eq!(e.level.as_deref(), Some("warn"));
        assert_eq!(e.message.as_deref(), Some("slow \"query\""));
        let want = Utc.with_ymd_and_hms(2026, 11, 27, 13, 39, 51).unwrap();
        assert_eq!(e.ts_micros, Some(want.timestamp_micros() + 175_000));
        assert!(run("not it", &p).is_none());
    }

    #[test]
    fn timestamp_formats_are_tried_in_order_then_rfc3339() {
        let f = TimestampFormats::new(vec![
            "%d/%b/%Y:%H:%M:%S %z".into(),
            "%Y-%m-%d %H:%M:%S%.3f UTC".into(),
        ])
        .unwrap();
        assert_eq!(
            f.parse("27/Nov/2026:13:37:44 +0100", now()),
            Some(at(2026, 11, 27, 12, 37, 44))
        );
        assert_eq!(
            f.parse("2026-11-27 13:39:51.123 UTC", now()),
            Some(at(2026, 11, 27, 13, 39, 51) + 123_000)
        );
        assert_eq!(f.parse("2026-11-27T13:39:51Z", now()), None);
        let s = ParseSettings {
            timestamp_formats: f,
            ..ParseSettings::default()
        };
        assert_eq!(
            s.timestamp("2026-11-27T13:39:51Z", now()),
            Some(at(2026, 11, 27, 13, 39, 51))
        );
        assert!(TimestampFormats::new(vec!["%Q".into()]).is_err());
    }

    #[test]
    fn yearless_times_take_the_closest_year_not_in_the_future() {
        let f = TimestampFormats::new(vec!["%b %d %H:%M:%S".into()]).unwrap();
        // Earlier this year.
        assert_eq!(
            f.parse("Nov 27 13:40:14", now()),
            Some(at(2026, 11, 27, 13, 40, 14))
        );
        // A few hours ahead (clock skew): still this year, not last year.
        assert_eq!(
            f.parse("Nov 27 18:00:00", now()),
            Some(at(2026, 11, 27, 18, 0, 0))
        );
        // December, read in November: last December.
        assert_eq!(
            f.parse("Dec 31 23:59:59", now()),
            Some(at(2025, 12, 31, 23, 59, 59))
        );
        // On New Year's Eve, a line of Jan 1 (a clock a little ahead) is next year's.
        let eve = Utc.with_ymd_and_hms(2026, 12, 31, 23, 59, 0).unwrap();
        assert_eq!(
            f.parse("Jan 01 00:00:30", eve),
            Some(at(2027, 1, 1, 0, 0, 30))
        );
        // Feb 29 goes back to the last leap year.
        assert_eq!(
            f.parse("Feb 29 10:00:00", now()),
            Some(at(2024, 2, 29, 10, 0, 0))
        );
    }

    /// Every format on every sample line and on mutations of it (cut, a byte of syntax
    /// inserted, a character removed): never a panic, and every event is a JSON object.
    #[test]
    fn mutated_lines_never_panic_and_events_are_json_objects() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/formats");
        let mut lines: Vec<String> = Vec::new();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "log") {
                let bytes = std::fs::read(&path).unwrap();
                let text = String::from_utf8_lossy(&bytes).into_owned();
                lines.extend(text.lines().step_by(3).map(str::to_owned));
            }
        }
        let re = Regex::new(r"^(?P<time>\S+) (?P<level>\w+)? ?(?P<msg>.*)$").unwrap();
        let parsers: Vec<SourceParser> = [
            Format::Text,
            Format::Logfmt,
            Format::Regex(re),
            Format::NginxCombined,
            Format::NginxError,
            Format::Syslog,
        ]
        .into_iter()
        .map(|f| parser_of(f, &["%b %d %H:%M:%S", "%d/%b/%Y:%H:%M:%S %z"]))
        .collect();
        let mut rng = fastrand::Rng::with_seed(16);
        let syntax = [
            '"', '\\', '[', ']', '<', '>', '=', ' ', ':', '#', '*', ',', '\t', '-', '1',
        ];
        let mut variants = Vec::new();
        for line in &lines {
            variants.push(line.clone());
            let chars: Vec<char> = line.chars().collect();
            for _ in 0..6 {
                let mut c = chars.clone();
                match rng.u8(0..3) {
                    0 => c.truncate(rng.usize(0..=c.len())),
                    1 => c.insert(rng.usize(0..=c.len()), syntax[rng.usize(0..syntax.len())]),
                    _ if !c.is_empty() => {
                        c.remove(rng.usize(0..c.len()));
                    }
                    _ => {}
                }
                variants.push(c.into_iter().collect());
            }
        }
        let mut events = 0;
        for line in &variants {
            for p in &parsers {
                if let Some((_, value)) = run(line, p) {
                    assert!(value.is_object());
                    events += 1;
                }
            }
        }
        assert!(events > variants.len(), "most variants fit some format");
    }
}
