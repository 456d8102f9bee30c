//! The query filters both backends spell alike (entity search, instrument events), as SQL
//! clauses with `?` placeholders and backend-neutral parameters; each backend numbers the
//! placeholders its own way and adds what it spells differently (metadata matching).

use crate::{cursor, EntityFilter, EventQuery, LogFilter, LogOrder, StoreResult, TraceFilter};

/// A parameter of a shared clause.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Param {
    Text(String),
    Int(i64),
    /// An INTEGER (32-bit) column's value: PostgreSQL binds it as `int4`.
    Int32(i32),
}

/// The clauses of an instrument event query (newest first) and of its page cursor, ANDed by
/// the caller, who orders by `timestamp_ns DESC, span_id DESC, ordinal DESC`.
pub(crate) fn event_clauses(q: &EventQuery, after: Option<&str>) -> StoreResult<Vec<(&'static str, Vec<Param>)>> {
    let mut out = Vec::new();
    if let Some(i) = &q.instrument_id {
        out.push(("instrument_id = ?", vec![Param::Text(i.clone())]));
    }
    if let Some(n) = &q.event_name {
        out.push(("event_name = ?", vec![Param::Text(n.clone())]));
    }
    if let Some(from) = q.from_ns {
        out.push(("timestamp_ns >= ?", vec![Param::Int(from)]));
    }
    if let Some(to) = q.to_ns {
        out.push(("timestamp_ns < ?", vec![Param::Int(to)]));
    }
    if let Some(c) = after {
        let (ts, span, ord) = cursor::event_key(cursor::INSTRUMENT_EVENTS, c)?;
        out.push((
            "(timestamp_ns, span_id, ordinal) < (?, ?, ?)",
            vec![Param::Int(ts), Param::Text(span), Param::Int32(ord)],
        ));
    }
    Ok(out)
}

/// The clauses of a log search over `logs` and of its page cursor, ANDed by the caller, who
/// adds the body match (spelled per backend) and orders by `(timestamp_ns, id)` in
/// `f.order`. The entity clause matches the lines naming the entity and every line of the
/// traces of its creation and operations.
pub(crate) fn log_clauses(
    f: &LogFilter,
    after: Option<&str>,
    sql: &LogSql,
) -> StoreResult<Vec<(&'static str, Vec<Param>)>> {
    let mut out = Vec::new();
    let text = |v: &Option<String>| v.clone().map(Param::Text);
    for (clause, value) in [
        (sql.trace, text(&f.trace_id)),
        ("span_id = ?", text(&f.span_id)),
        ("instrument_id = ?", text(&f.instrument_id)),
        ("service_name = ?", text(&f.service_name)),
        ("process_name = ?", text(&f.process_name)),
    ] {
        if let Some(v) = value {
            out.push((clause, vec![v]));
        }
    }
    if let Some(e) = &f.entity_id {
        out.push((sql.entity, vec![Param::Text(e.clone()), Param::Text(e.clone()), Param::Text(e.clone())]));
    }
    if let Some(n) = f.min_severity {
        out.push(("severity_number >= ?", vec![Param::Int32(n)]));
    }
    if let Some(level) = &f.level {
        out.push((sql.level, vec![Param::Text(level.clone())]));
    }
    if let Some(from) = f.from_ns {
        out.push(("timestamp_ns >= ?", vec![Param::Int(from)]));
    }
    if let Some(to) = f.to_ns {
        out.push(("timestamp_ns < ?", vec![Param::Int(to)]));
    }
    if let Some(c) = after {
        let (ts, id) = cursor::log_key(f.order, c)?;
        let clause = match f.order {
            LogOrder::Asc => "(timestamp_ns, id) > (?, ?)",
            LogOrder::Desc => "(timestamp_ns, id) < (?, ?)",
        };
        out.push((clause, vec![Param::Int(ts), Param::Int(id)]));
    }
    Ok(out)
}

/// What each backend spells its own way in the shared log clauses.
pub(crate) struct LogSql {
    /// `LogFilter::level`: `lower(trim(severity))` is exact for printable ASCII (both
    /// backends lower ASCII only alike); a severity with any other character passes.
    pub level: &'static str,
    /// `LogFilter::trace_id`, one `?`. SQLite's trace index leads with the row ID's epoch
    /// (migration 13), so a lookup names every epoch the table holds.
    pub trace: &'static str,
    /// `LogFilter::entity_id`, three `?` (the entity ID): its lines and its traces' lines.
    pub entity: &'static str,
}

