"""The herald binary as the Python checks under tests/ start it: loopback ports chosen by the
OS, a SQLite store in the check's directory, and the ready line it writes once every listener is
bound. Shared by tests/tempo, tests/exports and tests/openapi (each adds this folder to sys.path).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HERALD = os.environ.get("HERALD_BIN", str(ROOT / "target" / "debug" / "herald"))


def start_herald(
    workdir: Path, env_extra: Mapping[str, str] | None = None, command: Sequence[str] = ()
) -> tuple[subprocess.Popen[bytes], dict[str, str]]:
    """Start `herald [command…]` in `workdir`; return the process and its ready line
    (`{"api", "otlp_grpc", "otlp_http", "metrics"}` addresses). Its output goes to
    `workdir/herald.log`, shown if it does not start within a minute."""
    ready = workdir / "ready.json"
    env = {k: v for k, v in os.environ.items() if k not in ("COLLECTOR_ENDPOINT", "DB_URL", "HELIX_READY_FILE")}
    env.update(env_extra or {})
    log = open(workdir / "herald.log", "wb")
    proc = subprocess.Popen(
        [HERALD, *command, "--otlp-grpc-addr", "127.0.0.1:0", "--otlp-http-addr", "127.0.0.1:0",
         "--api-addr", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0",
         "--db-url", f"sqlite://{workdir / 'herald.db'}", "--ready-file", str(ready)],
        cwd=workdir, stdout=log, stderr=log, env=env,
    )
    deadline = time.monotonic() + 60
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("herald did not start:\n" + (workdir / "herald.log").read_text())
        time.sleep(0.02)
    return proc, json.loads(ready.read_text())
