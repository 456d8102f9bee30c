"""Runs examples/telescope for a few seconds against the in-process OTLP receiver."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from otlp_receiver import OtlpReceiver

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "telescope" / "telescope.py"


def test_telescope_cross_process_provenance(otlp: OtlpReceiver) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            str(EXAMPLE),
            "--endpoint",
            otlp.endpoint,
            "--beams",
            "2",
            "--rate",
            "5",
            "--duration",
            "3",
            "--seed",
            "7",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    spans = otlp.spans
    by_entity = {
        s.entity_id: s
        for s in spans
        if s.entity_id and "helix.entity.is_operation" not in s.attributes
    }
    blocks = [s for s in spans if s.name == "ingest"]
    assert {s.resource["service.name"] for s in blocks} == {
        "telescope.search.beam0",
        "telescope.search.beam1",
    }
    assert all(s.resource["helix.instrument.id"] == "TELESCOPE" for s in spans)
    for cand in (s for s in spans if s.name == "search"):
        assert cand.attributes["helix.parent.ids"] in by_entity
    events = [s for s in spans if s.name == "cluster"]
    assert events, "no events clustered"
    cross = 0
    for event in events:
        parents = event.attributes["helix.parent.ids"].split(",")
        assert event.links == []  # parents live in other processes
        for pid in parents:
            parent = by_entity[pid]
            assert parent.name == "search"
            assert parent.resource["service.name"] != event.resource["service.name"]
            cross += 1
        assert any(name == "helix.event.classified" for name, _ in event.events)
    assert cross >= len(events)
    ops = [s for s in spans if s.attributes.get("helix.entity.is_operation") == "true"]
    assert {"allocate-storage", "archive", "convert", "replicate"} <= {s.name for s in ops}
    assert all(s.parent_span_id == "" for s in ops)
    event_ids = {e.entity_id for e in events}
    assert {s.entity_id for s in ops if s.name == "allocate-storage"} <= event_ids
    assert any(r.attributes.get("helix_entity_id") in event_ids for r in otlp.logs)
