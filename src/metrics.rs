//! Telemetry (Vector's habit: one narrow interface, one function per event). Counters, gauges and
//! histograms go through the `metrics` facade — no-ops until [`serve`] installs the Prometheus
//! recorder (`[metrics] listen`). The endpoint answers `GET /metrics` (Prometheus text, rendered
//! by `metrics-exporter-prometheus`) and `GET /health` (200 while the pipeline runs, 503 with
//! the reason while a stage is failed or restarting, or while nothing could be committed for
//! `unhealthy_after`: "database disk full since …" when that is why).
//!
//! Progress of `run --once` (bytes to read, bytes committed) is kept in plain atomics, so that the
//! progress display works with or without the endpoint.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::db::DbError;
use crate::record::DeadLetterReason;

/// Whether every stage of the pipeline is running (what `/health` reports).
static HEALTHY: AtomicBool = AtomicBool::new(false);
/// Commits in progress (retries and waits included). `/health` turns 503 when the oldest is
/// older than `[metrics] unhealthy_after_ms`.
static COMMITS: Mutex<BTreeMap<u64, Commit>> = Mutex::new(BTreeMap::new());
/// Key of the next [`CommitWatch`].
static NEXT_COMMIT: AtomicU64 = AtomicU64::new(0);
/// Bytes of the matched files that this run has to read (from each file's start position).
pub static BYTES_TO_READ: AtomicU64 = AtomicU64::new(0);
/// Bytes whose lines are committed in this run.
pub static BYTES_COMMITTED: AtomicU64 = AtomicU64::new(0);
/// Rows (records and dead letters) committed in this run.
pub static ROWS_COMMITTED: AtomicU64 = AtomicU64::new(0);
/// Dead letters committed in this run.
static DEAD_LETTERS_COMMITTED: AtomicU64 = AtomicU64::new(0);
/// Files with a commit in this run.
static FILES_COMMITTED: Mutex<BTreeSet<i64>> = Mutex::new(BTreeSet::new());

/// One commit in progress, as `/health` sees it.
struct Commit {
    started: Instant,
    /// The last error it met (it is being retried).
    error: Option<String>,
    /// Since when its failures have been a full disk, if the last one was.
    disk_full: Option<Since>,
}

/// When something began: the instant (to measure how long) and the wall clock (to say when).
#[derive(Debug, Clone, Copy)]
struct Since {
    instant: Instant,
    wall: chrono::DateTime<chrono::Utc>,
}

/// The `kind` labels of `logbelt_database_errors_total`: every [`crate::db::Cause`]'s, and
/// `other` for an error without a known cause.
const DATABASE_ERROR_KINDS: &[&str] = &["disk_full", "other"];

/// Upper bounds of the commit-latency histogram, in seconds.
const COMMIT_SECONDS_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Connections the endpoint serves at a time.
const MAX_CONNECTIONS: usize = 16;

/// How long the endpoint waits after a failed `accept` (out of descriptors) before trying again.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// How often histogram upkeep runs and queue depths are sampled.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("metrics.listen {addr}: cannot listen: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot install the metrics recorder: {0}")]
    Install(String),
}

/// Installs the recorder and serves `/metrics` and `/health` on `addr`, on a thread of its own
/// (so the endpoint answers while the pipeline restarts).
///
/// # Errors
/// When the address cannot be bound or a recorder is already installed.
pub fn serve(addr: SocketAddr, unhealthy_after: Duration) -> Result<SocketAddr, MetricsError> {
    let listener =
        std::net::TcpListener::bind(addr).map_err(|source| MetricsError::Bind { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| MetricsError::Bind { addr, source })?;
    listener
        .set_nonblocking(true)
        .map_err(|source| MetricsError::Bind { addr, source })?;
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full("logbelt_commit_duration_seconds".into()),
            COMMIT_SECONDS_BUCKETS,
        )
        .map_err(|e| MetricsError::Install(e.to_string()))?
        .install_recorder()
        .map_err(|e| MetricsError::Install(e.to_string()))?;
    describe();
    std::thread::Builder::new()
        .name("logbelt-metrics".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!(error = %e, "Metrics endpoint cannot start.");
                    return;
                }
            };
            runtime.block_on(accept_loop(listener, handle, unhealthy_after));
        })
        .map_err(|source| MetricsError::Bind { addr, source })?;
    tracing::info!(addr = %bound, "Serving /metrics and /health.");
    Ok(bound)
}

