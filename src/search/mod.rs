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

/// The rows of one *sub-block*: a block with filters also has one per this many of its rows
/// (all of one size, stored together), tested only when the block's own filter passes. A rare
/// needle then reads a few hundred rows per block that may hold it, not a thousand, for
/// filters about twice the size of the block's.
pub const SUB_ROWS: usize = 128;

/// The size a sub-block's filter is built at (folded like a block's). The block's filter is
/// the union of its sub-blocks' at this size (room for ~100,000 distinct grams at
/// [`bloom::MAX_FILL`]) before it is folded: a gram is set once, in the small filter.
const SUB_BUILD_BITS: usize = 1 << 18;

/// What a block stores besides its range: the filter of its text, and how many rows it holds
/// per minute (of `ts`), level and source (`query --count` adds these up instead of reading
/// the rows).
#[derive(Debug, Clone, PartialEq)]
pub struct Block {
    /// How many rows it holds.
    pub rows: usize,
    /// `None`: the index is off (`[search] index = false`); the block may hold anything.
    pub bloom: Option<Bloom>,
    /// The filters of its sub-blocks ([`SUB_ROWS`] rows each, in order, all of one size);
    /// none without filters or for a block of one sub-block.
    pub subs: Vec<Bloom>,
    /// JSON: `[[minute, level, source, rows], …]`, minute in minutes since 1970 (`null`: rows
    /// without `ts`), level `null` for rows without one.
    pub counts: String,
}

type CountKey = (Option<i64>, Option<String>, std::sync::Arc<str>);

/// One block being filled.
#[derive(Debug)]
struct OpenBlock {
    /// The union of the closed sub-blocks' filters.
    bloom: Option<Box<Bloom>>,
    /// The filter of the sub-block being filled, and those of the ones before.
    sub: Option<Box<Bloom>>,
    subs: Vec<Bloom>,
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

    /// Ends the sub-block being filled (`next`: and starts another).
    fn close_sub(&mut self, next: bool) {
        let full = if next {
            self.sub
                .as_mut()
                .map(|sub| std::mem::replace(&mut **sub, Bloom::with_bits(SUB_BUILD_BITS)))
        } else {
            self.sub.take().map(|sub| *sub)
        };
        if let (Some(bloom), Some(full)) = (&mut self.bloom, full) {
            bloom.union(&full);
            self.subs.push(full);
        }
    }

