"""Fork safety: a forked child keeps exporting; the parent never blocks."""

from __future__ import annotations

import logging
import os
import time

import pytest
from otlp_receiver import OtlpReceiver

from helixobs import setup

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


def _wait_child(pid: int, timeout: float = 20.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    raise AssertionError("forked child did not finish")


def test_child_after_fork_exports_and_parent_not_blocked(otlp: OtlpReceiver) -> None:
    tel = setup(
        "fork-svc",
        instrument_id="MY_INST",
        endpoint=otlp.endpoint,
        otlp=True,
        process_name="MY_INST/fork",
    )
    try:
        with tel.create("ingest", id="fork-parent-0"):
            pass
        assert tel.flush()
        # Leave work pending in the parent's batch queue at fork time.
        with tel.create("ingest", id="fork-parent-1"):
            pass
        pid = os.fork()
        if pid == 0:  # child: never return into pytest
            code = 1
            try:
                with tel.create("search", id="fork-child", parents=["fork-parent-0"]):
                    logging.getLogger("child").warning("hello from the child")
                code = 0 if tel.flush(10) else 2
            finally:
                os._exit(code)
        t0 = time.monotonic()
        with tel.create("ingest", id="fork-parent-2"):
            pass
        assert tel.flush(10)
        parent_elapsed = time.monotonic() - t0
        assert _wait_child(pid) == 0
        assert otlp.wait_for(
            lambda d: (
                any(s.attributes.get("helix.entity.id") == "fork-child" for s in d.spans)
                and any(r.body == "hello from the child" for r in d.logs)
            ),
            timeout=10,
        )
    finally:
        tel.shutdown()
    assert parent_elapsed < 5
    child = otlp.span("search", entity_id="fork-child")
    parent0 = otlp.span("ingest", entity_id="fork-parent-0")
    # The child inherited the in-process registry: it links its parent itself.
    assert child.links == [(parent0.trace_id, parent0.span_id)]
    assert child.resource["helix.process.name"] == "MY_INST/fork"
    assert {s.entity_id for s in otlp.find(name="ingest")} >= {
        "fork-parent-0",
        "fork-parent-1",
        "fork-parent-2",
    }
    child_log = next(r for r in otlp.logs if r.body == "hello from the child")
    assert child_log.attributes["helix_entity_id"] == "fork-child"
    assert child_log.trace_id == child.trace_id


def test_many_forks_in_a_row(otlp: OtlpReceiver) -> None:
    tel = setup("fork-svc", instrument_id="MY_INST", endpoint=otlp.endpoint)
    try:
        pids = []
        for i in range(3):
            pid = os.fork()
            if pid == 0:
                code = 1
                try:
                    with tel.create("work", id=f"forked-{i}"):
                        pass
                    code = 0 if tel.flush(10) else 2
                finally:
                    os._exit(code)
            pids.append(pid)
            with tel.create("work", id=f"parent-{i}"):
                pass
        assert [_wait_child(p) for p in pids] == [0, 0, 0]
        assert tel.flush(10)
        assert otlp.wait_for(lambda d: len(d.spans) >= 6, timeout=10)
    finally:
        tel.shutdown()
    assert {s.entity_id for s in otlp.spans} == {
        *(f"forked-{i}" for i in range(3)),
        *(f"parent-{i}" for i in range(3)),
    }
