//! The query string of an API request → `query`'s filters ([`Conditions`]), checked the way the
//! command line checks them (the same parsers). An unknown parameter or a bad value is a 400
//! with one line saying what was expected. An empty value counts as not given (`q=`).
//!
//! | parameter | as in `query` | |
//! | --- | --- | --- |
//! | `q` | `--grep` | text the message or object contains (case-insensitive) |
//! | `level` | `--level` | comma-separated, or repeated |
//! | `since`, `until` | `--since`, `--until` | `1h`, `15m`… or RFC 3339 |
//! | `source`, `host` | `--source`, `--host` | |
//! | `field` | `--field` | `KEY=VALUE`, repeated |
//! | `limit` | `--limit` | 1 to [`MAX_LIMIT`] (default 100) |
//! | `before`, `after` | `--before`, `--after` | cursors `TS,ID` |
//! | `bucket` | `--bucket` | histogram: `1m`, `1h`, `1d` or `auto` |

use chrono::{DateTime, Utc};

use super::api::ApiError;
use crate::inspect::count::Bucket;
use crate::inspect::filter::{parse_cursor, parse_field, Conditions};
use crate::inspect::parse_time;

/// The most events one request returns (the command line allows more; a page does not need it).
pub const MAX_LIMIT: u32 = 1_000;

/// `limit` when not given.
pub const DEFAULT_LIMIT: u32 = 100;

/// The filters every event endpoint takes.
pub const FILTERS: &[&str] = &["q", "level", "since", "until", "source", "host", "field"];

/// A parsed query string.
#[derive(Debug, Clone)]
pub struct Params {
    pub conditions: Conditions,
    pub limit: u32,
    /// None: `auto`.
    pub bucket: Option<Bucket>,
}

/// Parses `query` (a URL query string), allowing the [`FILTERS`] and `extra`.
///
/// # Errors
/// 400: a parameter not allowed here, or a value that does not parse.
pub fn parse(query: &str, extra: &[&str]) -> Result<Params, ApiError> {
    let pairs = actix_web::web::Query::<Vec<(String, String)>>::from_query(query)
        .map_err(|e| ApiError::bad(format!("bad query string: {e}")))?
        .into_inner();
    let mut p = Params {
        conditions: Conditions {
            since: None,
            until: None,
            levels: Vec::new(),
            grep: None,
            fields: Vec::new(),
            source: None,
            host: None,
            before: None,
            after: None,
            scan: false,
        },
        limit: DEFAULT_LIMIT,
        bucket: None,
    };
    for (key, value) in pairs {
        if !FILTERS.contains(&key.as_str()) && !extra.contains(&key.as_str()) {
            let mut allowed: Vec<&str> = FILTERS.to_vec();
            allowed.extend_from_slice(extra);
            return Err(ApiError::bad(format!(
                "unknown parameter {key:?} (expected one of {})",
                allowed.join(", ")
            )));
        }
        if value.is_empty() {
            continue;
        }
        let bad = |e: String| ApiError::bad(format!("{key}: {e}"));
        let c = &mut p.conditions;
        match key.as_str() {
            "q" => c.grep = Some(value),
            "level" => c.levels.extend(
                value
                    .split(',')
                    .map(|l| l.trim().to_lowercase())
                    .filter(|l| !l.is_empty()),
            ),
            "since" => c.since = Some(time(&value).map_err(bad)?),
            "until" => c.until = Some(time(&value).map_err(bad)?),
            "source" => c.source = Some(value),
            "host" => c.host = Some(value),
            "field" => c.fields.push(parse_field(&value).map_err(bad)?),
            "before" => c.before = Some(parse_cursor(&value).map_err(bad)?),
            "after" => c.after = Some(parse_cursor(&value).map_err(bad)?),
            "limit" => {
                p.limit = value
                    .parse::<u32>()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or_else(|| {
                        bad(format!(
                            "expected a number from 1 to {MAX_LIMIT}, found {value:?}"
                        ))
                    })?;
            }
            "bucket" => {
                p.bucket = match value.as_str() {
                    "1m" => Some(Bucket::Minute),
                    "1h" => Some(Bucket::Hour),
                    "1d" => Some(Bucket::Day),
                    "auto" => None,
                    _ => return Err(bad(format!("expected 1m, 1h, 1d or auto, found {value:?}"))),
                }
            }
            _ => {}
        }
    }
    Ok(p)
}

fn time(s: &str) -> Result<DateTime<Utc>, String> {
    parse_time(s)
}

/// The bucket for a histogram from `since` to `until`: about 15 to 360 bars.
pub fn auto_bucket(since: Option<DateTime<Utc>>, until: DateTime<Utc>) -> Bucket {
    let Some(since) = since else {
        return Bucket::Day;
    };
    let hours = (until - since).num_hours();
    if hours < 6 {
        Bucket::Minute
    } else if hours < 15 * 24 {
        Bucket::Hour
    } else {
        Bucket::Day
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_parse_like_the_command_line() {
        let p = parse(
            "q=GET+%2Fapi&level=Error,warn&level=&field=http.status%3D500&field=user%3Dann\
             &since=1h&limit=5&before=2025-06-01T12:00:00Z,7",
            &["limit", "before"],
        )
        .unwrap();
        let c = &p.conditions;
        assert_eq!(c.grep.as_deref(), Some("GET /api"));
        assert_eq!(c.levels, ["error", "warn"]);
        assert_eq!(c.fields.len(), 2);
        assert_eq!(c.fields[0].value, serde_json::json!(500));
        assert!(c.since.is_some());
        assert_eq!(p.limit, 5);
        assert_eq!(c.before.as_ref().map(|b| b.id), Some(7));
    }

    #[test]
    fn bad_values_are_one_line_400s() {
        for (q, want) in [
            ("since=yesterday", "since: expected a duration"),
            ("limit=0", "limit: expected a number from 1 to 1000"),
            ("limit=5000", "limit: expected a number"),
            ("field=novalue", "field: expected KEY=VALUE"),
            ("before=x", "before: expected a cursor"),
            ("nope=1", "unknown parameter \"nope\""),
            ("bucket=2m", "unknown parameter"),
        ] {
            let e = parse(q, &["limit", "before"]).unwrap_err();
            assert_eq!(e.status, 400, "{q}");
            assert!(e.message.contains(want), "{q}: {}", e.message);
            assert!(!e.message.contains('\n'));
        }
    }

    #[test]
    fn buckets_follow_the_span() {
        let now = Utc::now();
        let ago = |h: i64| Some(now - chrono::Duration::hours(h));
        assert_eq!(auto_bucket(ago(1), now), Bucket::Minute);
        assert_eq!(auto_bucket(ago(24), now), Bucket::Hour);
        assert_eq!(auto_bucket(ago(24 * 30), now), Bucket::Day);
        assert_eq!(auto_bucket(None, now), Bucket::Day);
    }
}
