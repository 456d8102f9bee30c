//! Entity ID → creation span of the entities this instrument created recently, so that a
//! parent created earlier in the same process becomes a span link without waiting for the
//! herald (which resolves every parent from its own TraceStore anyway, so a forgotten entry
//! only means the herald adds the link).
//!
//! A fixed table of slots chosen by the ID's hash, each with its own lock: one hash and one
//! uncontended lock per creation, bounded memory, and a newer entity simply replaces an older
//! one that hashes to the same slot.

use std::hash::BuildHasher;
use std::sync::{Arc, Mutex};

use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};

/// Slots in the table (a power of two): about 8 000 recent entities are remembered.
pub(crate) const SLOTS: usize = 8192;

#[derive(Debug)]
struct Entry {
    entity: Arc<str>,
    trace_id: TraceId,
    span_id: SpanId,
    flags: TraceFlags,
}

#[derive(Debug)]
pub(crate) struct Registry {
    slots: Box<[Mutex<Option<Entry>>]>,
    hasher: foldhash::fast::FixedState,
}

impl Registry {
    pub(crate) fn new() -> Registry {
        Registry {
            slots: (0..SLOTS).map(|_| Mutex::new(None)).collect(),
            hasher: foldhash::fast::FixedState::with_seed(0x6865_6c69_786f_6273),
        }
    }

    fn slot(&self, entity: &str) -> &Mutex<Option<Entry>> {
        let hash = self.hasher.hash_one(entity);
        &self.slots[(hash as usize) & (SLOTS - 1)]
    }

    pub(crate) fn put(&self, entity: Arc<str>, span: &SpanContext) {
        let entry = Entry { trace_id: span.trace_id(), span_id: span.span_id(), flags: span.trace_flags(), entity };
        let old = self.slot(&entry.entity).lock().unwrap_or_else(|e| e.into_inner()).replace(entry);
        drop(old); // outside the lock
    }

    pub(crate) fn get(&self, entity: &str) -> Option<SpanContext> {
        let slot = self.slot(entity).lock().unwrap_or_else(|e| e.into_inner());
        slot.as_ref()
            .filter(|e| &*e.entity == entity)
            .map(|e| SpanContext::new(e.trace_id, e.span_id, e.flags, false, TraceState::default()))
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
        r.put(Arc::from("block-001"), &sc(1));
        r.put(Arc::from("block-002"), &sc(2));
        assert_eq!(r.get("block-001").map(|s| s.span_id()), Some(sc(1).span_id()));
        assert_eq!(r.get("block-002").map(|s| s.trace_id()), Some(sc(2).trace_id()));
        assert!(r.get("block-003").is_none());
        r.put(Arc::from("block-001"), &sc(3)); // re-created: the newer span wins
        assert_eq!(r.get("block-001").map(|s| s.span_id()), Some(sc(3).span_id()));
    }

    #[test]
    fn bounded_whatever_the_number_of_entities() {
        let r = Registry::new();
        for i in 0..(4 * SLOTS) {
            r.put(Arc::from(format!("e-{i}")), &sc(1));
        }
        let remembered = (0..(4 * SLOTS)).filter(|i| r.get(&format!("e-{i}")).is_some()).count();
        assert!(remembered <= SLOTS, "{remembered}");
        // The most recent ones are there (most of them: some share a slot).
        let recent = ((3 * SLOTS)..(4 * SLOTS)).filter(|i| r.get(&format!("e-{i}")).is_some()).count();
        assert!(recent > SLOTS / 2, "{recent}");
    }
}
