#!/usr/bin/env bash
# The OpenAPI document against the real herald, by Schemathesis (tests/openapi/run_fuzz.py): a
# short bounded run (10 examples per operation, about a minute); docs/security.md has the long one.
# Own venv (target/openapi-venv) with the pinned tests/openapi/requirements.txt from PyPI.
# Exits non-zero on failure; the last line is `N passed, N failed`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
venv="$PWD/target/openapi-venv"
# shellcheck source=scripts/test.d/venv.sh
source scripts/test.d/venv.sh
check_venv "$venv" -r tests/openapi/requirements.txt
python="$venv/bin/python"
export HERALD_BIN="${HERALD_BIN:-$PWD/target/debug/herald}"
[ -x "$HERALD_BIN" ] || cargo build -p herald >&2
exec "$python" tests/openapi/run_fuzz.py "$@"
