"""Shared fixtures: an in-memory SDK pipeline and a real in-process OTLP/gRPC receiver.

Tests that assert on what goes over the wire take the `otlp` fixture (an `OtlpReceiver`:
`.endpoint`, `.spans`, `.logs`, `.trace_metadata`, `.wait_for()`) and point
`helixobs.setup()` at `otlp.endpoint`. End-to-end tests against the real herald can
provide another fixture with the same `.endpoint` and query the herald's API instead.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

sys.path.insert(0, os.path.dirname(__file__))

from otlp_receiver import OtlpReceiver  # noqa: E402

from helixobs import Instrument  # noqa: E402
from helixobs._registry import REGISTRY  # noqa: E402
from helixobs.logging import shutdown_logging  # noqa: E402


@pytest.fixture(scope="session")
def _receiver() -> Iterator[OtlpReceiver]:
    rx = OtlpReceiver().start()
    yield rx
    rx.stop()


@pytest.fixture
def otlp(_receiver: OtlpReceiver) -> OtlpReceiver:
    """The session's OTLP/gRPC receiver, emptied for this test."""
    _receiver.clear()
    return _receiver


@pytest.fixture(autouse=True)
def _isolation(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # Entity IDs repeat across tests; in-process parent links must not leak between them.
    REGISTRY.clear()
    for name in list(os.environ):
        if name.startswith("OTEL_") or name in ("GITHUB_REPO", "GIT_COMMIT_SHA"):
            monkeypatch.delenv(name)
    root = logging.getLogger()
    level = root.level
    yield
    shutdown_logging()
    root.setLevel(level)
    REGISTRY.clear()


class Memory:
    """An Instrument whose spans land synchronously in an InMemorySpanExporter."""

    def __init__(self, process_name: str | None = None) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tel = Instrument(
            "test-svc",
            instrument_id="MY_INST",
            process_name=process_name,
            tracer_provider=self.provider,
        )

    def spans(self) -> list:
        return list(self.exporter.get_finished_spans())

    def span(self, name: str | None = None, entity_id: str | None = None):
        found = [
            s
            for s in self.spans()
            if (name is None or s.name == name)
            and (entity_id is None or s.attributes.get("helix.entity.id") == entity_id)
        ]
        assert len(found) == 1, f"expected one span {name!r}/{entity_id!r}, got {found}"
        return found[0]


@pytest.fixture
def mem() -> Iterator[Memory]:
    m = Memory()
    yield m
    m.provider.shutdown()


@pytest.fixture
def mem_proc() -> Iterator[Memory]:
    m = Memory(process_name="MY_INST/ingest")
    yield m
    m.provider.shutdown()


@pytest.fixture
def tel_otlp(otlp: OtlpReceiver) -> Iterator[Instrument]:
    """`helixobs.setup()` exporting over real OTLP/gRPC to the in-process receiver."""
    from helixobs import setup

    tel = setup(
        "my-pipeline",
        instrument_id="MY_INST",
        endpoint=otlp.endpoint,
        process_name="MY_INST/ingest",
    )
    yield tel
    tel.shutdown()
