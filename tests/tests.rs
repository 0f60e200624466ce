//! logbelt's integration tests: one test binary (ripgrep's layout). Every test drives the real
//! `logbelt` binary on a temporary folder and checks the database tables.
//!
//! - [`util`]: fixtures (folder, config, database, child process, waits).
//! - [`cli`]: config errors and exit codes of `validate` and `run`.
//! - [`pipeline`]: lines to rows: offsets, dead letters, live following, partial lines,
//!   `start_at`.
//! - [`restart`]: exactly once across a graceful restart and across `kill -9`.
//! - [`rotation`]: rename, copytruncate, truncation, file identity.
//! - [`shutdown`]: the SIGINT/SIGTERM drain.
//! - [`outage`]: a database that stops taking writes for a while.
//! - `faults`: panics and failed commits inside the pipeline (only with
//!   `--features fault-injection`).
//! - [`corpus`]: real-world log files in `tests/data/corpus`.
//! - [`bad_input`]: one table of bad lines (both backends), long lines written live, the corpus
//!   with exact per-file counts.
//! - [`files`]: directories, FIFOs, symlinks, unreadable/compressed/deleted/shrinking files;
//!   unreachable or unwritable databases and missing `${VAR}` (exit codes).
//! - [`splitter_props`]: proptest properties of `tail::lines::LineSplitter`.
//! - `supervision`: restarts, the restart budget, `/health` while restarting (only with
//!   `--features fault-injection`).
//! - [`metrics`]: the `/metrics` counters, and backpressure seen through them.
//! - [`chaos`]: `kill -9` at random moments while lines are written and rotated.
//! - [`hostile`]: a hostile host: stderr/stdout that cannot be written, a database user
//!   without the grants, a read-only database, a database file replaced under the daemon.
//! - [`logrotate`]: the real `logrotate` (`create`, `copytruncate`, `delaycompress` +
//!   `compress`) while a writer appends: every line on disk stored once, latency after each
//!   rotation, woken without the fallback poll (skipped without logrotate, or failing when
//!   `LOGBELT_REQUIRE_LOGROTATE=1`).
//! - [`formats`]: text formats per source (nginx, syslog, logfmt, regex, CRI, multiline) on real
//!   samples in `tests/data/formats`; lines that do not match; CRI and multiline across restarts.
//! - [`corpus_text`]: whole real text logs in `tests/data/corpus-text` (nginx, syslog, logfmt,
//!   RabbitMQ, Java, Python, PostgreSQL) with the exact event counts of its `PROVENANCE.md`.
//! - [`retention`]: expiry by age and size, pruning gone files' rows, PostgreSQL partitions and
//!   the conversion of an unpartitioned database.
//! - [`diskfull`]: SQLite on a full tmpfs: a pause, not a loss (skipped without root, or failing
//!   when `LOGBELT_REQUIRE_TMPFS=1`).
//! - [`search`]: `query --grep` through the search index (same rows as the scan), `--field`,
//!   `--count`, `--before`/`--after` cursors; PostgreSQL without the right to create the index.
//! - [`fleet`]: sixteen agents into one PostgreSQL, directly and through PgBouncer in
//!   transaction pooling mode (skipped without pgbouncer, or failing when
//!   `LOGBELT_REQUIRE_PGBOUNCER=1`); PgBouncer's client limit at start; a held table lock
//!   (`lock_timeout`).
//! - [`web`]: `logbelt serve`: the JSON API (both backends), access and tokens, live tail over
//!   SSE, and the page in headless Chromium (skipped without chromedriver, or failing when
//!   `LOGBELT_REQUIRE_CHROMIUM=1`).
//!
//! PostgreSQL tests run when `LOGBELT_TEST_POSTGRES_URL` is set (an admin URL: each test
//! creates and drops its own database); otherwise they are compiled as ignored (`build.rs`), or
//! run and fail when `LOGBELT_REQUIRE_POSTGRES=1`.

#[macro_use]
mod util;

mod bad_input;
mod chaos;
mod cli;
mod corpus;
mod corpus_text;
mod diskfull;
#[cfg(feature = "fault-injection")]
mod faults;
mod files;
mod fleet;
mod formats;
mod hostile;
mod inspect;
mod logrotate;
mod metrics;
mod outage;
mod pipeline;
mod postgres;
mod restart;
mod retention;
mod rotation;
mod search;
mod search_blocks;
mod shutdown;
mod splitter_props;
#[cfg(feature = "fault-injection")]
mod supervision;
mod web;
