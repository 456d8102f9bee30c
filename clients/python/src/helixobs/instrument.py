"""Instrument: the per-pipeline entry point creating entity, operation and plain spans."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from contextvars import Token as CvToken
from types import TracebackType
from typing import Any, ClassVar

from opentelemetry.context import Context
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import NonRecordingSpan, Span, StatusCode, Tracer

from . import _attrs as A
from ._auth import Credential, TokenSource
from ._export import ForkSafeSpanProcessor, batch_span_processor_factory, resolve_target
from ._registry import REGISTRY
from ._resource import build_resource
from ._scope import (
    SPAN_KEY,
    ScopedSpan,
    context_with,
    current_log_fields,
    effective_context,
)
from ._scope import attach as _attach
from ._scope import detach as _detach
from ._scope import get_current as _get_current
from .logging import flush_logs
from .token import IdSpec, ParentsSpec, Token

_log = logging.getLogger("helixobs")


TRACER_NAME = "helixobs"


def current_entity_id() -> str | None:
    """The entity the current span belongs to (its ID, or the one a child span names)."""
    fields = current_log_fields()
    if fields is None or not fields[0]:
        return None
    return fields[0]


class _SpanBlock:
    """A plain span (trace() or child_span()) current only inside its block."""

    __slots__ = ("_tracer", "_name", "_parent", "_attributes", "_span", "_scoped", "_token")

    def __init__(
        self, tracer: Tracer, name: str, parent: Context | None, attributes: dict[str, Any]
    ) -> None:
        self._tracer = tracer
        self._name = name
        self._parent = parent
        self._attributes = attributes
        self._span: Span | None = None
        self._scoped: ScopedSpan | None = None
        self._token: CvToken[Context] | None = None

    def __enter__(self) -> Span:
        caller = _get_current()
        current = caller.get(SPAN_KEY)
        if type(current) is ScopedSpan and current._span is None:  # closed
            caller = effective_context(caller)
        parent = caller if self._parent is None else self._parent
        span = self._tracer.start_span(self._name, context=parent, attributes=self._attributes)
        self._span = span
        scoped = ScopedSpan()  # see ScopedSpan: no __init__, fields set here
        scoped._span, scoped._fallback, scoped._fields = span, caller, None
        self._scoped = scoped
        values = caller.copy()  # _scope.context_with(), inlined on this hot path
        values[SPAN_KEY] = scoped
        self._token = _attach(Context(values))
        return span

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        span = self._span
        try:
            if span is not None:
                if exc is not None:
                    span.record_exception(exc, escaped=True)
                    span.set_status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}")
                span.end()
        finally:
            if self._scoped is not None:
                self._scoped.close()
            if self._token is not None:
                _detach(self._token)

    async def __aenter__(self) -> Span:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)


class Instrument:
    """Tracks entities and operations of one instrument's pipeline.

    Usually made by `helixobs.setup()`. Constructing it directly wires its own OTLP
    trace pipeline (same arguments as setup()), unless a `tracer_provider` is given,
    in which case spans go to that provider and nothing else is configured.

    Subclasses may fix their instrument by setting the class attribute
    ``INSTRUMENT_ID``; then `instrument_id` is optional.
    """

    INSTRUMENT_ID: ClassVar[str | None] = None

    def __init__(
        self,
        service_name: str = "helixobs",
        *,
        instrument_id: str | None = None,
        endpoint: str | None = None,
        insecure: bool | None = None,
        process_name: str | None = None,
        credential: Credential | None = None,
        auth_endpoint: str | None = None,
        protocol: str | None = None,
        headers: Mapping[str, str] | None = None,
        tracer_provider: TracerProvider | None = None,
        token_source: TokenSource | None = None,
    ) -> None:
        instrument_id = instrument_id or type(self).INSTRUMENT_ID
        if not instrument_id:
            raise ValueError(
                "helixobs: instrument_id is required (e.g. instrument_id='MY_INST'), "
                "unless the instrument class sets INSTRUMENT_ID"
            )
        self.instrument_id: str = instrument_id
        self.service_name = service_name
        self.process_name: str | None = process_name or None
        self._owns_provider = tracer_provider is None
        if tracer_provider is None:
            if token_source is None and credential is not None:
                if not auth_endpoint:
                    raise ValueError(
                        "helixobs: credential given without auth_endpoint "
                        "(e.g. auth_endpoint='http://herald:8080/auth/token')"
                    )
                token_source = TokenSource(instrument_id, credential, auth_endpoint)
                token_source.refresh()  # fail fast: a bad credential is a setup error
            target = resolve_target(endpoint, insecure, "traces", protocol)
            self.target = target
            tracer_provider = TracerProvider(
                resource=build_resource(service_name, instrument_id, self.process_name)
            )
            tracer_provider.add_span_processor(
                ForkSafeSpanProcessor(
                    batch_span_processor_factory(
                        target, token_source, dict(headers) if headers else None
                    )
                )
            )
        self.token_source = token_source
        self._provider = tracer_provider
        # Operation spans carry the instrument ID and process name only when the provider's
        # resource does not already say the same (the wire contract's fallback): an SDK
        # attribute less per operation for each. Creation spans always carry both (the
        # client contract).
        resource = getattr(tracer_provider, "resource", None)
        said = resource.attributes if resource else {}
        self.operation_instrument_id: str | None = (
            None if said.get(A.INSTRUMENT_ID) == self.instrument_id else self.instrument_id
        )
        self.operation_process_name: str | None = (
            None if said.get(A.PROCESS_NAME) == self.process_name else self.process_name
        )
        # A plain attribute, not a property: tokens read it for every span.
        self.tracer: Tracer = tracer_provider.get_tracer(TRACER_NAME)
        self._log_flush: Callable[[int], Any] | None = None

    # --- entity API ----------------------------------------------------------------------
    @property
    def tracer_provider(self) -> TracerProvider:
        return self._provider

    def create(self, stage: str, *, id: IdSpec, parents: ParentsSpec = None) -> Token:  # noqa: A002
        """A token for the creation of entity `id` by `stage` from `parents`.

        `id` and `parents` may be callables (decorator use): they receive the
        decorated function's arguments.
        """
        return Token(self, "create", stage, id, parents)

    def operate(self, operation: str, *, entity_id: IdSpec = None) -> Token:
        """A token for `operation` on an existing entity, always in a new trace.

        Without `entity_id`, call `token.set_entity_id()` once the entity is known.
        """
        return Token(self, "operate", operation, entity_id, None)

    def trace(self, name: str, *, attributes: Mapping[str, Any] | None = None) -> _SpanBlock:
        """A plain span (no entity) for infrastructure work; context manager."""
        attrs: dict[str, Any] = {A.INSTRUMENT_ID: self.instrument_id}
        A.add_attributes(attrs, attributes)
        return _SpanBlock(self.tracer, name, None, attrs)

    def child_span(
        self,
        name: str,
        *,
        parent_id: str | None = None,
        attributes: Mapping[str, Any] | None = None,
    ) -> _SpanBlock:
        """A sub-step span in the current entity's trace, or in `parent_id`'s creation trace."""
        attrs: dict[str, Any] = {A.INSTRUMENT_ID: self.instrument_id}
        parent: Context | None = None
        if parent_id is not None:
            log_entity: str | None = str(parent_id)
            known = REGISTRY.get(str(parent_id))
            if known is not None:
                parent = context_with(NonRecordingSpan(known), Context())
        else:
            log_entity = current_entity_id()
        if log_entity:
            attrs[A.LOG_ENTITY_ID] = log_entity
        A.add_attributes(attrs, attributes)
        return _SpanBlock(self.tracer, name, parent, attrs)

    # --- lifecycle -----------------------------------------------------------------------
    def flush(self, timeout_s: float = 10.0) -> bool:
        """Export everything recorded so far (traces, and logs set up by helixobs)."""
        millis = int(timeout_s * 1000)
        ok = bool(self._provider.force_flush(millis))
        return flush_logs(millis) and ok

    def shutdown(self) -> None:
        """Flush and close this instrument's exporters (only those it created)."""
        self.flush()
        if self._owns_provider:
            self._provider.shutdown()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.instrument_id!r} service={self.service_name!r}>"
