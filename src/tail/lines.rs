//! Splits a byte stream into lines, whatever the read boundaries: the one place that knows what a
//! line is (ARCHITECTURE.md §4). Pure and synchronous; the tail task feeds it the bytes it reads.
//!
//! - A line ends at `\n`; a final `\r` is dropped (CRLF), also when the pair is split across reads.
//! - A line without its newline is not a line yet: it stays pending, and its bytes are not
//!   covered by [`LineSplitter::boundary`], so a restart reads it again.
//! - A UTF-8 BOM at the very start of the file is skipped.
//! - Empty lines are counted, not emitted (unless [`LineSplitter::keep_empty_lines`]: a
//!   multiline source's blank lines belong to its events, and are emitted as empty lines).
//! - A run of NUL bytes at the start of a line (the hole a `copytruncate` race leaves: the writer
//!   goes on at its old offset in the truncated file) is dropped and counted in
//!   [`LinesOut::nul_bytes`]; the line starts after it, whatever its length.
//! - A line longer than `max_line_bytes` keeps only its first `max_line_bytes` bytes (memory stays
//!   bounded however long the line is) and is emitted as too long, with its full length.

use crate::record::LineRef;

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Lines gathered for one batch, in one buffer.
#[derive(Debug, Default)]
pub struct LinesOut {
    pub buf: Vec<u8>,
    pub lines: Vec<LineRef>,
    pub empty_lines: u32,
    /// NUL bytes dropped at the start of lines.
    pub nul_bytes: u64,
}

impl LinesOut {
    fn push(&mut self, offset: u64, bytes: &[u8], too_long: Option<u64>) {
        let start = self.buf.len() as u32;
        self.buf.extend_from_slice(bytes);
        self.lines.push(LineRef {
            offset,
            range: start..self.buf.len() as u32,
            too_long,
        });
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty() && self.empty_lines == 0
    }
}

/// The splitter's state between reads.
#[derive(Debug)]
pub struct LineSplitter {
    max_line_bytes: usize,
    /// File offset of the first byte of the line being assembled: everything before it has been
    /// emitted (or counted as empty).
    line_start: u64,
    /// Bytes of the pending line seen so far (more than `partial.len()` once it is too long).
    line_len: u64,
    /// The pending line's bytes, at most `max_line_bytes + 1` of them (one more than the limit, so
    /// a final `\r` can still be dropped from a line exactly at the limit; three more at the
    /// start of the file, for a BOM).
    partial: Vec<u8>,
    /// The last byte of the pending line seen so far (a `\r` there is dropped if `\n` follows),
    /// kept even when the line is too long to keep its bytes.
    last: Option<u8>,
    /// Emit empty lines (as lines without bytes) instead of only counting them.
    keep_empty: bool,
}

impl LineSplitter {
    /// A splitter whose next byte is at file offset `offset` (a line boundary).
    pub fn new(offset: u64, max_line_bytes: usize) -> Self {
        LineSplitter {
            max_line_bytes,
            line_start: offset,
            line_len: 0,
            partial: Vec::new(),
            last: None,
            keep_empty: false,
        }
    }

    /// Empty lines are emitted as lines (of no bytes), not only counted: for a multiline source,
    /// whose events hold their blank lines.
    #[must_use]
    pub fn keep_empty_lines(mut self, keep: bool) -> Self {
        self.keep_empty = keep;
        self
    }

    /// A splitter like this one whose next byte is at `offset` (a line boundary).
    #[must_use]
    pub fn restarted_at(&self, offset: u64) -> Self {
        LineSplitter::new(offset, self.max_line_bytes).keep_empty_lines(self.keep_empty)
    }

    /// Offset just past the last complete line: where reading resumes after a restart.
    pub fn boundary(&self) -> u64 {
        self.line_start
    }

    /// Bytes of the pending incomplete line.
    pub fn pending_bytes(&self) -> u64 {
        self.line_len
    }

    /// Feeds the next bytes of the file; complete lines go to `out`.
    pub fn feed(&mut self, chunk: &[u8], out: &mut LinesOut) {
        self.feed_until(chunk, out, usize::MAX);
    }

