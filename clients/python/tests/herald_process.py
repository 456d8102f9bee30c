"""A real `herald` process for end-to-end tests: loopback, free ports, its own temp DB.

The binary comes from HERALD_BIN (set by run-tests.sh); without it, `cargo build -p herald`
is run once from the repository root. Nothing here skips: a herald that cannot be built or
started fails the test with its log.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, cast

REPO = Path(__file__).resolve().parents[3]
LISTENERS = ("otlp-grpc", "otlp-http", "api", "metrics")
# Variables the herald reads that would change its behaviour under test.
_HERALD_ENV = (
    "HERALD_ADDR",
    "OTLP_HTTP_ADDR",
    "API_ADDR",
    "METRICS_ADDR",
    "DB_URL",
    "COLLECTOR_ENDPOINT",
    "JWT_SECRET",
    "INSTRUMENTS_DIR",
    "HELIX_READY_FILE",
)

_built: dict[str, str] = {}


class HeraldError(RuntimeError):
    pass


def herald_binary() -> str:
    """Path of the herald binary: $HERALD_BIN, else built once with cargo."""
    path = os.environ.get("HERALD_BIN")
    if path:
        if not os.access(path, os.X_OK):
            raise HeraldError(f"HERALD_BIN={path!r} is not an executable file")
        return path
    if "bin" not in _built:
        cargo = shutil.which("cargo")
        if cargo is None:
            raise HeraldError("HERALD_BIN is not set and cargo is not on PATH to build the herald")
        proc = subprocess.run(
            [cargo, "build", "-p", "herald"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=1800,
        )
        if proc.returncode != 0:
            raise HeraldError(f"`cargo build -p herald` failed:\n{proc.stderr[-8000:]}")
        _built["bin"] = str(REPO / "target" / "debug" / "herald")
    return _built["bin"]


class ApiError(AssertionError):
    def __init__(self, method: str, url: str, status: int, body: str) -> None:
        super().__init__(f"{method} {url} -> {status}: {body[:2000]}")
        self.status = status
        self.body = body


def quote_id(entity_id: str) -> str:
    """Percent-encode an entity ID for a path segment."""
    return urllib.parse.quote(entity_id, safe="")


class Herald:
    """One herald process. Use `start()`, then `stop()` (by PID) when done."""

    def __init__(
        self,
        binary: str | None = None,
        extra_args: list[str] | None = None,
        ca_file: str | None = None,
    ) -> None:
        self.binary = binary or herald_binary()
        self.extra_args = list(extra_args or [])
        # The CA the API requests trust when the herald serves TLS (--tls-cert/--tls-key).
        self.ca_file = ca_file
        self.tls = False
        self.dir = Path(tempfile.mkdtemp(prefix="herald-e2e-"))
        self.db_path = self.dir / "herald.db"
        # Written by the herald (atomically) once every listener is bound and the store is open.
        self.ready_file = self.dir / "ready.json"
        self.proc: subprocess.Popen[bytes] | None = None
        self.addrs: dict[str, str] = {}

    # --- lifecycle -----------------------------------------------------------------------
    def start(self, timeout: float = 60.0) -> Herald:
        env = {k: v for k, v in os.environ.items() if k not in _HERALD_ENV}
        env.setdefault("RUST_LOG", "info")
        args = [
            self.binary,
            "--otlp-grpc-addr",
            "127.0.0.1:0",
            "--otlp-http-addr",
            "127.0.0.1:0",
            "--api-addr",
            "127.0.0.1:0",
            "--metrics-addr",
            "127.0.0.1:0",
            "--db-url",
            f"sqlite://{self.db_path}",
            "--ready-file",
            str(self.ready_file),
            *self.extra_args,
        ]
        # A file left by an earlier start() would announce the old ports.
        self.ready_file.unlink(missing_ok=True)
        # Files, not pipes: nobody has to keep draining them while the tests run.
        with open(self.dir / "stdout.txt", "wb") as out, open(self.dir / "herald.log", "wb") as err:
            self.proc = subprocess.Popen(
                args, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env
            )
        deadline = time.monotonic() + timeout
        while not self.ready_file.exists():
            if self.proc.poll() is not None:
                raise HeraldError(
                    f"herald exited with {self.proc.returncode} before it was ready\n"
                    f"{self.output()}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise HeraldError(f"herald did not become ready in {timeout} s\n{self.output()}")
            time.sleep(0.02)
        self.addrs = self._ready_addresses()
        return self

    def _ready_addresses(self) -> dict[str, str]:
        """The listener addresses of the ready object, under the names in LISTENERS."""
        # The herald renames the file into place, so once it exists it is complete.
        text = self.ready_file.read_text()
        try:
            ready = json.loads(text)
        except ValueError as exc:
            raise HeraldError(f"unreadable ready file {text!r}\n{self.output()}") from exc
        if not isinstance(ready, dict) or ready.get("event") != "ready":
            raise HeraldError(f"unexpected ready file {text!r}\n{self.output()}")
        found = {
            name: str(ready[name.replace("-", "_")])
            for name in LISTENERS
            if ready.get(name.replace("-", "_")) is not None
        }
        missing = [name for name in LISTENERS if name not in found]
        if missing:
            raise HeraldError(f"ready file lacks {missing}: {text!r}\n{self.output()}")
        self.tls = ready.get("tls") is True
        return found

    def stop(self) -> None:
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=15)
        self.proc = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def output(self) -> str:
        parts = []
        for name in ("stdout.txt", "herald.log"):
            try:
                text = (self.dir / name).read_text(errors="replace")
            except OSError:
                continue
            parts.append(f"--- herald {name} (tail) ---\n{text[-6000:]}")
        return "\n".join(parts)

    # --- addresses -----------------------------------------------------------------------
    @property
    def otlp_endpoint(self) -> str:
        """host:port of OTLP/gRPC (what `setup(endpoint=...)` takes)."""
        return self.addrs["otlp-grpc"]

    @property
    def otlp_http_endpoint(self) -> str:
        """http(s)://host:port of OTLP/HTTP."""
        return f"{self.scheme}://{self.addrs['otlp-http']}"

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    @property
    def api_base(self) -> str:
        return f"{self.scheme}://{self.addrs['api']}"

    def ssl_context(self) -> ssl.SSLContext | None:
        """What HTTPS requests to this herald trust: its test CA only."""
        return ssl.create_default_context(cafile=self.ca_file) if self.tls else None

    # --- HTTP API ------------------------------------------------------------------------
    def request(self, path: str, method: str = "GET") -> tuple[int, Any]:
        """(status, parsed JSON body or raw text) of a request to the API listener."""
        url = self.api_base + path
        req = urllib.request.Request(url, method=method)
        try:
            with urllib.request.urlopen(req, timeout=30, context=self.ssl_context()) as resp:
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        text = raw.decode("utf-8", errors="replace")
        try:
            return status, json.loads(text)
        except ValueError:
            return status, text

    def api(self, path: str, expect: int = 200) -> Any:
        """GET `path` (e.g. ``/api/v1/entity/x``) and return its JSON; assert the status."""
        status, body = self.request(path)
        if status != expect:
            raise ApiError("GET", self.api_base + path, status, json.dumps(body))
        return body

    # Convenience wrappers over the documented endpoints.
    def entity(self, entity_id: str) -> dict[str, Any]:
        return cast(dict[str, Any], self.api(f"/api/v1/entity/{quote_id(entity_id)}"))

    def entity_status(self, entity_id: str) -> int:
        return self.request(f"/api/v1/entity/{quote_id(entity_id)}")[0]

    def graph(self, entity_id: str, query: str = "") -> dict[str, Any]:
        return cast(dict[str, Any], self.api(f"/api/v1/entity/{quote_id(entity_id)}/graph{query}"))

    def operations(self, entity_id: str) -> list[dict[str, Any]]:
        path = f"/api/v1/entity/{quote_id(entity_id)}/operations"
        return cast(list[dict[str, Any]], self.api(path))

    def events(self, entity_id: str) -> list[dict[str, Any]]:
        return self._walk(f"/api/v1/entity/{quote_id(entity_id)}/events", "events")

    def logs(self, entity_id: str) -> list[dict[str, Any]]:
        return self._walk(f"/api/v1/entity/{quote_id(entity_id)}/logs", "logs")

    def lineage(self, entity_id: str, direction: str = "ancestors", query: str = "") -> Any:
        return self.api(
            f"/api/v1/entity/{quote_id(entity_id)}/lineage?direction={direction}{query}"
        )

    def entities(self, **params: str) -> list[dict[str, Any]]:
        """Every entity matching the filters of /api/v1/entities (follows next_cursor)."""
        query = urllib.parse.urlencode(params)
        return self._walk(f"/api/v1/entities?{query}", "entities")

    def _walk(self, path: str, key: str) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        cursor = None
        sep = "&" if "?" in path else "?"
        for _ in range(10_000):
            page = self.api(
                path if cursor is None else f"{path}{sep}cursor={urllib.parse.quote(cursor)}"
            )
            rows.extend(page[key])
            cursor = page.get("next_cursor")
            if not cursor:
                return rows
        raise AssertionError(f"{path}: next_cursor never ended")
