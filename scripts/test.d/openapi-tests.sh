#!/usr/bin/env bash
# The OpenAPI document against the real herald, by Schemathesis (tests/openapi/run_fuzz.py): a
# short bounded run (10 examples per operation, about a minute); docs/security.md has the long one.
# Own venv (target/openapi-venv) with the pinned tests/openapi/requirements.txt from PyPI.
# Exits non-zero on failure; the last line is `N passed, N failed`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
venv="$PWD/target/openapi-venv"
python="$venv/bin/python"
want="$(cksum <tests/openapi/requirements.txt)"
if [ ! -x "$python" ] || [ "$(cat "$venv/.installed" 2>/dev/null)" != "$want" ]; then
    if ! { python3 -m venv "$venv" && "$python" -m pip install --quiet -r tests/openapi/requirements.txt; } >&2; then
        echo "openapi tests: could not build $venv" >&2
        echo "0 passed, 1 failed"
        exit 1
    fi
    printf '%s\n' "$want" >"$venv/.installed"
fi
export HERALD_BIN="${HERALD_BIN:-$PWD/target/debug/herald}"
[ -x "$HERALD_BIN" ] || cargo build -p herald >&2
exec "$python" tests/openapi/run_fuzz.py "$@"
