//! The tokio side of file I/O (ARCHITECTURE.md §4): finds the files that match each source's globs,
//! runs one tail task per file, and feeds their batches into the bounded `mpsc` bridge that the
//! Reader actor drains. Knows nothing of actors or databases: positions come in at start (what the
//! database committed) and go out only inside batches.
//!
//! - [`lines`]: splitting bytes into lines.
//! - [`fingerprint`]: file identity.
//! - [`file`]: one file's task (truncation, rotation, deletion).
//! - [`known`]: the files met so far and their positions.
//! - [`copies`]: telling a copy (`copytruncate`) from a new file.
//! - [`descriptors`]: the file-descriptor budget.
//! - [`discover`]: the globs, compiled once, and the files they match.
//! - [`watch`]: file-system notifications that wake tasks early; a slow poll is the fallback.

pub mod copies;
mod cursor;
pub mod descriptors;
pub mod discover;
pub mod file;
pub mod fingerprint;
pub mod known;
pub mod lines;
pub mod watch;

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, Notify};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::{SourceConfig, StartAt};
use crate::record::{FileId, FileMeta, LineBatch, StoredPosition};
use copies::Contents;
use descriptors::{Descriptor, Descriptors};
use file::FileTail;
use fingerprint::{fnv1a, FINGERPRINT_MAX_BYTES};
use known::{Known, KnownFiles, SharedPath};

/// Most bytes of lines in one [`LineBatch`]. With `channel_capacity` batches in the bridge and
/// `mailbox_capacity` in each mailbox, this is what bounds the memory of queued lines.
pub const LINE_BATCH_MAX_BYTES: usize = 64 * 1024;

/// How much slower the fallback scan runs when every folder is watched by notifications.
pub const WATCHED_SCAN_FACTOR: u32 = 10;

/// How a tailer reads.
#[derive(Debug, Clone)]
pub struct TailSettings {
    pub read_buffer_bytes: usize,
    pub max_line_bytes: usize,
    /// A batch is sent when it holds this many lines…
    pub batch_lines: usize,
    /// …or this many bytes, or when the file has no more bytes for now.
    pub batch_bytes: usize,
    pub poll_interval: Duration,
    /// `run --once`: one scan, every file read to its end, then the bridge closes.
    pub once: bool,
}

/// Why a tail task ended, and where: the tailer keeps the position for when the same file
/// (same identity) is met again in this run.
#[derive(Debug)]
pub struct TailEnd {
    pub key: (u64, u64),
    /// Where the file was last found.
    pub path: PathBuf,
    /// Offset just past the last line that was handed to the bridge.
    pub sent_offset: u64,
    pub head: Vec<u8>,
    pub meta: Arc<FileMeta>,
    /// The path the `files` table has for the file, if it has a row.
    pub recorded_path: Option<Arc<str>>,
    /// Still not told apart from a copy: nothing was read from it.
    pub unsettled: bool,
    pub reason: EndReason,
}

#[derive(Debug, PartialEq, Eq)]
pub enum EndReason {
    /// `--once`: the file was read to its end.
    ReachedEnd,
    /// The file was renamed away and then stayed idle.
    Gone,
    /// The file was deleted, read to its end, and its position is being forgotten.
    Deleted,
    /// Shutdown or restart, or the bridge closed.
    Stopped,
    /// Reading failed (the message is logged).
    Failed,
    /// A new file turned out to be compressed (a rotated file being compressed).
    Compressed,
}

/// What a tail task needs besides its file.
pub struct TailTaskCtx {
    pub tx: mpsc::Sender<LineBatch>,
    pub cancel: CancellationToken,
    pub wake: Arc<Notify>,
    /// Set while file-system notifications cover the file's folder: the fallback poll then
    /// runs [`super::WATCHED_SCAN_FACTOR`] times slower.
    pub watched: Arc<std::sync::atomic::AtomicBool>,
    pub settings: Arc<TailSettings>,
    /// What the other tasks read: tells a copy from a new file (`copytruncate`).
    pub contents: Arc<Contents>,
    /// The descriptor budget: an idle file closes its own when another file waits for one.
    pub descriptors: Arc<Descriptors>,
}

