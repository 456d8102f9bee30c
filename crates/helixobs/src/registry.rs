//! Entity ID → creation span of the entities this instrument created, so that a parent created
//! earlier in the same process becomes a span link without waiting for the herald (the herald
//! resolves every other parent from its own TraceStore). Bounded: least recently used first out.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use lru::LruCache;
use opentelemetry::trace::SpanContext;

/// How many entities are remembered; older ones are still linked by the herald.
pub(crate) const CAPACITY: usize = 10_000;

#[derive(Debug)]
pub(crate) struct Registry {
    items: Mutex<LruCache<Arc<str>, SpanContext>>,
}

impl Registry {
    pub(crate) fn new() -> Registry {
        Registry { items: Mutex::new(LruCache::new(NonZeroUsize::new(CAPACITY).unwrap_or(NonZeroUsize::MIN))) }
    }

    pub(crate) fn put(&self, entity: Arc<str>, span: SpanContext) {
        self.items.lock().unwrap_or_else(|e| e.into_inner()).put(entity, span);
    }

    pub(crate) fn get(&self, entity: &str) -> Option<SpanContext> {
        self.items.lock().unwrap_or_else(|e| e.into_inner()).get(entity).cloned()
    }
}