pub(crate) const SQLITE_LOGS: LogSql = LogSql {
    level: "(lower(trim(severity)) = ? OR severity GLOB '*[^ -~]*')",
    trace: "((id >> 16) IN (SELECT epoch FROM log_epochs) AND trace_id = ?)",
    entity: "(entity_id = ? OR ((id >> 16) IN (SELECT epoch FROM log_epochs)
                 AND trace_id IN (SELECT trace_id FROM entities WHERE id = ? AND trace_id IS NOT NULL
                     UNION SELECT trace_id FROM entity_operations WHERE entity_id = ?)))",
};
// "C": ASCII-only lowering and code-point ranges, whatever the database's collation.
pub(crate) const POSTGRES_LOGS: LogSql = LogSql {
    level: r#"(lower(trim(severity) COLLATE "C") = ? OR severity COLLATE "C" ~ '[^ -~]')"#,
    trace: "trace_id = ?",
    entity: "(entity_id = ? OR trace_id IN (SELECT trace_id FROM entities WHERE id = ? AND trace_id IS NOT NULL
                 UNION SELECT trace_id FROM entity_operations WHERE entity_id = ?))",
};

/// `ORDER BY` of a log search.
pub(crate) fn log_order(order: LogOrder) -> &'static str {
    match order {
        LogOrder::Asc => " ORDER BY timestamp_ns, id",
        LogOrder::Desc => " ORDER BY timestamp_ns DESC, id DESC",
    }
}

/// The `logs` column holding a field whose values the label endpoints list.
pub(crate) fn log_column(field: crate::LogField) -> &'static str {
    use crate::LogField::*;
    match field {
        Service => "service_name",
        Process => "process_name",
        Instrument => "instrument_id",
        Severity => "severity",
        Trace => "trace_id",
    }
}

/// A `LIKE` pattern matching `text` anywhere, with `\` escaping the wildcards.
pub(crate) fn like_anywhere(text: &str) -> String {
    let mut p = String::with_capacity(text.len() + 2);
    p.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

/// A parameter of a trace-search clause (trace keys are raw bytes in both backends).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum TraceParam {
    Text(String),
    Int(i64),
    Bytes(Vec<u8>),
}

/// What a trace search walks first. Newest-first over every trace is fast when matches are
/// common; a rare value is faster found through its own index and sorted afterwards. The
/// backend counts matches up to [`RARE`] to choose (`choose_driver`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum TraceDriver {
    /// `traces` newest first (errors-only: the partial index of error traces).
    Newest,
    /// The traces of one entity (the partial entity index of spans).
    Entity(String),
    /// The traces with one search term (`trace_terms`).
    Term(i64),
    /// The traces lasting at least this long (a duration index; SQLite).
    Long(i64),
}

/// What the backends spell differently in a trace search.
pub(crate) struct TraceSql {
    /// `EXISTS (…)` with one `?` (the term): the trace `t` has that term.
    pub term_probe: &'static str,
    /// The driver's rows for `TraceDriver::Long`, one `?` (the minimum duration).
    pub long_traces: &'static str,
    /// The driver's rows for `TraceDriver::Term`, one `?` (the term), joined to `traces AS t`.
    pub term_traces: &'static str,
    /// The driver's rows for `TraceDriver::Entity`, one `?` (the entity ID), joined to `traces AS t`.
    pub entity_traces: &'static str,
    /// The span `s` is one of the trace `t`'s.
    pub same_trace: &'static str,
}

/// Fewer matches than this and a search starts from them rather than from the newest trace.
pub(crate) const RARE: i64 = 2_000;

/// The search terms (hashes) of a filter's service, span name and instrument.
pub(crate) fn trace_terms(f: &TraceFilter) -> Vec<i64> {
    use crate::plan::{term_hash, TERM_INSTRUMENT, TERM_NAME, TERM_SERVICE};
    let mut out = Vec::new();
    for (kind, v) in [(TERM_SERVICE, &f.service_name), (TERM_NAME, &f.span_name), (TERM_INSTRUMENT, &f.instrument_id)] {
        if let Some(v) = v {
            out.push(term_hash(kind, v));
        }
    }
    out
}

