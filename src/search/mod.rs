//! The search index: *search blocks* (README, "Searching"; ARCHITECTURE.md, "Search").
//!
//! A commit's rows are cut into blocks of [`BLOCK_ROWS`]; for each, in the same transaction as
//! the rows, one `search_blocks` row: the range of ids its rows got (`first_id`..=`last_id`),
//! its host, its `ingested_at`, a bloom filter of the grams of their text ([`bloom`]) and its
//! rows per minute, level and source. A row is never without a block, so the index is
//! exactly-once with the rows, and retention removes blocks with the rows they cover.
//! `query --grep` tests the blocks' filters first and reads only the ids of the blocks that may
//! hold the needle; the exact filter then decides, so the rows found are the same as a scan's.
//! `query --count` adds up the blocks' counts.
//!
//! A block's range may hold other rows too (another host's, with PostgreSQL's shared sequence):
//! reading them is wasted work, never a wrong answer, as each row's own block answers for it.
//! With `[search] index = false` a commit still writes its blocks, with counts but without a
//! filter (`bloom` NULL: "may hold anything"), so that hosts with and without the filters can
//! share a database.

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

/// What a block stores besides its range: the filter of its text, and how many rows it holds
/// per minute (of `ts`), level and source (`query --count` adds these up instead of reading
/// the rows).
#[derive(Debug, Clone, PartialEq)]
pub struct Block {
    /// `None`: the index is off (`[search] index = false`); the block may hold anything.
    pub bloom: Option<Bloom>,
    /// JSON: `[[minute, level, source, rows], …]`, minute in minutes since 1970 (`null`: rows
    /// without `ts`), level `null` for rows without one.
    pub counts: String,
}

type CountKey = (Option<i64>, Option<String>, std::sync::Arc<str>);

/// One block being filled.
#[derive(Debug)]
struct OpenBlock {
    bloom: Option<Box<Bloom>>,
    /// Rows per group, groups in the order first met: a block's groups are few, and a row is
    /// most often of a recent one, so they are searched from the end (no key is built per row).
    counts: Vec<(CountKey, i64)>,
    rows: usize,
}

impl OpenBlock {
    fn count(&mut self, minute: Option<i64>, level: Option<&str>, source: &std::sync::Arc<str>) {
        let found = self.counts.iter_mut().rev().find(|((m, l, s), _)| {
            *m == minute
                && l.as_deref() == level
                && (std::sync::Arc::ptr_eq(s, source) || s == source)
        });
        match found {
            Some((_, n)) => *n += 1,
            None => self
                .counts
                .push(((minute, level.map(str::to_owned), source.clone()), 1)),
        }
    }

    fn close(self) -> Block {
        let mut counts = self.counts;
        counts.sort();
        let rows: Vec<serde_json::Value> = counts
            .into_iter()
            .map(|((minute, level, source), n)| serde_json::json!([minute, level, &*source, n]))
            .collect();
        Block {
            bloom: self.bloom.map(|b| b.fold()),
            counts: serde_json::Value::Array(rows).to_string(),
        }
    }
}

/// The blocks of a commit, built as its batches arrive.
#[derive(Debug)]
pub struct BlockBuilder {
    /// Build filters (`[search] index`).
    filters: bool,
    done: Vec<Block>,
    open: Option<OpenBlock>,
    scratch: Vec<u8>,
}

impl BlockBuilder {
    /// A builder of blocks with filters (`filters`) or with counts only.
    pub fn new(filters: bool) -> BlockBuilder {
        BlockBuilder {
            filters,
            done: Vec::new(),
            open: None,
            scratch: Vec::new(),
        }
    }

    /// Adds the rows of `batch` (the batches of a commit in the order they are committed).
    pub fn add(&mut self, batch: &crate::record::RecordBatch) {
        let source = &batch.position.file.source;
        for r in &batch.records {
            if self.open.as_ref().is_some_and(|o| o.rows == BLOCK_ROWS) {
                if let Some(full) = self.open.take() {
                    self.done.push(full.close());
                }
            }
            let filters = self.filters;
            let open = self.open.get_or_insert_with(|| OpenBlock {
                bloom: filters.then(Box::default),
                counts: Vec::new(),
                rows: 0,
            });
            if let Some(bloom) = &mut open.bloom {
                let line = batch.bytes(&r.line);
                bloom.add_line(line, &mut self.scratch);
                // The message is usually part of the line (as written, or once decoded).
                if let Some(m) = &r.message {
                    let m = m.get(&batch.buf).as_bytes();
                    if memchr::memmem::find(line, m).is_none() {
                        bloom.add_text(m, &mut self.scratch);
                    }
                }
            }
            open.count(
                r.ts_micros.map(|t| t.div_euclid(60_000_000)),
                r.level.as_ref().map(|l| l.get(&batch.buf)),
                source,
            );
            open.rows += 1;
        }
    }

    /// The blocks of everything added since the last call, in order.
    pub fn take(&mut self) -> Vec<Block> {
        if let Some(open) = self.open.take() {
            self.done.push(open.close());
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
    /// `None`: `query --count` reads the block's rows.
    pub counts: Option<&'a str>,
}

/// The blocks of a commit whose rows got the ids `chunks` (`(first, last, rows)` of each run of
/// [`BLOCK_ROWS`] rows, in order), with what was built of them — or, when nothing was or it
/// does not fit the chunks (a row was taken out after they were built), one block without a
/// filter or counts.
pub fn block_rows<'a>(
    chunks: &[(i64, i64, i64)],
    blocks: Option<&'a [Block]>,
) -> Vec<BlockRow<'a>> {
    match blocks {
        Some(blocks) if blocks.len() == chunks.len() => chunks
            .iter()
            .zip(blocks)
            .map(|(&(first_id, last_id, rows), b)| BlockRow {
                first_id,
                last_id,
                rows,
                bloom: b.bloom.as_ref(),
                counts: Some(&b.counts),
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
                    counts: None,
                }],
                _ => Vec::new(),
            }
        }
    }
}
