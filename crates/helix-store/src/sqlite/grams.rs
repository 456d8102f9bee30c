//! Which blocks of log lines may contain a text: one filter per block of 4 096
//! consecutive row IDs (`log_blocks`), a Bloom filter of the byte trigrams of the lines'
//! ASCII-lowercased bodies plus the block's time range.
//!
//! It replaces an FTS5 trigram index, which cost about two thirds of a log line's ingest (it
//! writes ≈ 50 postings per line and merges segments). A filter is updated once per commit per
//! block touched, from trigram hashes the writer computes in memory; a search reads the
//! filters of its time window and scans only the row ranges of the blocks that may match,
//! checking the real `LIKE` on each row, so a filter's false positives cost time, never
//! results. SQLite's `LIKE` folds ASCII case only, and so do the trigrams here: a body
//! containing the text contains every trigram of it.

use std::collections::BTreeMap;

use rusqlite::{Connection, OptionalExtension, Transaction};

/// Rows per block (4 096): row IDs `block << BLOCK_SHIFT ..` up to the next block.
pub(super) const BLOCK_SHIFT: u32 = 12;
/// Bits per filter (16 KiB): about 5 % false positives per trigram at 20 000 distinct
/// trigrams in a block, far fewer for a text of several trigrams (each must match).
const BITS_LOG2: u32 = 17;
const WORDS: usize = (1 << BITS_LOG2) / 64;
const MASK: u64 = (1 << BITS_LOG2) - 1;

/// The block of a row.
fn block_of(id: i64) -> i64 {
    id >> BLOCK_SHIFT
}

/// The three bit positions of a trigram. The hash is fixed here (not a library's), since the
/// filters it sets are stored.
fn positions(a: u8, b: u8, c: u8) -> [usize; 3] {
    let mut z = (u64::from(a) | u64::from(b) << 8 | u64::from(c) << 16).wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    [(z & MASK) as usize, ((z >> BITS_LOG2) & MASK) as usize, ((z >> (2 * BITS_LOG2)) & MASK) as usize]
}

/// Each trigram of `text`'s bytes, ASCII-lowercased.
fn each_trigram(text: &str, mut f: impl FnMut([usize; 3])) {
    let bytes = text.as_bytes();
    for w in bytes.windows(3) {
        f(positions(w[0].to_ascii_lowercase(), w[1].to_ascii_lowercase(), w[2].to_ascii_lowercase()));
    }
}

/// A text the filters can narrow (three bytes or more); a shorter one is checked row by row.
pub(super) fn indexable(text: &str) -> bool {
    text.len() >= 3
}

/// One block's filter and time range.
#[derive(Debug, Clone)]
struct Filter {
    min_ns: i64,
    max_ns: i64,
    bits: Box<[u64]>,
}

impl Filter {
    fn empty() -> Filter {
        Filter { min_ns: i64::MAX, max_ns: i64::MIN, bits: vec![0u64; WORDS].into_boxed_slice() }
    }

    fn add(&mut self, timestamp_ns: i64, body: &str) {
        self.min_ns = self.min_ns.min(timestamp_ns);
        self.max_ns = self.max_ns.max(timestamp_ns);
        let bits = &mut self.bits;
        each_trigram(body, |p| {
            for i in p {
                bits[i / 64] |= 1 << (i % 64);
            }
        });
    }

    fn merge(&mut self, other: &Filter) {
        self.min_ns = self.min_ns.min(other.min_ns);
        self.max_ns = self.max_ns.max(other.max_ns);
        for (a, b) in self.bits.iter_mut().zip(other.bits.iter()) {
            *a |= b;
        }
    }

    fn blob(&self) -> Vec<u8> {
        self.bits.iter().flat_map(|w| w.to_le_bytes()).collect()
    }

    fn from_blob(min_ns: i64, max_ns: i64, blob: &[u8]) -> Filter {
        let mut f = Filter::empty();
        f.min_ns = min_ns;
        f.max_ns = max_ns;
        for (w, chunk) in f.bits.iter_mut().zip(blob.chunks_exact(8)) {
            *w = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
        }
        f
    }
}

/// A text's bit positions, to test filters against.
pub(super) struct Needle {
    positions: Vec<usize>,
}

impl Needle {
    pub(super) fn new(text: &str) -> Needle {
        let mut positions = Vec::new();
        each_trigram(text, |p| positions.extend(p));
        positions.sort_unstable();
        positions.dedup();
        Needle { positions }
    }

    /// Every bit of the text is set in `blob` (a stored filter).
    fn in_blob(&self, blob: &[u8]) -> bool {
        self.positions.iter().all(|&i| {
            let byte = blob.get(i / 8).copied().unwrap_or(0xff); // a short blob cannot rule out
            byte & (1 << (i % 8)) != 0
        })
    }
}

/// The filters a commit adds to, by block.
#[derive(Default)]
pub(super) struct Pending {
    blocks: BTreeMap<i64, Filter>,
}

impl Pending {
    /// A line stored as row `id`.
    pub(super) fn add(&mut self, id: i64, timestamp_ns: i64, body: &str) {
        self.blocks.entry(block_of(id)).or_insert_with(Filter::empty).add(timestamp_ns, body);
    }

