//! Entity events across entities: `GET /api/v1/events` (every or one instrument's events,
//! newest first, paged) and `GET /api/v1/errors` (an instrument's `helix.error` events of a time
//! window grouped by error class, normalised `message` + `stage`, with occurrences, entities
//! affected, first/last seen and examples). The API's error type is `super::ApiError`, not here.

use std::collections::{BTreeSet, HashMap};

use axum::extract::State;
use axum::http::Method;
use axum::routing::get;
use axum::Json;
use helix_model::{EntityEvent, ERROR_EVENT};
use helix_store::{EventQuery, PageRequest};
use serde::Serialize;
use serde_json::Value;

use super::entity::list_page;
use super::params::QueryParams;
use super::window::{window_ns, HOUR_NS};
use super::{ApiError, ApiResult, ApiState, Route};

const EVENTS_PARAMS: &[&str] = &["instrument", "name", "from_ns", "to_ns", "limit", "cursor"];
const ERRORS_PARAMS: &[&str] = &["instrument", "stage", "from_ns", "to_ns", "limit", "cursor"];
const DEFAULT_EVENTS_PAGE: usize = 100;
const MAX_EVENTS_PAGE: usize = 10_000;
const DEFAULT_GROUPS_PAGE: usize = 100;
const MAX_GROUPS_PAGE: usize = 1_000;
/// Error events read for one grouping; beyond it the response says `partial`.
const MAX_ERRORS_SCANNED: usize = 100_000;
const SCAN_PAGE: usize = 10_000;
/// Example entities kept per class (the most recent ones).
const EXAMPLES: usize = 5;
pub(super) const MAX_WINDOW_NS: i64 = 31 * 24 * HOUR_NS;

pub fn routes() -> Vec<Route> {
    vec![
        Route { method: Method::GET, path: "/api/v1/events", query: EVENTS_PARAMS, handler: get(events) },
        Route { method: Method::GET, path: "/api/v1/errors", query: ERRORS_PARAMS, handler: get(errors) },
    ]
}

/// `{"events": [...], "next_cursor"}`: events of every (or one) instrument, newest first.
/// Without a window, every event; `name` is an exact event name such as `helix.error`.
async fn events(State(state): State<ApiState>, params: QueryParams) -> ApiResult<Json<Value>> {
    let params = params.allow(EVENTS_PARAMS)?;
    let from_ns = params.i64("from_ns")?;
    let to_ns = params.i64("to_ns")?;
    if let (Some(from), Some(to)) = (from_ns, to_ns) {
        if from > to {
            return Err(ApiError::bad("from_ns", "must not be after `to_ns`"));
        }
    }
    let query = EventQuery {
        instrument_id: params.text("instrument").map(str::to_owned),
        event_name: params.text("name").map(str::to_owned),
        from_ns,
        to_ns,
    };
    let page = params.page(DEFAULT_EVENTS_PAGE, MAX_EVENTS_PAGE)?;
    let page = state.store.instrument_events(&query, &page).await?;
    list_page("events", &page)
}

/// The error class of a message: numbers not glued to a word become `<n>`, long hex runs `<hex>`, quoted
/// text `<s>`, whitespace collapses; so `"file 123.h5 missing"` and `"file 456.h5 missing"`
/// are one class.
pub fn normalise_message(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let chars: Vec<char> = message.trim().chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' {
            if let Some(len) = chars[i + 1..].iter().position(|&d| d == c) {
                out.push_str("<s>");
                i += len + 2;
                continue;
            }
        }
        if c.is_ascii_hexdigit() {
            let run = chars[i..].iter().take_while(|d| d.is_ascii_hexdigit() || **d == '-').count();
            let word = &chars[i..i + run];
            let starts_word = i == 0 || !chars[i - 1].is_alphanumeric();
            let ends_word = chars.get(i + run).is_none_or(|d| !d.is_alphanumeric());
            let digits = word.iter().filter(|d| d.is_ascii_digit()).count();
            if starts_word && ends_word && run >= 8 && digits > 0 {
                out.push_str("<hex>");
                i += run;
                continue;
            }
        }
        // A number (digits, optionally a fraction) not glued to a word before it.
        if c.is_ascii_digit() && (i == 0 || !chars[i - 1].is_alphabetic()) {
            let mut run = chars[i..].iter().take_while(|d| d.is_ascii_digit()).count();
            if chars.get(i + run) == Some(&'.') && chars.get(i + run + 1).is_some_and(char::is_ascii_digit) {
                run += 1 + chars[i + run + 1..].iter().take_while(|d| d.is_ascii_digit()).count();
            }
            out.push_str("<n>");
            i += run;
            continue;
        }
        if c.is_whitespace() {
            if !out.ends_with(' ') {
                out.push(' ');
            }
            i += 1;
            continue;
        }
        out.push(c);
        i += 1;
    }
    out
}

