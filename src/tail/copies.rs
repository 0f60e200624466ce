//! Recognising copies, so that `copytruncate` rotation stores every line once.
//!
//! `copytruncate` copies `app.log` to `app.log.1` (a new inode), then truncates `app.log`. When
//! the include globs match the copy, its lines up to logbelt's position were already read from
//! the original, and the lines after it (written before the truncation but not yet read) exist
//! only in the copy. So a new file is compared, by content, with the files logbelt knows:
//!
//! - **Continuation of truncated content.** A file whose first bytes match the content that a
//!   truncated file had (the same first `min(position, 1 KiB)` bytes) continues that content:
//!   same file id, from the position the original had reached. Truncated content is remembered
//!   when a tail task sees its file truncated, and at start when a file found by its inode no
//!   longer starts with the committed fingerprint.
//! - **A copy still being made.** A new file that is, so far, a byte-for-byte copy of the
//!   beginning of a file being tailed (its first KiB and its last KiB equal the original's bytes
//!   at the same offsets, and it is not longer than the original) waits: `copytruncate` truncates
//!   the original next, and then the copy continues the original's content. A copy whose
//!   original is never truncated (`cp app.log app.log.bak`) keeps waiting: its lines are the
//!   original's, stored once from there.
//! - Anything else is a new file, read from its start.
//!
//! Files that merely share a header (a CSV header, the same first line) are told apart by the
//! rest of their bytes: a continuation needs the whole fingerprinted prefix to match *and* the
//! original to have been truncated; a waiting copy needs its last KiB to match too.

use std::collections::{HashMap, VecDeque};
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use super::fingerprint::FINGERPRINT_MAX_BYTES;
use super::known::Known;
use crate::record::FileMeta;

/// Most truncated contents remembered; the oldest is forgotten first. A copy is made just before
/// the truncation, so only the latest few ever matter.
const MAX_TRUNCATED: usize = 256;

/// Content that was truncated away from its file, waiting for a copy that continues it.
#[derive(Debug)]
pub struct Truncated {
    /// Its file id, where reading had reached (a line boundary), and its fingerprint (the first
    /// `min(offset, 1 KiB)` bytes).
    pub content: Known,
    /// The first bytes themselves, when known (truncated in this run): lets a copy still being
    /// written be recognised before it reaches the fingerprinted length.
    pub head: Option<Vec<u8>>,
}

/// What a new file is.
#[derive(Debug)]
pub enum Verdict {
    /// A new file: read it from its start.
    New,
    /// The continuation of truncated content: read on from `offset` under `meta`.
    Continues { meta: Arc<FileMeta>, offset: u64 },
    /// A copy being made, or a copy of a file still being read: look again later.
    Wait,
}

/// A file with a running tail task whose content is settled.
struct Live {
    /// `None` while the file is closed (idle, its descriptor lent to another file).
    file: Option<Arc<std::fs::File>>,
    /// Its first bytes as read (at most 1 KiB).
    head: Vec<u8>,
}

#[derive(Default)]
struct State {
    live: HashMap<(u64, u64), Live>,
    truncated: VecDeque<Truncated>,
}

/// Shared by the tailer and its tasks.
#[derive(Default)]
pub struct Contents {
    state: Mutex<State>,
    /// Woken when truncated content is remembered: waiting copies look again.
    changed: Notify,
}

impl Contents {
    /// The file `key` is tailed and its first bytes are `head` (empty while it is not settled).
    pub fn live(&self, key: (u64, u64), file: Arc<std::fs::File>, head: &[u8]) {
        if let Ok(mut s) = self.state.lock() {
            s.live.insert(
                key,
                Live {
                    file: Some(file),
                    head: head.to_vec(),
                },
            );
        }
    }

    /// The tailed file `key` was closed (`None`) or opened again.
    pub fn set_file(&self, key: (u64, u64), file: Option<Arc<std::fs::File>>) {
        if let Ok(mut s) = self.state.lock() {
            if let Some(l) = s.live.get_mut(&key) {
                l.file = file;
            }
        }
    }

    /// The first bytes of the tailed file `key` are now `head`.
    pub fn set_head(&self, key: (u64, u64), head: &[u8]) {
        if let Ok(mut s) = self.state.lock() {
            if let Some(l) = s.live.get_mut(&key) {
                l.head.clear();
                l.head.extend_from_slice(head);
            }
        }
    }

