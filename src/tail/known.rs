//! What the tailer knows of the files it has met: committed positions (from the database at
//! start, from ended tasks since) by file identity, which of several positions on one inode the
//! file now holds, and where a tailed file is found now.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::copies::{Contents, Truncated};
use super::fingerprint::fnv1a;
use crate::record::StoredPosition;
use crate::record::{FileIdentity, FileMeta, FilePosition, LineBatch};

/// A file logbelt has met, with how far it is read.
#[derive(Debug, Clone)]
pub struct Known {
    pub meta: Arc<FileMeta>,
    pub offset: u64,
    pub fingerprint_len: u32,
    pub fingerprint: u64,
    /// The path its `files` row has (`None`: no row yet).
    pub path: Option<Arc<str>>,
}

impl Known {
    /// Whether a file whose first bytes are `head` still holds this content.
    pub fn held_by(&self, head: &[u8]) -> bool {
        let n = self.fingerprint_len as usize;
        head.len() >= n && fnv1a(&head[..n]) == self.fingerprint
    }

    /// Its content, once truncated away from its file: a copy may continue it.
    pub fn truncated(&self) -> Truncated {
        Truncated {
            content: self.clone(),
            head: None,
        }
    }

    /// The empty batch that makes its row name no inode (content truncated away), if it has a
    /// row.
    pub fn detach_batch(self) -> Option<LineBatch> {
        let path = self.path?;
        let identity = FileIdentity {
            dev: 0,
            inode: 0,
            fingerprint_len: self.fingerprint_len,
            fingerprint: self.fingerprint,
        };
        Some(LineBatch {
            buf: Vec::new(),
            lines: Vec::new(),
            empty_lines: 0,
            bytes: 0,
            position: FilePosition {
                file: self.meta,
                path,
                identity,
                offset: self.offset,
                forget: false,
            },
        })
    }
}

/// Known files by (device, inode).
#[derive(Default)]
pub struct KnownFiles {
    by_key: HashMap<(u64, u64), Known>,
    /// Further committed positions on an inode that has one already (content truncated while
    /// logbelt was stopped, or rows written before truncated content was detached): the file's
    /// first bytes decide which one it holds.
    shadowed: HashMap<(u64, u64), Vec<Known>>,
}

impl KnownFiles {
    /// The committed positions; those of truncated content (no inode) go to `contents`, where a
    /// copy may continue them.
    pub fn new(positions: Vec<StoredPosition>, contents: &Contents) -> Self {
        let mut known = KnownFiles::default();
        for p in positions {
            let k = Known {
                meta: Arc::new(FileMeta {
                    id: p.file_id,
                    source: p.source.as_str().into(),
                }),
                offset: p.offset,
                fingerprint_len: p.identity.fingerprint_len,
                fingerprint: p.identity.fingerprint,
                path: Some(p.path.as_str().into()),
            };
            let key = (p.identity.dev, p.identity.inode);
            if p.identity.is_detached() {
                contents.truncated(k.truncated());
            } else if let Some(other) = known.by_key.insert(key, k) {
                known.shadowed.entry(key).or_default().push(other);
            }
        }
        known
    }

    pub fn contains(&self, key: &(u64, u64)) -> bool {
        self.by_key.contains_key(key)
    }

    pub fn insert(&mut self, key: (u64, u64), known: Known) {
        self.by_key.insert(key, known);
    }

    /// Takes the position of the file `key`, whose first bytes are `head` and size `len`. With
    /// several positions on the inode, it is the one whose content the file still holds
    /// (longest fingerprint first); the others are returned as truncated content.
    pub fn take(&mut self, key: (u64, u64), head: &[u8], len: u64) -> (Option<Known>, Vec<Known>) {
        let Some(mut all) = self.shadowed.remove(&key) else {
            return (self.by_key.remove(&key), Vec::new());
        };
        all.extend(self.by_key.remove(&key));
        let best = all
            .iter()
            .enumerate()
            .filter(|(_, k)| k.held_by(head) && k.offset <= len)
            .max_by_key(|(_, k)| (k.fingerprint_len, k.offset))
            .map(|(i, _)| i);
        let found = best.map(|i| all.swap_remove(i));
        (found, all)
    }

    pub fn forget(&mut self, key: &(u64, u64)) {
        self.by_key.remove(key);
    }
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
