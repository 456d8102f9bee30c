#!/usr/bin/env bash
# Lint the helixobs Python client: `ruff check` (package, tests, examples/telescope) and
# `mypy --strict` (package and tests), with the versions pinned in pyproject.toml's `lint`
# extra, in clients/python/.venv (created by venv.sh when missing). Both tools always run;
# the exit status is non-zero when either reports a problem.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.venv"

bash "$here/venv.sh"

cd "$here"
status=0
"$venv/bin/ruff" check . ../../examples/telescope || status=1
# Files and options come from [tool.mypy] in pyproject.toml.
"$venv/bin/mypy" --strict || status=1
exit "$status"
