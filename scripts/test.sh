#!/usr/bin/env bash
# The whole test suite: Rust workspace (unit, store conformance, herald end-to-end against the
# real binary) and the Python client (unit + end-to-end against the herald).
# Runs on a fresh Debian machine with the Rust toolchain and python3; installs what it needs.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n==> %s\n' "$*"; }

need_apt=()
command -v python3 >/dev/null || need_apt+=(python3 python3-venv)
command -v cc >/dev/null || need_apt+=(gcc)
if [ ${#need_apt[@]} -gt 0 ]; then
    step "installing ${need_apt[*]}"
    if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq "${need_apt[@]}"; else sudo apt-get update -qq && sudo apt-get install -y -qq "${need_apt[@]}"; fi
fi

# Optional parts contribute their own set-up (PostgreSQL for the store suite, Chromium for the
# UI tests); each script installs what it needs and exports what the tests read.
for setup in scripts/test.d/*-setup.sh; do
    [ -e "$setup" ] || continue
    step "set-up: $setup"
    # shellcheck disable=SC1090
    source "$setup"
done

step "building the workspace"
cargo build --workspace --all-targets --locked

status=0
step "Rust tests"
cargo test --workspace --locked --no-fail-fast 2>&1 | tee target/rust-tests.log || status=1
rust_counts=$(awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } } END { printf "%d passed, %d failed", p, f }' target/rust-tests.log)

for extra in scripts/test.d/*-tests.sh; do
    [ -e "$extra" ] || continue
    step "tests: $extra"
    bash "$extra" 2>&1 | tee -a target/extra-tests.log || status=1
done

step "Python client tests (against target/debug/herald)"
export HERALD_BIN="$PWD/target/debug/herald"
bash clients/python/run-tests.sh 2>&1 | tee target/python-tests.log || status=1
py_summary=$(grep -E '[0-9]+ (passed|failed)' target/python-tests.log | tail -n 1 || true)
py_passed=$(grep -oE '[0-9]+ passed' <<<"$py_summary" | grep -oE '[0-9]+' || echo 0)
py_failed=$(grep -oE '[0-9]+ (failed|error)' <<<"$py_summary" | grep -oE '[0-9]+' | paste -sd' ' - | awk '{ s = 0; for (i = 1; i <= NF; i++) s += $i; print s }')

echo
echo "Rust:   ${rust_counts}"
echo "Python: ${py_passed} passed, ${py_failed:-0} failed"
total_passed=$(( $(grep -oE '^[0-9]+' <<<"$rust_counts") + py_passed ))
total_failed=$(( $(grep -oE '[0-9]+ failed' <<<"$rust_counts" | grep -oE '[0-9]+') + ${py_failed:-0} ))
echo "Total: ${total_passed} passed, ${total_failed} failed"
exit $status
