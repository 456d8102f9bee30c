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
from typing import Any

from opentelemetry import trace

from . import _attrs as A
from ._auth import TokenSource
from ._export import batch_log_processor_factory, fork_safe_log_processor, resolve_target
from ._resource import build_resource
from ._scope import real_span

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
    span = real_span(trace.get_current_span())
    sc = span.get_span_context()
    if not sc.is_valid:
        return _EMPTY
    attrs = getattr(span, "attributes", None) or {}
    entity = attrs.get(A.ENTITY_ID) or attrs.get(A.LOG_ENTITY_ID) or ""
    instrument = attrs.get(A.INSTRUMENT_ID) or DEFAULTS.instrument_id
    process = attrs.get(A.PROCESS_NAME) or DEFAULTS.process_name
    return (
        str(entity),
        str(instrument),
        str(process),
        format(sc.trace_id, "032x"),
        format(sc.span_id, "016x"),
    )


@functools.lru_cache(maxsize=1024)
def _relative(pathname: str, cwd: str) -> str:
    try:
        rel = os.path.relpath(pathname, cwd)
    except ValueError:
        return pathname
    return pathname if rel.startswith("..") else rel


def source_of(pathname: str, lineno: int) -> str:
    """``path#Lline``, or a GitHub permalink when GITHUB_REPO and GIT_COMMIT_SHA are set."""
    path = _relative(pathname, os.getcwd()).replace(os.sep, "/")
    repo = os.environ.get("GITHUB_REPO")
    sha = os.environ.get("GIT_COMMIT_SHA")
    if repo and sha:
        base = repo if "://" in repo else f"https://github.com/{repo.strip('/')}"
        return f"{base.rstrip('/')}/blob/{sha}/{path.lstrip('/')}#L{lineno}"
    return f"{path}#L{lineno}"


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

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            entity, instrument, process, trace_id, span_id = span_fields()
            record.helix_entity_id = entity
            record.helix_instrument_id = instrument
            record.helix_process_name = process
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
