"""Benchmark (run by hand, not a test): time until the entity page of an entity with a
2 000-node provenance neighbourhood (1 000 parents, 1 000 children) is interactive in headless
Chromium against a real herald. "Interactive" is the moment the page marks itself ready: the
entity, both lineage walks and the laid-out graph are drawn and clicks are handled.

    tests/browser/.venv/bin/python tests/browser/bench_entity_page.py [runs]
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402
from test_inspector import LAUNCH_ARGS, eid  # noqa: E402


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 7
    chromium = os.environ.get("CHROMIUM_BIN") or shutil.which("chromium") or "/usr/bin/chromium"
    herald = harness.Herald()
    try:
        t = time.perf_counter()
        root = harness.seed_wide(herald, 1000, 1000)
        print(f"seeded 2 001 entities in {time.perf_counter() - t:.1f} s")
        with sync_playwright() as pw, tempfile.TemporaryDirectory() as profile:
            ctx = pw.chromium.launch_persistent_context(profile, executable_path=chromium, headless=True,
                                                        args=LAUNCH_ARGS, viewport={"width": 1400, "height": 1000})
            page = ctx.new_page()
            times = []
            for i in range(runs + 1):
                start = time.perf_counter()
                page.goto(herald.api + eid(root))
                page.wait_for_selector("body[data-ready=true]", timeout=60_000)
                elapsed = time.perf_counter() - start
                if i:  # the first load warms the herald's page cache and the browser
                    times.append(elapsed)
                nodes = page.locator("#graph").get_attribute("data-nodes")
                visible = page.locator("#graph").get_attribute("data-visible")
            # A node responds to a click (it navigates) once the page is ready.
            page.locator("#graph g.node[data-id]").nth(1).click()
            page.wait_for_url("**/entity/wide-*")
            ctx.close()
        print(f"neighbourhood nodes: {nodes}, drawn: {visible}")
        print(f"navigation → interactive over {runs} runs: median {statistics.median(times) * 1000:.0f} ms, "
              f"min {min(times) * 1000:.0f} ms, max {max(times) * 1000:.0f} ms")
    finally:
        herald.stop()


if __name__ == "__main__":
    main()
