//! How a source's lines are read: `format`, `pattern`, `timestamp_format`, `on_mismatch`,
//! `default_level`.

use std::borrow::Cow;
use std::fmt;

use serde::de;

use super::{non_empty, text};
use crate::config::kinds::{wrong, Found, Item, Kind, List};
use crate::parse::{normalize_level, Format, LevelValue, OnMismatch, TimestampFormats};

/// `sources[].format`: one of [`Format::NAMES`].
pub(in crate::config) struct FormatName;

impl Kind for FormatName {
    type Value = String;

    fn expected(f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<String> = Format::NAMES.iter().map(|n| format!("{n:?}")).collect();
        write!(f, "one of {}", names.join(", "))
    }

    fn scalar<E: de::Error>(found: Found) -> Result<String, E> {
        let name = text::<Self, E>(found)?;
        if Format::NAMES.contains(&name.as_str()) {
            Ok(name)
        } else {
            Err(wrong::<Self, E>(format_args!("{name:?}")))
        }
    }
}

/// `sources[].format` when it is not written.
pub(in crate::config) fn default_format() -> String {
    "json".to_owned()
}

/// `sources[].pattern`: a regular expression (the `regex` crate's syntax), compiled here.
pub(in crate::config) struct Pattern;

impl Kind for Pattern {
    type Value = Option<regex::Regex>;

    fn expected(f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a regular expression string")
    }

    /// Taken as written: `${VAR}` is not expanded in a pattern, where `$` is the regex's own.
    fn scalar<E: de::Error>(found: Found) -> Result<Option<regex::Regex>, E> {
        let pattern = match found {
            Found::Str(s) if s.is_empty() => {
                return Err(E::custom(
                    "expected a non-empty regular expression, found \"\"",
                ))
            }
            Found::Str(s) => s,
            found => return Err(wrong::<Self, E>(found)),
        };
        regex::Regex::new(&pattern).map(Some).map_err(|e| {
            E::custom(format_args!(
                "invalid regular expression: {}",
                regex_error(&e)
            ))
        })
    }
}

/// The one line that says what is wrong with a pattern: the `regex` crate's syntax errors
/// span several lines (the pattern, a caret, `error: …`).
fn regex_error(e: &regex::Error) -> String {
    match e {
        regex::Error::Syntax(text) => {
            let lines: Vec<&str> = text.lines().collect();
            // The pattern is on line 1, the caret line after it.
            let caret = lines.iter().enumerate().skip(2).find_map(|(i, l)| {
                let t = l.trim();
                (!t.is_empty() && t.bytes().all(|b| b == b'^')).then_some(i)
            });
            let column = caret.and_then(|i| {
                let pattern_line = lines.get(i.checked_sub(1)?)?;
                let indent = pattern_line.len() - pattern_line.trim_start().len();
                let caret_at = lines.get(i)?.find('^')?;
                Some(caret_at.checked_sub(indent)? + 1)
            });
            let what = lines
                .iter()
                .rev()
                .find_map(|l| l.strip_prefix("error: "))
                .unwrap_or(text.as_str());
            match column {
                Some(c) => format!("{what} (at character {c})"),
                None => what.to_owned(),
            }
        }
        other => other.to_string().replace('\n', " "),
    }
}

/// One `sources[].timestamp_format` entry: a strftime format (chrono's).
pub(in crate::config) struct Strftime;

impl Kind for Strftime {
    type Value = String;

    fn expected(f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a strftime format string")
    }

    fn scalar<E: de::Error>(found: Found) -> Result<String, E> {
        let text = non_empty::<Self, E>(found, "strftime format")?;
        TimestampFormats::new(vec![text.clone()]).map_err(E::custom)?;
        Ok(text)
    }
}

impl Item for Strftime {
    const ARRAY: &'static str = "a strftime format string or an array of them";
    const EMPTY: Option<&'static str> =
        Some("expected a non-empty array of strftime formats, found []");
}

/// `sources[].timestamp_format`: one format or a list tried in order.
pub(in crate::config) struct TimestampFormatList;

impl Kind for TimestampFormatList {
    type Value = TimestampFormats;

    fn expected(f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(Strftime::ARRAY)
    }

    fn scalar<E: de::Error>(found: Found) -> Result<TimestampFormats, E> {
        TimestampFormats::new(vec![Strftime::scalar::<E>(found)?]).map_err(E::custom)
    }

    fn array<'de, A: de::SeqAccess<'de>>(seq: A) -> Result<TimestampFormats, A::Error> {
        let texts = List::<Strftime>::array(seq)?;
        TimestampFormats::new(texts).map_err(<A::Error as de::Error>::custom)
    }
}

/// `sources[].default_level`: a level name, normalised as a line's level is (`"Information"`
/// is `info`, `"WARNING"` is `warn`, an unknown name is kept lower-cased).
pub(in crate::config) struct DefaultLevel;

impl Kind for DefaultLevel {
    type Value = Option<String>;

    fn expected(f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a level name such as \"info\"")
    }

    fn scalar<E: de::Error>(found: Found) -> Result<Option<String>, E> {
        let name = non_empty::<Self, E>(found, "level name")?;
        let level = normalize_level(LevelValue::Text(Cow::Borrowed(&name)), false)
            .ok_or_else(|| E::custom(format_args!("expected a level name, found {name:?}")))?;
        Ok(Some(level.into_owned()))
    }
}

impl Kind for OnMismatch {
    type Value = OnMismatch;

    fn expected(f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"dead_letter\" or \"text\"")
    }

    fn scalar<E: de::Error>(found: Found) -> Result<OnMismatch, E> {
        match text::<Self, E>(found)?.as_str() {
            "dead_letter" => Ok(OnMismatch::DeadLetter),
            "text" => Ok(OnMismatch::Text),
            other => Err(wrong::<Self, E>(format_args!("{other:?}"))),
        }
    }
}
