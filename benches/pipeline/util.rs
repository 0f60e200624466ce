//! Time, formatting and statistics helpers.

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};

pub fn now_micros() -> i64 {
    Utc::now().timestamp_micros()
}

/// `2026-11-25T08:00:00.123Z` (`Millis`) or `…00.123456Z` (`Micros`, logbelt's stored form).
pub fn format_rfc3339(micros: i64, precision: SecondsFormat) -> String {
    DateTime::from_timestamp_micros(micros)
        .expect("a time within chrono's range")
        .to_rfc3339_opts(precision, true)
}

/// `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)` → microseconds since the epoch.
pub fn parse_rfc3339_micros(s: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.timestamp_micros())
}

/// A generous deadline for ingesting `lines` lines (20k lines/s, plus a minute).
pub fn ingest_deadline(lines: usize) -> Duration {
    Duration::from_secs(60 + lines as u64 / 20_000)
}

pub fn progress(msg: &str) {
    eprintln!("[pipeline bench] {msg}");
}

pub fn rate(lines: usize, time: Duration) -> f64 {
    lines as f64 / time.as_secs_f64()
}

pub fn median(values: &[Duration]) -> Duration {
    let mut v = values.to_vec();
    v.sort();
    match v.len() {
        0 => Duration::ZERO,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2,
    }
}

pub fn median_u64(values: impl Iterator<Item = u64>) -> u64 {
    let mut v: Vec<u64> = values.collect();
    v.sort_unstable();
    match v.len() {
        0 => 0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2,
    }
}

/// 1234567 → "1,234,567".
pub fn fmt_int(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub fn fmt_mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

pub fn fmt_secs_list(values: &[Duration]) -> String {
    values
        .iter()
        .map(|d| format!("{:.2}", d.as_secs_f64()))
        .collect::<Vec<_>>()
        .join(", ")
}
