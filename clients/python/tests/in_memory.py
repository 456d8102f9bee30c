"""`Memory`: an Instrument whose spans land synchronously in memory (the `mem` fixtures)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol, cast

from opentelemetry.sdk.trace import SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, SpanContext, Status
from opentelemetry.util.types import AnyValue

from helixobs import Instrument


class FinishedEvent(Protocol):
    """A span event as the SDK records it (Span.add_event always stores attributes)."""

    @property
    def name(self) -> str: ...
    @property
    def attributes(self) -> Mapping[str, AnyValue]: ...
    @property
    def timestamp(self) -> int: ...


class FinishedSpan(Protocol):
    """The SDK's ReadableSpan as the exporter hands it over, once ended.

    ReadableSpan types attributes, context and the times as optional because a span still
    being built may lack them; every span an exporter receives has them all.
    """

    @property
    def name(self) -> str: ...
    @property
    def attributes(self) -> Mapping[str, AnyValue]: ...
    @property
    def context(self) -> SpanContext: ...
    @property
    def parent(self) -> SpanContext | None: ...
    @property
    def start_time(self) -> int: ...
    @property
    def end_time(self) -> int: ...
    @property
    def status(self) -> Status: ...
    @property
    def events(self) -> Sequence[FinishedEvent]: ...
    @property
    def links(self) -> Sequence[Link]: ...


class Memory:
    """An Instrument whose spans land synchronously in an InMemorySpanExporter."""

    def __init__(
        self, process_name: str | None = None, span_limits: SpanLimits | None = None
    ) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider(span_limits=span_limits)
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tel = Instrument(
            "test-svc",
            instrument_id="MY_INST",
            process_name=process_name,
            tracer_provider=self.provider,
        )

    def spans(self) -> list[FinishedSpan]:
        return cast(list[FinishedSpan], list(self.exporter.get_finished_spans()))

    def span(self, name: str | None = None, entity_id: str | None = None) -> FinishedSpan:
        found = [
            s
            for s in self.spans()
            if (name is None or s.name == name)
            and (entity_id is None or s.attributes.get("helix.entity.id") == entity_id)
        ]
        assert len(found) == 1, f"expected one span {name!r}/{entity_id!r}, got {found}"
        return found[0]
