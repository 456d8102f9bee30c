"""Every user-guide example (tracking-entities.md) against a REAL herald process.

Each guide code block is copied unchanged into the test body (as in test_seed_examples.py)
and then checked through the herald's HTTP API: entities, parents, operations, events,
the provenance graph and lineage, and the log records stored for an entity.

Every test gets a fresh herald (own database), so the guide's fixed IDs never collide.
The herald acknowledges an export only after committing it, so the API is read right
after `tel.flush()` without polling.
"""

from __future__ import annotations

import asyncio
import logging
import re
import subprocess
import sys
import textwrap
from typing import Any

import pytest
from herald_process import Herald
from test_seed_examples import (
    _Queue,
    _stage_deletion_example,
    aggregate,
    apply_filter,
    classify,
    db,
    request,
    run_ingest,
    run_search,
    transform,
    verify_token,
    write_archive,
)

from helixobs import Instrument

log = logging.getLogger("seed.example")

HEX32 = re.compile(r"^[0-9a-f]{32}$")
HEX16 = re.compile(r"^[0-9a-f]{16}$")


def created(herald: Herald, entity_id: str) -> dict[str, Any]:
    """The entity row of a created (not placeholder) entity, sanity-checked."""
    entity: dict[str, Any] = herald.entity(entity_id)["entity"]
    assert entity["id"] == entity_id
    assert entity["instrument_id"] == "MY_INST"
    assert entity["placeholder"] is False
    assert HEX32.match(entity["trace_id"]), entity
    assert HEX16.match(entity["span_id"]), entity
    assert entity["end_ns"] >= entity["timestamp_ns"] > 0
    return entity


def edges(body: dict[str, Any]) -> set[tuple[str, str]]:
    return {(e["source"], e["target"]) for e in body["edges"]}


def entity_ids(herald: Herald) -> list[str]:
    return sorted(e["id"] for e in herald.entities(instrument="MY_INST"))


def log_rows(herald: Herald, entity_id: str) -> dict[str, dict[str, Any]]:
    return {r["body"]: r for r in herald.logs(entity_id)}


# --- Setup ---------------------------------------------------------------------------------
def test_setup_example(herald: Herald) -> None:
    from helixobs.setup import setup

    tel = setup(
        "my-pipeline",
        instrument_id="MY_INST",
        endpoint=herald.otlp_endpoint,  # the guide says "herald:4317"
        process_name="MY_INST/ingest",
    )
    try:
        with tel.create("ingest", id="block-001"):
            pass
        assert tel.flush()
    finally:
        tel.shutdown()
    assert "MY_INST" in herald.api("/api/v1/instruments")
    block = created(herald, "block-001")
    assert block["service_name"] == "my-pipeline"
    assert block["process_name"] == "MY_INST/ingest"
    assert block["stage"] == "ingest"


# --- Context manager ---------------------------------------------------------------------
def test_context_manager_examples(tel_herald: Instrument, herald: Herald) -> None:
    tel = tel_herald
    with tel.create("search", id="candidate-42", parents=["block-001"]) as token:
        result = run_search()
        token.set_attribute("score", result.score)
    with tel.operate("archive", entity_id="event-7") as token:
        write_archive()
        token.set_attribute("path", "/data/event-7.h5")
    assert tel.flush()

    body = herald.entity("candidate-42")
    cand = created(herald, "candidate-42")
    assert cand["stage"] == "search"
    assert cand["status"] == "ok"
    assert cand["parent_ids"] == ["block-001"]
    assert cand["metadata"]["score"] == "0.97"
    assert cand["process_name"] == "MY_INST/ingest"
    assert cand["service_name"] == "my-pipeline"
    assert body["events"] == [] and body["operations"] == []
    ops = herald.operations("candidate-42")
    assert [o["operation"] for o in ops] == ["creation"]
    assert ops[0]["trace_id"] == cand["trace_id"]
    assert ops[0]["metadata"]["score"] == "0.97"

    # event-7 was never created: the operation makes a placeholder carrying the operation.
    event = herald.entity("event-7")
    assert event["entity"]["placeholder"] is True
    assert event["entity"]["trace_id"] is None
    assert event["entity"]["parent_ids"] == []
    ops = herald.operations("event-7")
    assert [o["operation"] for o in ops] == ["archive"]
    assert ops[0]["metadata"]["path"] == "/data/event-7.h5"
    assert HEX32.match(ops[0]["trace_id"]) and ops[0]["trace_id"] != cand["trace_id"]
    assert ops[0]["duration_ns"] >= 0
    assert [o["operation"] for o in event["operations"]] == ["archive"]
    assert event["operations"][0]["status"] == "ok"

    # block-001 was never created: the parent is recorded, the edge waits for it.
    assert herald.entity_status("block-001") == 404
    graph = herald.graph("candidate-42")
    assert [n["id"] for n in graph["nodes"]] == ["candidate-42"]
    assert graph["edges"] == []


