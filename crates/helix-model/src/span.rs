//! The stored form of every acknowledged span (the herald is also a trace store): the columns
//! queries filter on, plus the OTLP span itself so a trace read gives back exactly what was
//! sent (with the links the herald resolved).

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use serde::{Deserialize, Serialize};

use crate::ids::to_hex;
use crate::interpret::{
    clamp_ns, string_attr, Interpretation, ResourceContext, SpanClass, INSTRUMENT_ID, PROCESS_NAME,
};

/// What a span is to the provenance model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SpanRole {
    /// A creation span (`create(stage, id, parents)`).
    Creation,
    /// An operation span (`operate(op, entity_id)`).
    Operation,
    /// Any other span: a child span, a `trace()`, an instrumented library's span.
    Span,
}

impl SpanRole {
    pub fn as_str(self) -> &'static str {
        match self {
            SpanRole::Creation => "creation",
            SpanRole::Operation => "operation",
            SpanRole::Span => "span",
        }
    }

    pub fn parse(s: &str) -> Option<SpanRole> {
        match s {
            "creation" => Some(SpanRole::Creation),
            "operation" => Some(SpanRole::Operation),
            "span" => Some(SpanRole::Span),
            _ => None,
        }
    }
}

/// One span as the span store keeps it; `(trace_id, span_id)` is its key (idempotent).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpanRecorded {
    /// 32 lowercase hex characters.
    pub trace_id: String,
    /// 16 lowercase hex characters.
    pub span_id: String,
    /// `None` for a root span.
    pub parent_span_id: Option<String>,
    pub name: String,
    /// OTLP `SpanKind` number.
    pub kind: i32,
    pub start_ns: i64,
    pub end_ns: i64,
    /// OTLP status code number (0 unset, 1 ok, 2 error).
    pub status_code: i32,
    pub status_message: String,
    pub service_name: Option<String>,
    pub process_name: Option<String>,
    pub instrument_id: Option<String>,
    /// The entity a creation or operation span names.
    pub entity_id: Option<String>,
    pub role: SpanRole,
    /// The span as received (attributes, events, links incl. the resolved ones), encoded as an
    /// OTLP protobuf `Span` message.
    pub span_proto: Vec<u8>,
    /// The span's resource, encoded as an OTLP protobuf `Resource` message.
    pub resource_proto: Vec<u8>,
    /// The instrumentation scope's name and version.
    pub scope_name: String,
    pub scope_version: String,
}

impl SpanRecorded {
    pub fn duration_ns(&self) -> i64 {
        self.end_ns.saturating_sub(self.start_ns)
    }

    pub fn is_error(&self) -> bool {
        self.status_code == 2
    }
}

/// The span records of one (link-resolved) trace export: one per span the herald keeps, in
/// request order. Rejected entity spans are not kept (the client was told they were not
/// accepted), and neither is a span whose trace or span ID cannot key it.
pub fn span_records(request: &ExportTraceServiceRequest, interpretation: &Interpretation) -> Vec<SpanRecorded> {
    // Resources are shared by every span under them: decode their fallbacks and encode them once.
    let mut resources: Vec<Option<(ResourceContext, Vec<u8>)>> = vec![None; request.resource_spans.len()];
    let mut out = Vec::with_capacity(interpretation.spans.len());
    for at in &interpretation.spans {
        let Some(resource_spans) = request.resource_spans.get(at.resource) else { continue };
        let Some(scope_spans) = resource_spans.scope_spans.get(at.scope) else { continue };
        let Some(span) = scope_spans.spans.get(at.span) else { continue };
        if !is_key(&span.trace_id, 16) || !is_key(&span.span_id, 8) {
            continue;
        }
        let (context, resource_proto) = resources[at.resource].get_or_insert_with(|| {
            let resource = resource_spans.resource.as_ref();
            (ResourceContext::of(resource), resource.map(Message::encode_to_vec).unwrap_or_default())
        });
        let attrs = span.attributes.as_slice();
        let (role, entity_id, instrument_id, process_name) = match &at.class {
            SpanClass::Rejected(_) => continue,
            SpanClass::Creation(c) => {
                (SpanRole::Creation, Some(c.entity_id.clone()), c.instrument_id.clone(), c.process_name.clone())
            }
            SpanClass::Operation(o) => {
                (SpanRole::Operation, Some(o.entity_id.clone()), o.instrument_id.clone(), o.process_name.clone())
            }
            // The same fallbacks an entity span gets: its own attribute, then its resource's.
            SpanClass::Passthrough => (
                SpanRole::Span,
                None,
                string_attr(attrs, INSTRUMENT_ID)
                    .map(str::to_owned)
                    .or_else(|| context.instrument_id.clone())
                    .unwrap_or_default(),
                string_attr(attrs, PROCESS_NAME).map(str::to_owned).or_else(|| context.process_name.clone()),
            ),
        };
        let start_ns = clamp_ns(span.start_time_unix_nano);
        let scope = scope_spans.scope.as_ref();
        out.push(SpanRecorded {
            trace_id: to_hex(&span.trace_id),
            span_id: to_hex(&span.span_id),
            parent_span_id: is_key(&span.parent_span_id, 8).then(|| to_hex(&span.parent_span_id)),
            name: column_text(&span.name),
            kind: span.kind,
            start_ns,
            end_ns: clamp_ns(span.end_time_unix_nano).max(start_ns),
            status_code: span.status.as_ref().map_or(0, |s| s.code),
            status_message: span.status.as_ref().map(|s| column_text(&s.message)).unwrap_or_default(),
            service_name: context.service_name.as_deref().map(column_text),
            process_name: process_name.as_deref().map(column_text),
            // "" is the wire fallback for "no instrument".
            instrument_id: Some(column_text(&instrument_id)).filter(|i| !i.is_empty()),
            entity_id,
            role,
            span_proto: span.encode_to_vec(),
            resource_proto: resource_proto.clone(),
            scope_name: scope.map(|s| column_text(&s.name)).unwrap_or_default(),
            scope_version: scope.map(|s| column_text(&s.version)).unwrap_or_default(),
        });
    }
    out
}

