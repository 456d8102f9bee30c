#!/usr/bin/env bash
# Entity Inspector browser tests: real headless Chromium against a real herald (built by
# scripts/test.sh; HERALD_BIN or target/debug/herald). Needs scripts/test.d/browser-setup.sh to
# have run (it installs chromium and tests/browser/.venv). Screenshots: artifacts/screenshots/.
# Exits non-zero on failure; each script's last line is `N passed, N failed`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
python="${BROWSER_PYTHON:-$PWD/tests/browser/.venv/bin/python}"
if [ ! -x "$python" ]; then
    # shellcheck disable=SC1091
    source scripts/test.d/browser-setup.sh
    python="$BROWSER_PYTHON"
fi
export HERALD_BIN="${HERALD_BIN:-$PWD/target/debug/herald}"
[ -x "$HERALD_BIN" ] || cargo build -p herald
# Each script ends with its own `N passed, N failed` line (test.sh sums them).
status=0
"$python" tests/browser/test_health.py || status=1
"$python" tests/browser/test_inspector.py || status=1
"$python" tests/browser/test_sign_in.py || status=1
"$python" tests/browser/test_notifications.py || status=1
exit $status
