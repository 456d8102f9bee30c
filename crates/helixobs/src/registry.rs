//! Entity ID → creation span of the entities this instrument created recently, so that a
//! parent created earlier in the same process becomes a span link without waiting for the
//! herald (which resolves every parent from its own TraceStore anyway, so a forgotten entry
//! only means the herald adds the link).
//!
//! A fixed table of slots chosen by the ID's hash; a newer entity simply replaces an older one
//! that hashes to the same slot. Each slot is a sequence lock over plain atomics: a lookup is a
//! few loads and never waits, an insert one compare-and-swap and a store, and no entry holds
//! the ID itself — a slot keeps two independent 64-bit hashes of it instead, so a lookup of an
//! ID that is not there matches a stored one with odds of about 2^-115. A lookup that races an
//! insert into its slot reports a miss, which (as for a forgotten entry) only means no link.

use std::hash::BuildHasher;
use std::sync::atomic::{fence, AtomicU64, Ordering};

use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};

/// Slots in the table (a power of two): about 8 000 recent entities are remembered.
pub(crate) const SLOTS: usize = 8192;

/// One remembered creation. `seq` is odd while a writer fills the slot; `check == 0` means
/// empty (a real hash of 0 is stored as 1).
#[derive(Debug, Default)]
struct Slot {
    seq: AtomicU64,
    hash: AtomicU64,
    check: AtomicU64,
    trace_hi: AtomicU64,
    trace_lo: AtomicU64,
    span_id: AtomicU64,
    flags: AtomicU64,
}

#[derive(Debug)]
pub(crate) struct Registry {
    slots: Box<[Slot]>,
    index_hasher: foldhash::fast::FixedState,
    check_hasher: foldhash::fast::FixedState,
}

impl Registry {
    pub(crate) fn new() -> Registry {
        Registry {
            slots: (0..SLOTS).map(|_| Slot::default()).collect(),
            index_hasher: foldhash::fast::FixedState::with_seed(0x6865_6c69_786f_6273),
            check_hasher: foldhash::fast::FixedState::with_seed(0x7265_6769_7374_7279),
        }
    }

    /// The entity's slot and its two hashes.
    fn locate(&self, entity: &str) -> (&Slot, u64, u64) {
        let hash = self.index_hasher.hash_one(entity);
        let check = self.check_hasher.hash_one(entity).max(1);
        (&self.slots[(hash as usize) & (SLOTS - 1)], hash, check)
    }

    pub(crate) fn put(&self, entity: &str, span: &SpanContext) {
        let (slot, hash, check) = self.locate(entity);
        // Writers of one slot take turns (they hold it for a few stores).
        let seq = loop {
            let seq = slot.seq.load(Ordering::Relaxed);
            if seq & 1 == 0
                && slot.seq.compare_exchange_weak(seq, seq + 1, Ordering::Acquire, Ordering::Relaxed).is_ok()
            {
                break seq;
            }
            std::hint::spin_loop();
        };
        fence(Ordering::Release);
        let trace = u128::from_be_bytes(span.trace_id().to_bytes());
        slot.hash.store(hash, Ordering::Relaxed);
        slot.check.store(check, Ordering::Relaxed);
        slot.trace_hi.store((trace >> 64) as u64, Ordering::Relaxed);
        slot.trace_lo.store(trace as u64, Ordering::Relaxed);
        slot.span_id.store(u64::from_be_bytes(span.span_id().to_bytes()), Ordering::Relaxed);
        slot.flags.store(u64::from(span.trace_flags().to_u8()), Ordering::Relaxed);
        slot.seq.store(seq + 2, Ordering::Release);
    }

