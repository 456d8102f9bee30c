"""Inspector sign-in in real headless Chromium against a real herald with auth on (JWT_SECRET
set): a page asks for a token, keeps it in an HttpOnly SameSite=Strict cookie and goes where it
was asked; a wrong token says why; a page on another origin that POSTs to the herald with the
cookie is refused and the session stays; sign-out ends it.

Run: tests/browser/.venv/bin/python tests/browser/test_sign_in.py  (scripts/test.d/browser-tests.sh)
Ends with `N passed, N failed`.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable

from playwright.sync_api import Page, sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402
from harness import shot  # noqa: E402
from test_inspector import CHROMIUM, LAUNCH_ARGS  # noqa: E402

KEY = "browser-signing-key-5c4b3a29180f7e6d5c4b3a2918"
SECRET = "browser-instrument-secret-0a1b2c3d4e5f60718293"


def sign_in_instrument(herald: harness.Herald) -> str:
    body = json.dumps({"instrument_id": harness.INSTRUMENT, "credential": SECRET}).encode()
    req = urllib.request.Request(herald.api + "/auth/token", data=body, method="POST",
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return str(json.loads(r.read())["token"])


def seed(herald: harness.Herald, token: str) -> None:
    """A few entities, sent with the instrument's token (exports need one with auth on)."""
    mk = harness.SpanMaker(5)
    now = time.time_ns() - 60 * 10**9
    spans = [mk.span("ingest", f"signed-{i}", now + i * 10**6, 10**6) for i in range(3)]
    payload = {"resourceSpans": [{
        "resource": {"attributes": [harness.attr("service.name", "sign-in-seed"),
                                    harness.attr("helix.instrument.id", harness.INSTRUMENT)]},
        "scopeSpans": [{"scope": {"name": "seed"}, "spans": spans}]}]}
    req = urllib.request.Request(herald.otlp + "/v1/traces", data=json.dumps(payload).encode(), method="POST",
                                 headers={"content-type": "application/json", "authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=60) as r:
        assert r.status == 200, r.status


def read_token() -> str:
    out = subprocess.run([harness.herald_binary(), "token", "issue", "--read", "--name", "browser", "--ttl", "1h"],
                         env={"JWT_SECRET": KEY, "PATH": "/usr/bin:/bin"}, capture_output=True, text=True,
                         timeout=60, check=True)
    return out.stdout.strip()


class Elsewhere:
    """Another origin on loopback (same host, another port: same site, so SameSite alone would
    let the cookie through) with a page that POSTs to the herald's sign-out."""

    def __init__(self, target: str) -> None:
        page = (f'<!doctype html><form id="f" method="post" action="{target}/sign-out"></form>'
                '<script>document.getElementById("f").submit()</script>').encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                self.send_response(200)
                self.send_header("content-type", "text/html")
                self.send_header("content-length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def expect(cond: bool, message: str) -> None:
    if not cond:
        raise AssertionError(message)


def sign_in(page: Page, base: str, token: str, path: str = "/instruments") -> None:
    page.goto(base + path)
    expect(page.url.startswith(base + "/sign-in?next="), f"sent to the sign-in page, got {page.url}")
    page.fill("#token", token)
    page.click("#sign-in")
    page.wait_for_selector("body[data-ready=true]", timeout=15_000)


def test_sign_in_takes_a_token_and_keeps_it_http_only(page: Page, base: str, token: str) -> None:
    sign_in(page, base, token)
    expect(page.url == base + "/instruments", f"back where it was going: {page.url}")
    page.wait_for_selector(f"text={harness.INSTRUMENT}", timeout=15_000)
    shot(page, "sign-in-done")
    (cookie,) = [c for c in page.context.cookies() if c["name"] == "helix_session"]
    expect(cookie["httpOnly"] is True, f"HttpOnly: {cookie}")
    expect(cookie["sameSite"] == "Strict", f"SameSite=Strict: {cookie}")
    expect(cookie["secure"] is False, "plain HTTP on loopback: not Secure")
    expect("helix_session" not in page.evaluate("document.cookie"), "no script reads the token")
    expect(page.locator("#sign-out").count() == 1, "the header offers to sign out")


def test_a_wrong_token_says_why(page: Page, base: str, token: str) -> None:
    page.goto(base + "/sign-in")
    shot(page, "sign-in-page")
    page.fill("#token", "not-a-token")
    page.click("#sign-in")
    message = page.locator("#sign-in-message")
    message.wait_for(timeout=15_000)
    expect("not a well-formed JWT" in message.inner_text(), message.inner_text())
    expect(not [c for c in page.context.cookies() if c["name"] == "helix_session"], "no cookie for a bad token")


def test_a_cross_site_post_is_refused_and_the_session_stays(page: Page, base: str, token: str) -> None:
    sign_in(page, base, token)
    elsewhere = Elsewhere(base)
    try:
        with page.expect_response(lambda r: r.url == base + "/sign-out") as answer:
            page.goto(elsewhere.url)
        response = answer.value
        expect(response.status == 403, f"cross-site POST answered {response.status}")
        expect("cross-site request refused" in response.text(), response.text())
        shot(page, "sign-in-cross-site-refused")
    finally:
        elsewhere.stop()
    page.goto(base + "/instruments")
    page.wait_for_selector("body[data-ready=true]", timeout=15_000)
    expect(page.url == base + "/instruments", f"still signed in: {page.url}")


def test_sign_out_ends_the_session(page: Page, base: str, token: str) -> None:
    sign_in(page, base, token)
    page.click("#sign-out")
    page.wait_for_url(base + "/sign-in", timeout=15_000)
    expect(not [c for c in page.context.cookies() if c["name"] == "helix_session"], "the cookie is gone")
    page.goto(base + "/instruments")
    expect(page.url.startswith(base + "/sign-in?next="), f"signed out: {page.url}")


TESTS: list[Callable[[Page, str, str], None]] = [
    test_sign_in_takes_a_token_and_keeps_it_http_only,
    test_a_wrong_token_says_why,
    test_a_cross_site_post_is_refused_and_the_session_stays,
    test_sign_out_ends_the_session,
]


def main() -> int:
    passed = failed = 0
    with tempfile.TemporaryDirectory(prefix="sign-in-instruments-") as instruments:
        digest = hashlib.sha256(SECRET.encode()).hexdigest()
        (Path(instruments) / "browsertel.yml").write_text(
            f'instrument_id: {harness.INSTRUMENT}\nauth:\n  type: secret\n  api_key_hash: "sha256:{digest}"\n')
        herald = harness.Herald({"JWT_SECRET": KEY, "INSTRUMENTS_DIR": instruments})
        try:
            seed(herald, sign_in_instrument(herald))
            token = read_token()
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS)
                for test in TESTS:
                    # A fresh browser context each: no cookie carries over between tests.
                    context = browser.new_context(viewport={"width": 1200, "height": 800})
                    page = context.new_page()
                    try:
                        ok = harness.run(test, page, page, herald.api, token)
                    finally:
                        context.close()
                    passed, failed = passed + ok, failed + (not ok)
                browser.close()
        finally:
            herald.stop()
    return harness.summary(passed, failed)


if __name__ == "__main__":
    sys.exit(main())
