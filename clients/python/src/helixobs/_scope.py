"""Context handling that can never leave a finished span as the current span.

Every span this package makes current is wrapped in a `ScopedSpan`. While its owner is
open it forwards to the real span; once the owner finishes it forwards to whatever was
current before it (resolved again at every call). So a context that still holds the
wrapper after non-LIFO completion, completion from another thread, or an asyncio task
that outlives its block, sees the enclosing live span rather than a finished one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, Span, SpanContext, Status, StatusCode
from opentelemetry.util import types


class ScopedSpan(Span):
    """Forwarding view of a span that stops pointing at it once the span is closed."""

    __slots__ = ("_span", "_fallback", "_closed")

    def __init__(self, span: Span, fallback: Context) -> None:
        self._span: Span | None = span
        self._fallback = fallback
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def fallback(self) -> Context:
        return self._fallback

    def close(self) -> None:
        self._closed = True
        # Drop the finished span so that stale contexts keep nothing big alive.
        self._span = None

    def target(self) -> Span:
        span = self._span
        if span is not None and not self._closed:
            return span
        return trace.get_current_span(self._fallback)

    # --- opentelemetry.trace.Span, forwarded -------------------------------------------
    def end(self, end_time: int | None = None) -> None:
        self.target().end(end_time)

    def get_span_context(self) -> SpanContext:
        return self.target().get_span_context()

    def set_attributes(self, attributes: Mapping[str, types.AttributeValue]) -> None:
        self.target().set_attributes(attributes)

    def set_attribute(self, key: str, value: types.AttributeValue) -> None:
        self.target().set_attribute(key, value)

    def add_event(
        self, name: str, attributes: types.Attributes = None, timestamp: int | None = None
    ) -> None:
        self.target().add_event(name, attributes, timestamp)

    def add_link(self, context: SpanContext, attributes: types.Attributes = None) -> None:
        self.target().add_link(context, attributes)

    def update_name(self, name: str) -> None:
        self.target().update_name(name)

    def is_recording(self) -> bool:
        return self.target().is_recording()

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        self.target().set_status(status, description)

    def record_exception(
        self,
        exception: BaseException,
        attributes: types.Attributes = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        self.target().record_exception(exception, attributes, timestamp, escaped)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"ScopedSpan({state}, {self.target()!r})"


def real_span(span: Span) -> Span:
    """Unwrap `ScopedSpan` layers down to the live span they currently stand for."""
    while isinstance(span, ScopedSpan):
        span = span.target()
    return span


def effective_context(ctx: Context | None = None) -> Context:
    """The given (or current) context with closed wrappers peeled off the top."""
    if ctx is None:
        ctx = otel_context.get_current()
    span = trace.get_current_span(ctx)
    while isinstance(span, ScopedSpan) and span.closed:
        ctx = span.fallback
        span = trace.get_current_span(ctx)
    return ctx


def current_real_span() -> Span:
    return real_span(trace.get_current_span())


def context_with(span: Span, parent: Context) -> tuple[Context, ScopedSpan]:
    """A context making `span` current (wrapped), falling back to `parent` when closed."""
    scoped = ScopedSpan(span, parent)
    return trace.set_span_in_context(scoped, parent), scoped


def links_for(span_contexts: Sequence[SpanContext]) -> list[Link]:
    seen: set[tuple[int, int]] = set()
    links: list[Link] = []
    for sc in span_contexts:
        key = (sc.trace_id, sc.span_id)
        if key not in seen:
            seen.add(key)
            links.append(Link(sc))
    return links
