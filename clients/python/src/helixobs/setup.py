"""setup(): one call wiring traces, logging and authentication under one service name."""

from __future__ import annotations

import inspect
import os
from typing import Any

from opentelemetry import trace

from ._auth import AuthError, Credential, TokenSource
from .instrument import Instrument
from .logging import configure_logging, set_defaults

__all__ = ["setup", "AuthError"]


def _accepted_kwargs(cls: type[Instrument]) -> tuple[set[str], bool]:
    params = inspect.signature(cls.__init__).parameters
    var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    return set(params), var_kw


def setup(
    service_name: str,
    *,
    instrument_id: str | None = None,
    endpoint: str | None = None,
    insecure: bool | None = None,
    otlp: bool = False,
    log_endpoint: str | None = None,
    process_name: str | None = None,
    credential: Credential | None = None,
    auth_endpoint: str | None = None,
    instrument_class: type[Instrument] = Instrument,
    protocol: str | None = None,
) -> Instrument:
    """Configure tracing and logging for this process and return a ready `Instrument`.

    `endpoint` defaults to OTEL_EXPORTER_OTLP_TRACES_ENDPOINT / OTEL_EXPORTER_OTLP_ENDPOINT,
    else ``localhost:4317``. `insecure=None` means TLS exactly when the port is 443 (or
    when the endpoint says ``https://``). `otlp=True` ships logs over OTLP to
    `log_endpoint` (default: the OTEL_* log endpoint variables, else `endpoint`);
    otherwise logs are JSON lines on stdout. With `credential` (a string or a function
    returning one) and `auth_endpoint`, a bearer token is fetched now (failing fast)
    and refreshed before expiry, for trace and log exports alike. `protocol` selects
    ``"grpc"`` (default) or ``"http/protobuf"``.
    """
    accepted, var_kw = _accepted_kwargs(instrument_class)
    # A subclass whose constructor does not take instrument_id (or takes **kwargs and
    # passes its own) fixes the ID itself; Instrument.__init__ still rejects a missing one.
    fixes_own_id = bool(instrument_class.INSTRUMENT_ID) or "instrument_id" not in accepted
    if not instrument_id and not fixes_own_id:
        raise ValueError(
            "helixobs.setup(): instrument_id is required, e.g. "
            "setup('my-pipeline', instrument_id='MY_INST') "
            "(or pass an instrument_class that fixes its own INSTRUMENT_ID)"
        )
    effective_id = instrument_id or instrument_class.INSTRUMENT_ID

    token_source: TokenSource | None = None
    if credential is not None:
        if not auth_endpoint:
            raise ValueError(
                "helixobs.setup(): credential given without auth_endpoint "
                "(e.g. auth_endpoint='http://herald:8080/auth/token')"
            )
        if not effective_id:
            raise ValueError(
                "helixobs.setup(): credential auth needs instrument_id= "
                "(or an instrument_class with INSTRUMENT_ID)"
            )
        token_source = TokenSource(effective_id, credential, auth_endpoint)
        try:
            token_source.refresh()
        except AuthError as exc:
            raise AuthError(f"helixobs.setup() failed: {exc}") from exc
    elif auth_endpoint:
        raise ValueError("helixobs.setup(): auth_endpoint given without a credential")

    offered: dict[str, Any] = {
        "instrument_id": instrument_id,
        "endpoint": endpoint,
        "insecure": insecure,
        "process_name": process_name,
        "protocol": protocol,
        "token_source": token_source,
    }
    kwargs = {k: v for k, v in offered.items() if var_kw or k in accepted}
    if not instrument_id:
        kwargs.pop("instrument_id", None)
    tel = instrument_class(service_name, **kwargs)

    set_defaults(tel.instrument_id, process_name)
    if log_endpoint:
        logs_at: str | None = log_endpoint
        logs_insecure = None
    elif os.environ.get("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT") or os.environ.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT"
    ):
        logs_at, logs_insecure = None, None
    else:
        # Our herald takes logs on the same port as traces.
        logs_at, logs_insecure = endpoint, insecure
    configure_logging(
        otlp=otlp,
        service_name=service_name,
        endpoint=logs_at,
        insecure=logs_insecure,
        protocol=protocol,
        instrument_id=tel.instrument_id,
        process_name=process_name,
        token_source=token_source,
    )

    if type(trace.get_tracer_provider()).__name__ == "ProxyTracerProvider":
        # Let other OpenTelemetry instrumentation in the process use the same pipeline.
        trace.set_tracer_provider(tel.tracer_provider)
    return tel