def test_context_manager_tip_logs_carry_the_entity(tel_herald: Instrument, herald: Herald) -> None:
    """The guide's tip: log inside the block and the line carries the entity and trace."""
    tel = tel_herald
    with tel.create("search", id="candidate-42", parents=["block-001"]) as token:
        log.info("searching %s", "candidate-42")
        token.set_attribute("score", 0.97)
    with tel.operate("archive", entity_id="candidate-42"):
        log.info("archiving")
    log.info("outside any block")
    assert tel.flush()
    cand = created(herald, "candidate-42")
    archive = herald.operations("candidate-42")[1]
    rows = log_rows(herald, "candidate-42")
    assert set(rows) == {"searching candidate-42", "archiving"}
    searching = rows["searching candidate-42"]
    assert searching["entity_id"] == "candidate-42"
    assert searching["trace_id"] == cand["trace_id"]
    assert searching["span_id"] == cand["span_id"]
    assert searching["severity"] == "INFO"
    assert searching["service_name"] == "my-pipeline"
    attrs = searching["attributes"]
    assert attrs["helix_entity_id"] == "candidate-42"
    assert attrs["otel_trace_id"] == cand["trace_id"]
    assert attrs["helix_instrument_id"] == "MY_INST"
    assert attrs["helix_process_name"] == "MY_INST/ingest"
    assert re.match(r"^tests/test_e2e_seed\.py#L\d+$", attrs["helix_source"])
    assert rows["archiving"]["trace_id"] == archive["trace_id"]
    assert rows["archiving"]["attributes"]["helix_entity_id"] == "candidate-42"
    # The operation span leaves the instrument and the process name to the resource (which
    # says them): its log line, its operation row and its stored span still name both.
    assert rows["archiving"]["attributes"]["helix_process_name"] == "MY_INST/ingest"
    assert rows["archiving"]["attributes"]["helix_instrument_id"] == "MY_INST"
    spans = herald.api(f"/api/v1/trace/{archive['trace_id']}")["spans"]
    assert [(s["name"], s["process_name"], s["instrument_id"]) for s in spans] == [
        ("archive", "MY_INST/ingest", "MY_INST")
    ]
    assert "helix.process.name" not in spans[0]["attributes"]
    assert "helix.instrument.id" not in spans[0]["attributes"]
    assert spans[0]["resource"]["helix.process.name"] == "MY_INST/ingest"


# --- Decorator ---------------------------------------------------------------------------
def test_decorator_examples(tel_herald: Instrument, herald: Herald) -> None:
    tel = tel_herald

    @tel.create("search", id=lambda block_id, **_: block_id)
    def search_block(block_id):
        result = run_search(block_id)
        return result

    search_block("candidate-42")

    @tel.operate("daily-report", entity_id="report-2026-05-20")
    def generate_report(): ...

    generate_report()
    search_block("candidate-43")  # a fresh token (and entity) per call
    generate_report()
    assert tel.flush()

    for cid in ("candidate-42", "candidate-43"):
        cand = created(herald, cid)
        assert cand["stage"] == "search"
        assert cand["parent_ids"] == []
    assert (
        created(herald, "candidate-42")["trace_id"] != created(herald, "candidate-43")["trace_id"]
    )
    report = herald.entity("report-2026-05-20")["entity"]
    assert report["placeholder"] is True
    ops = herald.operations("report-2026-05-20")
    assert [o["operation"] for o in ops] == ["daily-report", "daily-report"]
    assert ops[0]["trace_id"] != ops[1]["trace_id"]
    assert entity_ids(herald) == ["candidate-42", "candidate-43", "report-2026-05-20"]


