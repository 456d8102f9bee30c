"""Client behaviours beyond the guide's examples, end to end against a real herald.

What the client sends (typed attributes, errors, unusual IDs, forked workers, several
threads) must come out of the herald's API as the spec promises.
"""

from __future__ import annotations

import logging
import os
import threading
import time

import pytest
from herald_process import Herald

from helixobs import Instrument

log = logging.getLogger("e2e.client")

# Entity IDs may contain any Unicode except control characters (api.md).
HOSTILE = "run 1/blk \"7\" <script>alert('x')</script> ünï 100% ?a=b#frag \\ ✓"


def test_typed_metadata_is_rendered_as_wire_md_says(tel_herald: Instrument, herald: Herald) -> None:
    tel = tel_herald
    with tel.create("ingest", id="block-001") as token:
        token.set_attribute("n_channels", 16384)
        token.set_attribute("fraction", 0.000123)
        token.set_attribute("huge", 1.5e20)
        token.set_attribute("flagged", True)
        token.set_attribute("beams", [3, 7])
        token.set_attribute("labels", ["a", "b"])
        token.add_event("helix.event.typed", {"n": 2, "ok": False, "snr": 12.5})
    assert tel.flush()
    body = herald.entity("block-001")
    meta = body["entity"]["metadata"]
    assert meta == {
        "helix.process.name": "MY_INST/ingest",
        "n_channels": "16384",
        "fraction": "0.000123",
        "huge": "150000000000000000000",
        "flagged": "true",
        "beams": "[3,7]",
        "labels": '["a","b"]',
    }
    (event,) = body["events"]
    assert event["metadata"] == {"n": "2", "ok": "false", "snr": "12.5"}
    assert herald.entities(instrument="MY_INST", **{"meta.flagged": "true"})[0]["id"] == "block-001"


def test_hostile_ids_round_trip(tel_herald: Instrument, herald: Herald) -> None:
    tel = tel_herald
    with tel.create("ingest", id=HOSTILE):
        log.info("ingesting")
    with tel.create("search", id="cand-ü/1", parents=[HOSTILE]):
        pass
    with tel.operate("archive", entity_id=HOSTILE) as op:
        op.set_attribute("path", "/data/ü.h5")
    assert tel.flush()
    entity = herald.entity(HOSTILE)["entity"]
    assert entity["id"] == HOSTILE
    assert entity["children_count"] == 1
    assert herald.entity("cand-ü/1")["entity"]["parent_ids"] == [HOSTILE]
    assert herald.graph("cand-ü/1")["edges"] == [{"source": HOSTILE, "target": "cand-ü/1"}]
    assert [o["operation"] for o in herald.operations(HOSTILE)] == ["creation", "archive"]
    (row,) = herald.logs(HOSTILE)
    assert row["entity_id"] == HOSTILE and row["attributes"]["helix_entity_id"] == HOSTILE
    assert sorted(e["id"] for e in herald.entities(instrument="MY_INST")) == sorted(
        ["cand-ü/1", HOSTILE]
    )


def test_operation_errors_mark_the_entity(tel_herald: Instrument, herald: Herald) -> None:
    tel = tel_herald
    with tel.create("cluster", id="event-7"):
        pass
    with tel.operate("archive", entity_id="event-7") as op:
        op.error({"message": "nfs_timeout", "path": "/data/event-7.h5"})
    with tel.operate("replicate", entity_id="event-7") as op:
        op.add_error({"message": "transfer_reset", "attempt": 1})
        op.set_attribute("attempts", 2)
    with pytest.raises(OSError):
        with tel.operate("convert", entity_id="event-7"):
            raise OSError("disk full")
    assert tel.flush()
    entity = herald.entity("event-7")["entity"]
    assert entity["status"] == "error"
    ops = {o["operation"]: o for o in herald.entity("event-7")["operations"]}
    assert {name: o["status"] for name, o in ops.items()} == {
        "archive": "error",
        "replicate": "error",
        "convert": "error",
    }
    assert ops["replicate"]["metadata"]["attempts"] == "2"
    errors = [(e["metadata"], e["trace_id"]) for e in herald.events("event-7")]
    assert errors == [
        ({"message": "nfs_timeout", "path": "/data/event-7.h5"}, ops["archive"]["trace_id"]),
        ({"message": "transfer_reset", "attempt": "1"}, ops["replicate"]["trace_id"]),
        ({"message": "OSError", "exception.message": "disk full"}, ops["convert"]["trace_id"]),
    ]


def test_explicit_tokens_completed_in_other_threads(tel_herald: Instrument, herald: Herald) -> None:
    tel = tel_herald
    tokens = [tel.create("search", id=f"cand-{i}", parents=["block-001"]) for i in range(8)]
    for token in tokens:
        token.start()
    with tel.create("ingest", id="block-001"):
        log.info("block while candidates are open")

    def finish(i: int) -> None:
        tokens[i].complete(metadata={"worker": i})

    threads = [threading.Thread(target=finish, args=(i,)) for i in reversed(range(8))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert tel.flush()
    for i in range(8):
        cand = herald.entity(f"cand-{i}")["entity"]
        assert cand["metadata"]["worker"] == str(i)
        assert cand["parent_ids"] == ["block-001"]
    # Out-of-order completion did not leave a finished span current: the block's log
    # line carries the block, not a candidate.
    (row,) = herald.logs("block-001")
    assert row["attributes"]["helix_entity_id"] == "block-001"
    assert len(herald.lineage("block-001", "descendants")["edges"]) == 8


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_worker_keeps_reporting(herald: Herald) -> None:
    from helixobs import setup

    tel = setup("fork-svc", instrument_id="MY_INST", endpoint=herald.otlp_endpoint, otlp=True)
    try:
        with tel.create("ingest", id="block-001"):
            pass
        assert tel.flush()
        pid = os.fork()
        if pid == 0:  # the child never returns into pytest
            code = 1
            try:
                with tel.create("search", id="candidate-42", parents=["block-001"]):
                    log.warning("from the forked worker")
                code = 0 if tel.flush(10) else 2
            finally:
                os._exit(code)
        deadline = time.monotonic() + 30
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
                raise AssertionError("forked child did not finish")
            time.sleep(0.01)
        assert os.waitstatus_to_exitcode(status) == 0
        with tel.create("ingest", id="block-002"):
            pass
        assert tel.flush()
    finally:
        tel.shutdown()
    assert herald.graph("candidate-42")["edges"] == [
        {"source": "block-001", "target": "candidate-42"}
    ]
    (row,) = herald.logs("candidate-42")
    assert row["body"] == "from the forked worker"
    assert herald.entity("block-002")["entity"]["placeholder"] is False
