"""TLS end to end: a herald serving `--tls-cert`/`--tls-key` issued by a test CA (made here with
trustme), and the helixobs client with `insecure=False` trusting that CA through the standard
`OTEL_EXPORTER_OTLP_CERTIFICATE` variable: spans and logs arrive over gRPC and over HTTP, and
the auth endpoint is reached over HTTPS with the same CA. Plain text to the TLS ports fails
cleanly and the herald keeps serving.
"""

from __future__ import annotations

import hashlib
import logging
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme
from herald_process import Herald

from helixobs import setup

log = logging.getLogger("tls.e2e")


@dataclass(frozen=True)
class TlsFiles:
    cert: Path
    key: Path
    ca: Path


@pytest.fixture
def tls_files(tmp_path: Path) -> TlsFiles:
    ca = trustme.CA()
    issued = ca.issue_cert("127.0.0.1", "localhost")
    files = TlsFiles(tmp_path / "herald.crt", tmp_path / "herald.key", tmp_path / "ca.pem")
    files.cert.write_bytes(b"".join(pem.bytes() for pem in issued.cert_chain_pems))
    issued.private_key_pem.write_to_path(str(files.key))
    ca.cert_pem.write_to_path(str(files.ca))
    return files


def _start(herald_bin: str, files: TlsFiles, extra: list[str] | None = None) -> Herald:
    args = ["--tls-cert", str(files.cert), "--tls-key", str(files.key), *(extra or [])]
    return Herald(herald_bin, extra_args=args, ca_file=str(files.ca)).start()


@pytest.fixture
def tls_herald(herald_bin: str, tls_files: TlsFiles) -> Iterator[Herald]:
    h = _start(herald_bin, tls_files)
    try:
        yield h
    finally:
        alive = h.running()
        if not alive:
            print(h.output())
        h.cleanup()
    assert alive, "the herald died during the test"


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_spans_and_logs_arrive_over_tls_with_insecure_false_and_the_test_ca(
    tls_herald: Herald, tls_files: TlsFiles, monkeypatch: pytest.MonkeyPatch, protocol: str
) -> None:
    assert tls_herald.tls, "the ready file says the herald serves TLS"
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_CERTIFICATE", str(tls_files.ca))
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
    endpoint = tls_herald.otlp_endpoint if protocol == "grpc" else tls_herald.otlp_http_endpoint
    tel = setup(
        "tls-pipeline", instrument_id="TLS", endpoint=endpoint, insecure=False, otlp=True
    )
    entity = f"tls-{protocol.replace('/', '-')}-1"
    with tel.create("acquire", id=entity):
        log.warning("acquired over TLS")
    with tel.create("search", id=f"{entity}-child", parents=[entity]):
        pass
    assert tel.flush(), "the exports over TLS were acknowledged"
    tel.shutdown()

    assert tls_herald.entity(entity)["entity"]["stage"] == "acquire"
    assert tls_herald.entity(f"{entity}-child")["entity"]["parent_ids"] == [entity]
    assert [row["body"] for row in tls_herald.logs(entity)] == ["acquired over TLS"]


def test_plain_text_to_the_tls_ports_fails_cleanly_and_the_herald_keeps_serving(
    tls_herald: Herald, tls_files: TlsFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Plain HTTP to the API: a 400 that says to use https.
    plain_api = f"http://{tls_herald.addrs['api']}/healthz"
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(plain_api, timeout=10)
    assert refused.value.code == 400
    assert "speaks TLS" in refused.value.read().decode()

    # A client told to send plain text (insecure=True) to the TLS gRPC port: nothing is stored.
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "2")
    tel = setup(
        "plain-pipeline", instrument_id="TLS", endpoint=tls_herald.otlp_endpoint, insecure=True
    )
    with tel.create("acquire", id="plain-1"):
        pass
    tel.flush(timeout_s=3)
    tel.shutdown()
    assert tls_herald.entity_status("plain-1") == 404

    # The herald still serves TLS clients.
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_CERTIFICATE", str(tls_files.ca))
    tel = setup(
        "tls-pipeline", instrument_id="TLS", endpoint=tls_herald.otlp_endpoint, insecure=False
    )
    with tel.create("acquire", id="after-plain"):
        pass
    assert tel.flush()
    tel.shutdown()
    assert tls_herald.entity("after-plain")["entity"]["id"] == "after-plain"
    assert tls_herald.running()
    assert "TLS handshakes failed" in tls_herald.output()


def test_the_auth_endpoint_is_reached_over_https_with_the_same_ca(
    herald_bin: str, tls_files: TlsFiles, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "tls-secret-5e4d3c2b1a09f8e7d6c5b4a39281706f"
    key = "tls-signing-key-0f1e2d3c4b5a69788796a5b4c3d2e1f0"
    instruments = tmp_path / "instruments"
    instruments.mkdir()
    digest = hashlib.sha256(secret.encode()).hexdigest()
    (instruments / "tls.yml").write_text(
        f'instrument_id: TLS\nauth:\n  type: secret\n  api_key_hash: "sha256:{digest}"\n'
    )
    auth = ["--jwt-secret", key, "--instruments-dir", str(instruments)]
    herald = _start(herald_bin, tls_files, auth)
    try:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_CERTIFICATE", str(tls_files.ca))
        tel = setup(
            "tls-pipeline",
            instrument_id="TLS",
            endpoint=herald.otlp_endpoint,
            insecure=False,
            credential=secret,
            auth_endpoint=f"{herald.api_base}/auth/token",
        )
        with tel.create("acquire", id="tls-auth-1"):
            pass
        assert tel.flush(), "the authenticated export over TLS was acknowledged"
        tel.shutdown()
        read = subprocess.run(
            [herald_bin, "token", "issue", "--read", "--name", "tls-test"],
            capture_output=True,
            text=True,
            check=True,
            env={"JWT_SECRET": key},
        ).stdout.strip()
        request = urllib.request.Request(
            f"{herald.api_base}/api/v1/entity/tls-auth-1",
            headers={"authorization": f"Bearer {read}"},
        )
        with urllib.request.urlopen(request, timeout=30, context=herald.ssl_context()) as resp:
            assert resp.status == 200
        assert herald.running()
    finally:
        print(herald.output()[-3000:])
        herald.cleanup()
