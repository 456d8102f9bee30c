#!/usr/bin/env bash
# Run the helixobs Python client's lint and test suite (unit + end-to-end) in
# clients/python/.venv. Works on a fresh machine with python3 (>= 3.11), pip access to PyPI
# and a Rust toolchain: the end-to-end tests run the real herald, taken from $HERALD_BIN or
# built here with `cargo build -p herald`. Extra arguments go to pytest
# (e.g. `-m "not slow"` leaves out the ~70 s telescope acceptance run).
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

if [ -z "${HERALD_BIN:-}" ]; then
    echo "building the herald (cargo build -p herald)..." >&2
    (cd "$repo" && cargo build -p herald)
    export HERALD_BIN="$repo/target/debug/herald"
fi
if [ ! -x "$HERALD_BIN" ]; then
    echo "HERALD_BIN=$HERALD_BIN is not an executable herald binary" >&2
    exit 1
fi

cd "$here"
"$venv/bin/ruff" check . ../../examples/telescope
"$venv/bin/python" -m pytest -q "$@"
