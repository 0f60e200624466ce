//! The file-descriptor budget. Every tailed file holds a descriptor while it is open; logbelt
//! keeps their number below the process's limit (`RLIMIT_NOFILE`), with room left for the
//! database connections, sockets and the notification watcher. When more files match than the
//! budget allows, the files beyond it wait for a descriptor (they are not skipped), and files
//! that are idle at their end close theirs for them; an idle file is opened again, by path and
//! checked by identity, when it changes.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

/// Descriptors kept out of the budget for everything but tailed files.
const RESERVED: usize = 64;

/// The budget: a permit per open file.
pub struct Descriptors {
    permits: Arc<Semaphore>,
    budget: usize,
    /// Files waiting for a descriptor that no idle file has yet closed its own for.
    wanted: AtomicUsize,
    /// Woken (one file per request) when a file starts waiting: an idle file then closes its own.
    wake_idle: Notify,
}

/// A tailed file's claim on a descriptor; given back when dropped.
pub type Descriptor = OwnedSemaphorePermit;

impl Descriptors {
    /// A budget of `budget` open files (at least 1).
    pub fn new(budget: usize) -> Self {
        let budget = budget.max(1);
        Descriptors {
            permits: Arc::new(Semaphore::new(budget)),
            budget,
            wanted: AtomicUsize::new(0),
            wake_idle: Notify::new(),
        }
    }

    /// The budget for this process: its descriptor limit (raised to the hard limit first) less
    /// what is kept for the rest.
    pub fn for_this_process() -> Self {
        let limit = raise_limit();
        let reserved = if limit >= 2 * RESERVED {
            RESERVED
        } else {
            limit / 2
        };
        let budget = limit.saturating_sub(reserved);
        tracing::debug!(limit, budget, "File descriptor budget.");
        Descriptors::new(budget)
    }

    pub fn budget(&self) -> usize {
        self.budget
    }

    /// A descriptor if one is free now.
    pub fn try_take(&self) -> Option<Descriptor> {
        self.permits.clone().try_acquire_owned().ok()
    }

    /// Waits (yielding) for a descriptor, asking an idle file to close its own meanwhile.
    /// `None` only if the budget was closed, which it never is.
    pub async fn take(&self) -> Option<Descriptor> {
        if let Some(d) = self.try_take() {
            return Some(d);
        }
        // One request to the idle files. It stays counted when the descriptor comes from a file
        // that ended instead: an idle file then closes once more than needed, which costs a
        // reopen at its next change; closes never outnumber requests.
        self.want();
        self.permits.clone().acquire_owned().await.ok()
    }

    /// A file waits for a descriptor: one idle file should close its own. One file is woken per
    /// request (a busy one that is woken passes it on), not all of them.
    fn want(&self) {
        self.wanted.fetch_add(1, Ordering::AcqRel);
        self.wake_idle.notify_one();
    }

    /// Called by an idle file: whether it should close its descriptor now (it then takes one of
    /// the requests).
    pub fn should_release(&self) -> bool {
        self.wanted
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok()
    }

    /// Notified when a file starts waiting for a descriptor.
    pub fn idle_wake(&self) -> &Notify {
        &self.wake_idle
    }
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (as most daemons do) and returns the
/// soft limit in force.
fn raise_limit() -> usize {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed to them.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
    }
    // RLIM_INFINITY, or more than a budget ever needs.
    usize::try_from(lim.rlim_cur)
        .unwrap_or(usize::MAX)
        .min(1 << 20)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_waiting_file_asks_one_idle_file_to_close() {
        let d = Arc::new(Descriptors::new(1));
        let held = d.take().await;
        assert!(d.try_take().is_none());
        let waiter = {
            let d = d.clone();
            tokio::spawn(async move { d.take().await })
        };
        // The waiter registers its request before it waits.
        while !d.should_release() {
            tokio::task::yield_now().await;
        }
        assert!(!d.should_release(), "one request, one release");
        drop(held);
        let got = waiter.await.expect("waiter").expect("a descriptor");
        drop(got);
        assert!(d.try_take().is_some());
    }

    #[test]
    fn the_budget_leaves_room_below_the_limit() {
        let d = Descriptors::for_this_process();
        assert!(d.budget() >= 1);
    }
}
