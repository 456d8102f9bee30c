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

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
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


def seed(endpoint: str) -> Seeded:
    search_p = provider(endpoint, SEARCH_SVC, "TRACETEL/search")
    archive_p = provider(endpoint, ARCHIVE_SVC, "TRACETEL/archive")
    search = search_p.get_tracer("browser-seed")
    archive = archive_p.get_tracer("browser-seed")
    out = Seeded()
    t0 = time.time_ns() - 10 * 60 * 10**9

    def child(tracer: Any, name: str, parent: Any, start: int, dur: int, **kw: Any) -> Any:
        span = tracer.start_span(name, context=trace.set_span_in_context(parent), start_time=t0 + start, **kw)
        out.spans[name] = hex_span(span)
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
    return out


def wait_stored(herald: Any, seeded: Seeded, timeout: float = 60) -> None:
    """Until the herald serves every seeded span (the writer commits in batches)."""
    want = {seeded.observe: len(seeded.order), seeded.publish: 1, seeded.big: 1 + BATCHES + BATCHES * ITEMS}
    deadline = time.time() + timeout
    last: Any = None
    while time.time() < deadline:
        try:
            if all(len(herald.get("/api/v1/trace/" + t)["spans"]) == n for t, n in want.items()):
                return
        except Exception as err:  # 404 until the first span of a trace is stored
            last = err
        time.sleep(0.3)
    raise AssertionError(f"the seeded traces were not stored in {timeout} s: {last}")
