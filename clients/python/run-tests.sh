#!/usr/bin/env bash
# Run the helixobs Python client's lint (lint.sh: ruff, mypy --strict) and test suite (unit +
# end-to-end) in clients/python/.venv (made by venv.sh). Works on a fresh machine with python3
# (>= 3.11), pip access to PyPI and a Rust toolchain: the end-to-end tests run the real herald,
# taken from $HERALD_BIN or built here with `cargo build -p herald`. Extra arguments go to
# pytest (e.g. `-m "not slow"` leaves out the ~70 s telescope acceptance run).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="$here/.venv"

bash "$here/venv.sh"

if [ -z "${HERALD_BIN:-}" ]; then
    echo "building the herald (cargo build -p herald)..." >&2
    (cd "$repo" && cargo build -p herald)
    export HERALD_BIN="$repo/target/debug/herald"
fi
if [ ! -x "$HERALD_BIN" ]; then
    echo "HERALD_BIN=$HERALD_BIN is not an executable herald binary" >&2
    exit 1
fi

bash "$here/lint.sh"
cd "$here"
"$venv/bin/python" -m pytest -q "$@"
