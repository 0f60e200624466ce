//! File-system notifications (inotify through the `notify` crate) that wake a tail task as soon
//! as its file changes, and the scanner when files appear, move or vanish. Only a shortcut: every
//! task and the scanner also poll every `poll_interval`, so a missed or unsupported notification
//! (NFS, an unwatchable directory) costs latency, never data.

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::Notify;

/// Wakers of the tail tasks, by file identity (device, inode); shared with the watcher's
/// callback thread. Keyed by identity, not by path: after a rename the old file and the new one
/// at its path each keep their own waker, whatever order the scanner sees them in.
type Wakers = Arc<Mutex<HashMap<(u64, u64), Arc<Notify>>>>;

pub struct Watch {
    watcher: Option<notify::RecommendedWatcher>,
    /// Directories to watch, from the include globs, with whether to watch recursively.
    dirs: Vec<(PathBuf, RecursiveMode)>,
    watched: HashSet<PathBuf>,
    wakers: Wakers,
    scan: Arc<Notify>,
    /// Set while notifications cover every folder (see [`Watch::all_watched`]).
    all_watched: Arc<AtomicBool>,
}

impl Watch {
    pub fn new<'a>(patterns: impl Iterator<Item = &'a super::discover::Pattern>) -> Self {
        let wakers: Wakers = Arc::default();
        let scan = Arc::new(Notify::new());
        let (cb_wakers, cb_scan) = (wakers.clone(), scan.clone());
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            let Ok(event) = event else { return };
            match event.kind {
                EventKind::Modify(notify::event::ModifyKind::Data(_))
                | EventKind::Modify(notify::event::ModifyKind::Any) => {
                    // The event names the path; the file now at that path is the one written.
                    // A stat is a microsecond, far below what the write itself cost.
                    let keys: Vec<(u64, u64)> = event
                        .paths
                        .iter()
                        .filter_map(|p| std::fs::metadata(p).ok())
                        .map(|m| (m.dev(), m.ino()))
                        .collect();
                    let Ok(wakers) = cb_wakers.lock() else { return };
                    for key in keys {
                        if let Some(n) = wakers.get(&key) {
                            super::wake(n);
                        }
                    }
                }
                EventKind::Access(_) => {}
                // Created, renamed, removed: rare. The scanner looks for new files, and every
                // task checks whether its file was rotated away (its path now elsewhere).
                _ => {
                    super::wake(&cb_scan);
                    let Ok(wakers) = cb_wakers.lock() else { return };
                    for n in wakers.values() {
                        super::wake(n);
                    }
                }
            }
        });
        let watcher = match watcher {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(error = %e, "File-system notifications unavailable; polling only.");
                None
            }
        };
        Watch {
            watcher,
            dirs: patterns
                .map(|p| {
                    let mode = if p.recursive() {
                        RecursiveMode::Recursive
                    } else {
                        RecursiveMode::NonRecursive
                    };
                    (p.root().to_path_buf(), mode)
                })
                .collect(),
            watched: HashSet::new(),
            wakers,
            scan,
            all_watched: Arc::default(),
        }
    }

    /// Notified when files may have appeared, moved or vanished.
    pub fn scan_wake(&self) -> Arc<Notify> {
        self.scan.clone()
    }

    /// Starts watching directories that exist now and were not watched yet.
    pub fn refresh(&mut self) {
        let Some(watcher) = self.watcher.as_mut() else {
            return;
        };
        for (dir, mode) in &self.dirs {
            if !self.watched.contains(dir) && dir.is_dir() && watcher.watch(dir, *mode).is_ok() {
                self.watched.insert(dir.clone());
            }
        }
        let all = self.dirs.iter().all(|(d, _)| self.watched.contains(d));
        self.all_watched.store(all, Ordering::Relaxed);
    }

    /// Whether notifications cover every folder the globs start from.
    pub fn all_watched(&self) -> bool {
        self.all_watched.load(Ordering::Relaxed)
    }

    /// Shared with the tail tasks, which poll slower while it is set.
    pub fn all_watched_flag(&self) -> Arc<AtomicBool> {
        self.all_watched.clone()
    }

    /// The waker of the tail task of the file `key`.
    pub fn waker(&mut self, key: (u64, u64)) -> Arc<Notify> {
        let notify = Arc::new(Notify::new());
        if let Ok(mut wakers) = self.wakers.lock() {
            wakers.insert(key, notify.clone());
        }
        notify
    }

    /// The tail task of `key` has ended.
    pub fn forget(&mut self, key: (u64, u64)) {
        if let Ok(mut wakers) = self.wakers.lock() {
            wakers.remove(&key);
        }
    }
}