async def test_async_decorator_and_async_with(tel_herald: Instrument, herald: Herald) -> None:
    """Not in the guide's text, but promised by the spec: coroutines keep the span open."""
    tel = tel_herald

    @tel.create("search", id=lambda block_id, **_: block_id, parents=lambda block_id: ["b-1"])
    async def search_block(block_id):
        await asyncio.sleep(0.05)
        log.info("searched %s", block_id)

    await search_block("cand-async")
    async with tel.operate("archive", entity_id="cand-async") as op:
        await asyncio.sleep(0)
        op.set_attribute("path", "/a.h5")
    assert tel.flush()
    cand = created(herald, "cand-async")
    assert cand["parent_ids"] == ["b-1"]
    assert cand["end_ns"] - cand["timestamp_ns"] >= 40_000_000  # the awaited 50 ms
    assert log_rows(herald, "cand-async")["searched cand-async"]["trace_id"] == cand["trace_id"]
    assert [o["operation"] for o in herald.operations("cand-async")] == ["creation", "archive"]


# --- Explicit API ------------------------------------------------------------------------
def test_explicit_examples(tel_herald: Instrument, herald: Herald) -> None:
    tel = tel_herald
    token = tel.create("search", id="candidate-42", parents=["block-001"])
    token.start()

    try:
        result = run_search()
        token.complete(metadata={"score": result.score})
    except Exception as e:
        token.error({"message": str(e)})

    token = tel.operate("archive", entity_id="event-7")
    token.start()
    write_archive()
    token.complete(metadata={"path": "/data/event-7.h5"})
    assert tel.flush()

    cand = created(herald, "candidate-42")
    assert cand["status"] == "ok"
    assert cand["parent_ids"] == ["block-001"]
    assert cand["metadata"]["score"] == "0.97"
    ops = herald.operations("event-7")
    assert [(o["operation"], o["metadata"]["path"]) for o in ops] == [
        ("archive", "/data/event-7.h5")
    ]


def test_explicit_example_error_path(tel_herald: Instrument, herald: Herald) -> None:
    tel = tel_herald

    def run_search():  # noqa: F811 - this variant fails
        raise TimeoutError("search timed out")

    token = tel.create("search", id="candidate-42", parents=["block-001"])
    token.start()

    try:
        result = run_search()
        token.complete(metadata={"score": result.score})
    except Exception as e:
        token.error({"message": str(e)})

    assert tel.flush()
    cand = created(herald, "candidate-42")
    assert cand["status"] == "error"
    assert "score" not in cand["metadata"]
    events = herald.events("candidate-42")
    assert [(e["event_name"], e["metadata"]) for e in events] == [
        ("helix.error", {"message": "search timed out"})
    ]
    assert events[0]["trace_id"] == cand["trace_id"]
    assert [e["id"] for e in herald.entities(instrument="MY_INST", status="error")] == [
        "candidate-42"
    ]
    assert herald.graph("candidate-42")["nodes"][0]["has_error"] is True


def test_context_manager_exception_marks_the_entity(tel_herald: Instrument, herald: Herald) -> None:
    tel = tel_herald
    with pytest.raises(ValueError):
        with tel.create("search", id="candidate-42"):
            raise ValueError("bad block")
    assert tel.flush()
    cand = created(herald, "candidate-42")
    assert cand["status"] == "error"
    (event,) = herald.events("candidate-42")
    assert event["event_name"] == "helix.error"
    assert event["metadata"]["message"] == "ValueError"
    assert event["metadata"]["exception.message"] == "bad block"


# --- Provenance patterns -----------------------------------------------------------------
def test_linear_chain(tel_herald: Instrument, herald: Herald) -> None:
    tel = tel_herald
    with tel.create("ingest", id="block-001"):
        run_ingest()

    with tel.create("search", id="candidate-42", parents=["block-001"]):
        run_search()
    assert tel.flush()

    block, cand = created(herald, "block-001"), created(herald, "candidate-42")
    assert block["parent_ids"] == [] and cand["parent_ids"] == ["block-001"]
    assert block["trace_id"] != cand["trace_id"]
    assert herald.entity("block-001")["entity"]["children_count"] == 1
    graph = herald.graph("candidate-42")
    assert [n["id"] for n in graph["nodes"]] == ["candidate-42", "block-001"]
    assert graph["edges"] == [{"source": "block-001", "target": "candidate-42"}]
    down = herald.lineage("block-001", "descendants")
    assert [(n["id"], n["depth"]) for n in down["nodes"]] == [("block-001", 0), ("candidate-42", 1)]
    assert edges(down) == {("block-001", "candidate-42")}
    assert down["partial"] is False
    up = herald.lineage("candidate-42", "ancestors")
    assert [(n["id"], n["depth"], n["stage"]) for n in up["nodes"]] == [
        ("candidate-42", 0, "search"),
        ("block-001", 1, "ingest"),
    ]


