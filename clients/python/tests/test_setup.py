"""setup(): endpoints, TLS choice, environment variables, instrument classes, protocols."""

from __future__ import annotations

import pytest
from otlp_receiver import HttpOtlpReceiver, OtlpReceiver

from helixobs import Instrument, setup
from helixobs._export import resolve_target
from helixobs.setup import setup as setup_from_module


def test_import_paths() -> None:
    import helixobs
    import helixobs.setup

    assert setup_from_module is setup
    assert helixobs.setup is setup
    for name in ("setup", "Instrument", "Token", "configure_logging", "install_context_fields"):
        assert hasattr(helixobs, name)


def test_missing_instrument_id_is_clear_error() -> None:
    with pytest.raises(ValueError, match="instrument_id is required"):
        setup("svc", endpoint="127.0.0.1:1")


def test_instrument_class_fixing_its_own_id(otlp: OtlpReceiver) -> None:
    class Chime(Instrument):
        INSTRUMENT_ID = "CHIME"

    tel = setup("chime.l1", endpoint=otlp.endpoint, instrument_class=Chime)
    try:
        assert isinstance(tel, Chime)
        with tel.create("l1", id="beam-1"):
            pass
        tel.flush()
    finally:
        tel.shutdown()
    assert otlp.span("l1").attributes["helix.instrument.id"] == "CHIME"


def test_instrument_class_with_own_constructor(otlp: OtlpReceiver) -> None:
    class Fixed(Instrument):
        def __init__(self, service_name: str, endpoint: str | None = None, **_: object) -> None:
            super().__init__(service_name, instrument_id="FIXED", endpoint=endpoint)

    tel = setup("svc", endpoint=otlp.endpoint, instrument_class=Fixed)
    try:
        assert tel.instrument_id == "FIXED"
    finally:
        tel.shutdown()


def test_direct_instrument_construction_needs_id() -> None:
    with pytest.raises(ValueError, match="instrument_id is required"):
        Instrument("svc")


@pytest.mark.parametrize(
    ("endpoint", "insecure", "expected"),
    [
        ("herald:4317", None, ("herald:4317", True)),
        ("herald.example.org:443", None, ("herald.example.org:443", False)),
        ("herald:443", True, ("herald:443", True)),
        ("herald:4317", False, ("herald:4317", False)),
        ("https://herald:4317", None, ("herald:4317", False)),
        ("http://herald:443", None, ("herald:443", True)),
    ],
)
def test_tls_iff_port_443(endpoint: str, insecure: bool | None, expected: tuple[str, bool]) -> None:
    t = resolve_target(endpoint, insecure, "traces")
    assert (t.endpoint, t.insecure) == expected
    assert t.protocol == "grpc"


def test_env_endpoint_and_insecure(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:443")
    t = resolve_target(None, None, "traces")
    assert (t.endpoint, t.insecure) == ("collector:443", False)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_INSECURE", "true")
    assert resolve_target(None, None, "traces").insecure is True
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://traces:4317")
    assert resolve_target(None, None, "traces").endpoint == "traces:4317"
    # An explicit argument wins over the environment.
    assert resolve_target("arg:4317", None, "traces").endpoint == "arg:4317"


def test_default_endpoint() -> None:
    assert resolve_target(None, None, "traces").endpoint == "localhost:4317"
    t = resolve_target(None, None, "logs", "http/protobuf")
    assert t.endpoint == "http://localhost:4318/v1/logs"


def test_http_targets(monkeypatch: pytest.MonkeyPatch) -> None:
    t = resolve_target("herald:4318", None, "traces", "http/protobuf")
    assert t.endpoint == "http://herald:4318/v1/traces"
    t = resolve_target("herald:443", None, "traces", "http/protobuf")
    assert t.endpoint == "https://herald:443/v1/traces"
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://h:1/custom")
    assert resolve_target(None, None, "traces", "http/protobuf").endpoint == "http://h:1/custom"
    with pytest.raises(ValueError, match="unsupported OTLP protocol"):
        resolve_target("h:1", None, "traces", "carrier-pigeon")


def test_setup_honours_env_endpoint(otlp: OtlpReceiver, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://{otlp.endpoint}")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=test,team=radio")
    tel = setup("env-svc", instrument_id="MY_INST", otlp=True)
    try:
        with tel.create("ingest", id="env-1"):
            import logging

            logging.getLogger("env").warning("via env")
        assert tel.flush()
    finally:
        tel.shutdown()
    span = otlp.span("ingest")
    assert span.resource["service.name"] == "env-svc"
    assert span.resource["deployment.environment"] == "test"
    assert span.resource["helix.instrument.id"] == "MY_INST"
    assert any(r.body == "via env" for r in otlp.logs)


def test_setup_http_protobuf_protocol() -> None:
    rx = HttpOtlpReceiver().start()
    try:
        tel = setup(
            "http-svc",
            instrument_id="MY_INST",
            endpoint=rx.endpoint,
            protocol="http/protobuf",
            otlp=True,
        )
        try:
            with tel.create("ingest", id="http-1"):
                import logging

                logging.getLogger("http").warning("over http")
            assert tel.flush()
        finally:
            tel.shutdown()
        assert rx.span("ingest").entity_id == "http-1"
        assert any(r.body == "over http" for r in rx.logs)
    finally:
        rx.stop()


def test_resource_attributes(tel_otlp: Instrument, otlp: OtlpReceiver) -> None:
    with tel_otlp.create("ingest", id="res-1"):
        pass
    tel_otlp.flush()
    s = otlp.span("ingest")
    assert s.resource["service.name"] == "my-pipeline"
    assert s.resource["helix.instrument.id"] == "MY_INST"
    assert s.resource["helix.process.name"] == "MY_INST/ingest"
    assert s.scope == "helixobs"


def test_shutdown_idempotent_enough(otlp: OtlpReceiver) -> None:
    tel = setup("svc", instrument_id="X", endpoint=otlp.endpoint)
    tel.shutdown()
    tel.flush()  # after shutdown: no exception