async fn accept_loop(
    listener: std::net::TcpListener,
    handle: PrometheusHandle,
    unhealthy_after: Duration,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "Metrics endpoint cannot listen.");
            return;
        }
    };
    let upkeep = handle.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(SAMPLE_INTERVAL).await;
            upkeep.run_upkeep();
        }
    });
    // At most this many connections at a time: each holds a descriptor, and a flood of
    // clients must not take the ones the pipeline needs. Others wait in the listen backlog.
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let mut failing = false;
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let mut stream = match listener.accept().await {
            Ok((stream, _)) => {
                failing = false;
                stream
            }
            Err(e) => {
                // Out of descriptors (EMFILE) or memory: the same error comes back at once, so
                // retrying at once would spin a core. Wait a little, and say it once.
                if !failing {
                    tracing::warn!(error = %e, "Metrics endpoint cannot accept connections; retrying every 100 ms.");
                    failing = true;
                }
                tokio::time::sleep(ACCEPT_RETRY).await;
                continue;
            }
        };
        let handle = handle.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let mut request = [0u8; 1024];
            let n = match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut request))
                .await
            {
                Ok(Ok(n)) => n,
                _ => return,
            };
            let line = String::from_utf8_lossy(&request[..n]);
            let path = line.split_whitespace().nth(1).unwrap_or("");
            let (status, content_type, body) = match path {
                "/metrics" => {
                    log_lines_dropped();
                    ("200 OK", "text/plain; version=0.0.4", handle.render())
                }
                "/health" => match unhealthy(unhealthy_after) {
                    None => ("200 OK", "text/plain", "ok\n".to_string()),
                    Some(reason) => ("503 Service Unavailable", "text/plain", reason + "\n"),
                },
                _ => (
                    "404 Not Found",
                    "text/plain",
                    "try /metrics or /health\n".to_string(),
                ),
            };
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes()).await;
            let _ = stream.write_all(body.as_bytes()).await;
            let _ = stream.shutdown().await;
        });
    }
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(
        "logbelt_lines_read_total",
        "Lines read from files (empty lines included)."
    );
    describe_counter!(
        "logbelt_bytes_read_total",
        Unit::Bytes,
        "Bytes of complete lines read from files."
    );
    describe_counter!(
        "logbelt_rows_written_total",
        "Records committed to log_events."
    );
    describe_counter!(
        "logbelt_dead_letters_total",
        "Dead letters committed, by reason."
    );
    describe_counter!("logbelt_batches_committed_total", "Transactions committed.");
    describe_histogram!(
        "logbelt_commit_duration_seconds",
        Unit::Seconds,
        "Time to commit one transaction (retries included)."
    );
    describe_counter!(
        "logbelt_restarts_total",
        "Pipeline restarts, by the stage that failed."
    );
    describe_gauge!(
        "logbelt_file_lag_bytes",
        Unit::Bytes,
        "File size minus committed position, per file."
    );
    describe_gauge!(
        "logbelt_queue_depth",
        "Batches waiting in each bounded queue."
    );
    describe_gauge!("logbelt_files_tailed", "Files being tailed.");
    describe_gauge!(
        "logbelt_files_waiting_for_descriptor",
        "Matched files waiting for a file descriptor (more files than `ulimit -n` allows open)."
    );
    describe_gauge!(
        "logbelt_up",
        "1 while every pipeline stage runs, 0 while failed or restarting."
    );
    describe_counter!(
        "logbelt_database_errors_total",
        "Failed commit attempts, retried with the batch held, by kind (disk_full, other)."
    );
    describe_gauge!(
        "logbelt_database_disk_full",
        "1 while a commit is held because the database's disk is full, else 0."
    );
    describe_counter!(
        "logbelt_expired_rows_total",
        "Rows removed by retention, by table (log_events, dead_letters, files)."
    );
    describe_counter!(
        "logbelt_expired_partitions_total",
        "PostgreSQL partitions dropped by retention."
    );
    describe_gauge!(
        "logbelt_stored_bytes",
        Unit::Bytes,
        "The room the rows take, as retention's max_bytes counts it, at its last check."
    );
    describe_counter!(
        "logbelt_retention_failures_total",
        "Retention checks that failed (tried again at the next check)."
    );
    describe_counter!(
        "logbelt_log_lines_dropped_total",
        "Lines of logbelt's own log lost because stderr failed, blocked or fell behind."
    );
    describe_counter!(
        "logbelt_nul_bytes_dropped_total",
        Unit::Bytes,
        "NUL bytes dropped at the start of lines (the hole a copytruncate race leaves)."
    );
    counter!("logbelt_nul_bytes_dropped_total").absolute(0);
    log_lines_dropped();
    // Every stage's restart counter exists from the start, so that `increase()` works from 0.
    for stage in ["tailer", "reader", "parser", "writer", "database"] {
        counter!("logbelt_restarts_total", "stage" => stage).absolute(0);
    }
    // Likewise every dead-letter reason's.
    for reason in DeadLetterReason::KINDS {
        counter!("logbelt_dead_letters_total", "reason" => reason).absolute(0);
    }
    // And every kind of database error's.
    for kind in DATABASE_ERROR_KINDS {
        counter!("logbelt_database_errors_total", "kind" => *kind).absolute(0);
    }
    gauge!("logbelt_database_disk_full").set(0.0);
    for table in EXPIRED_TABLES {
        counter!("logbelt_expired_rows_total", "table" => table).absolute(0);
    }
    counter!("logbelt_expired_partitions_total").absolute(0);
    counter!("logbelt_retention_failures_total").absolute(0);
}