def test_fan_in(tel_herald: Instrument, herald: Herald) -> None:
    tel = tel_herald
    # Many partial results → one aggregated output
    partial_ids = ["result-001", "result-002", "result-003"]
    with tel.create("aggregate", id="event-7", parents=partial_ids):
        aggregate()
    assert tel.flush()
    assert created(herald, "event-7")["parent_ids"] == partial_ids
    assert herald.graph("event-7")["edges"] == []  # the partials are not known yet

    # The partials arrive afterwards (in another order): the edges join the DAG.
    for pid in reversed(partial_ids):
        with tel.create("partial", id=pid):
            pass
    assert tel.flush()
    assert created(herald, "event-7")["parent_ids"] == partial_ids
    graph = herald.graph("event-7")
    assert edges(graph) == {(p, "event-7") for p in partial_ids}
    node = next(n for n in graph["nodes"] if n["id"] == "event-7")
    assert node["parent_ids"] == partial_ids
    up = herald.lineage("event-7")
    assert sorted(n["id"] for n in up["nodes"] if n["depth"] == 1) == partial_ids
    for pid in partial_ids:
        down = herald.lineage(pid, "descendants")
        assert edges(down) == {(pid, "event-7")}


def test_fan_in_keeps_caller_order(tel_herald: Instrument, herald: Herald) -> None:
    tel = tel_herald
    for pid in ("result-001", "result-002", "result-003"):
        with tel.create("partial", id=pid):
            pass
    partial_ids = ["result-003", "result-001", "result-002", "result-001"]  # dup dropped
    with tel.create("aggregate", id="event-7", parents=partial_ids):
        aggregate()
    assert tel.flush()
    assert created(herald, "event-7")["parent_ids"] == ["result-003", "result-001", "result-002"]
    assert herald.graph("event-7")["nodes"][0]["parent_ids"] == [
        "result-003",
        "result-001",
        "result-002",
    ]


_PROCESS = textwrap.dedent(
    """
    import sys

    from helixobs import setup

    def run_ingest():
        return None

    def run_search():
        return None

    service, endpoint, role = sys.argv[1:4]
    tel = setup(service, instrument_id="MY_INST", endpoint=endpoint)
    if role == "A":
        # In process A:
        with tel.create("ingest", id="block-001"):
            run_ingest()
    else:
        # In process B (different host):
        with tel.create("search", id="candidate-42", parents=["block-001"]):
            run_search()
    ok = tel.flush()
    tel.shutdown()
    sys.exit(0 if ok else 3)
    """
)


