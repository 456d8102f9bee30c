#!/usr/bin/env python3
"""Per-call overhead of the helixobs Python client against a bare OpenTelemetry SDK span.

Run by hand with the client's venv (created by clients/python/run-tests.sh):

    clients/python/.venv/bin/python bench/python/bench_client.py [--rounds 40] [--calls 5000]

What it measures, all in one process and one run (results in docs/benchmarks.md):

(a) bare SDK:  ``with tracer.start_as_current_span(stage, attributes={helix.entity.id,
    helix.instrument.id, helix.parent.ids, helix.process.name}): pass``
(b) helixobs:  ``with tel.create(stage, id=..., parents=[...]): pass``

Both go through the SAME SDK ``TracerProvider`` with one ``SimpleSpanProcessor`` feeding an
exporter that discards, so the span pipeline after ``end()`` is identical; the Instrument
is built with ``Instrument(..., tracer_provider=provider)`` exactly as the client's tests
build their in-memory instrument. Entity IDs cycle through a precomputed list (both sides
index it the same way); the parents are not entities of this process, so (b) adds no span
links and both spans carry the same four attributes. A third row (b') uses parents created
earlier in this process, where helixobs also adds one span link per parent (the bare SDK
side has no equivalent; shown for information only).

(c) logging: ``logger.info("x")`` inside an active helixobs span, to a handler that formats
    the record and discards the text, with the record factory installed by
    ``install_context_fields()`` versus the standard one.

Rounds interleave the sides (A/B, then B/A, …) after warm-up rounds: 40 short rounds of 5 000
calls rather than a few long ones, so that load from other processes on a shared machine hits
both sides alike. The garbage collector is disabled while a round is timed
(``time.perf_counter_ns``). The table reports the median per-call time over the rounds, in
µs, and the ratio of medians (plus the median of the per-round ratios). ``--profile`` prints a cProfile of (b) instead.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence

from helixobs import Instrument, install_context_fields
from helixobs._registry import REGISTRY
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

STAGE = "search"
INSTRUMENT_ID = "BENCH_INST"
PROCESS_NAME = "BENCH_INST/search"
PARENTS = ["block-0001", "block-0002"]
N_IDS = 4096


class DiscardExporter(SpanExporter):
    """Receives every finished span and keeps nothing."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


