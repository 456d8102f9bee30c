//! Span blocks on SQLite (docs/storage.md "Span blocks"): which block a trace lives in, and
//! the writer's open block.
//!
//! Every span-store key leads with a block number, so a commit writes into the open block's
//! small subtree, not one page per new trace of a tree keyed by random trace IDs. A trace
//! lives in exactly one block; the [`Directory`] maps a 32-bit keyed fingerprint of each
//! stored trace to its block, in memory (8 bytes per trace). It may hold entries of traces
//! that are gone or were never committed (a lookup is checked with an exact seek), never
//! misses a committed one: the writer adds entries before it commits.

use std::collections::{BTreeSet, HashSet};
use std::hash::Hasher;

use rusqlite::{Connection, OptionalExtension, Transaction};
use siphasher::sip::SipHasher13;

use crate::{StoreError, StoreResult};

/// The open block is sealed once it holds this many spans: small enough that a commit's
/// dirty pages stay few, large enough that there are few blocks to visit per search.
pub(super) const BLOCK_SPANS: i64 = 16_384;
/// ... or once it is this old, so blocks of a quiet herald still age out together.
pub(super) const BLOCK_AGE_NS: i64 = 3_600 * 1_000_000_000;
/// Recent directory entries are merged into the sorted array past this many.
const RECENT_MAX: usize = 1 << 18;

/// The summary row's span ID.
pub(super) const SUMMARY: [u8; 8] = [0; 8];

/// Trace fingerprint → block, for every stored trace.
#[derive(Debug)]
pub(super) struct Directory {
    key: [u8; 16],
    /// `fingerprint << 32 | block`, sorted.
    sorted: Vec<u64>,
    /// Entries added since the last merge.
    recent: BTreeSet<u64>,
    /// Blocks deleted since the last compaction (their entries are skipped, then dropped).
    removed: HashSet<u32>,
    stale: usize,
}

impl Directory {
    pub(super) fn fingerprint(&self, trace: &[u8]) -> u32 {
        let mut h = SipHasher13::new_with_key(&self.key);
        h.write(trace);
        h.finish() as u32
    }

    /// The blocks that may hold `trace` (usually none or one).
    pub(super) fn candidates(&self, fingerprint: u32) -> Vec<i64> {
        let lo = u64::from(fingerprint) << 32;
        let hi = lo | u64::from(u32::MAX);
        let start = self.sorted.partition_point(|e| *e < lo);
        let found = self.sorted[start..].iter().take_while(|e| **e <= hi).chain(self.recent.range(lo..=hi));
        found.map(|e| *e as u32).filter(|b| !self.removed.contains(b)).map(i64::from).collect()
    }

    pub(super) fn insert(&mut self, fingerprint: u32, block: i64) {
        self.recent.insert(u64::from(fingerprint) << 32 | block as u32 as u64);
        if self.recent.len() > RECENT_MAX {
            self.merge();
        }
    }

