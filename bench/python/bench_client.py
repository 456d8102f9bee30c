#!/usr/bin/env python3
"""Caller-side cost of the helixobs Python client: bare SDK vs ours vs the published 0.5.3.

Normally run through ``bench/python/run.sh``, which builds the two environments. By hand:

    python3 bench/python/bench_client.py --ours VENV_A/bin/python --published VENV_B/bin/python \\
        [--rounds 30] [--calls 2000] [--log-calls 5000] [--json out.json]

The orchestrator (this script under any Python 3.11+, standard library only) starts two
long-lived worker processes, one per interpreter (``--worker``): one has our client
(``clients/python``) installed, the other ``helixobs==0.5.3`` from PyPI, with the same
OpenTelemetry SDK. It then sends them one measurement at a time, so only one of them runs
at any moment, and interleaves everything in every round:

(a)  the bare OpenTelemetry SDK doing the same thing, spans with the same attributes as ours
     (measured in our worker; (a') is the same code in the published client's worker, to
     show that the two processes run the SDK alike);
(b)  our client;
(c)  the published client.

Every worker builds the same pipeline: ``TracerProvider(resource=...)`` with one
``BatchSpanProcessor`` feeding an exporter that discards. Our ``Instrument`` gets it through
``tracer_provider=``; the published ``Instrument`` (which always builds its own OTLP
pipeline) has its tracer swapped for one of this provider and its own provider shut down
before anything is measured. Row (b*) is ours through the processor stack our client builds
for itself (``ForkSafeSpanProcessor`` around the same ``BatchSpanProcessor``).

Each measurement runs N calls with the garbage collector off, after ``force_flush()`` so
that every one starts with an empty export queue, and is timed both as process CPU time
(``time.process_time_ns``, all threads, so the batch processor's export thread counts too)
and as wall-clock time. The tables report CPU time unless ``--clock wall``: on a machine
shared with other work, a worker that the scheduler preempts is not charged for the time it
waited. Per round, the sides of each case run back to back in an order that alternates
between rounds. The tables give medians over the rounds (µs per call), the ratio of medians,
and the median of the per-round ratios. Many short rounds rather than few long ones: a burst
of load then hits all sides of a case alike.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

STAGE = "search"
INSTRUMENT_ID = "BENCH_INST"
PROCESS_NAME = "BENCH_INST/search"
PARENTS = ["block-0001", "block-0002"]
N_IDS = 4096

# (case, description). A client lacking a case simply does not offer it.
CASES: list[tuple[str, str]] = [
    ("create", "`with tel.create(stage, id=…, parents=[2 ids])`"),
    ("operate", "`with tel.operate(op, entity_id=…)`"),
    ("decorator", "`@tel.create(stage, id=lambda b: b)` sync function, per call"),
    ("decorator_async", "same on an `async def`, awaited (span covers the await)"),
    ("explicit", "`t = tel.create(…); t.start(); t.complete()`"),
    ("child_span", "`with tel.child_span(name, attributes={1})` inside an entity block"),
    ("trace", "`with tel.trace(name, attributes={1})`"),
    ("set_attribute", "`token.set_attribute(key, 0.97)` on an open token"),
    ("add_event", "`token.add_event(name, {2 attributes})` on an open token"),
    ("log_plain", '`logger.info("x")` in an entity block, standard record factory'),
    ("log_fields", "same, with the client's `install_context_fields()` factory"),
    ("log_fields_outside", "same factory, outside any span"),
]


# --- worker ---------------------------------------------------------------------------------
def _worker(run_once: tuple[str, int] | None = None) -> None:
    """Serve measurements on stdin/stdout: ``<key> <calls>`` → ns per call; ``quit``."""
    from importlib.metadata import version

    from opentelemetry import context as otel_context
    from opentelemetry import trace
    from opentelemetry.context import Context
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )

    import helixobs

    client_version = version("helixobs")
    published = client_version.startswith("0.5.")

    class DiscardExporter(SpanExporter):
        """Drops every span; while `shapes` is a list, records what each span looked like."""

        def __init__(self) -> None:
            self.shapes: list[str] | None = None

        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            if self.shapes is not None:
                for s in spans:
                    keys = ",".join(sorted((s.attributes or {}).keys()))
                    self.shapes.append(
                        f"{s.name}[{keys}] links={len(s.links)} events={len(s.events)}"
                        f"{' root' if s.parent is None else ''}"
                    )
            return SpanExportResult.SUCCESS

        def shutdown(self) -> None:
            pass

    # What both clients' own pipelines put in the resource (and what `setup()` gives).
    resource = Resource.create(
        {
            "service.name": "bench",
            "helix.instrument.id": INSTRUMENT_ID,
            "helix.process.name": PROCESS_NAME,
        }
    )

    def make_provider(exporter: SpanExporter) -> TracerProvider:
        provider = TracerProvider(resource=resource)
        provider.add_span_processor(BatchSpanProcessor(exporter))
        return provider

    exporter = DiscardExporter()
    provider = make_provider(exporter)
    tracer = provider.get_tracer("bench")
    extra_provider: TracerProvider | None = None

    if published:
        # Its constructor always wires its own OTLP pipeline (and the global provider);
        # nothing is ever sent there: its tracer is swapped before the first span.
        published_instrument: Any = helixobs.Instrument  # (service, instrument_id, ...)
        tel: Any = published_instrument(
            "bench",
            INSTRUMENT_ID,
            endpoint="127.0.0.1:9",
            insecure=True,
            process_name=PROCESS_NAME,
        )
        tel._provider.shutdown()
        tel._tracer = provider.get_tracer("helixobs")
        tel._provider = provider
        tel_own: Any = None
    else:
        from helixobs._export import ForkSafeSpanProcessor

        tel = helixobs.Instrument(
            "bench",
            instrument_id=INSTRUMENT_ID,
            process_name=PROCESS_NAME,
            tracer_provider=provider,
        )
        # (b*): the processor stack our client builds for its own OTLP pipeline.
        extra_provider = TracerProvider(resource=resource)
        extra_provider.add_span_processor(
            ForkSafeSpanProcessor(lambda: BatchSpanProcessor(DiscardExporter()))
        )
        tel_own = helixobs.Instrument(
            "bench",
            instrument_id=INSTRUMENT_ID,
            process_name=PROCESS_NAME,
            tracer_provider=extra_provider,
        )

    ids = [f"cand-{i:06d}" for i in range(N_IDS)]
    mask = N_IDS - 1
    joined = ",".join(PARENTS)
    start_cur = tracer.start_as_current_span
    start_span = tracer.start_span
    attach, detach = otel_context.attach, otel_context.detach
    set_span = trace.set_span_in_context

    # ---- bare SDK: the spans our client makes, written by hand --------------------------
    def bare_create(n: int) -> None:
        for i in range(n):
            with start_cur(
                STAGE,
                attributes={
                    "helix.entity.id": ids[i & mask],
                    "helix.instrument.id": INSTRUMENT_ID,
                    "helix.parent.ids": joined,
                    "helix.process.name": PROCESS_NAME,
                },
            ):
                pass

    def bare_operate(n: int) -> None:
        for i in range(n):
            with start_cur(
                "archive",
                context=Context(),
                # No instrument ID or process name: our operation spans leave them to the
                # resource, which says them (the published client sets the instrument ID on
                # operations, never the process name).
                attributes={
                    "helix.entity.id": ids[i & mask],
                    "helix.entity.is_operation": "true",
                },
            ):
                pass

    def bare_fn(block_id: str) -> None:
        with start_cur(
            STAGE,
            attributes={
                "helix.entity.id": block_id,
                "helix.instrument.id": INSTRUMENT_ID,
                "helix.process.name": PROCESS_NAME,
            },
        ):
            return None

    def bare_decorator(n: int) -> None:
        for i in range(n):
            bare_fn(ids[i & mask])

    async def bare_afn(block_id: str) -> None:
        with start_cur(
            STAGE,
            attributes={
                "helix.entity.id": block_id,
                "helix.instrument.id": INSTRUMENT_ID,
                "helix.process.name": PROCESS_NAME,
            },
        ):
            return None

    loop = asyncio.new_event_loop()

    def drive(afn: Callable[[str], Any]) -> Callable[[int], None]:
        async def run(n: int) -> None:
            for i in range(n):
                await afn(ids[i & mask])

        return lambda n: loop.run_until_complete(run(n))

    def bare_explicit(n: int) -> None:
        for i in range(n):
            span = start_span(
                STAGE,
                attributes={
                    "helix.entity.id": ids[i & mask],
                    "helix.instrument.id": INSTRUMENT_ID,
                    "helix.parent.ids": joined,
                    "helix.process.name": PROCESS_NAME,
                },
            )
            token = attach(set_span(span))
            span.end()
            detach(token)

    def bare_child_span(n: int) -> None:
        with start_cur("process", attributes={"helix.entity.id": "block-x"}):
            for _ in range(n):
                with start_cur(
                    "filter",
                    attributes={
                        "helix.instrument.id": INSTRUMENT_ID,
                        "helix.log.entity_id": "block-x",
                        "filter.type": "bandpass",
                    },
                ):
                    pass

    def bare_trace(n: int) -> None:
        for _ in range(n):
            with start_cur(
                "process-request",
                attributes={"helix.instrument.id": INSTRUMENT_ID, "endpoint": "/api/status"},
            ):
                pass

    def bare_set_attribute(n: int) -> None:
        with start_cur("classify", attributes={"helix.entity.id": "event-7"}) as span:
            set_attribute = span.set_attribute
            for _ in range(n):
                set_attribute("score", 0.97)

    def bare_add_event(n: int) -> None:
        with start_cur("classify", attributes={"helix.entity.id": "event-7"}) as span:
            add_event = span.add_event
            for _ in range(n):
                add_event("helix.event.classified", {"label": "rfi", "confidence": 0.97})

    # ---- the installed client -------------------------------------------------------------
    def client_create_with(inst: Any) -> Callable[[int], None]:
        def run(n: int) -> None:
            create = inst.create
            for i in range(n):
                with create(STAGE, id=ids[i & mask], parents=PARENTS):
                    pass

        return run

    def client_operate_with(inst: Any) -> Callable[[int], None]:
        def run(n: int) -> None:
            operate = inst.operate
            for i in range(n):
                with operate("archive", entity_id=ids[i & mask]):
                    pass

        return run

    # Typed by hand: the script type-checks against our client, runs with either.
    sync_decorator: Callable[[Callable[[str], None]], Callable[[str], None]]
    sync_decorator = tel.create(STAGE, id=lambda block_id: block_id)

    @sync_decorator
    def client_fn(block_id: str) -> None:
        return None

    def client_decorator(n: int) -> None:
        for i in range(n):
            client_fn(ids[i & mask])

    def client_explicit(n: int) -> None:
        create = tel.create
        for i in range(n):
            t = create(STAGE, id=ids[i & mask], parents=PARENTS)
            t.start()
            t.complete()

    def client_child_span(n: int) -> None:
        with tel.create("process", id="block-x"):
            child = tel.child_span
            for _ in range(n):
                with child("filter", attributes={"filter.type": "bandpass"}):
                    pass

    def client_trace(n: int) -> None:
        plain = tel.trace
        for _ in range(n):
            with plain("process-request", attributes={"endpoint": "/api/status"}):
                pass

    def client_set_attribute(n: int) -> None:
        with tel.create("classify", id="event-7") as token:
            set_attribute = token.set_attribute
            for _ in range(n):
                set_attribute("score", 0.97)

    def client_add_event(n: int) -> None:
        with tel.create("classify", id="event-7") as token:
            add_event = token.add_event
            for _ in range(n):
                add_event("helix.event.classified", {"label": "rfi", "confidence": 0.97})

    fns: dict[str, Callable[[int], None]] = {
        "bare:create": bare_create,
        "bare:operate": bare_operate,
        "bare:decorator": bare_decorator,
        "bare:decorator_async": drive(bare_afn),
        "bare:explicit": bare_explicit,
        "bare:child_span": bare_child_span,
        "bare:trace": bare_trace,
        "bare:set_attribute": bare_set_attribute,
        "bare:add_event": bare_add_event,
        "client:create": client_create_with(tel),
        "client:operate": client_operate_with(tel),
        "client:decorator": client_decorator,
        "client:explicit": client_explicit,
        "client:child_span": client_child_span,
        "client:trace": client_trace,
        "client:set_attribute": client_set_attribute,
        "client:add_event": client_add_event,
    }
    if not published:
        # The published decorator ends the span when the coroutine is created, before it
        # runs: no comparable case.
        async_decorator: Callable[[Callable[[str], Any]], Callable[[str], Any]]
        async_decorator = tel.create(STAGE, id=lambda block_id: block_id)

        @async_decorator
        async def client_afn(block_id: str) -> None:
            return None

        fns["client:decorator_async"] = drive(client_afn)
        fns["client:create_own_pipeline"] = client_create_with(tel_own)

    # ---- logging ----------------------------------------------------------------------------
    logger = logging.getLogger("bench.helixobs")
    logger.propagate = False
    logger.setLevel(logging.INFO)

    class FormatAndDiscard(logging.Handler):
        """Formats each record as a real handler would, then drops the text."""

        def emit(self, record: logging.LogRecord) -> None:
            self.format(record)

    handler = FormatAndDiscard()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logger.addHandler(handler)
    plain_factory = logging.getLogRecordFactory()
    helixobs.install_context_fields()
    fields_factory = logging.getLogRecordFactory()
    logging.setLogRecordFactory(plain_factory)
    assert fields_factory is not plain_factory

    def log_with(factory: Callable[..., logging.LogRecord], in_span: bool) -> Callable[[int], None]:
        def run(n: int) -> None:
            logging.setLogRecordFactory(factory)
            try:
                info = logger.info
                if in_span:
                    with tel.create("log-stage", id="log-entity", parents=PARENTS):
                        for _ in range(n):
                            info("x")
                else:
                    for _ in range(n):
                        info("x")
            finally:
                logging.setLogRecordFactory(plain_factory)

        return run

    fns["client:log_plain"] = log_with(plain_factory, True)
    fns["client:log_fields"] = log_with(fields_factory, True)
    fns["client:log_fields_outside"] = log_with(fields_factory, False)

    # Sanity: the fields really are filled in inside a block (and empty outside).
    logging.setLogRecordFactory(fields_factory)
    with tel.create("log-stage", id="log-entity"):
        rec = logging.getLogRecordFactory()("n", logging.INFO, __file__, 1, "x", None, None)
    out = logging.getLogRecordFactory()("n", logging.INFO, __file__, 1, "x", None, None)
    logging.setLogRecordFactory(plain_factory)
    assert getattr(rec, "helix_entity_id", None) == "log-entity", vars(rec)
    assert len(getattr(rec, "otel_trace_id", "")) == 32, vars(rec)
    assert getattr(out, "otel_trace_id", None) == "", vars(out)

    # Shape check: one call of each span case, exported for real and described.
    shapes: dict[str, list[str]] = {}
    provider.force_flush()
    for key, fn in fns.items():
        if "log" not in key and "own_pipeline" not in key:
            exporter.shapes = []
            fn(1)
            provider.force_flush()
            shapes[key] = exporter.shapes
    exporter.shapes = None

    flushers = [provider] + ([extra_provider] if extra_provider is not None else [])

    def timed(fn: Callable[[int], None], calls: int) -> dict[str, float]:
        """ns per call, as process CPU time (all threads) and as wall-clock time."""
        for p in flushers:
            p.force_flush()
        gc.collect()
        gc.disable()
        try:
            c0, t0 = time.process_time_ns(), time.perf_counter_ns()
            fn(calls)
            t1, c1 = time.perf_counter_ns(), time.process_time_ns()
        finally:
            gc.enable()
        return {"cpu": (c1 - c0) / calls, "wall": (t1 - t0) / calls}

    if run_once is not None:
        # --run KEY N: warm up, run one case N times, exit (for profilers and valgrind).
        key, calls = run_once
        fns[key](200)
        provider.force_flush()
        gc.collect()
        gc.disable()  # as while timing
        fns[key](calls)
        gc.enable()
        provider.force_flush()
        return

    hello = {
        "client": "published" if published else "ours",
        "helixobs": client_version,
        "helixobs_file": helixobs.__file__,
        "opentelemetry_sdk": version("opentelemetry-sdk"),
        "opentelemetry_api": version("opentelemetry-api"),
        "python": platform.python_version(),
        "keys": sorted(fns),
        "shapes": shapes,
    }
    print(json.dumps(hello), flush=True)
    for line in sys.stdin:
        cmd = line.split()
        if not cmd or cmd[0] == "quit":
            break
        key, calls = cmd[0], int(cmd[1])
        print(json.dumps(timed(fns[key], calls)), flush=True)
    loop.close()
    provider.shutdown()


# --- orchestrator -----------------------------------------------------------------------------
class Worker:
    def __init__(self, python: str, label: str) -> None:
        self.label = label
        self.proc = subprocess.Popen(
            [python, os.path.abspath(__file__), "--worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.hello: dict[str, Any] = json.loads(self._readline())

    def _readline(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"bench worker {self.label} exited (exit code {self.proc.wait()})")
        return line

    def measure(self, key: str, calls: int) -> dict[str, float]:
        """µs per call, by clock ("cpu", "wall")."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{key} {calls}\n")
        self.proc.stdin.flush()
        return {k: float(v) / 1000.0 for k, v in json.loads(self._readline()).items()}

    def close(self) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.close()
        except BrokenPipeError:
            pass
        self.proc.wait(timeout=60)


