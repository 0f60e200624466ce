//! Timestamps: RFC 3339 texts and epoch numbers to microseconds since the epoch, and back to
//! text.

/// Smallest timestamp kept: 0000-01-01T00:00:00Z, in microseconds since the epoch.
pub const MIN_TS_MICROS: i64 = -62_167_219_200_000_000;
/// Largest timestamp kept: 9999-12-31T23:59:59.999999Z. Outside [`MIN_TS_MICROS`]..=this range
/// a timestamp is treated as unparseable, so [`format_timestamp_micros`] text always has a
/// 4-digit year and sorts in time order.
pub const MAX_TS_MICROS: i64 = 253_402_300_799_999_999;

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
pub(super) fn parse_epoch_number(text: &str) -> Option<i64> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::tests::{defaults, ok};

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
}
