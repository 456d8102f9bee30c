#!/usr/bin/env bash
# Python client cost: the bare OpenTelemetry SDK vs our client vs the published helixobs 0.5.3,
# in one run (bench_client.py; results and method in docs/benchmarks.md, "Python client cost").
#
# Builds two virtual environments under $HELIX_BENCH_DIR (default
# ${XDG_CACHE_HOME:-~/.cache}/helixobs-bench), both with $PYTHON (default python3) and the same
# pinned OpenTelemetry API/SDK/exporters ($OTEL_VERSION, default 1.45.2; helixobs 0.5.3 asks for
# opentelemetry-sdk>=1.24, ours for >=1.30,<2):
#   ours/       this checkout's clients/python, reinstalled (not editable) on every run;
#   published/  helixobs==0.5.3 from PyPI.
# Then runs the benchmark; extra arguments go to bench_client.py (e.g. --rounds 40 --json r.json).
# Prints `uptime` before and after: the machine is shared, the load belongs with the figures.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
dir="${HELIX_BENCH_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/helixobs-bench}"
python="${PYTHON:-python3}"
otel="${OTEL_VERSION:-1.45.2}"

mkdir -p "$dir"
constraints="$dir/constraints.txt"
printf '%s\n' \
    "opentelemetry-api==$otel" \
    "opentelemetry-sdk==$otel" \
    "opentelemetry-exporter-otlp-proto-grpc==$otel" \
    "opentelemetry-exporter-otlp-proto-http==$otel" \
    "opentelemetry-exporter-otlp-proto-common==$otel" \
    "opentelemetry-proto==$otel" >"$constraints"

for venv in ours published; do
    if [ ! -x "$dir/$venv/bin/python" ]; then
        "$python" -m venv "$dir/$venv"
    fi
done

# Our client: its dependencies within the pins, then the package itself from this checkout,
# built in a copy so that the build leaves nothing in the source tree.
src="$(mktemp -d)"
trap 'rm -rf "$src"' EXIT
cp -R "$repo/clients/python/pyproject.toml" "$repo/clients/python/README.md" \
    "$repo/clients/python/src" "$src/"
"$dir/ours/bin/python" -m pip install --quiet -c "$constraints" \
    opentelemetry-api opentelemetry-sdk \
    opentelemetry-exporter-otlp-proto-grpc opentelemetry-exporter-otlp-proto-http
"$dir/ours/bin/python" -m pip install --quiet --force-reinstall --no-deps "$src"
"$dir/ours/bin/python" -m pip check >/dev/null

"$dir/published/bin/python" -m pip install --quiet -c "$constraints" helixobs==0.5.3
"$dir/published/bin/python" -m pip check >/dev/null

echo "uptime before: $(uptime)"
"$dir/ours/bin/python" "$here/bench_client.py" \
    --ours "$dir/ours/bin/python" --published "$dir/published/bin/python" "$@"
echo "uptime after: $(uptime)"
