//! OpenLineage: each created entity of a [`Provenance`] as one run, told by a `START` event at
//! the creation span's start and a `COMPLETE` (or `FAIL`, for an error status) event at its end.
//! Job = instrument (namespace) + stage (name); inputs = the entity's parents, output = the
//! entity, as datasets named by entity ID in the deployment namespace.

use serde_json::{json, Value};
use uuid::Uuid;

use super::{rfc3339, Provenance};

/// The RunEvent schema of OpenLineage 2-0-2, which these events follow.
pub const SCHEMA_URL: &str = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent";
/// Who produced the events: this herald, by version.
pub const PRODUCER: &str = concat!("urn:helixobs:herald:", env!("CARGO_PKG_VERSION"));
/// Job name of an entity created with no stage.
pub const NO_STAGE: &str = "unstaged";

/// UUID namespace of run IDs (random, fixed forever: changing it would change every run ID).
const RUN_NAMESPACE: Uuid = Uuid::from_u128(0x6d1c_2f0e_9a4b_4c57_8e21_53b7_0c9d_e4a1);

/// The run ID of a span: a name-based (version 5) UUID of its trace and span IDs, so the same
/// creation always has the same run, on any herald.
pub fn run_id(trace_id: &str, span_id: &str) -> Uuid {
    let name = format!("{}/{}", trace_id.to_ascii_lowercase(), span_id.to_ascii_lowercase());
    Uuid::new_v5(&RUN_NAMESPACE, name.as_bytes())
}

/// The run events of every created entity of `prov` (placeholders have no creation span and
/// no run), in walk order, `START` before the end event of the same run.
pub fn run_events(prov: &Provenance, namespace: &str) -> Vec<Value> {
    let mut out = Vec::new();
    for e in &prov.entities {
        let (Some(trace), Some(span), false) = (&e.trace_id, &e.span_id, e.placeholder) else {
            continue;
        };
        let run = json!({ "runId": run_id(trace, span).to_string(), "facets": {} });
        // The fallback instrument of spans that named none is the empty string, which is no
        // namespace; its jobs live in the deployment's.
        let job_namespace = if e.instrument_id.is_empty() { namespace } else { e.instrument_id.as_str() };
        let job = json!({
            "namespace": job_namespace,
            "name": e.stage.as_deref().unwrap_or(NO_STAGE),
            "facets": {},
        });
        let mut parents: Vec<&String> = Vec::new();
        for p in &e.parent_ids {
            if p != &e.id && !parents.contains(&p) {
                parents.push(p);
            }
        }
        let inputs: Vec<Value> =
            parents.iter().map(|p| json!({ "namespace": namespace, "name": p, "facets": {} })).collect();
        let outputs = json!([{ "namespace": namespace, "name": e.id, "facets": {} }]);
        let end_ns = e.end_ns.unwrap_or(e.timestamp_ns);
        let end_type = if e.status == helix_model::Status::Error { "FAIL" } else { "COMPLETE" };
        for (event_type, at) in [("START", e.timestamp_ns), (end_type, end_ns)] {
            out.push(json!({
                "eventType": event_type,
                "eventTime": rfc3339(at),
                "run": run,
                "job": job,
                "inputs": inputs,
                "outputs": outputs,
                "producer": PRODUCER,
                "schemaURL": SCHEMA_URL,
            }));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_are_stable_version_5_uuids_distinct_per_span() {
        let a = run_id("0AF7651916CD43DD8448EB211C80319C", "B7AD6B7169203331");
        assert_eq!(a, run_id("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"));
        assert_eq!(a.get_version_num(), 5);
        assert_ne!(a, run_id("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203332"));
    }
}
