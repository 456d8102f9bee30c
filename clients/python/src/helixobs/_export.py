"""OTLP exporter and processor construction: endpoints, env, TLS, auth headers, fork safety."""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections.abc import Callable, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlparse

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace import Span as SDKSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.util.re import parse_env_headers

from ._auth import TokenSource

_log = logging.getLogger("helixobs")

Signal = Literal["traces", "logs"]
Protocol = Literal["grpc", "http/protobuf"]

DEFAULT_GRPC_ENDPOINT = "localhost:4317"
DEFAULT_HTTP_ENDPOINT = "localhost:4318"


def _env(*names: str) -> str | None:
    for name in names:
        value = os.environ.get(name)
        if value is not None and value.strip() != "":
            return value.strip()
    return None


def resolve_protocol(protocol: str | None, signal: Signal) -> Protocol:
    value = protocol or _env(
        f"OTEL_EXPORTER_OTLP_{signal.upper()}_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"
    )
    if value is None or value == "grpc":
        return "grpc"
    if value in ("http/protobuf", "http"):
        return "http/protobuf"
    raise ValueError(
        f"helixobs: unsupported OTLP protocol {value!r} (use 'grpc' or 'http/protobuf')"
    )


@dataclass(frozen=True)
class Target:
    """Where and how one signal is exported."""

    protocol: Protocol
    endpoint: str  # gRPC: host:port; HTTP: full URL including the signal path
    insecure: bool


def _has_scheme(endpoint: str) -> bool:
    return "://" in endpoint


def _port_of(endpoint: str) -> int | None:
    parsed = urlparse(endpoint if _has_scheme(endpoint) else "//" + endpoint)
    try:
        return parsed.port
    except ValueError:
        return None


def resolve_target(
    endpoint: str | None,
    insecure: bool | None,
    signal: Signal,
    protocol: str | None = None,
) -> Target:
    """Apply argument > OTEL_EXPORTER_OTLP_* env > default, and the TLS rules.

    ``insecure=None`` means: the scheme decides when there is one (``https`` → TLS),
    else the OTEL_EXPORTER_OTLP_[SIGNAL_]INSECURE variable, else TLS exactly on port 443.
    """
    proto = resolve_protocol(protocol, signal)
    signal_specific = False
    if endpoint is None:
        specific = _env(f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT")
        if specific is not None:
            endpoint, signal_specific = specific, True
        else:
            endpoint = _env("OTEL_EXPORTER_OTLP_ENDPOINT")
    if endpoint is None:
        endpoint = DEFAULT_GRPC_ENDPOINT if proto == "grpc" else DEFAULT_HTTP_ENDPOINT

    scheme = urlparse(endpoint).scheme.lower() if _has_scheme(endpoint) else ""
    if insecure is None:
        if scheme in ("http", "https"):
            insecure = scheme == "http"
        else:
            env_insecure = _env(
                f"OTEL_EXPORTER_OTLP_{signal.upper()}_INSECURE", "OTEL_EXPORTER_OTLP_INSECURE"
            )
            if env_insecure is not None:
                insecure = env_insecure.lower() == "true"
            else:
                insecure = _port_of(endpoint) != 443

    if proto == "grpc":
        hostport = urlparse(endpoint).netloc if scheme else endpoint
        return Target("grpc", hostport.rstrip("/"), insecure)

    url = endpoint if scheme else ("http://" if insecure else "https://") + endpoint
    parsed = urlparse(url)
    if not signal_specific and parsed.path in ("", "/"):
        url = url.rstrip("/") + f"/v1/{signal}"
    return Target("http/protobuf", url, insecure)


def base_headers() -> dict[str, str]:
    """Headers from OTEL_EXPORTER_OTLP_HEADERS (kept when we add our own)."""
    raw = _env("OTEL_EXPORTER_OTLP_HEADERS")
    return dict(parse_env_headers(raw, liberal=True)) if raw else {}


def ca_file(signal: Signal) -> str | None:
    """The CA file OTLP over TLS trusts (OTEL_EXPORTER_OTLP_[SIGNAL_]CERTIFICATE), if one is set."""
    specific = f"OTEL_EXPORTER_OTLP_{signal.upper()}_CERTIFICATE"
    return _env(specific, "OTEL_EXPORTER_OTLP_CERTIFICATE")


def _http_session(signal: Signal) -> Any:
    """A requests session for the OTLP/HTTP exporter when a CA file is configured, else None.

    The exporter puts the CA file on its session, but requests lets REQUESTS_CA_BUNDLE or
    CURL_CA_BUNDLE (often set system-wide) override a session's CA file, so the herald's
    certificate would be refused; this session keeps its own. Not used when a credential
    provider session is configured (that one is the user's choice).
    """
    providers = (
        "OTEL_PYTHON_EXPORTER_OTLP_HTTP_CREDENTIAL_PROVIDER",
        f"OTEL_PYTHON_EXPORTER_OTLP_HTTP_{signal.upper()}_CREDENTIAL_PROVIDER",
    )
    if ca_file(signal) is None or _env(*providers) is not None:
        return None
    import requests

    class _OwnCaSession(requests.Session):
        def merge_environment_settings(
            self,
            url: str | bytes | None,
            proxies: MutableMapping[str, str] | None,
            stream: bool | None,
            verify: bool | str | None,
            cert: str | tuple[str, str] | None,
        ) -> Any:
            settings = super().merge_environment_settings(url, proxies, stream, verify, cert)
            # The exporter never passes `verify` per request: what requests found here came
            # from the environment, and the session's CA file must win over it.
            if isinstance(self.verify, str):
                settings["verify"] = self.verify
            return settings

    return _OwnCaSession()


def span_exporter_factory(
    target: Target, headers: dict[str, str] | None = None
) -> Callable[[dict[str, str]], SpanExporter]:
    """A function building a fresh span exporter for `target` with extra headers."""
    fixed = {**base_headers(), **(headers or {})}

    def build(extra: dict[str, str]) -> SpanExporter:
        merged = {**fixed, **extra}
        if target.protocol == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
                OTLPSpanExporter as GrpcSpanExporter,
            )

            return GrpcSpanExporter(
                endpoint=target.endpoint, insecure=target.insecure, headers=merged or None
            )
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
            OTLPSpanExporter as HttpSpanExporter,
        )

        return HttpSpanExporter(
            endpoint=target.endpoint, headers=merged or None, session=_http_session("traces")
        )

    return build