/// The form of a stored span: `role | WHOLE | STATUS` in one small integer column.
pub mod stored {
    use super::{SpanRecorded, SpanRole};
    use crate::ids::{from_hex, to_hex};
    use crate::interpret::{ENTITY_ID, INSTRUMENT_ID};
    use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
    use opentelemetry_proto::tonic::trace::v1::{Span, Status};
    use prost::encoding::{encode_varint, encoded_len_varint};
    use prost::Message;

    /// `span_rest` is the span exactly as received (it could not be split losslessly).
    pub const WHOLE: i64 = 4;
    /// The span had a `status` message (absent and default-valued are different encodings).
    pub const STATUS: i64 = 8;
    /// Where the span's `helix.entity.id` and `helix.instrument.id` attributes were, when they
    /// equal the entity and instrument columns and are left out of the stored span: position
    /// + 1 in the attribute list, 8 bits each from these shifts (0: not left out).
    const ENTITY_AT: u32 = 5;
    const INSTRUMENT_AT: u32 = 13;
    /// The fields of `rest` a keyed attribute and a keyed event are written in: numbers OTLP's
    /// `Span` does not use (two tag bytes, as any field above 15), so a split span has neither.
    const KEYED_FIELD: u64 = 2047;
    const KEYED_EVENT: u64 = 2046;
    /// Event names kept as one byte (position + 2; 0 is a name spelled out, 1 one under
    /// `EVENT_PREFIX`). Stored format: append only.
    const EVENT_NAMES: [&str; 2] = ["exception", crate::keys::ERROR_EVENT];
    const EVENT_PREFIX: &str = "helix.event.";
    /// Attribute keys kept as one byte in stored spans (position + 1): the wire contract's own
    /// and the OpenTelemetry conventions' commonest. Stored format: append only.
    const KEYED_KEYS: [&str; 23] = [
        crate::keys::PARENT_IDS,
        crate::keys::IS_OPERATION,
        crate::keys::LOG_ENTITY_ID,
        crate::keys::PROCESS_NAME,
        crate::keys::SERVICE_NAME,
        ENTITY_ID,
        INSTRUMENT_ID,
        "exception.type",
        "exception.message",
        "exception.stacktrace",
        "exception.escaped",
        "code.function",
        "code.namespace",
        "code.filepath",
        "code.lineno",
        "thread.id",
        "thread.name",
        "http.method",
        "http.route",
        "http.status_code",
        "db.system",
        "db.statement",
        "error.type",
    ];
    /// The tag bytes (field number and wire type) of the fields the keyed forms stand for.
    const SPAN_ATTRIBUTE: u8 = 9 << 3 | 2;
    const SPAN_EVENT: u8 = 11 << 3 | 2;
    const EVENT_TIME: u8 = 1 << 3 | 1;
    const EVENT_NAME: u8 = 2 << 3 | 2;
    const EVENT_ATTRIBUTE: u8 = 3 << 3 | 2;
    const KEY: u8 = 1 << 3 | 2;
    /// A keyed attribute's code with this bit has the string value `"true"` (an operation's
    /// `helix.entity.is_operation`), which is then not stored either.
    const TRUE: u8 = 0x80;
    /// `KeyValue.value` as prost encodes `AnyValue { string_value: "true" }`.
    const TRUE_VALUE: [u8; 8] = [0x12, 0x06, 0x0a, 0x04, b't', b'r', b'u', b'e'];

    pub fn role_code(role: SpanRole) -> i64 {
        match role {
            SpanRole::Span => 0,
            SpanRole::Creation => 1,
            SpanRole::Operation => 2,
        }
    }

