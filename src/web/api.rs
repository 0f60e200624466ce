//! The JSON API. Every `/api/` endpoint takes the token (when one is required) as
//! `Authorization: Bearer TOKEN`; errors are `{"error": "one line"}` with 400 (bad parameters),
//! 401 (no or wrong token), 503 (busy, or the query ran out of time) or 500.
//!
//! - `GET /api/events`: `{"events": [...], "more": bool, "next": "TS,ID"|null}`; the events as
//!   `query --json` prints them, newest first; `next` is the `before` of the next (older) page,
//!   or with `after` (and no `before`) the `after` of the next newer page, whose events come
//!   oldest first.
//! - `GET /api/histogram`: `{"bucket": "1m", "since", "until", "untimed": N, "buckets":
//!   [{"t": "…", "levels": {"info": N, "-": N…}}]}` (only buckets with events).
//! - `GET /api/files`: what `status --json` prints.
//! - `GET /api/dead_letters?limit=N&before=ID`: `{"dead_letters": [...], "next": ID|null}`.
//! - `GET /health`: `{"status": "ok"}` (no token needed, no database work).

use std::future::{ready, Ready};

use actix_web::http::StatusCode;
use actix_web::{web, FromRequest, HttpRequest, HttpResponse, ResponseError};
use serde_json::json;

use super::bounds;
use super::params::{self, auto_bucket};
use super::rows;
use super::State;
use crate::exit::Exit;
use crate::inspect::count::{counts, Bucket, GroupBy};
use crate::inspect::query::{fetch, write_json, Event, QueryOptions};
use crate::inspect::InspectError;

/// An error answer: a status and one line.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: u16,
    pub message: String,
}

impl ApiError {
    pub fn bad(message: impl Into<String>) -> ApiError {
        ApiError::new(400, message)
    }

    pub fn busy(message: impl Into<String>) -> ApiError {
        ApiError::new(503, message)
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(500, message)
    }

    fn new(status: u16, message: impl Into<String>) -> ApiError {
        // One line, whatever the source said.
        let message = message.into().replace(['\n', '\r'], " ");
        ApiError { status, message }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status_code()).json(json!({ "error": self.message }))
    }
}

impl From<InspectError> for ApiError {
    fn from(e: InspectError) -> ApiError {
        let m = e.message;
        if e.code == Exit::Usage {
            // The command line's words for its options: the API's are the same names.
            return ApiError::bad(m.replace("--", ""));
        }
        if m.contains("interrupted") || m.contains("statement timeout") {
            return ApiError::busy(format!(
                "the query took longer than {}s: narrow it (a shorter time range, a level, a source)",
                bounds::QUERY_TIMEOUT.as_secs()
            ));
        }
        ApiError::internal(m)
    }
}

/// A request that passed the token check (the extractor every `/api/` handler takes).
pub struct Authorized;

impl FromRequest for Authorized {
    type Error = ApiError;
    type Future = Ready<Result<Authorized, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        ready(check_token(req).map(|()| Authorized))
    }
}

fn check_token(req: &HttpRequest) -> Result<(), ApiError> {
    let Some(state) = req.app_data::<web::Data<State>>() else {
        return Err(ApiError::internal("no server state"));
    };
    let Some(token) = &state.token else {
        return Ok(());
    };
    let given = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if same(given.as_bytes(), token.as_bytes()) {
        Ok(())
    } else {
        Err(ApiError::new(
            401,
            "a token is required: send Authorization: Bearer TOKEN",
        ))
    }
}

/// Equal, in a time that does not depend on where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/health", web::get().to(health))
        .route("/api/events", web::get().to(events))
        .route("/api/histogram", web::get().to(histogram))
        .route("/api/files", web::get().to(files))
        .route("/api/dead_letters", web::get().to(dead_letters));
}

async fn health() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// `events` as one JSON array (each as `query --json` prints it).
pub fn events_json(events: &[Event]) -> Result<String, ApiError> {
    let mut lines = Vec::new();
    write_json(events, &mut lines).map_err(|e| ApiError::internal(e.to_string()))?;
    let lines =
        String::from_utf8(lines).map_err(|e| ApiError::internal(format!("event JSON: {e}")))?;
    Ok(format!("[{}]", lines.trim_end().replace('\n', ",")))
}

