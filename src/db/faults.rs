//! Test-only fault injection (cargo feature `fault-injection`): a store that fails the next
//! commits on purpose, wrapped around the real one, so that the committer's own code runs
//! unchanged.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use super::{DbError, FileCheck, Store};
use crate::record::RecordBatch;
use crate::record::StoredPosition;
use crate::search::Block;

/// Fails the next `left` commits (shared across restarts) with a permanent error; otherwise
/// the inner store.
pub struct FailingCommits {
    inner: Box<dyn Store>,
    left: Arc<AtomicU32>,
}

impl FailingCommits {
    pub fn new(inner: Box<dyn Store>, left: Arc<AtomicU32>) -> Self {
        FailingCommits { inner, left }
    }
}

impl Store for FailingCommits {
    fn load_positions(&mut self, host: &str) -> Result<Vec<StoredPosition>, DbError> {
        self.inner.load_positions(host)
    }

    fn commit(
        &mut self,
        host: &str,
        batches: &[RecordBatch],
        blocks: Option<&[Block]>,
    ) -> Result<(), DbError> {
        let fail = self
            .left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if fail {
            return Err(DbError::permanent("fault injection: commit fails"));
        }
        self.inner.commit(host, batches, blocks)
    }

    fn probe(&mut self, host: &str, batches: &[RecordBatch]) -> Result<(), DbError> {
        self.inner.probe(host, batches)
    }

    fn committed_offsets(&mut self, ids: &[i64]) -> Result<HashMap<i64, u64>, DbError> {
        self.inner.committed_offsets(ids)
    }

    fn file_check(&self) -> Option<FileCheck> {
        self.inner.file_check()
    }
}