/// The driver for a filter, given how many traces each term has and how many last at least
/// the minimum duration (counted up to `RARE`; `None` where the backend cannot tell).
pub(crate) fn choose_driver(f: &TraceFilter, term_counts: &[(i64, i64)], long: Option<i64>) -> TraceDriver {
    if let Some(e) = &f.entity_id {
        return TraceDriver::Entity(e.clone());
    }
    let term = term_counts.iter().min_by_key(|(_, n)| *n).copied();
    match (term, long.zip(f.min_duration_ns)) {
        (Some((term, n)), Some((l, _))) if n < RARE && n <= l => TraceDriver::Term(term),
        (_, Some((l, min))) if l < RARE => TraceDriver::Long(min),
        (Some((term, n)), _) if n < RARE => TraceDriver::Term(term),
        _ => TraceDriver::Newest,
    }
}

/// The FROM clause of a trace search with `driver`, as `traces AS t` (plus `m`).
pub(crate) fn trace_from(driver: &TraceDriver, sql: &TraceSql) -> (String, Vec<TraceParam>) {
    let (from, params): (&str, Vec<TraceParam>) = match driver {
        TraceDriver::Newest => ("traces AS t", vec![]),
        TraceDriver::Entity(e) => (sql.entity_traces, vec![TraceParam::Text(e.clone())]),
        TraceDriver::Term(term) => (sql.term_traces, vec![TraceParam::Int(*term)]),
        TraceDriver::Long(min) => (sql.long_traces, vec![TraceParam::Int(*min)]),
    };
    (from.to_owned(), params)
}

/// The clauses of a trace search over `traces AS t` (newest first) and of its page cursor,
/// ANDed by the caller, who orders by `t.start_ns DESC, t.trace_id ASC`. Span-level filters
/// must hold on one span of the trace (checked exactly on its spans); their terms let a walk
/// over the newest traces skip the others with one key lookup. With `sql` None the backend
/// checks the span-level filters itself (SQLite: on the trace's packed spans).
pub(crate) fn trace_clauses(
    f: &TraceFilter,
    driver: &TraceDriver,
    sql: Option<&TraceSql>,
    after: Option<&str>,
) -> StoreResult<Vec<(String, Vec<TraceParam>)>> {
    let mut out: Vec<(String, Vec<TraceParam>)> = Vec::new();
    if let Some(from) = f.from_ns {
        out.push(("t.start_ns >= ?".into(), vec![TraceParam::Int(from)]));
    }
    if let Some(to) = f.to_ns {
        out.push(("t.start_ns < ?".into(), vec![TraceParam::Int(to)]));
    }
    if f.errors_only {
        out.push(("t.error_count > 0".into(), vec![]));
    }
    if let Some(min) = f.min_duration_ns {
        out.push(("t.end_ns - t.start_ns >= ?".into(), vec![TraceParam::Int(min)]));
    }
    if let Some(max) = f.max_duration_ns {
        out.push(("t.end_ns - t.start_ns <= ?".into(), vec![TraceParam::Int(max)]));
    }
    if let Some(sql) = sql {
        span_level_clauses(f, driver, sql, &mut out);
    }
    if let Some(c) = after {
        let p = cursor::decode(cursor::TRACES, c, 2)?;
        let (ts, id) = (cursor::part_i64(&p, 0)?, cursor::part_str(&p, 1)?);
        let id = helix_model::span::stored::id_bytes(&id, 16)
            .ok_or_else(|| crate::StoreError::BadCursor("not a trace cursor".into()))?;
        // `start_ns <= ?` first: a range the time index can seek to.
        out.push((
            "t.start_ns <= ? AND (t.start_ns < ? OR t.trace_id > ?)".into(),
            vec![TraceParam::Int(ts), TraceParam::Int(ts), TraceParam::Bytes(id)],
        ));
    }
    Ok(out)
}

/// The term probes and the exact span-level check of a search, over the `spans` table.
fn span_level_clauses(f: &TraceFilter, driver: &TraceDriver, sql: &TraceSql, out: &mut Vec<(String, Vec<TraceParam>)>) {
    for term in trace_terms(f) {
        if *driver != TraceDriver::Term(term) {
            out.push((sql.term_probe.into(), vec![TraceParam::Int(term)]));
        }
    }
    let mut span_level: Vec<(&str, &String)> = Vec::new();
    for (column, value) in [
        ("src.service_name", &f.service_name),
        ("s.name", &f.span_name),
        ("src.instrument_id", &f.instrument_id),
        ("s.entity_id", &f.entity_id),
    ] {
        if let Some(v) = value {
            span_level.push((column, v));
        }
    }
    // An entity filter alone is exact through its driver; anything else is checked on the spans.
    if span_level.len() > 1 || (span_level.len() == 1 && f.entity_id.is_none()) {
        let conditions: Vec<String> = span_level.iter().map(|(c, _)| format!("{c} = ?")).collect();
        out.push((
            format!(
                "EXISTS (SELECT 1 FROM spans AS s JOIN span_sources AS src ON src.id = s.source_id
                 WHERE {} AND {})",
                sql.same_trace,
                conditions.join(" AND ")
            ),
            span_level.iter().map(|(_, v)| TraceParam::Text((*v).clone())).collect(),
        ));
    }
}