/// The `table` labels of `logbelt_expired_rows_total`.
const EXPIRED_TABLES: [&str; 3] = ["log_events", "dead_letters", "files"];

/// A retention check removed these rows and partitions, and measured `stored_bytes`.
pub fn expired(rows: [u64; 3], partitions: u64, stored_bytes: u64) {
    for (table, n) in EXPIRED_TABLES.into_iter().zip(rows) {
        counter!("logbelt_expired_rows_total", "table" => table).increment(n);
    }
    counter!("logbelt_expired_partitions_total").increment(partitions);
    gauge!("logbelt_stored_bytes").set(stored_bytes as f64);
}

/// A retention check failed.
pub fn retention_failed() {
    counter!("logbelt_retention_failures_total").increment(1);
}

/// Publishes the count of lost log lines (kept by [`crate::logging`], which must not call into
/// the recorder itself: the recorder may log).
fn log_lines_dropped() {
    counter!("logbelt_log_lines_dropped_total").absolute(crate::logging::dropped());
}

/// Why `/health` is not ok, if it is not: a stage failed (the pipeline is restarting), or a
/// commit has been failing or waiting for longer than `unhealthy_after`.
fn unhealthy(unhealthy_after: Duration) -> Option<String> {
    if !HEALTHY.load(Ordering::Relaxed) {
        return Some("pipeline failed or restarting".to_string());
    }
    let commits = COMMITS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let now = Instant::now();
    let oldest = commits.values().min_by_key(|c| c.started)?;
    let waited = now.saturating_duration_since(oldest.started);
    if waited <= unhealthy_after {
        return None;
    }
    // A full disk holds every commit up: name it, whichever commit met it first.
    let disk_full = commits
        .values()
        .filter_map(|c| Some((c.disk_full?, c.error.as_deref())))
        .min_by_key(|(since, _)| since.instant);
    Some(match disk_full {
        Some((since, error)) => disk_full_reason(since, now, error),
        None => stalled_reason(waited, oldest.error.as_deref()),
    })
}