    pub fn role_of(form: i64) -> Option<SpanRole> {
        match form & 3 {
            0 => Some(SpanRole::Span),
            1 => Some(SpanRole::Creation),
            2 => Some(SpanRole::Operation),
            _ => None,
        }
    }

    /// Raw bytes of a hex ID of `len` bytes.
    pub fn id_bytes(hex: &str, len: usize) -> Option<Vec<u8>> {
        from_hex(hex).filter(|b| b.len() == len)
    }

    /// Raw bytes of a hex ID of exactly `N` bytes, without allocating (the write path).
    pub fn id_array<const N: usize>(hex: &str) -> Option<[u8; N]> {
        crate::ids::from_hex_array(hex)
    }

    pub fn id_hex(bytes: &[u8]) -> String {
        to_hex(bytes)
    }

    /// A protobuf varint at the start of `b`: (value, length).
    fn varint(b: &[u8]) -> Option<(u64, usize)> {
        let mut v = 0u64;
        for (i, byte) in b.iter().enumerate().take(10) {
            v |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Some((v, i + 1));
            }
        }
        None
    }

    /// One field of an encoded message: (number, wire type, value bytes, whole field bytes).
    struct Field<'a> {
        number: u64,
        wire: u64,
        value: &'a [u8],
        len: usize,
    }

    fn field(b: &[u8]) -> Option<Field<'_>> {
        let (tag, n) = varint(b)?;
        let rest = &b[n..];
        let (value, used) = match tag & 7 {
            0 => {
                let (_, m) = varint(rest)?;
                (&rest[..m], m)
            }
            1 => (rest.get(..8)?, 8),
            2 => {
                let (l, m) = varint(rest)?;
                let l = usize::try_from(l).ok()?;
                (rest.get(m..m.checked_add(l)?)?, m + l)
            }
            5 => (rest.get(..4)?, 4),
            _ => return None,
        };
        Some(Field { number: tag >> 3, wire: tag & 7, value, len: n + used })
    }

    fn fixed64(v: &[u8]) -> u64 {
        u64::from_le_bytes(v.try_into().unwrap_or([0; 8]))
    }

    /// Whether an encoded `Status` is exactly (code, message) with each field at most once.
    fn status_matches(b: &[u8], code: i32, message: &str) -> bool {
        let (mut got_code, mut got_message, mut seen) = (0i64, &b""[..], 0u8);
        let mut at = 0;
        while at < b.len() {
            let Some(f) = field(&b[at..]) else { return false };
            let bit = match (f.number, f.wire) {
                (2, 2) => {
                    got_message = f.value;
                    1
                }
                (3, 0) => {
                    got_code = varint(f.value).map_or(i64::MIN, |(v, _)| v as i64);
                    2
                }
                _ => return false,
            };
            if seen & bit != 0 {
                return false;
            }
            seen |= bit;
            at += f.len;
        }
        got_code == i64::from(code) && got_message == message.as_bytes()
    }

    /// Split a span for storage: the encoded span without the fields its columns hold (IDs,
    /// parent, name, kind, times, status), appended to `rest`, and its form bits. When the
    /// columns cannot give those fields back exactly (a NUL in the name, clamped times, an
    /// unknown field, bytes that are not a span), the whole span is kept and `WHOLE` is set.
    pub fn split_into(s: &SpanRecorded, rest: &mut Vec<u8>) -> i64 {
        let start = rest.len();
        match split(s, rest) {
            Some(form) => form | role_code(s.role),
            None => {
                rest.truncate(start);
                rest.extend_from_slice(&s.span_proto);
                WHOLE | role_code(s.role)
            }
        }
    }

    fn split(s: &SpanRecorded, rest: &mut Vec<u8>) -> Option<i64> {
        let b = s.span_proto.as_slice();
        let trace = id_bytes(&s.trace_id, 16)?;
        let span = id_bytes(&s.span_id, 8)?;
        let parent = match &s.parent_span_id {
            Some(p) => id_bytes(p, 8)?,
            None => Vec::new(),
        };
        let (mut seen, mut form) = (0u32, 0i64);
        // The attributes the columns give back, encoded as the herald's decoder would re-encode them.
        let entity_attr = s.entity_id.as_deref().map(|v| string_attribute(ENTITY_ID, v));
        let instrument_attr = s.instrument_id.as_deref().map(|v| string_attribute(INSTRUMENT_ID, v));
        let mut attribute = 0i64;
        // Values of the column fields as the span has them (absent = default).
        let (mut t, mut sp, mut pa, mut name) = (&b""[..], &b""[..], &b""[..], &b""[..]);
        let (mut kind, mut st, mut en) = (0i64, 0u64, 0u64);
        let mut at = 0;
        while at < b.len() {
            let f = field(&b[at..])?;
            let whole = &b[at..at + f.len];
            at += f.len;
            match (f.number, f.wire) {
                (1, 2) => t = f.value,
                (2, 2) => sp = f.value,
                (4, 2) => pa = f.value,
                (5, 2) => name = f.value,
                (6, 0) => kind = varint(f.value)?.0 as i64,
                (7, 1) => st = fixed64(f.value),
                (8, 1) => en = fixed64(f.value),
                (15, 2) => {
                    if !status_matches(f.value, s.status_code, &s.status_message) {
                        return None;
                    }
                    form |= STATUS;
                }
                (9, 2) => {
                    attribute += 1;
                    let slot = if form >> ENTITY_AT & 0xff == 0 && entity_attr.as_deref() == Some(f.value) {
                        Some(ENTITY_AT)
                    } else if form >> INSTRUMENT_AT & 0xff == 0 && instrument_attr.as_deref() == Some(f.value) {
                        Some(INSTRUMENT_AT)
                    } else {
                        None
                    };
                    match slot {
                        Some(shift) if attribute < 256 => form |= attribute << shift,
                        _ if push_keyed(rest, whole, f.value, SPAN_ATTRIBUTE) => {}
                        _ => rest.extend_from_slice(whole),
                    }
                    continue;
                }
                (11, 2) if push_event(rest, whole, f.value, s.start_ns) => continue,
                // Kept fields: trace_state, events, links, the dropped counts, flags.
                (3 | 11 | 13, 2) | (10 | 12 | 14, 0) | (16, 5) => {
                    rest.extend_from_slice(whole);
                    continue;
                }
                _ => return None,
            }
            // A column field given twice merges or overrides: not worth reproducing.
            let bit = 1u32 << f.number;
            if seen & bit != 0 {
                return None;
            }
            seen |= bit;
        }
        let exact = t == trace.as_slice()
            && sp == span.as_slice()
            && pa == parent.as_slice()
            && name == s.name.as_bytes()
            && kind == i64::from(s.kind)
            && i64::try_from(st).ok() == Some(s.start_ns)
            && i64::try_from(en).ok() == Some(s.end_ns)
            && (form & STATUS != 0 || (s.status_code == 0 && s.status_message.is_empty()));
        exact.then_some(form)
    }

    /// Whether a length-delimited field (`whole`, as `field` read it, and its `value`) is as
    /// prost writes it: this tag byte, the length in its shortest varint (allocation-free: on
    /// the writer's path for every attribute).
    fn is_canonical(whole: &[u8], tag: u8, value: &[u8]) -> bool {
        whole.first() == Some(&tag) && whole.len() == 1 + encoded_len_varint(value.len() as u64) + value.len()
    }

    /// The attribute field `whole` (its `KeyValue` bytes `kv`, tagged `tag`: the span's or an
    /// event's attributes) as a keyed field, if its key is in `KEYED_KEYS` and it is encoded as
    /// prost writes it, so that `expand` gives back the same bytes. Returns whether it was.
    fn push_keyed(rest: &mut Vec<u8>, whole: &[u8], kv: &[u8], tag: u8) -> bool {
        let Some(key) = field(kv).filter(|k| k.number == 1 && k.wire == 2) else { return false };
        let Some(code) = KEYED_KEYS.iter().position(|k| k.as_bytes() == key.value) else { return false };
        if !is_canonical(&kv[..key.len], KEY, key.value) || !is_canonical(whole, tag, kv) {
            return false;
        }
        let value = &kv[key.len..];
        let (code, value) = match value == TRUE_VALUE {
            true => ((code as u8 + 1) | TRUE, &[][..]),
            false => (code as u8 + 1, value),
        };
        encode_varint(KEYED_FIELD << 3 | 2, rest);
        encode_varint(1 + value.len() as u64, rest);
        rest.push(code);
        rest.extend_from_slice(value);
        true
    }

    fn zigzag(v: i64) -> u64 {
        ((v << 1) ^ (v >> 63)) as u64
    }

    fn unzigzag(v: u64) -> i64 {
        ((v >> 1) as i64) ^ -((v & 1) as i64)
    }

    /// The event field `whole` (its `Event` bytes `event`) as a keyed event: the time as an
    /// offset from the span's start, a known name (or `helix.event.` prefix) as a code, its
    /// attributes keyed. Only for an event that starts with its time and name as prost writes
    /// them, so that `expand` gives back the same bytes. Returns whether it was written.
    fn push_event(rest: &mut Vec<u8>, whole: &[u8], event: &[u8], start_ns: i64) -> bool {
        if !is_canonical(whole, SPAN_EVENT, event) || event.len() < 9 || event[0] != EVENT_TIME {
            return false;
        }
        let time = fixed64(&event[1..9]) as i64;
        let Some(name) = field(&event[9..]).filter(|n| n.number == 2 && n.wire == 2) else { return false };
        if !is_canonical(&event[9..9 + name.len], EVENT_NAME, name.value) {
            return false;
        }
        let mut payload = Vec::with_capacity(event.len());
        match EVENT_NAMES.iter().position(|n| n.as_bytes() == name.value) {
            Some(code) => payload.push(code as u8 + 2),
            None => {
                let (code, text) = match name.value.strip_prefix(EVENT_PREFIX.as_bytes()) {
                    Some(suffix) => (1, suffix),
                    None => (0, name.value),
                };
                payload.push(code);
                encode_varint(text.len() as u64, &mut payload);
                payload.extend_from_slice(text);
            }
        }
        encode_varint(zigzag(time.wrapping_sub(start_ns)), &mut payload);
        let mut at = 9 + name.len;
        while at < event.len() {
            let Some(f) = field(&event[at..]) else { return false };
            let whole = &event[at..at + f.len];
            if (f.number, f.wire) != (3, 2) || !push_keyed(&mut payload, whole, f.value, EVENT_ATTRIBUTE) {
                payload.extend_from_slice(whole);
            }
            at += f.len;
        }
        encode_varint(KEYED_EVENT << 3 | 2, rest);
        encode_varint(payload.len() as u64, rest);
        rest.extend_from_slice(&payload);
        true
    }

    /// `rest` (a span's, or with `start_ns` None an event's) with its keyed fields written out
    /// as the attributes (tagged `tag`) and events they stand for, appended to `out`.
    fn expand_into(out: &mut Vec<u8>, rest: &[u8], tag: u8, start_ns: Option<i64>) -> Result<(), String> {
        let mut at = 0;
        while at < rest.len() {
            let f = field(&rest[at..]).ok_or("a stored span's field is cut short")?;
            match (f.number, f.wire, start_ns) {
                (KEYED_FIELD, 2, _) => {
                    let (&code, value) = f.value.split_first().ok_or("an empty keyed attribute")?;
                    let key = KEYED_KEYS
                        .get(usize::from(code & !TRUE).wrapping_sub(1))
                        .ok_or("an unknown attribute key code")?;
                    let value = if code & TRUE != 0 { &TRUE_VALUE[..] } else { value };
                    out.push(tag);
                    encode_varint((2 + key.len() + value.len()) as u64, out);
                    out.extend_from_slice(&[KEY, key.len() as u8]);
                    out.extend_from_slice(key.as_bytes());
                    out.extend_from_slice(value);
                }
                (KEYED_EVENT, 2, Some(start_ns)) => {
                    let event = expand_event(f.value, start_ns).ok_or("a keyed event is cut short")??;
                    out.push(SPAN_EVENT);
                    encode_varint(event.len() as u64, out);
                    out.extend_from_slice(&event);
                }
                _ => out.extend_from_slice(&rest[at..at + f.len]),
            }
            at += f.len;
        }
        Ok(())
    }

    /// Whether `rest` has a keyed attribute or event (a walk over its top-level fields).
    fn has_keyed(rest: &[u8]) -> bool {
        let mut at = 0;
        while let Some(f) = rest.get(at..).filter(|b| !b.is_empty()).and_then(field) {
            if matches!(f.number, KEYED_FIELD | KEYED_EVENT) {
                return true;
            }
            at += f.len;
        }
        // A cut-short field: the decode reports it.
        false
    }

    /// The `Event` bytes a keyed event stands for (None: its payload is cut short).
    fn expand_event(payload: &[u8], start_ns: i64) -> Option<Result<Vec<u8>, String>> {
        let (&code, mut b) = payload.split_first()?;
        // The name, as a prefix and a text.
        let (prefix, text): (&[u8], &[u8]) = match code {
            0 | 1 => {
                let (len, n) = varint(b)?;
                let text = b.get(n..n.checked_add(usize::try_from(len).ok()?)?)?;
                b = &b[n + text.len()..];
                (if code == 1 { EVENT_PREFIX.as_bytes() } else { b"" }, text)
            }
            _ => match EVENT_NAMES.get(usize::from(code) - 2) {
                Some(known) => (b"", known.as_bytes()),
                None => return Some(Err("an unknown event name code".into())),
            },
        };
        let (delta, n) = varint(b)?;
        let time = start_ns.wrapping_add(unzigzag(delta)) as u64;
        let mut event = Vec::with_capacity(payload.len() + 32);
        event.push(EVENT_TIME);
        event.extend_from_slice(&time.to_le_bytes());
        event.push(EVENT_NAME);
        encode_varint((prefix.len() + text.len()) as u64, &mut event);
        event.extend_from_slice(prefix);
        event.extend_from_slice(text);
        Some(expand_into(&mut event, &b[n..], EVENT_ATTRIBUTE, None).map(|()| event))
    }

    /// The encoded span a stored row stands for: `rest` with the column fields put back
    /// (the same bytes as the span the herald received, for spans it encoded itself).
    pub fn join(s: &SpanRecorded, form: i64, rest: &[u8]) -> Result<Vec<u8>, String> {
        if form & WHOLE != 0 {
            return Ok(rest.to_vec());
        }
        let mut expanded = Vec::new();
        // No form bit marks them: it would cost most spans a byte of their form's varint.
        let rest = if has_keyed(rest) {
            expand_into(&mut expanded, rest, SPAN_ATTRIBUTE, Some(s.start_ns))?;
            &expanded[..]
        } else {
            rest
        };
        let mut span = Span::decode(rest).map_err(|e| e.to_string())?;
        span.trace_id = id_bytes(&s.trace_id, 16).unwrap_or_default();
        span.span_id = id_bytes(&s.span_id, 8).unwrap_or_default();
        span.parent_span_id = s.parent_span_id.as_deref().and_then(|p| id_bytes(p, 8)).unwrap_or_default();
        span.name = s.name.clone();
        span.kind = s.kind;
        span.start_time_unix_nano = s.start_ns as u64;
        span.end_time_unix_nano = s.end_ns as u64;
        span.status = (form & STATUS != 0).then(|| Status { code: s.status_code, message: s.status_message.clone() });
        // Back in their places, the earlier one first so the later position stays right.
        let mut put_back: Vec<(usize, &str, &str)> = Vec::new();
        for (shift, key, value) in
            [(ENTITY_AT, ENTITY_ID, &s.entity_id), (INSTRUMENT_AT, INSTRUMENT_ID, &s.instrument_id)]
        {
            let at = (form >> shift & 0xff) as usize;
            if at > 0 {
                put_back.push((at - 1, key, value.as_deref().unwrap_or_default()));
            }
        }
        put_back.sort_unstable();
        for (at, key, value) in put_back {
            let kv = KeyValue::decode(string_attribute(key, value).as_slice()).map_err(|e| e.to_string())?;
            span.attributes.insert(at.min(span.attributes.len()), kv);
        }
        Ok(span.encode_to_vec())
    }

    /// The encoding of a string attribute, as prost writes `KeyValue { key, value: string }`.
    fn string_attribute(key: &str, value: &str) -> Vec<u8> {
        KeyValue {
            key: key.to_owned(),
            value: Some(AnyValue { value: Some(any_value::Value::StringValue(value.to_owned())) }),
            ..Default::default()
        }
        .encode_to_vec()
    }

    /// Stable 64-bit FNV-1a over the columns a process repeats on every span (service,
    /// process, instrument, scope, resource): the key of its one `span_sources` row. Fields
    /// are length-prefixed so text moving between them changes the key. Stored: fixed function.
    pub fn source_id(s: &SpanRecorded) -> i64 {
        let mut h = 0xcbf2_9ce4_8422_2325u64;
        let mut feed = |bytes: &[u8]| {
            for b in bytes {
                h = (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3);
            }
        };
        for v in [s.service_name.as_deref(), s.process_name.as_deref(), s.instrument_id.as_deref()] {
            match v {
                None => feed(&[0]),
                Some(v) => {
                    feed(&[1]);
                    feed(&(v.len() as u64).to_le_bytes());
                    feed(v.as_bytes());
                }
            }
        }
        for v in [s.scope_name.as_bytes(), s.scope_version.as_bytes(), &s.resource_proto] {
            feed(&(v.len() as u64).to_le_bytes());
            feed(v);
        }
        h as i64
    }

    /// Whether two spans agree on every field [`source_id`] keys, so they have the same key.
    pub fn same_source(a: &SpanRecorded, b: &SpanRecorded) -> bool {
        a.service_name == b.service_name
            && a.process_name == b.process_name
            && a.instrument_id == b.instrument_id
            && a.scope_name == b.scope_name
            && a.scope_version == b.scope_version
            && a.resource_proto == b.resource_proto
    }
}

