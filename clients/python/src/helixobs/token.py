"""Token: one tracked span, usable as context manager, decorator or explicit start/complete."""

from __future__ import annotations

import functools
import inspect
import logging
import os
import threading
from collections.abc import AsyncGenerator, Callable, Generator, Iterable, Mapping
from contextvars import Token as CvToken
from types import MappingProxyType, TracebackType
from typing import Any, Literal, Protocol, TypeVar, cast

from opentelemetry.context import Context
from opentelemetry.sdk.trace import Event as _Event
from opentelemetry.sdk.trace import Span as _SDKSpan
from opentelemetry.trace import Span, SpanContext, SpanKind, StatusCode, Tracer

from . import _attrs as A
from ._attrs import (
    ENTITY_ID,
    INSTRUMENT_ID,
    IS_OPERATION,
    LOG_FIELD_KEYS,
    PARENT_IDS,
    PROCESS_NAME,
    SCALAR_TYPES,
)
from ._registry import REGISTRY
from ._scope import SPAN_KEY, ScopedSpan, effective_context
from ._scope import attach as _attach
from ._scope import detach as _detach
from ._scope import get_current as _get_current
from ._scope import reset as _reset

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
    def operation_instrument_id(self) -> str | None: ...

    @property
    def operation_process_name(self) -> str | None: ...

    @property
    def tracer(self) -> Tracer: ...


# Guards every token's started flag and its pre-start attribute buffer: the critical
# sections are a few attribute reads, so one lock beats allocating one per token.
# (Completion needs no lock: it pops the token's one-item `_open` list.)
# A thread may hold it at fork time; the child gets a fresh one.
_LOCK = threading.Lock()


def _reinit_lock_after_fork() -> None:
    global _LOCK
    _LOCK = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reinit_lock_after_fork)

# Operations start a new trace: their parent is the empty context (immutable, so shared).
_ROOT_CONTEXT = Context()
_INTERNAL = SpanKind.INTERNAL

_NOT_STARTED = (
    "Token.{method}() called before start(): use the token as a context manager "
    "(`with tel.create(...) as token:`), as a decorator, or call token.start() first"
)


def _normalise_parents(parents: Iterable[str] | str | None) -> list[str]:
    if parents is None:
        return []
    if isinstance(parents, str):
        return [parents] if parents else []
    out = []
    for p in parents:
        if type(p) is not str:
            if p is None:
                continue
            p = str(p)
        if p:
            out.append(p)
    return out


def _parents_of(parents: Iterable[str] | str | None) -> tuple[tuple[str, ...], str]:
    """The parent IDs as non-empty strings, and comma-joined (``helix.parent.ids``).

    The usual list of strings costs a copy and a join: the join checks the types.
    """
    if parents is None:
        return (), ""
    if isinstance(parents, str):
        return ((parents,), parents) if parents else ((), "")
    ids = tuple(parents)
    try:
        joined: str | None = ",".join(ids)
    except TypeError:  # not all strings
        joined = None
    if joined is None or "" in ids:
        ids = tuple(_normalise_parents(ids))
        joined = ",".join(ids)
    return ids, joined


def exception_metadata(exc: BaseException) -> dict[str, str]:
    """The ``helix.error`` attributes recorded for an exception escaping a block."""
    return {"message": type(exc).__name__, "exception.message": str(exc)}