def _median(values: list[float]) -> float:
    return statistics.median(values)


BARE_PUB = "a'"  # the bare SDK, measured in the published client's worker


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument(
        "--run",
        nargs=2,
        metavar=("KEY", "N"),
        help="in this interpreter, run one case (e.g. client:create) N times and exit: "
        "for a profiler (python -m cProfile …) or valgrind --tool=callgrind",
    )
    ap.add_argument("--ours", help="python of the venv with our client")
    ap.add_argument("--published", help="python of the venv with helixobs==0.5.3")
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--calls", type=int, default=2000, help="calls per span measurement")
    ap.add_argument("--log-calls", type=int, default=5000, help="calls per log measurement")
    ap.add_argument("--json", help="also write every measurement here")
    ap.add_argument("--cases", help="comma-separated subset of the cases (default: all)")
    ap.add_argument(
        "--clock",
        choices=("cpu", "wall"),
        default="cpu",
        help="what the tables report: process CPU time (default; a worker that the "
        "scheduler preempts is not charged for it) or wall-clock time; --json has both",
    )
    args = ap.parse_args()
    if args.worker or args.run:
        _worker((args.run[0], int(args.run[1])) if args.run else None)
        return
    if not args.ours or not args.published:
        ap.error("--ours and --published are required (run.sh passes them)")

    load_before = os.getloadavg()
    ours = Worker(args.ours, "ours")
    pub = Worker(args.published, "published")
    for w, want in ((ours, "ours"), (pub, "published")):
        if w.hello["client"] != want:
            raise SystemExit(f"--{want} runs helixobs {w.hello['helixobs']} ({w.label}?)")
    if ours.hello["opentelemetry_sdk"] != pub.hello["opentelemetry_sdk"]:
        raise SystemExit(
            f"SDK versions differ: ours {ours.hello['opentelemetry_sdk']}, "
            f"published {pub.hello['opentelemetry_sdk']}: the comparison would not be fair"
        )

    # The measurement plan: (column, worker, key, calls) per case.
    plan: dict[str, list[tuple[str, Worker, str]]] = {}
    wanted = set(args.cases.split(",")) if args.cases else {case for case, _ in CASES}
    for case, _ in CASES:
        if case not in wanted:
            continue
        sides: list[tuple[str, Worker, str]] = []
        if case.startswith("log"):
            if f"client:{case}" in ours.hello["keys"]:
                sides.append(("b", ours, f"client:{case}"))
            if f"client:{case}" in pub.hello["keys"]:
                sides.append(("c", pub, f"client:{case}"))
        else:
            sides.append(("a", ours, f"bare:{case}"))
            sides.append(("b", ours, f"client:{case}"))
            if case == "create":
                sides.append(("b*", ours, "client:create_own_pipeline"))
            if f"client:{case}" in pub.hello["keys"]:
                sides.append(("c", pub, f"client:{case}"))
            sides.append((BARE_PUB, pub, f"bare:{case}"))
        plan[case] = sides

    by_clock: dict[str, dict[tuple[str, str], list[float]]] = {"cpu": {}, "wall": {}}
    t_start = time.monotonic()
    for r in range(args.warmup + args.rounds):
        for case, sides in plan.items():
            calls = args.log_calls if case.startswith("log") else args.calls
            order = sides if r % 2 == 0 else list(reversed(sides))
            for column, worker, key in order:
                us = worker.measure(key, calls)
                if r >= args.warmup:
                    for clock, value in us.items():
                        by_clock[clock].setdefault((case, column), []).append(value)
        done = r + 1 - args.warmup
        if done > 0 and (done % 5 == 0 or done == args.rounds):
            print(
                f"  round {done}/{args.rounds} ({time.monotonic() - t_start:.0f} s)",
                file=sys.stderr,
            )
    ours.close()
    pub.close()
    load_after = os.getloadavg()
    results = by_clock[args.clock]

    def med(case: str, column: str) -> float | None:
        values = results.get((case, column))
        return _median(values) if values else None

    def paired(case: str, num: str, den: str) -> float | None:
        a, b = results.get((case, num)), results.get((case, den))
        if not a or not b:
            return None
        return _median([x / y for x, y in zip(a, b, strict=True)])

    h = ours.hello
    print(
        f"Python {h['python']}, opentelemetry-sdk {h['opentelemetry_sdk']} in both workers; "
        f"ours: helixobs {h['helixobs']}, published: helixobs {pub.hello['helixobs']}; "
        f"{os.cpu_count()} CPUs, {platform.machine()}; {args.rounds} rounds "
        f"(+{args.warmup} warm-up) × {args.calls} calls per span measurement, "
        f"{args.log_calls} per log measurement; gc off while timing; "
        f"{'process CPU' if args.clock == 'cpu' else 'wall-clock'} time\n"
        f"load average (1/5/15 min) before {'/'.join(f'{x:.2f}' for x in load_before)}, "
        f"after {'/'.join(f'{x:.2f}' for x in load_after)}\n"
    )

    def fmt(x: float | None) -> str:
        return "–" if x is None else f"{x:.2f}"

    def ratio(case: str, num: str, den: str) -> str:
        a, b = med(case, num), med(case, den)
        if a is None or b is None:
            return "–"
        p = paired(case, num, den)
        return f"{a / b:.3f}" if p is None else f"{a / b:.3f} ({p:.3f})"

    print(
        "| hot path | (a) bare SDK | (b) ours | (c) published 0.5.3 "
        "| (a') bare SDK in (c)'s process | (b)/(a) | (b)/(c) | (c)/(a') |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    verdicts: list[str] = []
    for case, desc in CASES:
        if case.startswith("log"):
            continue
        print(
            f"| {desc} | {fmt(med(case, 'a'))} | {fmt(med(case, 'b'))} | {fmt(med(case, 'c'))} "
            f"| {fmt(med(case, BARE_PUB))} | {ratio(case, 'b', 'a')} "
            f"| {ratio(case, 'b', 'c')} | {ratio(case, 'c', BARE_PUB)} |"
        )
        if case == "create":
            print(
                "| (b\\*) the same through our own processor stack (ForkSafeSpanProcessor) "
                f"| | {fmt(med(case, 'b*'))} | | | {ratio(case, 'b*', 'a')} "
                f"| {ratio(case, 'b*', 'c')} | |"
            )
            a, b = med(case, "a"), med(case, "b")
            if a is not None and b is not None:
                met = "met" if b <= 1.05 * a else "NOT met"
                verdicts.append(f"(b)/(a) ≤ 1.05 for create: {b / a:.3f}, {met}")
        b, c = med(case, "b"), med(case, "c")
        if b is not None and c is not None:
            verdicts.append(f"(b) ≤ (c) for {case}: {'met' if b <= c else 'NOT met'}")
    print(
        "\nµs per call, medians over the rounds. Ratios: of the medians, and in brackets the "
        "median of the per-round ratios."
    )
    print('\n| log record, `logger.info("x")` | (b) ours | (c) published 0.5.3 |')
    print("|---|---:|---:|")
    for case, desc in CASES:
        if case.startswith("log"):
            print(f"| {desc} | {fmt(med(case, 'b'))} | {fmt(med(case, 'c'))} |")
    extra: dict[str, str] = {}
    for col in ("b", "c"):
        plain, fields = results.get(("log_plain", col)), results.get(("log_fields", col))
        if plain and fields:
            added = _median([f - p for f, p in zip(fields, plain, strict=True)])
            extra[col] = f"**{added:.2f}**"
            if col == "b":
                verdicts.append(
                    f"log context fields add ≤ 3 µs: {added:.2f}, "
                    f"{'met' if added <= 3 else 'NOT met'}"
                )
    print(
        "| **context fields add** (median of the per-round differences) "
        f"| {extra.get('b', '–')} | {extra.get('c', '–')} |"
    )
    print("\nTargets: " + "; ".join(verdicts))
    print("\nWhat one call of each case exported (name[attribute keys] links events):")
    for case in plan:
        for column, worker, key in plan[case]:
            for shape in worker.hello["shapes"].get(key, []):
                print(f"  {case} {column}: {shape}")

    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(
                {
                    "ours": ours.hello,
                    "published": pub.hello,
                    "load_before": load_before,
                    "load_after": load_after,
                    "args": vars(args),
                    "results": {
                        clock: {f"{c}|{col}": v for (c, col), v in values.items()}
                        for clock, values in by_clock.items()
                    },
                },
                f,
                indent=1,
            )


if __name__ == "__main__":
    main()
