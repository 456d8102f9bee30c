//! Span blocks on SQLite (docs/storage.md "Span packs"): where a stored trace is, and the
//! writer's open block.
//!
//! A trace is one `span_traces` row, numbered in write order; a block is the run of trace
//! numbers written while it was open. The [`Directory`] maps a keyed 28-bit fingerprint of
//! each stored trace ID to its trace number, in memory (8 bytes per trace): the only map
//! from a random trace ID, so no tree on disk is keyed by one. It may hold entries of traces
//! that are gone or were never committed (a lookup is checked against the row's trace ID),
//! never misses a committed one of the blocks it holds: the writer adds entries before it
//! commits. Its memory has a cap (`HELIX_SPAN_DIRECTORY_BYTES`): past it the oldest sealed
//! blocks leave it, each keeping a small filter of its fingerprints, then none; a by-ID read
//! finds their traces through the blocks' sorted entries on disk (`span_blocks.traces`).

use std::collections::{BTreeSet, VecDeque};
use std::hash::Hasher;

use rusqlite::{Connection, OptionalExtension, Transaction};
use siphasher::sip::SipHasher13;

use crate::{SpanDirectoryStats, StoreError, StoreResult};

/// The open block is sealed once it holds this many spans (or a quarter of the directory's
/// cap in entries): few blocks for a search to visit,
/// and retention deletes a block as one range.
pub(super) const BLOCK_SPANS: i64 = 16_384;
/// ... or once it is this old, so blocks of a quiet herald still age out together.
pub(super) const BLOCK_AGE_NS: i64 = 3_600 * 1_000_000_000;
/// Recent directory entries are merged into the sorted array past this many.
const RECENT_MAX: usize = 1 << 18;
/// What a recent entry costs, counted: its 8 bytes and its share of a B-tree node.
const RECENT_COST: usize = 16;
/// Bits of a directory entry that hold the trace number (the fingerprint has the rest).
const ID_BITS: u32 = 36;
const ID_MASK: u64 = (1 << ID_BITS) - 1;
/// Filter bits per trace of an evicted block (rounded up to a power of two), and probes: under
/// 1 % of the blocks a trace is not in are read for it.
const FILTER_BITS: usize = 16;
const FILTER_PROBES: u32 = 3;
/// The largest filter: 2^21 bits (three 21-bit probes of one 64-bit hash).
const FILTER_MAX_BITS: usize = 1 << 21;

/// The keyed fingerprint of a trace ID (28 bits).
pub(super) fn fingerprint(key: &[u8; 16], trace: &[u8]) -> u32 {
    let mut h = SipHasher13::new_with_key(key);
    h.write(trace);
    (h.finish() >> ID_BITS) as u32
}

/// A directory entry: fingerprint and trace number.
pub(super) fn entry(fingerprint: u32, id: i64) -> u64 {
    u64::from(fingerprint) << ID_BITS | (id as u64 & ID_MASK)
}

fn entry_id(e: u64) -> i64 {
    (e & ID_MASK) as i64
}

/// A sealed block: its number, trace numbers and how many traces it listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Sealed {
    pub block: i64,
    pub first: i64,
    pub last: i64,
    pub traces: usize,
}

/// A Bloom filter of an evicted block's fingerprints.
#[derive(Debug)]
struct Filtered {
    sealed: Sealed,
    words: Vec<u64>,
}

fn filter_words(traces: usize) -> usize {
    (traces.max(1) * FILTER_BITS).next_power_of_two().min(FILTER_MAX_BITS) / 64
}

/// The filter bits of a fingerprint (the filter has `words` words, a power of two).
fn probes(fingerprint: u32, words: usize) -> impl Iterator<Item = usize> {
    // The fingerprint is already a keyed hash; mixed again so three probes come from it.
    let mut h = u64::from(fingerprint).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    h ^= h >> 29;
    h = h.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    h ^= h >> 32;
    let mask = words * 64 - 1;
    (0..FILTER_PROBES).map(move |i| (h >> (i * 21)) as usize & mask)
}

