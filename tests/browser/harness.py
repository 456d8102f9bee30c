"""A real herald process for the browser tests, a small load generator that seeds it over
OTLP/HTTP JSON with a telescope-shaped pipeline (blocks → candidates → events, operations,
errors) plus entities with hostile IDs, and the one way every browser test file runs and
reports its tests. Standard library only."""

from __future__ import annotations

import json
import os
import random
import subprocess
import tempfile
import time
import traceback
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[2]
SHOTS = REPO / "artifacts" / "screenshots"
INSTRUMENT = "BROWSERTEL"
HOSTILE_ID = "<img src=x onerror=alert(1)>\"'/🚀"
HOSTILE_MESSAGE = "<script>alert(2)</script> bad 'quote'"
TARGET = "cand-target"


def shot(page: Any, name: str) -> None:
    """A full-page screenshot of `page` in artifacts/screenshots/`name`.png."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def run(test: Callable[..., None], page: Any | None, *args: Any,
        check: Callable[[], None] | None = None) -> bool:
    """Runs `test(*args)` (then `check()`), prints PASS or FAIL with the traceback, and keeps a
    screenshot of `page` (if any) when it fails. True when it passed."""
    name = test.__name__
    try:
        test(*args)
        if check is not None:
            check()
    except Exception:
        print(f"FAIL {name}\n{traceback.format_exc()}", flush=True)
        if page is not None:
            try:
                shot(page, f"FAILED-{name}")
            except Exception:
                pass
        return False
    print(f"PASS {name}", flush=True)
    return True


def summary(passed: int, failed: int) -> int:
    """Prints the tally; the exit status of a test file."""
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


def herald_binary() -> str:
    path = os.environ.get("HERALD_BIN") or str(REPO / "target" / "debug" / "herald")
    if not os.access(path, os.X_OK):
        subprocess.run(["cargo", "build", "-p", "herald"], cwd=REPO, check=True)
    return path


class Herald:
    """`herald` on loopback ports chosen by the OS, with its own temporary database."""

    def __init__(self, extra_env: dict[str, str] | None = None) -> None:
        self.dir = tempfile.TemporaryDirectory(prefix="herald-browser-")
        env = {k: v for k, v in os.environ.items()
               if k not in ("DB_URL", "COLLECTOR_ENDPOINT", "API_ADDR", "GRAFANA_URL", "HELIX_READY_FILE")}
        env.update(extra_env or {})
        self.log = open(Path(self.dir.name) / "herald.log", "w")
        # The herald renames this file into place once every listener is bound and the store is
        # open, so a file that exists is complete.
        ready_file = Path(self.dir.name) / "ready.json"
        self.proc = subprocess.Popen(
            [herald_binary(), "--otlp-grpc-addr", "127.0.0.1:0", "--otlp-http-addr", "127.0.0.1:0",
             "--api-addr", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0",
             "--db-url", f"sqlite://{self.dir.name}/herald.db", "--ready-file", str(ready_file)],
            stdout=self.log, stderr=self.log, stdin=subprocess.DEVNULL, env=env)
        deadline = time.time() + 60
        while not ready_file.exists() and self.proc.poll() is None and time.time() < deadline:
            time.sleep(0.02)
        if not ready_file.exists():
            self._fail("herald exited before it was ready" if self.proc.poll() is not None
                                else "herald did not become ready in 60 s")
        ready = json.loads(ready_file.read_text())
        self.api = "http://" + ready["api"]
        self.otlp = "http://" + ready["otlp_http"]

    def _fail(self, why: str) -> None:
        log = (Path(self.dir.name) / "herald.log").read_text()
        self.stop()
        raise RuntimeError(f"{why}: {log}")

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.api + path, timeout=30) as r:
            return json.loads(r.read())

    def send(self, spans: list[dict[str, Any]], service: str = "browser-seed") -> None:
        body = {"resourceSpans": [{
            "resource": {"attributes": [attr("service.name", service), attr("helix.instrument.id", INSTRUMENT)]},
            "scopeSpans": [{"scope": {"name": "seed"}, "spans": spans}]}]}
        req = urllib.request.Request(self.otlp + "/v1/traces", data=json.dumps(body).encode(),
                                     headers={"content-type": "application/json"}, method="POST")
        with urllib.request.urlopen(req, timeout=60) as r:
            assert r.status == 200, r.status

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        self.dir.cleanup()


def attr(key: str, value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        v: dict[str, Any] = {"boolValue": value}
    elif isinstance(value, int):
        v = {"intValue": str(value)}
    elif isinstance(value, float):
        v = {"doubleValue": value}
    else:
        v = {"stringValue": str(value)}
    return {"key": key, "value": v}


class SpanMaker:
    def __init__(self, seed: int = 7) -> None:
        self.rng = random.Random(seed)

    def ids(self) -> tuple[str, str]:
        return "%032x" % self.rng.getrandbits(128), "%016x" % self.rng.getrandbits(64)

    def span(self, name: str, entity: str, start_ns: int, dur_ns: int, *, parents: list[str] | None = None,
             operation: bool = False, meta: dict[str, Any] | None = None,
             events: list[tuple[str, int, dict[str, Any]]] | None = None, error: bool = False) -> dict[str, Any]:
        trace, span = self.ids()
        attrs = [attr("helix.entity.id", entity)]
        if parents:
            attrs.append(attr("helix.parent.ids", ",".join(parents)))
        if operation:
            attrs.append(attr("helix.entity.is_operation", "true"))
        attrs += [attr(k, v) for k, v in (meta or {}).items()]
        out: dict[str, Any] = {
            "traceId": trace, "spanId": span, "name": name, "kind": 1,
            "startTimeUnixNano": str(start_ns), "endTimeUnixNano": str(start_ns + dur_ns),
            "attributes": attrs,
            "events": [{"timeUnixNano": str(t), "name": n, "attributes": [attr(k, v) for k, v in a.items()]}
                       for n, t, a in (events or [])],
        }
        if error:
            out["status"] = {"code": 2, "message": "failed"}
        return out


def seed(herald: Herald, candidates: int = 120) -> dict[str, Any]:
    """Seeds a pipeline whose shape the tests know; returns what they check against."""
    mk = SpanMaker()
    now = time.time_ns()
    base = now - 15 * 60 * 10**9
    spans: list[dict[str, Any]] = []
    blocks = [f"blk-{i}" for i in range(4)]
    for i, b in enumerate(blocks):
        spans.append(mk.span("ingest", b, base + i * 10**9, 2 * 10**9, meta={"beam": i}))
    mask_errors = 0
    timeout_errors = 0
    for i in range(candidates):
        t = base + 60 * 10**9 + i * 6 * 10**9
        events = []
        if i % 10 == 3:
            events.append(("helix.error", t + 1000, {"message": f"mask {i} failed", "stage": "search"}))
            mask_errors += 1
        if i % 25 == 4:
            events.append(("helix.error", t + 2000, {"message": "classifier timeout after 30 s", "stage": "classify"}))
            timeout_errors += 1
        spans.append(mk.span("search", f"cand-{i:03d}", t, 40 * 10**6, parents=[blocks[i % 4]],
                             meta={"snr": round(6 + mk.rng.random() * 30, 2), "dm": round(50 + mk.rng.random() * 1400, 1)},
                             events=events, error=bool(events)))
    spans.append(mk.span("cluster", "evt-0", base + 13 * 60 * 10**9, 10**8, parents=["cand-000", "cand-001", "cand-002"],
                         meta={"snr": 25.0}))
    # The entity whose timelines the tests count: 3 operations (one failed) and 2 events.
    t = now - 5 * 60 * 10**9
    spans.append(mk.span("search", TARGET, t, 50 * 10**6, parents=["blk-2"], meta={"snr": 12.5, "dm": 300.0},
                         events=[("helix.event.classified", t + 10**6, {"label": "frb", "score": 0.9})]))
    spans.append(mk.span("archive", TARGET, t + 10**9, 200 * 10**6, operation=True, meta={"path": "/data/x.h5"}))
    spans.append(mk.span("calibrate", TARGET, t + 2 * 10**9, 300 * 10**6, operation=True))
    spans.append(mk.span("publish", TARGET, t + 3 * 10**9, 100 * 10**6, operation=True, error=True,
                         events=[("helix.error", t + 3 * 10**9 + 5 * 10**7, {"message": "broker unreachable", "stage": "publish"})]))
    # Hostile IDs: the entity, its parent and child link it into ordinary pages.
    th = now - 60 * 10**9
    spans.append(mk.span("search", HOSTILE_ID, th, 10**7, parents=["blk-1"], meta={"snr": 99.0, "dm": 700.0, "note": "<b>bold</b> & \"q\""},
                         events=[("helix.error", th + 1000, {"message": HOSTILE_MESSAGE, "stage": "search"}),
                                 ("helix.event.flagged", th + 2000, {"why": "<svg onload=alert(3)>"})], error=True))
    spans.append(mk.span("archive", HOSTILE_ID, th + 10**9, 10**8, operation=True))
    spans.append(mk.span("cluster", "evt-hostile-child", th + 2 * 10**9, 10**7, parents=[HOSTILE_ID]))
    for chunk in range(0, len(spans), 50):
        herald.send(spans[chunk:chunk + 50])
    # Wait until the writer committed the last entity.
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            herald.get("/api/v1/entity/evt-hostile-child")
            break
        except Exception:
            time.sleep(0.2)
    return {"mask_errors": mask_errors, "timeout_errors": timeout_errors, "parents_of_target": ["blk-2"]}


def seed_wide(herald: Herald, parents: int = 1000, children: int = 1000) -> str:
    """An entity with a `parents + children`-node neighbourhood (for the page benchmark)."""
    mk = SpanMaker(11)
    now = time.time_ns() - 10 * 60 * 10**9
    root = "wide-root"
    ps = [f"wide-p-{i:05d}" for i in range(parents)]
    spans = [mk.span("ingest", p, now + i * 1000, 1000, meta={"snr": float(i % 50)},
                     error=(i % 97 == 0), events=[("helix.error", now + i * 1000, {"message": "x", "stage": "ingest"})] if i % 97 == 0 else None)
             for i, p in enumerate(ps)]
    spans.append(mk.span("combine", root, now + 10**9, 10**6, parents=ps))
    spans += [mk.span("derive", f"wide-c-{i:05d}", now + 2 * 10**9 + i * 1000, 1000, parents=[root]) for i in range(children)]
    for chunk in range(0, len(spans), 500):
        herald.send(spans[chunk:chunk + 500])
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            herald.get("/api/v1/entity/" + urllib.parse.quote(f"wide-c-{children - 1:05d}", safe=""))
            break
        except Exception:
            time.sleep(0.2)
    return root
