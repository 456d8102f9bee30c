"""Shared fixtures: an in-memory SDK pipeline, a real in-process OTLP/gRPC receiver, a herald.

Tests that assert on what goes over the wire take the `otlp` fixture (an `OtlpReceiver`:
`.endpoint`, `.spans`, `.logs`, `.trace_metadata`, `.wait_for()`) and point
`helixobs.setup()` at `otlp.endpoint`. End-to-end tests take the `herald` fixture (a real
herald process, see herald_process.py: `.otlp_endpoint`, `.api(path)`, ...) and assert
through the herald's HTTP API.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Generator, Iterator

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from herald_process import Herald, HeraldError, herald_binary  # noqa: E402
from in_memory import Memory  # noqa: E402
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


# --- the real herald (end-to-end tests) ----------------------------------------------------
@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    rep = yield
    setattr(item, f"_rep_{rep.when}", rep)
    return rep


@pytest.fixture(scope="session")
def herald_bin() -> str:
    """The herald binary ($HERALD_BIN, else built with cargo). Never skips: fails loudly."""
    try:
        return herald_binary()
    except HeraldError as exc:
        pytest.fail(f"cannot get a herald binary: {exc}", pytrace=False)


@pytest.fixture
def herald(herald_bin: str, request: pytest.FixtureRequest) -> Iterator[Herald]:
    """A fresh herald process for this test (own DB: entity IDs repeat across tests)."""
    h = Herald(herald_bin)
    try:
        h.start()
    except HeraldError as exc:
        h.cleanup()
        pytest.fail(f"cannot start the herald: {exc}", pytrace=False)
    try:
        yield h
    finally:
        alive = h.running()
        rep = getattr(request.node, "_rep_call", None)
        if not alive or (rep is not None and rep.failed):
            print(h.output())
        h.cleanup()
    if not alive:
        pytest.fail("the herald process died during the test (log above)", pytrace=False)


@pytest.fixture
def tel_herald(herald: Herald) -> Iterator[Instrument]:
    """The guide's `setup()` pointed at the real herald, logs shipped over OTLP too."""
    from helixobs import setup

    tel = setup(
        "my-pipeline",
        instrument_id="MY_INST",
        endpoint=herald.otlp_endpoint,
        process_name="MY_INST/ingest",
        otlp=True,
    )
    yield tel
    tel.shutdown()
