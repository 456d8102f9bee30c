"""Credential authentication: token at setup, bearer header on traces and logs, refresh."""

from __future__ import annotations

import http.server
import json
import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from otlp_receiver import HttpOtlpReceiver, OtlpReceiver

from helixobs import AuthError, setup
from helixobs._auth import TokenSource


class AuthServer:
    """Minimal stand-in for the herald's POST /auth/token."""

    def __init__(self, expires_in: float = 3600, secret: str = "s3cret") -> None:
        self.requests: list[dict[str, Any]] = []
        self.expires_in = expires_in
        self.secret = secret
        self.issued = 0
        srv = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                srv.requests.append(body)
                if self.path != "/auth/token" or body.get("credential") != srv.secret:
                    self.send_response(401)
                    self.end_headers()
                    self.wfile.write(b'{"error":"invalid credential"}')
                    return
                srv.issued += 1
                data = json.dumps({"token": f"tok-{srv.issued}", "expires_in": srv.expires_in})
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.end_headers()
                self.wfile.write(data.encode())

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/auth/token"
        threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def auth() -> Iterator[AuthServer]:
    srv = AuthServer()
    yield srv
    srv.close()


def test_token_fetched_at_setup_and_sent_on_traces_and_logs(
    otlp: OtlpReceiver, auth: AuthServer
) -> None:
    tel = setup(
        "secure-svc",
        instrument_id="MY_INST",
        endpoint=otlp.endpoint,
        credential="s3cret",
        auth_endpoint=auth.url,
        otlp=True,
    )
    try:
        assert auth.requests == [{"instrument_id": "MY_INST", "credential": "s3cret"}]
        with tel.create("ingest", id="auth-1"):
            logging.getLogger("auth").warning("authorised log")
        assert tel.flush()
    finally:
        tel.shutdown()
    assert otlp.span("ingest").entity_id == "auth-1"
    assert {m.get("authorization") for m in otlp.trace_metadata} == {"Bearer tok-1"}
    assert {m.get("authorization") for m in otlp.log_metadata} == {"Bearer tok-1"}


def test_expired_token_is_refreshed_before_export(otlp: OtlpReceiver) -> None:
    srv = AuthServer(expires_in=0)  # every use needs a fresh token
    try:
        tel = setup(
            "svc",
            instrument_id="MY_INST",
            endpoint=otlp.endpoint,
            credential=lambda: "s3cret",
            auth_endpoint=srv.url,
        )
        try:
            with tel.create("a", id="r1"):
                pass
            tel.flush()
            with tel.create("b", id="r2"):
                pass
            tel.flush()
        finally:
            tel.shutdown()
    finally:
        srv.close()
    sent = [m.get("authorization") for m in otlp.trace_metadata]
    assert len(sent) == 2
    assert "Bearer tok-1" not in sent  # tok-1 expired right after setup
    assert sent[0] != sent[1]
    assert srv.issued >= 3


def test_refresh_schedule_with_fake_clock(auth: AuthServer) -> None:
    now = [1000.0]
    auth.expires_in = 100
    src = TokenSource("MY_INST", "s3cret", auth.url, clock=lambda: now[0])
    assert src.refresh() == "tok-1"
    now[0] += 79
    assert src.get() == "tok-1"
    now[0] += 2  # within the last 20 % of the lifetime
    assert src.get() == "tok-2"
    assert src.header() == ("authorization", "Bearer tok-2")


def test_failed_refresh_keeps_valid_token(
    auth: AuthServer, caplog: pytest.LogCaptureFixture
) -> None:
    now = [0.0]
    auth.expires_in = 100
    src = TokenSource("MY_INST", "s3cret", auth.url, clock=lambda: now[0])
    src.refresh()
    auth.secret = "rotated"
    now[0] = 90
    with caplog.at_level(logging.WARNING, logger="helixobs"):
        assert src.get() == "tok-1"
    assert "keeping the current token" in caplog.text


def test_auth_over_http_protocol(auth: AuthServer) -> None:
    rx = HttpOtlpReceiver().start()
    try:
        tel = setup(
            "svc",
            instrument_id="MY_INST",
            endpoint=rx.endpoint,
            protocol="http/protobuf",
            credential="s3cret",
            auth_endpoint=auth.url,
        )
        try:
            with tel.create("a", id="h1"):
                pass
            tel.flush()
        finally:
            tel.shutdown()
        assert rx.trace_metadata[0]["authorization"] == "Bearer tok-1"
    finally:
        rx.stop()


def test_credential_without_auth_endpoint_is_clear_error() -> None:
    with pytest.raises(ValueError, match="without auth_endpoint"):
        setup("svc", instrument_id="MY_INST", endpoint="127.0.0.1:1", credential="x")


def test_unreachable_auth_endpoint_fails_setup() -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(AuthError, match="cannot reach auth endpoint"):
        setup(
            "svc",
            instrument_id="MY_INST",
            endpoint="127.0.0.1:1",
            credential="x",
            auth_endpoint=f"http://127.0.0.1:{port}/auth/token",
        )


def test_rejected_credential_fails_setup(auth: AuthServer) -> None:
    with pytest.raises(AuthError, match="HTTP 401"):
        setup(
            "svc",
            instrument_id="MY_INST",
            endpoint="127.0.0.1:1",
            credential="wrong",
            auth_endpoint=auth.url,
        )


def test_auth_endpoint_without_scheme(auth: AuthServer) -> None:
    src = TokenSource("MY_INST", "s3cret", auth.url.removeprefix("http://"))
    assert src.refresh() == "tok-1"