def log_exporter_factory(
    target: Target, headers: dict[str, str] | None = None
) -> Callable[[dict[str, str]], Any]:
    """Like `span_exporter_factory`, for OTLP log exporters."""
    fixed = {**base_headers(), **(headers or {})}

    def build(extra: dict[str, str]) -> Any:
        merged = {**fixed, **extra}
        if target.protocol == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc._log_exporter import (
                OTLPLogExporter as GrpcLogExporter,
            )

            return GrpcLogExporter(
                endpoint=target.endpoint, insecure=target.insecure, headers=merged or None
            )
        from opentelemetry.exporter.otlp.proto.http._log_exporter import (
            OTLPLogExporter as HttpLogExporter,
        )

        return HttpLogExporter(
            endpoint=target.endpoint, headers=merged or None, session=_http_session("logs")
        )

    return build


class _AuthorisedExporter:
    """Exporter front that rebuilds the real exporter whenever the bearer token changes.

    Rebuilding (rare: once per token lifetime) uses only the exporters' public
    constructor, on TLS and plaintext channels alike.
    """

    def __init__(self, build: Callable[[dict[str, str]], Any], auth: TokenSource) -> None:
        self._build = build
        self._auth = auth
        self._lock = threading.Lock()
        self._token: str | None = None
        self._inner: Any = None

    def _current(self) -> Any:
        token = self._auth.get()
        with self._lock:
            if self._inner is None or token != self._token:
                old = self._inner
                extra = {"authorization": f"Bearer {token}"} if token else {}
                self._inner = self._build(extra)
                self._token = token
                if old is not None:
                    try:
                        old.shutdown()
                    except Exception:  # noqa: BLE001 - an old channel failing to close is harmless
                        _log.debug("closing the previous exporter failed", exc_info=True)
            return self._inner

    def export(self, batch: Sequence[Any]) -> Any:
        return self._current().export(batch)

    def shutdown(self) -> None:
        with self._lock:
            inner, self._inner = self._inner, None
        if inner is not None:
            inner.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