    /// Merge into the stored filters, in the commit's transaction.
    pub(super) fn write(self, tx: &Transaction<'_>) -> rusqlite::Result<()> {
        if self.blocks.is_empty() {
            return Ok(());
        }
        let mut read = tx.prepare_cached("SELECT min_ns, max_ns, grams FROM log_blocks WHERE block = ?1")?;
        let mut write = tx.prepare_cached(
            "INSERT OR REPLACE INTO log_blocks (block, min_ns, max_ns, grams) VALUES (?1, ?2, ?3, ?4)",
        )?;
        for (block, mut filter) in self.blocks {
            let stored = read
                .query_row([block], |r| Ok(Filter::from_blob(r.get(0)?, r.get(1)?, &r.get::<_, Vec<u8>>(2)?)))
                .optional()?;
            if let Some(stored) = stored {
                filter.merge(&stored);
            }
            write.execute(rusqlite::params![block, filter.min_ns, filter.max_ns, filter.blob()])?;
        }
        Ok(())
    }
}

/// The blocks that may hold lines containing the needle's text within `[from_ns, to_ns)`, in
/// ascending order; `None` when more than `most` do (the caller then walks instead).
pub(super) fn candidates(
    conn: &Connection,
    needle: &Needle,
    from_ns: Option<i64>,
    to_ns: Option<i64>,
    most: usize,
) -> rusqlite::Result<Option<Vec<i64>>> {
    // Newest first, so that a common text gives up after reading few filters.
    let mut stmt = conn
        .prepare_cached("SELECT block, grams FROM log_blocks WHERE max_ns >= ?1 AND min_ns < ?2 ORDER BY block DESC")?;
    let mut rows = stmt.query(rusqlite::params![from_ns.unwrap_or(i64::MIN), to_ns.unwrap_or(i64::MAX)])?;
    let mut found = Vec::new();
    while let Some(row) = rows.next()? {
        let blob = row.get_ref(1)?.as_blob().map_err(rusqlite::Error::from)?;
        if needle.in_blob(blob) {
            if found.len() == most {
                return Ok(None);
            }
            found.push(row.get::<_, i64>(0)?);
        }
    }
    found.reverse();
    Ok(Some(found))
}

/// The row-ID ranges `[first, last]` of `blocks` (ascending), adjacent blocks joined.
pub(super) fn ranges(blocks: &[i64]) -> Vec<(i64, i64)> {
    let mut out: Vec<(i64, i64)> = Vec::new();
    for &b in blocks {
        let (first, last) = (b << BLOCK_SHIFT, ((b + 1) << BLOCK_SHIFT) - 1);
        match out.last_mut() {
            Some(r) if r.1 + 1 == first => r.1 = last,
            _ => out.push((first, last)),
        }
    }
    out
}

/// Build the filters of every stored line (migration 12, from the FTS5 index it replaces),
/// in the migration's transaction; logs its progress on a large store.
pub(super) fn backfill(tx: &Transaction<'_>) -> rusqlite::Result<()> {
    let total: i64 = tx.query_row("SELECT count(*) FROM logs", [], |r| r.get(0))?;
    if total == 0 {
        return Ok(());
    }
    tracing::info!(lines = total, "building the log search filters (migration 12)");
    // Written every few blocks (rows come in ID order), so memory stays bounded on any store.
    const FLUSH_BLOCKS: usize = 64;
    let mut pending = Pending::default();
    let mut done = 0i64;
    let mut stmt = tx.prepare("SELECT id, timestamp_ns, body FROM logs ORDER BY id")?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let body = r.get_ref(2)?.as_str().unwrap_or_default();
        pending.add(r.get(0)?, r.get(1)?, body);
        if pending.blocks.len() > FLUSH_BLOCKS {
            std::mem::take(&mut pending).write(tx)?;
        }
        done += 1;
        if done % 500_000 == 0 {
            tracing::info!(done, of = total, "building the log search filters");
        }
    }
    pending.write(tx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_filter_holds_every_substring_of_its_lines_in_any_ascii_case() {
        let mut f = Filter::empty();
        f.add(5, "Retrying upload of cand-42: connection RESET after 1024 bytes");
        f.add(3, "wrote /archive/é-böck.h5");
        let blob = f.blob();
        for text in ["upload of", "connection reset", "RESET AFTER", "cand-42", "é-b", "böck.h5", "ing"] {
            assert!(Needle::new(text).in_blob(&blob), "{text}");
        }
        assert_eq!((f.min_ns, f.max_ns), (3, 5));
        // A text of many trigrams that is not there (false positives need every bit set).
        assert!(!Needle::new("checksum mismatch on beam 7").in_blob(&blob));
        let back = Filter::from_blob(3, 5, &blob);
        assert_eq!(back.bits, f.bits);
    }

    #[test]
    fn ranges_join_adjacent_blocks() {
        assert_eq!(ranges(&[]), vec![]);
        assert_eq!(ranges(&[0, 1, 3]), vec![(0, 8191), (12_288, 16_383)]);
    }
}
