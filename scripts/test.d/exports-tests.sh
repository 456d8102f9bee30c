#!/usr/bin/env bash
# The lineage exports read by the tools made for them: PROV-JSON and PROV-N by the W3C `prov`
# package, OpenLineage events by `openlineage-python`'s models, against a real herald
# (HERALD_BIN or target/debug/herald) fed by the helixobs Python client (OpenTelemetry SDK).
# Own venv (target/exports-venv): the pinned tests/exports/requirements.txt from PyPI and the
# client installed editable (so it is always the tree's).
# Exits non-zero on failure; the last line is `N passed, N failed`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
venv="$PWD/target/exports-venv"
python="$venv/bin/python"
want="$(cat tests/exports/requirements.txt clients/python/pyproject.toml | cksum)"
if [ ! -x "$python" ] || [ "$(cat "$venv/.installed" 2>/dev/null)" != "$want" ]; then
    if ! { python3 -m venv "$venv" &&
        "$python" -m pip install --quiet -r tests/exports/requirements.txt -e ./clients/python; } >&2; then
        echo "exports tests: could not build $venv" >&2
        echo "0 passed, 1 failed"
        exit 1
    fi
    printf '%s\n' "$want" >"$venv/.installed"
fi
export HERALD_BIN="${HERALD_BIN:-$PWD/target/debug/herald}"
[ -x "$HERALD_BIN" ] || cargo build -p herald >&2
exec "$python" tests/exports/test_exports.py
