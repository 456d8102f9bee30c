"""The OpenTelemetry resource shared by the trace and log pipelines of one process."""

from __future__ import annotations

from opentelemetry.sdk.resources import Resource

from . import _attrs as A


def build_resource(
    service_name: str, instrument_id: str | None, process_name: str | None
) -> Resource:
    attrs: dict[str, str] = {"service.name": service_name}
    if instrument_id:
        attrs[A.INSTRUMENT_ID] = instrument_id
    if process_name:
        attrs[A.PROCESS_NAME] = process_name
    # Resource.create also merges OTEL_RESOURCE_ATTRIBUTES / OTEL_SERVICE_NAME; ours win.
    return Resource.create(attrs)