    /// The tail task of `key` has ended.
    pub fn ended(&self, key: (u64, u64)) {
        if let Ok(mut s) = self.state.lock() {
            s.live.remove(&key);
        }
    }

    /// Remembers content that was truncated away (nothing when nothing of it was read).
    pub fn truncated(&self, t: Truncated) {
        if t.content.fingerprint_len == 0 {
            return;
        }
        if let Ok(mut s) = self.state.lock() {
            if s.truncated.len() >= MAX_TRUNCATED {
                s.truncated.pop_front();
            }
            s.truncated.push_back(t);
        }
        self.changed.notify_waiters();
    }

    /// Notified when truncated content is remembered.
    pub fn changed(&self) -> &Notify {
        &self.changed
    }

    /// Decides what the new file `key` is, from its first bytes `head` (at most 1 KiB, not
    /// empty), its size and its handle. A continuation is claimed: no other file continues the
    /// same content.
    pub fn classify(
        &self,
        key: (u64, u64),
        head: &[u8],
        size: u64,
        file: &std::fs::File,
    ) -> Verdict {
        let mut wait = false;
        let mut candidates = Vec::new();
        {
            let Ok(mut s) = self.state.lock() else {
                return Verdict::New;
            };
            let mut found = None;
            for (i, t) in s.truncated.iter().enumerate().rev() {
                if t.content.held_by(head) {
                    found = Some(i);
                    break;
                }
                let shorter = head.len() < t.content.fingerprint_len as usize;
                if shorter && t.head.as_deref().is_some_and(|h| h.starts_with(head)) {
                    // The copy has fewer bytes than the fingerprint so far: still being written.
                    wait = true;
                }
            }
            if let Some(t) = found.and_then(|i| s.truncated.remove(i)) {
                return Verdict::Continues {
                    meta: t.content.meta,
                    offset: t.content.offset,
                };
            }
            // A closed (idle) file is not compared: it has not changed since it was read, and
            // a truncation reopens it, which makes its old content a continuation candidate.
            for (k, l) in &s.live {
                let n = head.len().min(l.head.len());
                if let Some(file) = &l.file {
                    if *k != key && n > 0 && head[..n] == l.head[..n] {
                        candidates.push((file.clone(), l.head.clone()));
                    }
                }
            }
        }
        for (original, remembered) in candidates {
            match copy_of(head, size, file, &original, &remembered) {
                Ok(true) => wait = true,
                Ok(false) => {}
                Err(e) => tracing::debug!(error = %e, "Cannot compare with a tailed file."),
            }
        }
        if wait {
            Verdict::Wait
        } else {
            Verdict::New
        }
    }
}

/// Whether the new file (first bytes `head`, `size` bytes, handle `file`) may be a copy of the
/// tailed file `original`, whose task read `remembered` as its first bytes: either the original
/// no longer starts with those bytes (truncated or rewritten, and its task has not noticed yet:
/// the truncated content is about to be remembered), or the new file is a byte-for-byte copy of
/// the original's beginning (first and last KiB compared).
fn copy_of(
    head: &[u8],
    size: u64,
    file: &std::fs::File,
    original: &std::fs::File,
    remembered: &[u8],
) -> std::io::Result<bool> {
    let original_size = original.metadata()?.len();
    let mut now = vec![0u8; FINGERPRINT_MAX_BYTES.min(original_size as usize)];
    let n = read_at_most(original, &mut now, 0)?;
    now.truncate(n);
    if !now.starts_with(remembered) {
        return Ok(true);
    }
    if size > original_size || !now.starts_with(head) {
        return Ok(false);
    }
    let tail_len = FINGERPRINT_MAX_BYTES.min(size as usize);
    let at = size - tail_len as u64;
    let (mut ours, mut theirs) = (vec![0u8; tail_len], vec![0u8; tail_len]);
    let a = read_at_most(file, &mut ours, at)?;
    let b = read_at_most(original, &mut theirs, at)?;
    Ok(a == tail_len && b == tail_len && ours == theirs)
}