    fn merge(&mut self) {
        let removed = std::mem::take(&mut self.removed);
        let mut all = Vec::with_capacity(self.sorted.len() + self.recent.len());
        let live = |e: &u64| !removed.contains(&(*e as u32));
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

    /// A deleted block: its entries go at the next merge, sooner if they pile up.
    pub(super) fn remove_block(&mut self, block: i64, traces: usize) {
        self.removed.insert(block as u32);
        self.stale += traces;
        if self.stale * 8 > self.sorted.len() + self.recent.len() {
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
    /// Fingerprints of its traces, written to `span_blocks.traces` when it is sealed.
    pub fingerprints: Vec<u32>,
}

/// A commit's changes to the open block.
#[derive(Debug, Default)]
pub(super) struct BlockChange {
    /// The open block was sealed and this one opened (at this time) before the batch.
    pub opened: Option<(i64, i64)>,
    pub spans: i64,
    pub fingerprints: Vec<u32>,
}

impl OpenBlock {
    /// Seal the open block inside `tx` when it is full or old; returns the block the batch's
    /// new traces go to and the change to apply after the commit.
    pub(super) fn prepare(&self, tx: &Transaction<'_>, now_ns: i64) -> StoreResult<(i64, BlockChange)> {
        let mut change = BlockChange::default();
        if self.spans < BLOCK_SPANS && now_ns.saturating_sub(self.opened_ns) < BLOCK_AGE_NS {
            return Ok((self.block, change));
        }
        let mut prints = self.fingerprints.clone();
        prints.sort_unstable();
        prints.dedup();
        tx.prepare_cached("UPDATE span_blocks SET sealed = 1, traces = ?2 WHERE block = ?1")?
            .execute(rusqlite::params![self.block, encode(&prints)])?;
        let next = self.block + 1;
        tx.prepare_cached("INSERT INTO span_blocks (block, sealed, opened_ns) VALUES (?1, 0, ?2)")?
            .execute(rusqlite::params![next, now_ns])?;
        change.opened = Some((next, now_ns));
        Ok((next, change))
    }

    pub(super) fn apply(&mut self, change: BlockChange) {
        if let Some((block, opened_ns)) = change.opened {
            *self = OpenBlock { block, opened_ns, spans: 0, fingerprints: Vec::new() };
        }
        self.spans += change.spans;
        self.fingerprints.extend(change.fingerprints);
    }
}

fn encode(prints: &[u32]) -> Vec<u8> {
    prints.iter().flat_map(|p| p.to_le_bytes()).collect()
}

fn decode(blob: &[u8]) -> Vec<u32> {
    blob.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

/// Fingerprints of the traces stored in `block`, read from its summary rows.
fn block_fingerprints(conn: &Connection, dir: &Directory, block: i64) -> StoreResult<Vec<u32>> {
    let mut stmt = conn.prepare_cached("SELECT trace_id FROM spans WHERE block = ?1 AND span_id = ?2")?;
    let mut rows = stmt.query(rusqlite::params![block, &SUMMARY[..]])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        out.push(dir.fingerprint(&r.get::<_, Vec<u8>>(0)?));
    }
    Ok(out)
}

/// Load the directory and the open block at start (the writer connection, schema current).
/// Sealed blocks without fingerprints (a migrated database) get them now.
pub(super) fn load(conn: &mut Connection) -> StoreResult<(Directory, OpenBlock)> {
    let key: Vec<u8> = conn.query_row("SELECT fingerprint_key FROM span_store", [], |r| r.get(0))?;
    let key: [u8; 16] =
        key.try_into().map_err(|_| StoreError::corrupt("span_store.fingerprint_key is not 16 bytes"))?;
    let mut dir = Directory { key, sorted: Vec::new(), recent: BTreeSet::new(), removed: HashSet::new(), stale: 0 };
    let missing: Vec<i64> = conn
        .prepare("SELECT block FROM span_blocks WHERE sealed = 1 AND traces IS NULL")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    if !missing.is_empty() {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        for b in missing {
            let mut prints = block_fingerprints(&tx, &dir, b)?;
            prints.sort_unstable();
            prints.dedup();
            tx.execute("UPDATE span_blocks SET traces = ?2 WHERE block = ?1", rusqlite::params![b, encode(&prints)])?;
        }
        tx.commit()?;
    }
    let mut entries = Vec::new();
    {
        let mut stmt = conn.prepare("SELECT block, traces FROM span_blocks WHERE sealed = 1")?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let block: i64 = r.get(0)?;
            let blob: Vec<u8> = r.get(1)?;
            entries.extend(decode(&blob).into_iter().map(|p| u64::from(p) << 32 | block as u32 as u64));
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
            // Not left by any version of ours; recover by opening a block after the others.
            let now = super::retention::now_ns();
            conn.execute(
                "INSERT INTO span_blocks (block, sealed, opened_ns)
                 SELECT coalesce(max(block), 0) + 1, 0, ?1 FROM span_blocks",
                [now],
            )?;
            (conn.query_row("SELECT max(block) FROM span_blocks", [], |r| r.get(0))?, now, 0)
        }
    };
    let fingerprints = block_fingerprints(conn, &dir, block)?;
    entries.extend(fingerprints.iter().map(|p| u64::from(*p) << 32 | block as u32 as u64));
    entries.sort_unstable();
    entries.dedup();
    dir.sorted = entries;
    Ok((dir, OpenBlock { block, opened_ns, spans, fingerprints }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> Directory {
        Directory { key: [7; 16], sorted: Vec::new(), recent: BTreeSet::new(), removed: HashSet::new(), stale: 0 }
    }

    #[test]
    fn directory_finds_every_block_of_a_fingerprint_until_the_block_is_removed() {
        let mut d = dir();
        let a = d.fingerprint(&[1; 16]);
        assert_ne!(a, d.fingerprint(&[2; 16]), "different traces, different fingerprints (here)");
        d.insert(a, 3);
        d.insert(a, 9);
        d.insert(a.wrapping_add(1), 4);
        assert_eq!(d.candidates(a), vec![3, 9]);
        d.merge();
        d.insert(a, 12);
        assert_eq!(d.candidates(a), vec![3, 9, 12], "sorted and recent entries alike");
        d.remove_block(9, 1);
        assert_eq!(d.candidates(a), vec![3, 12]);
        d.merge();
        assert_eq!(d.candidates(a), vec![3, 12]);
        assert_eq!(d.len(), 3);
        assert!(d.candidates(a.wrapping_add(2)).is_empty());
    }

    #[test]
    fn fingerprints_round_trip_through_the_blob() {
        assert_eq!(decode(&encode(&[1, u32::MAX, 0x0102_0304])), vec![1, u32::MAX, 0x0102_0304]);
    }
}
