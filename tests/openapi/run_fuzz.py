"""The herald's OpenAPI document against the herald itself, by a schema-driven fuzzer.

Starts the real herald (`herald demo`: a simulated telescope feeding it, so reads find data)
with auth on, gives Schemathesis a read-only token, and runs every check Schemathesis has on
every operation of `/api/openapi.json` (settings and the documented exceptions in
`schemathesis.toml` beside this file): no server error, every status code, content type,
header and body as documented, schema-valid requests accepted, schema-violating ones refused,
requests without or with a bad token refused. Then checks the herald is still up and logged
no panic.

    python tests/openapi/run_fuzz.py [--max-examples N] [--seed S]   # suite: 10 examples

Prints one line per check and a closing `N passed, N failed`.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
from herald_process import HERALD, start_herald  # noqa: E402
HERE = Path(__file__).resolve().parent
# Only for this run's throwaway herald.
JWT_SECRET = "openapi-fuzz-key-5f0e1d2c3b4a59687766554433221100"


def read_token() -> str:
    out = subprocess.run(
        [HERALD, "token", "issue", "--read", "--name", "openapi-fuzz", "--ttl", "1h"],
        env={**os.environ, "JWT_SECRET": JWT_SECRET}, capture_output=True, text=True, check=True,
    )
    return out.stdout.strip().splitlines()[-1]


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--max-examples", type=int, default=10)
    ap.add_argument("--seed", type=int, default=None, help="Schemathesis seed (to replay a run)")
    args = ap.parse_args()
    passed = failed = 0

    def check(name: str, ok: bool, detail: str = "") -> None:
        nonlocal passed, failed
        print(("PASS " if ok else "FAIL ") + name + ("" if ok or not detail else "\n" + detail), flush=True)
        if ok:
            passed += 1
        else:
            failed += 1

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "instruments").mkdir()
        proc, ready = start_herald(
            work, {"JWT_SECRET": JWT_SECRET, "INSTRUMENTS_DIR": str(work / "instruments")}, command=["demo"]
        )
        try:
            api = f"http://{ready['api']}"
            # Some data first, so the examples find entities and traces.
            time.sleep(3)
            token = read_token()
            st = Path(sys.executable).with_name("st")
            cmd = [
                str(st), "--config-file", str(HERE / "schemathesis.toml"), "run", f"{api}/api/openapi.json",
                "-H", f"Authorization: Bearer {token}",
                "--checks", "all", "--phases", "examples,coverage,fuzzing",
                # One worker: Hypothesis describing its filters from two threads at once trips
                # a CPython 3.11 parser error (a Schemathesis "Runtime Error", not a finding).
                "--max-examples", str(args.max_examples), "--workers", "1",
                "--suppress-health-check", "all", "--request-timeout", "20",
                "--continue-on-failure", "--no-color",
            ]
            if args.seed is not None:
                cmd += ["--seed", str(args.seed)]
            t0 = time.monotonic()
            run = subprocess.run(cmd, capture_output=True, text=True, cwd=work)  # its cache stays in the temp dir
            summary = run.stdout[run.stdout.rfind("SUMMARY"):] if "SUMMARY" in run.stdout else run.stdout[-3000:]
            check(
                f"schemathesis, every check on every operation ({args.max_examples} examples each, "
                f"{time.monotonic() - t0:.0f} s): no server error, no response the document does not allow",
                run.returncode == 0,
                run.stdout[-20000:] + run.stderr[-3000:],
            )
            if run.returncode == 0:
                print("   " + "\n   ".join(line for line in summary.splitlines() if line.strip())[:2000])
            with urllib.request.urlopen(f"{api}/healthz", timeout=10) as r:
                alive = r.status == 200
            check("the herald is still up after the run", alive and proc.poll() is None)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        log = (work / "herald.log").read_text(errors="replace")
        check("the herald logged no panic", "panicked" not in log,
              "\n".join(line for line in log.splitlines() if "panicked" in line)[:3000])
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
