"""Logging integration: context fields, deferred-ID story, JSON lines and OTLP log export."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Iterator
from typing import cast

import pytest
from in_memory import Memory
from otlp_receiver import OtlpReceiver

from helixobs import configure_logging, install_context_fields, setup
from helixobs.logging import FIELDS

log = logging.getLogger("my.pipeline")


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


class ContextRecord(logging.LogRecord):
    """A record as install_context_fields() leaves it: its factory sets these on every record.

    For typing only; the records themselves stay plain LogRecords.
    """

    helix_entity_id: str
    helix_instrument_id: str
    helix_process_name: str
    otel_trace_id: str
    otel_span_id: str
    helix_source: str


@pytest.fixture
def records() -> Iterator[list[ContextRecord]]:
    install_context_fields()
    cap = Capture()
    log.addHandler(cap)
    old = log.level
    log.setLevel(logging.DEBUG)
    yield cast(list[ContextRecord], cap.records)
    log.removeHandler(cap)
    log.setLevel(old)


def test_fields_outside_spans_are_empty_strings(records: list[ContextRecord]) -> None:
    log.info("outside")
    r = records[0]
    for name in FIELDS[:-1]:
        assert getattr(r, name) == "", name
    assert r.helix_source.endswith(f"test_logging.py#L{r.lineno}")
    assert r.getMessage() == "outside"  # message untouched


def test_fields_inside_creation(records: list[ContextRecord], mem_proc: Memory) -> None:
    with mem_proc.tel.create("search", id="candidate-45", parents=["block-001"]):
        log.info("inside")
    r = records[0]
    s = mem_proc.span("search")
    assert r.helix_entity_id == "candidate-45"
    assert r.helix_instrument_id == "MY_INST"
    assert r.helix_process_name == "MY_INST/ingest"
    assert r.otel_trace_id == format(s.context.trace_id, "032x")
    assert r.otel_span_id == format(s.context.span_id, "016x")
    assert len(r.otel_trace_id) == 32 and len(r.otel_span_id) == 16


def test_child_span_records_carry_log_entity_id(records: list[ContextRecord], mem: Memory) -> None:
    with mem.tel.create("process", id="block-002"):
        with mem.tel.child_span("filter"):
            log.info("filtering")
    r = records[0]
    assert r.helix_entity_id == "block-002"
    assert r.otel_span_id == format(mem.span("filter").context.span_id, "016x")


def test_plain_trace_has_trace_id_but_no_entity(records: list[ContextRecord], mem: Memory) -> None:
    with mem.tel.trace("process-request"):
        log.info("request complete")
    r = records[0]
    assert r.helix_entity_id == ""
    assert r.otel_trace_id == format(mem.span("process-request").context.trace_id, "032x")
    assert r.helix_instrument_id == "MY_INST"


def test_deferred_id_story(records: list[ContextRecord], mem: Memory) -> None:
    with mem.tel.operate("stage-deletion") as op:
        log.info("before the entity is known")
        op.set_entity_id("dataset-y")
        log.warning("after the entity is known")
    before, after = records[0], records[1]
    span = mem.span("stage-deletion")
    trace_id = format(span.context.trace_id, "032x")
    assert before.otel_trace_id == after.otel_trace_id == trace_id
    assert before.helix_entity_id == ""
    assert after.helix_entity_id == "dataset-y"


def test_after_non_lifo_completion_logs_do_not_name_finished_entity(
    records: list[ContextRecord], mem: Memory
) -> None:
    a = mem.tel.create("s", id="a")
    a.start()
    b = mem.tel.create("s", id="b")
    b.start()
    a.complete()
    log.info("x")
    b.complete()
    log.info("y")
    assert [r.helix_entity_id for r in records] == ["b", ""]
    assert records[1].otel_trace_id == ""


def test_fields_in_threads_and_tasks_inheriting_context(
    records: list[ContextRecord], mem: Memory
) -> None:
    from opentelemetry import context as otel_context

    with mem.tel.create("s", id="ent-t"):
        ctx = otel_context.get_current()

        def work() -> None:
            tok = otel_context.attach(ctx)
            try:
                log.info("thread")
            finally:
                otel_context.detach(tok)

        th = threading.Thread(target=work)
        th.start()
        th.join(5)

        async def main() -> None:
            async def task() -> None:
                log.info("task")

            await asyncio.create_task(task())

        asyncio.run(main())  # asyncio.run copies the current context
    assert [r.helix_entity_id for r in records] == ["ent-t", "ent-t"]


def test_source_permalink(records: list[ContextRecord], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_REPO", "acme/pipeline")
    monkeypatch.setenv("GIT_COMMIT_SHA", "abc123")
    log.info("x")
    src = records[0].helix_source
    assert src.startswith("https://github.com/acme/pipeline/blob/abc123/")
    assert src.endswith(f"test_logging.py#L{records[0].lineno}")


def test_install_context_fields_idempotent() -> None:
    install_context_fields()
    f1 = logging.getLogRecordFactory()
    install_context_fields()
    assert logging.getLogRecordFactory() is f1


def test_json_lines_on_stdout(capsys: pytest.CaptureFixture[str], mem: Memory) -> None:
    configure_logging()
    configure_logging()  # idempotent: still one line per record
    with mem.tel.create("search", id="cand-json"):
        log.info("hello %s", "world", extra={"beam": 3})
    try:
        raise ValueError("bad")
    except ValueError:
        log.exception("failed")
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.strip()]
    assert len(lines) == 2
    first, second = json.loads(lines[0]), json.loads(lines[1])
    assert first["msg"] == "hello world"
    assert first["level"] == "INFO"
    assert first["logger"] == "my.pipeline"
    assert first["ts"].endswith("Z")
    assert first["helix_entity_id"] == "cand-json"
    assert len(first["otel_trace_id"]) == 32
    assert first["beam"] == 3
    assert first["exc"] is None
    for name in FIELDS:
        assert name in first
    assert second["helix_entity_id"] == ""
    assert "ValueError: bad" in second["exc"]


def test_otlp_logs_deferred_id_story(otlp: OtlpReceiver) -> None:
    tel = setup(
        "my-pipeline",
        instrument_id="MY_INST",
        endpoint=otlp.endpoint,
        process_name="MY_INST/ingest",
        otlp=True,
    )
    try:
        log.info("outside any block")
        with tel.create("search", id="candidate-45", parents=["block-001"]):
            log.info("inside the block")
        with tel.operate("stage-deletion") as op:
            log.info("before the entity is known")
            op.set_entity_id("dataset-y")
            log.warning("after the entity is known")
        assert tel.flush()
    finally:
        tel.shutdown()
    logs = {r.body: r for r in otlp.logs}
    outside = logs["outside any block"]
    assert outside.attributes["helix_entity_id"] == ""
    assert outside.attributes["otel_trace_id"] == ""
    assert outside.trace_id == ""
    inside = logs["inside the block"]
    cand = otlp.span("search")
    assert inside.attributes["helix_entity_id"] == "candidate-45"
    assert inside.attributes["otel_trace_id"] == cand.trace_id == inside.trace_id
    assert inside.attributes["helix_process_name"] == "MY_INST/ingest"
    before = logs["before the entity is known"]
    after = logs["after the entity is known"]
    op_span = otlp.span("stage-deletion")
    assert before.trace_id == after.trace_id == op_span.trace_id
    assert before.attributes["otel_trace_id"] == op_span.trace_id
    assert before.attributes["helix_entity_id"] == ""
    assert after.attributes["helix_entity_id"] == "dataset-y"
    assert after.severity_text in ("WARN", "WARNING")
    assert inside.resource["service.name"] == "my-pipeline"
    assert inside.resource["helix.instrument.id"] == "MY_INST"
    # The message is not rewritten.
    assert "src=" not in inside.body
