"""Every code example of the user guide (tracking-entities.md), verbatim, over real OTLP/gRPC.

Helpers the guide leaves undefined (run_search, write_archive, queue, ...) are minimal
fakes defined here. Each example's code block is copied unchanged into the test body.
"""

from __future__ import annotations

import asyncio
import logging
import os
from types import SimpleNamespace
from typing import Any

import pytest
from otlp_receiver import OtlpReceiver, RSpan

from helixobs import Instrument

log = logging.getLogger("seed.example")


# --- fakes for the helpers the guide does not define ---------------------------------------
def run_search(block_id: str | None = None) -> SimpleNamespace:
    return SimpleNamespace(score=0.97, block_id=block_id)


def write_archive() -> None:
    return None


def run_ingest() -> None:
    return None


def aggregate() -> None:
    return None


def classify() -> str:
    return "FRB"


def apply_filter() -> None:
    return None


def transform() -> None:
    return None


def verify_token(request: SimpleNamespace) -> bool:
    return True


class _Db:
    def query(self, *args: object) -> list[object]:
        return []


db = _Db()
request = SimpleNamespace(path="/api/status")


def rows(otlp: OtlpReceiver) -> dict[tuple[str, Any], RSpan]:
    return {(s.name, s.entity_id): s for s in otlp.spans}


# --- Setup ---------------------------------------------------------------------------------
def test_setup_example() -> None:
    from helixobs.setup import setup

    tel = setup(
        "my-pipeline",
        instrument_id="MY_INST",
        endpoint="herald:4317",
        process_name="MY_INST/ingest",
    )
    try:
        assert tel.instrument_id == "MY_INST"
        assert tel.process_name == "MY_INST/ingest"
        assert tel.target.endpoint == "herald:4317" and tel.target.insecure
    finally:
        # Nothing recorded, so shutting down never waits on the unreachable host.
        tel.tracer_provider.shutdown()


# --- Context manager ---------------------------------------------------------------------
def test_context_manager_examples(tel_otlp: Instrument, otlp: OtlpReceiver) -> None:
    tel = tel_otlp
    with tel.create("search", id="candidate-42", parents=["block-001"]) as token:
        result = run_search()
        token.set_attribute("score", result.score)
    with tel.operate("archive", entity_id="event-7") as token:
        write_archive()
        token.set_attribute("path", "/data/event-7.h5")
    assert tel.flush()
    search = otlp.span("search", "candidate-42")
    assert search.attributes == {
        "helix.entity.id": "candidate-42",
        "helix.instrument.id": "MY_INST",
        "helix.parent.ids": "block-001",
        "helix.process.name": "MY_INST/ingest",
        "score": 0.97,
    }
    archive = otlp.span("archive", "event-7")
    assert archive.attributes["helix.entity.is_operation"] == "true"
    assert archive.attributes["path"] == "/data/event-7.h5"
    assert archive.parent_span_id == ""
    assert search.status_code == archive.status_code == 0


# --- Decorator ---------------------------------------------------------------------------
def test_decorator_examples(tel_otlp: Instrument, otlp: OtlpReceiver) -> None:
    tel = tel_otlp

    @tel.create("search", id=lambda block_id, **_: block_id)
    def search_block(block_id):
        result = run_search(block_id)
        return result

    search_block("candidate-42")

    @tel.operate("daily-report", entity_id="report-2026-05-20")
    def generate_report():
        ...

    generate_report()
    assert tel.flush()
    assert otlp.span("search").entity_id == "candidate-42"
    report = otlp.span("daily-report")
    assert report.entity_id == "report-2026-05-20"
    assert report.attributes["helix.entity.is_operation"] == "true"


# --- Explicit API ------------------------------------------------------------------------
def test_explicit_examples(tel_otlp: Instrument, otlp: OtlpReceiver) -> None:
    tel = tel_otlp
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
    assert otlp.span("search").attributes["score"] == 0.97
    assert otlp.span("archive").attributes["path"] == "/data/event-7.h5"