/// Reads into `buf` at `offset` until it is full or the file ends; returns the bytes read.
fn read_at_most(file: &std::fs::File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tail::fingerprint::fnv1a;
    use std::io::Write;

    fn file_with(dir: &std::path::Path, name: &str, bytes: &[u8]) -> Arc<std::fs::File> {
        let path = dir.join(name);
        std::fs::File::create(&path)
            .and_then(|mut f| f.write_all(bytes))
            .expect("write");
        Arc::new(std::fs::File::open(path).expect("open"))
    }

    fn meta(id: i64) -> Arc<FileMeta> {
        Arc::new(FileMeta {
            id,
            source: "s".into(),
        })
    }

    fn truncated(id: i64, content: &[u8], offset: u64) -> Truncated {
        let len = (offset as usize)
            .min(FINGERPRINT_MAX_BYTES)
            .min(content.len());
        Truncated {
            content: Known {
                meta: meta(id),
                offset,
                fingerprint_len: len as u32,
                fingerprint: fnv1a(&content[..len]),
                path: None,
            },
            head: Some(content[..content.len().min(FINGERPRINT_MAX_BYTES)].to_vec()),
        }
    }

    /// A [`Contents`] and a directory for the files it is shown.
    struct Fixture {
        dir: tempfile::TempDir,
        contents: Contents,
    }

    impl Fixture {
        fn new() -> Self {
            Fixture {
                dir: tempfile::tempdir().expect("tempdir"),
                contents: Contents::default(),
            }
        }

        /// Remembers `content` of file 7, truncated when its position was at `offset`.
        fn after_truncating(content: &[u8], offset: u64) -> Self {
            let f = Fixture::new();
            f.contents.truncated(truncated(7, content, offset));
            f
        }

        /// Tails the file (1, 1), which holds `bytes`.
        fn with_live(bytes: &[u8]) -> Self {
            let f = Fixture::new();
            let live = file_with(f.dir.path(), "live", bytes);
            f.contents.live((1, 1), live, head(bytes));
            f
        }

        /// What the new file `key`, holding `bytes`, is.
        fn classify(&self, key: (u64, u64), bytes: &[u8]) -> Verdict {
            let file = file_with(self.dir.path(), &format!("{}-{}", key.0, key.1), bytes);
            self.contents
                .classify(key, head(bytes), bytes.len() as u64, &file)
        }
    }

    /// A file's first bytes, as the tailer reads them.
    fn head(bytes: &[u8]) -> &[u8] {
        &bytes[..bytes.len().min(FINGERPRINT_MAX_BYTES)]
    }

    #[test]
    fn a_copy_of_truncated_content_continues_it_once() {
        let content = b"{\"a\":1}\n{\"a\":2}\n{\"a\":3}\n";
        let f = Fixture::after_truncating(content, 16);
        match f.classify((1, 2), content) {
            Verdict::Continues { meta, offset } => assert_eq!((meta.id, offset), (7, 16)),
            v => panic!("{v:?}"),
        }
        // Claimed: a second copy of the same content is a new file.
        assert!(matches!(f.classify((1, 3), content), Verdict::New));
    }

    #[test]
    fn a_file_sharing_only_a_header_with_truncated_content_is_new() {
        let old = b"ts,level,msg\n1,info,a\n2,info,b\n";
        let f = Fixture::after_truncating(old, old.len() as u64);
        let new = b"ts,level,msg\n9,warn,z\n";
        assert!(matches!(f.classify((1, 2), new), Verdict::New));
    }

    #[test]
    fn a_copy_still_shorter_than_the_fingerprint_waits() {
        let content = b"{\"a\":1}\n{\"a\":2}\n{\"a\":3}\n";
        let f = Fixture::after_truncating(content, content.len() as u64);
        assert!(matches!(f.classify((1, 2), &content[..5]), Verdict::Wait));
    }

    #[test]
    fn a_copy_of_a_live_file_waits_and_a_file_sharing_its_header_does_not() {
        let mut original = b"header line\n".to_vec();
        for i in 0..200 {
            original.extend_from_slice(format!("{{\"seq\":{i}}}\n").as_bytes());
        }
        let f = Fixture::with_live(&original);
        assert!(matches!(
            f.classify((1, 2), &original[..1500]),
            Verdict::Wait
        ));

        // Same first KiB, different bytes after it: not a copy.
        let mut other = original[..1400].to_vec();
        other.extend_from_slice(b"{\"other\":true}\n");
        assert!(matches!(f.classify((1, 3), &other), Verdict::New));

        // Only the header line in common.
        let small = b"header line\n{\"x\":1}\n";
        assert!(matches!(f.classify((1, 4), small), Verdict::New));
    }

    #[test]
    fn a_file_longer_than_a_short_live_file_with_its_bytes_as_prefix_is_new() {
        let f = Fixture::with_live(b"hdr\n");
        assert!(matches!(f.classify((1, 2), b"hdr\nrow\n"), Verdict::New));
    }
}
