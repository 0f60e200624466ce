//! logbelt's own log, written so that stderr can never stop the pipeline. tracing-subscriber
//! formats each event into one line; [`Stderr`] hands the line to a bounded queue, and one thread
//! of its own writes the queue to stderr. Nothing that logs ever waits for stderr or sees an
//! error from it: a stderr that fails (`2>/dev/full`, a closed pipe) or blocks (a pipe nobody
//! reads) costs log lines, never the process. Lost lines are counted ([`dropped`], the metric
//! `logbelt_log_lines_dropped_total`).
//!
//! SIGPIPE: the Rust runtime ignores it before `main`, so writing to a closed pipe is an
//! `EPIPE` error (counted here) rather than a signal that kills the process.

use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Log lines that may wait for stderr; more are dropped (and counted).
const QUEUE_LINES: usize = 1024;

/// Log lines lost: the queue was full, or stderr refused them.
static DROPPED: AtomicU64 = AtomicU64::new(0);
/// Lines taken into the queue.
static QUEUED: AtomicU64 = AtomicU64::new(0);
/// Lines of the queue the writing thread is done with (written or dropped).
static DONE: AtomicU64 = AtomicU64::new(0);
/// The queue; unset until [`start`] (lines are then written in place, errors ignored).
static QUEUE: OnceLock<SyncSender<Vec<u8>>> = OnceLock::new();

/// Log lines lost so far because stderr failed, blocked, or fell behind.
pub fn dropped() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

/// Starts the thread that writes queued log lines to stderr. Without it (it could not be
/// spawned), lines are written in place, their errors ignored.
pub fn start() {
    let (tx, rx) = sync_channel::<Vec<u8>>(QUEUE_LINES);
    let spawned = std::thread::Builder::new()
        .name("logbelt-log".into())
        .spawn(move || {
            for line in rx {
                if io::stderr().lock().write_all(&line).is_err() {
                    DROPPED.fetch_add(1, Ordering::Relaxed);
                }
                DONE.fetch_add(1, Ordering::Relaxed);
            }
        });
    if spawned.is_ok() {
        let _ = QUEUE.set(tx);
    }
}

/// Waits until every line queued so far has been written (or dropped), for at most `limit`:
/// called before the process exits, so that its last lines are not lost to a prompt exit, and
/// never held up for long by a stderr that blocks.
pub fn flush(limit: Duration) {
    let target = QUEUED.load(Ordering::SeqCst);
    let started = Instant::now();
    while DONE.load(Ordering::SeqCst) < target && started.elapsed() < limit {
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// How long the process waits at exit for its last log lines to reach stderr.
pub const EXIT_FLUSH: Duration = Duration::from_millis(500);

/// Queues one formatted line (or writes it in place without the thread).
fn emit(line: &[u8]) {
    match QUEUE.get() {
        Some(tx) => match tx.try_send(line.to_vec()) {
            Ok(()) => {
                QUEUED.fetch_add(1, Ordering::SeqCst);
            }
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                DROPPED.fetch_add(1, Ordering::Relaxed);
            }
        },
        None => {
            if io::stderr().lock().write_all(line).is_err() {
                DROPPED.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Writes one line (`logbelt: …`) straight to stderr for the commands that end right after
/// (config errors, `validate`, `status`, `query`): an error is ignored, never a panic.
pub fn report(message: &str) {
    let mut line = String::with_capacity(message.len() + 1);
    line.push_str(message);
    line.push('\n');
    if io::stderr().lock().write_all(line.as_bytes()).is_err() {
        DROPPED.fetch_add(1, Ordering::Relaxed);
    }
}

/// The writer tracing-subscriber formats into: each `write` is one whole event (the fmt layer
/// writes an event with one `write_all`), handed to the queue. Never fails.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stderr;

impl Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        emit(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Stderr {
    type Writer = Stderr;

    fn make_writer(&'a self) -> Self::Writer {
        Stderr
    }
}
