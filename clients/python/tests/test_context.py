"""Regression tests for the context rules: no finished span ever stays current."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from in_memory import Memory
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import StatusCode

from helixobs import current_entity_id


def current_span_id() -> int:
    return trace.get_current_span().get_span_context().span_id


def test_explicit_tokens_completed_non_lifo(mem: Memory) -> None:
    tel = mem.tel
    a = tel.create("s", id="a")
    a.start()
    b = tel.create("s", id="b")
    b.start()
    assert current_entity_id() == "b"
    a.complete()  # not the innermost: b must stay current
    assert current_entity_id() == "b"
    assert trace.get_current_span().is_recording()
    b.complete()
    assert current_entity_id() is None
    assert not trace.get_current_span().get_span_context().is_valid
    # A fresh span after the mess is a root, not a child of a finished span.
    with tel.create("later", id="c"):
        pass
    assert mem.span("later").parent is None


def test_explicit_non_lifo_three_levels(mem: Memory) -> None:
    tel = mem.tel
    toks = [tel.create("s", id=f"t{i}") for i in range(3)]
    for t in toks:
        t.start()
    toks[1].complete()
    assert current_entity_id() == "t2"
    toks[2].complete()
    assert current_entity_id() == "t0"  # skips the finished t1
    toks[0].complete()
    assert current_entity_id() is None


def test_explicit_complete_inside_nested_with(mem: Memory) -> None:
    tel = mem.tel
    with tel.create("outer", id="o") as outer:
        with tel.create("inner", id="i"):
            outer.complete()  # non-LIFO inside scopes
            assert current_entity_id() == "i"
        # back in outer's block, but outer is finished: it must not be current
        assert current_entity_id() is None
        assert not trace.get_current_span().is_recording()
        with tel.child_span("after"):
            pass
    assert mem.span("after").parent is None


def test_explicit_inside_with_completed_after_block(mem: Memory) -> None:
    tel = mem.tel
    with tel.create("outer", id="o"):
        t = tel.create("inner", id="i")
        t.start()
        assert current_entity_id() == "i"
    assert current_entity_id() is None
    t.complete()
    assert current_entity_id() is None
    inner = mem.span("inner")
    assert inner.parent is not None
    assert inner.parent.span_id == mem.span("outer").context.span_id


def test_start_in_one_thread_complete_in_another(mem: Memory) -> None:
    tel = mem.tel
    tok = tel.create("search", id="candidate-x")
    tok.start()
    done = threading.Event()
    errors: list[BaseException] = []

    def finisher() -> None:
        try:
            tok.complete(metadata={"score": 0.5})
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        done.set()

    th = threading.Thread(target=finisher)
    th.start()
    th.join(5)
    assert done.is_set() and not errors
    s = mem.span("search")
    assert s.attributes["score"] == 0.5
    assert s.end_time is not None
    # The starting thread still holds its context, but it no longer sees the span.
    assert current_entity_id() is None
    assert not trace.get_current_span().is_recording()
    with tel.create("next", id="n"):
        pass
    assert mem.span("next").parent is None


def test_worker_thread_starts_main_completes(mem: Memory) -> None:
    tel = mem.tel
    box = {}

    def starter() -> None:
        t = tel.create("s", id="w")
        t.start()
        box["t"] = t

    th = threading.Thread(target=starter)
    th.start()
    th.join(5)
    assert current_entity_id() is None  # never leaked into this thread
    box["t"].error({"message": "late"})
    assert mem.span("s").status.status_code is StatusCode.ERROR


def test_thread_inheriting_context_sees_entity(mem: Memory) -> None:
    tel = mem.tel
    seen = {}
    with tel.create("s", id="ctx-ent"):
        ctx = otel_context.get_current()

        def work() -> None:
            token = otel_context.attach(ctx)
            try:
                seen["id"] = current_entity_id()
            finally:
                otel_context.detach(token)

        th = threading.Thread(target=work)
        th.start()
        th.join(5)
    assert seen["id"] == "ctx-ent"


async def test_async_decorated_span_covers_awaited_duration(mem: Memory) -> None:
    tel = mem.tel

    @tel.create("slow", id=lambda n: f"slow-{n}")
    async def slow(n: int) -> str | None:
        inside = current_entity_id()
        await asyncio.sleep(0.05)
        return inside

    t0 = time.time_ns()
    assert await slow(1) == "slow-1"
    s = mem.span("slow")
    assert s.end_time - s.start_time >= 45_000_000  # covers the awaited sleep
    assert s.start_time >= t0 - 1_000_000
    assert current_entity_id() is None


async def test_async_decorated_records_exception(mem: Memory) -> None:
    @mem.tel.operate("fails", entity_id="e1")
    async def fails() -> None:
        await asyncio.sleep(0)
        raise ConnectionError("nfs down")

    with pytest.raises(ConnectionError):
        await fails()
    s = mem.span("fails")
    assert s.status.status_code is StatusCode.ERROR
    err = next(e for e in s.events if e.name == "helix.error")
    assert dict(err.attributes) == {"message": "ConnectionError", "exception.message": "nfs down"}


async def test_concurrent_tasks_keep_their_own_entity(mem: Memory) -> None:
    tel = mem.tel

    async def job(n: int, delay: float) -> str | None:
        async with tel.create("job", id=f"job-{n}"):
            await asyncio.sleep(delay)
            return current_entity_id()

    results = await asyncio.gather(job(1, 0.02), job(2, 0.0), job(3, 0.01))
    assert list(results) == ["job-1", "job-2", "job-3"]  # gather's list (typed as a tuple)
    assert current_entity_id() is None


async def test_task_outliving_its_block_does_not_see_finished_span(mem: Memory) -> None:
    tel = mem.tel
    release = asyncio.Event()

    async def background() -> tuple[str | None, str | None]:
        before = current_entity_id()
        await release.wait()
        return before, current_entity_id()

    with tel.create("outer", id="o2"):
        task = asyncio.create_task(background())
        await asyncio.sleep(0)
    release.set()
    before, after = await task
    assert before == "o2"
    assert after is None


def test_operation_inside_entity_restores_entity_after(mem: Memory) -> None:
    tel = mem.tel
    with tel.create("block", id="b"):
        with tel.operate("archive", entity_id="x"):
            assert current_entity_id() == "x"
        assert current_entity_id() == "b"
