"""Token: one tracked span, usable as context manager, decorator or explicit start/complete."""

from __future__ import annotations

import functools
import inspect
import logging
import threading
from collections.abc import AsyncGenerator, Callable, Generator, Iterable, Mapping
from types import TracebackType
from typing import Any, Literal, Protocol, TypeVar, cast

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanContext, StatusCode, Tracer

from . import _attrs as A
from ._registry import REGISTRY
from ._scope import ScopedSpan, context_with, effective_context, links_for

_log = logging.getLogger("helixobs")

Kind = Literal["create", "operate"]
IdSpec = str | Callable[..., str | None] | None
ParentsSpec = Iterable[str] | str | Callable[..., Iterable[str] | str | None] | None

F = TypeVar("F", bound=Callable[..., Any])


class SpanSource(Protocol):
    """What a Token needs from the `Instrument` that made it.

    Declared here rather than importing `Instrument`, so that token does not depend back
    on instrument (which depends on token).
    """

    @property
    def instrument_id(self) -> str: ...

    @property
    def process_name(self) -> str | None: ...

    @property
    def tracer(self) -> Tracer: ...


_NOT_STARTED = (
    "Token.{method}() called before start(): use the token as a context manager "
    "(`with tel.create(...) as token:`), as a decorator, or call token.start() first"
)


def _normalise_parents(parents: Iterable[str] | str | None) -> list[str]:
    if parents is None:
        return []
    if isinstance(parents, str):
        return [parents] if parents else []
    return [str(p) for p in parents if p is not None and str(p) != ""]


def exception_metadata(exc: BaseException) -> dict[str, str]:
    """The ``helix.error`` attributes recorded for an exception escaping a block."""
    return {"message": type(exc).__name__, "exception.message": str(exc)}


