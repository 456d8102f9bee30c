//! Suspicion, computed when it is read: an entity is suspect when it or one of its ancestors
//! (any depth, any instrument) has an active flag. Pure: from the ancestors walk and the active
//! flags among them to the reasons with their shortest paths. Nothing is materialised, so a new
//! entity is suspect the moment its edge to a suspect parent is committed, and clearing a flag
//! removes exactly the reasons it gave.

use std::collections::HashMap;

use crate::{Flag, LineageNode, SuspectBecause};

/// Most ancestors one suspicion check reads; an entity with more is reported `partial`.
pub const MAX_SUSPICION_ANCESTORS: usize = 100_000;

/// The reasons `active` flags give the walk's root, nearest flagged entity first (then oldest
/// flag, then flag ID). `walk` is an ancestors walk: the root at depth 0, then each level.
pub(crate) fn because(walk: &[LineageNode], active: &[Flag]) -> Vec<SuspectBecause> {
    let Some(root) = walk.first() else {
        return Vec::new();
    };
    let depth: HashMap<&str, u32> = walk.iter().map(|n| (n.id.as_str(), n.depth)).collect();
    // `via[p]`: the first node of the walk one level nearer the root that names `p` as a
    // parent. Following it from any ancestor reaches the root along a shortest path.
    let mut via: HashMap<&str, &str> = HashMap::new();
    for child in walk {
        for p in &child.parent_ids {
            if depth.get(p.as_str()) == Some(&(child.depth + 1)) {
                via.entry(p.as_str()).or_insert(child.id.as_str());
            }
        }
    }
    let mut out: Vec<(u32, SuspectBecause)> = active
        .iter()
        .filter(|f| f.is_active())
        .filter_map(|f| {
            let d = *depth.get(f.entity_id.as_str())?;
            let mut path = vec![f.entity_id.clone()];
            let mut at = f.entity_id.as_str();
            while at != root.id {
                // Every non-root node of a walk was reached from the level below it.
                at = via.get(at)?;
                path.push(at.to_owned());
            }
            Some((
                d,
                SuspectBecause {
                    flag_id: f.flag_id.clone(),
                    entity_id: f.entity_id.clone(),
                    reason: f.reason.clone(),
                    flagged_by: f.flagged_by.clone(),
                    severity: f.severity,
                    created_at: f.created_at.clone(),
                    path,
                },
            ))
        })
        .collect();
    out.sort_by(|(da, a), (db, b)| {
        da.cmp(db).then_with(|| a.created_at.cmp(&b.created_at)).then_with(|| a.flag_id.cmp(&b.flag_id))
    });
    out.into_iter().map(|(_, b)| b).collect()
}

#[cfg(test)]
mod tests {
    use helix_model::Status;

    use super::*;
    use crate::Severity;

    fn node(id: &str, depth: u32, parents: &[&str]) -> LineageNode {
        LineageNode {
            id: id.into(),
            depth,
            stage: None,
            status: Status::Ok,
            instrument_id: "I".into(),
            timestamp_ns: 0,
            parent_ids: parents.iter().map(|p| (*p).to_owned()).collect(),
            placeholder: false,
        }
    }

    fn flag(id: &str, entity: &str, cleared: bool) -> Flag {
        Flag {
            flag_id: id.into(),
            entity_id: entity.into(),
            severity: Severity::Bad,
            reason: "r".into(),
            flagged_by: "me".into(),
            principal: None,
            created_at: "2026-01-01T00:00:00.000Z".into(),
            cleared_at: cleared.then(|| "2026-01-02T00:00:00.000Z".into()),
            cleared_by: None,
        }
    }

    fn paths(walk: &[LineageNode], flags: &[Flag]) -> Vec<(String, Vec<String>)> {
        because(walk, flags).into_iter().map(|b| (b.flag_id, b.path)).collect()
    }

    #[test]
    fn paths_run_from_the_flagged_ancestor_down_the_shortest_way() {
        // e ← c ← b ← a, and e ← d ← a (a diamond with one long side): a is 2 away via d.
        let walk = [
            node("e", 0, &["c", "d"]),
            node("c", 1, &["b"]),
            node("d", 1, &["a"]),
            node("b", 2, &["a"]),
            node("a", 2, &[]),
        ];
        let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
        assert_eq!(paths(&walk, &[flag("f1", "a", false)]), vec![("f1".into(), s(&["a", "d", "e"]))]);
        assert_eq!(
            paths(&walk, &[flag("f1", "a", false), flag("f2", "c", false)]),
            vec![("f2".into(), s(&["c", "e"])), ("f1".into(), s(&["a", "d", "e"]))],
            "nearest first, each flag once however many paths reach it"
        );
        assert_eq!(paths(&walk, &[flag("f3", "e", false)]), vec![("f3".into(), s(&["e"]))], "its own flag");
    }

    #[test]
    fn cleared_flags_and_flags_off_the_walk_give_no_reason() {
        let walk = [node("e", 0, &["a"]), node("a", 1, &[])];
        assert!(because(&walk, &[flag("f1", "a", true), flag("f2", "elsewhere", false)]).is_empty());
        assert!(because(&[], &[flag("f1", "a", false)]).is_empty());
    }
}