/// `/health`'s reason while commits fail because the disk is full.
fn disk_full_reason(since: Since, now: Instant, error: Option<&str>) -> String {
    format!(
        "database disk full since {} ({}s): nothing committed, reading paused until space is \
         freed; nothing is lost: {}",
        since.wall.format("%Y-%m-%dT%H:%M:%SZ"),
        now.saturating_duration_since(since.instant).as_secs(),
        crate::inspect::printable(error.unwrap_or("disk full"))
    )
}

/// `/health`'s reason while the oldest commit has waited `waited`, having met `error` last.
fn stalled_reason(waited: Duration, error: Option<&str>) -> String {
    match error {
        Some(e) => format!(
            "nothing committed for {}s: {}",
            waited.as_secs(),
            crate::inspect::printable(e)
        ),
        None => format!(
            "nothing committed for {}s: a commit is waiting (database locked or stalled?)",
            waited.as_secs()
        ),
    }
}

/// One commit in progress, seen by `/health` until dropped.
pub struct CommitWatch {
    key: u64,
}

impl CommitWatch {
    /// A commit (with its retries) starts now.
    pub fn start() -> CommitWatch {
        let key = NEXT_COMMIT.fetch_add(1, Ordering::Relaxed);
        COMMITS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(
                key,
                Commit {
                    started: Instant::now(),
                    error: None,
                    disk_full: None,
                },
            );
        CommitWatch { key }
    }

    /// The commit met `error` and is being retried: counted by kind, and kept for `/health`.
    pub fn failed(&self, error: &DbError) {
        let kind = error.cause.map_or("other", crate::db::Cause::label);
        counter!("logbelt_database_errors_total", "kind" => kind).increment(1);
        let mut commits = COMMITS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(entry) = commits.get_mut(&self.key) {
            entry.error = Some(error.message.clone());
            entry.disk_full = if error.is_disk_full() {
                entry.disk_full.or_else(|| {
                    Some(Since {
                        instant: Instant::now(),
                        wall: chrono::Utc::now(),
                    })
                })
            } else {
                None
            };
        }
        publish_disk_full(&commits);
    }
}

impl Drop for CommitWatch {
    fn drop(&mut self) {
        let mut commits = COMMITS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        commits.remove(&self.key);
        publish_disk_full(&commits);
    }
}

/// Sets `logbelt_database_disk_full` from the commits in progress (under their lock, so that
/// two committers' updates cannot land out of order).
fn publish_disk_full(commits: &BTreeMap<u64, Commit>) {
    let full = commits.values().any(|c| c.disk_full.is_some());
    gauge!("logbelt_database_disk_full").set(if full { 1.0 } else { 0.0 });
}

/// The pipeline is running (`true`) or failed/restarting (`false`).
pub fn set_healthy(up: bool) {
    HEALTHY.store(up, Ordering::Relaxed);
    gauge!("logbelt_up").set(if up { 1.0 } else { 0.0 });
}

/// A tail task handed over `lines` lines (`bytes` bytes) of `source`.
pub fn lines_read(source: &str, lines: usize, bytes: u64) {
    counter!("logbelt_lines_read_total", "source" => source.to_string()).increment(lines as u64);
    counter!("logbelt_bytes_read_total", "source" => source.to_string()).increment(bytes);
}

/// A tail task dropped `bytes` NUL bytes (perhaps 0) at the start of lines of `path`: rare, a
/// writer went on at its old offset past a truncation (copytruncate); said once per batch.
pub fn nul_bytes_dropped(path: &str, bytes: u64) {
    if bytes == 0 {
        return;
    }
    counter!("logbelt_nul_bytes_dropped_total").increment(bytes);
    tracing::warn!(path = %crate::tail::Shown(path), bytes, "Dropped NUL bytes at the start of a line (the hole a truncation leaves under a writer that goes on at its old offset).");
}

