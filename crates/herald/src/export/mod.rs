//! Open provenance formats (docs/api.md "Exports"): a lineage walk with its entities and
//! operations, rendered as W3C PROV (PROV-JSON, PROV-N) or OpenLineage run events. Pure: the
//! API gathers a [`Provenance`] from the store, these modules only translate it.

pub mod openlineage;
pub mod prov;

use std::collections::HashSet;
use std::time::{Duration, UNIX_EPOCH};

use helix_store::{Entity, Operation};

/// Namespace of a deployment when `--prov-namespace` is not given. A URN, so it never claims
/// a web address that nobody serves; sites that publish their provenance set their own.
pub const DEFAULT_NAMESPACE: &str = "urn:helixobs:";

/// What the exports render: the entities of one walk (walk order, unique by ID) and the
/// operations recorded on them (oldest first per entity).
#[derive(Debug, Clone, Default)]
pub struct Provenance {
    pub root: String,
    pub entities: Vec<Entity>,
    pub operations: Vec<Operation>,
}

impl Provenance {
    /// `(child, parent)` for every parent of an exported entity that is exported too: the
    /// lineage's edges (a self-reference is no derivation, as in the walk).
    pub fn derivations(&self) -> Vec<(&Entity, &Entity)> {
        let by_id: std::collections::HashMap<&str, &Entity> =
            self.entities.iter().map(|e| (e.id.as_str(), e)).collect();
        let mut out = Vec::new();
        for child in &self.entities {
            let mut seen = HashSet::new();
            for parent in &child.parent_ids {
                if parent != &child.id && seen.insert(parent.as_str()) {
                    if let Some(p) = by_id.get(parent.as_str()) {
                        out.push((child, *p));
                    }
                }
            }
        }
        out
    }
}

/// Checks a deployment namespace: an absolute IRI (`scheme:` then something) with no
/// character that would end an IRI in PROV-N (`<`, `>`, `"`, whitespace, controls).
pub fn check_namespace(ns: &str) -> Result<(), String> {
    let Some((scheme, rest)) = ns.split_once(':') else {
        return Err(format!("`{ns}` is not an absolute IRI (expected e.g. https://example.org/prov/ or urn:site:)"));
    };
    let scheme_ok = scheme.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && scheme.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !scheme_ok || rest.is_empty() {
        return Err(format!("`{ns}` is not an absolute IRI (expected e.g. https://example.org/prov/ or urn:site:)"));
    }
    if let Some(bad) = ns.chars().find(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | '"')) {
        return Err(format!("namespace must not contain {bad:?}"));
    }
    Ok(())
}

/// RFC 3339 UTC with nanoseconds. Times before 1970 (which no clock of a pipeline sends)
/// are shown as the epoch; the exact nanoseconds are exported alongside.
pub fn rfc3339(ns: i64) -> String {
    let since = Duration::from_nanos(u64::try_from(ns).unwrap_or(0));
    humantime::format_rfc3339_nanos(UNIX_EPOCH + since).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_render_as_utc_with_nanoseconds_and_never_panic() {
        assert_eq!(rfc3339(1_700_000_000_123_456_789), "2023-11-14T22:13:20.123456789Z");
        assert_eq!(rfc3339(-5), "1970-01-01T00:00:00.000000000Z");
        assert!(rfc3339(i64::MAX).starts_with("2262-"));
    }

    #[test]
    fn namespaces_must_be_absolute_iris_that_cannot_break_out_of_angle_brackets() {
        assert!(check_namespace("urn:helixobs:").is_ok());
        assert!(check_namespace("https://obs.example.org/prov/").is_ok());
        for bad in ["", "plain", ":x", "1x:y", "https://a b/", "urn:x>y", "urn:\"", "urn:"] {
            assert!(check_namespace(bad).is_err(), "{bad:?} accepted");
        }
    }
}