def _run_process(herald: Herald, service: str, role: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", _PROCESS, service, herald.otlp_endpoint, role],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]


@pytest.mark.parametrize("order", ["A then B", "B then A"])
def test_cross_process(herald: Herald, order: str) -> None:
    """Two separate interpreters, each calling setup(); the herald links them."""
    roles = [("process-a", "A"), ("process-b", "B")]
    if order == "B then A":
        roles.reverse()
    for service, role in roles:
        _run_process(herald, service, role)

    block, cand = created(herald, "block-001"), created(herald, "candidate-42")
    assert block["service_name"] == "process-a"
    assert cand["service_name"] == "process-b"
    assert cand["parent_ids"] == ["block-001"]
    assert block["trace_id"] != cand["trace_id"]
    graph = herald.graph("candidate-42")
    assert graph["edges"] == [{"source": "block-001", "target": "candidate-42"}]
    assert {n["id"] for n in graph["nodes"]} == {"block-001", "candidate-42"}
    assert edges(herald.lineage("block-001", "descendants")) == {("block-001", "candidate-42")}
    assert edges(herald.graph("block-001")) == {("block-001", "candidate-42")}


# --- Domain events -----------------------------------------------------------------------
def test_domain_events(tel_herald: Instrument, herald: Herald) -> None:
    tel = tel_herald
    with tel.create("classify", id="event-7", parents=["candidate-42"]) as token:
        label = classify()
        token.add_event("classified", attributes={"label": label, "confidence": "0.97"})
    assert tel.flush()
    event = created(herald, "event-7")
    assert event["parent_ids"] == ["candidate-42"]
    # The guide: "Events named helix.event.* are stored in entity_events" — a plain
    # "classified" event stays on the span only (wire.md: "anything else ... not stored").
    assert herald.events("event-7") == []


def test_domain_events_helix_prefixed_are_stored(tel_herald: Instrument, herald: Herald) -> None:
    tel = tel_herald
    with tel.create("classify", id="event-7", parents=["candidate-42"]) as token:
        label = classify()
        token.add_event(
            "helix.event.classified",
            attributes={"label": label, "confidence": "0.97", "n_beams": 3},
        )
        token.add_event("helix.event.classified", attributes={"label": "RFI"})
    assert tel.flush()
    event = created(herald, "event-7")
    events = herald.events("event-7")
    assert [(e["event_name"], e["metadata"]) for e in events] == [
        ("helix.event.classified", {"label": "FRB", "confidence": "0.97", "n_beams": "3"}),
        ("helix.event.classified", {"label": "RFI"}),  # every occurrence kept
    ]
    assert all(e["trace_id"] == event["trace_id"] for e in events)
    assert all(e["span_id"] == event["span_id"] for e in events)
    assert events[0]["timestamp_ns"] <= events[1]["timestamp_ns"]
    assert event["timestamp_ns"] <= events[0]["timestamp_ns"] <= event["end_ns"]
    assert [e["event_name"] for e in herald.entity("event-7")["events"]] == [
        "helix.event.classified"
    ] * 2
    assert event["status"] == "ok"


# --- Child spans -------------------------------------------------------------------------
def test_child_spans(tel_herald: Instrument, herald: Herald) -> None:
    tel = tel_herald
    with tel.create("process", id="block-001"):
        with tel.child_span("filter", attributes={"filter.type": "bandpass"}):
            apply_filter()
        with tel.child_span("transform"):
            transform()
    assert tel.flush()
    block = created(herald, "block-001")
    assert block["stage"] == "process"
    assert entity_ids(herald) == ["block-001"]  # no entity rows for the child spans
    assert herald.entity_status("filter") == 404
    assert herald.entity_status("transform") == 404
    assert [o["operation"] for o in herald.operations("block-001")] == ["creation"]
    assert herald.entity("block-001")["entity"]["children_count"] == 0
    assert "filter.type" not in block["metadata"]


def test_child_span_logs_carry_the_entity(tel_herald: Instrument, herald: Herald) -> None:
    tel = tel_herald
    with tel.create("process", id="block-001"):
        log.info("processing")
        with tel.child_span("filter", attributes={"filter.type": "bandpass"}):
            log.info("filtering")
    assert tel.flush()
    block = created(herald, "block-001")
    rows = log_rows(herald, "block-001")
    assert set(rows) == {"processing", "filtering"}
    filtering = rows["filtering"]
    assert filtering["trace_id"] == block["trace_id"]
    assert filtering["span_id"] != block["span_id"]  # the child span's
    assert filtering["attributes"]["helix_entity_id"] == "block-001"
    assert filtering["entity_id"] == "block-001"


# --- Entity discovered mid-execution -----------------------------------------------------
async def test_deferred_entity_id_example(tel_herald: Instrument, herald: Herald) -> None:
    tel = tel_herald
    await _stage_deletion_example(tel, _Queue(full=True), "dataset-x")
    await _stage_deletion_example(tel, _Queue(full=False), None)
    await _stage_deletion_example(tel, _Queue(full=False), "dataset-x")
    assert tel.flush()

    assert entity_ids(herald) == ["dataset-x"]  # the two runs without an ID left no rows
    body = herald.entity("dataset-x")
    assert body["entity"]["placeholder"] is True  # operated on, never created here
    (op,) = herald.operations("dataset-x")
    assert op["operation"] == "stage-deletion"
    assert HEX32.match(op["trace_id"])
    (event,) = herald.events("dataset-x")
    assert event["event_name"] == "helix.event.deletion-staged"
    assert event["metadata"] == {"num_replicas": "3"}
    assert event["trace_id"] == op["trace_id"]
    assert [e["event_name"] for e in body["events"]] == ["helix.event.deletion-staged"]
    rows = log_rows(herald, "dataset-x")
    assert set(rows) == {"staged 3 replicas"}  # "queue full, skipping" was another trace
    staged = rows["staged 3 replicas"]
    assert staged["trace_id"] == op["trace_id"]
    assert staged["entity_id"] == "dataset-x"
    assert staged["attributes"]["helix_entity_id"] == "dataset-x"


async def test_deferred_entity_id_never_set_leaves_no_rows(
    tel_herald: Instrument, herald: Herald
) -> None:
    tel = tel_herald
    await _stage_deletion_example(tel, _Queue(full=True), "dataset-x")
    await _stage_deletion_example(tel, _Queue(full=False), None)
    assert tel.flush()
    assert herald.entities(instrument="MY_INST") == []
    assert herald.entity_status("dataset-x") == 404
    assert herald.entity_status("stage-deletion") == 404
    assert herald.api("/api/v1/stages?instrument=MY_INST") == []


def test_deferred_entity_id_logs_before_and_after(tel_herald: Instrument, herald: Herald) -> None:
    """All logs, including those before set_entity_id(), are reachable from the entity."""
    tel = tel_herald
    with tel.operate("stage-deletion") as op:
        log.info("checking the queue")
        op.set_entity_id("dataset-x")
        log.info("staging dataset-x")
        with tel.child_span("stage-work"):
            log.info("staging replicas")
    with tel.operate("stage-deletion"):
        log.info("another run, nothing found")
    assert tel.flush()

    (row,) = herald.operations("dataset-x")
    rows = log_rows(herald, "dataset-x")
    assert set(rows) == {"checking the queue", "staging dataset-x", "staging replicas"}
    assert {r["trace_id"] for r in rows.values()} == {row["trace_id"]}
    before = rows["checking the queue"]
    assert before["attributes"]["helix_entity_id"] == ""  # the ID was not known yet
    assert before["attributes"]["otel_trace_id"] == row["trace_id"]
    for body in ("staging dataset-x", "staging replicas"):
        assert rows[body]["attributes"]["helix_entity_id"] == "dataset-x"
        assert rows[body]["entity_id"] == "dataset-x"
    assert [r["body"] for r in herald.logs("dataset-x")] == [
        "checking the queue",
        "staging dataset-x",
        "staging replicas",
    ]


# --- Plain traces ------------------------------------------------------------------------
def test_plain_trace_example(tel_herald: Instrument, herald: Herald) -> None:
    tel = tel_herald
    with tel.trace("process-request", attributes={"endpoint": "/api/status"}):
        with tel.child_span("auth-check"):
            verify_token(request)
        with tel.child_span("db-query"):
            result = db.query(...)
        log.info("request complete")  # otel_trace_id present → filterable in Loki
    assert result == []
    assert tel.flush()
    assert herald.entities(instrument="MY_INST") == []
    for name in ("process-request", "auth-check", "db-query"):
        assert herald.entity_status(name) == 404
    assert herald.api("/api/v1/stages?instrument=MY_INST") == []


# --- Logging configuration ---------------------------------------------------------------
def test_configure_logging_otlp_from_environment(
    herald: Herald, monkeypatch: pytest.MonkeyPatch
) -> None:
    """configure_logging(otlp=True) finds the herald through OTEL_EXPORTER_OTLP_ENDPOINT."""
    from helixobs import configure_logging, setup

    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://{herald.otlp_endpoint}")
    tel = setup("my-pipeline", instrument_id="MY_INST", process_name="MY_INST/ingest")
    try:
        configure_logging(otlp=True, service_name="my-pipeline")
        with tel.create("ingest", id="block-001"):
            log.warning("ingesting block-001")
        assert tel.flush()
    finally:
        tel.shutdown()
    block = created(herald, "block-001")
    (row,) = herald.logs("block-001")
    assert row["body"] == "ingesting block-001"
    assert row["severity"] == "WARN"
    assert row["trace_id"] == block["trace_id"]
    assert row["service_name"] == "my-pipeline"
    assert row["attributes"]["helix_entity_id"] == "block-001"


def test_setup_log_endpoint_and_otlp_http(herald: Herald) -> None:
    """Traces and logs over OTLP/HTTP (protobuf) to the herald's HTTP listener."""
    from helixobs import setup

    tel = setup(
        "my-pipeline",
        instrument_id="MY_INST",
        endpoint=herald.otlp_http_endpoint,
        protocol="http/protobuf",
        otlp=True,
        log_endpoint=herald.otlp_http_endpoint,
        process_name="MY_INST/ingest",
    )
    try:
        with tel.create("search", id="candidate-42", parents=["block-001"]) as token:
            log.info("over http")
            token.set_attribute("score", 0.97)
        assert tel.flush()
    finally:
        tel.shutdown()
    cand = created(herald, "candidate-42")
    assert cand["metadata"]["score"] == "0.97"
    (row,) = herald.logs("candidate-42")
    assert row["body"] == "over http" and row["trace_id"] == cand["trace_id"]
