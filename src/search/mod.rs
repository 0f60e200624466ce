//! The search index: one *block* per commit (README, "Searching"; ARCHITECTURE.md, "Search").
//!
//! Each commit writes, in the same transaction as its rows, one `search_blocks` row: the range
//! of ids its rows got (`first_id`..=`last_id`), its host, its `ingested_at`, and a bloom
//! filter of the grams of their text ([`bloom`]). A row is never without a block, so the
//! index is exactly-once with the rows, and retention removes blocks with the rows they cover.
//! `query --grep` tests the blocks' filters first and reads only the ids of the blocks that may
//! hold the needle; the exact filter then decides, so the rows found are the same as a scan's.
//!
//! A block's range may hold other rows too (another host's, with PostgreSQL's shared sequence):
//! reading them is wasted work, never a wrong answer, as each row's own block answers for it.
//! With `[search] index = false` a commit still writes its block, without a filter (`bloom`
//! NULL: "may hold anything"), so that hosts with and without the index can share a database.

pub mod bloom;

pub use bloom::Bloom;

/// Whether the index may answer for `needle` on a backend whose stored object is re-serialised
/// (PostgreSQL's `jsonb` orders keys its own way): a needle holding `,`, `{` or `}` may span two
/// keys that the filter saw in another order, so it is found by scanning there.
pub fn needle_fits(needle: &str, reordered: bool) -> bool {
    !(reordered && needle.contains([',', '{', '}'])) && bloom::needle_hashes(needle).is_some()
}

/// The filter of a commit's rows, built as batches arrive.
#[derive(Debug, Default)]
pub struct BlockBuilder {
    bloom: Option<Box<Bloom>>,
    scratch: Vec<u8>,
}

impl BlockBuilder {
    /// Adds the rows of `batch`.
    pub fn add(&mut self, batch: &crate::record::RecordBatch) {
        if batch.records.is_empty() {
            return;
        }
        let bloom = self.bloom.get_or_insert_with(Box::default);
        for r in &batch.records {
            if let Some(m) = &r.message {
                bloom.add_text(m.get(&batch.buf).as_bytes(), &mut self.scratch);
            }
            bloom.add_line(batch.bytes(&r.line), &mut self.scratch);
        }
    }

    /// The filter of everything added since the last call (folded), if anything was.
    pub fn take(&mut self) -> Option<Bloom> {
        self.bloom.take().map(|b| b.fold())
    }
}