/// A descriptor for a file that waited for one: (source index, path, first scan, descriptor).
type Granted = (usize, PathBuf, bool, Option<Descriptor>);

/// A file with a running tail task.
struct Tailing {
    path: SharedPath,
    wake: Arc<Notify>,
}

/// Finds files and runs their tail tasks. Owns the sending side of the bridge: when it and all its
/// tasks have ended, the bridge closes, and that is how the Reader learns that reading is over.
pub struct Tailer {
    sources: Vec<SourceConfig>,
    globs: Arc<discover::Globs>,
    settings: Arc<TailSettings>,
    tx: mpsc::Sender<LineBatch>,
    cancel: CancellationToken,
    /// Files by (device, inode).
    known: KnownFiles,
    /// Files with a running task.
    tailing: HashMap<(u64, u64), Tailing>,
    /// What the tasks read, to tell copies from new files.
    contents: Arc<Contents>,
    descriptors: Arc<Descriptors>,
    /// Files that wait for a descriptor (each has a task waiting for one, which hands it over
    /// through `granted`).
    waiting: HashSet<PathBuf>,
    granted_tx: mpsc::Sender<Granted>,
    granted: mpsc::Receiver<Granted>,
    tasks: JoinSet<TailEnd>,
    /// Paths already warned about (unreadable, not a regular file, compressed), so that a
    /// problem is reported once, not at every scan. Cleared for a path once it is tailed.
    warned: HashSet<PathBuf>,
    watch: watch::Watch,
}

impl Tailer {
    pub fn new(
        sources: Vec<SourceConfig>,
        settings: TailSettings,
        positions: Vec<StoredPosition>,
        tx: mpsc::Sender<LineBatch>,
        cancel: CancellationToken,
    ) -> Self {
        let contents = Arc::new(Contents::default());
        let known = KnownFiles::new(positions, &contents);
        let globs = Arc::new(discover::Globs::new(&sources));
        let watch = watch::Watch::new(globs.patterns());
        // Bounded: a waiting file's task waits here (yielding) while the tailer is busy.
        let (granted_tx, granted) = mpsc::channel(64);
        Tailer {
            sources,
            globs,
            settings: Arc::new(settings),
            tx,
            cancel,
            known,
            tailing: HashMap::new(),
            contents,
            descriptors: Arc::new(Descriptors::for_this_process()),
            waiting: HashSet::new(),
            granted_tx,
            granted,
            tasks: JoinSet::new(),
            warned: HashSet::new(),
            watch,
        }
    }

    /// Runs until cancelled (or, with `once`, until every file has been read to its end).
    pub async fn run(mut self) {
        self.scan(true).await;
        let scan_wake = self.watch.scan_wake();
        loop {
            let scan_interval = self.scan_interval();
            if self.settings.once && self.tasks.is_empty() && self.waiting.is_empty() {
                break;
            }
            tokio::select! {
                Some(ended) = self.tasks.join_next(), if !self.tasks.is_empty() => self.ended(ended),
                Some((idx, path, first, d)) = self.granted.recv() => {
                    self.waiting.remove(&path);
                    crate::metrics::files_waiting_for_descriptor(self.waiting.len());
                    let meta = std::fs::metadata(&path);
                    self.consider(idx, path, meta, first, d).await;
                }
                _ = scan_wake.notified(), if !self.settings.once => self.scan(false).await,
                _ = tokio::time::sleep(scan_interval), if !self.settings.once => self.scan(false).await,
                _ = self.cancel.cancelled() => break,
            }
        }
        self.cancel.cancel();
        while let Some(ended) = self.tasks.join_next().await {
            self.ended(ended);
        }
        tracing::debug!("Tailer stopped.");
    }

