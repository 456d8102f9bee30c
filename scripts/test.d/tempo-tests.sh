#!/usr/bin/env bash
# The Tempo-compatible trace API read by Python's protobuf (google.protobuf.json_format.Parse into
# OTLP TracesData) against a real herald (HERALD_BIN or target/debug/herald). Uses the Python
# client's venv (clients/python/.venv, made by clients/python/venv.sh; it has the OpenTelemetry SDK
# and opentelemetry-proto).
# Exits non-zero on failure; the last line is `N passed, N failed`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
python="${TEMPO_PYTHON:-$PWD/clients/python/.venv/bin/python}"
if [ -z "${TEMPO_PYTHON:-}" ]; then
    bash clients/python/venv.sh >&2
fi
if [ ! -x "$python" ]; then
    echo "tempo tests: no Python at $python" >&2
    echo "0 passed, 1 failed"
    exit 1
fi
export HERALD_BIN="${HERALD_BIN:-$PWD/target/debug/herald}"
[ -x "$HERALD_BIN" ] || cargo build -p herald
exec "$python" tests/tempo/test_tempo_json.py