    pub(crate) fn get(&self, entity: &str) -> Option<SpanContext> {
        let (slot, hash, check) = self.locate(entity);
        let before = slot.seq.load(Ordering::Acquire);
        if before & 1 == 1 {
            return None; // being written
        }
        let found = (slot.hash.load(Ordering::Relaxed), slot.check.load(Ordering::Relaxed));
        let trace = (u128::from(slot.trace_hi.load(Ordering::Relaxed)) << 64)
            | u128::from(slot.trace_lo.load(Ordering::Relaxed));
        let span_id = slot.span_id.load(Ordering::Relaxed);
        let flags = slot.flags.load(Ordering::Relaxed);
        fence(Ordering::Acquire);
        if slot.seq.load(Ordering::Relaxed) != before || found != (hash, check) {
            return None;
        }
        Some(SpanContext::new(
            TraceId::from(trace),
            SpanId::from(span_id),
            TraceFlags::new(flags as u8),
            false,
            TraceState::default(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sc(n: u8) -> SpanContext {
        SpanContext::new(
            TraceId::from(u128::from(n)),
            SpanId::from(u64::from(n)),
            TraceFlags::SAMPLED,
            false,
            TraceState::default(),
        )
    }

    #[test]
    fn remembers_recent_entities_and_forgets_unknown_ones() {
        let r = Registry::new();
        r.put("block-001", &sc(1));
        r.put("block-002", &sc(2));
        assert_eq!(r.get("block-001").map(|s| s.span_id()), Some(sc(1).span_id()));
        assert_eq!(r.get("block-002").map(|s| s.trace_id()), Some(sc(2).trace_id()));
        assert!(r.get("block-003").is_none());
        r.put("block-001", &sc(3)); // re-created: the newer span wins
        assert_eq!(r.get("block-001").map(|s| s.span_id()), Some(sc(3).span_id()));
        // IDs that differ only in the middle are told apart.
        r.put("run-2026/beam-0001/block-000017", &sc(4));
        assert_eq!(r.get("run-2026/beam-0001/block-000017").map(|s| s.span_id()), Some(sc(4).span_id()));
        assert!(r.get("run-2026/beam-0002/block-000017").is_none());
    }

    #[test]
    fn bounded_whatever_the_number_of_entities() {
        let r = Registry::new();
        for i in 0..(4 * SLOTS) {
            r.put(&format!("e-{i}"), &sc(1));
        }
        let remembered = (0..(4 * SLOTS)).filter(|i| r.get(&format!("e-{i}")).is_some()).count();
        assert!(remembered <= SLOTS, "{remembered}");
        // The most recent ones are there (most of them: some share a slot).
        let recent = ((3 * SLOTS)..(4 * SLOTS)).filter(|i| r.get(&format!("e-{i}")).is_some()).count();
        assert!(recent > SLOTS / 2, "{recent}");
    }

    #[test]
    fn a_lookup_racing_inserts_sees_a_whole_entry_or_none() {
        // Writers keep re-creating the same few entities with spans whose trace, span and
        // flags all encode one number; a reader must never see parts of two writes.
        let r = std::sync::Arc::new(Registry::new());
        let ids: Vec<String> = (0..4).map(|i| format!("e-{i}")).collect();
        let writers: Vec<_> = (0..2u64)
            .map(|w| {
                let (r, ids) = (r.clone(), ids.clone());
                std::thread::spawn(move || {
                    for n in 0..20_000u64 {
                        let v = (n * 2 + w) % 255 + 1;
                        let sc = SpanContext::new(
                            TraceId::from(u128::from(v) << 64 | u128::from(v)),
                            SpanId::from(v),
                            TraceFlags::new(v as u8),
                            false,
                            TraceState::default(),
                        );
                        r.put(&ids[(n % 4) as usize], &sc);
                    }
                })
            })
            .collect();
        for n in 0..40_000 {
            if let Some(sc) = r.get(&ids[n % 4]) {
                let v = u64::from_be_bytes(sc.span_id().to_bytes());
                assert_eq!(sc.trace_id(), TraceId::from(u128::from(v) << 64 | u128::from(v)));
                assert_eq!(sc.trace_flags(), TraceFlags::new(v as u8));
            }
        }
        for w in writers {
            w.join().unwrap();
        }
        assert!(ids.iter().all(|id| r.get(id).is_some()), "the last write of each entity is there");
        assert!(r.get("e-9").is_none());
    }
}
