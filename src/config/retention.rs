//! `[retention]` and the two value kinds that storage lifecycle keys are written in: a span of
//! time (`"30s"`, `"15m"`, `"12h"`, `"30d"`) and a size (`"500MiB"`, `"20GiB"`).

use std::fmt;
use std::time::Duration;

use serde::de;
use serde::Deserialize;

use super::kinds::{defaults, read, wrong, Found, Kind};

/// `[retention]`: how long rows are kept, and how much room they may take. Nothing set (the
/// default) keeps everything.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    /// `max_age`: rows of `log_events` and `dead_letters` older than this, by the time logbelt
    /// stored them (`ingested_at`, not the line's own timestamp), are removed; a span from
    /// `"1s"` to `"400d"` such as `"30d"`. Unset: no limit by age.
    #[serde(
        default,
        deserialize_with = "read::<Option<Span<1, MAX_SPAN_SECS>>, _>"
    )]
    pub max_age: Option<Duration>,
    /// `max_bytes`: the most room the rows may take, oldest removed first, from `"1MiB"` (or
    /// 1048576) to `"1PiB"`. SQLite: the database file plus its WAL; PostgreSQL: the event and
    /// dead-letter tables with their indexes, counted in whole partitions. Unset: no limit.
    #[serde(
        default,
        deserialize_with = "read::<Option<Size<{ 1 << 20 }, { 1 << 50 }>>, _>"
    )]
    pub max_bytes: Option<u64>,
    /// `check_interval`: how often the limits are applied, `"1s"` to `"1d"` (default `"1m"`).
    #[serde(
        default = "default_check_interval",
        deserialize_with = "read::<Span<1, 86_400>, _>"
    )]
    pub check_interval: Duration,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        defaults()
    }
}

impl RetentionConfig {
    /// Whether any limit is set (otherwise expiry never runs).
    pub fn limits_anything(&self) -> bool {
        self.max_age.is_some() || self.max_bytes.is_some()
    }
}

fn default_check_interval() -> Duration {
    Duration::from_secs(60)
}

/// The longest span a key takes: 400 days.
pub(super) const MAX_SPAN_SECS: u64 = 400 * 86_400;

/// A span of time written as a whole number and a unit: `s`, `m`, `h` or `d`, from `MIN` to
/// `MAX` seconds.
pub(super) struct Span<const MIN: u64, const MAX: u64>;

impl<const MIN: u64, const MAX: u64> Kind for Span<MIN, MAX> {
    type Value = Duration;

    fn expected(f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a duration from {} to {} such as \"30s\", \"15m\", \"12h\" or \"30d\"",
            shown_span(MIN),
            shown_span(MAX)
        )
    }

    fn scalar<E: de::Error>(found: Found) -> Result<Duration, E> {
        let secs = match &found {
            Found::Str(text) => parse_span(text),
            _ => None,
        };
        match secs {
            Some(s) if (MIN..=MAX).contains(&s) => Ok(Duration::from_secs(s)),
            _ => Err(wrong::<Self, E>(found)),
        }
    }
}

/// `"90s"` → 90, `"15m"` → 900, `"2h"`, `"30d"`; `None` for anything else.
fn parse_span(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(split);
    let unit_secs = match unit.trim() {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => return None,
    };
    number.parse::<u64>().ok()?.checked_mul(unit_secs)
}

/// `secs` in the largest unit that divides it: `"1s"`, `"1m"`, `"400d"`.
pub fn shown_span(secs: u64) -> String {
    match secs {
        0 => "0s".to_owned(),
        s if s.is_multiple_of(86_400) => format!("{}d", s / 86_400),
        s if s.is_multiple_of(3_600) => format!("{}h", s / 3_600),
        s if s.is_multiple_of(60) => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// `bytes` in the largest binary unit that divides it: `"1MiB"`, `"1PiB"`, `"1500B"`.
pub fn shown_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["PiB", "TiB", "GiB", "MiB", "KiB"];
    for (i, unit) in UNITS.iter().enumerate() {
        let scale = 1u64 << (10 * (5 - i));
        if bytes >= scale && bytes.is_multiple_of(scale) {
            return format!("{}{unit}", bytes / scale);
        }
    }
    format!("{bytes}B")
}

/// A size in bytes, written as an integer or a whole number with a unit (`B`, `KiB`, `MiB`,
/// `GiB`, `TiB`, `PiB`; or the decimal `KB`, `MB`, `GB`, `TB`), from `MIN` to `MAX` bytes.
pub(super) struct Size<const MIN: u64, const MAX: u64>;

impl<const MIN: u64, const MAX: u64> Kind for Size<MIN, MAX> {
    type Value = u64;

    fn expected(f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a size from {} to {} such as \"500MiB\" or \"20GiB\"",
            shown_size(MIN),
            shown_size(MAX)
        )
    }

    fn scalar<E: de::Error>(found: Found) -> Result<u64, E> {
        let bytes = match &found {
            Found::Str(text) => parse_size(text),
            Found::Int(n) => u64::try_from(*n).ok(),
            _ => None,
        };
        match bytes {
            Some(b) if (MIN..=MAX).contains(&b) => Ok(b),
            _ => Err(wrong::<Self, E>(found)),
        }
    }
}

/// `"500MiB"` → 524288000, `"1GB"` → 10⁹, `"4096"` → 4096; `None` for anything else.
fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let scale: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        "PiB" => 1 << 50,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        _ => return None,
    };
    number.parse::<u64>().ok()?.checked_mul(scale)
}

/// An optional key of kind `K`: absent is `None` (through `#[serde(default)]`); present, it
/// is read as a `K`.
impl<K: Kind> Kind for Option<K> {
    type Value = Option<K::Value>;

    fn expected(f: &mut fmt::Formatter<'_>) -> fmt::Result {
        K::expected(f)
    }

    fn scalar<E: de::Error>(found: Found) -> Result<Self::Value, E> {
        K::scalar(found).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_are_a_number_and_a_unit() {
        assert_eq!(parse_span("30s"), Some(30));
        assert_eq!(parse_span("15m"), Some(900));
        assert_eq!(parse_span("12h"), Some(43_200));
        assert_eq!(parse_span("400d"), Some(34_560_000));
        assert_eq!(parse_span(" 2 h "), Some(7_200));
        for bad in [
            "",
            "30",
            "s",
            "1.5h",
            "-1s",
            "1w",
            "1h30m",
            "99999999999999999999d",
        ] {
            assert_eq!(parse_span(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn sizes_are_a_number_and_a_unit() {
        assert_eq!(parse_size("500MiB"), Some(500 << 20));
        assert_eq!(parse_size("20GiB"), Some(20 << 30));
        assert_eq!(parse_size("1GB"), Some(1_000_000_000));
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("4096B"), Some(4096));
        for bad in [
            "",
            "MiB",
            "1.5GiB",
            "-1MiB",
            "1mib",
            "1 gigabyte",
            "99999999999PiB",
        ] {
            assert_eq!(parse_size(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn spans_are_shown_in_their_largest_unit() {
        assert_eq!(shown_span(1), "1s");
        assert_eq!(shown_span(90), "90s");
        assert_eq!(shown_span(600), "10m");
        assert_eq!(shown_span(7_200), "2h");
        assert_eq!(shown_span(MAX_SPAN_SECS), "400d");
        assert_eq!(shown_size(1 << 20), "1MiB");
        assert_eq!(shown_size(1 << 50), "1PiB");
        assert_eq!(shown_size(3 << 29), "1536MiB");
        assert_eq!(shown_size(1500), "1500B");
    }
}
