//! What bounds the database work of one request: a permit out of [`MAX_QUERIES`] (waiting at
//! most [`QUEUE_WAIT`] for one), a blocking thread (never an async worker), and a deadline of
//! [`QUERY_TIMEOUT`]: SQLite checks it from a progress handler, PostgreSQL through its
//! `statement_timeout`, set for every connection of `serve` in the URL's `options`.
//!
//! The SQLite progress handler is installed on every connection the process opens
//! (`sqlite3_auto_extension`, once, by [`bounded`]); it interrupts a statement only on a thread
//! inside [`with_deadline`] whose deadline has passed, so anything else is untouched.

use std::cell::Cell;
use std::ffi::{c_char, c_int, c_void};
use std::sync::Once;
use std::time::{Duration, Instant};

use actix_web::web;

use super::api::ApiError;
use super::State;
use crate::config::{Config, DatabaseUrl};
use crate::inspect::InspectError;

/// Database queries running at once; more wait for a permit.
pub const MAX_QUERIES: usize = 4;

/// How long a request waits for a permit before it is answered 503.
pub const QUEUE_WAIT: Duration = Duration::from_secs(10);

/// How long one request's database work may take.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

/// SQLite virtual machine steps between two looks at the clock.
const PROGRESS_STEPS: c_int = 10_000;

thread_local! {
    /// The deadline of the query running on this thread, if any.
    static DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
}

static INSTALL: Once = Once::new();

/// The config `serve` reads with: for SQLite the progress handler installed, for PostgreSQL a
/// URL whose connections have `statement_timeout` (and `default_transaction_read_only`) set.
///
/// # Errors
/// When SQLite refuses the handler (a one-line message).
pub fn bounded(mut config: Config) -> Result<Config, String> {
    match &mut config.database.url {
        DatabaseUrl::Sqlite { .. } => install()?,
        DatabaseUrl::Postgres { url } => *url = pg_url(url, QUERY_TIMEOUT),
    }
    Ok(config)
}

/// `url` with `options=-c statement_timeout=… -c default_transaction_read_only=on` added
/// (libpq's connection option: sent at connect, so it holds for every statement).
pub fn pg_url(url: &str, timeout: Duration) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!(
        "{url}{sep}options=-c%20statement_timeout%3D{}%20-c%20default_transaction_read_only%3Don",
        timeout.as_millis()
    )
}

fn install() -> Result<(), String> {
    let mut rc = libsqlite3_sys::SQLITE_OK;
    INSTALL.call_once(|| {
        // SAFETY: `on_open` has the signature SQLite calls an auto extension with, and stays
        // valid for the life of the process.
        rc = unsafe { libsqlite3_sys::sqlite3_auto_extension(Some(on_open)) };
    });
    if rc == libsqlite3_sys::SQLITE_OK {
        Ok(())
    } else {
        Err(format!(
            "cannot install the SQLite query deadline (code {rc})"
        ))
    }
}

/// Called by SQLite for every connection opened: installs [`progress`] on it.
unsafe extern "C" fn on_open(
    db: *mut libsqlite3_sys::sqlite3,
    _err: *mut *mut c_char,
    _api: *const libsqlite3_sys::sqlite3_api_routines,
) -> c_int {
    // SAFETY: `db` is the connection SQLite is opening; the handler has no user data.
    unsafe {
        libsqlite3_sys::sqlite3_progress_handler(
            db,
            PROGRESS_STEPS,
            Some(progress),
            std::ptr::null_mut(),
        )
    };
    libsqlite3_sys::SQLITE_OK
}

/// Non-zero (interrupt) when this thread's deadline has passed.
unsafe extern "C" fn progress(_: *mut c_void) -> c_int {
    let late = DEADLINE
        .try_with(|d| d.get().is_some_and(|t| Instant::now() >= t))
        .unwrap_or(false);
    c_int::from(late)
}

/// Runs `f` with this thread's query deadline set to `deadline` (SQLite statements it runs are
/// interrupted after it).
pub fn with_deadline<R>(deadline: Instant, f: impl FnOnce() -> R) -> R {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            DEADLINE.with(|d| d.set(None));
        }
    }
    DEADLINE.with(|d| d.set(Some(deadline)));
    let _reset = Reset;
    f()
}

/// Runs `f` (database work) on a blocking thread with a permit and a deadline.
///
/// # Errors
/// 503 when no permit comes within [`QUEUE_WAIT`] or the deadline passed; what `f` returns,
/// mapped by [`ApiError::from`].
pub async fn run<R: Send + 'static>(
    state: &State,
    f: impl FnOnce(&Config) -> Result<R, InspectError> + Send + 'static,
) -> Result<R, ApiError> {
    let permit = tokio::time::timeout(QUEUE_WAIT, state.queries.clone().acquire_owned())
        .await
        .map_err(|_| ApiError::busy("too many queries are running: try again"))?
        .map_err(|_| ApiError::busy("the server is shutting down"))?;
    let config = state.config.clone();
    let deadline = Instant::now() + QUERY_TIMEOUT;
    let result = web::block(move || {
        let _permit = permit;
        with_deadline(deadline, || f(&config))
    })
    .await
    .map_err(|e| ApiError::internal(format!("the query did not finish: {e}")))?;
    result.map_err(ApiError::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use diesel::connection::SimpleConnection;
    use diesel::Connection;

    #[test]
    fn a_passed_deadline_interrupts_a_sqlite_statement() {
        install().unwrap();
        let mut c = diesel::sqlite::SqliteConnection::establish(":memory:").unwrap();
        let endless = "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n) \
                       SELECT count(*) FROM n;";
        let e = with_deadline(Instant::now(), || c.batch_execute(endless)).unwrap_err();
        assert!(e.to_string().contains("interrupt"), "{e}");
        // Outside a deadline the handler lets statements run.
        c.batch_execute(
            "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n \
                         WHERE x < 100000) SELECT count(*) FROM n;",
        )
        .unwrap();
    }

    #[test]
    fn pg_urls_get_the_timeout_option() {
        assert_eq!(
            pg_url("postgres://u@h/db", Duration::from_secs(10)),
            "postgres://u@h/db?options=-c%20statement_timeout%3D10000%20-c%20default_transaction_read_only%3Don"
        );
        assert!(
            pg_url("postgres://h/db?sslmode=disable", Duration::from_secs(1))
                .starts_with("postgres://h/db?sslmode=disable&options=")
        );
    }
}