def _open_span(
    inst: SpanSource,
    kind: Kind,
    name: str,
    entity_id: Any,
    parents: tuple[str, ...],
    joined: str,
    pending: dict[str, Any] | None,
) -> tuple[Span, ScopedSpan, Context, str | None]:
    """Start the span of a creation or operation in the current context.

    Returns the span, its wrapper, the context that makes it current (not attached) and the
    entity ID as recorded (a string, or None for an operation without one yet). Shared by
    tokens and the per-call path of decorated functions.
    """
    caller_ctx = _get_current()
    current = caller_ctx.get(SPAN_KEY)
    if type(current) is ScopedSpan and current._span is None:  # closed
        caller_ctx = effective_context(caller_ctx)
    if entity_id is not None and type(entity_id) is not str:
        entity_id = str(entity_id)
    links = None
    if kind == "create":
        if not entity_id:
            raise ValueError(f"create({name!r}) needs a non-empty id")
        if parents:
            attributes: dict[str, Any] = {
                ENTITY_ID: entity_id,
                INSTRUMENT_ID: inst.instrument_id,
                PARENT_IDS: joined,
            }
            links = REGISTRY.links_to(parents)
        else:
            attributes = {ENTITY_ID: entity_id, INSTRUMENT_ID: inst.instrument_id}
        process_name = inst.process_name
        if process_name:
            attributes[PROCESS_NAME] = process_name
        parent_ctx = caller_ctx
    else:
        if entity_id:
            attributes = {ENTITY_ID: entity_id, IS_OPERATION: "true"}
        else:
            entity_id = None
            attributes = {}
        instrument_id = inst.operation_instrument_id
        if instrument_id:
            attributes[INSTRUMENT_ID] = instrument_id
        parent_ctx = _ROOT_CONTEXT  # operations are always their own trace
        process_name = inst.operation_process_name
        if process_name:
            attributes[PROCESS_NAME] = process_name
    if pending:
        attributes.update(pending)
    span = inst.tracer.start_span(name, parent_ctx, _INTERNAL, attributes, links)
    if entity_id is not None and kind == "create":
        REGISTRY.put(entity_id, span.get_span_context())
    scoped = ScopedSpan()  # see ScopedSpan: no __init__, fields set here
    scoped._span, scoped._fallback, scoped._fields = span, caller_ctx, None
    values = caller_ctx.copy()  # _scope.context_with(), inlined on this hot path
    values[SPAN_KEY] = scoped
    return span, scoped, Context(values), entity_id


def _record_error(span: Span, metadata: Mapping[str, Any]) -> None:
    attrs = A.to_attributes(metadata)
    span.add_event(A.ERROR_EVENT, attributes=attrs)
    message = metadata.get("message") or metadata.get("exception.message")
    span.set_status(StatusCode.ERROR, None if message is None else str(message))


def _record_exception(span: Span, exc: BaseException) -> None:
    """What an exception escaping a block leaves on its span."""
    span.record_exception(exc, escaped=True)
    _record_error(span, exception_metadata(exc))


