"""Logging integration: context fields on every record, JSON-lines or OTLP log output."""

from __future__ import annotations

import datetime as _dt
import functools
import json
import logging
import os
import sys
import threading
import warnings
from collections.abc import Callable
from typing import Any

from ._auth import TokenSource
from ._export import batch_log_processor_factory, fork_safe_log_processor, resolve_target
from ._resource import build_resource
from ._scope import current_log_fields

FIELDS = (
    "helix_entity_id",
    "helix_instrument_id",
    "helix_process_name",
    "otel_trace_id",
    "otel_span_id",
    "helix_source",
)

_EMPTY = ("", "", "", "", "")


class _Defaults:
    """Instrument and process of this process, used when the active span lacks them."""

    instrument_id: str = ""
    process_name: str = ""


DEFAULTS = _Defaults()


def set_defaults(instrument_id: str | None, process_name: str | None) -> None:
    DEFAULTS.instrument_id = instrument_id or ""
    DEFAULTS.process_name = process_name or ""


def span_fields() -> tuple[str, str, str, str, str]:
    """(entity, instrument, process, trace id, span id) of the active span, or all ""."""
    fields = current_log_fields()
    if fields is None:
        return _EMPTY
    entity, instrument, process, trace_id, span_id = fields
    return (
        entity,
        instrument or DEFAULTS.instrument_id,
        process or DEFAULTS.process_name,
        trace_id,
        span_id,
    )


def _relative(pathname: str, cwd: str) -> str:
    try:
        rel = os.path.relpath(pathname, cwd)
    except ValueError:
        return pathname
    return pathname if rel.startswith("..") else rel


def _source(pathname: str, lineno: int, cwd: str, repo: str | None, sha: str | None) -> str:
    path = _relative(pathname, cwd).replace(os.sep, "/")
    if repo and sha:
        base = repo if "://" in repo else f"https://github.com/{repo.strip('/')}"
        return f"{base.rstrip('/')}/blob/{sha}/{path.lstrip('/')}#L{lineno}"
    return f"{path}#L{lineno}"


def _env_reader(name: str) -> Callable[[], str | None]:
    """A zero-argument `os.environ.get(name)`, cheap enough to call on every log record.

    `os.environ.get` encodes the key and, for a missing variable, raises and catches a
    KeyError: about 0.5 µs. The mapping's own store (CPython's ``os._Environ._data``, the
    dict every ``os.environ[...] =`` / ``del`` / ``monkeypatch.setenv`` updates) answers
    the same question with one dict look-up. Elsewhere, the public call.
    """
    environ = os.environ
    data = getattr(environ, "_data", None)
    if not isinstance(data, dict):
        return functools.partial(environ.get, name)
    key = environ.encodekey(name)
    decode = environ.decodevalue
    lookup = data.get

    def read() -> str | None:
        raw = lookup(key)
        return None if raw is None else decode(raw)

    return read


_github_repo = _env_reader("GITHUB_REPO")
_git_commit_sha = _env_reader("GIT_COMMIT_SHA")
_getcwd = os.getcwd

_SOURCE_CACHE_MAX = 4096
# ((cwd, GITHUB_REPO, GIT_COMMIT_SHA), {(pathname, lineno): source}): replaced as a whole
# when any of the three changes, so a thread racing the change fills the old dict only.
_sources: tuple[tuple[str, str | None, str | None], dict[tuple[str, int], str]] = (
    ("", None, None),
    {},
)


def source_of(pathname: str, lineno: int) -> str:
    """``path#Lline``, or a GitHub permalink when GITHUB_REPO and GIT_COMMIT_SHA are set.

    The working directory and both variables are read on every call, so changes at run
    time are honoured; the string itself is built once per call site.
    """
    global _sources
    setting = (_getcwd(), _github_repo(), _git_commit_sha())
    current = _sources
    if current[0] != setting:
        current = _sources = (setting, {})
    cache = current[1]
    key = (pathname, lineno)
    found = cache.get(key)
    if found is None:
        found = _source(pathname, lineno, *setting)
        if len(cache) >= _SOURCE_CACHE_MAX:
            cache.clear()
        cache[key] = found
    return found


_factory_lock = threading.Lock()


def install_context_fields() -> None:
    """Add the helix/OTel context fields to every log record created from now on.

    Idempotent. Records created outside any span get empty strings. The message is
    left untouched.
    """
    with _factory_lock:
        previous = logging.getLogRecordFactory()
        if getattr(previous, "_helixobs", False):
            return
        defaults = DEFAULTS

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            fields = current_log_fields()
            if fields is None:
                record.helix_entity_id = ""
                record.helix_instrument_id = ""
                record.helix_process_name = ""
                record.otel_trace_id = ""
                record.otel_span_id = ""
            else:
                entity, instrument, process, trace_id, span_id = fields
                record.helix_entity_id = entity
                record.helix_instrument_id = instrument or defaults.instrument_id
                record.helix_process_name = process or defaults.process_name
                record.otel_trace_id = trace_id
                record.otel_span_id = span_id
            record.helix_source = source_of(record.pathname, record.lineno)
            return record

        factory._helixobs = True  # type: ignore[attr-defined]
        logging.setLogRecordFactory(factory)


