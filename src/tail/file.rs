//! One file's tail task: reads from its handle, splits lines, sends batches over the bounded
//! bridge, and notices truncation, rotation and deletion (ARCHITECTURE.md §4). It never commits
//! anything: its position only becomes durable when the writer commits the batch.

use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::copies::{Contents, Truncated, Verdict};
use super::cursor::Cursor;
use super::descriptors::Descriptor;
use super::fingerprint::{extend_head, identity, starts_with, FINGERPRINT_MAX_BYTES};
use super::known::{Known, SharedPath};
use super::lines::LinesOut;
use super::{EndReason, Shown, TailEnd, TailTaskCtx};
use crate::record::{FileMeta, FilePosition, LineBatch};

/// How long a rotated or deleted file is still followed after its last new byte: writers that
/// hold the old handle keep appending for a moment after a rename.
pub const ROTATED_FILE_GRACE: Duration = Duration::from_secs(5);

pub struct FileTail {
    pub key: (u64, u64),
    pub meta: Arc<FileMeta>,
    pub path: SharedPath,
    /// The path the `files` table has for this file (`None`: no row yet). When the file has
    /// moved and has nothing new to send, an empty batch records the new path.
    pub recorded_path: Option<Arc<str>>,
    /// The file's row does not describe it yet (a copy that took over truncated content, or
    /// one read to its end on arrival): an empty batch records its path and identity even when
    /// it has no line to send.
    pub row_outdated: bool,
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
    /// Emit empty lines instead of only counting them (a multiline source's events hold them).
    pub keep_empty_lines: bool,
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

/// The outcome of one phase of the loop: go on, or end the task for this reason.
type Turn<T = ()> = Result<T, EndReason>;

/// A failed hand-over ends the task: the pipeline is stopping.
impl From<Stop> for EndReason {
    fn from(_: Stop) -> Self {
        EndReason::Stopped
    }
}

impl FileTail {
    /// Runs until the file is done with (see [`EndReason`]).
    pub async fn run(mut self, ctx: TailTaskCtx) -> TailEnd {
        let mut cur = Cursor::at(
            self.offset,
            ctx.settings.max_line_bytes,
            self.keep_empty_lines,
        );
        let reason = loop {
            if let Err(reason) = self.turn(&ctx, &mut cur).await {
                break reason;
            }
        };
        // Its handle there would keep the file open after its descriptor is given back.
        ctx.contents.ended(self.key);
        self.end(cur.sent, reason)
    }

    /// One turn of the loop: after a wait, check what changed; read a chunk and hand its lines
    /// over; or, at the end of what is there, settle what is due and wait.
    async fn turn(&mut self, ctx: &TailTaskCtx, cur: &mut Cursor) -> Turn {
        if ctx.cancel.is_cancelled() {
            return Err(EndReason::Stopped);
        }
        // Created before the first bytes are judged, so that truncated content remembered
        // meanwhile is not missed by the wait below.
        let copies_changed = ctx.contents.changed().notified();
        tokio::pin!(copies_changed);
        if self.unsettled {
            copies_changed.as_mut().enable();
        }
        let (path, path_str) = self.path.get();
        let nothing_new = match cur.woke.take() {
            Some(notified) => {
                !self
                    .after_wait(ctx, cur, &path, &path_str, notified)
                    .await?
            }
            None => false,
        };
        let mut n = 0;
        if !nothing_new {
            match self.read_chunk(ctx, cur, &path_str).await? {
                Some(read) => n = read,
                None => {
                    // Not the content we were reading: the check after a wait says what happened.
                    cur.woke = Some(true);
                    return Ok(());
                }
            }
        }
        if n > 0 && self.unsettled {
            let first = std::mem::take(&mut cur.buf);
            let settled = self.settle(&ctx.contents, &first[..n], &path_str);
            cur.buf = first;
            match settled {
                Ok(Settle::Read) if cur.read == self.offset => {}
                Ok(Settle::Read) => {
                    cur.restart_at(self.offset);
                    return Ok(());
                }
                Ok(Settle::Wait) => n = 0,
                Ok(Settle::Compressed) => return Err(EndReason::Compressed),
                Err(e) => {
                    tracing::warn!(path = %Shown(&path_str), error = %e, "Cannot check the open file.");
                    return Err(EndReason::Failed);
                }
            }
        }
        if n > 0 {
            return self.take_lines(ctx, cur, n, &path_str).await;
        }
        cur.buf = Vec::new();
        self.at_end(ctx, cur, &path, &path_str).await?;
        self.wait(ctx, cur, copies_changed, &path_str).await
    }