impl Filtered {
    fn new(sealed: Sealed) -> Filtered {
        Filtered { sealed, words: vec![0; filter_words(sealed.traces)] }
    }

    fn add(&mut self, fingerprint: u32) {
        for bit in probes(fingerprint, self.words.len()) {
            self.words[bit / 64] |= 1 << (bit % 64);
        }
    }

    fn may_hold(&self, fingerprint: u32) -> bool {
        probes(fingerprint, self.words.len()).all(|bit| self.words[bit / 64] & (1 << (bit % 64)) != 0)
    }

    fn bytes(&self) -> usize {
        self.words.len() * 8 + size_of::<Filtered>()
    }
}

/// Trace fingerprint → trace number, for the traces of the open block and of the newest
/// sealed blocks, as many as the cap allows; a filter for older blocks.
#[derive(Debug)]
pub(super) struct Directory {
    key: [u8; 16],
    cap: usize,
    /// Entries, sorted.
    sorted: Vec<u64>,
    /// Entries added since the last merge.
    recent: BTreeSet<u64>,
    /// Trace-number ranges deleted since the last compaction (skipped, then dropped).
    removed: Vec<(i64, i64)>,
    stale: usize,
    /// Sealed blocks whose entries are held, oldest first.
    resident: VecDeque<Sealed>,
    /// Evicted blocks with a filter, oldest first.
    filtered: VecDeque<Filtered>,
    filter_bytes: usize,
    /// Sealed blocks up to this one that are neither held nor filtered: looked up on disk.
    bare_through: Option<i64>,
}

impl Directory {
    fn new(key: [u8; 16], cap: usize) -> Directory {
        Directory {
            key,
            cap,
            sorted: Vec::new(),
            recent: BTreeSet::new(),
            removed: Vec::new(),
            stale: 0,
            resident: VecDeque::new(),
            filtered: VecDeque::new(),
            filter_bytes: 0,
            bare_through: None,
        }
    }

    pub(super) fn fingerprint(&self, trace: &[u8]) -> u32 {
        fingerprint(&self.key, trace)
    }

    /// The trace numbers of the blocks held that may be `trace`'s (usually none or one).
    pub(super) fn candidates(&self, fingerprint: u32) -> Vec<i64> {
        let lo = u64::from(fingerprint) << ID_BITS;
        let hi = lo | ID_MASK;
        let start = self.sorted.partition_point(|e| *e < lo);
        let found = self.sorted[start..].iter().take_while(|e| **e <= hi).chain(self.recent.range(lo..=hi));
        found.map(|e| entry_id(*e)).filter(|id| !self.is_removed(*id)).collect()
    }

    /// The evicted blocks a trace may be in: those whose filter has its fingerprint, and every
    /// sealed block up to the returned one (no filter kept).
    pub(super) fn evicted(&self, fingerprint: u32) -> (Vec<i64>, Option<i64>) {
        let blocks = self.filtered.iter().filter(|f| f.may_hold(fingerprint)).map(|f| f.sealed.block).collect();
        (blocks, self.bare_through)
    }

    fn is_removed(&self, id: i64) -> bool {
        self.removed.iter().any(|(a, b)| (*a..=*b).contains(&id))
    }

    pub(super) fn insert_entry(&mut self, entry: u64) {
        self.recent.insert(entry);
        // Over the cap with sealed blocks to let go of (the open block's entries stay).
        let over = self.bytes() > self.cap && !(self.resident.is_empty() && self.filtered.is_empty());
        if over || self.recent.len() > RECENT_MAX || self.recent.len() * RECENT_COST > self.cap / 8 {
            self.merge();
        }
    }

