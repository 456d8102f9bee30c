//! Span blocks on SQLite (docs/storage.md "Span packs"): where a stored trace is, and the
//! writer's open block.
//!
//! A trace is one `span_traces` row, numbered in write order; a block is the run of trace
//! numbers written while it was open. The [`Directory`] maps a keyed 28-bit fingerprint of
//! each stored trace ID to its trace number, in memory (8 bytes per trace): the only map
//! from a random trace ID, so no tree on disk is keyed by one. It may hold entries of traces
//! that are gone or were never committed (a lookup is checked against the row's trace ID),
//! never misses a committed one: the writer adds entries before it commits.

use std::collections::BTreeSet;
use std::hash::Hasher;

use rusqlite::{Connection, OptionalExtension, Transaction};
use siphasher::sip::SipHasher13;

use crate::{StoreError, StoreResult};

/// The open block is sealed once it holds this many spans: few blocks for a search to visit,
/// and retention deletes a block as one range.
pub(super) const BLOCK_SPANS: i64 = 16_384;
/// ... or once it is this old, so blocks of a quiet herald still age out together.
pub(super) const BLOCK_AGE_NS: i64 = 3_600 * 1_000_000_000;
/// Recent directory entries are merged into the sorted array past this many.
const RECENT_MAX: usize = 1 << 18;
/// Bits of a directory entry that hold the trace number (the fingerprint has the rest).
const ID_BITS: u32 = 36;
const ID_MASK: u64 = (1 << ID_BITS) - 1;

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

/// Trace fingerprint → trace number, for every stored trace.
#[derive(Debug)]
pub(super) struct Directory {
    key: [u8; 16],
    /// Entries, sorted.
    sorted: Vec<u64>,
    /// Entries added since the last merge.
    recent: BTreeSet<u64>,
    /// Trace-number ranges deleted since the last compaction (skipped, then dropped).
    removed: Vec<(i64, i64)>,
    stale: usize,
}

impl Directory {
    pub(super) fn fingerprint(&self, trace: &[u8]) -> u32 {
        fingerprint(&self.key, trace)
    }

    /// The trace numbers that may be `trace`'s (usually none or one).
    pub(super) fn candidates(&self, fingerprint: u32) -> Vec<i64> {
        let lo = u64::from(fingerprint) << ID_BITS;
        let hi = lo | ID_MASK;
        let start = self.sorted.partition_point(|e| *e < lo);
        let found = self.sorted[start..].iter().take_while(|e| **e <= hi).chain(self.recent.range(lo..=hi));
        found.map(|e| (*e & ID_MASK) as i64).filter(|id| !self.is_removed(*id)).collect()
    }

    fn is_removed(&self, id: i64) -> bool {
        self.removed.iter().any(|(a, b)| (*a..=*b).contains(&id))
    }

    pub(super) fn insert_entry(&mut self, entry: u64) {
        self.recent.insert(entry);
        if self.recent.len() > RECENT_MAX {
            self.merge();
        }
    }

    fn merge(&mut self) {
        let removed = std::mem::take(&mut self.removed);
        let mut all = Vec::with_capacity(self.sorted.len() + self.recent.len());
        let live = |e: &u64| !removed.iter().any(|(a, b)| (*a..=*b).contains(&((*e & ID_MASK) as i64)));
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
    }

    /// A deleted block (its trace numbers `first..=last`): its entries go at the next merge,
    /// sooner if they pile up.
    pub(super) fn remove_range(&mut self, first: i64, last: i64, traces: usize) {
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
}

/// A commit's changes to the open block.
#[derive(Debug, Default)]
pub(super) struct BlockChange {
    /// The open block was sealed and this one opened (at this time) before the batch.
    pub opened: Option<(i64, i64)>,
    pub spans: i64,
    pub entries: Vec<u64>,
}

impl OpenBlock {
    /// Seal the open block inside `tx` when it is full or old; returns the block the batch's
    /// new traces go to and the change to apply after the commit.
    pub(super) fn prepare(&self, tx: &Transaction<'_>, now_ns: i64) -> StoreResult<(i64, BlockChange)> {
        let mut change = BlockChange::default();
        if self.spans < BLOCK_SPANS && now_ns.saturating_sub(self.opened_ns) < BLOCK_AGE_NS {
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
        Ok((next, change))
    }

    pub(super) fn apply(&mut self, change: BlockChange) {
        if let Some((block, opened_ns)) = change.opened {
            *self = OpenBlock { block, opened_ns, spans: 0, entries: Vec::new() };
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
/// packing the spans of schema 5 first if migration 10 left them.
pub(super) fn load(conn: &mut Connection) -> StoreResult<(Directory, OpenBlock)> {
    let key: Vec<u8> = conn.query_row("SELECT fingerprint_key FROM span_store", [], |r| r.get(0))?;
    let key: [u8; 16] =
        key.try_into().map_err(|_| StoreError::corrupt("span_store.fingerprint_key is not 16 bytes"))?;
    super::pack::convert_schema_5(conn, &key)?;
    let mut dir = Directory { key, sorted: Vec::new(), recent: BTreeSet::new(), removed: Vec::new(), stale: 0 };
    let mut entries = Vec::new();
    {
        let mut stmt = conn.prepare("SELECT traces FROM span_blocks WHERE sealed = 1 AND traces IS NOT NULL")?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            entries.extend(decode(&r.get::<_, Vec<u8>>(0)?));
        }
    }
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
    entries.extend(&open_entries);
    entries.sort_unstable();
    entries.dedup();
    dir.sorted = entries;
    Ok((dir, OpenBlock { block, opened_ns, spans, entries: open_entries }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> Directory {
        Directory { key: [7; 16], sorted: Vec::new(), recent: BTreeSet::new(), removed: Vec::new(), stale: 0 }
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
        assert_eq!(d.candidates(a), vec![3, 9]);
        d.merge();
        d.insert_entry(entry(a, 12));
        assert_eq!(d.candidates(a), vec![3, 9, 12], "sorted and recent entries alike");
        d.remove_range(8, 10, 1);
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
}
