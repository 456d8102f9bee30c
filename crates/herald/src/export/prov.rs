//! W3C PROV: a [`Provenance`] as one PROV document, rendered as PROV-JSON (the W3C member
//! submission) or PROV-N (the W3C notation). Both renderings come from the same records, so
//! they always say the same thing.
//!
//! Mapping: each entity is a PROV entity; its creation span and each operation span are
//! activities (start/end from the span); the instrument and the process (or service) are
//! agents associated with those activities. `wasGeneratedBy` links an entity to its creation,
//! `used` links a creation to each exported parent and an operation to its entity, and
//! `wasDerivedFrom` is one per lineage edge.

use std::collections::HashSet;
use std::fmt::Write as _;

use helix_model::Metadata;
use serde_json::{json, Map, Value};

use super::{rfc3339, Provenance};

/// Prefix of helixobs' own attributes (`helix:stage`, …), bound to the deployment namespace.
const HELIX: &str = "helix";
/// Prefixes of the three kinds of identifier, bound to `NAMESPACE` + `entity/`, `activity/`, `agent/`.
const ENT: &str = "ent";
const ACT: &str = "act";
const AGT: &str = "agt";

/// An attribute value, typed so each rendering writes it in its own literal syntax.
#[derive(Debug, Clone, PartialEq)]
enum Literal {
    Str(String),
    Int(i64),
    /// A qualified name such as `prov:SoftwareAgent` (the prefix is always declared).
    QName(&'static str),
}

#[derive(Debug, Clone, PartialEq)]
enum Kind {
    Entity,
    /// Start and end, RFC 3339.
    Activity {
        start: String,
        end: String,
    },
    Agent,
}

#[derive(Debug, Clone, PartialEq)]
struct Element {
    kind: Kind,
    id: String,
    attrs: Vec<(&'static str, Literal)>,
}

#[derive(Debug, Clone, PartialEq)]
enum Relation {
    Generation { entity: String, activity: String, time: String },
    Usage { activity: String, entity: String, time: Option<String> },
    Derivation { generated: String, used: String, activity: Option<String> },
    Association { activity: String, agent: String },
}

/// One PROV document: prefixes, then elements, then relations, each in a deterministic order.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    prefixes: Vec<(&'static str, String)>,
    elements: Vec<Element>,
    relations: Vec<Relation>,
}

/// The local part of a qualified name: ASCII letters and digits as they are, every other byte
/// of the UTF-8 as `%XX`. PROV-N accepts that form for any input (no character needs a
/// backslash escape), and the identifier's IRI is the namespace plus this text.
fn local(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for b in raw.bytes() {
        if b.is_ascii_alphanumeric() {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

fn entity_ref(id: &str) -> String {
    format!("{ENT}:{}", local(id))
}

fn activity_ref(trace_id: &str, span_id: &str) -> String {
    format!("{ACT}:{}_{}", local(trace_id), local(span_id))
}

fn instrument_agent(instrument: &str) -> String {
    format!("{AGT}:instrument_{}", local(instrument))
}

fn process_agent(process: &str) -> String {
    format!("{AGT}:process_{}", local(process))
}

fn str_attr(name: &'static str, value: &str) -> (&'static str, Literal) {
    (name, Literal::Str(value.to_owned()))
}

fn metadata_attr(metadata: &Metadata) -> Option<(&'static str, Literal)> {
    // The metadata is one JSON text: its keys are arbitrary strings, which no qualified name
    // could hold, and a JSON text reads back exactly.
    (!metadata.is_empty())
        .then(|| ("helix:metadata", Literal::Str(serde_json::to_string(metadata).unwrap_or_default())))
}

/// Collects elements once each (an agent serves many activities).
struct Builder {
    doc: Document,
    seen: HashSet<String>,
}

impl Builder {
    fn element(&mut self, kind: Kind, id: String, attrs: Vec<(&'static str, Literal)>) {
        if self.seen.insert(id.clone()) {
            self.doc.elements.push(Element { kind, id, attrs });
        }
    }

    fn agents(&mut self, activity: &str, instrument: &str, process: Option<&str>) {
        let agent = instrument_agent(instrument);
        self.element(
            Kind::Agent,
            agent.clone(),
            vec![("prov:type", Literal::QName("helix:Instrument")), str_attr("prov:label", instrument)],
        );
        self.doc.relations.push(Relation::Association { activity: activity.to_owned(), agent });
        if let Some(process) = process.filter(|p| !p.is_empty()) {
            let agent = process_agent(process);
            self.element(
                Kind::Agent,
                agent.clone(),
                vec![("prov:type", Literal::QName("prov:SoftwareAgent")), str_attr("prov:label", process)],
            );
            self.doc.relations.push(Relation::Association { activity: activity.to_owned(), agent });
        }
    }
}

/// The PROV document of `prov` in the deployment namespace `namespace` (checked at startup by
/// [`super::check_namespace`]).
pub fn document(prov: &Provenance, namespace: &str) -> Document {
    let prefixes = vec![
        (HELIX, namespace.to_owned()),
        (ENT, format!("{namespace}entity/")),
        (ACT, format!("{namespace}activity/")),
        (AGT, format!("{namespace}agent/")),
    ];
    let mut b =
        Builder { doc: Document { prefixes, elements: Vec::new(), relations: Vec::new() }, seen: HashSet::new() };
    for e in &prov.entities {
        let mut attrs = vec![
            str_attr("prov:label", &e.id),
            str_attr("helix:instrument", &e.instrument_id),
            str_attr("helix:status", e.status.as_str()),
            ("helix:timestamp_ns", Literal::Int(e.timestamp_ns)),
        ];
        if let Some(stage) = &e.stage {
            attrs.push(str_attr("helix:stage", stage));
        }
        if e.placeholder {
            // Known only from an operation: no creation span was ever received.
            attrs.push(("prov:type", Literal::QName("helix:Placeholder")));
        }
        attrs.extend(metadata_attr(&e.metadata));
        b.element(Kind::Entity, entity_ref(&e.id), attrs);
    }
    for e in &prov.entities {
        let (Some(trace), Some(span), false) = (&e.trace_id, &e.span_id, e.placeholder) else {
            continue;
        };
        let activity = activity_ref(trace, span);
        let end_ns = e.end_ns.unwrap_or(e.timestamp_ns);
        let mut attrs = vec![
            ("prov:type", Literal::QName("helix:Creation")),
            str_attr("prov:label", "create"),
            str_attr("helix:status", e.status.as_str()),
            str_attr("helix:trace_id", trace),
            str_attr("helix:span_id", span),
            ("helix:start_ns", Literal::Int(e.timestamp_ns)),
            ("helix:end_ns", Literal::Int(end_ns)),
        ];
        if let Some(service) = &e.service_name {
            attrs.push(str_attr("helix:service", service));
        }
        b.element(Kind::Activity { start: rfc3339(e.timestamp_ns), end: rfc3339(end_ns) }, activity.clone(), attrs);
        b.doc.relations.push(Relation::Generation {
            entity: entity_ref(&e.id),
            activity: activity.clone(),
            time: rfc3339(end_ns),
        });
        b.agents(&activity, &e.instrument_id, e.process_name.as_deref().or(e.service_name.as_deref()));
    }
    for (child, parent) in prov.derivations() {
        let activity = match (&child.trace_id, &child.span_id, child.placeholder) {
            (Some(t), Some(s), false) => Some(activity_ref(t, s)),
            _ => None,
        };
        if let Some(activity) = &activity {
            b.doc.relations.push(Relation::Usage {
                activity: activity.clone(),
                entity: entity_ref(&parent.id),
                time: None,
            });
        }
        b.doc.relations.push(Relation::Derivation {
            generated: entity_ref(&child.id),
            used: entity_ref(&parent.id),
            activity,
        });
    }
    for op in &prov.operations {
        let activity = activity_ref(&op.trace_id, &op.span_id);
        let end_ns = op.timestamp_ns.saturating_add(op.duration_ns.max(0));
        let mut attrs = vec![
            ("prov:type", Literal::QName("helix:Operation")),
            str_attr("prov:label", &op.operation),
            str_attr("helix:status", op.status.as_str()),
            str_attr("helix:trace_id", &op.trace_id),
            str_attr("helix:span_id", &op.span_id),
            ("helix:start_ns", Literal::Int(op.timestamp_ns)),
            ("helix:end_ns", Literal::Int(end_ns)),
        ];
        if let Some(service) = &op.service_name {
            attrs.push(str_attr("helix:service", service));
        }
        attrs.extend(metadata_attr(&op.metadata));
        b.element(Kind::Activity { start: rfc3339(op.timestamp_ns), end: rfc3339(end_ns) }, activity.clone(), attrs);
        b.doc.relations.push(Relation::Usage {
            activity: activity.clone(),
            entity: entity_ref(&op.entity_id),
            time: Some(rfc3339(op.timestamp_ns)),
        });
        b.agents(&activity, &op.instrument_id, op.service_name.as_deref());
    }
    b.doc
}

fn json_literal(value: &Literal) -> Value {
    match value {
        Literal::Str(s) => Value::from(s.as_str()),
        Literal::Int(i) => Value::from(*i),
        Literal::QName(q) => json!({ "$": q, "type": "prov:QUALIFIED_NAME" }),
    }
}

impl Document {
    /// PROV-JSON: `prefix`, then one object per element kind and relation kind, keyed by
    /// identifier (relations get blank identifiers `_:g1`, `_:u1`, …).
    pub fn to_json(&self) -> Value {
        let mut root = Map::new();
        root.insert(
            "prefix".into(),
            Value::Object(self.prefixes.iter().map(|(p, iri)| ((*p).to_owned(), Value::from(iri.as_str()))).collect()),
        );
        let group = |root: &mut Map<String, Value>, kind: &str, key: String, body: Map<String, Value>| {
            let section = root.entry(kind.to_owned()).or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(section) = section {
                section.insert(key, Value::Object(body));
            }
        };
        for el in &self.elements {
            let mut body: Map<String, Value> =
                el.attrs.iter().map(|(name, v)| ((*name).to_owned(), json_literal(v))).collect();
            let kind = match &el.kind {
                Kind::Entity => "entity",
                Kind::Agent => "agent",
                Kind::Activity { start, end } => {
                    body.insert("prov:startTime".into(), Value::from(start.as_str()));
                    body.insert("prov:endTime".into(), Value::from(end.as_str()));
                    "activity"
                }
            };
            group(&mut root, kind, el.id.clone(), body);
        }
        for (n, rel) in self.relations.iter().enumerate() {
            let mut body = Map::new();
            let mut put = |k: &str, v: &str| {
                body.insert(k.to_owned(), Value::from(v));
            };
            let (kind, blank) = match rel {
                Relation::Generation { entity, activity, time } => {
                    put("prov:entity", entity);
                    put("prov:activity", activity);
                    put("prov:time", time);
                    ("wasGeneratedBy", "g")
                }
                Relation::Usage { activity, entity, time } => {
                    put("prov:activity", activity);
                    put("prov:entity", entity);
                    if let Some(time) = time {
                        put("prov:time", time);
                    }
                    ("used", "u")
                }
                Relation::Derivation { generated, used, activity } => {
                    put("prov:generatedEntity", generated);
                    put("prov:usedEntity", used);
                    if let Some(activity) = activity {
                        put("prov:activity", activity);
                    }
                    ("wasDerivedFrom", "d")
                }
                Relation::Association { activity, agent } => {
                    put("prov:activity", activity);
                    put("prov:agent", agent);
                    ("wasAssociatedWith", "w")
                }
            };
            group(&mut root, kind, format!("_:{blank}{}", n + 1), body);
        }
        Value::Object(root)
    }

    /// PROV-N: `document`, the prefix declarations, one statement per line, `endDocument`.
    pub fn to_provn(&self) -> String {
        let mut out = String::from("document\n");
        for (p, iri) in &self.prefixes {
            // Namespaces are checked at startup to hold no `>` or whitespace.
            let _ = writeln!(out, "  prefix {p} <{iri}>");
        }
        for el in &self.elements {
            let attrs = provn_attrs(&el.attrs);
            let _ = match &el.kind {
                Kind::Entity => writeln!(out, "  entity({}{attrs})", el.id),
                Kind::Agent => writeln!(out, "  agent({}{attrs})", el.id),
                Kind::Activity { start, end } => writeln!(out, "  activity({}, {start}, {end}{attrs})", el.id),
            };
        }
        for rel in &self.relations {
            let _ = match rel {
                Relation::Generation { entity, activity, time } => {
                    writeln!(out, "  wasGeneratedBy({entity}, {activity}, {time})")
                }
                Relation::Usage { activity, entity, time } => {
                    writeln!(out, "  used({activity}, {entity}, {})", time.as_deref().unwrap_or("-"))
                }
                Relation::Derivation { generated, used, activity } => {
                    writeln!(out, "  wasDerivedFrom({generated}, {used}, {}, -, -)", activity.as_deref().unwrap_or("-"))
                }
                Relation::Association { activity, agent } => {
                    writeln!(out, "  wasAssociatedWith({activity}, {agent}, -)")
                }
            };
        }
        out.push_str("endDocument\n");
        out
    }
}

/// `, [name=value, …]`, or nothing when there are no attributes.
fn provn_attrs(attrs: &[(&'static str, Literal)]) -> String {
    if attrs.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = attrs
        .iter()
        .map(|(name, v)| match v {
            Literal::Str(s) => format!("{name}={}", provn_string(s)),
            Literal::Int(i) => format!("{name}={i}"),
            Literal::QName(q) => format!("{name}='{q}'"),
        })
        .collect();
    format!(", [{}]", parts.join(", "))
}

/// A PROV-N string literal. The grammar escapes `"`, `\`, and the controls `\t \b \n \r \f`;
/// it has no escape for other control characters, so those become U+FFFD (docs/api.md).
fn provn_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if c.is_control() => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use helix_model::Status;
    use helix_store::{Entity, Operation};

    use super::*;

    fn entity(id: &str, parents: &[&str]) -> Entity {
        Entity {
            id: id.into(),
            instrument_id: "CHIME".into(),
            trace_id: Some("0af7651916cd43dd8448eb211c80319c".into()),
            span_id: Some(format!("{:016x}", id.len())),
            timestamp_ns: 1_700_000_000_000_000_000,
            end_ns: Some(1_700_000_001_000_000_000),
            stage: Some("raw".into()),
            service_name: Some("svc".into()),
            process_name: Some("beamformer".into()),
            status: Status::Ok,
            placeholder: false,
            parent_ids: parents.iter().map(|p| (*p).to_owned()).collect(),
            metadata: Metadata::from([("k\"\n".to_owned(), "v\\\u{1}".to_owned())]),
            created_at: String::new(),
        }
    }

    #[test]
    fn local_names_keep_only_letters_and_digits() {
        assert_eq!(local("ab9"), "ab9");
        assert_eq!(local("a b/\"é"), "a%20b%2F%22%C3%A9");
        assert_eq!(local("_"), "%5F");
    }

    #[test]
    fn provn_strings_escape_what_the_grammar_escapes_and_replace_other_controls() {
        assert_eq!(provn_string("a\"b\\c\nd\te\u{0}"), "\"a\\\"b\\\\c\\nd\\te\u{FFFD}\"");
    }

    #[test]
    fn each_edge_is_one_derivation_with_its_usage_and_agents_are_shared() {
        let prov = Provenance {
            root: "b".into(),
            entities: vec![entity("b", &["a", "a", "b", "missing"]), entity("a", &[])],
            operations: vec![Operation {
                entity_id: "a".into(),
                instrument_id: "CHIME".into(),
                operation: "calibrate".into(),
                trace_id: "11".repeat(16),
                span_id: "22".repeat(8),
                timestamp_ns: 5,
                duration_ns: 10,
                status: Status::Error,
                service_name: None,
                metadata: Metadata::new(),
                created_at: String::new(),
            }],
        };
        let doc = document(&prov, "urn:site:");
        let json = doc.to_json();
        assert_eq!(json["wasDerivedFrom"].as_object().map(|o| o.len()), Some(1));
        assert_eq!(json["wasGeneratedBy"].as_object().map(|o| o.len()), Some(2));
        // One usage by b's creation (of a), one by the operation on a.
        assert_eq!(json["used"].as_object().map(|o| o.len()), Some(2));
        // CHIME and beamformer, each declared once though three activities use them.
        assert_eq!(json["agent"].as_object().map(|o| o.len()), Some(2));
        let op = &json["activity"][format!("act:{}_{}", "11".repeat(16), "22".repeat(8))];
        assert_eq!(op["prov:endTime"], "1970-01-01T00:00:00.000000015Z");
        let text = doc.to_provn();
        assert!(text.starts_with("document\n  prefix helix <urn:site:>\n"));
        assert!(text.contains("wasDerivedFrom(ent:b, ent:a, act:"), "{text}");
        assert!(text.contains(r#"helix:metadata="{\"k\\\"\\n\":\"v\\\\\\u0001\"}""#), "{text}");
        assert!(text.ends_with("endDocument\n"));
    }
}