    fn merge(&mut self) {
        let removed = std::mem::take(&mut self.removed);
        let mut all = Vec::with_capacity(self.sorted.len() + self.recent.len());
        let live = |e: &u64| !removed.iter().any(|(a, b)| (*a..=*b).contains(&entry_id(*e)));
        // Two sorted runs: merged in one pass.
        let (mut a, mut b) = (std::mem::take(&mut self.sorted).into_iter().peekable(), self.recent.iter().peekable());
        loop {
            let next = match (a.peek(), b.peek()) {
                (Some(x), Some(y)) if x <= *y => a.next(),
                (_, Some(_)) => b.next().copied(),
                (Some(_), None) => a.next(),
                (None, None) => break,
            };
            if let Some(e) = next.filter(live) {
                all.push(e);
            }
        }
        all.dedup();
        self.sorted = all;
        self.recent.clear();
        self.stale = 0;
        self.fit();
    }

    /// The open block was sealed (its commit done): its entries now age with it.
    pub(super) fn sealed(&mut self, block: Sealed) {
        self.resident.retain(|b| b.block != block.block);
        self.resident.push_back(block);
        self.fit();
    }

    /// Bring the memory under the cap: the oldest held blocks leave (a filter each) until it
    /// is down to 7/8 of it, then the oldest filters while they take more than a quarter. The open block's entries
    /// always stay: a retried export must find its traces.
    fn fit(&mut self) {
        let mut bytes = self.bytes();
        let mut evict: Vec<Sealed> = Vec::new();
        // Down to 7/8 of the cap: each pass over the entries frees room for many blocks.
        let target = if bytes > self.cap { self.cap - self.cap / 8 } else { self.cap };
        while bytes > target {
            let Some(b) = self.resident.pop_front() else { break };
            bytes = (bytes + filter_words(b.traces) * 8).saturating_sub(b.traces * 8);
            evict.push(b);
        }
        if let (Some(lo), Some(hi)) = (evict.first().map(|b| b.first), evict.last().map(|b| b.last)) {
            let mut filters: Vec<Filtered> = evict.iter().map(|b| Filtered::new(*b)).collect();
            let mut keep = |e: &u64| {
                let id = entry_id(*e);
                if id < lo || id > hi {
                    return true;
                }
                let i = evict.partition_point(|b| b.first <= id).saturating_sub(1);
                if evict[i].last >= id {
                    filters[i].add((e >> ID_BITS) as u32);
                }
                false
            };
            self.sorted.retain(&mut keep);
            self.recent.retain(&mut keep);
            self.sorted.shrink_to_fit();
            for f in filters {
                self.filter_bytes += f.bytes();
                self.filtered.push_back(f);
            }
        }
        while self.filter_bytes > self.cap / 4 || (self.bytes() > self.cap && !self.filtered.is_empty()) {
            let Some(f) = self.filtered.pop_front() else { break };
            self.filter_bytes -= f.bytes();
            self.bare_through = Some(self.bare_through.map_or(f.sealed.block, |b| b.max(f.sealed.block)));
        }
    }

    /// A deleted block (its trace numbers `first..=last`): its entries go at the next merge,
    /// sooner if they pile up; its filter at once.
    pub(super) fn remove_block(&mut self, block: i64, first: i64, last: i64, traces: usize) {
        if let Some(at) = self.filtered.iter().position(|f| f.sealed.block == block) {
            if let Some(f) = self.filtered.remove(at) {
                self.filter_bytes -= f.bytes();
            }
            return;
        }
        let held = self.resident.len();
        self.resident.retain(|b| b.block != block);
        if self.resident.len() == held {
            // Not held: a block looked up on disk, gone from there.
            return;
        }
        self.removed.push((first, last));
        self.stale += traces;
        if self.stale * 8 > self.sorted.len() + self.recent.len() || self.removed.len() > 64 {
            self.merge();
        }
    }

    /// Entries held (for the logs).
    pub(super) fn len(&self) -> usize {
        self.sorted.len() + self.recent.len()
    }

