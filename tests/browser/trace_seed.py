"""Traces for the waterfall tests, sent to a real herald by the OpenTelemetry Python SDK and its
OTLP/HTTP (protobuf) exporter, as a pipeline would send them. Explicit start and end times make
every offset and duration known to the tests.

Three traces: OBSERVE (nested spans over two services, entity creations and an operation, an
error span, events, a link to PUBLISH, a hostile span), PUBLISH (one more operation on the
candidate, linking back), and BIG (10 000 spans: a root, 99 batches of 100 items)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import logging

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

INSTRUMENT = "TRACETEL"
SEARCH_SVC = "trace-search"
ARCHIVE_SVC = "trace-archive"
BLOCK = "trace-blk-1"
CAND = "trace-cand-7"
HOSTILE_NAME = "<img src=x onerror=alert(5)></script><b>x</b>"
HOSTILE_VALUE = "</script><script>alert(6)</script><img src=x onerror=alert(7)>"
BATCHES, ITEMS = 99, 100  # 1 + 99 + 99 × 100 = 10 000 spans
HOSTILE_LOG = "<script>alert(8)</script><img src=x onerror=alert(9)> \x1b[31mred alert\x1b[0m"
HUGE_LOG = "huge-line " + "x" * (1024 * 1024)
# Lines the log tests expect, by the span they are logged in (None: outside any span).
LOG_LINES = [
    ("ingest", logging.INFO, "read 4096 bytes from beam 3"),
    ("filter", logging.INFO, "filter kept 97 % of samples"),
    ("dedisperse", logging.ERROR, "GPU out of memory in dedisperse"),
    ("fft", logging.WARNING, "fft fell back to the CPU"),
    ("archive", logging.INFO, "wrote /data/trace-cand-7.h5"),
    (None, logging.INFO, "scheduler idle between scans"),
    ("ingest", logging.INFO, HOSTILE_LOG),
    ("ingest", logging.DEBUG, HUGE_LOG),
]
MS = 10**6


@dataclass
class Seeded:
    observe: str = ""
    publish: str = ""
    big: str = ""
    # span name -> span ID (hex) in OBSERVE, and the expected depth-first order of its names.
    spans: dict[str, str] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)
    publish_span: str = ""
    endpoint: str = ""


def hex_trace(span: Any) -> str:
    return "%032x" % span.get_span_context().trace_id


def hex_span(span: Any) -> str:
    return "%016x" % span.get_span_context().span_id


def provider(endpoint: str, service: str, process: str) -> TracerProvider:
    resource = Resource.create({"service.name": service, "helix.instrument.id": INSTRUMENT,
                                "helix.process.name": process, "host.name": "browser-test"})
    p = TracerProvider(resource=resource)
    p.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint + "/v1/traces", timeout=60),
                                            max_queue_size=20_000, max_export_batch_size=1_000))
    return p


def log_provider(endpoint: str) -> LoggerProvider:
    resource = Resource.create({"service.name": SEARCH_SVC, "helix.instrument.id": INSTRUMENT,
                                "helix.process.name": "TRACETEL/search"})
    p = LoggerProvider(resource=resource)
    p.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter(endpoint=endpoint + "/v1/logs", timeout=60)))
    return p


def seed_logs(endpoint: str, spans: dict[str, Any], lines: list[tuple[str | None, int, str]] | None = None) -> None:
    """Lines (LOG_LINES by default) through Python logging and the SDK's OTLP/HTTP log exporter,
    each inside its span (the handler takes the current span's trace and span IDs), as a
    pipeline logs."""
    provider_ = log_provider(endpoint)
    logger = logging.getLogger("browser-seed")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    handler = LoggingHandler(level=logging.DEBUG, logger_provider=provider_)
    logger.addHandler(handler)
    try:
        for name, level, body in LOG_LINES if lines is None else lines:
            if name is None:
                logger.log(level, body)
                continue
            with trace.use_span(spans[name], end_on_exit=False):
                logger.log(level, body)
            time.sleep(0.002)  # distinct timestamps keep the expected order
    finally:
        logger.removeHandler(handler)
        provider_.force_flush(60_000)
        provider_.shutdown()


def seed(endpoint: str) -> Seeded:
    search_p = provider(endpoint, SEARCH_SVC, "TRACETEL/search")
    archive_p = provider(endpoint, ARCHIVE_SVC, "TRACETEL/archive")
    search = search_p.get_tracer("browser-seed")
    archive = archive_p.get_tracer("browser-seed")
    out = Seeded(endpoint=endpoint)
    t0 = time.time_ns() - 10 * 60 * 10**9

    objects: dict[str, Any] = {}

    def child(tracer: Any, name: str, parent: Any, start: int, dur: int, **kw: Any) -> Any:
        span = tracer.start_span(name, context=trace.set_span_in_context(parent), start_time=t0 + start, **kw)
        out.spans[name] = hex_span(span)
        objects[name] = span
        out.order.append(name)
        return span, t0 + start + dur

    # PUBLISH first, so OBSERVE's archive span can link to it.
    pub = archive.start_span("publish", start_time=t0 + 3000 * MS, kind=SpanKind.SERVER,
                             attributes={"helix.entity.id": CAND, "helix.entity.is_operation": "true", "topic": "frb"})
    out.publish, out.publish_span = hex_trace(pub), hex_span(pub)

    root = search.start_span("observe", start_time=t0, kind=SpanKind.SERVER, attributes={"scan": 42})
    out.observe = hex_trace(root)
    out.spans["observe"] = hex_span(root)
    out.order.append("observe")
    ingest, ingest_end = child(search, "ingest", root, 10 * MS, 400 * MS,
                               attributes={"helix.entity.id": BLOCK, "beam": 3})
    ingest.add_event("helix.event.received", {"bytes": 4096}, timestamp=t0 + 20 * MS)
    for name, start, dur in (("filter", 20 * MS, 150 * MS), ("transform", 180 * MS, 200 * MS)):
        s, end = child(search, name, ingest, start, dur)
        s.end(end_time=end)
    ingest.end(end_time=ingest_end)
    cand, cand_end = child(search, "search", root, 450 * MS, 900 * MS,
                           attributes={"helix.entity.id": CAND, "helix.parent.ids": BLOCK, "snr": 17.5,
                                       "dm": 512.25, "note": HOSTILE_VALUE})
    cand.add_event("helix.event.classified", {"label": "frb", "score": 0.93}, timestamp=t0 + 1300 * MS)
    dd, dd_end = child(search, "dedisperse", cand, 460 * MS, 500 * MS)
    dd.add_event("helix.error", {"message": "GPU out of memory", "stage": "dedisperse"}, timestamp=t0 + 900 * MS)
    dd.set_status(Status(StatusCode.ERROR, "GPU out of memory"))
    dd.end(end_time=dd_end)
    fft, fft_end = child(search, "fft", cand, 970 * MS, 300 * MS)
    fft.end(end_time=fft_end)
    cand.end(end_time=cand_end)
    bad, bad_end = child(search, HOSTILE_NAME, root, 1400 * MS, 50 * MS, attributes={"payload": HOSTILE_VALUE})
    bad.add_event(HOSTILE_NAME, {"why": HOSTILE_VALUE}, timestamp=t0 + 1420 * MS)
    bad.end(end_time=bad_end)
    arch, arch_end = child(archive, "archive", root, 1500 * MS, 400 * MS, kind=SpanKind.CLIENT,
                           attributes={"helix.entity.id": CAND, "helix.entity.is_operation": "true",
                                       "path": "/data/trace-cand-7.h5"},
                           links=[Link(pub.get_span_context(), {"reason": "published by"})])
    arch.end(end_time=arch_end)
    root.end(end_time=t0 + 2000 * MS)
    pub.add_link(root.get_span_context(), {"reason": "observed in"})
    pub.end(end_time=t0 + 3100 * MS)

    # BIG: starts later than the others, so it is the newest trace.
    b0 = t0 + 60 * 10**9
    big_root = search.start_span("big-run", start_time=b0, attributes={"batches": BATCHES})
    out.big = hex_trace(big_root)
    for i in range(BATCHES):
        ctx = trace.set_span_in_context(big_root)
        batch = search.start_span(f"batch-{i:03d}", context=ctx, start_time=b0 + i * 50 * MS)
        bctx = trace.set_span_in_context(batch)
        for j in range(ITEMS):
            item = search.start_span(f"item-{i:03d}-{j:03d}", context=bctx, start_time=b0 + i * 50 * MS + j * 400_000)
            item.end(end_time=b0 + i * 50 * MS + j * 400_000 + 350_000)
        batch.end(end_time=b0 + i * 50 * MS + 45 * MS)
    big_root.end(end_time=b0 + BATCHES * 50 * MS)

    for p in (search_p, archive_p):
        p.force_flush(120_000)
        p.shutdown()
    seed_logs(endpoint, objects)
    return out


def wait_stored(herald: Any, seeded: Seeded, timeout: float = 60) -> None:
    """Until the herald serves every seeded span and log line (the writer commits in batches)."""
    want = {seeded.observe: len(seeded.order), seeded.publish: 1, seeded.big: 1 + BATCHES + BATCHES * ITEMS}
    deadline = time.time() + timeout
    last: Any = None
    while time.time() < deadline:
        try:
            logs = herald.get("/api/v1/logs?instrument=" + INSTRUMENT + "&limit=100")["logs"]
            if all(len(herald.get("/api/v1/trace/" + t)["spans"]) == n for t, n in want.items()) and len(logs) == len(LOG_LINES):
                return
        except Exception as err:  # 404 until the first span of a trace is stored
            last = err
        time.sleep(0.3)
    raise AssertionError(f"the seeded traces were not stored in {timeout} s: {last}")
