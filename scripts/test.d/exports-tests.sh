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
# shellcheck source=scripts/test.d/venv.sh
source scripts/test.d/venv.sh
check_venv "$venv" -r tests/exports/requirements.txt -e ./clients/python
python="$venv/bin/python"
export HERALD_BIN="${HERALD_BIN:-$PWD/target/debug/herald}"
[ -x "$HERALD_BIN" ] || cargo build -p herald >&2
exec "$python" tests/exports/test_exports.py
