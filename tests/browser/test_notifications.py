"""The Inspector's notifications page in real headless Chromium against a real herald whose
instrument file sends helix.error to a Slack webhook (a loopback stub recording every POST):
the "Manage Silences" link of the Slack message opens the page with the silence form pre-filled;
creating the silence lists it; deleting it removes it; the alert and the delivery log are shown.

Run: tests/browser/.venv/bin/python tests/browser/test_notifications.py  (scripts/test.d/browser-tests.sh)
Ends with `N passed, N failed`.
"""

from __future__ import annotations

import http.server
import json
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any

from playwright.sync_api import Page, sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402
from harness import shot  # noqa: E402
from test_inspector import CHROMIUM, LAUNCH_ARGS  # noqa: E402

MESSAGE = "disk full on node 3"


class Slack:
    """A Slack incoming webhook on loopback that keeps every JSON body it is sent."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        bodies = self.bodies

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("content-length", "0"))
                bodies.append(json.loads(self.rfile.read(length)))
                self.send_response(200)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()


def expect(cond: bool, message: str) -> None:
    if not cond:
        raise AssertionError(message)


def send_errors(herald: harness.Herald) -> None:
    mk = harness.SpanMaker(11)
    now = time.time_ns() - 10**9
    spans = [mk.span("archive", f"blk-{i}", now + i * 10**6, 10**6,
                     events=[("helix.error", now + i * 10**6 + 10, {"message": MESSAGE.replace("3", str(i))})],
                     error=True) for i in range(3)]
    spans.append(mk.span("archive", "blk-x", now, 10**6,
                         events=[("helix.error", now + 20, {"message": "checksum mismatch"})], error=True))
    herald.send(spans)


def manage_silences_link(slack: Slack) -> str:
    deadline = time.time() + 20
    while time.time() < deadline:
        for body in [b for b in list(slack.bodies) if "disk full" in str(b.get("text"))]:
            for block in body.get("blocks", []):
                for el in block.get("elements", []):
                    if el.get("text", {}).get("text") == "Manage Silences":
                        return str(el["url"])
        time.sleep(0.1)
    raise AssertionError(f"no Slack message with a Manage Silences button: {slack.bodies}")


def test_a_silence_from_the_slack_link_is_created_listed_and_deleted(page: Page, base: str, slack: Slack) -> None:
    link = urllib.parse.urlsplit(manage_silences_link(slack))
    query = urllib.parse.parse_qs(link.query)
    fingerprint = query["fingerprint"][0]
    expect(query["instrument_id"] == [harness.INSTRUMENT], f"instrument in the link: {link}")
    page.goto(base + link.path + "?" + link.query)
    page.wait_for_selector("body[data-ready=true]", timeout=15_000)
    form = page.locator("#silence-form")
    expect(form.locator("input[name=instrument_id]").input_value() == harness.INSTRUMENT, "instrument pre-filled")
    expect(form.locator("input[name=fingerprint]").input_value() == fingerprint, "fingerprint pre-filled")
    expect(form.locator("input[name=event_type]").input_value() == "helix.error", "event type pre-filled")
    # The alert of that class is listed, with its count, and the delivery log shows the messages.
    alert = page.locator(f'#alerts tr.alert[data-fingerprint="{fingerprint}"]')
    expect(alert.count() == 1, "the class is an active alert")
    expect("3" in alert.locator("td.num").text_content(), "three occurrences")
    expect(page.locator("#deliveries tr.delivery.sent").count() >= 1, "sent messages in the delivery log")
    expect(page.locator("#silences").inner_text().find("No silences") >= 0, "no silence yet")

    form.locator("input[name=silenced_by]").fill("alice")
    form.locator("input[name=reason]").fill("disk being replaced")
    form.locator("button[type=submit]").click()
    row = page.locator("#silences tr.silence.active")
    row.wait_for(timeout=10_000)
    expect(fingerprint in row.inner_text() and "alice" in row.inner_text(), f"listed: {row.inner_text()}")
    expect("created" in page.locator("#silence-message").inner_text(), "the form says so")
    shot(page, "notifications")

    before = len(slack.bodies)
    row.locator("button.delete").click()
    page.locator("#silences p.muted", has_text="No silences").wait_for(timeout=10_000)
    expect(len(slack.bodies) == before, "deleting sends nothing")


def test_a_silence_can_be_expired_and_stays_listed(page: Page, base: str, slack: Slack) -> None:
    page.goto(base + "/notifications?instrument_id=" + harness.INSTRUMENT)
    page.wait_for_selector("body[data-ready=true]", timeout=15_000)
    form = page.locator("#silence-form")
    expect(form.locator("input[name=fingerprint]").input_value() == "", "nothing pre-filled without a link")
    form.locator("input[name=silenced_by]").fill("bob")
    form.locator("button[type=submit]").click()
    row = page.locator("#silences tr.silence.active")
    row.wait_for(timeout=10_000)
    expect("whole instrument" in row.inner_text(), row.inner_text())
    row.locator("button.expire").click()
    page.locator("#silences tr.silence.expired").wait_for(timeout=10_000)
    expect(page.locator("#silences tr.silence.active").count() == 0, "no active silence left")


TESTS = [test_a_silence_from_the_slack_link_is_created_listed_and_deleted, test_a_silence_can_be_expired_and_stays_listed]


def main() -> int:
    passed = failed = 0
    slack = Slack()
    with tempfile.TemporaryDirectory(prefix="notify-instruments-") as instruments:
        (Path(instruments) / "browsertel.yml").write_text(
            f"instrument_id: {harness.INSTRUMENT}\nnotifications:\n  slack_webhook_env: BROWSER_SLACK_HOOK\n"
            "  events:\n    helix.error:\n      slack: {channel: \"#alerts\", max_per_window: 100}\n")
        herald = harness.Herald({"INSTRUMENTS_DIR": instruments, "BROWSER_SLACK_HOOK": slack.url,
                                 "HELIX_NOTIFY_POLL": "50ms"})
        try:
            send_errors(herald)
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS)
                for test in TESTS:
                    context = browser.new_context(viewport={"width": 1300, "height": 900})
                    page = context.new_page()
                    errors: list[str] = []
                    page.on("pageerror", lambda e: errors.append(str(e)))
                    try:
                        ok = harness.run(test, page, page, herald.api, slack,
                                         check=lambda: expect(not errors, f"script errors: {errors}"))
                    finally:
                        context.close()
                    passed, failed = passed + ok, failed + (not ok)
                browser.close()
        finally:
            herald.stop()
            slack.stop()
    return harness.summary(passed, failed)


if __name__ == "__main__":
    sys.exit(main())