    /// How often the globs are expanded again without a notification: every `poll_interval`
    /// while some watched folder has no notifications, [`WATCHED_SCAN_FACTOR`] times slower when
    /// every folder is watched (a new file then wakes the scanner at once).
    fn scan_interval(&self) -> Duration {
        if self.watch.all_watched() {
            self.settings.poll_interval * WATCHED_SCAN_FACTOR
        } else {
            self.settings.poll_interval
        }
    }

    fn ended(&mut self, ended: Result<TailEnd, tokio::task::JoinError>) {
        let end = match ended {
            Ok(end) => end,
            Err(e) => {
                tracing::error!(error = %e, "A tail task panicked.");
                return;
            }
        };
        self.tailing.remove(&end.key);
        self.contents.ended(end.key);
        crate::metrics::files_tailed(self.tailing.len());
        self.watch.forget(end.key);
        match end.reason {
            // Its inode may be reused by a new file: nothing of it is worth remembering.
            EndReason::Deleted => {
                self.known.forget(&end.key);
                return;
            }
            EndReason::Compressed => {
                self.warn_once(
                    &end.path,
                    format_args!("compressed; skipped (logbelt reads plain text only)"),
                );
                return;
            }
            _ => {}
        }
        if end.unsettled {
            // Nothing was read: when met again, it is judged again.
            return;
        }
        let len = end
            .head
            .len()
            .min(end.sent_offset as usize)
            .min(FINGERPRINT_MAX_BYTES);
        self.known.insert(
            end.key,
            Known {
                meta: end.meta,
                offset: end.sent_offset,
                fingerprint_len: len as u32,
                fingerprint: fnv1a(&end.head[..len]),
                path: end.recorded_path,
            },
        );
    }

    /// Whether the file `key` already has a task. If so, and its current path no longer leads
    /// to it (renamed), it moves to `path`, where the scan found it, and its task records that.
    fn tailed_at(&mut self, key: (u64, u64), path: &Path) -> bool {
        let Some(t) = self.tailing.get(&key) else {
            return false;
        };
        let (current, _) = t.path.get();
        // Two names for one file (a hard link, a symlink): keep the one it has while it lasts.
        let moved = current != path
            && !std::fs::metadata(&current).is_ok_and(|m| (m.dev(), m.ino()) == key);
        if moved && t.path.set(path) {
            tracing::debug!(from = %Shown(&current.to_string_lossy()), to = %Shown(&path.to_string_lossy()), "Tailed file renamed.");
            wake(&t.wake);
        }
        true
    }

    /// Looks for files that match the globs and are not tailed yet.
    async fn scan(&mut self, first: bool) {
        self.watch.refresh();
        let globs = self.globs.clone();
        let found = tokio::task::spawn_blocking(move || globs.expand()).await;
        let found = match found {
            Ok(found) => found,
            Err(e) => {
                tracing::error!(error = %e, "Glob expansion failed.");
                return;
            }
        };
        // Files already known first: a known file whose content was truncated while logbelt
        // was stopped is then remembered before a copy of it is judged.
        let (known, new): (Vec<_>, Vec<_>) = found.into_iter().partition(|(_, _, m)| {
            m.as_ref()
                .is_ok_and(|m| self.known.contains(&(m.dev(), m.ino())))
        });
        for (source_idx, path, meta) in known.into_iter().chain(new) {
            if !self.waiting.contains(&path) {
                self.consider(source_idx, path, meta, first, None).await;
            }
        }
    }