/// A query column's text: NUL, which PostgreSQL text cannot hold (and which would fail the
/// whole export there), becomes U+FFFD. The stored span keeps the original bytes.
fn column_text(s: &str) -> String {
    if s.contains('\0') {
        s.replace('\0', "\u{FFFD}")
    } else {
        s.to_owned()
    }
}

/// An ID of the expected length that is not all zeros (the OTLP "invalid" value).
fn is_key(id: &[u8], len: usize) -> bool {
    id.len() == len && id.iter().any(|b| *b != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builders::{pipeline_resource, string, traces, SpanBuilder};
    use crate::interpret::interpret_traces;
    use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::Span;

    fn records(request: &ExportTraceServiceRequest) -> Vec<SpanRecorded> {
        span_records(request, &interpret_traces(request))
    }

    #[test]
    fn every_kind_of_span_becomes_a_record_with_its_role_and_entity() {
        let creation = SpanBuilder::creation("detect", "cand-1", 1).error_status().build();
        let operation = SpanBuilder::operation("archive", "cand-1", 2).build();
        let mut child = SpanBuilder::new("filter", 3).trace(creation.trace_id.clone()).build();
        child.parent_span_id = creation.span_id.clone();
        let plain = SpanBuilder::new("process-request", 4).instrument("OTHER").build();
        let mut request = traces(
            pipeline_resource("svc", "CHIME"),
            vec![creation.clone(), operation.clone(), child.clone(), plain.clone()],
        );
        request.resource_spans[0].scope_spans[0].scope =
            Some(InstrumentationScope { name: "helix".into(), version: "1.2".into(), ..Default::default() });
        let got = records(&request);
        let roles: Vec<(SpanRole, Option<&str>, Option<&str>)> =
            got.iter().map(|r| (r.role, r.entity_id.as_deref(), r.instrument_id.as_deref())).collect();
        assert_eq!(
            roles,
            [
                (SpanRole::Creation, Some("cand-1"), Some("CHIME")),
                (SpanRole::Operation, Some("cand-1"), Some("CHIME")),
                (SpanRole::Span, None, Some("CHIME")),
                (SpanRole::Span, None, Some("OTHER")),
            ]
        );
        let c = &got[0];
        assert_eq!(c.trace_id, to_hex(&creation.trace_id));
        assert_eq!(c.span_id, to_hex(&creation.span_id));
        assert_eq!(c.parent_span_id, None);
        assert_eq!(
            (c.name.as_str(), c.start_ns, c.end_ns),
            ("detect", 1_700_000_000_000_001_000, 1_700_000_000_000_001_500)
        );
        assert_eq!((c.status_code, c.status_message.as_str()), (2, "failed"));
        assert!(c.is_error());
        assert_eq!(c.service_name.as_deref(), Some("svc"));
        assert_eq!((c.scope_name.as_str(), c.scope_version.as_str()), ("helix", "1.2"));
        assert_eq!(got[2].parent_span_id.as_deref(), Some(c.span_id.as_str()));
        // The span and resource round-trip exactly.
        assert_eq!(Span::decode(got[3].span_proto.as_slice()).unwrap(), plain);
        let resource = Resource::decode(got[1].resource_proto.as_slice()).unwrap();
        assert_eq!(Some(resource), request.resource_spans[0].resource);
    }

    #[test]
    fn stored_spans_split_and_join_back_to_the_same_bytes() {
        let creation = SpanBuilder::creation("detect", "cand-1", 1).instrument("CHIME").error_status().build();
        let operation = SpanBuilder::operation("archive", "cand-1", 2).build();
        let mut nul = SpanBuilder::new("a\0b", 3).build();
        nul.parent_span_id = creation.span_id.clone();
        let request = traces(pipeline_resource("svc", "CHIME"), vec![creation, operation, nul]);
        for r in records(&request) {
            let mut rest = Vec::new();
            let form = stored::split_into(&r, &mut rest);
            assert_eq!(stored::role_of(form), Some(r.role));
            assert_eq!(stored::join(&r, form, &rest).unwrap(), r.span_proto, "{} comes back exactly", r.name);
            if r.entity_id.is_some() {
                assert_eq!(form & stored::WHOLE, 0);
                assert!(rest.len() + 30 < r.span_proto.len(), "IDs, times and the entity attribute left out");
            } else {
                assert_ne!(form & stored::WHOLE, 0, "a NUL in the name: the span is kept whole");
            }
        }
        let mut garbage = records(&request).remove(0);
        garbage.span_proto = vec![0xff, 0x01, 0x00];
        let mut rest = Vec::new();
        let form = stored::split_into(&garbage, &mut rest);
        assert_eq!((form & stored::WHOLE, rest.as_slice()), (stored::WHOLE, &[0xff, 0x01, 0x00][..]));
    }

    #[test]
    fn known_attribute_keys_are_stored_as_a_byte_and_come_back_exactly() {
        let creation = SpanBuilder::creation("search", "cand-1", 1)
            .parents("blk-1,blk-2")
            .attr("exception.type", string("TimeoutError"))
            .attr("snr", string("12.5"))
            .build();
        let operation = SpanBuilder::operation("archive", "cand-1", 2).build();
        // `is_operation` with another value, and a known key that the span repeats.
        let odd = SpanBuilder::operation("copy", "cand-1", 3)
            .attr("helix.entity.is_operation", string("yes"))
            .attr("helix.parent.ids", string(""))
            .build();
        let request = traces(pipeline_resource("svc", "CHIME"), vec![creation, operation, odd]);
        for r in records(&request) {
            let mut keyed = Vec::new();
            let form = stored::split_into(&r, &mut keyed);
            assert_eq!(stored::join(&r, form, &keyed).unwrap(), r.span_proto, "{} comes back exactly", r.name);
            for key in ["helix.parent.ids", "exception.type", "helix.entity.is_operation"] {
                let spelled = keyed.windows(key.len()).any(|w| w == key.as_bytes());
                assert!(!spelled, "{}: {key} is stored as its code", r.name);
            }
            assert!(r.name != "search" || keyed.windows(3).any(|w| w == b"snr"), "an unknown key is kept as it is");
        }
        // The `"true"` of an operation is not stored either.
        let op = &records(&request)[1];
        let mut keyed = Vec::new();
        stored::split_into(op, &mut keyed);
        assert!(!keyed.windows(4).any(|w| w == b"true"));
    }

    #[test]
    fn events_are_stored_with_their_time_from_the_start_and_known_names_as_a_byte() {
        let start = 1_700_000_000_000_000_000u64 + 1_000;
        let kvs = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| crate::builders::kv(k, string(v))).collect();
        let span = SpanBuilder::creation("search", "cand-1", 1)
            .event("helix.event.classified", start + 400, kvs(&[("label", "FRB"), ("exception.type", "none")]))
            .event("exception", start + 500, kvs(&[("exception.type", "Timeout"), ("exception.escaped", "True")]))
            .event("helix.error", start + 600, vec![])
            .event("classified", start + 700, kvs(&[("confidence", "0.9")]))
            // Before the span's start, at time 0 (prost leaves the time out), with no name.
            .event("early", start - 5_000_000_000, vec![])
            .event("unset", 0, vec![])
            .event("", start + 800, vec![])
            .build();
        let r = records(&traces(pipeline_resource("svc", "CHIME"), vec![span])).remove(0);
        let mut keyed = Vec::new();
        let form = stored::split_into(&r, &mut keyed);
        assert_eq!(stored::join(&r, form, &keyed).unwrap(), r.span_proto, "the events come back exactly");
        for text in ["helix.event.", "exception", "helix.error"] {
            assert!(!keyed.windows(text.len()).any(|w| w == text.as_bytes()), "{text} is stored as a code");
        }
        for text in ["classified", "early", "unset", "label", "FRB", "confidence"] {
            assert!(keyed.windows(text.len()).any(|w| w == text.as_bytes()), "{text} is kept");
        }
        let events: usize = Span::decode(r.span_proto.as_slice()).unwrap().events.iter().map(|e| e.encoded_len()).sum();
        assert!(keyed.len() + 50 < events, "{} bytes stored for {events} bytes of events", keyed.len());
    }

    #[test]
    fn a_keyed_attribute_that_cannot_be_read_is_an_error_not_a_panic() {
        let r = records(&traces(vec![], vec![SpanBuilder::new("x", 1).build()])).remove(0);
        let form = 0;
        // Fields 2047 and 2046, length-delimited: an unknown key code, an empty payload, a
        // cut-short field; an unknown event name code, an event cut short in its name or time.
        for rest in [
            &[0xfa, 0x7f, 0x01, 0x7f][..],
            &[0xfa, 0x7f, 0x00],
            &[0xfa, 0x7f, 0x05, 0x01],
            &[0xf2, 0x7f, 0x02, 0x7f, 0x00],
            &[0xf2, 0x7f, 0x02, 0x00, 0x05],
            &[0xf2, 0x7f, 0x01, 0x02],
            &[0xf2, 0x7f, 0x00],
        ] {
            assert!(stored::join(&r, form, rest).is_err(), "{rest:?}");
        }
    }

    #[test]
    fn links_added_by_resolution_are_in_the_stored_span() {
        let mut request = traces(pipeline_resource("svc", "CHIME"), vec![SpanBuilder::creation("s", "e", 1).build()]);
        let interpretation = interpret_traces(&request);
        let parent = crate::SpanRef { trace_id: "ab".repeat(16), span_id: "cd".repeat(8) };
        crate::interpret::append_parent_links(&mut request.resource_spans[0].scope_spans[0].spans[0], &[parent]);
        let got = span_records(&request, &interpretation);
        let span = Span::decode(got[0].span_proto.as_slice()).unwrap();
        assert_eq!(span.links.len(), 1);
        assert_eq!(to_hex(&span.links[0].span_id), "cd".repeat(8));
    }

    #[test]
    fn rejected_and_unkeyable_spans_are_not_kept() {
        let bad_entity = SpanBuilder::creation("s", "a\nb", 1).build();
        let mut no_span_id = SpanBuilder::new("x", 2).build();
        no_span_id.span_id = vec![0; 8];
        let mut short_trace = SpanBuilder::new("y", 3).build();
        short_trace.trace_id = vec![1; 4];
        let mut ok = SpanBuilder::new("z\0", 4).attr("helix.process.name", string("P")).build();
        ok.status = Some(opentelemetry_proto::tonic::trace::v1::Status { message: "a\0b".into(), code: 2 });
        let request = traces(vec![], vec![bad_entity, no_span_id, short_trace, ok]);
        let got = records(&request);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].name, "z\u{FFFD}", "no NUL in a query column");
        assert_eq!(got[0].status_message, "a\u{FFFD}b");
        assert_eq!(Span::decode(got[0].span_proto.as_slice()).unwrap().name, "z\0", "the span keeps it");
        assert_eq!(got[0].process_name.as_deref(), Some("P"));
        assert_eq!((got[0].service_name.as_deref(), got[0].instrument_id.as_deref()), (None, None));
        assert!(got[0].resource_proto.is_empty() || Resource::decode(got[0].resource_proto.as_slice()).is_ok());
    }
}
