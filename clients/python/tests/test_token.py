"""Span shapes (wire.md) produced by every Token and Instrument API, via the in-memory SDK."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Generator, Iterator
from typing import Any

import pytest
from in_memory import FinishedSpan, Memory
from opentelemetry import trace
from opentelemetry.trace import StatusCode

from helixobs import Token


def attrs(span: FinishedSpan) -> dict[str, Any]:
    return dict(span.attributes)


def events(span: FinishedSpan) -> list[tuple[str, dict[str, Any]]]:
    return [(e.name, dict(e.attributes)) for e in span.events]


# --- creation ----------------------------------------------------------------------------


def test_create_span_shape(mem_proc: Memory) -> None:
    tel = mem_proc.tel
    with tel.create("ingest", id="block-001"):
        pass
    with tel.create("search", id="candidate-42", parents=["block-001"]) as token:
        token.set_attribute("score", 0.97)
    ingest = mem_proc.span("ingest")
    search = mem_proc.span("search")
    assert attrs(ingest) == {
        "helix.entity.id": "block-001",
        "helix.instrument.id": "MY_INST",
        "helix.process.name": "MY_INST/ingest",
    }
    assert attrs(search) == {
        "helix.entity.id": "candidate-42",
        "helix.instrument.id": "MY_INST",
        "helix.parent.ids": "block-001",
        "helix.process.name": "MY_INST/ingest",
        "score": 0.97,
    }
    # In-process parent → one link to its creation span.
    assert [(lk.context.trace_id, lk.context.span_id) for lk in search.links] == [
        (ingest.context.trace_id, ingest.context.span_id)
    ]
    assert search.status.status_code is StatusCode.UNSET
    assert ingest.parent is None


def test_no_process_name_and_no_parents_keys_when_absent(mem: Memory) -> None:
    with mem.tel.create("ingest", id="b"):
        pass
    assert attrs(mem.span("ingest")) == {"helix.entity.id": "b", "helix.instrument.id": "MY_INST"}


def test_fan_in_parents_comma_joined_in_order_with_links(mem: Memory) -> None:
    tel = mem.tel
    ids = ["result-001", "result-002", "result-003"]
    for p in ids:
        with tel.create("partial", id=p):
            pass
    with tel.create("aggregate", id="event-7", parents=ids):
        pass
    agg = mem.span("aggregate")
    assert agg.attributes["helix.parent.ids"] == "result-001,result-002,result-003"
    partial_ids = [s.context.span_id for s in mem.spans() if s.name == "partial"]
    assert [lk.context.span_id for lk in agg.links] == partial_ids


def test_unknown_parent_no_link_but_attribute(mem: Memory) -> None:
    with mem.tel.create("search", id="c", parents=["elsewhere-1"]):
        pass
    s = mem.span("search")
    assert s.attributes["helix.parent.ids"] == "elsewhere-1"
    assert list(s.links) == []


def test_duplicate_parent_links_once(mem: Memory) -> None:
    with mem.tel.create("ingest", id="b1"):
        pass
    with mem.tel.create("x", id="c", parents=["b1", "b1"]):
        pass
    assert len(mem.span("x").links) == 1


def test_single_string_parent_accepted(mem: Memory) -> None:
    with mem.tel.create("x", id="c", parents="b1"):
        pass
    assert mem.span("x").attributes["helix.parent.ids"] == "b1"


def test_empty_parents_list_sets_no_attribute(mem: Memory) -> None:
    with mem.tel.create("x", id="c", parents=[]):
        pass
    assert "helix.parent.ids" not in mem.span("x").attributes


def test_nested_creation_is_child_of_enclosing_span(mem: Memory) -> None:
    with mem.tel.create("block", id="b"):
        with mem.tel.create("cand", id="c", parents=["b"]):
            pass
    b, c = mem.span("block"), mem.span("cand")
    assert c.parent is not None
    assert c.parent.span_id == b.context.span_id
    assert c.context.trace_id == b.context.trace_id


def test_create_requires_id(mem: Memory) -> None:
    with pytest.raises(ValueError, match="non-empty id"):
        with mem.tel.create("x", id=""):
            pass


# --- operations --------------------------------------------------------------------------


def test_operate_span_shape_and_root_trace(mem: Memory) -> None:
    tel = mem.tel
    with tel.create("outer", id="e0"):
        with tel.operate("archive", entity_id="event-7") as token:
            token.set_attribute("path", "/data/event-7.h5")
    op = mem.span("archive")
    outer = mem.span("outer")
    assert attrs(op) == {
        "helix.entity.id": "event-7",
        "helix.instrument.id": "MY_INST",
        "helix.entity.is_operation": "true",
        "path": "/data/event-7.h5",
    }
    assert op.parent is None
    assert op.context.trace_id != outer.context.trace_id


def test_operate_explicit_complete_metadata_types_kept(mem: Memory) -> None:
    token = mem.tel.operate("archive", entity_id="event-8")
    token.start()
    token.complete(metadata={"path": "/data/event-8.h5", "size_mb": 12.5, "n": 3, "ok": True})
    op = mem.span("archive")
    assert op.attributes["size_mb"] == 12.5
    assert op.attributes["n"] == 3
    assert op.attributes["ok"] is True
    assert op.attributes["path"] == "/data/event-8.h5"


def test_deferred_entity_id(mem: Memory, caplog: pytest.LogCaptureFixture) -> None:
    with mem.tel.operate("stage-deletion") as op:
        op.set_entity_id("dataset-x")
        op.add_event("helix.event.deletion-staged", {"num_replicas": "3"})
    s = mem.span("stage-deletion")
    assert s.attributes["helix.entity.id"] == "dataset-x"
    assert s.attributes["helix.entity.is_operation"] == "true"
    assert events(s) == [("helix.event.deletion-staged", {"num_replicas": "3"})]


def test_operation_without_entity_id_warns_and_is_plain(
    mem: Memory, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="helixobs"):
        with mem.tel.operate("stage-deletion"):
            pass
    s = mem.span("stage-deletion")
    assert "helix.entity.id" not in s.attributes
    assert "helix.entity.is_operation" not in s.attributes
    assert any("without entity_id" in r.getMessage() for r in caplog.records)


# --- errors and events -------------------------------------------------------------------


def test_error_explicit(mem: Memory) -> None:
    token = mem.tel.create("search", id="candidate-43", parents=["block-001"])
    token.start()
    token.error({"message": "score_below_threshold", "score": "0.3"})
    s = mem.span("search")
    assert s.status.status_code is StatusCode.ERROR
    assert events(s) == [("helix.error", {"message": "score_below_threshold", "score": "0.3"})]
    assert "message" not in s.attributes


def test_exception_in_with_records_error_and_reraises(mem: Memory) -> None:
    with pytest.raises(ValueError, match="boom 123"):
        with mem.tel.create("classify", id="event-9"):
            raise ValueError("boom 123")
    s = mem.span("classify")
    assert s.status.status_code is StatusCode.ERROR
    err = dict(next(e.attributes for e in s.events if e.name == "helix.error"))
    assert err == {"message": "ValueError", "exception.message": "boom 123"}


def test_add_error_keeps_span_open(mem: Memory) -> None:
    with mem.tel.operate("write-header", entity_id="event-7") as op:
        op.add_error({"stage": "dump_header", "message": "nfs_timeout"})
        op.set_attribute("after", 1)
    s = mem.span("write-header")
    assert s.status.status_code is StatusCode.ERROR
    assert events(s) == [("helix.error", {"stage": "dump_header", "message": "nfs_timeout"})]
    assert s.attributes["after"] == 1


def test_add_event_types_preserved(mem: Memory) -> None:
    with mem.tel.create("classify", id="event-10", parents=["candidate-42"]) as tok:
        tok.add_event("helix.event.classified", attributes={"label": "FRB", "confidence": "0.97"})
        tok.add_event(
            "helix.event.typed", attributes={"n": 42, "ratio": 0.5, "ok": True, "tags": ["a", "b"]}
        )
        tok.add_event("classified", attributes={"label": "FRB"})
    evs = events(mem.span("classify"))
    assert evs[0] == ("helix.event.classified", {"label": "FRB", "confidence": "0.97"})
    assert evs[1] == ("helix.event.typed", {"n": 42, "ratio": 0.5, "ok": True, "tags": ("a", "b")})
    assert evs[2] == ("classified", {"label": "FRB"})


def test_event_attributes_are_a_copy_and_read_only(mem: Memory) -> None:
    attrs: dict[str, Any] = {"label": "FRB", "confidence": 0.97}
    with mem.tel.create("classify", id="event-11") as tok:
        tok.add_event("helix.event.classified", attrs)
        attrs["label"] = "RFI"
    s = mem.span("classify")
    (event,) = s.events
    assert dict(event.attributes) == {"label": "FRB", "confidence": 0.97}
    with pytest.raises(TypeError):
        event.attributes["label"] = "changed"  # type: ignore[index]
    assert s.start_time <= event.timestamp <= s.end_time


def test_event_attributes_obey_the_providers_span_limits() -> None:
    from opentelemetry.sdk.trace import SpanLimits

    mem = Memory(span_limits=SpanLimits(max_event_attributes=2, max_attribute_length=4))
    with mem.tel.create("classify", id="event-12") as tok:
        tok.add_event("helix.event.classified", {"label": "FRB-20261202", "a": 1, "b": 2})
    (event,) = mem.span("classify").events
    assert len(event.attributes) == 2
    assert all(len(v) <= 4 for v in event.attributes.values() if isinstance(v, str))
    assert event.dropped_attributes == 1  # type: ignore[attr-defined]


def test_unsupported_metadata_values_are_rendered_not_lost(mem: Memory) -> None:
    with mem.tel.create("x", id="c") as tok:
        tok.set_attribute("cfg", {"a": 1})
        tok.set_attribute("mixed", [1, "a"])
        tok.set_attribute("blob", b"\x01\xff")
        tok.set_attribute("none", None)
    a = mem.span("x").attributes
    assert a["cfg"] == '{"a":1}'
    assert a["mixed"] == '[1,"a"]'
    assert a["blob"] == "01ff"
    assert "none" not in a


def test_complete_twice_and_error_after_complete_are_noops(mem: Memory) -> None:
    tok = mem.tel.create("x", id="c")
    tok.start()
    tok.complete()
    tok.complete()
    tok.error({"message": "late"})
    s = mem.span("x")
    assert s.status.status_code is StatusCode.UNSET
    assert len(mem.spans()) == 1


@pytest.mark.parametrize("method", ["complete", "error"])
def test_finish_before_start_is_clear_runtime_error(mem: Memory, method: str) -> None:
    tok = mem.tel.create("x", id="c")
    with pytest.raises(RuntimeError, match="before start"):
        getattr(tok, method)()


def test_events_before_start_are_clear_runtime_errors(mem: Memory) -> None:
    tok = mem.tel.create("x", id="c")
    with pytest.raises(RuntimeError, match="before start"):
        tok.add_event("helix.event.x")
    with pytest.raises(RuntimeError, match="before start"):
        tok.add_error({"message": "m"})


def test_set_attribute_before_start_is_buffered(mem: Memory) -> None:
    tok = mem.tel.create("x", id="c")
    tok.set_attribute("early", "yes")
    tok.start()
    tok.complete()
    assert mem.span("x").attributes["early"] == "yes"


def test_token_cannot_start_twice(mem: Memory) -> None:
    tok = mem.tel.create("x", id="c")
    tok.start()
    with pytest.raises(RuntimeError, match="already started"):
        tok.start()
    tok.complete()


def test_start_returns_token_and_exposes_span(mem: Memory) -> None:
    tok = mem.tel.create("x", id="c")
    assert tok.start() is tok
    assert tok.span is not None and tok.span_context is not None and tok.span_context.is_valid
    tok.complete()
    assert tok.finished


# --- child spans and plain traces --------------------------------------------------------


def test_child_span_and_trace_shapes(mem: Memory) -> None:
    tel = mem.tel
    with tel.create("process", id="block-002"):
        with tel.child_span("filter", attributes={"filter.type": "bandpass"}):
            pass
        with tel.child_span("transform"):
            pass
    with tel.trace("process-request", attributes={"endpoint": "/api/status"}):
        with tel.child_span("auth-check"):
            pass
    process = mem.span("process")
    filt, transform = mem.span("filter"), mem.span("transform")
    assert attrs(filt) == {
        "helix.instrument.id": "MY_INST",
        "helix.log.entity_id": "block-002",
        "filter.type": "bandpass",
    }
    assert attrs(transform) == {
        "helix.instrument.id": "MY_INST",
        "helix.log.entity_id": "block-002",
    }
    for child in (filt, transform):
        assert child.parent is not None
        assert child.parent.span_id == process.context.span_id
    req, auth = mem.span("process-request"), mem.span("auth-check")
    assert attrs(req) == {"helix.instrument.id": "MY_INST", "endpoint": "/api/status"}
    assert attrs(auth) == {"helix.instrument.id": "MY_INST"}
    assert auth.parent is not None
    assert auth.parent.span_id == req.context.span_id
    assert "helix.entity.id" not in attrs(req)


def test_child_span_with_parent_id_joins_that_entity_trace(mem: Memory) -> None:
    tel = mem.tel
    with tel.create("ingest", id="block-003"):
        pass
    with tel.child_span("late-check", parent_id="block-003"):
        pass
    ingest, late = mem.span("ingest"), mem.span("late-check")
    assert late.context.trace_id == ingest.context.trace_id
    assert late.parent is not None
    assert late.parent.span_id == ingest.context.span_id
    assert late.attributes["helix.log.entity_id"] == "block-003"


def test_trace_records_exception(mem: Memory) -> None:
    with pytest.raises(KeyError):
        with mem.tel.trace("req"):
            raise KeyError("k")
    s = mem.span("req")
    assert s.status.status_code is StatusCode.ERROR
    assert [e.name for e in s.events] == ["exception"]


# --- decorator ---------------------------------------------------------------------------


def test_decorator_sync_callable_id_and_parents(mem: Memory) -> None:
    @mem.tel.create(
        "search",
        id=lambda block_id, **_: f"cand-{block_id}",
        parents=lambda block_id, **_: [block_id],
    )
    def search_block(block_id: str, depth: int = 1) -> str:
        return block_id * depth

    assert search_block("b1", depth=2) == "b1b1"
    assert search_block.__name__ == "search_block"
    s = mem.span("search")
    assert s.attributes["helix.entity.id"] == "cand-b1"
    assert s.attributes["helix.parent.ids"] == "b1"


def test_decorator_static_operation_fresh_token_per_call(mem: Memory) -> None:
    @mem.tel.operate("daily-report", entity_id="report-2026-05-20")
    def generate_report() -> int:
        return 2

    assert generate_report() == 2
    assert generate_report() == 2
    spans = [s for s in mem.spans() if s.name == "daily-report"]
    assert len(spans) == 2
    assert spans[0].context.span_id != spans[1].context.span_id
    assert spans[0].attributes["helix.entity.is_operation"] == "true"


def test_decorator_records_exception(mem: Memory) -> None:
    @mem.tel.create("x", id=lambda n: f"e{n}")
    def boom(n: int) -> None:
        raise RuntimeError(f"bad {n}")

    with pytest.raises(RuntimeError):
        boom(1)
    s = mem.span("x")
    assert s.status.status_code is StatusCode.ERROR
    err = next(e for e in s.events if e.name == "helix.error")
    assert dict(err.attributes) == {"message": "RuntimeError", "exception.message": "bad 1"}


def test_decorator_on_generator_covers_iteration(mem: Memory) -> None:
    seen = []

    @mem.tel.create("gen", id=lambda n: f"g{n}")
    def produce(n: int) -> Iterator[int]:
        for i in range(n):
            seen.append(trace.get_current_span().get_span_context().span_id)
            yield i

    gen = produce(3)
    assert mem.spans() == []  # not started until iterated
    outside = []
    for _ in gen:
        outside.append(trace.get_current_span().get_span_context().is_valid)
    s = mem.span("gen")
    assert set(seen) == {s.context.span_id}
    assert outside == [False, False, False]  # the span never leaks to the consumer


def test_decorator_on_generator_early_close_and_exception(mem: Memory) -> None:
    @mem.tel.create("gen", id=lambda n: f"g{n}")
    def produce(n: int) -> Generator[int, None, None]:
        yield 1
        if n == 2:
            raise ValueError("gen failed")
        yield 2

    g = produce(1)
    next(g)
    g.close()
    with pytest.raises(ValueError):
        list(produce(2))
    by_id = {s.attributes["helix.entity.id"]: s for s in mem.spans()}
    assert by_id["g1"].status.status_code is StatusCode.UNSET
    assert by_id["g2"].status.status_code is StatusCode.ERROR


def test_decorator_generator_send_values(mem: Memory) -> None:
    @mem.tel.create("acc", id="acc-1")
    def acc() -> Generator[int, int | None, None]:
        total = 0
        while True:
            x = yield total
            if x is None:
                return
            total += x

    g = acc()
    next(g)
    assert g.send(2) == 2
    assert g.send(3) == 5
    with pytest.raises(StopIteration):
        g.send(None)
    assert mem.span("acc").status.status_code is StatusCode.UNSET


async def test_decorator_on_async_generator(mem: Memory) -> None:
    @mem.tel.create("agen", id=lambda n: f"a{n}")
    async def produce(n: int) -> AsyncIterator[int]:
        for _ in range(n):
            await asyncio.sleep(0)
            yield trace.get_current_span().get_span_context().span_id

    ids = [x async for x in produce(2)]
    s = mem.span("agen")
    assert set(ids) == {s.context.span_id}
    assert not trace.get_current_span().get_span_context().is_valid


async def test_async_with(mem: Memory) -> None:
    async with mem.tel.create("x", id="c") as tok:
        await asyncio.sleep(0)
        tok.set_attribute("k", "v")
    assert mem.span("x").attributes["k"] == "v"


def test_callable_id_in_with_without_args_is_clear_error(mem: Memory) -> None:
    with pytest.raises(TypeError, match="decorat"):
        with mem.tel.create("x", id=lambda block_id: block_id):
            pass


def test_token_repr_and_type(mem: Memory) -> None:
    tok = mem.tel.create("x", id="c")
    assert isinstance(tok, Token)
    assert "new" in repr(tok)


def test_operations_leave_instrument_and_process_to_a_resource_that_says_them() -> None:
    """Operation spans carry helix.instrument.id / helix.process.name only when their
    resource does not say the same; creation spans always carry both."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from helixobs import Instrument
    from helixobs._scope import current_log_fields

    def spans_with(resource: Resource) -> dict[str, Any]:
        exporter = InMemorySpanExporter()
        provider = TracerProvider(resource=resource)
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        tel = Instrument(
            "svc", instrument_id="MY_INST", process_name="MY_INST/ingest", tracer_provider=provider
        )
        with tel.operate("archive", entity_id="event-7"):
            fields = current_log_fields()
        with tel.create("ingest", id="block-1"):
            pass
        return {s.name: dict(s.attributes or {}) for s in exporter.get_finished_spans()} | {
            "fields": fields
        }

    said = spans_with(
        Resource.create({"helix.instrument.id": "MY_INST", "helix.process.name": "MY_INST/ingest"})
    )
    assert said["archive"] == {"helix.entity.id": "event-7", "helix.entity.is_operation": "true"}
    assert said["ingest"]["helix.instrument.id"] == "MY_INST"  # creations always
    assert said["ingest"]["helix.process.name"] == "MY_INST/ingest"
    # The log fields read what the span leaves out from its resource.
    assert said["fields"] is not None
    assert said["fields"][:3] == ("event-7", "MY_INST", "MY_INST/ingest")
    other = spans_with(
        Resource.create({"helix.instrument.id": "OTHER", "helix.process.name": "MY_INST/other"})
    )
    assert other["archive"]["helix.instrument.id"] == "MY_INST"
    assert other["archive"]["helix.process.name"] == "MY_INST/ingest"
    silent = spans_with(Resource.create({}))
    assert silent["archive"]["helix.instrument.id"] == "MY_INST"
    assert silent["archive"]["helix.process.name"] == "MY_INST/ingest"
    assert silent["fields"] is not None and silent["fields"][1] == "MY_INST"