def test_explicit_example_error_path(tel_otlp: Instrument, otlp: OtlpReceiver) -> None:
    tel = tel_otlp

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
    s = otlp.span("search")
    assert s.status_code == 2
    assert s.event("helix.error") == {"message": "search timed out"}


# --- Provenance patterns -----------------------------------------------------------------
def test_linear_chain(tel_otlp: Instrument, otlp: OtlpReceiver) -> None:
    tel = tel_otlp
    with tel.create("ingest", id="block-001"):
        run_ingest()

    with tel.create("search", id="candidate-42", parents=["block-001"]):
        run_search()
    assert tel.flush()
    ingest, search = otlp.span("ingest"), otlp.span("search")
    assert search.attributes["helix.parent.ids"] == "block-001"
    assert search.links == [(ingest.trace_id, ingest.span_id)]


def test_fan_in(tel_otlp: Instrument, otlp: OtlpReceiver) -> None:
    tel = tel_otlp
    for p in ["result-001", "result-002", "result-003"]:
        with tel.create("partial", id=p):
            pass
    # Many partial results → one aggregated output
    partial_ids = ["result-001", "result-002", "result-003"]
    with tel.create("aggregate", id="event-7", parents=partial_ids):
        aggregate()
    assert tel.flush()
    agg = otlp.span("aggregate")
    assert agg.attributes["helix.parent.ids"] == "result-001,result-002,result-003"
    assert len(agg.links) == 3


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_cross_process(otlp: OtlpReceiver) -> None:
    from helixobs import setup

    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            tel = setup("process-a", instrument_id="MY_INST", endpoint=otlp.endpoint)
            # In process A:
            with tel.create("ingest", id="block-001"):
                run_ingest()
            code = 0 if tel.flush() else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0

    tel = setup("process-b", instrument_id="MY_INST", endpoint=otlp.endpoint)
    try:
        # In process B (different host):
        with tel.create("search", id="candidate-42", parents=["block-001"]):
            run_search()
        assert tel.flush()
    finally:
        tel.shutdown()
    assert otlp.wait_for(lambda d: len(d.spans) >= 2, timeout=10)
    ingest, search = otlp.span("ingest"), otlp.span("search")
    assert ingest.resource["service.name"] == "process-a"
    assert search.attributes["helix.parent.ids"] == "block-001"
    assert search.links == []  # the herald resolves it from its TraceStore


# --- Domain events -----------------------------------------------------------------------
def test_domain_events(tel_otlp: Instrument, otlp: OtlpReceiver) -> None:
    tel = tel_otlp
    with tel.create("classify", id="event-7", parents=["candidate-42"]) as token:
        label = classify()
        token.add_event("classified", attributes={"label": label, "confidence": "0.97"})
    assert tel.flush()
    assert otlp.span("classify").events == [
        ("classified", {"label": "FRB", "confidence": "0.97"})
    ]


# --- Child spans -------------------------------------------------------------------------
def test_child_spans(tel_otlp: Instrument, otlp: OtlpReceiver) -> None:
    tel = tel_otlp
    with tel.create("process", id="block-001"):
        with tel.child_span("filter", attributes={"filter.type": "bandpass"}):
            apply_filter()
        with tel.child_span("transform"):
            transform()
    assert tel.flush()
    process = otlp.span("process")
    for name in ("filter", "transform"):
        child = otlp.span(name)
        assert child.trace_id == process.trace_id
        assert child.parent_span_id == process.span_id
        assert child.attributes["helix.log.entity_id"] == "block-001"
        assert "helix.entity.id" not in child.attributes
    assert otlp.span("filter").attributes["filter.type"] == "bandpass"


# --- Entity discovered mid-execution -----------------------------------------------------
class _Queue:
    def __init__(self, full: bool) -> None:
        self.full = full

    def is_full(self) -> bool:
        return self.full