    fn close(mut self) -> Block {
        self.close_sub(false);
        let subs = if self.subs.len() > 1 {
            Bloom::fold_all(self.subs)
        } else {
            Vec::new()
        };
        let mut counts = self.counts;
        counts.sort();
        let rows: Vec<serde_json::Value> = counts
            .into_iter()
            .map(|((minute, level, source), n)| serde_json::json!([minute, level, &*source, n]))
            .collect();
        Block {
            rows: self.rows,
            bloom: self.bloom.map(|b| b.fold()),
            subs,
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
                bloom: filters.then(|| Box::new(Bloom::with_bits(SUB_BUILD_BITS))),
                sub: filters.then(|| Box::new(Bloom::with_bits(SUB_BUILD_BITS))),
                subs: Vec::new(),
                counts: Vec::new(),
                rows: 0,
            });
            if open.rows > 0 && open.rows.is_multiple_of(SUB_ROWS) {
                open.close_sub(true);
            }
            if let Some(sub) = &mut open.sub {
                let mut add = |h| sub.insert(h);
                let line = batch.bytes(&r.line);
                bloom::line_grams(line, &mut self.scratch, &mut add);
                // The message is usually part of the line (as written, or once decoded).
                if let Some(m) = &r.message {
                    let m = m.get(&batch.buf).as_bytes();
                    if memchr::memmem::find(line, m).is_none() {
                        bloom::text_grams(m, &mut self.scratch, &mut add);
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
#[derive(Debug, Clone, PartialEq)]
pub struct BlockRow<'a> {
    pub first_id: i64,
    pub last_id: i64,
    pub rows: i64,
    /// `None`: the block may hold anything.
    pub bloom: Option<&'a Bloom>,
    /// The filters of its sub-blocks, and the last id of each (sub-block `i` holds the ids
    /// after sub-block `i - 1`'s last, from `first_id` for the first). `None`: the block is
    /// read whole when its filter passes.
    pub subs: Option<(&'a [Bloom], Vec<i64>)>,
    /// `None`: `query --count` reads the block's rows.
    pub counts: Option<&'a str>,
}

impl BlockRow<'_> {
    /// The sub-blocks' filters' size in bits (0 without them).
    pub fn sub_bits(&self) -> i64 {
        self.subs
            .as_ref()
            .and_then(|(f, _)| f.first())
            .map_or(0, |f| f.bits() as i64)
    }

    /// The sub-blocks' filters as stored: one after the other, each of [`Self::sub_bits`].
    pub fn sub_bytes(&self) -> Option<Vec<u8>> {
        self.subs
            .as_ref()
            .map(|(f, _)| f.iter().flat_map(Bloom::to_bytes).collect())
    }

    /// The sub-blocks' last ids.
    pub fn sub_last(&self) -> Option<&[i64]> {
        self.subs.as_ref().map(|(_, last)| last.as_slice())
    }
}

/// The blocks of a commit whose rows got the ids `chunks` (`(first, last, rows)` of each run of
/// [`SUB_ROWS`] rows, in order), with what was built of them — or, when nothing was or it
/// does not fit the chunks (a row was taken out after they were built), one block without a
/// filter or counts.
pub fn block_rows<'a>(
    chunks: &[(i64, i64, i64)],
    blocks: Option<&'a [Block]>,
) -> Vec<BlockRow<'a>> {
    let per_block = BLOCK_ROWS / SUB_ROWS;
    let groups = chunks.chunks(per_block);
    let rows = |group: &[(i64, i64, i64)]| group.iter().map(|c| c.2).sum::<i64>();
    match blocks {
        Some(blocks)
            if blocks.len() == groups.len()
                && blocks
                    .iter()
                    .zip(groups.clone())
                    .all(|(b, g)| b.rows as i64 == rows(g)) =>
        {
            blocks
                .iter()
                .zip(groups)
                .map(|(b, g)| BlockRow {
                    first_id: g[0].0,
                    last_id: g[g.len() - 1].1,
                    rows: rows(g),
                    bloom: b.bloom.as_ref(),
                    subs: (b.subs.len() == g.len() && g.len() > 1)
                        .then(|| (b.subs.as_slice(), g.iter().map(|c| c.1).collect())),
                    counts: Some(&b.counts),
                })
                .collect()
        }
        _ => {
            let first = chunks.iter().map(|c| c.0).min();
            let last = chunks.iter().map(|c| c.1).max();
            match (first, last) {
                (Some(first_id), Some(last_id)) => vec![BlockRow {
                    first_id,
                    last_id,
                    rows: rows(chunks),
                    bloom: None,
                    subs: None,
                    counts: None,
                }],
                _ => Vec::new(),
            }
        }
    }
}

/// Cuts the ids rows got, in order, into the runs of [`SUB_ROWS`] that [`block_rows`] takes.
pub fn id_chunks(ids: impl IntoIterator<Item = i64>) -> Vec<(i64, i64, i64)> {
    let mut chunks: Vec<(i64, i64, i64)> = Vec::new();
    for id in ids {
        match chunks.last_mut() {
            Some((_, last, rows)) if (*rows as usize) < SUB_ROWS => {
                *last = id;
                *rows += 1;
            }
            _ => chunks.push((id, id, 1)),
        }
    }
    chunks
}

/// Ids as SQLite stores a list of them (`sub_last`): 8 bytes each, little-endian.
pub fn ids_to_bytes(ids: &[i64]) -> Vec<u8> {
    ids.iter().flat_map(|i| i.to_le_bytes()).collect()
}

/// The ids of [`ids_to_bytes`] (a trailing part of fewer than 8 bytes is ignored).
pub fn ids_from_bytes(bytes: &[u8]) -> Vec<i64> {
    bytes
        .chunks_exact(8)
        .map(|c| {
            let mut b = [0u8; 8];
            b.copy_from_slice(c);
            i64::from_le_bytes(b)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(rows: usize, subs: usize) -> Block {
        Block {
            rows,
            bloom: Some(Bloom::with_bits(1024)),
            subs: vec![Bloom::with_bits(1024); subs],
            counts: "[]".to_owned(),
        }
    }

    #[test]
    fn ids_are_cut_into_sub_blocks_and_blocks() {
        // 1,100 rows whose ids have a gap (another session's rows) after the 200th.
        let ids: Vec<i64> = (1..=200).chain(1001..=1900).collect();
        let chunks = id_chunks(ids);
        assert_eq!(chunks.len(), 9);
        assert_eq!(chunks[0], (1, 128, 128));
        assert_eq!(chunks[1], (129, 1056, 128));
        assert_eq!(chunks[8], (1825, 1900, 76));
        let blocks = [block(1024, 8), block(76, 1)];
        let rows = block_rows(&chunks, Some(&blocks));
        assert_eq!(rows.len(), 2);
        assert_eq!(
            (rows[0].first_id, rows[0].last_id, rows[0].rows),
            (1, 1824, 1024)
        );
        let last = rows[0].sub_last().expect("sub-blocks");
        assert_eq!(last.len(), 8);
        assert_eq!((last[0], last[1], last[7]), (128, 1056, 1824));
        assert_eq!(rows[0].sub_bits(), 1024);
        assert_eq!(rows[0].sub_bytes().map(|b| b.len()), Some(8 * 128));
        // A block of one sub-block has no sub-blocks of its own.
        assert_eq!(
            (rows[1].first_id, rows[1].last_id, rows[1].rows),
            (1825, 1900, 76)
        );
        assert_eq!(rows[1].sub_last(), None);
        assert_eq!(rows[1].sub_bits(), 0);
    }

    #[test]
    fn blocks_that_do_not_fit_the_rows_become_one_that_may_hold_anything() {
        let chunks = id_chunks(1..=300);
        // Built for 301 rows: a row was refused after the blocks were built.
        let built = [block(301, 3)];
        let rows = block_rows(&chunks, Some(&built));
        assert_eq!(rows.len(), 1);
        assert_eq!(
            (rows[0].first_id, rows[0].last_id, rows[0].rows),
            (1, 300, 300)
        );
        assert!(rows[0].bloom.is_none() && rows[0].counts.is_none() && rows[0].subs.is_none());
        assert!(block_rows(&[], None).is_empty());
    }

    #[test]
    fn ids_round_trip_through_bytes() {
        let ids = [1, -2, i64::MAX, 1 << 40];
        assert_eq!(ids_from_bytes(&ids_to_bytes(&ids)), ids);
    }
}