    /// Memory taken, counted: entries, filters, the block lists.
    fn bytes(&self) -> usize {
        self.sorted.capacity() * 8
            + self.recent.len() * RECENT_COST
            + self.removed.capacity() * 16
            + self.resident.capacity() * size_of::<Sealed>()
            + self.filtered.capacity() * size_of::<Filtered>()
            + self.filter_bytes
    }

    pub(super) fn stats(&self) -> SpanDirectoryStats {
        SpanDirectoryStats {
            bytes: self.bytes() as u64,
            cap_bytes: self.cap as u64,
            entries: self.len() as u64,
            resident_blocks: self.resident.len() as u64,
            filtered_blocks: self.filtered.len() as u64,
        }
    }
}

/// The trace numbers a sealed block's sorted entries (`span_blocks.traces`) list for a
/// fingerprint: a binary search of the blob.
pub(super) fn blob_candidates(blob: &[u8], fingerprint: u32) -> Vec<i64> {
    let n = blob.len() / 8;
    let at = |i: usize| u64::from_le_bytes(blob[i * 8..i * 8 + 8].try_into().unwrap_or([0; 8]));
    let lo = u64::from(fingerprint) << ID_BITS;
    let hi = lo | ID_MASK;
    // partition_point over the indices 0..n.
    let (mut a, mut b) = (0, n);
    while a < b {
        let mid = a + (b - a) / 2;
        if at(mid) < lo {
            a = mid + 1;
        } else {
            b = mid;
        }
    }
    (a..n).map(at).take_while(|e| *e <= hi).map(entry_id).collect()
}

/// What the writer knows of the open block (and nothing a rolled-back commit could change:
/// a commit's changes are applied with [`OpenBlock::apply`] once it committed).
#[derive(Debug)]
pub(super) struct OpenBlock {
    pub block: i64,
    pub opened_ns: i64,
    pub spans: i64,
    /// Directory entries of its traces, written to `span_blocks.traces` when it is sealed.
    pub entries: Vec<u64>,
    /// ... or once it has this many traces: the open block's entries, which the directory
    /// always holds, take at most a quarter of its cap (and one batch's).
    pub max_traces: usize,
}

/// A commit's changes to the open block.
#[derive(Debug, Default)]
pub(super) struct BlockChange {
    /// The open block was sealed and this one opened (at this time) before the batch.
    pub opened: Option<(i64, i64)>,
    /// The block it sealed.
    pub sealed: Option<Sealed>,
    pub spans: i64,
    pub entries: Vec<u64>,
}

impl OpenBlock {
    /// Seal the open block inside `tx` when it is full or old; returns the block the batch's
    /// new traces go to and the change to apply after the commit.
    pub(super) fn prepare(&self, tx: &Transaction<'_>, now_ns: i64) -> StoreResult<(i64, BlockChange)> {
        let mut change = BlockChange::default();
        let young = now_ns.saturating_sub(self.opened_ns) < BLOCK_AGE_NS;
        if self.spans < BLOCK_SPANS && self.entries.len() < self.max_traces && young {
            return Ok((self.block, change));
        }
        let mut entries = self.entries.clone();
        entries.sort_unstable();
        entries.dedup();
        tx.prepare_cached("UPDATE span_blocks SET sealed = 1, traces = ?2 WHERE block = ?1")?
            .execute(rusqlite::params![self.block, encode(&entries)])?;
        let next = self.block + 1;
        tx.prepare_cached("INSERT INTO span_blocks (block, sealed, opened_ns) VALUES (?1, 0, ?2)")?
            .execute(rusqlite::params![next, now_ns])?;
        change.opened = Some((next, now_ns));
        let ids = || entries.iter().map(|e| entry_id(*e));
        if let (Some(first), Some(last)) = (ids().min(), ids().max()) {
            change.sealed = Some(Sealed { block: self.block, first, last, traces: entries.len() });
        }
        Ok((next, change))
    }

