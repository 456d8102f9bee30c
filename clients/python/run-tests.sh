#!/usr/bin/env bash
# Run the helixobs Python client's lint and test suite in clients/python/.venv.
# Works on a fresh machine with python3 (>= 3.11) and pip access to PyPI.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="$here/.venv"
python="${PYTHON:-python3}"

if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --upgrade pip
fi
# Re-running is cheap when everything is already installed.
(cd "$repo" && "$venv/bin/python" -m pip install --quiet -e './clients/python[test]')

cd "$here"
"$venv/bin/ruff" check . ../../examples/telescope
"$venv/bin/python" -m pytest -q "$@"
