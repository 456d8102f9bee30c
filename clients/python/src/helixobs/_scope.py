"""Context handling that can never leave a finished span as the current span.

Every span this package makes current is wrapped in a `ScopedSpan`. While its owner is
open it forwards to the real span; once the owner finishes it forwards to whatever was
current before it (resolved again at every call). So a context that still holds the
wrapper after non-LIFO completion, completion from another thread, or an asyncio task
that outlives its block, sees the enclosing live span rather than a finished one.

The wrapper also caches the log-context fields of its span (`current_log_fields`), so a
log record inside a block does not re-read span attributes and re-format IDs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextvars import ContextVar
from contextvars import Token as CvToken
from typing import cast

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.context.contextvars_context import ContextVarsRuntimeContext
from opentelemetry.trace import Link, Span, SpanContext, Status, StatusCode
from opentelemetry.util import types

from ._attrs import ENTITY_ID, INSTRUMENT_ID, LOG_ENTITY_ID, LOG_FIELD_KEYS, PROCESS_NAME

# (entity, instrument, process, trace id as 32 hex, span id as 16 hex); "" where absent.
LogFields = tuple[str, str, str, str, str]

_get_current_span = trace.get_current_span


def _context_ops() -> tuple[
    Callable[[], Context],
    Callable[[Context], CvToken[Context]],
    Callable[[CvToken[Context]], None],
]:
    """`get_current`, `attach` and the reset behind `detach`, as cheap as they can be.

    OpenTelemetry's default runtime context keeps the current `Context` in one
    `ContextVar`, reached through two Python calls per operation; when that is the runtime
    in use (checked through the public API, as `_find_span_key` does), the variable's own
    methods do the same in one C call. Any other runtime (``OTEL_PYTHON_CONTEXT``) keeps
    the public functions.
    """
    runtime = getattr(otel_context, "_RUNTIME_CONTEXT", None)
    var = getattr(runtime, "_current_context", None)
    if type(runtime) is ContextVarsRuntimeContext and isinstance(var, ContextVar):
        probe = Context({"helixobs.probe": True})
        token = otel_context.attach(probe)
        try:
            same = var.get() is probe and otel_context.get_current() is probe
        finally:
            otel_context.detach(token)
        if same and otel_context.get_current() is not probe:
            return cast(Callable[[], Context], var.get), var.set, var.reset
    return otel_context.get_current, otel_context.attach, otel_context.detach


# `reset` raises where OpenTelemetry's `detach` logs (a token used twice, or in another
# context): callers go through `detach` below, or catch and hand it to `detach`.
get_current, attach, reset = _context_ops()


def detach(token: CvToken[Context]) -> None:
    """`opentelemetry.context.detach`: restore the context `token` replaced."""
    try:
        reset(token)
    except Exception:  # what OpenTelemetry does: log it, never raise into the caller
        otel_context.detach(token)


def _find_span_key() -> str:
    """The key under which OpenTelemetry keeps the current span in a `Context`.

    Found through the public API (what `set_span_in_context` adds) and checked against it,
    so that hot paths can read the span with one dict look-up instead of
    `get_current_span()` (which re-validates the value with an ABC isinstance check, ~7
    times the cost) and build the context `set_span_in_context` would build.
    """
    probe = trace.NonRecordingSpan(trace.INVALID_SPAN_CONTEXT)
    base = Context({"helixobs.probe": True})
    made = trace.set_span_in_context(probe, base)
    keys = [k for k, v in made.items() if v is probe]
    if len(keys) == 1 and len(made) == 2:
        key = keys[0]
        ours = Context({**base, key: probe})
        if ours == made and trace.get_current_span(ours) is probe:
            return key
    raise ImportError(
        "helixobs: this opentelemetry-api keeps the current span in a way helixobs does not "
        "know (opentelemetry-api 1.x expected); please report it with the installed version"
    )


SPAN_KEY = _find_span_key()


class ScopedSpan(Span):
    """Forwarding view of a span that stops pointing at it once the span is closed."""

    # `_span` is None once closed. `_fields` caches the span's LogFields (None: not yet
    # computed, or invalidated by an attribute write through this package).
    # No __init__: a Python-level constructor costs more than the rest of the wrapper on
    # the hot paths that make one per span, so the two places that make one (token
    # `_open_span`, `_SpanBlock.__enter__`) set the three fields themselves.
    __slots__ = ("_span", "_fallback", "_fields")
    _span: Span | None
    _fallback: Context
    _fields: LogFields | None

    @property
    def closed(self) -> bool:
        return self._span is None

    @property
    def fallback(self) -> Context:
        return self._fallback

    def close(self) -> None:
        # Dropping the finished span also keeps stale contexts from holding anything big.
        self._span = None
        self._fields = None

    def invalidate_fields(self) -> None:
        """Forget the cached log fields (an attribute they come from may have changed)."""
        self._fields = None

    def target(self) -> Span:
        span = self._span
        if span is not None:
            return span
        return _get_current_span(self._fallback)

    # --- opentelemetry.trace.Span, forwarded -------------------------------------------
    def end(self, end_time: int | None = None) -> None:
        self.target().end(end_time)

    def get_span_context(self) -> SpanContext:
        return self.target().get_span_context()

    def set_attributes(self, attributes: Mapping[str, types.AttributeValue]) -> None:
        if not LOG_FIELD_KEYS.isdisjoint(attributes):
            self._fields = None
        self.target().set_attributes(attributes)

    def set_attribute(self, key: str, value: types.AttributeValue) -> None:
        if key in LOG_FIELD_KEYS:
            self._fields = None
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
        state = "closed" if self._span is None else "open"
        return f"ScopedSpan({state}, {self.target()!r})"


def effective_context(ctx: Context | None = None) -> Context:
    """The given (or current) context with closed wrappers peeled off the top."""
    if ctx is None:
        ctx = get_current()
    span = ctx.get(SPAN_KEY)
    while type(span) is ScopedSpan and span._span is None:
        ctx = span._fallback
        span = ctx.get(SPAN_KEY)
    return ctx


def context_with(span: Span, parent: Context) -> Context:
    """`trace.set_span_in_context(span, parent)`, without its two calls."""
    values = parent.copy()
    values[SPAN_KEY] = span
    return Context(values)


def _fields_of(span: Span) -> LogFields | None:
    sc = span.get_span_context()
    if not sc.is_valid:
        return None
    attrs = getattr(span, "attributes", None) or {}
    entity = attrs.get(ENTITY_ID) or attrs.get(LOG_ENTITY_ID) or ""
    instrument = attrs.get(INSTRUMENT_ID)
    process = attrs.get(PROCESS_NAME)
    if not instrument or not process:
        # Operation spans leave them to the resource when the resource says them (the wire
        # contract's fallback), as the herald reads them.
        resource = getattr(span, "resource", None)
        said = resource.attributes if resource is not None else {}
        instrument = instrument or said.get(INSTRUMENT_ID) or ""
        process = process or said.get(PROCESS_NAME) or ""
    return (
        str(entity),
        str(instrument),
        str(process),
        format(sc.trace_id, "032x"),
        format(sc.span_id, "016x"),
    )


def current_log_fields() -> LogFields | None:
    """The LogFields of the live span current here (None outside any valid span).

    Cached on our wrapper for the span's lifetime: attribute writes through this package
    (`Token.set_attribute`, `set_entity_id`, the wrapper's own setters) invalidate it.
    """
    ctx = get_current()
    span = ctx.get(SPAN_KEY)
    while type(span) is ScopedSpan:
        inner = span._span
        if inner is None:  # closed: stand for what was current before it
            ctx = span._fallback
            span = ctx.get(SPAN_KEY)
            continue
        fields = span._fields
        if fields is None:
            fields = _fields_of(inner)
            span._fields = fields
            if span._span is None:  # closed meanwhile (another thread): do not keep it
                span._fields = None
        return fields
    if span is None:
        return None
    return _fields_of(_get_current_span(ctx))  # another instrumentation's span (validated)


def links_for(span_contexts: Sequence[SpanContext]) -> list[Link]:
    seen: set[tuple[int, int]] = set()
    links: list[Link] = []
    for sc in span_contexts:
        key = (sc.trace_id, sc.span_id)
        if key not in seen:
            seen.add(key)
            links.append(Link(sc))
    return links