    async fn consider(
        &mut self,
        source_idx: usize,
        path: PathBuf,
        meta: std::io::Result<std::fs::Metadata>,
        first: bool,
        descriptor: Option<Descriptor>,
    ) {
        let meta = match meta {
            Ok(m) => m,
            Err(e) => {
                self.warn_once(&path, format_args!("cannot stat: {e}"));
                return;
            }
        };
        if !meta.is_file() {
            if !meta.is_dir() {
                self.warn_once(&path, format_args!("not a regular file; skipped"));
            }
            return;
        }
        if self.tailed_at((meta.dev(), meta.ino()), &path) {
            return;
        }
        let Some(descriptor) = descriptor.or_else(|| self.descriptors.try_take()) else {
            self.wait_for_descriptor(source_idx, path, first);
            return;
        };
        let opened = {
            let path = path.clone();
            tokio::task::spawn_blocking(move || open_with_head(&path)).await
        };
        let (file, head, meta) = match opened {
            Ok(Ok(opened)) => opened,
            Ok(Err(e)) => {
                self.warn_once(
                    &path,
                    format_args!("cannot open or read: {e}; retrying at every scan"),
                );
                return;
            }
            Err(e) => {
                self.warn_once(&path, format_args!("cannot open: {e}"));
                return;
            }
        };
        // The path may have been renamed and replaced between the scan's stat and this open
        // (rotation): what counts is the file actually opened. Deciding on the stale key would
        // give the new file the old one's identity, and the new file a second task later.
        let key = (meta.dev(), meta.ino());
        if self.tailed_at(key, &path) {
            return;
        }
        if let Some(kind) = compression(&head) {
            self.warn_once(
                &path,
                format_args!("{kind}-compressed; skipped (logbelt reads plain text only)"),
            );
            return;
        }
        let (known, truncated) = self.known.take(key, &head, meta.len());
        for k in truncated {
            self.detach(k).await;
        }
        let source_name = self.sources[source_idx].name.clone();
        let from_end = first && self.sources[source_idx].start_at == StartAt::End;
        // `unsettled`: a new file, told apart from a copy by its first bytes (see `copies`).
        let (file_meta, offset, unsettled, recorded_path) = match known {
            Some(k) if k.held_by(&head) && k.offset <= meta.len() => {
                (k.meta, k.offset, false, k.path)
            }
            Some(k) if k.held_by(&head) => {
                tracing::info!(path = %Shown(&path.to_string_lossy()), position = k.offset, size = meta.len(), "File is shorter than its committed position (truncated); reading it from the start as a new file.");
                let source = k.meta.source.clone();
                self.detach(k).await;
                let meta = Arc::new(FileMeta {
                    id: new_file_id(),
                    source,
                });
                (meta, 0, false, None)
            }
            other => {
                if let Some(k) = other {
                    tracing::info!(path = %Shown(&path.to_string_lossy()), "File no longer starts with the bytes read from it (truncated and rewritten, or its inode reused); reading it from the start.");
                    self.detach(k).await;
                }
                let offset = if from_end { meta.len() } else { 0 };
                let meta = Arc::new(FileMeta {
                    id: new_file_id(),
                    source: source_name.as_str().into(),
                });
                (meta, offset, !from_end, None)
            }
        };
        self.warned.remove(&path);
        tracing::info!(path = %Shown(&path.to_string_lossy()), source = %source_name, position = offset, "Tailing file.");
        let file = Arc::new(file);
        let head = if unsettled { Vec::new() } else { head };
        self.contents.live(key, file.clone(), &head);
        let wake = self.watch.waker(key);
        let shared_path = SharedPath::new(path);
        let tail = FileTail {
            key,
            meta: file_meta,
            path: shared_path.clone(),
            recorded_path,
            row_outdated: false,
            file: Some(file),
            descriptor: Some(descriptor),
            offset,
            head,
            unsettled,
            keep_empty_lines: self.sources[source_idx].multiline.is_some(),
        };
        let ctx = TailTaskCtx {
            tx: self.tx.clone(),
            cancel: self.cancel.child_token(),
            wake: wake.clone(),
            watched: self.watch.all_watched_flag(),
            settings: self.settings.clone(),
            contents: self.contents.clone(),
            descriptors: self.descriptors.clone(),
        };
        self.tailing.insert(
            key,
            Tailing {
                path: shared_path,
                wake,
            },
        );
        crate::metrics::files_tailed(self.tailing.len());
        crate::metrics::file_to_read(offset, meta.len());
        self.tasks.spawn(tail.run(ctx));
    }