/// A file will be read from `from` to its current `size`.
pub fn file_to_read(from: u64, size: u64) {
    BYTES_TO_READ.fetch_add(size.saturating_sub(from), Ordering::Relaxed);
}

/// A transaction committed.
pub fn committed(records: u64, dead_letters: &[&DeadLetterReason], bytes: u64, elapsed: Duration) {
    counter!("logbelt_rows_written_total").increment(records);
    for reason in dead_letters {
        counter!("logbelt_dead_letters_total", "reason" => reason.kind()).increment(1);
    }
    counter!("logbelt_batches_committed_total").increment(1);
    histogram!("logbelt_commit_duration_seconds").record(elapsed.as_secs_f64());
    BYTES_COMMITTED.fetch_add(bytes, Ordering::Relaxed);
    ROWS_COMMITTED.fetch_add(records + dead_letters.len() as u64, Ordering::Relaxed);
    DEAD_LETTERS_COMMITTED.fetch_add(dead_letters.len() as u64, Ordering::Relaxed);
}

/// Files `ids` had a commit.
pub fn files_committed(ids: impl IntoIterator<Item = i64>) {
    FILES_COMMITTED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .extend(ids);
}

/// What this run committed (the summary `run --once` ends with).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunTotals {
    /// Files with at least one commit.
    pub files: usize,
    /// Rows of `log_events`.
    pub records: u64,
    pub dead_letters: u64,
    /// Bytes of the files whose lines are committed.
    pub bytes: u64,
}

/// The totals of this run so far.
pub fn run_totals() -> RunTotals {
    let dead_letters = DEAD_LETTERS_COMMITTED.load(Ordering::Relaxed);
    RunTotals {
        files: FILES_COMMITTED
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len(),
        records: ROWS_COMMITTED
            .load(Ordering::Relaxed)
            .saturating_sub(dead_letters),
        dead_letters,
        bytes: BYTES_COMMITTED.load(Ordering::Relaxed),
    }
}

/// Size minus committed position of `path`, after a commit.
pub fn file_lag(path: &str, lag: u64) {
    gauge!("logbelt_file_lag_bytes", "path" => path.to_string()).set(lag as f64);
}

/// The pipeline restarts because `stage` failed.
pub fn restarted(stage: &str) {
    counter!("logbelt_restarts_total", "stage" => stage.to_string()).increment(1);
}

/// Batches waiting in `queue`.
pub fn queue_depth(queue: &'static str, depth: usize) {
    gauge!("logbelt_queue_depth", "queue" => queue).set(depth as f64);
}

/// Files with a running tail task.
pub fn files_tailed(n: usize) {
    gauge!("logbelt_files_tailed").set(n as f64);
}

/// Matched files waiting for a file descriptor (more files than the descriptor budget).
pub fn files_waiting_for_descriptor(n: usize) {
    gauge!("logbelt_files_waiting_for_descriptor").set(n as f64);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_names_a_full_disk_with_when_it_began_and_how_long_it_lasts() {
        let began = Instant::now();
        let now = began + Duration::from_secs(90);
        let wall = chrono::DateTime::from_timestamp(1_700_000_000, 0).expect("a valid time");
        let reason = disk_full_reason(
            Since {
                instant: began,
                wall,
            },
            now,
            Some("commit failed: database or disk is full"),
        );
        assert_eq!(
            reason,
            "database disk full since 2023-11-14T22:13:20Z (90s): nothing committed, reading \
             paused until space is freed; nothing is lost: commit failed: database or disk is full"
        );
    }

    #[test]
    fn health_says_what_a_stalled_commit_last_met() {
        assert_eq!(
            stalled_reason(Duration::from_secs(61), Some("connection refused")),
            "nothing committed for 61s: connection refused"
        );
        assert!(stalled_reason(Duration::from_secs(61), None).contains("a commit is waiting"));
    }
}