def _warn_without_entity(name: str) -> None:
    _log.warning(
        "operation %r ended without entity_id; exported as a plain span (no operation is recorded)",
        name,
    )


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
        "_dynamic",
        "_entity_id",
        "_parents",
        "_joined",
        "_span",
        "_scoped",
        "_started",
        "_finished",
        "_open",
        "_pending",
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
        # _dynamic: whether start() must call a spec first (checked again there:
        # set_entity_id may have replaced it).
        if callable(entity_id):
            self._entity_id: str | None = None
            dynamic = True
        else:
            self._entity_id = entity_id
            dynamic = False
        if parents is None or callable(parents):
            self._parents: tuple[str, ...] = ()
            self._joined = ""
            dynamic = dynamic or parents is not None
        elif (type(parents) is list or type(parents) is tuple) and "" not in parents:
            # The usual case, inline: the join checks that they are all strings.
            ids = tuple(parents)
            try:
                self._joined = ",".join(ids)
                self._parents = ids
            except TypeError:
                self._parents, self._joined = _parents_of(ids)
        else:
            self._parents, self._joined = _parents_of(parents)
        self._dynamic = dynamic
        self._span: Span | None = None
        self._scoped: ScopedSpan | None = None
        self._started = False
        self._finished = False
        self._pending: dict[str, Any] | None = None
        self._scope_token: CvToken[Context] | None = None

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
        """The underlying OpenTelemetry span (``None`` before `start()`).

        Write attributes through the token (`set_attribute`, `set_entity_id`) rather than
        on this span, so that log records see a changed ``helix.*`` identity at once.
        """
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
        _attach(ctx)
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
                self._parents, self._joined = _parents_of(self._parents_spec())
            except TypeError as exc:
                raise TypeError(
                    f"{self._kind}({self._name!r}): callable parents need the decorated "
                    "function's arguments; use the token as a decorator or pass a list"
                ) from exc

    def _begin(self) -> Context:
        """Start the span; return the context that makes it current (not attached)."""
        lock = _LOCK
        lock.acquire()
        started = self._started
        if not started:
            self._open = [None]  # before `_started`: a completion pops it (see `_finish`)
            self._started = True
        lock.release()
        if started:
            raise RuntimeError(
                f"Token for {self._kind}({self._name!r}) was already started; "
                "a token tracks exactly one span (the decorator makes a fresh one per call)"
            )
        if self._dynamic:
            self._resolve_static_specs()
        pending, self._pending = self._pending, None
        try:
            span, scoped, ctx, self._entity_id = _open_span(
                self._instrument,
                self._kind,
                self._name,
                self._entity_id,
                self._parents,
                self._joined,
                pending,
            )
        except ValueError:  # no entity ID for a creation: the token did not start
            self._started = False
            raise
        self._span, self._scoped = span, scoped
        return ctx

    def complete(self, metadata: Mapping[str, Any] | None = None) -> None:
        """End the span successfully; `metadata` becomes span attributes (types kept)."""
        self._finish(metadata, None)

    def error(self, metadata: Mapping[str, Any] | None = None) -> None:
        """Record a ``helix.error`` event with `metadata`, set status ERROR and end the span."""
        self._finish(None, dict(metadata or {}))

    def _finish(
        self,
        metadata: Mapping[str, Any] | None,
        error: Mapping[str, Any] | None,
        exc: BaseException | None = None,
    ) -> None:
        if not self._started:
            method = "complete" if error is None else "error"
            raise RuntimeError(_NOT_STARTED.format(method=method))
        try:
            # One C call, atomic: of two completions (any threads) exactly one gets on.
            self._open.pop()
        except IndexError:
            return  # finished already
        self._finished = True
        span, scoped = self._span, self._scoped
        if span is None or scoped is None:  # start() failed half-way (its error was raised)
            return
        if metadata:
            attrs = A.to_attributes(metadata)
            if not LOG_FIELD_KEYS.isdisjoint(attrs):
                scoped.invalidate_fields()
            span.set_attributes(attrs)
        if error is not None:
            if exc is not None:
                span.record_exception(exc, escaped=True)
            _record_error(span, error)
        if self._entity_id is None and self._kind == "operate":
            _warn_without_entity(self._name)
        span.end()
        scoped.close()
        if self._scope_token is None and _get_current().get(SPAN_KEY) is scoped:
            # Explicit API finished in the context that started it: drop the wrapper there
            # too, so contexts do not accumulate closed wrappers (what was current before
            # it, itself peeled of closed wrappers).
            _attach(effective_context(scoped._fallback))

    def add_error(self, metadata: Mapping[str, Any] | None = None) -> None:
        """Record a ``helix.error`` event and status ERROR; the span stays open."""
        span = self._live_span("add_error")
        if span is not None:
            _record_error(span, dict(metadata or {}))

    def add_event(self, name: str, attributes: Mapping[str, Any] | None = None) -> None:
        """Add a span event (``helix.event.*`` names become entity events); types kept."""
        span = self._span
        if span is None or self._finished:
            span = self._live_span("add_event")
            if span is None:
                return
        if not attributes:
            span.add_event(name, {})
            return
        if type(attributes) is dict:
            # String keys and plain scalars need no conversion; anything else takes the
            # converting path.
            for key, value in attributes.items():
                if type(key) is not str or type(value) not in SCALAR_TYPES:
                    attributes = A.to_attributes(attributes)
                    break
        else:
            attributes = A.to_attributes(attributes)
        if isinstance(span, _SDKSpan):
            # The attributes are clean now (checked or converted above), so when the span's
            # limits cannot cut them the SDK's own event is built directly: the same Event
            # on the same span, without validating every value a second time.
            limits = span._limits
            most = limits.max_event_attributes
            if (
                limits.max_attribute_length is None
                and (most is None or len(attributes) <= most)
                and "" not in attributes
            ):
                span._add_event(_Event(name, MappingProxyType(dict(attributes))))
                return
        span.add_event(name, attributes)

    def set_attribute(self, key: str, value: Any) -> None:
        """Attach metadata to the span (before start it is buffered until the span starts)."""
        converted = A.to_attribute(value)
        if converted is None:
            return
        if type(key) is not str:
            key = str(key)
        span = self._span
        if span is None:
            with _LOCK:
                if not self._started:
                    if self._pending is None:
                        self._pending = {}
                    self._pending[key] = converted
                    return
            span = self._live_span("set_attribute")
            if span is None:
                return
        elif self._finished:
            self._live_span("set_attribute")
            return
        if key in LOG_FIELD_KEYS and self._scoped is not None:
            self._scoped.invalidate_fields()
        span.set_attribute(key, converted)

    def set_entity_id(self, entity_id: str) -> None:
        """Name the entity once it is known (deferred ID); later logs carry it."""
        if entity_id is None or str(entity_id) == "":
            raise ValueError("set_entity_id() needs a non-empty entity id")
        entity_id = str(entity_id)
        with _LOCK:
            if self._finished:
                _log.debug("set_entity_id(%r) on a finished token ignored", entity_id)
                return
            self._entity_id = entity_id
            self._id_spec = entity_id
            if not self._started:
                return
        span = cast(Span, self._span)
        span.set_attribute(ENTITY_ID, entity_id)
        if self._kind == "operate":
            span.set_attribute(IS_OPERATION, "true")
        else:
            REGISTRY.put(entity_id, span.get_span_context())
        cast(ScopedSpan, self._scoped).invalidate_fields()

    def _live_span(self, method: str) -> Span | None:
        if not self._started:
            raise RuntimeError(_NOT_STARTED.format(method=method))
        if self._finished:
            _log.debug("Token.%s() after completion ignored (%r)", method, self)
            return None
        return self._span

    # --- context manager -----------------------------------------------------------------
    def __enter__(self) -> Token:
        self._scope_token = _attach(self._begin())
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if exc is not None:
                self._finish(None, exception_metadata(exc), exc)
                return
            # `_finish(None, None)` inlined: this is the path of every `with` block.
            if not self._started:
                raise RuntimeError(_NOT_STARTED.format(method="complete"))
            try:
                self._open.pop()
            except IndexError:
                return  # finished already
            self._finished = True
            span, scoped = self._span, self._scoped
            if span is None or scoped is None:
                return
            if self._entity_id is None and self._kind == "operate":
                _warn_without_entity(self._name)
            span.end()
            scoped._span = scoped._fields = None  # scoped.close(), inlined
        finally:
            scope_token = self._scope_token
            if scope_token is not None:
                try:  # _detach(scope_token), without its call on this hot path
                    _reset(scope_token)
                except Exception:
                    _detach(scope_token)

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
        id_spec = self._id_spec
        entity_id = id_spec(*args, **kwargs) if callable(id_spec) else id_spec
        parents_spec = self._parents_spec
        # Static parents were normalised at decoration time (an immutable tuple).
        if callable(parents_spec):
            parents = parents_spec(*args, **kwargs)
        else:
            parents = self._parents or None
        if entity_id is not None and type(entity_id) is not str:
            entity_id = str(entity_id)
        return Token(self._instrument, self._kind, self._name, entity_id, parents)

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

    def _call_span(
        self, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[Span, ScopedSpan, Context, str | None]:
        """Open the span of one call of a decorated function (see `_open_span`).

        Plain functions and coroutines need no per-call Token: nothing else can reach it.
        """
        id_spec = self._id_spec
        entity_id = id_spec(*args, **kwargs) if callable(id_spec) else id_spec
        parents_spec = self._parents_spec
        if callable(parents_spec):
            parents, joined = _parents_of(parents_spec(*args, **kwargs))
        else:
            # Static parents were normalised at decoration time.
            parents, joined = self._parents, self._joined
        inst, kind, name = self._instrument, self._kind, self._name
        return _open_span(inst, kind, name, entity_id, parents, joined, None)

    def _wrap_sync(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        call_span, kind, name = self._call_span, self._kind, self._name

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            # What `with <fresh token>: return fn(...)` does, without the token.
            span, scoped, ctx, entity_id = call_span(args, kwargs)
            scope = _attach(ctx)
            try:
                try:
                    return fn(*args, **kwargs)
                except BaseException as exc:
                    _record_exception(span, exc)
                    raise
                finally:
                    if entity_id is None and kind == "operate":
                        _warn_without_entity(name)
                    span.end()
                    scoped.close()
            finally:
                try:  # _detach(scope), without its call on this hot path
                    _reset(scope)
                except Exception:
                    _detach(scope)

        return wrapper

    def _wrap_coroutine(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        call_span, kind, name = self._call_span, self._kind, self._name

        @functools.wraps(fn)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            # The span covers the awaited execution, not just coroutine creation; it is
            # current in this coroutine's context while it runs, as in `_wrap_sync`.
            span, scoped, ctx, entity_id = call_span(args, kwargs)
            scope = _attach(ctx)
            try:
                try:
                    return await fn(*args, **kwargs)
                except BaseException as exc:
                    _record_exception(span, exc)
                    raise
                finally:
                    if entity_id is None and kind == "operate":
                        _warn_without_entity(name)
                    span.end()
                    scoped.close()
            finally:
                try:  # _detach(scope), without its call on this hot path
                    _reset(scope)
                except Exception:
                    _detach(scope)

        return wrapper

    def _wrap_gen(self, fn: Callable[..., Generator[Any, Any, Any]]) -> Callable[..., Any]:
        spawn = self._spawn

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
            token = spawn(args, kwargs)
            return _traced_generator(token, fn(*args, **kwargs))

        return wrapper

    def _wrap_async_gen(self, fn: Callable[..., AsyncGenerator[Any, Any]]) -> Callable[..., Any]:
        spawn = self._spawn

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> AsyncGenerator[Any, Any]:
            token = spawn(args, kwargs)
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
        scope = _attach(ctx)
        try:
            item = gen.throw(to_throw) if to_throw is not None else gen.send(to_send)
        except StopIteration as stop:
            token._finish(None, None)
            return stop.value
        except BaseException as exc:
            token._finish(None, exception_metadata(exc), exc)
            raise
        finally:
            _detach(scope)
        to_send, to_throw = None, None
        try:
            to_send = yield item
        except GeneratorExit:
            # Consumer stopped early: close the body under the span, count it as done.
            scope = _attach(ctx)
            try:
                gen.close()
            finally:
                _detach(scope)
                token._finish(None, None)
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
        scope = _attach(ctx)
        try:
            if to_throw is not None:
                item = await agen.athrow(to_throw)
            else:
                item = await agen.asend(to_send)
        except StopAsyncIteration:
            token._finish(None, None)
            return
        except BaseException as exc:
            token._finish(None, exception_metadata(exc), exc)
            raise
        finally:
            _detach(scope)
        to_send, to_throw = None, None
        try:
            to_send = yield item
        except GeneratorExit:
            scope = _attach(ctx)
            try:
                await agen.aclose()
            finally:
                _detach(scope)
                token._finish(None, None)
            raise
        except BaseException as exc:
            to_throw = exc