    pub(super) fn apply(&mut self, change: BlockChange) {
        if let Some((block, opened_ns)) = change.opened {
            *self = OpenBlock { block, opened_ns, spans: 0, entries: Vec::new(), max_traces: self.max_traces };
        }
        self.spans += change.spans;
        self.entries.extend(change.entries);
    }
}

pub(super) fn encode(entries: &[u64]) -> Vec<u8> {
    entries.iter().flat_map(|p| p.to_le_bytes()).collect()
}

fn decode(blob: &[u8]) -> Vec<u64> {
    blob.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8]))).collect()
}

/// Load the directory and the open block at start (the writer connection, schema current),
/// packing the spans of schema 5 first if migration 10 left them. The open block's entries
/// and the newest sealed blocks' are held while they fit in three quarters of `cap` bytes,
/// older blocks get a filter while those fit in the last quarter; older ones are not read.
pub(super) fn load(conn: &mut Connection, cap: usize) -> StoreResult<(Directory, OpenBlock)> {
    let key: Vec<u8> = conn.query_row("SELECT fingerprint_key FROM span_store", [], |r| r.get(0))?;
    let key: [u8; 16] =
        key.try_into().map_err(|_| StoreError::corrupt("span_store.fingerprint_key is not 16 bytes"))?;
    super::pack::convert_schema_5(conn, &key)?;
    let mut dir = Directory::new(key, cap);
    let open: Option<(i64, i64, i64)> = conn
        .query_row(
            "SELECT block, opened_ns, span_count FROM span_blocks WHERE sealed = 0 ORDER BY block DESC",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    let (block, opened_ns, spans) = match open {
        Some(o) => o,
        None => {
            // A new or converted store: open a block after the others.
            let now = super::retention::now_ns();
            conn.execute(
                "INSERT INTO span_blocks (block, sealed, opened_ns)
                 SELECT coalesce(max(block), 0) + 1, 0, ?1 FROM span_blocks",
                [now],
            )?;
            (conn.query_row("SELECT max(block) FROM span_blocks", [], |r| r.get(0))?, now, 0)
        }
    };
    let mut open_entries = Vec::new();
    {
        let mut stmt = conn.prepare("SELECT id, trace_id FROM span_traces WHERE block = ?1")?;
        let mut rows = stmt.query([block])?;
        while let Some(r) = rows.next()? {
            let trace: Vec<u8> = r.get(1)?;
            open_entries.push(entry(dir.fingerprint(&trace), r.get(0)?));
        }
    }
    let mut entries = open_entries.clone();
    let mut resident = Vec::new();
    {
        // Newest first; the blobs of blocks past both budgets are never read.
        let mut stmt = conn.prepare(
            "SELECT block, first_id, last_id, traces FROM span_blocks
             WHERE sealed = 1 AND traces IS NOT NULL AND first_id IS NOT NULL ORDER BY block DESC",
        )?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let blob: Vec<u8> = r.get(3)?;
            let sealed = Sealed { block: r.get(0)?, first: r.get(1)?, last: r.get(2)?, traces: blob.len() / 8 };
            if dir.filtered.is_empty() && (entries.len() + sealed.traces) * 8 <= cap / 4 * 3 {
                entries.extend(decode(&blob));
                resident.push(sealed);
            } else if dir.filter_bytes + filter_words(sealed.traces) * 8 <= cap / 4 {
                let mut f = Filtered::new(sealed);
                for e in decode(&blob) {
                    f.add((e >> ID_BITS) as u32);
                }
                dir.filter_bytes += f.bytes();
                dir.filtered.push_front(f);
            } else {
                dir.bare_through = Some(sealed.block);
                break;
            }
        }
    }
    entries.sort_unstable();
    entries.dedup();
    entries.shrink_to_fit();
    dir.sorted = entries;
    dir.resident = resident.into_iter().rev().collect();
    dir.fit();
    let max_traces = (cap / 4 / 8).max(1);
    Ok((dir, OpenBlock { block, opened_ns, spans, entries: open_entries, max_traces }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> Directory {
        Directory::new([7; 16], 1 << 30)
    }

    #[test]
    fn directory_finds_every_trace_number_of_a_fingerprint_until_its_block_is_removed() {
        let mut d = dir();
        let a = d.fingerprint(&[1; 16]);
        assert_ne!(a, d.fingerprint(&[2; 16]), "different traces, different fingerprints (here)");
        assert!(a < 1 << 28);
        d.insert_entry(entry(a, 3));
        d.insert_entry(entry(a, 9));
        d.insert_entry(entry(a.wrapping_add(1), 4));
        d.sealed(Sealed { block: 1, first: 3, last: 4, traces: 2 });
        assert_eq!(d.candidates(a), vec![3, 9]);
        d.merge();
        d.insert_entry(entry(a, 12));
        assert_eq!(d.candidates(a), vec![3, 9, 12], "sorted and recent entries alike");
        d.sealed(Sealed { block: 2, first: 8, last: 10, traces: 1 });
        d.remove_block(2, 8, 10, 1);
        assert_eq!(d.candidates(a), vec![3, 12]);
        d.merge();
        assert_eq!(d.candidates(a), vec![3, 12]);
        assert_eq!(d.len(), 3);
        assert!(d.candidates(a.wrapping_add(2)).is_empty());
    }

    #[test]
    fn entries_round_trip_through_the_blob() {
        let e = [entry(1, 5), entry((1 << 28) - 1, (1 << 36) - 1), entry(0x0102_0304, 77)];
        assert_eq!(decode(&encode(&e)), e.to_vec());
    }

    /// Blocks of `per` traces each, sealed one after the other under a 64 KiB cap: memory stays
    /// under the cap, the newest blocks are held, older ones filtered, the oldest bare; every
    /// trace is a candidate of its block or found in its blob.
    #[test]
    fn a_capped_directory_keeps_the_newest_blocks_and_finds_the_others_through_filters_or_disk() {
        let cap = 64 << 10;
        let mut d = Directory::new([3; 16], cap);
        let per = 1_000;
        let mut blobs = Vec::new();
        let mut id = 1;
        for block in 1..=40 {
            let mut entries = Vec::new();
            for _ in 0..per {
                let e = entry(d.fingerprint(&(id as u128).to_be_bytes()), id);
                d.insert_entry(e);
                entries.push(e);
                id += 1;
            }
            entries.sort_unstable();
            blobs.push(encode(&entries));
            d.sealed(Sealed { block, first: id - per, last: id - 1, traces: per as usize });
            assert!(d.stats().bytes <= cap as u64, "block {block}: {:?}", d.stats());
        }
        let s = d.stats();
        assert!(s.resident_blocks >= 3 && s.filtered_blocks >= 3, "{s:?}");
        assert!(d.bare_through.is_some(), "the oldest blocks keep nothing in memory: {s:?}");
        let mut false_hits = 0;
        for t in 1..id {
            let fp = d.fingerprint(&(t as u128).to_be_bytes());
            let block = (t - 1) / per + 1;
            let held = d.candidates(fp).contains(&t);
            let (filtered, bare) = d.evicted(fp);
            false_hits += filtered.iter().filter(|b| **b != block).count();
            let on_disk = filtered.contains(&block) || bare.is_some_and(|b| block <= b);
            assert!(held || on_disk, "trace {t} of block {block} is found");
            if !held {
                assert!(blob_candidates(&blobs[(block - 1) as usize], fp).contains(&t), "trace {t} in its blob");
            }
        }
        // Under 1 % of (trace, other filtered block) pairs read a block for nothing.
        assert!(false_hits < (id as usize) * s.filtered_blocks as usize / 100, "{false_hits} false hits");
    }
}