/// The message of an error event (`message`, else `exception.message`, else empty).
fn message_of(event: &EntityEvent) -> &str {
    event.metadata.get("message").or_else(|| event.metadata.get("exception.message")).map_or("", String::as_str)
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ErrorGroup {
    /// `stage` + `": "` + normalised message: the group's key.
    pub class: String,
    pub message: String,
    pub stage: String,
    /// One raw message of the class, as sent (the most recent).
    pub sample_message: String,
    pub occurrences: u64,
    pub entities_affected: u64,
    pub first_seen_ns: i64,
    pub last_seen_ns: i64,
    /// The most recent distinct entities, newest first.
    pub example_entities: Vec<String>,
}

fn class_key(stage: &str, normalised: &str) -> String {
    format!("{stage}: {normalised}")
}

/// The class key of an error event, as `/api/v1/errors` gives it in `class`.
pub fn class_of(event: &EntityEvent) -> String {
    class_key(event.metadata.get("stage").map_or("", String::as_str), &normalise_message(message_of(event)))
}

/// The error events of an instrument in `[from_ns, to_ns)` (of one stage when given), newest
/// first, at most [`MAX_ERRORS_SCANNED`]; `true` when there were more.
pub(super) async fn scan_errors(
    state: &ApiState,
    instrument: &str,
    stage: Option<&str>,
    from_ns: i64,
    to_ns: i64,
) -> ApiResult<(Vec<EntityEvent>, bool)> {
    let query = EventQuery {
        instrument_id: Some(instrument.to_owned()),
        event_name: Some(ERROR_EVENT.to_owned()),
        from_ns: Some(from_ns),
        to_ns: Some(to_ns),
    };
    let mut scanned: Vec<EntityEvent> = Vec::new();
    let mut request = PageRequest::first(SCAN_PAGE);
    let partial = loop {
        let page = state.store.instrument_events(&query, &request).await?;
        scanned.extend(
            page.items
                .into_iter()
                .filter(|e| stage.is_none_or(|s| e.metadata.get("stage").map(String::as_str) == Some(s))),
        );
        match page.next_cursor {
            None => break false,
            Some(_) if scanned.len() >= MAX_ERRORS_SCANNED => break true,
            Some(c) => request.cursor = Some(c),
        }
    };
    Ok((scanned, partial))
}

/// Groups error events (newest first) by class; groups sorted by occurrences (most first),
/// then last seen (most recent first), then class.
pub fn group_errors(events: &[EntityEvent]) -> Vec<ErrorGroup> {
    let mut groups: Vec<ErrorGroup> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut entities: Vec<BTreeSet<&str>> = Vec::new();
    for event in events {
        let stage = event.metadata.get("stage").map_or("", String::as_str);
        let message = normalise_message(message_of(event));
        let class = class_key(stage, &message);
        let i = *index.entry(class.clone()).or_insert_with(|| {
            groups.push(ErrorGroup {
                class,
                message,
                stage: stage.to_owned(),
                sample_message: message_of(event).to_owned(),
                occurrences: 0,
                entities_affected: 0,
                first_seen_ns: event.timestamp_ns,
                last_seen_ns: event.timestamp_ns,
                example_entities: Vec::new(),
            });
            entities.push(BTreeSet::new());
            groups.len() - 1
        });
        let group = &mut groups[i];
        group.occurrences += 1;
        group.first_seen_ns = group.first_seen_ns.min(event.timestamp_ns);
        group.last_seen_ns = group.last_seen_ns.max(event.timestamp_ns);
        if entities[i].insert(event.entity_id.as_str()) && group.example_entities.len() < EXAMPLES {
            group.example_entities.push(event.entity_id.clone());
        }
    }
    for (group, ids) in groups.iter_mut().zip(&entities) {
        group.entities_affected = ids.len() as u64;
    }
    groups.sort_by(|a, b| {
        b.occurrences.cmp(&a.occurrences).then(b.last_seen_ns.cmp(&a.last_seen_ns)).then_with(|| a.class.cmp(&b.class))
    });
    groups
}

/// Group cursors are the offset of the next group, as `g<offset>`.
fn group_offset(params: &QueryParams) -> ApiResult<usize> {
    match params.cursor()? {
        None => Ok(0),
        Some(c) => c
            .strip_prefix('g')
            .and_then(|n| n.parse::<usize>().ok())
            .ok_or_else(|| ApiError::bad("cursor", "not a cursor of this endpoint")),
    }
}

/// `{"instrument", "from_ns", "to_ns", "groups": [...], "errors_scanned", "partial", "next_cursor"}`.
/// The window defaults to the last 24 h (at most 31 days).
async fn errors(State(state): State<ApiState>, params: QueryParams) -> ApiResult<Json<Value>> {
    let params = params.allow(ERRORS_PARAMS)?;
    let instrument = params.required("instrument")?.to_owned();
    let stage = params.text("stage").map(str::to_owned);
    let (from_ns, to_ns) = window_ns(&params, 24 * HOUR_NS, MAX_WINDOW_NS)?;
    let limit = params.limit(DEFAULT_GROUPS_PAGE, MAX_GROUPS_PAGE)?;
    let offset = group_offset(&params)?;
    let (scanned, partial) = scan_errors(&state, &instrument, stage.as_deref(), from_ns, to_ns).await?;
    let groups = group_errors(&scanned);
    let total = groups.len();
    let page: Vec<ErrorGroup> = groups.into_iter().skip(offset).take(limit).collect();
    let next_cursor = (offset + limit < total).then(|| format!("g{}", offset + limit));
    Ok(Json(serde_json::json!({
        "instrument": instrument,
        "from_ns": from_ns,
        "to_ns": to_ns,
        "groups": page,
        "errors_scanned": scanned.len(),
        "partial": partial,
        "next_cursor": next_cursor,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(entity: &str, ts: i64, message: &str, stage: &str) -> EntityEvent {
        EntityEvent {
            entity_id: entity.into(),
            instrument_id: "I".into(),
            event_name: ERROR_EVENT.into(),
            timestamp_ns: ts,
            metadata: [("message", message), ("stage", stage)]
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            trace_id: String::new(),
            span_id: String::new(),
            ordinal: 0,
        }
    }

    #[test]
    fn messages_normalise_numbers_hex_and_quotes() {
        assert_eq!(normalise_message("file 123.h5 missing"), "file <n>.h5 missing");
        assert_eq!(normalise_message("  timeout after  30s "), "timeout after <n>s");
        assert_eq!(normalise_message("trace 4bf92f3577b34da6 failed"), "trace <hex> failed");
        assert_eq!(normalise_message("no key 'abc' in \"x y\""), "no key <s> in <s>");
        assert_eq!(normalise_message("low_snr_mask"), "low_snr_mask");
        assert_eq!(normalise_message("beam2 dead"), "beam2 dead");
        assert_eq!(normalise_message("dm 56.7 too high"), "dm <n> too high");
        assert_eq!(normalise_message("deadbeef"), "deadbeef");
    }

    #[test]
    fn groups_by_stage_and_normalised_message() {
        let events = vec![
            error("c", 30, "file 2 missing", "archive"),
            error("b", 20, "file 1 missing", "archive"),
            error("b", 15, "file 1 missing", "archive"),
            error("a", 10, "file 1 missing", "search"),
        ];
        let groups = group_errors(&events);
        assert_eq!(groups.len(), 2);
        let g = &groups[0];
        assert_eq!(g.class, "archive: file <n> missing");
        assert_eq!((g.occurrences, g.entities_affected, g.first_seen_ns, g.last_seen_ns), (3, 2, 15, 30));
        assert_eq!(g.example_entities, ["c", "b"]);
        assert_eq!(g.sample_message, "file 2 missing");
        assert_eq!(groups[1].class, "search: file <n> missing");
    }
}
