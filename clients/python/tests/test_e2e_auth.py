"""The credential flow against a real herald with auth on (JWT_SECRET set): `setup(credential=…,
auth_endpoint=…)` with a secret string, a credential callable and a token introspection
endpoint (a loopback HTTP server here), and the published helixobs 0.5.3 client from PyPI in
a virtual environment of its own. What the herald stored is read back with a read-only token.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from herald_process import Herald

from helixobs import setup
from helixobs._auth import AuthError

KEY = "e2e-signing-key-4f1d2c3b4a5968778695a4b3c2d1e0f9"
SECRET = "alpha-secret-9b8a7c6d5e4f30211203f4e5d6c7b8a9"
UPSTREAM_TOKEN = "upstream-sso-token-0123456789abcdef"
PUBLISHED = "helixobs==0.5.3"

log = logging.getLogger("auth.e2e")


class AuthHerald(Herald):
    """A herald whose API reads send a read-only token (auth is on)."""

    read_token = ""

    def request(self, path: str, method: str = "GET") -> tuple[int, Any]:
        req = urllib.request.Request(
            self.api_base + path,
            method=method,
            headers={"authorization": f"Bearer {self.read_token}"},
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        text = raw.decode("utf-8", errors="replace")
        try:
            return status, json.loads(text)
        except ValueError:
            return status, text

    @property
    def auth_endpoint(self) -> str:
        return f"{self.api_base}/auth/token"


class Introspection:
    """A token introspection endpoint on loopback: 200 for `Bearer UPSTREAM_TOKEN`, else 401."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        seen = self.seen

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
                header = self.headers.get("authorization", "")
                seen.append(header)
                ok = self.path == "/verify" and header == f"Bearer {UPSTREAM_TOKEN}"
                self.send_response(200 if ok else 401)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/verify"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def secret_file(instrument: str, secret: str) -> str:
    digest = hashlib.sha256(secret.encode()).hexdigest()
    auth = f'auth:\n  type: secret\n  api_key_hash: "sha256:{digest}"\n'
    return f"instrument_id: {instrument}\n{auth}"


@pytest.fixture
def introspection() -> Iterator[Introspection]:
    server = Introspection()
    yield server
    server.stop()


