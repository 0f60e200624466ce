//! logbelt tails files of JSON lines and stores every line exactly once in SQLite or PostgreSQL,
//! with backpressure from the database all the way back to the files.
//!
//! # Layout
//! - [`config`]: the TOML file, deserialised into the structs the rest of logbelt reads.
//! - [`record`]: batches of lines and of records, and file identity and positions.
//! - [`parse`]: one line → a record's fields, or the reason it is a dead letter.
//! - [`tail`]: tokio tasks that find and read files and feed the bounded bridge.
//! - [`actors`]: Reader → Parser → Writer actors and their bounded plumbing.
//! - [`messages`]: every message between actors.
//! - [`metrics`]: counters and gauges, the `/metrics` and `/health` endpoint, run progress.
//! - [`supervisor`]: builds, restarts and drains the pipeline.
//! - [`shutdown`]: Ctrl-C / SIGTERM → drain; a second signal → exit.
//! - [`db`]: the SQLite and PostgreSQL stores behind one trait.
//! - [`inspect`]: the read-only `status` and `query` commands.
//! - [`web`]: `logbelt serve`, the web console and its JSON API (read-only).
//! - [`redact`]: database passwords hidden from every message.
//! - [`logging`]: logbelt's own log, which a failing or blocked stderr cannot stop.
//! - [`run`]: the entry points the binary calls.
//! - [`exit`]: the exit codes of every command.

pub mod actors;
pub mod config;
pub mod db;
pub mod exit;
pub mod inspect;
pub mod logging;
pub mod messages;
pub mod metrics;
pub mod parse;
pub mod record;
pub mod redact;
pub mod retention;
pub mod run;
pub mod search;
pub mod shutdown;
pub mod supervisor;
pub mod tail;
pub mod web;
