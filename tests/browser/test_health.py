"""The Inspector's health page (/health) in real headless Chromium against real heralds: every
panel shows numbers (no NaN, no empty cell), they follow what the herald does while the page is
open (exports, refusals, the platform canary), and the header marks a degraded herald.

Run: tests/browser/.venv/bin/python tests/browser/test_health.py  (scripts/test.d/browser-tests.sh)
Screenshots go to artifacts/screenshots/. Ends with `N passed, N failed`.
"""

from __future__ import annotations

import socket
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable

from playwright.sync_api import sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402
from test_inspector import CHROMIUM, LAUNCH_ARGS, Session, expect  # noqa: E402

PANELS = ["ingest", "writes", "refusals", "forwarder", "store", "canary", "notifications"]


def field(s: Session, name: str) -> str:
    return str(s.page.inner_text(f'[data-field="{name}"]')).strip()


def number(text: str) -> float:
    return float(text.split()[0].replace(",", ""))


def refreshes(s: Session) -> int:
    return int(s.page.get_attribute("#health-panels", "data-refreshes") or "0")


def until(cond: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    # Polled from here: the page's CSP (no eval) rules out Playwright's string predicates.
    deadline = time.time() + timeout
    while not cond():
        if time.time() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.1)


def wait_refresh(s: Session, after: int) -> None:
    until(lambda: refreshes(s) > after, f"the health page refreshes more than {after} times")


def post_garbage(herald: harness.Herald) -> None:
    req = urllib.request.Request(herald.otlp + "/v1/traces", data=b"not protobuf",
                                 headers={"content-type": "application/x-protobuf"}, method="POST")
    try:
        urllib.request.urlopen(req, timeout=10)
    except urllib.error.HTTPError as e:
        assert e.code == 400, e.code


def test_health_page_shows_live_numbers(s: Session, herald: harness.Herald) -> None:
    s.open("/health")
    wait_refresh(s, 1)
    for p in PANELS:
        expect(s.page.locator(f"#panel-{p} td[data-field]").count() > 0, f"panel {p} is empty")
    cells = s.page.eval_on_selector_all("#health-panels td[data-field]", "els => els.map(e => [e.dataset.field, e.textContent])")
    for name, text in cells:
        expect(text.strip() not in ("", "–") and "NaN" not in text and "undefined" not in text,
               f"{name} shows {text!r}")
    spans_before = number(field(s, "spans_total"))
    expect(spans_before > 0, f"the seeded spans are counted: {spans_before}")
    expect(field(s, "canary_state") == "ok", f"canary: {field(s, 'canary_state')}")
    expect(field(s, "forward_state").startswith("off"), field(s, "forward_state"))
    expect(field(s, "store_state") == "sqlite, ready", field(s, "store_state"))
    expect(number(field(s, "write_latency")) > 0, f"write latency {field(s, 'write_latency')}")
    expect(field(s, "store_size").endswith(("KiB", "MiB")), f"store size {field(s, 'store_size')}")
    expect("passes" in field(s, "retention"), f"retention {field(s, 'retention')}")
    refused_before = number(field(s, "refused_total"))

    # While the page stays open: more spans and a refused export.
    mk = harness.SpanMaker(99)
    now = time.time_ns()
    herald.send([mk.span("ingest", f"live-{i}", now + i, 1000) for i in range(25)])
    post_garbage(herald)
    n = refreshes(s)
    wait_refresh(s, n + 1)
    expect(number(field(s, "spans_total")) >= spans_before + 25, f"{field(s, 'spans_total')} after 25 more")
    expect(number(field(s, "refused_total")) == refused_before + 1, f"refused {field(s, 'refused_total')}")
    expect("malformed: 1" in s.page.inner_text("#panel-refusals"), s.page.inner_text("#panel-refusals"))
    expect(s.page.is_hidden("#degraded"), "nothing is degraded")
    expect(s.page.inner_text('header nav a[data-nav="health"]') == "Health", "no degraded mark")
    s.shot("health")
    s.check_clean()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_degraded_herald_is_marked_in_the_header(s: Session, _: harness.Herald) -> None:
    # A Tempo nobody listens on: the canary cannot be confirmed there.
    broken = harness.Herald({"PLATFORM_CHECK_INTERVAL_SECS": "1", "PLATFORM_CHECK_DELAY_SECS": "0",
                             "TEMPO_QUERY_URL": f"http://127.0.0.1:{free_port()}"})
    try:
        s.base = broken.api
        deadline = time.time() + 20
        while time.time() < deadline and not broken.get("/api/v1/health")["degraded"]:
            time.sleep(0.2)
        s.open("/instruments")
        link = 'header nav a[data-nav="health"]'
        until(lambda: "degraded" in (s.page.get_attribute(link, "class") or ""), "the header marks the herald degraded")
        expect("⚠" in s.page.inner_text(link), s.page.inner_text(link))
        s.page.click(link)
        s.ready()
        wait_refresh(s, 0)
        banner = s.page.inner_text("#degraded")
        expect("platform check" in banner and "tempo" in banner, banner)
        expect(field(s, "canary_state") == "FAILING", field(s, "canary_state"))
        s.shot("health-degraded")
        s.check_clean()
    finally:
        broken.stop()


TESTS: list[Callable[[Session, harness.Herald], None]] = [
    test_health_page_shows_live_numbers,
    test_degraded_herald_is_marked_in_the_header,
]


def main() -> int:
    passed = failed = 0
    # Retention passes every second, so the page has some to show.
    herald = harness.Herald({"PLATFORM_CHECK_INTERVAL_SECS": "1", "HELIX_RETENTION_INTERVAL_SECS": "1"})
    try:
        harness.seed(herald)
        # The first canary (one interval after start) has been checked.
        deadline = time.time() + 20
        while time.time() < deadline and not (herald.get("/readyz")["platform_check"].get("last") or {}).get("ok"):
            time.sleep(0.2)
        with sync_playwright() as pw, tempfile.TemporaryDirectory(prefix="health-chromium-") as profile:
            context = pw.chromium.launch_persistent_context(
                profile, executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS,
                viewport={"width": 1400, "height": 1000})
            for test in TESTS:
                page = context.new_page()
                try:
                    ok = harness.run(test, page, Session(page, herald.api), herald)
                finally:
                    page.close()
                passed, failed = passed + ok, failed + (not ok)
            context.close()
    finally:
        herald.stop()
    return harness.summary(passed, failed)


if __name__ == "__main__":
    sys.exit(main())
