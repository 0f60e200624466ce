//! `GET /api/tail`: new matching events as Server-Sent Events, as they are committed.
//!
//! Each stream has its own task that polls the database every [`POLL`] for rows with an id
//! above the last ones dealt with ([`Position`]) (`query`'s filters, `q`, `level`, `source`, `host`, `field`; no time
//! range: a tail is of what comes next). It starts after the newest row (or after the id in
//! `Last-Event-ID`, which a reconnecting client sends). Every event is one message,
//! `id: ROW_ID` and `data: ` the event as `query --json` prints it.
//!
//! Bounded: at most [`MAX_TAILS`] streams (503 beyond), at most [`BATCH`] rows per poll, and
//! [`BUFFER`] messages queued per client. A client that does not read them is dropped (its
//! stream ends) rather than buffered for. A comment line every [`KEEPALIVE`] finds closed
//! connections.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::web::{self, Bytes};
use actix_web::{HttpRequest, HttpResponse};
use tokio::sync::mpsc::{self, error::TrySendError};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;

use super::api::{events_json, ApiError, Authorized};
use super::{bounds, params, rows, State};
use crate::inspect::filter::Conditions;

/// How often a stream looks for new rows.
pub const POLL: Duration = Duration::from_millis(500);
/// Open streams at most.
pub const MAX_TAILS: usize = 16;
/// Rows read per poll at most (more are read on the next poll, at once).
pub const BATCH: i64 = 1_000;
/// Messages queued for one client at most.
pub const BUFFER: usize = 1_024;
/// How often an idle stream sends a comment.
pub const KEEPALIVE: Duration = Duration::from_secs(15);

/// Counts a stream while it is open.
struct Slot(web::Data<State>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.tails.fetch_sub(1, Ordering::SeqCst);
    }
}

pub async fn tail(
    _: Authorized,
    state: web::Data<State>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let p = params::parse(req.query_string(), &[])?;
    let c = p.conditions;
    if c.since.is_some() || c.until.is_some() {
        return Err(ApiError::bad(
            "since, until: a tail is of new events; give no time range",
        ));
    }
    let resume = req
        .headers()
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i64>().ok());
    if state.tails.fetch_add(1, Ordering::SeqCst) >= MAX_TAILS {
        state.tails.fetch_sub(1, Ordering::SeqCst);
        return Err(ApiError::busy(format!(
            "{MAX_TAILS} live tails are open already: close one"
        )));
    }
    let slot = Slot(state.clone());
    let start = match resume {
        Some(id) => id,
        None => bounds::run(&state, rows::last_id).await?,
    };
    let (tx, rx) = mpsc::channel::<Bytes>(BUFFER);
    // The first message tells the client where the stream starts (and that it is open).
    if tx
        .try_send(Bytes::from(format!(": tail after row {start}\n\n")))
        .is_err()
    {
        return Err(ApiError::internal("cannot start the stream"));
    }
    actix_web::rt::spawn(follow(slot, Arc::new(c), start, tx));
    let body = ReceiverStream::new(rx).map(Ok::<Bytes, actix_web::Error>);
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("Cache-Control", "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(body))
}

/// What a send found.
enum Sent {
    Ok,
    /// The client is gone, or too slow: end the stream.
    Stop,
}

fn send(tx: &mpsc::Sender<Bytes>, message: String) -> Sent {
    match tx.try_send(Bytes::from(message)) {
        Ok(()) => Sent::Ok,
        Err(TrySendError::Full(_)) => {
            tracing::warn!("dropping a live-tail client: it has not read {BUFFER} queued events");
            Sent::Stop
        }
        Err(TrySendError::Closed(_)) => Sent::Stop,
    }
}