    /// Content truncated away from its file: remembered for a copy that may continue it, and
    /// its row made to name no inode (an empty batch behind the file's last).
    async fn detach(&mut self, k: Known) {
        self.contents.truncated(k.truncated());
        let Some(batch) = k.detach_batch() else {
            return;
        };
        tokio::select! {
            // A closed bridge means the pipeline is stopping: the row stays as it was, and the
            // next start decides again.
            _ = self.tx.send(batch) => {}
            _ = self.cancel.cancelled() => {}
        }
    }

    /// Every descriptor of the budget is in use: `path` waits for one (an idle file closes its
    /// own for it). Reading is never skipped, only delayed.
    fn wait_for_descriptor(&mut self, source_idx: usize, path: PathBuf, first: bool) {
        if !self.waiting.insert(path.clone()) {
            return;
        }
        if self.waiting.len() == 1 {
            tracing::warn!(
                budget = self.descriptors.budget(),
                "More files than file descriptors: files wait for one while idle files close theirs (raise `ulimit -n` to follow them all at once)."
            );
        }
        crate::metrics::files_waiting_for_descriptor(self.waiting.len());
        let (descriptors, tx, cancel) = (
            self.descriptors.clone(),
            self.granted_tx.clone(),
            self.cancel.clone(),
        );
        tokio::spawn(async move {
            tokio::select! {
                d = descriptors.take() => {
                    // Only fails when the tailer has stopped: nothing to hand over then.
                    let _ = tx.send((source_idx, path, first, d)).await;
                }
                _ = cancel.cancelled() => {}
            }
        });
    }

    fn warn_once(&mut self, path: &Path, what: std::fmt::Arguments<'_>) {
        if self.warned.insert(path.to_path_buf()) {
            tracing::warn!(path = %Shown(&path.to_string_lossy()), "{what}");
        }
    }
}

/// Opens a file, reads its first bytes (at most [`FINGERPRINT_MAX_BYTES`]) and its metadata,
/// all from the one handle.
fn open_with_head(path: &Path) -> std::io::Result<(std::fs::File, Vec<u8>, std::fs::Metadata)> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut head = Vec::with_capacity(FINGERPRINT_MAX_BYTES);
    (&mut file)
        .take(FINGERPRINT_MAX_BYTES as u64)
        .read_to_end(&mut head)?;
    let meta = file.metadata()?;
    Ok((file, head, meta))
}

/// The compression format whose magic bytes start `head`, if any.
fn compression(head: &[u8]) -> Option<&'static str> {
    const MAGICS: &[(&[u8], &str)] = &[
        (b"\x1f\x8b", "gzip"),
        (b"\x28\xb5\x2f\xfd", "zstd"),
        (b"BZh", "bzip2"),
        (b"\xfd7zXZ\x00", "xz"),
        (b"\x04\x22\x4d\x18", "lz4"),
    ];
    MAGICS
        .iter()
        .find(|(magic, _)| head.starts_with(magic))
        .map(|(_, kind)| *kind)
}

/// A key for a file met for the first time (or whose content was replaced): random, positive,
/// 63 bits, so collisions across hosts sharing one database are negligible.
pub(crate) fn new_file_id() -> FileId {
    fastrand::i64(1..i64::MAX)
}

/// A path as logbelt's own log shows it: control characters (an ANSI escape, a carriage return)
/// escaped, so that a file name cannot garble or forge log lines.
pub(crate) struct Shown<'a>(pub &'a str);

impl std::fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use std::fmt::Write;
        for c in self.0.chars() {
            if c.is_control() {
                write!(f, "{}", c.escape_default())?;
            } else {
                f.write_char(c)?;
            }
        }
        Ok(())
    }
}

/// Wakes `notify` from a plain thread (the file-system watcher's callback).
pub(crate) fn wake(notify: &Notify) {
    notify.notify_one();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shown_paths_escape_control_characters() {
        assert_eq!(
            Shown("/var/log/a\u{1b}[31mred\r.log").to_string(),
            "/var/log/a\\u{1b}[31mred\\r.log"
        );
        assert_eq!(
            Shown("/var/log/ünïcode.log").to_string(),
            "/var/log/ünïcode.log"
        );
    }
}