    /// After a wait: opens the file again if it was closed, and checks what changed. A
    /// truncation hands over what was read of the old content, remembers it for a copy, and
    /// starts the new content as a new file id. Returns whether there may be something to read.
    async fn after_wait(
        &mut self,
        ctx: &TailTaskCtx,
        cur: &mut Cursor,
        path: &Path,
        path_str: &Arc<str>,
        notified: bool,
    ) -> Turn<bool> {
        let open = match self.file {
            Some(_) => true,
            None => self.reopen(ctx, path, cur.read, notified).await?,
        };
        if !open {
            return Ok(false);
        }
        match self.changed(cur.read, notified) {
            Ok(Change::None) => Ok(false),
            Ok(Change::Grew) => Ok(true),
            Ok(Change::Truncated) if self.unsettled => Ok(true),
            Ok(Change::Truncated) => {
                tracing::info!(path = %Shown(path_str), position = cur.read, "File truncated; reading it again from the start.");
                self.truncated(ctx, cur, path_str).await?;
                Ok(true)
            }
            Err(e) => {
                tracing::warn!(path = %Shown(path_str), error = %e, "Cannot check the open file.");
                Err(EndReason::Failed)
            }
        }
    }

    /// The file was truncated (or rewritten): the old content's lines read so far go out, the
    /// old content is remembered (a copy may continue it) and its row made to name no inode, so
    /// that after a restart it is still told apart from the new content; the new content is a
    /// new file id, so that `(file_id, file_offset)` stays unique and no position moves back.
    async fn truncated(&mut self, ctx: &TailTaskCtx, cur: &mut Cursor, path: &Arc<str>) -> Turn {
        if cur.splitter.boundary() > cur.sent {
            self.send(ctx, cur, path).await?;
        }
        if self.recorded_path.is_some() {
            self.detach(ctx, cur.sent, path).await?;
        }
        self.recorded_path = None;
        let fp = identity(self.key.0, self.key.1, &self.head, cur.sent);
        ctx.contents.truncated(Truncated {
            content: Known {
                meta: self.meta.clone(),
                offset: cur.sent,
                fingerprint_len: fp.fingerprint_len,
                fingerprint: fp.fingerprint,
                path: None,
            },
            head: Some(self.head.clone()),
        });
        self.meta = Arc::new(FileMeta {
            id: super::new_file_id(),
            source: self.meta.source.clone(),
        });
        cur.restart_at(0);
        self.head.clear();
        ctx.contents.set_head(self.key, &self.head);
        Ok(())
    }

    /// Reads the next chunk into `cur.buf`: its length (0 at the end), or `None` when the file
    /// no longer starts with the bytes read from it. Positional reads on a blocking thread (as
    /// tokio::fs does). The first bytes are checked after the read: a file truncated and written
    /// again while we read (copytruncate while reading behind) must not have its new bytes taken
    /// for the old content's continuation.
    async fn read_chunk(
        &mut self,
        ctx: &TailTaskCtx,
        cur: &mut Cursor,
        path: &Arc<str>,
    ) -> Turn<Option<usize>> {
        let fail = |e: std::io::Error| {
            tracing::warn!(path = %Shown(path), error = %e, "Read failed; the file is retried at the next scan.");
            EndReason::Failed
        };
        let file = self.open_file().map_err(fail)?.clone();
        if cur.buf.is_empty() {
            cur.buf = vec![0u8; ctx.settings.read_buffer_bytes];
        }
        let (mut chunk, at) = (std::mem::take(&mut cur.buf), cur.read);
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
        let (chunk, n, same) = done.map_err(|e| fail(std::io::Error::other(e)))?;
        cur.buf = chunk;
        match (n.map_err(fail)?, same.map_err(fail)?) {
            (_, false) => Ok(None),
            (n, true) => Ok(Some(n)),
        }
    }

    /// Splits the `n` bytes just read and hands over full batches.
    async fn take_lines(
        &mut self,
        ctx: &TailTaskCtx,
        cur: &mut Cursor,
        n: usize,
        path: &Arc<str>,
    ) -> Turn {
        let had = self.head.len();
        extend_head(&mut self.head, cur.read, &cur.buf[..n]);
        if self.head.len() != had {
            ctx.contents.set_head(self.key, &self.head);
        }
        cur.read += n as u64;
        if cur.orphaned_since.is_some() {
            cur.orphaned_since = Some(Instant::now());
        }
        let settings = &ctx.settings;
        let mut fed = 0;
        while fed < n {
            fed += cur
                .splitter
                .feed_until(&cur.buf[fed..n], &mut cur.out, settings.batch_lines);
            if cur.out.lines.len() >= settings.batch_lines
                || cur.out.buf.len() >= settings.batch_bytes
            {
                self.send(ctx, cur, path).await?;
            }
        }
        Ok(())
    }