class Token:
    """One entity creation or operation span.

    Obtained from `Instrument.create()` / `Instrument.operate()`. Use it once: as a
    context manager (``with``/``async with``), as a decorator (a fresh token per call),
    or explicitly with `start()` then `complete()`/`error()` from any function or thread.
    """

    __slots__ = (
        "_instrument",
        "_kind",
        "_name",
        "_id_spec",
        "_parents_spec",
        "_entity_id",
        "_parents",
        "_span",
        "_scoped",
        "_started",
        "_finished",
        "_pending",
        "_lock",
        "_scope_token",
    )

    def __init__(
        self,
        instrument: SpanSource,
        kind: Kind,
        name: str,
        entity_id: IdSpec = None,
        parents: ParentsSpec = None,
    ) -> None:
        self._instrument = instrument
        self._kind: Kind = kind
        self._name = name
        self._id_spec = entity_id
        self._parents_spec = parents
        self._entity_id: str | None = None if callable(entity_id) else entity_id
        static_parents = None if callable(parents) else parents
        self._parents: list[str] = _normalise_parents(static_parents)
        self._span: Span | None = None
        self._scoped: ScopedSpan | None = None
        self._started = False
        self._finished = False
        self._pending: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._scope_token: object | None = None

    # --- introspection -------------------------------------------------------------------
    @property
    def entity_id(self) -> str | None:
        return self._entity_id

    @property
    def parents(self) -> list[str]:
        return list(self._parents)

    @property
    def name(self) -> str:
        return self._name

    @property
    def is_operation(self) -> bool:
        return self._kind == "operate"

    @property
    def started(self) -> bool:
        return self._started

    @property
    def finished(self) -> bool:
        return self._finished

    @property
    def span(self) -> Span | None:
        """The underlying OpenTelemetry span (``None`` before `start()`)."""
        return self._span

    @property
    def span_context(self) -> SpanContext | None:
        return None if self._span is None else self._span.get_span_context()

    def __repr__(self) -> str:
        state = "finished" if self._finished else "started" if self._started else "new"
        return f"<Token {self._kind} {self._name!r} id={self._entity_id!r} {state}>"

    # --- lifecycle -----------------------------------------------------------------------
    def start(self) -> Token:
        """Start the span now and make it current in the calling context.

        The span stays current there until it is completed (in any order, from any
        thread); after that the context falls back to the enclosing live span.
        """
        ctx = self._begin()
        otel_context.attach(ctx)
        return self

    def _resolve_static_specs(self) -> None:
        # Callable id/parents without call arguments (context manager or explicit use).
        if callable(self._id_spec):
            try:
                value = self._id_spec()
            except TypeError as exc:
                raise TypeError(
                    f"{self._kind}({self._name!r}): a callable id/entity_id needs the decorated "
                    "function's arguments; use the token as a decorator or pass a plain string"
                ) from exc
            self._entity_id = None if value is None else str(value)
        if callable(self._parents_spec):
            try:
                self._parents = _normalise_parents(self._parents_spec())
            except TypeError as exc:
                raise TypeError(
                    f"{self._kind}({self._name!r}): callable parents need the decorated "
                    "function's arguments; use the token as a decorator or pass a list"
                ) from exc

    def _begin(self) -> Context:
        """Start the span; return the context that makes it current (not attached)."""
        with self._lock:
            if self._started:
                raise RuntimeError(
                    f"Token for {self._kind}({self._name!r}) was already started; "
                    "a token tracks exactly one span (the decorator makes a fresh one per call)"
                )
            self._started = True
        self._resolve_static_specs()
        inst = self._instrument
        caller_ctx = effective_context()
        attributes: dict[str, Any] = {}
        links = None
        if self._kind == "create":
            if self._entity_id is None or str(self._entity_id) == "":
                self._started = False
                raise ValueError(f"create({self._name!r}) needs a non-empty id")
            self._entity_id = str(self._entity_id)
            attributes[A.ENTITY_ID] = self._entity_id
            attributes[A.INSTRUMENT_ID] = inst.instrument_id
            if self._parents:
                attributes[A.PARENT_IDS] = ",".join(self._parents)
            known = [sc for sc in map(REGISTRY.get, self._parents) if sc is not None]
            links = links_for(known) if known else None
            parent_ctx = caller_ctx
        else:
            if self._entity_id is not None and str(self._entity_id) != "":
                self._entity_id = str(self._entity_id)
                attributes[A.ENTITY_ID] = self._entity_id
            else:
                self._entity_id = None
            attributes[A.INSTRUMENT_ID] = inst.instrument_id
            if self._entity_id is not None:
                attributes[A.IS_OPERATION] = "true"
            # Operations are always their own trace.
            parent_ctx = Context()
        if inst.process_name:
            attributes[A.PROCESS_NAME] = inst.process_name
        if self._pending:
            attributes.update(self._pending)
            self._pending.clear()
        span = inst.tracer.start_span(
            self._name, context=parent_ctx, attributes=attributes, links=links
        )
        self._span = span
        if self._kind == "create":
            REGISTRY.put(cast(str, self._entity_id), span.get_span_context())
        ctx, self._scoped = context_with(span, caller_ctx)
        return ctx

    def complete(self, metadata: Mapping[str, Any] | None = None) -> None:
        """End the span successfully; `metadata` becomes span attributes (types kept)."""
        self._finish(metadata, error=None)

    def error(self, metadata: Mapping[str, Any] | None = None) -> None:
        """Record a ``helix.error`` event with `metadata`, set status ERROR and end the span."""
        self._finish(None, error=dict(metadata or {}))

    def _finish(
        self,
        metadata: Mapping[str, Any] | None,
        error: Mapping[str, Any] | None,
        exc: BaseException | None = None,
    ) -> None:
        with self._lock:
            if not self._started:
                method = "complete" if error is None else "error"
                raise RuntimeError(_NOT_STARTED.format(method=method))
            if self._finished:
                return
            self._finished = True
        span = cast(Span, self._span)
        if metadata:
            span.set_attributes(A.to_attributes(metadata))
        if error is not None:
            if exc is not None:
                span.record_exception(exc, escaped=True)
            self._record_error(span, error)
        if self._kind == "operate" and self._entity_id is None:
            _log.warning(
                "operation %r ended without entity_id; exported as a plain span "
                "(no operation is recorded)",
                self._name,
            )
        span.end()
        scoped = cast(ScopedSpan, self._scoped)
        scoped.close()
        if self._scope_token is None and trace.get_current_span() is scoped:
            # Explicit API finished in the context that started it: drop the wrapper there
            # too, so contexts do not accumulate closed wrappers.
            otel_context.attach(effective_context())

    @staticmethod
    def _record_error(span: Span, metadata: Mapping[str, Any]) -> None:
        attrs = A.to_attributes(metadata)
        span.add_event(A.ERROR_EVENT, attributes=attrs)
        message = metadata.get("message") or metadata.get("exception.message")
        span.set_status(StatusCode.ERROR, None if message is None else str(message))

    def add_error(self, metadata: Mapping[str, Any] | None = None) -> None:
        """Record a ``helix.error`` event and status ERROR; the span stays open."""
        span = self._live_span("add_error")
        if span is not None:
            self._record_error(span, dict(metadata or {}))

    def add_event(self, name: str, attributes: Mapping[str, Any] | None = None) -> None:
        """Add a span event (``helix.event.*`` names become entity events); types kept."""
        span = self._live_span("add_event")
        if span is not None:
            span.add_event(name, attributes=A.to_attributes(attributes))

    def set_attribute(self, key: str, value: Any) -> None:
        """Attach metadata to the span (before start it is buffered until the span starts)."""
        converted = A.to_attribute(value)
        if converted is None:
            return
        with self._lock:
            if not self._started:
                self._pending[str(key)] = converted
                return
        span = self._live_span("set_attribute")
        if span is not None:
            span.set_attribute(str(key), converted)

    def set_entity_id(self, entity_id: str) -> None:
        """Name the entity once it is known (deferred ID); later logs carry it."""
        if entity_id is None or str(entity_id) == "":
            raise ValueError("set_entity_id() needs a non-empty entity id")
        entity_id = str(entity_id)
        with self._lock:
            if self._finished:
                _log.debug("set_entity_id(%r) on a finished token ignored", entity_id)
                return
            self._entity_id = entity_id
            self._id_spec = entity_id
            if not self._started:
                return
        span = cast(Span, self._span)
        span.set_attribute(A.ENTITY_ID, entity_id)
        if self._kind == "operate":
            span.set_attribute(A.IS_OPERATION, "true")
        else:
            REGISTRY.put(entity_id, span.get_span_context())

    def _live_span(self, method: str) -> Span | None:
        if not self._started:
            raise RuntimeError(_NOT_STARTED.format(method=method))
        if self._finished:
            _log.debug("Token.%s() after completion ignored (%r)", method, self)
            return None
        return self._span

    # --- context manager -----------------------------------------------------------------
    def __enter__(self) -> Token:
        ctx = self._begin()
        self._scope_token = otel_context.attach(ctx)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if exc is not None:
                self._finish(None, error=exception_metadata(exc), exc=exc)
            else:
                self._finish(None, error=None)
        finally:
            scope_token = self._scope_token
            if scope_token is not None:
                otel_context.detach(scope_token)  # type: ignore[arg-type]

    async def __aenter__(self) -> Token:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)

    # --- decorator -----------------------------------------------------------------------
    def _spawn(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Token:
        entity_id = self._id_spec(*args, **kwargs) if callable(self._id_spec) else self._id_spec
        parents = (
            self._parents_spec(*args, **kwargs)
            if callable(self._parents_spec)
            else self._parents_spec
        )
        return Token(
            self._instrument,
            self._kind,
            self._name,
            None if entity_id is None else str(entity_id),
            _normalise_parents(parents),
        )

    def __call__(self, fn: F) -> F:
        """Decorate `fn`: every call is tracked by a fresh token (id/parents from its args)."""
        if self._started:
            raise RuntimeError("a started Token cannot be used as a decorator")
        if inspect.isasyncgenfunction(fn):
            return cast(F, self._wrap_async_gen(fn))
        if inspect.isgeneratorfunction(fn):
            return cast(F, self._wrap_gen(fn))
        if inspect.iscoroutinefunction(fn):
            return cast(F, self._wrap_coroutine(fn))
        return cast(F, self._wrap_sync(fn))

    def _wrap_sync(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with self._spawn(args, kwargs):
                return fn(*args, **kwargs)

        return wrapper

    def _wrap_coroutine(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            # The span covers the awaited execution, not just coroutine creation.
            async with self._spawn(args, kwargs):
                return await fn(*args, **kwargs)

        return wrapper

    def _wrap_gen(self, fn: Callable[..., Generator[Any, Any, Any]]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
            token = self._spawn(args, kwargs)
            return _traced_generator(token, fn(*args, **kwargs))

        return wrapper

    def _wrap_async_gen(self, fn: Callable[..., AsyncGenerator[Any, Any]]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> AsyncGenerator[Any, Any]:
            token = self._spawn(args, kwargs)
            return _traced_async_generator(token, fn(*args, **kwargs))

        return wrapper


def _traced_generator(token: Token, gen: Generator[Any, Any, Any]) -> Generator[Any, Any, Any]:
    """Drive `gen` with the token's span current only while the generator body runs.

    Making it current across a ``yield`` would leak it into the consumer's context.
    """
    ctx = token._begin()
    to_send: Any = None
    to_throw: BaseException | None = None
    while True:
        scope = otel_context.attach(ctx)
        try:
            item = gen.throw(to_throw) if to_throw is not None else gen.send(to_send)
        except StopIteration as stop:
            token._finish(None, error=None)
            return stop.value
        except BaseException as exc:
            token._finish(None, error=exception_metadata(exc), exc=exc)
            raise
        finally:
            otel_context.detach(scope)
        to_send, to_throw = None, None
        try:
            to_send = yield item
        except GeneratorExit:
            # Consumer stopped early: close the body under the span, count it as done.
            scope = otel_context.attach(ctx)
            try:
                gen.close()
            finally:
                otel_context.detach(scope)
                token._finish(None, error=None)
            raise
        except BaseException as exc:
            to_throw = exc


async def _traced_async_generator(
    token: Token, agen: AsyncGenerator[Any, Any]
) -> AsyncGenerator[Any, Any]:
    """Async twin of `_traced_generator`."""
    ctx = token._begin()
    to_send: Any = None
    to_throw: BaseException | None = None
    while True:
        scope = otel_context.attach(ctx)
        try:
            if to_throw is not None:
                item = await agen.athrow(to_throw)
            else:
                item = await agen.asend(to_send)
        except StopAsyncIteration:
            token._finish(None, error=None)
            return
        except BaseException as exc:
            token._finish(None, error=exception_metadata(exc), exc=exc)
            raise
        finally:
            otel_context.detach(scope)
        to_send, to_throw = None, None
        try:
            to_send = yield item
        except GeneratorExit:
            scope = otel_context.attach(ctx)
            try:
                await agen.aclose()
            finally:
                otel_context.detach(scope)
                token._finish(None, error=None)
            raise
        except BaseException as exc:
            to_throw = exc