async fn events(
    _: Authorized,
    state: web::Data<State>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let p = params::parse(req.query_string(), &["limit", "before", "after"])?;
    let options = QueryOptions {
        conditions: p.conditions,
        limit: p.limit,
        count: false,
        by: None,
        bucket: None,
        json: true,
    };
    let mut found = bounds::run(&state, move |config| fetch(config, &options)).await?;
    if !found.forward {
        found.events.reverse();
    }
    // Newest first (forward pages: oldest first); `next` continues in the same direction.
    let next = found
        .more
        .then(|| found.events.last().map(Event::cursor))
        .flatten();
    let body = format!(
        "{{\"events\":{},\"more\":{},\"next\":{}}}",
        events_json(&found.events)?,
        found.more,
        json!(next)
    );
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(body))
}

fn bucket_name(b: Bucket) -> &'static str {
    match b {
        Bucket::Minute => "1m",
        Bucket::Hour => "1h",
        Bucket::Day => "1d",
    }
}

async fn histogram(
    _: Authorized,
    state: web::Data<State>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let p = params::parse(req.query_string(), &["bucket"])?;
    let c = &p.conditions;
    let bucket = p
        .bucket
        .unwrap_or_else(|| auto_bucket(c.since, c.until.unwrap_or_else(chrono::Utc::now)));
    let (since, until) = (c.since, c.until);
    let options = QueryOptions {
        conditions: p.conditions,
        limit: 1,
        count: true,
        by: Some(GroupBy::Level),
        bucket: Some(bucket),
        json: true,
    };
    let rows = bounds::run(&state, move |config| counts(config, &options)).await?;
    let mut untimed = 0;
    let mut buckets: Vec<(String, serde_json::Map<String, serde_json::Value>)> = Vec::new();
    for r in rows {
        let Some(t) = r.bucket else {
            untimed += r.count;
            continue;
        };
        let level = r.group.unwrap_or_else(|| "-".to_owned());
        match buckets.last_mut() {
            Some((last, levels)) if *last == t => {
                levels.insert(level, json!(r.count));
            }
            _ => {
                let mut levels = serde_json::Map::new();
                levels.insert(level, json!(r.count));
                buckets.push((t, levels));
            }
        }
    }
    let ts = |t: Option<chrono::DateTime<chrono::Utc>>| t.map(crate::inspect::format_ts);
    Ok(HttpResponse::Ok().json(json!({
        "bucket": bucket_name(bucket),
        "since": ts(since),
        "until": ts(until),
        "untimed": untimed,
        "buckets": buckets
            .into_iter()
            .map(|(t, levels)| json!({ "t": t, "levels": levels }))
            .collect::<Vec<_>>(),
    })))
}

async fn files(_: Authorized, state: web::Data<State>) -> Result<HttpResponse, ApiError> {
    let status = bounds::run(&state, crate::inspect::status::collect).await?;
    Ok(HttpResponse::Ok().json(status))
}

async fn dead_letters(
    _: Authorized,
    state: web::Data<State>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let pairs = web::Query::<Vec<(String, String)>>::from_query(req.query_string())
        .map_err(|e| ApiError::bad(format!("bad query string: {e}")))?
        .into_inner();
    let mut limit = i64::from(params::DEFAULT_LIMIT);
    let mut before = None;
    for (k, v) in pairs {
        let n = v.parse::<i64>().ok();
        match k.as_str() {
            "limit" => {
                limit = n
                    .filter(|n| (1..=i64::from(params::MAX_LIMIT)).contains(n))
                    .ok_or_else(|| {
                        ApiError::bad(format!(
                            "limit: expected a number from 1 to {}, found {v:?}",
                            params::MAX_LIMIT
                        ))
                    })?
            }
            "before" => {
                before = Some(n.ok_or_else(|| {
                    ApiError::bad(format!("before: expected a dead letter id, found {v:?}"))
                })?)
            }
            _ => {
                return Err(ApiError::bad(format!(
                    "unknown parameter {k:?} (expected limit, before)"
                )))
            }
        }
    }
    let mut rows = bounds::run(&state, move |config| {
        rows::dead_letters(config, before, limit + 1)
    })
    .await?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next = more.then(|| rows.last().map(|r| r.id)).flatten();
    Ok(HttpResponse::Ok().json(json!({ "dead_letters": rows, "next": next })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_errors_are_400_timeouts_503() {
        let e: ApiError = InspectError::usage("--since (a) is after --until (b)").into();
        assert_eq!(
            (e.status, e.message.as_str()),
            (400, "since (a) is after until (b)")
        );
        let e: ApiError = InspectError::runtime("cannot read the database: interrupted").into();
        assert_eq!(e.status, 503);
        let e: ApiError = InspectError::runtime("cannot read\nthe database").into();
        assert_eq!(
            (e.status, e.message.as_str()),
            (500, "cannot read the database")
        );
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"abcd"));
        assert!(!same(b"", b"a"));
    }
}