class FormatAndDiscard(logging.Handler):
    """Like logging.NullHandler, but still formats each record (as a real handler would)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.format(record)


def timed(fn: Callable[[int], None], calls: int) -> float:
    """ns per call of one round, gc off."""
    gc.collect()
    gc.disable()
    try:
        t0 = time.perf_counter_ns()
        fn(calls)
        t1 = time.perf_counter_ns()
    finally:
        gc.enable()
    return (t1 - t0) / calls


def interleave(
    sides: dict[str, Callable[[int], None]], rounds: int, calls: int, warmup: int
) -> dict[str, list[float]]:
    for _ in range(warmup):
        for fn in sides.values():
            timed(fn, calls)
    out: dict[str, list[float]] = {name: [] for name in sides}
    order = list(sides.items())
    for r in range(rounds):
        # A/B then B/A: neither side always runs first after a gc.collect().
        for name, fn in order if r % 2 == 0 else reversed(order):
            out[name].append(timed(fn, calls))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--calls", type=int, default=5_000)
    ap.add_argument("--warmup", type=int, default=4)
    ap.add_argument("--log-calls", type=int, default=None, help="default: --calls")
    ap.add_argument("--profile", action="store_true", help="cProfile helixobs create() and exit")
    args = ap.parse_args()
    log_calls = args.log_calls or args.calls

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(DiscardExporter()))
    tracer = provider.get_tracer("bench")
    tel = Instrument(
        "bench", instrument_id=INSTRUMENT_ID, process_name=PROCESS_NAME, tracer_provider=provider
    )
    ids = [f"cand-{i:06d}" for i in range(N_IDS)]
    joined_parents = ",".join(PARENTS)
    mask = N_IDS - 1

    def bare(n: int) -> None:
        start = tracer.start_as_current_span
        for i in range(n):
            with start(
                STAGE,
                attributes={
                    "helix.entity.id": ids[i & mask],
                    "helix.instrument.id": INSTRUMENT_ID,
                    "helix.parent.ids": joined_parents,
                    "helix.process.name": PROCESS_NAME,
                },
            ):
                pass

    def helix(n: int) -> None:
        create = tel.create
        for i in range(n):
            with create(STAGE, id=ids[i & mask], parents=PARENTS):
                pass

    # Parents that are entities of this process: helixobs adds a link per parent.
    with tel.create("ingest", id="local-block-1"), tel.create("ingest", id="local-block-2"):
        pass
    local_parents = ["local-block-1", "local-block-2"]

    def helix_linked(n: int) -> None:
        create = tel.create
        for i in range(n):
            with create(STAGE, id=ids[i & mask], parents=local_parents):
                pass

    if args.profile:
        import cProfile
        import pstats

        helix(args.calls)
        prof = cProfile.Profile()
        prof.enable()
        helix(args.calls)
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(30)
        return

    REGISTRY.clear()
    spans = interleave(
        {"bare": bare, "helix": helix, "linked": helix_linked}, args.rounds, args.calls, args.warmup
    )

    # --- logging context fields --------------------------------------------------------
    logger = logging.getLogger("bench.helixobs")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    handler = FormatAndDiscard()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logger.addHandler(handler)

    plain_factory = logging.getLogRecordFactory()
    install_context_fields()
    helix_factory = logging.getLogRecordFactory()
    assert getattr(helix_factory, "_helixobs", False)

    def log_n(n: int) -> None:
        info = logger.info
        for _ in range(n):
            info("x")

    def without_fields(n: int) -> None:
        logging.setLogRecordFactory(plain_factory)
        log_n(n)

    def with_fields(n: int) -> None:
        logging.setLogRecordFactory(helix_factory)
        log_n(n)

    with tel.create("log-stage", id="log-entity", parents=PARENTS):
        # Sanity: the fields really are filled in inside the span.
        logging.setLogRecordFactory(helix_factory)
        rec = logging.getLogRecordFactory()("n", logging.INFO, __file__, 1, "x", None, None)
        assert rec.helix_entity_id == "log-entity" and len(rec.otel_trace_id) == 32, vars(rec)
        logs = interleave(
            {"plain": without_fields, "fields": with_fields}, args.rounds, log_calls, args.warmup
        )
    logging.setLogRecordFactory(plain_factory)
    provider.shutdown()

    med = {k: statistics.median(v) / 1000 for k, v in {**spans, **logs}.items()}
    lo = {k: min(v) / 1000 for k, v in {**spans, **logs}.items()}
    hi = {k: max(v) / 1000 for k, v in {**spans, **logs}.items()}
    pair_ratios = [h / b for h, b in zip(spans["helix"], spans["bare"], strict=True)]

    from importlib.metadata import version

    print(
        f"Python {platform.python_version()}, opentelemetry-sdk {version('opentelemetry-sdk')}, "
        f"{os.cpu_count()} CPUs, {platform.machine()}; {args.rounds} rounds × {args.calls} calls "
        f"(logging {log_calls}), {args.warmup} warm-up rounds, gc off while timing\n"
    )
    print("| case | median µs/call | min | max | vs bare SDK |")
    print("|---|---:|---:|---:|---:|")

    def row(label: str, key: str, base: str | None) -> None:
        rel = f"{med[key] / med[base]:.2f}×" if base else "1.00×" if key == "bare" else ""
        print(f"| {label} | {med[key]:.2f} | {lo[key]:.2f} | {hi[key]:.2f} | {rel} |")

    row("(a) bare SDK `start_as_current_span` + 4 attributes", "bare", None)
    row("(b) `with tel.create(stage, id=…, parents=[…])`", "helix", "bare")
    row("(b') same, parents created in this process (+2 span links)", "linked", "bare")
    print()
    print("| logging, inside a helixobs span | median µs/record | min | max |")
    print("|---|---:|---:|---:|")
    print(
        f'| `logger.info("x")`, standard record factory | {med["plain"]:.2f} '
        f"| {lo['plain']:.2f} | {hi['plain']:.2f} |"
    )
    print(
        f"| same, with `install_context_fields()` | {med['fields']:.2f} "
        f"| {lo['fields']:.2f} | {hi['fields']:.2f} |"
    )
    print(f"| **context fields overhead** | **{med['fields'] - med['plain']:.2f}** | | |")
    print()
    ratio = med["helix"] / med["bare"]
    print(
        f"ratio (b)/(a) of medians: {ratio:.3f} (per-round pairs: median "
        f"{statistics.median(pair_ratios):.3f}, range {min(pair_ratios):.3f}–"
        f"{max(pair_ratios):.3f}); target ≤ 1.3: {'met' if ratio <= 1.3 else 'NOT met'}"
    )
    sys.exit(0)


if __name__ == "__main__":
    main()
