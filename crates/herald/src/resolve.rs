//! Parent resolution: the TraceStore (bounded in-memory map entity → creation span, with the
//! store as fallback) and the link rule that turns parent IDs into OTLP span links.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use helix_model::interpret::{append_parent_links, Interpretation, SpanClass};
use helix_model::SpanRef;
use helix_store::{Store, StoreError};
use lru::LruCache;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;

use crate::metrics::Metrics;

/// Owns the in-memory TraceStore. Only committed first creation spans enter it, so it never
/// names a span other than the one the database resolves the entity to.
pub struct Resolver {
    recent: Mutex<LruCache<String, SpanRef>>,
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
}

impl Resolver {
    pub fn new(capacity: usize, store: Arc<dyn Store>, metrics: Arc<Metrics>) -> Self {
        let capacity = NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN);
        Resolver { recent: Mutex::new(LruCache::new(capacity)), store, metrics }
    }

    /// Append parent links to every entity span of `request` (in place). Parents created in
    /// the same request resolve too. Returns how many links were added.
    pub async fn link_parents(
        &self,
        request: &mut ExportTraceServiceRequest,
        interpretation: &Interpretation,
    ) -> Result<usize, StoreError> {
        let started = Instant::now();
        // Creations in this very request are the freshest knowledge.
        let mut known: HashMap<String, SpanRef> = HashMap::new();
        for at in &interpretation.spans {
            if let SpanClass::Creation(c) = &at.class {
                known
                    .entry(c.entity_id.clone())
                    .or_insert_with(|| SpanRef { trace_id: c.trace_id.clone(), span_id: c.span_id.clone() });
            }
        }
        let wanted: Vec<&str> =
            interpretation.spans.iter().flat_map(|at| parents_of(&at.class).iter().map(String::as_str)).collect();
        if wanted.is_empty() {
            return Ok(0);
        }

        let mut missing = Vec::new();
        {
            let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
            for id in &wanted {
                if known.contains_key(*id) {
                    continue;
                }
                let lookup = Instant::now();
                let hit = recent.get(*id).cloned();
                self.metrics.trace_store_lookup.observe(lookup.elapsed().as_secs_f64());
                if let Some(r) = hit {
                    known.insert((*id).to_owned(), r);
                    self.metrics.trace_store_lookups.with_label_values(&["memory"]).inc();
                    self.metrics.trace_store_hits.inc();
                } else {
                    missing.push((*id).to_owned());
                    self.metrics.trace_store_misses.inc();
                }
            }
        }
        missing.sort_unstable();
        missing.dedup();
        if !missing.is_empty() {
            let found = self.store.span_refs(&missing).await?;
            self.metrics.trace_store_lookups.with_label_values(&["database"]).inc_by(found.len() as u64);
            self.metrics.trace_store_lookups.with_label_values(&["miss"]).inc_by((missing.len() - found.len()) as u64);
            let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
            for (id, r) in found {
                self.keep(&mut recent, id.clone(), r.clone());
                known.insert(id, r);
            }
        }
        let elapsed = started.elapsed().as_secs_f64();

        let mut added = 0;
        for at in &interpretation.spans {
            let (parents, instrument) = match &at.class {
                SpanClass::Creation(c) => (&c.parent_ids, &c.instrument_id),
                SpanClass::Operation(o) => (&o.parent_ids, &o.instrument_id),
                _ => continue,
            };
            if parents.is_empty() {
                continue;
            }
            let refs: Vec<SpanRef> = parents.iter().filter_map(|p| known.get(p).cloned()).collect();
            let failed = parents.len() - refs.len();
            self.metrics
                .parent_resolution
                .with_label_values(&[instrument.as_str(), "success"])
                .inc_by(refs.len() as u64);
            self.metrics.parent_resolution.with_label_values(&[instrument.as_str(), "failed"]).inc_by(failed as u64);
            self.metrics.parent_resolution_failed.with_label_values(&[instrument.as_str()]).inc_by(failed as u64);
            self.metrics.parent_resolution_latency.with_label_values(&[instrument.as_str()]).observe(elapsed);
            // Interpretation indexed this span in this very request, so the path exists.
            let span = &mut request.resource_spans[at.resource].scope_spans[at.scope].spans[at.span];
            added += append_parent_links(span, &refs);
        }
        Ok(added)
    }

    /// The creation spans of an export, to `remember` once they are committed.
    pub fn creations(interpretation: &Interpretation) -> Vec<(String, SpanRef)> {
        interpretation
            .spans
            .iter()
            .filter_map(|at| match &at.class {
                SpanClass::Creation(c) => {
                    Some((c.entity_id.clone(), SpanRef { trace_id: c.trace_id.clone(), span_id: c.span_id.clone() }))
                }
                _ => None,
            })
            .collect()
    }

    /// Remember committed first creations (the first of them in an export wins).
    pub fn remember(&self, created: Vec<(String, SpanRef)>) {
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        for (id, span) in created {
            if !recent.contains(&id) {
                self.keep(&mut recent, id, span);
            }
        }
    }

    /// Put an entry in the TraceStore, counting the entry it evicts when full.
    fn keep(&self, recent: &mut LruCache<String, SpanRef>, id: String, span: SpanRef) {
        if let Some((evicted, _)) = recent.push(id.clone(), span) {
            if evicted != id {
                self.metrics.trace_store_evictions.inc();
            }
        }
        self.metrics.trace_store_size.set(recent.len() as i64);
    }
}

fn parents_of(class: &SpanClass) -> &[String] {
    match class {
        SpanClass::Creation(c) => &c.parent_ids,
        SpanClass::Operation(o) => &o.parent_ids,
        _ => &[],
    }
}
