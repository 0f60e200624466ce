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
//! - [`corpus`]: real-world log files from `/work/shared/corpus`.
//!
//! PostgreSQL tests run when `LOGBELT_TEST_POSTGRES_URL` is set (an admin URL: each test
//! creates and drops its own database); otherwise they are skipped, or fail when
//! `LOGBELT_REQUIRE_POSTGRES=1`.

#[macro_use]
mod util;

mod bad_input;
mod cli;
mod corpus;
#[cfg(feature = "fault-injection")]
mod faults;
mod files;
mod inspect;
mod outage;
mod pipeline;
mod postgres;
mod restart;
mod rotation;
mod shutdown;
mod splitter_props;