# Attributes every LogRecord has; anything else on a record came from `extra=`.
_RESERVED = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
    *FIELDS,
}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts, level, logger, msg, the context fields, exc, extras."""

    def format(self, record: logging.LogRecord) -> str:
        ts = _dt.datetime.fromtimestamp(record.created, tz=_dt.UTC)
        out: dict[str, Any] = {
            "ts": ts.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for name in FIELDS:
            out[name] = getattr(record, name, "")
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exc"] = record.exc_text
        else:
            out["exc"] = None
        for key, value in vars(record).items():
            if key not in _RESERVED and key not in out:
                out[key] = value
        return json.dumps(out, default=str, ensure_ascii=False)


class _StdoutHandler(logging.Handler):
    """Writes to whatever `sys.stdout` is at emit time (so redirection keeps working)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
            stream = sys.stdout
            stream.write(line + "\n")
            stream.flush()
        except Exception:  # noqa: BLE001 - logging must never raise into the caller
            self.handleError(record)


class _State:
    handler: logging.Handler | None = None
    logger_provider: Any = None


_STATE = _State()
_config_lock = threading.Lock()


def _otlp_handler(
    service_name: str | None,
    endpoint: str | None,
    insecure: bool | None,
    protocol: str | None,
    instrument_id: str | None,
    process_name: str | None,
    token_source: TokenSource | None,
) -> tuple[logging.Handler, Any]:
    # Only OTLP log output loads the SDK's (still underscored) log pipeline.
    from opentelemetry import _logs
    from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler

    target = resolve_target(endpoint, insecure, "logs", protocol)
    provider = LoggerProvider(
        resource=build_resource(service_name or "helixobs", instrument_id, process_name)
    )
    provider.add_log_record_processor(
        fork_safe_log_processor(batch_log_processor_factory(target, token_source))
    )
    if type(_logs.get_logger_provider()).__name__ in ("ProxyLoggerProvider", "NoOpLoggerProvider"):
        # Lets other OTel log bridges in the process share this pipeline.
        _logs.set_logger_provider(provider)
    with warnings.catch_warnings():
        # The SDK handler is deprecated in favour of a contrib package we do not depend on.
        warnings.simplefilter("ignore", DeprecationWarning)
        handler = LoggingHandler(logger_provider=provider)
    return handler, provider


def configure_logging(
    *,
    otlp: bool = False,
    service_name: str | None = None,
    endpoint: str | None = None,
    insecure: bool | None = None,
    protocol: str | None = None,
    instrument_id: str | None = None,
    process_name: str | None = None,
    token_source: TokenSource | None = None,
    level: int | None = None,
) -> logging.Handler:
    """Route the root logger to JSON lines on stdout, or to OTLP when `otlp` is true.

    Idempotent: a second call replaces the handler installed by the first, never adds
    another. The context fields are installed as well. `endpoint` defaults to
    OTEL_EXPORTER_OTLP_LOGS_ENDPOINT / OTEL_EXPORTER_OTLP_ENDPOINT. The root level is
    lowered to INFO when it is still Python's default (WARNING), unless `level` is given.
    """
    install_context_fields()
    if instrument_id is not None or process_name is not None:
        set_defaults(instrument_id or DEFAULTS.instrument_id, process_name or DEFAULTS.process_name)
    with _config_lock:
        root = logging.getLogger()
        old_handler, old_provider = _STATE.handler, _STATE.logger_provider
        if otlp:
            handler, provider = _otlp_handler(
                service_name,
                endpoint,
                insecure,
                protocol,
                instrument_id,
                process_name,
                token_source,
            )
        else:
            handler, provider = _StdoutHandler(), None
            handler.setFormatter(JsonFormatter())
        handler._helixobs = True  # type: ignore[attr-defined]
        if old_handler is not None:
            root.removeHandler(old_handler)
        root.addHandler(handler)
        _STATE.handler, _STATE.logger_provider = handler, provider
        if level is not None:
            root.setLevel(level)
        elif root.level == logging.WARNING:
            root.setLevel(logging.INFO)
    if old_provider is not None:
        try:
            old_provider.shutdown()
        except Exception:  # noqa: BLE001 - replacing a pipeline must not fail the new one
            logging.getLogger("helixobs").debug("old log pipeline shutdown failed", exc_info=True)
    return handler


def flush_logs(timeout_millis: int = 10_000) -> bool:
    """Export pending OTLP log records (no-op in JSON mode)."""
    provider = _STATE.logger_provider
    if provider is None:
        return True
    return bool(provider.force_flush(timeout_millis))


def shutdown_logging() -> None:
    """Remove the helixobs handler and close its OTLP pipeline (mostly for tests)."""
    with _config_lock:
        handler, provider = _STATE.handler, _STATE.logger_provider
        _STATE.handler, _STATE.logger_provider = None, None
        if handler is not None:
            logging.getLogger().removeHandler(handler)
    if provider is not None:
        provider.shutdown()
