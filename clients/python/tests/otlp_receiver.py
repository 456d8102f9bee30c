"""In-process OTLP receivers for tests (gRPC and HTTP): record every trace and log export."""

from __future__ import annotations

import gzip
import http.server
import threading
import time
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2


def any_value(v: common_pb2.AnyValue) -> Any:
    kind = v.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [any_value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in v.kvlist_value.values}
    return getattr(v, kind)


def attrs(kvs: Any) -> dict[str, Any]:
    return {kv.key: any_value(kv.value) for kv in kvs}


@dataclass
class RSpan:
    """One received span, flattened for assertions."""

    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    attributes: dict[str, Any]
    events: list[tuple[str, dict[str, Any]]]
    links: list[tuple[str, str]]
    status_code: int
    status_message: str
    resource: dict[str, Any]
    scope: str
    start_ns: int
    end_ns: int

    @property
    def entity_id(self) -> Any:
        return self.attributes.get("helix.entity.id")

    def event(self, name: str) -> dict[str, Any]:
        for n, a in self.events:
            if n == name:
                return a
        raise KeyError(name)


@dataclass
class RLog:
    """One received log record, flattened for assertions."""

    body: Any
    severity_text: str
    trace_id: str
    span_id: str
    attributes: dict[str, Any]
    resource: dict[str, Any]


@dataclass
class Received:
    spans: list[RSpan] = field(default_factory=list)
    logs: list[RLog] = field(default_factory=list)
    trace_metadata: list[dict[str, str]] = field(default_factory=list)
    log_metadata: list[dict[str, str]] = field(default_factory=list)


def spans_of(request: Any) -> list[RSpan]:
    out: list[RSpan] = []
    for rs in request.resource_spans:
        res = attrs(rs.resource.attributes)
        for ss in rs.scope_spans:
            for s in ss.spans:
                out.append(
                    RSpan(
                        name=s.name,
                        trace_id=s.trace_id.hex(),
                        span_id=s.span_id.hex(),
                        parent_span_id=s.parent_span_id.hex(),
                        attributes=attrs(s.attributes),
                        events=[(e.name, attrs(e.attributes)) for e in s.events],
                        links=[(lk.trace_id.hex(), lk.span_id.hex()) for lk in s.links],
                        status_code=s.status.code,
                        status_message=s.status.message,
                        resource=res,
                        scope=ss.scope.name,
                        start_ns=s.start_time_unix_nano,
                        end_ns=s.end_time_unix_nano,
                    )
                )
    return out


def logs_of(request: Any) -> list[RLog]:
    out: list[RLog] = []
    for rl in request.resource_logs:
        res = attrs(rl.resource.attributes)
        for sl in rl.scope_logs:
            for r in sl.log_records:
                out.append(
                    RLog(
                        body=any_value(r.body),
                        severity_text=r.severity_text,
                        trace_id=r.trace_id.hex(),
                        span_id=r.span_id.hex(),
                        attributes=attrs(r.attributes),
                        resource=res,
                    )
                )
    return out


class _Store:
    """Thread-safe collection of what a receiver got, with waiting and lookups."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._data = Received()

    def _add(
        self,
        spans: list[RSpan] | None = None,
        logs: list[RLog] | None = None,
        trace_meta: dict[str, str] | None = None,
        log_meta: dict[str, str] | None = None,
    ) -> None:
        with self._cond:
            if spans is not None:
                self._data.spans.extend(spans)
                self._data.trace_metadata.append(trace_meta or {})
            if logs is not None:
                self._data.logs.extend(logs)
                self._data.log_metadata.append(log_meta or {})
            self._cond.notify_all()

    def clear(self) -> None:
        with self._cond:
            self._data = Received()

    @property
    def spans(self) -> list[RSpan]:
        with self._cond:
            return list(self._data.spans)

    @property
    def logs(self) -> list[RLog]:
        with self._cond:
            return list(self._data.logs)

    @property
    def trace_metadata(self) -> list[dict[str, str]]:
        with self._cond:
            return list(self._data.trace_metadata)

    @property
    def log_metadata(self) -> list[dict[str, str]]:
        with self._cond:
            return list(self._data.log_metadata)

    def wait_for(self, predicate: Callable[[Received], bool], timeout: float = 10.0) -> bool:
        """Block until `predicate(received)` holds (for deliveries from other processes)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                if predicate(self._data):
                    return True
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)

    def find(self, name: str | None = None, entity_id: str | None = None) -> list[RSpan]:
        return [
            s
            for s in self.spans
            if (name is None or s.name == name) and (entity_id is None or s.entity_id == entity_id)
        ]

    def span(self, name: str | None = None, entity_id: str | None = None) -> RSpan:
        found = self.find(name=name, entity_id=entity_id)
        assert len(found) == 1, f"expected one span {name!r}/{entity_id!r}, got {found}"
        return found[0]


class _Trace(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, store: _Store) -> None:
        self.store = store

    def Export(self, request: Any, context: Any) -> Any:  # noqa: N802 - gRPC method name
        meta = dict(context.invocation_metadata())
        self.store._add(spans=spans_of(request), trace_meta=meta)
        return trace_service_pb2.ExportTraceServiceResponse()


class _Logs(logs_service_pb2_grpc.LogsServiceServicer):
    def __init__(self, store: _Store) -> None:
        self.store = store

    def Export(self, request: Any, context: Any) -> Any:  # noqa: N802 - gRPC method name
        meta = dict(context.invocation_metadata())
        self.store._add(logs=logs_of(request), log_meta=meta)
        return logs_service_pb2.ExportLogsServiceResponse()


class OtlpReceiver(_Store):
    """A real OTLP/gRPC server on 127.0.0.1 (ephemeral port) collecting what it receives."""

    def __init__(self) -> None:
        super().__init__()
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        # The generated *_pb2_grpc modules have no type hints (and no stubs exist for them).
        add_trace = trace_service_pb2_grpc.add_TraceServiceServicer_to_server
        add_logs = logs_service_pb2_grpc.add_LogsServiceServicer_to_server
        add_trace(_Trace(self), self._server)  # type: ignore[no-untyped-call]
        add_logs(_Logs(self), self._server)  # type: ignore[no-untyped-call]
        self.port = self._server.add_insecure_port("127.0.0.1:0")

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> OtlpReceiver:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop(grace=None)


class HttpOtlpReceiver(_Store):
    """OTLP/HTTP (protobuf) receiver serving /v1/traces and /v1/logs on 127.0.0.1."""

    def __init__(self) -> None:
        super().__init__()
        store = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server API
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                if self.headers.get("content-encoding") == "gzip":
                    body = gzip.decompress(body)
                meta = {k.lower(): v for k, v in self.headers.items()}
                reply: Any
                if self.path == "/v1/traces":
                    req = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
                    store._add(spans=spans_of(req), trace_meta=meta)
                    reply = trace_service_pb2.ExportTraceServiceResponse()
                elif self.path == "/v1/logs":
                    lreq = logs_service_pb2.ExportLogsServiceRequest.FromString(body)
                    store._add(logs=logs_of(lreq), log_meta=meta)
                    reply = logs_service_pb2.ExportLogsServiceResponse()
                else:
                    self.send_response(404)
                    self.end_headers()
                    return
                data = reply.SerializeToString()
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self._http = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._http.server_address[1]

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> HttpOtlpReceiver:
        threading.Thread(
            target=self._http.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    def stop(self) -> None:
        self._http.shutdown()
        self._http.server_close()