    /// At the end of what is there now: hands over what was read (or records where the file
    /// has moved to); with `--once`, ends; a file renamed away (or deleted) that stays idle for
    /// [`ROTATED_FILE_GRACE`] ends too.
    async fn at_end(
        &mut self,
        ctx: &TailTaskCtx,
        cur: &mut Cursor,
        path: &Path,
        path_str: &Arc<str>,
    ) -> Turn {
        let moved = !self.unsettled
            && (self.row_outdated
                || self
                    .recorded_path
                    .as_ref()
                    .is_some_and(|p| **p != **path_str));
        if cur.splitter.boundary() > cur.sent || moved {
            self.send(ctx, cur, path_str).await?;
        }
        if ctx.settings.once {
            return Err(EndReason::ReachedEnd);
        }
        let still_ours = std::fs::metadata(path).is_ok_and(|m| (m.dev(), m.ino()) == self.key);
        if still_ours {
            cur.orphaned_since = None;
            return Ok(());
        }
        let since = *cur.orphaned_since.get_or_insert_with(Instant::now);
        if since.elapsed() < ROTATED_FILE_GRACE {
            return Ok(());
        }
        // Deleted (no name left, it can never be met again): forget its position. Merely
        // renamed: keep it, the file may match a glob under its new name.
        let deleted = self
            .file
            .as_ref()
            .is_some_and(|f| f.metadata().is_ok_and(|m| m.nlink() == 0));
        if deleted {
            tracing::debug!(path = %Shown(path_str), "Deleted file read to its end; forgetting it.");
            if !self.unsettled {
                self.forget(ctx, cur.sent, path_str).await?;
            }
            return Err(EndReason::Deleted);
        }
        tracing::debug!(path = %Shown(path_str), "Rotated file is idle; done with it.");
        Err(EndReason::Gone)
    }

    /// Waits for a notification, the poll, truncated content that a copy may continue (while
    /// unsettled), or a file that waits for a descriptor; closes the file first if one waits.
    async fn wait(
        &mut self,
        ctx: &TailTaskCtx,
        cur: &mut Cursor,
        copies_changed: std::pin::Pin<&mut tokio::sync::futures::Notified<'_>>,
        path: &Arc<str>,
    ) -> Turn {
        let settings = &ctx.settings;
        let mut poll = if ctx.watched.load(std::sync::atomic::Ordering::Relaxed) {
            settings.poll_interval * super::WATCHED_SCAN_FACTOR
        } else {
            settings.poll_interval
        };
        if let Some(since) = cur.orphaned_since {
            // Renamed away: look again when the grace ends, whatever the poll.
            poll = poll.min(ROTATED_FILE_GRACE.saturating_sub(since.elapsed()));
        }
        if self.file.is_some() && ctx.descriptors.should_release() {
            // Idle at its end while another file waits for a descriptor: lend ours.
            tracing::debug!(path = %Shown(path), "Idle file closed; another file waits for a descriptor.");
            self.file = None;
            self.descriptor = None;
            ctx.contents.set_file(self.key, None);
        }
        // Only an open file listens for requests: a request (one file woken per request, or
        // kept for the next listener) must reach a file that can close.
        let descriptor_wanted = ctx.descriptors.idle_wake().notified();
        tokio::pin!(descriptor_wanted);
        cur.woke = Some(tokio::select! {
            _ = ctx.wake.notified() => true,
            _ = &mut descriptor_wanted, if self.file.is_some() => false,
            _ = copies_changed, if self.unsettled => true,
            _ = tokio::time::sleep(poll) => false,
            _ = ctx.cancel.cancelled() => return Err(EndReason::Stopped),
        });
        Ok(())
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
                // The row names the original: record the copy's path and identity.
                self.row_outdated = true;
            }
            Verdict::Continues { offset, .. } => {
                // The original was read past the point where the copy was taken: nothing in the
                // copy is new.
                tracing::info!(path = %Shown(path), position = offset, size, "A copy of truncated content that was read to its end; following it from its end.");
                self.offset = size;
                // Its row (a new file id) records that it is read, for after a restart.
                self.row_outdated = true;
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
    /// once a descriptor is free. Returns whether it is open.
    async fn reopen(
        &mut self,
        ctx: &TailTaskCtx,
        path: &Path,
        read_offset: u64,
        notified: bool,
    ) -> Turn<bool> {
        let ours = |m: &std::fs::Metadata| (m.dev(), m.ino()) == self.key;
        // Not at its path (renamed away while closed): the grace logic decides.
        match std::fs::metadata(path) {
            Ok(m) if ours(&m) && (m.len() != read_offset || notified) => {}
            _ => return Ok(false),
        }
        let descriptor = tokio::select! {
            d = ctx.descriptors.take() => d,
            _ = ctx.cancel.cancelled() => return Err(EndReason::Stopped),
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

    /// Hands over the lines split so far (perhaps none: then only the position, with the path).
    async fn send(&mut self, ctx: &TailTaskCtx, cur: &mut Cursor, path: &Arc<str>) -> Turn {
        let lines = std::mem::take(&mut cur.out);
        let offset = cur.splitter.boundary();
        let bytes = offset.saturating_sub(cur.sent);
        crate::metrics::lines_read(
            &self.meta.source,
            lines.lines.len() + lines.empty_lines as usize,
            bytes,
        );
        crate::metrics::nul_bytes_dropped(path, lines.nul_bytes);
        let position = self.position(path, offset, false);
        self.hand_over(ctx, lines, bytes, position).await?;
        self.recorded_path = Some(path.clone());
        self.row_outdated = false;
        cur.sent = offset;
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