    /// Feeds bytes until `out` holds `max_lines` lines; returns how many bytes of `chunk` it
    /// took (feed the rest once `out` has been handed over). This is what keeps a batch, and so
    /// a transaction, within `batch_rows` however short the lines are.
    pub fn feed_until(&mut self, chunk: &[u8], out: &mut LinesOut, max_lines: usize) -> usize {
        let mut rest = chunk;
        self.skip_nul_bytes(&mut rest, out);
        while let Some(i) = memchr::memchr(b'\n', rest) {
            let segment = &rest[..i];
            if self.line_len == 0 {
                // Fast path: the whole line is inside this chunk.
                self.finish(segment, segment.len() as u64, segment.last().copied(), out);
            } else {
                self.append(segment);
                let pending = std::mem::take(&mut self.partial);
                self.finish(&pending, self.line_len, self.last, out);
                self.partial = pending;
                self.partial.clear();
            }
            rest = &rest[i + 1..];
            self.skip_nul_bytes(&mut rest, out);
            if out.lines.len() >= max_lines {
                return chunk.len() - rest.len();
            }
        }
        self.append(rest);
        chunk.len()
    }

    /// At the start of a line, drops the NUL bytes `rest` starts with: the line starts after
    /// them.
    fn skip_nul_bytes(&mut self, rest: &mut &[u8], out: &mut LinesOut) {
        if self.line_len != 0 || rest.first() != Some(&0) {
            return;
        }
        let n = rest.iter().take_while(|b| **b == 0).count();
        *rest = &rest[n..];
        self.line_start += n as u64;
        out.nul_bytes += n as u64;
    }

    fn append(&mut self, bytes: &[u8]) {
        // A BOM before the first line is dropped later: keep room for it too.
        let bom = if self.line_start == 0 { BOM.len() } else { 0 };
        let room = (self.max_line_bytes + 1 + bom).saturating_sub(self.partial.len());
        self.partial
            .extend_from_slice(&bytes[..bytes.len().min(room)]);
        self.line_len += bytes.len() as u64;
        if let Some(&b) = bytes.last() {
            self.last = Some(b);
        }
    }