@pytest.fixture
def auth_herald(
    herald_bin: str, tmp_path: Path, introspection: Introspection
) -> Iterator[AuthHerald]:
    instruments = tmp_path / "instruments"
    instruments.mkdir()
    (instruments / "alpha.yml").write_text(secret_file("ALPHA", SECRET))
    (instruments / "sso.yaml").write_text(
        "instrument_id: SSO\nauth:\n  type: token_introspection\n"
        f"  verify_url: {introspection.url}\n"
    )
    h = AuthHerald(
        herald_bin, extra_args=["--jwt-secret", KEY, "--instruments-dir", str(instruments)]
    )
    h.start()
    try:
        issued = subprocess.run(
            [herald_bin, "token", "issue", "--read", "--name", "e2e", "--ttl", "1h"],
            env={**os.environ, "JWT_SECRET": KEY},
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        h.read_token = issued.stdout.strip()
        yield h
        printed = h.output()
        for secret in (KEY, SECRET, UPSTREAM_TOKEN, h.read_token):
            assert secret not in printed, "the herald printed a secret"
    finally:
        h.cleanup()


def unauthenticated_status(herald: AuthHerald, path: str) -> int:
    try:
        with urllib.request.urlopen(herald.api_base + path, timeout=30) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def run_pipeline(herald: AuthHerald, instrument: str, credential: Any, entity: str) -> None:
    tel = setup(
        "auth-e2e",
        instrument_id=instrument,
        endpoint=herald.otlp_endpoint,
        credential=credential,
        auth_endpoint=herald.auth_endpoint,
        otlp=True,
    )
    logging.getLogger().setLevel(logging.INFO)
    try:
        with tel.create("ingest", id=entity):
            log.info("inside %s", entity)
        with tel.operate("archive", entity_id=entity):
            pass
        assert tel.flush(10)
    finally:
        tel.shutdown()


def assert_stored(herald: AuthHerald, instrument: str, entity: str) -> None:
    view = herald.entity(entity)
    assert view["entity"]["instrument_id"] == instrument
    assert [op["operation"] for op in herald.operations(entity)] == ["creation", "archive"]
    assert [row["body"] for row in herald.logs(entity)] == [f"inside {entity}"]


def test_a_secret_credential_sends_spans_and_logs_that_are_stored(auth_herald: AuthHerald) -> None:
    assert unauthenticated_status(auth_herald, "/api/v1/instruments") == 401
    run_pipeline(auth_herald, "ALPHA", SECRET, "alpha-block-1")
    assert_stored(auth_herald, "ALPHA", "alpha-block-1")


def test_a_credential_callable_is_called_for_the_token(auth_herald: AuthHerald) -> None:
    calls: list[float] = []

    def credential() -> str:
        calls.append(time.monotonic())
        return SECRET

    run_pipeline(auth_herald, "ALPHA", credential, "alpha-block-2")
    assert calls, "the callable gave the credential"
    assert_stored(auth_herald, "ALPHA", "alpha-block-2")


def test_token_introspection_signs_in_with_the_upstream_token(
    auth_herald: AuthHerald, introspection: Introspection
) -> None:
    run_pipeline(auth_herald, "SSO", lambda: UPSTREAM_TOKEN, "sso-block-1")
    assert f"Bearer {UPSTREAM_TOKEN}" in introspection.seen
    assert_stored(auth_herald, "SSO", "sso-block-1")


def test_a_rejected_credential_fails_setup_at_once(
    auth_herald: AuthHerald, introspection: Introspection
) -> None:
    for instrument, credential in (("ALPHA", "not-the-secret"), ("SSO", "stale-upstream-token")):
        started = time.monotonic()
        with pytest.raises(AuthError, match="HTTP 401"):
            setup(
                "auth-e2e",
                instrument_id=instrument,
                endpoint=auth_herald.otlp_endpoint,
                credential=credential,
                auth_endpoint=auth_herald.auth_endpoint,
            )
        assert time.monotonic() - started < 10
    assert auth_herald.entities(instrument="ALPHA") == []


# ---- the published client ------------------------------------------------------------------

PUBLISHED_SCRIPT = textwrap.dedent(
    """
    import logging, sys
    from helixobs.setup import setup
    endpoint, auth_endpoint, secret, mode, entity = sys.argv[1:6]
    credential = secret if mode == "string" else (lambda: secret)
    tel = setup("published-auth", instrument_id="ALPHA", endpoint=endpoint,
                credential=credential, auth_endpoint=auth_endpoint)
    with tel.create("ingest", id=entity):
        pass
    with tel.operate("archive", entity_id=entity):
        pass
    tel.shutdown()
    """
)


def published_python(cache: Path) -> Path:
    """A venv with the published client from PyPI (made once, then reused)."""
    venv = cache / "published-0.5.3"
    python = venv / "bin" / "python"
    stamp = venv / ".installed"
    if not stamp.exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", PUBLISHED],
            check=True,
            timeout=600,
        )
        stamp.write_text(PUBLISHED + "\n")
    return python


@pytest.mark.parametrize("mode", ["string", "callable"])
def test_the_published_client_signs_in_and_its_spans_are_stored(
    auth_herald: AuthHerald, mode: str, request: pytest.FixtureRequest
) -> None:
    cache = Path(request.config.cache.mkdir("helixobs-published"))
    python = published_python(cache)
    entity = f"published-{mode}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    done = subprocess.run(
        [
            str(python),
            "-c",
            PUBLISHED_SCRIPT,
            auth_herald.otlp_endpoint,
            auth_herald.auth_endpoint,
            SECRET,
            mode,
            entity,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=cache,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert auth_herald.entity(entity)["entity"]["instrument_id"] == "ALPHA"
    assert [op["operation"] for op in auth_herald.operations(entity)] == ["creation", "archive"]


def test_the_published_client_fails_fast_on_a_wrong_credential(
    auth_herald: AuthHerald, request: pytest.FixtureRequest
) -> None:
    cache = Path(request.config.cache.mkdir("helixobs-published"))
    python = published_python(cache)
    done = subprocess.run(
        [
            str(python),
            "-c",
            PUBLISHED_SCRIPT,
            auth_herald.otlp_endpoint,
            auth_herald.auth_endpoint,
            "wrong-secret",
            "string",
            "never-stored",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cache,
    )
    assert done.returncode != 0
    assert "401" in done.stderr
    assert auth_herald.entity_status("never-stored") == 404
