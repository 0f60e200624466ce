//! A tail task's read cursor: where it reads next, what it has handed over, and the line
//! splitter between the two ([`super::file`]).

use std::time::Instant;

use super::lines::{LineSplitter, LinesOut};

/// Where a task stands in its file: the loop's state.
pub(super) struct Cursor {
    /// Offset of the next read.
    pub(super) read: u64,
    /// Offset just past the last line handed to the bridge.
    pub(super) sent: u64,
    pub(super) splitter: LineSplitter,
    /// Lines split but not handed over yet.
    pub(super) out: LinesOut,
    /// Set once the path no longer leads to this file: when it then idles, the task ends.
    pub(super) orphaned_since: Option<Instant>,
    /// Set after each wait (with whether a notification woke us): before reading on, check that
    /// the file was not truncated meanwhile (copytruncate), even if it has grown past our
    /// position again since, and skip the read when nothing changed.
    pub(super) woke: Option<bool>,
    /// The read buffer, only while there is something to read: a thousand idle files must not
    /// hold a thousand buffers.
    pub(super) buf: Vec<u8>,
}

impl Cursor {
    pub(super) fn at(offset: u64, max_line_bytes: usize, keep_empty_lines: bool) -> Self {
        Cursor {
            read: offset,
            sent: offset,
            splitter: LineSplitter::new(offset, max_line_bytes).keep_empty_lines(keep_empty_lines),
            out: LinesOut::default(),
            orphaned_since: None,
            woke: None,
            buf: Vec::new(),
        }
    }

    /// Reads on from `offset`, a line boundary, forgetting what was split but not sent.
    pub(super) fn restart_at(&mut self, offset: u64) {
        self.read = offset;
        self.sent = offset;
        self.splitter = self.splitter.restarted_at(offset);
        self.out = LinesOut::default();
    }
}
