//! The PostgreSQL log search: the shared clauses (`crate::filter::log_clauses`) over `logs`,
//! in either time order; the body match is `ILIKE`, which the trigram index answers where
//! pg_trgm is enabled (migration 5).

use deadpool_postgres::Object;
use helix_model::LogRecorded;

use super::read::{pg_value, Arg, Query};
use crate::cursor::{self, fetch_limit, page_limit, split_page};
use crate::filter::{like_anywhere, log_clauses, log_order, POSTGRES_LOGS};
use crate::rows::parse_metadata;
use crate::{LogField, LogFilter, Page, PageRequest, StoreResult};

pub(super) async fn search(c: &Object, f: &LogFilter, page: &PageRequest) -> StoreResult<Page<LogRecorded>> {
    let limit = page_limit(page);
    let mut query = Query::new(
        "SELECT timestamp_ns, observed_ns, severity, severity_number, body, trace_id, span_id, entity_id,
                instrument_id, process_name, service_name, source, attributes::text, resource::text, id
         FROM logs WHERE true"
            .to_owned(),
    );
    for (clause, params) in log_clauses(f, page.cursor.as_deref(), &POSTGRES_LOGS)? {
        query.and(clause, params.into_iter().map(pg_value).collect());
    }
    if let Some(text) = f.text.as_deref().filter(|t| !t.is_empty()) {
        // Backslash is PostgreSQL's default LIKE escape, as `like_anywhere` writes it.
        query.and("body ILIKE ?", vec![Box::new(like_anywhere(text)) as Arg]);
    }
    query.then(&format!("{} LIMIT ?", log_order(f.order)), vec![Box::new(fetch_limit(limit)) as Arg]);
    let rows = query.run(c).await?;
    let items = rows
        .iter()
        .map(|r| {
            let timestamp_ns: i64 = r.get(0);
            Ok((
                LogRecorded {
                    timestamp_ns,
                    observed_ns: r.get::<_, Option<i64>>(1).unwrap_or(timestamp_ns),
                    severity: r.get(2),
                    severity_number: r.get(3),
                    body: r.get(4),
                    trace_id: r.get(5),
                    span_id: r.get(6),
                    entity_id: r.get(7),
                    instrument_id: r.get(8),
                    process_name: r.get(9),
                    service_name: r.get(10),
                    source: r.get(11),
                    attributes: parse_metadata(r.get(12))?,
                    resource: parse_metadata(r.get(13))?,
                },
                r.get::<_, i64>(14),
            ))
        })
        .collect::<StoreResult<Vec<_>>>()?;
    let page = split_page(items, limit, |(l, id)| cursor::after_log(f.order, l.timestamp_ns, *id));
    Ok(Page { items: page.items.into_iter().map(|(l, _)| l).collect(), next_cursor: page.next_cursor })
}

pub(super) async fn values(
    c: &Object,
    field: LogField,
    from_ns: i64,
    to_ns: i64,
    limit: usize,
) -> StoreResult<Vec<String>> {
    let column = crate::filter::log_column(field);
    let mut query = Query::new(format!("SELECT DISTINCT {column} FROM logs WHERE {column} IS NOT NULL"));
    query.and("timestamp_ns >= ? AND timestamp_ns < ?", vec![Box::new(from_ns) as Arg, Box::new(to_ns)]);
    query.then(" ORDER BY 1 LIMIT ?", vec![Box::new(limit as i64) as Arg]);
    Ok(query.run(c).await?.iter().map(|r| r.get::<_, String>(0)).collect())
}