/// The suspect entities: those with an active flag and all their descendants, walked by a
/// recursive query whose UNION visits each entity once (diamonds and cycles included).
macro_rules! suspect_set {
    () => {
        "WITH RECURSIVE suspect(id) AS (
             SELECT entity_id FROM entity_flags WHERE cleared_at IS NULL
             UNION SELECT p.child_id FROM entity_parents p JOIN suspect s ON p.parent_id = s.id)
         SELECT id FROM suspect"
    };
}
const SUSPECT: &str = concat!("id IN (", suspect_set!(), ")");
const NOT_SUSPECT: &str = concat!("id NOT IN (", suspect_set!(), ")");

/// The clauses of every filter but `metadata`, ANDed by the caller.
pub(crate) fn common_clauses(f: &EntityFilter) -> Vec<(&'static str, Vec<Param>)> {
    let mut out = Vec::new();
    if let Some(i) = &f.instrument_id {
        out.push(("instrument_id = ?", vec![Param::Text(i.clone())]));
    }
    if let Some(s) = &f.stage {
        out.push(("stage = ?", vec![Param::Text(s.clone())]));
    }
    if let Some(s) = f.status {
        out.push(("status = ?", vec![Param::Text(s.as_str().to_owned())]));
    }
    if let Some(from) = f.from_ns {
        out.push(("timestamp_ns >= ?", vec![Param::Int(from)]));
    }
    if let Some(to) = f.to_ns {
        out.push(("timestamp_ns < ?", vec![Param::Int(to)]));
    }
    if let Some(prefix) = f.id_prefix.as_deref().filter(|p| !p.is_empty()) {
        // A range on the binary-ordered key instead of LIKE, whose % and _ could appear in IDs.
        out.push(("id >= ?", vec![Param::Text(prefix.to_owned())]));
        if let Some(upper) = prefix_upper_bound(prefix) {
            out.push(("id < ?", vec![Param::Text(upper)]));
        }
    }
    match f.suspect {
        Some(true) => out.push((SUSPECT, Vec::new())),
        Some(false) => out.push((NOT_SUSPECT, Vec::new())),
        None => {}
    }
    out
}

/// The smallest string greater than every string that starts with `prefix` (code-point order,
/// which is both SQLite's BINARY and PostgreSQL's C order on UTF-8), or `None` when no such
/// bound exists.
pub(crate) fn prefix_upper_bound(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = match last as u32 {
            0xD7FF => Some('\u{E000}'),
            c => char::from_u32(c + 1),
        };
        if let Some(n) = next {
            chars.push(n);
            return Some(chars.into_iter().collect());
        }
        // `last` was char::MAX: carry into the previous character.
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_bounds() {
        assert_eq!(prefix_upper_bound("ab").as_deref(), Some("ac"));
        assert_eq!(prefix_upper_bound("a%").as_deref(), Some("a&"));
        assert_eq!(prefix_upper_bound("a\u{D7FF}").as_deref(), Some("a\u{E000}"));
        assert_eq!(prefix_upper_bound("a\u{10FFFF}").as_deref(), Some("b"));
        assert_eq!(prefix_upper_bound("\u{10FFFF}"), None);
        assert_eq!(prefix_upper_bound(""), None);
    }

    #[test]
    fn clauses_follow_the_filter() {
        let f = EntityFilter { instrument_id: Some("I".into()), id_prefix: Some("c-".into()), ..Default::default() };
        let clauses = common_clauses(&f);
        let sql: Vec<&str> = clauses.iter().map(|(c, _)| *c).collect();
        assert_eq!(sql, vec!["instrument_id = ?", "id >= ?", "id < ?"]);
        assert_eq!(clauses[2].1, vec![Param::Text("c.".into())]);
        assert!(common_clauses(&EntityFilter::default()).is_empty());
    }
}
