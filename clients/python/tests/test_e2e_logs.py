"""The log search against a REAL herald: lines logged through `clients/python` inside
create()/operate()/trace() blocks and outside any block, found by /api/v1/logs (by trace, by
entity, by severity and by text) and by /api/v1/trace/{id}/logs."""

from __future__ import annotations

import logging
import urllib.parse
from typing import Any

from herald_process import Herald

from helixobs import Instrument

log = logging.getLogger("e2e.logs")


def bodies(herald: Herald, path: str, **params: str) -> list[str]:
    query = urllib.parse.urlencode(params)
    page: dict[str, Any] = herald.api(path + ("?" + query if query else ""))
    return [row["body"] for row in page["logs"]]


def test_lines_inside_blocks_are_found_by_trace_entity_and_text(
    tel_herald: Instrument, herald: Herald
) -> None:
    tel = tel_herald
    with tel.create("ingest", id="blk-logs-1"):
        log.info("reading blk-logs-1 from disk")
        log.warning("disk %d%% full", 91)
    with tel.operate("archive", entity_id="blk-logs-1"):
        log.error("archive target unreachable")
    with tel.trace("process-request"):
        log.info("request complete")
    log.info("between scans, no span around this line")
    assert tel.flush()

    entity = herald.entity("blk-logs-1")["entity"]
    trace_id = entity["trace_id"]
    assert bodies(herald, "/api/v1/logs", trace_id=trace_id) == [
        "reading blk-logs-1 from disk",
        "disk 91% full",
    ]
    assert bodies(herald, f"/api/v1/trace/{trace_id}/logs", severity="WARN") == ["disk 91% full"]
    assert bodies(herald, "/api/v1/logs", entity_id="blk-logs-1") == [
        "reading blk-logs-1 from disk",
        "disk 91% full",
        "archive target unreachable",
    ]
    assert bodies(herald, "/api/v1/logs", service="my-pipeline", severity="ERROR") == [
        "archive target unreachable"
    ]
    # A plain trace's lines carry its trace ID: filterable by it, with no entity.
    (request_line,) = herald.api(
        "/api/v1/logs?" + urllib.parse.urlencode({"q": "request complete"})
    )["logs"]
    assert request_line["entity_id"] is None
    assert bodies(herald, "/api/v1/logs", trace_id=request_line["trace_id"]) == ["request complete"]
    # A line outside any block has no IDs and is still found by its text.
    (outside,) = herald.api("/api/v1/logs?" + urllib.parse.urlencode({"q": "NO SPAN AROUND"}))[
        "logs"
    ]
    assert (
        outside["trace_id"] is None and outside["span_id"] is None and outside["entity_id"] is None
    )
    assert outside["instrument_id"] == "MY_INST"
    newest_first = bodies(herald, "/api/v1/logs", process="MY_INST/ingest", order="desc", limit="2")
    assert newest_first == ["between scans, no span around this line", "request complete"]
