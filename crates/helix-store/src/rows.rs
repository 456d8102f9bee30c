//! Row encoding shared by every backend: how metadata, parent lists and statuses are stored and
//! read back, and the rules that merge a creation into an existing row. One definition, so the
//! backends agree on what "the same row" means.

use std::collections::HashSet;

use helix_model::{LogRecorded, Metadata, Status};

use crate::{StoreError, StoreResult};

/// A stored JSON array of strings (`parent_ids` in SQLite); anything else means a corrupt row.
pub(crate) fn parse_string_vec(text: &str) -> StoreResult<Vec<String>> {
    serde_json::from_str(text).map_err(|e| StoreError::corrupt(format!("JSON array: {e}")))
}

/// A stored JSON object of strings (`metadata`, `attributes`).
pub(crate) fn parse_metadata(text: &str) -> StoreResult<Metadata> {
    serde_json::from_str(text).map_err(|e| StoreError::corrupt(format!("JSON object: {e}")))
}

/// A stored `status`; the column is constrained, so failure means a corrupt database.
pub(crate) fn parse_status(text: &str) -> StoreResult<Status> {
    Status::parse(text).ok_or_else(|| StoreError::corrupt(format!("status {text:?}")))
}

pub(crate) fn to_json<T: serde::Serialize>(v: &T) -> StoreResult<String> {
    serde_json::to_string(v).map_err(|e| StoreError::bug(format!("cannot encode JSON: {e}")))
}

/// An entity is failed once anything about it failed.
pub(crate) fn worst(a: Status, b: Status) -> Status {
    if a == Status::Error || b == Status::Error {
        Status::Error
    } else {
        Status::Ok
    }
}

/// Parents in caller order without repeats (the model already de-duplicates; this keeps the
/// stored array and the edge positions consistent even if a caller did not).
pub(crate) fn unique_in_order(ids: &[String]) -> Vec<String> {
    let mut seen = HashSet::new();
    ids.iter().filter(|p| seen.insert(p.as_str())).cloned().collect()
}

/// Union of parent lists in arrival order: appends the parents of `incoming` that `parents`
/// lacks, and returns where the appended ones start (their edge positions).
pub(crate) fn append_new_parents(parents: &mut Vec<String>, incoming: &[String]) -> usize {
    let start = parents.len();
    let known: HashSet<String> = parents.iter().cloned().collect();
    parents.extend(unique_in_order(incoming).into_iter().filter(|p| !known.contains(p)));
    start
}

/// Stable 64-bit FNV-1a over every field of a log record except its timestamp (part of the
/// unique key itself); fields are length-prefixed so moving text between fields changes the
/// hash. Stable across Rust versions, unlike `DefaultHasher`: the value is stored.
pub(crate) fn log_hash(l: &LogRecorded, attributes_json: &str) -> i64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = OFFSET;
    let mut feed = |bytes: &[u8]| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(PRIME);
        }
    };
    let mut field = |v: Option<&str>| match v {
        None => feed(&[0]),
        Some(s) => {
            feed(&[1]);
            feed(&(s.len() as u64).to_le_bytes());
            feed(s.as_bytes());
        }
    };
    field(Some(&l.severity));
    field(Some(&l.body));
    field(l.trace_id.as_deref());
    field(l.span_id.as_deref());
    field(l.entity_id.as_deref());
    field(l.instrument_id.as_deref());
    field(l.process_name.as_deref());
    field(l.service_name.as_deref());
    field(l.source.as_deref());
    field(Some(attributes_json));
    // Stored as a signed 64-bit integer; the bit pattern is what matters.
    h as i64
}
