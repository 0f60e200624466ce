//! One file's tail task: reads from its handle, splits lines, sends batches over the bounded
//! bridge, and notices truncation, rotation and deletion (ARCHITECTURE.md §4). It never commits
//! anything: its position only becomes durable when the writer commits the batch.

use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;

use super::copies::{Contents, Truncated, Verdict};
use super::descriptors::{Descriptor, Descriptors};
use super::fingerprint::{identity, FINGERPRINT_MAX_BYTES};
use super::lines::{LineSplitter, LinesOut};
use super::{Shown, TailSettings};
use crate::record::{FileMeta, FilePosition, LineBatch};

/// How long a rotated or deleted file is still followed after its last new byte: writers that
/// hold the old handle keep appending for a moment after a rename.
pub const ROTATED_FILE_GRACE: Duration = Duration::from_secs(5);

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

/// Whether `file` still begins with `head`.
fn starts_with(file: &std::fs::File, head: &[u8]) -> std::io::Result<bool> {
    let mut now = vec![0u8; head.len()];
    match file.read_exact_at(&mut now, 0) {
        Ok(()) => Ok(now == head),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e),
    }
}

/// Adds to `head` (the file's first bytes) whatever part of `chunk`, read at `offset`, extends it.
fn extend_head(head: &mut Vec<u8>, offset: u64, chunk: &[u8]) {
    let have = head.len() as u64;
    let end = offset + chunk.len() as u64;
    if have >= FINGERPRINT_MAX_BYTES as u64 || offset > have || end <= have {
        return;
    }
    let from = (have - offset) as usize;
    let to = (FINGERPRINT_MAX_BYTES as u64).min(end) - offset;
    head.extend_from_slice(&chunk[from..to as usize]);
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

/// The path a tailed file is found at now. The scanner moves it when the file is renamed to
/// another path the globs match, so that positions, `status` and metrics name the file where it
/// is.
#[derive(Debug, Clone)]
pub struct SharedPath(Arc<Mutex<(PathBuf, Arc<str>)>>);

impl SharedPath {
    pub fn new(path: PathBuf) -> Self {
        let text: Arc<str> = path.to_string_lossy().into();
        SharedPath(Arc::new(Mutex::new((path, text))))
    }

    /// The path now, and its text as stored.
    pub fn get(&self) -> (PathBuf, Arc<str>) {
        match self.0.lock() {
            Ok(p) => p.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Moves the path; returns whether it changed.
    pub fn set(&self, path: &Path) -> bool {
        let Ok(mut p) = self.0.lock() else {
            return false;
        };
        if p.0 == path {
            return false;
        }
        *p = (path.to_path_buf(), path.to_string_lossy().into());
        true
    }
}

pub struct FileTail {
    pub key: (u64, u64),
    pub meta: Arc<FileMeta>,
    pub path: SharedPath,
    /// The path the `files` table has for this file (`None`: no row yet). When the file has
    /// moved and has nothing new to send, an empty batch records the new path.
    pub recorded_path: Option<Arc<str>>,
    /// The open file, shared with the blocking reads (positional: no seek state). `None` while
    /// closed: idle, its descriptor lent to a file that waited for one.
    pub file: Option<Arc<std::fs::File>>,
    /// Its share of the descriptor budget, held while it is open.
    pub descriptor: Option<Descriptor>,
    /// Offset at which reading starts (a line boundary).
    pub offset: u64,
    /// The file's first bytes, up to [`FINGERPRINT_MAX_BYTES`] (at least up to `offset`).
    pub head: Vec<u8>,
    /// A new file not yet told apart from a copy (see [`super::copies`]): its first bytes decide,
    /// when they arrive, whether it is new, continues truncated content, or waits.
    pub unsettled: bool,
}

/// What [`FileTail::changed`] found.
enum Change {
    None,
    Grew,
    Truncated,
}

enum Stop {
    Cancelled,
    Closed,
}

/// What to do with the first bytes of an unsettled file.
enum Settle {
    /// Read on from `read_offset` (new file: 0; a continuation: where the original stopped).
    Read,
    /// Nothing to read for now: wait.
    Wait,
    /// Compressed (a rotated file being compressed): not for logbelt.
    Compressed,
}

impl FileTail {
    /// Runs until the file is done with (see [`EndReason`]).
    pub async fn run(mut self, ctx: TailTaskCtx) -> TailEnd {
        let settings = ctx.settings.clone();
        let mut splitter = LineSplitter::new(self.offset, settings.max_line_bytes);
        let mut read_offset = self.offset;
        let mut sent_offset = self.offset;
        // The read buffer exists only while there is something to read: a thousand idle files
        // must not hold a thousand buffers.
        let mut buf: Vec<u8> = Vec::new();
        let mut out = LinesOut::default();
        // Set once the path no longer leads to this file: when it then idles, the task ends.
        let mut orphaned_since: Option<Instant> = None;
        // Set after each wait (with whether a notification woke us): before reading on, check
        // that the file was not truncated meanwhile (copytruncate), even if it has grown past our
        // position again since, and skip the read when nothing changed.
        let mut woke: Option<bool> = None;
        let contents = ctx.contents.clone();
        let reason = loop {
            if ctx.cancel.is_cancelled() {
                break EndReason::Stopped;
            }
            // Created before the first bytes are judged, so that truncated content remembered
            // meanwhile is not missed by the wait below.
            let copies_changed = contents.changed().notified();
            tokio::pin!(copies_changed);
            if self.unsettled {
                copies_changed.as_mut().enable();
            }
            let (path, path_str) = self.path.get();
            let mut nothing_new = false;
            if let Some(notified) = woke.take() {
                let open = match self.file {
                    Some(_) => true,
                    None => match self.reopen(&ctx, &path, read_offset, notified).await {
                        Ok(open) => open,
                        Err(_) => break EndReason::Stopped,
                    },
                };
                let change = if open {
                    self.changed(read_offset, notified)
                } else {
                    Ok(Change::None)
                };
                match change {
                    Ok(Change::None) => nothing_new = true,
                    Ok(Change::Grew) => {}
                    Ok(Change::Truncated) if self.unsettled => {}
                    Ok(Change::Truncated) => {
                        tracing::info!(path = %Shown(&path_str), position = read_offset, "File truncated; reading it again from the start.");
                        // Lines of the old content read before the truncation was seen.
                        if splitter.boundary() > sent_offset {
                            match self
                                .send(&ctx, &mut out, &splitter, sent_offset, &path_str)
                                .await
                            {
                                Ok(()) => sent_offset = splitter.boundary(),
                                Err(_) => break EndReason::Stopped,
                            }
                        }
                        // The old content may live on in a copy (copytruncate): remember it, and
                        // let its row name no inode, so that after a restart it is still told
                        // apart from the new content and can be continued by its copy.
                        if self.recorded_path.is_some()
                            && self.detach(&ctx, sent_offset, &path_str).await.is_err()
                        {
                            break EndReason::Stopped;
                        }
                        self.recorded_path = None;
                        let fp = identity(self.key.0, self.key.1, &self.head, sent_offset);
                        contents.truncated(Truncated {
                            meta: self.meta.clone(),
                            offset: sent_offset,
                            fingerprint_len: fp.fingerprint_len,
                            fingerprint: fp.fingerprint,
                            head: Some(self.head.clone()),
                        });
                        // New content: a new file id, so that (file_id, file_offset) stays unique
                        // and the old content's position never moves backwards.
                        self.meta = Arc::new(FileMeta {
                            id: super::new_file_id(),
                            source: self.meta.source.clone(),
                        });
                        read_offset = 0;
                        sent_offset = 0;
                        splitter = LineSplitter::new(0, settings.max_line_bytes);
                        out = LinesOut::default();
                        self.head.clear();
                        contents.set_head(self.key, &self.head);
                    }
                    Err(e) => {
                        tracing::warn!(path = %Shown(&path_str), error = %e, "Cannot check the open file.");
                        break EndReason::Failed;
                    }
                }
            }
            let read = if nothing_new {
                Ok(0)
            } else {
                if buf.is_empty() {
                    buf = vec![0u8; settings.read_buffer_bytes];
                }
                // Positional reads on a blocking thread (as tokio::fs does), one per chunk. The
                // first bytes are checked after the read: a file truncated and written again
                // while we read (copytruncate while reading behind) must not have its new bytes
                // taken for the old content's continuation.
                let file = match self.open_file() {
                    Ok(f) => f.clone(),
                    Err(e) => {
                        tracing::warn!(path = %Shown(&path_str), error = %e, "Read failed; the file is retried at the next scan.");
                        break EndReason::Failed;
                    }
                };
                let (mut chunk, at) = (std::mem::take(&mut buf), read_offset);
                let head = (!self.head.is_empty() && at > 0).then(|| self.head.clone());
                let done = tokio::task::spawn_blocking(move || {
                    let n = file.read_at(&mut chunk, at);
                    let same = match (&n, head) {
                        (Ok(n), Some(head)) if *n > 0 => starts_with(&file, &head),
                        _ => Ok(true),
                    };
                    (chunk, n, same)
                })
                .await;
                match done {
                    Ok((chunk, _, Ok(false))) => {
                        // Not the content we were reading: the check below says what happened.
                        buf = chunk;
                        woke = Some(true);
                        continue;
                    }
                    Ok((chunk, n, Ok(true))) => {
                        buf = chunk;
                        n
                    }
                    Ok((chunk, _, Err(e))) => {
                        buf = chunk;
                        Err(e)
                    }
                    Err(e) => Err(std::io::Error::other(e)),
                }
            };
            let mut n = match read {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(path = %Shown(&path_str), error = %e, "Read failed; the file is retried at the next scan.");
                    break EndReason::Failed;
                }
            };
            if n > 0 && self.unsettled {
                match self.settle(&contents, &buf[..n], &path_str) {
                    Ok(Settle::Read) if read_offset == self.offset => {}
                    Ok(Settle::Read) => {
                        read_offset = self.offset;
                        sent_offset = self.offset;
                        splitter = LineSplitter::new(self.offset, settings.max_line_bytes);
                        continue;
                    }
                    Ok(Settle::Wait) => n = 0,
                    Ok(Settle::Compressed) => break EndReason::Compressed,
                    Err(e) => {
                        tracing::warn!(path = %Shown(&path_str), error = %e, "Cannot check the open file.");
                        break EndReason::Failed;
                    }
                }
            }
            if n > 0 {
                let had = self.head.len();
                extend_head(&mut self.head, read_offset, &buf[..n]);
                if self.head.len() != had {
                    contents.set_head(self.key, &self.head);
                }
                read_offset += n as u64;
                if orphaned_since.is_some() {
                    orphaned_since = Some(Instant::now());
                }
                let mut fed = 0;
                let mut stopped = false;
                while fed < n {
                    fed += splitter.feed_until(&buf[fed..n], &mut out, settings.batch_lines);
                    if out.lines.len() >= settings.batch_lines
                        || out.buf.len() >= settings.batch_bytes
                    {
                        match self
                            .send(&ctx, &mut out, &splitter, sent_offset, &path_str)
                            .await
                        {
                            Ok(()) => sent_offset = splitter.boundary(),
                            Err(_) => {
                                stopped = true;
                                break;
                            }
                        }
                    }
                }
                if stopped {
                    break EndReason::Stopped;
                }
                continue;
            }
            // At the end of what is there now: hand over what was read, or record where the file
            // has moved to.
            let moved = !self.unsettled
                && self
                    .recorded_path
                    .as_ref()
                    .is_some_and(|p| **p != *path_str);
            if splitter.boundary() > sent_offset || moved {
                match self
                    .send(&ctx, &mut out, &splitter, sent_offset, &path_str)
                    .await
                {
                    Ok(()) => sent_offset = splitter.boundary(),
                    Err(_) => break EndReason::Stopped,
                }
            }
            if settings.once {
                break EndReason::ReachedEnd;
            }
            buf = Vec::new();
            let still_ours = match std::fs::metadata(&path) {
                Ok(m) => (m.dev(), m.ino()) == self.key,
                Err(_) => false,
            };
            if still_ours {
                orphaned_since = None;
            } else {
                let since = *orphaned_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= ROTATED_FILE_GRACE {
                    // Deleted (no name left, it can never be met again): forget its position.
                    // Merely renamed: keep it, the file may match a glob under its new name.
                    let deleted = self
                        .file
                        .as_ref()
                        .is_some_and(|f| f.metadata().is_ok_and(|m| m.nlink() == 0));
                    if deleted {
                        tracing::debug!(path = %Shown(&path_str), "Deleted file read to its end; forgetting it.");
                        if !self.unsettled
                            && self.forget(&ctx, sent_offset, &path_str).await.is_err()
                        {
                            break EndReason::Stopped;
                        }
                        break EndReason::Deleted;
                    }
                    tracing::debug!(path = %Shown(&path_str), "Rotated file is idle; done with it.");
                    break EndReason::Gone;
                }
            }
            let mut poll = if ctx.watched.load(std::sync::atomic::Ordering::Relaxed) {
                settings.poll_interval * super::WATCHED_SCAN_FACTOR
            } else {
                settings.poll_interval
            };
            if let Some(since) = orphaned_since {
                // Renamed away: look again when the grace ends, whatever the poll.
                poll = poll.min(ROTATED_FILE_GRACE.saturating_sub(since.elapsed()));
            }
            if self.file.is_some() && ctx.descriptors.should_release() {
                // Idle at its end while another file waits for a descriptor: lend ours.
                tracing::debug!(path = %Shown(&path_str), "Idle file closed; another file waits for a descriptor.");
                self.file = None;
                self.descriptor = None;
                contents.set_file(self.key, None);
            }
            // Only an open file listens for requests: a request (one file woken per request,
            // or kept for the next listener) must reach a file that can close.
            let descriptor_wanted = ctx.descriptors.idle_wake().notified();
            tokio::pin!(descriptor_wanted);
            woke = Some(tokio::select! {
                _ = ctx.wake.notified() => true,
                _ = &mut descriptor_wanted, if self.file.is_some() => false,
                _ = &mut copies_changed, if self.unsettled => true,
                _ = tokio::time::sleep(poll) => false,
                _ = ctx.cancel.cancelled() => break EndReason::Stopped,
            });
        };
        // Its handle there would keep the file open after its descriptor is given back.
        contents.ended(self.key);
        self.end(sent_offset, reason)
    }

    /// Judges the first bytes of an unsettled file (read at offset 0): a compressed file, a new
    /// file, the continuation of truncated content, or a copy to wait on.
    fn settle(&mut self, contents: &Contents, first: &[u8], path: &str) -> std::io::Result<Settle> {
        if super::compression(first).is_some() {
            return Ok(Settle::Compressed);
        }
        let head = &first[..first.len().min(FINGERPRINT_MAX_BYTES)];
        let file = self.open_file()?;
        let size = file.metadata()?.len();
        match contents.classify(self.key, head, size, file) {
            Verdict::Wait => return Ok(Settle::Wait),
            Verdict::New => {}
            Verdict::Continues { meta, offset } if offset <= size => {
                tracing::info!(path = %Shown(path), position = offset, "A copy of truncated content (copytruncate); reading on where the original stopped.");
                self.meta = meta;
                self.offset = offset;
                // The row names the original: record the copy's path and identity even if it
                // has no line to add.
                self.recorded_path = Some(Arc::from(""));
            }
            Verdict::Continues { offset, .. } => {
                // The original was read past the point where the copy was taken: nothing in the
                // copy is new.
                tracing::info!(path = %Shown(path), position = offset, size, "A copy of truncated content that was read to its end; following it from its end.");
                self.offset = size;
                // Its row (a new file id) records that it is read, for after a restart.
                self.recorded_path = Some(Arc::from(""));
            }
        }
        self.unsettled = false;
        self.head = head.to_vec();
        contents.set_head(self.key, &self.head);
        Ok(Settle::Read)
    }

    /// What happened to the open file while the task waited: it is shorter than `read_offset`,
    /// or its first bytes are no longer the ones read from it (truncated); it is longer (grew);
    /// or neither. The first bytes are compared only when the size changed or a notification
    /// said the file was written (a rewrite to the very same size). Plain blocking calls (an
    /// fstat, at most a 1 KiB pread): microseconds on a local file, without the thread hop of
    /// tokio::fs, so that a thousand idle files cost next to nothing.
    fn changed(&self, read_offset: u64, notified: bool) -> std::io::Result<Change> {
        let file = self.open_file()?;
        let len = file.metadata()?.len();
        if len < read_offset {
            return Ok(Change::Truncated);
        }
        if (len == read_offset && !notified) || self.head.is_empty() {
            return Ok(if len == read_offset {
                Change::None
            } else {
                Change::Grew
            });
        }
        Ok(if !starts_with(file, &self.head)? {
            Change::Truncated
        } else if len == read_offset {
            Change::None
        } else {
            Change::Grew
        })
    }

    /// The open file (a closed one is opened again before it is read or checked).
    fn open_file(&self) -> std::io::Result<&Arc<std::fs::File>> {
        self.file
            .as_ref()
            .ok_or_else(|| std::io::Error::other("the file is closed"))
    }

    /// Opens the idle-closed file again if it may have changed: found at its path, by identity,
    /// once a descriptor is free. Returns whether it is open; `Err` when cancelled meanwhile.
    async fn reopen(
        &mut self,
        ctx: &TailTaskCtx,
        path: &Path,
        read_offset: u64,
        notified: bool,
    ) -> Result<bool, Stop> {
        let ours = |m: &std::fs::Metadata| (m.dev(), m.ino()) == self.key;
        // Not at its path (renamed away while closed): the grace logic decides.
        match std::fs::metadata(path) {
            Ok(m) if ours(&m) && (m.len() != read_offset || notified) => {}
            _ => return Ok(false),
        }
        let descriptor = tokio::select! {
            d = ctx.descriptors.take() => d,
            _ = ctx.cancel.cancelled() => return Err(Stop::Cancelled),
        };
        let file = match std::fs::File::open(path) {
            Ok(f) if f.metadata().is_ok_and(|m| ours(&m)) => Arc::new(f),
            Ok(_) => return Ok(false),
            Err(e) => {
                tracing::debug!(path = %Shown(&path.to_string_lossy()), error = %e, "Cannot open the idle file again; trying at its next change.");
                return Ok(false);
            }
        };
        ctx.contents.set_file(self.key, Some(file.clone()));
        self.file = Some(file);
        self.descriptor = descriptor;
        Ok(true)
    }

    fn end(self, sent_offset: u64, reason: EndReason) -> TailEnd {
        TailEnd {
            key: self.key,
            path: self.path.get().0,
            sent_offset,
            head: self.head,
            meta: self.meta,
            recorded_path: self.recorded_path,
            unsettled: self.unsettled,
            reason,
        }
    }

    /// Sends the empty batch that forgets this (deleted) file's position once everything before
    /// it is committed.
    async fn forget(&self, ctx: &TailTaskCtx, offset: u64, path: &Arc<str>) -> Result<(), Stop> {
        let position = self.position(path, offset, true);
        self.hand_over(ctx, LinesOut::default(), 0, position).await
    }

    /// Sends the empty batch that records that this file id's content is no longer on its inode
    /// (truncated away): its row keeps the position and fingerprint, with device and inode 0.
    async fn detach(&self, ctx: &TailTaskCtx, offset: u64, path: &Arc<str>) -> Result<(), Stop> {
        let mut position = self.position(path, offset, false);
        position.identity = position.identity.detached();
        self.hand_over(ctx, LinesOut::default(), 0, position).await
    }

    /// Sends the lines gathered so far (perhaps none: then only the position, with the path).
    async fn send(
        &mut self,
        ctx: &TailTaskCtx,
        out: &mut LinesOut,
        splitter: &LineSplitter,
        sent_offset: u64,
        path: &Arc<str>,
    ) -> Result<(), Stop> {
        let lines = std::mem::take(out);
        let offset = splitter.boundary();
        let bytes = offset.saturating_sub(sent_offset);
        crate::metrics::lines_read(
            &self.meta.source,
            lines.lines.len() + lines.empty_lines as usize,
            bytes,
        );
        let position = self.position(path, offset, false);
        self.hand_over(ctx, lines, bytes, position).await?;
        self.recorded_path = Some(path.clone());
        Ok(())
    }

    /// Where this file stands at `offset`, with its identity there.
    fn position(&self, path: &Arc<str>, offset: u64, forget: bool) -> FilePosition {
        FilePosition {
            file: self.meta.clone(),
            path: path.clone(),
            identity: identity(self.key.0, self.key.1, &self.head, offset),
            offset,
            forget,
        }
    }

    /// Puts a batch on the bridge. Waits while the bridge is full: that is the backpressure.
    async fn hand_over(
        &self,
        ctx: &TailTaskCtx,
        lines: LinesOut,
        bytes: u64,
        position: FilePosition,
    ) -> Result<(), Stop> {
        let batch = LineBatch {
            buf: lines.buf,
            lines: lines.lines,
            empty_lines: lines.empty_lines,
            bytes,
            position,
        };
        tokio::select! {
            r = ctx.tx.send(batch) => r.map_err(|_| Stop::Closed),
            _ = ctx.cancel.cancelled() => Err(Stop::Cancelled),
        }
    }
}