async def _stage_deletion_example(
    tel: Instrument, queue: _Queue, dataset_name: str | None
) -> None:
    async def fetch_next_dataset():
        await asyncio.sleep(0)
        return None if dataset_name is None else SimpleNamespace(name=dataset_name, id=7)

    async def fetch_replicas(dataset_id):
        await asyncio.sleep(0)
        return ["r1", "r2", "r3"]

    async def stage_work(replicas):
        await asyncio.sleep(0)
        log.info("staged %d replicas", len(replicas))

    with tel.operate("stage-deletion") as op:
        # queue check and DB fetch are inside this trace
        if queue.is_full():
            log.info("queue full, skipping")
            return                          # trace closes without entity_id → passthrough

        dataset = await fetch_next_dataset()
        if dataset is None:
            return                          # same — no entity linked

        op.set_entity_id(dataset.name)      # all subsequent logs carry this entity's trace

        replicas = await fetch_replicas(dataset.id)
        await stage_work(replicas)
        op.add_event("helix.event.deletion-staged", {"num_replicas": str(len(replicas))})


async def test_deferred_entity_id_example(
    otlp: OtlpReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    from helixobs import setup

    tel = setup("my-pipeline", instrument_id="MY_INST", endpoint=otlp.endpoint, otlp=True)
    try:
        with caplog.at_level(logging.INFO):
            await _stage_deletion_example(tel, _Queue(full=True), "dataset-x")
            await _stage_deletion_example(tel, _Queue(full=False), None)
            await _stage_deletion_example(tel, _Queue(full=False), "dataset-x")
        assert tel.flush()
    finally:
        tel.shutdown()
    spans = otlp.find(name="stage-deletion")
    assert len(spans) == 3
    plain = [s for s in spans if "helix.entity.id" not in s.attributes]
    assert len(plain) == 2  # passthrough: closed without entity_id
    assert all("helix.entity.is_operation" not in s.attributes for s in plain)
    op = otlp.span("stage-deletion", "dataset-x")
    assert op.attributes["helix.entity.is_operation"] == "true"
    assert op.event("helix.event.deletion-staged") == {"num_replicas": "3"}
    assert sum("without entity_id" in r.getMessage() for r in caplog.records) == 2
    staged = next(r for r in otlp.logs if r.body == "staged 3 replicas")
    assert staged.trace_id == op.trace_id
    assert staged.attributes["helix_entity_id"] == "dataset-x"
    skipped = next(r for r in otlp.logs if r.body == "queue full, skipping")
    assert skipped.attributes["helix_entity_id"] == ""
    assert skipped.trace_id in {s.trace_id for s in plain}


# --- Plain traces ------------------------------------------------------------------------
def test_plain_trace_example(otlp: OtlpReceiver) -> None:
    from helixobs import setup

    tel = setup("my-pipeline", instrument_id="MY_INST", endpoint=otlp.endpoint, otlp=True)
    try:
        with tel.trace("process-request", attributes={"endpoint": "/api/status"}):
            with tel.child_span("auth-check"):
                verify_token(request)
            with tel.child_span("db-query"):
                result = db.query(...)
            log.info("request complete")    # otel_trace_id present → filterable in Loki
        assert result == []
        assert tel.flush()
    finally:
        tel.shutdown()
    req = otlp.span("process-request")
    assert req.attributes == {"helix.instrument.id": "MY_INST", "endpoint": "/api/status"}
    for name in ("auth-check", "db-query"):
        child = otlp.span(name)
        assert child.trace_id == req.trace_id and child.parent_span_id == req.span_id
        assert "helix.entity.id" not in child.attributes
    rec = next(r for r in otlp.logs if r.body == "request complete")
    assert rec.attributes["otel_trace_id"] == req.trace_id
    assert rec.attributes["helix_entity_id"] == ""