    /// Ends the current line: `kept` holds its first bytes, `full_len` is its length before `\n`.
    fn finish(&mut self, kept: &[u8], full_len: u64, last: Option<u8>, out: &mut LinesOut) {
        let mut offset = self.line_start;
        let mut line = kept;
        let mut len = full_len;
        if offset == 0 && line.starts_with(BOM) {
            line = &line[BOM.len()..];
            len -= BOM.len() as u64;
            offset = BOM.len() as u64;
        }
        if last == Some(b'\r') && len > 0 {
            if len as usize == line.len() {
                line = &line[..line.len() - 1];
            }
            len -= 1;
        }
        if len == 0 && self.keep_empty {
            out.push(offset, &[], None);
        } else if len == 0 {
            out.empty_lines += 1;
        } else if len > self.max_line_bytes as u64 {
            out.push(
                offset,
                &line[..self.max_line_bytes.min(line.len())],
                Some(len),
            );
        } else {
            out.push(offset, line, None);
        }
        self.line_start += full_len + 1;
        self.line_len = 0;
        self.last = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (offset, bytes, too long) of each line; empty lines; the boundary.
    type Split = (Vec<(u64, Vec<u8>, Option<u64>)>, u32, u64);

    fn split_all(data: &[u8], chunk: usize, max: usize) -> Split {
        let mut s = LineSplitter::new(0, max);
        let mut out = LinesOut::default();
        for c in data.chunks(chunk.max(1)) {
            s.feed(c, &mut out);
        }
        let lines = out
            .lines
            .iter()
            .map(|l| {
                (
                    l.offset,
                    out.buf[l.range.start as usize..l.range.end as usize].to_vec(),
                    l.too_long,
                )
            })
            .collect();
        (lines, out.empty_lines, s.boundary())
    }

    #[test]
    fn any_chunking_gives_the_same_lines() {
        let data =
            b"\xEF\xBB\xBF{\"a\":1}\r\n\n{\"b\":2}\n0123456789abcdef\r\n\r\n{\"c\":3}\npartial";
        let whole = split_all(data, data.len(), 12);
        for chunk in 1..data.len() {
            assert_eq!(split_all(data, chunk, 12), whole, "chunk size {chunk}");
        }
        let (lines, empty, boundary) = whole;
        assert_eq!(
            lines,
            vec![
                (3, b"{\"a\":1}".to_vec(), None),
                (13, b"{\"b\":2}".to_vec(), None),
                (21, b"0123456789ab".to_vec(), Some(16)),
                (41, b"{\"c\":3}".to_vec(), None),
            ]
        );
        assert_eq!(empty, 2);
        assert_eq!(boundary, 49, "the partial line is not covered");
    }

    #[test]
    fn feed_until_stops_at_the_line_limit_and_resumes_where_it_stopped() {
        let data = b"{}\n{}\n\n{}\n{}\npart";
        let mut s = LineSplitter::new(0, 64);
        let mut out = LinesOut::default();
        let took = s.feed_until(data, &mut out, 2);
        assert_eq!((took, out.lines.len(), s.boundary()), (6, 2, 6));
        let mut rest = LinesOut::default();
        let took2 = s.feed_until(&data[took..], &mut rest, 2);
        assert_eq!(
            (took + took2, rest.lines.len(), rest.empty_lines),
            (13, 2, 1)
        );
        let took3 = s.feed_until(&data[took + took2..], &mut LinesOut::default(), 2);
        assert_eq!((took3, s.boundary(), s.pending_bytes()), (4, 13, 4));
    }

    #[test]
    fn a_line_exactly_at_the_limit_is_kept_even_with_crlf() {
        let (lines, _, _) = split_all(b"12345\r\n123456\n", 3, 5);
        assert_eq!(lines[0], (0, b"12345".to_vec(), None));
        assert_eq!(lines[1], (7, b"12345".to_vec(), Some(6)));
    }

    #[test]
    fn nul_bytes_before_a_line_are_dropped_and_counted_whatever_the_reads() {
        let data = b"{}\n\0\0\0\0{\"a\":1}\n\0\0\n\0x\0\n";
        for chunk in 1..=data.len() {
            let mut s = LineSplitter::new(0, 64);
            let mut out = LinesOut::default();
            for c in data.chunks(chunk) {
                s.feed(c, &mut out);
            }
            let lines: Vec<(u64, &[u8])> = out
                .lines
                .iter()
                .map(|l| {
                    (
                        l.offset,
                        &out.buf[l.range.start as usize..l.range.end as usize],
                    )
                })
                .collect();
            // The line starts after its NULs; a NUL inside a line is content.
            let want: Vec<(u64, &[u8])> = vec![(0, b"{}"), (7, b"{\"a\":1}"), (19, b"x\0")];
            assert_eq!(lines, want, "chunks of {chunk}");
            assert_eq!(
                (out.nul_bytes, out.empty_lines),
                (7, 1),
                "chunks of {chunk}"
            );
        }
    }

    #[test]
    fn a_multiline_sources_splitter_emits_empty_lines() {
        let mut s = LineSplitter::new(0, 64).keep_empty_lines(true);
        let mut out = LinesOut::default();
        s.feed(b"a\n\n\r\nb\n", &mut out);
        let offsets: Vec<(u64, u32)> = out
            .lines
            .iter()
            .map(|l| (l.offset, l.range.len() as u32))
            .collect();
        assert_eq!(offsets, [(0, 1), (2, 0), (3, 0), (5, 1)]);
        assert_eq!(out.empty_lines, 0);
        let again = s.restarted_at(7);
        assert!(again.keep_empty && again.boundary() == 7);
    }

    #[test]
    fn resumes_from_a_boundary_with_the_same_offsets() {
        let mut s = LineSplitter::new(100, 64);
        let mut out = LinesOut::default();
        s.feed(b"\xEF\xBB\xBF{}\n", &mut out);
        assert_eq!(
            out.lines[0].offset, 100,
            "a BOM is only skipped at offset 0"
        );
        assert_eq!(s.boundary(), 106);
    }
}
