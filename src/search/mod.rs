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

/// The rows of one block: a commit's rows are cut into blocks of this many, in the order they
/// are inserted (block `i` holds rows `i * BLOCK_ROWS ..`). Smaller blocks narrow a search
/// down further; each costs a filter to store and to test.
pub const BLOCK_ROWS: usize = 1024;

/// The filters of a commit's blocks, built as its batches arrive.
#[derive(Debug, Default)]
pub struct BlockBuilder {
    done: Vec<Bloom>,
    open: Option<(Box<Bloom>, usize)>,
    scratch: Vec<u8>,
}

impl BlockBuilder {
    /// Adds the rows of `batch` (the batches of a commit in the order they are committed).
    pub fn add(&mut self, batch: &crate::record::RecordBatch) {
        for r in &batch.records {
            let (bloom, rows) = match &mut self.open {
                Some((_, rows)) if *rows == BLOCK_ROWS => {
                    if let Some((full, _)) = self.open.take() {
                        self.done.push(full.fold());
                    }
                    self.open.insert((Box::default(), 0))
                }
                Some(open) => open,
                None => self.open.insert((Box::default(), 0)),
            };
            let line = batch.bytes(&r.line);
            bloom.add_line(line, &mut self.scratch);
            // The message is usually part of the line (as written, or once decoded).
            if let Some(m) = &r.message {
                let m = m.get(&batch.buf).as_bytes();
                if memchr::memmem::find(line, m).is_none() {
                    bloom.add_text(m, &mut self.scratch);
                }
            }
            *rows += 1;
        }
    }

    /// The filters of the blocks of everything added since the last call, in order.
    pub fn take(&mut self) -> Vec<Bloom> {
        if let Some((open, _)) = self.open.take() {
            self.done.push(open.fold());
        }
        std::mem::take(&mut self.done)
    }
}

/// One `search_blocks` row to write.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockRow<'a> {
    pub first_id: i64,
    pub last_id: i64,
    pub rows: i64,
    /// `None`: the block may hold anything.
    pub bloom: Option<&'a Bloom>,
}

/// The blocks of a commit whose rows got the ids `chunks` (`(first, last, rows)` of each run of
/// [`BLOCK_ROWS`] rows, in order), with their `blooms` — or, when there are none or they do not
/// fit the chunks (a row was taken out after they were built), one block without a filter.
pub fn block_rows<'a>(
    chunks: &[(i64, i64, i64)],
    blooms: Option<&'a [Bloom]>,
) -> Vec<BlockRow<'a>> {
    match blooms {
        Some(blooms) if blooms.len() == chunks.len() => chunks
            .iter()
            .zip(blooms)
            .map(|(&(first_id, last_id, rows), bloom)| BlockRow {
                first_id,
                last_id,
                rows,
                bloom: Some(bloom),
            })
            .collect(),
        _ => {
            let first = chunks.iter().map(|c| c.0).min();
            let last = chunks.iter().map(|c| c.1).max();
            match (first, last) {
                (Some(first_id), Some(last_id)) => vec![BlockRow {
                    first_id,
                    last_id,
                    rows: chunks.iter().map(|c| c.2).sum(),
                    bloom: None,
                }],
                _ => Vec::new(),
            }
        }
    }
}