/// Where a stream is: the rows it has dealt with.
///
/// Row ids are handed out at insert, not at commit: with several PostgreSQL writers a row can
/// become visible after one with a higher id. So the floor (every row at or below it is dealt
/// with) lags one poll behind what was read, the rows above it are read again at the next
/// poll, and the ids already sent there are remembered, to be sent once. A transaction has a
/// poll interval to commit after a later one did.
struct Position {
    floor: i64,
    /// What the floor becomes at the next poll.
    pending: i64,
    /// Ids above `floor` already sent (at most two polls' worth).
    sent: std::collections::BTreeSet<i64>,
}

impl Position {
    fn new(start: i64) -> Position {
        Position {
            floor: start,
            pending: start,
            sent: std::collections::BTreeSet::new(),
        }
    }

    /// Whether `id` is new (and marks it sent).
    fn fresh(&mut self, id: i64) -> bool {
        id > self.floor && self.sent.insert(id)
    }

    /// After a poll that read up to `next`.
    fn advance(&mut self, next: i64) {
        self.floor = self.pending.max(self.floor);
        self.pending = next;
        let floor = self.floor;
        self.sent.retain(|id| *id > floor);
    }
}

/// The stream's task: polls, sends, and ends when the client is gone or too slow.
async fn follow(slot: Slot, c: Arc<Conditions>, start: i64, tx: mpsc::Sender<Bytes>) {
    let state = slot.0.clone();
    let mut quiet_since = Instant::now();
    let mut at = Position::new(start);
    // The stream's own connection, kept between polls.
    let mut conn: Option<crate::inspect::Db> = None;
    let mut full = false;
    loop {
        // A full batch: more rows are waiting, read them at once.
        if !full {
            tokio::select! {
                () = tokio::time::sleep(POLL) => {}
                () = tx.closed() => return,
            }
        }
        let conditions = c.clone();
        let after = at.floor;
        let mut taken = conn.take();
        let polled = bounds::run(&state, move |config| {
            let found = rows::newer(&mut taken, config, &conditions, after, BATCH);
            Ok((taken, found))
        })
        .await;
        let found = match polled {
            Ok((back, found)) => {
                conn = back;
                found.map_err(ApiError::from)
            }
            Err(e) => Err(e),
        };
        let (events, next) = match found {
            Ok(found) => found,
            Err(e) => {
                let msg = serde_json::json!({ "error": e.message });
                // Tell the client; a busy database is tried again at the next poll.
                if let Sent::Stop = send(&tx, format!("event: error\ndata: {msg}\n\n")) {
                    return;
                }
                full = false;
                continue;
            }
        };
        full = events.len() as i64 >= BATCH;
        let mut sent = 0;
        for ev in &events {
            if !at.fresh(ev.id) {
                continue;
            }
            let json = match events_json(std::slice::from_ref(ev)) {
                Ok(j) => j,
                Err(e) => {
                    tracing::warn!("live tail: event {}: {e}", ev.id);
                    continue;
                }
            };
            // `[{...}]` → `{...}`: one object per message.
            let object = &json[1..json.len() - 1];
            if let Sent::Stop = send(&tx, format!("id: {}\ndata: {object}\n\n", ev.id)) {
                return;
            }
            sent += 1;
        }
        at.advance(next);
        if sent > 0 {
            quiet_since = Instant::now();
        } else if quiet_since.elapsed() >= KEEPALIVE {
            quiet_since = Instant::now();
            if let Sent::Stop = send(&tx, ": keepalive\n\n".to_owned()) {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_committed_late_below_the_last_one_is_still_sent_once() {
        let mut at = Position::new(10);
        // Poll 1 sees 11 and 13 (12 is not committed yet).
        assert!(at.fresh(11) && at.fresh(13));
        at.advance(13);
        // Poll 2 reads above 10 again: 12 is new, 11 and 13 were sent.
        assert_eq!(at.floor, 10);
        assert!(!at.fresh(11) && at.fresh(12) && !at.fresh(13));
        at.advance(13);
        assert_eq!(at.floor, 13);
        assert!(at.sent.is_empty());
        // Nothing at or below the floor is sent again.
        assert!(!at.fresh(12));
        assert!(at.fresh(14));
    }
}
