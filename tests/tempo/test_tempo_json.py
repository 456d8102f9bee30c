"""Tempo-compatible trace-by-ID against a real herald, read the way Python's protobuf reads it.

Spans sent by the OpenTelemetry Python SDK (OTLP/HTTP) come back from /api/traces/{id} and
/api/v2/traces/{id}; `google.protobuf.json_format.Parse` must accept the JSON into `TracesData`,
and the result must equal the protobuf form (`Accept: application/protobuf`) and hold the spans
sent. Prints one line per check and a closing `N passed, N failed`.
"""

from __future__ import annotations

import json
import sys
import tempfile
import traceback
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable

from google.protobuf import json_format
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.trace.v1.trace_pb2 import TracesData
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
from herald_process import start_herald  # noqa: E402


def get(url: str, accept: str | None = None) -> tuple[int, bytes, str]:
    request = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read(), response.headers.get("Content-Type", "")
    except urllib.error.HTTPError as err:
        return err.code, err.read(), err.headers.get("Content-Type", "")


def send_trace(otlp_http: str) -> tuple[str, InMemorySpanExporter]:
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "gateway", "helix.instrument.id": "CHIME"}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"http://{otlp_http}/v1/traces")))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("tempo-json-test", "1.2.3")
    with tracer.start_as_current_span("process-request", kind=SpanKind.SERVER,
                                      attributes={"attempt": 2, "ratio": 0.5, "tags": ["a", "b"], "ok": True}) as root:
        root.add_event("classified", {"label": "frb"})
        with tracer.start_as_current_span("auth-check"):
            pass
        with tracer.start_as_current_span("db-query", attributes={"db.system": "sqlite"}):
            pass
        trace_id = format(root.get_span_context().trace_id, "032x")
    provider.shutdown()
    return trace_id, memory


def main() -> int:
    results: list[tuple[str, bool]] = []

    def check(name: str, fn: Callable[[], None]) -> None:
        try:
            fn()
            results.append((name, True))
            print(f"PASS {name}")
        except Exception:  # noqa: BLE001 - report every failure and go on
            results.append((name, False))
            print(f"FAIL {name}")
            traceback.print_exc()

    with tempfile.TemporaryDirectory() as tmp:
        proc, ready = start_herald(Path(tmp))
        try:
            api = f"http://{ready['api']}"
            trace_id, memory = send_trace(ready["otlp_http"])
            sent = {format(s.context.span_id, "016x"): s for s in memory.get_finished_spans()}

            def v1_json_parses_into_traces_data() -> None:
                status, body, ctype = get(f"{api}/api/traces/{trace_id}")
                assert status == 200 and ctype.startswith("application/json"), (status, body)
                batches = json.loads(body)["batches"]
                data = json_format.Parse(json.dumps({"resourceSpans": batches}), TracesData())
                spans = [s for rs in data.resource_spans for ss in rs.scope_spans for s in ss.spans]
                assert {s.span_id.hex() for s in spans} == set(sent), spans
                for span in spans:
                    original = sent[span.span_id.hex()]
                    assert span.trace_id.hex() == trace_id
                    assert span.name == original.name
                    assert span.start_time_unix_nano == original.start_time
                    assert span.end_time_unix_nano == original.end_time
                root = next(s for s in spans if s.name == "process-request")
                attrs = {kv.key: kv.value for kv in root.attributes}
                assert attrs["attempt"].int_value == 2
                assert attrs["ratio"].double_value == 0.5
                assert attrs["ok"].bool_value is True
                assert [v.string_value for v in attrs["tags"].array_value.values] == ["a", "b"]
                assert [e.name for e in root.events] == ["classified"]
                assert root.kind == 2  # SPAN_KIND_SERVER
                scope = data.resource_spans[0].scope_spans[0].scope
                assert (scope.name, scope.version) == ("tempo-json-test", "1.2.3"), scope

            def json_equals_protobuf() -> None:
                _, body, _ = get(f"{api}/api/traces/{trace_id}")
                from_json = json_format.Parse(json.dumps({"resourceSpans": json.loads(body)["batches"]}), TracesData())
                status, raw, ctype = get(f"{api}/api/traces/{trace_id}", accept="application/protobuf")
                assert status == 200 and ctype == "application/protobuf", (status, ctype)
                assert TracesData.FromString(raw) == from_json

            def json_is_what_message_to_json_writes() -> None:
                _, body, _ = get(f"{api}/api/traces/{trace_id}")
                ours = {"resourceSpans": json.loads(body)["batches"]}
                reparsed = json_format.Parse(json.dumps(ours), TracesData())
                assert json.loads(json_format.MessageToJson(reparsed)) == ours

            def v2_trace_parses() -> None:
                status, body, _ = get(f"{api}/api/v2/traces/{trace_id}")
                assert status == 200, (status, body)
                data = json_format.Parse(json.dumps(json.loads(body)["trace"]), TracesData())
                assert sum(len(ss.spans) for rs in data.resource_spans for ss in rs.scope_spans) == 3

            def unknown_trace_is_404() -> None:
                status, body, _ = get(f"{api}/api/traces/{'0' * 31}1")
                assert status == 404, (status, body)
                assert "not found" in json.loads(body)["error"]

            check("v1 JSON parses into TracesData with the spans sent", v1_json_parses_into_traces_data)
            check("v1 JSON equals the protobuf form", json_equals_protobuf)
            check("v1 JSON is what MessageToJson writes", json_is_what_message_to_json_writes)
            check("v2 JSON parses into TracesData", v2_trace_parses)
            check("unknown trace is a 404", unknown_trace_is_404)
        finally:
            proc.kill()
            proc.wait()

    passed = sum(ok for _, ok in results)
    failed = len(results) - passed
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
