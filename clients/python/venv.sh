#!/usr/bin/env bash
# The one Python environment of this client, clients/python/.venv, shared by run-tests.sh and
# lint.sh: created with $PYTHON (default python3, >= 3.11) when missing, then this package
# installed editable with its test and lint extras (from PyPI).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.venv"
python="${PYTHON:-python3}"

if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --upgrade pip
fi
# The install is editable, so only a changed pyproject.toml needs pip again; the stamp lives
# in the venv, so a new venv always installs.
stamp="$venv/.helixobs-installed"
want="$(cksum <"$here/pyproject.toml")"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    "$venv/bin/python" -m pip install --quiet -e "$here[test,lint]"
    printf '%s\n' "$want" >"$stamp"
fi