class AuthorisedSpanExporter(_AuthorisedExporter, SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return super().export(spans)  # type: ignore[no-any-return]


def make_log_exporter(build: Callable[[dict[str, str]], Any], auth: TokenSource | None) -> Any:
    if auth is None:
        return build({})
    try:
        from opentelemetry.sdk._logs.export import LogRecordExporter as _LogBase
    except ImportError:  # older SDKs
        from opentelemetry.sdk._logs.export import LogExporter as _LogBase

    class AuthorisedLogExporter(_AuthorisedExporter, _LogBase):
        pass

    return AuthorisedLogExporter(build, auth)


def make_span_exporter(
    build: Callable[[dict[str, str]], SpanExporter], auth: TokenSource | None
) -> SpanExporter:
    return build({}) if auth is None else AuthorisedSpanExporter(build, auth)


def _register_child_reinit(obj: Any) -> None:
    if not hasattr(os, "register_at_fork"):
        return
    ref = weakref.ref(obj)

    def _after_in_child() -> None:
        target = ref()
        if target is not None:
            target._reinit_in_child()

    os.register_at_fork(after_in_child=_after_in_child)


class ForkSafeSpanProcessor(SpanProcessor):
    """Span processor whose exporter pipeline is rebuilt from scratch in a forked child.

    The inherited exporter (gRPC channel, worker thread, locks possibly held at fork
    time) is abandoned in the child, never touched, so neither side can deadlock.
    """

    def __init__(self, factory: Callable[[], SpanProcessor]) -> None:
        self._factory = factory
        self._use(factory())
        _register_child_reinit(self)

    def _use(self, inner: SpanProcessor) -> None:
        self._inner = inner
        self._pid = os.getpid()
        # The SDK calls these for every span: binding the inner processor's methods on the
        # instance saves this wrapper's call frame on each (the methods below are what the
        # class offers; an instance attribute takes precedence).
        self.on_start = inner.on_start  # type: ignore[method-assign]
        self.on_end = inner.on_end  # type: ignore[method-assign]

    def _reinit_in_child(self) -> None:
        self._use(self._factory())

    def on_start(self, span: SDKSpan, parent_context: Context | None = None) -> None:
        self._inner.on_start(span, parent_context=parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        self._inner.on_end(span)

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self._inner.force_flush(timeout_millis)


def batch_span_processor_factory(
    target: Target, auth: TokenSource | None, headers: dict[str, str] | None = None
) -> Callable[[], SpanProcessor]:
    build = span_exporter_factory(target, headers)

    def factory() -> SpanProcessor:
        return BatchSpanProcessor(make_span_exporter(build, auth))

    return factory


def fork_safe_log_processor(factory: Callable[[], Any]) -> Any:
    """Log-record processor twin of `ForkSafeSpanProcessor`."""
    from opentelemetry.sdk._logs import LogRecordProcessor

    class ForkSafeLogProcessor(LogRecordProcessor):
        def __init__(self) -> None:
            self._inner = factory()
            _register_child_reinit(self)

        def _reinit_in_child(self) -> None:
            self._inner = factory()

        def on_emit(self, log_record: Any) -> None:
            self._inner.on_emit(log_record)

        def emit(self, log_data: Any) -> None:  # SDKs before on_emit
            self._inner.emit(log_data)

        def shutdown(self) -> None:
            self._inner.shutdown()

        def force_flush(self, timeout_millis: int = 30_000) -> bool:
            return bool(self._inner.force_flush(timeout_millis))

    return ForkSafeLogProcessor()


def batch_log_processor_factory(
    target: Target, auth: TokenSource | None, headers: dict[str, str] | None = None
) -> Callable[[], Any]:
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor

    build = log_exporter_factory(target, headers)

    def factory() -> Any:
        return BatchLogRecordProcessor(make_log_exporter(build, auth))

    return factory
