-- Queries that existing Grafana dashboards run against the herald's PostgreSQL database.
-- They read only the compatible columns of storage.md, so they keep working unchanged.
-- `${entity_id}` and `${instrument_id}` are Grafana template variables (Grafana substitutes
-- them as text before sending the query). Each query is preceded by a `-- name:` line; the
-- test crates/helix-store/tests/postgres_dashboard.rs runs this very file.

-- name: entity_by_id
SELECT id, instrument_id, trace_id, timestamp_ns, parent_ids, metadata, created_at
FROM entities
WHERE id = '${entity_id}';

-- name: entity_events
SELECT event_name, timestamp_ns, metadata ->> 'message' AS message, trace_id, created_at
FROM entity_events
WHERE entity_id = '${entity_id}'
ORDER BY timestamp_ns;

-- name: entity_operations
SELECT operation, trace_id, timestamp_ns, duration_ns, metadata, created_at
FROM entity_operations
WHERE entity_id = '${entity_id}'
ORDER BY timestamp_ns DESC;

-- name: ancestors
WITH RECURSIVE lineage (id, parent_ids, depth) AS (
    SELECT id, parent_ids, 0 FROM entities WHERE id = '${entity_id}'
    UNION
    SELECT e.id, e.parent_ids, l.depth + 1
    FROM lineage AS l
    CROSS JOIN LATERAL unnest(l.parent_ids) AS p (parent_id)
    JOIN entities AS e ON e.id = p.parent_id
    WHERE l.depth < 100
)
SELECT id, min(depth) AS depth
FROM lineage
GROUP BY id
ORDER BY min(depth), id;

-- name: error_entities_by_instrument
SELECT ev.entity_id, count(*) AS errors, max(ev.timestamp_ns) AS last_error_ns,
       (array_agg(ev.metadata ->> 'message' ORDER BY ev.timestamp_ns DESC))[1] AS last_message
FROM entity_events AS ev
WHERE ev.instrument_id = '${instrument_id}' AND ev.event_name = 'helix.error'
GROUP BY ev.entity_id
ORDER BY last_error_ns DESC;

-- name: operations_per_name_by_instrument
SELECT operation, count(*) AS n, avg(duration_ns)::BIGINT AS avg_duration_ns
FROM entity_operations
WHERE instrument_id = '${instrument_id}'
GROUP BY operation
ORDER BY operation;
